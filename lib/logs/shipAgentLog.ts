import { configureLogging, logSink } from "../logger.ts";
import type { LogShipper } from "./LogShipper.ts";

/**
 * `--ship-agent-log`: every line the agent logs still goes where it went, and is also pushed to
 * the shipper with `log_type: "agent"` and `server_id`. Returns the function that stops it.
 * The shipper's own warnings are rate-limited, so they cannot feed back into a flood.
 */
export function shipAgentLog(shipper: LogShipper, serverId: string): () => void {
  const previous = logSink();
  const fields = { log_type: "agent", server_id: serverId };
  configureLogging({
    sink: {
      write(line) {
        previous.write(line);
        shipper.push({ msg: line, fields });
      },
    },
  });
  return () => configureLogging({ sink: previous });
}
