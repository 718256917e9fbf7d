import type { Settings } from "../config/settings.ts";
import { DataDir } from "../datadir/DataDir.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { shutdownSignal } from "../shutdownSignals.ts";
import { AccessLogShipper } from "../logs/AccessLogShipper.ts";
import { ContainerLogStreamer } from "../logs/ContainerLogStreamer.ts";
import { LogPositionStore, logPositionsFile } from "../logs/LogPositionStore.ts";
import { logShipperFor } from "../logs/logShipperFor.ts";
import { shipAgentLog } from "../logs/shipAgentLog.ts";
import { ReconcileLoop } from "../reconcile/ReconcileLoop.ts";
import { deployContext } from "../reconcile/deployContext.ts";
import { ControlPlaneStateSource } from "../reconcile/expectedStateSource.ts";
import { ensureRegistered } from "../registration.ts";
import { startCodeTrimmer } from "../residentCode.ts";
import { normalizePeers } from "../state/normalizePeers.ts";
import { startWorkQueuePoller } from "../workqueue/startWorkQueuePoller.ts";
import { startBuildPoller } from "../../builder/BuildPoller.ts";
import { BUILDER_SETTINGS, builderOptionsFrom } from "../../builder/builderOptions.ts";
import { createNodeDrivers, type NodeSettings } from "./nodeDrivers.ts";
import { nodeRulesFor } from "./nodeRulesFor.ts";

const log = logger("agent");
/** Longest the first pass waits for the logs written while the agent was down to be read. */
const LOG_CATCH_UP_MS = 10_000;

export type RunSettings = NodeSettings &
  Settings<(typeof BUILDER_SETTINGS)[number]> &
  Settings<
    | "url"
    | "token"
    | "dataDir"
    | "logsEndpoint"
    | "shipAgentLog"
    | "logFormat"
    | "signing"
    | "requestTimeout"
    | "pollInterval"
    | "passTimeout"
    | "workQueueInterval"
    | "volumeArchiveKeep"
    | "volumeArchiveDays"
    | "buildPollInterval"
  >;

/**
 * `agent run`: lock the data dir, register when needed, then run side by side until SIGTERM or
 * SIGINT: the reconcile loop, the work-queue poller, the build poller and container log shipping.
 * Shutdown lets the change, item or build step in flight finish (within lib/shutdownSignals'
 * grace); containers keep running, and so does the Podman service the agent may have started.
 */
export async function runAgent(settings: RunSettings): Promise<void> {
  // A signal during start-up (kept by lib/shutdownSignals) ends the agent once it has started.
  const signalled = shutdownSignal();
  const dataDir = DataDir.open(settings.dataDir!);
  const lock = await dataDir.lock();
  try {
    const { identity, client } = await ensureRegistered({
      dataDir,
      url: settings.url,
      token: settings.token,
      signing: settings.signing,
      timeoutMs: settings.requestTimeout! * 1000,
    });
    const node = await createNodeDrivers({ settings, dataDir, identity, subnetId: identity.subnetId });
    const { drivers } = node;
    await node.prepare();
    await applyRegistrationPeers(drivers.wireguard, identity.peers);

    const shipper = logShipperFor(settings.logsEndpoint);
    const stopShippingAgentLog = settings.logsEndpoint && settings.shipAgentLog ? shipAgentLog(shipper, identity.serverId) : undefined;
    const containerLogs = settings.logsEndpoint
      ? new ContainerLogStreamer({ socketPath: node.podman.socketPath, shipper, positions: LogPositionStore.open(logPositionsFile(dataDir.stateDir)) })
      : undefined;
    const loop = new ReconcileLoop({
      source: new ControlPlaneStateSource(client, dataDir, { isProxy: settings.proxy === true, volumesRoot: dataDir.volumesDir, node: nodeRulesFor(settings, identity.subnetId) }),
      drivers,
      context: deployContext(identity.encryptionKey),
      client,
      dataDirRoot: dataDir.root,
      pollIntervalMs: settings.pollInterval! * 1000,
      passBudgetMs: settings.passTimeout! * 1000,
      onObserved: (actual) => containerLogs?.sync(actual.containers.filter((c) => c.deploymentId && c.state === "running").map((c) => ({ id: c.id, serviceId: c.serviceId, deploymentId: c.deploymentId! }))),
    });
    const workQueue = startWorkQueuePoller({
      client,
      runtime: drivers.runtime,
      wireguard: drivers.wireguard,
      dataDir,
      intervalMs: settings.workQueueInterval! * 1000,
      retention: { keep: settings.volumeArchiveKeep, maxAgeDays: settings.volumeArchiveDays },
      onActed: () => loop.wake(),
    });
    const builds = startBuildPoller({
      ...builderOptionsFrom(settings),
      client,
      dataDir,
      encryptionKey: identity.encryptionKey,
      shipper,
      intervalMs: settings.buildPollInterval! * 1000,
      insecureRegistries: settings.insecureRegistries ?? [],
    });
    const accessLogs = settings.logsEndpoint && drivers.proxy ? new AccessLogShipper({ file: settings.accessLog!, format: drivers.proxy.name, shipper }) : undefined;
    await containerLogs?.resume(LOG_CATCH_UP_MS);
    loop.start();
    const stopTrimming = startCodeTrimmer({ isIdle: () => loop.state === "idle" });
    log.info(`agent started for server ${identity.serverId} (pid ${process.pid}${settings.proxy ? ", proxy node" : ""})`);

    await signalled;
    stopTrimming();
    await Promise.allSettled([loop.stop(), workQueue.stop(), builds.stop()]);
    await containerLogs?.close();
    accessLogs?.stop();
    stopShippingAgentLog?.();
    await shipper.close();
    containerLogs?.positions.save();
    await node.close();
    await client.close();
    log.info("stopped; containers keep running");
  } finally {
    lock.release();
  }
}

/** Peers the registration answer carried, applied once when the live interface has none yet. */
async function applyRegistrationPeers(wireguard: import("../drivers.ts").WireGuardDriver | undefined, wirePeers: Parameters<typeof normalizePeers>[0]): Promise<void> {
  if (!wireguard || wirePeers.length === 0) return;
  try {
    if ((await wireguard.observe()).length > 0) return;
    await wireguard.apply(normalizePeers(wirePeers));
    log.info(`applied ${wirePeers.length} WireGuard peer(s) from registration`);
  } catch (err) {
    log.warn(`cannot apply the registration's WireGuard peers: ${errorMessage(err)}`);
  }
}
