import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { z } from "zod";
import type { ContainerEvent, ContainerRuntime, DeployContext } from "../drivers.ts";
import { AgentError, InvalidInputError, errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { registerSecret } from "../redact.ts";
import { abortableSleep, backoffDelay, type BackoffPolicy } from "../retry.ts";
import { parseImageRef } from "../state/imageRef.ts";
import { LABEL_SERVICE_ID, type ActualContainer, type ExpectedContainer } from "../state/types.ts";
import { HealthCheckRunner } from "./HealthCheckRunner.ts";
import { PodmanApi, PodmanApiError } from "./PodmanApi.ts";
import { ContainerList, createSpec, parseEventLine, toActualContainer } from "./containerSpec.ts";
import { checkVolumeHostPath, prepareVolumeHostPath } from "./volumeHostPath.ts";
import { LeftoverHealer, type HealOutcome } from "./LeftoverHealer.ts";
import { describeLeftover, needsOf, remedyOf, type Needs } from "./leftovers.ts";

const log = logger("podman");

export interface PodmanRuntimeOptions {
  socketPath: string;
  /** The bridge network containers join (default `techulus`). */
  networkName?: string;
  /** `<data-dir>/volumes`: every volume's host path must resolve inside it. */
  volumesRoot: string;
  /** Registries (`host` or `host:port`) pulled from without TLS verification; TLS is verified for all others. */
  insecureRegistries?: string[];
  /** DNS servers given to containers (e.g. the node's dnsmasq); podman's defaults when unset. */
  dnsServers?: string[];
  /** Seconds between SIGTERM and SIGKILL on stop (default 10). */
  stopGraceSeconds?: number;
  /** First two octets of the container subnet: `<prefix>.<subnetId>.0/24` (default `10.200`). */
  subnetPrefix?: string;
  /** Host address that published ports bind to (default: all addresses). */
  publishHostIp?: string;
  /**
   * Who runs health checks: `podman` (its systemd timers), `agent` (this runtime, while it runs),
   * `auto` (the agent when systemd is not running; default).
   */
  healthChecks?: "auto" | "agent" | "podman";
  /** Per-request timeout in milliseconds (default 30 s); pulls get `pullTimeoutMs` (default 10 min). */
  timeoutMs?: number;
  pullTimeoutMs?: number;
  /** Reconnect backoff of the event stream. */
  eventsBackoff?: BackoffPolicy;
}

const NetworkInspect = z.object({
  name: z.string(),
  subnets: z.array(z.object({ subnet: z.string(), gateway: z.string().nullish() })).nullish(),
});

const CreateResponse = z.object({ Id: z.string() });

const ContainerInspect = z.object({
  Id: z.string(),
  Config: z.object({ Labels: z.record(z.string(), z.string()).nullish() }).nullish(),
});

/** How long the leftover look's container list stands in for listManaged() (no call made in between). */
const JUST_LISTED_MS = 2000;

const EVENTS_BACKOFF: BackoffPolicy = { attempts: Infinity, baseMs: 250, maxMs: 5000 };

/** ContainerRuntime on Podman's libpod REST API (unix socket). */
export class PodmanRuntime implements ContainerRuntime {
  readonly api: PodmanApi;
  readonly networkName: string;
  private readonly volumesRoot: string;
  private readonly insecureRegistries: Set<string>;
  private readonly dnsServers?: string[];
  private readonly stopGraceSeconds: number;
  private readonly subnetPrefix: string;
  private readonly publishHostIp?: string;
  private readonly pullTimeoutMs: number;
  private readonly eventsBackoff: BackoffPolicy;
  private readonly healthRunner?: HealthCheckRunner;
  private readonly subscriptions = new Set<AbortController>();
  /** Leftovers of cut-short operations on this Podman (also what `agent doctor` reports). */
  readonly healer: LeftoverHealer;
  /**
   * The full container list the leftover look just read, with the call count right after it: the
   * listManaged() that follows with no call in between (the first pass of a run, after the look)
   * uses it instead of listing again, so an idle `reconcile --once` lists containers once.
   */
  private justListed?: { raw: unknown; apiCalls: number; at: number };

  constructor(options: PodmanRuntimeOptions) {
    this.api = new PodmanApi({ socketPath: options.socketPath, timeoutMs: options.timeoutMs });
    this.networkName = options.networkName ?? "techulus";
    this.volumesRoot = options.volumesRoot;
    this.insecureRegistries = new Set((options.insecureRegistries ?? []).map((r) => r.trim().toLowerCase()).filter(Boolean));
    this.dnsServers = options.dnsServers;
    this.stopGraceSeconds = options.stopGraceSeconds ?? 10;
    this.subnetPrefix = options.subnetPrefix ?? "10.200";
    this.publishHostIp = options.publishHostIp;
    this.pullTimeoutMs = options.pullTimeoutMs ?? 600_000;
    this.eventsBackoff = options.eventsBackoff ?? EVENTS_BACKOFF;
    this.healer = new LeftoverHealer(this.api, this.networkName, this.stopGraceSeconds, (raw) => {
      this.justListed = { raw, apiCalls: this.api.apiCalls, at: Date.now() };
    });
    const mode = options.healthChecks ?? "auto";
    if (mode === "agent" || (mode === "auto" && !existsSync("/run/systemd/system"))) {
      this.healthRunner = new HealthCheckRunner(new PodmanApi({ socketPath: options.socketPath }), this.networkName);
      this.healthRunner.start();
      log.debug("systemd is not running: the agent runs container health checks itself");
    }
  }

  /** Calls made through this runtime so far (the health-check runner's are not counted). */
  get apiCalls(): number {
    return this.api.apiCalls;
  }

  async listManaged(): Promise<ActualContainer[]> {
    const recent = this.justListed;
    this.justListed = undefined;
    // toActualContainer keeps the managed containers of a full list, as the label filter would.
    const raw =
      recent && recent.apiCalls === this.api.apiCalls && Date.now() - recent.at < JUST_LISTED_MS
        ? recent.raw
        : await this.api.json("GET", "/containers/json", {
            query: { all: true, filters: JSON.stringify({ label: [LABEL_SERVICE_ID] }) },
          });
    const parsed = ContainerList.safeParse(raw);
    if (!parsed.success) throw new PodmanApiError("GET", "/containers/json", 200, `unexpected answer: ${parsed.error.issues[0]?.message}`);
    const out: ActualContainer[] = [];
    for (const entry of parsed.data ?? []) {
      const container = toActualContainer(entry);
      if (container) out.push(container);
    }
    // Code-unit order (as lib/state/hash): localeCompare would load ICU's collation data, ~3 MiB
    // of resident memory for a sort.
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async deploy(c: ExpectedContainer, ctx: DeployContext): Promise<string> {
    // Everything that can be refused is checked before anything is pulled, created or started.
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(c.env)) {
      try {
        env[key] = ctx.decryptEnv(key, value);
      } catch (err) {
        throw new AgentError(`container ${c.name}: env ${key} cannot be used: ${errorMessage(err)}`, { cause: err });
      }
      if (value.kind === "encrypted") registerSecret(env[key]);
    }
    await mkdir(this.volumesRoot, { recursive: true, mode: 0o700 });
    for (const volume of c.volumes) await checkVolumeHostPath(volume, this.volumesRoot);

    log.info(`deploying ${c.name} (${c.image})`);
    await this.ensureImage(c.image);
    const hostPaths: Record<string, string> = {};
    for (const volume of c.volumes) hostPaths[volume.name] = await prepareVolumeHostPath(volume, this.volumesRoot);

    const spec = createSpec(c, {
      networkName: this.networkName,
      env,
      hostPaths,
      stopGraceSeconds: this.stopGraceSeconds,
      dnsServers: this.dnsServers,
      publishHostIp: this.publishHostIp,
    });
    let id: string;
    try {
      id = await this.createAndStart(c, spec);
    } catch (err) {
      if (!isAddressConflict(err)) throw err;
      // Something holds the port or address: a leftover of a cut-short operation is repaired and
      // the deploy tried once more; a container the agent does not manage is named, never touched.
      const outcome = await this.healer.heal(needsOf({ containers: [c] })).catch((healErr: unknown) => {
        log.warn(`cannot look for what holds ${c.name}'s port or address: ${errorMessage(healErr)}`);
        throw err;
      });
      if (outcome.foreign.length > 0) {
        const holders = outcome.foreign.map((f) => `${describeLeftover(f)}: ${remedyOf(f)}`).join("; ");
        throw new AgentError(`cannot deploy ${c.name}: ${holders}`, { cause: err });
      }
      if (outcome.healed.length === 0) throw err;
      id = await this.createAndStart(c, spec);
    }
    if (c.healthCheck) this.healthRunner?.track(id, c.healthCheck.interval);
    log.info(`started ${c.name} (${id.slice(0, 12)})`);
    return id;
  }

  /** Finds and repairs leftovers that block `needs` (at start; lib/podman/leftovers). Foreign holders are logged. */
  async healLeftovers(needs: Needs): Promise<HealOutcome> {
    const outcome = await this.healer.heal(needs);
    for (const f of outcome.foreign) log.warn(`${describeLeftover(f)}; ${remedyOf(f)}`);
    return outcome;
  }

  private async createAndStart(c: ExpectedContainer, spec: ReturnType<typeof createSpec>): Promise<string> {
    let id: string;
    log.debug(`creating ${c.name}`);
    try {
      id = CreateResponse.parse(await this.api.json("POST", "/containers/create", { body: spec })).Id;
    } catch (err) {
      throw this.explainCreateError(c, err);
    }
    log.debug(`starting ${c.name} (${id.slice(0, 12)})`);
    try {
      await this.api.call("POST", `/containers/${id}/start`, {}, [304]);
    } catch (err) {
      // A created-but-never-started container would only make the next pass retry "start".
      await this.api.call("DELETE", `/containers/${id}`, { query: { force: true, v: true } }, [404]).catch(() => {});
      throw new AgentError(`container ${c.name} was created but did not start (removed again): ${errorMessage(err)}`, { cause: err });
    }
    return id;
  }

  // start, stop, restart and remove act only on managed containers: ids can come from work items,
  // and the agent never touches a container without the service label.
  async start(id: string): Promise<void> {
    const target = await this.managedId(id);
    await this.api.call("POST", `/containers/${target}/start`, {}, [304]);
  }

  async stop(id: string, graceSeconds = this.stopGraceSeconds): Promise<void> {
    const target = await this.managedId(id);
    await this.api.call("POST", `/containers/${target}/stop`, { query: { timeout: graceSeconds }, timeoutMs: (graceSeconds + 30) * 1000 }, [304]);
  }

  /** Force-removes the container and its anonymous volumes; a container that is already gone is fine. */
  async remove(id: string): Promise<void> {
    const target = await this.managedId(id, { missingOk: true });
    if (target === undefined) return;
    log.debug(`removing ${target.slice(0, 12)} (stopping it first, at most ${this.stopGraceSeconds} s)`);
    await this.api.call(
      "DELETE",
      `/containers/${target}`,
      { query: { force: true, v: true, timeout: this.stopGraceSeconds }, timeoutMs: (this.stopGraceSeconds + 30) * 1000 },
      [404],
    );
  }

  async restart(id: string): Promise<void> {
    const target = await this.managedId(id);
    await this.api.call("POST", `/containers/${target}/restart`, { query: { t: this.stopGraceSeconds }, timeoutMs: (this.stopGraceSeconds + 30) * 1000 });
  }

  async ensureNetwork(subnetId: number): Promise<void> {
    if (!Number.isInteger(subnetId) || subnetId < 0 || subnetId > 255) {
      throw new InvalidInputError(`subnet id ${subnetId} is not a number between 0 and 255`);
    }
    const subnet = `${this.subnetPrefix}.${subnetId}.0/24`;
    const gateway = `${this.subnetPrefix}.${subnetId}.1`;
    const existing = await this.inspectNetwork();
    if (!existing) {
      const created = await this.api.call(
        "POST",
        "/networks/create",
        { body: { name: this.networkName, driver: "bridge", subnets: [{ subnet, gateway }], dns_enabled: false, internal: false } },
        [409],
      );
      if (created.status !== 409) {
        log.info(`created network ${this.networkName} (${subnet}, gateway ${gateway})`);
        return;
      }
    }
    const network = existing ?? (await this.inspectNetwork());
    const subnets = (network?.subnets ?? []).map((s) => s.subnet);
    if (!subnets.includes(subnet)) {
      throw new AgentError(`podman network ${this.networkName} has subnet ${subnets.join(", ") || "(none)"}, but this server's subnet is ${subnet}`, {
        hint: `remove the network (podman network rm ${this.networkName}) after moving its containers, or check the server's subnet id`,
      });
    }
  }

  subscribe(onEvent: (event: ContainerEvent) => void): () => void {
    const controller = new AbortController();
    this.subscriptions.add(controller);
    void this.followEvents(onEvent, controller.signal);
    return () => {
      controller.abort();
      this.subscriptions.delete(controller);
    };
  }

  async close(): Promise<void> {
    for (const controller of this.subscriptions) controller.abort();
    this.subscriptions.clear();
    await this.healthRunner?.stop();
    await this.api.close();
  }

  /** The full id of a managed container (by id or name); InvalidInputError for an unmanaged one. */
  private async managedId(nameOrId: string, options: { missingOk: true }): Promise<string | undefined>;
  private async managedId(nameOrId: string): Promise<string>;
  private async managedId(nameOrId: string, options: { missingOk?: boolean } = {}): Promise<string | undefined> {
    const path = `/containers/${enc(nameOrId)}/json`;
    const raw = await this.api.json("GET", path, {}, options.missingOk ? [404] : []);
    if (raw === undefined) return undefined;
    const info = ContainerInspect.safeParse(raw);
    if (!info.success) throw new PodmanApiError("GET", path, 200, `unexpected answer: ${info.error.issues[0]?.message}`);
    if (info.data.Config?.Labels?.[LABEL_SERVICE_ID] === undefined) {
      throw new InvalidInputError(`container ${nameOrId} is not managed by the agent (no ${LABEL_SERVICE_ID} label); leaving it alone`);
    }
    return info.data.Id;
  }

  private async inspectNetwork(): Promise<z.infer<typeof NetworkInspect> | undefined> {
    const raw = await this.api.json("GET", `/networks/${enc(this.networkName)}/json`, {}, [404]);
    return raw === undefined ? undefined : NetworkInspect.parse(raw);
  }

  /** Pulls the image unless it is present; TLS is verified unless its registry is listed as insecure. */
  private async ensureImage(image: string): Promise<void> {
    const exists = await this.api.call("GET", `/images/${enc(image)}/exists`, {}, [404]);
    if (exists.status !== 404) return;
    const registry = parseImageRef(image).registry;
    const tlsVerify = !this.insecureRegistries.has(registry);
    log.info(`pulling ${image}${tlsVerify ? "" : " (TLS verification off: insecure registry)"}`);
    const res = await this.api
      .call("POST", "/images/pull", { query: { reference: image, tlsVerify, quiet: true, policy: "always" }, timeoutMs: this.pullTimeoutMs })
      .catch((err: unknown) => {
        throw pullError(image, registry, err instanceof PodmanApiError ? err.reason : errorMessage(err), err);
      });
    // The pull answers 200 and streams progress; a failure is an {"error"} line in that stream.
    for (const line of res.text.split("\n")) {
      if (!line.trim()) continue;
      let entry: { error?: unknown };
      try {
        entry = JSON.parse(line) as { error?: unknown };
      } catch {
        continue;
      }
      if (typeof entry.error === "string" && entry.error) throw pullError(image, registry, entry.error);
    }
  }

  private explainCreateError(c: ExpectedContainer, err: unknown): Error {
    // Podman 4.3 answers 500 (later versions 409) with "... is already in use".
    if (err instanceof PodmanApiError && (err.status === 409 || /already in use/i.test(err.reason))) {
      return new AgentError(`cannot create container ${c.name}: the name is already in use (${err.reason})`, {
        hint: "a container of that name exists already (perhaps from an interrupted deploy); the next pass removes or starts it",
        cause: err,
      });
    }
    if (err instanceof PodmanApiError && /network.*not found|unable to find network/i.test(err.reason)) {
      return new AgentError(`cannot create container ${c.name}: network ${this.networkName} does not exist`, {
        hint: "the network is created at registration; run agent doctor",
        cause: err,
      });
    }
    return err instanceof Error ? err : new AgentError(String(err));
  }

  private async followEvents(onEvent: (event: ContainerEvent) => void, signal: AbortSignal): Promise<void> {
    let attempt = 0;
    let outage = false;
    let lastTimeNano: number | undefined;
    // Keys of recently delivered events: a reconnect replays from the last second seen (`since`),
    // and what was delivered already is not delivered twice.
    const recent = new Set<string>();
    const remember = (key: string) => {
      recent.add(key);
      if (recent.size > 512) recent.delete(recent.values().next().value!);
    };
    while (!signal.aborted) {
      try {
        const query: Record<string, string | boolean> = { stream: true, filters: JSON.stringify({ type: ["container"] }) };
        if (lastTimeNano !== undefined) query.since = String(Math.floor(lastTimeNano / 1e9));
        const body = await this.api.stream("/events", query, signal);
        if (outage) log.info("podman event stream reconnected");
        outage = false;
        attempt = 0;
        let pending = "";
        for await (const chunk of body) {
          pending += chunk.toString();
          let index: number;
          while ((index = pending.indexOf("\n")) >= 0) {
            const line = pending.slice(0, index).trim();
            pending = pending.slice(index + 1);
            if (!line) continue;
            const parsed = parseEventLine(line);
            if (!parsed) continue;
            if (parsed.timeNano !== undefined) {
              const key = `${parsed.timeNano}/${parsed.event.containerId}/${parsed.event.status}`;
              if (recent.has(key)) continue;
              remember(key);
              lastTimeNano = Math.max(lastTimeNano ?? 0, parsed.timeNano);
            }
            try {
              onEvent(parsed.event);
            } catch (err) {
              log.error(`event handler failed: ${errorMessage(err)}`);
            }
          }
        }
        if (!signal.aborted && !outage) log.warn("podman event stream ended; reconnecting");
        outage = true;
      } catch (err) {
        if (signal.aborted) return;
        if (!outage) log.warn(`podman event stream failed: ${errorMessage(err)}; reconnecting`);
        else log.debug(`podman event stream still down: ${errorMessage(err)}`);
        outage = true;
      }
      await abortableSleep(backoffDelay(this.eventsBackoff, attempt++) + 100, signal);
    }
  }
}

/** Podman's words for a host port or a container address someone else holds (CNI, netavark, port binding). */
function isAddressConflict(err: unknown): boolean {
  return /address already in use|is not available in range set|already allocated|requested ip address .* is not available/i.test(errorMessage(err));
}

function enc(nameOrId: string): string {
  return encodeURIComponent(nameOrId);
}

function pullError(image: string, registry: string, reason: string, cause?: unknown): AgentError {
  const tls = /x509|certificate|tls|https/i.test(reason);
  return new AgentError(`cannot pull ${image} from ${registry}: ${reason}`, {
    hint: tls ? `if ${registry} is a registry without TLS, list it in --insecure-registry` : undefined,
    cause,
  });
}
