import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveSettings } from "../../lib/config/settings.ts";
import { InvalidInputError, UsageError } from "../../lib/errors.ts";
import { createSpec, healthOf, parseEventLine, toActualContainer } from "../../lib/podman/containerSpec.ts";
import { podmanSocketCandidates } from "../../lib/podman/PodmanSocket.ts";
import { checkVolumeHostPath, prepareVolumeHostPath } from "../../lib/podman/volumeHostPath.ts";
import type { ExpectedContainer } from "../../lib/state/types.ts";

const base: ExpectedContainer = {
  deploymentId: "dep1",
  serviceId: "svc1",
  serviceName: "web",
  name: "svc1-dep1",
  image: "docker.io/library/nginx:latest",
  ports: [{ containerPort: 80, hostPort: 8080 }, { containerPort: 9000 }],
  env: {},
  volumes: [{ name: "data", hostPath: "/v/svc1/data", containerPath: "/data" }],
};

describe("createSpec", () => {
  test("labels, network with static IP, published ports only, bind mounts, restart policy, stop timeout", () => {
    const spec = createSpec({ ...base, ipAddress: "10.200.1.5" }, { networkName: "techulus", env: { A: "1" }, hostPaths: { data: "/real/v/svc1/data" }, stopGraceSeconds: 7 });
    expect(spec).toEqual({
      name: "svc1-dep1",
      image: "docker.io/library/nginx:latest",
      labels: { "techulus.service.id": "svc1", "techulus.deployment.id": "dep1", "techulus.service.name": "web" },
      netns: { nsmode: "bridge" },
      Networks: { techulus: { static_ips: ["10.200.1.5"] } },
      portmappings: [{ container_port: 80, host_port: 8080, protocol: "tcp" }],
      env: { A: "1" },
      mounts: [{ destination: "/data", source: "/real/v/svc1/data", type: "bind", options: ["rbind"] }],
      restart_policy: "on-failure",
      restart_tries: 5,
      stop_timeout: 7,
    });
  });

  test("no static IP, a health check in nanoseconds, DNS servers and a publish address", () => {
    const spec = createSpec(
      { ...base, volumes: [], healthCheck: { cmd: "curl -f localhost", interval: 10, timeout: 3, retries: 2, startPeriod: 5 } },
      { networkName: "n", env: {}, hostPaths: {}, stopGraceSeconds: 10, dnsServers: ["10.200.1.1"], publishHostIp: "127.0.0.1" },
    );
    expect(spec.Networks).toEqual({ n: {} });
    expect(spec.healthconfig).toEqual({ Test: ["CMD-SHELL", "curl -f localhost"], Interval: 10e9, Timeout: 3e9, StartPeriod: 5e9, Retries: 2 });
    expect(spec.dns_server).toEqual(["10.200.1.1"]);
    expect(spec.portmappings).toEqual([{ container_port: 80, host_port: 8080, protocol: "tcp", host_ip: "127.0.0.1" }]);
  });
});

describe("toActualContainer", () => {
  const entry = {
    Id: "abc",
    Names: ["svc1-dep1"],
    Image: "nginx",
    State: "exited",
    Status: "",
    Labels: { "techulus.service.id": "svc1", "techulus.deployment.id": "dep1" },
    ExitCode: 137,
  };
  test("maps state, normalised image, labels and exit code", () => {
    expect(toActualContainer(entry)).toEqual({
      id: "abc",
      name: "svc1-dep1",
      image: "docker.io/library/nginx:latest",
      state: "exited",
      health: "none",
      serviceId: "svc1",
      deploymentId: "dep1",
      exitCode: 137,
    });
  });
  test("running containers carry no exit code; unknown states are unknown; unlabelled entries are dropped", () => {
    expect(toActualContainer({ ...entry, State: "running", Status: "healthy" })).toMatchObject({ state: "running", health: "healthy" });
    expect(toActualContainer({ ...entry, State: "running" })?.exitCode).toBeUndefined();
    expect(toActualContainer({ ...entry, State: "weird" })?.state).toBe("unknown");
    expect(toActualContainer({ ...entry, Labels: { other: "x" } })).toBeUndefined();
    expect(toActualContainer({ ...entry, Labels: { "techulus.service.id": "s" } })?.deploymentId).toBeUndefined();
  });
  test("an image ID (not a reference) is kept as it is", () => {
    expect(toActualContainer({ ...entry, Image: "815a5c356448c1766f09b325f33fdb8f23aa6c2c0612789b73bacd477bf1f543" })?.image).toBe("815a5c356448c1766f09b325f33fdb8f23aa6c2c0612789b73bacd477bf1f543");
  });
});

