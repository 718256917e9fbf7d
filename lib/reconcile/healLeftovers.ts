import type { ContainerRuntime } from "../drivers.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../logger.ts";
import { needsOf } from "../podman/leftovers.ts";
import type { ExpectedState } from "../state/types.ts";

const log = logger("reconcile");

/**
 * Before the first pass of a run: what an earlier run, or a podman killed in the middle of an
 * operation, left in the way of `expected` is repaired. A failure to look is a warning: the pass
 * goes on, and a deploy that then meets a conflict looks again.
 */
export async function healLeftovers(runtime: ContainerRuntime, expected: ExpectedState): Promise<void> {
  try {
    await runtime.healLeftovers?.(needsOf(expected));
  } catch (err) {
    log.warn(`cannot look for leftovers of interrupted operations: ${errorMessage(err)}`);
  }
}
