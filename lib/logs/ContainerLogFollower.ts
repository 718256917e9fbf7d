import { closeSync, fstatSync, openSync, readSync, statSync, watch, type FSWatcher } from "node:fs";
import type { Readable } from "node:stream";
import { logger } from "../logger.ts";
import { PodmanApiError, type PodmanApi } from "../podman/PodmanApi.ts";
import { abortableSleep, backoffDelay, type BackoffPolicy } from "../retry.ts";
import { K8sFileLogParser, type K8sFileLogEntry } from "./K8sFileLogParser.ts";
import { LibpodLogDecoder } from "./LibpodLogDecoder.ts";
import type { FileSpot, LogPositionStore, LineMark } from "./LogPositionStore.ts";
import type { LogOrigin, LogShipper } from "./LogShipper.ts";
import type { MonotonicStamps } from "./logTimestamp.ts";

const log = logger("logs");
const MIN_RECONNECT_MS = 250;

export interface ManagedContainerLogs {
  /** Podman container id (or name). */
  id: string;
  serviceId: string;
  /** Omitted from the lines when unknown (a managed container created outside a deployment). */
  deploymentId?: string;
}

/**
 * Where a container's log was last shipped up to. Podman stamps lines with whole seconds, so the
 * position is a second plus how many lines of that second were shipped: a reconnect asks for
 * `since=<second>` and skips that many lines of it.
 */
export interface LogPosition {
  seconds?: number;
  linesInSecond: number;
  /** Where in the k8s-file log the lines of `seconds` start at the latest (a restart reads from there). */
  file?: FileSpot;
}

export type FollowerState = "connecting" | "following" | "waiting" | "gone" | "stopped";

export interface ContainerLogFollowerOptions {
  container: ManagedContainerLogs;
  api: PodmanApi;
  shipper: LogShipper;
  /** Where to start when nothing was shipped yet (unix seconds). */
  sinceSeconds: number;
  /** Where reading got to (advanced as lines are pushed; a reconnect resumes after it). */
  position: LogPosition;
  /** `_time` of this container's lines, never going backwards across reconnects and restarts. */
  stamps: MonotonicStamps;
  /** Acknowledged positions and dropped lines go here. */
  store: LogPositionStore;
  reconnect: BackoffPolicy;
  /** First read what Podman has up to now without following, and resolve `caughtUp` then. */
  catchUp?: boolean;
  /** Read a k8s-file log from its file (default); false: always through the API's logs endpoint. */
  logFiles?: boolean;
}

/**
 * Follows one container's logs until stopped: from its k8s-file log file when Podman keeps one the
 * agent can read (far cheaper than the API's frame per line), else from the API's logs endpoint.
 * Reconnects with backoff when the stream ends (container stopped, podman restarted, the file
 * vanished) and stops by itself, quietly, when the container is gone.
 */
export class ContainerLogFollower implements LogOrigin {
  readonly done: Promise<void>;
  /** Resolves once the catch-up read ended (at once without `catchUp`), however it ended. */
  readonly caughtUp: Promise<void>;
  private markCaughtUp!: () => void;
  private readonly aborter = new AbortController();
  private current: FollowerState = "connecting";
  private fileCursor?: FileCursor;

