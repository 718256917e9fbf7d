import { describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, openSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContainerLogFollower, type LogPosition } from "../../lib/logs/ContainerLogFollower.ts";
import { LogPositionStore } from "../../lib/logs/LogPositionStore.ts";
import type { LogShipper } from "../../lib/logs/LogShipper.ts";
import { MonotonicStamps } from "../../lib/logs/logTimestamp.ts";
import type { PodmanApi } from "../../lib/podman/PodmanApi.ts";
import { BoundedQueue } from "../../lib/logs/BoundedQueue.ts";
import { LibpodLogDecoder } from "../../lib/logs/LibpodLogDecoder.ts";
import { K8sFileLogParser } from "../../lib/logs/K8sFileLogParser.ts";
import { isRfc3339, logTimestamp, rfc3339Nano } from "../../lib/logs/logTimestamp.ts";

describe("log timestamps", () => {
  test("RFC 3339 in UTC with nine fractional digits", () => {
    const ms = Date.UTC(2026, 10, 25, 16, 0, 0, 123);
    expect(rfc3339Nano(ms, 456789)).toBe("2026-11-25T16:00:00.123456789Z");
    expect(rfc3339Nano(ms, 0)).toBe("2026-11-25T16:00:00.123000000Z");
    expect(rfc3339Nano(ms, 5_000_000)).toBe("2026-11-25T16:00:00.123999999Z");
  });

  test("lines stamped in the same millisecond keep their order", () => {
    const at = new Date(Date.UTC(2026, 10, 25, 16, 0, 0, 1));
    const stamps = Array.from({ length: 1000 }, () => logTimestamp(at));
    expect(new Set(stamps).size).toBe(1000);
    // Ascending, except at most once where the counter wraps (once per million lines).
    const descents = stamps.filter((s, i) => i > 0 && s < stamps[i - 1]!).length;
    expect(descents).toBeLessThanOrEqual(1);
    for (const s of stamps) expect(s.startsWith("2026-11-25T16:00:00.001")).toBe(true);
  });

  test("an invalid date is stamped now instead of failing", () => {
    const stamp = logTimestamp(new Date(Number.NaN));
    expect(isRfc3339(stamp)).toBe(true);
    expect(Math.abs(Date.parse(stamp.slice(0, 23) + "Z") - Date.now())).toBeLessThan(60_000);
  });

  test("RFC 3339 recognition", () => {
    for (const ok of ["2026-11-25T16:00:00Z", "2026-11-25T16:00:00.123456789Z", "2026-11-25T16:00:00.5+02:00", "2026-11-25t16:00:00z"]) {
      expect(isRfc3339(ok)).toBe(true);
    }
    for (const bad of ["", "yesterday", "2026-11-25", "2026-11-25 16:00:00Z", "2026-13-25T16:00:00Z", "2026-11-25T16:00:00.1234567890Z", "1700000000"]) {
      expect(isRfc3339(bad)).toBe(false);
    }
  });
});

describe("BoundedQueue", () => {
  test("evicts the oldest items when full and keeps FIFO order", () => {
    const q = new BoundedQueue<number>(3);
    expect([1, 2, 3].map((n) => q.push(n))).toEqual([0, 0, 0]);
    expect(q.push(4)).toBe(1);
    expect(q.push(5)).toBe(1);
    expect(q.length).toBe(3);
    expect(q.take(2)).toEqual([3, 4]);
    q.push(6);
    q.push(7);
    expect(q.take(10)).toEqual([5, 6, 7]);
    expect(q.length).toBe(0);
    expect(q.take(1)).toEqual([]);
  });

  test("clear reports how many items it discarded", () => {
    const q = new BoundedQueue<string>(10);
    for (const s of ["a", "b", "c"]) q.push(s);
    expect(q.clear()).toBe(3);
    expect(q.length).toBe(0);
  });

  test("rejects a capacity that is not a positive integer", () => {
    expect(() => new BoundedQueue(0)).toThrow(/positive integer/);
    expect(() => new BoundedQueue(1.5)).toThrow(/positive integer/);
  });
});

function frame(stream: number, payload: string | Buffer): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

