import { InvalidInputError } from "../errors.ts";
import { isWireGuardKey } from "../crypto/wireguardKey.ts";
import { quote } from "./Problems.ts";

/**
 * Validators for values that come from outside (expected state, work items). The `is*` forms
 * answer yes or no; the `normalize*`/`parse*` forms return the canonical value or throw an
 * InvalidInputError whose message names the value and what is wrong with it.
 */

const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Deployment, service and route ids: they end up in labels, file names and paths. */
const SAFE_ID = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;
const PATH_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const DOMAIN_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const PORT_TEXT = /^[1-9][0-9]{0,4}$/;
const PREFIX_TEXT = /^(?:0|[1-9][0-9]{0,2})$/;

function reject(message: string): never {
  throw new InvalidInputError(message);
}

// IPv4 ------------------------------------------------------------------------------------------

/** Node's own IPv4 pattern (net.isIPv4), here so that validating a state does not load node:net. */
const IPV4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
const IPV4 = new RegExp(`^(?:${IPV4_OCTET}\\.){3}${IPV4_OCTET}$`);

function isIPv4(value: string): boolean {
  return IPV4.test(value);
}

/** Dotted decimal, four octets 0–255, no leading zeros (which some tools read as octal). */
export function isIPv4Address(value: string): boolean {
  return isIPv4(value);
}

export function parseIPv4Address(value: string): string {
  if (!isIPv4Address(value)) reject(`${quote(value)} is not an IPv4 address`);
  return value;
}

// IPv6 (for CIDRs and endpoints only) -----------------------------------------------------------

/** 16 bytes, or undefined. Zone ids (`%eth0`) are refused: they mean nothing outside one host. */
function ipv6Bytes(text: string): number[] | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.includes(":::")) return undefined;
  let body = text;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = text.slice(lastColon + 1);
    if (!isIPv4(v4)) return undefined;
    tail.push(...v4.split(".").map(Number));
    body = text.slice(0, lastColon + 1);
    if (body.endsWith(":") && !body.endsWith("::")) body = body.slice(0, -1);
  }
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string | undefined) => (part ? part.split(":") : []);
  const head = groupsOf(halves[0]);
  const rest = groupsOf(halves[1]);
  const wanted = 8 - tail.length / 2;
  const missing = wanted - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  const bytes: number[] = [];
  for (const group of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    const n = parseInt(group, 16);
    bytes.push(n >> 8, n & 0xff);
  }
  bytes.push(...tail);
  return bytes.length === 16 ? bytes : undefined;
}

/** RFC 5952 text: lower case, longest run of two or more zero groups compressed to `::`. */
function formatIPv6(bytes: number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

export function isIPv6Address(value: string): boolean {
  return ipv6Bytes(value) !== undefined;
}

// CIDR ------------------------------------------------------------------------------------------

function maskBytes(bytes: number[], prefix: number): number[] {
  return bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return byte & ((0xff << (8 - bits)) & 0xff);
  });
}

/**
 * `10.100.2.0/24` or an IPv6 prefix. Returns the canonical form with host bits cleared
 * (`10.100.2.7/24` ⇒ `10.100.2.0/24`), which is what WireGuard itself stores and reports.
 */
export function normalizeCidr(value: string): string {
  const bad = () => reject(`${quote(value)} is not a CIDR (expected address/prefix, e.g. 10.100.2.0/24)`);
  const parts = value.split("/");
  if (parts.length !== 2 || !PREFIX_TEXT.test(parts[1]!)) return bad();
  const [address, prefixText] = parts as [string, string];
  const prefix = Number(prefixText);
  if (isIPv4(address)) {
    if (prefix > 32) return bad();
    return `${maskBytes(address.split(".").map(Number), prefix).join(".")}/${prefix}`;
  }
  const v6 = ipv6Bytes(address);
  if (!v6 || prefix > 128) return bad();
  return `${formatIPv6(maskBytes(v6, prefix))}/${prefix}`;
}

export function isCidr(value: string): boolean {
  return succeeds(() => normalizeCidr(value));
}

// Ports and endpoints ---------------------------------------------------------------------------

export function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}

export function parsePort(value: number): number {
  if (!isPort(value)) reject(`port ${String(value)} is out of range 1–65535`);
  return value;
}

