/** node:crypto on first use: a pass with no encrypted value to open never loads it. */
const nodeCrypto = () => require("node:crypto") as typeof import("node:crypto");

const IV_LENGTH = 12;
const TAG_LENGTH = 16;

export class SecretDecryptionError extends Error {}

export function parseEncryptionKey(hex: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new SecretDecryptionError("encryption key must be 64 hex characters (AES-256)");
  return Buffer.from(hex, "hex");
}

/** Decrypts `base64(iv[12] ‖ authTag[16] ‖ ciphertext)` sealed with AES-256-GCM. Never echoes the input. */
export function decryptSecret(encoded: string, keyHex: string): string {
  const key = parseEncryptionKey(keyHex);
  const raw = Buffer.from(encoded, "base64");
  if (raw.length < IV_LENGTH + TAG_LENGTH || raw.toString("base64").replace(/=+$/, "") !== encoded.replace(/=+$/, "")) {
    throw new SecretDecryptionError("value is not an encrypted secret (bad base64 or too short)");
  }
  const decipher = nodeCrypto().createDecipheriv("aes-256-gcm", key, raw.subarray(0, IV_LENGTH));
  decipher.setAuthTag(raw.subarray(IV_LENGTH, IV_LENGTH + TAG_LENGTH));
  try {
    return Buffer.concat([decipher.update(raw.subarray(IV_LENGTH + TAG_LENGTH)), decipher.final()]).toString("utf8");
  } catch {
    throw new SecretDecryptionError("secret failed to decrypt (wrong key or tampered value)");
  }
}

/** The control plane's side of the scheme; used by the test control plane and by tooling. */
export function encryptSecret(plain: string, keyHex: string): string {
  const { randomBytes, createCipheriv } = nodeCrypto();
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv("aes-256-gcm", parseEncryptionKey(keyHex), iv);
  const ciphertext = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64");
}
