import { errorMessage } from "../../lib/errors.ts";
import { run } from "../../lib/exec.ts";

/** `buildctl prune` arguments that keep the daemon's build cache at or under `keepStorageMb` (pure). */
export function pruneArgs(addr: string, keepStorageMb: number): string[] {
  return ["--addr", addr, "prune", "--keep-storage", String(keepStorageMb)];
}

/** The `Total:` figure `buildctl prune` prints (what it freed), when it printed one. */
export function prunedTotal(output: string): string | undefined {
  return /^Total:\s+(\S+)/m.exec(output)?.[1];
}

/**
 * Prunes BuildKit's build cache down to `keepStorageMb` after a build. Never fails the build: a
 * prune that does not work is one log line, and the next build tries again.
 */
export async function pruneBuildCache(options: { buildctl: string; addr: string; keepStorageMb: number; log: (line: string) => void; timeoutMs?: number }): Promise<void> {
  if (options.keepStorageMb <= 0) return;
  try {
    const res = await run(options.buildctl, pruneArgs(options.addr, options.keepStorageMb), { timeoutMs: options.timeoutMs ?? 120_000, allowFailure: true });
    if (res.exitCode !== 0) {
      options.log(`warning: buildctl prune failed (exit code ${res.exitCode}): ${res.stderr.trim().split("\n").at(-1) ?? ""}`);
      return;
    }
    const freed = prunedTotal(res.stdout);
    if (freed && freed !== "0B") options.log(`BuildKit cache pruned to at most ${options.keepStorageMb} MB (freed ${freed})`);
  } catch (err) {
    options.log(`warning: buildctl prune: ${errorMessage(err)}`);
  }
}
