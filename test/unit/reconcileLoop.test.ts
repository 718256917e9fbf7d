import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ControlPlaneClient } from "../../lib/controlplane/ControlPlaneClient.ts";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { ReconcileLoop } from "../../lib/reconcile/ReconcileLoop.ts";
import { deployContext } from "../../lib/reconcile/deployContext.ts";
import type { NodeRules } from "../../lib/state/nodeRules.ts";
import { ControlPlaneStateSource, parseExpectedState } from "../../lib/reconcile/expectedStateSource.ts";
import { FailureBackoff } from "../../lib/reconcile/FailureBackoff.ts";
import { reconcilePass } from "../../lib/reconcile/reconcilePass.ts";
import { planChanges } from "../../lib/state/planChanges.ts";
import { FakeRuntime } from "../support/FakeRuntime.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { tempDir } from "../support/agentBinary.ts";

const tmp = tempDir("loop-");
const volumesRoot = join(tmp.path, "volumes");
const node: NodeRules = { subnetId: 1, hostPorts: [{ from: 1024, to: 65535 }], reservedPorts: [] };
afterAll(() => tmp.cleanup());

function container(n: number, extra: Record<string, unknown> = {}) {
  return { deploymentId: `dep-${n}`, serviceId: `svc-${n}`, serviceName: `web${n}`, name: `web-${n}`, image: "localhost/busybox:test", ipAddress: `10.200.1.${n + 10}`, ports: [], env: {}, healthCheck: null, volumes: [], ...extra };
}

