import { WorkQueueProcessor, type WorkQueueOptions, type WorkQueueSummary } from "./WorkQueueProcessor.ts";

export type { WorkItemOutcome, WorkQueueOptions, WorkQueueSummary } from "./WorkQueueProcessor.ts";

/**
 * One pass over the work queue, for `agent reconcile --once` (skipped with `--no-work-queue`).
 * Same ledger and rules as `agent run`'s poller; throws when the queue cannot be fetched or the
 * ledger cannot be read. `signal` stops it between items.
 */
export async function processWorkQueueOnce(options: WorkQueueOptions, signal?: AbortSignal): Promise<WorkQueueSummary> {
  return new WorkQueueProcessor(options).processOnce(signal);
}
