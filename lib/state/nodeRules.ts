import { compareStrings } from "./hash.ts";
import type { Problems } from "./Problems.ts";
import type { ExpectedContainer } from "./types.ts";

/**
 * What makes an expected state workable on this node, beyond each value being valid on its own:
 * host ports it may publish, and addresses that fit the node's container subnet without two
 * containers wanting the same one. Checked before anything is applied, so a state that cannot
 * work is rejected as a whole instead of being half deployed.
 */

export interface PortRange {
  from: number;
  to: number;
}

export interface ReservedPort {
  port: number;
  /** What uses it, for a person: `the agent's WireGuard port (--wireguard-port)`. */
  owner: string;
}

export interface NodeRules {
  /** Container subnet `10.200.N.0/24`; undefined: the subnet of the state's first address (a state file without registration). */
  subnetId?: number;
  /** Host ports containers may publish. */
  hostPorts: readonly PortRange[];
  /** Ports of the agent and the programs it drives: never published, whatever the ranges say. */
  reservedPorts: readonly ReservedPort[];
}

/** `1024-65535` or a single port `8080`; undefined when it is neither, or out of 1–65535. */
export function parsePortRange(text: string): PortRange | undefined {
  const m = /^\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?$/.exec(text);
  if (!m) return undefined;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  return from >= 1 && from <= to && to <= 65535 ? { from, to } : undefined;
}

export function formatPortRanges(ranges: readonly PortRange[]): string {
  return ranges.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)).join(",");
}

/** A state file without registration: the node's subnet is the one of the first container address (by name). */
export function inferSubnetId(containers: readonly ExpectedContainer[]): number | undefined {
  for (const c of containers) {
    const m = c.ipAddress?.match(/^10\.200\.(\d{1,3})\.\d{1,3}$/);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** Why a container may not publish `port` on this node, or undefined when it may. */
export function hostPortProblem(port: number, rules: NodeRules): string | undefined {
  const reserved = rules.reservedPorts.find((r) => r.port === port);
  if (reserved) return `host port ${port} is ${reserved.owner}`;
  if (!rules.hostPorts.some((r) => port >= r.from && port <= r.to)) {
    return `host port ${port} is outside the host ports containers may publish (${formatPortRanges(rules.hostPorts)}, --host-port-range)`;
  }
  return undefined;
}

/** Why `ip` cannot be a container's address in `10.200.<subnetId>.0/24`, or undefined when it can. */
export function addressProblem(ip: string, subnetId: number): string | undefined {
  const subnet = `10.200.${subnetId}.0/24`;
  const prefix = `10.200.${subnetId}.`;
  if (!ip.startsWith(prefix)) return `${ip} is outside this node's container subnet ${subnet}`;
  const host = Number(ip.slice(prefix.length));
  if (host === 0) return `${ip} is the network address of ${subnet}, not a container address`;
  if (host === 1) return `${ip} is the gateway of ${subnet} (the node itself), not a container address`;
  if (host === 255) return `${ip} is the broadcast address of ${subnet}, not a container address`;
  return undefined;
}

/**
 * Records, under each container's `where`, every host port and address it cannot have on this
 * node, including those another container (or the same one) already claims. `entries` in the
 * order of the input, so "also used by" names the earlier one.
 */
export function checkNodeFit(entries: ReadonlyArray<{ where: string; container: ExpectedContainer }>, rules: NodeRules, problems: Problems): void {
  const byName = entries.map((e) => e.container).sort((a, b) => compareStrings(a.name, b.name));
  const inferred = rules.subnetId === undefined;
  const subnetId = rules.subnetId ?? inferSubnetId(byName);
  const portOwners = new Map<number, string>();
  const addressOwners = new Map<string, string>();
  for (const { where, container } of entries) {
    for (const { hostPort } of container.ports) {
      if (hostPort === undefined) continue;
      const problem = hostPortProblem(hostPort, rules);
      if (problem) problems.add(where, problem);
      const first = portOwners.get(hostPort);
      if (first === undefined) portOwners.set(hostPort, where);
      else problems.add(where, first === where ? `host port ${hostPort} is published twice` : `host port ${hostPort} is also published by ${first}`);
    }
    const ip = container.ipAddress;
    if (ip === undefined || subnetId === undefined) continue;
    const problem = addressProblem(ip, subnetId);
    if (problem) problems.add(`${where} ipAddress`, inferred && problem.includes("outside") ? `${problem} (the subnet of the state's first address; --subnet-id sets it)` : problem);
    const first = addressOwners.get(ip);
    if (first === undefined) addressOwners.set(ip, where);
    else problems.add(`${where} ipAddress`, `${ip} is also the address of ${first}`);
  }
}
