import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { AgentError, InvalidInputError } from "../../lib/errors.ts";
import { TraefikDriver } from "../../lib/proxy/TraefikDriver.ts";
import { selectProxyDriver } from "../../lib/proxy/selectProxyDriver.ts";
import type { Certificate, Route } from "../../lib/state/types.ts";
import { freePort } from "../support/podman.ts";
import { selfSignedCertificate } from "../support/selfSignedCert.ts";

// Traefik itself cannot be installed on this machine (HOST.md): these tests check the files its
// file provider reads, parsed back with a YAML library, and the driver's reading of them.
const root = mkdtempSync(join(tmpdir(), "traefik-test-"));
const dynamicDir = join(root, "traefik", "dynamic");
const certsDir = join(root, "traefik", "certs");
const driver = new TraefikDriver({ dynamicDir });

afterAll(() => rmSync(root, { recursive: true, force: true }));

const routes: Route[] = [
  { id: "r2", domain: "api.example.com", upstreams: ["10.200.1.2:3000", "10.200.2.2:3000"], serviceId: "svc-api" },
  { id: "r1", domain: "*.apps.example.com", upstreams: ["10.200.1.5:8080"], serviceId: "svc-web" },
];

function readYaml(name: string): unknown {
  return parse(readFileSync(join(dynamicDir, name), "utf8"));
}

