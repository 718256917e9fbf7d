/**
 * bench/build: what `agent build` costs on top of the build it runs.
 *
 * `dist/agent build --builder podman --source DIR --image …` versus the same `podman build` +
 * `podman push --digestfile` run directly, on the same small repository, alternating, in the same
 * run, into the same local registry. Every build gets a fresh file so neither side is served
 * from the layer cache (only the FROM image is shared). Target: agent ≤ 1.05 × direct + 1 s.
 *
 * Run as root after `bash install/setup-host.sh` and a build:
 *   node_modules/.bin/bun bench/build.ts [rounds]
 * Prints a table; never fails on a time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { makeBaseImage, removeImagesBuiltOn } from "../test/support/builds.ts";
import { cleanupPodman, podman, startRegistry, TEST_IMAGE, uniquePrefix } from "../test/support/podman.ts";

const ROOT = resolve(import.meta.dir, "..");
const AGENT = join(ROOT, "dist/agent");
const ROUNDS = Number(process.argv[2] ?? 5);
const prefix = uniquePrefix("bench");
const BASE = `localhost/${prefix}-base:1`;
const work = mkdtempSync(join(tmpdir(), "bench-build-"));

async function timed(argv: string[], env: Record<string, string> = {}): Promise<number> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err}`);
  return ms;
}

function source(round: number, side: string): string {
  const dir = join(work, `${side}-${round}`);
  mkdirSync(join(dir, "app"), { recursive: true });
  writeFileSync(join(dir, "Dockerfile"), `FROM ${BASE}\nCOPY app /app\nRUN cat /app/nonce > /built && echo built\nCMD ["cat", "/built"]\n`);
  writeFileSync(join(dir, "app", "nonce"), `${side} ${round} ${Date.now()} ${Math.random()}\n`);
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, "app", `file${i}.txt`), `content ${i}\n`.repeat(50));
  return dir;
}

function stats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return { median, mean: values.reduce((a, b) => a + b, 0) / values.length, min: sorted[0]!, max: sorted.at(-1)! };
}

const registry = await startRegistry();
try {
  await makeBaseImage(BASE, prefix);
  const direct: number[] = [];
  const agent: number[] = [];
  // Warm-up (page cache, registry, the agent binary) on both sides; not counted.
  for (const round of [-1, ...Array.from({ length: ROUNDS }, (_, i) => i)]) {
    const order = round % 2 === 0 ? ["direct", "agent"] : ["agent", "direct"];
    for (const side of order) {
      const dir = source(round, side);
      const image = `${registry.host}/${prefix}/${side}:r${round + 1}`;
      let ms: number;
      if (side === "direct") {
        const t0 = performance.now();
        await timed(["podman", "build", "--force-rm", "--layers", "--file", join(dir, "Dockerfile"), "--tag", image, dir]);
        await timed(["podman", "push", "--digestfile", join(dir, "digest"), "--tls-verify=false", image]);
        ms = performance.now() - t0;
      } else {
        ms = await timed([AGENT, "build", "--builder", "podman", "--source", dir, "--image", image, "--insecure-registry", registry.host]);
      }
      if (round >= 0) (side === "direct" ? direct : agent).push(ms);
    }
  }
  const d = stats(direct);
  const a = stats(agent);
  const ratio = a.median / d.median;
  const target = 1.05 * d.median + 1000;
  const row = (name: string, s: ReturnType<typeof stats>) =>
    `| ${name.padEnd(40)} | ${s.median.toFixed(0).padStart(8)} | ${s.mean.toFixed(0).padStart(8)} | ${s.min.toFixed(0).padStart(6)} | ${s.max.toFixed(0).padStart(6)} |`;
  console.log(`\nbench/build: ${ROUNDS} rounds each, alternating, small repo (Dockerfile, 21 files), local registry\n`);
  console.log(`| ${"variant".padEnd(40)} | median ms |  mean ms | min ms | max ms |`);
  console.log(`|${"-".repeat(42)}|----------:|---------:|-------:|-------:|`);
  console.log(row("podman build + podman push (direct)", d));
  console.log(row("agent build --builder podman --source", a));
  console.log(`\noverhead: ${(a.median - d.median).toFixed(0)} ms, ratio ${ratio.toFixed(3)} (median agent / median direct)`);
  console.log(`target: agent ≤ 1.05 × direct + 1000 ms = ${target.toFixed(0)} ms → ${a.median <= target ? "met" : "NOT met"}`);
} finally {
  await removeImagesBuiltOn(BASE);
  await cleanupPodman(prefix);
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
