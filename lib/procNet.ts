/**
 * What a process holds on the network, read from /proc: the TCP/UDP ports its open sockets listen
 * on, and the local addresses of its network namespace. The parsers are pure; the readers only
 * read /proc and return empty lists for a process that is gone or unreadable.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface ListeningSocket {
  protocol: "tcp" | "udp";
  port: number;
  inode: number;
}

const TCP_LISTEN = "0A";
const UDP_UNCONNECTED = "07";

/** Rows of /proc/<pid>/net/{tcp,tcp6,udp,udp6} that listen (TCP) or are bound and unconnected (UDP). */
export function parseSocketTable(text: string, protocol: "tcp" | "udp"): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    const [, local, , state] = fields;
    if (state !== (protocol === "tcp" ? TCP_LISTEN : UDP_UNCONNECTED)) continue;
    const portHex = local?.split(":")[1];
    const inode = Number(fields[9]);
    if (!portHex || !Number.isInteger(inode) || inode === 0) continue;
    out.push({ protocol, port: parseInt(portHex, 16), inode });
  }
  return out;
}

/** IPv4 addresses marked `/32 host LOCAL` in a /proc/<pid>/net/fib_trie, loopback left out, sorted. */
export function parseLocalAddresses(fibTrie: string): string[] {
  const found = new Set<string>();
  let last: string | undefined;
  for (const line of fibTrie.split("\n")) {
    const leaf = line.match(/\|--\s+(\d+\.\d+\.\d+\.\d+)\s*$/);
    if (leaf) {
      last = leaf[1];
      continue;
    }
    if (last && /\/32 host LOCAL/.test(line) && !last.startsWith("127.")) found.add(last);
  }
  return [...found].sort();
}

/** Ports the sockets open in `pid` listen on (sockets it holds, not the whole namespace's). */
export function readListeningPorts(pid: number, procRoot = "/proc"): ListeningSocket[] {
  const inodes = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync(`${procRoot}/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = readlinkSync(`${procRoot}/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  if (inodes.size === 0) return [];
  const out: ListeningSocket[] = [];
  for (const [file, protocol] of [["tcp", "tcp"], ["tcp6", "tcp"], ["udp", "udp"], ["udp6", "udp"]] as const) {
    let text: string;
    try {
      text = readFileSync(`${procRoot}/${pid}/net/${file}`, "utf8");
    } catch {
      continue;
    }
    for (const socket of parseSocketTable(text, protocol)) if (inodes.has(socket.inode)) out.push(socket);
  }
  return out;
}

/** Local IPv4 addresses (not loopback) of the network namespace `pid` lives in. */
export function readLocalAddresses(pid: number, procRoot = "/proc"): string[] {
  try {
    return parseLocalAddresses(readFileSync(`${procRoot}/${pid}/net/fib_trie`, "utf8"));
  } catch {
    return [];
  }
}
