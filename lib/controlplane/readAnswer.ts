import { BodyTooLargeError, discardResponse, isTimeoutError, readResponseText } from "../http/readBody.ts";

/**
 * Reading a control-plane answer, and how the agent words one it cannot use — shared by the
 * client and doctor's probe, so a person reads the same sentence in the log and in `agent doctor`.
 */

/** The largest answer the agent reads; an expected state with thousands of containers is a few MiB. */
export const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

/** An answer that cannot be used, worded for a person. `retryable`: a slow answer may come faster next time. */
export class UnusableAnswer extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "UnusableAnswer";
  }
}

/**
 * The body of `res` (Bun's fetch), the answer to a request for `url`. A redirect (never followed),
 * a body over MAX_ANSWER_BYTES and one that does not arrive within `timeoutMs` are UnusableAnswer errors.
 */
export async function readFetchAnswer(res: Response, url: URL, timeoutMs: number): Promise<string> {
  if (res.status >= 300 && res.status < 400) {
    discardResponse(res);
    throw new UnusableAnswer(redirectText(res.status, res.headers.get("location") ?? undefined, url), false);
  }
  try {
    return await readResponseText(res, MAX_ANSWER_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLargeError) {
      throw new UnusableAnswer(`answered ${res.status} with a body over the size limit of ${err.limitBytes / (1024 * 1024)} MiB`, false);
    }
    throw new UnusableAnswer(isTimeoutError(err) ? timeoutText(timeoutMs, "reading") : `failed while reading the answer: ${networkReason(err)}`, true);
  }
}

function timeoutText(timeoutMs: number, phase: "waiting for" | "reading"): string {
  return `timed out after ${timeoutMs / 1000} s ${phase} the answer (--request-timeout)`;
}

/** Why a request got no answer: the timeout, or the network's error code (`failed: ECONNREFUSED`). */
export function noAnswerText(err: unknown, timeoutMs: number): string {
  return isTimeoutError(err) ? timeoutText(timeoutMs, "waiting for") : `failed: ${networkReason(err)}`;
}

function networkReason(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  return e.code ?? e.cause?.code ?? e.message ?? String(err);
}

/** `answered 302, a redirect to …`: where it points (resolved against the request), and that it is not followed. */
function redirectText(status: number, location: string | string[] | undefined, requestUrl: URL): string {
  const raw = Array.isArray(location) ? location[0] : location;
  let target = "nowhere (no Location header)";
  if (raw) {
    try {
      target = new URL(raw, requestUrl).href;
    } catch {
      target = JSON.stringify(raw);
    }
  }
  return `answered ${status}, a redirect to ${target}: the agent does not follow redirects; give --url the address the control plane answers on`;
}
