import { InvalidInputError } from "../errors.ts";
import { isWireGuardKey } from "../crypto/wireguardKey.ts";
import { sortPeers } from "../state/hash.ts";
import { isCidr, isEndpoint, isIPv4Address as isIPv4 } from "../state/validate.ts";
import type { Peer } from "../state/types.ts";

/** What `wg show <if> dump` reports: the interface line and one line per peer. */
export interface WgDump {
  listenPort?: number;
  peers: Peer[];
}

/** A peer line of `wg show <if> dump` with its latest handshake, for `agent doctor`. */
export interface LivePeer extends Peer {
  /** Unix seconds of the latest handshake; 0 when there has been none. */
  latestHandshake: number;
}

export interface WgDumpDetail {
  listenPort?: number;
  peers: LivePeer[];
}

/**
 * Parses `wg show <if> dump`: a tab-separated interface line (private key, public key, listen
 * port, fwmark), then one line per peer (public key, preshared key, endpoint, allowed ips,
 * latest handshake, rx, tx, keepalive). `(none)` means empty. Peers keep wg's order.
 */
export function parseWgDumpDetail(text: string): WgDumpDetail {
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  if (lines.length === 0) return { peers: [] };
  const port = Number(lines[0]!.split("\t")[2]);
  const peers: LivePeer[] = [];
  for (const line of lines.slice(1)) {
    const fields = line.split("\t");
    if (fields.length < 4) throw new Error(`unexpected line in wg show dump: ${fields.length} fields`);
    const [publicKey, , endpoint, allowed, handshake] = fields as [string, string, string, string, string | undefined];
    const latest = Number(handshake);
    peers.push({
      publicKey,
      allowedIps: allowed === "(none)" || allowed === "" ? [] : allowed.split(",").sort(),
      endpoint: endpoint === "(none)" || endpoint === "" ? undefined : endpoint,
      latestHandshake: Number.isFinite(latest) && latest > 0 ? latest : 0,
    });
  }
  return { listenPort: Number.isInteger(port) && port > 0 ? port : undefined, peers };
}

/** The peers of `wg show <if> dump` as the state describes them (no handshakes), sorted. */
export function parseWgDump(text: string): WgDump {
  const { listenPort, peers } = parseWgDumpDetail(text);
  return { listenPort, peers: sortPeers(peers.map(({ latestHandshake: _, ...peer }) => peer)) };
}

export interface WgConfigInput {
  privateKey: string;
  listenPort: number;
  peers: readonly Peer[];
  /** Seconds; 0 or undefined leaves keepalive off. */
  persistentKeepalive?: number;
}

/** The `wg syncconf` file: only keys wg itself understands (no wg-quick `Address`). */
export function renderWgConfig(input: WgConfigInput): string {
  const out = ["[Interface]", `PrivateKey = ${input.privateKey}`, `ListenPort = ${input.listenPort}`];
  for (const peer of sortPeers(input.peers)) {
    out.push("", "[Peer]", `PublicKey = ${peer.publicKey}`);
    if (peer.allowedIps.length > 0) out.push(`AllowedIPs = ${peer.allowedIps.join(", ")}`);
    if (peer.endpoint) out.push(`Endpoint = ${peer.endpoint}`);
    if (input.persistentKeepalive) out.push(`PersistentKeepalive = ${input.persistentKeepalive}`);
  }
  return out.join("\n") + "\n";
}

/** Public key → configured endpoint (or undefined), read back from a file renderWgConfig wrote. */
export function configuredEndpoints(configText: string): Map<string, string | undefined> {
  const endpoints = new Map<string, string | undefined>();
  let current: string | undefined;
  for (const raw of configText.split("\n")) {
    const line = raw.trim();
    if (line === "[Peer]" || line === "[Interface]") {
      current = undefined;
      continue;
    }
    const match = /^(\w+)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    if (match[1] === "PublicKey") {
      current = match[2]!;
      endpoints.set(current, undefined);
    } else if (match[1] === "Endpoint" && current) {
      endpoints.set(current, match[2]!);
    }
  }
  return endpoints;
}

/**
 * What the live interface says, seen through what the agent configured: an endpoint WireGuard
 * learned from a peer the agent gave none (a peer that connects to us, possibly roaming) is not
 * drift, and a host-name endpoint shows as the address it resolved to, so it is reported as
 * configured while the port agrees. Keys, allowed IPs and IP endpoints are reported as they are.
 */
export function reconcileEndpoints(live: readonly Peer[], configured: Map<string, string | undefined> | undefined): Peer[] {
  if (!configured) return [...live];
  return live.map((peer) => {
    if (!configured.has(peer.publicKey)) return peer;
    const wanted = configured.get(peer.publicKey);
    if (wanted === undefined) return { ...peer, endpoint: undefined };
    if (peer.endpoint && isHostNameEndpoint(wanted) && portOf(wanted) === portOf(peer.endpoint)) return { ...peer, endpoint: wanted };
    return peer;
  });
}

function portOf(endpoint: string): string {
  return endpoint.slice(endpoint.lastIndexOf(":") + 1);
}

function isHostNameEndpoint(endpoint: string): boolean {
  if (endpoint.startsWith("[")) return false;
  return !isIPv4(endpoint.slice(0, endpoint.lastIndexOf(":")));
}

/**
 * Defensive check before anything is written: lib/state validates expected state, but a peer
 * from a work item or a caller that skipped it must not inject lines into the wg config.
 */
export function assertValidPeers(peers: readonly Peer[]): void {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [index, peer] of peers.entries()) {
    const where = `peers[${index}]`;
    if (!isWireGuardKey(peer.publicKey)) problems.push(`${where}: ${JSON.stringify(peer.publicKey)} is not a WireGuard public key`);
    else if (seen.has(peer.publicKey)) problems.push(`${where}: public key ${peer.publicKey} appears twice`);
    seen.add(peer.publicKey);
    for (const cidr of peer.allowedIps) {
      if (!isCidr(cidr)) problems.push(`${where}: allowed IP ${JSON.stringify(cidr)} is not a CIDR`);
    }
    if (peer.endpoint !== undefined && !isEndpoint(peer.endpoint)) {
      problems.push(`${where}: endpoint ${JSON.stringify(peer.endpoint)} is not host:port`);
    }
  }
  if (problems.length > 0) throw new InvalidInputError(`invalid WireGuard peers, nothing applied: ${problems.join("; ")}`);
}

/** IPv4 network of `address/prefix` contains `cidr` (also IPv4), so the interface route covers it. */
export function cidrCoveredBy(cidr: string, interfaceAddress: string): boolean {
  const [net, prefixText] = cidr.split("/");
  const [addr, ifPrefixText] = interfaceAddress.split("/");
  if (!net || !addr || !isIPv4(net) || !isIPv4(addr)) return false;
  const prefix = Number(prefixText);
  const ifPrefix = Number(ifPrefixText ?? "32");
  if (prefix < ifPrefix) return false;
  const mask = ifPrefix === 0 ? 0 : (0xffffffff << (32 - ifPrefix)) >>> 0;
  return ((ipv4ToInt(net) & mask) >>> 0) === ((ipv4ToInt(addr) & mask) >>> 0);
}

function ipv4ToInt(address: string): number {
  return address.split(".").reduce((acc, octet) => ((acc << 8) | Number(octet)) >>> 0, 0);
}
