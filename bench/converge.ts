/**
 * bench/converge: how fast `agent reconcile --once` converges a node, against the floor measured
 * in the same run on the same machine.
 *
 *  1. 20 new deployments through `dist/agent reconcile --once --state` versus 20 sequential
 *     `podman run -d` of the same image with the same options (name, labels, network, static IP,
 *     restart policy). Target: ratio ≤ 1.5.
 *  2. An idle pass (nothing to change) over 10 and over 100 managed containers: wall time and the
 *     number of Podman API calls. Target: the same call count for 10 and 100.
 *
 * Run as root after `bash install/setup-host.sh` and a build: node_modules/.bin/bun bench/converge.ts
 * Prints a table; never fails on a time.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startIsolatedPodman, type IsolatedPodman } from "../test/support/isolatedPodman.ts";
import { cleanupPodman, podman as hostPodman, uniquePrefix } from "../test/support/podman.ts";

const ROOT = resolve(import.meta.dir, "..");
const AGENT = join(ROOT, "dist/agent");
const IMAGE = "localhost/hello-web:test";
const prefix = uniquePrefix("bench");
const work = mkdtempSync(join(tmpdir(), "bench-converge-"));
// Both sides run against one private container store: the agent owns every managed container it
// sees, so a shared store would let it remove other containers (and time that too).
let store: IsolatedPodman;
const podman = (args: string[]) => store.podman(args);

async function unusedSubnetIds(count: number): Promise<number[]> {
  const used = await hostPodman(["network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"]);
  const out: number[] = [];
  for (let n = 250; n > 20 && out.length < count; n--) if (!used.includes(`10.200.${n}.`)) out.push(n);
  if (out.length < count) throw new Error("not enough free 10.200.N.0/24 subnets");
  return out;
}

function expected(tag: string, count: number, subnetId: number) {
  return {
    containers: Array.from({ length: count }, (_, i) => ({
      deploymentId: `${prefix}-${tag}-dep${i}`,
      serviceId: `${prefix}-${tag}-svc${i}`,
      serviceName: `svc${i}`,
      name: `${prefix}-${tag}-${i}`,
      image: IMAGE,
      ipAddress: `10.200.${subnetId}.${10 + i}`,
      ports: [],
      env: {},
      healthCheck: null,
      volumes: [],
    })),
  };
}

async function agentReconcile(statePath: string, network: string, subnetId: number, env: Record<string, string>) {
  const t0 = performance.now();
  const proc = Bun.spawn([AGENT, "reconcile", "--once", "--json", "--state", statePath, "--data-dir", join(work, "data"), "--network-name", network, "--subnet-id", String(subnetId), "--dns-port", "0"], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`agent reconcile exited ${code}: ${err}`);
  const json = JSON.parse(out) as { applied: unknown[]; podmanApiCalls: number };
  return { ms, applied: json.applied.length, apiCalls: json.podmanApiCalls, maxRssMb: maxRssMb(proc) };
}

function maxRssMb(proc: { resourceUsage(): { maxRSS: number } | undefined }): number {
  return Math.round((proc.resourceUsage()?.maxRSS ?? 0) / 1024 / 1024);
}

async function podmanRunFloor(count: number, network: string, subnetId: number): Promise<number> {
  await store.createNetwork(network, subnetId);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    await podman([
      "run", "-d",
      "--name", `${prefix}-floor-${i}`,
      "--label", `techulus.service.id=${prefix}-floor-svc${i}`,
      "--label", `techulus.deployment.id=${prefix}-floor-dep${i}`,
      "--label", `techulus.service.name=svc${i}`,
      "--network", network,
      "--ip", `10.200.${subnetId}.${10 + i}`,
      "--restart", "on-failure:5",
      IMAGE,
    ]);
  }
  return performance.now() - t0;
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main() {
  store = await startIsolatedPodman({ images: [IMAGE] });
  const env = store.env;
  try {
    const [floorSubnet, agentSubnet, idle10Subnet, idle100Subnet] = await unusedSubnetIds(4);
    const rows: string[][] = [];

    const floorMs = await podmanRunFloor(20, `${prefix}-floor`, floorSubnet!);
    // They carry the managed label: left in place the agent would (rightly) remove them as orphans.
    await podman(["rm", "-f", "-t", "0", ...Array.from({ length: 20 }, (_, i) => `${prefix}-floor-${i}`)]);
    await store.createNetwork(`${prefix}-a`, agentSubnet!);
    await store.createNetwork(`${prefix}-i10`, idle10Subnet!);
    await store.createNetwork(`${prefix}-i100`, idle100Subnet!);
    const state20 = join(work, "20.json");
    writeFileSync(state20, JSON.stringify(expected("a", 20, agentSubnet!)));
    const agent20 = await agentReconcile(state20, `${prefix}-a`, agentSubnet!, env);
    rows.push(["20 new deployments", `podman run -d ×20: ${fmt(floorMs)}`, `agent: ${fmt(agent20.ms)} (${agent20.applied} applied)`, `ratio ${(agent20.ms / floorMs).toFixed(2)} (target ≤ 1.5)`]);

    const idle: Record<number, { ms: number; apiCalls: number; maxRssMb: number }> = {};
    for (const [count, subnet] of [[10, idle10Subnet!], [100, idle100Subnet!]] as const) {
      const path = join(work, `idle${count}.json`);
      writeFileSync(path, JSON.stringify(expected(`i${count}`, count, subnet)));
      await agentReconcile(path, `${prefix}-i${count}`, subnet, env); // deploy them first
      const pass = await agentReconcile(path, `${prefix}-i${count}`, subnet, env);
      if (pass.applied !== 0) throw new Error(`idle pass over ${count} applied ${pass.applied} changes`);
      idle[count] = pass;
    }
    const floor = await (async () => {
      const t0 = performance.now();
      const proc = Bun.spawn([AGENT, "--version"], { stdout: "ignore" });
      await proc.exited;
      return { ms: performance.now() - t0, maxRssMb: maxRssMb(proc) };
    })();
    rows.push(["idle pass, 10 containers", `wall ${fmt(idle[10]!.ms)}`, `podman API calls: ${idle[10]!.apiCalls}`, `process start alone: ${fmt(floor.ms)}`]);
    rows.push(["idle pass, 100 containers", `wall ${fmt(idle[100]!.ms)}`, `podman API calls: ${idle[100]!.apiCalls}`, `calls 100 vs 10: ${idle[100]!.apiCalls === idle[10]!.apiCalls ? "same" : "DIFFERENT"}`]);
    rows.push([
      "peak memory (max RSS)",
      `agent --version: ${floor.maxRssMb} MiB`,
      `20 deploys: ${agent20.maxRssMb} MiB, idle 100: ${idle[100]!.maxRssMb} MiB`,
      `ratio idle 100 / start alone: ${(idle[100]!.maxRssMb / floor.maxRssMb).toFixed(2)}`,
    ]);

    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    console.log(`\nbench/converge (${new Date().toISOString()}, ${(await hostPodman(["--version"])).trim()})`);
    for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join(" | "));
  } finally {
    await store.stop();
    await cleanupPodman(prefix);
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
