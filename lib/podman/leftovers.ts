/**
 * Leftovers of Podman operations that were cut short (a podman process killed in the middle of a
 * stop or a remove), and who holds what the expected state needs. Pure: it works on a snapshot
 * (lib/podman/LeftoverHealer reads it and acts).
 *
 *   stray-conmon       a conmon whose container this Podman no longer knows; it keeps the host
 *                      ports Podman handed it, and its container keeps running
 *   stuck-container    a managed container left in `stopping` or `removing`
 *   stale-reservation  a CNI address reservation naming a container this Podman does not know
 *   foreign-holder     a container the agent does not manage holding a port or address the expected
 *                      state needs: never touched, only named
 */
import type { ExpectedState } from "../state/types.ts";
import type { CniReservation } from "./cniReservations.ts";
import type { ConmonProcess } from "./conmonProcesses.ts";

export interface KnownContainer {
  id: string;
  name: string;
  /** Podman's own state word, lower case (`running`, `stopping`, `removing`, …). */
  state: string;
  managed: boolean;
}

/** Host TCP ports and container addresses the expected state gives its containers. */
export interface Needs {
  ports: number[];
  addresses: string[];
}

export interface LeftoverSnapshot {
  /** Every container this Podman knows, managed or not. */
  containers: KnownContainer[];
  /** conmons started by this Podman (same storage root). */
  conmons: ConmonProcess[];
  /** CNI reservations on the agent's network. */
  reservations: CniReservation[];
}

export type Leftover =
  | { kind: "stray-conmon"; conmon: ConmonProcess; holds: string[]; needed: string[] }
  | { kind: "stuck-container"; container: KnownContainer }
  | { kind: "stale-reservation"; reservation: CniReservation }
  | { kind: "foreign-holder"; container: KnownContainer; needed: string[] };

const STUCK_STATES = new Set(["stopping", "removing"]);

export function needsOf(state: Pick<ExpectedState, "containers">): Needs {
  const ports = new Set<number>();
  const addresses = new Set<string>();
  for (const c of state.containers) {
    for (const p of c.ports) if (p.hostPort !== undefined) ports.add(p.hostPort);
    if (c.ipAddress) addresses.add(c.ipAddress);
  }
  return { ports: [...ports].sort((a, b) => a - b), addresses: [...addresses].sort() };
}

/** What a conmon holds, in words: `TCP port 8088`, `address 10.200.1.14`. */
function holdings(conmon: ConmonProcess): string[] {
  const ports = [...new Set(conmon.ports.map((p) => `${p.protocol.toUpperCase()} port ${p.port}`))];
  return [...ports, ...conmon.addresses.map((a) => `address ${a}`)];
}

function neededHoldings(conmon: ConmonProcess | undefined, reservation: CniReservation | undefined, needs: Needs): string[] {
  const out = new Set<string>();
  for (const p of conmon?.ports ?? []) if (p.protocol === "tcp" && needs.ports.includes(p.port)) out.add(`TCP port ${p.port}`);
  for (const a of [...(conmon?.addresses ?? []), ...(reservation ? [reservation.address] : [])]) if (needs.addresses.includes(a)) out.add(`address ${a}`);
  return [...out];
}

export function findLeftovers(snapshot: LeftoverSnapshot, needs: Needs): Leftover[] {
  const known = new Map(snapshot.containers.map((c) => [c.id, c]));
  const out: Leftover[] = [];
  for (const conmon of snapshot.conmons) {
    if (known.has(conmon.containerId)) continue;
    out.push({ kind: "stray-conmon", conmon, holds: holdings(conmon), needed: neededHoldings(conmon, undefined, needs) });
  }
  for (const container of snapshot.containers) {
    if (container.managed && STUCK_STATES.has(container.state)) out.push({ kind: "stuck-container", container });
  }
  for (const reservation of snapshot.reservations) {
    if (!known.has(reservation.containerId)) out.push({ kind: "stale-reservation", reservation });
  }
  for (const container of snapshot.containers) {
    if (container.managed) continue;
    const conmon = snapshot.conmons.find((c) => c.containerId === container.id);
    const reservation = snapshot.reservations.find((r) => r.containerId === container.id);
    const needed = neededHoldings(conmon, reservation, needs);
    if (needed.length > 0) out.push({ kind: "foreign-holder", container, needed });
  }
  return out;
}

/**
 * What the agent repairs by itself: a stray conmon only when it holds what the expected state
 * needs (nothing says it was the agent's), stuck managed containers and stale reservations on the
 * agent's network always; a foreign holder never.
 */
export function healsByItself(leftover: Leftover): boolean {
  if (leftover.kind === "stray-conmon") return leftover.needed.length > 0;
  return leftover.kind !== "foreign-holder";
}

/** One line for a person: what was found. */
export function describeLeftover(leftover: Leftover): string {
  switch (leftover.kind) {
    case "stray-conmon": {
      const { conmon } = leftover;
      const what = conmon.name ? `${conmon.name} (${conmon.containerId.slice(0, 12)})` : conmon.containerId.slice(0, 12);
      const holds = leftover.holds.length > 0 ? `, holding ${leftover.holds.join(", ")}` : "";
      return `conmon pid ${conmon.pid} of container ${what}, which Podman no longer knows, still runs${holds}`;
    }
    case "stuck-container":
      return `container ${leftover.container.name} (${leftover.container.id.slice(0, 12)}) is stuck in "${leftover.container.state}" (an operation on it was cut short)`;
    case "stale-reservation":
      return `address ${leftover.reservation.address} is reserved (${leftover.reservation.file}) for container ${leftover.reservation.containerId.slice(0, 12)}, which Podman no longer knows`;
    case "foreign-holder":
      return `container ${leftover.container.name} (${leftover.container.id.slice(0, 12)}), which the agent does not manage, holds ${leftover.needed.join(", ")} that the expected state needs`;
  }
}

/** What to do about it, for a person (doctor) or for the log line of what the agent did. */
export function remedyOf(leftover: Leftover): string {
  switch (leftover.kind) {
    case "stray-conmon":
      return `stop conmon pid ${leftover.conmon.pid} and its container process`;
    case "stuck-container":
      return leftover.container.state === "removing" ? `finish removing ${leftover.container.name}` : `finish stopping ${leftover.container.name}`;
    case "stale-reservation":
      return `release the reservation of ${leftover.reservation.address}`;
    case "foreign-holder":
      return `stop or move that container (podman stop ${leftover.container.name}), or give the deployment another port or address`;
  }
}
