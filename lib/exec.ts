import { spawn as spawnChild } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import type { ResultPromise } from "execa";
import { beforeImmediateExit } from "./shutdownSignals.ts";
import { AgentError } from "./errors.ts";
import { redact } from "./redact.ts";

export interface ExecOptions {
  /** Milliseconds before the process (and its children) is killed. */
  timeoutMs?: number;
  cwd?: string;
  /** Extra environment; secrets go here, never in argv. */
  env?: Record<string, string | undefined>;
  /** Replace the inherited environment entirely instead of extending it. */
  replaceEnv?: boolean;
  input?: string;
  /** Called for every line of stdout and stderr as it arrives. */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  signal?: AbortSignal;
  /** Do not throw on a non-zero exit; the caller inspects exitCode. */
  allowFailure?: boolean;
  /**
   * Run it in a process group of its own: a signal sent to the agent's group (Ctrl-C, cron's
   * `timeout`) then reaches only the agent, which stops the program its own way. A second signal
   * still ends it with the agent (lib/shutdownSignals).
   */
  ownProcessGroup?: boolean;
  /**
   * Keep stdout/stderr in the result (default). `false` for long-running tools read through
   * `onLine` only: a buffered process is killed once its output passes 100 MB.
   */
  buffer?: boolean;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class ExecError extends AgentError {
  constructor(
    readonly command: string,
    /** The child process's exit code (exitCode is the agent's own, for the CLI). */
    readonly childExitCode: number | undefined,
    readonly stderr: string,
    reason: string,
  ) {
    super(redact(`${command} ${reason}${stderr.trim() ? `: ${lastLines(stderr.trim(), 5)}` : ""}`));
  }
}

function lastLines(text: string, count: number): string {
  return text.split("\n").slice(-count).join("\n");
}

/** How long a program gets between SIGTERM (timeout, cancel) and SIGKILL. */
const KILL_AFTER_MS = 5000;

/**
 * Runs one program with an argv array (never a shell string). On Bun's own spawn: execa costs
 * ~100 ms and ~15 MiB to load, which every short command (an idle `reconcile --once`) would pay.
 */
export async function run(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  let proc: ReturnType<typeof Bun.spawn<"ignore" | "pipe", "pipe", "pipe">>;
  try {
    proc = Bun.spawn([file, ...args], {
      cwd: options.cwd,
      env: childEnv(options),
      stdin: options.input === undefined ? "ignore" : "pipe",
      stdout: "pipe",
      stderr: "pipe",
      detached: options.ownProcessGroup === true,
    });
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") throw new ExecError(file, undefined, "", "not found on PATH");
    throw err;
  }
  if (options.input !== undefined && proc.stdin) {
    proc.stdin.write(options.input);
    void proc.stdin.end();
  }
  let stopped: "timeout" | "cancel" | undefined;
  let killer: ReturnType<typeof setTimeout> | undefined;
  const stop = (why: "timeout" | "cancel") => {
    if (stopped || proc.exitCode !== null || proc.signalCode !== null) return;
    stopped = why;
    proc.kill("SIGTERM");
    killer = setTimeout(() => proc.kill("SIGKILL"), KILL_AFTER_MS);
  };
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => stop("timeout"), options.timeoutMs);
  const onAbort = () => stop("cancel");
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const offExit = options.ownProcessGroup ? beforeImmediateExit(() => killGroup(proc.pid)) : undefined;
  try {
    const [stdout, stderr] = await Promise.all([
      collect(proc.stdout, "stdout", options),
      collect(proc.stderr, "stderr", options),
      proc.exited,
    ]);
    const exitCode = proc.exitCode;
    if (stopped === "timeout") throw new ExecError(file, exitCode ?? undefined, stderr, `timed out after ${options.timeoutMs} ms`);
    if (stopped === "cancel") throw new ExecError(file, exitCode ?? undefined, stderr, "was cancelled");
    if (exitCode === 0) return { exitCode, stdout, stderr };
    if (options.allowFailure && exitCode !== null) return { exitCode, stdout, stderr };
    throw new ExecError(file, exitCode ?? undefined, stderr, exitCode === null ? `was killed by ${proc.signalCode}` : `exited with code ${exitCode}`);
  } finally {
    clearTimeout(timer);
    clearTimeout(killer);
    options.signal?.removeEventListener("abort", onAbort);
    offExit?.();
  }
}

