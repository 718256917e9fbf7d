import type { Server } from "bun";
import { isRfc3339 } from "../../lib/logs/logTimestamp.ts";

/**
 * A local stand-in for VictoriaLogs' `POST /insert/jsonline` (VictoriaLogs cannot be installed
 * here, see HOST.md). It enforces the contract the agent relies on and rejects everything else
 * with 400 and the reason, so a shipper that breaks the contract fails its tests:
 *   - POST only (405 otherwise), path `/insert/jsonline` (404 otherwise);
 *   - body NDJSON, gunzipped when `Content-Encoding: gzip` (other encodings: 400);
 *   - every non-empty line a JSON object with a string `_msg` and a string `_time` in RFC 3339
 *     (fractions up to nanoseconds, `Z` or an offset);
 *   - 204 when the whole batch is accepted (a rejected batch records nothing, like a bad request).
 *
 * Exports:
 *   class TestVictoriaLogs
 *     start(port = 0): Promise<this>   listen on 127.0.0.1 (a free port unless given)
 *     url                              "http://127.0.0.1:PORT" (pass as the endpoint)
 *     port                             the port, kept across stop()/restart()
 *     stop(): Promise<void>            close the port (connections refused: "down")
 *     restart(): Promise<this>         listen again on the same port
 *     delayMs                          answer every request this much later ("slow")
 *     failNext(count, status = 503)    answer the next `count` POSTs with `status` ("failing")
 *     batches: AcceptedBatch[]         accepted requests: lines, query args, headers, gzip or not
 *     lines: JsonLine[]                every accepted line, in arrival order
 *     rejections: Rejection[]          requests answered 4xx/5xx, with the reason
 *     requestCount                     every request that reached the handler
 *     waitForLines(n, timeoutMs?)      resolves when `n` lines were accepted (rejects on timeout)
 *     waitFor(predicate, timeoutMs?)   polls `predicate` until true (rejects on timeout)
 *   validateJsonLines(text): JsonLine[]  the contract check alone; throws ContractError(reason)
 */
export type JsonLine = Record<string, unknown> & { _msg: string; _time: string };

export interface AcceptedBatch {
  lines: JsonLine[];
  query: URLSearchParams;
  headers: Record<string, string>;
  gzip: boolean;
}

export interface Rejection {
  status: number;
  reason: string;
}

export class ContractError extends Error {}

export function validateJsonLines(text: string): JsonLine[] {
  const out: JsonLine[] = [];
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!.replace(/\r$/, "");
    if (row.trim() === "") continue;
    const where = `line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(row);
    } catch (err) {
      throw new ContractError(`${where}: not valid JSON (${(err as Error).message})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ContractError(`${where}: not a JSON object`);
    const obj = value as Record<string, unknown>;
    if (typeof obj._msg !== "string") throw new ContractError(`${where}: missing _msg field (or not a string)`);
    if (typeof obj._time !== "string") throw new ContractError(`${where}: missing _time field (or not a string)`);
    if (!isRfc3339(obj._time)) throw new ContractError(`${where}: _time ${JSON.stringify(obj._time)} is not RFC 3339`);
    out.push(obj as JsonLine);
  }
  if (out.length === 0) throw new ContractError("empty body: no lines");
  return out;
}

export class TestVictoriaLogs {
  delayMs = 0;
  readonly batches: AcceptedBatch[] = [];
  readonly lines: JsonLine[] = [];
  readonly rejections: Rejection[] = [];
  requestCount = 0;
  private failures: Array<number> = [];
  private server?: Server<unknown>;
  private boundPort = 0;

  async start(port = 0): Promise<this> {
    this.server = Bun.serve({ hostname: "127.0.0.1", port, fetch: (req) => this.handle(req) });
    this.boundPort = this.server.port ?? port;
    return this;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    if (!this.boundPort) throw new Error("TestVictoriaLogs not started");
    return `http://127.0.0.1:${this.boundPort}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.stop(true);
  }

  async restart(): Promise<this> {
    await this.stop();
    return this.start(this.boundPort);
  }

  failNext(count: number, status = 503): void {
    for (let i = 0; i < count; i++) this.failures.push(status);
  }

  async waitForLines(count: number, timeoutMs = 10_000): Promise<JsonLine[]> {
    await this.waitFor(() => this.lines.length >= count, timeoutMs, () => `${count} lines (got ${this.lines.length})`);
    return this.lines;
  }

  async waitFor(predicate: () => boolean, timeoutMs = 10_000, what: () => string = () => "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`TestVictoriaLogs: timed out after ${timeoutMs} ms waiting for ${what()}`);
      await Bun.sleep(20);
    }
  }

  private async handle(req: Request): Promise<Response> {
    this.requestCount++;
    if (this.delayMs > 0) await Bun.sleep(this.delayMs);
    const url = new URL(req.url);
    if (url.pathname !== "/insert/jsonline") return this.reject(404, `unsupported path ${url.pathname}`);
    if (req.method !== "POST") return this.reject(405, `method ${req.method} not allowed; use POST`);
    const failure = this.failures.shift();
    if (failure !== undefined) return this.reject(failure, "injected failure");

    const raw = new Uint8Array(await req.arrayBuffer());
    const encoding = (req.headers.get("content-encoding") ?? "").trim().toLowerCase();
    let bytes: Uint8Array;
    if (encoding === "gzip") {
      try {
        bytes = Bun.gunzipSync(raw);
      } catch (err) {
        return this.reject(400, `cannot gunzip the body: ${(err as Error).message}`);
      }
    } else if (encoding === "" || encoding === "identity") {
      bytes = raw;
    } else {
      return this.reject(400, `unsupported Content-Encoding ${encoding}`);
    }
    let lines: JsonLine[];
    try {
      lines = validateJsonLines(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch (err) {
      return this.reject(400, err instanceof ContractError ? err.message : `body is not UTF-8: ${(err as Error).message}`);
    }
    const headers: Record<string, string> = {};
    req.headers.forEach((value, key) => (headers[key] = value));
    this.batches.push({ lines, query: url.searchParams, headers, gzip: encoding === "gzip" });
    this.lines.push(...lines);
    return new Response(null, { status: 204 });
  }

  private reject(status: number, reason: string): Response {
    this.rejections.push({ status, reason });
    return new Response(reason + "\n", { status });
  }
}
