/**
 * The body of `bash test/fresh-debian`: proves the README's two commands work on a fresh Debian 12
 * machine as root. Boots a fresh root with systemd as PID 1 (test/support/debianRoot.ts), copies
 * the checkout in (uncommitted work included) and runs there, from the checkout folder, exactly
 * the two commands of the README's "Quick start", read from README.md:
 *
 *   1. the quick start (must exit 0; then http://127.0.0.1:8088/ must answer from the example container)
 *   2. the whole suite (its last line "N passed, N failed[, N skipped]" is read back)
 *
 * Prints each phase with its duration, the suite's failing tests with their errors as they happen
 * (everything with --verbose or FRESH_DEBIAN_VERBOSE=1) and its last 40 lines when it fails,
 * removes the root, and
 * ends with one line "N passed, N failed[, N skipped]": the quick start counts as one test, the
 * suite's own counts are added. Exit code 1 on any failure.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { run } from "../lib/exec.ts";
import { ensureDebianImage, startDebianRoot, type DebianRoot } from "./support/debianRoot.ts";

const REPO = resolve(import.meta.dir, "..");
const CHECKOUT = "/root/agent";
const SHARED_TOOLS = resolve(REPO, "../shared/tools");
const ROOT_PREFIX = "techulus-fresh";
const QUICK_START_TIMEOUT_MS = 15 * 60_000;
const SUITE_TIMEOUT_MS = 25 * 60_000;
const SUMMARY = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;
const verbose = process.argv.includes("--verbose") || process.env.FRESH_DEBIAN_VERBOSE === "1";

const say = (message: string) => console.log(`[fresh-debian] ${message}`);

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

const reported = new WeakSet<object>();

async function phase<T>(name: string, body: () => Promise<T>, describe: (result: T) => string): Promise<T> {
  const started = Date.now();
  try {
    const result = await body();
    say(`${name}: ${describe(result)} (${duration(Date.now() - started)})`);
    return result;
  } catch (err) {
    say(`${name}: FAILED after ${duration(Date.now() - started)}: ${err instanceof Error ? err.message : String(err)}`);
    if (err instanceof Object) reported.add(err);
    throw err;
  }
}

/** The first two ```sh blocks of the README's "Quick start": the quick start and the suite. */
function readmeCommands(): [string, string] {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const section = /^## Quick start[^\n]*\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? "";
  const blocks = [...section.matchAll(/^```sh\n([\s\S]*?)^```/gm)].map((m) => m[1]!.trim());
  const [quickStart, suite] = blocks;
  if (!quickStart || !suite || quickStart.includes("\n") || suite.includes("\n") || !suite.includes("test/run")) {
    throw new Error("README.md's Quick start no longer starts with two one-line sh blocks (quick start, test/run); update test/fresh-debian.ts");
  }
  return [quickStart, suite];
}

/**
 * The real BuildKit and VictoriaLogs binaries the tests start live beside the checkout, in
 * ../shared/tools (read-only in CI): the same place beside the checkout inside the root.
 */
async function copySharedTools(root: DebianRoot): Promise<string> {
  if (!existsSync(SHARED_TOOLS)) return `${SHARED_TOOLS} does not exist: the tests that need it will say so`;
  const target = join(CHECKOUT, "..", "shared");
  await root.exec(["mkdir", "-p", target]);
  await root.copyIn(SHARED_TOOLS, `${target}/`);
  return `${SHARED_TOOLS} copied to ${target}/tools`;
}

/** Keeps the last `size` lines. */
function lineTail(size: number) {
  const lines: string[] = [];
  return {
    push(line: string) {
      lines.push(line);
      if (lines.length > size) lines.shift();
    },
    print() {
      for (const line of lines) console.log(`  | ${line}`);
    },
    lines,
  };
}

async function quickStart(root: DebianRoot, command: string): Promise<string> {
  const tail = lineTail(40);
  const res = await root.exec(["bash", "-c", command], {
    cwd: CHECKOUT,
    timeoutMs: QUICK_START_TIMEOUT_MS,
    allowFailure: true,
    buffer: false,
    onLine: (line) => {
      tail.push(line);
      if (verbose) console.log(`  | ${line}`);
    },
  });
  if (res.exitCode !== 0) {
    if (!verbose) tail.print();
    throw new Error(`exited with code ${res.exitCode}`);
  }
  // The example's published port; the container may still be starting its web server.
  let answer = "";
  for (let attempt = 0; attempt < 20; attempt++) {
    const curl = await root.exec(["curl", "-fsS", "--max-time", "5", "http://127.0.0.1:8088/"], { allowFailure: true, timeoutMs: 15_000 });
    if (curl.exitCode === 0 && curl.stdout.trim()) return `exit 0, http://127.0.0.1:8088/ answers "${curl.stdout.trim()}"`;
    answer = (curl.stderr || curl.stdout).trim();
    await Bun.sleep(1000);
  }
  const ps = await root.exec(["podman", "ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Ports}}"], { allowFailure: true });
  throw new Error(`exit 0, but http://127.0.0.1:8088/ does not answer (${answer}); containers: ${ps.stdout.trim() || "none"}`);
}

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

