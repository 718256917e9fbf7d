import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { configureLogging } from "../../lib/logger.ts";
import { ContainerLogStreamer } from "../../lib/logs/ContainerLogStreamer.ts";
import { LogPositionStore } from "../../lib/logs/LogPositionStore.ts";
import type { LogOrigin } from "../../lib/logs/LogShipper.ts";
import { NullShipper } from "../../lib/logs/NullShipper.ts";
import { logShipperFor } from "../../lib/logs/logShipperFor.ts";
import { VictoriaLogsShipper, type VictoriaLogsShipperOptions } from "../../lib/logs/VictoriaLogsShipper.ts";
import { forgetSecret, registerSecret } from "../../lib/redact.ts";
import { cleanupPodman, podman, startPodmanService, TEST_IMAGE, uniquePrefix, waitFor, type PodmanService } from "../support/podman.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";
import { tempDir } from "../support/agentBinary.ts";

const FAST_RETRY = { attempts: 3, baseMs: 20, maxMs: 100 };
const logLines: string[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
const shippers: VictoriaLogsShipper[] = [];
const receivers: TestVictoriaLogs[] = [];
const streamers: ContainerLogStreamer[] = [];

function shipper(options: VictoriaLogsShipperOptions): VictoriaLogsShipper {
  const s = new VictoriaLogsShipper({ retry: FAST_RETRY, ...options });
  shippers.push(s);
  return s;
}

async function receiver(): Promise<TestVictoriaLogs> {
  const r = await new TestVictoriaLogs().start();
  receivers.push(r);
  return r;
}

function build(n: number, fields: Record<string, string | number> = { build_id: "b1", service_id: "s1", log_type: "build" }) {
  return Array.from({ length: n }, (_, i) => ({ msg: `line ${i}`, fields }));
}

beforeAll(() => {
  process.on("unhandledRejection", onUnhandled);
  configureLogging({ sink: { write: (line) => logLines.push(line) } });
});
afterEach(async () => {
  await Promise.all(streamers.splice(0).map((s) => s.close()));
  await Promise.all(shippers.splice(0).map((s) => s.close()));
  await Promise.all(receivers.splice(0).map((r) => r.stop()));
});
afterAll(() => {
  process.off("unhandledRejection", onUnhandled);
  configureLogging({ sink: { write: (line) => process.stderr.write(line + "\n") } });
});

describe("the test receiver enforces the /insert/jsonline contract", () => {
  test("a line without _time, a bad _time, a non-object, GET and a bad gzip body are rejected with the reason", async () => {
    const r = await receiver();
    const post = (body: string | Uint8Array, headers: Record<string, string> = {}) => fetch(`${r.url}/insert/jsonline`, { method: "POST", body, headers });

    let res = await post(`{"_msg":"ok","_time":"2026-11-25T16:00:00.123456789Z"}\n{"_msg":"no time"}\n`);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("line 2: missing _time");

    res = await post(`{"_msg":"x","_time":"yesterday"}`);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("not RFC 3339");

    res = await post(`["_msg","_time"]`);
    expect(res.status).toBe(400);
    res = await post(`{"_time":"2026-11-25T16:00:00Z"}`);
    expect(await res.text()).toContain("missing _msg");
    res = await post("not json");
    expect(res.status).toBe(400);
    res = await post("plain text", { "content-encoding": "gzip" });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("gunzip");
    res = await fetch(`${r.url}/insert/jsonline`);
    expect(res.status).toBe(405);

    expect(r.lines).toEqual([]);
    res = await post(Bun.gzipSync(Buffer.from(`{"_msg":"ok","_time":"2026-11-25T16:00:00.123456789Z","service_id":"s"}\n`)), { "content-encoding": "gzip" });
    expect(res.status).toBe(204);
    expect(r.lines).toEqual([{ _msg: "ok", _time: "2026-11-25T16:00:00.123456789Z", service_id: "s" }]);
  });
});

describe("VictoriaLogsShipper", () => {
  test("batches of at most maxBatchLines, each line with _msg, _time and its fields, gzip, stream fields", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, maxBatchLines: 50 });
    const lines = build(120);
    for (const line of lines) s.push(line);
    await r.waitForLines(120);

    expect(r.batches.length).toBeGreaterThanOrEqual(3);
    for (const batch of r.batches) {
      expect(batch.lines.length).toBeLessThanOrEqual(50);
      expect(batch.gzip).toBe(true);
      expect(batch.headers["content-encoding"]).toBe("gzip");
      expect(batch.query.get("_stream_fields")).toBe("log_type,service_id,deployment_id,build_id");
    }
    expect(r.lines.map((l) => l._msg)).toEqual(lines.map((l) => l.msg));
    for (const line of r.lines) {
      expect(line._time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/);
      expect(line).toMatchObject({ build_id: "b1", service_id: "s1", log_type: "build" });
    }
    // Push order survives in _time, even for lines stamped in the same millisecond.
    const times = r.lines.map((l) => l._time);
    expect([...times].sort()).toEqual(times);
    await s.flush(); // the receiver records a batch before the shipper has read its answer
    expect(s.stats()).toMatchObject({ pushed: 120, sent: 120, dropped: 0, pending: 0 });
  });

  test("lines that piled up while a request was in flight go together, at most maxBatchLines (default 4000) to a request", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, maxBatchLines: 1000 });
    for (let i = 0; i < 2500; i++) s.push({ msg: `n${i}`, fields: {} });
    await s.flush();
    expect(r.batches.map((b) => b.lines.length)).toEqual([1000, 1000, 500]);
    expect(r.lines.map((l) => l._msg)).toEqual(Array.from({ length: 2500 }, (_, i) => `n${i}`));
    const d = shipper({ endpoint: r.url });
    for (let i = 0; i < 9000; i++) d.push({ msg: `d${i}`, fields: {} });
    await d.flush();
    expect(r.batches.slice(3).map((b) => b.lines.length)).toEqual([4000, 4000, 1000]);
  });

  test("a flood: up to maxInFlight requests at once, a second only while a full batch waits; marks still come back in push order", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, maxBatchLines: 100, maxInFlight: 2 });
    // The first request is the slowest: its answer comes after the second's.
    const internals = s as unknown as { post: (body: Uint8Array) => Promise<void> };
    const post = internals.post.bind(s);
    let calls = 0;
    let inFlight = 0;
    let most = 0;
    internals.post = async (body) => {
      const n = calls++;
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        if (n === 0) await Bun.sleep(300);
        await post(body);
      } finally {
        inFlight--;
      }
    };
    const o = recordingOrigin();
    for (let i = 0; i < 450; i++) s.push({ msg: `n${i}`, fields: {}, origin: o, mark: i });
    await s.flush();
    expect(most).toBe(2);
    expect(o.acked).toEqual(Array.from({ length: 450 }, (_, i) => i));
    expect(r.lines.map((l) => l._msg).sort()).toEqual(Array.from({ length: 450 }, (_, i) => `n${i}`).sort());
    // At a trickle, one request at a time.
    most = 0;
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 60; j++) s.push({ msg: `t${i}.${j}`, fields: {} });
      await Bun.sleep(20);
    }
    await s.flush();
    expect(most).toBe(1);
  });

  test("a partial batch is sent by the timer without flush(); gzip can be turned off", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, gzip: false, streamFields: [] });
    for (const line of build(7)) s.push(line);
    await r.waitForLines(7);
    expect(r.batches.map((b) => b.lines.length)).toEqual([7]);
    expect(r.batches[0]!.gzip).toBe(false);
    expect(r.batches[0]!.query.has("_stream_fields")).toBe(false);
  });

  test("explicit times are kept; fields cannot overwrite _msg or _time", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url });
    s.push({ msg: "at a given time", time: new Date("2026-11-25T16:00:00.123Z"), fields: { _msg: "forged", _time: "forged", service_id: "s" } });
    await s.flush();
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]!._msg).toBe("at a given time");
    expect(r.lines[0]!._time).toStartWith("2026-11-25T16:00:00.123");
  });

  test("a registered secret never reaches VictoriaLogs", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url });
    const secret = `tok-${crypto.randomUUID()}`;
    registerSecret(secret);
    try {
      s.push({ msg: `cloning with token ${secret} from https://x-access-token:${secret}@github.com/o/r`, fields: { build_id: "b" } });
      await s.flush();
    } finally {
      forgetSecret(secret);
    }
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]!._msg).toContain("cloning with token ***");
    expect(JSON.stringify(r.lines)).not.toContain(secret);
  });

  test("a line pushed just as the sender finds the buffer empty is still sent by the flush in progress", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, flushIntervalMs: 60_000, flushTimeoutMs: 2000 });
    // The push lands between the sender's last look at the buffer and flush()'s next one (a
    // container's log chunk arriving then). It used to leave flush() spinning on microtasks —
    // the event loop stalled — until flushTimeoutMs, with the line unsent.
    const internals = s as unknown as { drain: () => Promise<void> };
    const drain = internals.drain.bind(s);
    let late = true;
    internals.drain = async () => {
      await drain();
      if (late) {
        late = false;
        s.push({ msg: "late", fields: {} });
      }
    };
    s.push({ msg: "first", fields: {} });
    await s.flush();
    expect(r.lines.map((l) => l._msg)).toEqual(["first", "late"]);
    expect(s.stats()).toMatchObject({ sent: 2, pending: 0 });
  });

  test("a slow endpoint never blocks push(): 10k lines, counters add up, close() is bounded", async () => {
    const r = await receiver();
    r.delayMs = 3000;
    const s = shipper({ endpoint: r.url, maxBufferLines: 1000, requestTimeoutMs: 20_000, flushTimeoutMs: 500 });
    for (let i = 0; i < 10_000; i++) s.push({ msg: `line ${i}`, fields: { service_id: "s", log_type: "build" } });
    const during = s.stats();
    expect(during.pushed).toBe(10_000);
    expect(during.sent + during.dropped + during.pending).toBe(10_000);
    expect(during.dropped).toBeGreaterThanOrEqual(10_000 - 1000 - 50);
    expect(during.pending).toBeLessThanOrEqual(1000 + 50);

    await r.waitFor(() => r.requestCount >= 1);
    await s.flush(); // gives up after flushTimeoutMs: the endpoint is still chewing on the first batch
    expect(s.stats().pending).toBeGreaterThan(0);
    await s.close();
    const after = s.stats();
    expect(after.pending).toBe(0);
    expect(after.sent + after.dropped).toBe(10_000);
    expect(logLines.some((l) => l.includes("log buffer full") && l.includes("dropping the oldest lines"))).toBe(true);
    expect(unhandled).toEqual([]);
  }, 20_000);

  test("when the buffer overflows the oldest lines are dropped and the newest delivered", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, maxBufferLines: 100 });
    for (let i = 0; i < 300; i++) s.push({ msg: `n${i}`, fields: { service_id: "s" } });
    await s.flush();
    expect(r.lines.map((l) => l._msg)).toEqual(Array.from({ length: 100 }, (_, i) => `n${i + 200}`));
    expect(s.stats()).toMatchObject({ pushed: 300, sent: 100, dropped: 200, pending: 0 });
  });

  test("a dead endpoint: lines dropped and counted, logged, no throw, no unhandled rejection, close() bounded", async () => {
    const r = await receiver();
    await r.stop(); // nobody listens on the port any more: connection refused
    const s = shipper({ endpoint: r.url });
    logLines.length = 0;
    for (const line of build(120)) s.push(line);
    await s.flush();
    await s.close();
    s.push({ msg: "after close", fields: {} });
    expect(s.stats()).toMatchObject({ pushed: 121, sent: 0, dropped: 121, pending: 0 });
    expect(s.stats().retries).toBeGreaterThan(0);
    expect(logLines.some((l) => /dropped a batch of \d+ lines: POST .* failed: ECONNREFUSED/.test(l))).toBe(true);
    await Bun.sleep(50);
    expect(unhandled).toEqual([]);
  });

  test("a failing endpoint (503 twice, then OK) gets the batch retried and delivered", async () => {
    const r = await receiver();
    r.failNext(2, 503);
    const s = shipper({ endpoint: r.url });
    for (const line of build(10)) s.push(line);
    await s.flush();
    expect(r.rejections.map((x) => x.status)).toEqual([503, 503]);
    expect(r.lines).toHaveLength(10);
    expect(s.stats()).toMatchObject({ sent: 10, dropped: 0, retries: 2 });
  });

  test("a 4xx answer is not retried: the batch is dropped and counted", async () => {
    const r = await receiver();
    r.failNext(1, 400);
    const s = shipper({ endpoint: r.url });
    for (const line of build(5)) s.push(line);
    await s.flush();
    expect(r.requestCount).toBe(1);
    expect(s.stats()).toMatchObject({ sent: 0, dropped: 5, retries: 0 });
  });

  test("VictoriaLogs down, then back on the same port: later lines are delivered", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url, retry: { attempts: 1, baseMs: 1, maxMs: 1 } });
    await r.stop();
    for (const line of build(3)) s.push(line);
    await s.flush();
    expect(s.stats().dropped).toBe(3);
    await r.restart();
    s.push({ msg: "back again", fields: { service_id: "s" } });
    await s.flush();
    expect(r.lines.map((l) => l._msg)).toEqual(["back again"]);
  });

  test("an endpoint with a path prefix and credentials: path kept, credentials sent as Basic auth, not in the URL", async () => {
    const r = await receiver();
    const s = shipper({ endpoint: r.url.replace("http://", "http://logs:pa55word@") + "/" });
    expect(s.url).toBe(`${r.url}/insert/jsonline?_stream_fields=log_type%2Cservice_id%2Cdeployment_id%2Cbuild_id`);
    s.push({ msg: "hello", fields: {} });
    await s.flush();
    expect(r.batches[0]!.headers.authorization).toBe(`Basic ${Buffer.from("logs:pa55word").toString("base64")}`);
    expect(() => new VictoriaLogsShipper({ endpoint: "ftp://x" })).toThrow(/http/);
    expect(() => new VictoriaLogsShipper({ endpoint: r.url, batchLines: 0 })).toThrow(/batchLines/);
  });
});

