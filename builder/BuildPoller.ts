import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { ControlPlaneClient } from "../lib/controlplane/ControlPlaneClient.ts";
import type { BuildStatus, ClaimBuildResponse } from "../lib/controlplane/schemas.ts";
import { decryptSecret } from "../lib/crypto/secrets.ts";
import type { DataDir } from "../lib/datadir/DataDir.ts";
import { errorMessage } from "../lib/errors.ts";
import { logger } from "../lib/logger.ts";
import type { LogShipper } from "../lib/logs/LogShipper.ts";
import { redact, registerSecret, withSecretScope } from "../lib/redact.ts";
import { abortableSleep } from "../lib/retry.ts";
import { BuildCancelledError } from "./buildErrors.ts";
import { BuildLog } from "./BuildLog.ts";
import { DEFAULT_BUILDER_OPTIONS, type BuilderOptions } from "./builderOptions.ts";
import { cleanStaleBuildFolders } from "./cleanStaleBuildFolders.ts";
import type { BuildDriver } from "./drivers/BuildDriver.ts";
import { PlainBuildTerminal } from "./progress/PlainBuildTerminal.ts";
import type { BuildTerminal } from "./progress/BuildTerminal.ts";
import type { BuildResult } from "./runBuild.ts";
import { parseCloneUrl, resolveGitRef } from "./source/gitRemote.ts";

const log = logger("builds");
const BUILD_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface ClaimedBuildOptions extends Partial<BuilderOptions> {
  client: ControlPlaneClient;
  claim: ClaimBuildResponse;
  dataDir: DataDir;
  /** The registration's encryption key (hex), for the build secrets. */
  encryptionKey: string;
  shipper?: LogShipper;
  terminal?: BuildTerminal;
  /** Aborts the build (agent shutdown, Ctrl-C). */
  signal?: AbortSignal;
  /** How often the control plane is asked whether the build was cancelled. */
  cancelCheckIntervalMs?: number;
  driver?: BuildDriver;
}

export interface ClaimedBuildOutcome {
  status: "completed" | "failed" | "cancelled";
  result?: BuildResult;
  error?: string;
}

/**
 * Runs one claimed build in `<data-dir>/builds/<id>`: reports cloning/building/pushing and then
 * completed or failed (with the error), stops when the control plane cancels the build (checked
 * at every status report and every few seconds in between, killing the build's process tree),
 * and always removes the build folder.
 */
/** One claimed build; the secrets it registers (clone token, build secrets) are released after it. */
export function runClaimedBuild(options: ClaimedBuildOptions): Promise<ClaimedBuildOutcome> {
  return withSecretScope(() => runClaimedBuildInScope(options));
}

async function runClaimedBuildInScope(options: ClaimedBuildOptions): Promise<ClaimedBuildOutcome> {
  const { client, claim } = options;
  const build = claim.build;
  const short = build.id.slice(0, 8);
  const terminal = options.terminal ?? new PlainBuildTerminal({ prefix: `build ${short}`, quiet: true });
  const buildLog = new BuildLog({ build_id: build.id, service_id: build.serviceId, project_id: build.projectId }, terminal, options.shipper);
  const aborter = new AbortController();
  const onOuterAbort = () => aborter.abort();
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  if (options.signal?.aborted) aborter.abort();
  let cancelledByControlPlane = false;
  const markCancelled = () => {
    if (!cancelledByControlPlane) buildLog.line("the build was cancelled");
    cancelledByControlPlane = true;
    aborter.abort();
  };

  const report = async (status: BuildStatus, error?: string): Promise<void> => {
    try {
      if (await client.reportBuildStatus(build.id, status, error)) markCancelled();
    } catch (err) {
      log.warn(`build ${short}: cannot report status ${status}: ${errorMessage(err)}`);
    }
  };

  let asking = false;
  const watcher = setInterval(() => {
    // One question at a time: a slow control plane must not pile up requests.
    if (asking || aborter.signal.aborted) return;
    asking = true;
    client
      .getBuildStatus(build.id)
      .then(
        (status) => {
          if (status === "cancelled") markCancelled();
        },
        () => {},
      )
      .finally(() => (asking = false));
  }, options.cancelCheckIntervalMs ?? 3000);

  const workDir = BUILD_ID.test(build.id) ? join(options.dataDir.buildsDir, build.id) : undefined;
  try {
    if (!workDir) throw new Error(`build id ${JSON.stringify(build.id)} cannot name a folder`);
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(workDir, { recursive: true, mode: 0o700 });
    registerSecret(parseCloneUrl(claim.cloneUrl).password);
    const secrets = decryptBuildSecrets(claim.secrets, options.encryptionKey);
    log.info(`build ${short}: ${build.branch ?? "main"}@${build.commitSha} → ${claim.imageUri}`);
    // The builder (git, build drivers, registry client) loads with the first build: an agent that
    // never builds never holds it in memory.
    const { runBuild } = await import("./runBuild.ts");
    const result = await runBuild(
      {
        source: { kind: "git", remote: parseCloneUrl(claim.cloneUrl), ref: resolveGitRef({ ref: build.commitSha, branch: build.branch ?? "main" }) },
        image: claim.imageUri,
        secrets,
        cacheKey: build.serviceId,
      },
      {
        workDir,
        options: { ...DEFAULT_BUILDER_OPTIONS, ...definedOnly(options) },
        log: buildLog,
        signal: aborter.signal,
        driver: options.driver,
        onStatus: async (status) => {
          await report(status);
          if (aborter.signal.aborted) throw new BuildCancelledError();
        },
      },
    );
    await report("completed");
    await terminal.finish("completed", result.reference);
    return { status: "completed", result };
  } catch (err) {
    if (err instanceof BuildCancelledError || aborter.signal.aborted) {
      const why = cancelledByControlPlane ? "cancelled by the control plane" : "stopped: the agent is shutting down";
      // A cancelled build is the control plane's own doing; a shutdown is a failure it must hear about.
      if (!cancelledByControlPlane) await report("failed", `build ${why}`);
      await terminal.finish("cancelled", why);
      return { status: "cancelled", error: why };
    }
    const message = redact(errorMessage(err));
    buildLog.line(`error: ${message}`);
    await report("failed", message);
    await terminal.finish("failed", message);
    return { status: "failed", error: message };
  } finally {
    clearInterval(watcher);
    options.signal?.removeEventListener("abort", onOuterAbort);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }
}

