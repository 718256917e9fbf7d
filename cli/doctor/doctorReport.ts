import type { CheckResult, CheckStatus } from "../../lib/doctor/Check.ts";
import { isAutomatic } from "../../lib/doctor/Check.ts";
import type { DoctorSession, FixOutcome, Summary } from "../../lib/doctor/DoctorSession.ts";

export const STATUS_MARK: Record<CheckStatus, string> = { ok: "✓", warn: "!", fail: "✗", skip: "-" };

/** One result as plain lines: `✓ title — detail`, further detail lines and the fix indented. */
export function formatResultLines(r: CheckResult): string[] {
  const [first, ...rest] = r.detail.split("\n");
  const lines = [`${STATUS_MARK[r.status]} ${r.title}${first ? ` — ${first}` : ""}`];
  for (const line of rest) lines.push(`    ${line}`);
  if (r.fix && (r.status === "warn" || r.status === "fail")) lines.push(`    fix${isAutomatic(r.fix) ? "" : " (by hand)"}: ${r.fix.description}`);
  return lines;
}

export function formatSummary(s: Summary): string {
  return `${s.ok} ok, ${s.warn} warning${s.warn === 1 ? "" : "s"}, ${s.fail} failed, ${s.skip} skipped`;
}

export function formatOutcome(o: FixOutcome): string {
  return o.applied ? `fixed: ${o.description}` : `fix failed: ${o.description}: ${o.error}`;
}

/** The `--json` document: stable ids, statuses, details, fixes (as argv when they run a program) and drift changes. */
export function doctorReport(session: DoctorSession, fixes?: FixOutcome[]) {
  const checks = session.results().map((r) => ({
    id: r.id,
    title: r.title,
    status: r.status,
    detail: r.detail,
    ...(r.fix ? { fix: { description: r.fix.description, automatic: isAutomatic(r.fix), ...(r.fix.command ? { command: r.fix.command } : {}) } } : {}),
    ...(r.changes ? { changes: r.changes } : {}),
  }));
  return {
    ok: session.exitCode() === 0,
    exitCode: session.exitCode(),
    summary: session.summary(),
    checks,
    ...(fixes ? { fixes } : {}),
  };
}
