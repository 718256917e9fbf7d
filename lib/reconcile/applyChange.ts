import type { DeployContext } from "../drivers.ts";
import { AgentError } from "../errors.ts";
import type { Change } from "../state/types.ts";
import type { Drivers } from "./Drivers.ts";

/** Applies one planned change through the drivers. */
export async function applyChange(change: Change, drivers: Drivers, context: DeployContext): Promise<void> {
  switch (change.kind) {
    case "stop-orphan":
      return drivers.runtime.stop(change.container.id);
    case "remove-orphan":
      return drivers.runtime.remove(change.container.id);
    case "start":
      return drivers.runtime.start(change.container.id);
    case "deploy":
      await drivers.runtime.deploy(change.expected, context);
      return;
    case "redeploy":
      await drivers.runtime.remove(change.container.id);
      await drivers.runtime.deploy(change.expected, context);
      return;
    case "dns":
      return required(drivers.dns, "DNS").apply(change.records);
    case "routes":
      return required(drivers.proxy, "proxy").apply(change.routes, change.certificates);
    case "wireguard":
      return required(drivers.wireguard, "WireGuard").apply(change.peers);
  }
}

function required<T>(driver: T | undefined, what: string): T {
  if (!driver) throw new AgentError(`no ${what} driver is configured on this node`);
  return driver;
}
