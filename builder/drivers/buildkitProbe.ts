import { existsSync } from "node:fs";
import { errorMessage } from "../../lib/errors.ts";
import { run, which } from "../../lib/exec.ts";

export type BuildKitProbe =
  | { state: "no-buildctl" }
  | { state: "down"; error: string }
  | { state: "up"; version?: string; workers: number };

/** The daemon's version from `buildctl debug info` (its `{{json .}}` form or the plain one). */
export function parseBuildKitVersion(output: string): string | undefined {
  try {
    const version = (JSON.parse(output) as { buildkitVersion?: { version?: unknown } }).buildkitVersion?.version;
    if (typeof version === "string") return version;
  } catch {
    // not JSON: the plain form, "BuildKit: github.com/moby/buildkit v0.11.6 2951a28…"
  }
  return /\bv\d+\.\d+\.\d+[0-9A-Za-z.+-]*/.exec(output)?.[0];
}

/** Rows of `buildctl debug workers` (a header line, then one line per worker). */
export function countWorkers(output: string): number {
  return output.split("\n").slice(1).filter((l) => l.trim()).length;
}

/** The line that says why buildctl could not reach the daemon (its last `error:` line, shortened). */
export function unreachableReason(stderr: string): string {
  const lines = stderr.trim().split("\n").filter(Boolean);
  const line = [...lines].reverse().find((l) => /error/i.test(l)) ?? lines.at(-1) ?? "no answer";
  return line.replace(/^error:\s*/, "").replace(/^.*desc = "?(transport: )?/, "").replace(/"$/, "");
}

async function askWorkers(buildctl: string, addr: string, timeoutMs: number): Promise<{ ok: true; stdout: string } | { ok: false; error: string }> {
  try {
    const res = await run(buildctl, ["--addr", addr, "debug", "workers"], { timeoutMs, allowFailure: true });
    return res.exitCode === 0 ? { ok: true, stdout: res.stdout } : { ok: false, error: unreachableReason(res.stderr) };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

/** Whether a BuildKit daemon answers at `addr` (`buildctl debug workers`), and its version. */
export async function probeBuildKit(addr: string, options: { buildctl?: string; timeoutMs?: number } = {}): Promise<BuildKitProbe> {
  const buildctl = options.buildctl ?? "buildctl";
  if (!(buildctl.includes("/") ? existsSync(buildctl) : await which(buildctl))) return { state: "no-buildctl" };
  const timeoutMs = options.timeoutMs ?? 5000;
  const workers = await askWorkers(buildctl, addr, timeoutMs);
  if (!workers.ok) return { state: "down", error: workers.error };
  const info = await run(buildctl, ["--addr", addr, "debug", "info", "--format", "{{json .}}"], { timeoutMs, allowFailure: true }).catch(() => undefined);
  const version = info?.exitCode === 0 ? parseBuildKitVersion(info.stdout) : undefined;
  return { state: "up", workers: countWorkers(workers.stdout), ...(version ? { version } : {}) };
}

/** True when a BuildKit daemon answers at `addr`. */
export async function buildkitAnswers(addr: string, timeoutMs = 5000): Promise<boolean> {
  return (await which("buildctl")) !== undefined && (await askWorkers("buildctl", addr, timeoutMs)).ok;
}
