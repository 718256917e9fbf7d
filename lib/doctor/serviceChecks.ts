import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { errorMessage } from "../errors.ts";
import { run } from "../exec.ts";
import { writeFileAtomic } from "../fs/atomicWrite.ts";
import { levelOf, AGENT_UNIT, type AgentLog } from "./agentLog.ts";
import { resultOf, worst, type Check, type CheckStatus, type Fix } from "./Check.ts";
import { withTimeout } from "./checkTimeout.ts";
import type { DoctorContext } from "./DoctorContext.ts";

/**
 * The agent as a service: its systemd unit (install/install.sh writes it) and its own recent log.
 */

/** The drop-in the unit check's fix writes. */
export const DOCTOR_DROP_IN = `/etc/systemd/system/${AGENT_UNIT}.d/10-doctor.conf`;

const SHOWN = ["LoadState", "KillMode", "Restart", "UnitFileState", "FragmentPath", "DropInPaths"] as const;

/** `systemctl show -p A,B` output (`Key=value` lines) as a map. */
export function parseSystemctlShow(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return out;
}

export interface UnitFindings {
  status: CheckStatus;
  problems: string[];
  /** KillMode or Restart need the drop-in. */
  dropIn: boolean;
  /** `systemctl enable` is needed. */
  enable: boolean;
  /** Masked: enabling is refused until a person unmasks it. */
  masked: boolean;
}

/**
 * What is wrong with the unit's properties: KillMode other than `process` (stopping the agent
 * would kill every container: a failure), Restart other than `always`, not enabled (warnings).
 */
export function unitFindings(props: ReadonlyMap<string, string>): UnitFindings {
  const problems: string[] = [];
  const statuses: CheckStatus[] = ["ok"];
  const killMode = props.get("KillMode") ?? "";
  const restart = props.get("Restart") ?? "";
  const state = props.get("UnitFileState") ?? "";
  const dropIn = killMode !== "process" || restart !== "always";
  if (killMode !== "process") {
    problems.push(`KillMode=${killMode || "(unset)"}: stopping or restarting the agent kills conmon and with it every container (KillMode=process stops the agent alone)`);
    statuses.push("fail");
  }
  if (restart !== "always") {
    problems.push(`Restart=${restart || "(unset)"}: systemd does not start the agent again when it exits (Restart=always does)`);
    statuses.push("warn");
  }
  const masked = state.startsWith("masked");
  const enable = state !== "enabled" && !masked;
  if (state !== "enabled") {
    problems.push(`UnitFileState=${state || "(unknown)"}: the agent does not start at boot`);
    statuses.push("warn");
  }
  return { status: worst(statuses), problems, dropIn, enable, masked };
}

/** The drop-in's text: both settings the installer's unit has. */
export function dropInText(): string {
  return ["# Written by agent doctor: the settings of the installer's unit (install/install.sh).", "[Service]", "KillMode=process", "Restart=always", ""].join("\n");
}

async function showUnit(systemctl: string): Promise<Map<string, string>> {
  const res = await run(systemctl, ["show", AGENT_UNIT, "-p", SHOWN.join(",")], { timeoutMs: 15_000 });
  return parseSystemctlShow(res.stdout);
}

