import { z } from "zod";

/**
 * One schema per wire shape of PROTOCOL.md. Objects are not strict: unknown fields from newer
 * control planes are dropped; missing required fields make the response invalid. Semantic checks
 * (IP addresses, keys, CIDRs) happen when wire types become internal state (lib/state).
 */
export const PeerWire = z.object({
  publicKey: z.string(),
  allowedIps: z.string(),
  endpoint: z.string().nullable().optional(),
});
export type PeerWire = z.infer<typeof PeerWire>;

export const RegisterRequest = z.object({
  token: z.string(),
  wireguardPublicKey: z.string(),
  signingPublicKey: z.string(),
  publicIp: z.string().optional(),
});
export type RegisterRequest = z.infer<typeof RegisterRequest>;

export const RegisterResponse = z.object({
  serverId: z.string().min(1),
  subnetId: z.number().int().min(0).max(255),
  wireguardIp: z.string().min(1),
  // The control plane of early 2026 omits peers at registration; they come with expected state.
  peers: z.array(PeerWire).default([]),
  encryptionKey: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex characters"),
});
export type RegisterResponse = z.infer<typeof RegisterResponse>;

export const HealthCheckWire = z.object({
  cmd: z.string(),
  interval: z.number().nonnegative(),
  timeout: z.number().nonnegative(),
  retries: z.number().int().nonnegative(),
  startPeriod: z.number().nonnegative(),
});

export const ExpectedContainerWire = z.object({
  deploymentId: z.string().min(1),
  serviceId: z.string().min(1),
  serviceName: z.string().default(""),
  name: z.string().min(1),
  image: z.string().min(1),
  ipAddress: z.string().nullable().optional(),
  ports: z.array(z.object({ containerPort: z.number().int(), hostPort: z.number().int().nullable().optional() })).default([]),
  env: z.record(z.string(), z.string()).default({}),
  healthCheck: HealthCheckWire.nullable().optional(),
  volumes: z.array(z.object({ name: z.string(), hostPath: z.string(), containerPath: z.string() })).default([]),
});
export type ExpectedContainerWire = z.infer<typeof ExpectedContainerWire>;

export const RouteWire = z.object({
  id: z.string().min(1),
  domain: z.string(),
  upstreams: z.array(z.string()),
  serviceId: z.string(),
});
export type RouteWire = z.infer<typeof RouteWire>;

export const CertificateWire = z.object({ domain: z.string(), certificate: z.string(), certificateKey: z.string() });

export const ExpectedStateWire = z.object({
  containers: z.array(ExpectedContainerWire),
  dns: z.object({ records: z.array(z.object({ name: z.string(), ips: z.array(z.string()) })) }).optional(),
  caddy: z.object({ routes: z.array(RouteWire) }).optional(),
  traefik: z.object({ routes: z.array(RouteWire), certificates: z.array(CertificateWire).optional() }).optional(),
  wireguard: z.object({ peers: z.array(PeerWire) }).optional(),
});
export type ExpectedStateWire = z.infer<typeof ExpectedStateWire>;

export const ContainerStatusWire = z.object({
  deploymentId: z.string(),
  containerId: z.string(),
  status: z.enum(["running", "stopped", "failed"]),
  healthStatus: z.enum(["none", "starting", "healthy", "unhealthy"]),
});
export type ContainerStatusWire = z.infer<typeof ContainerStatusWire>;

export const StatusReport = z.object({
  resources: z.object({ cpuCores: z.number(), memoryMb: z.number(), diskGb: z.number() }).optional(),
  publicIp: z.string().optional(),
  containers: z.array(ContainerStatusWire),
});
export type StatusReport = z.infer<typeof StatusReport>;

export const OkResponse = z.object({ ok: z.literal(true) });

export const PendingBuildResponse = z.object({
  build: z
    .object({
      id: z.string().min(1),
      commitSha: z.string(),
      commitMessage: z.string().nullable().optional(),
      branch: z.string().nullable().optional(),
      serviceId: z.string(),
      githubRepoId: z.string().nullable().optional(),
    })
    .nullable(),
});
export type PendingBuildResponse = z.infer<typeof PendingBuildResponse>;

export const ClaimBuildResponse = z.object({
  build: z.object({
    id: z.string().min(1),
    commitSha: z.string(),
    commitMessage: z.string().nullable().optional(),
    branch: z.string().nullable().optional(),
    serviceId: z.string(),
    projectId: z.string(),
  }),
  cloneUrl: z.string().min(1),
  imageUri: z.string().min(1),
  secrets: z.record(z.string(), z.string()).default({}),
});
export type ClaimBuildResponse = z.infer<typeof ClaimBuildResponse>;

export const BuildStatus = z.enum(["cloning", "building", "pushing", "completed", "failed"]);
export type BuildStatus = z.infer<typeof BuildStatus>;

export const BuildStatusUpdateResponse = z.object({ ok: z.literal(true), cancelled: z.boolean().optional() });
export const BuildStatusResponse = z.object({ status: z.string() });

export const WorkItemWire = z.object({
  id: z.string().min(1),
  serverId: z.string().optional(),
  type: z.string(),
  payload: z.string(),
  status: z.string().optional(),
  createdAt: z.string().nullable().optional(),
  startedAt: z.string().nullable().optional(),
  attempts: z.number().int().nullable().optional(),
});
export type WorkItemWire = z.infer<typeof WorkItemWire>;
export const WorkQueueResponse = z.object({ items: z.array(WorkItemWire) });

export const WorkItemResult = z.object({
  id: z.string(),
  status: z.enum(["completed", "failed"]),
  error: z.string().optional(),
});
export type WorkItemResult = z.infer<typeof WorkItemResult>;

export const ErrorBody = z.object({ error: z.string() });

/** Readable one-line summary of a zod failure: field paths and problems, never the values. */
export function describeIssues(error: z.ZodError, max = 5): string {
  const parts = error.issues.slice(0, max).map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join(".") : "(root)";
    return `${path}: ${issue.message}`;
  });
  const more = error.issues.length > max ? ` (and ${error.issues.length - max} more)` : "";
  return parts.join("; ") + more;
}
