import type { LogSink } from "../../lib/logger.ts";

/** The last log lines, for the doctor screen: logs cannot go to stderr while ink owns the terminal. */
export class LogTail implements LogSink {
  private lines: readonly string[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(private readonly keep = 4) {}

  write(line: string): void {
    this.lines = [...this.lines, line].slice(-this.keep);
    for (const l of this.listeners) l();
  }

  snapshot = (): readonly string[] => this.lines;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
}
