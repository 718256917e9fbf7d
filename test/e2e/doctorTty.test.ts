/**
 * The compiled binary draws the doctor screen on a real terminal: tmux gives it a terminal of an
 * exact size, the test types keys into it and reads back what the terminal shows (capture-pane),
 * frame by frame. This is what proves that `bun build --compile` shipped a working ink (its
 * optional react-devtools-core import is stubbed out at build time, install/build.ts).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { loadOrCreateKeys } from "../../lib/datadir/keys.ts";
import { agentBinary, cleanEnv, runAgentCli, tempDir } from "../support/agentBinary.ts";

const dirs: Array<{ path: string; cleanup: () => void }> = [];
/** A tmux server of this test file alone, so its sessions never meet anyone else's. */
const TMUX_SOCKET = `doctor-tty-${process.pid}`;
afterAll(() => {
  Bun.spawnSync(["tmux", "-L", TMUX_SOCKET, "kill-server"], { stdout: "ignore", stderr: "ignore" });
  rmSync(join(process.env.TMUX_TMPDIR ?? "/tmp", `tmux-${process.getuid?.() ?? 0}`, TMUX_SOCKET), { force: true });
  dirs.forEach((d) => d.cleanup());
});

function scratch(): string {
  const d = tempDir("doctor-tty-");
  dirs.push(d);
  return d.path;
}

