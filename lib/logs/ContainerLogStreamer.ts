import { PodmanApi } from "../podman/PodmanApi.ts";
import type { BackoffPolicy } from "../retry.ts";
import { ContainerLogFollower, type FollowerState, type LogPosition, type ManagedContainerLogs } from "./ContainerLogFollower.ts";
import { LogPositionStore, type ContainerLogRecord } from "./LogPositionStore.ts";
import type { LogShipper } from "./LogShipper.ts";
import { MonotonicStamps } from "./logTimestamp.ts";

export type { ManagedContainerLogs } from "./ContainerLogFollower.ts";

export interface ContainerLogStreamerOptions {
  /** The podman API socket (libpod REST API). */
  socketPath: string;
  shipper: LogShipper;
  /** Lines older than this are not shipped by a new follower (default: when the streamer was made). */
  since?: Date;
  /** Waits between reconnects of one follower (a stopped container, podman restarting). */
  reconnect?: BackoffPolicy;
  /** Positions of earlier runs, kept up to date (default: in memory only). */
  positions?: LogPositionStore;
  /** Resuming never goes further back than this (default MAX_LOOK_BACK_SECONDS). */
  maxLookBackSeconds?: number;
  /** Read k8s-file logs from their files (default true); false: through the API's logs endpoint only. */
  logFiles?: boolean;
}

/** How far back a resumed follower reads at most: an agent down longer loses the older lines. */
export const MAX_LOOK_BACK_SECONDS = 24 * 3600;
const DEFAULT_RECONNECT: BackoffPolicy = { attempts: Infinity, baseMs: 500, maxMs: 15_000 };
const STOP_TIMEOUT_MS = 2000;

interface Cursor {
  position: LogPosition;
  stamps: MonotonicStamps;
}

/**
 * Ships the stdout/stderr of managed containers with `deployment_id`, `service_id`, `stream` and
 * `log_type: "container"`. `sync` is called with the managed containers whenever the caller
 * knows them (`ActualState.containers` fits): new ones get a follower, vanished ones lose theirs.
 * `resume` first catches up every container of the positions store, from where the last run's
 * acknowledged lines end. Closing the streamer does not close the shipper (it is shared with the builder).
 */
export class ContainerLogStreamer {
  readonly positions: LogPositionStore;
  private readonly api: PodmanApi;
  private readonly shipper: LogShipper;
  private readonly sinceSeconds: number;
  private readonly maxLookBackSeconds: number;
  private readonly reconnect: BackoffPolicy;
  private readonly logFiles: boolean;
  private readonly followers = new Map<string, ContainerLogFollower>();
  private readonly cursors = new Map<string, Cursor>();
  private readonly stopping = new Set<Promise<void>>();
  private closed = false;

  constructor(options: ContainerLogStreamerOptions) {
    this.api = new PodmanApi({ socketPath: options.socketPath });
    this.shipper = options.shipper;
    this.sinceSeconds = Math.floor((options.since ?? new Date()).getTime() / 1000);
    this.maxLookBackSeconds = options.maxLookBackSeconds ?? MAX_LOOK_BACK_SECONDS;
    this.reconnect = options.reconnect ?? DEFAULT_RECONNECT;
    this.logFiles = options.logFiles ?? true;
    this.positions = options.positions ?? LogPositionStore.open();
  }

  /**
   * Follows every container of the positions store from its position, whatever its state, and
   * resolves once each has read what Podman had up to now (or `timeoutMs` passed): a container the
   * next reconcile pass removes has then been read to its end.
   */
  async resume(timeoutMs: number): Promise<void> {
    const started = this.positions.ids().map((id) => this.start(id, this.positions.get(id)!, true));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(started.map((f) => f.caughtUp)), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  sync(containers: readonly ManagedContainerLogs[]): void {
    if (this.closed) return;
    const wanted = new Map(containers.map((c) => [c.id, c]));
    for (const [id, follower] of this.followers) {
      if (!wanted.has(id)) {
        this.followers.delete(id);
        if (follower.state === "gone") this.forget(id);
        this.stopInBackground(follower);
      }
    }
    for (const [id, container] of wanted) {
      if (this.followers.has(id)) continue;
      this.start(id, container, false);
    }
  }

  /** Followed container ids and what each follower is doing. */
  following(): Array<{ id: string; state: FollowerState }> {
    return [...this.followers].map(([id, f]) => ({ id, state: f.state }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const follower of this.followers.values()) this.stopInBackground(follower);
    this.followers.clear();
    await Promise.all(this.stopping);
    await this.api.close().catch(() => undefined);
  }

  private start(id: string, container: Omit<ManagedContainerLogs, "id">, catchUp: boolean): ContainerLogFollower {
    const record = this.positions.track(id, container, this.sinceSeconds);
    const cursor = this.cursors.get(id) ?? this.cursorFrom(record);
    this.cursors.set(id, cursor);
    const follower = new ContainerLogFollower({
      container: { id, serviceId: container.serviceId, ...(container.deploymentId ? { deploymentId: container.deploymentId } : {}) },
      api: this.api,
      shipper: this.shipper,
      sinceSeconds: this.sinceSeconds,
      ...cursor,
      store: this.positions,
      reconnect: this.reconnect,
      catchUp,
      logFiles: this.logFiles,
    });
    this.followers.set(id, follower);
    void follower.done.then(() => {
      if (follower.state === "gone" && this.followers.get(id) === follower) this.forget(id);
    });
    return follower;
  }

  /** Where a follower starts: after the last acknowledged line, but no further back than the look-back. */
  private cursorFrom(record: ContainerLogRecord): Cursor {
    const floor = Math.floor(Date.now() / 1000) - this.maxLookBackSeconds;
    const position: LogPosition =
      record.seconds === undefined
        ? { seconds: Math.max(record.since ?? this.sinceSeconds, floor), linesInSecond: 0 }
        : record.seconds < floor ? { seconds: floor, linesInSecond: 0 } : { seconds: record.seconds, linesInSecond: record.linesInSecond, ...(record.file ? { file: record.file } : {}) };
    const stamps = new MonotonicStamps(record.lastMs === undefined ? undefined : { ms: record.lastMs, subMsNanos: record.lastSubMsNanos ?? 0 });
    return { position, stamps };
  }

  private forget(id: string): void {
    this.cursors.delete(id);
    this.positions.forget(id);
  }

  private stopInBackground(follower: ContainerLogFollower): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = Promise.race([follower.stop(), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]).then(() => {
      clearTimeout(timer);
      this.stopping.delete(done);
    });
    this.stopping.add(done);
  }
}
