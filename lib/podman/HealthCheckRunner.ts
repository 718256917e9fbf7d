import { z } from "zod";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { LABEL_SERVICE_ID } from "../state/types.ts";
import { PodmanApi, PodmanApiError } from "./PodmanApi.ts";
import { ContainerList } from "./containerSpec.ts";

const log = logger("podman");

const InspectHealth = z.object({
  Config: z
    .object({
      Healthcheck: z.object({ Test: z.array(z.string()).nullish(), Interval: z.number().nullish() }).nullish(),
    })
    .nullish(),
});

interface Tracked {
  intervalMs: number;
  nextAt: number;
  running: boolean;
}

/**
 * Podman schedules health checks with transient systemd timers; without systemd (containers,
 * minimal VMs) they never run and every container stays "starting". There, the agent runs them:
 * every `scanMs` it lists the running managed containers that have a health check, learns each
 * one's interval once (inspect), and calls `GET /containers/{id}/healthcheck` at that interval,
 * which updates the health podman reports. It looks only at containers on the agent's network
 * (every container the agent deploys joins it) and uses its own API client, so its calls do not
 * count towards the runtime's.
 */
export class HealthCheckRunner {
  private readonly tracked = new Map<string, Tracked>();
  private timer?: ReturnType<typeof setInterval>;
  private lastScan = 0;
  private scanning = false;

  constructor(
    private readonly api: PodmanApi,
    private readonly networkName: string,
    private readonly scanMs = 5000,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), 500);
    this.timer.unref?.();
  }

  /** Starts checking a container right away (called after a deploy, before the next scan). */
  track(id: string, intervalSeconds: number): void {
    this.tracked.set(id, { intervalMs: Math.max(1, intervalSeconds) * 1000, nextAt: Date.now(), running: false });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.api.close();
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    if (!this.scanning && now - this.lastScan >= this.scanMs) {
      this.lastScan = now;
      this.scanning = true;
      this.scan()
        .catch((err) => log.debug(`health check scan failed: ${errorMessage(err)}`))
        .finally(() => (this.scanning = false));
    }
    for (const [id, t] of this.tracked) {
      if (t.running || t.nextAt > now) continue;
      t.running = true;
      t.nextAt = now + t.intervalMs;
      this.api
        .call("GET", `/containers/${id}/healthcheck`, { timeoutMs: 120_000 })
        .catch((err) => {
          // 404: gone; 409: not running; 500: no health check. The next scan settles what to track.
          if (err instanceof PodmanApiError && err.status !== undefined) this.tracked.delete(id);
          else log.debug(`health check of ${id.slice(0, 12)} failed: ${errorMessage(err)}`);
        })
        .finally(() => (t.running = false));
    }
  }

  private async scan(): Promise<void> {
    const list = ContainerList.parse(
      await this.api.json("GET", "/containers/json", {
        query: { all: false, filters: JSON.stringify({ label: [LABEL_SERVICE_ID], status: ["running"], network: [this.networkName] }) },
      }),
    );
    const withCheck = new Set((list ?? []).filter((c) => (c.Status ?? "") !== "").map((c) => c.Id));
    for (const id of this.tracked.keys()) if (!withCheck.has(id)) this.tracked.delete(id);
    for (const id of withCheck) {
      if (this.tracked.has(id)) continue;
      const inspect = InspectHealth.safeParse(await this.api.json("GET", `/containers/${id}/json`, {}, [404]));
      const check = inspect.success ? inspect.data.Config?.Healthcheck : undefined;
      if (!check?.Test?.length || check.Test[0] === "NONE") continue;
      this.track(id, Math.round((check.Interval ?? 30_000_000_000) / 1_000_000_000));
    }
  }
}
