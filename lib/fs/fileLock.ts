import { dlopen, FFIType } from "bun:ffi";
import { closeSync, openSync, readFileSync, ftruncateSync, writeSync } from "node:fs";
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

  static tryAcquire(path: string): FileLock | { heldBy: number | undefined } {
    const fd = openSync(path, "a+", 0o600);
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      closeSync(fd);
      return { heldBy: readHolder(path) };
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`);
    return new FileLock(path, fd);
  }

  /** Waits up to `waitMs` for the lock, polling; throws LockedError naming the holder. */
  static async acquire(path: string, options: { waitMs?: number; what?: string } = {}): Promise<FileLock> {
    const deadline = Date.now() + (options.waitMs ?? 0);
    for (;;) {
      const result = FileLock.tryAcquire(path);
      if (result instanceof FileLock) return result;
      if (Date.now() >= deadline) {
        const holder = result.heldBy ? `process ${result.heldBy}` : "another process";
        throw new LockedError(`${options.what ?? path} is locked by ${holder} (lock file ${path})`, result.heldBy);
      }
      await Bun.sleep(Math.min(200, Math.max(1, deadline - Date.now())));
    }
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
