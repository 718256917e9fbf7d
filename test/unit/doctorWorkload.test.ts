import { describe, expect, test } from "bun:test";
import { resultOf, type Check } from "../../lib/doctor/Check.ts";
import { withTimeout } from "../../lib/doctor/checkTimeout.ts";
import { climbingRestarts, describeStuck, duplicateAddresses, logLinesOf, pickStuck, staticAddressOf, workloadContainerOf, type WorkloadContainer } from "../../lib/doctor/workloadChecks.ts";

const NOW = Date.parse("2026-12-01T12:00:00Z");

function c(name: string, over: Partial<WorkloadContainer> = {}): WorkloadContainer {
  return { id: `${name}-id-0123456789`, name, state: "running", managed: true, restartCount: 0, ...over };
}

function frame(stream: number, text: string): Buffer {
  const body = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

describe("workload: pure parts", () => {
  test("the address a container was created with, in each spelling podman takes", () => {
    expect(staticAddressOf(["podman", "create", "--name", "a", "--network", "techulus", "--ip", "10.200.1.5", "img"], "techulus")).toBe("10.200.1.5");
    expect(staticAddressOf(["podman", "run", "--ip=10.200.1.6", "img"], "techulus")).toBe("10.200.1.6");
    expect(staticAddressOf(["podman", "run", "--network", "techulus:ip=10.200.1.7,mac=aa:bb:cc:dd:ee:ff", "img"], "techulus")).toBe("10.200.1.7");
    expect(staticAddressOf(["podman", "run", "--network=techulus:ip=10.200.1.8", "img"], "techulus")).toBe("10.200.1.8");
    expect(staticAddressOf(["podman", "run", "--network", "other:ip=10.9.9.9", "img"], "techulus")).toBeUndefined();
    expect(staticAddressOf(["podman", "run", "img", "sleep", "1"], "techulus")).toBeUndefined();
    expect(staticAddressOf(undefined, "techulus")).toBeUndefined();
  });

  test("an inspect answer becomes a container: labels, address on the agent's network, exit code, podman's error, times", () => {
    const container = workloadContainerOf(
      {
        Id: "abc",
        Name: "web-1",
        Created: "2026-12-01T11:58:00Z",
        RestartCount: 3,
        State: { Status: "exited", ExitCode: 2, Error: "", FinishedAt: "2026-12-01T11:59:00Z" },
        Config: { Labels: { "techulus.service.id": "svc", "techulus.deployment.id": "dep" }, CreateCommand: null },
        NetworkSettings: { Networks: { techulus: { IPAddress: "" }, other: { IPAddress: "10.1.1.1" } } },
      },
      "techulus",
    );
    expect(container).toEqual({ id: "abc", name: "web-1", state: "exited", managed: true, deploymentId: "dep", exitCode: 2, restartCount: 3, createdAt: Date.parse("2026-12-01T11:58:00Z"), finishedAt: Date.parse("2026-12-01T11:59:00Z") });
    const unmanaged = workloadContainerOf({ Id: "d", Name: "theirs", State: { Status: "created", FinishedAt: "0001-01-01T00:00:00Z" }, Config: { Labels: null } }, "techulus");
    expect(unmanaged).toEqual({ id: "d", name: "theirs", state: "created", managed: false, restartCount: 0 });
  });

  test("stuck: managed containers exited, or created for longer than a deploy takes; never unmanaged or running ones", () => {
    const stuck = pickStuck(
      [
        c("exited", { state: "exited", exitCode: 1 }),
        c("stopped", { state: "stopped" }),
        c("created-old", { state: "created", createdAt: NOW - 60_000 }),
        c("created-now", { state: "created", createdAt: NOW - 2_000 }),
        c("running"),
        c("stopping", { state: "stopping" }),
        c("theirs", { state: "exited", managed: false }),
      ],
      NOW,
      20_000,
    );
    expect(stuck.map((s) => s.name)).toEqual(["exited", "stopped", "created-old"]);
  });

  test("a stuck container is described with its exit code, podman's error and its last log lines", () => {
    const text = describeStuck(c("web-1", { state: "exited", exitCode: 3, restartCount: 5, finishedAt: NOW - 90_000 }), ["starting", "boom: no DATABASE_URL"], NOW, true);
    expect(text).toBe(`web-1 (web-1-id-012) is "exited": it exited with exit code 3 90 s ago after 5 restarts\n  last 2 log lines:\n  | starting\n  | boom: no DATABASE_URL`);
    const created = describeStuck(c("web-2", { state: "created", createdAt: NOW - 600_000, error: "requested IP address 10.200.1.5 is not available" }), [], NOW, false);
    expect(created).toContain(`is "created" since 10 min ago and was never started`);
    expect(created).toContain("podman: requested IP address 10.200.1.5 is not available");
    expect(created).toContain("not in the expected state: the drift fix removes it");
    expect(describeStuck(c("web-3", { state: "exited" }), undefined, NOW, undefined)).toContain("(its log could not be read)");
  });

  test("one address claimed twice: by holding it, by --ip, by the expected state; unclaimed and single claims are fine", () => {
    const expected = new Map([["dep-a", "10.200.1.10"]]);
    const dups = duplicateAddresses(
      [
        c("holder", { address: "10.200.1.10", managed: false }),
        c("managed-a", { state: "exited", deploymentId: "dep-a" }),
        c("created-5", { state: "created", staticAddress: "10.200.1.5" }),
        c("run-5", { address: "10.200.1.5" }),
        c("alone", { address: "10.200.1.6" }),
        c("nothing", { state: "created" }),
      ],
      expected,
    );
    expect(dups.map((d) => [d.address, d.claims.map((x) => `${x.container.name} ${x.how}`)])).toEqual([
      ["10.200.1.5", ["created-5 was created with --ip 10.200.1.5", "run-5 holds it"]],
      ["10.200.1.10", ["holder holds it", "managed-a is given it by the expected state (deployment dep-a)"]],
    ]);
    // Without the expected state a stopped managed container claims nothing that can be seen.
    expect(duplicateAddresses([c("holder", { address: "10.200.1.10" }), c("managed-a", { state: "exited", deploymentId: "dep-a" })])).toEqual([]);
  });

  test("restart counts: only those that went up between the two looks", () => {
    const before = new Map([
      ["a-id-0123456789", 2],
      ["b-id-0123456789", 5],
    ]);
    const climbing = climbingRestarts(before, [c("a", { restartCount: 4 }), c("b", { restartCount: 5 }), c("new", { restartCount: 9 })]);
    expect(climbing.map((x) => [x.container.name, x.before, x.after])).toEqual([["a", 2, 4]]);
  });

  test("log answers: multiplexed frames (stdout and stderr) and plain text", () => {
    const muxed = Buffer.concat([frame(1, "one\n"), frame(2, "two\nthree"), frame(1, " continued\n")]);
    expect(logLinesOf(muxed)).toEqual(["one", "two", "three continued"]);
    expect(logLinesOf(Buffer.from("plain\r\ntext\n"))).toEqual(["plain", "text"]);
    expect(logLinesOf(Buffer.alloc(0))).toEqual([]);
  });

  test("a check that does not answer in time is skipped, saying so; its other properties are kept", async () => {
    const slow: Check<undefined> & { waitForEarlier: boolean } = {
      id: "x.slow",
      title: "slow",
      waitForEarlier: true,
      run: () => new Promise((resolve) => setTimeout(() => resolve(resultOf(slow, "ok", "late")), 2000)),
    };
    const timed = withTimeout(slow, 100);
    expect((timed as { waitForEarlier?: boolean }).waitForEarlier).toBe(true);
    expect(await timed.run(undefined)).toEqual({ id: "x.slow", title: "slow", status: "skip", detail: "no answer within 100 ms; run agent doctor again" });
  });
});
