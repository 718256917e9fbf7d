/**
 * bench/logs: container log shipping end to end, against the floor measured in the same run.
 *
 * A managed container (deployed by `dist/agent run` against the test control plane, in a private
 * podman store) prints N numbered lines as fast as busybox sh can, once told to go. Measured from
 * that moment:
 *   - agent: until its last line is queryable in a real VictoriaLogs on loopback (every line
 *     counted there afterwards); the agent's CPU seconds (utime + stime) over the same span;
 *   - floor: afterwards, alone on the machine, `podman logs -f` of the same container from its
 *     first line until it has read the last one (its output goes to `grep -m1 -q`, the /dev/null
 *     that notices the end). Run one after the other, the two do not share the 2 cores.
 *   - for reference, how long the container took to print (conmon's stamps of its first and last
 *     line in the log file): the agent cannot finish sooner than that.
 * Targets: ≥ 50,000 lines/s and ≥ 0.8 × the floor.
 *
 * Run as root after `bash install/setup-host.sh` and a build: node_modules/.bin/bun bench/logs.ts [lines]
 * (BENCH_AGENT=FILE measures another build).
 * Prints a table; never fails on a time.
 */
import { readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { TestControlPlane } from "../test/support/TestControlPlane.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../test/support/isolatedPodman.ts";
import { buildTestImage, podman as hostPodman, uniquePrefix, waitFor } from "../test/support/podman.ts";
import { tempDir } from "../test/support/agentBinary.ts";
import { startVictoriaLogs, type RealVictoriaLogs } from "../test/support/victoriaLogs.ts";

const ROOT = resolve(import.meta.dir, "..");
const AGENT = process.env.BENCH_AGENT ?? join(ROOT, "dist/agent");
const LINES = Number(process.argv[2] ?? 300_000);
const prefix = uniquePrefix("blog");
const image = `localhost/${prefix}-spam:1`;
const work = tempDir("bench-logs-");
const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** The VictoriaLogs process listening on `url` (its CPU time is counted too: the two share the cores). */
function pidListeningOn(url: string): number | undefined {
  const needle = `127.0.0.1:${new URL(url).port}`;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (cmd[0]?.endsWith("victoria-logs") && cmd.includes(needle)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

async function main(): Promise<void> {
  let vl: RealVictoriaLogs | undefined;
  let world: IsolatedPodman | undefined;
  const cp = new TestControlPlane();
  let agent: ReturnType<typeof Bun.spawn> | undefined;
  try {
    vl = await startVictoriaLogs();
    await cp.start();
    const subnetId = (cp.nextSubnet = await freeSubnetId());
    // busybox seq: a C loop, far faster than any shell loop (which would measure the shell).
    const script = `while [ ! -e /tmp/go ]; do sleep 0.1; done; /bin/busybox seq 1 ${LINES}; echo done; trap 'exit 0' TERM; sleep 100000 & wait`;
    await buildTestImage(image, ["sh", "-c", script]);
    world = await startIsolatedPodman({ images: [image], network: { subnetId, name: `${prefix}-net` } });
    const token = cp.issueToken();
    const serverId = cp.serverByToken(token)!.id;
    const serviceId = `${prefix}-svc`;
    const name = `${prefix}-spam`;
    cp.setExpectedState(serverId, {
      containers: [{ deploymentId: `${prefix}-dep`, serviceId, serviceName: "spam", name, image, ipAddress: `10.200.${subnetId}.50`, ports: [], env: {}, healthCheck: null, volumes: [] }],
    });
    agent = Bun.spawn(
      [AGENT, "run", "--url", cp.url, "--token", token, "--data-dir", join(work.path, "data"), "--network-name", `${prefix}-net`, "--dns-port", "0", "--wireguard", "off", "--logs-endpoint", vl.url, "--poll-interval", "5", "--work-queue-interval", "60", "--build-poll-interval", "3600"],
      { env: { ...process.env, ...world.env }, stdout: "ignore", stderr: "ignore" },
    );
    await waitFor(async () => (await world!.podman(["ps", "--format", "{{.Names}}"])).includes(name), 60_000, "the agent to deploy the container");
    await Bun.sleep(3000); // the agent observes it and starts following

    const vlPid = pidListeningOn(vl.url);
    const load = loadavg()[0]!;
    const vlCpu0 = vlPid ? cpuSeconds(vlPid) : 0;
    const cpu0 = cpuSeconds(agent.pid);
    const t0 = performance.now();
    await world.podman(["exec", name, "sh", "-c", ": > /tmp/go"]);
    let agentDone = 0;
    let cpu1 = 0;
    let vlCpu1 = 0;
    await waitFor(
      async () => {
        if ((await vl!.query(`service_id:"${serviceId}" _msg:done`)).length === 0) return false;
        agentDone = performance.now();
        cpu1 = cpuSeconds(agent!.pid);
        vlCpu1 = vlPid ? cpuSeconds(vlPid) : Number.NaN;
        return true;
      },
      600_000,
      "the last line in VictoriaLogs",
    );
    const agentMs = agentDone - t0;
    // podman logs -f never ends by itself (the container stays up): grep notices the last line.
    const t1 = performance.now();
    const follower = Bun.spawn(["sh", "-c", `exec podman logs -f ${name}`], { env: { ...process.env, ...world.env }, stdout: "pipe", stderr: "ignore" });
    const floor = Bun.spawn(["grep", "-m1", "-qx", "done"], { stdin: follower.stdout, stdout: "ignore" });
    await floor.exited;
    const floorMs = performance.now() - t1;
    follower.kill();
    const arrived = (await vl.query(`service_id:"${serviceId}"`)).length;
    // How long the container itself took to print, by conmon's stamps in its log file: no reader can finish sooner.
    const logPath = (await world.podman(["inspect", "--format", "{{.HostConfig.LogConfig.Path}}", name])).trim();
    const entries = readFileSync(logPath, "utf8").split("\n");
    const stampOf = (entry: string | undefined) => Date.parse(entry?.slice(0, entry.indexOf(" ")) ?? "");
    const printingMs = stampOf(entries.findLast((e) => e.endsWith(" done"))) - stampOf(entries.find((e) => e.endsWith(" 1")));

    const agentRate = (LINES / agentMs) * 1000;
    const floorRate = (LINES / floorMs) * 1000;
    const cpuPer100k = ((cpu1 - cpu0) / LINES) * 100_000;
    const rows = [
      ["measure", "value", "target"],
      ["lines", `${LINES} printed, ${arrived - 1} arrived in VictoriaLogs`, "all"],
      ["floor: podman logs -f > /dev/null", `${(floorMs / 1000).toFixed(2)} s, ${Math.round(floorRate)} lines/s`, ""],
      ["container printing (first → last line)", `${(printingMs / 1000).toFixed(2)} s`, ""],
      ["agent → VictoriaLogs (loopback)", `${(agentMs / 1000).toFixed(2)} s, ${Math.round(agentRate)} lines/s`, "≥ 50000 lines/s"],
      ["ratio agent / floor", (agentRate / floorRate).toFixed(2), "≥ 0.8"],
      ["agent CPU per 100k lines", `${cpuPer100k.toFixed(2)} s`, ""],
      ["VictoriaLogs CPU per 100k lines", `${(((vlCpu1 - vlCpu0) / LINES) * 100_000).toFixed(2)} s`, ""],
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    console.log(`\nbench/logs (${new Date().toISOString()}, ${(await hostPodman(["--version"])).trim()}, VictoriaLogs v1.93.7, load average ${load.toFixed(1)})`);
    for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join(" | "));
  } finally {
    agent?.kill("SIGTERM");
    await agent?.exited;
    await world?.stop();
    await hostPodman(["rmi", image], { allowFailure: true });
    await cp.stop();
    await vl?.stop();
    work.cleanup();
  }
}

await main();
