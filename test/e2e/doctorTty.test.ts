/**
 * The compiled binary draws the doctor screen on a real terminal: util-linux `script` gives it a
 * pseudo-terminal, the test reads what it draws and types keys into it. This is what proves that
 * `bun build --compile` shipped a working ink (its optional react-devtools-core import is stubbed
 * out at build time, install/build.ts).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { chmodSync, statSync } from "node:fs";
import { join } from "node:path";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { loadOrCreateKeys } from "../../lib/datadir/keys.ts";
import { agentBinary, cleanEnv, runAgentCli, tempDir } from "../support/agentBinary.ts";

const dirs: Array<{ cleanup: () => void }> = [];
afterAll(() => dirs.forEach((d) => d.cleanup()));

/** An unregistered data dir whose WireGuard key is readable by everyone (one automatic fix). */
function looseDataDir(): DataDir {
  const d = tempDir("doctor-tty-");
  dirs.push(d);
  const dataDir = new DataDir(join(d.path, "data"));
  loadOrCreateKeys(dataDir);
  chmodSync(dataDir.wireguardKeyFile, 0o644);
  return dataDir;
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

const ANSI = /\u001B\[[0-9;?]*[ -/]*[@-~]|\u001B[()][0-9A-Za-z]|\u001B[=>]/g;

interface Terminal {
  /** Everything drawn so far, escape sequences removed. */
  screen(): string;
  type(keys: string): void;
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  exited: Promise<number>;
  kill(): void;
}

function runInTerminal(args: string[]): Terminal {
  const command = [agentBinary(), ...args].map(shellQuote).join(" ");
  // CI=… would make ink think it is not interactive; TERM gives it a terminal type to draw for.
  const env = cleanEnv({ CI: undefined, TERM: "xterm-256color", COLUMNS: "120", LINES: "60" });
  delete env.CI;
  const proc = Bun.spawn(["script", "-qfec", command, "/dev/null"], { env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  let raw = "";
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) raw += decoder.decode(chunk, { stream: true });
  })();
  const screen = () => raw.replace(ANSI, "").replace(/\r/g, "");
  return {
    screen,
    type(keys) {
      proc.stdin.write(keys);
      proc.stdin.flush();
    },
    async waitFor(text, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!screen().includes(text)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(text)}; screen so far:\n${screen()}`);
        if (proc.exitCode !== null) throw new Error(`agent doctor exited (${proc.exitCode}) before ${JSON.stringify(text)}; screen:\n${screen()}`);
        await Bun.sleep(50);
      }
    },
    exited: proc.exited,
    kill: () => proc.kill("SIGKILL"),
  };
}

let current: Terminal | undefined;
afterEach(() => {
  current?.kill();
  current = undefined;
});

describe("agent doctor on a terminal (compiled binary)", () => {
  test("draws each check with its mark, lists the fixes, and q quits with the exit code of the checks", async () => {
    const dataDir = looseDataDir();
    const term = (current = runInTerminal(["doctor", "--data-dir", dataDir.root, "--dns-port", "0"]));
    await term.waitFor("enter apply");
    const screen = term.screen();
    expect(screen).toContain("agent doctor");
    expect(screen).toMatch(/✓ running as root/);
    expect(screen).toMatch(/✓ podman installed/);
    expect(screen).toMatch(/✓ data dir exists with mode 0700/);
    expect(screen).toMatch(/✗ secret files are private \(0600, folders 0700\)/);
    expect(screen).toContain("wireguard.key is 0644, must be 0600");
    expect(screen).toMatch(/! identity \(config\.json\) readable and valid/);
    expect(screen).toMatch(/- control plane reachable/);
    expect(screen).toContain("› [ ] secret files are private (0600, folders 0700): chmod 600 wireguard.key");

    term.type("q");
    expect(await term.exited).toBe(1);
    expect(statSync(dataDir.wireguardKeyFile).mode & 0o777).toBe(0o644);
  }, 60_000);

  test("space, enter and y apply the chosen fix; the check turns green and the exit code follows", async () => {
    const dataDir = looseDataDir();
    const term = (current = runInTerminal(["doctor", "--data-dir", dataDir.root, "--dns-port", "0"]));
    await term.waitFor("enter apply");
    term.type(" ");
    await term.waitFor("› [x] secret files are private");
    term.type("\r");
    await term.waitFor("Apply 1 fix? (y/n)");
    term.type("y");
    await term.waitFor("1 fix applied");
    // The line may wrap at the terminal's width.
    expect(term.screen()).toMatch(/✓ secret files are private \(0600, folders 0700\)[^✗!·]*\(fix\s+applied\)/);
    expect(statSync(dataDir.wireguardKeyFile).mode & 0o777).toBe(0o600);
    term.type("q");
    expect(await term.exited).toBe(0);
  }, 60_000);

  test("without a terminal: plain lines, no escape codes; --fix applies and prints the re-check", async () => {
    const dataDir = looseDataDir();
    const plain = await runAgentCli(["doctor", "--data-dir", dataDir.root, "--dns-port", "0"]);
    expect(plain.exitCode).toBe(1);
    expect(plain.stdout).not.toContain("\u001B[");
    const lines = plain.stdout.split("\n");
    expect(lines).toContain("✗ secret files are private (0600, folders 0700) — readable by other users: wireguard.key is 0644, must be 0600");
    expect(lines).toContain("    fix: chmod 600 wireguard.key");
    expect(lines).toContain("1 fix can be applied: agent doctor --fix (or run it on a terminal to choose)");
    expect(lines.find((l) => l.startsWith("- control plane reachable"))).toBe("- control plane reachable — not registered");

    const fixed = await runAgentCli(["doctor", "--data-dir", dataDir.root, "--dns-port", "0", "--fix"]);
    expect(fixed.stdout).toContain("fixed: chmod 600 wireguard.key\n✓ secret files are private (0600, folders 0700) — keys 0700");
    expect(fixed.stdout).toMatch(/\d+ ok, \d+ warnings?, 0 failed, \d+ skipped\n$/);
    expect(fixed.exitCode).toBe(0);
    expect(statSync(dataDir.wireguardKeyFile).mode & 0o777).toBe(0o600);
  }, 60_000);
});
