import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { decryptSecret, encryptSecret, SecretDecryptionError } from "../../lib/crypto/secrets.ts";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import { generateWireGuardPrivateKey, isWireGuardKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { signedMessage } from "../../lib/controlplane/signing.ts";

describe("WireGuard keys", () => {
  test("generated keys are in wg genkey format and their public key matches wg pubkey", async () => {
    const priv = generateWireGuardPrivateKey();
    expect(isWireGuardKey(priv)).toBe(true);
    const raw = Buffer.from(priv, "base64");
    expect(raw[0]! & 7).toBe(0);
    expect(raw[31]! & 0xc0).toBe(0x40);
    const wg = Bun.spawnSync(["wg", "pubkey"], { stdin: new Blob([priv + "\n"]) });
    expect(wg.exitCode).toBe(0);
    expect(wireGuardPublicKey(priv)).toBe(wg.stdout.toString().trim());
  });

  test("malformed keys are recognised", () => {
    expect(isWireGuardKey("abc")).toBe(false);
    expect(isWireGuardKey(Buffer.alloc(31).toString("base64"))).toBe(false);
  });
});

describe("secrets", () => {
  const key = randomBytes(32).toString("hex");
  test("AES-256-GCM round trip with iv‖tag‖ciphertext layout", () => {
    const sealed = encryptSecret("s3cr3t value ✓", key);
    expect(Buffer.from(sealed, "base64").length).toBe(12 + 16 + Buffer.byteLength("s3cr3t value ✓"));
    expect(decryptSecret(sealed, key)).toBe("s3cr3t value ✓");
  });

  test("a tampered value, a wrong key or plain text fails without echoing the input", () => {
    const sealed = encryptSecret("hunter2", key);
    const bytes = Buffer.from(sealed, "base64");
    bytes[bytes.length - 1]! ^= 1;
    for (const [value, k] of [
      [bytes.toString("base64"), key],
      [sealed, randomBytes(32).toString("hex")],
      ["plain-text-not-base64!", key],
    ] as const) {
      let caught: unknown;
      try {
        decryptSecret(value, k);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SecretDecryptionError);
      expect((caught as Error).message).not.toContain(value);
    }
  });
});

describe("request signing", () => {
  test("v1 signs `<ts>:<body>` and v2 the NUL-separated request line", () => {
    expect(signedMessage("v1", "1700", "POST", "/api/v1/agent/status", '{"a":1}')).toBe('1700:{"a":1}');
    expect(signedMessage("v2", "1700", "post", "/p?q=1", "b")).toBe("agent-request:v2\u00001700\u0000POST\u0000/p?q=1\u0000b");
  });

  test("the public key is the raw 32-byte key in base64", () => {
    const key = SigningKey.generate();
    expect(Buffer.from(key.publicKeyRawBase64(), "base64").length).toBe(32);
    const again = SigningKey.fromPem(key.privateKeyPem());
    expect(again.publicKeyRawBase64()).toBe(key.publicKeyRawBase64());
  });
});
