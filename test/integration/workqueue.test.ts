import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { ControlPlaneClient } from "../../lib/controlplane/ControlPlaneClient.ts";
import { run } from "../../lib/exec.ts";
import { PodmanRuntime } from "../../lib/podman/PodmanRuntime.ts";
import { processWorkQueueOnce } from "../../lib/workqueue/processWorkQueueOnce.ts";
import { startWorkQueuePoller } from "../../lib/workqueue/startWorkQueuePoller.ts";
import { WorkQueueProcessor, type WorkQueueOptions } from "../../lib/workqueue/WorkQueueProcessor.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { TEST_IMAGE, cleanupPodman, podman, startPodmanService, uniquePrefix, waitFor, type PodmanService } from "../support/podman.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { registerTestServer } from "../support/workQueueFixtures.ts";

/**
 * The work queue against real Podman (a private API service), real folders and the test control
 * plane. Every container here carries the run's prefix; one of them has no techulus label and
 * must come through every hostile item untouched.
 */
const prefix = uniquePrefix("wq");
const cp = new TestControlPlane();
let service: PodmanService;
let runtime: PodmanRuntime;
let client: ControlPlaneClient;
let serverId: string;
let root: string;
let dataDir: DataDir;
let sentinel: string;
const svc = `${prefix}-svc`;
const otherSvc = `${prefix}-other`;
const ids: Record<string, string> = {};
let unmanagedStartedAt = "";

/** Each start of a container appends a line to its file: starts = lines. */
async function startContainer(key: string, labels: Record<string, string>): Promise<string> {
  const startsDir = join(root, "starts", key);
  mkdirSync(startsDir, { recursive: true });
  const args = ["run", "-d", "--name", `${prefix}-${key}`, "-v", `${startsDir}:/starts`];
  for (const [k, v] of Object.entries(labels)) args.push("--label", `${k}=${v}`);
  // sh as PID 1 ignores SIGTERM unless it traps it; the trap makes stop and restart quick.
  args.push(TEST_IMAGE, "sh", "-c", "echo started >> /starts/count; trap 'exit 0' TERM; while true; do sleep 0.2; done");
  const id = (await podman(args)).trim();
  ids[key] = id;
  return id;
}

function starts(key: string): number {
  return readFileSync(join(root, "starts", key, "count"), "utf8").trim().split("\n").length;
}

async function inspect(id: string): Promise<{ running: boolean; startedAt: string } | undefined> {
  const out = await podman(["inspect", "--format", "{{.State.Running}} {{.State.StartedAt}}", id], { allowFailure: true });
  if (!out.trim()) return undefined;
  const [running, ...rest] = out.trim().split(" ");
  return { running: running === "true", startedAt: rest.join(" ") };
}

function options(extra: Partial<WorkQueueOptions> = {}): WorkQueueOptions {
  return { client, runtime, dataDir, ...extra };
}

async function runItem(type: string, payload: unknown) {
  const item = cp.addWorkItem(serverId, type, payload);
  await processWorkQueueOnce(options());
  expect(item.acks).toHaveLength(1);
  return item.acks[0]!;
}

