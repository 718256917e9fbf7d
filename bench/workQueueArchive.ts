/**
 * How much a `cleanup_volumes` item (archive with the tar package, then delete) holds up the
 * event loop the reconcile loop shares: a 10 ms timer's lateness while a volume of N MiB is
 * cleaned, against the same timer on an idle loop measured in the same run.
 *
 *   node_modules/.bin/bun bench/workQueueArchive.ts [MiB=200]
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { archiveFolder } from "../lib/workqueue/volumeArchives.ts";
import { rm } from "node:fs/promises";

const mib = Number(process.argv[2] ?? 200);
const root = mkdtempSync(join(tmpdir(), "bench-wq-"));

function makeVolume(dir: string): void {
  mkdirSync(dir, { recursive: true });
  // Half incompressible, half compressible, in 1 MiB files.
  const random = randomBytes(1 << 20);
  const text = Buffer.alloc(1 << 20, "row,of,a,csv,file\n");
  for (let i = 0; i < mib; i++) writeFileSync(join(dir, `f${i}`), i % 2 ? random : text);
}

/** Runs `work` while a 10 ms timer measures how late it fires. */
async function lateness(work: () => Promise<unknown>): Promise<{ ms: number; p50: number; p99: number; max: number }> {
  const delays: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    delays.push(now - last - 10);
    last = now;
  }, 10);
  const start = performance.now();
  await work();
  const ms = performance.now() - start;
  clearInterval(timer);
  delays.sort((a, b) => a - b);
  const at = (q: number) => Math.max(0, delays[Math.min(delays.length - 1, Math.floor(q * delays.length))] ?? 0);
  return { ms, p50: at(0.5), p99: at(0.99), max: Math.max(0, delays[delays.length - 1] ?? 0) };
}

try {
  const volume = join(root, "volumes", "svc");
  makeVolume(volume);
  const cleanup = await lateness(async () => {
    const archive = await archiveFolder(volume, join(root, "archives"));
    await rm(volume, { recursive: true });
    console.log(`archive: ${(statSync(archive).size / 2 ** 20).toFixed(1)} MiB from ${mib} MiB`);
  });
  const idle = await lateness(() => Bun.sleep(cleanup.ms));
  const row = (name: string, r: typeof idle) =>
    `| ${name.padEnd(22)} | ${r.ms.toFixed(0).padStart(7)} | ${r.p50.toFixed(1).padStart(6)} | ${r.p99.toFixed(1).padStart(6)} | ${r.max.toFixed(1).padStart(7)} |`;
  console.log("| run                    | time ms | p50 ms | p99 ms |  max ms |");
  console.log("|------------------------|---------|--------|--------|---------|");
  console.log(row("idle loop (baseline)", idle));
  console.log(row(`cleanup of ${mib} MiB`, cleanup));
  console.log(`timer lateness p99 ratio cleanup/idle: ${(cleanup.p99 / Math.max(idle.p99, 0.1)).toFixed(1)}x; throughput ${(mib / (cleanup.ms / 1000)).toFixed(0)} MiB/s`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
