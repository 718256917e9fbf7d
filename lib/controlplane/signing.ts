import type { SigningKey } from "../crypto/signingKey.ts";

export type SigningMode = "v1" | "v2";

/** The exact bytes each signing mode signs. `pathAndQuery` is the URL path plus `?query` as sent. */
export function signedMessage(mode: SigningMode, timestamp: string, method: string, pathAndQuery: string, body: string): string {
  if (mode === "v1") return `${timestamp}:${body}`;
  return ["agent-request:v2", timestamp, method.toUpperCase(), pathAndQuery, body].join("\0");
}

export function signatureHeaders(
  key: SigningKey,
  serverId: string,
  mode: SigningMode,
  method: string,
  pathAndQuery: string,
  body: string,
  now: number = Date.now(),
): Record<string, string> {
  const timestamp = String(now);
  return {
    "x-server-id": serverId,
    "x-timestamp": timestamp,
    "x-signature": key.sign(signedMessage(mode, timestamp, method, pathAndQuery, body)),
  };
}
