/**
 * A podman of the test's own: its own storage, run, tmp and network-config folders, served on its
 * own API socket. An agent pointed at it (`CONTAINER_HOST=unix://…`) sees only this test's
 * containers, so a reconcile pass — which stops and removes every managed container it does not
 * expect — cannot touch the containers of other tests running on the same machine.
 *
 *   startIsolatedPodman({ images, network })  → { socketPath, env, podman(args), stop() }
 *   freeSubnetId()                            → N such that 10.200.N.0/24 is used by no podman network or route
 *
 * `network` pre-creates the agent's `techulus` network (subnet 10.200.N.0/24) with a unique bridge
 * name: netavark would otherwise pick `podmanN`, which may belong to a network of the shared world.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, spawn } from "../../lib/exec.ts";
import { pingPodmanSocket } from "../../lib/podman/PodmanSocket.ts";

export interface IsolatedPodman {
  dir: string;
  socketPath: string;
  /** Environment for an agent that must use this podman. */
  env: { CONTAINER_HOST: string };
  /** The `CONTAINER_HOST` value alone. */
  containerHost: string;
  /** The podman CLI against this world. */
  podman(args: string[], options?: { allowFailure?: boolean }): Promise<string>;
  stop(): Promise<void>;
}

export interface IsolatedPodmanOptions {
  /** Images copied from the machine's storage (e.g. localhost/hello-web:test). */
  images: string[];
  network?: { subnetId: number; name?: string };
}

/** `startIsolatedPodman(dir, images)` is the short form: a given folder, no pre-created network. */
export async function startIsolatedPodman(optionsOrDir: IsolatedPodmanOptions | string, images?: string[]): Promise<IsolatedPodman> {
  const options: IsolatedPodmanOptions = typeof optionsOrDir === "string" ? { images: images ?? ["localhost/busybox:test"] } : optionsOrDir;
  const dir = typeof optionsOrDir === "string" ? (mkdirSync(optionsOrDir, { recursive: true }), mkdtempSync(join(optionsOrDir, "world-"))) : mkdtempSync(join(tmpdir(), "isolated-podman-"));
  const flags = ["--root", join(dir, "root"), "--runroot", join(dir, "runroot"), "--tmpdir", join(dir, "tmp"), "--network-config-dir", join(dir, "networks")];
  const podman = async (args: string[], opts: { allowFailure?: boolean } = {}) =>
    (await run("podman", [...flags, ...args], { timeoutMs: 120_000, allowFailure: opts.allowFailure })).stdout;
  const socketPath = join(dir, "podman.sock");
  let service: ReturnType<typeof spawn> | undefined;

  const stop = async () => {
    if (service) {
      const ids = (await podman(["ps", "-a", "--format", "{{.ID}}"]).catch(() => ""))
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean);
      // Every container here was made by this test: this world holds nothing else.
      if (ids.length > 0) await podman(["rm", "-f", "-v", "-t", "0", ...ids]).catch(() => "");
      service.kill("SIGTERM");
      await Promise.race([service.catch(() => undefined), Bun.sleep(10_000)]);
      await podman(["rmi", "-a", "-f"]).catch(() => "");
      service = undefined;
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    mkdirSync(join(dir, "networks"), { recursive: true });
    if (options.network) writeNetworkConfig(dir, options.network.name ?? "techulus", options.network.subnetId);
    for (const image of options.images) {
      const archive = join(dir, "image.tar");
      await run("podman", ["save", "-o", archive, image], { timeoutMs: 120_000 });
      await podman(["load", "-i", archive]);
      rmSync(archive);
    }
    service = spawn("podman", [...flags, "system", "service", "--time=0", `unix://${socketPath}`]);
    service.catch(() => undefined);
    const deadline = Date.now() + 20_000;
    while (!(await pingPodmanSocket(socketPath, 1000))) {
      if (Date.now() > deadline) throw new Error(`isolated podman service did not answer on ${socketPath}`);
      await Bun.sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { dir, socketPath, env: { CONTAINER_HOST: `unix://${socketPath}` }, containerHost: `unix://${socketPath}`, podman, stop };
}

/**
 * Adds a bridge network 10.200.N.0/24 to an isolated podman (read by podman at each use), with a
 * unique bridge name: netavark would otherwise pick `podmanN`, which may be a bridge of the host's.
 */
export function writeNetworkConfig(dir: string, name: string, subnetId: number): void {
  const config = {
    name,
    id: randomBytes(32).toString("hex"),
    driver: "bridge",
    network_interface: `tdoc${randomBytes(4).toString("hex")}`.slice(0, 15),
    created: new Date().toISOString(),
    subnets: [{ subnet: `10.200.${subnetId}.0/24`, gateway: `10.200.${subnetId}.1` }],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: false,
    ipam_options: { driver: "host-local" },
  };
  mkdirSync(join(dir, "networks"), { recursive: true });
  writeFileSync(join(dir, "networks", `${name}.json`), JSON.stringify(config, null, 2));
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
