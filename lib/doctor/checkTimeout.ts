import { resultOf, type Check, type CheckResult } from "./Check.ts";

/**
 * The check with a deadline: when `run` has not answered within `ms`, the result is a skip saying
 * so (what it was waiting on keeps its own timeouts and ends by itself).
 */
export function withTimeout<Ctx>(check: Check<Ctx>, ms: number): Check<Ctx> {
  return {
    ...check,
    async run(ctx: Ctx): Promise<CheckResult> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<CheckResult>((resolve) => {
        timer = setTimeout(() => resolve(resultOf(check, "skip", `no answer within ${ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}; run agent doctor again`)), ms);
      });
      try {
        return await Promise.race([check.run(ctx), late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
