import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "../../lib/exec.ts";
import { request } from "../../lib/http/undici.ts";
import { AccessLogShipper } from "../../lib/logs/AccessLogShipper.ts";
import { VictoriaLogsShipper } from "../../lib/logs/VictoriaLogsShipper.ts";
import { CaddyDriver } from "../../lib/proxy/CaddyDriver.ts";
import { freePort, uniquePrefix, waitFor } from "../support/podman.ts";
import { startVictoriaLogs, type RealVictoriaLogs } from "../support/victoriaLogs.ts";

// A real Caddy whose config has no logging at all, the agent's Caddy driver configuring the access
// log of its routes, and a real VictoriaLogs the lines are queried back from.
const dir = mkdtempSync(join(tmpdir(), "access-log-it-"));
const accessLog = join(dir, "access.log");
const prefix = uniquePrefix("al");
let vl: RealVictoriaLogs;
let caddy: ReturnType<typeof spawn> | undefined;
let httpPort: number;
let driver: CaddyDriver;
const backends: Array<ReturnType<typeof Bun.serve>> = [];

beforeAll(async () => {
  vl = await startVictoriaLogs();
  const admin = await freePort();
  httpPort = await freePort();
  const config = {
    admin: { listen: `127.0.0.1:${admin}` },
    apps: {
      http: {
        servers: {
          srv0: {
            listen: [`127.0.0.1:${httpPort}`],
            automatic_https: { disable: true },
            routes: [{ match: [{ host: ["operator.test"] }], handle: [{ handler: "static_response", body: "operator" }], terminal: true }],
          },
        },
      },
    },
  };
  writeFileSync(join(dir, "caddy.json"), JSON.stringify(config));
  caddy = spawn("caddy", ["run", "--config", join(dir, "caddy.json")]);
  caddy.catch(() => undefined);
  driver = new CaddyDriver({ adminUrl: `http://127.0.0.1:${admin}`, accessLogFile: accessLog });
  await waitFor(() => driver.reachable(), 15_000, "caddy's admin API");
});

afterAll(async () => {
  caddy?.kill("SIGTERM");
  await Promise.race([caddy?.catch(() => undefined), Bun.sleep(5000)]);
  for (const b of backends) b.stop(true);
  await vl?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function backend(status: number): string {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("x".repeat(10), { status }) });
  backends.push(server);
  return `127.0.0.1:${server.port}`;
}

async function get(host: string, path: string): Promise<number> {
  const res = await request(`http://127.0.0.1:${httpPort}${path}`, { headers: { host }, headersTimeout: 5000, bodyTimeout: 5000, reset: true });
  await res.body.text();
  return res.statusCode;
}

describe("proxy access logs (real Caddy, real VictoriaLogs)", () => {
  test("requests through the agent's routes arrive as log_type http with their service_id and status; other hosts' do not", async () => {
    const svcA = `${prefix}-a`;
    const svcB = `${prefix}-b`;
    await driver.apply(
      [
        { id: `${prefix}-ra`, domain: "a.test", upstreams: [backend(200)], serviceId: svcA },
        { id: `${prefix}-rb`, domain: "b.test", upstreams: [backend(404)], serviceId: svcB },
      ],
      [],
    );
    const shipper = new VictoriaLogsShipper({ endpoint: vl.url, flushIntervalMs: 100 });
    const access = new AccessLogShipper({ file: accessLog, format: "caddy", shipper, pollIntervalMs: 50 });
    try {
      expect(await get("a.test", "/one?token=s3cret")).toBe(200);
      expect(await get("a.test", "/two")).toBe(200);
      expect(await get("b.test", "/missing")).toBe(404);
      expect(await get("operator.test", "/")).toBe(200);
      expect(await get("b.test", "/again")).toBe(404);
      await waitFor(() => access.stats().shipped >= 4, 20_000, "four access-log lines");
      await shipper.flush();

      const a = await vl.waitForRows(`log_type:http service_id:"${svcA}" status:200 method:GET`, 2, 20_000);
      expect(a.map((r) => r.service_id)).toEqual([svcA, svcA]);
      expect(a.every((r) => r.status === "200" && r.method === "GET" && r.log_type === "http")).toBe(true);
      const paths = (await vl.query(`service_id:"${svcA}" path:*`)).map((r) => r.path).sort();
      expect(paths).toEqual(["/one", "/two"]);
      const b = await vl.waitForRows(`log_type:http service_id:"${svcB}" status:404 host:"b.test"`, 2, 20_000);
      expect(b.map((r) => r.host)).toEqual(["b.test", "b.test"]);
      const detail = await vl.query(`service_id:"${svcB}" duration_ms:* bytes:* client_ip:*`);
      expect(detail).toHaveLength(2);
      for (const row of detail) {
        expect(Number(row.bytes)).toBe(10);
        expect(row.client_ip).toBe("127.0.0.1");
        expect(Number(row.duration_ms)).toBeGreaterThanOrEqual(0);
      }
      expect(await vl.query('log_type:http host:"operator.test"')).toEqual([]);
      expect(JSON.stringify(await vl.query("log_type:http"))).not.toContain("s3cret");
      expect(access.stats()).toEqual({ shipped: 4, unparsable: 0 });
    } finally {
      access.stop();
      await shipper.close();
    }
  }, 60_000);

  test("Traefik's JSON access log file: shipped with its service id, a broken line counted and skipped, a rotation followed", async () => {
    const file = join(dir, "traefik-access.log");
    const svc = `${prefix}-t`;
    const entry = (path: string, status: number) =>
      JSON.stringify({ ClientHost: "10.1.2.3", DownstreamContentSize: 7, DownstreamStatus: status, Duration: 1_500_000, RequestHost: "t.test", RequestMethod: "GET", RequestPath: path, StartUTC: new Date().toISOString(), "downstream_X-Techulus-Service-Id": svc }) + "\n";
    writeFileSync(file, entry("/before-start", 200));
    const shipper = new VictoriaLogsShipper({ endpoint: vl.url, flushIntervalMs: 100 });
    const access = new AccessLogShipper({ file, format: "traefik", shipper, pollIntervalMs: 50 });
    try {
      appendFileSync(file, entry("/one", 200) + "{ not an access log entry\n" + entry("/two", 502));
      await waitFor(() => access.stats().shipped >= 2, 20_000, "two lines");
      renameSync(file, `${file}.1`);
      appendFileSync(`${file}.1`, entry("/late-in-old-file", 200));
      writeFileSync(file, entry("/three", 200));
      await waitFor(() => access.stats().shipped >= 4, 20_000, "the lines around the rotation");
      await shipper.flush();
      const rows = await vl.waitForRows(`log_type:http service_id:"${svc}" path:*`, 4, 20_000);
      expect(rows.map((r) => r.path).sort()).toEqual(["/late-in-old-file", "/one", "/three", "/two"]);
      expect((await vl.query(`service_id:"${svc}" status:502`)).map((r) => r.status)).toEqual(["502"]);
      expect(access.stats()).toEqual({ shipped: 4, unparsable: 1 });
    } finally {
      access.stop();
      await shipper.close();
    }
  }, 60_000);
});
