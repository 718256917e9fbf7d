/** node:crypto on first use: validating a key (every expected state with peers) does not load it. */
const nodeCrypto = () => require("node:crypto") as typeof import("node:crypto");

const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const KEY_PATTERN = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/;

/** True for a base64 Curve25519 key as `wg genkey` / `wg pubkey` print it (32 bytes). */
export function isWireGuardKey(value: string): boolean {
  return KEY_PATTERN.test(value) && Buffer.from(value, "base64").length === 32;
}

/** A private key in `wg genkey` format (clamped Curve25519 scalar, base64), without the wg binary. */
export function generateWireGuardPrivateKey(): string {
  const key = nodeCrypto().randomBytes(32);
  key[0]! &= 248;
  key[31]! &= 127;
  key[31]! |= 64;
  return key.toString("base64");
}

/** The public key `wg pubkey` would print for this private key. */
export function wireGuardPublicKey(privateKeyBase64: string): string {
  const raw = Buffer.from(privateKeyBase64.trim(), "base64");
  if (raw.length !== 32) throw new Error("a WireGuard private key is 32 bytes of base64");
  const { createPrivateKey, createPublicKey } = nodeCrypto();
  const key = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: "der", type: "pkcs8" });
  const jwk = createPublicKey(key).export({ format: "jwk" });
  return Buffer.from(jwk.x as string, "base64url").toString("base64");
}
