import { logger } from "../logger.ts";
import { accessLogLine, parseAccessLine, type AccessLogFormat } from "./accessLog.ts";
import { FileTailer } from "./FileTailer.ts";
import type { LogShipper } from "./LogShipper.ts";

const log = logger("logs");
const WARN_EVERY_MS = 30_000;

export interface AccessLogShipperOptions {
  file: string;
  format: AccessLogFormat;
  shipper: LogShipper;
  pollIntervalMs?: number;
}

/**
 * Ships a proxy's JSON access log as `log_type: "http"` lines: tails the file (rotation
 * included) from where it ends when the agent starts. A line that does not parse is counted and
 * skipped. Reading waits while the shipper's buffer is full: the file keeps the lines.
 */
export class AccessLogShipper {
  private readonly tailer: FileTailer;
  private readonly timer: ReturnType<typeof setInterval>;
  private busy = false;
  private lastWarnAt = -Infinity;
  private counts = { shipped: 0, unparsable: 0 };

  constructor(private readonly options: AccessLogShipperOptions) {
    this.tailer = new FileTailer(options.file);
    this.timer = setInterval(() => void this.poll(), options.pollIntervalMs ?? 250);
    this.timer.unref?.();
    void this.poll();
  }

  stats(): { shipped: number; unparsable: number } {
    return { ...this.counts };
  }

  stop(): void {
    clearInterval(this.timer);
    this.tailer.close();
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (;;) {
        const room = this.options.shipper.room?.();
        if (room) await room;
        const lines = this.tailer.poll(1000);
        for (const line of lines) this.ship(line);
        if (lines.length < 1000) return;
      }
    } catch (err) {
      this.warn(`reading the access log ${this.options.file} failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.busy = false;
    }
  }

  private ship(line: string): void {
    if (line.trim() === "") return;
    const record = parseAccessLine(this.options.format, line);
    if (!record) {
      this.counts.unparsable++;
      this.warn(`skipped a line of ${this.options.file} (${line.length} characters) that is not a ${this.options.format} JSON access log entry`);
      return;
    }
    this.counts.shipped++;
    this.options.shipper.push(accessLogLine(record));
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarnAt < WARN_EVERY_MS) return;
    this.lastWarnAt = now;
    log.warn(`${message} (${this.counts.unparsable} unparsable lines skipped so far)`);
  }
}
