/**
 * bench/footprint: how much time and memory the agent costs, each measure beside its floor measured
 * in the same run on the same machine, with the ratio and the budget (issue "Footprint"):
 *
 *   agent --version, agent --help   vs a Bun-compiled `console.log` binary (wall, peak RSS; medians of --runs)
 *   idle reconcile --once, 10 and 100 containers, Podman socket up   vs `podman ps -a --format json`
 *   agent run RSS over time with 20 containers, two redeployed every 5 min (sampled; --minutes N, default 2)
 *   the release binary's gzip size   vs the Bun runtime's (the floor binary gzipped)
 *
 * Run as root after `bash install/setup-host.sh` and a build: node_modules/.bin/bun bench/footprint.ts
 * [--runs N] [--minutes N]. Prints a table; never fails on a figure.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TestControlPlane } from "../test/support/TestControlPlane.ts";
import { startIsolatedPodman, type IsolatedPodman } from "../test/support/isolatedPodman.ts";
import { cleanupPodman, podman as hostPodman, uniquePrefix } from "../test/support/podman.ts";
import { AGENT, WEB_IMAGE, agentReconcile, expectedContainers, median, printTable, unusedSubnetIds } from "./support.ts";

const { values } = parseArgs({ options: { runs: { type: "string" }, minutes: { type: "string" } } });
const RUNS = Number(values.runs ?? 10);
const MINUTES = Number(values.minutes ?? 2);
const prefix = uniquePrefix("foot");
const work = mkdtempSync(join(tmpdir(), "bench-footprint-"));
const rows: string[][] = [["measure", "agent", "floor (same run)", "ratio", "budget", "met"]];

const ms = (v: number) => `${v.toFixed(0)} ms`;
const mib = (v: number) => `${v.toFixed(1)} MiB`;

function row(measure: string, agent: string, floor: string, ratio: number | undefined, budget: string, met: boolean | undefined) {
  rows.push([measure, agent, floor, ratio === undefined ? "—" : `${ratio.toFixed(2)}×`, budget, met === undefined ? "—" : met ? "yes" : "NO"]);
}

/**
 * Median wall time and peak RSS of `runs` runs of argv. The peak RSS is GNU time's (%M) in runs of
 * their own: a Bun child's resourceUsage() can report an earlier, bigger child's peak.
 */
