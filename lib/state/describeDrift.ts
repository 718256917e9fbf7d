import { compareStrings, sortCertificates, sortDnsRecords, sortPeers, sortRoutes, stableHash } from "./hash.ts";
import type { Certificate, DnsRecord, Peer, Route } from "./types.ts";

/**
 * Human reasons for a section that drifted: what was added, removed and changed, old → new.
 * Lists are capped so one reason stays readable when hundreds of entries change.
 */

const MAX_ITEMS = 10;

function capped(items: string[]): string {
  if (items.length <= MAX_ITEMS) return items.join(", ");
  return `${items.slice(0, MAX_ITEMS).join(", ")} and ${items.length - MAX_ITEMS} more`;
}

/**
 * `added a, b; removed c; changed d …` from two keyed maps; `change` describes one changed entry,
 * `label` names an added or removed one.
 */
function diffKeyed<T>(expected: Map<string, T>, actual: Map<string, T>, change: (key: string, want: T, have: T) => string | undefined, label: (key: string, want: T) => string = (k) => k): string[] {
  const added = [...expected.keys()].filter((k) => !actual.has(k)).sort(compareStrings);
  const removed = [...actual.keys()].filter((k) => !expected.has(k)).sort(compareStrings);
  const changed: string[] = [];
  for (const key of [...expected.keys()].sort(compareStrings)) {
    const have = actual.get(key);
    if (have === undefined) continue;
    const text = change(key, expected.get(key)!, have);
    if (text !== undefined) changed.push(text);
  }
  const parts: string[] = [];
  if (added.length) parts.push(`added ${capped(added.map((k) => label(k, expected.get(k)!)))}`);
  if (removed.length) parts.push(`removed ${capped(removed.map((k) => label(k, actual.get(k)!)))}`);
  if (changed.length > MAX_ITEMS) parts.push(...changed.slice(0, MAX_ITEMS), `${changed.length - MAX_ITEMS} more changed`);
  else parts.push(...changed);
  return parts;
}

function list(values: readonly string[]): string {
  return values.length ? values.join(",") : "(none)";
}

export function shortKey(key: string): string {
  return `${key.slice(0, 8)}…`;
}

export function diffDns(expected: readonly DnsRecord[], actual: readonly DnsRecord[]): string {
  const toMap = (records: readonly DnsRecord[]) => new Map(sortDnsRecords(records).map((r) => [r.name, r.ips]));
  const parts = diffKeyed(toMap(expected), toMap(actual), (name, want, have) =>
    list(want) === list(have) ? undefined : `changed ${name} ${list(have)} → ${list(want)}`,
  );
  return `dns: ${parts.join("; ") || "records differ"}`;
}

export function diffRoutes(expected: readonly Route[], actual: readonly Route[], expectedCertificates?: readonly Certificate[], actualCertificates: readonly Certificate[] = []): string {
  const toMap = (routes: readonly Route[]) => new Map(sortRoutes(routes).map((r) => [r.id, r]));
  const routeParts = diffKeyed(
    toMap(expected),
    toMap(actual),
    (id, want, have) => {
      const fields: string[] = [];
      if (want.domain !== have.domain) fields.push(`domain ${have.domain} → ${want.domain}`);
      if (list(want.upstreams) !== list(have.upstreams)) fields.push(`upstreams ${list(have.upstreams)} → ${list(want.upstreams)}`);
      if (want.serviceId !== have.serviceId) fields.push(`serviceId ${have.serviceId} → ${want.serviceId}`);
      return fields.length ? `changed ${id} ${fields.join(", ")}` : undefined;
    },
    (id, route) => `${id} (${route.domain})`,
  );
  const sections: string[] = [];
  if (routeParts.length) sections.push(`routes: ${routeParts.join("; ")}`);
  if (expectedCertificates !== undefined) {
    const toCertMap = (certs: readonly Certificate[]) => new Map(sortCertificates(certs).map((c) => [c.domain, c]));
    const certParts = diffKeyed(toCertMap(expectedCertificates), toCertMap(actualCertificates), (domain, want, have) =>
      stableHash(want) === stableHash(have) ? undefined : `replaced ${domain}`,
    );
    if (certParts.length) sections.push(`certificates: ${certParts.join("; ")}`);
  }
  return sections.join("; ") || "routes: routes differ";
}

export function diffPeers(expected: readonly Peer[], actual: readonly Peer[]): string {
  const toMap = (peers: readonly Peer[]) => new Map(sortPeers(peers).map((p) => [p.publicKey, p]));
  const parts = diffKeyed(
    toMap(expected),
    toMap(actual),
    (key, want, have) => {
      const fields: string[] = [];
      if ((want.endpoint ?? "") !== (have.endpoint ?? "")) fields.push(`endpoint of ${shortKey(key)} ${have.endpoint ?? "(none)"} → ${want.endpoint ?? "(none)"}`);
      if (list(want.allowedIps) !== list(have.allowedIps)) fields.push(`allowed IPs of ${shortKey(key)} ${list(have.allowedIps)} → ${list(want.allowedIps)}`);
      return fields.length ? fields.join("; ") : undefined;
    },
    shortKey,
  );
  return `peers: ${parts.join("; ") || "peers differ"}`;
}