/**
 * `host:port` where host is an IPv4 address, `[IPv6]` or a host name. Returns it with the host
 * name lower-cased and IPv6 in canonical form.
 */
export function normalizeEndpoint(value: string): string {
  const bad = (why: string) => reject(`${quote(value)} is not a host:port endpoint (${why})`);
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(value);
  let host: string;
  let portText: string;
  if (bracketed) {
    [host, portText] = [bracketed[1]!, bracketed[2]!];
  } else {
    const colon = value.lastIndexOf(":");
    if (colon < 0) return bad("no port");
    [host, portText] = [value.slice(0, colon), value.slice(colon + 1)];
    if (host.includes(":")) return bad("an IPv6 address must be in brackets");
  }
  if (!PORT_TEXT.test(portText) || Number(portText) > 65535) return bad("port must be 1–65535");
  if (bracketed) {
    const v6 = ipv6Bytes(host);
    if (!v6) return bad("bad IPv6 address");
    return `[${formatIPv6(v6)}]:${portText}`;
  }
  if (isIPv4(host)) return `${host}:${portText}`;
  if (/^[0-9.]+$/.test(host)) return bad("bad IPv4 address");
  if (!isDomainName(host)) return bad("bad host name");
  return `${host.toLowerCase()}:${portText}`;
}

export function isEndpoint(value: string): boolean {
  return succeeds(() => normalizeEndpoint(value));
}

// Names -----------------------------------------------------------------------------------------

/**
 * An RFC 1123 host name, lower-cased: labels of 1–63 letters, digits and inner hyphens, at most
 * 253 characters, the last label not all digits (so `10.0.0.999` is not a name). With
 * `allowWildcard`, one leading `*.` is accepted (proxy routes).
 */
export function normalizeDomainName(value: string, options: { allowWildcard?: boolean } = {}): string {
  const lower = value.toLowerCase();
  const wildcard = options.allowWildcard === true && lower.startsWith("*.");
  const name = wildcard ? lower.slice(2) : lower;
  const labels = name.split(".");
  const valid =
    name.length > 0 &&
    name.length <= 253 &&
    labels.every((label) => DOMAIN_LABEL.test(label)) &&
    !/^[0-9]+$/.test(labels[labels.length - 1]!);
  if (!valid) {
    const allowed = options.allowWildcard ? ", optionally starting with *." : "";
    reject(`${quote(value)} is not a valid domain name (letters, digits and hyphens in dot-separated labels${allowed})`);
  }
  return wildcard ? `*.${name}` : name;
}

export function isDomainName(value: string, options: { allowWildcard?: boolean } = {}): boolean {
  return succeeds(() => normalizeDomainName(value, options));
}

export function isContainerName(value: string): boolean {
  return value.length <= 253 && CONTAINER_NAME.test(value);
}

export function parseContainerName(value: string): string {
  if (!isContainerName(value)) {
    reject(`container name ${quote(value)} is invalid (letters, digits, _ . -, starting with a letter or digit, at most 253 characters)`);
  }
  return value;
}

export function isEnvName(value: string): boolean {
  return ENV_NAME.test(value);
}

export function parseEnvName(value: string): string {
  if (!isEnvName(value)) reject(`env name ${quote(value)} is invalid (letters, digits and _, not starting with a digit)`);
  return value;
}

/** Deployment, service and route ids: letters, digits, `_ . -`, not starting with a dot, at most 128. */
export function isSafeId(value: string): boolean {
  return SAFE_ID.test(value);
}

export function parseSafeId(what: string, value: string): string {
  if (!isSafeId(value)) reject(`${what} ${quote(value)} is invalid (letters, digits, _ . -, not starting with a dot, at most 128 characters)`);
  return value;
}

/** One file-name component, safe in a path: no `/`, not `.` or `..`, starting with a letter or digit. */
export function isPathSegment(value: string): boolean {
  return PATH_SEGMENT.test(value);
}

export function parseWireGuardKey(value: string): string {
  if (!isWireGuardKey(value)) reject(`${quote(value)} is not a WireGuard public key (base64 of 32 bytes)`);
  return value;
}

function succeeds(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof InvalidInputError) return false;
    throw err;
  }
}
