import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { AgentError, errorMessage } from "../errors.ts";
import { startDetached } from "../exec.ts";
import { FileLock } from "../fs/fileLock.ts";
import { logger } from "../logger.ts";
import { abortableSleep, backoffDelay } from "../retry.ts";
import { PodmanApi } from "./PodmanApi.ts";

const log = logger("podman");

/**
 * Seconds the agent's own `podman system service` stays up once nothing is connected. The agent
 * holds a connection (its lease) for as long as it uses the service, so the service never exits
 * under a call; after the agent is gone it finishes the calls in flight, lingers this long so a
 * cron run a moment later reuses it, then exits and frees its memory.
 */
export const SERVICE_IDLE_SECONDS = 60;

export interface PodmanSocket {
  socketPath: string;
  /** True for the agent's own service at `<dataDir>/podman.sock` (started now or by an earlier run). */
  startedByAgent: boolean;
  /** Pid of the service this process started (the current one, after a restart); undefined otherwise. */
  readonly pid?: number;
  /**
   * The agent is done with the socket. The service is never stopped by the agent: calls still in
   * flight finish, and the agent's own service exits by itself once idle.
   */
  release(): Promise<void>;
}

export interface FindPodmanSocketOptions {
  /** Where the agent's own socket lives when it has to start the service: `<dataDir>/podman.sock`. */
  dataDir: string;
  env?: Record<string, string | undefined>;
  /** Sockets to try instead of podmanSocketCandidates(env). */
  candidates?: string[];
  /** Milliseconds to wait for a started service to answer (default 20 s). */
  startTimeoutMs?: number;
}

/**
 * Candidate sockets in order: CONTAINER_HOST (unix:// only), the root service socket (systemd's
 * podman.socket), the user's. With CONTAINERS_CONF or CONTAINERS_STORAGE_CONF set, this process
 * has a Podman store of its own, which those shared sockets do not serve: only CONTAINER_HOST.
 */
export function podmanSocketCandidates(env: Record<string, string | undefined> = process.env): string[] {
  const out: string[] = [];
  const host = env.CONTAINER_HOST?.trim();
  if (host?.startsWith("unix://")) out.push(host.slice("unix://".length));
  if (env.CONTAINERS_CONF || env.CONTAINERS_STORAGE_CONF) return out;
  out.push("/run/podman/podman.sock");
  if (env.XDG_RUNTIME_DIR) out.push(join(env.XDG_RUNTIME_DIR, "podman", "podman.sock"));
  return [...new Set(out)];
}

