import { statfsSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import type { ControlPlaneClient } from "../controlplane/ControlPlaneClient.ts";
import type { ContainerStatusWire, StatusReport } from "../controlplane/schemas.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import type { ActualContainer } from "../state/types.ts";

const log = logger("status");

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

/**
 * Reports the node's containers (and, on idle polls, its resources) to the control plane. A failed
 * report is logged, never thrown: the next one carries the same information.
 */
export async function sendStatusReport(
  client: Pick<ControlPlaneClient, "reportStatus">,
  containers: readonly ActualContainer[],
  options: { dataDirRoot: string; withResources: boolean; publicIp?: string },
): Promise<void> {
  try {
    await client.reportStatus({
      ...(options.withResources ? { resources: hostResources(options.dataDirRoot) } : {}),
      ...(options.publicIp ? { publicIp: options.publicIp } : {}),
      containers: containerStatuses(containers),
    });
  } catch (err) {
    log.warn(`status report failed: ${errorMessage(err)}`);
  }
}
