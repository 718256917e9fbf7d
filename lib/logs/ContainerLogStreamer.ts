import { PodmanApi } from "../podman/PodmanApi.ts";
import type { BackoffPolicy } from "../retry.ts";
import { ContainerLogFollower, type FollowerState, type LogPosition, type ManagedContainerLogs } from "./ContainerLogFollower.ts";
import type { LogShipper } from "./LogShipper.ts";

export type { ManagedContainerLogs } from "./ContainerLogFollower.ts";

export interface ContainerLogStreamerOptions {
  /** The podman API socket (libpod REST API). */
  socketPath: string;
  shipper: LogShipper;
  /** Lines older than this are not shipped by a new follower (default: when the streamer was made). */
  since?: Date;
  /** Waits between reconnects of one follower (a stopped container, podman restarting). */
  reconnect?: BackoffPolicy;
}

const DEFAULT_RECONNECT: BackoffPolicy = { attempts: Infinity, baseMs: 500, maxMs: 15_000 };
const STOP_TIMEOUT_MS = 2000;

/**
 * Ships the stdout/stderr of managed containers with `deployment_id`, `service_id`, `stream` and
 * `log_type: "container"`. `sync` is called with the managed containers whenever the caller
 * knows them (`ActualState.containers` fits): new ones get a follower, vanished ones lose theirs. Positions outlive followers, so
 * a container that is dropped and synced again within one run resumes without duplicates.
 * Closing the streamer does not close the shipper (it is shared with the builder).
 */
export class ContainerLogStreamer {
  private readonly api: PodmanApi;
  private readonly shipper: LogShipper;
  private readonly sinceSeconds: number;
  private readonly reconnect: BackoffPolicy;
  private readonly followers = new Map<string, ContainerLogFollower>();
  private readonly positions = new Map<string, LogPosition>();
  private readonly stopping = new Set<Promise<void>>();
  private closed = false;

  constructor(options: ContainerLogStreamerOptions) {
    this.api = new PodmanApi({ socketPath: options.socketPath });
    this.shipper = options.shipper;
    this.sinceSeconds = Math.floor((options.since ?? new Date()).getTime() / 1000);
    this.reconnect = options.reconnect ?? DEFAULT_RECONNECT;
  }

  sync(containers: readonly ManagedContainerLogs[]): void {
    if (this.closed) return;
    const wanted = new Map(containers.map((c) => [c.id, c]));
    for (const [id, follower] of this.followers) {
      if (!wanted.has(id)) {
        this.followers.delete(id);
        if (follower.state === "gone") this.positions.delete(id);
        this.stopInBackground(follower);
      }
    }
    for (const [id, container] of wanted) {
      if (this.followers.has(id)) continue;
      let position = this.positions.get(id);
      if (!position) this.positions.set(id, (position = { linesInSecond: 0 }));
      this.followers.set(
        id,
        new ContainerLogFollower({ container, api: this.api, shipper: this.shipper, sinceSeconds: this.sinceSeconds, position, reconnect: this.reconnect }),
      );
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

  private stopInBackground(follower: ContainerLogFollower): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = Promise.race([follower.stop(), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]).then(() => {
      clearTimeout(timer);
      this.stopping.delete(done);
    });
    this.stopping.add(done);
  }
}