/** True when a libpod API answers `_ping` on the socket within `timeoutMs`. */
export async function pingPodmanSocket(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  if (!existsSync(socketPath)) return false;
  try {
    const res = await fetch("http://podman/_ping", { unix: socketPath, redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return res.status === 200 && text.trim() === "OK";
  } catch {
    return false;
  }
}

/**
 * The first podman API socket that answers (systemd's socket-activated podman first); else the
 * agent's own service at `<dataDir>/podman.sock`, reused when an earlier run left it up, started
 * otherwise. Containers never depend on that service: each runs under its own conmon, re-parented
 * to init.
 */
export async function findOrStartPodmanSocket(options: FindPodmanSocketOptions): Promise<PodmanSocket> {
  const env = options.env ?? process.env;
  const candidates = options.candidates ?? podmanSocketCandidates(env);
  for (const socketPath of candidates) {
    if (await pingPodmanSocket(socketPath)) {
      log.debug(`using podman API socket ${socketPath}`);
      return { socketPath, startedByAgent: false, release: async () => {} };
    }
  }
  return startPodmanService(join(options.dataDir, "podman.sock"), options.startTimeoutMs ?? 20_000, candidates);
}

/**
 * The agent's own `podman system service --time=SERVICE_IDLE_SECONDS` on `socketPath`: reused
 * when it answers, else started detached (lib/exec startDetached). While the agent holds it, a
 * lease connection keeps it from going idle, and it is started again (with backoff) if it dies.
 */
export async function startPodmanService(socketPath: string, timeoutMs = 20_000, triedCandidates: string[] = []): Promise<PodmanSocket> {
  const service = new OwnPodmanService(socketPath, timeoutMs);
  const started = await service.acquire();
  const tried = triedCandidates.length > 0 ? ` (tried ${triedCandidates.join(", ")})` : "";
  if (started) log.info(`no podman API socket found${tried}; started podman system service at ${socketPath} (pid ${started}; it exits by itself ${SERVICE_IDLE_SECONDS} s after its last use)`);
  else log.debug(`reusing the agent's podman system service at ${socketPath}`);
  return {
    socketPath,
    startedByAgent: true,
    get pid() {
      return service.pid;
    },
    release: () => service.release(),
  };
}

class OwnPodmanService {
  private startedPid?: number;
  private exited?: string;
  private readonly lease = new AbortController();
  private leaseEnded: Promise<void> = Promise.resolve();
  private readonly api: PodmanApi;

  constructor(
    private readonly socketPath: string,
    private readonly timeoutMs: number,
  ) {
    this.api = new PodmanApi({ socketPath, timeoutMs: 5000 });
  }

  get pid(): number | undefined {
    return this.exited === undefined ? this.startedPid : undefined;
  }

  /** Makes sure the service answers and holds the lease; returns the pid when it had to be started. */
  async acquire(): Promise<number | undefined> {
    const pid = await this.ensureRunning();
    this.leaseEnded = this.holdLease();
    return pid;
  }

  async release(): Promise<void> {
    this.lease.abort();
    await this.leaseEnded;
    await this.api.close().catch(() => {});
  }

  /**
   * Starts the service unless one answers. A lock next to the socket keeps two agents (a cron
   * `reconcile --once` and `doctor`, say) from starting two services on one path.
   */
  private async ensureRunning(): Promise<number | undefined> {
    mkdirSync(dirname(this.socketPath), { recursive: true, mode: 0o700 });
    const lock = await FileLock.acquire(`${this.socketPath}.lock`, { waitMs: this.timeoutMs + 5000, what: `the podman service at ${this.socketPath}` });
    try {
      if (await pingPodmanSocket(this.socketPath)) return undefined;
      // A socket file nobody answers on is left over from a service that exited; podman cannot bind over it.
      if (existsSync(this.socketPath)) rmSync(this.socketPath, { force: true });
      const logFile = `${this.socketPath}.log`;
      this.exited = undefined;
      const pid = startDetached("podman", ["system", "service", `--time=${SERVICE_IDLE_SECONDS}`, `unix://${this.socketPath}`], {
        logFile,
        onExit: (how) => {
          if (this.startedPid === pid) this.exited = how;
        },
      });
      this.startedPid = pid;
      const deadline = Date.now() + this.timeoutMs;
      while (!(await pingPodmanSocket(this.socketPath, 1000))) {
        if (this.exited !== undefined || Date.now() > deadline) {
          const reason = this.exited ?? `no answer after ${this.timeoutMs} ms`;
          if (this.exited === undefined) process.kill(pid, "SIGTERM");
          const output = lastLines(logFile, 5);
          throw new AgentError(`podman API service did not start on ${this.socketPath}: ${reason}${output ? `\n${output}` : ""}`, {
            hint: "check that podman is installed (install/setup-host.sh) and run agent doctor",
          });
        }
        await Bun.sleep(100);
      }
      return pid;
    } finally {
      lock.release();
    }
  }

  /** One long GET (an event stream nothing matches) for as long as the agent runs; started again when it breaks. */
  private async holdLease(): Promise<void> {
    const signal = this.lease.signal;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        const body = await this.api.stream("/events", { stream: true, filters: JSON.stringify({ label: ["techulus.lease=none"] }) }, signal, 5000);
        attempt = 0;
        for await (const _ of body) {
          // nothing is expected; the connection itself is the lease
        }
      } catch (err) {
        if (signal.aborted) return;
        log.debug(`lease on ${this.socketPath} failed: ${errorMessage(err)}`);
      }
      if (signal.aborted) return;
      if (await pingPodmanSocket(this.socketPath)) continue;
      log.warn(`podman system service at ${this.socketPath} ${this.exited ?? "stopped answering"}; containers keep running; starting it again`);
      await abortableSleep(backoffDelay(RESTART_BACKOFF, attempt++) + 500, signal);
      if (signal.aborted) return;
      try {
        const pid = await this.ensureRunning();
        if (pid !== undefined) log.info(`started podman system service at ${this.socketPath} again (pid ${pid})`);
      } catch (err) {
        log.error(errorMessage(err));
      }
    }
  }
}

function lastLines(file: string, count: number): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-count).join("\n");
  } catch {
    return "";
  }
}

const RESTART_BACKOFF = { attempts: Infinity, baseMs: 1000, maxMs: 30_000 };
