/**
 * The network plane checks of `agent doctor` against the real components, each broken for real
 * and each fix proven by running the check again: the agent's dnsmasq (stopped), a wireguard-go
 * interface and its peer (a peer removed with `wg`), the route to the peer's containers (deleted
 * with `ip route`), Caddy (a route deleted through its admin API) and Traefik's dynamic folder (a
 * corrupted file; Traefik itself cannot be installed here).
 *
 * The node's interface lives in the host's namespace (doctor probes the host, as the agent
 * does) under a name of this run; its peer is a second wireguard-go interface of this run with no
 * address and no routes, reached over loopback, so handshakes really happen. The peer's subnet
 * 10.200.M.0/24 is one no podman network or route uses.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { DnsmasqDriver } from "../../lib/dns/DnsmasqDriver.ts";
import type { Check, CheckResult } from "../../lib/doctor/Check.ts";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { dnsCheck, proxyCheck, routesCheck, wireguardCheck } from "../../lib/doctor/networkChecks.ts";
import { run } from "../../lib/exec.ts";
import { request } from "../../lib/http/undici.ts";
import { runAgentCli } from "../support/agentBinary.ts";
import { startCaddy, stopCaddy, type RunningCaddy } from "../support/caddy.ts";
import { doctorContext, registeredDataDir } from "../support/doctorFixtures.ts";
import { freeSubnetId } from "../support/isolatedPodman.ts";
import { freePort, processesWhere, servicePids, waitFor } from "../support/podman.ts";

const tag = `tdn${randomBytes(3).toString("hex")}`;
const ifNode = `${tag}n`;
const ifPeer = `${tag}p`;
const root = mkdtempSync(join(tmpdir(), `${tag}-`));
chmodSync(root, 0o755);
const dataDirPath = join(root, "data");
const dnsRunDir = join(root, "dns");
const stateFile = join(root, "state.json");
const peerKeyFile = join(root, "peer.key");
const peerKey = generateWireGuardPrivateKey();
const peerPub = wireGuardPublicKey(peerKey);

let subnetId: number;
let peerSubnet: string;
let nodePort: number;
let peerPort: number;
let dnsPort: number;
let nodePub: string;
let caddy: RunningCaddy | undefined;
let caddyAdmin: number;
let caddyHttp: number;

const ROUTE = { id: `${tag}-web`, domain: `${tag}.example.test`, upstreams: ["127.0.0.1:9"], serviceId: `${tag}-svc` };

async function freeUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

function writeState(): void {
  writeFileSync(
    stateFile,
    JSON.stringify({
      containers: [],
      dns: { records: [{ name: `${tag}.internal`, ips: [`10.200.${subnetId}.5`] }] },
      wireguard: { peers: [{ publicKey: peerPub, allowedIps: `10.100.250.0/24,${peerSubnet}`, endpoint: `127.0.0.1:${peerPort}` }] },
      caddy: { routes: [ROUTE] },
    }),
  );
}

function context(flags: Record<string, unknown> = {}): DoctorContext {
  return doctorContext(dataDirPath, {
    state: stateFile,
    flags: { dnsPort, dnsRunDir, wireguardInterface: ifNode, wireguardPort: nodePort, accessLog: join(root, "access.log"), ...flags },
  });
}

/** A fresh look, as a re-check after a fix does. */
async function check(c: Check<DoctorContext>, ctx: DoctorContext): Promise<CheckResult> {
  ctx.refresh();
  return c.run(ctx);
}

async function applyFix(result: CheckResult): Promise<void> {
  if (!result.fix?.apply) throw new Error(`${result.id} proposes no automatic fix: ${JSON.stringify(result)}`);
  await result.fix.apply();
}

async function latestHandshake(): Promise<number> {
  const res = await run("wg", ["show", ifNode, "latest-handshakes"], { allowFailure: true, timeoutMs: 5000 });
  const line = res.stdout.split("\n").find((l) => l.startsWith(peerPub));
  return Number(line?.split("\t")[1] ?? 0);
}

async function routeVia(cidr: string): Promise<string> {
  return (await run("ip", ["-4", "-o", "route", "show", cidr], { timeoutMs: 5000 })).stdout.trim();
}

async function startNodeCaddy(): Promise<void> {
  caddyAdmin = await freePort();
  caddyHttp = await freePort();
  caddy = await startCaddy(root, { admin: { listen: `127.0.0.1:${caddyAdmin}` }, apps: { http: { servers: { srv0: { listen: [`127.0.0.1:${caddyHttp}`], automatic_https: { disable: true }, routes: [] } } } } }, caddyAdmin);
}

