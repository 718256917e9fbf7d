import { AgentError, errorMessage } from "../errors.ts";
import { run } from "../exec.ts";
import { isAutomatic, type Check, type CheckResult, type CheckStatus, type Fix } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

export interface CheckEntry {
  id: string;
  title: string;
  state: "pending" | "running" | "done";
  result?: CheckResult;
  /** The last fix applied to this check, and how it went. */
  fix?: { state: "applying" | "applied" | "failed"; error?: string };
}

export interface SessionSnapshot {
  entries: readonly CheckEntry[];
  phase: "idle" | "checking" | "ready" | "fixing";
}

export interface ProposedFix {
  checkId: string;
  title: string;
  status: CheckStatus;
  fix: Fix;
  automatic: boolean;
}

export interface FixOutcome {
  checkId: string;
  description: string;
  applied: boolean;
  error?: string;
  /** The check's status when it was run again after the fix. */
  statusAfter?: CheckStatus;
}

export type Summary = Record<CheckStatus, number>;

/** How many checks run at once by default: enough to overlap slow probes (network, podman), few enough not to crowd a small server. */
export const DEFAULT_CONCURRENCY = 5;

export interface DoctorSessionOptions {
  /** At most this many checks run at the same time (1: one after another). */
  concurrency?: number;
}

/**
 * Runs checks, several at once, and applies fixes, re-checking what each fix touched. It holds
 * no rendering: the ink screen and the plain-text and JSON outputs all read its snapshots.
 *
 * Checks start in list order, at most `concurrency` at a time; each entry turns done as its
 * check finishes, in whatever order they finish. Shared facts are worked out once however many
 * checks ask at the same moment: DoctorContext keeps the promise, not the value. A check marked
 * `waitForEarlier` starts only when every check before it has finished (and, since checks start
 * in order, so does everything after it).
 */
export class DoctorSession {
  private snap: SessionSnapshot;
  private readonly listeners = new Set<() => void>();
  readonly concurrency: number;
  private running?: Promise<CheckResult[]>;

