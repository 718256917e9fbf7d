import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DnsmasqDriver } from "../../lib/dns/DnsmasqDriver.ts";
import { run, spawn } from "../../lib/exec.ts";
import { request } from "../../lib/http/undici.ts";
import { CaddyDriver } from "../../lib/proxy/CaddyDriver.ts";
import { REPO_ROOT, runAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { freePort, waitFor } from "../support/podman.ts";

/**
 * The README's main job, on loopback ports: examples/hello-web.json through `agent reconcile
 * --once --proxy` deploys the container, serves its DNS record from dnsmasq and routes its domain
 * through a real Caddy. Only addresses, ports and paths are moved to this test's own.
 */
const tmp = tempDir("example-e2e-");
const dataDir = join(tmp.path, "data");
const dnsRunDir = join("/tmp", `agent-example-dns-${process.pid}`);
let world: IsolatedPodman;
let caddy: ReturnType<typeof spawn> | undefined;
let subnet: number;
let ports: { admin: number; http: number; dns: number; web: number };

beforeAll(async () => {
  subnet = await freeSubnetId();
  world = await startIsolatedPodman({ images: ["localhost/hello-web:test"], network: { subnetId: subnet } });
  ports = { admin: await freePort(), http: await freePort(), dns: await freePort(), web: await freePort() };
  const config = {
    admin: { listen: `127.0.0.1:${ports.admin}` },
    apps: { http: { servers: { srv0: { listen: [`127.0.0.1:${ports.http}`], automatic_https: { disable: true }, routes: [] } } } },
  };
  writeFileSync(join(tmp.path, "caddy.json"), JSON.stringify(config));
  caddy = spawn("caddy", ["run", "--config", join(tmp.path, "caddy.json")]);
  caddy.catch(() => undefined);
  await waitFor(() => new CaddyDriver({ adminUrl: `http://127.0.0.1:${ports.admin}` }).reachable(), 15_000, "caddy");
  // dnsmasq runs as nobody: its folder must be reachable for it (mkdtemp folders are 0700).
  mkdirSync(dnsRunDir, { recursive: true });
  chmodSync(dnsRunDir, 0o755);
});

afterAll(async () => {
  await new DnsmasqDriver({ listenAddresses: ["127.0.0.1"], port: ports.dns, runDir: dnsRunDir }).stop().catch(() => undefined);
  caddy?.kill("SIGTERM");
  await world.stop();
  await run("rm", ["-rf", dnsRunDir]);
  tmp.cleanup();
});

test("examples/hello-web.json on a proxy node: the container, its *.internal record and its Caddy route all answer", async () => {
  const ip = `10.200.${subnet}.10`;
  const text = readFileSync(join(REPO_ROOT, "examples/hello-web.json"), "utf8")
    .replaceAll("10.200.1.10", ip)
    .replaceAll("/var/lib/techulus-agent/", `${dataDir}/`)
    .replace('"hostPort": 8088', `"hostPort": ${ports.web}`);
  const state = join(tmp.path, "hello-web.json");
  writeFileSync(state, text);
  const res = await runAgentCli(
    ["reconcile", "--once", "--proxy", "--state", state, "--data-dir", dataDir, "--caddy-admin-url", `http://127.0.0.1:${ports.admin}`, "--dns-port", String(ports.dns), "--dns-run-dir", dnsRunDir],
    { env: world.env, timeoutMs: 120_000 },
  );
  expect(res.stderr).not.toContain("hello from the example");
  expect(res.exitCode).toBe(0);
  expect(res.stdout).toContain("converged: 3 change(s)");

  const viaProxy = async () => {
    const r = await request(`http://127.0.0.1:${ports.http}/`, { headers: { host: "hello.localhost" }, headersTimeout: 3000, bodyTimeout: 3000 });
    return r.body.text();
  };
  await waitFor(async () => (await viaProxy().catch(() => "")).includes("hello from a techulus-agent container"), 15_000, "the page through Caddy");
  expect(await fetch(`http://127.0.0.1:${ports.web}/`).then((r) => r.text())).toContain("hello from a techulus-agent container");
  const dig = await run("dig", ["+short", "@127.0.0.1", "-p", String(ports.dns), "hello.internal"]);
  expect(dig.stdout.trim()).toBe(ip);
  expect((await world.podman(["exec", "hello-example1", "sh", "-c", "echo $GREETING"])).trim()).toBe("hello from the example");

  const again = await runAgentCli(
    ["reconcile", "--once", "--proxy", "--state", state, "--data-dir", dataDir, "--caddy-admin-url", `http://127.0.0.1:${ports.admin}`, "--dns-port", String(ports.dns), "--dns-run-dir", dnsRunDir],
    { env: world.env },
  );
  expect(again.exitCode).toBe(0);
  expect(again.stdout).toContain("converged: 0 change(s)");
});
