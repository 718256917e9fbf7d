/**
 * The `conmon` processes of this machine: one per running Podman container, outliving whichever
 * podman process started it, read from /proc. What one holds — the host ports its sockets listen
 * on (Podman hands a container's published ports to its conmon) and the addresses of its
 * container's network namespace — is read only for the conmons asked about (`withHoldings`).
 */
import { basename } from "node:path";
import { readFileSync } from "node:fs";
import { allProcesses } from "../processTree.ts";
import { readLocalAddresses, type ListeningSocket, type SocketTables } from "../procNet.ts";

export interface ConmonCommand {
  containerId: string;
  /** `-n`: the container's name when it was started. */
  name?: string;
  /** The storage root (`--root`) of the podman that started it, from its exit command. */
  storageRoot?: string;
}

export interface Conmon extends ConmonCommand {
  pid: number;
  /** The container's first process (conmon's child), when it still runs. */
  containerPid?: number;
}

export interface ConmonProcess extends Conmon {
  ports: ListeningSocket[];
  /** Local addresses of the container's network namespace (loopback left out). */
  addresses: string[];
}

/** The container a conmon command line is for; undefined for anything that is not conmon. */
export function parseConmonCommandLine(argv: readonly string[]): ConmonCommand | undefined {
  if (!argv[0] || basename(argv[0]) !== "conmon") return undefined;
  let containerId: string | undefined;
  let name: string | undefined;
  const exitCommand: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = argv[i + 1];
    if ((arg === "-c" || arg === "--cid") && value !== undefined) containerId = argv[++i];
    else if ((arg === "-n" || arg === "--name") && value !== undefined) name = argv[++i];
    else if (arg === "--exit-command-arg" && value !== undefined) exitCommand.push(argv[++i]!);
    else if (arg.startsWith("--cid=")) containerId = arg.slice("--cid=".length);
  }
  if (!containerId || !/^[0-9a-f]{12,64}$/.test(containerId)) return undefined;
  const rootAt = exitCommand.indexOf("--root");
  const storageRoot = rootAt >= 0 ? exitCommand[rootAt + 1] : undefined;
  return { containerId, ...(name ? { name } : {}), ...(storageRoot ? { storageRoot } : {}) };
}

/** Every live conmon on this machine. */
export function readConmonProcesses(): Conmon[] {
  const processes = allProcesses();
  const childOf = new Map<number, number>();
  for (const p of processes) if (!childOf.has(p.ppid)) childOf.set(p.ppid, p.pid);
  const out: Conmon[] = [];
  for (const { pid, comm } of processes) {
    if (comm !== "conmon") continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0$/, "").split("\0");
    } catch {
      continue;
    }
    const command = parseConmonCommandLine(argv);
    if (!command) continue;
    const containerPid = childOf.get(pid);
    out.push({ ...command, pid, ...(containerPid !== undefined ? { containerPid } : {}) });
  }
  return out;
}

/** The ports `conmon` holds and its container's addresses (`sockets` is shared by the conmons of one look). */
export function withHoldings(conmon: Conmon, sockets: SocketTables): ConmonProcess {
  return {
    ...conmon,
    ports: sockets.listeningPorts(conmon.pid),
    addresses: conmon.containerPid !== undefined ? readLocalAddresses(conmon.containerPid) : [],
  };
}
