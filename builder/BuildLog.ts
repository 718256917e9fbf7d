import type { LogShipper } from "../lib/logs/LogShipper.ts";
import { redact } from "../lib/redact.ts";
import type { BuildTerminal } from "./progress/BuildTerminal.ts";

export type BuildPhase = "clone" | "plan" | "build" | "push";

export interface BuildLogFields {
  build_id: string;
  service_id?: string;
  project_id?: string;
}

/**
 * Every line of one build, redacted once, sent to VictoriaLogs as a build log (PROTOCOL.md:
 * build_id, service_id, project_id, log_type "build") and to the terminal. Shipping never blocks:
 * the shipper buffers and counts what it cannot deliver.
 */
export class BuildLog {
  private readonly fields: Record<string, string>;
  private count = 0;
  private current: BuildPhase = "clone";

  constructor(
    fields: BuildLogFields,
    private readonly terminal: BuildTerminal,
    private readonly shipper?: LogShipper,
  ) {
    this.fields = { log_type: "build", build_id: fields.build_id };
    if (fields.service_id) this.fields.service_id = fields.service_id;
    if (fields.project_id) this.fields.project_id = fields.project_id;
  }

  /** Lines logged so far (shipped or not). */
  get lines(): number {
    return this.count;
  }

  phase(phase: BuildPhase): void {
    this.current = phase;
    this.terminal.phase(phase);
  }

  line(text: string, phase: BuildPhase = this.current): void {
    const msg = redact(text);
    this.count++;
    this.shipper?.push({ msg, fields: this.fields });
    this.terminal.line(msg, phase);
  }

  /** A bound `line` for one phase, handed to the steps. */
  for(phase: BuildPhase): (text: string) => void {
    return (text) => this.line(text, phase);
  }
}