function stopWireGuardGo(name: string): void {
  for (const pid of processesWhere(({ argv }) => argv[0]?.endsWith("wireguard-go") === true && argv.includes(name))) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
}

beforeAll(async () => {
  subnetId = await freeSubnetId();
  let peerId = await freeSubnetId();
  while (peerId === subnetId) peerId = await freeSubnetId();
  peerSubnet = `10.200.${peerId}.0/24`;
  [nodePort, peerPort, dnsPort] = [await freeUdpPort(), await freeUdpPort(), await freePort()];
  const dataDir = registeredDataDir(dataDirPath, subnetId);
  nodePub = wireGuardPublicKey(dataDir.readText(dataDir.wireguardKeyFile)!.trim());
  writeState();
  // The peer: a wireguard-go interface of this run without addresses or routes; only its UDP socket on loopback matters.
  writeFileSync(peerKeyFile, `${peerKey}\n`, { mode: 0o600 });
  await run("wireguard-go", [ifPeer], { timeoutMs: 15_000, env: { LOG_LEVEL: undefined, WG_PROCESS_FOREGROUND: undefined } });
  await run("wg", ["set", ifPeer, "listen-port", String(peerPort), "private-key", peerKeyFile, "peer", nodePub, "endpoint", `127.0.0.1:${nodePort}`, "allowed-ips", `10.100.${subnetId}.1/32`]);
  await run("ip", ["link", "set", "dev", ifPeer, "up"]);
}, 60_000);

