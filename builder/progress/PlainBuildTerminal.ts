import { logger, type Logger } from "../../lib/logger.ts";
import type { BuildPhase } from "../BuildLog.ts";
import type { BuildTerminal } from "./BuildTerminal.ts";

/**
 * Plain `[build:<phase>] line` log lines on stderr (or JSON lines with --log-format json). With
 * `quiet` (the build poller of `agent run`), tool output goes to the debug level and only phase
 * changes and the outcome are logged at info, so a long build does not flood the journal.
 */
export class PlainBuildTerminal implements BuildTerminal {
  private readonly loggers = new Map<string, Logger>();

  constructor(private readonly options: { prefix?: string; quiet?: boolean } = {}) {}

  private log(phase: string): Logger {
    const name = `${this.options.prefix ?? "build"}:${phase}`;
    let l = this.loggers.get(name);
    if (!l) this.loggers.set(name, (l = logger(name)));
    return l;
  }

  phase(phase: BuildPhase): void {
    if (this.options.quiet) this.log(phase).info(`${phase} started`);
  }

  line(text: string, phase: BuildPhase): void {
    if (this.options.quiet) this.log(phase).debug(text);
    else this.log(phase).info(text);
  }

  async finish(outcome: "completed" | "failed" | "cancelled", summary: string): Promise<void> {
    const l = logger(this.options.prefix ?? "build");
    if (outcome === "failed") l.error(summary);
    else l.info(`${outcome}: ${summary}`);
  }
}
