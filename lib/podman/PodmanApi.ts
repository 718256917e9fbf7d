import type { Readable } from "node:stream";
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

const JSON_HEADERS = { accept: "application/json" };
const JSON_BODY_HEADERS = { accept: "application/json", "content-type": "application/json" };

/**
 * A small JSON client for the libpod API over its unix socket. Every request counts towards
 * `apiCalls`, so callers (and the benchmark) can see how many calls an operation costs.
 *
 * Requests go through Bun's own fetch (`unix:`), which keeps connections alive between calls:
 * no HTTP library is loaded, which keeps a cron `reconcile --once` quick and `agent run` small.
 */
export class PodmanApi {
  readonly socketPath: string;
  apiCalls = 0;
  private readonly timeoutMs: number;

  constructor(options: PodmanApiOptions) {
    this.socketPath = options.socketPath;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** One call; statuses >= 400 are thrown as PodmanApiError unless listed in `allow`. */
  async call(method: string, path: string, req: ApiRequest = {}, allow: readonly number[] = []): Promise<ApiResponse> {
    const timeoutMs = req.timeoutMs ?? this.timeoutMs;
    this.apiCalls++;
    let status: number;
    let text: string;
    try {
      const res = await fetch(this.url(path, req.query), {
        method,
        headers: req.body === undefined ? JSON_HEADERS : JSON_BODY_HEADERS,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        unix: this.socketPath,
        redirect: "manual",
        // One deadline for the answer, headers and body alike.
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      throw new PodmanApiError(method, path, undefined, transportReason(err, timeoutMs));
    }
    if (status >= 400 && !allow.includes(status)) {
      throw new PodmanApiError(method, path, status, podmanMessage(text));
    }
    return { status, text };
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
    // One controller for the request, aborted by the caller's signal or the headers deadline. The
    // listener on the caller's (long-lived) signal is removed when the body closes: nothing piles up.
    const request = new AbortController();
    const onAbort = () => request.abort(signal.reason);
    const unlisten = () => signal.removeEventListener("abort", onAbort);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const headersTimer = setTimeout(() => request.abort(new DOMException(`no answer after ${headersTimeoutMs} ms`, "TimeoutError")), headersTimeoutMs);
    let res: Response;
    try {
      res = await fetch(this.url(path, query), { method: "GET", headers: JSON_HEADERS, unix: this.socketPath, redirect: "manual", signal: request.signal });
    } catch (err) {
      unlisten();
      throw new PodmanApiError("GET", path, undefined, transportReason(err, headersTimeoutMs));
    } finally {
      clearTimeout(headersTimer);
    }
    if (res.status >= 400 || !res.body) {
      const text = await res.text().catch(() => "");
      unlisten();
      throw new PodmanApiError("GET", path, res.status, res.status >= 400 ? podmanMessage(text) : "the answer has no body");
    }
    // node:stream only when a stream is asked for: a one-shot reconcile never loads it.
    const { Readable } = require("node:stream") as typeof import("node:stream");
    const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
    body.once("close", unlisten);
    return body;
  }

  /**
   * Nothing to release: calls in flight finish (streams end with their signal), and the idle
   * kept-alive connections are Bun's, which never keep the process alive.
   */
  async close(): Promise<void> {}

  private url(path: string, query?: Query): string {
    let search = "";
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined) params.set(key, String(value));
      }
      if (params.size > 0) search = `?${params}`;
    }
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
