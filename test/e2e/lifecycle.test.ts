/**
 * Stopping the agent at any moment never breaks the node. The compiled agent redeploys a
 * deployment on real Podman and gets SIGTERM — sent to its whole process group, as cron's
 * `timeout` does — at each step of the redeploy (pull, the stop of an old container that ignores
 * SIGTERM, remove, create, start), as `reconcile --once` and as `agent run`. No Podman socket is
 * given: the agent starts its own `podman system service` (in an isolated world), which must
 * outlive the agent's calls. After each stop the next pass converges, with no conmon left without
 * its container, the published port answering and exactly one container for the deployment.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { readConmonProcesses } from "../../lib/podman/conmonProcesses.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { runAgentJson, startAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman, type PsRow } from "../support/isolatedPodman.ts";
import { STUBBORN_CMD } from "../support/leftoverMakers.ts";
import { buildTestImage, freePort, podman as hostPodman, pushImage, servicePids, startRegistry, uniquePrefix, waitFor, type Registry } from "../support/podman.ts";

const WEB_IMAGE = "localhost/hello-web:test";
const prefix = uniquePrefix("lc");
const network = `${prefix}-net`;
const tmp = tempDir("lifecycle-e2e-");
const STUBBORN = `localhost/${prefix}-stubborn:1`;
const cp = new TestControlPlane();
let world: IsolatedPodman;
let registry: Registry;
let subnetId: number;
let port: number;
let tags = 0;

interface Deployment {
  n: number;
  image: string;
}

function wireContainer(d: Deployment, hostPort?: number) {
  return {
    deploymentId: `${prefix}-dep${d.n}`,
    serviceId: `${prefix}-svc${d.n}`,
    serviceName: `web${d.n}`,
    name: `${prefix}-web${d.n}`,
    image: d.image,
    ipAddress: `10.200.${subnetId}.${10 + d.n}`,
    ports: hostPort ? [{ containerPort: 8080, hostPort }] : [],
    env: {},
    healthCheck: null,
    volumes: [],
  };
}

function stateOf(deployments: Deployment[]) {
  return { containers: deployments.map((d) => wireContainer(d, d.n === 1 ? port : undefined)) };
}

function writeState(deployments: Deployment[]): string {
  const path = join(tmp.path, `state-${Math.random().toString(36).slice(2, 8)}.json`);
  writeFileSync(path, JSON.stringify(stateOf(deployments)));
  return path;
}

const COMMON = ["--network-name", network, "--dns-port", "0"];
const ENV = () => ({ ...world.env, AGENT_LOG_LEVEL: "debug", AGENT_INSECURE_REGISTRIES: registry.host });

async function reconcileOnce(dataDir: string, statePath?: string) {
  const source = statePath ? ["--state", statePath, "--subnet-id", String(subnetId)] : [];
  return runAgentJson(["reconcile", "--once", "--json", "--data-dir", dataDir, ...source, ...COMMON], { env: ENV(), timeoutMs: 170_000 });
}

/** A new tag of `source` in the registry: the agent has to pull it. */
async function freshRegistryImage(source = WEB_IMAGE): Promise<string> {
  return pushImage(source, registry.host, `${prefix}/web:v${++tags}`);
}

/** A new local tag of `source` in the world: a redeploy without a pull. */
async function freshLocalImage(source = WEB_IMAGE): Promise<string> {
  const image = `localhost/${prefix}-web:v${++tags}`;
  await world.podman(["tag", source, image]);
  return image;
}

async function containersOf(deploymentN: number): Promise<PsRow[]> {
  const rows = await world.ps();
  return rows.filter((r) => r.Labels?.["techulus.deployment.id"] === `${prefix}-dep${deploymentN}`);
}

/** The node is whole: one running container per deployment with the expected image, the port answers, no conmon without its container. */
async function expectConverged(deployments: Deployment[]): Promise<void> {
  for (const d of deployments) {
    const rows = await containersOf(d.n);
    expect(rows.map((r) => `${r.State} ${r.Image}`)).toEqual([`running ${d.image}`]);
  }
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status).catch(() => 0)) === 200, 15_000, "the published port to answer");
  const known = new Set((await world.ps()).map((r) => r.Id));
  const strays = readConmonProcesses().filter((c) => c.storageRoot === join(world.dir, "root") && !known.has(c.containerId));
  expect(strays.map((c) => `conmon ${c.pid} of ${c.name}`)).toEqual([]);
}

