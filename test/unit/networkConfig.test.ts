import { describe, expect, test } from "bun:test";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { parseHostsFile, renderHostsFile } from "../../lib/dns/hostsFile.ts";
import { DnsmasqDriver, containerDnsServers, dnsListenAddresses } from "../../lib/dns/DnsmasqDriver.ts";
import { answersEveryHost, fromCaddyRoute, mergeCaddyRoutes, routesFromCaddy, toCaddyRoute } from "../../lib/proxy/caddyConfig.ts";
import { domainOfCertificateFile, domainOfRule, hostRule, parseRoutesYaml, renderRoutesYaml } from "../../lib/proxy/traefikFiles.ts";
import { hashDns, hashPeers, hashRoutes } from "../../lib/state/hash.ts";
import type { Route } from "../../lib/state/types.ts";
import { cidrCoveredBy, configuredEndpoints, parseWgDump, reconcileEndpoints, renderWgConfig } from "../../lib/wireguard/wgConfig.ts";

const keyA = wireGuardPublicKey(generateWireGuardPrivateKey());
const keyB = wireGuardPublicKey(generateWireGuardPrivateKey());
const [first, second] = [keyA, keyB].sort();

describe("wg show dump", () => {
  test("peers are parsed, sorted, `(none)` becomes undefined / empty", () => {
    const dump = [
      "PRIVATEKEY\tPUBLICKEY\t51820\toff",
      `${second}\t(none)\t203.0.113.7:51820\t10.200.2.0/24,10.100.2.0/24\t0\t0\t0\toff`,
      `${first}\t(none)\t(none)\t(none)\t0\t0\t0\t25`,
    ].join("\n");
    expect(parseWgDump(dump)).toEqual({
      listenPort: 51820,
      peers: [
        { publicKey: first!, allowedIps: [], endpoint: undefined },
        { publicKey: second!, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint: "203.0.113.7:51820" },
      ],
    });
  });

  test("the same peers in another order hash equally (what the planner compares)", () => {
    const a = parseWgDump(`x\ty\t1\toff\n${keyA}\t(none)\t(none)\t10.1.0.0/16,10.0.0.0/16\t0\t0\t0\toff\n${keyB}\t(none)\t(none)\t(none)\t0\t0\t0\toff`);
    const b = parseWgDump(`x\ty\t1\toff\n${keyB}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n${keyA}\t(none)\t(none)\t10.0.0.0/16,10.1.0.0/16\t0\t0\t0\toff`);
    expect(hashPeers(a.peers)).toBe(hashPeers(b.peers));
  });

  test("a truncated peer line is an error, not an empty peer set", () => {
    expect(() => parseWgDump(`x\ty\t1\toff\n${keyA}\t(none)`)).toThrow(/unexpected line/);
  });
});

describe("wg config file", () => {
  const config = renderWgConfig({
    privateKey: "PRIV",
    listenPort: 51820,
    peers: [
      { publicKey: keyB, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint: "vpn.example.com:51820" },
      { publicKey: keyA, allowedIps: ["10.100.3.0/24"] },
    ],
    persistentKeepalive: 25,
  });

  test("has only keys wg syncconf understands", () => {
    expect(config).toContain("[Interface]\nPrivateKey = PRIV\nListenPort = 51820\n");
    expect(config).not.toContain("Address");
    expect(config).toContain(`PublicKey = ${keyB}\nAllowedIPs = 10.100.2.0/24, 10.200.2.0/24\nEndpoint = vpn.example.com:51820\nPersistentKeepalive = 25`);
  });

  test("endpoints read back from it drive how live endpoints are reported", () => {
    const configured = configuredEndpoints(config);
    expect(configured.get(keyA)).toBeUndefined();
    expect(configured.has(keyA)).toBe(true);
    const live = [
      { publicKey: keyA, allowedIps: ["10.100.3.0/24"], endpoint: "198.51.100.4:40000" },
      { publicKey: keyB, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint: "203.0.113.7:51820" },
    ];
    expect(reconcileEndpoints(live, configured)).toEqual([
      // learned from a peer the agent gave no endpoint: not drift
      { publicKey: keyA, allowedIps: ["10.100.3.0/24"], endpoint: undefined },
      // a host name resolves to an address; same port ⇒ reported as configured
      { publicKey: keyB, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint: "vpn.example.com:51820" },
    ]);
    const moved = [{ ...live[1]!, endpoint: "203.0.113.7:51999" }];
    expect(reconcileEndpoints(moved, configured)[0]!.endpoint).toBe("203.0.113.7:51999");
  });
});

test("routes are needed only outside the interface's own network", () => {
  expect(cidrCoveredBy("10.100.2.0/24", "10.100.1.1/16")).toBe(true);
  expect(cidrCoveredBy("10.100.0.0/16", "10.100.1.1/16")).toBe(true);
  expect(cidrCoveredBy("10.0.0.0/8", "10.100.1.1/16")).toBe(false);
  expect(cidrCoveredBy("10.200.2.0/24", "10.100.1.1/16")).toBe(false);
  expect(cidrCoveredBy("fd00::/64", "10.100.1.1/16")).toBe(false);
});

