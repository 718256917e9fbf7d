import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const REPO_ROOT = resolve(import.meta.dir, "../..");
export const AGENT_BINARY = join(REPO_ROOT, "dist/agent");

/** The compiled binary; built once when a test runs without test/run having built it. */
export function agentBinary(): string {
  if (!existsSync(AGENT_BINARY)) {
    const res = Bun.spawnSync([process.execPath, "install/build.ts"], { cwd: REPO_ROOT, stderr: "pipe" });
    if (res.exitCode !== 0) throw new Error(`building dist/agent failed: ${res.stderr.toString()}`);
  }
  return AGENT_BINARY;
}

export interface AgentResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

let baseAgentEnv: Record<string, string> = {};

/**
 * Environment every agent started by this test file gets (e.g. CONTAINER_HOST of an isolated
 * podman, AGENT_DNS_PORT=0); reset it in afterAll.
 */
export function setBaseAgentEnv(env: Record<string, string>): void {
  baseAgentEnv = { ...env };
}

/** Environment without any AGENT_* variable of the developer's shell, plus the file's base env. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("AGENT_") && v !== undefined) env[k] = v;
  Object.assign(env, baseAgentEnv);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/**
 * Runs the compiled agent to completion. `wrapper`: a command that runs it, the agent's argv
 * appended (`setpriv --reuid=65534`, a mount namespace of its own).
 */
export async function runAgentCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; timeoutMs?: number; stdin?: string; wrapper?: string[] } = {},
): Promise<AgentResult> {
  const proc = Bun.spawn([...(options.wrapper ?? []), agentBinary(), ...args], {
    env: cleanEnv(options.env),
    stdout: "pipe",
    stderr: "pipe",
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

/** Runs the compiled agent with `--json` and parses stdout (undefined when it printed no JSON). */
export async function runAgentJson(args: string[], options: Parameters<typeof runAgentCli>[1] = {}): Promise<AgentResult & { json: any }> {
  const res = await runAgentCli(args, options);
  let json: any;
  try {
    json = JSON.parse(res.stdout);
  } catch {
    json = undefined;
  }
  return { ...res, json };
}

/**
 * Starts the compiled agent in the background; the caller stops it. `processGroup`: in a process
 * group of its own (through setsid), so `signalGroup` reaches the agent and every child it did not
 * detach, as cron's `timeout` or a terminal's Ctrl-C do.
 */
export function startAgentCli(args: string[], options: { env?: Record<string, string | undefined>; processGroup?: boolean } = {}) {
  const argv = options.processGroup ? ["setsid", agentBinary(), ...args] : [agentBinary(), ...args];
  const proc = Bun.spawn(argv, { env: cleanEnv(options.env), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  let stderr = "";
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr as unknown as AsyncIterable<Uint8Array>) stderr += decoder.decode(chunk);
  })();
  return {
    proc,
    stderr: () => stderr,
    async waitForLog(pattern: RegExp, timeoutMs = 20_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stderr)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; stderr so far:\n${stderr}`);
        if (proc.exitCode !== null) throw new Error(`agent exited with ${proc.exitCode} before ${pattern}; stderr:\n${stderr}`);
        await Bun.sleep(50);
      }
    },
    /** Sends `signal` to the agent's whole process group (needs `processGroup`). */
    signalGroup(signal: NodeJS.Signals): void {
      if (!options.processGroup) throw new Error("signalGroup needs startAgentCli(..., { processGroup: true })");
      process.kill(-proc.pid, signal);
    },
    /** Waits for the agent to exit by itself (after a signal already sent) and returns its exit code. */
    async exited(): Promise<number> {
      const code = await proc.exited;
      await reader;
      return code;
    },
    async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
      if (proc.exitCode === null) proc.kill(signal);
      const code = await proc.exited;
      await reader;
      return code;
    },
  };
}

export function tempDir(prefix = "agent-test-"): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
