import { statfsSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import type { ContainerStatusWire, StatusReport } from "../controlplane/schemas.ts";
import type { ActualContainer } from "../state/types.ts";

/** Containers as the control plane wants them: only those with a deployment id. */
export function containerStatuses(containers: readonly ActualContainer[]): ContainerStatusWire[] {
  return containers
    .filter((c): c is ActualContainer & { deploymentId: string } => Boolean(c.deploymentId))
    .map((c) => ({
      deploymentId: c.deploymentId,
      containerId: c.id,
      status: c.state === "running" ? "running" : c.state === "dead" || (c.state === "exited" && (c.exitCode ?? 0) !== 0) ? "failed" : "stopped",
      healthStatus: c.health,
    }));
}

export function hostResources(dataDir: string): NonNullable<StatusReport["resources"]> {
  let diskGb = 0;
  try {
    const fs = statfsSync(dataDir);
    diskGb = Math.round(((fs.blocks * fs.bsize) / 1024 ** 3) * 10) / 10;
  } catch {
    diskGb = 0;
  }
  return { cpuCores: cpus().length, memoryMb: Math.round(totalmem() / 1024 ** 2), diskGb };
}