/** An unregistered data dir whose WireGuard key is readable by everyone (one automatic fix). */
function looseDataDir(): DataDir {
  const dataDir = new DataDir(join(scratch(), "data"));
  loadOrCreateKeys(dataDir);
  chmodSync(dataDir.wireguardKeyFile, 0o644);
  return dataDir;
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

function tmux(...args: string[]): string {
  const res = Bun.spawnSync(["tmux", "-L", TMUX_SOCKET, ...args], { env: cleanEnv({ CI: undefined }), stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error(`tmux ${args.join(" ")}: ${res.stderr.toString()}`);
  return res.stdout.toString();
}

interface Terminal {
  /** What the terminal shows now, as text (trailing blanks trimmed). */
  frame(): string;
  /** The same with its colors and styles as SGR escape sequences (capture-pane -e). */
  styledFrame(): string;
  /** The screen's lines with lines the terminal wrapped joined again: any line longer than the width shows here. */
  joinedLines(): string[];
  /** Keys by tmux name (Up, Down, Enter, Space) or literal text. */
  press(...keys: string[]): void;
  type(text: string): void;
  waitFor(predicate: (frame: string) => boolean, what: string, timeoutMs?: number): Promise<string>;
  /** The exit code once the program has ended. */
  exitCode(timeoutMs?: number): Promise<number>;
  kill(): void;
}

let sessions = 0;

function runInTmux(args: string[], options: { columns: number; rows: number; env?: Record<string, string> }): Terminal {
  const name = `doctor${++sessions}`;
  const exitFile = join(scratch(), "exit-code");
  // CI=… would make ink think it is not interactive; the program's exit code lands in a file, and the pane stays to be read.
  const env = Object.entries({ TERM: "xterm-256color", ...options.env }).map(([k, v]) => `${k}=${shellQuote(v)}`);
  const command = `env -u CI ${env.join(" ")} ${[agentBinary(), ...args].map(shellQuote).join(" ")}; echo $? > ${shellQuote(exitFile)}; sleep 600`;
  tmux("new-session", "-d", "-s", name, "-x", String(options.columns), "-y", String(options.rows), command);
  const frame = () => tmux("capture-pane", "-p", "-t", name).replace(/[ \t]+$/gm, "").replace(/\n+$/, "");
  return {
    frame,
    styledFrame: () => tmux("capture-pane", "-p", "-e", "-t", name),
    joinedLines: () =>
      tmux("capture-pane", "-p", "-J", "-t", name)
        .split("\n")
        .map((l) => l.replace(/\s+$/, "")),
    press: (...keys) => void tmux("send-keys", "-t", name, ...keys),
    type: (text) => void tmux("send-keys", "-t", name, "-l", text),
    async waitFor(predicate, what, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const now = frame();
        if (predicate(now)) return now;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the terminal shows:\n${now}`);
        if (existsSync(exitFile)) throw new Error(`agent doctor exited (${readFileSync(exitFile, "utf8").trim()}) before ${what}; the terminal shows:\n${now}`);
        await Bun.sleep(100);
      }
    },
    async exitCode(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!existsSync(exitFile) || readFileSync(exitFile, "utf8").trim() === "") {
        if (Date.now() > deadline) throw new Error(`agent doctor did not exit; the terminal shows:\n${frame()}`);
        await Bun.sleep(50);
      }
      return Number(readFileSync(exitFile, "utf8").trim());
    },
    kill: () => {
      try {
        tmux("kill-session", "-t", name);
      } catch {
        // already gone
      }
    },
  };
}

const SPINNER = /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/;
/** The screen is done checking when its key help offers a re-run. */
const ready = (f: string) => f.includes("r re-run");

let current: Terminal | undefined;
afterEach(() => {
  current?.kill();
  current = undefined;
});

describe("agent doctor on a terminal (compiled binary)", () => {
  test("40 columns: marks, the cursor shows another check's details, l the agent log, r runs again, q quits with the exit code; no line wider than 40", async () => {
    const dataDir = looseDataDir();
    const logFile = join(scratch(), "agent.log");
    writeFileSync(logFile, "[agent] info: started\n[reconcile] warn: slow pass\n[reconcile] error: podman said no\n");
    const term = (current = runInTmux(["doctor", "--data-dir", dataDir.root, "--dns-port", "0", "--agent-log", logFile], { columns: 40, rows: 50 }));
    const first = await term.waitFor(ready, "the checks done");
    const narrow = () => {
      for (const line of term.joinedLines()) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(40);
    };
    narrow();
    expect(first).toStartWith("agent doctor /");
    // The cursor starts on the first failure; its details and fix are shown below the list.
    expect(first).toMatch(/^› ✗ \[ \] secret files are private/m);
    expect(first).toMatch(/^ {2}✓ data dir exists with mode 0700$/m);
    expect(first).toMatch(/^ {2}! identity \(config\.json\) readable and…$/m);
    expect(first).toMatch(/^ {2}- control plane reachable$/m);
    expect(first).toMatch(/^\d+ ok, \d+ warnings?, \d+ failed, \d+ skipped$/m);
    expect(first).toContain("  failed · datadir.modes\n  readable by other users: wireguard.key\n  is 0644, must be 0600\n  fix: chmod 600 wireguard.key");
    // Details of ok checks only show under the cursor.
    expect(first).not.toContain("ok · datadir.dir");
    expect(term.styledFrame()).toMatch(/\u001B\[[0-9;]*3[1-3]m/);

    term.press("k");
    const moved = await term.waitFor((f) => f.includes("› ✓ data dir exists with mode 0700"), "the cursor one up");
    expect(moved).toContain("✓ data dir exists with mode 0700\n  ok · datadir.dir");
    expect(moved).not.toContain("failed · datadir.modes");
    term.press("Down");
    await term.waitFor((f) => f.includes("failed · datadir.modes"), "the cursor back on the failure");

    term.type("l");
    const log = await term.waitFor((f) => f.includes("[reconcile] error: podman said no"), "the agent log");
    // The heading wraps at the width, at spaces.
    expect(log.replace(/\n/g, " ")).toContain(`agent log: the file ${logFile} (3 lines, 1 error, 1 warning)`);
    expect(log).toContain("  [agent] info: started\n  [reconcile] warn: slow pass\n  [reconcile] error: podman said no");
    expect(log).not.toContain("failed · datadir.modes");
    narrow();
    term.type("l");
    await term.waitFor((f) => f.includes("failed · datadir.modes") && !f.includes("agent log:"), "the details again");

    term.type("r");
    const again = await term.waitFor((f) => f.includes("checking:"), "the checks running again");
    expect(again).not.toContain("r re-run");
    expect(again).toMatch(new RegExp(`^. (${SPINNER.source}|·) `, "m"));
    const second = await term.waitFor(ready, "the second round done");
    expect(second).toMatch(/^. ✗ \[ \] secret files are private/m);
    narrow();

    term.type("q");
    expect(await term.exitCode()).toBe(1);
    expect(statSync(dataDir.wireguardKeyFile).mode & 0o777).toBe(0o644);
  }, 180_000);

  test("space, enter and y apply the fix under the cursor; the check turns ✓ and the exit code follows", async () => {
    const dataDir = looseDataDir();
    const term = (current = runInTmux(["doctor", "--data-dir", dataDir.root, "--dns-port", "0"], { columns: 120, rows: 60 }));
    await term.waitFor(ready, "the checks done");
    term.press("Space");
    await term.waitFor((f) => f.includes("› ✗ [x] secret files are private"), "the fix picked");
    term.press("Enter");
    await term.waitFor((f) => f.includes("Apply 1 fix? (y/n)"), "the confirmation");
    term.type("y");
    const fixed = await term.waitFor((f) => f.includes("1 fix applied"), "the fix applied");
    expect(fixed).toContain("› ✓ secret files are private (0600, folders 0700) (fix applied)");
    expect(fixed).toContain("fix applied; checked again");
    expect(statSync(dataDir.wireguardKeyFile).mode & 0o777).toBe(0o600);
    term.type("q");
    expect(await term.exitCode()).toBe(0);
  }, 180_000);

  test("NO_COLOR=1: no color escape codes at all, the marks still say what happened; Esc quits", async () => {
    const dataDir = looseDataDir();
    const term = (current = runInTmux(["doctor", "--data-dir", dataDir.root, "--dns-port", "0"], { columns: 40, rows: 50, env: { NO_COLOR: "1" } }));
    const frame = await term.waitFor(ready, "the checks done");
    expect(frame).toMatch(/^› ✗ \[ \] secret files are private/m);
    expect(frame).toMatch(/^ {2}✓ data dir exists with mode 0700$/m);
    const styled = term.styledFrame();
    const sgr = [...styled.matchAll(/\u001B\[([0-9;]*)m/g)].map((m) => m[1]);
    expect(sgr.filter((params) => params !== "" && params !== "0")).toEqual([]);
    term.press("Escape");
    expect(await term.exitCode()).toBe(1);
  }, 180_000);

  test("without a terminal: plain lines in check order, no escape codes; --fix applies and prints the re-check", async () => {
    const dataDir = looseDataDir();
    const plain = await runAgentCli(["doctor", "--data-dir", dataDir.root, "--dns-port", "0"]);
    expect(plain.exitCode).toBe(1);
    expect(plain.stdout).not.toContain("\u001B[");
    const lines = plain.stdout.split("\n");
    expect(lines).toContain("✗ secret files are private (0600, folders 0700) — readable by other users: wireguard.key is 0644, must be 0600");
    expect(lines).toContain("    fix: chmod 600 wireguard.key");
    expect(lines).toContain("1 fix can be applied: agent doctor --fix (or run it on a terminal to choose)");
    expect(lines.find((l) => l.startsWith("- control plane reachable"))).toBe("- control plane reachable — not registered");
    // The checks run several at once, yet print in the order they are listed.
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    const order = [at("✓ running as root"), at("✓ data dir exists"), at("✗ secret files are private"), at("- control plane reachable"), at("- server matches the expected state")];
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);

    const fixed = await runAgentCli(["doctor", "--data-dir", dataDir.root, "--dns-port", "0", "--fix"]);
    expect(fixed.stdout).toContain("fixed: chmod 600 wireguard.key\n✓ secret files are private (0600, folders 0700) — keys 0700");
    expect(fixed.stdout).toMatch(/\d+ ok, \d+ warnings?, 0 failed, \d+ skipped\n$/);
    expect(fixed.exitCode).toBe(0);
    expect(statSync(dataDir.wireguardKeyFile).mode & 0o777).toBe(0o600);
  }, 120_000);
});