/** An origin that records what the shipper told it. */
function recordingOrigin(): LogOrigin & { acked: unknown[]; droppedCount: number } {
  return {
    acked: [],
    droppedCount: 0,
    acknowledged(mark) {
      this.acked.push(mark);
    },
    dropped(count) {
      this.droppedCount += count;
    },
  };
}

describe("what became of each line: acknowledgements, drops, bounded memory", () => {
  test("marks come back in push order only after a 2xx; a batch that keeps failing is reported dropped to its origin", async () => {
    const r = await receiver();
    r.failNext(3, 503); // FAST_RETRY: 3 attempts, so the first batch is given up
    const s = shipper({ endpoint: r.url, batchLines: 5 });
    const a = recordingOrigin();
    const b = recordingOrigin();
    for (let i = 0; i < 5; i++) s.push({ msg: `lost ${i}`, fields: {}, origin: i % 2 ? a : b, mark: i });
    await s.flush();
    expect(a.acked).toEqual([]);
    expect(b.acked).toEqual([]);
    expect([a.droppedCount, b.droppedCount]).toEqual([2, 3]);
    for (let i = 5; i < 12; i++) s.push({ msg: `kept ${i}`, fields: {}, origin: a, mark: i });
    await s.flush();
    expect(a.acked).toEqual([5, 6, 7, 8, 9, 10, 11]);
    expect(r.lines.map((l) => l._msg)).toEqual([5, 6, 7, 8, 9, 10, 11].map((i) => `kept ${i}`));
  });

  test("the buffer is bounded in characters too: the oldest lines are evicted and reported to their origin", async () => {
    const r = await receiver();
    r.delayMs = 2000;
    const s = shipper({ endpoint: r.url, maxBufferChars: 50_000, requestTimeoutMs: 10_000, flushTimeoutMs: 200 });
    const o = recordingOrigin();
    const big = "x".repeat(1000);
    let most = 0;
    for (let i = 0; i < 500; i++) {
      s.push({ msg: `${i} ${big}`, fields: {}, origin: o, mark: i });
      most = Math.max(most, s.stats().pendingChars);
    }
    expect(most).toBeLessThanOrEqual(50_000);
    const stats = s.stats();
    expect(stats.dropped).toBeGreaterThan(400);
    expect(o.droppedCount).toBe(stats.dropped);
  });

  test("a source that waits for room() is never evicted: every line arrives through a slow endpoint", async () => {
    const r = await receiver();
    r.delayMs = 30;
    const s = shipper({ endpoint: r.url, maxBufferLines: 100, flushIntervalMs: 50 });
    let waited = 0;
    for (let i = 0; i < 1000; i++) {
      s.push({ msg: `n${i}`, fields: {} });
      expect(s.stats().dropped).toBe(0);
      const room = s.room();
      if (room) {
        waited++;
        await room;
      }
    }
    await s.flush();
    expect(waited).toBeGreaterThan(0);
    expect(s.stats()).toMatchObject({ sent: 1000, dropped: 0 });
    expect(r.lines.map((l) => l._msg)).toEqual(Array.from({ length: 1000 }, (_, i) => `n${i}`));
  });
});