async function measure(argv: string[], env?: Record<string, string>): Promise<{ ms: number; rss: number }> {
  const options = { stdout: "ignore", env: env ? { ...process.env, ...env } : undefined } as const;
  const walls: number[] = [];
  const rsses: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const proc = Bun.spawn(argv, { ...options, stderr: "ignore" });
    const code = await proc.exited;
    walls.push(performance.now() - t0);
    if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}`);
    const timed = Bun.spawn(["/usr/bin/time", "-f", "%M", ...argv], { ...options, stderr: "pipe" });
    const [stderr] = await Promise.all([new Response(timed.stderr).text(), timed.exited]);
    rsses.push(Number(stderr.trim().split("\n").at(-1)) / 1024);
  }
  return { ms: median(walls), rss: median(rsses) };
}

async function floorBinary(): Promise<string> {
  const source = join(work, "floor.ts");
  writeFileSync(source, 'console.log("0.0.0");\n');
  const outfile = join(work, "floor");
  const result = await Bun.build({ entrypoints: [source], compile: { outfile }, minify: true });
  if (!result.success) throw new Error("cannot compile the floor binary");
  return outfile;
}

/** The resident set of `pid` and what it is made of: the binary's own pages (file) and the heaps (anon), in MiB. */
function residentSet(pid: number): { rss: number; file: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb("VmRSS"), file: kb("RssFile"), anon: kb("RssAnon") };
}

async function startupRows(floor: string) {
  const f = await measure([floor]);
  for (const args of [["--version"], ["--help"]]) {
    const a = await measure([AGENT, ...args]);
    const ratio = a.ms / f.ms;
    const isVersion = args[0] === "--version";
    row(`agent ${args[0]} wall`, ms(a.ms), ms(f.ms), ratio, isVersion ? "≤ 3×" : "—", isVersion ? ratio <= 3 : undefined);
    row(`agent ${args[0]} peak RSS`, mib(a.rss), mib(f.rss), a.rss / f.rss, isVersion ? "≤ 35 MiB" : "—", isVersion ? a.rss <= 35 : undefined);
  }
}

async function idleReconcileRows(store: IsolatedPodman, subnets: number[]) {
  for (const [count, subnet] of [[10, subnets[0]!], [100, subnets[1]!]] as const) {
    const network = `${prefix}-i${count}`;
    await store.createNetwork(network, subnet);
    const state = join(work, `idle${count}.json`);
    writeFileSync(state, JSON.stringify(expectedContainers(prefix, `i${count}`, count, subnet)));
    const dataDir = join(work, `data${count}`);
    await agentReconcile(dataDir, state, network, subnet, store.env); // deploys them
    const passes: number[] = [];
    for (let i = 0; i < Math.max(3, Math.ceil(RUNS / 2)); i++) {
      const pass = await agentReconcile(dataDir, state, network, subnet, store.env);
      if (pass.applied !== 0) throw new Error(`the idle pass over ${count} applied ${pass.applied} changes`);
      passes.push(pass.ms);
    }
    const ps = await measure(["podman", "ps", "-a", "--format", "json"], store.env);
    const agentMs = median(passes);
    row(`idle reconcile --once, ${count} containers`, ms(agentMs), `podman ps: ${ms(ps.ms)}`, agentMs / ps.ms, "≤ 2×", agentMs / ps.ms <= 2);
  }
}

/**
 * `agent run` against a test control plane expecting 20 containers; RSS sampled every 10 s. Every
 * 5 minutes two containers are redeployed with a new secret env value (what grows with redeploys:
 * the redaction list, positions, followers).
 */
async function runRssRows(store: IsolatedPodman, subnet: number) {
  // The idle passes' containers would be orphans to this agent: it would spend the run removing them.
  const idle = (await store.ps()).filter((c) => c.Names.some((n) => n.startsWith(`${prefix}-i`))).map((c) => c.Id);
  if (idle.length > 0) await store.podman(["rm", "-f", "-t", "0", ...idle]);
  const cp = await new TestControlPlane().start();
  cp.nextSubnet = subnet;
  const token = cp.issueToken();
  const serverId = [...cp.servers.keys()][0]!;
  const state = expectedContainers(prefix, "run", 20, subnet);
  const setRound = (round: number) => {
    const containers = state.containers.map((c, i) => (i < 2 && round > 0 ? { ...c, deploymentId: `${c.deploymentId}-r${round}`, env: { SECRET: cp.encrypt(`secret-${round}-${i}`) } } : c));
    cp.setExpectedState(serverId, { containers, dns: { records: [] }, wireguard: { peers: [] } });
  };
  setRound(0);
  const network = `${prefix}-run`;
  const agent = Bun.spawn(
    [AGENT, "run", "--url", cp.url, "--token", token, "--data-dir", join(work, "run-data"), "--network-name", network, "--dns-port", "0", "--wireguard", "off", "--poll-interval", "5"],
    { env: { ...process.env, ...store.env }, stdout: "ignore", stderr: Bun.file(join(work, "run.log")) },
  );
  const samples: Array<{ at: number; rss: number; anon: number; file: number }> = [];
  let redeploys = 0;
  try {
    const started = Date.now();
    while (Date.now() - started < MINUTES * 60_000) {
      await Bun.sleep(10_000);
      if (agent.exitCode !== null) throw new Error(`agent run exited ${agent.exitCode}`);
      const at = (Date.now() - started) / 1000;
      samples.push({ at, ...residentSet(agent.pid) });
      if (Math.floor(at / 300) > redeploys) setRound(++redeploys);
    }
  } finally {
    agent.kill("SIGTERM");
    await agent.exited;
    await cp.stop();
  }
  const running = (await store.ps()).filter((c) => c.Names.some((n) => n.startsWith(`${prefix}-run-`)) && c.State === "running").length;
  if (running < 20) console.log(`agent run deployed ${running}/20; its log ends:\n${readFileSync(join(work, "run.log"), "utf8").split("\n").slice(-15).join("\n")}`);
  const atTen = samples.find((s) => s.at >= 600) ?? samples.at(-1)!;
  const last = samples.at(-1)!;
  const minutes = (s: { at: number }) => Math.round(s.at / 6) / 10;
  row(`agent run RSS at ${minutes(atTen)} min, ${running}/20 containers`, mib(atTen.rss), "—", undefined, "≤ 50 MiB (after 10 min)", atTen.at >= 600 ? atTen.rss <= 50 : undefined);
  // The trims make a sawtooth: the budget holds only if its highest tooth does.
  const later = samples.filter((s) => s.at >= 600);
  if (later.length > 1) {
    const peak = later.reduce((a, b) => (b.rss > a.rss ? b : a));
    row(`agent run RSS, highest from 10 to ${minutes(last)} min`, mib(peak.rss), `at ${minutes(peak)} min`, undefined, "≤ 50 MiB", peak.rss <= 50);
  }
  // Growth: the heap (anonymous pages) in the last third of the samples against the first third
  // after start-up. The binary's pages come and go with the trims (lib/residentCode.ts).
  const third = Math.max(1, Math.floor(samples.length / 3));
  const early = median(samples.slice(1, 1 + third).map((s) => s.anon));
  const late = median(samples.slice(-third).map((s) => s.anon));
  row(`agent run heap growth, ${redeploys} redeploys of 2`, `${(late - early).toFixed(1)} MiB`, `early ${mib(early)}, late ${mib(late)}`, undefined, "none over an hour", undefined);
  console.log(`agent run at the end: ${mib(last.file)} pages of the binary and other files, ${mib(last.anon)} heap and stacks`);
  console.log(`agent run RSS samples (s: MiB): ${samples.map((s) => `${s.at.toFixed(0)}: ${s.rss.toFixed(1)}`).join(", ")}`);
  console.log(`agent run heap samples (s: MiB): ${samples.map((s) => `${s.at.toFixed(0)}: ${s.anon.toFixed(1)}`).join(", ")}`);
}

function releaseSizeRow(floor: string) {
  const agentGz = Bun.gzipSync(readFileSync(AGENT), { level: 9 }).length / 1e6;
  const floorGz = Bun.gzipSync(readFileSync(floor), { level: 9 }).length / 1e6;
  row("release binary, gzip -9", `${agentGz.toFixed(1)} MB`, `Bun runtime alone: ${floorGz.toFixed(1)} MB`, agentGz / floorGz, "≤ 40 MB", agentGz <= 40);
}

async function main() {
  const floor = await floorBinary();
  let store: IsolatedPodman | undefined;
  try {
    await startupRows(floor);
    releaseSizeRow(floor);
    store = await startIsolatedPodman({ images: [WEB_IMAGE] });
    const subnets = await unusedSubnetIds(3);
    await idleReconcileRows(store, subnets);
    await runRssRows(store, subnets[2]!);
  } finally {
    printTable(`bench/footprint (${new Date().toISOString()}, ${RUNS} runs per median, ${(await hostPodman(["--version"])).trim()})`, rows);
    await store?.stop();
    await cleanupPodman(prefix);
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
