import { spawn } from "../../lib/exec.ts";
import { killProcessTree } from "../../lib/processTree.ts";
import { redact } from "../../lib/redact.ts";
import { BuildCancelledError } from "../buildErrors.ts";

export interface ToolRun {
  cwd?: string;
  /** Added to the inherited environment; build secrets travel here, never in argv. */
  env?: Record<string, string>;
  onLine: (line: string) => void;
  signal: AbortSignal;
  timeoutMs: number;
}

export interface ToolResult {
  exitCode: number;
  /** The last lines of output, for error messages. */
  tail: string[];
}

const TAIL_LINES = 20;

/**
 * Runs one build tool to completion, streaming every output line. Cancellation and timeouts kill
 * the whole process tree (see killProcessTree), then throw; a non-zero exit is returned, not thrown.
 */
export async function runTool(file: string, args: readonly string[], options: ToolRun): Promise<ToolResult> {
  if (options.signal.aborted) throw new BuildCancelledError();
  const tail: string[] = [];
  const child = spawn(file, args, {
    cwd: options.cwd,
    env: options.env,
    // Only onLine reads the output; a build may print far more than fits a buffer.
    buffer: false,
    // A Ctrl-C or a CI runner's SIGTERM reaches the agent only; it cancels the tool cleanly below.
    ownProcessGroup: true,
    onLine: (raw) => {
      // Progress bars redraw with \r; each redraw is a line of its own.
      for (const part of raw.split("\r")) {
        const line = redact(part.trimEnd());
        if (!line) continue;
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        options.onLine(line);
      }
    },
  });
  let stopped: "cancelled" | "timeout" | undefined;
  let killing: Promise<void> | undefined;
  const stop = (why: "cancelled" | "timeout") => {
    if (stopped || child.pid === undefined) return;
    stopped = why;
    killing = killProcessTree(child.pid);
  };
  const onAbort = () => stop("cancelled");
  options.signal.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(() => stop("timeout"), options.timeoutMs);
  let exitCode: number;
  try {
    const result = await child;
    exitCode = result.exitCode ?? 0;
  } catch (err) {
    const e = err as { exitCode?: number; code?: string };
    if (e.code === "ENOENT") throw new Error(`${file} not found on PATH`);
    exitCode = typeof e.exitCode === "number" ? e.exitCode : -1;
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener("abort", onAbort);
  }
  await killing;
  if (stopped === "cancelled") throw new BuildCancelledError();
  if (stopped === "timeout") return { exitCode: exitCode === 0 ? -1 : exitCode, tail: [...tail, `${file} timed out after ${Math.round(options.timeoutMs / 1000)} s`] };
  return { exitCode, tail };
}

/** What explains a failure: the last line matching `errorLine`, else the last three lines. */
export function failureSummary(tail: readonly string[], errorLine: RegExp): string {
  return [...tail].reverse().find((l) => errorLine.test(l)) ?? tail.slice(-3).join(" | ");
}
