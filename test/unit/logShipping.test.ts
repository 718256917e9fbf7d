import { describe, expect, test } from "bun:test";
import { BoundedQueue } from "../../lib/logs/BoundedQueue.ts";
import { LibpodLogDecoder } from "../../lib/logs/LibpodLogDecoder.ts";
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
