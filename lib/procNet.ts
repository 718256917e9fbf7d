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

/**
 * Listening sockets by inode, per network namespace: the socket tables are read once for all the
 * processes of one namespace (every conmon lives in the host's), not once per process.
 */
export class SocketTables {
  private readonly byNamespace = new Map<string, Map<number, ListeningSocket>>();

  constructor(private readonly procRoot = "/proc") {}

  /** Ports the sockets open in `pid` listen on (sockets it holds, not the whole namespace's). */
  listeningPorts(pid: number): ListeningSocket[] {
    const inodes = socketInodes(pid, this.procRoot);
    if (inodes.length === 0) return [];
    const table = this.tableOf(pid);
    return inodes.map((inode) => table.get(inode)).filter((s): s is ListeningSocket => s !== undefined);
  }

  private tableOf(pid: number): Map<number, ListeningSocket> {
    let namespace: string;
    try {
      namespace = readlinkSync(`${this.procRoot}/${pid}/ns/net`);
    } catch {
      namespace = `pid:${pid}`;
    }
    let table = this.byNamespace.get(namespace);
    if (!table) {
      table = new Map();
      for (const [file, protocol] of [["tcp", "tcp"], ["tcp6", "tcp"], ["udp", "udp"], ["udp6", "udp"]] as const) {
        let text: string;
        try {
          text = readFileSync(`${this.procRoot}/${pid}/net/${file}`, "utf8");
        } catch {
          continue;
        }
        for (const socket of parseSocketTable(text, protocol)) table.set(socket.inode, socket);
      }
      this.byNamespace.set(namespace, table);
    }
    return table;
  }
}

function socketInodes(pid: number, procRoot: string): number[] {
  let fds: string[];
  try {
    fds = readdirSync(`${procRoot}/${pid}/fd`);
  } catch {
    return [];
  }
  const inodes: number[] = [];
  for (const fd of fds) {
    try {
      const m = readlinkSync(`${procRoot}/${pid}/fd/${fd}`).match(/^socket:\[(\d+)\]$/);
      if (m) inodes.push(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** Local IPv4 addresses (not loopback) of the network namespace `pid` lives in. */
export function readLocalAddresses(pid: number, procRoot = "/proc"): string[] {
  try {
    return parseLocalAddresses(readFileSync(`${procRoot}/${pid}/net/fib_trie`, "utf8"));
  } catch {
    return [];
  }
}