function childEnv(options: ExecOptions): Record<string, string> {
  const env: Record<string, string | undefined> = options.replaceEnv ? { ...options.env } : { ...process.env, ...options.env };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/** A stream's text without its final newline (kept unless buffer is false), each line to onLine as it arrives. */
async function collect(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr", options: ExecOptions): Promise<string> {
  const decoder = new TextDecoder();
  const keep = options.buffer !== false;
  let text = "";
  let pending = "";
  for await (const chunk of stream) {
    const piece = decoder.decode(chunk, { stream: true });
    if (keep) text += piece;
    if (!options.onLine) continue;
    pending += piece;
    let index: number;
    while ((index = pending.indexOf("\n")) >= 0) {
      options.onLine(pending.slice(0, index).replace(/\r$/, ""), name);
      pending = pending.slice(index + 1);
    }
  }
  const rest = decoder.decode();
  if (keep) text += rest;
  pending += rest;
  if (options.onLine && pending) options.onLine(pending, name);
  return text.replace(/\r?\n$/, "");
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    // already gone
  }
}

/** Starts a process and returns the live handle; used where the caller must kill it or stream it. */
export function spawn(file: string, args: readonly string[], options: ExecOptions = {}): ResultPromise {
  // Loaded on first use only (see run).
  const { execa } = require("execa") as typeof import("execa");
  const child = execa(file, args, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: !options.replaceEnv,
    input: options.input,
    timeout: options.timeoutMs,
    cancelSignal: options.signal,
    reject: true,
    buffer: options.buffer ?? true,
    stripFinalNewline: true,
    forceKillAfterDelay: KILL_AFTER_MS,
    detached: options.ownProcessGroup === true,
    stdin: options.input === undefined ? "ignore" : "pipe",
  });
  if (options.onLine) attachLineReaders(child, options.onLine);
  if (options.ownProcessGroup && child.pid !== undefined) {
    const group = child.pid;
    const off = beforeImmediateExit(() => killGroup(group));
    child.then(off, off);
  }
  return child;
}

function attachLineReaders(child: ResultPromise, onLine: (line: string, stream: "stdout" | "stderr") => void): void {
  for (const stream of ["stdout", "stderr"] as const) {
    const readable = child[stream];
    if (!readable) continue;
    let pending = "";
    readable.on("data", (chunk: Buffer | string) => {
      pending += chunk.toString();
      let index: number;
      while ((index = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, index).replace(/\r$/, ""), stream);
        pending = pending.slice(index + 1);
      }
    });
    readable.on("end", () => {
      if (pending) onLine(pending, stream);
      pending = "";
    });
  }
}

/**
 * Starts a daemon that must outlive the agent: in its own session (a signal to the agent's process
 * group never reaches it, and the agent's exit never kills it) with its output written to
 * `logFile` (a pipe to the agent would break when the agent exits, and a Go program writing to a
 * broken stderr dies of SIGPIPE). `onExit` is called if it ends while the agent still runs.
 */
export function startDetached(file: string, args: readonly string[], options: { logFile: string; onExit?: (description: string) => void }): number {
  const fd = openSync(options.logFile, "w", 0o600);
  try {
    const child = spawnChild(file, [...args], { detached: true, stdio: ["ignore", fd, fd] });
    if (child.pid === undefined) throw new ExecError(file, undefined, "", "could not be started (not found on PATH?)");
    child.on("error", (err) => options.onExit?.(`could not be started: ${err.message}`));
    child.on("exit", (code, signal) => options.onExit?.(signal ? `was killed by ${signal}` : `exited with code ${code}`));
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True when `file` can be found on PATH. */
export async function which(file: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!dir) continue;
    const candidate = `${dir}/${file}`;
    if (await Bun.file(candidate).exists()) return candidate;
  }
  return undefined;
}
