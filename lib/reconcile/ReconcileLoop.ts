import type { ControlPlaneClient } from "../controlplane/ControlPlaneClient.ts";
import type { DeployContext } from "../drivers.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { planChanges } from "../state/planChanges.ts";
import type { ActualState } from "../state/types.ts";
import type { Drivers } from "./Drivers.ts";
import type { ExpectedStateSource } from "./expectedStateSource.ts";
import { FailureBackoff } from "./FailureBackoff.ts";
import { healLeftovers } from "./healLeftovers.ts";
import { observeActual } from "./observeActual.ts";
import { reconcilePass, type PassResult } from "./reconcilePass.ts";
import { sendStatusReport } from "./statusReport.ts";

const log = logger("loop");

/** Podman events after which a managed container may need the agent (it stopped or went bad). */
const WAKING_EVENTS = new Set(["died", "oom", "remove"]);

export interface ReconcileLoopOptions {
  source: ExpectedStateSource;
  drivers: Drivers;
  context: DeployContext;
  /** Status reports go here; undefined in local (--state) mode. */
  client?: ControlPlaneClient;
  dataDirRoot: string;
  pollIntervalMs: number;
  passBudgetMs: number;
  publicIp?: string;
  /** Called after every pass (tests, doctor). */
  onPass?: (result: PassResult) => void;
  /** Called with the actual state at the end of every tick (log streaming follows its containers). */
  onObserved?: (actual: ActualState) => void;
  /** Deferral of changes that keep failing (default: 10 s doubling to 5 min). */
  backoff?: FailureBackoff;
}

/**
 * The `agent run` state machine. IDLE: fetch expected state, observe, report, sleep until the next
 * poll or a wake-up (a managed container died). On drift: PROCESSING (reconcilePass) with the
 * snapshot of expected state taken when drift was seen.
 */
export class ReconcileLoop {
  private stopping = false;
  private wakeUp?: () => void;
  private woken = false;
  private running?: Promise<void>;
  private unsubscribe?: () => void;
  private healed = false;
  private readonly backoff: FailureBackoff;
  state: "idle" | "processing" | "stopped" = "idle";

  constructor(private readonly options: ReconcileLoopOptions) {
    this.backoff = options.backoff ?? new FailureBackoff();
  }

  start(): void {
    if (this.running) return;
    this.unsubscribe = this.options.drivers.runtime.subscribe((event) => {
      if (WAKING_EVENTS.has(event.status) && this.state === "idle") {
        log.info(`container ${event.containerId.slice(0, 12)} ${event.status}; reconciling now`);
        this.wake();
      }
    });
    this.running = this.loop();
  }

  /** Ends the loop after the change in flight; resolves when it has reported and stopped. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    this.wake();
    await this.running;
  }

  /** Skip the rest of the idle wait (a managed container died, a work item changed something). */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.tick();
      } catch (err) {
        log.error(`reconcile tick failed: ${errorMessage(err)}`);
      }
      if (this.stopping) break;
      await this.idleWait();
    }
    this.state = "stopped";
  }

  private async tick(): Promise<void> {
    const snapshot = await this.options.source.fetch();
    if (snapshot && !this.healed) {
      this.healed = true;
      await healLeftovers(this.options.drivers.runtime, snapshot.state);
    }
    let actual = await observeActual(this.options.drivers);
    if (snapshot) {
      const plan = planChanges(snapshot.state, actual);
      this.backoff.retainOnly(plan);
      const deferred = plan.filter((c) => this.backoff.isDeferred(c)).length;
      if (plan.length > deferred) {
        const note = [snapshot.origin === "last-good" ? "against the last good state" : "", deferred ? `${deferred} deferred after failing` : ""].filter(Boolean).join("; ");
        log.info(`drift: ${plan.length} change(s) needed${note ? ` (${note})` : ""}`);
        this.state = "processing";
        const result = await reconcilePass({
          expected: snapshot.state,
          drivers: this.options.drivers,
          context: this.options.context,
          budgetMs: this.options.passBudgetMs,
          initialActual: actual,
          shouldStop: () => this.stopping,
          afterChange: (a) => this.report(a, false),
          backoff: this.backoff,
        });
        this.state = "idle";
        actual = result.actual;
        this.logPass(result);
        this.options.onPass?.(result);
      }
    }
    this.options.onObserved?.(actual);
    await this.report(actual, true);
  }

  private logPass(result: PassResult): void {
    const summary = `${result.applied.length} applied in ${result.durationMs} ms`;
    if (result.converged) log.info(`converged: ${summary}`);
    else if (result.stoppedBy === "failure") log.warn(`pass stopped by a failed change (${summary}); the rest goes on at the next poll`);
    else if (result.stoppedBy === "backoff") log.warn(`${result.remaining.length} change(s) left, all deferred after failing (${summary})`);
    else log.warn(`pass ended by ${result.stoppedBy} with ${result.remaining.length} change(s) left (${summary})`);
  }

  private async report(actual: ActualState, withResources: boolean): Promise<void> {
    if (!this.options.client) return;
    await sendStatusReport(this.options.client, actual.containers, { dataDirRoot: this.options.dataDirRoot, withResources, publicIp: this.options.publicIp });
  }

  private idleWait(): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.options.pollIntervalMs);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakeUp = undefined;
        self.woken = false;
        resolve();
      }
      this.wakeUp = done;
    });
  }
}
