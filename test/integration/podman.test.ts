import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decryptSecret, encryptSecret } from "../../lib/crypto/secrets.ts";
import type { ContainerEvent, DeployContext } from "../../lib/drivers.ts";
import { InvalidInputError } from "../../lib/errors.ts";
import { run as exec } from "../../lib/exec.ts";
import { configureLogging } from "../../lib/logger.ts";
import { PodmanApiError } from "../../lib/podman/PodmanApi.ts";
import { PodmanRuntime } from "../../lib/podman/PodmanRuntime.ts";
import { findOrStartPodmanSocket, type PodmanSocket } from "../../lib/podman/PodmanSocket.ts";
import { LABEL_DEPLOYMENT_ID, LABEL_SERVICE_ID, LABEL_SERVICE_NAME, type ExpectedContainer } from "../../lib/state/types.ts";
import {
  TEST_IMAGE,
  buildTestImage,
  cleanupPodman,
  freePort,
  freeSubnet,
  podman,
  pushImage,
  endPodmanService,
  startPodmanService,
  startRegistry,
  uniquePrefix,
  waitFor,
  type PodmanService,
  type Registry,
} from "../support/podman.ts";

const prefix = uniquePrefix();
const key = randomBytes(32).toString("hex");
const ctx: DeployContext = {
  decryptEnv: (_name, value) => (value.kind === "plain" ? value.value : decryptSecret(value.value, key)),
};
const logLines: string[] = [];

