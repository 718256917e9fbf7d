/**
 * `bun run release [--version V] [--arch x64,arm64] [--out DIR]`: the files install/install.sh
 * downloads, in one folder (default dist/release) to publish as AGENT_DOWNLOAD_URL:
 *
 *   agent-linux-x64, agent-linux-arm64   the compiled agent (Bun cross-compilation)
 *   agent-linux-<arch>.sha256            `sha256sum` format, of the uncompressed binary
 *   agent-linux-<arch>.gz                gzip -9 copies (what the installer downloads)
 *   VERSION                              the version, one line
 *   install.sh                           the installer, so the release folder serves the one-liner too
 *
 * Prints a size table. The version defaults to package.json's; the commit is the checkout's.
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import pkg from "../package.json" with { type: "json" };
import { compileAgent, gitCommit } from "./build.ts";

const ARCHES = { x64: "bun-linux-x64", arm64: "bun-linux-arm64" } as const;
type Arch = keyof typeof ARCHES;
const VERSION_PATTERN = /^[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.-]+)?$/;

export interface ReleaseOptions {
  version: string;
  arches: Arch[];
  outDir: string;
}

export interface ReleasedBinary {
  arch: Arch;
  file: string;
  bytes: number;
  gzipBytes: number;
  sha256: string;
}

export function parseReleaseArgs(argv: string[]): ReleaseOptions {
  const { values } = parseArgs({
    args: argv,
    options: { version: { type: "string" }, arch: { type: "string" }, out: { type: "string" } },
    strict: true,
  });
  const version = values.version ?? pkg.version;
  if (!VERSION_PATTERN.test(version)) throw new Error(`--version: must look like 1.2.3 or 1.2.3-rc.1 (got ${JSON.stringify(version)})`);
  const arches = (values.arch ?? "x64,arm64").split(",").map((a) => a.trim());
  for (const arch of arches) {
    if (!(arch in ARCHES)) throw new Error(`--arch: ${JSON.stringify(arch)} is not one of ${Object.keys(ARCHES).join(", ")}`);
  }
  return { version, arches: arches as Arch[], outDir: resolve(values.out ?? "dist/release") };
}

export async function release(options: ReleaseOptions): Promise<ReleasedBinary[]> {
  rmSync(options.outDir, { recursive: true, force: true });
  mkdirSync(options.outDir, { recursive: true });
  const commit = gitCommit();
  const out: ReleasedBinary[] = [];
  for (const arch of options.arches) {
    const file = `agent-linux-${arch}`;
    const path = join(options.outDir, file);
    await compileAgent({ outfile: path, target: ARCHES[arch], version: options.version, commit, sourcemap: false });
    const bytes = readFileSync(path);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    writeFileSync(`${path}.sha256`, `${sha256}  ${file}\n`);
    const gz = Bun.gzipSync(bytes, { level: 9 });
    writeFileSync(`${path}.gz`, gz);
    out.push({ arch, file, bytes: bytes.length, gzipBytes: gz.length, sha256 });
  }
  writeFileSync(join(options.outDir, "VERSION"), `${options.version}\n`);
  copyFileSync(resolve(import.meta.dir, "install.sh"), join(options.outDir, "install.sh"));
  return out;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

export function sizeTable(binaries: ReleasedBinary[]): string {
  const rows = [["file", "raw", "gzip", "ratio"], ...binaries.map((b) => [b.file, mb(b.bytes), mb(b.gzipBytes), `${((b.gzipBytes / b.bytes) * 100).toFixed(0)}%`])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")).join("\n");
}

if (import.meta.main) {
  let options: ReleaseOptions;
  try {
    options = parseReleaseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`release: ${(err as Error).message}`);
    process.exit(2);
  }
  const started = Date.now();
  const binaries = await release(options);
  console.log(`release ${options.version} (commit ${gitCommit()}) in ${options.outDir}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(sizeTable(binaries));
}
