/**
 * bench/build: what `agent build` costs on top of the build it runs, for both builders.
 *
 * - podman: `agent build --builder podman --source DIR` versus `podman build` + `podman push
 *   --digestfile` run directly. Every build gets a fresh file (cold: only FROM is shared).
 *   Target: agent ≤ 1.05 × direct + 1 s.
 * - buildkit: `agent build --builder buildkit` versus the same `buildctl build` run directly, on a
 *   real buildkitd (../shared/tools) with its own root. Cold: a fresh file, so COPY and RUN run;
 *   warm: the same folder again, every step cached. Target: agent ≤ 1.05 × direct + 0.3 s.
 *
 * Sides alternate, in the same run, into the same local registry. Run as root after
 * `bash install/dev-setup.sh` and a build (BENCH_AGENT overrides dist/agent):
 *   node_modules/.bin/bun bench/build.ts [rounds] [podman|buildkit]
 * Prints a table; never fails on a time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUILDKIT_BIN, buildkitBinaries, pushBaseImage, startBuildkitd } from "../test/support/buildkit.ts";
import { makeBaseImage, removeImagesBuiltOn } from "../test/support/builds.ts";
import { cleanupPodman, startRegistry, uniquePrefix, type Registry } from "../test/support/podman.ts";
import { AGENT, median, printTable } from "./support.ts";

const ROUNDS = Number(process.argv[2] ?? 5);
const ONLY = process.argv[3];
const prefix = uniquePrefix("bench");
const work = mkdtempSync(join(tmpdir(), "bench-build-"));

async function timed(argv: string[], env: Record<string, string> = {}): Promise<number> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err}`);
  return ms;
}

function source(name: string, base: string): string {
  const dir = join(work, name);
  mkdirSync(join(dir, "app"), { recursive: true });
  writeFileSync(join(dir, "Dockerfile"), `FROM ${base}\nCOPY app /app\nRUN cat /app/nonce > /built && echo built\nCMD ["cat", "/built"]\n`);
  writeFileSync(join(dir, "app", "nonce"), `${name} ${Date.now()} ${Math.random()}\n`);
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, "app", `file${i}.txt`), `content ${i}\n`.repeat(50));
  return dir;
}

interface Row {
  builder: string;
  kind: string;
  direct: number[];
  agent: number[];
  slackMs: number;
}

/** One build of `side` into `image`; returns its wall time. */
type Side = (dir: string, image: string) => Promise<number>;

/**
 * Rounds of direct vs agent, alternating which goes first. `warm` builds each side's cold folder
 * a second time right after it (every step cached); a round −1 warms up both sides and is not counted.
 */
async function compare(builder: string, registry: Registry, base: string, sides: { direct: Side; agent: Side }, slackMs: number, warm: boolean): Promise<Row[]> {
  const cold: Row = { builder, kind: "cold", direct: [], agent: [], slackMs };
  const cached: Row = { builder, kind: "warm", direct: [], agent: [], slackMs };
  for (let round = -1; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (["direct", "agent"] as const) : (["agent", "direct"] as const);
    for (const side of order) {
      const dir = source(`${builder}-${side}-${round + 1}`, base);
      const image = `${registry.host}/${prefix}/${builder}-${side}:r${round + 1}`;
      const ms = await sides[side](dir, image);
      const again = warm ? await sides[side](dir, `${image}-warm`) : 0;
      if (round < 0) continue;
      cold[side].push(ms);
      if (warm) cached[side].push(again);
    }
  }
  return warm ? [cold, cached] : [cold];
}

async function benchPodman(registry: Registry): Promise<Row[]> {
  const base = `localhost/${prefix}-base:1`;
  await makeBaseImage(base, prefix);
  try {
    return await compare(
      "podman",
      registry,
      base,
      {
        direct: async (dir, image) => {
          const t0 = performance.now();
          await timed(["podman", "build", "--force-rm", "--layers", "--file", join(dir, "Dockerfile"), "--tag", image, dir]);
          await timed(["podman", "push", "--digestfile", join(dir, "digest"), "--tls-verify=false", image]);
          await timed(["podman", "rmi", image]);
          return performance.now() - t0;
        },
        agent: (dir, image) => timed([AGENT, "build", "--builder", "podman", "--source", dir, "--image", image, "--insecure-registry", registry.host]),
      },
      1000,
      false,
    );
  } finally {
    await removeImagesBuiltOn(base);
  }
}

async function benchBuildKit(registry: Registry): Promise<Row[]> {
  const { buildctl } = buildkitBinaries();
  const daemon = await startBuildkitd({ insecureRegistries: [registry.host] });
  try {
    const base = await pushBaseImage(registry.host, `${prefix}/busybox:latest`);
    return await compare(
      "buildkit",
      registry,
      base,
      {
        direct: (dir, image) =>
          timed([
            buildctl, "--addr", daemon.addr, "build", "--progress", "plain",
            "--frontend", "dockerfile.v0", "--local", `context=${dir}`, "--local", `dockerfile=${dir}`, "--opt", "filename=Dockerfile",
            "--output", `type=image,name=${image},push=true,registry.insecure=true`, "--metadata-file", join(dir, "metadata.json"),
          ]),
        agent: (dir, image) =>
          timed([AGENT, "build", "--builder", "buildkit", "--buildkit-host", daemon.addr, "--source", dir, "--image", image, "--insecure-registry", registry.host], { PATH: `${BUILDKIT_BIN}:${process.env.PATH}` }),
      },
      300,
      true,
    );
  } finally {
    await daemon.stop();
  }
}

function table(rows: Row[]): string[][] {
  const header = ["builder", "build", "direct ms", "agent ms", "overhead ms", "ratio", "target ms (1.05 × direct + slack)", "met"];
  return [
    header,
    ...rows.map((row) => {
      const d = median(row.direct);
      const a = median(row.agent);
      const target = 1.05 * d + row.slackMs;
      return [row.builder, row.kind, d.toFixed(0), a.toFixed(0), (a - d).toFixed(0), (a / d).toFixed(2), `${target.toFixed(0)} (slack ${row.slackMs})`, a <= target ? "yes" : "NO"];
    }),
  ];
}

const registry = await startRegistry();
try {
  const rows: Row[] = [];
  if (ONLY !== "buildkit") rows.push(...(await benchPodman(registry)));
  if (ONLY !== "podman") rows.push(...(await benchBuildKit(registry)));
  printTable(`bench/build: ${ROUNDS} rounds each, alternating, small repo (Dockerfile, 21 files), local registry; medians`, table(rows));
} finally {
  await cleanupPodman(prefix);
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
