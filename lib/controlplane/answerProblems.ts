/**
 * How the agent words control-plane answers it cannot use, shared by the client and doctor's
 * probe so a person reads the same sentence in the log and in `agent doctor`.
 */

/** The largest answer the agent reads; an expected state with thousands of containers is a few MiB. */
export const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export function timeoutText(timeoutMs: number, phase: "waiting for" | "reading"): string {
  return `timed out after ${timeoutMs / 1000} s ${phase} the answer (--request-timeout)`;
}

/** `answered 302, a redirect to …`: where it points (resolved against the request), and that it is not followed. */
export function redirectText(status: number, location: string | string[] | undefined, requestUrl: URL): string {
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

export function tooLargeText(status: number, limitBytes: number): string {
  return `answered ${status} with a body over the size limit of ${limitBytes / (1024 * 1024)} MiB`;
}

export function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}
