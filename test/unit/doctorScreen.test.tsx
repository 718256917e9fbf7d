import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { EventEmitter } from "node:events";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import chalk from "chalk";
import { render as inkRender } from "ink";
import { useEffect } from "react";
import { cleanup, render } from "ink-testing-library";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import type { DataDir } from "../../lib/datadir/DataDir.ts";
import type { Check } from "../../lib/doctor/Check.ts";
import { dataDirChecks } from "../../lib/doctor/dataDirChecks.ts";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { DoctorSession } from "../../lib/doctor/DoctorSession.ts";
import { DoctorScreen, wrapText } from "../../cli/doctor/DoctorScreen.tsx";
import { screenColor } from "../../cli/doctor/runDoctorScreen.tsx";
import { doctorContext, registeredDataDir } from "../support/doctorFixtures.ts";

const DOWN = "\u001B[B";
const UP = "\u001B[A";
const ENTER = "\r";

const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));
afterEach(() => cleanup());

/** A registered data dir with two automatic fixes (config.json 0644, stale public key) and one by-hand step (no agent running). */
function brokenDataDir(): { root: string; dataDir: DataDir; realPublic: string } {
  const dir = mkdtempSync(join(tmpdir(), "doctor-screen-"));
  temps.push(dir);
  const root = join(dir, "data");
  const dataDir = registeredDataDir(root);
  const realPublic = readFileSync(dataDir.publicKeyFile, "utf8");
  chmodSync(dataDir.configFile, 0o644);
  writeFileSync(dataDir.publicKeyFile, SigningKey.generate().publicKeyRawBase64() + "\n");
  return { root, dataDir, realPublic };
}

/** A check that stays running until the test releases it. */
function gate(detail = "done"): { check: Check<DoctorContext>; release: () => void } {
  let release!: () => void;
  const opened = new Promise<void>((resolve) => (release = resolve));
  return {
    release,
    check: {
      id: "gate",
      title: "slow probe",
      run: async () => {
        await opened;
        return { id: "gate", title: "slow probe", status: "ok", detail };
      },
    },
  };
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "doctor-screen-"));
  temps.push(dir);
  return dir;
}

/** Presses `key` until the frame matches (moving the cursor to a check, say). */
async function pressUntil(lastFrame: () => string | undefined, write: (k: string) => void, key: string, predicate: (frame: string) => boolean, what: string): Promise<string> {
  for (let i = 0; i < 30; i++) {
    const frame = lastFrame() ?? "";
    if (predicate(frame)) return frame;
    write(key);
    await Bun.sleep(20);
  }
  return frameMatching(lastFrame, predicate, what);
}

/** A terminal of a given size for ink, keeping every frame (ink-testing-library's is 100 columns, no rows). */
class SizedStdout extends EventEmitter {
  frames: string[] = [];
  constructor(
    readonly columns: number,
    readonly rows: number,
  ) {
    super();
  }
  write = (frame: string) => {
    this.frames.push(frame);
    return true;
  };
  lastFrame = () => this.frames.at(-1);
}

class FakeStdin extends EventEmitter {
  isTTY = true;
  private data: string | null = null;
  write = (data: string) => {
    this.data = data;
    this.emit("readable");
    this.emit("data", data);
  };
  setEncoding() {}
  setRawMode() {}
  resume() {}
  pause() {}
  ref() {}
  unref() {}
  read = () => {
    const d = this.data;
    this.data = null;
    return d;
  };
}

