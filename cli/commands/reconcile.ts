import { Command, Option } from "commander";
import { reconcileOnce, type ReconcileOnceResult } from "../../lib/agent/reconcileOnce.ts";
import { NODE_SETTING_KEYS } from "../../lib/agent/nodeDrivers.ts";
import { UsageError } from "../../lib/errors.ts";
import { describePlan } from "../../lib/state/planChanges.ts";
import { printJson, printResult } from "../output.ts";
import { addSettingOptions, settingsFor } from "../settingsOptions.ts";

const SETTINGS = ["url", "dataDir", "logFormat", "signing", "requestTimeout", "passTimeout", "volumeArchiveKeep", "volumeArchiveDays", ...NODE_SETTING_KEYS] as const;

export function reconcileCommand(): Command {
  const cmd = new Command("reconcile")
    .option("--once", "run one pass and exit (the only mode; `agent run` is the loop)")
    .option("--state <file|url>", "expected state in the control plane's format from a file or URL instead of the control plane (no registration needed)")
    .option("--encryption-key-file <file>", "AES-256 key (64 hex) to decrypt encrypted env values of a --state file")
    .option("--dry-run", "print the plan with reasons and change nothing")
    .option("--json", "print the result as JSON on stdout")
    .option("--no-work-queue", "do not process pending work-queue items (control-plane mode)")
    .addOption(new Option("--lock-wait <seconds>", "how long to wait for a running agent's data-dir lock").default("60"))
    .addOption(new Option("--subnet-id <n>", "container subnet 10.200.N.0/24 when there is no registration (default: from the state's addresses)"));
  addSettingOptions(cmd, SETTINGS);
  cmd.action(async (opts: Record<string, unknown>, command: Command) => {
    if (!opts.once) throw new UsageError("agent reconcile needs --once (the continuous loop is `agent run`)");
    const lockWait = Number(opts.lockWait);
    if (!Number.isFinite(lockWait) || lockWait < 0) throw new UsageError(`--lock-wait: must be a number of seconds (got ${JSON.stringify(opts.lockWait)})`);
    let subnetId: number | undefined;
    if (opts.subnetId !== undefined) {
      subnetId = Number(opts.subnetId);
      if (!Number.isInteger(subnetId) || subnetId < 0 || subnetId > 255) throw new UsageError(`--subnet-id: must be an integer 0-255 (got ${JSON.stringify(opts.subnetId)})`);
    }
    if (opts.encryptionKeyFile && !opts.state) throw new UsageError("--encryption-key-file only applies with --state");
    const result = await reconcileOnce({
      settings: settingsFor(command, SETTINGS),
      state: opts.state as string | undefined,
      encryptionKeyFile: opts.encryptionKeyFile as string | undefined,
      subnetId,
      dryRun: Boolean(opts.dryRun),
      workQueue: opts.workQueue !== false,
      lockWaitMs: lockWait * 1000,
    });
    if (opts.json) printJson(result);
    else printResult(formatResult(result));
    process.exitCode = result.exitCode;
  });
  return cmd;
}

export function formatResult(r: ReconcileOnceResult): string {
  if (r.dryRun) {
    const plan = describePlan(r.remaining);
    return r.remaining.length === 0 ? plan : `${plan}\n(dry run: nothing applied)`;
  }
  const lines: string[] = [];
  for (const note of r.skipped ?? []) lines.push(`skipped  ${note}`);
  if (r.workQueue && r.workQueue.processed > 0) lines.push(`work queue: ${r.workQueue.completed} completed, ${r.workQueue.failed} failed`);
  if (r.workQueueError) lines.push(`work queue skipped: ${r.workQueueError}`);
  for (const a of r.applied) lines.push(`applied  ${a.description} (${a.reason}) [${a.durationMs} ms]`);
  if (r.failed) lines.push(`FAILED   ${r.failed.description}: ${r.failed.error}`);
  if (r.converged) lines.push(`converged: ${r.applied.length} change(s) in ${r.durations.totalMs} ms`);
  else {
    if (r.interruptedBy) lines.push(`interrupted by ${r.interruptedBy}: the change in flight was finished, the rest is left for the next pass`);
    lines.push(`drift remains: ${r.remaining.length} change(s) left after ${r.durations.totalMs} ms`);
    for (const c of r.remaining) lines.push(`  pending  ${c.description} (${c.reason})`);
  }
  return lines.join("\n");
}