describe("without --logs-endpoint", () => {
  test("NullShipper counts lines as dropped and never claims to send", async () => {
    const s = logShipperFor(undefined);
    expect(s).toBeInstanceOf(NullShipper);
    for (const line of build(4)) s.push(line);
    await s.flush();
    await s.close();
    expect(s.stats()).toEqual({ sent: 0, dropped: 4, pending: 0 });
    const real = logShipperFor("http://127.0.0.1:9");
    expect(real).toBeInstanceOf(VictoriaLogsShipper);
    await real.close();
  });
});

describe("container logs", () => {
  const prefix = uniquePrefix("logs");
  const serviceId = `svc-${prefix}`;
  let service: PodmanService;

  beforeAll(async () => {
    service = await startPodmanService();
  });
  afterAll(async () => {
    await cleanupPodman(prefix);
    await service?.stop();
  });

  async function container(name: string, script: string): Promise<string> {
    const out = await podman(["run", "-d", "--name", `${prefix}-${name}`, "--label", `techulus.service.id=${serviceId}`, TEST_IMAGE, "sh", "-c", script]);
    return out.trim();
  }

  async function streaming(options: { reconnectMaxMs?: number; positions?: LogPositionStore; r?: TestVictoriaLogs; logFiles?: boolean } = {}) {
    const r = options.r ?? (await receiver());
    const s = shipper({ endpoint: r.url, flushIntervalMs: 100 });
    const streamer = new ContainerLogStreamer({
      socketPath: service.socketPath,
      shipper: s,
      reconnect: { attempts: Infinity, baseMs: 100, maxMs: options.reconnectMaxMs ?? 1000 },
      positions: options.positions,
      logFiles: options.logFiles,
    });
    streamers.push(streamer);
    return { r, s, streamer };
  }

  const positionsDir = tempDir("log-positions-it-");
  afterAll(() => positionsDir.cleanup());

  test("a restart resumes from the acknowledged position: lines written meanwhile, and the last lines of a container that exited, arrive exactly once", async () => {
    const file = `${positionsDir.path}/resume.json`;
    const first = await streaming({ positions: LogPositionStore.open(file) });
    const id = await container("resume", 'i=0; while [ $i -lt 60 ]; do echo "n$i"; i=$((i+1)); sleep 0.05; done');
    first.streamer.sync([{ id, serviceId, deploymentId: "dep-r" }]);
    await first.r.waitForLines(10, 20_000);
    await first.streamer.close();
    await first.s.close();
    const shippedBefore = first.r.lines.length;
    expect(shippedBefore).toBeLessThan(60);
    await waitFor(async () => (await podman(["inspect", "-f", "{{.State.Status}}", id])).trim() === "exited", 30_000, "the container to exit");

    const second = await streaming({ positions: LogPositionStore.open(file), r: first.r });
    await second.streamer.resume(20_000); // the container is not running: only the catch-up reads it
    await second.s.flush();
    expect(first.r.lines.map((l) => l._msg)).toEqual(Array.from({ length: 60 }, (_, i) => `n${i}`));
    const times = first.r.lines.map((l) => l._time);
    expect([...times].sort()).toEqual(times);
  }, 60_000);

  test("lines refused by the endpoint are not acknowledged: the next start ships them", async () => {
    const file = `${positionsDir.path}/refused.json`;
    const first = await streaming({ positions: LogPositionStore.open(file) });
    const id = await container("refused", 'echo a1; echo a2; sleep 2; echo a3; sleep 60');
    first.r.failNext(1000, 500);
    first.streamer.sync([{ id, serviceId }]);
    await first.r.waitFor(() => first.r.rejections.length > 0, 20_000);
    await first.streamer.close();
    await first.s.close();
    expect(first.r.lines).toEqual([]);

    const r = await receiver();
    const second = await streaming({ positions: LogPositionStore.open(file), r });
    await second.streamer.resume(20_000);
    second.streamer.sync([{ id, serviceId }]);
    await r.waitForLines(3, 20_000);
    await second.s.flush();
    expect(r.lines.map((l) => l._msg)).toEqual(["a1", "a2", "a3"]);
  }, 60_000);

  test("a container removed while the agent was down is forgotten quietly on resume", async () => {
    const file = `${positionsDir.path}/removed.json`;
    const store = LogPositionStore.open(file);
    const id = await container("removed", "echo x");
    store.track(id, { serviceId }, Math.floor(Date.now() / 1000));
    store.save();
    await podman(["rm", "-f", "-t", "0", id]);
    logLines.length = 0;
    const { streamer } = await streaming({ positions: LogPositionStore.open(file) });
    await streamer.resume(20_000);
    await waitFor(() => streamer.positions.ids().length === 0, 10_000, "the removed container to be forgotten");
    expect(logLines.filter((l) => l.startsWith("[logs]"))).toEqual([]);
  }, 30_000);

  test("stdout and stderr of a real container arrive with deployment_id, service_id, stream and log_type", async () => {
    const { r, streamer } = await streaming();
    const id = await container("oe", "echo out; echo err >&2; sleep 30");
    streamer.sync([{ id, serviceId, deploymentId: "dep-1" }]);
    await r.waitForLines(2, 20_000);
    const byStream = [...r.lines].sort((a, b) => String(a.stream).localeCompare(String(b.stream)));
    expect(byStream).toMatchObject([
      { _msg: "err", stream: "stderr", deployment_id: "dep-1", service_id: serviceId, log_type: "container" },
      { _msg: "out", stream: "stdout", deployment_id: "dep-1", service_id: serviceId, log_type: "container" },
    ]);
    expect(r.batches[0]!.query.get("_stream_fields")).toContain("deployment_id");
    expect(streamer.following()).toEqual([{ id, state: "following" }]);
  }, 30_000);

  test("read through the API's logs endpoint instead of the file (another log driver): the same lines, resumed without duplicates", async () => {
    const { r, streamer } = await streaming({ logFiles: false });
    const id = await container("api", 'i=0; while [ $i -lt 30 ]; do echo "n$i"; echo "e$i" >&2; i=$((i+1)); sleep 0.05; done; sleep 60');
    const ref = { id, serviceId, deploymentId: "dep-api" };
    streamer.sync([ref]);
    await r.waitForLines(10, 20_000);
    streamer.sync([]);
    await Bun.sleep(300);
    streamer.sync([ref]);
    await r.waitForLines(60, 20_000);
    await Bun.sleep(300);
    const of = (stream: string) => r.lines.filter((l) => l.stream === stream).map((l) => l._msg);
    expect(of("stdout")).toEqual(Array.from({ length: 30 }, (_, i) => `n${i}`));
    expect(of("stderr")).toEqual(Array.from({ length: 30 }, (_, i) => `e${i}`));
    expect(r.lines[0]).toMatchObject({ deployment_id: "dep-api", service_id: serviceId, log_type: "container" });
  }, 30_000);

  test("the follower of a removed container stops quietly; sync drops it", async () => {
    const { r, streamer } = await streaming();
    const id = await container("gone", "echo bye; sleep 30");
    streamer.sync([{ id, serviceId }]); // no deployment: the line simply has no deployment_id
    await r.waitForLines(1, 20_000);
    expect(r.lines[0]).toMatchObject({ _msg: "bye", service_id: serviceId, stream: "stdout", log_type: "container" });
    expect(r.lines[0]).not.toHaveProperty("deployment_id");
    logLines.length = 0;
    await podman(["rm", "-f", "-t", "0", id]);
    await waitFor(() => streamer.following()[0]?.state === "gone", 20_000, "the follower to notice the container is gone");
    expect(logLines.filter((l) => l.startsWith("[logs]"))).toEqual([]);
    expect(r.lines.map((l) => l._msg)).toEqual(["bye"]);
    streamer.sync([]);
    expect(streamer.following()).toEqual([]);
    expect(unhandled).toEqual([]);
  }, 30_000);

  test("no duplicates and no gaps when a follower is stopped and started again, or podman's service restarts", async () => {
    const { r, streamer } = await streaming();
    const id = await container("seq", 'i=0; while [ $i -lt 100 ]; do echo "n$i"; i=$((i+1)); sleep 0.1; done; sleep 60');
    const ref = { id, serviceId, deploymentId: "dep-3" };
    streamer.sync([ref]);
    await r.waitForLines(10, 20_000);

    streamer.sync([]); // the follower stops; the container keeps logging
    await Bun.sleep(1500);
    streamer.sync([ref]);
    await r.waitForLines(40, 20_000);

    await service.stop(); // the stream breaks and reconnects fail until the service is back
    await Bun.sleep(1000);
    service = await startPodmanService(service.dir);
    await r.waitForLines(100, 40_000);
    await Bun.sleep(500); // a duplicate, if any, would arrive now
    expect(r.lines.map((l) => l._msg)).toEqual(Array.from({ length: 100 }, (_, i) => `n${i}`));
  }, 90_000);
});
