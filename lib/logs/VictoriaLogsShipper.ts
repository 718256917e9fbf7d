import { logger } from "../logger.ts";
import { redact, registerSecret } from "../redact.ts";
import { abortableSleep, withRetry, type BackoffPolicy } from "../retry.ts";
import { BoundedQueue } from "./BoundedQueue.ts";
import type { LogLine, LogOrigin, LogShipper, LogShipperStats } from "./LogShipper.ts";
import { logTimestamp, rfc3339Nano } from "./logTimestamp.ts";

const log = logger("logs");

/** Fields that name a log stream in VictoriaLogs; a line without one of them simply lacks it. */
export const DEFAULT_STREAM_FIELDS = ["log_type", "service_id", "deployment_id", "build_id"] as const;
export const DEFAULT_SHIPPER_RETRY: BackoffPolicy = { attempts: 4, baseMs: 250, maxMs: 2000 };
const WARN_EVERY_MS = 30_000;
const DEFAULT_MAX_BATCH_LINES = 4000;
const DEFAULT_MAX_IN_FLIGHT = 2;
/** A request also ends at this many characters of lines (at least one line): what is in flight stays bounded. */
const MAX_BATCH_CHARS = 2 * 1024 * 1024;
const DEFAULT_GZIP_LEVEL = 1;
const TRUNCATED = " …[truncated]";

export interface VictoriaLogsShipperOptions {
  /** VictoriaLogs base URL, e.g. http://logs:9428 (a path prefix is kept). */
  endpoint: string;
  /** A request goes out once this many lines wait (or the flush interval passed). */
  batchLines?: number;
  /** Most lines in one request: what piled up while the previous request was in flight goes together. */
  maxBatchLines?: number;
  /**
   * Most requests in flight at once. A second one goes out only while a full batch
   * (`maxBatchLines`) waits, i.e. when lines come faster than one request at a time carries them.
   */
  maxInFlight?: number;
  /** A partial batch waits at most this long before it is sent. */
  flushIntervalMs?: number;
  /** Lines held while the endpoint is slow or down; beyond that the OLDEST lines are dropped. */
  maxBufferLines?: number;
  /** The same bound in characters of serialised lines (what the buffer's memory grows with). */
  maxBufferChars?: number;
  /** Timeout of one request (connect, headers and body). */
  requestTimeoutMs?: number;
  /** Send bodies with `Content-Encoding: gzip`. */
  gzip?: boolean;
  /** zlib level of those bodies (default 1: log text still shrinks several times, at a fraction of level 6's CPU). */
  gzipLevel?: number;
  /** `_stream_fields` query arg; [] sends none. */
  streamFields?: readonly string[];
  /** Upper bound of flush() and close(). */
  flushTimeoutMs?: number;
  /** Attempts per batch and backoff between them (capped exponential, full jitter). */
  retry?: BackoffPolicy;
  /** `_msg` longer than this (UTF-16 units) is cut, so one runaway line cannot exceed the server's line limit. */
  maxMessageLength?: number;
}

export interface VictoriaLogsShipperStats extends LogShipperStats {
  /** Characters of serialised lines waiting in the buffer (at most maxBufferChars). */
  pendingChars: number;
  /** Every line given to push(): pushed = sent + dropped + pending. */
  pushed: number;
  /** Requests that failed and were tried again. */
  retries: number;
}

interface Entry {
  text: string;
  origin?: LogOrigin;
  mark?: unknown;
}

/** Sources that can wait are asked to once the buffer is this full (of lines or of characters). */
const HIGH_WATER = 0.8;

class ShipError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/**
 * Ships lines to VictoriaLogs' `/insert/jsonline` (PROTOCOL.md "Log shipping"): NDJSON batches sent
 * once `batchLines` wait or after `flushIntervalMs`, of at most `maxBatchLines` (and MAX_BATCH_CHARS),
 * one request in flight — up to `maxInFlight` while full batches wait — answers handled in send order.
 * push() only serialises (with secrets redacted) into a bounded ring buffer; when it is full the
 * oldest lines are dropped — after an outage the most recent lines are the ones worth having.
 * A batch that keeps failing is dropped after `retry.attempts`. Drops are counted and logged.
 */
