import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { TEST_IMAGE, uniquePrefix, waitFor } from "../support/podman.ts";
import { TestControlPlane, type WorkItemRecord } from "../support/TestControlPlane.ts";

/**
 * The work queue through the compiled binary: `agent run` polls it, refuses hostile items,
 * and after a lost acknowledgement and a SIGKILL re-reports instead of acting again. Podman is
 * a world of the test's own (isolatedPodman), so the agent's orphan rule cannot reach other
 * tests' containers.
 */
const prefix = uniquePrefix("wqe");
const tmp = tempDir("workqueue-e2e-");
const dataDir = join(tmp.path, "data");
const sentinel = join(tmp.path, "sentinel");
const cp = new TestControlPlane();
let pod: IsolatedPodman;
let bystander = "";
let bystanderStartedAt = "";
let serverId = "";
let token = "";

function startAgent(args: string[] = []) {
  return startAgentCli(
    ["run", "--url", cp.url, "--data-dir", dataDir, "--dns-port", "0", "--wireguard", "off", "--poll-interval", "60", "--work-queue-interval", "0.2", "--build-poll-interval", "3600", ...args],
    { env: pod.env },
  );
}

async function bystanderState(): Promise<string> {
  return (await pod.podman(["inspect", "--format", "{{.State.Status}} {{.State.StartedAt}}", bystander])).trim();
}

beforeAll(async () => {
  const subnetId = await freeSubnetId();
  pod = await startIsolatedPodman({ images: [TEST_IMAGE], network: { subnetId } });
  bystander = (await pod.podman(["run", "-d", "--name", `${prefix}-bystander`, TEST_IMAGE, "sleep", "100000"])).trim();
  bystanderStartedAt = await bystanderState();
  await cp.start();
  cp.nextSubnet = subnetId;
  token = cp.issueToken();
  serverId = cp.serverByToken(token)!.id;
  cp.setExpectedState(serverId, { containers: [] });
  mkdirSync(sentinel);
  writeFileSync(join(sentinel, "precious"), "do not delete");
}, 120_000);

afterAll(async () => {
  await cp.stop();
  await pod?.stop();
  tmp.cleanup();
}, 120_000);

test("agent run refuses hostile items, touches nothing outside what it may, and cleans a real volume", async () => {
  const agent = startAgent(["--token", token]);
  try {
    await agent.waitForLog(/registered as server/);
    mkdirSync(join(dataDir, "volumes", "real-svc", "data"), { recursive: true });
    writeFileSync(join(dataDir, "volumes", "real-svc", "data", "db"), "rows");
    symlinkSync(sentinel, join(dataDir, "volumes", "evil"));

    const items: Array<[WorkItemRecord, string]> = [
      [cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: "../.." }), "contains a path separator"],
      [cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: sentinel }), "is an absolute path"],
      [cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: "..%2f..%2fsentinel" }), "percent-encoded"],
      [cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: "evil" }), "is a symbolic link"],
      [cp.addWorkItem(serverId, "cleanup_volumes", '{"serviceId":'), "not valid JSON"],
      [cp.addWorkItem(serverId, "stop", { deploymentId: "d", containerId: bystander }), "is not managed by the agent"],
      [cp.addWorkItem(serverId, "restart", { deploymentId: "d", containerId: bystander.slice(0, 12) }), "is not managed by the agent"],
      [cp.addWorkItem(serverId, "force_cleanup", { serviceId: "s", containerIds: [bystander] }), "is not managed by the agent"],
      [cp.addWorkItem(serverId, "format_disk", {}), 'unknown work item type "format_disk"'],
    ];
    const good = [cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: "real-svc" }), cp.addWorkItem(serverId, "deploy", {})];
    const all = [...items.map(([item]) => item), ...good];
    await waitFor(() => all.every((i) => i.acks.length > 0), 60_000, "every work item to be reported");

    for (const [item, why] of items) {
      expect(item.acks).toHaveLength(1);
      expect(item.acks[0]!.status).toBe("failed");
      expect(item.acks[0]!.error).toContain(why);
    }
    for (const item of good) expect(item.acks).toEqual([{ status: "completed" }]);
    expect(readFileSync(join(sentinel, "precious"), "utf8")).toBe("do not delete");
    expect(readdirSync(sentinel)).toEqual(["precious"]);
    expect(await bystanderState()).toBe(bystanderStartedAt);
    expect(existsSync(join(dataDir, "volumes", "real-svc"))).toBe(false);
    expect(readdirSync(join(dataDir, "archives", "volumes", "real-svc"))).toHaveLength(1);
    expect(existsSync(join(dataDir, "config.json"))).toBe(true);
    expect(await agent.stop("SIGTERM")).toBe(0);
  } finally {
    if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
  }
}, 120_000);

test("an acknowledgement lost before a SIGKILL: the cleanup ran once and its result is re-reported after the restart", async () => {
  const volume = join(dataDir, "volumes", "lost-svc");
  mkdirSync(volume, { recursive: true });
  writeFileSync(join(volume, "data"), "first");
  const drop = cp.intercept((req) => (req.method === "POST" && req.path === "/api/v1/agent/work-queue" ? new Response('{"error":"unavailable"}', { status: 503 }) : undefined));
  const item = cp.addWorkItem(serverId, "cleanup_volumes", { serviceId: "lost-svc" });
  let agent = startAgent();
  try {
    await agent.waitForLog(/cleanup_volumes \S+: completed: deleted/, 60_000);
    await agent.waitForLog(/the result could not be reported/, 60_000);
    expect(await agent.stop("SIGKILL")).not.toBe(0);
  } finally {
    drop();
    if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
  }
  expect(item.acks).toEqual([]);
  expect(existsSync(volume)).toBe(false);

  // New data appears under the same service id: a second run of the item would archive and delete it.
  mkdirSync(volume);
  writeFileSync(join(volume, "data"), "second");
  agent = startAgent();
  try {
    await waitFor(() => item.acks.length > 0, 60_000, "the re-report");
    expect(item.acks).toEqual([{ status: "completed" }]);
    expect(agent.stderr()).toMatch(/cleanup_volumes \S+: handled before \(completed\); reporting the recorded result again, not running it again/);
    expect(readFileSync(join(volume, "data"), "utf8")).toBe("second");
    expect(readdirSync(join(dataDir, "archives", "volumes", "lost-svc"))).toHaveLength(1);
    expect(await agent.stop("SIGTERM")).toBe(0);
  } finally {
    if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
  }
}, 180_000);