function state(containers: unknown[]) {
  return parseExpectedState({ containers }, { isProxy: false, volumesRoot, node, allowPlainEnv: true, origin: "test" });
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe("reconcilePass", () => {
  test("applies the first change of a fresh plan and re-reads actual state after each", async () => {
    const runtime = new FakeRuntime();
    const result = await reconcilePass({ expected: state([container(1), container(2)]), drivers: { runtime }, context: deployContext(undefined), budgetMs: 60_000 });
    expect(result.converged).toBe(true);
    expect(result.applied.map((a) => a.kind)).toEqual(["deploy", "deploy"]);
    expect(runtime.calls).toEqual(["list", "deploy web-1", "list", "deploy web-2", "list"]);
  });

  test("a failed change ends the pass and is reported with its error; what is left stays planned", async () => {
    const runtime = new FakeRuntime();
    runtime.failDeployOf.add("web-1");
    const result = await reconcilePass({ expected: state([container(1), container(2)]), drivers: { runtime }, context: deployContext(undefined), budgetMs: 60_000 });
    expect(result.converged).toBe(false);
    expect(result.stoppedBy).toBe("failure");
    expect(result.failed?.error).toContain("pull of localhost/busybox:test failed");
    expect(result.remaining.map((c) => c.kind)).toEqual(["deploy", "deploy"]);
    expect(runtime.calls.filter((c) => c.startsWith("deploy"))).toEqual(["deploy web-1"]);
  });

  test("the budget and a shutdown request end the pass between changes", async () => {
    const runtime = new FakeRuntime();
    const timedOut = await reconcilePass({ expected: state([container(1)]), drivers: { runtime }, context: deployContext(undefined), budgetMs: 0 });
    expect(timedOut.stoppedBy).toBe("timeout");
    expect(timedOut.remaining).toHaveLength(1);
    let stop = false;
    const stopped = await reconcilePass({
      expected: state([container(1), container(2)]),
      drivers: { runtime },
      context: deployContext(undefined),
      budgetMs: 60_000,
      afterChange: async () => {
        stop = true;
      },
      shouldStop: () => stop,
    });
    expect(stopped.stoppedBy).toBe("shutdown");
    expect(stopped.applied).toHaveLength(1);
  });

  test("plain env values are passed decrypted, encrypted ones need the key", async () => {
    const cp = new TestControlPlane();
    const runtime = new FakeRuntime();
    const expected = state([container(1, { env: { A: "plain:hello", B: cp.encrypt("sealed") } })]);
    const ok = await reconcilePass({ expected, drivers: { runtime }, context: deployContext(cp.encryptionKey), budgetMs: 60_000 });
    expect(ok.converged).toBe(true);
    expect(runtime.decrypted["web-1"]).toEqual({ A: "hello", B: "sealed" });
    const noKey = await reconcilePass({ expected, drivers: { runtime: new FakeRuntime() }, context: deployContext(undefined), budgetMs: 60_000 });
    expect(noKey.failed?.error).toContain("env B is encrypted but no encryption key is available");
  });
});

describe("changes that keep failing are deferred, not in the way of the rest", () => {
  test("a failed change is skipped by the next pass until its retry time, and tried again then", async () => {
    let now = 1_000_000;
    const backoff = new FailureBackoff(10_000, 40_000, () => now);
    const runtime = new FakeRuntime();
    runtime.failDeployOf.add("web-1");
    const expected = state([container(1), container(2), container(3)]);
    const run = () => reconcilePass({ expected, drivers: { runtime }, context: deployContext(undefined), budgetMs: 60_000, backoff });

    const first = await run();
    expect(first.stoppedBy).toBe("failure");
    expect(first.applied).toEqual([]);
    const second = await run();
    expect(second.applied.map((a) => a.description)).toEqual([expect.stringContaining("web-2"), expect.stringContaining("web-3")]);
    expect(second.stoppedBy).toBe("backoff");
    expect(second.remaining.map((c) => c.kind)).toEqual(["deploy"]);
    expect(runtime.calls.filter((c) => c === "deploy web-1")).toHaveLength(1);

    now += 10_001;
    runtime.failDeployOf.clear();
    const third = await run();
    expect(third.converged).toBe(true);
    expect(third.applied.map((a) => a.description)).toEqual([expect.stringContaining("web-1")]);
  });

  test("the delay doubles up to the cap, and a change with new content is not deferred", () => {
    let now = 0;
    const backoff = new FailureBackoff(10_000, 40_000, () => now);
    const [deploy] = planOf(state([container(1)]));
    expect([1, 2, 3, 4].map(() => backoff.recordFailure(deploy!))).toEqual([10_000, 20_000, 40_000, 40_000]);
    expect(backoff.isDeferred(deploy!)).toBe(true);
    const [newImage] = planOf(state([container(1, { image: "localhost/other:2" })]));
    expect(backoff.isDeferred(newImage!)).toBe(false);
    backoff.retainOnly([newImage!]);
    expect(backoff.isDeferred(deploy!)).toBe(false);
  });
});

function planOf(expected: ReturnType<typeof state>) {
  return planChanges(expected, { containers: [] });
}

describe("ReconcileLoop with the control plane", () => {
  const cp = new TestControlPlane();
  const key = SigningKey.generate();
  let client: ControlPlaneClient;
  let serverId: string;
  const loops: ReconcileLoop[] = [];

  beforeAll(async () => {
    await cp.start();
    const token = cp.issueToken();
    const res = await new ControlPlaneClient({ baseUrl: cp.url }).register({ token, wireguardPublicKey: "wg", signingPublicKey: key.publicKeyRawBase64() });
    serverId = res.serverId;
    client = new ControlPlaneClient({ baseUrl: cp.url, serverId, signingKey: key, backoff: { attempts: 1, baseMs: 1, maxMs: 1 }, timeoutMs: 2000 });
  });
  afterEach(async () => {
    await Promise.all(loops.splice(0).map((l) => l.stop()));
  });
  afterAll(() => cp.stop());

  function startLoop(runtime: FakeRuntime, dir = tempDir("loopdata-")) {
    const dataDir = new DataDir(dir.path);
    dataDir.ensure();
    const loop = new ReconcileLoop({
      source: new ControlPlaneStateSource(client, dataDir, { isProxy: false, volumesRoot, node }),
      drivers: { runtime },
      context: deployContext(cp.encryptionKey),
      client,
      dataDirRoot: dir.path,
      pollIntervalMs: 60_000,
      passBudgetMs: 300_000,
    });
    loops.push(loop);
    loop.start();
    return { loop, dataDir, dir };
  }

  test("converges, reports after each change and on the idle poll (with resources)", async () => {
    cp.setExpectedState(serverId, { containers: [container(1), container(2)] });
    const server = cp.servers.get(serverId)!;
    server.statusReports.length = 0;
    const runtime = new FakeRuntime();
    startLoop(runtime);
    await waitFor(() => server.statusReports.length >= 3, "three status reports");
    const [afterFirst, afterSecond, idle] = server.statusReports.map((r) => r.body);
    expect(afterFirst.containers).toHaveLength(1);
    expect(afterFirst.resources).toBeUndefined();
    expect(afterSecond.containers).toHaveLength(2);
    expect(idle.resources.cpuCores).toBeGreaterThan(0);
    expect(idle.containers.map((c: { deploymentId: string }) => c.deploymentId).sort()).toEqual(["dep-1", "dep-2"]);
  });

  test("a managed container that dies is noticed from the event, not the next poll (60 s away)", async () => {
    cp.setExpectedState(serverId, { containers: [container(1)] });
    const runtime = new FakeRuntime();
    startLoop(runtime);
    await waitFor(() => [...runtime.containers.values()].some((c) => c.state === "running"), "deploy");
    const id = [...runtime.containers.keys()][0]!;
    runtime.kill(id);
    await waitFor(() => runtime.calls.includes(`start ${id}`), "the container to be started again");
    expect(runtime.containers.size).toBe(1);
  });

  test("control plane unreachable: the loop stays alive and works from the last good state, touching nothing", async () => {
    cp.setExpectedState(serverId, { containers: [container(1)] });
    const runtime = new FakeRuntime();
    const { loop, dataDir } = startLoop(runtime);
    await waitFor(() => runtime.containers.size === 1, "deploy");
    await loop.stop();
    expect(dataDir.readStateJson("expected-state.json")).toBeTruthy();
    const off = cp.intercept((req) => (req.path.endsWith("/expected-state") ? new Response("down", { status: 503 }) : undefined));
    try {
      const callsBefore = runtime.calls.length;
      const again = new ReconcileLoop({
        source: new ControlPlaneStateSource(client, dataDir, { isProxy: false, volumesRoot, node }),
        drivers: { runtime },
        context: deployContext(cp.encryptionKey),
        client,
        dataDirRoot: dataDir.root,
        pollIntervalMs: 20,
        passBudgetMs: 300_000,
      });
      loops.push(again);
      again.start();
      await waitFor(() => runtime.calls.length > callsBefore + 5, "several idle polls");
      expect(runtime.calls.slice(callsBefore).every((c) => c === "list")).toBe(true);
      expect(again.state).not.toBe("stopped");
    } finally {
      off();
    }
  });

  test("an invalid expected state is rejected as a whole: nothing changes", async () => {
    cp.setExpectedState(serverId, { containers: [container(1), container(2, { image: "bad image;rm -rf /" })] });
    const runtime = new FakeRuntime();
    const keep = runtime.add({ name: "web-1", image: "docker.io/library/old:1", serviceId: "svc-1", deploymentId: "dep-1" });
    const server = cp.servers.get(serverId)!;
    const before = server.statusReports.length;
    startLoop(runtime);
    await waitFor(() => server.statusReports.length > before, "an idle report");
    expect(runtime.calls.every((c) => c === "list")).toBe(true);
    expect(runtime.containers.get(keep.id)?.image).toBe("docker.io/library/old:1");
  });
});
