/**
 * Real Podman and a real registry for tests, with per-run names so tests running at the same time
 * on the same machine never see each other's objects.
 *
 * Exports:
 *   TEST_IMAGE                         "localhost/busybox:test" (sh, sleep, httpd, wget, nc, …; install/setup-host.sh)
 *   uniquePrefix(tag?)                 "t<pid><random>[tag]": prefix for container, network and image names of one run
 *   podman(args, opts?)                runs the podman CLI (lib/exec), returns stdout; throws on failure unless allowFailure
 *   startPodmanService(dir?)           a private `podman system service` on <dir>/podman.sock → { socketPath, dir, stop() }
 *   endPodmanService(socket)           releases a lib PodmanSocket and ends the service serving it (the agent never does)
 *   cleanupPodman(prefix)              force-removes containers, networks and images whose name starts with / contains prefix
 *   freeSubnet()                       { prefix: "10.2XX", subnetId: YY }: a /24 no podman network uses (for ensureNetwork tests)
 *   freePort()                         a free TCP port on 127.0.0.1
 *   startRegistry(dir?)                docker-registry on 127.0.0.1:<free port> with its own config and storage → { host, stop() }
 *   pushImage(source, registryHost, repo)  pushes a local image to the registry without TLS; returns "<host>/<repo>"
 *   buildTestImage(name, cmd)          builds <name> FROM localhost/busybox:test with the given CMD (argv); returns name
 *   waitFor(predicate, timeoutMs, what) polls an async predicate every 100 ms; rejects naming `what` on timeout
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, spawn, type ExecOptions } from "../../lib/exec.ts";
import { allProcesses } from "../../lib/processTree.ts";
import { startPodmanService as startService, type PodmanSocket } from "../../lib/podman/PodmanSocket.ts";

export const TEST_IMAGE = "localhost/busybox:test";

export function uniquePrefix(tag = ""): string {
  return `t${process.pid}${Math.random().toString(36).slice(2, 7)}${tag}`;
}

export async function podman(args: string[], options: ExecOptions = {}): Promise<string> {
  const res = await run("podman", args, { timeoutMs: 120_000, ...options });
  return res.stdout;
}

export interface PodmanService {
  socketPath: string;
  dir: string;
  stop(): Promise<void>;
}

/** A private API service on a temp socket; stop() ends it and removes the folder (containers keep running). */
export async function startPodmanService(dir = mkdtempSync(join(tmpdir(), "podman-svc-"))): Promise<PodmanService> {
  const service = await startService(join(dir, "podman.sock"));
  return {
    socketPath: service.socketPath,
    dir,
    async stop() {
      await endPodmanService(service);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Releases `socket` and stops the `podman system service` behind it, waiting until it has exited. */
export async function endPodmanService(socket: Pick<PodmanSocket, "socketPath" | "release">): Promise<void> {
  await socket.release();
  const pids = servicePids(socket.socketPath);
  for (const pid of pids) process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 15_000;
  while (servicePids(socket.socketPath).length > 0 && Date.now() < deadline) await Bun.sleep(50);
  for (const pid of servicePids(socket.socketPath)) process.kill(pid, "SIGKILL");
}

/** Live processes whose argv (and, when asked, environment) `match` accepts. */
export function processesWhere(match: (p: { argv: string[]; environ: () => string[] }) => boolean): number[] {
  const out: number[] = [];
  for (const { pid } of allProcesses()) {
    if (pid === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (match({ argv, environ: () => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0") })) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Pids of `podman system service` processes serving `socketPath`. */
export function servicePids(socketPath: string): number[] {
  return processesWhere(({ argv }) => argv.includes("service") && argv.includes(`unix://${socketPath}`));
}

/** Removes everything of one run. Never touches a name without the prefix. */
export async function cleanupPodman(prefix: string): Promise<void> {
  if (!/^t[0-9a-z]{4,}/.test(prefix)) throw new Error(`refusing to clean up with prefix ${JSON.stringify(prefix)}`);
  const containers = (await podman(["ps", "-a", "--format", "{{.ID}} {{.Names}}"], { allowFailure: true }))
    .split("\n")
    .map((l) => l.trim().split(" "))
    .filter(([id, name]) => id && name?.startsWith(prefix))
    .map(([id]) => id!);
  if (containers.length > 0) await podman(["rm", "-f", "-v", "-t", "0", ...containers], { allowFailure: true });
  const networks = (await podman(["network", "ls", "--format", "{{.Name}}"], { allowFailure: true }))
    .split("\n")
    .map((l) => l.trim())
    .filter((n) => n.startsWith(prefix));
  if (networks.length > 0) await podman(["network", "rm", "-f", ...networks], { allowFailure: true });
  const images = (await podman(["images", "--format", "{{.Repository}}:{{.Tag}}"], { allowFailure: true }))
    .split("\n")
    .map((l) => l.trim())
    .filter((i) => i.includes(`/${prefix}`));
  if (images.length > 0) await podman(["rmi", "-f", ...images], { allowFailure: true });
}

/** A random 10.2XX.YY.0/24 (XX 10–49) that no existing podman network overlaps. */
export async function freeSubnet(): Promise<{ prefix: string; subnetId: number; subnet: string }> {
  const used = new Set(
    (await podman(["network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"]))
      .split(/\s+/)
      .filter(Boolean),
  );
  for (;;) {
    const prefix = `10.2${10 + Math.floor(Math.random() * 40)}`;
    const subnetId = 1 + Math.floor(Math.random() * 250);
    const subnet = `${prefix}.${subnetId}.0/24`;
    if (!used.has(subnet)) return { prefix, subnetId, subnet };
  }
}

export async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export interface Registry {
  /** `127.0.0.1:<port>` */
  host: string;
  stop(): Promise<void>;
}

/** docker-registry (distribution) on loopback, plain HTTP, storage in its own temp folder. */
export async function startRegistry(dir = mkdtempSync(join(tmpdir(), "registry-"))): Promise<Registry> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "storage")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${host}`,
      "",
    ].join("\n"),
  );
  const child = spawn("docker-registry", ["serve", config]);
  let exited = false;
  const done = child.then(
    () => void (exited = true),
    () => void (exited = true),
  );
  await waitFor(
    async () => {
      if (exited) throw new Error(`docker-registry exited on ${host}`);
      return fetch(`http://${host}/v2/`).then(
        (r) => r.ok,
        () => false,
      );
    },
    15_000,
    `docker-registry on ${host}`,
  );
  return {
    host,
    async stop() {
      child.kill("SIGTERM");
      await Promise.race([done, Bun.sleep(5000)]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function pushImage(source: string, registryHost: string, repo: string): Promise<string> {
  const target = `${registryHost}/${repo}`;
  await podman(["push", "--tls-verify=false", source, `docker://${target}`]);
  return target;
}

export async function buildTestImage(name: string, cmd: string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "image-"));
  try {
    writeFileSync(join(dir, "Containerfile"), `FROM ${TEST_IMAGE}\nCMD ${JSON.stringify(cmd)}\n`);
    await podman(["build", "--pull=never", "-q", "-t", name, dir]);
    return name;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(100);
  }
}