describe("LibpodLogDecoder", () => {
  const T = "2026-11-25T16:32:01Z";
  const SECONDS = Date.UTC(2026, 10, 25, 16, 32, 1) / 1000;

  test("splits multiplexed frames into stdout and stderr lines with their second", () => {
    const d = new LibpodLogDecoder();
    const out = d.push(Buffer.concat([frame(1, `${T} out\n`), frame(2, `${T} err\n`)]));
    expect(out).toEqual([
      { stream: "stdout", text: "out", seconds: SECONDS },
      { stream: "stderr", text: "err", seconds: SECONDS },
    ]);
  });

  test("frames cut anywhere by the transport, even inside the header or a UTF-8 character", () => {
    const bytes = Buffer.concat([frame(1, `${T} héllo wörld\n`), frame(2, `${T} ✓ done\n`), frame(1, `${T} tty line\r\n`)]);
    for (let cut = 1; cut < bytes.length; cut += 3) {
      const d = new LibpodLogDecoder();
      const out = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
      expect(out.map((e) => `${e.stream}:${e.text}`)).toEqual(["stdout:héllo wörld", "stderr:✓ done", "stdout:tty line"]);
    }
  });

  test("partial frames of one long line are joined; the line keeps its first frame's second", () => {
    const d = new LibpodLogDecoder();
    const out = d.push(Buffer.concat([frame(1, `${T} first half `), frame(2, `${T} other\n`), frame(1, `2026-11-25T16:32:02Z second half\n`)]));
    expect(out).toEqual([
      { stream: "stderr", text: "other", seconds: SECONDS },
      { stream: "stdout", text: "first half second half", seconds: SECONDS },
    ]);
  });

  test("a line that never ends is cut at maxLineBytes; the rest is flushed by end()", () => {
    const d = new LibpodLogDecoder(10);
    const out = d.push(frame(1, `${T} ${"x".repeat(25)}`));
    expect(out.map((e) => e.text)).toEqual(["x".repeat(25)]);
    const d2 = new LibpodLogDecoder(100);
    expect(d2.push(frame(1, `${T} no newline`))).toEqual([]);
    expect(d2.end()).toEqual([{ stream: "stdout", text: "no newline", seconds: SECONDS }]);
  });

  test("a payload without a timestamp is kept whole", () => {
    const d = new LibpodLogDecoder();
    expect(d.push(frame(1, "plain words here\n"))).toEqual([{ stream: "stdout", text: "plain words here" }]);
  });

  test("several lines in one frame and empty lines", () => {
    const d = new LibpodLogDecoder();
    expect(d.push(frame(1, `${T} a\n\nb\n`)).map((e) => e.text)).toEqual(["a", "", "b"]);
  });
});

describe("K8sFileLogParser (podman's k8s-file log, read directly)", () => {
  const T = "2026-11-25T16:32:01.123456789+00:00";
  const MS = Date.UTC(2026, 10, 25, 16, 32, 1, 123);
  const parse = (p: K8sFileLogParser, text: string) => {
    const out: Array<{ stream: string; text: string; ms?: number }> = [];
    p.parse(text, (e) => out.push(e));
    return out;
  };

  test("full entries of stdout and stderr, with their time to the millisecond, any zone offset", () => {
    const out = parse(new K8sFileLogParser(), `${T} stdout F out\n${T} stderr F err\n2026-11-25T17:32:02.5+01:00 stdout F later\n`);
    expect(out).toEqual([
      { stream: "stdout", text: "out", ms: MS },
      { stream: "stderr", text: "err", ms: MS },
      { stream: "stdout", text: "later", ms: MS + 1377 },
    ]);
  });

  test("partial entries are joined per stream, keeping the first entry's time; empty lines and a TTY's \\r", () => {
    const p = new K8sFileLogParser();
    const first = parse(p, `${T} stdout P first half \n${T} stderr F other\n`);
    expect(first).toEqual([{ stream: "stderr", text: "other", ms: MS }]);
    const rest = parse(p, `2026-11-25T16:32:05.000000000+00:00 stdout F second half\r\n${T} stdout F\n${T} stdout F \n`);
    expect(rest).toEqual([
      { stream: "stdout", text: "first half second half", ms: MS },
      { stream: "stdout", text: "", ms: MS },
      { stream: "stdout", text: "", ms: MS },
    ]);
  });

  test("a line that never ends is cut at maxLineChars; end() gives the rest; reset() forgets it", () => {
    const p = new K8sFileLogParser(10);
    expect(parse(p, `${T} stdout P ${"x".repeat(6)}\n${T} stdout P ${"y".repeat(6)}\n`).map((e) => e.text)).toEqual(["xxxxxxyyyyyy"]);
    expect(parse(p, `${T} stdout P tail\n`)).toEqual([]);
    const ended: string[] = [];
    p.end((e) => ended.push(e.text));
    expect(ended).toEqual(["tail"]);
    parse(p, `${T} stdout P gone\n`);
    p.reset();
    expect(parse(p, `${T} stdout F new\n`).map((e) => e.text)).toEqual(["new"]);
  });

  test("UTF-8 text and spaces in the text are kept; a torn or stampless entry is skipped or has no time", () => {
    const out = parse(new K8sFileLogParser(), `${T} stdout F héllo  wörld ✓\ngarbage\nnot-a-time stdout F text\n`);
    expect(out).toEqual([
      { stream: "stdout", text: "héllo  wörld ✓", ms: MS },
      { stream: "stdout", text: "text", ms: undefined },
    ]);
  });
});

