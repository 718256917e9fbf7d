import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidInputError } from "../../lib/errors.ts";
import { parseWorkItem } from "../../lib/workqueue/parseWorkItem.ts";
import { checkServiceIdSegment, resolveServiceVolumeDir } from "../../lib/workqueue/serviceVolumeDir.ts";
import { archiveFileName, listArchives, pruneArchives } from "../../lib/workqueue/volumeArchives.ts";
import { WorkLedger, LEDGER_FILE } from "../../lib/workqueue/WorkLedger.ts";
import { resolveManagedContainer } from "../../lib/workqueue/resolveManagedContainer.ts";
import type { ActualContainer } from "../../lib/state/types.ts";
import { tempDataDir } from "../support/workQueueFixtures.ts";

const dirs: Array<{ remove(): void }> = [];
function dataDir() {
  const d = tempDataDir("unit");
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

const HEX = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

describe("parseWorkItem", () => {
  test("valid payloads of every type parse", () => {
    expect(parseWorkItem({ id: "1", type: "restart", payload: JSON.stringify({ deploymentId: "d", containerId: HEX.toUpperCase() }) })).toEqual({
      id: "1",
      type: "restart",
      payload: { deploymentId: "d", containerId: HEX },
    });
    expect(parseWorkItem({ id: "2", type: "force_cleanup", payload: JSON.stringify({ serviceId: "s", containerIds: [HEX.slice(0, 12)] }) }).type).toBe("force_cleanup");
    expect(parseWorkItem({ id: "3", type: "cleanup_volumes", payload: '{"serviceId":"svc"}' }).payload).toEqual({ serviceId: "svc" });
    expect(parseWorkItem({ id: "4", type: "update_wireguard", payload: '{"peers":[]}' }).payload).toEqual({ peers: [] });
  });

  test("deploy accepts any payload, even one that is not JSON", () => {
    expect(parseWorkItem({ id: "5", type: "deploy", payload: "{not json" }).type).toBe("deploy");
  });

  test("malformed JSON is refused with a clear message", () => {
    const err = thrown(() => parseWorkItem({ id: "6", type: "stop", payload: '{"containerId": ' }));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toStartWith("stop payload is not valid JSON");
  });

  test("a wrong shape names the field", () => {
    expect(thrown(() => parseWorkItem({ id: "7", type: "restart", payload: '{"containerId": 42}' })).message).toContain("containerId");
    expect(thrown(() => parseWorkItem({ id: "8", type: "restart", payload: '{"containerId": "web-1"}' })).message).toContain("12 to 64 hex");
    expect(thrown(() => parseWorkItem({ id: "9", type: "restart", payload: `{"containerId": "${HEX.slice(0, 11)}"}` })).message).toContain("containerId");
    expect(thrown(() => parseWorkItem({ id: "10", type: "force_cleanup", payload: '{"serviceId": "s", "containerIds": "abc"}' })).message).toContain("containerIds");
    expect(thrown(() => parseWorkItem({ id: "11", type: "cleanup_volumes", payload: "[]" })).message).toContain("cleanup_volumes payload is invalid");
    expect(thrown(() => parseWorkItem({ id: "12", type: "update_wireguard", payload: '{"peers":[{"publicKey":1}]}' })).message).toContain("peers.0.publicKey");
  });

  test("an unknown type is refused and the known types are listed", () => {
    const err = thrown(() => parseWorkItem({ id: "13", type: "reboot", payload: "{}" }));
    expect(err.message).toBe('unknown work item type "reboot"; this agent handles restart, stop, force_cleanup, cleanup_volumes, deploy, update_wireguard');
    expect(thrown(() => parseWorkItem({ id: "14", type: "__proto__", payload: "{}" })).message).toContain("unknown work item type");
    expect(thrown(() => parseWorkItem({ id: "15", type: "toString", payload: "{}" })).message).toContain("unknown work item type");
  });
});

describe("service id as a path segment", () => {
  const hostile: Array<[string, string]> = [
    ["", "is empty"],
    ["../..", "contains a path separator"],
    ["..", "is a relative path reference"],
    [".", "is a relative path reference"],
    ["/etc", "is an absolute path"],
    ["/", "is an absolute path"],
    ["a/b", "contains a path separator"],
    ["..\\..\\etc", "contains a path separator"],
    ["svc\0", "contains a NUL byte"],
    ["..%2f..%2fetc", "percent-encoded"],
    ["%2e%2e", "percent-encoded"],
    ["%2F", "percent-encoded"],
    [".hidden", "starts with a dot"],
    ["a b", "must be 1 to 128 characters"],
    ["svc\n", "must be 1 to 128 characters"],
    ["a∕b", "must be 1 to 128 characters"],
    ["x".repeat(129), "must be 1 to 128 characters"],
  ];
  for (const [raw, why] of hostile) {
    test(`${JSON.stringify(raw.slice(0, 20))} is refused (${why})`, () => {
      const err = thrown(() => checkServiceIdSegment(raw));
      expect(err).toBeInstanceOf(InvalidInputError);
      expect(err.message).toContain(why);
      expect(err.message).toEndWith("; refusing");
    });
  }

  test("ordinary ids pass", () => {
    for (const id of ["svc", "3f0c2a9e-5b1d-4c1e-9a77-0d2f5e6b7c81", "Ab_c-1.2", "-nanoid_x"]) expect(checkServiceIdSegment(id)).toBe(id);
  });
});

describe("resolveServiceVolumeDir", () => {
  test("a real folder inside volumes resolves; a missing one is reported missing", async () => {
    const d = dataDir();
    mkdirSync(join(d.volumesDir, "svc"), { recursive: true });
    expect(await resolveServiceVolumeDir(d.volumesDir, "svc")).toEqual({ kind: "directory", path: join(d.volumesDir, "svc") });
    expect((await resolveServiceVolumeDir(d.volumesDir, "other")).kind).toBe("missing");
  });

  test("no volumes folder at all means nothing to clean", async () => {
    const d = dataDir();
    expect((await resolveServiceVolumeDir(d.volumesDir, "svc")).kind).toBe("missing");
  });

  test("a symlink to a folder outside volumes is refused", async () => {
    const d = dataDir();
    const outside = join(d.root, "outside");
    mkdirSync(outside);
    mkdirSync(d.volumesDir);
    symlinkSync(outside, join(d.volumesDir, "evil"));
    await expect(resolveServiceVolumeDir(d.volumesDir, "evil")).rejects.toThrow("is a symbolic link");
  });

  test("a symlink to a sibling folder inside volumes is refused too", async () => {
    const d = dataDir();
    mkdirSync(join(d.volumesDir, "victim"), { recursive: true });
    symlinkSync(join(d.volumesDir, "victim"), join(d.volumesDir, "alias"));
    await expect(resolveServiceVolumeDir(d.volumesDir, "alias")).rejects.toThrow("is a symbolic link");
  });

  test("a regular file is refused", async () => {
    const d = dataDir();
    mkdirSync(d.volumesDir);
    writeFileSync(join(d.volumesDir, "file"), "x");
    await expect(resolveServiceVolumeDir(d.volumesDir, "file")).rejects.toThrow("is not a directory");
  });

  test("a volumes folder that is itself a symlink is followed (the operator moved it)", async () => {
    const d = dataDir();
    const real = join(d.root, "elsewhere");
    mkdirSync(join(real, "svc"), { recursive: true });
    symlinkSync(real, d.volumesDir);
    expect(await resolveServiceVolumeDir(d.volumesDir, "svc")).toEqual({ kind: "directory", path: join(real, "svc") });
  });
});

describe("archive retention", () => {
  const day = 24 * 3600_000;
  function makeArchives(dir: string, ages: number[], now: number) {
    mkdirSync(dir, { recursive: true });
    for (const age of ages) writeFileSync(join(dir, archiveFileName(new Date(now - age))), "x");
  }

  test("keeps the newest N and anything younger than D days, deletes the rest", async () => {
    const d = dataDir();
    const dir = join(d.archivesDir, "volumes", "svc");
    const now = Date.parse("2026-03-01T12:00:00.000Z");
    makeArchives(dir, [1 * day, 2 * day, 10 * day, 20 * day, 30 * day], now);
    writeFileSync(join(dir, "notes.txt"), "operator's file");
    const removed = await pruneArchives(dir, { keep: 3, maxAgeDays: 7 }, now);
    expect(removed.map((p) => p.split("/").pop())).toEqual([archiveFileName(new Date(now - 20 * day)), archiveFileName(new Date(now - 30 * day))]);
    expect((await listArchives(dir)).length).toBe(3);
    expect(existsSync(join(dir, "notes.txt"))).toBe(true);
  });

  test("recent archives beyond N are kept while younger than D days", async () => {
    const d = dataDir();
    const dir = join(d.archivesDir, "volumes", "svc");
    const now = Date.now();
    makeArchives(dir, [1000, 2000, 3000, 4000, 5000, 8 * day], now);
    const removed = await pruneArchives(dir, { keep: 3, maxAgeDays: 7 }, now);
    expect(removed.length).toBe(1);
    expect(readdirSync(dir).length).toBe(5);
  });

  test("keep 0 and 0 days deletes every archive", async () => {
    const d = dataDir();
    const dir = join(d.archivesDir, "volumes", "svc");
    const now = Date.now();
    makeArchives(dir, [1000, 2000], now);
    expect((await pruneArchives(dir, { keep: 0, maxAgeDays: 0 }, now)).length).toBe(2);
  });
});

describe("WorkLedger", () => {
  test("survives a reload and records acting, done and reported", () => {
    const d = dataDir();
    const ledger = WorkLedger.load(d);
    ledger.markActing("a", "stop", ["c1"]);
    ledger.recordResult("a", "stop", { status: "completed" });
    ledger.markActing("b", "restart");
    const again = WorkLedger.load(d);
    expect(again.get("a")).toMatchObject({ phase: "done", status: "completed", targets: ["c1"] });
    expect(again.get("a")!.reportedAt).toBeUndefined();
    expect(again.get("b")).toMatchObject({ phase: "acting" });
    expect(again.unreported().map((e) => e.id)).toEqual(["a"]);
    again.markReported("a");
    expect(WorkLedger.load(d).get("a")!.reportedAt).toBeString();
  });

  test("is bounded: reported entries go first, acting entries never", () => {
    const d = dataDir();
    const ledger = WorkLedger.load(d, { limit: 3 });
    ledger.markActing("acting", "restart");
    ledger.recordResult("unreported", "stop", { status: "failed", error: "x" });
    for (const id of ["r1", "r2", "r3"]) {
      ledger.recordResult(id, "stop", { status: "completed" });
      ledger.markReported(id);
    }
    const again = WorkLedger.load(d, { limit: 3 });
    expect(again.size).toBe(3);
    expect(again.get("acting")).toBeDefined();
    expect(again.get("unreported")).toBeDefined();
    expect(again.get("r3")).toBeDefined();
    expect(again.get("r1")).toBeUndefined();
  });

  test("a corrupt ledger is an error that names the file, not a fresh start", () => {
    const d = dataDir();
    writeFileSync(join(d.stateDir, LEDGER_FILE), "{ half a ledg");
    const err = thrown(() => WorkLedger.load(d));
    expect(err.message).toContain(join(d.stateDir, LEDGER_FILE));
    expect(err.message).toContain("work items are not processed until it is fixed");
    writeFileSync(join(d.stateDir, LEDGER_FILE), JSON.stringify({ version: 1, entries: [{ id: 1 }] }));
    expect(thrown(() => WorkLedger.load(d)).message).toContain("entries.0.id");
  });

  test("is written with mode 0600", () => {
    const d = dataDir();
    WorkLedger.load(d).markActing("a", "stop");
    expect(statSync(join(d.stateDir, LEDGER_FILE)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(d.stateDir, LEDGER_FILE), "utf8")).version).toBe(1);
  });
});

describe("resolveManagedContainer", () => {
  const c = (id: string): ActualContainer => ({ id, name: id.slice(0, 4), image: "i", state: "running", health: "none", serviceId: "s" });
  const managed = [c("aaaaaaaaaaaa1111"), c("aaaaaaaaaaaa2222"), c("bbbbbbbbbbbb0000")];

  test("a unique prefix or the full id resolves", () => {
    expect(resolveManagedContainer(managed, "bbbbbbbbbbbb").id).toBe("bbbbbbbbbbbb0000");
    expect(resolveManagedContainer(managed, "AAAAAAAAAAAA1111").id).toBe("aaaaaaaaaaaa1111");
  });
  test("an ambiguous prefix is refused", () => {
    expect(thrown(() => resolveManagedContainer(managed, "aaaaaaaaaaaa")).message).toContain("ambiguous");
  });
  test("an id that is not among the managed containers is refused", () => {
    expect(thrown(() => resolveManagedContainer(managed, "cccccccccccc")).message).toBe(
      "container cccccccccccc is not managed by the agent (no techulus.service.id label) or does not exist; refusing",
    );
  });
});
