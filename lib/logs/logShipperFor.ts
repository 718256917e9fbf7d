import type { LogShipper } from "./LogShipper.ts";
import { NullShipper } from "./NullShipper.ts";
import { VictoriaLogsShipper, type VictoriaLogsShipperOptions } from "./VictoriaLogsShipper.ts";

/** The shipper for the `--logs-endpoint` setting: VictoriaLogs when set, otherwise one that discards. */
export function logShipperFor(endpoint: string | undefined, options: Omit<VictoriaLogsShipperOptions, "endpoint"> = {}): LogShipper {
  return endpoint ? new VictoriaLogsShipper({ ...options, endpoint }) : new NullShipper();
}
