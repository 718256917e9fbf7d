import { describe, expect, test } from "bun:test";
import {
  assessPeers,
  assessRoutes,
  diffRoutes,
  describeRouteDiff,
  handshakeAge,
  parseDigOutput,
  parseIpRoutes,
  wantedPeerRoutes,
} from "../../lib/doctor/networkChecks.ts";
import { parseWgDumpDetail, type LivePeer } from "../../lib/wireguard/wgConfig.ts";

const KEY_A = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=";
const KEY_B = "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";
const NOW = 1_800_000_000;

describe("wg show dump", () => {
  test("keeps each peer's latest handshake; (none) and 0 mean none", () => {
    const dump = [
      "cHJpdmF0ZQ==\tcHVibGlj\t51820\toff",
      `${KEY_A}\t(none)\t192.0.2.7:51820\t10.200.2.0/24,10.100.2.0/24\t${NOW - 30}\t1200\t900\t25`,
      `${KEY_B}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
      "",
    ].join("\n");
    expect(parseWgDumpDetail(dump)).toEqual({
      listenPort: 51820,
      peers: [
        { publicKey: KEY_A, endpoint: "192.0.2.7:51820", allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], latestHandshake: NOW - 30 },
        { publicKey: KEY_B, endpoint: undefined, allowedIps: [], latestHandshake: 0 },
      ],
    });
    expect(parseWgDumpDetail("")).toEqual({ peers: [] });
    expect(() => parseWgDumpDetail("a\tb\t1\toff\nbroken\tline")).toThrow("unexpected line");
  });

  test("handshake ages read as people say them", () => {
    expect(handshakeAge(0, NOW)).toBe("never");
    expect(handshakeAge(NOW - 12, NOW)).toBe("12 s ago");
    expect(handshakeAge(NOW - 300, NOW)).toBe("5 min ago");
    expect(handshakeAge(NOW - 3 * 3600, NOW)).toBe("3 h ago");
  });
});

describe("peers against the expected state", () => {
  const live = (over: Partial<LivePeer> = {}): LivePeer => ({ publicKey: KEY_A, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint: "192.0.2.7:51820", latestHandshake: NOW - 20, ...over });
  const want = { publicKey: KEY_A, allowedIps: ["10.200.2.0/24", "10.100.2.0/24"], endpoint: "192.0.2.7:51820" };

  test("a present peer with a recent handshake is ok and its age is shown", () => {
    const a = assessPeers([want], [live()], NOW);
    expect(a).toEqual({ status: "ok", repairable: false, lines: [`peer ${KEY_A} (10.100.2.0/24, 10.200.2.0/24; endpoint 192.0.2.7:51820): last handshake 20 s ago`] });
  });

  test("a missing peer fails and names it", () => {
    const a = assessPeers([want, { publicKey: KEY_B, allowedIps: ["10.200.3.0/24"] }], [live()], NOW);
    expect(a.status).toBe("fail");
    expect(a.repairable).toBe(true);
    expect(a.lines).toContain(`peer ${KEY_B} (10.200.3.0/24; connects to us) is missing from the interface`);
  });

  test("other allowed IPs fail", () => {
    const a = assessPeers([want], [live({ allowedIps: ["10.200.2.0/24"] })], NOW);
    expect(a.status).toBe("fail");
    expect(a.lines[0]).toBe(`peer ${KEY_A} allows 10.200.2.0/24, expected 10.100.2.0/24, 10.200.2.0/24`);
  });

  test("a peer with an endpoint silent for more than 3 minutes, or never heard, warns; one that connects to us does not", () => {
    const stale = assessPeers([want], [live({ latestHandshake: NOW - 181 })], NOW);
    expect(stale.status).toBe("warn");
    expect(stale.repairable).toBe(false);
    expect(stale.lines[0]).toContain("last handshake 3 min ago, over 3 min: is UDP to 192.0.2.7:51820 open");
    expect(assessPeers([want], [live({ latestHandshake: NOW - 180 })], NOW).status).toBe("ok");
    expect(assessPeers([want], [live({ latestHandshake: 0 })], NOW).lines[0]).toContain("last handshake never");
    const inbound = assessPeers([{ ...want, endpoint: undefined }], [live({ latestHandshake: 0, endpoint: "198.51.100.1:4000" })], NOW);
    expect(inbound).toEqual({ status: "ok", repairable: false, lines: [`peer ${KEY_A} (10.100.2.0/24, 10.200.2.0/24; connects to us): last handshake never`] });
  });

  test("a live peer the state does not have warns and is repairable; without an expected state only handshakes are judged", () => {
    const extra = assessPeers([], [live()], NOW);
    expect(extra.status).toBe("warn");
    expect(extra.repairable).toBe(true);
    expect(extra.lines[0]).toContain("is on the interface but not in the expected state");
    expect(assessPeers(undefined, [live()], NOW)).toMatchObject({ status: "ok", repairable: false });
  });
});

describe("routes", () => {
  test("ip -j route output becomes CIDRs with device and protocol; default is left out", () => {
    const json = JSON.stringify([
      { dst: "default", gateway: "192.0.2.1", dev: "eth0" },
      { dst: "10.200.2.0/24", dev: "wg0", protocol: "84", scope: "link" },
      { dst: "10.9.9.9", dev: "eth0", protocol: "static" },
      { type: "unreachable", dst: "10.66.0.0/16", protocol: "boot" },
    ]);
    expect(parseIpRoutes(json)).toEqual([
      { cidr: "10.200.2.0/24", dev: "wg0", protocol: "84" },
      { cidr: "10.9.9.9/32", dev: "eth0", protocol: "static" },
      { cidr: "10.66.0.0/16", protocol: "boot" },
    ]);
    expect(parseIpRoutes(JSON.stringify([{ dst: "fd00::1", dev: "wg0" }]), 6)).toEqual([{ cidr: "fd00::1/128", dev: "wg0" }]);
    expect(parseIpRoutes("")).toEqual([]);
  });

  test("wanted routes leave out the interface's own network and /0, as the driver does", () => {
    const peers = [
      { publicKey: KEY_A, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"] },
      { publicKey: KEY_B, allowedIps: ["0.0.0.0/0", "10.200.3.0/24"] },
    ];
    expect(wantedPeerRoutes(peers, "10.100.1.1/16")).toEqual([
      { cidr: "10.200.2.0/24", peer: KEY_A },
      { cidr: "10.200.3.0/24", peer: KEY_B },
    ]);
  });

  test("a route through the interface is ok, a missing one fails, one through another device warns, a stale managed one warns", () => {
    const wanted = [
      { cidr: "10.200.2.0/24", peer: KEY_A },
      { cidr: "10.200.3.0/24", peer: KEY_B },
    ];
    const ok = assessRoutes(wanted, [{ cidr: "10.200.2.0/24", dev: "wg0", protocol: "84" }, { cidr: "10.200.3.0/24", dev: "wg0", protocol: "84" }], "wg0");
    expect(ok.status).toBe("ok");
    const missing = assessRoutes(wanted, [{ cidr: "10.200.2.0/24", dev: "wg0", protocol: "84" }], "wg0");
    expect(missing).toMatchObject({ status: "fail", repairable: true });
    expect(missing.lines).toContain(`no route to 10.200.3.0/24 (peer ${KEY_B}'s containers) through wg0`);
    const elsewhere = assessRoutes(wanted.slice(0, 1), [{ cidr: "10.200.2.0/24", dev: "cni-podman1", protocol: "kernel" }], "wg0");
    expect(elsewhere).toMatchObject({ status: "warn", repairable: false });
    expect(elsewhere.lines[0]).toContain("goes through cni-podman1, not wg0");
    const stale = assessRoutes([], [{ cidr: "10.200.9.0/24", dev: "wg0", protocol: "84" }, { cidr: "10.200.8.0/24", dev: "wg0", protocol: "static" }], "wg0");
    expect(stale).toEqual({ status: "warn", repairable: true, lines: ["stale route 10.200.9.0/24 through wg0: no peer allows it any more"] });
  });
});

describe("dig output", () => {
  test("status and answer addresses", () => {
    const text = `; <<>> DiG 9.18 <<>> @127.0.0.1 -p 5353 api.internal A
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; QUESTION SECTION:
;api.internal.			IN	A

;; ANSWER SECTION:
api.internal.		0	IN	A	10.200.2.2
api.internal.		0	IN	A	10.200.1.2

;; Query time: 0 msec
`;
    expect(parseDigOutput(text)).toEqual({ status: "NOERROR", addresses: ["10.200.1.2", "10.200.2.2"] });
    expect(parseDigOutput(";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n")).toEqual({ status: "NXDOMAIN", addresses: [] });
    expect(parseDigOutput(";; communications error to 127.0.0.1#9: connection refused\n;; no servers could be reached\n")).toEqual({ addresses: [] });
  });
});

describe("proxy routes", () => {
  const route = (id: string, over: Record<string, unknown> = {}) => ({ id, domain: `${id}.example.com`, upstreams: ["10.200.1.2:80"], serviceId: `svc-${id}`, ...over });
  test("missing, changed and unexpected routes, each named", () => {
    const diff = diffRoutes([route("a"), route("b"), route("c")], [route("a"), route("b", { upstreams: ["10.200.1.9:80"] }), route("z")]);
    expect(diff.missing.map((r) => r.id)).toEqual(["c"]);
    expect(diff.changed.map((c) => c.want.id)).toEqual(["b"]);
    expect(diff.extra.map((r) => r.id)).toEqual(["z"]);
    expect(describeRouteDiff(diff)).toEqual([
      "route c (c.example.com → 10.200.1.2:80) is missing",
      "route b is b.example.com → 10.200.1.9:80 (service svc-b), expected b.example.com → 10.200.1.2:80 (service svc-b)",
      "route z (z.example.com → 10.200.1.2:80) is not in the expected state",
    ]);
    expect(describeRouteDiff(diffRoutes([route("a")], [route("a")]))).toEqual([]);
  });
});
