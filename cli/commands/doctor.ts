import { Command } from "commander";
import { checkBundlePath } from "../../lib/doctor/bundle.ts";
import { doctorChecks } from "../../lib/doctor/doctorChecks.ts";
import { DOCTOR_SETTING_KEYS, DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { DoctorSession, type FixOutcome } from "../../lib/doctor/DoctorSession.ts";
import { UsageError } from "../../lib/errors.ts";
import { doctorReport, formatOutcome, formatResultLines, formatSummary } from "../doctor/doctorReport.ts";
import { runDoctorBundle } from "../doctor/runDoctorBundle.ts";
import { printJson, printResult } from "../output.ts";
import { addSettingOptions, settingsFor } from "../settingsOptions.ts";

const SETTINGS = DOCTOR_SETTING_KEYS;

export function doctorCommand(): Command {
  const cmd = new Command("doctor")
    .option("--state <file|url>", "measure drift against this expected state (control plane format) instead of the control plane's")
    .option("--subnet-id <n>", "container subnet 10.200.N.0/24 when there is no registration (default: from the state's addresses)")
    .option("--agent-log <file>", "where the agent's output goes, when systemd's journal does not have it (default: journalctl -u techulus-agent)")
    .option("--json", "print the results as JSON on stdout (no screen)")
    .option("--bundle <file>", "write a .tar.gz for a bug report (check results, agent log, podman, WireGuard, proxy, DNS, config; secrets redacted); no screen, fixes only with --fix")
    .option("--fix [checks...]", "apply every proposed fix without asking, then check again; with check ids (e.g. --fix service.unit drift), only theirs")
    .option("--yes", "do not ask before applying: on a terminal enter applies the selection at once; without one, same as --fix");
  addSettingOptions(cmd, SETTINGS);
  cmd.action(async (opts: Record<string, unknown>, command: Command) => {
    let subnetId: number | undefined;
    if (opts.subnetId !== undefined) {
      subnetId = Number(opts.subnetId);
      if (!Number.isInteger(subnetId) || subnetId < 0 || subnetId > 255) throw new UsageError(`--subnet-id: must be an integer 0-255 (got ${JSON.stringify(opts.subnetId)})`);
    }
    const only = fixSelection(opts.fix);
    // A bad --bundle path is refused before anything runs or is written.
    const bundlePath = opts.bundle === undefined ? undefined : checkBundlePath(String(opts.bundle));
    const settings = settingsFor(command, SETTINGS);
    const ctx = new DoctorContext({ settings, state: opts.state as string | undefined, subnetId, agentLogFile: opts.agentLog as string | undefined });
    const session = new DoctorSession(doctorChecks, ctx);
    if (bundlePath !== undefined) {
      try {
        await runDoctorBundle(session, ctx, { path: bundlePath, json: Boolean(opts.json), fix: Boolean(opts.fix), applyAll: (s, onOutcome) => applyAll(s, only, onOutcome) });
      } finally {
        await session.close();
      }
      process.exitCode = session.exitCode();
      return;
    }
    // Fixes named on the command line are a script's choice: no screen to choose on.
    const interactive = !opts.json && !only && Boolean(process.stdout.isTTY) && Boolean(process.stdin.isTTY);
    const fix = Boolean(opts.fix) || (!interactive && Boolean(opts.yes));
    try {
      if (interactive) {
        const subtitle = `${ctx.dataDir.root}${ctx.stateLocation ? ` · state ${ctx.stateLocation}` : ""}`;
        // ink and React only for the screen.
        const { runDoctorScreen } = await import("../doctor/runDoctorScreen.tsx");
        await runDoctorScreen(session, { autoFix: fix, assumeYes: Boolean(opts.yes), subtitle });
      } else if (opts.json) {
        await session.runAll();
        const outcomes = fix ? await applyAll(session, only) : undefined;
        printJson(doctorReport(session, outcomes));
      } else {
        await session.runAll((r) => printResult(formatResultLines(r).join("\n")));
        if (fix) {
          for (const id of only ?? []) if (!session.proposedFixes().some((f) => f.checkId === id && f.automatic)) printResult(`nothing to apply for ${id}: ${whyNoFix(session, id)}`);
          await applyAll(session, only, (o) => {
            printResult(formatOutcome(o));
            const after = session.results().find((r) => r.id === o.checkId);
            if (after) printResult(formatResultLines(after).join("\n"));
          });
        }
        printResult(formatSummary(session.summary()));
        const left = session.proposedFixes().filter((f) => f.automatic).length;
        if (left > 0 && !fix) printResult(`${left} fix${left === 1 ? "" : "es"} can be applied: agent doctor --fix (or run it on a terminal to choose)`);
      }
    } finally {
      await session.close();
    }
    process.exitCode = session.exitCode();
  });
  return cmd;
}

/** The check ids given to --fix, undefined for all of them; an unknown id is a usage error. */
function fixSelection(value: unknown): string[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const known = new Set(doctorChecks.map((c) => c.id));
  const unknown = value.filter((id) => !known.has(String(id)));
  if (unknown.length > 0) throw new UsageError(`--fix: no check ${unknown.map((id) => JSON.stringify(id)).join(", ")}; the checks are ${[...known].join(", ")}`);
  return value.map(String);
}

function whyNoFix(session: DoctorSession, id: string): string {
  const result = session.results().find((r) => r.id === id);
  if (!result) return "the check did not run";
  if (result.status !== "warn" && result.status !== "fail") return `the check is ${result.status}`;
  return result.fix ? "its fix is by hand (see above)" : "it has no fix";
}

function applyAll(session: DoctorSession, only: readonly string[] | undefined, onOutcome?: (o: FixOutcome) => void): Promise<FixOutcome[]> {
  const ids = session
    .proposedFixes()
    .filter((f) => f.automatic && (!only || only.includes(f.checkId)))
    .map((f) => f.checkId);
  return session.applyFixes(ids, onOutcome);
}
