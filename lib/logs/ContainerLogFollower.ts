import type { Readable } from "node:stream";
import { logger } from "../logger.ts";
import { PodmanApiError, type PodmanApi } from "../podman/PodmanApi.ts";
import { abortableSleep, backoffDelay, type BackoffPolicy } from "../retry.ts";
import { LibpodLogDecoder, type ContainerLogEntry } from "./LibpodLogDecoder.ts";
import type { LogPositionStore, LineMark } from "./LogPositionStore.ts";
import type { LogOrigin, LogShipper } from "./LogShipper.ts";
import type { MonotonicStamps } from "./logTimestamp.ts";

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
  /** Where reading got to (advanced as lines are pushed; a reconnect resumes after it). */
  position: LogPosition;
  /** `_time` of this container's lines, never going backwards across reconnects and restarts. */
  stamps: MonotonicStamps;
  /** Acknowledged positions and dropped lines go here. */
  store: LogPositionStore;
  reconnect: BackoffPolicy;
  /** First read what Podman has up to now without following, and resolve `caughtUp` then. */
  catchUp?: boolean;
}

/**
 * Follows one container's logs until stopped: reconnects with backoff when the stream ends
 * (container stopped, podman restarted) and stops by itself, quietly, when the container is gone.
 */
export class ContainerLogFollower implements LogOrigin {
  readonly done: Promise<void>;
  /** Resolves once the catch-up read ended (at once without `catchUp`), however it ended. */
  readonly caughtUp: Promise<void>;
  private markCaughtUp!: () => void;
  private readonly aborter = new AbortController();
  private current: FollowerState = "connecting";

  constructor(private readonly options: ContainerLogFollowerOptions) {
    this.caughtUp = new Promise((resolve) => (this.markCaughtUp = resolve));
    if (!options.catchUp) this.markCaughtUp();
    this.done = this.run().finally(() => this.markCaughtUp()).catch((err) => {
      log.warn(`following the logs of container ${options.container.id} stopped: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  acknowledged(mark: unknown): void {
    this.options.store.acknowledge(this.options.container.id, mark as LineMark);
  }

  dropped(count: number): void {
    this.options.store.dropped(this.options.container.id, count);
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
    let follow = !this.options.catchUp;
    while (!this.stopped) {
      this.current = "connecting";
      let shipped = 0;
      try {
        const outcome = await this.readOnce(follow, () => shipped++);
        if (!follow) {
          follow = true;
          this.markCaughtUp();
          if (outcome === "ended") continue;
        }
        if (outcome === "gone") {
          this.current = "gone";
          log.debug(`container ${container.id} is gone; no more logs to follow`);
          return;
        }
      } catch (err) {
        if (this.stopped) break;
        log.debug(`log stream of container ${container.id} failed: ${reason(err)}`);
        if (!follow) {
          follow = true;
          this.markCaughtUp();
        }
      }
      if (this.stopped) break;
      failures = shipped > 0 ? 0 : failures + 1;
      this.current = "waiting";
      const delay = Math.max(MIN_RECONNECT_MS, backoffDelay(reconnect, Math.min(failures, 16)));
      await abortableSleep(delay, this.aborter.signal);
    }
  }

  private async readOnce(follow: boolean, onShipped: () => void): Promise<"ended" | "gone"> {
    const { container, api, position, stamps, shipper } = this.options;
    const since = position.seconds ?? this.options.sinceSeconds;
    const query = { follow, stdout: true, stderr: true, timestamps: true, since };
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
      const stamp = stamps.next(Math.floor(now / 1000) === seconds ? now : seconds * 1000);
      const mark: LineMark = { seconds, linesInSecond: position.linesInSecond, ms: stamp.ms, subMsNanos: stamp.subMsNanos };
      shipper.push({ msg: entry.text, time: new Date(stamp.ms), subMsNanos: stamp.subMsNanos, fields, origin: this, mark });
      onShipped();
    };
    const decoder = new LibpodLogDecoder();
    for await (const chunk of body) {
      for (const entry of decoder.push(chunk as Uint8Array)) ship(entry);
      const room = shipper.room?.();
      if (room) await untilAborted(room, this.aborter.signal);
    }
    for (const entry of decoder.end()) ship(entry);
    return "ended";
  }
}

/** Waits for `promise`, or for `signal` to abort (then returns at once). */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    void promise.then(done);
  });
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.message ?? e.code ?? String(err);
}
