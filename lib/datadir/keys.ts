import { SigningKey } from "../crypto/signingKey.ts";
import { generateWireGuardPrivateKey, isWireGuardKey, wireGuardPublicKey } from "../crypto/wireguardKey.ts";
import { AgentError } from "../errors.ts";
import type { DataDir } from "./DataDir.ts";

export interface NodeKeys {
  signing: SigningKey;
  wireguardPrivateKey: string;
  wireguardPublicKey: string;
}

/** Loads the signing and WireGuard keys, creating (and persisting) whichever is missing. */
export function loadOrCreateKeys(dataDir: DataDir): NodeKeys {
  dataDir.ensure();
  let signing: SigningKey;
  const pem = dataDir.readText(dataDir.privateKeyFile);
  if (pem === undefined) {
    signing = SigningKey.generate();
    dataDir.writeSecret(dataDir.privateKeyFile, signing.privateKeyPem());
    dataDir.writePublic(dataDir.publicKeyFile, signing.publicKeyRawBase64() + "\n");
  } else {
    try {
      signing = SigningKey.fromPem(pem);
    } catch (err) {
      throw new AgentError(`${dataDir.privateKeyFile} is not a valid Ed25519 key: ${(err as Error).message}`, { hint: "run agent doctor" });
    }
  }
  let wireguardPrivateKey = dataDir.readText(dataDir.wireguardKeyFile)?.trim();
  if (wireguardPrivateKey === undefined) {
    wireguardPrivateKey = generateWireGuardPrivateKey();
    dataDir.writeSecret(dataDir.wireguardKeyFile, wireguardPrivateKey + "\n");
  } else if (!isWireGuardKey(wireguardPrivateKey)) {
    throw new AgentError(`${dataDir.wireguardKeyFile} is not a WireGuard key (base64 of 32 bytes)`, { hint: "run agent doctor" });
  }
  return { signing, wireguardPrivateKey, wireguardPublicKey: wireGuardPublicKey(wireguardPrivateKey) };
}
