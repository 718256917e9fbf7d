import type { ChangeKind } from "../state/types.ts";

export type CheckStatus = "ok" | "warn" | "fail" | "skip";

/**
 * What would repair a finding. `apply` (an in-process action) or `command` (an argv run through
 * lib/exec) makes it automatic; with neither it is a step for a person, shown but never run.
 */
export interface Fix {
  description: string;
  command?: string[];
  apply?: () => Promise<void>;
}

export interface PlannedChangeView {
  kind: ChangeKind;
  description: string;
  reason: string;
}

export interface CheckResult {
  id: string;
  title: string;
  status: CheckStatus;
  /** For a person: what was found; several lines when there is more to say. */
  detail: string;
  fix?: Fix;
  /** The drift check: each pending change with its reason. */
  changes?: PlannedChangeView[];
}

/** One check: an id scripts can rely on, a title for people, and the probe itself. */
export interface Check<Ctx = unknown> {
  id: string;
  title: string;
  /**
   * Start only once every check listed before this one has finished (checks otherwise run
   * several at once). For a check that starts something the earlier ones must not see yet,
   * such as the node's drivers and with them the agent's own podman service.
   */
  waitForEarlier?: boolean;
  run(ctx: Ctx): Promise<CheckResult>;
}

export function isAutomatic(fix: Fix | undefined): fix is Fix {
  return fix !== undefined && (fix.apply !== undefined || (fix.command !== undefined && fix.command.length > 0));
}

/** Builds a result for `check`; the helper keeps id and title in one place. */
export function resultOf(check: { id: string; title: string }, status: CheckStatus, detail: string, extra: { fix?: Fix; changes?: PlannedChangeView[] } = {}): CheckResult {
  return { id: check.id, title: check.title, status, detail, ...(extra.fix ? { fix: extra.fix } : {}), ...(extra.changes ? { changes: extra.changes } : {}) };
}

const RANK: Record<CheckStatus, number> = { skip: 0, ok: 1, warn: 2, fail: 3 };

export function worst(statuses: readonly CheckStatus[]): CheckStatus {
  return statuses.reduce<CheckStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), "ok");
}
