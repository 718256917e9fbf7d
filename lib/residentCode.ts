import { dlopen, FFIType } from "bun:ffi";
import { readFileSync, statSync } from "node:fs";
import { errorMessage } from "./errors.ts";
import { logger } from "./logger.ts";

const log = logger("memory");
/** madvise(2): reclaim these pages now (Linux 5.4+); clean file pages are simply dropped. */
const MADV_PAGEOUT = 21;

export interface Mapping {
  start: bigint;
  end: bigint;
}

/** A file by its device ("major:minor" in hex, as /proc/PID/maps writes it) and inode. */
export interface FileIdentity {
  device: string;
  inode: number;
}

/**
 * The mappings of `file` in a /proc/PID/maps text that the process never writes: its code and
 * read-only data. Matched by device and inode, not by path: after an upgrade replaced the file,
 * the running binary is still mapped, as "… (deleted)". Writable mappings (data, relocations) are
 * left alone: paging those out would mean swap, not a re-read of the file.
 */
export function readOnlyMappingsOf(maps: string, file: FileIdentity): Mapping[] {
  const mappings: Mapping[] = [];
  for (const line of maps.split("\n")) {
    const match = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ ([0-9a-f]+:[0-9a-f]+) (\d+)/.exec(line);
    if (!match || match[3]!.includes("w") || match[4] !== file.device || Number(match[5]) !== file.inode) continue;
    mappings.push({ start: BigInt(`0x${match[1]}`), end: BigInt(`0x${match[2]}`) });
  }
  return mappings;
}

/** The running binary's identity (/proc/self/exe follows the mapped file, even when deleted). */
function ownBinary(): FileIdentity {
  const st = statSync("/proc/self/exe", { bigint: true });
  // glibc's encoding of dev_t: the major number's low 12 bits at 8, the minor's low 8 bits at 0.
  const major = Number(((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn));
  const minor = Number((st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn));
  return { device: `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}`, inode: Number(st.ino) };
}

let libc: { symbols: { madvise: (addr: bigint, length: bigint, advice: number) => number } } | undefined;

/**
 * Hands the pages of the agent's own binary back to the kernel. The binary is ~100 MB of runtime
 * code; start-up and the first convergence touch tens of MiB of it that an idle agent never runs
 * again, and they would stay resident (and counted against the agent) until memory runs short.
 * Pages the agent still uses come back from the file on their next use, so only the working set
 * stays. Returns the bytes advised; throws where the kernel refuses (before Linux 5.4).
 */
export function pageOutOwnCode(): number {
  libc ??= dlopen("libc.so.6", { madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 } }) as never;
  let advised = 0;
  for (const { start, end } of readOnlyMappingsOf(readFileSync("/proc/self/maps", "utf8"), ownBinary())) {
    if (libc!.symbols.madvise(start, end - start, MADV_PAGEOUT) !== 0) throw new Error("the kernel refused madvise(MADV_PAGEOUT) (Linux 5.4 or later has it)");
    advised += Number(end - start);
  }
  return advised;
}

export interface CodeTrimmerOptions {
  /** True when the agent has nothing in flight: a trim then costs no re-reads in a busy moment. */
  isIdle: () => boolean;
  /** How often to look (default 60 s); a trim happens at the first idle look, then every `everyMs`. */
  checkMs?: number;
  /** Least time between trims (default 3 min): pages of a redeploy since the last one go too. */
  everyMs?: number;
  /** What a trim does (default: a full garbage collection, which returns freed heap pages, then pageOutOwnCode). */
  trim?: () => number;
}

/** Trims the agent's resident code while `agent run` idles; returns the function that stops it. */
export function startCodeTrimmer(options: CodeTrimmerOptions): () => void {
  const everyMs = options.everyMs ?? 3 * 60_000;
  let lastTrim = -Infinity;
  const trim = options.trim ?? (() => (Bun.gc(true), pageOutOwnCode()));
  let refused = false;
  const timer = setInterval(() => {
    if (refused || !options.isIdle() || Date.now() - lastTrim < everyMs) return;
    lastTrim = Date.now();
    try {
      const advised = trim();
      log.debug(`handed ${(advised / 2 ** 20).toFixed(0)} MiB of the binary's pages back to the kernel; what is used comes back`);
    } catch (err) {
      refused = true;
      log.debug(`cannot trim the binary's resident pages: ${errorMessage(err)}`);
    }
  }, options.checkMs ?? 60_000);
  timer.unref();
  return () => clearInterval(timer);
}
