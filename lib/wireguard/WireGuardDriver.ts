import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AgentError, InvalidInputError } from "../errors.ts";
import { run, type ExecOptions, type ExecResult } from "../exec.ts";
import { writeFileAtomic } from "../fs/atomicWrite.ts";
import { isWireGuardKey } from "../crypto/wireguardKey.ts";
import { logger } from "../logger.ts";
import { registerSecret } from "../redact.ts";
import type { WireGuardDriver } from "../drivers.ts";
import type { Peer } from "../state/types.ts";
import { assertValidPeers, cidrCoveredBy, configuredEndpoints, parseWgDump, reconcileEndpoints, renderWgConfig } from "./wgConfig.ts";

const log = logger("wireguard");

/** Routes the agent adds for peers carry this routing protocol number, so they can be told apart. */
export const WG_ROUTE_PROTOCOL = 84;
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
const COMMAND_TIMEOUT_MS = 15_000;
/** Route types `ip route` prints before the destination. */
const ROUTE_TYPES = new Set(["unicast", "unreachable", "blackhole", "prohibit", "throw", "local", "broadcast", "multicast", "anycast", "nat"]);

export type WireGuardImplementation = "auto" | "kernel" | "wireguard-go";

export interface WgDriverOptions {
  /** Default `wg0`. */
  interfaceName?: string;
  /** The node's mesh address with its prefix, e.g. `10.100.1.1/16`. */
  address: string;
  /** Default 51820. */
  listenPort?: number;
  /** The node's private key (`wg genkey` format), e.g. `<data-dir>/wireguard.key`. */
  privateKeyFile: string;
  /** Where the agent keeps the syncconf file it writes (0700 folder, the file is 0600). */
  stateDir: string;
  /** Default `auto`: the kernel module when `ip link add … type wireguard` works, else wireguard-go. */
  implementation?: WireGuardImplementation;
  /** Seconds; default 25 (keeps NAT mappings open). 0 turns it off. */
  persistentKeepalive?: number;
  /** Run every command inside `ip netns exec <netns>` (tests simulate several nodes on one host). */
  netns?: string;
}

/** The mesh interface: created when absent, peers applied with `wg syncconf` (no tunnel flap), routes for peers' allowed IPs. */
export class WgDriver implements WireGuardDriver {
  readonly interfaceName: string;
  readonly address: string;
  readonly listenPort: number;
  private readonly options: WgDriverOptions;