/** Everything about a folder tree that a restore must reproduce. */
function snapshot(dir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (path: string) => {
    const st = lstatSync(path);
    const rel = relative(dir, path) || ".";
    const base = { mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
    if (st.isSymbolicLink()) out[rel] = { ...base, type: "symlink", target: readlinkSync(path) };
    else if (st.isDirectory()) {
      out[rel] = { ...base, type: "dir" };
      for (const name of readdirSync(path).sort()) walk(join(path, name));
    } else {
      out[rel] = { ...base, type: "file", mtime: Math.floor(st.mtimeMs / 1000), sha256: createHash("sha256").update(readFileSync(path)).digest("hex") };
    }
  };
  walk(dir);
  return out;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), `agent-${prefix}-`));
  dataDir = new DataDir(join(root, "data"));
  dataDir.ensure();
  writeFileSync(dataDir.configFile, "{\"sentinel\":true}");
  sentinel = join(root, "sentinel");
  mkdirSync(sentinel);
  writeFileSync(join(sentinel, "precious"), "do not delete");
  service = await startPodmanService(join(root, "podman"));
  runtime = new PodmanRuntime({ socketPath: service.socketPath, volumesRoot: dataDir.volumesDir, stopGraceSeconds: 5, healthChecks: "podman" });
  await cp.start();
  ({ client, serverId } = await registerTestServer(cp));
  await startContainer("a", { "techulus.service.id": svc, "techulus.deployment.id": "dep-a" });
  await startContainer("b", { "techulus.service.id": svc, "techulus.deployment.id": "dep-b" });
  await startContainer("c", { "techulus.service.id": otherSvc, "techulus.deployment.id": "dep-c" });
  await startContainer("unmanaged", { "other.label": "x" });
  unmanagedStartedAt = (await inspect(ids.unmanaged!))!.startedAt;
}, 120_000);

afterAll(async () => {
  await runtime?.close();
  await client?.close();
  await cp.stop();
  await cleanupPodman(prefix);
  await service?.stop();
  rmSync(root, { recursive: true, force: true });
}, 120_000);

describe("containers", () => {
  test("restart restarts the managed container once", async () => {
    expect(starts("a")).toBe(1);
    expect(await runItem("restart", { deploymentId: "dep-a", containerId: ids.a })).toEqual({ status: "completed" });
    expect(starts("a")).toBe(2);
    expect((await inspect(ids.a!))!.running).toBe(true);
  }, 60_000);

  test("stop stops the managed container (by a 12-character prefix)", async () => {
    expect(await runItem("stop", { deploymentId: "dep-b", containerId: ids.b!.slice(0, 12) })).toEqual({ status: "completed" });
    expect((await inspect(ids.b!))!.running).toBe(false);
  }, 60_000);

  test("restart, stop and force_cleanup of an unlabelled container are refused and it keeps running", async () => {
    const expected = `container ${ids.unmanaged} is not managed by the agent (no techulus.service.id label) or does not exist; refusing`;
    expect(await runItem("restart", { deploymentId: "x", containerId: ids.unmanaged })).toEqual({ status: "failed", error: expected });
    expect(await runItem("stop", { deploymentId: "x", containerId: ids.unmanaged })).toEqual({ status: "failed", error: expected });
    const prefixed = await runItem("stop", { containerId: ids.unmanaged!.slice(0, 12) });
    expect(prefixed.error).toContain("is not managed by the agent");
    const cleanup = await runItem("force_cleanup", { serviceId: svc, containerIds: [ids.b, ids.unmanaged] });
    expect(cleanup.status).toBe("failed");
    expect(cleanup.error).toContain("(nothing was removed)");
    expect(await inspect(ids.unmanaged!)).toEqual({ running: true, startedAt: unmanagedStartedAt });
    expect(starts("unmanaged")).toBe(1);
    expect(await inspect(ids.b!)).toBeDefined();
  }, 60_000);

  test("force_cleanup naming a container of another service removes nothing", async () => {
    const res = await runItem("force_cleanup", { serviceId: svc, containerIds: [ids.b, ids.c] });
    expect(res.status).toBe("failed");
    expect(res.error).toContain(`belongs to service ${otherSvc}, not ${svc}; refusing`);
    expect((await inspect(ids.c!))!.running).toBe(true);
    expect(await inspect(ids.b!)).toBeDefined();
  }, 60_000);

  test("malformed payload JSON fails and touches nothing", async () => {
    const res = await runItem("stop", `{"containerId":"${ids.c}"`);
    expect(res.status).toBe("failed");
    expect(res.error).toStartWith("stop payload is not valid JSON");
    expect((await inspect(ids.c!))!.running).toBe(true);
  }, 60_000);

  test("force_cleanup removes the listed containers of the service", async () => {
    expect(await runItem("force_cleanup", { serviceId: svc, containerIds: [ids.b] })).toEqual({ status: "completed" });
    expect(await inspect(ids.b!)).toBeUndefined();
    expect((await inspect(ids.a!))!.running).toBe(true);
  }, 60_000);

  test("deploy is completed without touching containers; an unknown type fails", async () => {
    expect(await runItem("deploy", { serviceId: svc })).toEqual({ status: "completed" });
    expect((await runItem("rm_rf", { path: "/" })).error).toStartWith('unknown work item type "rm_rf"');
    expect(starts("a")).toBe(2);
  }, 60_000);

  test("a lost completion: restarted once, the result re-reported after an agent restart", async () => {
    const before = starts("a");
    const item = cp.addWorkItem(serverId, "restart", { deploymentId: "dep-a", containerId: ids.a });
    let dropped = 0;
    const drop = cp.intercept((req) => {
      if (req.method !== "POST" || req.path !== "/api/v1/agent/work-queue") return undefined;
      dropped++;
      return new Response('{"error":"upstream timeout"}', { status: 503 });
    });
    const first = await new WorkQueueProcessor(options()).processOnce();
    drop();
    expect(dropped).toBeGreaterThan(0);
    expect(first.items[0]).toMatchObject({ id: item.id, status: "completed", reported: false });
    expect(item.status).toBe("pending");
    expect(starts("a")).toBe(before + 1);

    // The agent restarts: a new processor on the same data dir, the control plane sends the item again.
    const second = await new WorkQueueProcessor(options()).processOnce();
    expect(second.items[0]).toMatchObject({ id: item.id, status: "completed", replayed: true, reported: true });
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(item.status).toBe("completed");
    expect(starts("a")).toBe(before + 1);
  }, 60_000);

  test("the poller of agent run handles items on its own", async () => {
    const item = cp.addWorkItem(serverId, "stop", { deploymentId: "dep-c", containerId: ids.c });
    const poller = startWorkQueuePoller({ ...options(), intervalMs: 100 });
    try {
      await waitFor(() => item.acks.length > 0, 30_000, "the stop to be acknowledged");
    } finally {
      await poller.stop();
    }
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect((await inspect(ids.c!))!.running).toBe(false);
  }, 60_000);
});

