import { closeSync, existsSync, fstatSync, openSync, readSync } from "node:fs";
import { errorMessage } from "../errors.ts";
import { run } from "../exec.ts";

/** The systemd unit the installer writes (install/install.sh). */
export const AGENT_UNIT = "techulus-agent.service";

export type AgentLog =
  | { kind: "ok"; source: string; lines: string[]; errors: number; warnings: number }
  | { kind: "unavailable"; reason: string };

export interface AgentLogOptions {
  /** `--agent-log FILE`: where the agent's output goes when systemd does not run it (a cron redirect, say). */
  file?: string;
  /** Present when systemd is PID 1 (`/run/systemd/system`). */
  systemdRunDir: string;
  which: (program: string) => Promise<string | undefined>;
  maxLines: number;
}

const TAIL_BYTES = 512 * 1024;

/** The agent's own recent log lines: from --agent-log FILE, else from the journal of its unit. */
export async function recentAgentLog(options: AgentLogOptions): Promise<AgentLog> {
  if (options.file) {
    try {
      return withCounts(`the file ${options.file}`, tailLines(options.file, options.maxLines));
    } catch (err) {
      return { kind: "unavailable", reason: `cannot read ${options.file}: ${errorMessage(err)}` };
    }
  }
  if (!existsSync(options.systemdRunDir)) return { kind: "unavailable", reason: "systemd does not run this machine; pass --agent-log FILE where the agent's output goes" };
  const journalctl = await options.which("journalctl");
  if (!journalctl) return { kind: "unavailable", reason: "journalctl is not installed" };
  try {
    const out = await run(journalctl, ["-u", AGENT_UNIT, "-n", String(options.maxLines), "--no-pager", "-o", "short-iso"], { timeoutMs: 15_000 });
    const lines = out.stdout.split("\n").filter((l) => l.length > 0 && !l.startsWith("-- "));
    return withCounts(`journalctl -u ${AGENT_UNIT}`, lines);
  } catch (err) {
    return { kind: "unavailable", reason: `journalctl failed: ${errorMessage(err)}` };
  }
}

function withCounts(source: string, lines: string[]): AgentLog {
  return { kind: "ok", source, lines, errors: lines.filter((l) => levelOf(l) === "error").length, warnings: lines.filter((l) => levelOf(l) === "warn").length };
}

/** The level of one agent log line, text (`[component] error: …`) or JSON (`"level":"error"`). */
export function levelOf(line: string): "error" | "warn" | undefined {
  if (/"level":"error"/.test(line) || /\] error: /.test(line)) return "error";
  if (/"level":"warn"/.test(line) || /\] warn: /.test(line)) return "warn";
  return undefined;
}

/** The last `count` lines of a file, reading at most its last 512 KiB. */
export function tailLines(file: string, count: number): string[] {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    const lines = buffer.toString("utf8").split("\n");
    if (length < size) lines.shift();
    return lines.filter((l) => l.length > 0).slice(-count);
  } finally {
    closeSync(fd);
  }
}
