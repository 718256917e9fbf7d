import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ControlPlaneClient } from "../../lib/controlplane/ControlPlaneClient.ts";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { WorkQueueProcessor, type WorkQueueOptions } from "../../lib/workqueue/WorkQueueProcessor.ts";
import { processWorkQueueOnce } from "../../lib/workqueue/processWorkQueueOnce.ts";
import { startWorkQueuePoller } from "../../lib/workqueue/startWorkQueuePoller.ts";
import { WorkLedger, LEDGER_FILE } from "../../lib/workqueue/WorkLedger.ts";
import { FakeRuntime } from "../support/FakeRuntime.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { FakeWireGuard, registerTestServer, tempDataDir } from "../support/workQueueFixtures.ts";

/**
 * The processor's rules (ledger, reporting, refusals) against the test control plane, real
 * folders and an in-memory ContainerRuntime; test/integration/workqueue.test.ts repeats the
 * container cases against real Podman.
 */
const cp = new TestControlPlane();
let client: ControlPlaneClient;
let serverId: string;
let runtime: FakeRuntime;
let wireguard: FakeWireGuard;
let dataDir: ReturnType<typeof tempDataDir>;

const hex = (n: number) => n.toString(16).padStart(2, "0").repeat(32);

beforeAll(async () => {
  await cp.start();
  ({ client, serverId } = await registerTestServer(cp));
});
afterAll(async () => {
  await client.close();
  await cp.stop();
});
beforeEach(() => {
  runtime = new FakeRuntime();
  wireguard = new FakeWireGuard();
  dataDir = tempDataDir("proc");
  cp.servers.get(serverId)!.workItems.length = 0;
});
afterEach(() => dataDir.remove());

function options(extra: Partial<WorkQueueOptions> = {}): WorkQueueOptions {
  return { client, runtime, wireguard, dataDir, ...extra };
}

function container(id: string, serviceId = "svc", state: "running" | "exited" = "running", deploymentId = "dep1") {
  return runtime.add({ id, name: `${serviceId}-${id.slice(0, 4)}`, image: "localhost/busybox:test", serviceId, deploymentId, state });
}

async function runItem(type: string, payload: unknown, extra: Partial<WorkQueueOptions> = {}) {
  const item = cp.addWorkItem(serverId, type, payload);
  const summary = await processWorkQueueOnce(options(extra));
  return { item, summary };
}

const actions = () => runtime.calls.filter((c) => c !== "list");

