import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FileLock } from "../../lib/fs/fileLock.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { runAgentCli, runAgentJson, startAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman, type PsRow } from "../support/isolatedPodman.ts";
import { buildTestImage, freePort, podman as hostPodman, uniquePrefix, waitFor } from "../support/podman.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";

const WEB_IMAGE = "localhost/hello-web:test";
const prefix = uniquePrefix("rc");
const network = `${prefix}-net`;
const tmp = tempDir("reconcile-e2e-");
// A store of its own: the agent's orphan rule would otherwise reach other tests' managed containers.
let service: IsolatedPodman;
const podman = (args: string[]) => service.podman(args);
let subnetId: number;
let env: Record<string, string>;

interface ContainerSpec {
  n: number;
  image?: string;
  hostPort?: number;
  env?: Record<string, string>;
}

function expectedContainer(s: ContainerSpec, serviceId = `${prefix}-svc${s.n}`) {
  return {
    deploymentId: `${prefix}-dep${s.n}`,
    serviceId,
    serviceName: `web${s.n}`,
    name: `${prefix}-web${s.n}`,
    image: s.image ?? WEB_IMAGE,
    ipAddress: `10.200.${subnetId}.${10 + s.n}`,
    ports: s.hostPort ? [{ containerPort: 8080, hostPort: s.hostPort }] : [],
    env: s.env ?? {},
    healthCheck: null,
    volumes: [],
  };
}

function writeState(name: string, state: unknown): string {
  const path = join(tmp.path, `${name}.json`);
  writeFileSync(path, JSON.stringify(state));
  return path;
}

async function reconcile(statePath: string, extra: string[] = [], dataDir = join(tmp.path, "data")) {
  return runAgentJson(
    ["reconcile", "--once", "--json", "--state", statePath, "--data-dir", dataDir, "--network-name", network, "--subnet-id", String(subnetId), "--dns-port", "0", ...extra],
    { env, timeoutMs: 170_000 },
  );
}

async function ours(world: IsolatedPodman = service): Promise<PsRow[]> {
  const rows = await world.ps();
  return rows.filter((r) => r.Names.some((n) => n.startsWith(prefix)));
}

async function byName(name: string, world: IsolatedPodman = service): Promise<PsRow | undefined> {
  return (await ours(world)).find((r) => r.Names.includes(name));
}

beforeAll(async () => {
  subnetId = await freeSubnetId();
  service = await startIsolatedPodman({ images: [WEB_IMAGE], network: { subnetId, name: network } });
  env = service.env;
});

afterAll(async () => {
  await service.stop();
  tmp.cleanup();
});

