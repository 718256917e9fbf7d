import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentError, InvalidInputError } from "../../lib/errors.ts";
import { request } from "../../lib/http/undici.ts";
import { CaddyDriver } from "../../lib/proxy/CaddyDriver.ts";
import { selectProxyDriver } from "../../lib/proxy/selectProxyDriver.ts";
import type { Route } from "../../lib/state/types.ts";
import { freePort, waitFor } from "../support/podman.ts";
import { startCaddy, stopCaddy, type RunningCaddy } from "../support/caddy.ts";
import { selfSignedCertificate } from "../support/selfSignedCert.ts";

// A real `caddy run` with its admin API and one HTTP server on loopback ports of this run. The
// server starts with an operator's own route (no @id) that must survive every update.
const dir = mkdtempSync(join(tmpdir(), "caddy-test-"));
const accessLog = join(dir, "access.log");
let adminPort: number;
let httpPort: number;
let caddy: RunningCaddy | undefined;
let driver: CaddyDriver;
const backends: Array<ReturnType<typeof Bun.serve>> = [];

const operatorRoute = { match: [{ host: ["operator.test"] }], handle: [{ handler: "static_response", body: "operator route" }], terminal: true };

function caddyConfig(): unknown {
  return {
    admin: { listen: `127.0.0.1:${adminPort}` },
    logging: { logs: { default: { writer: { output: "file", filename: accessLog }, encoder: { format: "json" } } } },
    apps: {
      http: {
        servers: {
          srv0: { listen: [`127.0.0.1:${httpPort}`], automatic_https: { disable: true }, logs: {}, routes: [operatorRoute] },
        },
      },
    },
  };
}

/**
 * A backend that names itself and echoes the service-id header the proxy added; it also answers
 * with a forged service-id header, which the proxy must overwrite.
 */
function backend(name: string): string {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) =>
      new Response(`${name} service=${req.headers.get("x-techulus-service-id") ?? "-"}`, { headers: { "X-Techulus-Service-Id": "forged" } }),
  });
  backends.push(server);
  return `127.0.0.1:${server.port}`;
}

async function get(host: string, port = httpPort): Promise<{ status: number; body: string; serviceHeader?: string }> {
  // A fresh connection each time: Caddy closes idle keep-alive connections when it loads a new config,
  // and a request on one it just closed fails with "other side closed".
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host }, headersTimeout: 5000, bodyTimeout: 5000, reset: true });
  const tag = res.headers["x-techulus-service-id"];
  return { status: res.statusCode, body: await res.body.text(), serviceHeader: Array.isArray(tag) ? tag.join(",") : tag };
}

async function liveRoutes(admin = adminPort): Promise<Array<Record<string, unknown>>> {
  const res = await request(`http://127.0.0.1:${admin}/config/apps/http/servers/srv0/routes`);
  return (await res.body.json()) as Array<Record<string, unknown>>;
}

let upstreamA: string;
let upstreamB: string;

beforeAll(async () => {
  adminPort = await freePort();
  httpPort = await freePort();
  caddy = await startCaddy(dir, caddyConfig(), adminPort);
  driver = new CaddyDriver({ adminUrl: `http://127.0.0.1:${adminPort}` });
  upstreamA = backend("backend-a");
  upstreamB = backend("backend-b");
}, 30_000);