beforeAll(async () => {
  subnetId = await freeSubnetId();
  port = await freePort();
  await buildTestImage(STUBBORN, STUBBORN_CMD);
  [registry] = await Promise.all([startRegistry(), cp.start()]);
  world = await startIsolatedPodman({ images: [WEB_IMAGE, STUBBORN], network: { subnetId, name: network }, service: false });
}, 180_000);

afterAll(async () => {
  await world?.stop();
  await registry?.stop();
  await cp.stop();
  await hostPodman(["rmi", "-f", STUBBORN], { allowFailure: true });
  tmp.cleanup();
});

interface Step {
  name: string;
  /** The log line (AGENT_LOG_LEVEL=debug) at which the signal is sent. */
  at: RegExp;
  /** Waits this long after the line, so the signal lands inside the step. */
  delayMs?: number;
  /** The deployment's image before and the image it is redeployed to. */
  images(): Promise<{ from: string; to: string }>;
}

const STEPS: Step[] = [
  { name: "pull", at: /\[podman\] pulling /, images: async () => ({ from: await freshLocalImage(), to: await freshRegistryImage() }) },
  { name: "stop of an old container that ignores SIGTERM", at: /\[podman\] removing /, delayMs: 1500, images: async () => ({ from: await freshLocalImage(STUBBORN), to: await freshLocalImage() }) },
  { name: "remove", at: /\[podman\] removing /, images: async () => ({ from: await freshLocalImage(), to: await freshLocalImage() }) },
  { name: "create", at: /\[podman\] creating /, images: async () => ({ from: await freshLocalImage(), to: await freshLocalImage() }) },
  { name: "start", at: /\[podman\] starting /, images: async () => ({ from: await freshLocalImage(), to: await freshLocalImage() }) },
];

