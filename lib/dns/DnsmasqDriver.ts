import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { AgentError, InvalidInputError } from "../errors.ts";
import { run } from "../exec.ts";
import { writeFileAtomic } from "../fs/atomicWrite.ts";
import { logger } from "../logger.ts";
import type { DnsDriver } from "../drivers.ts";
import type { DnsRecord } from "../state/types.ts";
import { isIPv6Address, isIPv4Address as isIPv4 } from "../state/validate.ts";
import { assertValidRecords, parseHostsFile, renderHostsFile } from "./hostsFile.ts";

const log = logger("dns");

export const HOSTS_FILE_NAME = "techulus.hosts";
export const DEFAULT_DNS_RUN_DIR = "/run/techulus-agent/dnsmasq";

export interface DnsmasqDriverOptions {
  /** Folder of the agent's dnsmasq: dnsmasq.conf, dnsmasq.pid, dnsmasq.log and hosts/. Default /run/techulus-agent/dnsmasq. */
  runDir?: string;
  /** Addresses dnsmasq answers on; see dnsListenAddresses(). Addresses that do not exist yet are picked up when they appear. */
  listenAddresses: string[];
  /** Default 53. */
  port?: number;
  /** Upstream resolvers for every other name; default: the nameservers of resolvConf. */
  upstreamServers?: string[];
  /** Default /etc/resolv.conf. */
  resolvConf?: string;
}

/** What dnsmasq listens on for a node: loopback and the node's WireGuard address (`10.100.N.1`). */
export function dnsListenAddresses(wireguardIp: string): string[] {
  return ["127.0.0.1", stripPrefix(wireguardIp)];
}

/**
 * The DNS servers managed containers must use so `*.internal` resolves: the node's WireGuard
 * address, which containers on the `techulus` bridge reach through their gateway (the bridge
 * itself only exists while a container runs, the WireGuard address always does).
 */
export function containerDnsServers(wireguardIp: string): string[] {
  return [stripPrefix(wireguardIp)];
}

function stripPrefix(address: string): string {
  return address.split("/")[0]!;
}

/**
 * Internal DNS served by the agent's own dnsmasq. Records live in a hosts file inside a
 * `--hostsdir`, which dnsmasq re-reads by itself when the file is replaced, so updates need no
 * restart; dnsmasq is (re)started only when it is not running or its own config changed.
 */
export class DnsmasqDriver implements DnsDriver {
  readonly runDir: string;
  readonly port: number;
  private readonly options: DnsmasqDriverOptions;

  constructor(options: DnsmasqDriverOptions) {
    this.runDir = options.runDir ?? DEFAULT_DNS_RUN_DIR;
    this.port = options.port ?? 53;
    if (!Number.isInteger(this.port) || this.port < 1 || this.port > 65535) throw new InvalidInputError(`DNS port ${this.port} is out of range 1–65535`);
    if (options.listenAddresses.length === 0) throw new InvalidInputError("dnsmasq needs at least one listen address");
    for (const address of [...options.listenAddresses, ...(options.upstreamServers ?? [])]) {
      if (!isIPv4(address) && !isIPv6Address(address)) throw new InvalidInputError(`${JSON.stringify(address)} is not an IP address`);
    }
    this.options = options;
  }

  get hostsDir(): string {
    return join(this.runDir, "hosts");
  }
  get hostsFile(): string {
    return join(this.hostsDir, HOSTS_FILE_NAME);
  }
  get confFile(): string {
    return join(this.runDir, "dnsmasq.conf");
  }
  get pidFile(): string {
    return join(this.runDir, "dnsmasq.pid");
  }

  /** The records dnsmasq serves now: the managed hosts file, or none when dnsmasq is not running. */
  async observe(): Promise<DnsRecord[]> {
    if (this.runningPid() === undefined) return [];
    if (!existsSync(this.hostsFile)) return [];
    return parseHostsFile(readFileSync(this.hostsFile, "utf8"));
  }

  async apply(records: DnsRecord[]): Promise<void> {
    assertValidRecords(records);
    this.ensureDirs();
    writeFileAtomic(this.hostsFile, renderHostsFile(records), { mode: 0o644 });
    await this.ensureRunning();
    log.info(`serving ${records.length} internal DNS record(s)`);
  }