let service: PodmanService;
let runtime: PodmanRuntime;
let dataDir: string;
let volumesRoot: string;
let subnet: { prefix: string; subnetId: number; subnet: string };
let probeImage: string;
let stubbornImage: string;
let registry: Registry | undefined;
const ownSockets: PodmanSocket[] = [];
const extraRuntimes: PodmanRuntime[] = [];
const tempDirs: string[] = [];
function tempDir(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-${tag}-`));
  tempDirs.push(dir);
  return dir;
}
const networkName = `${prefix}-net`;
const unmanagedName = `${prefix}-unmanaged`;
let counter = 0;

/** Serves its environment at :8080/env.txt; writes $WRITE_FILE when set; exits at once on SIGTERM. */
const PROBE_CMD = [
  "/bin/sh",
  "-c",
  'trap "exit 0" TERM INT; mkdir -p /var/www; env > /var/www/env.txt; if [ -n "$WRITE_FILE" ]; then echo written-by-container > "$WRITE_FILE"; fi; httpd -f -p 8080 -h /var/www & wait',
];

function expected(overrides: Partial<ExpectedContainer> = {}): ExpectedContainer {
  const n = ++counter;
  return {
    deploymentId: `${prefix}-dep${n}`,
    serviceId: `${prefix}-svc${n}`,
    serviceName: `web${n}`,
    name: `${prefix}-c${n}`,
    image: probeImage,
    ports: [],
    env: {},
    volumes: [],
    ...overrides,
  };
}

async function inspect(name: string): Promise<any> {
  return JSON.parse(await podman(["inspect", "--type", "container", name]))[0];
}

/** Exit code of a podman CLI call (0 = yes for `exists`). */
async function run(args: string[]): Promise<number> {
  return (await exec("podman", args, { allowFailure: true })).exitCode;
}

async function fetchText(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  configureLogging({ sink: { write: (line) => (logLines.push(line), process.stderr.write(line + "\n")) } });
  service = await startPodmanService();
  dataDir = tempDir("data");
  volumesRoot = join(dataDir, "volumes");
  probeImage = await buildTestImage(`localhost/${prefix}-probe:test`, PROBE_CMD);
  stubbornImage = await buildTestImage(`localhost/${prefix}-stubborn:test`, ["sleep", "600"]);
  await podman(["run", "-d", "--name", unmanagedName, "--label", "owner=someone-else", TEST_IMAGE, "sleep", "600"]);
  for (let attempt = 0; ; attempt++) {
    subnet = await freeSubnet();
    runtime = new PodmanRuntime({
      socketPath: service.socketPath,
      networkName,
      volumesRoot,
      subnetPrefix: subnet.prefix,
      dnsServers: ["192.0.2.53"],
      stopGraceSeconds: 2,
      healthChecks: "agent",
    });
    try {
      await runtime.ensureNetwork(subnet.subnetId);
      break;
    } catch (err) {
      await runtime.close();
      // Another test may have taken the same random subnet a moment ago.
      if (attempt >= 5 || !/already (used|in use)/i.test(String(err))) throw err;
    }
  }
}, 120_000);

afterAll(async () => {
  for (const r of extraRuntimes) await r.close().catch(() => {});
  await runtime?.close().catch(() => {});
  await cleanupPodman(prefix);
  for (const s of ownSockets) await endPodmanService(s).catch(() => {});
  await registry?.stop().catch(() => {});
  await service?.stop().catch(() => {});
  for (const dir of [dataDir, ...tempDirs]) if (dir) rmSync(dir, { recursive: true, force: true });
  configureLogging({ sink: { write: (line) => process.stderr.write(line + "\n") } });
}, 120_000);

describe("PodmanRuntime", () => {
  test("ensureNetwork made a bridge network with the server's subnet, gateway .1 and DNS off, and is idempotent", async () => {
    await runtime.ensureNetwork(subnet.subnetId);
    await runtime.ensureNetwork(subnet.subnetId);
    const net = JSON.parse(await podman(["network", "inspect", networkName]))[0];
    expect(net.driver).toBe("bridge");
    expect(net.subnets).toEqual([{ subnet: subnet.subnet, gateway: `${subnet.prefix}.${subnet.subnetId}.1` }]);
    expect(net.dns_enabled).toBe(false);
    const names = (await podman(["network", "ls", "--format", "{{.Name}}"])).split("\n").filter((n) => n === networkName);
    expect(names).toHaveLength(1);
  });

  test("ensureNetwork refuses a network of that name with another subnet, and a bad subnet id", async () => {
    const other = (subnet.subnetId % 250) + 1;
    const err = await runtime.ensureNetwork(other).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(`has subnet ${subnet.subnet}`);
    expect(err.message).toContain(`${subnet.prefix}.${other}.0/24`);
    expect(await runtime.ensureNetwork(256).catch((e) => e)).toBeInstanceOf(InvalidInputError);
    const net = JSON.parse(await podman(["network", "inspect", networkName]))[0];
    expect(net.subnets[0].subnet).toBe(subnet.subnet);
  });

  test("deploy: labels, static IP, published port, plain and encrypted env, DNS, restart policy; the secret is never logged", async () => {
    const secret = `s3cret-${randomBytes(6).toString("hex")}`;
    const hostPort = await freePort();
    const ip = `${subnet.prefix}.${subnet.subnetId}.10`;
    const c = expected({
      ipAddress: ip,
      ports: [{ containerPort: 8080, hostPort }],
      env: { PLAIN: { kind: "plain", value: "hello" }, SECRET: { kind: "encrypted", value: encryptSecret(secret, key) } },
    });
    const id = await runtime.deploy(c, ctx);
    expect(id).toMatch(/^[0-9a-f]{64}$/);

    let body: string | undefined;
    await waitFor(async () => (body = await fetchText(`http://127.0.0.1:${hostPort}/env.txt`)) !== undefined, 15_000, "the published port");
    expect(body).toContain("PLAIN=hello");
    expect(body).toContain(`SECRET=${secret}`);
    expect(await fetchText(`http://${ip}:8080/env.txt`)).toContain("PLAIN=hello");

    const info = await inspect(c.name);
    expect(info.Config.Labels[LABEL_SERVICE_ID]).toBe(c.serviceId);
    expect(info.Config.Labels[LABEL_DEPLOYMENT_ID]).toBe(c.deploymentId);
    expect(info.Config.Labels[LABEL_SERVICE_NAME]).toBe(c.serviceName);
    expect(info.HostConfig.RestartPolicy).toEqual({ Name: "on-failure", MaximumRetryCount: 5 });
    expect(Object.keys(info.NetworkSettings.Networks)).toEqual([networkName]);
    expect(info.NetworkSettings.Networks[networkName].IPAddress).toBe(ip);
    expect(await podman(["exec", c.name, "cat", "/etc/resolv.conf"])).toContain("nameserver 192.0.2.53");

    const listed = (await runtime.listManaged()).find((a) => a.id === id);
    expect(listed).toEqual({
      id,
      name: c.name,
      image: probeImage,
      state: "running",
      health: "none",
      serviceId: c.serviceId,
      deploymentId: c.deploymentId,
    });
    expect(logLines.join("\n")).toContain(`deploying ${c.name}`);
    expect(logLines.join("\n")).not.toContain(secret);
  }, 60_000);

  test("deploy fails clearly on a name that is already in use and creates no duplicate", async () => {
    const c = expected();
    await runtime.deploy(c, ctx);
    const err = await runtime.deploy({ ...c, deploymentId: `${prefix}-other` }, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(`cannot create container ${c.name}: the name is already in use`);
    const same = (await runtime.listManaged()).filter((a) => a.name === c.name);
    expect(same).toHaveLength(1);
    expect(same[0]!.deploymentId).toBe(c.deploymentId);
  }, 60_000);

  test("an env value that cannot be decrypted fails the deploy, names the key only, and creates nothing", async () => {
    const ciphertext = encryptSecret("value", randomBytes(32).toString("hex"));
    const c = expected({ env: { DB_PASSWORD: { kind: "encrypted", value: ciphertext } } });
    const err = await runtime.deploy(c, ctx).catch((e) => e);
    expect(err.message).toContain("env DB_PASSWORD");
    expect(err.message).not.toContain(ciphertext);
    expect(await run(["container", "exists", c.name])).toBe(1);
  });

  test("volumes: host folder created 0700 inside the volumes folder; a file written in the container appears there", async () => {
    const c = expected();
    const hostPath = join(volumesRoot, c.serviceId, "data");
    c.volumes = [{ name: "data", hostPath, containerPath: "/data" }];
    c.env = { WRITE_FILE: { kind: "plain", value: "/data/hello.txt" } };
    await runtime.deploy(c, ctx);
    expect(statSync(hostPath).mode & 0o777).toBe(0o700);
    await waitFor(() => existsSync(join(hostPath, "hello.txt")), 15_000, "the file written by the container");
    expect(readFileSync(join(hostPath, "hello.txt"), "utf8").trim()).toBe("written-by-container");
  }, 60_000);

  test("volumes: a host path that resolves outside the volumes folder (symlink or ..) is refused and nothing is created", async () => {
    const outside = tempDir("outside");
    try {
      mkdirSync(volumesRoot, { recursive: true });
      symlinkSync(outside, join(volumesRoot, `${prefix}-evil`));
      const viaLink = expected({ volumes: [{ name: "data", hostPath: join(volumesRoot, `${prefix}-evil`, "data"), containerPath: "/data" }] });
      const err = await runtime.deploy(viaLink, ctx).catch((e) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect(err.message).toContain('volume "data"');
      expect(err.message).toContain(`resolves to ${join(outside, "data")}, outside the volumes folder`);
      expect(existsSync(join(outside, "data"))).toBe(false);
      expect(await run(["container", "exists", viaLink.name])).toBe(1);

      const dotdot = expected({ volumes: [{ name: "etc", hostPath: `${volumesRoot}/../../etc`, containerPath: "/etc2" }] });
      const err2 = await runtime.deploy(dotdot, ctx).catch((e) => e);
      expect(err2).toBeInstanceOf(InvalidInputError);
      expect(err2.message).toContain("outside the volumes folder");
      expect(await run(["container", "exists", dotdot.name])).toBe(1);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  }, 60_000);

  test("health checks are reported healthy and unhealthy, also for containers deployed before the agent started", async () => {
    const good = expected({
      healthCheck: { cmd: "wget -q -O /dev/null http://127.0.0.1:8080/env.txt", interval: 1, timeout: 2, retries: 1, startPeriod: 0 },
    });
    const bad = expected({ healthCheck: { cmd: "exit 1", interval: 1, timeout: 2, retries: 1, startPeriod: 0 } });
    // Deployed by a runtime that leaves health checks to podman (as a previous agent run would have):
    // without systemd nothing runs them until the main runtime's scan finds the container.
    const earlier = new PodmanRuntime({ socketPath: service.socketPath, networkName, volumesRoot, healthChecks: "podman" });
    extraRuntimes.push(earlier);
    const lateId = await earlier.deploy(expected({ healthCheck: good.healthCheck }), ctx);
    const goodId = await runtime.deploy(good, ctx);
    const badId = await runtime.deploy(bad, ctx);
    const healthOf = async (id: string) => (await runtime.listManaged()).find((a) => a.id === id)?.health;
    await waitFor(async () => (await healthOf(goodId)) === "healthy", 30_000, "healthy");
    await waitFor(async () => (await healthOf(badId)) === "unhealthy", 30_000, "unhealthy");
    await waitFor(async () => (await healthOf(lateId)) === "healthy", 30_000, "healthy (found by the scan)");
    expect(await healthOf(goodId)).toBe("healthy");
  }, 90_000);

  test("a container that cannot start (its host port is taken) is removed again and the error says why", async () => {
    const hostPort = await freePort();
    const blocker = Bun.listen({ hostname: "0.0.0.0", port: hostPort, socket: { data() {} } });
    try {
      const c = expected({ ports: [{ containerPort: 8080, hostPort }] });
      const err = await runtime.deploy(c, ctx).catch((e) => e);
      expect(err.message).toContain(`container ${c.name} was created but did not start (removed again)`);
      expect(err.message).toContain("address already in use");
      expect(await run(["container", "exists", c.name])).toBe(1);
    } finally {
      blocker.stop(true);
    }
  }, 60_000);

  test("stop (grace, then kill), start, restart and remove", async () => {
    const c = expected({ image: stubbornImage });
    const id = await runtime.deploy(c, ctx);
    const state = async () => (await runtime.listManaged()).find((a) => a.id === id);

    // sleep as PID 1 ignores SIGTERM: it is killed once the grace period is over. By name works too.
    await runtime.stop(c.name, 1);
    expect(await state()).toMatchObject({ state: "exited", exitCode: 137 });
    await runtime.stop(id, 1);

    await runtime.start(id);
    await runtime.start(id);
    expect((await state())?.state).toBe("running");

    const before = (await inspect(id)).State.StartedAt;
    await runtime.restart(id);
    expect((await state())?.state).toBe("running");
    expect((await inspect(id)).State.StartedAt).not.toBe(before);

    await runtime.remove(id);
    expect(await state()).toBeUndefined();
    expect(await run(["container", "exists", id])).toBe(1);
    await runtime.remove(id);
    const err = await runtime.start(id).catch((e) => e);
    expect(err).toBeInstanceOf(PodmanApiError);
    expect(err.status).toBe(404);
    expect(err.message).toMatch(/^podman API GET \/containers\/[0-9a-f]+\/json failed: 404 no container with name or ID/);
  }, 90_000);

  test("listManaged costs one API call whether 1 or 5 containers exist, and never lists unlabelled containers", async () => {
    const mine = () => runtime.listManaged().then((all) => all.filter((a) => a.serviceId.startsWith(`${prefix}-count`)));
    await runtime.deploy(expected({ serviceId: `${prefix}-count1`, image: stubbornImage }), ctx);
    let before = runtime.apiCalls;
    expect(await mine()).toHaveLength(1);
    const callsForOne = runtime.apiCalls - before;
    for (let i = 2; i <= 5; i++) await runtime.deploy(expected({ serviceId: `${prefix}-count${i}`, image: stubbornImage }), ctx);
    before = runtime.apiCalls;
    const all = await runtime.listManaged();
    expect(all.filter((a) => a.serviceId.startsWith(`${prefix}-count`))).toHaveLength(5);
    expect(runtime.apiCalls - before).toBe(callsForOne);
    expect(callsForOne).toBe(1);
    expect(all.map((a) => a.name)).not.toContain(unmanagedName);
  }, 90_000);

  test("events: a managed container killed from outside is reported, with its labels and exit code", async () => {
    const events: ContainerEvent[] = [];
    const unsubscribe = runtime.subscribe((e) => events.push(e));
    try {
      const c = expected({ image: stubbornImage });
      const id = await runtime.deploy(c, ctx);
      await Bun.sleep(300);
      const killedAt = Date.now();
      await podman(["kill", c.name]);
      await waitFor(() => events.some((e) => e.containerId === id && e.status === "died"), 15_000, "the died event");
      const died = events.find((e) => e.containerId === id && e.status === "died")!;
      process.stderr.write(`[test] died event ${Date.now() - killedAt} ms after podman kill returned\n`);
      expect(died).toMatchObject({ serviceId: c.serviceId, deploymentId: c.deploymentId, name: c.name, exitCode: 137 });
      await podman(["kill", unmanagedName]);
      await podman(["start", unmanagedName]);
      await Bun.sleep(1000);
      expect(events.some((e) => e.name === unmanagedName)).toBe(false);
    } finally {
      unsubscribe();
    }
  }, 60_000);

  test("events keep flowing after the podman service dies and is started again; containers keep running", async () => {
    const socketDir = tempDir("sock");
    const socket = await findOrStartPodmanSocket({ dataDir: socketDir, candidates: [] });
    ownSockets.push(socket);
    const r = new PodmanRuntime({ socketPath: socket.socketPath, networkName, volumesRoot, subnetPrefix: subnet.prefix, healthChecks: "podman" });
    extraRuntimes.push(r);
    const events: ContainerEvent[] = [];
    const unsubscribe = r.subscribe((e) => events.push(e));
    try {
      const c = expected({ image: stubbornImage });
      const id = await r.deploy(c, ctx);
      await waitFor(() => events.some((e) => e.containerId === id && e.status === "start"), 15_000, "the start event");
      const oldPid = socket.pid!;
      process.kill(oldPid, "SIGKILL");
      await waitFor(async () => socket.pid !== undefined && socket.pid !== oldPid, 30_000, "the service to be started again");
      expect((await inspect(c.name)).State.Status).toBe("running");
      await podman(["kill", c.name]);
      await waitFor(() => events.some((e) => e.containerId === id && e.status === "died"), 30_000, "the died event after the reconnect");
      expect(events.filter((e) => e.containerId === id && e.status === "start")).toHaveLength(1);
    } finally {
      unsubscribe();
    }
  }, 90_000);

  test("pulls from a registry without TLS only when it is listed as insecure", async () => {
    registry = await startRegistry();
    const image = await pushImage(probeImage, registry.host, `${prefix}-pulled:test`);
    expect(await run(["image", "exists", image])).toBe(1);

    const strict = new PodmanRuntime({ socketPath: service.socketPath, networkName, volumesRoot, subnetPrefix: subnet.prefix, healthChecks: "podman" });
    extraRuntimes.push(strict);
    const refused = expected({ image });
    const err = await strict.deploy(refused, ctx).catch((e) => e);
    expect(err.message).toContain(`cannot pull ${image} from ${registry.host}`);
    expect(err.message).toContain("server gave HTTP response to HTTPS client");
    expect(err.hint).toContain("--insecure-registry");
    expect(await run(["container", "exists", refused.name])).toBe(1);

    const lenient = new PodmanRuntime({
      socketPath: service.socketPath,
      networkName,
      volumesRoot,
      subnetPrefix: subnet.prefix,
      insecureRegistries: [registry.host],
      healthChecks: "podman",
    });
    extraRuntimes.push(lenient);
    const missing = `${registry.host}/${prefix}-missing:test`;
    const err2 = await lenient.deploy(expected({ image: missing }), ctx).catch((e) => e);
    expect(err2.message).toContain(`cannot pull ${missing} from ${registry.host}`);
    expect(err2.message).toContain("manifest unknown");

    const c = expected({ image });
    const id = await lenient.deploy(c, ctx);
    expect((await lenient.listManaged()).find((a) => a.id === id)).toMatchObject({ image, state: "running" });
  }, 120_000);

  test("deploy into a network that does not exist fails clearly", async () => {
    const r = new PodmanRuntime({ socketPath: service.socketPath, networkName: `${prefix}-absent`, volumesRoot, healthChecks: "podman" });
    extraRuntimes.push(r);
    const c = expected();
    const err = await r.deploy(c, ctx).catch((e) => e);
    expect(err.message).toContain(`network ${prefix}-absent does not exist`);
    expect(await run(["container", "exists", c.name])).toBe(1);
  });

  test("the unlabelled container was never touched, and start/stop/restart/remove refuse it", async () => {
    for (const op of [() => runtime.stop(unmanagedName, 1), () => runtime.restart(unmanagedName), () => runtime.remove(unmanagedName), () => runtime.start(unmanagedName)]) {
      const err = await op().catch((e) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect(err.message).toContain(`container ${unmanagedName} is not managed by the agent`);
    }
    const info = await inspect(unmanagedName);
    expect(info.State.Status).toBe("running");
    expect(info.Config.Labels).toEqual({ owner: "someone-else" });
  });
});

describe("findOrStartPodmanSocket", () => {
  test("uses a socket that answers, and starts its own service when none does", async () => {
    const found = await findOrStartPodmanSocket({ dataDir: tempDir("dd"), candidates: ["/nonexistent/podman.sock", service.socketPath] });
    expect(found).toMatchObject({ socketPath: service.socketPath, startedByAgent: false });

    const dir = tempDir("dd");
    writeFileSync(join(dir, "stale.sock"), "");
    const before = logLines.length;
    const started = await findOrStartPodmanSocket({ dataDir: dir, candidates: [join(dir, "stale.sock")] });
    ownSockets.push(started);
    expect(started).toMatchObject({ socketPath: join(dir, "podman.sock"), startedByAgent: true });
    expect(logLines.slice(before).join("\n")).toContain(`[podman] no podman API socket found (tried ${join(dir, "stale.sock")}); started podman system service at ${join(dir, "podman.sock")}`);
    const r = new PodmanRuntime({ socketPath: started.socketPath, volumesRoot, healthChecks: "podman" });
    extraRuntimes.push(r);
    expect(Array.isArray(await r.listManaged())).toBe(true);
    await endPodmanService(started);
    await waitFor(() => started.pid === undefined, 5000, "the service's exit to be seen");
  }, 60_000);
});