async function suite(root: DebianRoot, command: string): Promise<Counts> {
  const tail = lineTail(40);
  let pass = 0;
  let fail = 0;
  let summary: Counts | undefined;
  // What bun printed since the previous test: a failing test's error comes before its "(fail)".
  let sinceLastTest: string[] = [];
  let inBunSummary = false;
  let currentFile = "";
  const started = Date.now();
  const heartbeat = setInterval(() => say(`  suite running ${duration(Date.now() - started)}: ${pass} pass, ${fail} fail so far`), 120_000);
  try {
    const res = await root.exec(["bash", "-c", command], {
      cwd: CHECKOUT,
      timeoutMs: SUITE_TIMEOUT_MS,
      allowFailure: true,
      buffer: false,
      onLine: (line) => {
        tail.push(line);
        const m = SUMMARY.exec(line.trim());
        if (m) summary = { passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3] ?? 0) };
        if (verbose) console.log(`  | ${line}`);
        if (/^\d+ tests? failed:$/.test(line.trim())) inBunSummary = true;
        if (inBunSummary) return;
        if (line.startsWith("(fail)")) {
          fail++;
          if (!verbose) for (const l of [`${currentFile}`, ...sinceLastTest.slice(-30), line]) console.log(`  | ${l}`);
        }
        if (line.startsWith("(pass)")) pass++;
        if (/^\S.*\.test\.tsx?:$/.test(line)) currentFile = line;
        if (/^\((pass|fail|skip|todo)\) /.test(line) || line === currentFile) sinceLastTest = [];
        else sinceLastTest.push(line);
      },
    });
    const counts = summary ?? { passed: 0, failed: 1, skipped: 0 };
    if (res.exitCode !== 0 && counts.failed === 0) counts.failed = 1;
    if (counts.failed > 0 && !verbose) {
      say(`suite: last ${tail.lines.length} lines (exit ${res.exitCode}${summary ? "" : ", no summary line"}):`);
      tail.print();
    }
    return counts;
  } catch (err) {
    if (!verbose) tail.print();
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
}

function countsLine(c: Counts): string {
  return `${c.passed} passed, ${c.failed} failed${c.skipped > 0 ? `, ${c.skipped} skipped` : ""}`;
}

/** A signal while the root boots: its container exists but startDebianRoot has not returned it yet. */
async function removeBootingRoot(): Promise<void> {
  const names = await run("podman", ["ps", "-a", "--filter", `name=^${ROOT_PREFIX}-${process.pid}-`, "--format", "{{.Names}}"], { allowFailure: true });
  const list = names.stdout.split("\n").filter(Boolean);
  if (list.length > 0) await run("podman", ["rm", "-f", "-t", "0", ...list], { allowFailure: true });
  // Its host folder (startDebianRoot makes /var/tmp/<name>-XXXXXX).
  for (const dir of readdirSync("/var/tmp").filter((d) => d.startsWith(`${ROOT_PREFIX}-${process.pid}-`))) {
    rmSync(join("/var/tmp", dir), { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const started = Date.now();
  const total: Counts = { passed: 0, failed: 0, skipped: 0 };
  let root: DebianRoot | undefined;
  const stopOnSignal = (signal: NodeJS.Signals, code: number) =>
    process.on(signal, () => {
      say(`${signal}: removing the root`);
      void (root?.stop() ?? removeBootingRoot()).finally(() => process.exit(code));
    });
  stopOnSignal("SIGINT", 130);
  stopOnSignal("SIGTERM", 143);

  try {
    const [quickStartCommand, suiteCommand] = readmeCommands();
    const log = (m: string) => say(`  ${m}`);
    await phase("image", () => ensureDebianImage({ log }), (r) => `${r.image} ${r.built ? "built" : "cached"}`);
    const booted = await phase("root", () => startDebianRoot({ prefix: ROOT_PREFIX, log }), (r) =>
      `${r.name} booted, systemd ${r.failedUnits.length ? `degraded (failed: ${r.failedUnits.join(", ")})` : "running"}`,
    );
    root = booted;
    await phase("checkout", () => booted.copyCheckout(CHECKOUT), (dir) => `working tree and .git copied to ${dir}`);
    await phase("tools", () => copySharedTools(booted), (r) => r);

    say(`quick start: $ ${quickStartCommand}`);
    try {
      await phase("quick start", () => quickStart(booted, quickStartCommand), (r) => r);
      total.passed++;
    } catch {
      total.failed++;
    }

    say(`suite: $ ${suiteCommand}`);
    try {
      const counts = await phase("suite", () => suite(booted, suiteCommand), countsLine);
      total.passed += counts.passed;
      total.failed += counts.failed;
      total.skipped += counts.skipped;
    } catch {
      total.failed++;
    }
  } catch (err) {
    // The root did not come up (or the README changed): the quick start could not run.
    if (!(err instanceof Object && reported.has(err))) say(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
    total.failed++;
  } finally {
    // Leaving a root behind is a failure too (phase has said why).
    if (root) await phase("clean-up", () => root!.stop(), () => "root and its folder removed").catch(() => total.failed++);
  }
  say(`total ${duration(Date.now() - started)}`);
  console.log(countsLine(total));
  return total.failed > 0 ? 1 : 0;
}

process.exit(await main());
