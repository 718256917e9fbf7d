import type { DeployContext } from "../drivers.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { planChanges } from "../state/planChanges.ts";
import type { ActualState, Change, ExpectedState } from "../state/types.ts";
import type { Drivers } from "./Drivers.ts";
import { applyChange } from "./applyChange.ts";
import type { FailureBackoff } from "./FailureBackoff.ts";
import { observeActual } from "./observeActual.ts";

const log = logger("reconcile");

export interface AppliedChange {
  kind: Change["kind"];
  description: string;
  reason: string;
  durationMs: number;
}

export interface PassResult {
  converged: boolean;
  applied: AppliedChange[];
  failed?: AppliedChange & { error: string };
  /** The plan left when the pass ended (empty when converged). */
  remaining: Change[];
  /** Why the pass ended early, when it did ("backoff": only changes that failed recently are left). */
  stoppedBy?: "failure" | "timeout" | "shutdown" | "backoff";
  durationMs: number;
  /** Actual state as last observed. */
  actual: ActualState;
}

export interface PassOptions {
  expected: ExpectedState;
  drivers: Drivers;
  context: DeployContext;
  /** Wall-clock budget of the pass (5 minutes in the loop). */
  budgetMs: number;
  /** Called after every applied (or failed) change with the freshly observed state. */
  afterChange?: (actual: ActualState) => Promise<void>;
  /** Checked before each change; true ends the pass after the change in flight. */
  shouldStop?: () => boolean;
  /** Optionally supply an already observed state for the first plan. */
  initialActual?: ActualState;
  /** Changes that failed recently are skipped until their retry time (the loop's memory). */
  backoff?: FailureBackoff;
}

/**
 * PROCESSING: apply the FIRST change of a freshly computed plan, re-read actual state, repeat
 * back to back until the plan is empty, a change fails, the budget runs out or a stop is asked.
 * Re-planning after every change means each step sees what the previous one really did.
 */
export async function reconcilePass(options: PassOptions): Promise<PassResult> {
  const started = performance.now();
  const deadline = started + options.budgetMs;
  const applied: AppliedChange[] = [];
  let actual = options.initialActual ?? (await observeActual(options.drivers));
  for (;;) {
    const plan = planChanges(options.expected, actual);
    const end = (stoppedBy?: PassResult["stoppedBy"], failed?: PassResult["failed"]): PassResult => ({
      converged: plan.length === 0,
      applied,
      failed,
      remaining: plan,
      stoppedBy,
      durationMs: Math.round(performance.now() - started),
      actual,
    });
    if (plan.length === 0) return end();
    if (options.shouldStop?.()) return end("shutdown");
    if (performance.now() >= deadline) return end("timeout");
    const change = options.backoff ? plan.find((c) => !options.backoff!.isDeferred(c)) : plan[0];
    if (!change) return end("backoff");
    const t0 = performance.now();
    log.info(`${change.description} (${change.reason})`);
    let failure: string | undefined;
    try {
      await applyChange(change, options.drivers, options.context);
    } catch (err) {
      failure = errorMessage(err);
    }
    const record: AppliedChange = { kind: change.kind, description: change.description, reason: change.reason, durationMs: Math.round(performance.now() - t0) };
    actual = await observeActual(options.drivers);
    await options.afterChange?.(actual);
    if (failure !== undefined) {
      const delay = options.backoff?.recordFailure(change);
      log.error(`failed: ${change.description}: ${failure}${delay ? `; retrying it in ${Math.round(delay / 1000)} s, other changes go on` : ""}`);
      const result = end("failure", { ...record, error: failure });
      result.remaining = planChanges(options.expected, actual);
      result.converged = false;
      return result;
    }
    options.backoff?.recordSuccess(change);
    applied.push(record);
  }
}
