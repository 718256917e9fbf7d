import { chmod, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * Archives of service volumes, taken before `cleanup_volumes` deletes them:
 * `<data-dir>/archives/volumes/<serviceId>/<timestamp>.tar.gz` (0600), with owners, modes, mtimes
 * and symbolic links kept as they were (symlinks are stored, never followed).
 * Restore: `tar -xzpf <archive> -C <data-dir>/volumes/<serviceId>`.
 */
export interface ArchiveRetention {
  /** Always keep this many of the newest archives per service. */
  keep: number;
  /** Also keep any archive younger than this. */
  maxAgeDays: number;
}

export const DEFAULT_RETENTION: ArchiveRetention = { keep: 3, maxAgeDays: 7 };

const ARCHIVE_NAME = /^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z)(?:-\d+)?\.tar\.gz$/;

export function archiveFileName(at: Date, suffix = 0): string {
  return `${at.toISOString().replace(/:/g, "-")}${suffix ? `-${suffix}` : ""}.tar.gz`;
}

function archiveTime(name: string): number | undefined {
  const m = ARCHIVE_NAME.exec(name);
  if (!m) return undefined;
  const iso = m[1]!.replace(/T(\d{2})-(\d{2})-(\d{2})/, "T$1:$2:$3");
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t;
}

/** Writes a gzip tarball of `sourceDir` (its contents, as `./…`) into `archiveDir`; returns its path. */
export async function archiveFolder(sourceDir: string, archiveDir: string, now = new Date()): Promise<string> {
  await mkdir(archiveDir, { recursive: true, mode: 0o700 });
  const existing = new Set(await readdir(archiveDir));
  let suffix = 0;
  while (existing.has(archiveFileName(now, suffix))) suffix++;
  const target = join(archiveDir, archiveFileName(now, suffix));
  const temp = join(archiveDir, `.${archiveFileName(now, suffix)}.${process.pid}.tmp`);
  try {
    // tar is loaded only when a volume is archived, not by every reconcile.
    const { create: tarCreate } = await import("tar");
    await tarCreate({ gzip: true, file: temp, cwd: sourceDir, follow: false, portable: false, strict: true }, ["."]);
    await chmod(temp, 0o600);
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return target;
}

/** Archives of one service, newest first. */
export async function listArchives(archiveDir: string): Promise<Array<{ path: string; time: number }>> {
  let names: string[];
  try {
    names = await readdir(archiveDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: Array<{ path: string; time: number }> = [];
  for (const name of names) {
    const time = archiveTime(name);
    if (time === undefined) continue;
    out.push({ path: join(archiveDir, name), time });
  }
  return out.sort((a, b) => b.time - a.time || b.path.localeCompare(a.path));
}

/** Deletes archives that are neither among the newest `keep` nor younger than `maxAgeDays`; returns what it deleted. */
export async function pruneArchives(archiveDir: string, retention: ArchiveRetention, now = Date.now()): Promise<string[]> {
  const maxAgeMs = retention.maxAgeDays * 24 * 3600_000;
  const removed: string[] = [];
  const archives = await listArchives(archiveDir);
  for (const [index, archive] of archives.entries()) {
    if (index < retention.keep || now - archive.time < maxAgeMs) continue;
    await rm(archive.path, { force: true });
    removed.push(archive.path);
  }
  return removed;
}
