/**
 * bench/logResume: what a restart costs the log follower of a container with a big k8s-file log,
 * when everything but the last second was shipped before the restart.
 *
 *   - agent: the follower (lib/logs, in this process) resuming from a position that keeps the byte
 *     offset where its second begins in the file (what `agent run` now saves);
 *   - baseline, same run: the same follower from the same position without the offset, which
 *     has to parse the file from its start to find the position (the agent before);
 *   - floor: reading the file once into nothing (`cat FILE > /dev/null`).
 * Timed until the follower's catch-up read ends (the caughtUp promise `agent run` waits for before
 * its first pass). Both must ship the same lines: the last second's, minus those acknowledged.
 *
 * node_modules/.bin/bun bench/logResume.ts [lines] (default 1,000,000, ~95 MB). Prints a table.
 */
import { openSync, rmSync, statSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { ContainerLogFollower, type LogPosition } from "../lib/logs/ContainerLogFollower.ts";
import { LogPositionStore } from "../lib/logs/LogPositionStore.ts";
import type { LogShipper } from "../lib/logs/LogShipper.ts";
import { MonotonicStamps } from "../lib/logs/logTimestamp.ts";
import type { PodmanApi } from "../lib/podman/PodmanApi.ts";
import { tempDir } from "../test/support/agentBinary.ts";
import { median, printTable } from "./support.ts";

const LINES = Number(process.argv[2] ?? 1_000_000);
const PER_SECOND = 1000;
const ROUNDS = 5;
const work = tempDir("bench-log-resume-");
const file = join(work.path, "ctr.log");
const start = Math.floor(Date.now() / 1000) - Math.ceil(LINES / PER_SECOND) - 5;

/** A k8s-file log of LINES lines, PER_SECOND per second; returns the byte offset of the last second's first line. */
function writeLog(): number {
  const fd = openSync(file, "w");
  let offset = 0;
  let lastSecondAt = 0;
  const seconds = Math.ceil(LINES / PER_SECOND);
  for (let s = 0; s < seconds; s++) {
    if (s === seconds - 1) lastSecondAt = offset;
    let chunk = "";
    for (let i = 0; i < PER_SECOND && s * PER_SECOND + i < LINES; i++) {
      const stamp = new Date((start + s) * 1000 + i).toISOString().replace("Z", "000000+00:00");
      chunk += `${stamp} stdout F line ${s * PER_SECOND + i} of the benchmark's container, with some text after it\n`;
    }
    offset += writeSync(fd, chunk);
  }
  closeSync(fd);
  return lastSecondAt;
}

/** Resumes a follower from `position`; ms until its catch-up read ended, and the lines it shipped. */
async function resume(position: LogPosition): Promise<{ ms: number; lines: number }> {
  let lines = 0;
  const shipper: LogShipper = { push: () => void lines++, flush: async () => undefined, close: async () => undefined, stats: () => ({ sent: 0, dropped: 0, pending: 0 }) };
  const api = { call: async () => ({ status: 200, text: JSON.stringify({ HostConfig: { LogConfig: { Type: "k8s-file", Path: file } } }) }) };
  const t0 = performance.now();
  const follower = new ContainerLogFollower({
    container: { id: "c1", serviceId: "s1" },
    api: api as unknown as PodmanApi,
    shipper,
    sinceSeconds: start,
    position: { ...position },
    stamps: new MonotonicStamps(),
    store: LogPositionStore.open(),
    reconnect: { attempts: Infinity, baseMs: 50, maxMs: 100 },
    catchUp: true,
  });
  await follower.caughtUp;
  const ms = performance.now() - t0;
  await follower.stop();
  return { ms, lines };
}

async function catFile(): Promise<number> {
  const t0 = performance.now();
  await Bun.spawn(["sh", "-c", `cat '${file}' > /dev/null`]).exited;
  return performance.now() - t0;
}

try {
  const lastSecondAt = writeLog();
  const lastSecond = start + Math.ceil(LINES / PER_SECOND) - 1;
  const acked = 10;
  const position = { seconds: lastSecond, linesInSecond: acked };
  const spot = { ino: statSync(file).ino, offset: lastSecondAt };
  const withOffset: number[] = [];
  const fromStart: number[] = [];
  const floor: number[] = [];
  let shipped = { withOffset: 0, fromStart: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const a = await resume({ ...position, file: spot });
    const b = await resume(position);
    floor.push(await catFile());
    withOffset.push(a.ms);
    fromStart.push(b.ms);
    shipped = { withOffset: a.lines, fromStart: b.lines };
  }
  const expected = Math.min(PER_SECOND, LINES - (lastSecond - start) * PER_SECOND) - acked;
  const mb = (statSync(file).size / 1e6).toFixed(0);
  const rows = [
    ["resume of a follower", "ms (median)", "lines shipped", "ratio to the agent"],
    ["agent: from the saved byte offset", median(withOffset).toFixed(1), String(shipped.withOffset), "1.00"],
    ["baseline: parse from the file's start", median(fromStart).toFixed(1), String(shipped.fromStart), (median(fromStart) / median(withOffset)).toFixed(1)],
    ["floor: cat the file > /dev/null", median(floor).toFixed(1), "—", (median(floor) / median(withOffset)).toFixed(1)],
  ];
  printTable(`bench/logResume: ${LINES.toLocaleString("en")} lines (${mb} MB), ${ROUNDS} rounds; each resume must ship the last second's ${expected} unacknowledged lines`, rows);
  if (shipped.withOffset !== expected || shipped.fromStart !== expected) console.log(`MISMATCH: expected ${expected} lines from each resume`);
} finally {
  rmSync(work.path, { recursive: true, force: true });
}
