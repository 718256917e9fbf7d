import { dlopen, FFIType } from "bun:ffi";
import { closeSync, existsSync, openSync, readFileSync, ftruncateSync, statSync, writeSync } from "node:fs";
import { LockedError } from "../errors.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

let libc: { symbols: { flock: (fd: number, op: number) => number } } | undefined;

function flock(fd: number, op: number): number {
  libc ??= dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } }) as never;
  return libc!.symbols.flock(fd, op);
}

/**
 * An exclusive kernel lock (flock) on a file. The kernel releases it when the process dies,
 * even by SIGKILL, so a crashed agent never leaves a stale lock. The holder's pid is written
 * into the file so a refused process can name it.
 */
export class FileLock {
  private constructor(
    readonly path: string,
    private fd: number | undefined,
  ) {}

  /** `writePid: false` for another program's lock file, whose content is not the agent's to change. */
  static tryAcquire(path: string, options: { writePid?: boolean } = {}): FileLock | { heldBy: number | undefined } {
    const fd = openSync(path, "a+", 0o600);
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      closeSync(fd);
      return { heldBy: readHolder(path) };
    }
    if (options.writePid !== false) {
      ftruncateSync(fd, 0);
      writeSync(fd, `${process.pid}\n`);
    }
    return new FileLock(path, fd);
  }

  /** Waits up to `waitMs` for the lock, polling; throws LockedError naming the holder. */
  static async acquire(path: string, options: { waitMs?: number; what?: string; writePid?: boolean } = {}): Promise<FileLock> {
    const deadline = Date.now() + (options.waitMs ?? 0);
    for (;;) {
      const result = FileLock.tryAcquire(path, options);
      if (result instanceof FileLock) return result;
      if (Date.now() >= deadline) {
        const holder = result.heldBy ? `process ${result.heldBy}` : "another process";
        throw new LockedError(`${options.what ?? path} is locked by ${holder} (lock file ${path})`, result.heldBy);
      }
      await Bun.sleep(Math.min(200, Math.max(1, deadline - Date.now())));
    }
  }

  /**
   * Who holds the lock now, without taking it (not even for a moment, so a starting agent is never
   * refused because of a look): the kernel's lock table names the holder's pid; the pid written in
   * the file is the fallback where /proc/locks cannot be read.
   */
  static holder(path: string, procLocks = "/proc/locks"): LockHolder {
    if (!existsSync(path)) return { held: false };
    let table: string;
    try {
      table = readFileSync(procLocks, "utf8");
    } catch {
      const pid = readHolder(path);
      return pid !== undefined && existsSync(`/proc/${pid}`) ? { held: true, pid } : { held: false };
    }
    const st = statSync(path, { bigint: true });
    const pid = lockHolderFromTable(table, st.dev, st.ino);
    if (pid === undefined) return { held: false };
    return { held: true, pid: pid > 0 ? pid : readHolder(path) };
  }

  release(): void {
    if (this.fd === undefined) return;
    flock(this.fd, LOCK_UN);
    closeSync(this.fd);
    this.fd = undefined;
  }
}

function readHolder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isFinite(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export type LockHolder = { held: false } | { held: true; pid?: number };

/**
 * The pid of the process holding a lock on the file with this device and inode, from /proc/locks
 * (`1: FLOCK  ADVISORY  WRITE 4113 fe:00:2146962 0 EOF`; `->` lines are waiters, not holders).
 */
export function lockHolderFromTable(table: string, dev: bigint, ino: bigint): number | undefined {
  // Linux dev_t: major = bits 8-19 and 32-43, minor = bits 0-7 and 20-31.
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  for (const line of table.split("\n")) {
    const m = /^\d+:\s+(?!->)(\S+)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/i.exec(line);
    if (!m) continue;
    if (BigInt(`0x${m[3]}`) === major && BigInt(`0x${m[4]}`) === minor && BigInt(m[5]!) === ino) return Number(m[2]);
  }
  return undefined;
}
