import { ControlPlaneClient } from "../controlplane/ControlPlaneClient.ts";
import { skippedPeersNote } from "../agent/nodeDrivers.ts";
import { AgentError, errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { deployContext } from "../reconcile/deployContext.ts";
import { observeActual } from "../reconcile/observeActual.ts";
import { reconcilePass } from "../reconcile/reconcilePass.ts";
import { containerStatuses, hostResources } from "../reconcile/statusReport.ts";
import { planChanges } from "../state/planChanges.ts";
import type { Change, ExpectedState } from "../state/types.ts";
import { resultOf, type Check, type CheckResult, type PlannedChangeView } from "./Check.ts";
import { summarize } from "./controlPlaneChecks.ts";
import { processCommand } from "./dataDirChecks.ts";
import type { DoctorContext } from "./DoctorContext.ts";

const log = logger("doctor");

export function changeView(c: Change): PlannedChangeView {
  return { kind: c.kind, description: c.description, reason: c.reason };
}

/**
 * "Explains drift": the plan the reconcile loop would run now, each change with its reason.
 * The fix runs that plan as one reconcile pass, only when no agent holds the data dir.
 */
export const driftCheck: Check<DoctorContext> = {
  id: "drift",
  title: "server matches the expected state",
  async run(ctx) {
    const expected = await ctx.expected();
    if (expected.kind === "none") return resultOf(this, "skip", expected.reason);
    if (expected.kind === "error") {
      return ctx.stateLocation ? resultOf(this, "fail", expected.message) : resultOf(this, "skip", `no usable expected state: ${expected.message}`);
    }
    const subnetId = ctx.subnetIdFor(expected.state);
    let plan: Change[];
    let skipped: string | undefined;
    try {
      const node = await ctx.node(subnetId);
      plan = planChanges(expected.state, await observeActual(node.drivers));
      skipped = skippedPeersNote(expected.state, node);
    } catch (err) {
      return resultOf(this, "fail", `cannot observe this server: ${errorMessage(err)}`);
    }
    if (plan.length === 0) return resultOf(this, "ok", `matches ${expected.origin} (${summarize(expected.state)})${skipped ? `; skipped ${skipped}` : ""}`);
    return driftResult(this, ctx, plan, expected.origin, skipped, () => applyPlan(ctx, expected.state, subnetId, expected.encryptionKey));
  },
};

function driftResult(check: { id: string; title: string }, ctx: DoctorContext, plan: Change[], origin: string, skipped: string | undefined, apply: () => Promise<void>): CheckResult {
  const changes = plan.map(changeView);
  const lines = changes.map((c) => `${c.description} — because ${c.reason}`);
  if (skipped) lines.push(`(skipped ${skipped})`);
  const detail = `${plan.length} change${plan.length === 1 ? "" : "s"} to match ${origin}:\n${lines.join("\n")}`;
  const holder = ctx.lockHolder();
  if (holder.held) {
    const who = holder.pid ? `pid ${holder.pid}${processCommand(holder.pid) ? ` (${processCommand(holder.pid)})` : ""}` : "another process";
    return resultOf(check, "warn", detail, { changes, fix: { description: `an agent is running (${who}) and applies these changes itself; to apply them here instead, stop it and run agent doctor --fix` } });
  }
  return resultOf(check, "warn", detail, { changes, fix: { description: `apply ${plan.length === 1 ? "this change" : `these ${plan.length} changes`} now (one reconcile pass)`, apply } });
}

async function applyPlan(ctx: DoctorContext, expected: ExpectedState, subnetId: number, encryptionKey: string | undefined): Promise<void> {
  const lock = await ctx.dataDir.lock({ waitMs: 0 });
  try {
    const node = await ctx.node(subnetId);
    await node.drivers.runtime.ensureNetwork(subnetId);
    const pass = await reconcilePass({
      expected,
      drivers: node.drivers,
      context: deployContext(encryptionKey),
      budgetMs: (ctx.settings.passTimeout ?? 300) * 1000,
    });
    await reportStatus(ctx, pass.actual.containers);
    if (pass.failed) throw new AgentError(`${pass.failed.description} failed: ${pass.failed.error}`);
    if (!pass.converged) throw new AgentError(`${pass.remaining.length} change(s) still pending after ${pass.durationMs} ms (${pass.stoppedBy ?? "not converged"})`);
  } finally {
    lock.release();
  }
}

/** The control plane drives rollouts from status reports, so a pass run by doctor reports too. */
async function reportStatus(ctx: DoctorContext, containers: Parameters<typeof containerStatuses>[0]): Promise<void> {
  const identity = ctx.validIdentity();
  const key = ctx.signingKey();
  const url = ctx.controlPlaneUrl();
  if (ctx.stateLocation || !identity || !key || !url) return;
  const client = new ControlPlaneClient({
    baseUrl: url,
    serverId: identity.serverId,
    signingKey: key,
    signing: ctx.settings.signing,
    timeoutMs: (ctx.settings.requestTimeout ?? 15) * 1000,
    backoff: { attempts: 1, baseMs: 0, maxMs: 0 },
  });
  try {
    await client.reportStatus({ resources: hostResources(ctx.dataDir.root), containers: containerStatuses(containers) });
  } catch (err) {
    log.warn(`status report failed: ${errorMessage(err)}`);
  } finally {
    await client.close();
  }
}
