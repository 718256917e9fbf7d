import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { DataDir } from "../datadir/DataDir.ts";
import type { ContainerRuntime, WireGuardDriver } from "../drivers.ts";
import { AgentError, InvalidInputError } from "../errors.ts";
import { normalizePeers } from "../state/normalizePeers.ts";
import type { ActualContainer } from "../state/types.ts";
import type { ParsedWorkItem, WorkItemType } from "./parseWorkItem.ts";
import { isActive, resolveManagedContainer } from "./resolveManagedContainer.ts";
import { resolveServiceVolumeDir } from "./serviceVolumeDir.ts";
import { archiveFolder, pruneArchives, type ArchiveRetention } from "./volumeArchives.ts";

export interface WorkContext {
  runtime: ContainerRuntime;
  /** Absent on nodes where the agent does not manage WireGuard. */
  wireguard?: WireGuardDriver;
  dataDir: DataDir;
  retention: ArchiveRetention;
}

/** What a handler is about to do, decided (and validated) before anything is touched. */
export interface WorkPlan {
  /** Full ids of the containers it will touch; kept in the ledger so an interrupted item can resume. */
  targets?: string[];
  /** Does it; resolves to one line for the log saying what was done. */
  run(): Promise<string>;
}

export interface WorkHandler<P> {
  /**
   * When the ledger shows the agent stopped in the middle of this item: `run-again` for actions
   * whose repetition changes nothing (stop, cleanup, peer sync), `fail` where a second run would
   * be a second action (restart).
   */
  onInterrupted: "run-again" | "fail";
  /** `resumeTargets`: the targets recorded before the interrupted run. */
  plan(payload: P, ctx: WorkContext, resumeTargets?: string[]): Promise<WorkPlan>;
}

type PayloadOf<T extends WorkItemType> = Extract<ParsedWorkItem, { type: T }>["payload"];

/** The managed container a restart/stop item names, refused when it belongs to another deployment. */
async function targetContainer(payload: { containerId: string; deploymentId?: string }, ctx: WorkContext): Promise<ActualContainer> {
  const container = resolveManagedContainer(await ctx.runtime.listManaged(), payload.containerId);
  const { deploymentId } = payload;
  if (deploymentId && container.deploymentId && container.deploymentId !== deploymentId) {
    throw new InvalidInputError(
      `container ${container.id.slice(0, 12)} belongs to deployment ${container.deploymentId}, not ${deploymentId}; refusing`,
    );
  }
  return container;
}

const restart: WorkHandler<PayloadOf<"restart">> = {
  onInterrupted: "fail",
  async plan(payload, ctx) {
    const container = await targetContainer(payload, ctx);
    return {
      targets: [container.id],
      async run() {
        await ctx.runtime.restart(container.id);
        return `restarted container ${container.name} (${container.id.slice(0, 12)})`;
      },
    };
  },
};

const stop: WorkHandler<PayloadOf<"stop">> = {
  onInterrupted: "run-again",
  async plan(payload, ctx) {
    const container = await targetContainer(payload, ctx);
    return {
      targets: [container.id],
      async run() {
        const short = `${container.name} (${container.id.slice(0, 12)})`;
        if (!isActive(container)) return `container ${short} was already ${container.state}`;
        await ctx.runtime.stop(container.id);
        return `stopped container ${short}`;
      },
    };
  },
};

/**
 * Every listed container must be a managed container of the named service, checked for all of
 * them before the first is touched: one wrong id fails the whole item and nothing is removed.
 * A resumed item works from the ids recorded before the interruption; those already gone count
 * as removed.
 */
const forceCleanup: WorkHandler<PayloadOf<"force_cleanup">> = {
  onInterrupted: "run-again",
  async plan(payload, ctx, resumeTargets) {
    const managed = await ctx.runtime.listManaged();
    let targets: ActualContainer[];
    let alreadyGone = 0;
    if (resumeTargets) {
      targets = [];
      for (const id of resumeTargets) {
        const container = managed.find((c) => c.id === id);
        if (container) targets.push(container);
        else alreadyGone++;
      }
    } else {
      const byId = new Map<string, ActualContainer>();
      for (const ref of payload.containerIds) {
        try {
          const container = resolveManagedContainer(managed, ref);
          byId.set(container.id, container);
        } catch (err) {
          if (err instanceof InvalidInputError) throw new InvalidInputError(`${err.message} (nothing was removed)`);
          throw err;
        }
      }
      targets = [...byId.values()];
    }
    for (const container of targets) {
      if (container.serviceId !== payload.serviceId) {
        throw new InvalidInputError(
          `container ${container.id.slice(0, 12)} belongs to service ${container.serviceId}, not ${payload.serviceId}; refusing (nothing was removed)`,
        );
      }
    }
    return {
      targets: resumeTargets ?? targets.map((c) => c.id),
      async run() {
        for (const container of targets) {
          if (isActive(container)) await ctx.runtime.stop(container.id);
          await ctx.runtime.remove(container.id);
        }
        const gone = alreadyGone ? `, ${alreadyGone} already gone` : "";
        return `removed ${targets.length} container(s) of service ${payload.serviceId}${gone}`;
      },
    };
  },
};

/**
 * Deletes `<data-dir>/volumes/<serviceId>` after archiving it. The folder is proven to be a real
 * directory directly inside the real volumes folder before anything happens; `rm` never follows
 * the symbolic links inside it, and the archive stores them as links.
 */
const cleanupVolumes: WorkHandler<PayloadOf<"cleanup_volumes">> = {
  onInterrupted: "run-again",
  async plan(payload, ctx) {
    const folder = await resolveServiceVolumeDir(ctx.dataDir.volumesDir, payload.serviceId);
    return {
      async run() {
        if (folder.kind === "missing") return `nothing to clean: ${folder.path} does not exist`;
        const archiveDir = join(ctx.dataDir.archivesDir, "volumes", payload.serviceId);
        const archive = await archiveFolder(folder.path, archiveDir);
        await rm(folder.path, { recursive: true });
        const pruned = await pruneArchives(archiveDir, ctx.retention);
        const prunedNote = pruned.length ? `; removed ${pruned.length} old archive(s)` : "";
        return `deleted ${folder.path}, archived to ${archive}${prunedNote}`;
      },
    };
  },
};

const deploy: WorkHandler<PayloadOf<"deploy">> = {
  onInterrupted: "run-again",
  async plan() {
    return { run: async () => "nothing to do: deployments happen through expected state" };
  },
};

const updateWireguard: WorkHandler<PayloadOf<"update_wireguard">> = {
  onInterrupted: "run-again",
  async plan(payload, ctx) {
    const peers = normalizePeers(payload.peers);
    const driver = ctx.wireguard;
    if (!driver) {
      throw new AgentError("WireGuard is not managed by the agent on this node; cannot apply the peer set", {
        hint: "run agent doctor to see why the WireGuard driver is not available",
      });
    }
    return {
      async run() {
        await driver.apply(peers);
        return `applied ${peers.length} WireGuard peer(s)`;
      },
    };
  },
};

export const WORK_HANDLERS: { [T in WorkItemType]: WorkHandler<PayloadOf<T>> } = {
  restart,
  stop,
  force_cleanup: forceCleanup,
  cleanup_volumes: cleanupVolumes,
  deploy,
  update_wireguard: updateWireguard,
};

export function handlerFor(item: ParsedWorkItem): { handler: WorkHandler<unknown>; payload: unknown } {
  return { handler: WORK_HANDLERS[item.type] as WorkHandler<unknown>, payload: item.payload };
}