describe("container items", () => {
  test("restart restarts the managed container and is reported completed", async () => {
    container(hex(1));
    const { item, summary } = await runItem("restart", { deploymentId: "dep1", containerId: hex(1).slice(0, 12) });
    expect(actions()).toEqual([`restart ${hex(1)}`]);
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(summary).toMatchObject({ processed: 1, completed: 1, failed: 0, replayed: 0, unreported: 0 });
  });

  test("stop stops a running container; a stopped one is left as it is", async () => {
    container(hex(1));
    container(hex(2), "svc", "exited");
    const a = await runItem("stop", { deploymentId: "dep1", containerId: hex(1) });
    const b = await runItem("stop", { deploymentId: "dep1", containerId: hex(2) });
    expect(actions()).toEqual([`stop ${hex(1)}`]);
    expect(a.item.acks).toEqual([{ status: "completed" }]);
    expect(b.item.acks).toEqual([{ status: "completed" }]);
  });

  test("an id that is not a managed container is refused and nothing is touched", async () => {
    container(hex(1));
    for (const type of ["restart", "stop"]) {
      const { item } = await runItem(type, { deploymentId: "dep1", containerId: hex(9) });
      expect(item.acks).toEqual([{ status: "failed", error: `container ${hex(9)} is not managed by the agent (no techulus.service.id label) or does not exist; refusing` }]);
    }
    expect(actions()).toEqual([]);
  });

  test("a container of another deployment is refused", async () => {
    container(hex(1), "svc", "running", "dep-other");
    const { item } = await runItem("restart", { deploymentId: "dep1", containerId: hex(1) });
    expect(item.acks[0]!.error).toContain("belongs to deployment dep-other, not dep1; refusing");
    expect(actions()).toEqual([]);
  });

  test("force_cleanup stops and removes the listed containers of the service", async () => {
    container(hex(1));
    container(hex(2), "svc", "exited");
    container(hex(3));
    const { item } = await runItem("force_cleanup", { serviceId: "svc", containerIds: [hex(1), hex(2).slice(0, 12), hex(1).slice(0, 16)] });
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(actions()).toEqual([`stop ${hex(1)}`, `remove ${hex(1)}`, `remove ${hex(2)}`]);
    expect([...runtime.containers.keys()]).toEqual([hex(3)]);
  });

  test("force_cleanup naming a container of another service removes nothing at all", async () => {
    container(hex(1));
    container(hex(2), "other");
    const { item } = await runItem("force_cleanup", { serviceId: "svc", containerIds: [hex(1), hex(2)] });
    expect(item.acks[0]!.status).toBe("failed");
    expect(item.acks[0]!.error).toContain("belongs to service other, not svc; refusing (nothing was removed)");
    expect(actions()).toEqual([]);
  });

  test("force_cleanup naming an unmanaged or missing container removes nothing at all", async () => {
    container(hex(1));
    const { item } = await runItem("force_cleanup", { serviceId: "svc", containerIds: [hex(1), hex(7)] });
    expect(item.acks[0]!.error).toContain(`container ${hex(7)} is not managed by the agent`);
    expect(item.acks[0]!.error).toContain("(nothing was removed)");
    expect(actions()).toEqual([]);
  });

  test("a runtime error fails the item with its text", async () => {
    container(hex(1));
    runtime.restart = async () => {
      throw new Error("podman API POST /containers/x/restart answered 500: boom");
    };
    const { item } = await runItem("restart", { containerId: hex(1) });
    expect(item.acks).toEqual([{ status: "failed", error: "podman API POST /containers/x/restart answered 500: boom" }]);
  });
});

describe("other items", () => {
  test("deploy is completed at once without touching anything", async () => {
    container(hex(1));
    const { item } = await runItem("deploy", "whatever it is");
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(actions()).toEqual([]);
  });

  test("an unknown type is reported failed with a clear message", async () => {
    const { item } = await runItem("reboot_server", {});
    expect(item.acks).toEqual([
      { status: "failed", error: 'unknown work item type "reboot_server"; this agent handles restart, stop, force_cleanup, cleanup_volumes, deploy, update_wireguard' },
    ]);
  });

  test("malformed payload JSON fails the item and does nothing", async () => {
    container(hex(1));
    const { item } = await runItem("stop", `{"containerId": "${hex(1)}"`);
    expect(item.acks[0]!.status).toBe("failed");
    expect(item.acks[0]!.error).toStartWith("stop payload is not valid JSON");
    expect(actions()).toEqual([]);
    expect(runtime.calls).toEqual([]);
  });

  test("update_wireguard applies the normalised peer set", async () => {
    const key = wireGuardPublicKey(generateWireGuardPrivateKey());
    const { item } = await runItem("update_wireguard", { peers: [{ publicKey: key, allowedIps: "10.200.2.0/24, 10.100.2.0/24", endpoint: "203.0.113.7:51820" }] });
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(wireguard.applied).toEqual([[{ publicKey: key, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint: "203.0.113.7:51820" }]]);
  });

  test("update_wireguard with an invalid peer applies nothing", async () => {
    const key = wireGuardPublicKey(generateWireGuardPrivateKey());
    const { item } = await runItem("update_wireguard", { peers: [{ publicKey: key, allowedIps: "10.100.2.0/24" }, { publicKey: "not-a-key", allowedIps: "10.999.0.0/24" }] });
    expect(item.acks[0]!.status).toBe("failed");
    expect(item.acks[0]!.error).toContain("peers[1]");
    expect(wireguard.applied).toEqual([]);
  });

  test("update_wireguard on a node without a WireGuard driver fails clearly", async () => {
    const { item } = await runItem("update_wireguard", { peers: [] }, { wireguard: undefined });
    expect(item.acks).toEqual([{ status: "failed", error: "WireGuard is not managed by the agent on this node; cannot apply the peer set" }]);
  });

  test("cleanup_volumes archives and deletes the folder; a missing folder is completed", async () => {
    const folder = join(dataDir.volumesDir, "svc", "data");
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, "db"), "rows");
    const { item } = await runItem("cleanup_volumes", { serviceId: "svc" });
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(existsSync(join(dataDir.volumesDir, "svc"))).toBe(false);
    expect(readdirSync(join(dataDir.archivesDir, "volumes", "svc"))).toHaveLength(1);
    const again = await runItem("cleanup_volumes", { serviceId: "svc" });
    expect(again.item.acks).toEqual([{ status: "completed" }]);
  });

  test("retention settings left unset fall back to the defaults (newest 3 kept)", async () => {
    for (let i = 0; i < 5; i++) {
      mkdirSync(join(dataDir.volumesDir, "svc"), { recursive: true });
      writeFileSync(join(dataDir.volumesDir, "svc", "f"), String(i));
      await runItem("cleanup_volumes", { serviceId: "svc" }, { retention: { keep: undefined, maxAgeDays: 0 } });
    }
    expect(readdirSync(join(dataDir.archivesDir, "volumes", "svc"))).toHaveLength(3);
  });

  test("cleanup_volumes with a traversal id fails and deletes nothing", async () => {
    mkdirSync(join(dataDir.volumesDir, "svc"), { recursive: true });
    const { item } = await runItem("cleanup_volumes", { serviceId: "../volumes" });
    expect(item.acks[0]!.error).toBe('service id "../volumes" contains a path separator; refusing');
    expect(existsSync(join(dataDir.volumesDir, "svc"))).toBe(true);
  });
});

