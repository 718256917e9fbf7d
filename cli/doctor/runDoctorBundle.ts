import { writeDoctorBundle } from "../../lib/doctor/bundle.ts";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import type { DoctorSession, FixOutcome } from "../../lib/doctor/DoctorSession.ts";
import { printJson, printResult } from "../output.ts";
import { doctorReport, formatOutcome, formatResultLines, formatSummary } from "./doctorReport.ts";

export interface DoctorBundleOptions {
  /** Checked by checkBundlePath before the session started. */
  path: string;
  json: boolean;
  fix: boolean;
  /** Applies every automatic fix (cli/commands/doctor.ts). */
  applyAll: (session: DoctorSession, onOutcome?: (o: FixOutcome) => void) => Promise<FixOutcome[]>;
}

/**
 * `agent doctor --bundle FILE`: the checks without a screen (the usual text lines, or the JSON
 * document with --json), fixes only with --fix, then the bundle; where it went and its size on
 * stdout (stderr with --json, so stdout stays one JSON document).
 */
export async function runDoctorBundle(session: DoctorSession, ctx: DoctorContext, options: DoctorBundleOptions): Promise<void> {
  const text = !options.json;
  await session.runAll(text ? (r) => printResult(formatResultLines(r).join("\n")) : undefined);
  const outcomes = options.fix ? await options.applyAll(session, text ? (o) => printResult(formatOutcome(o)) : undefined) : undefined;
  const report = doctorReport(session, outcomes);
  if (text) printResult(formatSummary(session.summary()));
  else printJson(report);
  const bundle = await writeDoctorBundle(ctx, report, options.path);
  const missing = bundle.notes.length > 0 ? `; not collected: ${bundle.notes.map((n) => n.piece).join(", ")} (see README.txt inside)` : "";
  const line = `bundle written to ${bundle.path} (${formatBytes(bundle.bytes)}, ${bundle.files.length} files${missing})`;
  if (text) printResult(line);
  else process.stderr.write(line + "\n");
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
