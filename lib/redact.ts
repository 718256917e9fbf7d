import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Process-wide registry of secret values (tokens, keys, decrypted env values). Anything that is
 * logged or put in an error message passes through `redact` first. Values are counted: one
 * registered inside `withSecretScope` (a build's clone token and secrets) is forgotten when the
 * scope ends unless it was registered elsewhere too, so a long-running agent does not collect
 * every build's secrets forever.
 */
const secrets = new Map<string, number>();
const scopes = new AsyncLocalStorage<string[]>();
const MIN_SECRET_LENGTH = 4;

export function registerSecret(value: string | undefined | null): void {
  if (!value || value.length < MIN_SECRET_LENGTH) return;
  secrets.set(value, (secrets.get(value) ?? 0) + 1);
  scopes.getStore()?.push(value);
}

/** Runs `fn`; what it registers (in any async call it makes) is released when it settles. */
export async function withSecretScope<T>(fn: () => Promise<T>): Promise<T> {
  const held: string[] = [];
  try {
    return await scopes.run(held, fn);
  } finally {
    for (const value of held) release(value);
  }
}

function release(value: string): void {
  const count = (secrets.get(value) ?? 0) - 1;
  if (count > 0) secrets.set(value, count);
  else secrets.delete(value);
}

export function forgetSecret(value: string): void {
  secrets.delete(value);
}

/** How many distinct values are registered (tests, diagnostics). */
export function registeredSecretCount(): number {
  return secrets.size;
}

const URL_CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/)([^/\s:@]+)(?::([^/\s@]*))?@/gi;

export function redact(text: string): string {
  let out = text.replace(URL_CREDENTIALS, "$1***@");
  for (const secret of secrets.keys()) {
    if (out.includes(secret)) out = out.split(secret).join("***");
  }
  return out;
}