  constructor(
    readonly checks: readonly Check<DoctorContext>[],
    readonly ctx: DoctorContext,
    options: DoctorSessionOptions = {},
  ) {
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? DEFAULT_CONCURRENCY));
    this.snap = { entries: pendingEntries(checks), phase: "idle" };
  }

  snapshot = (): SessionSnapshot => this.snap;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private update(change: (s: SessionSnapshot) => SessionSnapshot): void {
    this.snap = change(this.snap);
    for (const l of this.listeners) l();
  }

  private patch(id: string, entry: Partial<CheckEntry>): void {
    this.update((s) => ({ ...s, entries: s.entries.map((e) => (e.id === id ? { ...e, ...entry } : e)) }));
  }

  private setPhase(phase: SessionSnapshot["phase"]): void {
    this.update((s) => ({ ...s, phase }));
  }

  /**
   * Runs every check (several at once) and resolves with the results in check order.
   * `onResult` sees each result in check order too: a result is handed over once every check
   * before it has finished, so printed output reads the same however the checks interleave.
   * Called while a round is running, it returns that round.
   */
  runAll(onResult?: (result: CheckResult) => void): Promise<CheckResult[]> {
    if (this.running) return this.running;
    if (this.snap.phase === "fixing") return Promise.reject(new AgentError("fixes are being applied; run the checks again when they are done"));
    const round = this.round(onResult).finally(() => {
      this.running = undefined;
    });
    this.running = round;
    return round;
  }

  /** Forgets every result (and what the context found) and runs all checks again. */
  rerun(onResult?: (result: CheckResult) => void): Promise<CheckResult[]> {
    return this.runAll(onResult);
  }

  private async round(onResult?: (result: CheckResult) => void): Promise<CheckResult[]> {
    this.update(() => ({ entries: pendingEntries(this.checks), phase: "checking" }));
    this.ctx.refresh();
    const results: Array<CheckResult | undefined> = this.checks.map(() => undefined);
    let reported = 0;
    const report = () => {
      while (reported < results.length && results[reported] !== undefined) {
        const result = results[reported]!;
        reported++;
        onResult?.(result);
      }
    };
    let next = 0;
    let active = 0;
    let failure: { error: unknown } | undefined;
    await new Promise<void>((resolve, reject) => {
      const pump = () => {
        if (failure) return active === 0 ? reject(failure.error) : undefined;
        if (next === this.checks.length && active === 0) return resolve();
        while (next < this.checks.length && active < this.concurrency) {
          const check = this.checks[next]!;
          // Everything before it must be done (reported counts the done prefix).
          if (check.waitForEarlier && reported < next) break;
          const index = next++;
          active++;
          void this.runOne(check).then((result) => {
            active--;
            results[index] = result;
            try {
              report();
            } catch (error) {
              // onResult failed (stdout closed, say): start nothing more and hand its error back.
              failure ??= { error };
            }
            pump();
          });
        }
      };
      pump();
    }).finally(() => this.setPhase("ready"));
    return results as CheckResult[];
  }

  private async runOne(check: Check<DoctorContext>): Promise<CheckResult> {
    this.patch(check.id, { state: "running" });
    let result: CheckResult;
    try {
      result = await check.run(this.ctx);
    } catch (err) {
      result = { id: check.id, title: check.title, status: "fail", detail: `the check itself failed: ${errorMessage(err)}` };
    }
    this.patch(check.id, { state: "done", result });
    return result;
  }

  results(): CheckResult[] {
    return this.snap.entries.flatMap((e) => (e.result ? [e.result] : []));
  }

  proposedFixes(): ProposedFix[] {
    return proposedFixesOf(this.snap.entries);
  }

  /** Applies the fix of each check in order, re-running that check after it. */
  async applyFixes(checkIds: readonly string[], onOutcome?: (outcome: FixOutcome) => void): Promise<FixOutcome[]> {
    if (this.running) await this.running.catch(() => {});
    this.setPhase("fixing");
    const outcomes: FixOutcome[] = [];
    try {
      for (const id of checkIds) {
        const outcome = await this.applyFix(id);
        outcomes.push(outcome);
        onOutcome?.(outcome);
      }
    } finally {
      this.setPhase("ready");
    }
    return outcomes;
  }

  private async applyFix(checkId: string): Promise<FixOutcome> {
    const check = this.checks.find((c) => c.id === checkId);
    const fix = this.snap.entries.find((e) => e.id === checkId)?.result?.fix;
    if (!check || !fix) return { checkId, description: "", applied: false, error: `no fix proposed for ${checkId}` };
    this.patch(checkId, { fix: { state: "applying" } });
    let error: string | undefined;
    try {
      await runFix(fix);
    } catch (err) {
      error = errorMessage(err);
    }
    this.patch(checkId, { fix: error === undefined ? { state: "applied" } : { state: "failed", error } });
    this.ctx.refresh();
    const after = await this.runOne(check);
    return { checkId, description: fix.description, applied: error === undefined, ...(error !== undefined ? { error } : {}), statusAfter: after.status };
  }

  summary(): Summary {
    const out: Summary = { ok: 0, warn: 0, fail: 0, skip: 0 };
    for (const r of this.results()) out[r.status]++;
    return out;
  }

  /** 0 when every check is ok, warn or skip; 1 when any fails. */
  exitCode(): 0 | 1 {
    return this.results().some((r) => r.status === "fail") ? 1 : 0;
  }

  close(): Promise<void> {
    return this.ctx.close();
  }
}

/** Fixes of warn/fail results; `automatic` ones can be applied here, the others are steps for a person. */
export function proposedFixesOf(entries: readonly CheckEntry[]): ProposedFix[] {
  return entries.flatMap((e) => {
    const r = e.result;
    if (!r?.fix || (r.status !== "warn" && r.status !== "fail")) return [];
    return [{ checkId: e.id, title: e.title, status: r.status, fix: r.fix, automatic: isAutomatic(r.fix) }];
  });
}

async function runFix(fix: Fix): Promise<void> {
  if (fix.apply) return fix.apply();
  if (fix.command && fix.command.length > 0) {
    const [file, ...args] = fix.command;
    await run(file!, args, { timeoutMs: 600_000, env: { DEBIAN_FRONTEND: "noninteractive" } });
    return;
  }
  throw new AgentError(`this one is for a person to do: ${fix.description}`);
}

function pendingEntries(checks: readonly Check<DoctorContext>[]): CheckEntry[] {
  return checks.map((c) => ({ id: c.id, title: c.title, state: "pending" }));
}
