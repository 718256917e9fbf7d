import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";

/** Ed25519 key pair the agent signs control-plane requests with. */
export class SigningKey {
  private constructor(private readonly privateKey: KeyObject) {}

  static generate(): SigningKey {
    return new SigningKey(generateKeyPairSync("ed25519").privateKey);
  }

  /** From the PKCS#8 PEM stored in keys/private.key. */
  static fromPem(pem: string): SigningKey {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== "ed25519") throw new Error(`expected an Ed25519 key, found ${key.asymmetricKeyType}`);
    return new SigningKey(key);
  }

  privateKeyPem(): string {
    return this.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  }

  /** Base64 of the RAW 32-byte public key, as the control plane expects at registration. */
  publicKeyRawBase64(): string {
    const jwk = createPublicKey(this.privateKey).export({ format: "jwk" });
    return Buffer.from(jwk.x as string, "base64url").toString("base64");
  }

  /** Standard padded base64 of the Ed25519 signature over the message bytes. */
  sign(message: string | Uint8Array): string {
    const bytes = typeof message === "string" ? Buffer.from(message, "utf8") : message;
    return sign(null, bytes, this.privateKey).toString("base64");
  }
}