describe("onActed", () => {
  test("is called for completed items only, and a throwing callback does not fail the item", async () => {
    container(hex(1));
    const seen: string[] = [];
    const onActed = (item: { type: string }) => {
      seen.push(item.type);
      throw new Error("listener bug");
    };
    const ok = await runItem("restart", { containerId: hex(1) }, { onActed });
    const bad = await runItem("stop", { containerId: hex(9) }, { onActed });
    const deploy = await runItem("deploy", {}, { onActed });
    expect(seen).toEqual(["restart", "deploy"]);
    expect(ok.item.acks).toEqual([{ status: "completed" }]);
    expect(bad.item.acks[0]!.status).toBe("failed");
    expect(deploy.item.acks).toEqual([{ status: "completed" }]);
  });
});

describe("exactly once", () => {
  test("a lost completion report is re-reported after a restart, never re-run", async () => {
    container(hex(1));
    const item = cp.addWorkItem(serverId, "restart", { deploymentId: "dep1", containerId: hex(1) });
    const drop = cp.intercept((req) => (req.method === "POST" && req.path === "/api/v1/agent/work-queue" ? new Response('{"error":"unavailable"}', { status: 503 }) : undefined));
    const first = await new WorkQueueProcessor(options()).processOnce();
    drop();
    expect(first.items).toEqual([{ id: item.id, type: "restart", status: "completed", replayed: false, reported: false }]);
    expect(item.status).toBe("pending");
    expect(WorkLedger.load(dataDir).unreported().map((e) => e.id)).toEqual([item.id]);

    // A new processor on the same data dir: what an agent restart gives.
    const second = await new WorkQueueProcessor(options()).processOnce();
    expect(second.items).toEqual([{ id: item.id, type: "restart", status: "completed", replayed: true, reported: true }]);
    expect(actions()).toEqual([`restart ${hex(1)}`]);
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(WorkLedger.load(dataDir).unreported()).toEqual([]);
  });

  test("a failure is re-reported with the same text", async () => {
    const item = cp.addWorkItem(serverId, "stop", { containerId: hex(5) });
    const drop = cp.intercept((req) => (req.method === "POST" ? new Response("", { status: 502 }) : undefined));
    await processWorkQueueOnce(options());
    drop();
    container(hex(5)); // the container appears meanwhile: the recorded answer stands
    await processWorkQueueOnce(options());
    expect(item.acks).toEqual([{ status: "failed", error: `container ${hex(5)} is not managed by the agent (no techulus.service.id label) or does not exist; refusing` }]);
    expect(actions()).toEqual([]);
  });

  test("the same item twice in one batch acts once", async () => {
    container(hex(1));
    const item = cp.addWorkItem(serverId, "restart", { containerId: hex(1) });
    cp.servers.get(serverId)!.workItems.push({ ...item, acks: item.acks });
    const summary = await processWorkQueueOnce(options());
    expect(summary.replayed).toBe(1);
    expect(actions()).toEqual([`restart ${hex(1)}`]);
  });

  test("a restart interrupted mid-action is not run a second time", async () => {
    container(hex(1));
    const item = cp.addWorkItem(serverId, "restart", { containerId: hex(1) });
    WorkLedger.load(dataDir).markActing(item.id, "restart", [hex(1)]);
    await processWorkQueueOnce(options());
    expect(actions()).toEqual([]);
    expect(item.acks[0]!.status).toBe("failed");
    expect(item.acks[0]!.error).toContain(`the agent stopped while running this restart container ${hex(1).slice(0, 12)}`);
  });

  test("a stop interrupted mid-action runs again (stopping twice changes nothing)", async () => {
    container(hex(1));
    const item = cp.addWorkItem(serverId, "stop", { containerId: hex(1) });
    WorkLedger.load(dataDir).markActing(item.id, "stop", [hex(1)]);
    await processWorkQueueOnce(options());
    expect(actions()).toEqual([`stop ${hex(1)}`]);
    expect(item.acks).toEqual([{ status: "completed" }]);
  });

  test("an interrupted force_cleanup finishes the containers it had not removed yet", async () => {
    container(hex(2));
    const item = cp.addWorkItem(serverId, "force_cleanup", { serviceId: "svc", containerIds: [hex(1), hex(2)] });
    WorkLedger.load(dataDir).markActing(item.id, "force_cleanup", [hex(1), hex(2)]);
    await processWorkQueueOnce(options());
    expect(actions()).toEqual([`stop ${hex(2)}`, `remove ${hex(2)}`]);
    expect(item.acks).toEqual([{ status: "completed" }]);
  });

  test("a corrupt ledger stops processing before anything is done", async () => {
    container(hex(1));
    cp.addWorkItem(serverId, "restart", { containerId: hex(1) });
    writeFileSync(join(dataDir.stateDir, LEDGER_FILE), "garbage");
    await expect(processWorkQueueOnce(options())).rejects.toThrow("cannot be read");
    expect(actions()).toEqual([]);
  });
});

