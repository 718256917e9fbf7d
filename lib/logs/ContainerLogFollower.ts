import type { Readable } from "node:stream";
import { logger } from "../logger.ts";
import { PodmanApiError, type PodmanApi } from "../podman/PodmanApi.ts";
import { abortableSleep, backoffDelay, type BackoffPolicy } from "../retry.ts";
import { LibpodLogDecoder, type ContainerLogEntry } from "./LibpodLogDecoder.ts";
import type { LogShipper } from "./LogShipper.ts";

const log = logger("logs");
const MIN_RECONNECT_MS = 250;

export interface ManagedContainerLogs {
  /** Podman container id (or name). */
  id: string;
  serviceId: string;
  /** Omitted from the lines when unknown (a managed container created outside a deployment). */
  deploymentId?: string;
}

/**
 * Where a container's log was last shipped up to. Podman stamps lines with whole seconds, so the
 * position is a second plus how many lines of that second were shipped: a reconnect asks for
 * `since=<second>` and skips that many lines of it.
 */
export interface LogPosition {
  seconds?: number;
  linesInSecond: number;
}

export type FollowerState = "connecting" | "following" | "waiting" | "gone" | "stopped";

export interface ContainerLogFollowerOptions {
  container: ManagedContainerLogs;
  api: PodmanApi;
  shipper: LogShipper;
  /** Where to start when nothing was shipped yet (unix seconds). */
  sinceSeconds: number;
  position: LogPosition;
  reconnect: BackoffPolicy;
}

/**
 * Follows one container's logs until stopped: reconnects with backoff when the stream ends
 * (container stopped, podman restarted) and stops by itself, quietly, when the container is gone.
 */
export class ContainerLogFollower {
  readonly done: Promise<void>;
  private readonly aborter = new AbortController();
  private current: FollowerState = "connecting";

  constructor(private readonly options: ContainerLogFollowerOptions) {
    this.done = this.run().catch((err) => {
      log.warn(`following the logs of container ${options.container.id} stopped: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  get state(): FollowerState {
    return this.current;
  }

  stop(): Promise<void> {
    if (this.current !== "gone") this.current = "stopped";
    this.aborter.abort();
    return this.done;
  }

  private get stopped(): boolean {
    return this.aborter.signal.aborted;
  }

  private async run(): Promise<void> {
    const { container, reconnect } = this.options;
    let failures = 0;
    while (!this.stopped) {
      this.current = "connecting";
      let shipped = 0;
      try {
        const outcome = await this.followOnce(() => shipped++);
        if (outcome === "gone") {
          this.current = "gone";
          log.debug(`container ${container.id} is gone; no more logs to follow`);
          return;
        }
      } catch (err) {
        if (this.stopped) break;
        log.debug(`log stream of container ${container.id} failed: ${reason(err)}`);
      }
      if (this.stopped) break;
      failures = shipped > 0 ? 0 : failures + 1;
      this.current = "waiting";
      const delay = Math.max(MIN_RECONNECT_MS, backoffDelay(reconnect, Math.min(failures, 16)));
      await abortableSleep(delay, this.aborter.signal);
    }
  }

  private async followOnce(onShipped: () => void): Promise<"ended" | "gone"> {
    const { container, api, position } = this.options;
    const since = position.seconds ?? this.options.sinceSeconds;
    const query = { follow: true, stdout: true, stderr: true, timestamps: true, since };
    let body: Readable;
    try {
      body = await api.stream(`/containers/${encodeURIComponent(container.id)}/logs`, query, this.aborter.signal, 15_000);
    } catch (err) {
      if (err instanceof PodmanApiError && err.status === 404) return "gone";
      throw err;
    }
    this.current = "following";
    const resumeSecond = position.seconds;
    let toSkip = position.linesInSecond;
    const base: Record<string, string> = { service_id: container.serviceId, log_type: "container" };
    if (container.deploymentId) base.deployment_id = container.deploymentId;
    const ship = (entry: ContainerLogEntry) => {
      const fields = { ...base, stream: entry.stream };
      const now = Date.now();
      const seconds = entry.seconds ?? Math.floor(now / 1000);
      if (resumeSecond !== undefined && (seconds < resumeSecond || (seconds === resumeSecond && toSkip-- > 0))) return;
      if (seconds === position.seconds) position.linesInSecond++;
      else Object.assign(position, { seconds, linesInSecond: 1 });
      // Podman's stamp has whole seconds: within that second the arrival time is the better guess.
      const ms = Math.floor(now / 1000) === seconds ? now : seconds * 1000;
      this.options.shipper.push({
        msg: entry.text,
        time: new Date(ms),
        fields,
      });
      onShipped();
    };
    const decoder = new LibpodLogDecoder();
    for await (const chunk of body) {
      for (const entry of decoder.push(chunk as Uint8Array)) ship(entry);
    }
    for (const entry of decoder.end()) ship(entry);
    return "ended";
  }
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.message ?? e.code ?? String(err);
}
