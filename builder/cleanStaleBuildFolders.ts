import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * Removes build folders under `buildsDir` last modified more than `olderThanMs` ago (left behind
 * by a crash or a kill -9; a normal build removes its own), except those named in `keep`.
 * Returns the names removed.
 */
export function cleanStaleBuildFolders(buildsDir: string, options: { olderThanMs: number; keep?: readonly string[]; now?: number }): string[] {
  if (!existsSync(buildsDir)) return [];
  const cutoff = (options.now ?? Date.now()) - options.olderThanMs;
  const keep = new Set(options.keep ?? []);
  const removed: string[] = [];
  for (const entry of readdirSync(buildsDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || keep.has(entry.name)) continue;
    const path = join(buildsDir, entry.name);
    if (statSync(path).mtimeMs > cutoff) continue;
    rmSync(path, { recursive: true, force: true });
    removed.push(entry.name);
  }
  return removed;
}