describe("agent reconcile --once --state (real Podman)", () => {
  let port1: number;

  test("deploys several containers, reachable on their published ports, with plain env", async () => {
    port1 = await freePort();
    const state = writeState("three", {
      containers: [expectedContainer({ n: 1, hostPort: port1, env: { GREETING: "plain:hi there" } }), expectedContainer({ n: 2 }), expectedContainer({ n: 3 })],
    });
    const res = await reconcile(state);
    expect(res.stderr).not.toContain("hi there");
    expect(res.exitCode).toBe(0);
    expect(res.json.converged).toBe(true);
    expect(res.json.applied.map((a: { kind: string }) => a.kind)).toEqual(["deploy", "deploy", "deploy"]);
    const rows = await ours();
    expect(rows.filter((r) => r.State === "running")).toHaveLength(3);
    const web1 = (await byName(`${prefix}-web1`))!;
    expect(web1.Labels?.["techulus.service.id"]).toBe(`${prefix}-svc1`);
    expect(web1.Labels?.["techulus.deployment.id"]).toBe(`${prefix}-dep1`);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port1}/`).then((r) => r.text()).catch(() => "")).includes("hello from"), 15_000, "the web page");
    const greeting = await podman(["exec", `${prefix}-web1`, "sh", "-c", "echo $GREETING"]);
    expect(greeting.trim()).toBe("hi there");
    const inspect = JSON.parse(await podman(["inspect", `${prefix}-web1`]))[0];
    expect(inspect.NetworkSettings.Networks[network].IPAddress).toBe(`10.200.${subnetId}.11`);
  });

  test("a second pass over a converged node changes nothing (exit 0, nothing applied)", async () => {
    const before = (await ours()).map((r) => r.Id).sort();
    const res = await reconcile(join(tmp.path, "three.json"));
    expect(res.exitCode).toBe(0);
    expect(res.json.applied).toEqual([]);
    expect((await ours()).map((r) => r.Id).sort()).toEqual(before);
  });

  test("--dry-run prints the plan with reasons, exits 3 and changes nothing", async () => {
    const state = writeState("dry", { containers: [expectedContainer({ n: 1, hostPort: port1 }), expectedContainer({ n: 2 }), expectedContainer({ n: 4 })] });
    const before = (await ours()).map((r) => `${r.Id} ${r.State}`).sort();
    const res = await reconcile(state, ["--dry-run"]);
    expect(res.exitCode).toBe(3);
    expect(res.json.dryRun).toBe(true);
    const plan = res.json.remaining as Array<{ kind: string; description: string; reason: string }>;
    expect(plan.map((c) => c.kind)).toEqual(["stop-orphan", "deploy"]);
    expect(plan[0]!.reason).toContain(`${prefix}-dep3`);
    expect(plan[1]!.description).toContain(`${prefix}-web4`);
    expect((await ours()).map((r) => `${r.Id} ${r.State}`).sort()).toEqual(before);
    const text = await runAgentCli(["reconcile", "--once", "--dry-run", "--state", state, "--data-dir", join(tmp.path, "data"), "--network-name", network, "--subnet-id", String(subnetId), "--dns-port", "0"], { env });
    expect(text.stdout).toContain("2 changes planned:");
    expect(text.stdout).toContain("reason: ");
    expect(text.stdout).toContain("(dry run: nothing applied)");
  });

  test("a deployment no longer expected goes running → stopped → removed; unlabelled containers are never touched", async () => {
    // Outside the addresses the expected states use (.11–.15): CNI would otherwise hand it the next one
    // (taking an address on purpose is tested in test/integration/leftovers.test.ts).
    await podman(["run", "-d", "--name", `${prefix}-unlabelled`, "--network", network, "--ip", `10.200.${subnetId}.200`, WEB_IMAGE]);
    const unlabelled = (await byName(`${prefix}-unlabelled`))!;
    const res = await reconcile(join(tmp.path, "dry.json"));
    expect(res.exitCode).toBe(0);
    expect(res.json.applied.map((a: { kind: string }) => a.kind)).toEqual(["stop-orphan", "remove-orphan", "deploy"]);
    expect(await byName(`${prefix}-web3`)).toBeUndefined();
    expect((await byName(`${prefix}-web4`))?.State).toBe("running");
    const still = (await byName(`${prefix}-unlabelled`))!;
    expect(still.Id).toBe(unlabelled.Id);
    expect(still.State).toBe("running");
  });

  test("an orphan without a deployment id is removed", async () => {
    await podman(["run", "-d", "--name", `${prefix}-orphan`, "--label", `techulus.service.id=${prefix}-svcX`, "--network", network, "--ip", `10.200.${subnetId}.201`, WEB_IMAGE]);
    const res = await reconcile(join(tmp.path, "dry.json"));
    expect(res.exitCode).toBe(0);
    expect(res.json.applied[0].reason).toContain("techulus.deployment.id");
    expect(await byName(`${prefix}-orphan`)).toBeUndefined();
  });

  test("exited and created containers are started, not recreated", async () => {
    const web2 = (await byName(`${prefix}-web2`))!;
    await podman(["stop", `${prefix}-web2`]);
    // A container created but never started, as an agent killed between create and start leaves it.
    const created = expectedContainer({ n: 5 });
    await podman([
      "create",
      "--name", created.name,
      "--label", `techulus.service.id=${created.serviceId}`,
      "--label", `techulus.deployment.id=${created.deploymentId}`,
      "--network", network,
      "--ip", created.ipAddress,
      WEB_IMAGE,
    ]);
    const createdId = (await byName(created.name))!.Id;
    const state = writeState("five", { containers: [expectedContainer({ n: 1, hostPort: port1 }), expectedContainer({ n: 2 }), expectedContainer({ n: 4 }), created] });
    const res = await reconcile(state);
    expect(res.exitCode).toBe(0);
    expect(res.json.applied.map((a: { kind: string }) => a.kind)).toEqual(["start", "start"]);
    expect((await byName(`${prefix}-web2`))!.Id).toBe(web2.Id);
    expect((await byName(created.name))!.Id).toBe(createdId);
    expect((await byName(created.name))!.State).toBe("running");
  });

  test("a container with the wrong image is redeployed", async () => {
    await podman(["tag", WEB_IMAGE, `localhost/${prefix}-web:v2`]);
    const old = (await byName(`${prefix}-web4`))!;
    const state = writeState("v2", {
      containers: [expectedContainer({ n: 1, hostPort: port1 }), expectedContainer({ n: 2 }), expectedContainer({ n: 4, image: `localhost/${prefix}-web:v2` }), expectedContainer({ n: 5 })],
    });
    const res = await reconcile(state);
    expect(res.exitCode).toBe(0);
    expect(res.json.applied).toHaveLength(1);
    expect(res.json.applied[0].kind).toBe("redeploy");
    expect(res.json.applied[0].reason).toContain(`localhost/${prefix}-web:v2`);
    const now = (await byName(`${prefix}-web4`))!;
    expect(now.Id).not.toBe(old.Id);
    expect(now.Image).toContain(`${prefix}-web:v2`);
  });

  test("an invalid expected state is rejected as a whole and nothing changes", async () => {
    const before = (await ours()).map((r) => `${r.Id} ${r.State}`).sort();
    const state = writeState("invalid", {
      containers: [expectedContainer({ n: 6 }), { ...expectedContainer({ n: 7 }), image: "evil;rm -rf /" }],
    });
    const res = await reconcile(state);
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toContain("expected state rejected");
    expect(res.stderr).toContain("evil;rm -rf /");
    expect((await ours()).map((r) => `${r.Id} ${r.State}`).sort()).toEqual(before);
    const notJson = join(tmp.path, "broken.json");
    writeFileSync(notJson, "{ containers: [");
    const broken = await reconcile(notJson);
    expect(broken.exitCode).toBe(1);
    expect(broken.stderr).toContain("is not valid JSON");
  });

  test("a state that cannot work on this node (ports, addresses) is rejected as a whole, each problem named, before anything changes", async () => {
    const before = (await ours()).map((r) => `${r.Id} ${r.State}`).sort();
    const shared = await freePort();
    const at = (n: number, ip: string) => ({ ...expectedContainer({ n }), ipAddress: ip });
    const state = writeState("unworkable", {
      containers: [
        expectedContainer({ n: 6, hostPort: 22 }),
        expectedContainer({ n: 7, hostPort: 51820 }),
        expectedContainer({ n: 8, hostPort: shared }),
        expectedContainer({ n: 9, hostPort: shared }),
        at(10, `10.200.${subnetId}.30`),
        at(11, `10.200.${subnetId}.30`),
        at(12, `10.200.${(subnetId + 1) % 256}.30`),
        at(13, `10.200.${subnetId}.1`),
      ],
    });
    const res = await reconcile(state);
    expect(res.exitCode).toBe(1);
    const name = (n: number) => `"${prefix}-web${n}"`;
    for (const problem of [
      `containers[0] ${name(6)}: host port 22 is outside the host ports containers may publish (1024-65535, --host-port-range)`,
      `containers[1] ${name(7)}: host port 51820 is the agent's WireGuard port (--wireguard-port)`,
      `containers[3] ${name(9)}: host port ${shared} is also published by containers[2] ${name(8)}`,
      `containers[5] ${name(11)} ipAddress: 10.200.${subnetId}.30 is also the address of containers[4] ${name(10)}`,
      `containers[6] ${name(12)} ipAddress: 10.200.${(subnetId + 1) % 256}.30 is outside this node's container subnet 10.200.${subnetId}.0/24`,
      `containers[7] ${name(13)} ipAddress: 10.200.${subnetId}.1 is the gateway of 10.200.${subnetId}.0/24`,
    ]) {
      expect(res.stderr).toContain(problem);
    }
    expect(res.stderr).toContain("expected state rejected (6 problems)");
    // Nothing deployed, and the containers the state leaves out were not removed either.
    expect((await ours()).map((r) => `${r.Id} ${r.State}`).sort()).toEqual(before);

    // The range is a setting: with 22 allowed, only the agent's own port and the conflicts remain.
    const wider = await reconcile(state, ["--host-port-range", "22,1024-65535"]);
    expect(wider.stderr).toContain("expected state rejected (5 problems)");
    expect(wider.stderr).not.toContain("host port 22");
  });

  test("killed with SIGKILL in the middle of a deploy, the next pass converges without a duplicate", async () => {
    const many = [1, 2, 4, 5, 8, 9, 10, 11].map((n) => expectedContainer({ n, ...(n === 1 ? { hostPort: port1 } : {}), ...(n === 4 ? { image: `localhost/${prefix}-web:v2` } : {}) }));
    const state = writeState("many", { containers: many });
    const agent = startAgentCli(
      ["reconcile", "--once", "--state", state, "--data-dir", join(tmp.path, "data"), "--network-name", network, "--subnet-id", String(subnetId), "--dns-port", "0"],
      { env },
    );
    await agent.waitForLog(/\[reconcile\] deploy .*web9/, 60_000);
    await agent.stop("SIGKILL");
    const res = await reconcile(state);
    expect(res.exitCode).toBe(0);
    const rows = await ours();
    const managed = rows.filter((r) => r.Labels?.["techulus.deployment.id"]);
    expect(managed).toHaveLength(many.length);
    expect(new Set(managed.map((r) => r.Labels!["techulus.deployment.id"])).size).toBe(many.length);
    expect(managed.every((r) => r.State === "running")).toBe(true);
  });

  test("WireGuard peers in a state file on a node without registration: a line says they were skipped, and why", async () => {
    const subnet = await freeSubnetId();
    const world = await startIsolatedPodman({ images: [], network: { subnetId: subnet, name: network } });
    try {
      const key = (n: number) => Buffer.alloc(32, n).toString("base64");
      const peers = [
        { publicKey: key(1), allowedIps: "10.100.2.0/24,10.200.2.0/24", endpoint: "203.0.113.7:51820" },
        { publicKey: key(2), allowedIps: "10.100.3.0/24", endpoint: null },
      ];
      const state = writeState("peers", { containers: [], wireguard: { peers } });
      const args = ["reconcile", "--once", "--state", state, "--data-dir", join(tmp.path, "peers-data"), "--network-name", network, "--subnet-id", String(subnet), "--dns-port", "0"];
      const note = "2 WireGuard peers of the expected state: this node is not registered, and the mesh needs the address registration gives (agent run --url … --token …)";
      const json = await runAgentJson([...args, "--json"], { env: world.env });
      expect(json.exitCode).toBe(0);
      expect(json.json).toMatchObject({ converged: true, applied: [], skipped: [note] });
      expect(json.stderr).toContain(`[reconcile] warn: skipped ${note}`);
      const text = await runAgentCli(args, { env: world.env });
      expect(text.stdout).toBe(`skipped  ${note}\nconverged: 0 change(s) in ${/in (\d+) ms/.exec(text.stdout)?.[1]} ms\n`);
      const doctor = await runAgentJson(["doctor", "--json", ...args.slice(2)], { env: world.env, timeoutMs: 120_000 });
      expect(doctor.json.checks.find((c: { id: string }) => c.id === "drift")).toMatchObject({ status: "ok", detail: expect.stringContaining(`; skipped ${note}`) });
    } finally {
      await world.stop();
    }
  });

  test("the data-dir lock: reconcile waits, then exits 4 naming the holder", async () => {
    const dataDir = join(tmp.path, "locked");
    const { DataDir } = await import("../../lib/datadir/DataDir.ts");
    new DataDir(dataDir).ensure();
    const lock = FileLock.tryAcquire(join(dataDir, "agent.lock"));
    if (!(lock instanceof FileLock)) throw new Error("could not take the lock");
    try {
      const res = await reconcile(join(tmp.path, "many.json"), ["--lock-wait", "1"], dataDir);
      expect(res.exitCode).toBe(4);
      expect(res.stderr).toContain(`locked by process ${process.pid}`);
    } finally {
      lock.release();
    }
  });

  test("usage errors exit 2", async () => {
    const noOnce = await runAgentCli(["reconcile", "--state", "x.json"], { env });
    expect(noOnce.exitCode).toBe(2);
    expect(noOnce.stderr).toContain("needs --once");
    const missing = await reconcile(join(tmp.path, "does-not-exist.json"));
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("cannot read");
    const noIdentity = await runAgentCli(["reconcile", "--once", "--data-dir", join(tmp.path, "empty")], { env });
    expect(noIdentity.exitCode).toBe(2);
    expect(noIdentity.stderr).toContain("has no identity");
  });
});

