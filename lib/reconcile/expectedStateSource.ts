import { statSync } from "node:fs";
import type { ControlPlaneClient } from "../controlplane/ControlPlaneClient.ts";
import { ExpectedStateWire, describeIssues } from "../controlplane/schemas.ts";
import type { DataDir } from "../datadir/DataDir.ts";
import { AgentError, InvalidInputError, errorMessage } from "../errors.ts";
import { parseFlagJson, readFlagFile } from "../fs/readFlagFile.ts";
import { MAX_ANSWER_BYTES } from "../controlplane/readAnswer.ts";
import { BodyTooLargeError, discardResponse, readResponseText } from "../http/readBody.ts";
import { logger } from "../logger.ts";
import { normalizeExpectedState } from "../state/normalizeExpectedState.ts";
import type { NodeRules } from "../state/nodeRules.ts";
import type { ExpectedState } from "../state/types.ts";

const log = logger("state");
const LAST_GOOD_FILE = "expected-state.json";
/** A --state URL must answer in full within this long. */
const STATE_URL_TIMEOUT_MS = 15_000;

export interface NormalizeOptions {
  isProxy: boolean;
  volumesRoot: string;
  node: NodeRules;
}

/** Expected state as the loop consumes it, with where it came from. */
export interface ExpectedSnapshot {
  state: ExpectedState;
  /** "live": just fetched; "last-good": the control plane is unreachable, this is the last valid state. */
  origin: "live" | "last-good" | "file";
}

export interface ExpectedStateSource {
  /** undefined: nothing usable (invalid state, or unreachable with no last good state) — change nothing. */
  fetch(): Promise<ExpectedSnapshot | undefined>;
}

/** Parses and validates wire JSON; an invalid state is rejected as a whole. */
export function parseExpectedState(json: unknown, options: NormalizeOptions & { allowPlainEnv: boolean; origin: string }): ExpectedState {
  const parsed = ExpectedStateWire.safeParse(json);
  if (!parsed.success) throw new InvalidInputError(`expected state from ${options.origin} is invalid: ${describeIssues(parsed.error)}`);
  return normalizeExpectedState(parsed.data, options);
}

/**
 * The control plane's expected state. Every valid state is kept in the data dir as the last good
 * one; while the control plane is unreachable the loop works from it, so the node stays as it is.
 */
export class ControlPlaneStateSource implements ExpectedStateSource {
  private lastGood?: ExpectedState;

  constructor(
    private readonly client: ControlPlaneClient,
    private readonly dataDir: DataDir,
    private readonly options: NormalizeOptions,
  ) {}

  async fetch(): Promise<ExpectedSnapshot | undefined> {
    let wire: unknown;
    try {
      wire = await this.client.getExpectedState();
    } catch (err) {
      const lastGood = this.loadLastGood();
      log.warn(`cannot fetch expected state: ${errorMessage(err)}; ${lastGood ? "keeping the node as it is (last good state)" : "no last good state, changing nothing"}`);
      return lastGood ? { state: lastGood, origin: "last-good" } : undefined;
    }
    try {
      const state = parseExpectedState(wire, { ...this.options, allowPlainEnv: false, origin: "the control plane" });
      this.lastGood = state;
      this.dataDir.writeStateJson(LAST_GOOD_FILE, wire);
      return { state, origin: "live" };
    } catch (err) {
      log.error(`${errorMessage(err)}; nothing applied`);
      return undefined;
    }
  }

  private loadLastGood(): ExpectedState | undefined {
    if (this.lastGood) return this.lastGood;
    try {
      const wire = this.dataDir.readStateJson(LAST_GOOD_FILE);
      if (wire === undefined) return undefined;
      this.lastGood = parseExpectedState(wire, { ...this.options, allowPlainEnv: false, origin: "the last good state file" });
      return this.lastGood;
    } catch (err) {
      log.warn(`ignoring the last good state file: ${errorMessage(err)}`);
      return undefined;
    }
  }
}

/** `--state FILE|URL`: expected state in PROTOCOL.md's format, plain env values allowed. */
export async function loadStateFile(location: string, options: NormalizeOptions): Promise<ExpectedState> {
  let text: string;
  if (/^https?:\/\//.test(location)) {
    try {
      const res = await fetch(location, { redirect: "manual", signal: AbortSignal.timeout(STATE_URL_TIMEOUT_MS) });
      if (res.status >= 300) {
        discardResponse(res);
        const to = res.headers.get("location");
        throw new AgentError(`GET ${location} answered ${res.status}${to ? ` (a redirect to ${to}, not followed)` : ""}`);
      }
      text = await readResponseText(res, MAX_ANSWER_BYTES);
    } catch (err) {
      if (err instanceof AgentError) throw err;
      if (err instanceof BodyTooLargeError) throw new InvalidInputError(`--state ${location}: the answer is over the size limit of ${MAX_ANSWER_BYTES / (1024 * 1024)} MiB`);
      throw new AgentError(`cannot fetch --state ${location}: ${errorMessage(err)}`);
    }
  } else {
    const size = fileSize(location);
    if (size !== undefined && size > MAX_ANSWER_BYTES) throw new InvalidInputError(`--state ${location}: the file is over the size limit of ${MAX_ANSWER_BYTES / (1024 * 1024)} MiB`);
    text = readFlagFile("--state", location);
  }
  const json = parseFlagJson("--state", location, text, (message) => new InvalidInputError(message));
  return parseExpectedState(json, { ...options, allowPlainEnv: true, origin: location });
}

function fileSize(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}
