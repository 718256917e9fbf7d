import { realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { octalMode } from "../fs/fileMode.ts";

/**
 * Which folders the agent accepts as its data dir. It keeps private keys there and, as root,
 * would otherwise make a shared folder (`/`, `/tmp`) private to itself: so it takes only a folder
 * of its own, and never changes the mode of one it did not create.
 */

/** `/`, the standard folders of a Debian-like system, and their usual second level. */
const SYSTEM_FOLDERS = new Set([
  "/",
  ...["bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "lost+found", "media", "mnt", "opt", "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var"].map((d) => `/${d}`),
  ...["bin", "games", "include", "lib", "lib32", "lib64", "libexec", "local", "local/bin", "local/lib", "local/sbin", "local/share", "sbin", "share", "src"].map((d) => `/usr/${d}`),
  ...["backups", "cache", "lib", "local", "lock", "log", "mail", "opt", "run", "spool", "tmp"].map((d) => `/var/${d}`),
  "/run/lock",
  "/run/user",
]);

/** Kernel file systems: nothing written there is kept. */
const VIRTUAL_ROOTS = ["/proc", "/sys", "/dev"];

export interface DataDirFacts {
  /** As given, made absolute and normalised. */
  path: string;
  /** `path` with the symbolic links of its existing part resolved. */
  realPath: string;
  /** What is at the path; undefined when nothing is there yet (the agent creates it). */
  existing?: { isDirectory: boolean; mode: number; uid: number };
  /** An existing part of the path that is not a folder, so nothing can be created below it. */
  notAFolder?: string;
  /** The user the agent runs as. */
  processUid: number;
}

export interface DataDirVerdict {
  /** Why the folder cannot be the data dir; the agent stops before touching anything. */
  refusal?: string;
  /** Accepted, but worth saying. */
  warning?: string;
}

export function judgeDataDir(facts: DataDirFacts): DataDirVerdict {
  const shown = facts.realPath === facts.path ? facts.path : `${facts.path} (which is ${facts.realPath})`;
  if (facts.notAFolder) return { refusal: `${facts.path} cannot be created: ${facts.notAFolder} is not a directory` };
  if (facts.existing && !facts.existing.isDirectory) return { refusal: `${shown} is not a directory` };
  for (const candidate of new Set([facts.path, facts.realPath])) {
    if (SYSTEM_FOLDERS.has(candidate)) {
      return { refusal: `${shown} is a system folder that other users and services need; give the agent a folder of its own, such as the default /var/lib/techulus-agent` };
    }
    const virtual = VIRTUAL_ROOTS.find((root) => candidate.startsWith(`${root}/`));
    if (virtual) return { refusal: `${shown} is inside ${virtual}, a kernel file system that keeps no files` };
  }
  if (!facts.existing) return {};
  const { mode, uid } = facts.existing;
  const ownFolder = "give the agent a folder of its own (it creates a missing one with mode 0700)";
  if (uid !== facts.processUid) {
    return { refusal: `${shown} belongs to another user (uid ${uid}; the agent runs as uid ${facts.processUid}), who could read or replace its keys; ${ownFolder}` };
  }
  if ((mode & 0o022) !== 0) {
    const who = (mode & 0o002) !== 0 ? "every user" : "its group";
    return { refusal: `${shown} is writable by ${who} (mode ${octalMode(mode)}), who could replace the agent's keys and identity; ${ownFolder}` };
  }
  if ((mode & 0o1000) !== 0) {
    return { refusal: `${shown} has the sticky bit (mode ${octalMode(mode)}), the mark of a folder shared between users; ${ownFolder}` };
  }
  if ((mode & 0o077) !== 0) {
    return {
      warning: `data dir ${shown} has mode ${octalMode(mode)}: other users can look inside (the secret files themselves are 0600); the agent does not change the mode of a folder it did not create: chmod 700 ${facts.path}`,
    };
  }
  return {};
}

/** Looks at the folder a --data-dir names, without changing anything. */
export function inspectDataDir(path: string, processUid: number): DataDirFacts {
  const absolute = resolve(path);
  const missing: string[] = [];
  let existingPart = absolute;
  let realPart: string;
  for (;;) {
    try {
      realPart = realpathSync(existingPart);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== "ENOENT" && code !== "ENOTDIR") || existingPart === "/") throw cannotLook(absolute, err);
      missing.unshift(basename(existingPart));
      existingPart = dirname(existingPart);
    }
  }
  const facts: DataDirFacts = { path: absolute, realPath: join(realPart, ...missing), processUid };
  let st;
  try {
    st = statSync(realPart);
  } catch (err) {
    throw cannotLook(absolute, err);
  }
  if (missing.length > 0) {
    if (!st.isDirectory()) facts.notAFolder = existingPart;
    return facts;
  }
  facts.existing = { isDirectory: st.isDirectory(), mode: st.mode & 0o7777, uid: st.uid };
  return facts;
}

function cannotLook(path: string, err: unknown): UsageError {
  return new UsageError(`--data-dir: cannot look at ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
}