afterAll(async () => {
  await new DnsmasqDriver({ runDir: dnsRunDir, listenAddresses: ["127.0.0.1"], port: dnsPort }).stop();
  await stopCaddy(caddy);
  for (const name of [ifNode, ifPeer]) {
    stopWireGuardGo(name);
    await run("ip", ["link", "del", "dev", name], { allowFailure: true, timeoutMs: 5000 });
  }
  // The CLI run's podman service (doctor starts one in the data dir when no socket answers).
  for (const pid of servicePids(join(dataDirPath, "podman.sock"))) process.kill(pid, "SIGTERM");
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describe("network.wireguard and network.routes on wireguard-go", () => {
  test("a missing interface fails; the fix creates it with the registered address, the peer and its route; after the handshake all is ok", async () => {
    const ctx = context();
    try {
      const absent = await check(wireguardCheck, ctx);
      expect(absent.status).toBe("fail");
      expect(absent.detail).toContain(`interface ${ifNode} does not exist`);
      expect((await check(routesCheck, ctx)).status).toBe("skip");
      await applyFix(absent);

      await waitFor(async () => (await latestHandshake()) > 0, 20_000, "the first handshake with the peer");
      const ok = await check(wireguardCheck, ctx);
      expect(ok.status).toBe("ok");
      expect(ok.detail).toContain(`${ifNode}: up, 10.100.${subnetId}.1/16, 1 peer(s), 1 expected`);
      expect(ok.detail).toMatch(new RegExp(`peer ${peerPub.replace(/[+/=]/g, "\\$&")} \\(10\\.100\\.250\\.0/24, ${peerSubnet.replace(/\./g, "\\.")}; endpoint 127\\.0\\.0\\.1:${peerPort}\\): last handshake \\d+ s ago`));
      const routes = await check(routesCheck, ctx);
      expect(routes.status).toBe("ok");
      expect(routes.detail).toContain(`${peerSubnet} (peer ${peerPub}) goes through ${ifNode}`);
      // 10.100.250.0/24 is inside the interface's own 10.100.0.0/16: no route of its own.
      expect(routes.detail.split("\n")[0]).toBe("1 route(s) wanted for 1 expected peer(s) (allowed IPs outside " + `10.100.${subnetId}.1/16)`);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  test("a peer removed with wg fails, naming it; the fix puts it back", async () => {
    const ctx = context();
    try {
      await run("wg", ["set", ifNode, "peer", peerPub, "remove"]);
      const missing = await check(wireguardCheck, ctx);
      expect(missing.status).toBe("fail");
      expect(missing.detail).toContain(`peer ${peerPub} (10.100.250.0/24, ${peerSubnet}; endpoint 127.0.0.1:${peerPort}) is missing from the interface`);
      expect(missing.fix?.apply).toBeDefined();
      await applyFix(missing);
      await waitFor(async () => (await latestHandshake()) > 0, 20_000, "the handshake after the fix");
      const after = await check(wireguardCheck, ctx);
      expect(after.status).toBe("ok");
      expect(after.detail).not.toContain("missing");
    } finally {
      await ctx.close();
    }
  }, 60_000);

  test("a deleted route fails, naming the subnet and the peer; the fix restores it", async () => {
    const ctx = context();
    try {
      expect(await routeVia(peerSubnet)).toContain(`dev ${ifNode}`);
      await run("ip", ["route", "del", peerSubnet, "dev", ifNode]);
      const gone = await check(routesCheck, ctx);
      expect(gone.status).toBe("fail");
      expect(gone.detail).toContain(`no route to ${peerSubnet} (peer ${peerPub}'s containers) through ${ifNode}`);
      await applyFix(gone);
      expect(await routeVia(peerSubnet)).toContain(`dev ${ifNode}`);
      expect((await check(routesCheck, ctx)).status).toBe("ok");
    } finally {
      await ctx.close();
    }
  }, 60_000);

  test("--wireguard off, or no registration, skips both", async () => {
    const ctx = context({ wireguard: "off" });
    expect((await check(wireguardCheck, ctx)).detail).toBe("--wireguard off leaves WireGuard alone");
    expect((await check(routesCheck, ctx)).status).toBe("skip");
    await ctx.close();
  });
});

describe("network.dns on the agent's dnsmasq", () => {
  test("dnsmasq not running fails; the fix starts it as the agent does; a stopped dnsmasq fails again and is started again", async () => {
    const ctx = context();
    try {
      const before = await check(dnsCheck, ctx);
      expect(before.status).toBe("fail");
      expect(before.detail).toContain("the agent's dnsmasq is not running");
      await applyFix(before);

      const ok = await check(dnsCheck, ctx);
      expect(ok.status).toBe("ok");
      expect(ok.detail).toContain(`127.0.0.1 port ${dnsPort}: ${tag}.internal A → 10.200.${subnetId}.5`);
      // The WireGuard address (the interface came up in the tests above), where containers ask.
      expect(ok.detail).toContain(`10.100.${subnetId}.1 port ${dnsPort}: ${tag}.internal A → 10.200.${subnetId}.5`);

      const driver = new DnsmasqDriver({ runDir: dnsRunDir, listenAddresses: ["127.0.0.1"], port: dnsPort });
      const pid = driver.runningPid()!;
      process.kill(pid, "SIGTERM");
      await waitFor(() => driver.runningPid() === undefined, 10_000, "dnsmasq to exit");
      const stopped = await check(dnsCheck, ctx);
      expect(stopped.status).toBe("fail");
      expect(stopped.detail).toContain("not running");
      await applyFix(stopped);
      const again = await check(dnsCheck, ctx);
      expect(again.status).toBe("ok");
      expect(driver.runningPid()).not.toBe(pid);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  test("a record the state no longer matches fails, naming name, answer and expectation; --dns-port 0 skips", async () => {
    const ctx = context();
    try {
      writeFileSync(stateFile, JSON.stringify({ containers: [], dns: { records: [{ name: `${tag}.internal`, ips: [`10.200.${subnetId}.6`] }] } }));
      const wrong = await check(dnsCheck, ctx);
      expect(wrong.status).toBe("fail");
      expect(wrong.detail).toContain(`127.0.0.1 port ${dnsPort}: ${tag}.internal A answered 10.200.${subnetId}.5, expected 10.200.${subnetId}.6`);
      await applyFix(wrong);
      // dnsmasq re-reads its hosts folder by itself; the check sees the new record once it has.
      await waitFor(async () => (await check(dnsCheck, ctx)).status === "ok", 10_000, "dnsmasq to serve the new record");
      // And back to the first state's record, for the tests below.
      writeState();
      await applyFix(await check(dnsCheck, ctx));
      await waitFor(async () => (await check(dnsCheck, ctx)).status === "ok", 10_000, "dnsmasq to serve the first record again");
    } finally {
      writeState();
      await ctx.close();
    }
    const off = context({ dnsPort: 0 });
    expect(await check(dnsCheck, off)).toMatchObject({ status: "skip", detail: "--dns-port 0: internal DNS is off" });
    await off.close();
  }, 60_000);
});

describe("network.proxy", () => {
  test("Caddy: a missing route fails; the fix applies it; a route deleted through the admin API fails again and comes back", async () => {
    await startNodeCaddy();
    const ctx = context({ proxy: true, proxyDriver: "caddy", caddyAdminUrl: `http://127.0.0.1:${caddyAdmin}` });
    try {
      const before = await check(proxyCheck, ctx);
      expect(before.status).toBe("fail");
      expect(before.detail).toContain(`route ${ROUTE.id} (${ROUTE.domain} → 127.0.0.1:9) is missing`);
      await applyFix(before);
      const ok = await check(proxyCheck, ctx);
      expect(ok.status).toBe("ok");
      expect(ok.detail).toContain("all 1 expected route(s) present");

      const del = await request(`http://127.0.0.1:${caddyAdmin}/id/techulus-${ROUTE.id}`, { method: "DELETE", reset: true });
      await del.body.text();
      expect(del.statusCode).toBe(200);
      const deleted = await check(proxyCheck, ctx);
      expect(deleted.status).toBe("fail");
      expect(deleted.detail).toContain(`route ${ROUTE.id} (${ROUTE.domain} → 127.0.0.1:9) is missing`);
      await applyFix(deleted);
      expect((await check(proxyCheck, ctx)).status).toBe("ok");

      await stopCaddy(caddy);
      caddy = undefined;
      const down = await check(proxyCheck, ctx);
      expect(down.status).toBe("fail");
      expect(down.detail).toContain(`Caddy's admin API does not answer: cannot reach Caddy's admin API at http://127.0.0.1:${caddyAdmin}`);
      expect(down.fix?.apply).toBeUndefined();
    } finally {
      await ctx.close();
    }
  }, 60_000);

  test("Traefik: a missing folder and a corrupted routes.yaml fail; the fix rewrites them; an operator's broken file is named for a person", async () => {
    const dynamicDir = join(root, "traefik", "dynamic");
    const ctx = context({ proxy: true, proxyDriver: "traefik", traefikDynamicDir: dynamicDir });
    try {
      const absent = await check(proxyCheck, ctx);
      expect(absent.status).toBe("fail");
      expect(absent.detail).toBe(`Traefik's dynamic folder ${dynamicDir} does not exist`);
      await applyFix(absent);
      const ok = await check(proxyCheck, ctx);
      expect(ok.status).toBe("ok");
      expect(ok.detail).toContain("1 managed route(s) in routes.yaml");

      writeFileSync(join(dynamicDir, "routes.yaml"), "http:\n  routers: [unclosed\n");
      const corrupt = await check(proxyCheck, ctx);
      expect(corrupt.status).toBe("fail");
      expect(corrupt.detail).toContain(`${join(dynamicDir, "routes.yaml")} does not parse`);
      expect(corrupt.detail).toContain(`route ${ROUTE.id} (${ROUTE.domain} → 127.0.0.1:9) is missing`);
      await applyFix(corrupt);
      expect((await check(proxyCheck, ctx)).status).toBe("ok");

      writeFileSync(join(dynamicDir, "operator.yml"), "http: {routers: [\n");
      const theirs = await check(proxyCheck, ctx);
      expect(theirs.status).toBe("fail");
      expect(theirs.detail).toContain(`${join(dynamicDir, "operator.yml")} does not parse (not the agent's file: correct it by hand)`);
      expect(theirs.fix?.apply).toBeUndefined();
    } finally {
      await ctx.close();
    }
  });

  test("a worker node skips it", async () => {
    const ctx = context();
    expect(await check(proxyCheck, ctx)).toMatchObject({ status: "skip", detail: "not a proxy node (no --proxy)" });
    await ctx.close();
  });
});

describe("through the compiled CLI", () => {
  test("agent doctor --json reports the network checks with their status", async () => {
    mkdirSync(join(root, "cli"), { recursive: true });
    const res = await runAgentCli(
      ["doctor", "--json", "--data-dir", dataDirPath, "--state", stateFile, "--dns-port", String(dnsPort), "--dns-run-dir", dnsRunDir, "--wireguard-interface", ifNode, "--wireguard-port", String(nodePort)],
      { timeoutMs: 120_000 },
    );
    const report = JSON.parse(res.stdout) as { checks: Array<{ id: string; status: string; detail: string }> };
    const byId = new Map(report.checks.map((c) => [c.id, c]));
    const shown = JSON.stringify(report.checks.filter((c) => c.id.startsWith("network.")), null, 2);
    if (byId.get("network.dns")?.status !== "ok") console.error(shown);
    expect(byId.get("network.dns")?.status).toBe("ok");
    // The handshake of the tests above is kept fresh by the agent's keepalive.
    expect(byId.get("network.wireguard")?.status).toBe("ok");
    expect(byId.get("network.wireguard")?.detail).toContain(`peer ${peerPub}`);
    expect(byId.get("network.routes")?.status).toBe("ok");
    expect(byId.get("network.proxy")?.status).toBe("skip");
  }, 150_000);
});