describe("Traefik driver (file provider)", () => {
  let cert: Certificate;

  test("routes.yaml has a router, a service and a tagging middleware per route", async () => {
    cert = await selfSignedCertificate("api.example.com");
    await driver.apply(routes, [cert]);
    const tag = (svc: string) => ({ headers: { customRequestHeaders: { "X-Techulus-Service-Id": svc }, customResponseHeaders: { "X-Techulus-Service-Id": svc } } });
    expect(readYaml("routes.yaml")).toEqual({
      http: {
        routers: {
          "techulus-r1": {
            rule: "HostRegexp(`^[a-z0-9-]+\\.apps\\.example\\.com$`)",
            entryPoints: ["websecure"],
            service: "techulus-r1",
            middlewares: ["techulus-r1-service-id"],
            tls: {},
          },
          "techulus-r2": {
            rule: "Host(`api.example.com`)",
            entryPoints: ["websecure"],
            service: "techulus-r2",
            middlewares: ["techulus-r2-service-id"],
            tls: {},
          },
        },
        services: {
          "techulus-r1": { loadBalancer: { servers: [{ url: "http://10.200.1.5:8080" }] } },
          "techulus-r2": { loadBalancer: { servers: [{ url: "http://10.200.1.2:3000" }, { url: "http://10.200.2.2:3000" }] } },
        },
        middlewares: { "techulus-r1-service-id": tag("svc-web"), "techulus-r2-service-id": tag("svc-api") },
      },
    });
  });

  test("tls.yaml names PEM files (0600 in a 0700 folder) that hold the certificate and key", () => {
    const tls = readYaml("tls.yaml") as { tls: { certificates: Array<{ certFile: string; keyFile: string }> } };
    expect(tls.tls.certificates).toHaveLength(1);
    const [entry] = tls.tls.certificates;
    expect(entry!.certFile.startsWith(`${certsDir}/api.example.com.`)).toBe(true);
    expect(readFileSync(entry!.certFile, "utf8")).toBe(cert.certificate);
    expect(readFileSync(entry!.keyFile, "utf8")).toBe(cert.certificateKey);
    expect(statSync(entry!.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(entry!.certFile).mode & 0o777).toBe(0o600);
    expect(statSync(certsDir).mode & 0o777).toBe(0o700);
    // Nothing half-written or temporary is left for Traefik's watcher to pick up.
    expect(readdirSync(dynamicDir).sort()).toEqual(["routes.yaml", "tls.yaml"]);
  });

  test("observe reads the files back into the same routes and certificates", async () => {
    const observed = await driver.observe();
    expect(observed.routes).toEqual([...routes].sort((a, b) => (a.id < b.id ? -1 : 1)));
    expect(observed.certificates).toEqual([cert]);
  });

  test("a new certificate gets a new file name (Traefik sees tls.yaml change) and the old files go", async () => {
    const before = (readYaml("tls.yaml") as { tls: { certificates: Array<{ certFile: string }> } }).tls.certificates[0]!.certFile;
    const renewed = await selfSignedCertificate("api.example.com");
    await driver.apply(routes, [renewed]);
    const after = (readYaml("tls.yaml") as { tls: { certificates: Array<{ certFile: string }> } }).tls.certificates[0]!.certFile;
    expect(after).not.toBe(before);
    expect(existsSync(before)).toBe(false);
    expect(readdirSync(certsDir)).toHaveLength(2);
    expect((await driver.observe()).certificates).toEqual([renewed]);
  });

  test("an edit behind the agent's back, a deleted file or broken YAML shows as drift", async () => {
    const text = readFileSync(driver.routesFile, "utf8");
    writeFileSync(driver.routesFile, text.replace("http://10.200.1.5:8080", "http://10.200.9.9:8080"));
    expect((await driver.observe()).routes.find((r) => r.id === "r1")!.upstreams).toEqual(["10.200.9.9:8080"]);
    writeFileSync(driver.routesFile, "http: [unclosed");
    expect((await driver.observe()).routes).toEqual([]);
    rmSync(driver.tlsFile);
    expect((await driver.observe()).certificates).toEqual([]);
  });

  test("the operator's own files in the dynamic folder are left alone; removing every route leaves an empty http section", async () => {
    writeFileSync(join(dynamicDir, "operator.yaml"), "http: {}\n");
    await driver.apply([], []);
    expect(readYaml("routes.yaml")).toEqual({ http: {} });
    expect(readYaml("tls.yaml")).toEqual({ tls: { certificates: [] } });
    expect(readdirSync(certsDir)).toEqual([]);
    expect(readFileSync(join(dynamicDir, "operator.yaml"), "utf8")).toBe("http: {}\n");
    expect(await driver.observe()).toEqual({ routes: [], certificates: [] });
  });

  test("routes without upstreams are not written", async () => {
    await driver.apply([{ id: "r3", domain: "empty.example.com", upstreams: [], serviceId: "s" }, routes[0]!], []);
    expect((await driver.observe()).routes.map((r) => r.id)).toEqual(["r2"]);
  });

  test("input that could break out of a YAML value or a rule is refused and the files stay as they were", async () => {
    const before = readFileSync(driver.routesFile, "utf8");
    const bad: Route[][] = [
      [{ id: "r9", domain: "a.example.com`) || Host(`evil.example.com", upstreams: ["10.200.1.2:80"], serviceId: "s" }],
      [{ id: "r9\nx", domain: "a.example.com", upstreams: ["10.200.1.2:80"], serviceId: "s" }],
      [{ id: "r9", domain: "a.example.com", upstreams: ["10.200.1.2:80/../admin"], serviceId: "s" }],
    ];
    for (const r of bad) await expect(driver.apply(r, [])).rejects.toBeInstanceOf(InvalidInputError);
    await expect(driver.apply([], [{ domain: "x.example.com", certificate: "not pem", certificateKey: "not pem" }])).rejects.toBeInstanceOf(InvalidInputError);
    expect(readFileSync(driver.routesFile, "utf8")).toBe(before);
  });

  test("a dynamic folder that cannot be created is a clear error", async () => {
    const file = join(root, "a-file");
    writeFileSync(file, "");
    const d = new TraefikDriver({ dynamicDir: join(file, "dynamic") });
    await expect(d.apply(routes, [])).rejects.toThrow(/cannot use .* for Traefik's configuration/);
  });
});

describe("selectProxyDriver", () => {
  test("a named driver is used as named", async () => {
    expect((await selectProxyDriver({ driver: "traefik", traefikDynamicDir: dynamicDir })).name).toBe("traefik");
    expect((await selectProxyDriver({ driver: "caddy" })).name).toBe("caddy");
  });

  test("auto: no Caddy answering and a Traefik dynamic folder ⇒ traefik", async () => {
    const caddyAdminUrl = `http://127.0.0.1:${await freePort()}`;
    const selected = await selectProxyDriver({ driver: "auto", caddyAdminUrl, traefikDynamicDir: dynamicDir });
    expect(selected).toBeInstanceOf(TraefikDriver);
  });

  test("auto: neither ⇒ a clear error naming both", async () => {
    const caddyAdminUrl = `http://127.0.0.1:${await freePort()}`;
    const missing = join(root, "no-such-dir");
    const err = await selectProxyDriver({ driver: "auto", caddyAdminUrl, traefikDynamicDir: missing }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).message).toContain(caddyAdminUrl);
    expect((err as AgentError).message).toContain(missing);
    expect((err as AgentError).hint).toContain("--proxy-driver");
  });
});
