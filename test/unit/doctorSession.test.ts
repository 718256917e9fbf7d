import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Check, CheckResult, CheckStatus } from "../../lib/doctor/Check.ts";
import type { DoctorContext } from "../../lib/doctor/DoctorContext.ts";
import { DoctorSession, type SessionSnapshot } from "../../lib/doctor/DoctorSession.ts";
import { doctorContext } from "../support/doctorFixtures.ts";

const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

function context(): DoctorContext {
  const dir = mkdtempSync(join(tmpdir(), "doctor-session-"));
  temps.push(dir);
  return doctorContext(join(dir, "data"));
}

/** Checks whose results the test hands out one by one; counts how many run at once. */
function controlled(ids: string[], extra: Partial<Record<string, Partial<Check<DoctorContext>>>> = {}) {
  const finish = new Map<string, (status: CheckStatus) => void>();
  const started: string[] = [];
  let active = 0;
  let peak = 0;
  const checks: Check<DoctorContext>[] = ids.map((id) => ({
    id,
    title: `check ${id}`,
    ...extra[id],
    run: () => {
      started.push(id);
      active++;
      peak = Math.max(peak, active);
      return new Promise<CheckResult>((resolve) =>
        finish.set(id, (status) => {
          active--;
          resolve({ id, title: `check ${id}`, status, detail: `${id} is ${status}` });
        }),
      );
    },
  }));
  return {
    checks,
    started,
    peak: () => peak,
    /** Waits until `id` has started, then finishes it. */
    async finish(id: string, status: CheckStatus = "ok") {
      await until(() => finish.has(id), `${id} to start`);
      const done = finish.get(id)!;
      finish.delete(id);
      done(status);
      await Bun.sleep(0);
    },
    running: () => [...finish.keys()],
  };
}

async function until(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(1);
  }
}

const states = (s: SessionSnapshot) => s.entries.map((e) => `${e.id}:${e.state}`).join(" ");

