import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { WorkQueueProcessor, type WorkQueueOptions, type WorkQueueSummary } from "./WorkQueueProcessor.ts";

const log = logger("workqueue");

export const DEFAULT_WORK_QUEUE_INTERVAL_MS = 5000;

export interface WorkQueuePollerOptions extends WorkQueueOptions {
  /** Pause between the end of one poll and the start of the next (default 5000). */
  intervalMs?: number;
  /** Called after every poll (tests, metrics). */
  onPoll?: (result: { summary?: WorkQueueSummary; error?: unknown }) => void;
}

export interface WorkQueuePoller {
  /** Polls now instead of waiting for the interval (no-op while a poll runs). */
  pollNow(): void;
  /** Stops polling; an item in flight finishes first, the rest of its batch is left for later. */
  stop(): Promise<void>;
}

/**
 * Polls the work queue on its own timer, independent of the reconcile loop: a slow item or a
 * control plane that is down delays the next poll, never a reconcile pass. The first poll runs
 * at once. A ledger that cannot be read stops item handling (logged) until it is fixed.
 */
export function startWorkQueuePoller(options: WorkQueuePollerOptions): WorkQueuePoller {
  let processor: WorkQueueProcessor | undefined;
  const intervalMs = options.intervalMs ?? DEFAULT_WORK_QUEUE_INTERVAL_MS;
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight: Promise<void> | undefined;
  let failing = false;

  const poll = async () => {
    timer = undefined;
    try {
      processor ??= new WorkQueueProcessor(options);
      const summary = await processor.processOnce(abort.signal);
      if (failing) log.info("work queue reachable again");
      failing = false;
      options.onPoll?.({ summary });
    } catch (err) {
      // One line per outage, not one per poll.
      if (!failing) log.warn(`work queue not processed: ${errorMessage(err)}; retrying every ${intervalMs / 1000} s`);
      failing = true;
      options.onPoll?.({ error: err });
    }
  };

  const schedule = (delay: number) => {
    if (abort.signal.aborted || timer || inFlight) return;
    timer = setTimeout(() => {
      inFlight = poll().finally(() => {
        inFlight = undefined;
        schedule(intervalMs);
      });
    }, delay);
  };

  schedule(0);
  return {
    pollNow() {
      if (inFlight || abort.signal.aborted) return;
      if (timer) clearTimeout(timer);
      timer = undefined;
      schedule(0);
    },
    async stop() {
      abort.abort();
      if (timer) clearTimeout(timer);
      timer = undefined;
      await inFlight;
    },
  };
}
