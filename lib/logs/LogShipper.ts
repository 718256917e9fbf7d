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
  /** Stream and query fields, e.g. build_id, service_id, project_id, log_type. */
  fields: Record<string, string | number>;
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
}
