import { z } from "zod";
import { errorMessage } from "../errors.ts";
import type { PodmanRuntime } from "../podman/PodmanRuntime.ts";
import { LABEL_DEPLOYMENT_ID, LABEL_SERVICE_ID } from "../state/types.ts";
import { resultOf, type Check, type CheckResult, type CheckStatus } from "./Check.ts";
import { withTimeout } from "./checkTimeout.ts";
import type { DoctorContext } from "./DoctorContext.ts";

/**
 * The containers on the agent's network, as Podman has them now (lib/podman through the node's
 * drivers): managed ones stuck in `created`/`exited`, two containers claiming one address, restart
 * counts that keep climbing, and containers without the agent's labels. The leftover checks
 * (leftoverChecks.ts) cover what cut-short operations leave: `stopping`/`removing`, stray conmons,
 * stale reservations, unmanaged holders of what the expected state needs.
 */

/** One container on the agent's network: list entry and inspect merged. */
export interface WorkloadContainer {
  id: string;
  name: string;
  /** Podman's state word, lower case (`running`, `created`, `exited`, …). */
  state: string;
  managed: boolean;
  deploymentId?: string;
  /** Its address on the agent's network while it runs. */
  address?: string;
  /** The address it was created with (`--ip`), when Podman recorded the command that created it. */
  staticAddress?: string;
  exitCode?: number;
  restartCount: number;
  /** Podman's last error for it (a failed start says why here). */
  error?: string;
  /** Milliseconds since the epoch. */
  createdAt?: number;
  finishedAt?: number;
}

export interface WorkloadSnapshot {
  network: string;
  containers: WorkloadContainer[];
  /** Address of each expected deployment, when the expected state is known. */
  expectedAddresses?: Map<string, string>;
  runtime: PodmanRuntime;
}

export interface WorkloadOptions {
  /** How long the restart check watches restart counts (default 5 s). */
  restartSampleMs?: number;
  /** A managed container `created` for less than this is a deploy in progress, not stuck (default 20 s). */
  createdGraceMs?: number;
  /** Lines of a stuck container's log shown (default 5). */
  logLines?: number;
  /** Deadline of each check (default 60 s). */
  timeoutMs?: number;
}

const NOT_STARTED = new Set(["created", "configured", "initialized"]);
const STOPPED = new Set(["exited", "stopped"]);

const Listed = z.array(z.object({ Id: z.string(), Names: z.array(z.string()).nullish() })).nullable();

const Inspect = z.object({
  Id: z.string(),
  Name: z.string().nullish(),
  Created: z.string().nullish(),
  RestartCount: z.number().nullish(),
  State: z
    .object({
      Status: z.string().nullish(),
      ExitCode: z.number().nullish(),
      Error: z.string().nullish(),
      FinishedAt: z.string().nullish(),
    })
    .nullish(),
  Config: z.object({ Labels: z.record(z.string(), z.string()).nullish(), CreateCommand: z.array(z.string()).nullish() }).nullish(),
  NetworkSettings: z.object({ Networks: z.record(z.string(), z.object({ IPAddress: z.string().nullish() }).passthrough()).nullish() }).nullish(),
});
type Inspect = z.infer<typeof Inspect>;

// ---------------------------------------------------------------- pure parts

/** The address `podman create/run` was given on `network`: `--ip A`, `--ip=A`, `--network NET:ip=A`. */
export function staticAddressOf(createCommand: readonly string[] | undefined, network: string): string | undefined {
  if (!createCommand) return undefined;
  for (let i = 0; i < createCommand.length; i++) {
    const arg = createCommand[i]!;
    if (arg === "--ip") return createCommand[i + 1];
    if (arg.startsWith("--ip=")) return arg.slice("--ip=".length);
    const net = arg === "--network" || arg === "--net" ? createCommand[i + 1] : /^--net(?:work)?=(.*)$/.exec(arg)?.[1];
    if (net === undefined) continue;
    const [name, ...opts] = net.split(":");
    if (name !== network || opts.length === 0) continue;
    const ip = opts.join(":").split(",").find((o) => o.startsWith("ip="));
    if (ip) return ip.slice(3);
  }
  return undefined;
}

