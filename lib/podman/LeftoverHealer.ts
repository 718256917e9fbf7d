import { z } from "zod";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { killProcessTree } from "../processTree.ts";
import { LABEL_SERVICE_ID } from "../state/types.ts";
import { readReservations, releaseReservation } from "./cniReservations.ts";
import { readConmonProcesses, withHoldings } from "./conmonProcesses.ts";
import { SocketTables } from "../procNet.ts";
import { ContainerList } from "./containerSpec.ts";
import { describeLeftover, findLeftovers, healsByItself, remedyOf, type Leftover, type LeftoverSnapshot, type Needs } from "./leftovers.ts";
import type { PodmanApi } from "./PodmanApi.ts";

const log = logger("podman");

const Info = z.object({ store: z.object({ graphRoot: z.string() }) });
const NetworkSubnets = z.object({ subnets: z.array(z.object({ subnet: z.string() })).nullish() });

export interface HealOutcome {
  /** Repaired (each also logged with what was done). */
  healed: Leftover[];
  /** Repairs that were tried and failed, with why. */
  failed: Array<{ leftover: Leftover; error: string }>;
  /** Containers the agent does not manage that hold what the expected state needs: named, never touched. */
  foreign: Leftover[];
}

/**
 * Finds and repairs what cut-short Podman operations left behind (lib/podman/leftovers), for the
 * Podman behind `api` and the agent's network: at start, when a deploy fails on a port or address
 * conflict, and when `agent doctor` is asked to.
 */
export class LeftoverHealer {
  private graphRoot?: string;

  constructor(
    private readonly api: PodmanApi,
    private readonly networkName: string,
    private readonly stopGraceSeconds: number,
    /** Told every full container list a snapshot reads (PodmanRuntime reuses it for the pass right after). */
    private readonly onContainerList?: (raw: unknown) => void,
  ) {}

  /** conmons and reservations are read before the container list: what they name exists in Podman's database by then. */
  async snapshot(): Promise<LeftoverSnapshot> {
    const subnet = await this.networkSubnet();
    const reservations = subnet ? readReservations(this.networkName, subnet) : [];
    const found = readConmonProcesses();
    const raw = await this.api.json("GET", "/containers/json", { query: { all: true } });
    const listed = ContainerList.parse(raw) ?? [];
    this.onContainerList?.(raw);
    const containers = listed.map((c) => ({
      id: c.Id,
      name: (c.Names?.[0] ?? c.Id).replace(/^\//, ""),
      state: (c.State ?? "").toLowerCase(),
      managed: c.Labels?.[LABEL_SERVICE_ID] !== undefined,
    }));
    const known = new Map(containers.map((c) => [c.id, c]));
    // A conmon of an unknown container may belong to another Podman (another storage root). This
    // Podman's root is what the conmons of its known containers say, else /info (slow) is asked.
    const unknown = found.filter((c) => !known.has(c.containerId));
    const root = unknown.length === 0 ? undefined : (found.find((c) => known.has(c.containerId) && c.storageRoot)?.storageRoot ?? (await this.storageRoot()));
    // What a conmon holds matters only when its container is unknown or not managed: the others
    // (most of them) are not read.
    const sockets = new SocketTables();
    const conmons = found
      .filter((c) => known.has(c.containerId) || c.storageRoot === root)
      .map((c) => (known.get(c.containerId)?.managed ? { ...c, ports: [], addresses: [] } : withHoldings(c, sockets)));
    return { containers, conmons, reservations };
  }

  async find(needs: Needs): Promise<Leftover[]> {
    return findLeftovers(await this.snapshot(), needs);
  }

  /**
   * Repairs what the agent repairs by itself (`healsByItself`), or every repairable leftover with
   * `everything` (doctor's fix, which a person asked for). One log line per finding.
   */
  async heal(needs: Needs, options: { everything?: boolean } = {}): Promise<HealOutcome> {
    const outcome: HealOutcome = { healed: [], failed: [], foreign: [] };
    for (const leftover of await this.find(needs)) {
      if (leftover.kind === "foreign-holder") {
        outcome.foreign.push(leftover);
        continue;
      }
      if (!options.everything && !healsByItself(leftover)) continue;
      try {
        await this.repair(leftover);
        log.warn(`leftover of an interrupted operation: ${describeLeftover(leftover)}; ${remedyOf(leftover)}: done`);
        outcome.healed.push(leftover);
      } catch (err) {
        log.error(`leftover of an interrupted operation: ${describeLeftover(leftover)}; ${remedyOf(leftover)}: failed: ${errorMessage(err)}`);
        outcome.failed.push({ leftover, error: errorMessage(err) });
      }
    }
    return outcome;
  }

  async repair(leftover: Leftover): Promise<void> {
    switch (leftover.kind) {
      case "stray-conmon":
        // The container's process is in its own session: killProcessTree kills it first, and conmon
        // then exits by itself, closing the ports it held.
        await killProcessTree(leftover.conmon.pid, { graceMs: 5000 });
        return;
      case "stuck-container":
        if (leftover.container.state === "removing") {
          await this.api.call("DELETE", `/containers/${leftover.container.id}`, { query: { force: true, v: true, timeout: this.stopGraceSeconds }, timeoutMs: (this.stopGraceSeconds + 30) * 1000 }, [404]);
        } else {
          await this.api.call("POST", `/containers/${leftover.container.id}/stop`, { query: { timeout: this.stopGraceSeconds }, timeoutMs: (this.stopGraceSeconds + 30) * 1000 }, [304, 404]);
        }
        return;
      case "stale-reservation":
        await releaseReservation(leftover.reservation);
        return;
      case "foreign-holder":
        throw new Error("a container the agent does not manage is never touched");
    }
  }

  private async storageRoot(): Promise<string> {
    this.graphRoot ??= Info.parse(await this.api.json("GET", "/info")).store.graphRoot;
    return this.graphRoot;
  }

  private async networkSubnet(): Promise<string | undefined> {
    const raw = await this.api.json("GET", `/networks/${encodeURIComponent(this.networkName)}/json`, {}, [404]);
    return raw === undefined ? undefined : NetworkSubnets.parse(raw).subnets?.[0]?.subnet;
  }
}
