import type { ControlPlaneClient } from "../controlplane/ControlPlaneClient.ts";
import type { Settings } from "../config/settings.ts";
import { parseEncryptionKey } from "../crypto/secrets.ts";
import { DataDir, type Identity } from "../datadir/DataDir.ts";
import { AgentError, ExitCode, UsageError, errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { onShutdown, shutdownRequested } from "../shutdownSignals.ts";
import { readFlagFile } from "../fs/readFlagFile.ts";
import { registerSecret } from "../redact.ts";
import { deployContext } from "../reconcile/deployContext.ts";
import { loadStateFile, parseExpectedState } from "../reconcile/expectedStateSource.ts";
import { healLeftovers } from "../reconcile/healLeftovers.ts";
import { observeActual } from "../reconcile/observeActual.ts";
import { reconcilePass, type AppliedChange } from "../reconcile/reconcilePass.ts";
import { inferSubnetId } from "../state/nodeRules.ts";
import { planChanges } from "../state/planChanges.ts";
import type { ActualState, Change, ExpectedState } from "../state/types.ts";
import { createNodeDrivers, skippedPeersNote, type NodeSettings } from "./nodeDrivers.ts";
import { nodeRulesFor } from "./nodeRulesFor.ts";
import type { WorkQueueSummary } from "../workqueue/processWorkQueueOnce.ts";

const log = logger("reconcile");

export type ReconcileSettings = NodeSettings & Settings<"url" | "dataDir" | "signing" | "requestTimeout" | "passTimeout" | "volumeArchiveKeep" | "volumeArchiveDays">;

export interface ReconcileOnceOptions {
  settings: ReconcileSettings;
  /** `--state FILE|URL`: expected state from a file instead of the control plane. */
  state?: string;
  encryptionKeyFile?: string;
  subnetId?: number;
  dryRun: boolean;
  workQueue: boolean;
  lockWaitMs: number;
}

export interface PlannedChange {
  kind: Change["kind"];
  description: string;
  reason: string;
}

export interface ReconcileOnceResult {
  source: "control-plane" | "state-file";
  dryRun: boolean;
  converged: boolean;
  applied: AppliedChange[];
  failed?: AppliedChange & { error: string };
  remaining: PlannedChange[];
  workQueue?: WorkQueueSummary;
  /** Why the work queue was skipped (fetch failed, ledger unreadable); the pass ran anyway. */
  workQueueError?: string;
  durations: { totalMs: number; passMs: number };
  /** Podman API calls this run made (the benchmark compares them across node sizes). */
  podmanApiCalls: number;
  /** The signal that stopped the pass early, after the change in flight (exit code 5). */
  interruptedBy?: string;
  /** Parts of the expected state this node does not apply, each with why (WireGuard peers without registration). */
  skipped?: string[];
  exitCode: number;
}

/**
 * `agent reconcile --once`: one full pass, then a result with the documented exit code. SIGTERM or
 * SIGINT ends the pass after the change (or work item) in flight, which is reported first.
 */
export async function reconcileOnce(options: ReconcileOnceOptions): Promise<ReconcileOnceResult> {
  const started = performance.now();
  const interrupt = new AbortController();
  const stopListening = onShutdown(() => interrupt.abort());
  const dataDir = DataDir.open(options.settings.dataDir!);
  let skipped: string | undefined;
  // A dry run changes nothing, so it never waits for a running agent.
  const lock = options.dryRun ? undefined : await dataDir.lock({ waitMs: options.lockWaitMs });
  try {
    const identity = dataDir.hasIdentity() ? dataDir.readIdentity() : undefined;
    let client: ControlPlaneClient | undefined;
    let expected: ExpectedState;
    let encryptionKey = identity?.encryptionKey;
    const knownSubnetId = options.subnetId ?? identity?.subnetId;
    const normalize = { isProxy: options.settings.proxy === true, volumesRoot: dataDir.volumesDir, node: nodeRulesFor(options.settings, knownSubnetId) };
    if (options.state) {
      if (options.encryptionKeyFile) encryptionKey = readEncryptionKeyFile(options.encryptionKeyFile);
      expected = await loadStateFile(options.state, normalize);
    } else {
      if (!identity) {
        throw new UsageError(`${dataDir.root} has no identity: register with agent run first, or pass --state FILE|URL`);
      }
      // The control plane's client, the work queue and status reports load only in this mode: a
      // --state run (and its idle cron pass) never parses them.
      const { ensureRegistered } = await import("../registration.ts");
      const registered = await ensureRegistered({ dataDir, url: options.settings.url, signing: options.settings.signing, timeoutMs: options.settings.requestTimeout! * 1000 });
      client = registered.client;
      let wire: unknown;
      try {
        wire = await client.getExpectedState();
      } catch (err) {
        throw new AgentError(`cannot fetch expected state: ${errorMessage(err)}`, { hint: "run agent doctor" });
      }
      expected = parseExpectedState(wire, { ...normalize, allowPlainEnv: false, origin: "the control plane" });
      dataDir.writeStateJson("expected-state.json", wire);
    }
    const subnetId = knownSubnetId ?? inferSubnetId(expected.containers) ?? 1;
    const node = await createNodeDrivers({ settings: options.settings, dataDir, identity, subnetId });
    skipped = skippedPeersNote(expected, node);
    if (skipped) log.warn(`skipped ${skipped}`);
    try {
      if (options.dryRun) {
        const actual = await observeActual(node.drivers);
        const plan = planChanges(expected, actual);
        return finish({ converged: plan.length === 0, applied: [], remaining: plan, passMs: 0, apiCalls: node.runtime.apiCalls });
      }
      await node.prepare();
      await healLeftovers(node.drivers.runtime, expected);
      let workQueue: WorkQueueSummary | undefined;
      let workQueueError: string | undefined;
      if (client && options.workQueue) {
        try {
          const { processWorkQueueOnce } = await import("../workqueue/processWorkQueueOnce.ts");
          workQueue = await processWorkQueueOnce({
            client,
            runtime: node.drivers.runtime,
            wireguard: node.drivers.wireguard,
            dataDir,
            retention: { keep: options.settings.volumeArchiveKeep, maxAgeDays: options.settings.volumeArchiveDays },
          }, interrupt.signal);
        } catch (err) {
          // The pass still runs: a queue that cannot be read now is read again on the next run.
          workQueueError = errorMessage(err);
          log.warn(`work queue skipped: ${workQueueError}`);
        }
      }
      const report = async (actual: ActualState, withResources: boolean) => {
        if (client) await (await import("../reconcile/statusReport.ts")).sendStatusReport(client, actual.containers, { dataDirRoot: dataDir.root, withResources });
      };
      const pass = await reconcilePass({
        expected,
        drivers: node.drivers,
        context: deployContext(encryptionKey),
        budgetMs: options.settings.passTimeout! * 1000,
        afterChange: (actual) => report(actual, false),
        shouldStop: () => interrupt.signal.aborted,
      });
      await report(pass.actual, true);
      return finish({
        converged: pass.converged,
        applied: pass.applied,
        failed: pass.failed,
        remaining: pass.remaining,
        passMs: pass.durationMs,
        workQueue,
        workQueueError,
        apiCalls: node.runtime.apiCalls,
      });
    } finally {
      await node.close();
      await client?.close();
    }
  } finally {
    lock?.release();
    stopListening();
  }

  function finish(r: {
    converged: boolean;
    applied: AppliedChange[];
    failed?: ReconcileOnceResult["failed"];
    remaining: Change[];
    passMs: number;
    workQueue?: WorkQueueSummary;
    workQueueError?: string;
    apiCalls: number;
  }): ReconcileOnceResult {
    const workFailed = (r.workQueue?.failed ?? 0) > 0;
    const interruptedBy = r.converged ? undefined : shutdownRequested();
    const exitCode = r.failed || workFailed ? ExitCode.failure : r.converged ? ExitCode.ok : interruptedBy ? ExitCode.interrupted : ExitCode.driftRemains;
    return {
      source: options.state ? "state-file" : "control-plane",
      dryRun: options.dryRun,
      converged: r.converged,
      applied: r.applied,
      failed: r.failed,
      remaining: r.remaining.map((c) => ({ kind: c.kind, description: c.description, reason: c.reason })),
      workQueue: r.workQueue,
      workQueueError: r.workQueueError,
      durations: { totalMs: Math.round(performance.now() - started), passMs: r.passMs },
      podmanApiCalls: r.apiCalls,
      ...(interruptedBy ? { interruptedBy } : {}),
      ...(skipped ? { skipped: [skipped] } : {}),
      exitCode,
    };
  }
}

function readEncryptionKeyFile(path: string): string {
  const text = readFlagFile("--encryption-key-file", path).trim();
  try {
    parseEncryptionKey(text);
  } catch {
    throw new UsageError(`--encryption-key-file: ${path} must hold 64 hex characters (an AES-256 key)`);
  }
  registerSecret(text);
  return text;
}

export type { Identity };