afterAll(async () => {
  await stopCaddy(caddy);
  for (const server of backends) server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

describe("Caddy driver against a real Caddy", () => {
  test("a Caddy with only the operator's route has no managed routes", async () => {
    expect(await driver.observe()).toEqual({ routes: [], certificates: [] });
  });

  test("a request with the route's Host reaches the upstream, tagged with the service id; the operator's route still works", async () => {
    const routes: Route[] = [{ id: "r1", domain: "app.test", upstreams: [upstreamA], serviceId: "svc-1" }];
    await driver.apply(routes, []);
    expect(await get("app.test")).toEqual({ status: 200, body: "backend-a service=svc-1", serviceHeader: "svc-1" });
    expect((await get("operator.test")).body).toBe("operator route");
    expect(await driver.observe()).toEqual({ routes, certificates: [] });
  });

  test("Caddy's access log carries the service id of the route", async () => {
    await get("app.test");
    await waitFor(() => existsSync(accessLog) && readFileSync(accessLog, "utf8").includes("app.test"), 5000, "an access log line");
    const entries = readFileSync(accessLog, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { msg?: string; request?: { host?: string }; resp_headers?: Record<string, string[]> })
      .filter((e) => e.msg === "handled request" && e.request?.host === "app.test");
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.at(-1)!.resp_headers!["X-Techulus-Service-Id"]).toEqual(["svc-1"]);
  });

  test("an update changes upstreams and adds a route; the operator's route stays first and untouched", async () => {
    const routes: Route[] = [
      { id: "r1", domain: "app.test", upstreams: [upstreamB], serviceId: "svc-1" },
      { id: "r2", domain: "api.test", upstreams: [upstreamA, upstreamB].sort(), serviceId: "svc-2" },
    ];
    await driver.apply(routes, []);
    expect((await get("app.test")).body).toBe("backend-b service=svc-1");
    expect((await get("api.test")).body).toMatch(/^backend-[ab] service=svc-2$/);
    const live = await liveRoutes();
    expect(live[0]).toEqual(operatorRoute);
    expect(live.map((r) => r["@id"])).toEqual([undefined, "techulus-r1", "techulus-r2"]);
    expect((await driver.observe()).routes).toEqual(routes);
  });

  test("a removed route stops routing; a route without upstreams is not installed", async () => {
    await driver.apply([{ id: "r2", domain: "api.test", upstreams: [upstreamA], serviceId: "svc-2" }, { id: "r3", domain: "empty.test", upstreams: [], serviceId: "svc-3" }], []);
    expect((await get("app.test")).body).not.toContain("backend");
    expect((await get("api.test")).body).toBe("backend-a service=svc-2");
    expect((await get("operator.test")).body).toBe("operator route");
    expect((await driver.observe()).routes.map((r) => r.id)).toEqual(["r2"]);
    await driver.apply([], []);
    expect((await get("api.test")).body).not.toContain("backend");
    expect(await liveRoutes()).toEqual([operatorRoute]);
  });

  test("a Caddy restart that reloads its file config loses the managed routes: observe shows the drift, apply repairs it", async () => {
    const routes: Route[] = [{ id: "r1", domain: "app.test", upstreams: [upstreamA], serviceId: "svc-1" }];
    await driver.apply(routes, []);
    await stopCaddy(caddy);
    caddy = await startCaddy(dir, caddyConfig(), adminPort);
    expect((await driver.observe()).routes).toEqual([]);
    await driver.apply(routes, []);
    expect((await driver.observe()).routes).toEqual(routes);
    expect((await get("app.test")).body).toBe("backend-a service=svc-1");
    expect((await get("operator.test")).body).toBe("operator route");
  });

  test("certificates go to tls.certificates.load_pem and read back; an operator's own certificate stays", async () => {
    const [mine, theirs] = await Promise.all([selfSignedCertificate("app.test"), selfSignedCertificate("operator.test")]);
    const operatorPem = { certificate: theirs.certificate, key: theirs.certificateKey };
    const put = await request(`http://127.0.0.1:${adminPort}/config/apps/tls/certificates/load_pem`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([operatorPem]),
    });
    expect(put.statusCode).toBe(200);
    await put.body.text();
    const routes = (await driver.observe()).routes;
    await driver.apply(routes, [mine]);
    expect(await driver.observe()).toEqual({ routes, certificates: [mine] });
    await driver.apply(routes, []);
    expect((await driver.observe()).certificates).toEqual([]);
    const res = await request(`http://127.0.0.1:${adminPort}/config/apps/tls/certificates/load_pem`);
    expect(await res.body.json()).toEqual([operatorPem]);
  });

  test("a route an operator adds between the agent's read and write is not lost (ETag-guarded write, retried)", async () => {
    // A relay in front of Caddy's admin API holds the agent's first PATCH of the routes until the operator's
    // POST has landed, so the agent's write is based on a stale read.
    let beforePatch: (() => Promise<void>) | undefined;
    const relay = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        if (req.method === "PATCH" && new URL(req.url).pathname.endsWith("/routes") && beforePatch) {
          const hook = beforePatch;
          beforePatch = undefined;
          await hook();
        }
        const url = new URL(req.url);
        const headers: Record<string, string> = {};
        req.headers.forEach((value, key) => {
          if (key === "content-type" || key === "if-match") headers[key] = value;
        });
        const res = await request(`http://127.0.0.1:${adminPort}${url.pathname}`, {
          method: req.method as "GET",
          headers,
          body: req.method === "GET" ? undefined : await req.text(),
        });
        const body = await res.body.text();
        const etag = res.trailers?.etag;
        return new Response(body, { status: res.statusCode, headers: etag ? { etag: String(etag) } : {} });
      },
    });
    try {
      const viaRelay = new CaddyDriver({ adminUrl: `http://127.0.0.1:${relay.port}` });
      await viaRelay.apply([{ id: "r1", domain: "app.test", upstreams: [upstreamA], serviceId: "svc-1" }], []);
      const raced = { match: [{ host: ["raced.test"] }], handle: [{ handler: "static_response", body: "raced" }] };
      beforePatch = async () => {
        const res = await request(`http://127.0.0.1:${adminPort}/config/apps/http/servers/srv0/routes`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(raced),
        });
        await res.body.text();
        expect(res.statusCode).toBe(200);
      };
      await viaRelay.apply([{ id: "r1", domain: "app.test", upstreams: [upstreamB], serviceId: "svc-1" }], []);
      expect(beforePatch).toBeUndefined();
      expect(await liveRoutes()).toContainEqual(raced);
      expect((await get("raced.test")).body).toBe("raced");
      expect((await get("app.test")).body).toBe("backend-b service=svc-1");
    } finally {
      relay.stop(true);
    }
  });

  test("invalid routes are refused and Caddy's config is not touched", async () => {
    const before = await liveRoutes();
    const bad: Route[][] = [
      [{ id: "r9", domain: "bad domain.test", upstreams: [upstreamA], serviceId: "s" }],
      [{ id: "r9", domain: "ok.test", upstreams: ["not an endpoint"], serviceId: "s" }],
      [{ id: "r9", domain: "ok.test", upstreams: [upstreamA], serviceId: "s\r\nX-Evil: 1" }],
      [{ id: "../r9", domain: "ok.test", upstreams: [upstreamA], serviceId: "s" }],
      // Caddy expands placeholders in header values: this would answer every client with Caddy's $HOME.
      [{ id: "r9", domain: "ok.test", upstreams: [upstreamA], serviceId: "{env.HOME}" }],
    ];
    for (const routes of bad) await expect(driver.apply(routes, [])).rejects.toBeInstanceOf(InvalidInputError);
    expect(await liveRoutes()).toEqual(before);
  });
});

