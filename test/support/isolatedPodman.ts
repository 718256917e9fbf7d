/**
 * A podman of the test's own: its own storage, run, tmp and network-config folders, given to
 * every podman process through CONTAINERS_CONF and CONTAINERS_STORAGE_CONF, with an explicit
 * network backend (CNI or netavark). An agent pointed at it sees only this test's containers, so a
 * reconcile pass — which stops and removes every managed container it does not expect — cannot
 * touch the containers of other tests running on the same machine.
 *
 *   startIsolatedPodman({ images, network, backend, service })  → { socketPath, env, podman(args), stop() }
 *   freeSubnetId()                            → N such that 10.200.N.0/24 is used by no podman network or route
 *   hostNetworkBackend()                      → the backend the machine's podman uses ("cni" or "netavark")
 *
 * `env` holds the two config variables and, unless `service: false`, CONTAINER_HOST of the world's
 * own API service. With `service: false` there is no service: an agent given `env` finds no socket
 * and starts its own `podman system service`, which (through the same variables) serves this world.
 *
 * `network` pre-creates the agent's `techulus` network (subnet 10.200.N.0/24) with a unique bridge
 * name: podman would otherwise pick `podmanN`/`cni-podmanN`, which may belong to the shared world.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, spawn } from "../../lib/exec.ts";
import { readConmonProcesses } from "../../lib/podman/conmonProcesses.ts";
import { pingPodmanSocket } from "../../lib/podman/PodmanSocket.ts";
import { killProcessTree } from "../../lib/processTree.ts";
import { processesWhere } from "./podman.ts";

export type NetworkBackend = "cni" | "netavark";

/** One row of `podman ps -a --format json`. */
export interface PsRow {
  Id: string;
  Names: string[];
  State: string;
  Image: string;
  Labels: Record<string, string> | null;
}

export interface IsolatedPodman {
  dir: string;
  socketPath: string;
  backend: NetworkBackend;
  /** Environment for an agent (or any podman process) that must use this world. */
  env: Record<string, string>;
  /** The `CONTAINER_HOST` value alone (the world's own service). */
  containerHost: string;
  /** The podman CLI against this world. */
  podman(args: string[], options?: { allowFailure?: boolean }): Promise<string>;
  /** Every container of this world (`podman ps -a`). */
  ps(): Promise<PsRow[]>;
  /** A bridge network 10.200.N.0/24 (gateway .1, no DNS) with a unique bridge name; removed by stop(). */
  createNetwork(name: string, subnetId: number): Promise<void>;
  stop(): Promise<void>;
}

export interface IsolatedPodmanOptions {
  /** Images copied from the machine's storage (e.g. localhost/hello-web:test). */
  images: string[];
  network?: { subnetId: number; name?: string };
  /** Default: the machine's own backend. */
  backend?: NetworkBackend;
  /** Start the world's own API service (default true). */
  service?: boolean;
}

let hostBackend: Promise<NetworkBackend> | undefined;

export function hostNetworkBackend(): Promise<NetworkBackend> {
  hostBackend ??= run("podman", ["info", "--format", "{{.Host.NetworkBackend}}"], { timeoutMs: 60_000 }).then((r) => (r.stdout.trim() === "netavark" ? "netavark" : "cni"));
  return hostBackend;
}

