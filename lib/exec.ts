import { spawn as spawnChild } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { execa, type ResultPromise } from "execa";
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

/** Runs one program with an argv array (never a shell string). */
export async function run(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const child = spawn(file, args, options);
  try {
    const result = await child;
    return { exitCode: result.exitCode ?? 0, stdout: String(result.stdout ?? ""), stderr: String(result.stderr ?? "") };
  } catch (err) {
    const e = err as { exitCode?: number; stderr?: unknown; timedOut?: boolean; isCanceled?: boolean; code?: string; message?: string };
    const stderr = String(e.stderr ?? "");
    if (e.code === "ENOENT") throw new ExecError(file, undefined, "", "not found on PATH");
    if (e.timedOut) throw new ExecError(file, e.exitCode, stderr, `timed out after ${options.timeoutMs} ms`);
    if (e.isCanceled) throw new ExecError(file, e.exitCode, stderr, "was cancelled");
    if (options.allowFailure && typeof e.exitCode === "number") {
      return { exitCode: e.exitCode, stdout: String((err as { stdout?: unknown }).stdout ?? ""), stderr };
    }
    throw new ExecError(file, e.exitCode, stderr, `exited with code ${e.exitCode ?? "unknown"}`);
  }
}

/** Starts a process and returns the live handle; used where the caller must kill it or stream it. */
export function spawn(file: string, args: readonly string[], options: ExecOptions = {}): ResultPromise {
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
    forceKillAfterDelay: 5000,
    detached: options.ownProcessGroup === true,
    stdin: options.input === undefined ? "ignore" : "pipe",
  });
  if (options.onLine) attachLineReaders(child, options.onLine);
  if (options.ownProcessGroup && child.pid !== undefined) {
    const group = child.pid;
    const off = beforeImmediateExit(() => {
      try {
        process.kill(-group, "SIGTERM");
      } catch {
        // already gone
      }
    });
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
