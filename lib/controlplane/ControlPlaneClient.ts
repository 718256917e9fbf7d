import type { z } from "zod";
import { AgentError } from "../errors.ts";
import type { SigningKey } from "../crypto/signingKey.ts";
import { redact } from "../redact.ts";
import { DEFAULT_BACKOFF, withRetry, type BackoffPolicy } from "../retry.ts";
import { UnusableAnswer, noAnswerText, readFetchAnswer } from "./readAnswer.ts";
import { signatureHeaders, type SigningMode } from "./signing.ts";
import {
  BuildStatusResponse,
  BuildStatusUpdateResponse,
  ClaimBuildResponse,
  ErrorBody,
  ExpectedStateWire,
  OkResponse,
  PendingBuildResponse,
  RegisterResponse,
  WorkQueueResponse,
  describeIssues,
  type BuildStatus,
  type RegisterRequest,
  type StatusReport,
  type WorkItemResult,
} from "./schemas.ts";

/** A failed control-plane call: the HTTP status (when there was one) and the server's `error` text. */
export class ControlPlaneError extends AgentError {
  constructor(
    message: string,
    readonly status?: number,
    readonly serverError?: string,
    readonly retryable = false,
  ) {
    super(redact(message), { hint: status === 401 ? "check the server's clock and identity; run agent doctor" : undefined });
  }
}

export interface ControlPlaneClientOptions {
  baseUrl: string;
  serverId?: string;
  signingKey?: SigningKey;
  signing?: SigningMode;
  timeoutMs?: number;
  backoff?: BackoffPolicy;
}

interface CallOptions<T> {
  body?: unknown;
  signed: boolean;
  schema: z.ZodType<T>;
  /** Statuses returned as `undefined` instead of thrown (409 on a claim). */
  expectedStatuses?: number[];
}

/**
 * The control plane's API. Requests go through Bun's own fetch (connections kept alive between
 * polls), so `agent run` does not load an HTTP library: undici alone costs it about 25 MiB.
 */
export class ControlPlaneClient {
  private readonly baseUrl: URL;
  private readonly timeoutMs: number;
  private readonly backoff: BackoffPolicy;
  private readonly signing: SigningMode;
  serverId?: string;
  signingKey?: SigningKey;

  constructor(options: ControlPlaneClientOptions) {
    this.baseUrl = new URL(options.baseUrl.replace(/\/+$/, "") + "/");
    this.serverId = options.serverId;
    this.signingKey = options.signingKey;
    this.signing = options.signing ?? "v1";
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  register(body: RegisterRequest) {
    return this.call("POST", "api/v1/agent/register", { body, signed: false, schema: RegisterResponse });
  }

  getExpectedState() {
    return this.call("GET", "api/v1/agent/expected-state", { signed: true, schema: ExpectedStateWire });
  }

  async reportStatus(report: StatusReport): Promise<void> {
    await this.call("POST", "api/v1/agent/status", { body: report, signed: true, schema: OkResponse });
  }

  getPendingBuild() {
    return this.call("GET", "api/v1/agent/pending-builds", { signed: true, schema: PendingBuildResponse });
  }

  /** Claims a build; `undefined` when another agent claimed it first (409). */
  claimBuild(buildId: string) {
    return this.call("POST", `api/v1/agent/builds/${encodeURIComponent(buildId)}/claim`, {
      signed: true,
      schema: ClaimBuildResponse,
      expectedStatuses: [409],
    });
  }

  /** Reports build progress; resolves to true when the control plane says the build was cancelled. */
  async reportBuildStatus(buildId: string, status: BuildStatus, error?: string): Promise<boolean> {
    const body = error === undefined ? { status } : { status, error: redact(error) };
    const res = await this.call("POST", `api/v1/agent/builds/${encodeURIComponent(buildId)}/status`, {
      body,
      signed: true,
      schema: BuildStatusUpdateResponse,
    });
    return res?.cancelled === true;
  }

  async getBuildStatus(buildId: string): Promise<string> {
    const res = await this.call("GET", `api/v1/agent/builds/${encodeURIComponent(buildId)}/status`, {
      signed: true,
      schema: BuildStatusResponse,
    });
    return res!.status;
  }

  async getWorkQueue() {
    const res = await this.call("GET", "api/v1/agent/work-queue", { signed: true, schema: WorkQueueResponse });
    return res!.items;
  }

  async completeWorkItem(result: WorkItemResult): Promise<void> {
    const body = result.error === undefined ? result : { ...result, error: redact(result.error) };
    await this.call("POST", "api/v1/agent/work-queue", { body, signed: true, schema: OkResponse });
  }

  private async call<T>(method: "GET" | "POST", relPath: string, options: CallOptions<T>): Promise<T> {
    const url = new URL(relPath, this.baseUrl);
    const what = `${method} ${url.pathname}`;
    // Serialise once: these exact bytes are signed and sent.
    const body = options.body === undefined ? "" : JSON.stringify(options.body);
    return withRetry(
      () => this.once(method, url, body, what, options),
      (err) => err instanceof ControlPlaneError && err.retryable,
      this.backoff,
    ) as Promise<T>;
  }

  private async once<T>(method: "GET" | "POST", url: URL, body: string, what: string, options: CallOptions<T>): Promise<T | undefined> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== "") headers["content-type"] = "application/json";
    if (options.signed) {
      if (!this.serverId || !this.signingKey) throw new ControlPlaneError(`${what}: the agent is not registered yet`);
      Object.assign(headers, signatureHeaders(this.signingKey, this.serverId, this.signing, method, url.pathname + url.search, body));
    }
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === "" ? undefined : body,
        // A redirect is reported, never followed (readFetchAnswer).
        redirect: "manual",
        // One deadline for the answer: connecting, headers and body.
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new ControlPlaneError(`control plane ${what} ${noAnswerText(err, this.timeoutMs)}`, undefined, undefined, true);
    }
    let text: string;
    try {
      text = await readFetchAnswer(res, url, this.timeoutMs);
    } catch (err) {
      if (!(err instanceof UnusableAnswer)) throw err;
      throw new ControlPlaneError(`control plane ${what} ${err.message}`, res.status, undefined, err.retryable);
    }
    if (options.expectedStatuses?.includes(res.status)) return undefined;
    if (res.status >= 400) {
      const serverError = parseErrorText(text);
      const detail = serverError ? `: ${serverError}` : "";
      throw new ControlPlaneError(`control plane ${what} answered ${res.status}${detail}`, res.status, serverError, res.status >= 500);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ControlPlaneError(`control plane ${what} answered ${res.status} with a body that is not JSON`, res.status);
    }
    const parsed = options.schema.safeParse(json);
    if (!parsed.success) {
      throw new ControlPlaneError(`control plane ${what} answered with an invalid response: ${describeIssues(parsed.error)}`, res.status);
    }
    return parsed.data;
  }

  /** Nothing to release: kept-alive connections are Bun's, and never keep the process alive. */
  async close(): Promise<void> {}
}

function parseErrorText(text: string): string | undefined {
  try {
    const parsed = ErrorBody.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.error : undefined;
  } catch {
    return undefined;
  }
}
