import { join } from "node:path";
import { z } from "zod";
import { describeIssues } from "../controlplane/schemas.ts";
import type { DataDir } from "../datadir/DataDir.ts";
import { AgentError } from "../errors.ts";

/**
 * The local record of work items this agent has handled, so that an item the control plane sends
 * again (because its completion report was lost) is re-reported, not re-run. Each item is written
 * as `acting` before anything is done and as `done` with its result before the result is reported;
 * both writes are atomic. Bounded: the oldest reported entries go first.
 */
export const LEDGER_FILE = "work-ledger.json";
export const DEFAULT_LEDGER_LIMIT = 1000;

const LedgerEntry = z.object({
  id: z.string(),
  type: z.string(),
  phase: z.enum(["acting", "done"]),
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  status: z.enum(["completed", "failed"]).optional(),
  error: z.string().optional(),
  /** Full ids of the containers an action was about to touch (force_cleanup resumes with these). */
  targets: z.array(z.string()).optional(),
  reportedAt: z.string().optional(),
});
export type LedgerEntry = z.infer<typeof LedgerEntry>;

const LedgerFile = z.object({ version: z.literal(1), entries: z.array(LedgerEntry) });

export interface WorkResult {
  status: "completed" | "failed";
  error?: string;
}

export class WorkLedger {
  private readonly entries = new Map<string, LedgerEntry>();

  private constructor(
    private readonly dataDir: DataDir,
    readonly limit: number,
  ) {}

  get path(): string {
    return join(this.dataDir.stateDir, LEDGER_FILE);
  }

  /**
   * Reads the ledger. A ledger that cannot be read is an error, not an empty ledger: starting over
   * would run again every item whose completion the control plane has not acknowledged.
   */
  static load(dataDir: DataDir, options: { limit?: number } = {}): WorkLedger {
    const ledger = new WorkLedger(dataDir, options.limit ?? DEFAULT_LEDGER_LIMIT);
    let json: unknown;
    try {
      json = dataDir.readStateJson(LEDGER_FILE);
    } catch (err) {
      throw ledger.unreadable((err as Error).message);
    }
    if (json === undefined) return ledger;
    const parsed = LedgerFile.safeParse(json);
    if (!parsed.success) throw ledger.unreadable(describeIssues(parsed.error));
    for (const entry of parsed.data.entries) ledger.entries.set(entry.id, entry);
    return ledger;
  }

  get(id: string): LedgerEntry | undefined {
    return this.entries.get(id);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Entries with a result the control plane has not acknowledged yet. */
  unreported(): LedgerEntry[] {
    return [...this.entries.values()].filter((e) => e.phase === "done" && !e.reportedAt);
  }

  markActing(id: string, type: string, targets?: string[]): void {
    this.put({ id, type, phase: "acting", startedAt: new Date().toISOString(), ...(targets ? { targets } : {}) });
  }

  recordResult(id: string, type: string, result: WorkResult): void {
    const previous = this.entries.get(id);
    const now = new Date().toISOString();
    this.put({
      id,
      type,
      phase: "done",
      startedAt: previous?.startedAt ?? now,
      finishedAt: now,
      status: result.status,
      ...(result.error !== undefined ? { error: result.error } : {}),
      ...(previous?.targets ? { targets: previous.targets } : {}),
    });
  }

  markReported(id: string): void {
    const entry = this.entries.get(id);
    if (!entry || entry.phase !== "done" || entry.reportedAt) return;
    this.entries.set(id, { ...entry, reportedAt: new Date().toISOString() });
    this.save();
  }

  private put(entry: LedgerEntry): void {
    this.entries.delete(entry.id);
    this.entries.set(entry.id, entry);
    this.evict();
    this.save();
  }

  /** Drops the oldest reported entries, then the oldest unreported results; never an `acting` entry. */
  private evict(): void {
    const overflow = () => this.entries.size - this.limit;
    for (const pass of [(e: LedgerEntry) => e.phase === "done" && !!e.reportedAt, (e: LedgerEntry) => e.phase === "done"]) {
      for (const entry of [...this.entries.values()]) {
        if (overflow() <= 0) return;
        if (pass(entry)) this.entries.delete(entry.id);
      }
    }
  }

  private save(): void {
    this.dataDir.writeStateJson(LEDGER_FILE, { version: 1, entries: [...this.entries.values()] });
  }

  private unreadable(detail: string): AgentError {
    return new AgentError(`the work-queue ledger ${this.path} cannot be read: ${detail}; work items are not processed until it is fixed`, {
      hint: `move the file aside to start a new ledger (items whose completion the control plane has not acknowledged may then run again)`,
    });
  }
}
