import { signatureHeaders, type SigningMode } from "../controlplane/signing.ts";
import type { SigningKey } from "../crypto/signingKey.ts";
import { ErrorBody } from "../controlplane/schemas.ts";
import { noAnswerText, readFetchAnswer } from "../controlplane/readAnswer.ts";
import { errorMessage } from "../errors.ts";

export const EXPECTED_STATE_PATH = "api/v1/agent/expected-state";

/** One signed GET of the expected state, with everything a diagnosis needs from it. */
export interface ControlPlaneProbe {
  url: string;
  durationMs: number;
  /** Set when no HTTP answer came back (refused, DNS, timeout). */
  networkError?: string;
  status?: number;
  /** The `error` text of a 4xx/5xx answer. */
  serverError?: string;
  /** The control plane's clock minus this host's, in ms, from the answer's Date header. */
  skewMs?: number;
  /** The answer's JSON on 2xx. */
  json?: unknown;
  /** Why the answer could not be used: not JSON, a redirect, too large, too slow. */
  bodyError?: string;
}

export interface ProbeOptions {
  baseUrl: string;
  serverId: string;
  signingKey: SigningKey;
  signing: SigningMode;
  timeoutMs: number;
  now?: () => number;
}

/**
 * Unlike ControlPlaneClient this makes exactly one attempt (no retries: doctor reports, it does
 * not wait out an outage) and keeps the status, the error text and the Date header. The Date
 * header has a one-second resolution, which is plenty against a 60 s tolerance.
 */
export async function probeControlPlane(options: ProbeOptions): Promise<ControlPlaneProbe> {
  const now = options.now ?? Date.now;
  const url = new URL(EXPECTED_STATE_PATH, options.baseUrl.replace(/\/+$/, "") + "/");
  const sentAt = now();
  const headers = { accept: "application/json", ...signatureHeaders(options.signingKey, options.serverId, options.signing, "GET", url.pathname + url.search, "", sentAt) };
  let res: Response;
  try {
    // The same request as the agent's client: one deadline for the whole answer, redirects reported, not followed.
    res = await fetch(url, { method: "GET", headers, redirect: "manual", signal: AbortSignal.timeout(options.timeoutMs) });
  } catch (err) {
    return { url: url.href, durationMs: now() - sentAt, networkError: noAnswerText(err, options.timeoutMs) };
  }
  const answeredAt = now();
  const probe: ControlPlaneProbe = { url: url.href, durationMs: answeredAt - sentAt, status: res.status };
  const date = res.headers.get("date");
  const serverTime = date ? Date.parse(date) : Number.NaN;
  // The header is truncated to the second: +500 ms is the middle of the second it names.
  if (Number.isFinite(serverTime)) probe.skewMs = Math.round(serverTime + 500 - (sentAt + answeredAt) / 2);
  let text: string;
  try {
    text = await readFetchAnswer(res, url, options.timeoutMs);
  } catch (err) {
    probe.bodyError = errorMessage(err);
    return probe;
  }
  if (res.status >= 400) {
    probe.serverError = errorText(text);
  } else {
    try {
      probe.json = JSON.parse(text);
    } catch {
      probe.bodyError = "the answer is not JSON";
    }
  }
  return probe;
}

function errorText(text: string): string | undefined {
  try {
    const parsed = ErrorBody.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.error : undefined;
  } catch {
    return undefined;
  }
}
