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
import { join } from "node:path";
import { startIsolatedPodman, type IsolatedPodman } from "../test/support/isolatedPodman.ts";
import { cleanupPodman, podman as hostPodman, uniquePrefix } from "../test/support/podman.ts";
import { AGENT, WEB_IMAGE, agentReconcile as agentPass, expectedContainers, maxRssMb, printTable, unusedSubnetIds } from "./support.ts";

const IMAGE = WEB_IMAGE;
const prefix = uniquePrefix("bench");
const work = mkdtempSync(join(tmpdir(), "bench-converge-"));
// Both sides run against one private container store: the agent owns every managed container it
// sees, so a shared store would let it remove other containers (and time that too).
let store: IsolatedPodman;
const podman = (args: string[]) => store.podman(args);
const expected = (tag: string, count: number, subnetId: number) => expectedContainers(prefix, tag, count, subnetId);
const agentReconcile = (statePath: string, network: string, subnetId: number, env: Record<string, string>) =>
  agentPass(join(work, "data"), statePath, network, subnetId, env);

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
      `agent --version: ${Math.round(floor.maxRssMb)} MiB`,
      `20 deploys: ${Math.round(agent20.maxRssMb)} MiB, idle 100: ${Math.round(idle[100]!.maxRssMb)} MiB`,
      `ratio idle 100 / start alone: ${(idle[100]!.maxRssMb / floor.maxRssMb).toFixed(2)}`,
    ]);

    printTable(`bench/converge (${new Date().toISOString()}, ${(await hostPodman(["--version"])).trim()})`, rows);
  } finally {
    await store.stop();
    await cleanupPodman(prefix);
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
