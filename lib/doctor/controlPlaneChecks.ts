import { existsSync } from "node:fs";
import { errorMessage } from "../errors.ts";
import { parseExpectedState } from "../reconcile/expectedStateSource.ts";
import type { ExpectedState } from "../state/types.ts";
import { resultOf, type Check, type CheckResult, type Fix } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";
import type { ControlPlaneProbe } from "./probeControlPlane.ts";

type CpCheck = Check<DoctorContext>;

/** The control plane rejects signed calls whose timestamp is further than this from its clock. */
export const CONTROL_PLANE_TOLERANCE_MS = 60_000;
export const SKEW_WARN_MS = 30_000;

/** Why the control-plane checks cannot run, or the probe when they can. */
async function probeOrSkip(ctx: DoctorContext, check: { id: string; title: string }): Promise<ControlPlaneProbe | CheckResult> {
  const id = ctx.identity();
  if (id.kind === "absent") return resultOf(check, "skip", "not registered");
  if (id.kind === "invalid") return resultOf(check, "skip", "no valid identity (see datadir.identity)");
  if (!ctx.controlPlaneUrl()) return resultOf(check, "skip", "no control plane URL: pass --url or set AGENT_URL");
  if (!ctx.signingKey()) return resultOf(check, "skip", "no usable signing key (see datadir.keys)");
  return (await ctx.probe())!;
}

function isProbe(value: ControlPlaneProbe | CheckResult): value is ControlPlaneProbe {
  return "url" in value;
}

export const reachableCheck: CpCheck = {
  id: "controlplane.reachable",
  title: "control plane reachable",
  async run(ctx) {
    const probe = await probeOrSkip(ctx, this);
    if (!isProbe(probe)) return probe;
    if (probe.networkError) return resultOf(this, "fail", `${ctx.controlPlaneUrl()}: ${probe.networkError} (after ${probe.durationMs} ms); the agent keeps the server as it is until it answers`);
    return resultOf(this, "ok", `${ctx.controlPlaneUrl()} answered HTTP ${probe.status} in ${probe.durationMs} ms`);
  },
};

export const signedCallCheck: CpCheck = {
  id: "controlplane.auth",
  title: "signed call accepted (GET expected-state)",
  async run(ctx) {
    const probe = await probeOrSkip(ctx, this);
    if (!isProbe(probe)) return probe;
    if (probe.networkError) return resultOf(this, "skip", "the control plane did not answer");
    const status = probe.status!;
    const said = probe.serverError ? `: ${probe.serverError}` : "";
    if (status < 300) return resultOf(this, "ok", `HTTP ${status} for server ${ctx.validIdentity()!.serverId}`);
    // A redirect: the probe says where to.
    if (status < 400 && probe.bodyError) return resultOf(this, "fail", `the control plane ${probe.bodyError}`);
    if (status === 401) {
      const clockSuspect = probe.skewMs !== undefined && Math.abs(probe.skewMs) > CONTROL_PLANE_TOLERANCE_MS;
      const why = clockSuspect
        ? "the clocks are too far apart (see controlplane.clock)"
        : `the signature was refused: keys/private.key is not the key this server registered with, or the control plane expects --signing ${ctx.settings.signing === "v2" ? "v1" : "v2"}`;
      return resultOf(this, "fail", `HTTP 401${said}; ${why}`);
    }
    if (status === 404) return resultOf(this, "fail", `HTTP 404${said}: the control plane does not know server ${ctx.validIdentity()!.serverId} (deleted, or this data dir was registered with another control plane)`);
    if (status === 400) return resultOf(this, "fail", `HTTP 400${said}: the control plane refused the request headers`);
    return resultOf(this, "fail", `HTTP ${status}${said}: the control plane has a problem`);
  },
};

export const clockCheck: CpCheck = {
  id: "controlplane.clock",
  title: "clock in step with the control plane",
  async run(ctx) {
    const probe = await probeOrSkip(ctx, this);
    if (!isProbe(probe)) return probe;
    if (probe.networkError) return resultOf(this, "skip", "the control plane did not answer");
    if (probe.skewMs === undefined) return resultOf(this, "skip", "the control plane's answer has no Date header");
    return clockResult(this, probe.skewMs, existsSync(ctx.paths.systemdRunDir));
  },
};

export function clockResult(check: { id: string; title: string }, skewMs: number, systemd: boolean): CheckResult {
  const seconds = Math.round(Math.abs(skewMs) / 1000);
  const direction = skewMs > 0 ? "behind" : "ahead of";
  const text = `this server's clock is ${seconds} s ${direction} the control plane's`;
  const fix: Fix = systemd
    ? { description: "turn on time synchronisation: timedatectl set-ntp true", command: ["timedatectl", "set-ntp", "true"] }
    : { description: "synchronise the clock with NTP (chrony, systemd-timesyncd or ntpd)" };
  if (Math.abs(skewMs) > CONTROL_PLANE_TOLERANCE_MS) {
    return resultOf(check, "fail", `${text}: the control plane rejects signed calls more than ${CONTROL_PLANE_TOLERANCE_MS / 1000} s off (401)`, { fix });
  }
  if (Math.abs(skewMs) > SKEW_WARN_MS) {
    return resultOf(check, "warn", `${text}: calls still work, but above ${CONTROL_PLANE_TOLERANCE_MS / 1000} s the control plane rejects them`, { fix });
  }
  return resultOf(check, "ok", seconds === 0 ? "within a second" : text);
}

export const expectedStateCheck: CpCheck = {
  id: "controlplane.expected-state",
  title: "expected state valid",
  async run(ctx) {
    const probe = await probeOrSkip(ctx, this);
    if (!isProbe(probe)) return probe;
    if (probe.networkError || (probe.status ?? 500) >= 300) return resultOf(this, "skip", "no expected state was fetched");
    if (probe.bodyError) return resultOf(this, "fail", probe.bodyError);
    let state: ExpectedState;
    try {
      state = parseExpectedState(probe.json, { ...ctx.normalizeOptions(), allowPlainEnv: false, origin: "the control plane" });
    } catch (err) {
      return resultOf(this, "fail", `${errorMessage(err)}; the agent applies nothing of it and keeps the server as it is`);
    }
    return resultOf(this, "ok", summarize(state));
  },
};

export function summarize(state: ExpectedState): string {
  const parts = [`${state.containers.length} container${state.containers.length === 1 ? "" : "s"}`];
  if (state.dns) parts.push(`${state.dns.length} DNS record${state.dns.length === 1 ? "" : "s"}`);
  if (state.routes) parts.push(`${state.routes.length} route${state.routes.length === 1 ? "" : "s"}`);
  if (state.peers) parts.push(`${state.peers.length} WireGuard peer${state.peers.length === 1 ? "" : "s"}`);
  return parts.join(", ");
}

export const controlPlaneChecks: CpCheck[] = [reachableCheck, signedCallCheck, clockCheck, expectedStateCheck];