test("healthOf reads libpod's status and Docker-style text", () => {
  expect(healthOf("healthy")).toBe("healthy");
  expect(healthOf("unhealthy")).toBe("unhealthy");
  expect(healthOf("Up 3 minutes (starting)")).toBe("starting");
  expect(healthOf("Up 3 minutes (unhealthy)")).toBe("unhealthy");
  expect(healthOf("")).toBe("none");
  expect(healthOf("Up 2 seconds")).toBe("none");
});

describe("parseEventLine", () => {
  const died = {
    status: "died",
    id: "abc",
    Type: "container",
    Action: "died",
    Actor: { ID: "abc", Attributes: { containerExitCode: "137", name: "web", "techulus.service.id": "svc1", "techulus.deployment.id": "dep1" } },
    timeNano: 1795624307235658005,
  };
  test("a managed container's died event", () => {
    expect(parseEventLine(JSON.stringify(died))).toEqual({
      event: { containerId: "abc", status: "died", serviceId: "svc1", deploymentId: "dep1", name: "web", exitCode: 137 },
      timeNano: 1795624307235658005,
    });
  });
  test("unmanaged, non-container and junk lines are ignored", () => {
    expect(parseEventLine(JSON.stringify({ ...died, Actor: { ID: "abc", Attributes: { name: "x" } } }))).toBeUndefined();
    expect(parseEventLine(JSON.stringify({ ...died, Type: "image" }))).toBeUndefined();
    expect(parseEventLine("not json")).toBeUndefined();
    expect(parseEventLine("[]")).toBeUndefined();
  });
  test("a health_status event carries the health", () => {
    const parsed = parseEventLine(JSON.stringify({ ...died, status: "health_status", Action: "health_status", HealthStatus: "unhealthy" }));
    expect(parsed?.event).toMatchObject({ status: "health_status", health: "unhealthy" });
  });
});

test("podmanSocketCandidates: CONTAINER_HOST (unix only), the root socket, the user's", () => {
  expect(podmanSocketCandidates({ CONTAINER_HOST: "unix:///x/p.sock", XDG_RUNTIME_DIR: "/run/user/1000" })).toEqual([
    "/x/p.sock",
    "/run/podman/podman.sock",
    "/run/user/1000/podman/podman.sock",
  ]);
  expect(podmanSocketCandidates({ CONTAINER_HOST: "ssh://host/run/podman.sock" })).toEqual(["/run/podman/podman.sock"]);
});

test("podmanSocketCandidates: a store of this process's own (CONTAINERS_CONF/CONTAINERS_STORAGE_CONF) is never served by the shared sockets", () => {
  expect(podmanSocketCandidates({ CONTAINERS_STORAGE_CONF: "/x/storage.conf", XDG_RUNTIME_DIR: "/run/user/1000" })).toEqual([]);
  expect(podmanSocketCandidates({ CONTAINERS_CONF: "/x/containers.conf", CONTAINER_HOST: "unix:///x/p.sock" })).toEqual(["/x/p.sock"]);
});