async function frameMatching(lastFrame: () => string | undefined, predicate: (frame: string) => boolean, what: string): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const frame = lastFrame() ?? "";
    if (predicate(frame)) return frame;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last frame:\n${frame}`);
    await Bun.sleep(10);
  }
}

const mode = (p: string) => statSync(p).mode & 0o777;

function UnmountProbe({ onUnmount }: { onUnmount: () => void }) {
  useEffect(() => onUnmount, []);
  return null;
}

describe("doctor screen", () => {
  test("shows checks as they finish, several at once; the cursor shows a check's details; space, enter and y apply its fix and re-check it", async () => {
    const { root, dataDir, realPublic } = brokenDataDir();
    const slow = gate("probe finished after a while");
    const session = new DoctorSession([slow.check, ...dataDirChecks], doctorContext(root));
    const { lastFrame, stdin } = render(<DoctorScreen session={session} />);

    // The checks after the slow one finish while it still runs.
    const running = await frameMatching(lastFrame, (f) => f.includes("5 of 6 done"), "the others done while the slow one runs");
    expect(running).toMatch(/› [⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] slow probe/);
    expect(running).toContain("running · gate");
    expect(running).toContain("↑↓ move · l agent log · q quit");
    expect(running).not.toContain("enter apply");
    slow.release();

    // Done: the cursor goes to the first failure and shows its details and fix.
    const ready = await frameMatching(lastFrame, (f) => f.includes("enter apply"), "the checks done");
    expect(ready).toContain("  ✓ slow probe\n");
    expect(ready).toContain("  ✓ data dir exists with mode 0700\n");
    expect(ready).toContain("› ✗ [ ] secret files are private (0600, folders 0700)");
    expect(ready).toContain("  ! [ ] signing and WireGuard keys parse");
    expect(ready).toContain("  ! agent process (data-dir lock)");
    expect(ready).toContain("3 ok, 2 warnings, 1 failed, 0 skipped");
    expect(ready).toContain("fixes: 2 here, 1 by hand");
    expect(ready).toContain("✗ secret files are private (0600, folders 0700)\n  failed · datadir.modes\n  readable by other users: config.json is 0644, must be 0600\n  fix: chmod 600 config.json");
    // Details of ok checks only under the cursor.
    expect(ready).not.toContain("probe finished after a while");

    const onSlow = await pressUntil(lastFrame, stdin.write.bind(stdin), UP, (f) => f.includes("› ✓ slow probe"), "the cursor on the slow probe");
    expect(onSlow).toContain("  ok · gate\n  probe finished after a while");
    expect(onSlow).not.toContain("readable by other users");

    // A check whose fix is for a person: space says so.
    await pressUntil(lastFrame, stdin.write.bind(stdin), DOWN, (f) => f.includes("› ! agent process"), "the cursor on the lock check");
    stdin.write(" ");
    const byHand = await frameMatching(lastFrame, (f) => f.includes("this fix is for a person"), "the by-hand notice");
    expect(byHand).toContain("fix (by hand): ");

    await pressUntil(lastFrame, stdin.write.bind(stdin), "k", (f) => f.includes("› ! [ ] signing and WireGuard keys parse"), "the cursor on the keys check");
    stdin.write(" ");
    const picked = await frameMatching(lastFrame, (f) => f.includes("› ! [x] signing and WireGuard keys parse"), "its fix picked");
    expect(picked).toContain("  ✗ [ ] secret files are private");
    expect(picked).toContain("fixes: 2 here (1 picked), 1 by hand");
    expect(picked).toContain("fix [x] picked: write keys/public.key from the private key");

    stdin.write(ENTER);
    await frameMatching(lastFrame, (f) => f.includes("Apply 1 fix? (y/n)"), "the confirmation");
    stdin.write("n");
    await frameMatching(lastFrame, (f) => !f.includes("Apply 1 fix?") && f.includes("enter apply"), "back to the list");
    expect(readFileSync(dataDir.publicKeyFile, "utf8")).not.toBe(realPublic);

    stdin.write(ENTER);
    await frameMatching(lastFrame, (f) => f.includes("Apply 1 fix? (y/n)"), "the confirmation again");
    stdin.write("y");
    const applied = await frameMatching(lastFrame, (f) => f.includes("1 fix applied"), "the applied fix");
    expect(applied).toContain("› ✓ signing and WireGuard keys parse (fix applied)");
    expect(applied).toContain("fix applied; checked again");
    expect(applied).toContain("  ✗ [ ] secret files are private (0600, folders 0700)");
    expect(readFileSync(dataDir.publicKeyFile, "utf8")).toBe(realPublic);
    expect(mode(dataDir.configFile)).toBe(0o644);

    // enter with nothing picked applies the fix under the cursor (with a confirmation).
    await pressUntil(lastFrame, stdin.write.bind(stdin), "k", (f) => f.includes("› ✗ [ ] secret files"), "the cursor on the modes check");
    stdin.write(ENTER);
    await frameMatching(lastFrame, (f) => f.includes("Apply 1 fix? (y/n)"), "the confirmation for the check under the cursor");
    stdin.write("y");
    await frameMatching(lastFrame, (f) => f.includes("› ✓ secret files are private (0600, folders 0700) (fix applied)"), "the modes fixed");
    expect(mode(dataDir.configFile)).toBe(0o600);
  });

  test("a picks every fix; with --yes enter applies without asking; q quits", async () => {
    const { root, dataDir } = brokenDataDir();
    const session = new DoctorSession(dataDirChecks, doctorContext(root));
    let unmounted = false;
    const { lastFrame, stdin } = render(
      <>
        <DoctorScreen session={session} assumeYes />
        <UnmountProbe onUnmount={() => (unmounted = true)} />
      </>,
    );
    await frameMatching(lastFrame, (f) => f.includes("enter apply"), "the checks done");
    stdin.write("a");
    await frameMatching(lastFrame, (f) => f.includes("[x] secret files") && f.includes("[x] signing"), "all fixes picked");
    stdin.write(ENTER);
    const done = await frameMatching(lastFrame, (f) => f.includes("2 fixes applied"), "both fixes applied");
    expect(done).not.toContain("(y/n)");
    expect(done).toContain("✓ secret files are private (0600, folders 0700) (fix applied)");
    expect(done).toContain("fixes: 0 here, 1 by hand");
    expect(done).toContain("↑↓ move · r re-run · l agent log · q quit");
    expect(mode(dataDir.configFile)).toBe(0o600);
    expect(session.exitCode()).toBe(0);

    expect(unmounted).toBe(false);
    stdin.write("q");
    const deadline = Date.now() + 5000;
    while (!unmounted && Date.now() < deadline) await Bun.sleep(10);
    expect(unmounted).toBe(true);
  });

  test("--fix applies every automatic fix by itself and leaves the by-hand steps", async () => {
    const { root, dataDir, realPublic } = brokenDataDir();
    const session = new DoctorSession(dataDirChecks, doctorContext(root));
    let unmounted = false;
    const { frames } = render(
      <>
        <DoctorScreen session={session} autoFix />
        <UnmountProbe onUnmount={() => (unmounted = true)} />
      </>,
    );
    const deadline = Date.now() + 5000;
    while (!unmounted && Date.now() < deadline) await Bun.sleep(10);
    expect(unmounted).toBe(true);
    const done = frames.findLast((f) => f.includes("agent doctor")) ?? "";
    expect(done).toContain("2 fixes applied");
    expect(done).toContain("(fix applied)");
    expect(mode(dataDir.configFile)).toBe(0o600);
    expect(readFileSync(dataDir.publicKeyFile, "utf8")).toBe(realPublic);
    expect(session.results().find((r) => r.id === "datadir.lock")?.status).toBe("warn");
  });

  test("a fix that fails says why, and the check stays failed", async () => {
    const failing: Check<DoctorContext> = {
      id: "x",
      title: "stubborn thing",
      run: async () => ({ id: "x", title: "stubborn thing", status: "fail", detail: "still broken", fix: { description: "try the impossible", command: ["false"] } }),
    };
    const session = new DoctorSession([failing], doctorContext(join(tempDir(), "data")));
    const { lastFrame, stdin } = render(<DoctorScreen session={session} assumeYes />);
    await frameMatching(lastFrame, (f) => f.includes("enter apply"), "the fix list");
    stdin.write(ENTER);
    const frame = await frameMatching(lastFrame, (f) => f.includes("1 failed (checked again)"), "the failed fix");
    expect(frame).toContain("fix failed: false exited with code 1");
    expect(frame).toContain("› ✗ [ ] stubborn thing (fix failed)");
  });

  test("r runs every check again: pending and spinners, then the new results", async () => {
    let rounds = 0;
    let hold: Promise<void> | undefined;
    let release = () => {};
    const counting: Check<DoctorContext> = {
      id: "count",
      title: "counted check",
      run: async () => {
        rounds++;
        if (hold) await hold;
        return { id: "count", title: "counted check", status: rounds === 1 ? "warn" : "ok", detail: `round ${rounds}` };
      },
    };
    const other: Check<DoctorContext> = { id: "other", title: "other check", waitForEarlier: true, run: async () => ({ id: "other", title: "other check", status: "ok", detail: "fine" }) };
    const session = new DoctorSession([counting, other], doctorContext(join(tempDir(), "data")));
    const { lastFrame, stdin } = render(<DoctorScreen session={session} />);
    const first = await frameMatching(lastFrame, (f) => f.includes("r re-run"), "the first round");
    expect(first).toContain("› ! counted check");
    expect(first).toContain("round 1");

    hold = new Promise<void>((r) => (release = r));
    stdin.write("r");
    const again = await frameMatching(lastFrame, (f) => f.includes("checking: 0 of 2 done"), "the second round running");
    expect(again).toMatch(/› [⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] counted check/);
    expect(again).toContain("  · other check");
    expect(again).not.toContain("r re-run");
    release();
    const second = await frameMatching(lastFrame, (f) => f.includes("r re-run"), "the second round done");
    expect(second).toContain("› ✓ counted check");
    expect(second).toContain("round 2");
    expect(rounds).toBe(2);
  });

  test("l shows the agent's recent log lines (or why there are none) and l again the details", async () => {
    const dir = tempDir();
    const logFile = join(dir, "agent.log");
    writeFileSync(logFile, "[agent] info: started\n[reconcile] error: podman said no\n[reconcile] info: pass done\n");
    const ok: Check<DoctorContext> = { id: "y", title: "fine thing", run: async () => ({ id: "y", title: "fine thing", status: "ok", detail: "all good" }) };
    const session = new DoctorSession([ok], doctorContext(join(dir, "data"), { agentLogFile: logFile }));
    const { lastFrame, stdin } = render(<DoctorScreen session={session} />);
    await frameMatching(lastFrame, (f) => f.includes("r re-run"), "the checks done");
    stdin.write("l");
    const log = await frameMatching(lastFrame, (f) => f.includes("agent log: "), "the agent log");
    expect(log).toContain(`agent log: the file ${logFile} (3 lines, 1 error, 0 warnings)`);
    expect(log).toContain("  [agent] info: started\n  [reconcile] error: podman said no\n  [reconcile] info: pass done");
    expect(log).not.toContain("all good");
    stdin.write("l");
    const details = await frameMatching(lastFrame, (f) => !f.includes("agent log: "), "the details again");
    expect(details).toContain("  all good");

    const nowhere = new DoctorSession([ok], doctorContext(join(dir, "data2"), { paths: { systemdRunDir: join(dir, "no-systemd") } }));
    const other = render(<DoctorScreen session={nowhere} />);
    await frameMatching(other.lastFrame, (f) => f.includes("r re-run"), "the checks done");
    other.stdin.write("l");
    const unavailable = await frameMatching(other.lastFrame, (f) => f.includes("agent log unavailable"), "the reason");
    expect(unavailable).toContain("agent log unavailable: systemd does not run this machine; pass --agent-log FILE");
  });

  test("on a 40-column, 24-row terminal no line is wider than 40 and the frame stays under 24 rows", async () => {
    const many: Check<DoctorContext>[] = Array.from({ length: 14 }, (_, i) => ({
      id: `c${i}`,
      title: `check number ${i} with a title long enough to be cut at forty columns`,
      run: async () =>
        i === 3
          ? {
              id: `c${i}`,
              title: `check number ${i}`,
              status: "fail" as const,
              detail: `a very long explanation without many breaks: /var/lib/techulus-agent/state/some-rather-long-file-name.json cannot be read, and here is why it matters for this server\nsecond line\nthird line`,
              fix: { description: "chmod 600 /var/lib/techulus-agent/state/some-rather-long-file-name.json", command: ["true"] },
            }
          : { id: `c${i}`, title: `check number ${i} with a title long enough to be cut at forty columns`, status: "ok" as const, detail: "fine" },
    }));
    const session = new DoctorSession(many, doctorContext(join(tempDir(), "data")));
    const stdout = new SizedStdout(40, 24);
    const stdin = new FakeStdin();
    const app = inkRender(<DoctorScreen session={session} subtitle="/var/lib/techulus-agent · state /srv/deploy/expected-state.json" />, {
      stdout: stdout as unknown as NodeJS.WriteStream,
      stdin: stdin as unknown as NodeJS.ReadStream,
      debug: true,
      exitOnCtrlC: false,
      patchConsole: false,
    });
    try {
      const frame = await frameMatching(stdout.lastFrame, (f) => f.includes("r re-run"), "the checks done");
      const lines = frame.split("\n");
      for (const line of lines) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(40);
      expect(lines.length).toBeLessThan(24);
      expect(frame).toContain("› ✗ [ ] check number 3");
      expect(frame).toMatch(/↓ \d+ more/);
      expect(frame).toContain("failed · c3");
      expect(frame).toContain("  a very long explanation without many");
      // Moving down scrolls the list; the cursor stays in view.
      const moved = await pressUntil(stdout.lastFrame, stdin.write, DOWN, (f) => f.includes("› ✓ check number 13"), "the last check in view");
      expect(moved).toMatch(/↑ \d+ more/);
      for (const line of moved.split("\n")) expect(Bun.stringWidth(line)).toBeLessThanOrEqual(40);
    } finally {
      app.unmount();
    }
  });

  test("without color (NO_COLOR) the screen writes no escape codes for colors or styles; the marks remain", async () => {
    const level = chalk.level;
    chalk.level = 3;
    try {
      const checks: Check<DoctorContext>[] = [
        { id: "a", title: "good", run: async () => ({ id: "a", title: "good", status: "ok", detail: "fine" }) },
        { id: "b", title: "bad", run: async () => ({ id: "b", title: "bad", status: "fail", detail: "broken", fix: { description: "mend", command: ["true"] } }) },
      ];
      const colored = render(<DoctorScreen session={new DoctorSession(checks, doctorContext(join(tempDir(), "data")))} />);
      const withColor = await frameMatching(colored.lastFrame, (f) => f.includes("enter apply"), "the colored screen");
      expect(withColor).toMatch(/\u001B\[3[0-9]m/);
      cleanup();
      const plain = render(<DoctorScreen session={new DoctorSession(checks, doctorContext(join(tempDir(), "data")))} color={false} />);
      const noColor = await frameMatching(plain.lastFrame, (f) => f.includes("enter apply"), "the plain screen");
      expect(noColor).not.toContain("\u001B[");
      expect(noColor).toContain("  ✓ good");
      expect(noColor).toContain("› ✗ [ ] bad");
    } finally {
      chalk.level = level;
    }
  });

  test("color follows NO_COLOR, with FORCE_COLOR taking precedence as in Node", () => {
    expect(screenColor({})).toBe(true);
    expect(screenColor({ NO_COLOR: "1" })).toBe(false);
    expect(screenColor({ NO_COLOR: "" })).toBe(true);
    expect(screenColor({ NO_COLOR: "1", FORCE_COLOR: "1" })).toBe(true);
    expect(screenColor({ FORCE_COLOR: "0" })).toBe(false);
    expect(screenColor({ TERM: "dumb" })).toBe(false);
  });

  test("wrapText wraps at words, cuts words longer than the width, and keeps a line's indent", () => {
    expect(wrapText("one two three four", 9)).toEqual(["one two", "three", "four"]);
    expect(wrapText("abcdefghijkl", 5)).toEqual(["abcde", "fghij", "kl"]);
    expect(wrapText("  indented words here", 10)).toEqual(["  indented", "  words", "  here"]);
    expect(wrapText("a\n\nb", 10)).toEqual(["a", "", "b"]);
  });
});