describe("SIGTERM at each step of a redeploy: agent reconcile --once", () => {
  const dataDir = join(tmp.path, "once-data");

  for (const step of STEPS) {
    test(`during the ${step.name}: the change in flight is finished, exit 0, the next pass has nothing to do`, async () => {
      const { from, to } = await step.images();
      expect((await reconcileOnce(dataDir, writeState([{ n: 1, image: from }]))).exitCode).toBe(0);

      const agent = startAgentCli(["reconcile", "--once", "--json", "--data-dir", dataDir, "--state", writeState([{ n: 1, image: to }]), "--subnet-id", String(subnetId), ...COMMON], { env: ENV(), processGroup: true });
      try {
        await agent.waitForLog(step.at, 60_000);
        if (step.delayMs) await Bun.sleep(step.delayMs);
        agent.signalGroup("SIGTERM");
        expect(await agent.exited()).toBe(0);
        expect(agent.stderr()).toContain("received SIGTERM; finishing what is in flight");
      } finally {
        if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
      }
      const next = await reconcileOnce(dataDir, writeState([{ n: 1, image: to }]));
      expect(next.exitCode).toBe(0);
      expect(next.json.applied).toEqual([]);
      await expectConverged([{ n: 1, image: to }]);
    }, 120_000);
  }

  test("a signal between two changes: the first is finished and reported, the second is left, exit 5; the next pass applies it", async () => {
    const image = await freshLocalImage();
    expect((await reconcileOnce(dataDir, writeState([{ n: 1, image }]))).exitCode).toBe(0);
    const two = writeState([{ n: 1, image }, { n: 2, image }, { n: 3, image }]);
    const agent = startAgentCli(["reconcile", "--once", "--json", "--data-dir", dataDir, "--state", two, "--subnet-id", String(subnetId), ...COMMON], { env: ENV(), processGroup: true });
    let stdout = "";
    try {
      await agent.waitForLog(/\[podman\] creating /, 60_000);
      agent.signalGroup("SIGTERM");
      expect(await agent.exited()).toBe(5);
      stdout = await new Response(agent.proc.stdout).text();
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ converged: false, interruptedBy: "SIGTERM", exitCode: 5 });
    expect(result.applied).toHaveLength(1);
    expect(result.remaining).toHaveLength(1);
    const next = await reconcileOnce(dataDir, two);
    expect(next.exitCode).toBe(0);
    expect(next.json.applied).toHaveLength(1);
    await expectConverged([{ n: 1, image }, { n: 2, image }, { n: 3, image }]);
    expect((await reconcileOnce(dataDir, writeState([{ n: 1, image }]))).exitCode).toBe(0);
  }, 120_000);

  test("a second SIGTERM exits at once (143); Podman still finishes the stop it was asked for, and the next pass converges", async () => {
    const from = await freshLocalImage(STUBBORN);
    const to = await freshLocalImage();
    expect((await reconcileOnce(dataDir, writeState([{ n: 1, image: from }]))).exitCode).toBe(0);
    const oldId = (await containersOf(1))[0]!.Id;
    const agent = startAgentCli(["reconcile", "--once", "--data-dir", dataDir, "--state", writeState([{ n: 1, image: to }]), "--subnet-id", String(subnetId), ...COMMON], { env: ENV(), processGroup: true });
    try {
      await agent.waitForLog(/\[podman\] removing /, 60_000);
      await Bun.sleep(1000);
      agent.signalGroup("SIGTERM");
      await agent.waitForLog(/finishing what is in flight/, 10_000);
      agent.signalGroup("SIGTERM");
      expect(await agent.exited()).toBe(143);
      expect(agent.stderr()).toContain("again while stopping: exiting now");
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
    // The agent's podman service was not in its process group: the remove goes on without it.
    await waitFor(async () => !(await containersOf(1)).some((r) => r.Id === oldId), 30_000, "Podman to finish removing the old container");
    const next = await reconcileOnce(dataDir, writeState([{ n: 1, image: to }]));
    expect(next.exitCode).toBe(0);
    await expectConverged([{ n: 1, image: to }]);
  }, 120_000);

  test("the podman service killed in the middle of a stop: the next pass finishes what it left and converges, saying what it found", async () => {
    const from = await freshLocalImage(STUBBORN);
    const to = await freshLocalImage();
    expect((await reconcileOnce(dataDir, writeState([{ n: 1, image: from }]))).exitCode).toBe(0);
    const agent = startAgentCli(["reconcile", "--once", "--data-dir", dataDir, "--state", writeState([{ n: 1, image: to }]), "--subnet-id", String(subnetId), ...COMMON], { env: ENV(), processGroup: true });
    try {
      await agent.waitForLog(/\[podman\] removing /, 60_000);
      await Bun.sleep(1000);
      for (const pid of servicePids(join(dataDir, "podman.sock"))) process.kill(pid, "SIGKILL");
      agent.signalGroup("SIGKILL");
      await agent.exited();
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
    expect((await containersOf(1)).map((r) => r.State)).toEqual(["stopping"]);
    const next = await reconcileOnce(dataDir, writeState([{ n: 1, image: to }]));
    expect(next.exitCode).toBe(0);
    expect(next.stderr).toMatch(/leftover of an interrupted operation: container .* is stuck in "stopping"/);
    await expectConverged([{ n: 1, image: to }]);
  }, 120_000);
});

describe("SIGTERM at each step of a redeploy: agent run", () => {
  const dataDir = join(tmp.path, "run-data");
  let serverId: string;

  beforeAll(async () => {
    cp.nextSubnet = subnetId;
    const token = cp.issueToken();
    serverId = cp.serverByToken(token)!.id;
    cp.setExpectedState(serverId, { containers: [] });
    // Registers, then stops at once: SIGTERM during start-up ends the agent once it has started, exit 0.
    const agent = startAgentCli(["run", "--url", cp.url, "--token", token, "--data-dir", dataDir, "--wireguard", "off", ...COMMON], { env: ENV(), processGroup: true });
    try {
      await agent.waitForLog(/started podman system service|using podman API socket/, 60_000);
      agent.signalGroup("SIGTERM");
      expect(await agent.exited()).toBe(0);
      expect(agent.stderr()).toContain("agent started");
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
  }, 120_000);

  function startRun() {
    return startAgentCli(["run", "--data-dir", dataDir, "--wireguard", "off", "--poll-interval", "1", "--work-queue-interval", "60", "--build-poll-interval", "3600", ...COMMON], { env: ENV(), processGroup: true });
  }

  for (const step of STEPS) {
    test(`during the ${step.name}: the change in flight is finished, exit 0, the node converged`, async () => {
      const { from, to } = await step.images();
      cp.setExpectedState(serverId, stateOf([{ n: 1, image: from }]));
      expect((await reconcileOnce(dataDir)).exitCode).toBe(0);

      cp.setExpectedState(serverId, stateOf([{ n: 1, image: to }]));
      const agent = startRun();
      try {
        await agent.waitForLog(step.at, 60_000);
        if (step.delayMs) await Bun.sleep(step.delayMs);
        agent.signalGroup("SIGTERM");
        expect(await agent.exited()).toBe(0);
        expect(agent.stderr()).toMatch(/stopped; containers keep running/);
      } finally {
        if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
      }
      const next = await reconcileOnce(dataDir);
      expect(next.exitCode).toBe(0);
      expect(next.json.applied).toEqual([]);
      await expectConverged([{ n: 1, image: to }]);
    }, 120_000);
  }
});
