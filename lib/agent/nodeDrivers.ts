import type { Settings } from "../config/settings.ts";
import type { DataDir, Identity } from "../datadir/DataDir.ts";
import { DnsmasqDriver, containerDnsServers, dnsListenAddresses } from "../dns/DnsmasqDriver.ts";
import type { DnsDriver, ProxyDriver } from "../drivers.ts";
import { logger } from "../logger.ts";
import { findOrStartPodmanSocket, type PodmanSocket } from "../podman/PodmanSocket.ts";
import { PodmanRuntime } from "../podman/PodmanRuntime.ts";
import type { CaddyDriverOptions } from "../proxy/CaddyDriver.ts";
import { selectProxyDriver } from "../proxy/selectProxyDriver.ts";
import type { Drivers } from "../reconcile/Drivers.ts";
import type { ExpectedState } from "../state/types.ts";
import { WgDriver } from "../wireguard/WireGuardDriver.ts";
import { join } from "node:path";

const log = logger("node");

/** Settings every command that touches the node's state takes. */
export const NODE_SETTING_KEYS = [
  "proxy",
  "networkName",
  "insecureRegistries",
  "wireguard",
  "wireguardInterface",
  "wireguardPort",
  "proxyDriver",
  "caddyAdminUrl",
  "traefikDynamicDir",
  "accessLog",
  "dnsPort",
  "dnsRunDir",
  "hostPortRange",
] as const;
export type NodeSettings = Settings<(typeof NODE_SETTING_KEYS)[number]>;

export interface NodeDrivers {
  drivers: Drivers;
  /**
   * Readies the node before the first pass: the container network, the mesh interface (its address
   * is where containers reach dnsmasq, even before the first peer exists) and dnsmasq running (so
   * containers resolve names even when no record changes).
   */
  prepare(): Promise<void>;
  podman: PodmanSocket;
  /** The Podman runtime itself (the benchmark reads its API call count). */
  runtime: PodmanRuntime;
  /** Why this node has no WireGuard driver, when it has none: peers of an expected state are then not applied. */
  wireguardOff?: string;
  close(): Promise<void>;
}

export interface NodeDriversOptions {
  settings: NodeSettings;
  dataDir: DataDir;
  /** Registration; without it (a local --state run) there is no WireGuard and DNS listens on loopback and the bridge gateway. */
  identity?: Identity;
  subnetId: number;
}

/**
 * The drivers this node uses: Podman always; dnsmasq unless --dns-port 0; WireGuard when the node
 * is registered (it needs the mesh address) unless --wireguard off; a proxy driver only on proxy
 * nodes, so worker nodes never touch routes.
 */
export async function createNodeDrivers(options: NodeDriversOptions): Promise<NodeDrivers> {
  const { settings, dataDir, identity, subnetId } = options;
  const nodeDns = nodeDnsmasq(settings, identity, subnetId);
  const dnsmasq = nodeDns?.dnsmasq;
  const dns: DnsDriver | undefined = dnsmasq;
  const dnsServers = nodeDns?.dnsServers;
  const podman = await findOrStartPodmanSocket({ dataDir: dataDir.root });
  const runtime = new PodmanRuntime({
    socketPath: podman.socketPath,
    volumesRoot: dataDir.volumesDir,
    networkName: settings.networkName,
    insecureRegistries: settings.insecureRegistries ?? [],
    dnsServers,
  });
  const { wireguard, wireguardOff } = nodeWireGuard(settings, dataDir, identity);
  let proxy: ProxyDriver | undefined;
  if (settings.proxy) {
    try {
      proxy = await nodeProxyDriver(settings);
    } catch (err) {
      // Nothing else will close what was opened above.
      await runtime.close();
      await podman.release();
      throw err;
    }
    log.debug(`proxy node: routes go to ${proxy.name}`);
  }
  return {
    drivers: { runtime, dns, proxy, wireguard },
    podman,
    runtime,
    ...(wireguardOff ? { wireguardOff } : {}),
    async prepare() {
      await runtime.ensureNetwork(subnetId);
      if (wireguard && (await wireguard.implementation()) === "absent") await wireguard.apply(await wireguard.observe());
      await dnsmasq?.ensureRunning();
    },
    async close() {
      await runtime.close();
      await podman.release();
    },
  };
}

/** The node's dnsmasq and the DNS servers its containers get; undefined with --dns-port 0. */
export function nodeDnsmasq(settings: NodeSettings, identity: Identity | undefined, subnetId: number): { dnsmasq: DnsmasqDriver; dnsServers: string[] } | undefined {
  if (settings.dnsPort === 0) return undefined;
  const gateway = `10.200.${subnetId}.1`;
  const listenAddresses = identity ? dnsListenAddresses(identity.wireguardIp) : ["127.0.0.1", gateway];
  // Not inside the data dir: dnsmasq drops to nobody and could not read the private data dir.
  const dnsmasq = new DnsmasqDriver({ listenAddresses, port: settings.dnsPort, runDir: settings.dnsRunDir });
  return { dnsmasq, dnsServers: identity ? containerDnsServers(identity.wireguardIp) : [gateway] };
}

/** The node's mesh interface driver, or why it has none (--wireguard off, not registered). */
export function nodeWireGuard(settings: NodeSettings, dataDir: DataDir, identity: Identity | undefined): { wireguard?: WgDriver; wireguardOff?: string } {
  if (settings.wireguard === "off") return { wireguardOff: "--wireguard off leaves WireGuard alone" };
  if (!identity) return { wireguardOff: "this node is not registered, and the mesh needs the address registration gives (agent run --url … --token …)" };
  return {
    wireguard: new WgDriver({
      interfaceName: settings.wireguardInterface,
      address: `${identity.wireguardIp}/16`,
      listenPort: settings.wireguardPort,
      privateKeyFile: dataDir.wireguardKeyFile,
      stateDir: join(dataDir.stateDir, "wireguard"),
    }),
  };
}

/** The proxy driver of a proxy node, as --proxy-driver selects it; `caddy` adds driver options (a shorter timeout). */
export function nodeProxyDriver(settings: NodeSettings, caddy: CaddyDriverOptions = {}): Promise<ProxyDriver> {
  return selectProxyDriver({
    driver: settings.proxyDriver ?? "auto",
    caddyAdminUrl: settings.caddyAdminUrl,
    traefikDynamicDir: settings.traefikDynamicDir,
    caddy: { ...(settings.accessLog ? { accessLogFile: settings.accessLog } : {}), ...caddy },
  });
}

/** What of the expected state this node skips, and why (`2 WireGuard peers of the expected state: …`); undefined when nothing is. */
export function skippedPeersNote(expected: ExpectedState, node: Pick<NodeDrivers, "wireguardOff">): string | undefined {
  const count = expected.peers?.length ?? 0;
  if (count === 0 || !node.wireguardOff) return undefined;
  return `${count} WireGuard peer${count === 1 ? "" : "s"} of the expected state: ${node.wireguardOff}`;
}