/** Decrypts every build secret (registered for redaction); a failure names the key, never the value. */
export function decryptBuildSecrets(encrypted: Record<string, string>, encryptionKey: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(encrypted)) {
    try {
      out[name] = decryptSecret(value, encryptionKey);
    } catch (err) {
      throw new Error(`build secret ${name}: ${errorMessage(err)}`);
    }
    registerSecret(out[name]);
  }
  return out;
}

function definedOnly(options: Partial<BuilderOptions>): Partial<BuilderOptions> {
  const out: Partial<BuilderOptions> = {};
  for (const key of ["builder", "buildkitHost", "railpackFrontend", "insecureRegistries", "registryCache", "buildkitKeepStorageMb", "timeoutMs"] as const) {
    if (options[key] !== undefined) (out as Record<string, unknown>)[key] = options[key];
  }
  return out;
}

export interface BuildPollerOptions extends Partial<BuilderOptions> {
  client: ControlPlaneClient;
  dataDir: DataDir;
  encryptionKey: string;
  shipper?: LogShipper;
  /** Between polls for pending builds (default 30 s); after a build the next poll is immediate. */
  intervalMs?: number;
  /** How often stale build folders are removed (default hourly), and how old they must be. */
  cleanupIntervalMs?: number;
  staleAfterMs?: number;
  cancelCheckIntervalMs?: number;
  driver?: BuildDriver;
}

export interface BuildPoller {
  /** Stops polling; a build in flight is stopped (its process tree killed), reported failed and cleaned up. */
  stop(): Promise<void>;
}

/**
 * The control-plane build loop of `agent run`: one build at a time, claimed before it starts
 * (409: another agent has it, skipped quietly), stale build folders removed hourly.
 */
export function startBuildPoller(options: BuildPollerOptions): BuildPoller {
  const { client, dataDir } = options;
  const intervalMs = options.intervalMs ?? 30_000;
  const cleanupIntervalMs = options.cleanupIntervalMs ?? 3600_000;
  const staleAfterMs = options.staleAfterMs ?? 3600_000;
  const stopper = new AbortController();
  let active: string | undefined;
  let lastCleanup = -Infinity;

  const cleanup = () => {
    lastCleanup = Date.now();
    try {
      const removed = cleanStaleBuildFolders(dataDir.buildsDir, { olderThanMs: staleAfterMs, keep: active ? [active] : [] });
      if (removed.length > 0) log.info(`removed ${removed.length} stale build folder(s): ${removed.join(", ")}`);
    } catch (err) {
      log.warn(`cannot clean stale build folders: ${errorMessage(err)}`);
    }
  };

  /** True when a build ran (so the next poll comes at once). */
  const pollOnce = async (): Promise<boolean> => {
    const pending = (await client.getPendingBuild()).build;
    if (!pending || stopper.signal.aborted) return false;
    const claim = await client.claimBuild(pending.id);
    if (!claim) {
      log.debug(`build ${pending.id.slice(0, 8)} was claimed by another agent`);
      return false;
    }
    active = claim.build.id;
    try {
      await runClaimedBuild({ ...options, claim, signal: stopper.signal });
    } finally {
      active = undefined;
    }
    return true;
  };

  const loop = (async () => {
    while (!stopper.signal.aborted) {
      if (Date.now() - lastCleanup >= cleanupIntervalMs) cleanup();
      let ranBuild = false;
      try {
        ranBuild = await pollOnce();
      } catch (err) {
        log.warn(`build poll failed: ${errorMessage(err)}`);
      }
      if (!ranBuild) await abortableSleep(intervalMs, stopper.signal);
    }
  })();

  return {
    async stop() {
      stopper.abort();
      await loop;
    },
  };
}
