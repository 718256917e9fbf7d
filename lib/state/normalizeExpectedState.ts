import type { ExpectedStateWire } from "../controlplane/schemas.ts";
import { InvalidInputError } from "../errors.ts";
import { sortDnsRecords } from "./hash.ts";
import { collectContainers } from "./normalizeContainers.ts";
import { collectPeers } from "./normalizePeers.ts";
import { collectCertificates, collectRoutes } from "./normalizeRoutes.ts";
import type { NodeRules } from "./nodeRules.ts";
import { Problems } from "./Problems.ts";
import type { DnsRecord, ExpectedState } from "./types.ts";
import { normalizeDomainName, parseIPv4Address } from "./validate.ts";

export { normalizePeers } from "./normalizePeers.ts";
export { PLAIN_ENV_MARKER } from "./normalizeContainers.ts";

export interface NormalizeOptions {
  /** Proxy nodes install routes and certificates; worker nodes ignore them even when sent. */
  isProxy: boolean;
  /** `<data-dir>/volumes`: every volume's hostPath must be inside `<volumesRoot>/<serviceId>/`. */
  volumesRoot: string;
  /** Accept `plain:` env values: true for local state files, false for the control plane. */
  allowPlainEnv: boolean;
  /** Host ports and addresses this node can give containers (lib/state/nodeRules). */
  node: NodeRules;
}

/**
 * Turns wire expected state (shape already checked by zod) into normalised internal state, or
 * throws one InvalidInputError (an InputRejectedError) listing every problem, so an invalid
 * state is rejected as a whole and nothing of it is applied.
 *
 * A section missing on the wire stays undefined ("not sent: leave alone"); an empty list stays
 * an empty list ("remove everything of that kind").
 */
export function normalizeExpectedState(wire: ExpectedStateWire, options: NormalizeOptions): ExpectedState {
  const problems = new Problems();
  const state: ExpectedState = {
    containers: collectContainers(wire.containers, options, problems),
  };
  if (wire.dns !== undefined) state.dns = collectDnsRecords(wire.dns.records, problems);
  if (options.isProxy && (wire.caddy !== undefined || wire.traefik !== undefined)) {
    const lists: Array<[string, NonNullable<ExpectedStateWire["caddy"]>["routes"]]> = [];
    if (wire.caddy) lists.push(["caddy.routes", wire.caddy.routes]);
    if (wire.traefik) lists.push(["traefik.routes", wire.traefik.routes]);
    state.routes = collectRoutes(lists, problems);
    if (wire.traefik?.certificates !== undefined) {
      state.certificates = collectCertificates(wire.traefik.certificates, "traefik.certificates", problems);
    }
  }
  if (wire.wireguard !== undefined) state.peers = collectPeers(wire.wireguard.peers, problems, "wireguard.peers");
  problems.throwIfAny("expected state", "nothing was applied; fix the expected state where it comes from (control plane or state file)");
  return state;
}

/**
 * Internal DNS answers for `*.internal` only: a record for any other name would redirect that
 * name (a registry, an API) for every container of the node.
 */
const INTERNAL_SUFFIX = ".internal";

/**
 * Names lower-cased and under `.internal`, IPs valid IPv4. Records with the same name are merged (their IPs are united:
 * two records for one name would make DNS round-robin over both anyway); records left without
 * any IP are dropped, since no DNS server can serve a name with no address.
 */
function collectDnsRecords(wires: ReadonlyArray<{ name: string; ips: string[] }>, problems: Problems): DnsRecord[] {
  const byName = new Map<string, Set<string>>();
  wires.forEach((wire, i) => {
    const where = `dns.records[${i}]`;
    const name = problems.check(where, () => {
      const normalized = normalizeDomainName(wire.name);
      if (!normalized.endsWith(INTERNAL_SUFFIX)) {
        throw new InvalidInputError(`${JSON.stringify(wire.name)} is not an internal name (it must end in ${INTERNAL_SUFFIX})`);
      }
      return normalized;
    });
    const ips = wire.ips.map((ip) => problems.check(where, () => parseIPv4Address(ip)));
    if (name === undefined) return;
    const set = byName.get(name) ?? new Set<string>();
    for (const ip of ips) if (ip !== undefined) set.add(ip);
    byName.set(name, set);
  });
  const records = [...byName].filter(([, ips]) => ips.size > 0).map(([name, ips]) => ({ name, ips: [...ips] }));
  return sortDnsRecords(records);
}
