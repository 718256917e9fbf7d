/**
 * Redaction for `agent doctor --bundle`: pure functions, no I/O.
 *
 * Two layers, both applied to every file of a bundle:
 * - structural (JSON): a value under a key whose name looks secret (token, key, secret, password,
 *   credential, auth, …, but not a public key) is replaced whatever its type; every value of an
 *   env-like map (`env`, `secrets`, `Env: ["K=V"]`) is replaced, its names kept. This is the layer
 *   that must not miss, so it errs towards redacting too much.
 * - textual: known secret values (and their base64 forms) gathered from the node's own files,
 *   passwords in URLs, PEM private-key blocks, and `name: value` / `"name": "value"` /
 *   `name=value` pairs whose name looks secret, in any text (logs, command output, YAML).
 */

export const REDACTED = "[redacted]";

/** Shorter values are not hunted in free text (an env value "1" would blank every digit); structural redaction still covers them. */
export const MIN_SCRUB_LENGTH = 6;

const SECRET_NAME = /token|secret|passw(or)?d|passphrase|pwd|credential|auth|cookie|signature|private|psk|preshared|key|salt|cert_?key/i;
const PUBLIC_NAME = /public/i;
const ENV_NAME = /^(env|envs|environment|secrets|build_?secrets|Env|EnvVars)$/i;

/** Whether a field called `name` holds a secret: conservative (any token/key/secret/password-like name), public keys excepted. */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) && !PUBLIC_NAME.test(name);
}

/** Whether a field called `name` is a map of environment values (names kept, every value redacted). */
export function isEnvName(name: string): boolean {
  return ENV_NAME.test(name);
}

/** Structural redaction of a JSON value; strings that survive it are scrubbed of `secrets`. Returns a new value. */
export function redactJson(value: unknown, secrets: readonly string[] = []): unknown {
  const scrubber = textScrubber(secrets);
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return scrubber(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, child] of Object.entries(v)) {
        if (isEnvName(k)) out[k] = redactEnvValues(child);
        else if (isSecretName(k)) out[k] = redactLeaf(child);
        else out[k] = walk(child);
      }
      return out;
    }
    return v;
  };
  return walk(value);
}

/** A secret field: null, false and empty strings say "none" and stay; anything else goes. */
function redactLeaf(v: unknown): unknown {
  if (v === null || v === undefined || v === "" || typeof v === "boolean") return v;
  return REDACTED;
}

/** An env map keeps its names; an `["K=V"]` list keeps `K=`. Anything else under an env name is replaced. */
function redactEnvValues(v: unknown): unknown {
  if (Array.isArray(v)) return v.map((item) => (typeof item === "string" && item.includes("=") ? `${item.slice(0, item.indexOf("="))}=${REDACTED}` : REDACTED));
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.keys(v).map((k) => [k, REDACTED]));
  return redactLeaf(v);
}

/**
 * Every string a JSON value holds under a secret name or in an env map, plus the password (and
 * user:password) of every URL in it: the values to hunt for in the bundle's other files.
 */
export function secretValuesIn(value: unknown): string[] {
  const out = new Set<string>();
  const all = (v: unknown): void => {
    if (typeof v === "string" || typeof v === "number") out.add(String(v));
    else if (Array.isArray(v)) v.forEach(all);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(all);
  };
  const walk = (v: unknown): void => {
    if (typeof v === "string") urlSecrets(v).forEach((s) => out.add(s));
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") {
      for (const [k, child] of Object.entries(v)) {
        if (isEnvName(k) && Array.isArray(child)) child.forEach((item) => typeof item === "string" && item.includes("=") && out.add(item.slice(item.indexOf("=") + 1)));
        else if (isEnvName(k) || isSecretName(k)) all(child);
        else walk(child);
      }
    }
  };
  walk(value);
  return [...out];
}

/** The password and user:password of every `scheme://user:password@` in a text (raw and percent-decoded). */
export function urlSecrets(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\b[a-z][a-z0-9+.-]*:\/\/([^\s/?#"'<>]*)@/gi)) {
    const userinfo = m[1]!;
    const colon = userinfo.indexOf(":");
    const parts = colon >= 0 ? [userinfo, userinfo.slice(colon + 1)] : [userinfo];
    for (const p of parts) {
      out.push(p);
      try {
        out.push(decodeURIComponent(p));
      } catch {
        // not percent-encoded
      }
    }
  }
  return out;
}

/** A PEM file's secret forms: the whole text, its base64 body joined, and each body line. */
export function pemSecrets(pem: string): string[] {
  const body = pem
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith("-----"));
  return [pem.trim(), body.join(""), ...body];
}

/** A secret value and the forms it may take elsewhere: trimmed, base64, base64url, hex. */
export function secretVariants(value: string): string[] {
  const v = value.trim();
  if (v.length === 0) return [];
  const bytes = Buffer.from(v, "utf8");
  const b64 = bytes.toString("base64");
  return [v, b64, b64.replace(/=+$/, ""), bytes.toString("base64url"), bytes.toString("hex")];
}

/** Known secrets as a deduplicated list of every variant worth scrubbing, longest first (a secret containing another goes first). */
export function scrubList(values: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const value of values) for (const variant of secretVariants(value)) if (variant.length >= MIN_SCRUB_LENGTH) out.add(variant);
  return [...out].sort((a, b) => b.length - a.length);
}

const PEM_PRIVATE = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(-----END \1PRIVATE KEY-----|$)/g;
const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'<>]*@/gi;
const TEXT_SECRET_NAME = "[A-Za-z0-9_.-]*(?:token|secret|passw(?:or)?d|passphrase|credential|private[ _-]?key|preshared[ _-]?key|encryption[ _-]?key|api[ _-]?key|auth(?:orization)?)[A-Za-z0-9_.-]*";
/** `"name": "value"` in JSON text (JSON log lines). */
const JSON_PAIR = new RegExp(`("${TEXT_SECRET_NAME}"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`, "gi");
/** `name: value` lines (YAML, `wg show`, `podman info`). */
const COLON_LINE = new RegExp(`^(\\s*-?\\s*["']?${TEXT_SECRET_NAME}["']?\\s*:[ \\t]*)(\\S.*)$`, "gim");
/** `name=value` (log fields, query strings). */
const EQUALS_PAIR = new RegExp(`(\\b${TEXT_SECRET_NAME}=)("[^"]*"|[^\\s&"',]+)`, "gi");

/** Scrubs a text: PEM private keys, URL passwords, secret-named pairs, then every known secret. */
export function scrubText(text: string, secrets: readonly string[] = []): string {
  return textScrubber(secrets)(text);
}

function textScrubber(secrets: readonly string[]): (text: string) => string {
  const list = scrubList(secrets);
  return (text) => {
    let out = text.replace(PEM_PRIVATE, REDACTED).replace(URL_USERINFO, `$1${REDACTED}@`);
    out = out.replace(JSON_PAIR, `$1"${REDACTED}"`).replace(COLON_LINE, `$1${REDACTED}`).replace(EQUALS_PAIR, `$1${REDACTED}`);
    for (const secret of list) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  };
}

/** A file that should be JSON: parsed and redacted structurally; when it does not parse, scrubbed as text. */
export function redactJsonText(text: string, secrets: readonly string[] = []): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return scrubText(text, secrets);
  }
  return JSON.stringify(redactJson(parsed, secrets), null, 2) + "\n";
}