describe("agent run against the test control plane (real Podman)", () => {
  const cp = new TestControlPlane();
  const dataDir = join(tmp.path, "run-data");
  let serverId: string;

  let runWorld: IsolatedPodman;
  let runSubnet: number;
  const loggerImage = `localhost/${prefix}-logger:1`;
  const logs = new TestVictoriaLogs();
  beforeAll(async () => {
    await Promise.all([cp.start(), logs.start()]);
    runSubnet = cp.nextSubnet = await freeSubnetId();
    await buildTestImage(loggerImage, ["sh", "-c", "echo hello-stdout; echo hello-stderr >&2; trap 'exit 0' TERM; sleep 100000 & wait"]);
    runWorld = await startIsolatedPodman({ images: [WEB_IMAGE, loggerImage], network: { subnetId: runSubnet, name: `${prefix}-runnet` } });
  });
  afterAll(async () => {
    await runWorld.stop();
    await hostPodman(["rmi", loggerImage], { allowFailure: true });
    await Promise.all([cp.stop(), logs.stop()]);
  });

  test("ships the stdout and stderr of managed containers to VictoriaLogs with their fields", async () => {
    cp.nextSubnet = runSubnet;
    const token = cp.issueToken();
    const server = cp.serverByToken(token)!;
    const c = { ...expectedContainer({ n: 30, image: loggerImage }, `${prefix}-logsvc`), ipAddress: `10.200.${runSubnet}.30` };
    cp.setExpectedState(server.id, { containers: [c] });
    const agent = startAgentCli(
      ["run", "--url", cp.url, "--token", token, "--data-dir", join(tmp.path, "logs-data"), "--network-name", `${prefix}-runnet`, "--dns-port", "0", "--wireguard", "off", "--logs-endpoint", logs.url, "--poll-interval", "1", "--work-queue-interval", "60", "--build-poll-interval", "3600"],
      { env: runWorld.env },
    );
    try {
      await logs.waitFor(() => ["hello-stdout", "hello-stderr"].every((m) => logs.lines.some((l) => l._msg === m)), 60_000);
      const byMsg = (m: string) => logs.lines.find((l) => l._msg === m)!;
      expect(byMsg("hello-stdout")).toMatchObject({ deployment_id: c.deploymentId, service_id: c.serviceId, stream: "stdout", log_type: "container" });
      expect(byMsg("hello-stderr")).toMatchObject({ stream: "stderr", log_type: "container" });
      expect(await agent.stop()).toBe(0);
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
      await runWorld.podman(["rm", "-f", "-t", "0", c.name], { allowFailure: true });
    }
  });

  test("idle, it hands the pages of its binary back to the kernel a minute after start", async () => {
    cp.nextSubnet = runSubnet;
    const token = cp.issueToken();
    const c = { ...expectedContainer({ n: 31 }, `${prefix}-trimsvc`), ipAddress: `10.200.${runSubnet}.31` };
    cp.setExpectedState(cp.serverByToken(token)!.id, { containers: [c] });
    const agent = startAgentCli(
      ["run", "--url", cp.url, "--token", token, "--data-dir", join(tmp.path, "trim-data"), "--network-name", `${prefix}-runnet`, "--dns-port", "0", "--wireguard", "off", "--poll-interval", "60", "--work-queue-interval", "60", "--build-poll-interval", "3600"],
      { env: { ...runWorld.env, AGENT_LOG_LEVEL: "debug" } },
    );
    // Resident KiB of the agent binary's code mapping.
    const codeKb = () => {
      const blocks = readFileSync(`/proc/${agent.proc.pid}/smaps`, "utf8").split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
      const code = blocks.find((b) => / r-xp .*\/agent\n/.test(b))!;
      return Number(/\nRss:\s+(\d+) kB/.exec(code)![1]);
    };
    try {
      await waitFor(async () => (await byName(c.name, runWorld))?.State === "running", 60_000, "the deployment");
      await agent.waitForLog(/converged/, 30_000);
      const before = codeKb();
      await agent.waitForLog(/handed \d+ MiB of the binary's pages back to the kernel/, 90_000);
      const after = codeKb();
      expect(after).toBeLessThan(before * 0.8);
      expect(await agent.stop()).toBe(0);
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
      await runWorld.podman(["rm", "-f", "-t", "0", c.name], { allowFailure: true });
    }
  });

  test("converges, restarts a container stopped from outside within seconds, keeps the node as it is while the control plane is down, and leaves containers running on SIGTERM", async () => {
    cp.nextSubnet = runSubnet;
    const token = cp.issueToken();
    serverId = cp.serverByToken(token)!.id;
    const server = cp.servers.get(serverId)!;
    // Registration will assign subnet N = cp.nextSubnet; the state is ready before the agent starts,
    // so its first tick deploys and every later tick (poll interval 60 s) can only come from a wake-up.
    const sub = cp.nextSubnet;
    const c = { ...expectedContainer({ n: 20 }, `${prefix}-runsvc`), ipAddress: `10.200.${sub}.20`, env: { SECRET: cp.encrypt("sealed-value") } };
    cp.setExpectedState(serverId, { containers: [c] });
    const agent = startAgentCli(
      ["run", "--url", cp.url, "--token", token, "--data-dir", dataDir, "--network-name", `${prefix}-runnet`, "--dns-port", "0", "--wireguard", "off", "--poll-interval", "60", "--work-queue-interval", "60", "--build-poll-interval", "3600"],
      { env: runWorld.env },
    );
    try {
      await agent.waitForLog(/registered as server/);
      await waitFor(async () => (await byName(c.name, runWorld))?.State === "running", 60_000, "the deployment");
      expect((await runWorld.podman(["exec", c.name, "sh", "-c", "echo $SECRET"])).trim()).toBe("sealed-value");
      expect(agent.stderr()).not.toContain("sealed-value");
      await waitFor(() => server.statusReports.some((r) => r.body.containers.some((x: { deploymentId: string; status: string }) => x.deploymentId === c.deploymentId && x.status === "running")), 30_000, "a running status report");

      const id = (await byName(c.name, runWorld))!.Id;
      // The agent may start it again before the CLI's own clean-up step runs, which then complains.
      await runWorld.podman(["stop", c.name]).catch(() => "");
      await waitFor(async () => (await byName(c.name, runWorld))?.State === "running", 20_000, "the agent to start the stopped container");
      expect((await byName(c.name, runWorld))!.Id).toBe(id);
      expect(agent.stderr()).toMatch(/died; reconciling now/);

      const off = cp.intercept((req) => (req.path.endsWith("/expected-state") ? new Response("bad gateway", { status: 502 }) : undefined));
      try {
        await runWorld.podman(["stop", c.name]).catch(() => "");
        await waitFor(() => /keeping the node as it is/.test(agent.stderr()), 30_000, "the agent to notice the control plane is down");
        await waitFor(async () => (await byName(c.name, runWorld))?.State === "running", 30_000, "the last good state to bring the container back");
        expect((await byName(c.name, runWorld))!.Id).toBe(id);
      } finally {
        off();
      }
      expect(await agent.stop("SIGTERM")).toBe(0);
      expect((await byName(c.name, runWorld))?.State).toBe("running");
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
  });
});