export class VictoriaLogsShipper implements LogShipper {
  readonly url: string;
  private readonly batchLines: number;
  private readonly maxBatchLines: number;
  private readonly maxInFlight: number;
  private readonly requestTimeoutMs: number;
  private readonly flushTimeoutMs: number;
  private readonly gzip: boolean;
  private readonly gzipLevel: number;
  private readonly retry: BackoffPolicy;
  private readonly maxMessageLength: number;
  private readonly authorization?: string;
  private readonly queue: BoundedQueue<Entry>;
  private readonly maxBufferChars: number;
  private queuedChars = 0;
  private roomWaiters: Array<() => void> = [];
  private readonly aborter = new AbortController();
  private readonly timer: ReturnType<typeof setInterval>;
  private running?: Promise<void>;
  /** Send partial batches until the buffer is empty (set by the timer and by flush). */
  private partialDue = false;
  private inFlightLines = 0;
  private closed?: Promise<void>;
  private counts = { pushed: 0, sent: 0, dropped: 0, retries: 0 };
  private lastWarnAt = -Infinity;
  /** `,"key":"value",…` of a frozen fields object, made once (a container's follower has two). */
  private readonly fieldsJson = new WeakMap<object, string>();

  constructor(options: VictoriaLogsShipperOptions) {
    const endpoint = new URL(options.endpoint);
    if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
      throw new RangeError(`logs endpoint must be an http:// or https:// URL (got ${redact(options.endpoint)})`);
    }
    if (endpoint.username || endpoint.password) {
      const user = decodeURIComponent(endpoint.username);
      const password = decodeURIComponent(endpoint.password);
      registerSecret(password);
      this.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
      registerSecret(this.authorization);
      endpoint.username = "";
      endpoint.password = "";
    }
    endpoint.pathname = `${endpoint.pathname.replace(/\/+$/, "")}/insert/jsonline`;
    endpoint.search = "";
    const streamFields = options.streamFields ?? DEFAULT_STREAM_FIELDS;
    if (streamFields.length > 0) endpoint.searchParams.set("_stream_fields", streamFields.join(","));
    this.url = endpoint.toString();

    this.batchLines = positiveInt("batchLines", options.batchLines ?? 50);
    this.maxBatchLines = Math.max(this.batchLines, positiveInt("maxBatchLines", options.maxBatchLines ?? DEFAULT_MAX_BATCH_LINES));
    this.maxInFlight = positiveInt("maxInFlight", options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
    this.requestTimeoutMs = positiveInt("requestTimeoutMs", options.requestTimeoutMs ?? 5000);
    this.flushTimeoutMs = positiveInt("flushTimeoutMs", options.flushTimeoutMs ?? 5000);
    this.maxMessageLength = positiveInt("maxMessageLength", options.maxMessageLength ?? 65_536);
    this.gzip = options.gzip ?? true;
    this.gzipLevel = options.gzipLevel ?? DEFAULT_GZIP_LEVEL;
    if (!Number.isInteger(this.gzipLevel) || this.gzipLevel < 0 || this.gzipLevel > 9) throw new RangeError(`gzipLevel must be 0 to 9 (got ${this.gzipLevel})`);
    this.retry = options.retry ?? DEFAULT_SHIPPER_RETRY;
    this.queue = new BoundedQueue(positiveInt("maxBufferLines", options.maxBufferLines ?? 10_000));
    this.maxBufferChars = positiveInt("maxBufferChars", options.maxBufferChars ?? 8 * 1024 * 1024);
    this.timer = setInterval(() => {
      this.partialDue = true;
      void this.kick();
    }, positiveInt("flushIntervalMs", options.flushIntervalMs ?? 1000));
    this.timer.unref?.();
  }

