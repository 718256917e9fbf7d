import { existsSync } from "node:fs";
import { logPositionsFile, readPositions } from "../logs/LogPositionStore.ts";
import { resultOf, type Check } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

/** Lines of managed containers that never reached VictoriaLogs, as `agent run` counted them in the data dir. */
export const logDropsCheck: Check<DoctorContext> = {
  id: "logs.drops",
  title: "container logs reach VictoriaLogs (no dropped lines)",
  async run(ctx) {
    const file = logPositionsFile(ctx.dataDir.stateDir);
    if (!existsSync(file)) return resultOf(this, "skip", "no container log has been shipped from this data dir (no --logs-endpoint, or no agent run yet)");
    const records = Object.entries(readPositions(file));
    const dropped = records.filter(([, r]) => r.dropped > 0).sort(([, a], [, b]) => b.dropped - a.dropped);
    if (dropped.length === 0) return resultOf(this, "ok", `${records.length} container log(s) followed, no line dropped`);
    const total = dropped.reduce((sum, [, r]) => sum + r.dropped, 0);
    const lines = dropped.map(([id, r]) => `container ${id.slice(0, 12)} (service ${r.serviceId}): ${r.dropped} lines dropped`);
    return resultOf(this, "warn", [`${total} log lines never reached VictoriaLogs (it was slow, down or refused them):`, ...lines].join("\n"), {
      fix: { description: "check that the --logs-endpoint VictoriaLogs is up and fast enough; the counts are kept in " + file },
    });
  },
};
