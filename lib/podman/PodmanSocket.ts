import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { Agent, request } from "../http/undici.ts";
import { AgentError, errorMessage } from "../errors.ts";
import { spawn } from "../exec.ts";
import { logger } from "../logger.ts";
import { backoffDelay } from "../retry.ts";

const log = logger("podman");

export interface PodmanSocket {
  socketPath: string;
  /** True when the agent started `podman system service` itself (no socket answered). */
  startedByAgent: boolean;
  /** Pid of the service the agent started (the current one, after a restart). */
  readonly pid?: number;
  /** Stops the service the agent started; a no-op for a socket someone else runs. */
  stop(): Promise<void>;
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

/** Candidate sockets in order: CONTAINER_HOST (unix:// only), the root service socket, the user's. */
export function podmanSocketCandidates(env: Record<string, string | undefined> = process.env): string[] {
  const out: string[] = [];
  const host = env.CONTAINER_HOST?.trim();
  if (host?.startsWith("unix://")) out.push(host.slice("unix://".length));
  out.push("/run/podman/podman.sock");
  if (env.XDG_RUNTIME_DIR) out.push(join(env.XDG_RUNTIME_DIR, "podman", "podman.sock"));
  return [...new Set(out)];
}

/** True when a libpod API answers `_ping` on the socket within `timeoutMs`. */
export async function pingPodmanSocket(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  if (!existsSync(socketPath)) return false;
  const dispatcher = new Agent({ connect: { socketPath } });
  try {
    const res = await request("http://podman/_ping", {
      dispatcher,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    return res.statusCode === 200 && text.trim() === "OK";
  } catch {
    return false;
  } finally {
    await dispatcher.close().catch(() => {});
  }
}

/**
 * The first podman API socket that answers; when none does, starts `podman system service
 * --time=0` on `<dataDir>/podman.sock`. Containers never depend on that process: podman starts
 * each one under its own conmon, which re-parents to init, so the service (and the agent) may
 * exit or be killed without touching them.
 */
export async function findOrStartPodmanSocket(options: FindPodmanSocketOptions): Promise<PodmanSocket> {
  const env = options.env ?? process.env;
  const candidates = options.candidates ?? podmanSocketCandidates(env);
  const own = join(options.dataDir, "podman.sock");
  for (const socketPath of [...candidates, own]) {
    if (await pingPodmanSocket(socketPath)) {
      log.debug(`using podman API socket ${socketPath}`);
      return { socketPath, startedByAgent: false, stop: async () => {} };
    }
  }
  return startPodmanService(own, options.startTimeoutMs ?? 20_000, candidates);
}

/**
 * Starts `podman system service --time=0 unix://<socketPath>`, waits until it answers, and starts
 * it again (with backoff) if it dies while the agent runs, so the socket path stays valid.
 */
export async function startPodmanService(socketPath: string, timeoutMs = 20_000, triedCandidates: string[] = []): Promise<PodmanSocket> {
  const service = new PodmanService(socketPath, timeoutMs);
  const pid = await service.start();
  const tried = triedCandidates.length > 0 ? ` (tried ${triedCandidates.join(", ")})` : "";
  log.info(`no podman API socket found${tried}; started podman system service at ${socketPath} (pid ${pid})`);
  return {
    socketPath,
    startedByAgent: true,
    get pid() {
      return service.pid;
    },
    stop: () => service.stop(),
  };
}

class PodmanService {
  private child?: ReturnType<typeof spawn>;
  private done: Promise<void> = Promise.resolve();
  private exited?: string;
  private stopping = false;
  private restarts = 0;
  private readonly recent: string[] = [];

  constructor(
    private readonly socketPath: string,
    private readonly timeoutMs: number,
  ) {}

  async start(): Promise<number | undefined> {
    mkdirSync(dirname(this.socketPath), { recursive: true, mode: 0o700 });
    // A socket file nobody answers on is left over from a service that died; podman cannot bind over it.
    if (existsSync(this.socketPath)) rmSync(this.socketPath, { force: true });
    this.exited = undefined;
    const child = spawn("podman", ["system", "service", "--time=0", `unix://${this.socketPath}`], {
      onLine: (line) => {
        this.recent.push(line);
        if (this.recent.length > 20) this.recent.shift();
        log.debug(`service: ${line}`);
      },
    });
    this.child = child;
    this.done = child.then(
      (r) => {
        this.exited = `exited with code ${r.exitCode}`;
      },
      (err: unknown) => {
        this.exited = errorMessage(err);
      },
    );
    const deadline = Date.now() + this.timeoutMs;
    while (!(await pingPodmanSocket(this.socketPath, 1000))) {
      if (this.exited !== undefined || Date.now() > deadline) {
        const reason = this.exited ?? `no answer after ${this.timeoutMs} ms`;
        if (this.exited === undefined) child.kill("SIGTERM");
        await Promise.race([this.done, Bun.sleep(2000)]);
        const output = this.recent.length ? `\n${this.recent.slice(-5).join("\n")}` : "";
        throw new AgentError(`podman API service did not start on ${this.socketPath}: ${reason}${output}`, {
          hint: "check that podman is installed (install/setup-host.sh) and run agent doctor",
        });
      }
      await Bun.sleep(100);
    }
    void this.done.then(() => this.onExit());
    return child.pid;
  }

  private async onExit(): Promise<void> {
    if (this.stopping) return;
    const delay = backoffDelay(RESTART_BACKOFF, this.restarts++) + 500;
    log.warn(`podman system service at ${this.socketPath} ${this.exited}; containers keep running; starting it again in ${delay} ms`);
    await Bun.sleep(delay);
    if (this.stopping) return;
    try {
      const pid = await this.start();
      log.info(`started podman system service at ${this.socketPath} again (pid ${pid})`);
    } catch (err) {
      log.error(errorMessage(err));
      void this.onExit();
    }
  }

  get pid(): number | undefined {
    return this.exited === undefined ? this.child?.pid : undefined;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.exited === undefined) this.child?.kill("SIGTERM");
    await Promise.race([this.done, Bun.sleep(10_000)]);
  }
}

const RESTART_BACKOFF = { attempts: Infinity, baseMs: 1000, maxMs: 30_000 };
