import type { BuildPhase } from "../BuildLog.ts";

export const PHASES: readonly BuildPhase[] = ["clone", "plan", "build", "push"];
export type PhaseState = "pending" | "running" | "done" | "failed";
export type BuildOutcome = "completed" | "failed" | "cancelled";

export interface BuildProgressState {
  title: string;
  phases: Record<BuildPhase, { state: PhaseState; ms?: number }>;
  /** The most recent output lines. */
  lines: readonly string[];
  outcome?: { kind: BuildOutcome; summary: string };
}

/** State of the live build view; each change makes a new snapshot (useSyncExternalStore). */
export class BuildProgressStore {
  private state: BuildProgressState;
  private readonly listeners = new Set<() => void>();
  private startedAt = new Map<BuildPhase, number>();

  constructor(
    title: string,
    private readonly maxLines = 10,
    private readonly now: () => number = Date.now,
  ) {
    const phases = Object.fromEntries(PHASES.map((p) => [p, { state: "pending" as PhaseState }])) as BuildProgressState["phases"];
    this.state = { title, phases, lines: [] };
  }

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  readonly get = (): BuildProgressState => this.state;

  phase(phase: BuildPhase): void {
    const phases = { ...this.state.phases };
    for (const p of PHASES) {
      if (p === phase) break;
      if (phases[p].state === "running") phases[p] = this.ended(p, "done");
      // A phase with nothing to do (a local --source has no clone) counts as done.
      else if (phases[p].state === "pending") phases[p] = { state: "done" };
    }
    if (phases[phase].state !== "running") {
      this.startedAt.set(phase, this.now());
      phases[phase] = { state: "running" };
    }
    this.set({ ...this.state, phases });
  }

  line(text: string): void {
    const lines = [...this.state.lines, text].slice(-this.maxLines);
    this.set({ ...this.state, lines });
  }

  finish(kind: BuildOutcome, summary: string): void {
    const phases = { ...this.state.phases };
    for (const p of PHASES) {
      if (phases[p].state === "running") phases[p] = this.ended(p, kind === "completed" ? "done" : "failed");
    }
    this.set({ ...this.state, phases, outcome: { kind, summary } });
  }

  private ended(phase: BuildPhase, state: PhaseState) {
    const start = this.startedAt.get(phase);
    return { state, ...(start === undefined ? {} : { ms: this.now() - start }) };
  }

  private set(state: BuildProgressState): void {
    this.state = state;
    for (const l of this.listeners) l();
  }
}