  /** The pid of the agent's dnsmasq when it runs (pid file + /proc, checked to be dnsmasq with our config). */
  runningPid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, "utf8").trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return cmdline[0]?.endsWith("dnsmasq") && cmdline.includes(`--conf-file=${this.confFile}`) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Starts dnsmasq when it is not running and restarts it when its config changed (listen
   * addresses, port, upstreams). dnsmasq daemonises (setsid), so it outlives the agent.
   */
  async ensureRunning(): Promise<number> {
    this.ensureDirs();
    const conf = this.renderConf();
    const changed = !existsSync(this.confFile) || readFileSync(this.confFile, "utf8") !== conf;
    if (changed) writeFileAtomic(this.confFile, conf, { mode: 0o644 });
    if (!existsSync(this.hostsFile)) writeFileAtomic(this.hostsFile, renderHostsFile([]), { mode: 0o644 });
    let pid = this.runningPid();
    if (pid !== undefined && changed) {
      log.info(`dnsmasq configuration changed; restarting (pid ${pid})`);
      await this.stop();
      pid = undefined;
    }
    if (pid !== undefined) return pid;
    let res = await this.start();
    // A dnsmasq that just exited (restart, crash) can hold its sockets for a moment longer.
    for (let attempt = 0; attempt < 15 && res.exitCode !== 0 && /Address already in use/.test(res.stderr); attempt++) {
      await Bun.sleep(200);
      res = await this.start();
    }
    if (res.exitCode !== 0) {
      throw new AgentError(`dnsmasq failed to start: ${(res.stderr || res.stdout).trim() || `exit code ${res.exitCode}`}`, {
        hint: `another DNS server may hold port ${this.port} on ${this.options.listenAddresses.join(", ")}; see ${join(this.runDir, "dnsmasq.log")}`,
      });
    }
    const started = this.runningPid();
    if (started === undefined) throw new AgentError(`dnsmasq started but wrote no pid file at ${this.pidFile}`);
    log.info(`started dnsmasq (pid ${started}) on ${this.options.listenAddresses.join(", ")} port ${this.port}`);
    return started;
  }

  private start() {
    return run("dnsmasq", [`--conf-file=${this.confFile}`], { timeoutMs: 15_000, allowFailure: true });
  }

  /** Stops the agent's dnsmasq (and only it) and waits for it to exit. */
  async stop(): Promise<void> {
    const pid = this.runningPid();
    if (pid === undefined) return;
    process.kill(pid, "SIGTERM");
    // dnsmasq removes its pid file before it closes its sockets: wait for the process itself.
    for (let i = 0; i < 100 && processAlive(pid); i++) await Bun.sleep(50);
    if (processAlive(pid)) {
      process.kill(pid, "SIGKILL");
      for (let i = 0; i < 40 && processAlive(pid); i++) await Bun.sleep(50);
    }
  }

  renderConf(): string {
    const listen = this.options.listenAddresses;
    const upstreams = (this.options.upstreamServers ?? this.resolvConfServers()).filter((s) => !(this.port === 53 && listen.includes(s)));
    const lines = [
      "# Managed by techulus-agent: rewritten when listen addresses, port or upstreams change.",
      `port=${this.port}`,
      `listen-address=${listen.join(",")}`,
      // Like bind-interfaces, but binds addresses that appear later (WireGuard comes up after dnsmasq).
      "bind-dynamic",
      "no-resolv",
      "no-hosts",
      `hostsdir=${this.hostsDir}`,
      // Unknown *.internal names are answered here (NXDOMAIN), never forwarded upstream.
      "local=/internal/",
      `pid-file=${this.pidFile}`,
      `log-facility=${join(this.runDir, "dnsmasq.log")}`,
      ...upstreams.map((server) => `server=${server}`),
    ];
    return lines.join("\n") + "\n";
  }

  private resolvConfServers(): string[] {
    let text: string;
    try {
      text = readFileSync(this.options.resolvConf ?? "/etc/resolv.conf", "utf8");
    } catch {
      return [];
    }
    return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!).filter((ip) => isIPv4(ip) || isIPv6Address(ip));
  }

  /** dnsmasq drops root after start: its folders and files must be readable by `nobody`. */
  private ensureDirs(): void {
    for (const dir of [this.runDir, this.hostsDir]) {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      if ((statSync(dir).mode & 0o777) !== 0o755) chmodSync(dir, 0o755);
    }
    for (let dir = dirname(this.runDir); ; dir = dirname(dir)) {
      if ((statSync(dir).mode & 0o001) === 0) {
        throw new AgentError(`dnsmasq cannot read ${this.hostsDir}: it runs as nobody and ${dir} is private (mode ${(statSync(dir).mode & 0o777).toString(8)})`, {
          hint: `keep dnsmasq's run folder outside private folders, e.g. the default ${DEFAULT_DNS_RUN_DIR}`,
        });
      }
      if (dir === dirname(dir)) break;
    }
  }
}

/** Running and not a zombie (a killed daemon whose parent has not reaped it yet holds no sockets, but shows in /proc). */
function processAlive(pid: number): boolean {
  try {
    return /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] !== "Z";
  } catch {
    return false;
  }
}
