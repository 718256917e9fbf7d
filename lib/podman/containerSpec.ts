import { z } from "zod";
import type { ContainerEvent } from "../drivers.ts";
import { normalizeImageRef } from "../state/imageRef.ts";
import {
  LABEL_DEPLOYMENT_ID,
  LABEL_SERVICE_ID,
  LABEL_SERVICE_NAME,
  type ActualContainer,
  type ContainerState,
  type ExpectedContainer,
  type HealthStatus,
} from "../state/types.ts";

/**
 * Pure translations between the agent's types and libpod's JSON: the create spec of an expected
 * container, list entries to ActualContainer, event lines to ContainerEvent.
 */

const NANOSECONDS = 1_000_000_000;

export interface CreateSpecOptions {
  networkName: string;
  /** Decrypted env, already checked. */
  env: Record<string, string>;
  /** Host path of each volume (by volume name), already checked against the volumes folder. */
  hostPaths: Record<string, string>;
  stopGraceSeconds: number;
  dnsServers?: string[];
  /** Host address published ports bind to; all addresses when unset. */
  publishHostIp?: string;
}

/** The libpod SpecGenerator for `POST /containers/create`. */
export function createSpec(c: ExpectedContainer, o: CreateSpecOptions): Record<string, unknown> {
  const spec: Record<string, unknown> = {
    name: c.name,
    image: c.image,
    labels: {
      [LABEL_SERVICE_ID]: c.serviceId,
      [LABEL_DEPLOYMENT_ID]: c.deploymentId,
      [LABEL_SERVICE_NAME]: c.serviceName,
    },
    netns: { nsmode: "bridge" },
    Networks: { [o.networkName]: c.ipAddress ? { static_ips: [c.ipAddress] } : {} },
    portmappings: c.ports
      .filter((p) => p.hostPort !== undefined)
      .map((p) => ({ container_port: p.containerPort, host_port: p.hostPort, protocol: "tcp", ...(o.publishHostIp ? { host_ip: o.publishHostIp } : {}) })),
    env: o.env,
    mounts: c.volumes.map((v) => ({ destination: v.containerPath, source: o.hostPaths[v.name], type: "bind", options: ["rbind"] })),
    restart_policy: "on-failure",
    restart_tries: 5,
    stop_timeout: o.stopGraceSeconds,
  };
  if (c.healthCheck) {
    spec.healthconfig = {
      Test: ["CMD-SHELL", c.healthCheck.cmd],
      Interval: Math.max(1, c.healthCheck.interval) * NANOSECONDS,
      Timeout: Math.max(1, c.healthCheck.timeout) * NANOSECONDS,
      StartPeriod: Math.max(0, c.healthCheck.startPeriod) * NANOSECONDS,
      Retries: Math.max(1, c.healthCheck.retries),
    };
  }
  if (o.dnsServers && o.dnsServers.length > 0) spec.dns_server = o.dnsServers;
  return spec;
}

/** One entry of `GET /libpod/containers/json` (only the fields the agent reads). */
export const ListedContainer = z.object({
  Id: z.string(),
  Names: z.array(z.string()).nullish(),
  Image: z.string().nullish(),
  State: z.string().nullish(),
  /** Podman 4 puts the health status here ("healthy", "unhealthy", "starting", "" without a check). */
  Status: z.string().nullish(),
  Labels: z.record(z.string(), z.string()).nullish(),
  ExitCode: z.number().nullish(),
  Exited: z.boolean().nullish(),
});
export type ListedContainer = z.infer<typeof ListedContainer>;
export const ContainerList = z.array(ListedContainer).nullable();

const STATES: Record<string, ContainerState> = {
  configured: "created",
  initialized: "created",
  created: "created",
  running: "running",
  stopping: "running",
  paused: "paused",
  restarting: "restarting",
  exited: "exited",
  stopped: "stopped",
  dead: "dead",
  removing: "removing",
};

/** A managed list entry as ActualContainer; undefined for a container without the service label. */
export function toActualContainer(entry: ListedContainer): ActualContainer | undefined {
  const labels = entry.Labels ?? {};
  const serviceId = labels[LABEL_SERVICE_ID];
  if (serviceId === undefined) return undefined;
  const state = STATES[(entry.State ?? "").toLowerCase()] ?? "unknown";
  const out: ActualContainer = {
    id: entry.Id,
    name: (entry.Names?.[0] ?? entry.Id).replace(/^\//, ""),
    image: normalizedOrRaw(entry.Image ?? ""),
    state,
    health: healthOf(entry.Status ?? ""),
    serviceId,
  };
  if (labels[LABEL_DEPLOYMENT_ID] !== undefined) out.deploymentId = labels[LABEL_DEPLOYMENT_ID];
  if ((state === "exited" || state === "stopped" || state === "dead") && typeof entry.ExitCode === "number") out.exitCode = entry.ExitCode;
  return out;
}

/** Health from libpod's Status field, or from Docker-style text such as "Up 3 minutes (healthy)". */
export function healthOf(status: string): HealthStatus {
  const text = status.toLowerCase();
  if (/\bunhealthy\b/.test(text)) return "unhealthy";
  if (/\bhealthy\b/.test(text)) return "healthy";
  if (/\bstarting\b/.test(text)) return "starting";
  return "none";
}

function normalizedOrRaw(image: string): string {
  try {
    return normalizeImageRef(image);
  } catch {
    return image;
  }
}

const EventLine = z.object({
  status: z.string().optional(),
  Action: z.string().optional(),
  id: z.string().optional(),
  Type: z.string().optional(),
  Actor: z
    .object({
      ID: z.string().optional(),
      Attributes: z.record(z.string(), z.string()).nullish(),
    })
    .optional(),
  HealthStatus: z.string().optional(),
  timeNano: z.number().optional(),
});

export interface ParsedEvent {
  event: ContainerEvent;
  timeNano?: number;
}

/** One NDJSON line of `GET /libpod/events`; undefined for non-container or unmanaged events and junk. */
export function parseEventLine(line: string): ParsedEvent | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return undefined;
  }
  const parsed = EventLine.safeParse(json);
  if (!parsed.success) return undefined;
  const e = parsed.data;
  if (e.Type !== undefined && e.Type !== "container") return undefined;
  const attributes = e.Actor?.Attributes ?? {};
  const serviceId = attributes[LABEL_SERVICE_ID];
  const containerId = e.Actor?.ID ?? e.id;
  const status = e.status ?? e.Action;
  if (serviceId === undefined || !containerId || !status) return undefined;
  const event: ContainerEvent = { containerId, status, serviceId };
  if (attributes[LABEL_DEPLOYMENT_ID] !== undefined) event.deploymentId = attributes[LABEL_DEPLOYMENT_ID];
  if (attributes.name) event.name = attributes.name;
  const exitCode = Number(attributes.containerExitCode);
  if (status === "died" && attributes.containerExitCode !== undefined && Number.isInteger(exitCode)) event.exitCode = exitCode;
  const health = e.HealthStatus ?? attributes.health_status;
  if (health) event.health = healthOf(health);
  return { event, timeNano: e.timeNano };
}
