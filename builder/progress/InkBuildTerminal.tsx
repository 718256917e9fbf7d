import { render, type Instance } from "ink";
import type { BuildPhase } from "../BuildLog.ts";
import { BuildProgressStore, type BuildOutcome } from "./BuildProgressStore.ts";
import { LiveBuildProgress } from "./BuildProgressView.tsx";
import type { BuildTerminal } from "./BuildTerminal.ts";

/** The live progress view on a terminal (stderr), redrawn at most 15 times a second. */
export class InkBuildTerminal implements BuildTerminal {
  private readonly store: BuildProgressStore;
  private readonly instance: Instance;

  constructor(title: string, stream: NodeJS.WriteStream = process.stderr) {
    this.store = new BuildProgressStore(title, Math.max(5, Math.min(15, (stream.rows ?? 24) - 6)));
    this.instance = render(<LiveBuildProgress store={this.store} />, { stdout: stream, exitOnCtrlC: false, patchConsole: false, maxFps: 15 });
  }

  phase(phase: BuildPhase): void {
    this.store.phase(phase);
  }

  line(text: string): void {
    this.store.line(text);
  }

  async finish(outcome: BuildOutcome, summary: string): Promise<void> {
    this.store.finish(outcome, summary);
    await this.instance.waitUntilRenderFlush?.();
    this.instance.unmount();
  }
}
