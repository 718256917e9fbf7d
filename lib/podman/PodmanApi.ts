import type { Readable } from "node:stream";
import { Agent, request, type Dispatcher } from "../http/undici.ts";
import { AgentError } from "../errors.ts";
import { redact } from "../redact.ts";

/** The libpod REST API prefix; Podman 4.x serves every 4.x version under this path. */
export const LIBPOD_PREFIX = "/v4.0.0/libpod";

export type Query = Record<string, string | number | boolean | undefined>;

export interface ApiRequest {
  query?: Query;
  /** Serialised as JSON. */
  body?: unknown;
  /** Overrides the client's per-request timeout (pulls and stops take longer). */
  timeoutMs?: number;
}

export interface ApiResponse {
  status: number;
  text: string;
}

/** A libpod call that failed: the HTTP status (undefined when no answer came) and podman's own message. */
export class PodmanApiError extends AgentError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number | undefined,
    readonly reason: string,
  ) {
    super(redact(`podman API ${method} ${path} failed: ${status === undefined ? "" : `${status} `}${reason}`), {
      hint: status === undefined ? "is the podman API service running? run agent doctor" : undefined,
    });
  }
}

export interface PodmanApiOptions {
  socketPath: string;
  /** Per-request timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
}

/**
 * A small JSON client for the libpod API over its unix socket. Every request counts towards
 * `apiCalls`, so callers (and the benchmark) can see how many calls an operation costs.
 */
export class PodmanApi {
  readonly socketPath: string;
  apiCalls = 0;
  private readonly timeoutMs: number;
  private readonly dispatcher: Agent;

  constructor(options: PodmanApiOptions) {
    this.socketPath = options.socketPath;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.dispatcher = new Agent({ connect: { socketPath: options.socketPath }, keepAliveTimeout: 10_000 });
  }

  /** One call; statuses >= 400 are thrown as PodmanApiError unless listed in `allow`. */
  async call(method: string, path: string, req: ApiRequest = {}, allow: readonly number[] = []): Promise<ApiResponse> {
    const timeoutMs = req.timeoutMs ?? this.timeoutMs;
    this.apiCalls++;
    let res: Dispatcher.ResponseData;
    let text: string;
    try {
      res = await request(this.url(path, req.query), {
        method: method as Dispatcher.HttpMethod,
        headers: req.body === undefined ? { accept: "application/json" } : { accept: "application/json", "content-type": "application/json" },
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        dispatcher: this.dispatcher,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.body.text();
    } catch (err) {
      throw new PodmanApiError(method, path, undefined, transportReason(err, timeoutMs));
    }
    if (res.statusCode >= 400 && !allow.includes(res.statusCode)) {
      throw new PodmanApiError(method, path, res.statusCode, podmanMessage(text));
    }
    return { status: res.statusCode, text };
  }

  /** A call whose answer is JSON; `undefined` for an allowed error status or an empty body. */
  async json<T = unknown>(method: string, path: string, req: ApiRequest = {}, allow: readonly number[] = []): Promise<T | undefined> {
    const res = await this.call(method, path, req, allow);
    if (res.status >= 400 || res.text.trim() === "") return undefined;
    try {
      return JSON.parse(res.text) as T;
    } catch {
      throw new PodmanApiError(method, path, res.status, `answer is not JSON: ${res.text.slice(0, 200)}`);
    }
  }

  /**
   * Opens a streaming GET (events, pull progress) and returns the body once the headers are in.
   * The body has no timeout; `signal` ends it.
   */
  async stream(path: string, query: Query | undefined, signal: AbortSignal, headersTimeoutMs = this.timeoutMs): Promise<Readable> {
    this.apiCalls++;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.url(path, query), {
        method: "GET",
        headers: { accept: "application/json" },
        dispatcher: this.dispatcher,
        headersTimeout: headersTimeoutMs,
        bodyTimeout: 0,
        signal,
      });
    } catch (err) {
      throw new PodmanApiError("GET", path, undefined, transportReason(err, headersTimeoutMs));
    }
    if (res.statusCode >= 400) {
      const text = await res.body.text().catch(() => "");
      throw new PodmanApiError("GET", path, res.statusCode, podmanMessage(text));
    }
    return res.body;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private url(path: string, query?: Query): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) params.set(key, String(value));
    }
    const search = params.size > 0 ? `?${params}` : "";
    return `http://podman${LIBPOD_PREFIX}${path}${search}`;
  }
}

/** Podman's error bodies are `{"cause", "message", "response"}`; the message already contains the cause. */
export function podmanMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown; cause?: unknown };
    if (typeof parsed.message === "string" && parsed.message) return parsed.message;
    if (typeof parsed.cause === "string" && parsed.cause) return parsed.cause;
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.trim().slice(0, 500) || "no details in the answer";
}

function transportReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; name?: string } };
  if (e.name === "TimeoutError" || e.cause?.name === "TimeoutError" || e.code === "UND_ERR_HEADERS_TIMEOUT" || e.code === "UND_ERR_BODY_TIMEOUT") {
    return `timed out after ${timeoutMs} ms`;
  }
  if (e.name === "AbortError") return "aborted";
  return e.code ?? e.cause?.code ?? e.message ?? String(err);
}