describe("dnsmasq hosts file", () => {
  test("round-trips records, sorted, so the planner's hash matches", () => {
    const records = [
      { name: "web.internal", ips: ["10.200.1.3"] },
      { name: "api.internal", ips: ["10.200.2.2", "10.200.1.2"] },
    ];
    const text = renderHostsFile(records);
    expect(text.split("\n").filter((l) => !l.startsWith("#") && l)).toEqual(["10.200.1.2 api.internal", "10.200.2.2 api.internal", "10.200.1.3 web.internal"]);
    expect(hashDns(parseHostsFile(text))).toBe(hashDns(records));
  });

  test("containers use the WireGuard address; dnsmasq listens on it and on loopback", () => {
    expect(containerDnsServers("10.100.4.1")).toEqual(["10.100.4.1"]);
    expect(dnsListenAddresses("10.100.4.1/16")).toEqual(["127.0.0.1", "10.100.4.1"]);
  });

  test("the dnsmasq config never forwards to itself and keeps *.internal local", () => {
    const d = new DnsmasqDriver({ runDir: "/run/x", listenAddresses: ["127.0.0.1", "10.100.4.1"], upstreamServers: ["127.0.0.1", "192.0.2.53"] });
    const conf = d.renderConf();
    expect(conf).toContain("listen-address=127.0.0.1,10.100.4.1\n");
    expect(conf).toContain("server=192.0.2.53\n");
    expect(conf).not.toContain("server=127.0.0.1");
    expect(conf).toContain("local=/internal/\n");
    expect(conf).toContain("hostsdir=/run/x/hosts\n");
  });
});

describe("Caddy routes", () => {
  const route: Route = { id: "r1", domain: "app.example.com", upstreams: ["10.200.1.2:80", "10.200.1.1:80"], serviceId: "svc" };

  test("a managed route converts to Caddy JSON and back", () => {
    expect(fromCaddyRoute(JSON.parse(JSON.stringify(toCaddyRoute(route))))).toEqual({ ...route, upstreams: ["10.200.1.1:80", "10.200.1.2:80"] });
  });

  test("merging keeps every unmanaged route in place and replaces only managed ones", () => {
    const operator1 = { match: [{ host: ["a.test"] }], handle: [] };
    const operator2 = { "@id": "operators-own", match: [{ host: ["b.test"] }], handle: [] };
    const staleManaged = toCaddyRoute({ ...route, id: "old" });
    const merged = mergeCaddyRoutes([operator1, staleManaged, operator2], [route]);
    expect(merged.slice(0, 2)).toEqual([operator1, operator2]);
    expect(routesFromCaddy(merged)).toEqual([{ ...route, upstreams: ["10.200.1.1:80", "10.200.1.2:80"] }]);
    expect(hashRoutes(routesFromCaddy(merged))).toBe(hashRoutes([route]));
  });
});

test("the agent's routes go before an operator's route that answers every host, never behind it", () => {
  const route: Route = { id: "r1", domain: "app.example.com", upstreams: ["10.200.1.2:80"], serviceId: "svc" };
  const hostRoute = { match: [{ host: ["a.test"] }], handle: [] };
  // A stock Caddyfile's `:80 { root * /usr/share/caddy; file_server }`: no matcher at all.
  const fileServer = { handle: [{ handler: "file_server" }] };
  const pathOnly = { match: [{ path: ["/health"] }], handle: [] };
  const hostOrPath = { match: [{ host: ["c.test"] }, { path: ["/x"] }], handle: [] };
  expect(answersEveryHost(fileServer)).toBe(true);
  expect(answersEveryHost(pathOnly)).toBe(true);
  expect(answersEveryHost(hostOrPath)).toBe(true);
  expect(answersEveryHost(hostRoute)).toBe(false);
  const managed = toCaddyRoute(route);
  expect(mergeCaddyRoutes([hostRoute, fileServer, pathOnly], [route])).toEqual([hostRoute, managed, fileServer, pathOnly]);
  expect(mergeCaddyRoutes([fileServer, hostRoute, managed], [route])).toEqual([managed, fileServer, hostRoute]);
  expect(mergeCaddyRoutes([hostRoute], [route])).toEqual([hostRoute, managed]);
});

describe("Traefik files", () => {
  test("host rules round-trip, wildcards included", () => {
    for (const domain of ["app.example.com", "*.apps.example.com"]) expect(domainOfRule(hostRule(domain))).toBe(domain);
    expect(domainOfRule("PathPrefix(`/x`)")).toBeUndefined();
  });

  test("routes.yaml round-trips", () => {
    const routes: Route[] = [{ id: "b", domain: "b.example.com", upstreams: ["10.200.1.2:80"], serviceId: "s2" }];
    expect(parseRoutesYaml(renderRoutesYaml(routes, { entryPoints: ["web"], tls: false }))).toEqual(routes);
  });

  test("certificate file names carry the domain", () => {
    expect(domainOfCertificateFile("/etc/traefik/certs/app.example.com.0123456789ab.crt")).toBe("app.example.com");
    expect(domainOfCertificateFile("/etc/traefik/certs/app.example.com.crt")).toBeUndefined();
  });
});
