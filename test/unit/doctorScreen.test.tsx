import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useEffect } from "react";
import { cleanup, render } from "ink-testing-library";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import type { DataDir } from "../../lib/datadir/DataDir.ts";
import type { Check } from "../../lib/doctor/Check.ts";
import { dataDirChecks } from "../../lib/doctor/dataDirChecks.ts";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { DoctorSession } from "../../lib/doctor/DoctorSession.ts";
import { DoctorScreen } from "../../cli/doctor/DoctorScreen.tsx";
import { doctorContext, registeredDataDir } from "../support/doctorFixtures.ts";

const DOWN = "\u001B[B";
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
function gate(): { check: Check<DoctorContext>; release: () => void } {
  let release!: () => void;
  const opened = new Promise<void>((resolve) => (release = resolve));
  return {
    release,
    check: {
      id: "gate",
      title: "slow probe",
      run: async () => {
        await opened;
        return { id: "gate", title: "slow probe", status: "ok", detail: "done" };
      },
    },
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
  test("shows checks as they complete, then the fixes; the keyboard picks one, confirms, applies and re-checks it", async () => {
    const { root, dataDir, realPublic } = brokenDataDir();
    const slow = gate();
    const session = new DoctorSession([slow.check, ...dataDirChecks], doctorContext(root));
    const { lastFrame, stdin } = render(<DoctorScreen session={session} />);

    const running = await frameMatching(lastFrame, (f) => f.includes("slow probe") && f.includes("· data dir exists"), "the running check and the pending ones");
    expect(running).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] slow probe/);
    expect(running).toContain("· secret files are private");
    expect(running).not.toContain("Fixes");
    slow.release();

    const ready = await frameMatching(lastFrame, (f) => f.includes("Fixes"), "the fix list");
    expect(ready).toContain("✓ slow probe done");
    expect(ready).toContain("✓ data dir exists with mode 0700");
    expect(ready).toContain("✗ secret files are private (0600, folders 0700)");
    expect(ready).toContain("readable by other users: config.json is 0644, must be 0600");
    expect(ready).toContain("! signing and WireGuard keys parse");
    expect(ready).toContain("› [ ] secret files are private (0600, folders 0700): chmod 600 config.json");
    expect(ready).toContain("  [ ] signing and WireGuard keys parse: write keys/public.key from the private key");
    expect(ready).toContain("By hand");
    expect(ready).toContain("agent process (data-dir lock): start the agent");
    expect(ready).toContain("3 ok, 2 warnings, 1 failed, 0 skipped");

    stdin.write(DOWN);
    await frameMatching(lastFrame, (f) => f.includes("› [ ] signing and WireGuard keys parse"), "the cursor on the second fix");
    stdin.write(" ");
    const picked = await frameMatching(lastFrame, (f) => f.includes("› [x] signing and WireGuard keys parse"), "the second fix selected");
    expect(picked).toContain("  [ ] secret files are private");

    stdin.write(ENTER);
    await frameMatching(lastFrame, (f) => f.includes("Apply 1 fix? (y/n)"), "the confirmation");
    stdin.write("n");
    await frameMatching(lastFrame, (f) => !f.includes("Apply 1 fix?") && f.includes("enter apply"), "back to the list");
    expect(readFileSync(dataDir.publicKeyFile, "utf8")).not.toBe(realPublic);

    stdin.write(ENTER);
    await frameMatching(lastFrame, (f) => f.includes("Apply 1 fix? (y/n)"), "the confirmation again");
    stdin.write("y");
    const applied = await frameMatching(lastFrame, (f) => f.includes("1 fix applied"), "the applied fix");
    expect(applied).toContain("✓ signing and WireGuard keys parse Ed25519 signing key and WireGuard key (fix applied)");
    expect(applied).toContain("✗ secret files are private");
    expect(applied).toContain("› [ ] secret files are private (0600, folders 0700): chmod 600 config.json");
    expect(applied).not.toContain("write keys/public.key");
    expect(readFileSync(dataDir.publicKeyFile, "utf8")).toBe(realPublic);
    expect(mode(dataDir.configFile)).toBe(0o644);
  });

  test("a selects every fix; with --yes enter applies without asking; q quits", async () => {
    const { root, dataDir } = brokenDataDir();
    const session = new DoctorSession(dataDirChecks, doctorContext(root));
    let unmounted = false;
    const { lastFrame, stdin } = render(
      <>
        <DoctorScreen session={session} assumeYes />
        <UnmountProbe onUnmount={() => (unmounted = true)} />
      </>,
    );
    await frameMatching(lastFrame, (f) => f.includes("enter apply"), "the fix list");
    stdin.write("a");
    await frameMatching(lastFrame, (f) => f.includes("[x] secret files") && f.includes("[x] signing"), "all fixes selected");
    stdin.write(ENTER);
    const done = await frameMatching(lastFrame, (f) => f.includes("2 fixes applied"), "both fixes applied");
    expect(done).not.toContain("(y/n)");
    expect(done).toContain("✓ secret files are private (0600, folders 0700)");
    expect(done).toContain("Nothing this screen can fix; see the steps below. Press q to quit.");
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
    const dir = mkdtempSync(join(tmpdir(), "doctor-screen-"));
    temps.push(dir);
    const failing: Check<DoctorContext> = {
      id: "x",
      title: "stubborn thing",
      run: async () => ({ id: "x", title: "stubborn thing", status: "fail", detail: "still broken", fix: { description: "try the impossible", command: ["false"] } }),
    };
    const session = new DoctorSession([failing], doctorContext(join(dir, "data")));
    const { lastFrame, stdin } = render(<DoctorScreen session={session} assumeYes />);
    await frameMatching(lastFrame, (f) => f.includes("enter apply"), "the fix list");
    stdin.write(ENTER);
    const frame = await frameMatching(lastFrame, (f) => f.includes("1 failed (re-checked above)"), "the failed fix");
    expect(frame).toContain("fix failed: false exited with code 1");
    expect(frame).toContain("✗ stubborn thing");
  });
});
