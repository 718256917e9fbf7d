import type { LogLine, LogShipper, LogShipperStats } from "./LogShipper.ts";

/**
 * The shipper when no --logs-endpoint is set: lines go nowhere. It counts them as dropped so that
 * stats never claim a delivery that did not happen.
 */
export class NullShipper implements LogShipper {
  private dropped = 0;

  push(_line: LogLine): void {
    this.dropped++;
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  stats(): LogShipperStats {
    return { sent: 0, dropped: this.dropped, pending: 0 };
  }
}