  constructor(options: WgDriverOptions) {
    this.interfaceName = options.interfaceName ?? "wg0";
    if (!INTERFACE_NAME.test(this.interfaceName)) {
      throw new InvalidInputError(`WireGuard interface name ${JSON.stringify(this.interfaceName)} is invalid (1–15 letters, digits, _ . -)`);
    }
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(options.address)) {
      throw new InvalidInputError(`WireGuard address ${JSON.stringify(options.address)} must be IPv4 with a prefix, e.g. 10.100.1.1/16`);
    }
    this.address = options.address;
    this.listenPort = options.listenPort ?? 51820;
    this.options = options;
  }

  get configFile(): string {
    return join(this.options.stateDir, `${this.interfaceName}.conf`);
  }

  async observe(): Promise<Peer[]> {
    if (!(await this.interfaceExists())) return [];
    const res = await this.cmd("wg", ["show", this.interfaceName, "dump"]);
    const live = parseWgDump(res.stdout).peers;
    return reconcileEndpoints(live, this.readConfiguredEndpoints());
  }

  /**
   * Applies are serialised: the reconcile loop and an `update_wireguard` work item may apply at
   * the same time, and two concurrent first applies would both try to create the interface.
   */
  apply(peers: Peer[]): Promise<void> {
    const next = this.applying.then(() => this.applyNow(peers));
    this.applying = next.catch(() => undefined);
    return next;
  }

  private applying: Promise<void> = Promise.resolve();

  private async applyNow(peers: Peer[]): Promise<void> {
    assertValidPeers(peers);
    const privateKey = this.readPrivateKey();
    await this.ensureInterface();
    await this.ensureAddress();
    await this.cmd("ip", ["link", "set", "dev", this.interfaceName, "up"]);

    mkdirSync(this.options.stateDir, { recursive: true, mode: 0o700 });
    const config = renderWgConfig({ privateKey, listenPort: this.listenPort, peers, persistentKeepalive: this.options.persistentKeepalive ?? 25 });
    writeFileAtomic(this.configFile, config, { mode: 0o600 });
    await this.cmd("wg", ["syncconf", this.interfaceName, this.configFile]);
    await this.syncRoutes(peers);
    log.info(`applied ${peers.length} peer(s) to ${this.interfaceName}`);
  }

  /** Which implementation runs the interface now: `absent` when there is none. */
  async implementation(): Promise<"kernel" | "wireguard-go" | "absent"> {
    const res = await this.cmd("ip", ["-d", "-o", "link", "show", "dev", this.interfaceName], { allowFailure: true });
    if (res.exitCode !== 0) return "absent";
    return /\bwireguard\b/.test(res.stdout) ? "kernel" : "wireguard-go";
  }

  private async interfaceExists(): Promise<boolean> {
    const res = await this.cmd("ip", ["-o", "link", "show", "dev", this.interfaceName], { allowFailure: true });
    return res.exitCode === 0;
  }

  private async ensureInterface(): Promise<void> {
    if (await this.interfaceExists()) return;
    const wanted = this.options.implementation ?? "auto";
    let created = false;
    if (wanted !== "wireguard-go") {
      const res = await this.cmd("ip", ["link", "add", "dev", this.interfaceName, "type", "wireguard"], { allowFailure: true });
      created = res.exitCode === 0;
      if (!created && wanted === "kernel") {
        throw new AgentError(`cannot create WireGuard interface ${this.interfaceName} with the kernel module: ${res.stderr.trim()}`, {
          hint: "load the wireguard kernel module (modprobe wireguard) or use the userspace implementation wireguard-go",
        });
      }
      if (!created) log.info(`kernel has no WireGuard support (${res.stderr.trim()}); using wireguard-go`);
    }
    if (!created) {
      // wireguard-go daemonises itself (stdio to /dev/null unless LOG_LEVEL is set), so the
      // interface outlives the agent, as a kernel interface would.
      await this.cmd("wireguard-go", [this.interfaceName], { env: { LOG_LEVEL: undefined, WG_PROCESS_FOREGROUND: undefined } }).catch((err: unknown) => {
        throw new AgentError(`cannot start wireguard-go for ${this.interfaceName}: ${(err as Error).message}`, {
          hint: "install wireguard-go (apt-get install wireguard-go) and check that /dev/net/tun exists",
        });
      });
      if (!(await this.interfaceExists())) throw new AgentError(`wireguard-go ran but interface ${this.interfaceName} did not appear`);
    }
    log.info(`created WireGuard interface ${this.interfaceName} (${created ? "kernel" : "wireguard-go"})`);
    await this.cmd("wg", ["set", this.interfaceName, "listen-port", String(this.listenPort), "private-key", this.options.privateKeyFile]);
  }

  private async ensureAddress(): Promise<void> {
    const res = await this.cmd("ip", ["-o", "-4", "address", "show", "dev", this.interfaceName]);
    const present = [...res.stdout.matchAll(/\binet\s+(\S+)/g)].map((m) => m[1]!);
    for (const other of present.filter((a) => a !== this.address)) {
      log.info(`removing stale address ${other} from ${this.interfaceName}`);
      await this.cmd("ip", ["address", "del", other, "dev", this.interfaceName]);
    }
    if (!present.includes(this.address)) await this.cmd("ip", ["address", "add", this.address, "dev", this.interfaceName]);
  }

  /**
   * A route per allowed IP outside the interface's own network; routes of peers that are gone are
   * removed. A prefix this node already routes through another link (its container bridge, its
   * LAN) is left there: `ip route replace` would move it onto the tunnel and cut the node off.
   */
  private async syncRoutes(peers: readonly Peer[]): Promise<void> {
    const elsewhere = new Map((await this.routeTable([])).filter((r) => r.dev !== this.interfaceName).map((r) => [r.cidr, r.dev ?? "a route without a device"]));
    const wanted = new Set<string>();
    for (const peer of peers) {
      for (const cidr of peer.allowedIps) {
        if (cidrCoveredBy(cidr, this.address)) continue;
        if (cidr.endsWith("/0")) {
          log.warn(`not routing ${cidr} of peer ${peer.publicKey} through ${this.interfaceName}: it would replace the default route`);
          continue;
        }
        const other = elsewhere.get(cidr);
        if (other !== undefined) {
          log.warn(`not routing ${cidr} of peer ${peer.publicKey} through ${this.interfaceName}: this node already routes it through ${other}`);
          continue;
        }
        wanted.add(cidr);
      }
    }
    const existing = await this.managedRoutes();
    for (const cidr of wanted) {
      await this.cmd("ip", ["route", "replace", cidr, "dev", this.interfaceName, "proto", String(WG_ROUTE_PROTOCOL)]);
    }
    for (const cidr of existing.filter((c) => !wanted.has(c))) {
      await this.cmd("ip", ["route", "del", cidr, "dev", this.interfaceName, "proto", String(WG_ROUTE_PROTOCOL)], { allowFailure: true });
    }
  }

  /** The routes this agent added on the interface (recognised by their protocol number). */
  async managedRoutes(): Promise<string[]> {
    const routes = await this.routeTable(["dev", this.interfaceName, "proto", String(WG_ROUTE_PROTOCOL)]);
    return routes.map((r) => r.cidr).sort();
  }

  /** IPv4 and IPv6 routes of the main table matching `filter`, as CIDRs with their device (absent when the filter names it). */
  private async routeTable(filter: string[]): Promise<Array<{ cidr: string; dev?: string }>> {
    const routes: Array<{ cidr: string; dev?: string }> = [];
    for (const family of ["-4", "-6"]) {
      const res = await this.cmd("ip", [family, "-o", "route", "show", ...filter], { allowFailure: true });
      for (const line of res.stdout.split("\n")) {
        const fields = line.trim().split(/\s+/);
        const dest = ROUTE_TYPES.has(fields[0]!) ? fields[1] : fields[0];
        if (!dest || dest === "default") continue;
        routes.push({ cidr: dest.includes("/") ? dest : `${dest}/${family === "-4" ? 32 : 128}`, dev: /\bdev (\S+)/.exec(line)?.[1] });
      }
    }
    return routes;
  }

  private readPrivateKey(): string {
    if (!existsSync(this.options.privateKeyFile)) {
      throw new AgentError(`WireGuard private key ${this.options.privateKeyFile} does not exist`, { hint: "run agent doctor" });
    }
    const key = readFileSync(this.options.privateKeyFile, "utf8").trim();
    registerSecret(key);
    if (!isWireGuardKey(key)) throw new AgentError(`${this.options.privateKeyFile} is not a WireGuard key (base64 of 32 bytes)`, { hint: "run agent doctor" });
    return key;
  }

  private readConfiguredEndpoints(): Map<string, string | undefined> | undefined {
    try {
      return configuredEndpoints(readFileSync(this.configFile, "utf8"));
    } catch {
      return undefined;
    }
  }

  private cmd(file: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
    const opts = { timeoutMs: COMMAND_TIMEOUT_MS, ...options };
    if (this.options.netns) return run("ip", ["netns", "exec", this.options.netns, file, ...args], opts);
    return run(file, args, opts);
  }
}
