/** What the benchmarks share: subnets no network uses, expected states, one timed agent pass, tables. */
import { join, resolve } from "node:path";
import { run } from "../lib/exec.ts";
import { podman as hostPodman } from "../test/support/podman.ts";

export const ROOT = resolve(import.meta.dir, "..");
/** The binary measured: dist/agent, or BENCH_AGENT (to compare two builds). */
export const AGENT = process.env.BENCH_AGENT ?? join(ROOT, "dist/agent");
export const WEB_IMAGE = "localhost/hello-web:test";

/** 10.200.N.0/24 subnets that neither this machine's Podman networks nor its routes (other Podman worlds) use. */
export async function unusedSubnetIds(count: number): Promise<number[]> {
  const networks = await hostPodman(["network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"]);
  const routes = (await run("ip", ["-4", "route", "show"])).stdout;
  const used = `${networks}\n${routes}`;
  const out: number[] = [];
  for (let n = 250; n > 20 && out.length < count; n--) if (!used.includes(`10.200.${n}.`)) out.push(n);
  if (out.length < count) throw new Error("not enough free 10.200.N.0/24 subnets");
  return out;
}

/** `count` web containers on 10.200.<subnetId>.10+, named <prefix>-<tag>-<i>. */
export function expectedContainers(prefix: string, tag: string, count: number, subnetId: number) {
  return {
    containers: Array.from({ length: count }, (_, i) => ({
      deploymentId: `${prefix}-${tag}-dep${i}`,
      serviceId: `${prefix}-${tag}-svc${i}`,
      serviceName: `svc${i}`,
      name: `${prefix}-${tag}-${i}`,
      image: WEB_IMAGE,
      ipAddress: `10.200.${subnetId}.${10 + i}`,
      ports: [],
      env: {},
      healthCheck: null,
      volumes: [],
    })),
  };
}

export function maxRssMb(proc: { resourceUsage(): { maxRSS: number } | undefined }): number {
  return (proc.resourceUsage()?.maxRSS ?? 0) / 1024 / 1024;
}

/** One `agent reconcile --once --json --state` pass: wall time, changes applied, Podman API calls, peak RSS. */
export async function agentReconcile(dataDir: string, statePath: string, network: string, subnetId: number, env: Record<string, string>) {
  const t0 = performance.now();
  const proc = Bun.spawn([AGENT, "reconcile", "--once", "--json", "--state", statePath, "--data-dir", dataDir, "--network-name", network, "--subnet-id", String(subnetId), "--dns-port", "0"], {
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

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export function printTable(title: string, rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`\n${title}`);
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join(" | "));
}