function time(text: string | null | undefined): number | undefined {
  if (!text || text.startsWith("0001-")) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/** A container from its inspect answer. */
export function workloadContainerOf(info: Inspect, network: string): WorkloadContainer {
  const labels = info.Config?.Labels ?? {};
  const out: WorkloadContainer = {
    id: info.Id,
    name: (info.Name ?? info.Id).replace(/^\//, ""),
    state: (info.State?.Status ?? "").toLowerCase(),
    managed: labels[LABEL_SERVICE_ID] !== undefined,
    restartCount: info.RestartCount ?? 0,
  };
  if (labels[LABEL_DEPLOYMENT_ID] !== undefined) out.deploymentId = labels[LABEL_DEPLOYMENT_ID];
  const address = info.NetworkSettings?.Networks?.[network]?.IPAddress;
  if (address) out.address = address;
  const fixed = staticAddressOf(info.Config?.CreateCommand ?? undefined, network);
  if (fixed) out.staticAddress = fixed;
  if (typeof info.State?.ExitCode === "number") out.exitCode = info.State.ExitCode;
  if (info.State?.Error) out.error = info.State.Error;
  const created = time(info.Created);
  if (created !== undefined) out.createdAt = created;
  const finished = time(info.State?.FinishedAt);
  if (finished !== undefined) out.finishedAt = finished;
  return out;
}

/** Managed containers that are not running and will not by themselves: `created` (for longer than a deploy takes) or `exited`. */
export function pickStuck(containers: readonly WorkloadContainer[], nowMs: number, createdGraceMs: number): WorkloadContainer[] {
  return containers.filter((c) => {
    if (!c.managed) return false;
    if (STOPPED.has(c.state)) return true;
    return NOT_STARTED.has(c.state) && (c.createdAt === undefined || nowMs - c.createdAt >= createdGraceMs);
  });
}

export interface AddressClaim {
  container: WorkloadContainer;
  /** How it claims the address, for a person. */
  how: string;
}

/**
 * Addresses two or more containers claim: one a running container holds, one a container was
 * created with (`--ip`), or the one the expected state gives a managed container's deployment.
 */
export function duplicateAddresses(containers: readonly WorkloadContainer[], expectedAddresses?: ReadonlyMap<string, string>): Array<{ address: string; claims: AddressClaim[] }> {
  const byAddress = new Map<string, AddressClaim[]>();
  for (const c of containers) {
    let address: string | undefined;
    let how: string;
    if (c.address) {
      address = c.address;
      how = "holds it";
    } else if (c.staticAddress) {
      address = c.staticAddress;
      how = `was created with --ip ${c.staticAddress}`;
    } else if (c.managed && c.deploymentId && expectedAddresses?.get(c.deploymentId)) {
      address = expectedAddresses.get(c.deploymentId)!;
      how = `is given it by the expected state (deployment ${c.deploymentId})`;
    } else continue;
    const claims = byAddress.get(address) ?? [];
    claims.push({ container: c, how });
    byAddress.set(address, claims);
  }
  return [...byAddress.entries()]
    .filter(([, claims]) => claims.length > 1)
    .map(([address, claims]) => ({ address, claims }))
    .sort((a, b) => a.address.localeCompare(b.address, undefined, { numeric: true }));
}

/** Containers whose restart count went up between two looks. */
export function climbingRestarts(before: ReadonlyMap<string, number>, after: readonly WorkloadContainer[]): Array<{ container: WorkloadContainer; before: number; after: number }> {
  const out: Array<{ container: WorkloadContainer; before: number; after: number }> = [];
  for (const c of after) {
    const was = before.get(c.id);
    if (was !== undefined && c.restartCount > was) out.push({ container: c, before: was, after: c.restartCount });
  }
  return out;
}

/**
 * Lines of a libpod logs answer: frames of an 8-byte header (stream 0–2, three zero bytes, a
 * big-endian length) and that many bytes; a container with a terminal sends plain text instead.
 */
export function logLinesOf(body: Uint8Array): string[] {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const parts: string[] = [];
  let offset = 0;
  while (offset + 8 <= buf.length && buf[offset]! <= 2 && buf[offset + 1] === 0 && buf[offset + 2] === 0 && buf[offset + 3] === 0) {
    const size = buf.readUInt32BE(offset + 4);
    if (offset + 8 + size > buf.length) break;
    parts.push(buf.subarray(offset + 8, offset + 8 + size).toString("utf8"));
    offset += 8 + size;
  }
  if (offset < buf.length) parts.push(buf.subarray(offset).toString("utf8"));
  return parts
    .join("")
    .split("\n")
    .map((l) => l.replace(/\r$/, ""))
    .filter((l, i, all) => l.length > 0 || i < all.length - 1);
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
}

function label(c: WorkloadContainer): string {
  return `${c.name} (${c.id.slice(0, 12)})`;
}

/** One stuck container for a person: state, exit code, Podman's error, and the last lines of its log. */
export function describeStuck(c: WorkloadContainer, log: string[] | undefined, nowMs: number, expected: boolean | undefined): string {
  const lines: string[] = [];
  if (NOT_STARTED.has(c.state)) {
    lines.push(`${label(c)} is "${c.state}"${c.createdAt ? ` since ${ago(nowMs - c.createdAt)} ago` : ""} and was never started`);
  } else {
    const exit = c.exitCode === undefined ? "" : ` with exit code ${c.exitCode}`;
    lines.push(`${label(c)} is "${c.state}": it exited${exit}${c.finishedAt ? ` ${ago(nowMs - c.finishedAt)} ago` : ""}${c.restartCount > 0 ? ` after ${c.restartCount} restart${c.restartCount === 1 ? "" : "s"}` : ""}`);
  }
  if (c.error) lines.push(`  podman: ${c.error}`);
  if (expected === false) lines.push("  its deployment is not in the expected state: the drift fix removes it");
  if (NOT_STARTED.has(c.state)) return lines.join("\n");
  if (log === undefined) lines.push("  (its log could not be read)");
  else if (log.length === 0) lines.push("  (its log is empty)");
  else lines.push(`  last ${log.length} log line${log.length === 1 ? "" : "s"}:`, ...log.map((l) => `  | ${l}`));
  return lines.join("\n");
}

// ---------------------------------------------------------------- reading Podman

async function inspectAll(runtime: PodmanRuntime, ids: readonly string[], network: string): Promise<WorkloadContainer[]> {
  const out: WorkloadContainer[] = [];
  for (let i = 0; i < ids.length; i += 8) {
    const batch = await Promise.all(
      ids.slice(i, i + 8).map(async (id) => {
        const raw = await runtime.api.json("GET", `/containers/${encodeURIComponent(id)}/json`, {}, [404]);
        // Removed between the list and the inspect.
        return raw === undefined ? undefined : workloadContainerOf(Inspect.parse(raw), network);
      }),
    );
    for (const c of batch) if (c) out.push(c);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Every container on the agent's network (running or not), inspected; undefined when that network does not exist. */
async function containersOnNetwork(runtime: PodmanRuntime): Promise<WorkloadContainer[] | undefined> {
  const network = runtime.networkName;
  const exists = await runtime.api.call("GET", `/networks/${encodeURIComponent(network)}/json`, {}, [404]);
  if (exists.status === 404) return undefined;
  const listed = Listed.parse(await runtime.api.json("GET", "/containers/json", { query: { all: true, filters: JSON.stringify({ network: [network] }) } })) ?? [];
  return inspectAll(runtime, listed.map((c) => c.Id), network);
}

/** The last `count` lines of a container's log (stdout and stderr), through the API; undefined when it cannot be read. */
async function lastLogLines(runtime: PodmanRuntime, id: string, count: number): Promise<string[] | undefined> {
  try {
    const body = await runtime.api.stream(`/containers/${encodeURIComponent(id)}/logs`, { stdout: true, stderr: true, tail: count }, AbortSignal.timeout(10_000), 10_000);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
    return logLinesOf(Buffer.concat(chunks)).slice(-count);
  } catch {
    return undefined;
  }
}

type Found = { kind: "ok"; snapshot: WorkloadSnapshot } | { kind: "skip"; reason: string };

/** One look per round, shared by the four checks. */
function lookAtWorkload(ctx: DoctorContext): Promise<Found> {
  return ctx.memo("workload", async (): Promise<Found> => {
    const expected = await ctx.expected();
    const state = expected.kind === "ok" ? expected.state : undefined;
    let runtime: PodmanRuntime;
    let containers: WorkloadContainer[] | undefined;
    try {
      runtime = (await ctx.node(ctx.subnetIdFor(state))).runtime;
      containers = await containersOnNetwork(runtime);
    } catch (err) {
      return { kind: "skip", reason: `cannot look: ${errorMessage(err)}` };
    }
    if (containers === undefined) return { kind: "skip", reason: `the agent's network ${runtime.networkName} does not exist yet (the agent makes it before its first deploy)` };
    const expectedAddresses = state ? new Map(state.containers.flatMap((c) => (c.ipAddress ? [[c.deploymentId, c.ipAddress] as const] : []))) : undefined;
    return { kind: "ok", snapshot: { network: runtime.networkName, containers, runtime, ...(expectedAddresses ? { expectedAddresses } : {}) } };
  });
}

function expectedDeployments(ctx: DoctorContext): Promise<Set<string> | undefined> {
  return ctx.expected().then((e) => (e.kind === "ok" ? new Set(e.state.containers.map((c) => c.deploymentId)) : undefined));
}

// ---------------------------------------------------------------- the checks

type WorkloadCheck = Check<DoctorContext>;

function stuckCheck(o: Required<WorkloadOptions>): WorkloadCheck {
  return {
    id: "workload.stuck",
    title: "no managed container stuck in created or exited",
    async run(ctx): Promise<CheckResult> {
      const found = await lookAtWorkload(ctx);
      if (found.kind === "skip") return resultOf(this, "skip", found.reason);
      const { snapshot } = found;
      const now = Date.now();
      const stuck = pickStuck(snapshot.containers, now, o.createdGraceMs);
      const managed = snapshot.containers.filter((c) => c.managed).length;
      if (stuck.length === 0) return resultOf(this, "ok", `none of the ${managed} managed container${managed === 1 ? "" : "s"} on ${snapshot.network} is stuck in created or exited`);
      const deployments = await expectedDeployments(ctx);
      const isExpected = (c: WorkloadContainer) => (deployments === undefined ? undefined : c.deploymentId !== undefined && deployments.has(c.deploymentId));
      const logs = await Promise.all(stuck.map((c) => (NOT_STARTED.has(c.state) ? Promise.resolve(undefined) : lastLogLines(snapshot.runtime, c.id, o.logLines))));
      const detail = stuck.map((c, i) => describeStuck(c, logs[i], now, isExpected(c))).join("\n");
      // Starting is what the agent's own pass does for an expected deployment's container; one
      // whose deployment is gone is the drift fix's to remove, never started here.
      const startable = stuck.filter((c) => isExpected(c) !== false);
      const status: CheckStatus = stuck.some((c) => isExpected(c) === true) ? "fail" : "warn";
      if (startable.length === 0) return resultOf(this, status, detail, { fix: { description: "the drift fix removes them (their deployments are not expected any more)" } });
      const names = startable.map((c) => c.name);
      return resultOf(this, status, detail, {
        fix: {
          description: `start ${names.length === 1 ? names[0] : `${names.length} containers (${names.join(", ")})`} again (podman start; it stays as it was created, address included); if it exits again, its log says why`,
          apply: async () => {
            const failed: string[] = [];
            for (const c of startable) {
              try {
                await snapshot.runtime.start(c.id);
              } catch (err) {
                failed.push(`${c.name}: ${errorMessage(err)}`);
              }
            }
            if (failed.length > 0) throw new Error(`could not start ${failed.join("; ")}`);
          },
        },
      });
    },
  };
}

const addressesCheck: WorkloadCheck = {
  id: "workload.addresses",
  title: "no two containers claim one address on the agent's network",
  async run(ctx) {
    const found = await lookAtWorkload(ctx);
    if (found.kind === "skip") return resultOf(this, "skip", found.reason);
    const { snapshot } = found;
    const duplicates = duplicateAddresses(snapshot.containers, snapshot.expectedAddresses);
    if (duplicates.length === 0) {
      const known = snapshot.expectedAddresses ? "" : " (no expected state: stopped managed containers' addresses are unknown)";
      return resultOf(this, "ok", `${snapshot.containers.length} container${snapshot.containers.length === 1 ? "" : "s"} on ${snapshot.network}, no address claimed twice${known}`);
    }
    const detail = duplicates
      .map((d) => `address ${d.address} is claimed by ${d.claims.length} containers:\n${d.claims.map((c) => `  ${label(c.container)}${c.container.managed ? "" : " (not managed by the agent)"}, ${c.container.state}, ${c.how}`).join("\n")}`)
      .join("\n");
    const net = snapshot.network;
    const steps = duplicates.map((d) => {
      const rightful = d.claims.filter((c) => c.container.deploymentId !== undefined && snapshot.expectedAddresses?.get(c.container.deploymentId) === d.address);
      const others = rightful.length > 0 ? d.claims.filter((c) => !rightful.includes(c)) : [];
      if (others.length > 0) {
        const moves = others.map((o) => (o.container.managed ? `podman rm -f ${o.container.name}` : `podman network disconnect ${net} ${o.container.name} (or podman rm -f ${o.container.name})`));
        return `${d.address} is ${rightful.map((r) => r.container.name).join(", ")}'s in the expected state: ${moves.join(", ")}`;
      }
      const names = d.claims.map((c) => c.container.name);
      return `${d.address} (${names.join(" and ")}): keep one, and move the other off ${net} (podman network disconnect ${net} ${names.at(-1)}) or remove it (podman rm -f ${names.at(-1)}); the agent redeploys a managed one whose deployment is expected`;
    });
    return resultOf(this, "fail", `${detail}\nonly one of them can run; starting another fails with "address is not available"`, { fix: { description: `by hand: ${steps.join("; ")}` } });
  },
};

function restartsCheck(o: Required<WorkloadOptions>): WorkloadCheck {
  const seconds = Math.round(o.restartSampleMs / 100) / 10;
  return {
    id: "workload.restarts",
    title: "no managed container keeps restarting",
    async run(ctx) {
      const found = await lookAtWorkload(ctx);
      if (found.kind === "skip") return resultOf(this, "skip", found.reason);
      const { snapshot } = found;
      const managed = snapshot.containers.filter((c) => c.managed);
      // Only a container that has restarted before (or is restarting now) is watched; with none there is nothing to wait for.
      const watched = managed.filter((c) => c.restartCount > 0 || c.state === "restarting");
      if (watched.length === 0) return resultOf(this, "ok", `no managed container has restarted (${managed.length} on ${snapshot.network})`);
      const before = new Map(watched.map((c) => [c.id, c.restartCount]));
      await Bun.sleep(o.restartSampleMs);
      let after: WorkloadContainer[];
      try {
        after = await inspectAll(snapshot.runtime, watched.map((c) => c.id), snapshot.network);
      } catch (err) {
        return resultOf(this, "skip", `cannot look again: ${errorMessage(err)}`);
      }
      const climbing = climbingRestarts(before, after);
      const history = watched.map((c) => `${c.name}: ${c.restartCount}`).join(", ");
      if (climbing.length === 0) return resultOf(this, "ok", `no restart count went up in ${seconds} s (restarts since created: ${history})`);
      const logs = await Promise.all(climbing.map((c) => lastLogLines(snapshot.runtime, c.container.id, o.logLines)));
      const detail = climbing
        .map((c, i) => {
          const exit = c.container.exitCode !== undefined ? `, last exit code ${c.container.exitCode}` : "";
          const log = logs[i];
          const tail = log && log.length > 0 ? `\n  last ${log.length} log line${log.length === 1 ? "" : "s"}:\n${log.map((l) => `  | ${l}`).join("\n")}` : "";
          return `${label(c.container)} restarted ${c.after - c.before} time${c.after - c.before === 1 ? "" : "s"} in ${seconds} s (restart count ${c.before} → ${c.after}${exit})${tail}`;
        })
        .join("\n");
      const names = climbing.map((c) => c.container.name);
      return resultOf(this, "warn", detail, {
        fix: { description: `by hand: its process keeps exiting; read its log (podman logs --tail 50 ${names[0]}) and fix the cause in the image, its command or its settings, then redeploy${names.length > 1 ? ` (also ${names.slice(1).join(", ")})` : ""}` },
      });
    },
  };
}

const unlabelledCheck: WorkloadCheck = {
  id: "workload.unlabelled",
  title: "every container on the agent's network is the agent's",
  async run(ctx) {
    const found = await lookAtWorkload(ctx);
    if (found.kind === "skip") return resultOf(this, "skip", found.reason);
    const { snapshot } = found;
    const foreign = snapshot.containers.filter((c) => !c.managed);
    if (foreign.length === 0) return resultOf(this, "ok", `every container on ${snapshot.network} has the agent's ${LABEL_SERVICE_ID} label`);
    const lines = foreign.map((c) => {
      const address = c.address ? `, holds ${c.address}` : c.staticAddress ? `, created with --ip ${c.staticAddress}` : "";
      return `${label(c)}, ${c.state}${address}`;
    });
    const detail = `${foreign.length} container${foreign.length === 1 ? "" : "s"} on ${snapshot.network} without the agent's ${LABEL_SERVICE_ID} label (the agent never touches them, and they can take addresses it needs):\n${lines.map((l) => `  ${l}`).join("\n")}`;
    const first = foreign[0]!.name;
    return resultOf(this, "warn", detail, {
      fix: { description: `by hand: move ${foreign.length === 1 ? "it" : "them"} to a network of ${foreign.length === 1 ? "its" : "their"} own (podman network disconnect ${snapshot.network} ${first}; podman network connect OTHER ${first}) or remove ${foreign.length === 1 ? "it" : "them"} (podman rm -f ${first})` },
    });
  },
};

/** The four workload checks; `options` for tests (shorter waits). */
export function makeWorkloadChecks(options: WorkloadOptions = {}): WorkloadCheck[] {
  const o: Required<WorkloadOptions> = { restartSampleMs: 5000, createdGraceMs: 20_000, logLines: 5, timeoutMs: 60_000, ...options };
  return [stuckCheck(o), addressesCheck, restartsCheck(o), unlabelledCheck].map((c) => withTimeout(c, o.timeoutMs));
}

export const workloadChecks: readonly WorkloadCheck[] = makeWorkloadChecks();