describe("cleanup_volumes", () => {
  function makeVolume(serviceId: string): string {
    const dir = join(dataDir.volumesDir, serviceId);
    mkdirSync(join(dir, "db", "nested", "empty"), { recursive: true });
    writeFileSync(join(dir, "db", "rows.bin"), Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) % 256)));
    writeFileSync(join(dir, "db", "name with spaces.txt"), "hello\n");
    writeFileSync(join(dir, "db", "nested", "secret"), "s3cr3t");
    chmodSync(join(dir, "db", "nested", "secret"), 0o600);
    writeFileSync(join(dir, "run.sh"), "#!/bin/sh\necho hi\n");
    chmodSync(join(dir, "run.sh"), 0o755);
    chownSync(join(dir, "db", "rows.bin"), 1000, 1000);
    chmodSync(join(dir, "db"), 0o750);
    chownSync(join(dir, "db"), 1000, 1000);
    utimesSync(join(dir, "run.sh"), new Date("2024-01-02T03:04:05Z"), new Date("2024-01-02T03:04:05Z"));
    // A link that points outside: it is archived as a link, and deleting the folder removes the link only.
    symlinkSync(sentinel, join(dir, "db", "escape"));
    symlinkSync("rows.bin", join(dir, "db", "relative-link"));
    return dir;
  }

  test("archives the folder, deletes it, and the archive restores to identical content", async () => {
    const dir = makeVolume(svc);
    const before = snapshot(dir);
    expect(await runItem("cleanup_volumes", { serviceId: svc })).toEqual({ status: "completed" });
    expect(existsSync(dir)).toBe(false);
    expect(readFileSync(join(sentinel, "precious"), "utf8")).toBe("do not delete");

    const archiveDir = join(dataDir.archivesDir, "volumes", svc);
    const archives = readdirSync(archiveDir);
    expect(archives).toHaveLength(1);
    expect(archives[0]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z\.tar\.gz$/);
    expect(lstatSync(join(archiveDir, archives[0]!)).mode & 0o777).toBe(0o600);

    // The README's restore command.
    mkdirSync(dir);
    await run("tar", ["-xzpf", join(archiveDir, archives[0]!), "-C", dir]);
    expect(snapshot(dir)).toEqual(before);
  }, 60_000);

  test("keeps the configured number of archives", async () => {
    const service = `${prefix}-retained`;
    const retention = { keep: 2, maxAgeDays: 0 };
    for (let i = 0; i < 4; i++) {
      makeVolume(service);
      cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: service });
      await processWorkQueueOnce(options({ retention }));
    }
    expect(readdirSync(join(dataDir.archivesDir, "volumes", service))).toHaveLength(2);
  }, 60_000);

  test("a service without volumes is completed (nothing to clean)", async () => {
    expect(await runItem("cleanup_volumes", { serviceId: `${prefix}-never-had-volumes` })).toEqual({ status: "completed" });
  });

  test("hostile service ids delete nothing, archive nothing, and say why", async () => {
    const victim = makeVolume(`${prefix}-victim`);
    symlinkSync(sentinel, join(dataDir.volumesDir, "evil-link"));
    symlinkSync("/", join(dataDir.volumesDir, "evil-root"));
    symlinkSync(victim, join(dataDir.volumesDir, "evil-sibling"));
    const volumesBefore = snapshot(dataDir.volumesDir);
    const sentinelBefore = snapshot(sentinel);
    const archivesBefore = existsSync(dataDir.archivesDir) ? snapshot(dataDir.archivesDir) : {};

    const hostile: Array<[unknown, string]> = [
      [{ serviceId: "../.." }, "contains a path separator"],
      [{ serviceId: ".." }, "is a relative path reference"],
      [{ serviceId: "." }, "is a relative path reference"],
      [{ serviceId: "" }, "is empty"],
      [{ serviceId: "/" }, "is an absolute path"],
      [{ serviceId: sentinel }, "is an absolute path"],
      [{ serviceId: `../../${relative(root, sentinel)}` }, "contains a path separator"],
      [{ serviceId: "..%2f..%2fsentinel" }, "percent-encoded"],
      [{ serviceId: "%2e%2e" }, "percent-encoded"],
      [{ serviceId: "..\\..\\sentinel" }, "contains a path separator"],
      [{ serviceId: "x\0/../.." }, "contains a NUL byte"],
      [{ serviceId: "evil-link" }, "is a symbolic link"],
      [{ serviceId: "evil-root" }, "is a symbolic link"],
      [{ serviceId: "evil-sibling" }, "is a symbolic link"],
      [{ serviceId: ["..", ".."] }, "cleanup_volumes payload is invalid: serviceId"],
      [{ path: "/" }, "cleanup_volumes payload is invalid: serviceId"],
      ['{"serviceId": "../.."', "cleanup_volumes payload is not valid JSON"],
    ];
    for (const [payload, why] of hostile) {
      const res = await runItem("cleanup_volumes", payload);
      expect(res.status).toBe("failed");
      expect(res.error).toContain(why);
    }
    expect(snapshot(dataDir.volumesDir)).toEqual(volumesBefore);
    expect(snapshot(sentinel)).toEqual(sentinelBefore);
    expect(existsSync(dataDir.archivesDir) ? snapshot(dataDir.archivesDir) : {}).toEqual(archivesBefore);
    expect(readFileSync(dataDir.configFile, "utf8")).toBe("{\"sentinel\":true}");
  }, 60_000);
});

test("the unlabelled container came through everything untouched", async () => {
  expect(await inspect(ids.unmanaged!)).toEqual({ running: true, startedAt: unmanagedStartedAt });
  expect(starts("unmanaged")).toBe(1);
});
