/**
 * Process-wide set of secret values (tokens, keys, decrypted env values). Anything that is logged
 * or put in an error message passes through `redact` first.
 */
const secrets = new Set<string>();
const MIN_SECRET_LENGTH = 4;

export function registerSecret(value: string | undefined | null): void {
  if (value && value.length >= MIN_SECRET_LENGTH) secrets.add(value);
}

export function forgetSecret(value: string): void {
  secrets.delete(value);
}

const URL_CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/)([^/\s:@]+)(?::([^/\s@]*))?@/gi;

export function redact(text: string): string {
  let out = text.replace(URL_CREDENTIALS, "$1***@");
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join("***");
  }
  return out;
}
