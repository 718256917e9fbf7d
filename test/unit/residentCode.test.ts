import { expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pageOutOwnCode, readOnlyMappingsOf, startCodeTrimmer } from "../../lib/residentCode.ts";

const MAPS = [
  "00200000-01a40000 r--p 00000000 fd:01 1234                               /usr/local/bin/agent",
  "01a40000-0684a000 r-xp 01838000 fd:01 1234                               /usr/local/bin/agent",
  "0684d000-06a22000 rw-p 06644000 fd:01 1234                               /usr/local/bin/agent",
  "06a22000-07797000 rw-p 06819000 fd:01 1234                               /usr/local/bin/agent",
  "7f0000000000-7f0000100000 r-xp 00000000 fd:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6",
  "7f0000200000-7f0000300000 rw-p 00000000 00:00 0",
  "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
  "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
].join("\n");

test("only the binary's own mappings that are never written are paged out, found by device and inode", () => {
  const agent = { device: "fd:01", inode: 1234 };
  expect(readOnlyMappingsOf(MAPS, agent)).toEqual([
    { start: 0x200000n, end: 0x1a40000n },
    { start: 0x1a40000n, end: 0x684a000n },
  ]);
  // Replaced by an upgrade while running: still the same mapped file.
  expect(readOnlyMappingsOf(MAPS.replaceAll("/usr/local/bin/agent", "/usr/local/bin/agent (deleted)"), agent)).toHaveLength(2);
  expect(readOnlyMappingsOf(MAPS, { device: "fd:01", inode: 4321 })).toEqual([]);
  expect(readOnlyMappingsOf(MAPS, { device: "fd:02", inode: 1234 })).toEqual([]);
  expect(readOnlyMappingsOf("garbage\n\n", agent)).toEqual([]);
});

test("/proc/self/maps names this process's binary by the device and inode the trim looks for", () => {
  const st = statSync("/proc/self/exe");
  const maps = readFileSync("/proc/self/maps", "utf8");
  const line = maps.split("\n").find((l) => l.includes(" r-xp ") && l.endsWith(realpathSync("/proc/self/exe")))!;
  const [, device, inode] = /^\S+ \S+ \S+ (\S+) (\d+)/.exec(line)!;
  expect(Number(inode)).toBe(st.ino);
  expect(readOnlyMappingsOf(maps, { device: device!, inode: st.ino }).length).toBeGreaterThan(0);
});

test("a trim hands the process's code pages back to the kernel", async () => {
  // A copy of the runtime of its own: pages another process maps too (this test runner's, a bench's)
  // are not reclaimed, by design. Beside the original, not in the temp folder: a binary on tmpfs
  // (a systemd root's /tmp) is shared memory, which has no file to be read back from.
  const dir = mkdtempSync(join(dirname(realpathSync(process.execPath)), ".resident-code-"));
  try {
    const runtime = join(dir, "bun");
    copyFileSync(process.execPath, runtime);
    chmodSync(runtime, 0o755);
    const script = join(dir, "trim.ts");
    writeFileSync(
      script,
      `import { pageOutOwnCode } from ${JSON.stringify(join(import.meta.dir, "../../lib/residentCode.ts"))};
      const rssFile = () => Number(/RssFile:\\s+(\\d+) kB/.exec(require("node:fs").readFileSync("/proc/self/status", "utf8"))?.[1]);
      const before = rssFile();
      const advised = pageOutOwnCode();
      console.log(JSON.stringify({ before, advised, after: rssFile() }));`,
    );
    const proc = Bun.spawn([runtime, script], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text()];
    expect(await proc.exited).toBe(0);
    const { before, advised, after } = JSON.parse(out || err);
    expect(advised).toBeGreaterThan(10 * 2 ** 20);
    // Some pages come straight back (the code printing this); most of them must not.
    expect(after).toBeLessThan(before * 0.8);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the trimmer trims at its first idle look, then not again before everyMs, and never while busy", async () => {
  let idle = false;
  let trims = 0;
  const stop = startCodeTrimmer({ isIdle: () => idle, checkMs: 10, everyMs: 60_000, trim: () => (trims++, 1) });
  await Bun.sleep(60);
  expect(trims).toBe(0);
  idle = true;
  await Bun.sleep(60);
  expect(trims).toBe(1);
  await Bun.sleep(60);
  expect(trims).toBe(1);
  stop();
});

test("a kernel that refuses is asked once, and the agent goes on", async () => {
  let asks = 0;
  const stop = startCodeTrimmer({
    isIdle: () => true,
    checkMs: 10,
    everyMs: 0,
    trim: () => {
      asks++;
      throw new Error("refused");
    },
  });
  await Bun.sleep(80);
  stop();
  expect(asks).toBe(1);
});
