/**
 * Leftovers of cut-short Podman operations, made on purpose in an isolated world
 * (test/support/isolatedPodman.ts), the way a killed podman process leaves them:
 *
 *   interruptStop(world, name)   a second API service of the world starts stopping `name` (a
 *                                container that ignores SIGTERM) and is SIGKILLed mid-stop:
 *                                the container stays "stopping", its process and conmon run on
 *   strandConmon(world, name)    interruptStop, then `podman rm -f`: Podman forgets the
 *                                container while its conmon keeps running and keeps its ports
 *   STUBBORN_CMD                 busybox httpd as PID 1 on :8080, which ignores SIGTERM
 */
import { join } from "node:path";
import { spawn } from "../../lib/exec.ts";
import { PodmanApi } from "../../lib/podman/PodmanApi.ts";
import { pingPodmanSocket } from "../../lib/podman/PodmanSocket.ts";
import type { IsolatedPodman } from "./isolatedPodman.ts";
import { waitFor } from "./podman.ts";

export const STUBBORN_CMD = ["httpd", "-f", "-p", "8080", "-h", "/"];

/** Podman's state word (`running`, `stopping`, `exited`, …); undefined when there is no such container. */
export async function containerState(world: IsolatedPodman, name: string): Promise<string | undefined> {
  const rows = JSON.parse(await world.podman(["ps", "-a", "--filter", `name=^${name}$`, "--format", "json"])) as Array<{ State?: string }>;
  return rows[0]?.State?.toLowerCase();
}

export async function interruptStop(world: IsolatedPodman, name: string): Promise<void> {
  const socketPath = join(world.dir, `doomed-${Math.random().toString(36).slice(2, 8)}.sock`);
  const { CONTAINER_HOST: _, ...configEnv } = world.env;
  const service = spawn("podman", ["system", "service", "--time=0", `unix://${socketPath}`], { env: configEnv });
  service.catch(() => undefined);
  const api = new PodmanApi({ socketPath });
  try {
    await waitFor(() => pingPodmanSocket(socketPath, 1000), 20_000, "the doomed service");
    void api.call("POST", `/containers/${name}/stop`, { query: { timeout: 30 }, timeoutMs: 60_000 }).catch(() => undefined);
    await waitFor(async () => (await containerState(world, name)) === "stopping", 15_000, `${name} to be stopping`);
    service.kill("SIGKILL");
    await service.catch(() => undefined);
  } finally {
    await api.close().catch(() => undefined);
  }
}

export async function strandConmon(world: IsolatedPodman, name: string): Promise<void> {
  await interruptStop(world, name);
  await world.podman(["rm", "-f", "-t", "0", name]);
}
