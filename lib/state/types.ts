/**
 * Internal state types: what lib/state's normaliser produces from wire JSON (already validated
 * by zod in lib/controlplane/schemas.ts) and what drivers report as actual state. Everything here
 * is normalised: image references fully qualified, lists sorted, so equal states hash equally.
 */

export const LABEL_SERVICE_ID = "techulus.service.id";
export const LABEL_DEPLOYMENT_ID = "techulus.deployment.id";
export const LABEL_SERVICE_NAME = "techulus.service.name";

/** An env value from expected state: sealed with the registration key, or plain (local state files only). */
export type EnvValue = { kind: "encrypted"; value: string } | { kind: "plain"; value: string };

export interface PortMapping {
  containerPort: number;
  /** Published on the host when set. */
  hostPort?: number;
}

export interface VolumeMount {
  name: string;
  hostPath: string;
  containerPath: string;
}

export interface HealthCheck {
  cmd: string;
  /** Seconds. */
  interval: number;
  timeout: number;
  retries: number;
  startPeriod: number;
}

export interface ExpectedContainer {
  deploymentId: string;
  serviceId: string;
  serviceName: string;
  name: string;
  /** Fully qualified: `docker.io/library/nginx:latest`, or `repo@sha256:…`. */
  image: string;
  ipAddress?: string;
  ports: PortMapping[];
  env: Record<string, EnvValue>;
  healthCheck?: HealthCheck;
  volumes: VolumeMount[];
}

export interface DnsRecord {
  /** Lower-case, e.g. `api.internal`. */
  name: string;
  /** Sorted. */
  ips: string[];
}

export interface Route {
  id: string;
  domain: string;
  /** `host:port`, sorted. A route with no upstreams is not installed. */
  upstreams: string[];
  serviceId: string;
}

export interface Certificate {
  domain: string;
  certificate: string;
  certificateKey: string;
}

export interface Peer {
  publicKey: string;
  /** CIDRs, sorted. */
  allowedIps: string[];
  /** `host:port`, or undefined for a peer that connects to us. */
  endpoint?: string;
}

/**
 * What the control plane (or a state file) wants. A section that is `undefined` was not sent and
 * is left alone; an empty list is a real instruction to remove everything of that kind.
 */
export interface ExpectedState {
  containers: ExpectedContainer[];
  dns?: DnsRecord[];
  /** Proxy routes (from `caddy` or `traefik`, merged by id). */
  routes?: Route[];
  certificates?: Certificate[];
  peers?: Peer[];
}

export type ContainerState = "created" | "running" | "paused" | "restarting" | "exited" | "stopped" | "dead" | "removing" | "unknown";
export type HealthStatus = "none" | "starting" | "healthy" | "unhealthy";

/** A container that carries the `techulus.service.id` label (the only kind the agent touches). */
export interface ActualContainer {
  id: string;
  name: string;
  /** Normalised like ExpectedContainer.image. */
  image: string;
  state: ContainerState;
  health: HealthStatus;
  serviceId: string;
  /** Missing on containers created outside a deployment (orphans). */
  deploymentId?: string;
  ipAddress?: string;
  /** Exit code of the last run, when the runtime knows it. */
  exitCode?: number;
}

/** What the drivers observed. A section is undefined when its driver is not in use on this node. */
export interface ActualState {
  containers: ActualContainer[];
  dns?: DnsRecord[];
  routes?: Route[];
  certificates?: Certificate[];
  peers?: Peer[];
}

interface ChangeBase {
  /** One line for a person: what will be done. */
  description: string;
  /** Why: which field differed, old → new. */
  reason: string;
}

export type Change =
  | (ChangeBase & { kind: "stop-orphan"; container: ActualContainer })
  | (ChangeBase & { kind: "remove-orphan"; container: ActualContainer })
  | (ChangeBase & { kind: "start"; container: ActualContainer; expected: ExpectedContainer })
  | (ChangeBase & { kind: "deploy"; expected: ExpectedContainer })
  | (ChangeBase & { kind: "redeploy"; expected: ExpectedContainer; container: ActualContainer })
  | (ChangeBase & { kind: "dns"; records: DnsRecord[] })
  | (ChangeBase & { kind: "routes"; routes: Route[]; certificates: Certificate[] })
  | (ChangeBase & { kind: "wireguard"; peers: Peer[] });

export type ChangeKind = Change["kind"];