describe("poller", () => {
  test("polls on its own, and stop() waits for the item in flight", async () => {
    container(hex(1));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const inAction = new Promise<void>((r) => (started = r));
    const realRestart = runtime.restart.bind(runtime);
    runtime.restart = async (id) => {
      started();
      await gate;
      await realRestart(id);
    };
    const item = cp.addWorkItem(serverId, "restart", { containerId: hex(1) });
    const poller = startWorkQueuePoller({ ...options(), intervalMs: 50 });
    await inAction;
    let stopped = false;
    const stopping = poller.stop().then(() => (stopped = true));
    await Bun.sleep(100);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(item.acks).toEqual([{ status: "completed" }]);
    const pollsAfterStop = cp.requests.length;
    await Bun.sleep(150);
    expect(cp.requests.length).toBe(pollsAfterStop);
  });

  test("keeps polling through a control-plane outage and picks items up afterwards", async () => {
    container(hex(1));
    const down = cp.intercept(() => new Response('{"error":"maintenance"}', { status: 503 }));
    const errors: unknown[] = [];
    const poller = startWorkQueuePoller({ ...options(), intervalMs: 20, onPoll: (r) => void (r.error && errors.push(r.error)) });
    try {
      while (errors.length < 2) await Bun.sleep(10);
      const item = cp.addWorkItem(serverId, "stop", { containerId: hex(1) });
      down();
      while (item.acks.length === 0) await Bun.sleep(10);
      expect(item.acks).toEqual([{ status: "completed" }]);
    } finally {
      await poller.stop();
    }
  });
});
