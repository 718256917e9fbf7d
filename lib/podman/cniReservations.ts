/**
 * Address reservations of CNI's host-local IPAM (Podman's CNI network backend): one file per
 * address in `/var/lib/cni/networks/<network>/`, named after the address, holding the id of the
 * container it was given to. A reservation outlives a container whose clean-up was cut short, and
 * then keeps its address from everyone. (netavark keeps its allocations in a database instead and
 * is not read here.)
 */
import { readdirSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { FileLock } from "../fs/fileLock.ts";
import { cidrCoveredBy } from "../wireguard/wgConfig.ts";

export const CNI_NETWORKS_DIR = "/var/lib/cni/networks";

export interface CniReservation {
  address: string;
  containerId: string;
  file: string;
}

/** The container id a reservation file holds (first line; newer plugins add the interface on a second). */
export function parseReservation(text: string): string | undefined {
  const id = text.split(/\r?\n/)[0]?.trim();
  return id && /^[0-9a-f]{12,64}$/.test(id) ? id : undefined;
}

/** Reservations of `network` inside `subnet` (other podman worlds may use a network of the same name). */
export function readReservations(network: string, subnet: string, root = CNI_NETWORKS_DIR): CniReservation[] {
  const dir = join(root, network);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: CniReservation[] = [];
  for (const address of names) {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(address) || !cidrCoveredBy(`${address}/32`, subnet)) continue;
    const file = join(dir, address);
    let containerId: string | undefined;
    try {
      containerId = parseReservation(readFileSync(file, "utf8"));
    } catch {
      continue;
    }
    if (containerId) out.push({ address, containerId, file });
  }
  return out.sort((a, b) => ipv4Number(a.address) - ipv4Number(b.address));
}

/** A dotted IPv4 address as one number (address order without a collator, which costs milliseconds to set up). */
function ipv4Number(address: string): number {
  return address.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

/**
 * Deletes a reservation under host-local's own lock (the `lock` file next to it), and only if it
 * still names the same container. Returns false when it changed or was gone meanwhile.
 */
export async function releaseReservation(reservation: CniReservation): Promise<boolean> {
  const lockFile = join(reservation.file, "..", "lock");
  const lock = await FileLock.acquire(lockFile, { waitMs: 10_000, what: "CNI's address reservations", writePid: false });
  try {
    let current: string | undefined;
    try {
      current = parseReservation(readFileSync(reservation.file, "utf8"));
    } catch {
      return false;
    }
    if (current !== reservation.containerId) return false;
    unlinkSync(reservation.file);
    return true;
  } finally {
    lock.release();
  }
}
