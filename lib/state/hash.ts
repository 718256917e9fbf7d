import stringify from "safe-stable-stringify";
import type { Certificate, DnsRecord, Peer, Route } from "./types.ts";

/** sha256 (hex) of the key-sorted JSON of `value`; properties that are undefined are left out. */
export function stableHash(value: unknown): string {
  // Bun's own hasher: node:crypto costs an idle `reconcile --once` milliseconds to load.
  return new Bun.CryptoHasher("sha256").update(stringify(value) ?? "undefined").digest("hex");
}

/** Code-unit order: the same on every machine, unlike localeCompare. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
const byString = compareStrings;

// The hashes sort before hashing, so a driver that reports its lists in another order still
// hashes equal to the normalised expected state.

export function sortDnsRecords(records: readonly DnsRecord[]): DnsRecord[] {
  return records.map((r) => ({ name: r.name, ips: [...r.ips].sort(byString) })).sort((a, b) => byString(a.name, b.name));
}

export function sortRoutes(routes: readonly Route[]): Route[] {
  return routes.map((r) => ({ ...r, upstreams: [...r.upstreams].sort(byString) })).sort((a, b) => byString(a.id, b.id));
}

export function sortCertificates(certificates: readonly Certificate[]): Certificate[] {
  return [...certificates].sort((a, b) => byString(a.domain, b.domain));
}

export function sortPeers(peers: readonly Peer[]): Peer[] {
  return peers.map((p) => ({ ...p, allowedIps: [...p.allowedIps].sort(byString) })).sort((a, b) => byString(a.publicKey, b.publicKey));
}

export function hashDns(records: readonly DnsRecord[]): string {
  return stableHash(sortDnsRecords(records));
}

/** Without `certificates`, only the routes count (certificates not sent are left alone). */
export function hashRoutes(routes: readonly Route[], certificates?: readonly Certificate[]): string {
  return stableHash({ routes: sortRoutes(routes), certificates: certificates && sortCertificates(certificates) });
}

export function hashPeers(peers: readonly Peer[]): string {
  return stableHash(sortPeers(peers));
}
