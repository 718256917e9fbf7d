import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { logger } from "../logger.ts";

const log = logger("logs");
const WARN_EVERY_MS = 30_000;

/**
 * What the agent knows of one container's log across restarts: the last line VictoriaLogs
 * acknowledged (Podman's second plus how many lines of that second) and its `_time`, and how many
 * lines of the container were lost for good.
 */
export interface ContainerLogRecord {
  serviceId: string;
  deploymentId?: string;
  /** Unix second reading starts from while no line was acknowledged yet. */
  since?: number;
  seconds?: number;
  linesInSecond: number;
  lastMs?: number;
  lastSubMsNanos?: number;
  /** Where the log file can be read from again: no line of `seconds` or later comes before it. */
  file?: FileSpot;
  dropped: number;
}

/**
 * A byte offset in one log file (by inode) before which every line is of an earlier second than
 * the position: a restart reads from there instead of from the file's start.
 */
export interface FileSpot {
  ino: number;
  offset: number;
}

/** What a shipped line carries, handed back on acknowledgement. */
export interface LineMark {
  seconds: number;
  linesInSecond: number;
  ms: number;
  subMsNanos: number;
  file?: FileSpot;
}

const recordSchema = z.object({
  serviceId: z.string(),
  deploymentId: z.string().optional(),
  since: z.number().int().optional(),
  seconds: z.number().int().optional(),
  linesInSecond: z.number().int().nonnegative(),
  lastMs: z.number().optional(),
  lastSubMsNanos: z.number().int().nonnegative().optional(),
  file: z.object({ ino: z.number().int().nonnegative(), offset: z.number().int().nonnegative() }).optional(),
  dropped: z.number().int().nonnegative(),
});
const fileSchema = z.object({ version: z.literal(1), containers: z.record(z.string(), recordSchema) });

/**
 * `<data-dir>/state/log-positions.json`. Written after every acknowledged batch, before the next
 * request goes out (temp file and rename, no fsync: a killed agent loses nothing, a power cut may
 * cost one batch of duplicates), so a restart re-sends at most the batch that was in flight.
 */
export class LogPositionStore {
  private readonly records = new Map<string, ContainerLogRecord>();
  private readonly lastWarnAt = new Map<string, number>();
  private saveQueued = false;

  private constructor(readonly file: string | undefined) {}

  /** Loads `file`; a missing or unreadable file starts empty (the reason is logged). Without a file, positions live in memory only. */
  static open(file?: string): LogPositionStore {
    const store = new LogPositionStore(file);
    if (file) for (const [id, record] of Object.entries(readPositions(file))) store.records.set(id, record);
    return store;
  }

  ids(): string[] {
    return [...this.records.keys()];
  }

  get(id: string): ContainerLogRecord | undefined {
    return this.records.get(id);
  }

  /** The record of a container, made when it is new. */
  track(id: string, container: { serviceId: string; deploymentId?: string }, since: number): ContainerLogRecord {
    let record = this.records.get(id);
    if (!record) {
      record = { serviceId: container.serviceId, since, linesInSecond: 0, dropped: 0 };
      if (container.deploymentId) record.deploymentId = container.deploymentId;
      this.records.set(id, record);
      this.queueSave();
    }
    return record;
  }

  acknowledge(id: string, mark: LineMark): void {
    const record = this.records.get(id);
    if (!record) return;
    record.seconds = mark.seconds;
    record.linesInSecond = mark.linesInSecond;
    record.lastMs = mark.ms;
    record.lastSubMsNanos = mark.subMsNanos;
    if (mark.file) record.file = mark.file;
    else delete record.file;
    this.queueSave();
  }

  dropped(id: string, count: number): void {
    const record = this.records.get(id);
    if (!record) return;
    record.dropped += count;
    this.queueSave();
    const now = Date.now();
    if (now - (this.lastWarnAt.get(id) ?? -Infinity) < WARN_EVERY_MS) return;
    this.lastWarnAt.set(id, now);
    log.warn(`container ${id.slice(0, 12)} (service ${record.serviceId}): ${record.dropped} log lines dropped so far`);
  }

  forget(id: string): void {
    if (this.records.delete(id)) this.queueSave();
  }

  /** Every container with lines dropped, most first. */
  drops(): Array<{ id: string; serviceId: string; dropped: number }> {
    return [...this.records]
      .filter(([, r]) => r.dropped > 0)
      .map(([id, r]) => ({ id, serviceId: r.serviceId, dropped: r.dropped }))
      .sort((a, b) => b.dropped - a.dropped);
  }

  save(): void {
    this.saveQueued = false;
    if (!this.file) return;
    const temp = `${this.file}.${process.pid}.tmp`;
    try {
      writeFileSync(temp, JSON.stringify({ version: 1, containers: Object.fromEntries(this.records) }), { mode: 0o600 });
      renameSync(temp, this.file);
    } catch (err) {
      log.warn(`cannot save log positions to ${this.file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Coalesces the changes of one batch into one write, made before any further I/O. */
  private queueSave(): void {
    if (this.saveQueued) return;
    this.saveQueued = true;
    queueMicrotask(() => this.save());
  }
}

/** `<data-dir>/state/log-positions.json`, given the data dir's state folder. */
export function logPositionsFile(stateDir: string): string {
  return join(stateDir, "log-positions.json");
}

/** The records of a positions file; {} when it is missing, and when it cannot be used (logged). */
export function readPositions(file: string): Record<string, ContainerLogRecord> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn(`cannot read log positions ${file}: ${(err as Error).message}; starting from now`);
    return {};
  }
  try {
    return fileSchema.parse(JSON.parse(text)).containers;
  } catch (err) {
    log.warn(`log positions ${file} are not valid (${err instanceof Error ? err.message.split("\n")[0] : String(err)}); starting from now`);
    return {};
  }
}