  constructor(private readonly options: ContainerLogFollowerOptions) {
    this.caughtUp = new Promise((resolve) => (this.markCaughtUp = resolve));
    if (!options.catchUp) this.markCaughtUp();
    this.done = this.run().finally(() => this.markCaughtUp()).catch((err) => {
      log.warn(`following the logs of container ${options.container.id} stopped: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  acknowledged(mark: unknown): void {
    this.options.store.acknowledge(this.options.container.id, mark as LineMark);
  }

  dropped(count: number): void {
    this.options.store.dropped(this.options.container.id, count);
  }

  get state(): FollowerState {
    return this.current;
  }

  stop(): Promise<void> {
    if (this.current !== "gone") this.current = "stopped";
    this.aborter.abort();
    return this.done;
  }

  private get stopped(): boolean {
    return this.aborter.signal.aborted;
  }

  private async run(): Promise<void> {
    const { container, reconnect } = this.options;
    let failures = 0;
    let follow = !this.options.catchUp;
    while (!this.stopped) {
      this.current = "connecting";
      let shipped = 0;
      try {
        const outcome = await this.readOnce(follow, () => shipped++);
        if (!follow) {
          follow = true;
          this.markCaughtUp();
          if (outcome === "ended") continue;
        }
        if (outcome === "gone") {
          this.current = "gone";
          log.debug(`container ${container.id} is gone; no more logs to follow`);
          return;
        }
      } catch (err) {
        if (this.stopped) break;
        log.debug(`log stream of container ${container.id} failed: ${reason(err)}`);
        if (!follow) {
          follow = true;
          this.markCaughtUp();
        }
      }
      if (this.stopped) break;
      failures = shipped > 0 ? 0 : failures + 1;
      this.current = "waiting";
      const delay = Math.max(MIN_RECONNECT_MS, backoffDelay(reconnect, Math.min(failures, 16)));
      await abortableSleep(delay, this.aborter.signal);
    }
  }

  private async readOnce(follow: boolean, onShipped: () => void): Promise<"ended" | "gone"> {
    let file: string | undefined;
    if (this.options.logFiles !== false) {
      const found = await this.logFile();
      if (found === "gone") return "gone";
      file = found;
    }
    if (file) {
      const outcome = await this.readFile(file, follow, onShipped);
      if (outcome !== "unreadable") return outcome;
    }
    return this.readApi(follow, this.shipping(onShipped, true));
  }

  /** The container's k8s-file log (what `podman logs` reads), undefined with another log driver; "gone" when Podman does not know it. */
  private async logFile(): Promise<string | "gone" | undefined> {
    const { container, api } = this.options;
    const res = await api.call("GET", `/containers/${encodeURIComponent(container.id)}/json`, { timeoutMs: 15_000 }, [404]);
    if (res.status === 404) return "gone";
    try {
      const config = (JSON.parse(res.text) as { HostConfig?: { LogConfig?: { Type?: unknown; Path?: unknown } } }).HostConfig?.LogConfig;
      return config?.Type === "k8s-file" && typeof config.Path === "string" && config.Path !== "" ? config.Path : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Where a line goes: lines before the position are skipped when the read starts from the
   * beginning (a resumed or reconnected read), the others advance the position and are pushed
   * with their mark.
   */
  private shipping(onShipped: () => void, fromPosition: boolean): Ship {
    const { container, position, stamps, shipper } = this.options;
    const since = position.seconds ?? this.options.sinceSeconds;
    const resumeSecond = position.seconds;
    let toSkip = position.linesInSecond;
    const base: Record<string, string> = { service_id: container.serviceId, log_type: "container" };
    if (container.deploymentId) base.deployment_id = container.deploymentId;
    // Frozen: the shipper serialises the fields of a frozen object once.
    const fields = { stdout: Object.freeze({ ...base, stream: "stdout" }), stderr: Object.freeze({ ...base, stream: "stderr" }) };
    return (stream, text, lineSeconds, lineMs, spot) => {
      const now = Date.now();
      const seconds = lineSeconds ?? (lineMs === undefined ? Math.floor(now / 1000) : Math.floor(lineMs / 1000));
      if (fromPosition && (seconds < since || (seconds === resumeSecond && toSkip-- > 0))) return;
      if (seconds === position.seconds) position.linesInSecond++;
      else {
        position.seconds = seconds;
        position.linesInSecond = 1;
        position.file = spot;
      }
      // The file's stamp is exact; the API's has whole seconds, where the arrival time is the better guess.
      const stamp = stamps.next(lineMs ?? (Math.floor(now / 1000) === seconds ? now : seconds * 1000));
      const mark: LineMark = { seconds, linesInSecond: position.linesInSecond, ms: stamp.ms, subMsNanos: stamp.subMsNanos, ...(position.file ? { file: position.file } : {}) };
      shipper.push({ msg: text, time: new Date(stamp.ms), subMsNanos: stamp.subMsNanos, fields: fields[stream], origin: this, mark });
      onShipped();
    };
  }

  /**
   * Reads the k8s-file log directly: big reads of the file instead of one API frame per line.
   * Follows appends (woken by inotify, checked every second anyway), a replaced file (conmon's
   * rotation: the old one is complete, the new one is read from its start) and a truncated one.
   * "ended" when the file is gone (the next connect asks Podman whether the container is) or, not
   * following, at its end; "unreadable" when it cannot be opened (the API is used then).
   */
  private async readFile(path: string, follow: boolean, onShipped: () => void): Promise<"ended" | "unreadable"> {
    const signal = this.aborter.signal;
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return "unreadable";
    }
    const ino = fstatSync(fd).ino;
    // Where the last read of this same file stopped, with its partial lines: no need to read it all again.
    const kept = this.fileCursor;
    // A first read after a restart starts where the position's second starts in this same file.
    const hint = this.options.position.file;
    const start = !kept && hint?.ino === ino && fstatSync(fd).size >= hint.offset ? hint.offset : 0;
    const cursor: FileCursor =
      kept && kept.path === path && kept.ino === ino && fstatSync(fd).size >= kept.offset ? kept : { path, ino, offset: start, clean: start, parser: new K8sFileLogParser() };
    this.fileCursor = cursor;
    this.current = "following";
    const ship = this.shipping(onShipped, cursor !== kept);
    const entries: K8sFileLogEntry[] = [];
    const collect = (e: K8sFileLogEntry) => void entries.push(e);
    // Small while the log trickles, FILE_CHUNK once a read fills it (and small again when idle):
    // many quiet containers do not each hold a big buffer.
    let buf = Buffer.allocUnsafe(IDLE_CHUNK);
    let carry = 0;
    let wake: (() => void) | undefined;
    const watcher = follow ? watchQuietly(path, () => wake?.()) : undefined;
    try {
      while (!signal.aborted) {
        const n = readSync(fd, buf, carry, buf.length - carry, cursor.offset + carry);
        if (n > 0) {
          const total = carry + n;
          const lastNl = buf.lastIndexOf(0x0a, total - 1);
          if (lastNl < 0) {
            carry = total;
            if (carry === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(buf.length)]); // an entry longer than a read
            continue;
          }
          // Every line before a chunk that starts on no partial line is of an earlier second than the
          // lines of a second that begins in this chunk: a restart may read from there.
          if (!cursor.parser.midLine) cursor.clean = cursor.offset;
          const spot: FileSpot = { ino: cursor.ino, offset: cursor.clean };
          cursor.parser.parse(buf.toString("utf8", 0, lastNl + 1), collect);
          cursor.offset += lastNl + 1;
          carry = total - lastNl - 1;
          buf.copy(buf, 0, lastNl + 1, total);
          if (total === buf.length && buf.length < FILE_CHUNK) {
            const bigger = Buffer.allocUnsafe(FILE_CHUNK);
            buf.copy(bigger, 0, 0, carry);
            buf = bigger;
          }
          // In slices, asking for room before each: one read can hold thousands of lines.
          for (let i = 0; i < entries.length && !signal.aborted; ) {
            const room = this.options.shipper.room?.();
            if (room) await untilAborted(room, signal);
            let chars = 0;
            for (const end = Math.min(entries.length, i + SHIP_SLICE); i < end && chars < SHIP_SLICE_CHARS; i++) {
              const e = entries[i]!;
              chars += e.text.length;
              ship(e.stream, e.text, undefined, e.ms, spot);
            }
          }
          entries.length = 0;
          await nextTurn();
          continue;
        }
        if (!follow) return "ended";
        const current = statOrUndefined(path);
        if (!current) return "ended";
        if (current.ino !== cursor.ino) {
          // Replaced: what the old file holds was read; the new one from its start.
          closeSync(fd);
          try {
            fd = openSync(path, "r");
          } catch {
            fd = -1;
            return "ended";
          }
          Object.assign(cursor, { ino: fstatSync(fd).ino, offset: 0, clean: 0 });
          cursor.parser.reset();
          carry = 0;
          continue;
        }
        if (fstatSync(fd).size < cursor.offset + carry) {
          cursor.offset = 0;
          cursor.clean = 0;
          cursor.parser.reset();
          carry = 0;
          continue;
        }
        if (carry === 0 && buf.length > IDLE_CHUNK) buf = Buffer.allocUnsafe(IDLE_CHUNK);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, FILE_POLL_MS);
          function done() {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            wake = undefined;
            resolve();
          }
          wake = done;
          signal.addEventListener("abort", done, { once: true });
        });
      }
      return "ended";
    } finally {
      watcher?.close();
      if (fd >= 0) closeSync(fd);
    }
  }

  private async readApi(follow: boolean, ship: Ship): Promise<"ended" | "gone"> {
    const { container, api, position } = this.options;
    const since = position.seconds ?? this.options.sinceSeconds;
    const query = { follow, stdout: true, stderr: true, timestamps: true, since };
    this.fileCursor = undefined; // the position moves past it
    let body: Readable;
    try {
      body = await api.stream(`/containers/${encodeURIComponent(container.id)}/logs`, query, this.aborter.signal, 15_000);
    } catch (err) {
      if (err instanceof PodmanApiError && err.status === 404) return "gone";
      throw err;
    }
    this.current = "following";
    const decoder = new LibpodLogDecoder();
    for await (const chunk of body) {
      for (const entry of decoder.push(chunk as Uint8Array)) ship(entry.stream, entry.text, entry.seconds, undefined);
      const room = this.options.shipper.room?.();
      if (room) await untilAborted(room, this.aborter.signal);
    }
    for (const entry of decoder.end()) ship(entry.stream, entry.text, entry.seconds, undefined);
    return "ended";
  }
}

type Ship = (stream: "stdout" | "stderr", text: string, seconds: number | undefined, ms: number | undefined, spot?: FileSpot) => void;

interface FileCursor {
  path: string;
  ino: number;
  /** Bytes of the file parsed (whole entries); the parser holds the partial lines among them. */
  offset: number;
  /** The latest offset read from that was on no partial line. */
  clean: number;
  parser: K8sFileLogParser;
}

const FILE_CHUNK = 256 * 1024;
const IDLE_CHUNK = 16 * 1024;
const FILE_POLL_MS = 1000;
/** Lines (and characters) pushed between two room() checks: well under the 20 % of the shipper's buffer above its high-water mark. */
const SHIP_SLICE = 500;
const SHIP_SLICE_CHARS = 512 * 1024;

/** A macrotask turn: lets the shipper's requests progress between big reads. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function statOrUndefined(path: string): { ino: number; size: number } | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** inotify on `path`, or nothing when it cannot be watched (the poll still runs). */
function watchQuietly(path: string, onChange: () => void): FSWatcher | undefined {
  try {
    const watcher = watch(path, { persistent: false }, onChange);
    watcher.on("error", () => undefined);
    return watcher;
  } catch {
    return undefined;
  }
}

/** Waits for `promise`, or for `signal` to abort (then returns at once). */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    void promise.then(done);
  });
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.message ?? e.code ?? String(err);
}
