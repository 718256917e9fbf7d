import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { relative, isAbsolute, resolve } from "node:path";

export interface ProcStat {
  pid: number;
  ppid: number;
  session: number;
  /** The command name (`comm`, at most 15 characters). */
  comm: string;
}

/** `/proc/<pid>/stat` fields after the command name, which may itself contain spaces and parentheses. */
function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  // fields: state ppid pgrp session ...
  if (fields[0] === "Z") return undefined;
  return { pid, ppid: Number(fields[1]), session: Number(fields[3]), comm: text.slice(text.indexOf("(") + 1, close) };
}

/** Every live (not zombie) process of the machine. */
export function allProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) out.push(stat);
  }
  return out;
}

/** Every live descendant of `root` (children, grandchildren, …), found through parent ids in /proc. */
export function descendants(root: number): ProcStat[] {
  const byParent = new Map<number, ProcStat[]>();
  for (const p of allProcesses()) {
    const list = byParent.get(p.ppid) ?? [];
    list.push(p);
    byParent.set(p.ppid, list);
  }
  const out: ProcStat[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

function alive(pid: number): boolean {
  return readStat(pid) !== undefined;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function waitGone(pids: readonly number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!pids.some(alive)) return true;
    await Bun.sleep(50);
  }
  return !pids.some(alive);
}

/**
 * Stops a process and everything it started.
 *
 * 1. Descendants in another session are workloads a container runtime started (runc puts each
 *    RUN step in its own session and PID namespace, where it ignores SIGTERM as PID 1). They get
 *    SIGKILL first, so a `podman build` sees its step fail and removes its working containers
 *    itself, as on any failed step, instead of being killed half-way and leaking them.
 * 2. The root then has `graceMs` to exit on its own.
 * 3. Whatever is left of the tree (including processes re-parented after their parent exited)
 *    gets SIGTERM, and SIGKILL after another `graceMs`.
 */
export async function killProcessTree(root: number, options: { graceMs?: number } = {}): Promise<void> {
  const graceMs = options.graceMs ?? 5000;
  const rootStat = readStat(root);
  const tree = descendants(root);
  const known = new Set<number>([root, ...tree.map((p) => p.pid)]);
  if (rootStat) {
    const workloads = tree.filter((p) => p.session !== rootStat.session);
    for (const p of workloads) {
      for (const d of descendants(p.pid)) signal(d.pid, "SIGKILL");
      signal(p.pid, "SIGKILL");
    }
    if (workloads.length > 0 && (await waitGone([root], graceMs))) {
      await waitGone([...known], 1000);
      for (const pid of known) if (alive(pid)) signal(pid, "SIGKILL");
      return;
    }
  }
  for (const p of descendants(root)) known.add(p.pid);
  for (const pid of known) signal(pid, "SIGTERM");
  if (await waitGone([...known], graceMs)) return;
  for (const pid of known) for (const d of descendants(pid)) known.add(d.pid);
  for (const pid of known) if (alive(pid)) signal(pid, "SIGKILL");
  await waitGone([...known], 2000);
}

/**
 * Stops every process working in `dir` or below it, with its children (killProcessTree): what a
 * step left behind that is no longer in the tree of the process it was started from (git's
 * remote helpers survive the SIGINT that stops git itself, re-parented to init).
 */
export async function killProcessesWorkingIn(dir: string, options: { graceMs?: number } = {}): Promise<void> {
  const root = resolve(dir);
  if (root === "/") throw new Error("refusing to stop every process working under /");
  const inside = allProcesses().filter((p) => {
    if (p.pid === process.pid) return false;
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${p.pid}/cwd`);
    } catch {
      return false;
    }
    const rel = relative(root, cwd);
    return !rel.startsWith("..") && !isAbsolute(rel);
  });
  const pids = new Set(inside.map((p) => p.pid));
  await Promise.all(inside.filter((p) => !pids.has(p.ppid)).map((p) => killProcessTree(p.pid, options)));
}