describe("ContainerLogFollower reading a k8s-file log (a file written by the test, Podman faked)", () => {
  const stamp = (i: number) => new Date(Date.now() + i).toISOString().replace("Z", "000000+00:00");
  const entry = (i: number, text: string, stream = "stdout") => `${stamp(i)} ${stream} F ${text}\n`;

  function setup(file: string) {
    const lines: Array<{ msg: string; stream: unknown }> = [];
    let exists = true;
    const api = {
      call: async () => ({ status: exists ? 200 : 404, text: JSON.stringify({ HostConfig: { LogConfig: { Type: "k8s-file", Path: file } } }) }),
      stream: async () => {
        throw new Error("the API's logs endpoint is not used for a k8s-file log");
      },
    };
    const shipper: LogShipper = {
      push: (line) => void lines.push({ msg: line.msg, stream: line.fields.stream }),
      flush: async () => undefined,
      close: async () => undefined,
      stats: () => ({ sent: 0, dropped: 0, pending: 0 }),
    };
    const follower = new ContainerLogFollower({
      container: { id: "c1", serviceId: "s1" },
      api: api as unknown as PodmanApi,
      shipper,
      sinceSeconds: Math.floor(Date.now() / 1000) - 60,
      position: { linesInSecond: 0 },
      stamps: new MonotonicStamps(),
      store: LogPositionStore.open(),
      reconnect: { attempts: Infinity, baseMs: 50, maxMs: 100 },
    });
    return { lines, follower, gone: () => (exists = false) };
  }

  test("appends, a replaced file (conmon's rotation), a truncated one, then removal: every line once, then gone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "k8s-file-"));
    const file = join(dir, "ctr.log");
    writeFileSync(file, entry(0, "a1") + entry(1, "a2", "stderr"));
    const { lines, follower, gone } = setup(file);
    try {
      const until = async (n: number) => {
        for (let i = 0; i < 300 && lines.length < n; i++) await Bun.sleep(10);
        expect(lines.map((l) => l.msg)).toHaveLength(n);
      };
      await until(2);
      expect(lines).toEqual([
        { msg: "a1", stream: "stdout" },
        { msg: "a2", stream: "stderr" },
      ]);
      expect(follower.state).toBe("following");
      appendFileSync(file, `${stamp(2)} stdout P a3 first \n`);
      await Bun.sleep(100);
      appendFileSync(file, entry(3, "half"));
      await until(3);
      // Rotation: conmon writes a new file and renames it over the old one.
      writeFileSync(`${file}.tmp`, entry(4, "b1"));
      renameSync(`${file}.tmp`, file);
      await until(4);
      appendFileSync(file, entry(5, "b2"));
      await until(5);
      // Truncated in place: read again from its start.
      truncateSync(file, 0);
      await Bun.sleep(1200); // the once-a-second look notices the shorter file
      appendFileSync(file, entry(6, "c1"));
      await until(6);
      expect(lines.map((l) => l.msg)).toEqual(["a1", "a2", "a3 first half", "b1", "b2", "c1"]);
      gone();
      rmSync(file);
      for (let i = 0; i < 300 && follower.state !== "gone"; i++) await Bun.sleep(10);
      expect(follower.state).toBe("gone");
    } finally {
      await follower.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});

describe("ContainerLogFollower resuming a k8s-file log after a restart", () => {
  const S0 = Math.floor(Date.now() / 1000) - 30;
  const at = (second: number, ms: number) => new Date((S0 + second) * 1000 + ms).toISOString().replace("Z", "000000+00:00");
  const entry = (second: number, ms: number, text: string, tag = "F") => `${at(second, ms)} stdout ${tag} ${text}\n`;

  function follow(file: string, store: LogPositionStore, position: LogPosition) {
    const lines: Array<{ msg: string; mark: unknown }> = [];
    const api = { call: async () => ({ status: 200, text: JSON.stringify({ HostConfig: { LogConfig: { Type: "k8s-file", Path: file } } }) }) };
    const shipper: LogShipper = {
      push: (line) => void lines.push({ msg: line.msg, mark: line.mark }),
      flush: async () => undefined,
      close: async () => undefined,
      stats: () => ({ sent: 0, dropped: 0, pending: 0 }),
    };
    store.track("c1", { serviceId: "s1" }, S0 - 30);
    const follower = new ContainerLogFollower({
      container: { id: "c1", serviceId: "s1" },
      api: api as unknown as PodmanApi,
      shipper,
      sinceSeconds: S0 - 30,
      position,
      stamps: new MonotonicStamps(),
      store,
      reconnect: { attempts: Infinity, baseMs: 50, maxMs: 100 },
    });
    const until = async (n: number) => {
      for (let i = 0; i < 300 && lines.length < n; i++) await Bun.sleep(10);
      expect(lines).toHaveLength(n);
    };
    return { lines, follower, until };
  }

  test("reads from where the acknowledged second starts in the file, not from its start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "k8s-resume-"));
    const file = join(dir, "ctr.log");
    const part1 = entry(0, 1, "a1") + entry(0, 2, "a2") + entry(1, 1, "a3");
    writeFileSync(file, part1);
    const store = LogPositionStore.open();
    try {
      const first = follow(file, store, { linesInSecond: 0 });
      await first.until(3);
      appendFileSync(file, entry(2, 1, "b1") + entry(2, 2, "b2") + entry(2, 3, "b3") + entry(3, 1, "c1"));
      await first.until(7);
      first.follower.acknowledged(first.lines[4]!.mark); // b2
      await first.follower.stop();
      const record = store.get("c1")!;
      expect(record).toMatchObject({ seconds: S0 + 2, linesInSecond: 2, file: { ino: statSync(file).ino, offset: Buffer.byteLength(part1) } });

      // The bytes before that offset now say something else (same length, same inode): a read from
      // the file's start would count this line of the resumed second and ship b2 again.
      const head = `${at(2, 0)} stdout F `;
      writeSync(openSync(file, "r+"), head + "x".repeat(Buffer.byteLength(part1) - head.length - 1) + "\n", 0);
      const second = follow(file, store, { seconds: record.seconds, linesInSecond: record.linesInSecond, file: record.file });
      await second.until(2);
      await Bun.sleep(200);
      expect(second.lines.map((l) => l.msg)).toEqual(["b3", "c1"]);
      await second.follower.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a read that began on a partial line is no place to resume from: the offset stays where a whole line began", async () => {
    const dir = mkdtempSync(join(tmpdir(), "k8s-resume-"));
    const file = join(dir, "ctr.log");
    writeFileSync(file, entry(0, 1, "a1") + entry(1, 1, "long ", "P"));
    const store = LogPositionStore.open();
    try {
      const first = follow(file, store, { linesInSecond: 0 });
      await first.until(1);
      appendFileSync(file, entry(1, 2, "line") + entry(2, 1, "b1"));
      await first.until(3);
      expect(first.lines.map((l) => l.msg)).toEqual(["a1", "long line", "b1"]);
      first.follower.acknowledged(first.lines[2]!.mark);
      await first.follower.stop();
      expect(store.get("c1")).toMatchObject({ seconds: S0 + 2, linesInSecond: 1, file: { offset: 0 } });
      const second = follow(file, store, { seconds: S0 + 2, linesInSecond: 1, file: store.get("c1")!.file });
      appendFileSync(file, entry(2, 2, "b2"));
      await second.until(1);
      await Bun.sleep(200);
      expect(second.lines.map((l) => l.msg)).toEqual(["b2"]);
      await second.follower.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
