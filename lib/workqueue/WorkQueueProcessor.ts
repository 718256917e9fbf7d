import type { ControlPlaneClient } from "../controlplane/ControlPlaneClient.ts";
import type { WorkItemWire } from "../controlplane/schemas.ts";
import type { DataDir } from "../datadir/DataDir.ts";
import type { ContainerRuntime, WireGuardDriver } from "../drivers.ts";
import { AgentError, errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { parseWorkItem } from "./parseWorkItem.ts";
import { WorkLedger, type LedgerEntry, type WorkResult } from "./WorkLedger.ts";
import { handlerFor, type WorkContext } from "./workHandlers.ts";
import { DEFAULT_RETENTION, type ArchiveRetention } from "./volumeArchives.ts";

const log = logger("workqueue");
const MAX_ERROR_LENGTH = 2000;

export interface WorkQueueOptions {
  client: Pick<ControlPlaneClient, "getWorkQueue" | "completeWorkItem">;
  runtime: ContainerRuntime;
  /** The node's WireGuard driver; without it `update_wireguard` items fail with a clear message. */
  wireguard?: WireGuardDriver;
  dataDir: DataDir;
  /** Volume archives kept per service (default: the newest 3, and any younger than 7 days). */
  retention?: Partial<ArchiveRetention>;
  /** Entries kept in the ledger (default 1000). */
  ledgerLimit?: number;
  /** Called after an item completed (a container or the peer set may have changed; `deploy` asks for a reconcile). */
  onActed?: (item: { id: string; type: string }) => void;
}

export interface WorkItemOutcome {
  id: string;
  type: string;
  status: "completed" | "failed";
  error?: string;
  /** The result came from the ledger: the item had been handled before and was only reported again. */
  replayed: boolean;
  /** The control plane acknowledged the report. */
  reported: boolean;
}

export interface WorkQueueSummary {
  items: WorkItemOutcome[];
  /** Items handled or re-reported in this pass. */
  processed: number;
  completed: number;
  failed: number;
  replayed: number;
  /** Results the control plane did not acknowledge; they are reported again on the next poll. */
  unreported: number;
}

/**
 * Works the control plane's queue of one-off operations, exactly once as far as this node can:
 * each item is marked `acting` in the ledger before it acts and its result is recorded before it
 * is reported, so an item sent again after a lost report is re-reported, never re-run.
 */
export class WorkQueueProcessor {
  private readonly ledger: WorkLedger;
  private readonly context: WorkContext;
  private running?: Promise<WorkQueueSummary>;

  constructor(private readonly options: WorkQueueOptions) {
    this.ledger = WorkLedger.load(options.dataDir, { limit: options.ledgerLimit });
    this.context = {
      runtime: options.runtime,
      wireguard: options.wireguard,
      dataDir: options.dataDir,
      retention: {
        keep: options.retention?.keep ?? DEFAULT_RETENTION.keep,
        maxAgeDays: options.retention?.maxAgeDays ?? DEFAULT_RETENTION.maxAgeDays,
      },
    };
  }

  /**
   * Fetches pending items and handles them one after another. A call while another is running
   * waits for that one instead of starting a second. `signal` stops the batch between items.
   * Throws when the queue cannot be fetched.
   */
  processOnce(signal?: AbortSignal): Promise<WorkQueueSummary> {
    if (!this.running) {
      this.running = this.fetchAndHandle(signal).finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  private async fetchAndHandle(signal?: AbortSignal): Promise<WorkQueueSummary> {
    const items = await this.options.client.getWorkQueue();
    const outcomes: WorkItemOutcome[] = [];
    for (const item of items) {
      if (signal?.aborted) break;
      const outcome = await this.handle(item);
      if (outcome) outcomes.push(outcome);
    }
    return {
      items: outcomes,
      processed: outcomes.length,
      completed: outcomes.filter((o) => o.status === "completed").length,
      failed: outcomes.filter((o) => o.status === "failed").length,
      replayed: outcomes.filter((o) => o.replayed).length,
      unreported: outcomes.filter((o) => !o.reported).length,
    };
  }

  private async handle(item: WorkItemWire): Promise<WorkItemOutcome | undefined> {
    const entry = this.ledger.get(item.id);
    if (entry?.phase === "done") {
      log.info(`${item.type} ${item.id}: handled before (${entry.status}); reporting the recorded result again, not running it again`);
      return this.report(item, { status: entry.status!, ...(entry.error !== undefined ? { error: entry.error } : {}) }, true);
    }
    const result = await this.act(item, entry);
    if (!result) return undefined;
    try {
      this.ledger.recordResult(item.id, item.type, result);
    } catch (err) {
      // The action happened; reporting it is still right. The ledger keeps `acting`, so a lost
      // report leads to the interrupted-item rule, not to a blind second run.
      log.error(`${item.type} ${item.id}: cannot record the result in ${this.ledger.path}: ${errorMessage(err)}`);
    }
    return this.report(item, result, false);
  }

  /** Runs the item; undefined when it could not even be marked in the ledger (nothing was done). */
  private async act(item: WorkItemWire, interrupted: LedgerEntry | undefined): Promise<WorkResult | undefined> {
    let note: string;
    try {
      const parsed = parseWorkItem(item);
      const { handler, payload } = handlerFor(parsed);
      if (interrupted) {
        if (handler.onInterrupted === "fail") throw interruptedError(item.type, interrupted);
        log.warn(`${item.type} ${item.id}: the agent stopped while handling this item; running it again (repeating it changes nothing)`);
      }
      const plan = await handler.plan(payload, this.context, interrupted?.targets);
      try {
        this.ledger.markActing(item.id, item.type, plan.targets);
      } catch (err) {
        log.error(`${item.type} ${item.id}: not handled, the ledger ${this.ledger.path} cannot be written: ${errorMessage(err)}`);
        return undefined;
      }
      note = await plan.run();
    } catch (err) {
      const error = truncate(errorMessage(err));
      log.warn(`${item.type} ${item.id}: failed: ${error}`);
      return { status: "failed", error };
    }
    log.info(`${item.type} ${item.id}: completed: ${note}`);
    try {
      this.options.onActed?.({ id: item.id, type: item.type });
    } catch (err) {
      log.warn(`${item.type} ${item.id}: onActed callback failed: ${errorMessage(err)}`);
    }
    return { status: "completed" };
  }

  private async report(item: WorkItemWire, result: WorkResult, replayed: boolean): Promise<WorkItemOutcome> {
    const outcome: WorkItemOutcome = { id: item.id, type: item.type, ...result, replayed, reported: false };
    try {
      await this.options.client.completeWorkItem({ id: item.id, ...result });
      outcome.reported = true;
    } catch (err) {
      log.warn(`${item.type} ${item.id}: the result could not be reported (${errorMessage(err)}); it is reported again when the control plane sends the item again`);
      return outcome;
    }
    try {
      this.ledger.markReported(item.id);
    } catch (err) {
      log.warn(`${item.type} ${item.id}: cannot mark the report in ${this.ledger.path}: ${errorMessage(err)}`);
    }
    return outcome;
  }
}

function interruptedError(type: string, entry: LedgerEntry): AgentError {
  const target = entry.targets?.[0] ? ` container ${entry.targets[0].slice(0, 12)}` : "";
  return new AgentError(
    `the agent stopped while running this ${type}${target} (started ${entry.startedAt}); it may or may not have happened and is not run a second time: check the container and send the ${type} again if it is still needed`,
  );
}

function truncate(text: string): string {
  return text.length > MAX_ERROR_LENGTH ? text.slice(0, MAX_ERROR_LENGTH) + "…" : text;
}