/** `startIsolatedPodman(dir, images)` is the short form: a given folder, no pre-created network. */
export async function startIsolatedPodman(optionsOrDir: IsolatedPodmanOptions | string, images?: string[]): Promise<IsolatedPodman> {
  const options: IsolatedPodmanOptions = typeof optionsOrDir === "string" ? { images: images ?? ["localhost/busybox:test"] } : optionsOrDir;
  const dir = typeof optionsOrDir === "string" ? (mkdirSync(optionsOrDir, { recursive: true }), mkdtempSync(join(optionsOrDir, "world-"))) : mkdtempSync(join(tmpdir(), "isolated-podman-"));
  const backend = options.backend ?? (await hostNetworkBackend());
  const configEnv = writeWorldConfig(dir, backend);
  const podman = async (args: string[], opts: { allowFailure?: boolean } = {}) =>
    (await run("podman", args, { timeoutMs: 120_000, allowFailure: opts.allowFailure, env: configEnv })).stdout;
  const socketPath = join(dir, "podman.sock");
  let service: ReturnType<typeof spawn> | undefined;
  const networks: string[] = [];
  const createNetwork = async (name: string, subnetId: number) => {
    await podman(["network", "create", "--subnet", `10.200.${subnetId}.0/24`, "--gateway", `10.200.${subnetId}.1`, "--disable-dns", name]);
    networks.push(name);
    renameBridge(join(dir, "networks"), name, backend);
  };

  const stop = async () => {
    const ids = (await podman(["ps", "-a", "--format", "{{.ID}}"]).catch(() => ""))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    // Every container here was made by this test: this world holds nothing else.
    if (ids.length > 0) await podman(["rm", "-f", "-v", "-t", "0", ...ids]).catch(() => "");
    if (networks.length > 0) await podman(["network", "rm", "-f", ...networks]).catch(() => "");
    await podman(["rmi", "-a", "-f"]).catch(() => "");
    service?.kill("SIGTERM");
    await Promise.race([service?.catch(() => undefined), Bun.sleep(10_000)]);
    service = undefined;
    // conmons of this world whose container it forgot (a test's leftovers, or `rm -f` of a
    // container stuck stopping) would run on for ever.
    for (const c of readConmonProcesses()) if (c.storageRoot === join(dir, "root")) await killProcessTree(c.pid, { graceMs: 2000 });
    // Services an agent started for this world (they would exit by themselves once idle).
    const marker = `CONTAINERS_CONF=${configEnv.CONTAINERS_CONF}`;
    for (const pid of processesWhere(({ argv, environ }) => argv[0]?.endsWith("podman") === true && environ().includes(marker))) process.kill(pid, "SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (const image of options.images) {
      const archive = join(dir, "image.tar");
      await run("podman", ["save", "-o", archive, image], { timeoutMs: 120_000 });
      await podman(["load", "-i", archive]);
      rmSync(archive);
    }
    if (options.network) await createNetwork(options.network.name ?? "techulus", options.network.subnetId);
    if (options.service !== false) {
      service = spawn("podman", ["system", "service", "--time=0", `unix://${socketPath}`], { env: configEnv });
      service.catch(() => undefined);
      const deadline = Date.now() + 20_000;
      while (!(await pingPodmanSocket(socketPath, 1000))) {
        if (Date.now() > deadline) throw new Error(`isolated podman service did not answer on ${socketPath}`);
        await Bun.sleep(100);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const env: Record<string, string> = options.service === false ? { ...configEnv } : { ...configEnv, CONTAINER_HOST: `unix://${socketPath}` };
  const ps = async () => JSON.parse((await podman(["ps", "-a", "--format", "json"])) || "[]") as PsRow[];
  return { dir, socketPath, backend, env, containerHost: `unix://${socketPath}`, podman, ps, createNetwork, stop };
}

/**
 * Podman 4.3 has no `--interface-name`, and numbers bridges (`podmanN`, `cni-podmanN`) per world:
 * two worlds would share one bridge. The network's config file is read at each use, so the bridge
 * is renamed there, before any container joins.
 */
function renameBridge(networksDir: string, name: string, backend: NetworkBackend): void {
  const bridge = `tiso${randomBytes(4).toString("hex")}`;
  const file = join(networksDir, backend === "netavark" ? `${name}.json` : `${name}.conflist`);
  const config = JSON.parse(readFileSync(file, "utf8"));
  if (backend === "netavark") config.network_interface = bridge;
  else for (const plugin of config.plugins) if (plugin.type === "bridge") plugin.bridge = bridge;
  writeFileSync(file, JSON.stringify(config, null, 2));
}

/** containers.conf and storage.conf of a world; CONTAINERS_CONF replaces the machine's file, so it repeats its settings. */
function writeWorldConfig(dir: string, backend: NetworkBackend): Record<string, string> {
  for (const sub of ["root", "runroot", "tmp", "networks"]) mkdirSync(join(dir, sub), { recursive: true });
  const containersConf = join(dir, "containers.conf");
  const storageConf = join(dir, "storage.conf");
  writeFileSync(
    containersConf,
    [
      "[containers]",
      `default_ulimits = ["nofile=10000:10000","nproc=10000:10000"]`,
      "",
      "[engine]",
      `runtime = "runc"`,
      `tmp_dir = "${join(dir, "tmp")}"`,
      "",
      "[network]",
      `network_backend = "${backend}"`,
      `network_config_dir = "${join(dir, "networks")}"`,
      "",
    ].join("\n"),
  );
  writeFileSync(storageConf, ["[storage]", `driver = "overlay"`, `graphroot = "${join(dir, "root")}"`, `runroot = "${join(dir, "runroot")}"`, ""].join("\n"));
  return { CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf };
}

/** A subnet id N in 100–249 such that 10.200.N.0/24 is used by no podman network of this machine and no route. */
export async function freeSubnetId(): Promise<number> {
  const networks = (await run("podman", ["network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"], { timeoutMs: 30_000 })).stdout;
  const routes = (await run("ip", ["-4", "route"], { timeoutMs: 10_000 })).stdout;
  for (let attempt = 0; attempt < 200; attempt++) {
    const n = 100 + Math.floor(Math.random() * 150);
    const prefix = `10.200.${n}.`;
    if (!networks.includes(prefix) && !routes.includes(prefix)) return n;
  }
  throw new Error("no free 10.200.N.0/24 subnet");
}