describe("DoctorSession", () => {
  test("runs checks several at once, never more than its concurrency, and starts them in list order", async () => {
    const c = controlled(["a", "b", "c", "d", "e", "f", "g"]);
    const session = new DoctorSession(c.checks, context(), { concurrency: 3 });
    const round = session.runAll();
    await until(() => c.started.length === 3, "three checks to start");
    await Bun.sleep(5);
    expect(c.started).toEqual(["a", "b", "c"]);
    expect(states(session.snapshot())).toBe("a:running b:running c:running d:pending e:pending f:pending g:pending");
    expect(session.snapshot().phase).toBe("checking");

    await c.finish("b");
    await until(() => c.started.length === 4, "the fourth check to take b's place");
    expect(c.started).toEqual(["a", "b", "c", "d"]);
    for (const id of ["d", "a", "c", "e", "g", "f"]) await c.finish(id);
    const results = await round;
    expect(results.map((r) => r.id)).toEqual(["a", "b", "c", "d", "e", "f", "g"]);
    expect(c.peak()).toBe(3);
    expect(session.snapshot().phase).toBe("ready");
  });

  test("results show in the snapshot as they finish, out of order, while onResult sees them in check order", async () => {
    const c = controlled(["a", "b", "c", "d"]);
    const session = new DoctorSession(c.checks, context(), { concurrency: 4 });
    const seen: string[] = [];
    const round = session.runAll((r) => seen.push(r.id));
    await c.finish("c", "fail");
    await c.finish("b", "warn");
    expect(states(session.snapshot())).toBe("a:running b:done c:done d:running");
    expect(session.snapshot().entries[2]!.result?.status).toBe("fail");
    expect(seen).toEqual([]);
    await c.finish("a");
    expect(seen).toEqual(["a", "b", "c"]);
    await c.finish("d");
    await round;
    expect(seen).toEqual(["a", "b", "c", "d"]);
    expect(session.exitCode()).toBe(1);
    expect(session.summary()).toEqual({ ok: 2, warn: 1, fail: 1, skip: 0 });
  });

  test("a check marked waitForEarlier starts only when every check before it has finished, and the ones after it wait too", async () => {
    const c = controlled(["a", "b", "node", "after"], { node: { waitForEarlier: true } });
    const session = new DoctorSession(c.checks, context(), { concurrency: 4 });
    const round = session.runAll();
    await until(() => c.started.length === 2, "a and b");
    await c.finish("b");
    await Bun.sleep(5);
    expect(c.started).toEqual(["a", "b"]);
    await c.finish("a");
    await until(() => c.started.length === 4, "node and after");
    expect(c.started).toEqual(["a", "b", "node", "after"]);
    await c.finish("after");
    await c.finish("node");
    await round;
  });

  test("concurrent checks share one memoized probe", async () => {
    const ctx = context();
    let probes = 0;
    const shared = () =>
      ctx.memo("slow-fact", async () => {
        probes++;
        await Bun.sleep(20);
        return 42;
      });
    const checks: Check<DoctorContext>[] = ["x", "y", "z"].map((id) => ({
      id,
      title: id,
      run: async () => ({ id, title: id, status: (await shared()) === 42 ? "ok" : "fail", detail: "" }),
    }));
    const session = new DoctorSession(checks, ctx);
    const results = await session.runAll();
    expect(results.map((r) => r.status)).toEqual(["ok", "ok", "ok"]);
    expect(probes).toBe(1);
    // A new round looks again.
    await session.rerun();
    expect(probes).toBe(2);
  });

  test("a check that throws fails alone; the others still run", async () => {
    const checks: Check<DoctorContext>[] = [
      { id: "boom", title: "boom", run: async () => Promise.reject(new Error("kaput")) },
      { id: "fine", title: "fine", run: async () => ({ id: "fine", title: "fine", status: "ok", detail: "" }) },
    ];
    const results = await new DoctorSession(checks, context()).runAll();
    expect(results.map((r) => `${r.id}:${r.status}`)).toEqual(["boom:fail", "fine:ok"]);
    expect(results[0]!.detail).toBe("the check itself failed: kaput");
  });

  test("rerun sets every entry back to pending, forgets fix states, and runs again; a call during a round joins it", async () => {
    let round = 0;
    let release!: () => void;
    const checks: Check<DoctorContext>[] = [
      {
        id: "flaky",
        title: "flaky",
        run: async () => {
          round++;
          if (round === 2) await new Promise<void>((r) => (release = r));
          return { id: "flaky", title: "flaky", status: round === 1 ? "fail" : "ok", detail: `round ${round}`, fix: { description: "poke it", apply: async () => {} } };
        },
      },
      { id: "steady", title: "steady", run: async () => ({ id: "steady", title: "steady", status: "ok", detail: "" }) },
    ];
    const session = new DoctorSession(checks, context());
    await session.runAll();
    expect(session.exitCode()).toBe(1);
    const snapshots: SessionSnapshot[] = [];
    session.subscribe(() => snapshots.push(session.snapshot()));

    const again = session.rerun();
    expect(session.rerun()).toBe(again);
    await until(() => release !== undefined, "the second round");
    expect(snapshots[0]!.entries.every((e) => e.state === "pending" && !e.result && !e.fix)).toBe(true);
    expect(session.snapshot().phase).toBe("checking");
    expect(session.snapshot().entries[0]!.state).toBe("running");
    release();
    const results = await again;
    expect(results.map((r) => r.detail)).toEqual(["round 2", ""]);
    expect(session.exitCode()).toBe(0);
    expect(session.snapshot().phase).toBe("ready");
  });

  test("when onResult throws, nothing more starts and the round rejects with its error", async () => {
    const c = controlled(["a", "b", "c"]);
    const session = new DoctorSession(c.checks, context(), { concurrency: 1 });
    const outcome = session
      .runAll(() => {
        throw new Error("stdout closed");
      })
      .then(
        () => "resolved",
        (err: Error) => err.message,
      );
    await c.finish("a");
    expect(await outcome).toBe("stdout closed");
    await Bun.sleep(5);
    expect(c.started).toEqual(["a"]);
    expect(session.snapshot().phase).toBe("ready");
  });
});
