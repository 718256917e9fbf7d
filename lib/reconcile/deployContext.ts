import { decryptSecret } from "../crypto/secrets.ts";
import type { DeployContext } from "../drivers.ts";
import { AgentError } from "../errors.ts";
import { registerSecret } from "../redact.ts";

/**
 * Env decryption for deploys. A value that fails to decrypt fails that container's deploy; it is
 * never passed through as ciphertext and never logged. Decrypted values are registered as secrets
 * so no log line or error can carry them.
 */
export function deployContext(encryptionKey: string | undefined): DeployContext {
  return {
    decryptEnv(key, value) {
      if (value.kind === "plain") {
        registerSecret(value.value);
        return value.value;
      }
      if (!encryptionKey) {
        throw new AgentError(`env ${key} is encrypted but no encryption key is available`, {
          hint: "register the agent, or pass --encryption-key-file with --state",
        });
      }
      let plain: string;
      try {
        plain = decryptSecret(value.value, encryptionKey);
      } catch (err) {
        throw new AgentError(`env ${key} cannot be decrypted: ${(err as Error).message}`);
      }
      registerSecret(plain);
      return plain;
    },
  };
}
