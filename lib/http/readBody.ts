/** An answer body larger than the reader accepts; nothing past the limit was read. */
export class BodyTooLargeError extends Error {
  constructor(readonly limitBytes: number) {
    super(`the body is larger than ${limitBytes} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/**
 * Reads an answer body (Bun's fetch) as UTF-8 text, at most `limitBytes` of it: a larger body (by
 * its Content-Length, or once that many bytes arrived) is abandoned with a BodyTooLargeError, so a
 * huge or endless answer never fills memory.
 */
export async function readResponseText(res: Response, limitBytes: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? undefined);
  if (Number.isFinite(declared) && declared > limitBytes) {
    discardResponse(res);
    throw new BodyTooLargeError(limitBytes);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limitBytes) {
      reader.cancel().catch(() => {});
      throw new BodyTooLargeError(limitBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Drops the body of an answer of Bun's fetch without reading it. */
export function discardResponse(res: Response): void {
  res.body?.cancel().catch(() => {});
}

const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

/** An HTTP call cut short by its own timeout (an AbortSignal.timeout, or one of undici's). */
export function isTimeoutError(err: unknown): boolean {
  const e = err as { name?: string; code?: unknown; cause?: unknown } | undefined;
  if (!e || typeof e !== "object") return false;
  if (e.name === "TimeoutError" || (typeof e.code === "string" && TIMEOUT_CODES.has(e.code))) return true;
  return e.cause !== undefined && e.cause !== err && isTimeoutError(e.cause);
}
