import type { BuildPhase } from "../BuildLog.ts";

/** Where a build's progress is shown to a person: a live view on a TTY, plain lines otherwise. */
export interface BuildTerminal {
  phase(phase: BuildPhase): void;
  line(text: string, phase: BuildPhase): void;
  /** The build ended; `summary` is one line (the pushed reference, or the error). */
  finish(outcome: "completed" | "failed" | "cancelled", summary: string): Promise<void>;
}