const unitCheck: Check<DoctorContext> = {
  id: "service.unit",
  title: "the agent's systemd unit keeps containers running and restarts the agent",
  async run(ctx) {
    if (!existsSync(ctx.paths.systemdRunDir)) return resultOf(this, "skip", `systemd is not PID 1 here (no ${ctx.paths.systemdRunDir}): whatever runs the agent should restart it and never kill its containers`);
    const systemctl = await ctx.which("systemctl");
    if (!systemctl) return resultOf(this, "skip", "systemctl is not on PATH");
    let props: Map<string, string>;
    try {
      props = await showUnit(systemctl);
    } catch (err) {
      return resultOf(this, "skip", `systemctl show ${AGENT_UNIT} failed: ${errorMessage(err)}`);
    }
    if (props.get("LoadState") !== "loaded") {
      return resultOf(this, "skip", `${AGENT_UNIT} does not exist (LoadState=${props.get("LoadState") || "?"}): systemd does not run the agent here (install/install.sh writes the unit)`);
    }
    const where = [props.get("FragmentPath"), ...(props.get("DropInPaths") ?? "").split(/\s+/)].filter(Boolean).join(", ");
    const findings = unitFindings(props);
    if (findings.problems.length === 0) return resultOf(this, "ok", `KillMode=process, Restart=always, enabled (${where})`);
    const detail = `${AGENT_UNIT} (${where}):\n${findings.problems.map((p) => `  ${p}`).join("\n")}`;
    if (findings.masked && !findings.dropIn) return resultOf(this, findings.status, detail, { fix: { description: `by hand: systemctl unmask ${AGENT_UNIT} && systemctl enable ${AGENT_UNIT}` } });
    const steps: string[] = [];
    if (findings.dropIn) steps.push(`write ${DOCTOR_DROP_IN} (KillMode=process, Restart=always) and run systemctl daemon-reload (applies without restarting the agent)`);
    if (findings.enable) steps.push(`systemctl enable ${AGENT_UNIT}`);
    const fix: Fix = {
      description: steps.join("; "),
      apply: async () => {
        if (findings.dropIn) {
          mkdirSync(dirname(DOCTOR_DROP_IN), { recursive: true, mode: 0o755 });
          writeFileAtomic(DOCTOR_DROP_IN, dropInText(), { mode: 0o644 });
          await run(systemctl, ["daemon-reload"], { timeoutMs: 60_000 });
        }
        if (findings.enable) await run(systemctl, ["enable", AGENT_UNIT], { timeoutMs: 60_000 });
        const after = await showUnit(systemctl);
        if (findings.dropIn && (after.get("KillMode") !== "process" || after.get("Restart") !== "always")) {
          throw new Error(`still KillMode=${after.get("KillMode")}, Restart=${after.get("Restart")}: a drop-in that sorts after ${DOCTOR_DROP_IN} sets them (${after.get("DropInPaths")}); edit that file`);
        }
      },
    };
    return resultOf(this, findings.status, detail, { fix });
  },
};

const SHOWN_ERRORS = 5;

/** The log check's verdict on what was read. */
export function agentLogResult(log: AgentLog): { status: CheckStatus; detail: string } {
  if (log.kind === "unavailable") return { status: "skip", detail: log.reason };
  if (log.lines.length === 0) return { status: "skip", detail: `${log.source} has no lines: the agent has not run here, or its log was rotated away` };
  const counts = `${log.errors} error${log.errors === 1 ? "" : "s"} and ${log.warnings} warning${log.warnings === 1 ? "" : "s"} in the last ${log.lines.length} line${log.lines.length === 1 ? "" : "s"} of ${log.source}`;
  if (log.errors === 0) return { status: "ok", detail: `${counts}; the last one:\n  ${log.lines.at(-1)}` };
  const errors = log.lines.filter((l) => levelOf(l) === "error").slice(-SHOWN_ERRORS);
  return { status: "warn", detail: `${counts}; the last error${errors.length === 1 ? "" : "s"}:\n${errors.map((l) => `  ${l}`).join("\n")}` };
}

const logCheck: Check<DoctorContext> = {
  id: "service.log",
  title: "the agent's own log has no recent errors",
  async run(ctx) {
    const verdict = agentLogResult(await ctx.agentLog(200));
    if (verdict.status !== "warn") return resultOf(this, verdict.status, verdict.detail);
    const how = ctx.agentLogFile ? `less ${ctx.agentLogFile}` : `journalctl -u ${AGENT_UNIT} -e`;
    return resultOf(this, verdict.status, verdict.detail, { fix: { description: `by hand: read the lines around them (${how}); most errors name their cause and what to do` } });
  },
};

export const serviceChecks: readonly Check<DoctorContext>[] = [withTimeout(unitCheck, 60_000), withTimeout(logCheck, 30_000)];
