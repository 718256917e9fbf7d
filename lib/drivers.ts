import type { ActualContainer, Certificate, DnsRecord, ExpectedContainer, Peer, Route } from "./state/types.ts";

/**
 * The edges of the agent. Each interface has one real implementation that talks to the real
 * program (Podman's REST API, dnsmasq, Caddy's admin API or Traefik's files, wg); in-memory fakes
 * exist only for unit tests of the reconcile loop.
 */

export interface ContainerEvent {
  containerId: string;
  /** Podman event status: died, start, stop, remove, health_status, … */
  status: string;
  serviceId?: string;
  deploymentId?: string;
  /** Container name, when the runtime reports it. */
  name?: string;
  /** On `died`: the exit code. */
  exitCode?: number;
  /** On `health_status`: the new health. */
  health?: import("./state/types.ts").HealthStatus;
}

export interface DeployContext {
  /** Decrypts an env value; throws for a value that cannot be decrypted. */
  decryptEnv(key: string, value: import("./state/types.ts").EnvValue): string;
}

export interface ContainerRuntime {
  /** Managed containers only (label techulus.service.id), with state, image, labels and health; a constant number of API calls. */
  listManaged(): Promise<ActualContainer[]>;
  /** Pull when missing, create with labels/network/ip/ports/env/volumes/health check/restart policy, start. Returns the container id. */
  deploy(container: ExpectedContainer, context: DeployContext): Promise<string>;
  start(id: string): Promise<void>;
  /** Grace period then kill. */
  stop(id: string, graceSeconds?: number): Promise<void>;
  remove(id: string): Promise<void>;
  restart(id: string): Promise<void>;
  /** Creates the `techulus` bridge network 10.200.N.0/24 (gateway .1, DNS disabled) when absent. */
  ensureNetwork(subnetId: number): Promise<void>;
  /**
   * Repairs what cut-short operations left that blocks `needs` (a stray conmon holding a needed
   * port, a container stuck stopping, a stale address reservation); names foreign holders.
   */
  healLeftovers?(needs: import("./podman/leftovers.ts").Needs): Promise<unknown>;
  /** Podman events of managed containers; returns a function that unsubscribes. */
  subscribe(onEvent: (event: ContainerEvent) => void): () => void;
  close(): Promise<void>;
}

/** Internal DNS (`*.internal`), served by dnsmasq. */
export interface DnsDriver {
  /** The records dnsmasq has loaded now (from the agent's managed file), sorted. */
  observe(): Promise<DnsRecord[]>;
  apply(records: DnsRecord[]): Promise<void>;
}

/** Proxy routes on proxy nodes (Caddy admin API or Traefik file provider). */
export interface ProxyDriver {
  readonly name: "caddy" | "traefik";
  /** The managed routes the proxy has now (live config, not a cache), sorted by id. */
  observe(): Promise<{ routes: Route[]; certificates: Certificate[] }>;
  apply(routes: Route[], certificates: Certificate[]): Promise<void>;
}

/** WireGuard mesh peers on the live interface. */
export interface WireGuardDriver {
  /** Peers on the live interface (`wg show <if> dump`), sorted; [] when the interface is down. */
  observe(): Promise<Peer[]>;
  /** Brings the interface up when absent and applies the peer set with `wg syncconf` (no flap). */
  apply(peers: Peer[]): Promise<void>;
}