describe("Caddy driver when the server does not exist yet", () => {
  let admin: number;
  let port: number;
  let bare: RunningCaddy | undefined;

  beforeAll(async () => {
    admin = await freePort();
    port = await freePort();
    bare = await startCaddy(dir, { admin: { listen: `127.0.0.1:${admin}` } }, admin);
  }, 30_000);
  afterAll(() => stopCaddy(bare));

  test("observe reports no routes and apply creates the server with the configured listen address", async () => {
    const d = new CaddyDriver({ adminUrl: `http://127.0.0.1:${admin}`, listen: [`127.0.0.1:${port}`], automaticHttps: false });
    expect(await d.observe()).toEqual({ routes: [], certificates: [] });
    const routes: Route[] = [{ id: "new", domain: "new.test", upstreams: [upstreamA], serviceId: "svc-new" }];
    await d.apply(routes, []);
    expect((await get("new.test", port)).body).toBe("backend-a service=svc-new");
    expect((await d.observe()).routes).toEqual(routes);
  });

  test("--proxy-driver auto picks Caddy when its admin API answers, even with a Traefik folder present", async () => {
    const selected = await selectProxyDriver({ driver: "auto", caddyAdminUrl: `http://127.0.0.1:${admin}`, traefikDynamicDir: dir });
    expect(selected).toBeInstanceOf(CaddyDriver);
  });

  test("an unreachable admin API is a clear error", async () => {
    const d = new CaddyDriver({ adminUrl: `http://127.0.0.1:${await freePort()}` });
    const err = await d.observe().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).message).toContain("cannot reach Caddy's admin API");
    expect(await d.reachable()).toBe(false);
  });
});

describe("Caddy driver when the server exists without routes", () => {
  let admin: number;
  let port: number;
  let noRoutes: RunningCaddy | undefined;

  beforeAll(async () => {
    admin = await freePort();
    port = await freePort();
    // A server with a listen address and nothing else, as a minimal JSON config has it: GET …/routes answers null.
    noRoutes = await startCaddy(dir, { admin: { listen: `127.0.0.1:${admin}` }, apps: { http: { servers: { srv0: { listen: [`127.0.0.1:${port}`], automatic_https: { disable: true } } } } } }, admin);
  }, 30_000);
  afterAll(() => stopCaddy(noRoutes));

  test("apply adds the routes to that server and keeps its listen address", async () => {
    const d = new CaddyDriver({ adminUrl: `http://127.0.0.1:${admin}` });
    expect(await d.observe()).toEqual({ routes: [], certificates: [] });
    const routes: Route[] = [{ id: "r1", domain: "app.test", upstreams: [upstreamA], serviceId: "svc-1" }];
    await d.apply(routes, []);
    expect((await d.observe()).routes).toEqual(routes);
    expect((await get("app.test", port)).body).toBe("backend-a service=svc-1");
  });
});

describe("Caddy driver beside an operator's catch-all route", () => {
  let admin: number;
  let port: number;
  let stock: RunningCaddy | undefined;

  beforeAll(async () => {
    admin = await freePort();
    port = await freePort();
    // What Debian's and Ubuntu's caddy package runs (its Caddyfile: `:80 { file_server }`): one route, no matcher.
    const catchAll = { handle: [{ handler: "static_response", body: "stock caddy page" }] };
    stock = await startCaddy(dir, { admin: { listen: `127.0.0.1:${admin}` }, apps: { http: { servers: { srv0: { listen: [`127.0.0.1:${port}`], automatic_https: { disable: true }, routes: [catchAll] } } } } }, admin);
  }, 30_000);
  afterAll(() => stopCaddy(stock));

  test("the agent's route answers its host; every other host still gets the catch-all", async () => {
    const d = new CaddyDriver({ adminUrl: `http://127.0.0.1:${admin}` });
    const routes: Route[] = [{ id: "r1", domain: "app.test", upstreams: [upstreamA], serviceId: "svc-1" }];
    await d.apply(routes, []);
    expect((await d.observe()).routes).toEqual(routes);
    expect((await get("app.test", port)).body).toBe("backend-a service=svc-1");
    expect((await get("other.test", port)).body).toBe("stock caddy page");
  });
});
