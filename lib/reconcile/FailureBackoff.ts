import { stableHash } from "../state/hash.ts";
import type { Change } from "../state/types.ts";

interface Failure {
  count: number;
  retryAt: number;
}

/**
 * Remembers changes that failed and defers them with capped exponential backoff, so one change
 * that keeps failing (an image that cannot be pulled, a port taken by someone else) does not stop
 * every change planned after it on every pass. A change is the same change while its content is
 * the same: a new deployment id, image or record set is a new change and is tried at once.
 */
export class FailureBackoff {
  private readonly failures = new Map<string, Failure>();

  constructor(
    private readonly baseMs = 10_000,
    private readonly maxMs = 300_000,
    private readonly now: () => number = Date.now,
  ) {}

  static key(change: Change): string {
    switch (change.kind) {
      case "stop-orphan":
      case "remove-orphan":
        return `${change.kind}:${change.container.id}`;
      case "start":
        return `start:${change.container.id}`;
      case "deploy":
      case "redeploy":
        return `${change.kind}:${change.expected.deploymentId}:${change.expected.image}`;
      case "dns":
        return `dns:${stableHash(change.records)}`;
      case "routes":
        return `routes:${stableHash([change.routes, change.certificates])}`;
      case "wireguard":
        return `wireguard:${stableHash(change.peers)}`;
    }
  }

  isDeferred(change: Change): boolean {
    const failure = this.failures.get(FailureBackoff.key(change));
    return failure !== undefined && failure.retryAt > this.now();
  }

  /** Records a failure; returns how long the change is deferred, in milliseconds. */
  recordFailure(change: Change): number {
    const key = FailureBackoff.key(change);
    const count = (this.failures.get(key)?.count ?? 0) + 1;
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** (count - 1));
    this.failures.set(key, { count, retryAt: this.now() + delay });
    return delay;
  }

  recordSuccess(change: Change): void {
    this.failures.delete(FailureBackoff.key(change));
  }

  /** Forgets failures of changes no longer planned, so the map stays as small as the plan. */
  retainOnly(plan: readonly Change[]): void {
    const live = new Set(plan.map((c) => FailureBackoff.key(c)));
    for (const key of this.failures.keys()) if (!live.has(key)) this.failures.delete(key);
  }
}
