import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { logDropsCheck } from "../../lib/doctor/logDropsCheck.ts";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { configureLogging, logger } from "../../lib/logger.ts";
import type { LogLine, LogShipper } from "../../lib/logs/LogShipper.ts";
import { shipAgentLog } from "../../lib/logs/shipAgentLog.ts";
import { LogPositionStore, logPositionsFile, readPositions } from "../../lib/logs/LogPositionStore.ts";
import { MonotonicStamps, rfc3339Nano } from "../../lib/logs/logTimestamp.ts";
import { tempDir } from "../support/agentBinary.ts";

const tmp = tempDir("log-positions-");
const logLines: string[] = [];
beforeAll(() => configureLogging({ sink: { write: (line) => logLines.push(line) } }));
afterAll(() => {
  configureLogging({ sink: { write: (line) => process.stderr.write(line + "\n") } });
  tmp.cleanup();
});

describe("MonotonicStamps", () => {
  test("never goes backwards: equal or earlier times get the last stamp plus a nanosecond", () => {
    const stamps = new MonotonicStamps();
    const seen = [1000, 1000, 999, 1005, 1002].map((ms) => stamps.next(ms));
    expect(seen).toEqual([
      { ms: 1000, subMsNanos: 0 },
      { ms: 1000, subMsNanos: 1 },
      { ms: 1000, subMsNanos: 2 },
      { ms: 1005, subMsNanos: 0 },
      { ms: 1005, subMsNanos: 1 },
    ]);
  });

  test("seeded with an earlier run's last stamp, a resumed line of the same second sorts after it", () => {
    const stamps = new MonotonicStamps({ ms: 5_500, subMsNanos: 7 });
    // A resumed line stamped at the start of its second (Podman's whole-second stamp).
    expect(stamps.next(5_000)).toEqual({ ms: 5_500, subMsNanos: 8 });
    expect(rfc3339Nano(5_500, 8) > rfc3339Nano(5_500, 7)).toBe(true);
  });

  test("a full millisecond of nanoseconds rolls over to the next millisecond", () => {
    const stamps = new MonotonicStamps({ ms: 1, subMsNanos: 999_999 });
    expect(stamps.next(0)).toEqual({ ms: 2, subMsNanos: 0 });
  });
});

describe("LogPositionStore", () => {
  test("acknowledged positions and drop counts survive a reopen", async () => {
    const file = join(tmp.path, "a.json");
    const store = LogPositionStore.open(file);
    store.track("c1", { serviceId: "s1", deploymentId: "d1" }, 100);
    store.track("c2", { serviceId: "s2" }, 100);
    store.acknowledge("c1", { seconds: 120, linesInSecond: 3, ms: 120_400, subMsNanos: 2 });
    store.acknowledge("c1", { seconds: 121, linesInSecond: 1, ms: 121_000, subMsNanos: 0 });
    store.dropped("c2", 5);
    store.acknowledge("unknown", { seconds: 1, linesInSecond: 1, ms: 1, subMsNanos: 0 });
    await Promise.resolve(); // the save is queued as a microtask
    const again = LogPositionStore.open(file);
    expect(again.ids().sort()).toEqual(["c1", "c2"]);
    expect(again.get("c1")).toEqual({ serviceId: "s1", deploymentId: "d1", since: 100, seconds: 121, linesInSecond: 1, lastMs: 121_000, lastSubMsNanos: 0, dropped: 0 });
    expect(again.drops()).toEqual([{ id: "c2", serviceId: "s2", dropped: 5 }]);
    expect(logLines.some((l) => l.includes("container c2 (service s2): 5 log lines dropped so far"))).toBe(true);

    again.forget("c2");
    again.save();
    expect(Object.keys(readPositions(file))).toEqual(["c1"]);
  });

  test("tracking an already known container keeps its position", () => {
    const store = LogPositionStore.open();
    store.track("c", { serviceId: "s" }, 10);
    store.acknowledge("c", { seconds: 50, linesInSecond: 2, ms: 50_000, subMsNanos: 0 });
    expect(store.track("c", { serviceId: "s" }, 99)).toMatchObject({ since: 10, seconds: 50, linesInSecond: 2 });
  });

  test("a missing file is empty; a broken one is empty with a warning naming it", () => {
    expect(readPositions(join(tmp.path, "missing.json"))).toEqual({});
    const broken = join(tmp.path, "broken.json");
    writeFileSync(broken, '{"version":1,"containers":{"c":{"serviceId":3}}}');
    logLines.length = 0;
    expect(LogPositionStore.open(broken).ids()).toEqual([]);
    expect(logLines.some((l) => l.includes(`log positions ${broken} are not valid`))).toBe(true);
  });
});

describe("doctor: logs.drops", () => {
  const ctx = (root: string) => ({ dataDir: { stateDir: join(root, "state") } }) as unknown as DoctorContext;

  test("skipped without a positions file, ok without drops, a warning naming each container with drops", async () => {
    const root = join(tmp.path, "dd");
    expect((await logDropsCheck.run(ctx(root))).status).toBe("skip");
    mkdirSync(join(root, "state"), { recursive: true });
    const store = LogPositionStore.open(logPositionsFile(join(root, "state")));
    store.track("aaaaaaaaaaaaaaaa", { serviceId: "web" }, 1);
    store.save();
    expect(await logDropsCheck.run(ctx(root))).toMatchObject({ status: "ok", detail: "1 container log(s) followed, no line dropped" });
    store.track("bbbbbbbbbbbbbbbb", { serviceId: "api" }, 1);
    store.dropped("aaaaaaaaaaaaaaaa", 3);
    store.dropped("bbbbbbbbbbbbbbbb", 40);
    store.save();
    const r = await logDropsCheck.run(ctx(root));
    expect(r.status).toBe("warn");
    expect(r.detail.split("\n")).toEqual([
      "43 log lines never reached VictoriaLogs (it was slow, down or refused them):",
      "container bbbbbbbbbbbb (service api): 40 lines dropped",
      "container aaaaaaaaaaaa (service web): 3 lines dropped",
    ]);
  });
});

describe("--ship-agent-log", () => {
  test("every logged line still goes to the sink and is pushed with log_type agent and server_id; stopping restores the sink", () => {
    const pushed: LogLine[] = [];
    const shipper: LogShipper = { push: (line) => pushed.push(line), flush: async () => {}, close: async () => {}, stats: () => ({ sent: 0, dropped: 0, pending: 0 }) };
    logLines.length = 0;
    const stop = shipAgentLog(shipper, "srv-1");
    logger("agent").info("agent started");
    stop();
    logger("agent").info("after stop");
    expect(logLines).toEqual(["[agent] agent started", "[agent] after stop"]);
    expect(pushed).toEqual([{ msg: "[agent] agent started", fields: { log_type: "agent", server_id: "srv-1" } }]);
  });
});