  push(line: LogLine): void {
    this.counts.pushed++;
    if (this.closed) {
      this.counts.dropped++;
      return;
    }
    try {
      const entry: Entry = { text: this.serialise(line), origin: line.origin, mark: line.mark };
      let evicted = 0;
      while (this.queue.length > 0 && (this.queue.length >= this.queue.capacity || this.queuedChars + entry.text.length > this.maxBufferChars)) {
        this.lose(this.takeEntries(1));
        evicted++;
      }
      this.queue.push(entry);
      this.queuedChars += entry.text.length;
      if (evicted > 0) {
        this.counts.dropped += evicted;
        this.warn(`log buffer full (${this.queue.capacity} lines or ${this.maxBufferChars} characters), dropping the oldest lines: VictoriaLogs is slow or down`);
      }
      if (this.queue.length >= this.batchLines && !this.running) void this.kick();
    } catch (err) {
      this.counts.dropped++;
      log.debug(`could not serialise a log line: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async flush(): Promise<void> {
    await this.sendPending(Date.now() + this.flushTimeoutMs);
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  stats(): VictoriaLogsShipperStats {
    return { ...this.counts, pending: this.queue.length + this.inFlightLines, pendingChars: this.queuedChars };
  }

  room(): Promise<void> | undefined {
    if (!this.full() || this.closed || this.aborter.signal.aborted) return undefined;
    return new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  private full(): boolean {
    return this.queue.length >= this.queue.capacity * HIGH_WATER || this.queuedChars >= this.maxBufferChars * HIGH_WATER;
  }

  private takeEntries(max: number, maxChars = Infinity): Entry[] {
    const entries = this.queue.take(max, (e) => e.text.length, maxChars);
    for (const e of entries) this.queuedChars -= e.text.length;
    if (!this.full()) this.releaseWaiters();
    return entries;
  }

  private releaseWaiters(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Tells each origin how many of its lines in `entries` are lost. */
  private lose(entries: readonly Entry[]): void {
    const counts = new Map<LogOrigin, number>();
    for (const e of entries) if (e.origin) counts.set(e.origin, (counts.get(e.origin) ?? 0) + 1);
    for (const [origin, n] of counts) origin.dropped(n);
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.timer);
    this.releaseWaiters();
    await this.sendPending(Date.now() + this.flushTimeoutMs);
    this.aborter.abort();
    if (this.running) await raceTimeout(this.running, 1000);
    // Not reported to their origins: a container's follower reads them again on the next start.
    this.counts.dropped += this.takeEntries(this.queue.length).length;
    const { pushed, sent, dropped } = this.counts;
    if (dropped > 0) log.warn(`log shipping stopped: ${sent} of ${pushed} lines sent, ${dropped} dropped`);
  }

  private serialise(line: LogLine): string {
    let msg = redact(String(line.msg));
    if (msg.length > this.maxMessageLength) msg = msg.slice(0, this.maxMessageLength) + TRUNCATED;
    const time = line.subMsNanos === undefined || !line.time ? logTimestamp(line.time) : rfc3339Nano(line.time.getTime(), line.subMsNanos);
    // What JSON.stringify({ _time, _msg, ...fields }) gives, without building that object per line.
    return `{"_time":"${time}","_msg":${JSON.stringify(msg)}${this.serialisedFields(line.fields)}}`;
  }

  private serialisedFields(fields: LogLine["fields"]): string {
    const frozen = Object.isFrozen(fields);
    if (frozen) {
      const known = this.fieldsJson.get(fields);
      if (known !== undefined) return known;
    }
    const record: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(fields)) {
      if (key !== "_time" && key !== "_msg") record[key] = value;
    }
    const json = JSON.stringify(record);
    const text = json === "{}" ? "" : `,${json.slice(1, -1)}`;
    if (frozen) this.fieldsJson.set(fields, text);
    return text;
  }

  /** Sends partial batches too until nothing is pending, the deadline passes or we are aborted. */
  private async sendPending(deadline: number): Promise<void> {
    while ((this.queue.length > 0 || this.running) && !this.aborter.signal.aborted) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return;
      // Each round: the sender clears it when it empties the buffer, and lines may come after.
      this.partialDue = true;
      await raceTimeout(this.running ?? this.kick(), remaining);
    }
  }

  private readyToSend(): boolean {
    if (this.aborter.signal.aborted) return false;
    return this.queue.length >= this.batchLines || (this.partialDue && this.queue.length > 0);
  }

  /** Starts the single sender unless it runs; never rejects. */
  private kick(): Promise<void> {
    this.running ??= Promise.resolve()
      .then(() => this.drain())
      .finally(() => {
        this.running = undefined;
        if (this.readyToSend()) void this.kick();
      });
    return this.running;
  }

  /**
   * Sends batches while some are ready, up to `maxInFlight` at once (more than one only while a
   * full batch waits). Outcomes are handled in send order: marks come back in push order.
   */
  private async drain(): Promise<void> {
    const flights: Array<{ batch: Entry[]; outcome: Promise<unknown> }> = [];
    const settle = async () => {
      const { batch, outcome } = flights.shift()!;
      const err = await outcome;
      this.inFlightLines -= batch.length;
      if (err === undefined) {
        this.counts.sent += batch.length;
        for (const e of batch) e.origin?.acknowledged(e.mark);
      } else {
        this.counts.dropped += batch.length;
        this.lose(batch);
        this.warn(`dropped a batch of ${batch.length} lines: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    for (;;) {
      while (flights.length > 0 && (flights.length >= this.maxInFlight || !this.readyToSend() || this.queue.length < this.maxBatchLines)) await settle();
      if (!this.readyToSend()) break;
      const batch = this.takeEntries(this.maxBatchLines, MAX_BATCH_CHARS);
      this.inFlightLines += batch.length;
      const outcome = this.sendWithRetries(batch.map((e) => e.text)).then(
        () => undefined,
        (err: unknown) => err ?? new Error("failed"),
      );
      flights.push({ batch, outcome });
    }
    if (this.queue.length === 0) this.partialDue = false;
  }

  private async sendWithRetries(batch: string[]): Promise<void> {
    const text = batch.join("\n") + "\n";
    const body = this.gzip ? Bun.gzipSync(Buffer.from(text), { level: this.gzipLevel as ZlibLevel }) : Buffer.from(text);
    await withRetry(
      async (attempt) => {
        if (attempt > 0) this.counts.retries++;
        await this.post(body);
      },
      (err) => err instanceof ShipError && err.retryable && !this.aborter.signal.aborted,
      this.retry,
      (ms) => abortableSleep(ms, this.aborter.signal),
    );
  }

  /** Bun's fetch (native, keep-alive): a request costs a fraction of the CPU undici's costs. */
  private async post(body: Uint8Array): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/stream+json" };
    if (this.gzip) headers["content-encoding"] = "gzip";
    if (this.authorization) headers.authorization = this.authorization;
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers,
        body,
        redirect: "manual",
        signal: AbortSignal.any([this.aborter.signal, AbortSignal.timeout(this.requestTimeoutMs)]),
      });
    } catch (err) {
      throw new ShipError(`POST ${this.url} failed: ${networkReason(err, this.requestTimeoutMs)}`, true);
    }
    let answer = "";
    try {
      answer = await res.text();
    } catch (err) {
      if (res.status >= 300) throw new ShipError(`POST ${this.url} answered ${res.status}`, res.status >= 500);
      // The lines were accepted; only the (empty) answer was cut off.
      log.debug(`reading the answer of ${this.url} failed: ${networkReason(err, this.requestTimeoutMs)}`);
      return;
    }
    if (res.status === 200 || res.status === 204) return;
    const detail = answer.trim().slice(0, 300);
    const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new ShipError(`POST ${this.url} answered ${res.status}${detail ? `: ${detail}` : ""}`, retryable);
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarnAt < WARN_EVERY_MS) {
      log.debug(message);
      return;
    }
    this.lastWarnAt = now;
    const { sent, dropped } = this.counts;
    log.warn(`${message} (${sent} lines sent, ${dropped} dropped so far)`);
  }
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer (got ${value})`);
  return value;
}

function networkReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: unknown; message?: string; cause?: { code?: string } };
  if (e.name === "TimeoutError") return `timed out after ${timeoutMs} ms`;
  if (e.name === "AbortError") return "aborted (shutting down)";
  return (typeof e.code === "string" ? e.code : undefined) ?? e.cause?.code ?? e.message ?? String(err);
}

type ZlibLevel = -1 | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

/** Waits for `promise` (which must not reject) or `ms`, whichever comes first. */
async function raceTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
