/**
 * Ships log lines to VictoriaLogs (PROTOCOL.md "Log shipping"). `push` never blocks and never
 * throws: lines are buffered in bounded memory, sent in batches, and counted as dropped when the
 * buffer is full or the endpoint keeps failing. A slow or dead endpoint never slows the caller.
 */
export interface LogLine {
  /** `_msg` */
  msg: string;
  /** `_time`; now when absent. */
  time?: Date;
  /** Nanoseconds within `time`'s millisecond; when absent a process-wide counter keeps push order. */
  subMsNanos?: number;
  /** Told what became of this line; `mark` is handed back to it. */
  origin?: LogOrigin;
  mark?: unknown;
  /** Stream and query fields, e.g. build_id, service_id, project_id, log_type. */
  fields: Record<string, string | number>;
}

/**
 * A source that wants to know which of its lines arrived: a container's follower persists its
 * position from `acknowledged` and counts its losses from `dropped`.
 */
export interface LogOrigin {
  /** Called in push order, once per line, after the endpoint answered 2xx for its batch. */
  acknowledged(mark: unknown): void;
  /** Lines of this origin lost for good: evicted from a full buffer, or in a batch that kept failing. */
  dropped(count: number): void;
}

export interface LogShipperStats {
  /** Lines accepted by the endpoint. */
  sent: number;
  /** Lines dropped (buffer full, or batches that failed for good). */
  dropped: number;
  /** Lines waiting in the buffer. */
  pending: number;
}

export interface LogShipper {
  push(line: LogLine): void;
  /** Sends what is buffered now; resolves when done or given up (bounded time). */
  flush(): Promise<void>;
  /** Flushes (bounded) and stops the timer. */
  close(): Promise<void>;
  stats(): LogShipperStats;
  /**
   * Undefined while the buffer has room; otherwise a promise that resolves once it has (or the
   * shipper closes). Sources that can wait — a container log Podman keeps — await it instead of
   * having lines evicted.
   */
  room?(): Promise<void> | undefined;
}
