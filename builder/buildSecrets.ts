import { createHash } from "node:crypto";
import { InvalidInputError } from "../lib/errors.ts";
import { registerSecret } from "../lib/redact.ts";

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Validates build secret names (they become environment variable names and `--secret id=K,env=…`
 * arguments, so a comma or `=` would change the argument's meaning) and registers every value
 * for redaction.
 */
export function checkBuildSecrets(secrets: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(secrets)) {
    if (!NAME.test(name)) throw new InvalidInputError(`build secret name ${JSON.stringify(name)} is not a valid environment variable name`);
    registerSecret(value);
  }
  return secrets;
}

/**
 * sha256 over the sorted `NAME=value` lines: passed as the `secrets-hash` build argument so that a
 * changed secret value invalidates the cached layers that use it (BuildKit does not do that itself).
 */
export function secretsHash(secrets: Record<string, string>): string | undefined {
  const names = Object.keys(secrets).sort();
  if (names.length === 0) return undefined;
  const hash = createHash("sha256");
  for (const name of names) hash.update(`${name}=${secrets[name]}\n`);
  return hash.digest("hex");
}

/**
 * The environment variable that carries secret `name` to buildctl or podman (`--secret
 * id=NAME,env=…`). Never `NAME` itself: a secret named PATH, LD_PRELOAD, CONTAINERS_CONF or
 * HTTPS_PROXY would otherwise change how the build tool, running as root on the host, behaves.
 */
export function secretEnvName(name: string): string {
  return `TECHULUS_BUILD_SECRET_${name}`;
}

/** The secret values keyed by secretEnvName, for the build tool's environment. */
export function secretEnv(secrets: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(secrets).map(([name, value]) => [secretEnvName(name), value]));
}