describe("volume host paths", () => {
  const dir = mkdtempSync(join(tmpdir(), "volpaths-"));
  const root = join(dir, "volumes");
  const outside = join(dir, "outside");
  mkdirSync(root);
  mkdirSync(outside);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const vol = (hostPath: string) => ({ name: "data", hostPath, containerPath: "/data" });

  test("a path inside is created 0700 and returned resolved", async () => {
    const path = await prepareVolumeHostPath(vol(join(root, "svc", "data")), root);
    expect(path).toBe(join(root, "svc", "data"));
    expect(existsSync(path)).toBe(true);
  });

  test("refused: relative, the root itself, .. escapes, symlinks out, dangling symlinks, files", async () => {
    symlinkSync(outside, join(root, "link-out"));
    symlinkSync(join(dir, "nowhere"), join(root, "dangling"));
    writeFileSync(join(root, "file"), "");
    const cases: Array<[string, string]> = [
      ["relative/path", "is not an absolute path"],
      [root, "is outside the volumes folder"],
      [join(root, "..", "outside", "x"), "is outside the volumes folder"],
      [join(root, "link-out", "x"), `resolves to ${join(outside, "x")}`],
      [join(root, "dangling", "x"), "dangling symbolic link"],
      [join(root, "file"), "is not a directory"],
    ];
    for (const [hostPath, why] of cases) {
      const err = await checkVolumeHostPath(vol(hostPath), root).catch((e) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect(err.message).toContain(why);
    }
    expect(existsSync(join(outside, "x"))).toBe(false);
    expect(existsSync(join(dir, "nowhere"))).toBe(false);
  });

  test("a volumes folder reached through a symlink is fine", async () => {
    const alias = join(dir, "alias");
    symlinkSync(root, alias);
    expect(await prepareVolumeHostPath(vol(join(alias, "svc2", "data")), alias)).toBe(join(root, "svc2", "data"));
  });

  test("a container path must be absolute", async () => {
    const err = await checkVolumeHostPath({ name: "d", hostPath: join(root, "a"), containerPath: "data" }, root).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
  });
});

describe("--insecure-registry", () => {
  test("a comma-separated list of host[:port], lower-cased; empty by default", () => {
    expect(resolveSettings(["insecureRegistries"], { flags: {}, env: {} }).insecureRegistries).toEqual([]);
    const s = resolveSettings(["insecureRegistries"], { flags: {}, env: { AGENT_INSECURE_REGISTRIES: "127.0.0.1:5000, Registry.LAN" } });
    expect(s.insecureRegistries).toEqual(["127.0.0.1:5000", "registry.lan"]);
    expect(resolveSettings(["insecureRegistries"], { flags: { insecureRegistries: "10.100.1.1:5000" }, env: {} }).insecureRegistries).toEqual(["10.100.1.1:5000"]);
  });
  test("a URL or a path is refused naming the flag", () => {
    for (const bad of ["https://registry.lan", "registry.lan/ns", "host:port"]) {
      const err = (() => {
        try {
          resolveSettings(["insecureRegistries"], { flags: { insecureRegistries: bad }, env: {} });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(/^--insecure-registry: must be a list of host or host:port/);
    }
  });
});

describe("event subscription", () => {
  test("an event stream that keeps failing does not pile up abort listeners on the subscription's signal", async () => {
    // Count the live "abort" listeners of every signal while the runtime reconnects to a socket that does not exist.
    const live = new Map<AbortSignal, Set<unknown>>();
    const add = AbortSignal.prototype.addEventListener;
    const remove = AbortSignal.prototype.removeEventListener;
    AbortSignal.prototype.addEventListener = function (this: AbortSignal, type: string, listener: unknown, options?: unknown) {
      if (type === "abort") live.set(this, (live.get(this) ?? new Set()).add(listener));
      return (add as (...a: unknown[]) => void).call(this, type, listener, options);
    } as typeof add;
    AbortSignal.prototype.removeEventListener = function (this: AbortSignal, type: string, listener: unknown, options?: unknown) {
      if (type === "abort") live.get(this)?.delete(listener);
      return (remove as (...a: unknown[]) => void).call(this, type, listener, options);
    } as typeof remove;
    const dir = mkdtempSync(join(tmpdir(), "events-"));
    const { PodmanRuntime } = await import("../../lib/podman/PodmanRuntime.ts");
    const runtime = new PodmanRuntime({ socketPath: join(dir, "none.sock"), volumesRoot: dir, healthChecks: "podman", eventsBackoff: { attempts: Infinity, baseMs: 1, maxMs: 1 } });
    const unsubscribe = runtime.subscribe(() => {});
    try {
      const deadline = Date.now() + 20_000;
      while (runtime.apiCalls < 12 && Date.now() < deadline) await Bun.sleep(50);
      expect(runtime.apiCalls).toBeGreaterThanOrEqual(12);
      const most = Math.max(0, ...[...live.values()].map((s) => s.size));
      expect(most).toBeLessThanOrEqual(3);
    } finally {
      unsubscribe();
      AbortSignal.prototype.addEventListener = add;
      AbortSignal.prototype.removeEventListener = remove;
      await runtime.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
