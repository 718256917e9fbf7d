import type { PeerWire } from "../controlplane/schemas.ts";
import { compareStrings } from "./hash.ts";
import { Problems } from "./Problems.ts";
import type { Peer } from "./types.ts";
import { normalizeCidr, normalizeEndpoint, parseWireGuardKey } from "./validate.ts";

/**
 * Validates and normalises a WireGuard peer set (from expected state or an `update_wireguard`
 * work item): keys valid and unique, allowed IPs split on `,` into canonical sorted CIDRs, an
 * empty endpoint meaning "the peer connects to us". Throws one InvalidInputError listing every
 * problem; peers come back sorted by public key.
 */
export function normalizePeers(wirePeers: readonly PeerWire[]): Peer[] {
  const problems = new Problems();
  const peers = collectPeers(wirePeers, problems, "peers");
  problems.throwIfAny("WireGuard peers", "no peer was changed");
  return peers;
}

/** Like normalizePeers, recording problems under `<path>[i]` instead of throwing. */
export function collectPeers(wirePeers: readonly PeerWire[], problems: Problems, path: string): Peer[] {
  const byKey = new Map<string, number>();
  const peers: Peer[] = [];
  wirePeers.forEach((wire, i) => {
    const where = `${path}[${i}]`;
    const before = problems.list.length;
    const publicKey = problems.check(where, () => parseWireGuardKey(wire.publicKey));
    const allowedIps = new Set<string>();
    for (const item of wire.allowedIps.split(",").map((s) => s.trim())) {
      if (item === "") continue;
      const cidr = problems.check(`${where} allowedIps`, () => normalizeCidr(item));
      if (cidr !== undefined) allowedIps.add(cidr);
    }
    const endpointText = wire.endpoint ?? "";
    const endpoint = endpointText === "" ? undefined : problems.check(`${where} endpoint`, () => normalizeEndpoint(endpointText));
    if (publicKey !== undefined) {
      const first = byKey.get(publicKey);
      if (first !== undefined) problems.add(where, `public key ${publicKey} is also used by ${path}[${first}]`);
      else byKey.set(publicKey, i);
    }
    if (problems.list.length > before || publicKey === undefined) return;
    const peer: Peer = { publicKey, allowedIps: [...allowedIps].sort(compareStrings) };
    if (endpoint !== undefined) peer.endpoint = endpoint;
    peers.push(peer);
  });
  return peers.sort((a, b) => compareStrings(a.publicKey, b.publicKey));
}
