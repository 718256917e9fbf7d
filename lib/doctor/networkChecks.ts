import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { isIPv4 } from "node:net";
import { extname, join } from "node:path";
import { nodeDnsmasq, nodeProxyDriver, nodeWireGuard } from "../agent/nodeDrivers.ts";
import { errorMessage } from "../errors.ts";
import { run, type ExecResult } from "../exec.ts";
import type { DnsmasqDriver } from "../dns/DnsmasqDriver.ts";
import type { ProxyDriver } from "../drivers.ts";
import { CaddyDriver } from "../proxy/CaddyDriver.ts";
import { installable } from "../proxy/proxyInput.ts";
import { TraefikDriver } from "../proxy/TraefikDriver.ts";
import { ROUTES_FILE, TLS_FILE, parseRoutesYaml, parseTlsYaml } from "../proxy/traefikFiles.ts";
import { sortDnsRecords, sortRoutes } from "../state/hash.ts";
import type { Certificate, ExpectedState, Peer, Route } from "../state/types.ts";
import { WG_ROUTE_PROTOCOL, type WgDriver } from "../wireguard/WireGuardDriver.ts";
import { cidrCoveredBy, parseWgDumpDetail, type LivePeer, type WgDumpDetail } from "../wireguard/wgConfig.ts";
import { resultOf, type Check, type CheckStatus, type Fix } from "./Check.ts";
import type { DoctorContext } from "./DoctorContext.ts";

/** Every probe of these checks (dig, ip, wg, Caddy's admin API) gives up after this long. */
const PROBE_TIMEOUT_MS = 5000;
/** A peer with an endpoint that has not completed a handshake for longer than this is a warning (WireGuard re-handshakes every 2 minutes while traffic flows). */
export const HANDSHAKE_STALE_SECONDS = 180;
/** Asked when the expected state has no record: dnsmasq answers every *.internal name itself (NXDOMAIN when unknown). */
export const DNS_PROBE_NAME = "doctor-probe.internal";

// ---------------------------------------------------------------------------------------------
// Pure parsing and comparison (unit-tested)

/** "12 s ago", "4 min ago", "2 h ago", "never". */
export function handshakeAge(latestHandshake: number, nowSeconds: number): string {
  if (latestHandshake === 0) return "never";
  const age = Math.max(0, nowSeconds - latestHandshake);
  if (age < 120) return `${age} s ago`;
  if (age < 7200) return `${Math.floor(age / 60)} min ago`;
  return `${Math.floor(age / 3600)} h ago`;
}

export interface PeerAssessment {
  status: CheckStatus;
  /** One line per finding and per peer. */
  lines: string[];
  /** Something re-applying the peers repairs (missing, changed or unexpected peers). */
  repairable: boolean;
}

function describePeer(peer: Peer): string {
  return `peer ${peer.publicKey} (${peer.allowedIps.join(", ") || "no allowed IPs"}${peer.endpoint ? `; endpoint ${peer.endpoint}` : "; connects to us"})`;
}

/**
 * Expected peers against the live ones: a missing peer or one with other allowed IPs fails; a
 * peer with an endpoint whose last handshake is older than 3 minutes (or that never shook hands)
 * warns; a live peer the expected state does not have warns (the agent removes it). `expected`
 * undefined: only the live peers' handshakes are judged.
 */
export function assessPeers(expected: readonly Peer[] | undefined, live: readonly LivePeer[], nowSeconds: number): PeerAssessment {
  const lines: string[] = [];
  let status: CheckStatus = "ok";
  let repairable = false;
  const raise = (s: CheckStatus) => {
    if (s === "fail" || (s === "warn" && status === "ok")) status = s;
  };
  const byKey = new Map(live.map((p) => [p.publicKey, p]));
  const judgeHandshake = (peer: LivePeer, wantedEndpoint: string | undefined) => {
    const age = handshakeAge(peer.latestHandshake, nowSeconds);
    const stale = peer.latestHandshake === 0 || nowSeconds - peer.latestHandshake > HANDSHAKE_STALE_SECONDS;
    if (wantedEndpoint !== undefined && stale) {
      raise("warn");
      lines.push(`${describePeer({ ...peer, endpoint: wantedEndpoint })}: last handshake ${age}, over 3 min: is UDP to ${wantedEndpoint} open and the peer's agent running?`);
    } else {
      lines.push(`${describePeer({ ...peer, endpoint: wantedEndpoint })}: last handshake ${age}`);
    }
  };
  if (expected === undefined) {
    for (const peer of live) judgeHandshake(peer, peer.endpoint);
    return { status, lines, repairable };
  }
  for (const want of expected) {
    const have = byKey.get(want.publicKey);
    if (!have) {
      raise("fail");
      repairable = true;
      lines.push(`${describePeer(want)} is missing from the interface`);
      continue;
    }
    const wantIps = [...want.allowedIps].sort().join(", ");
    const haveIps = [...have.allowedIps].sort().join(", ");
    if (wantIps !== haveIps) {
      raise("fail");
      repairable = true;
      lines.push(`peer ${want.publicKey} allows ${haveIps || "nothing"}, expected ${wantIps || "nothing"}`);
    }
    judgeHandshake(have, want.endpoint);
  }
  const wanted = new Set(expected.map((p) => p.publicKey));
  for (const peer of live.filter((p) => !wanted.has(p.publicKey))) {
    raise("warn");
    repairable = true;
    lines.push(`${describePeer(peer)} is on the interface but not in the expected state`);
  }
  return { status, lines, repairable };
}

export interface RouteEntry {
  /** `a.b.c.d/n` (host routes get /32 or /128). */
  cidr: string;
  dev?: string;
  protocol?: string;
}

/** `ip -j route show` output (IPv4 or IPv6): destinations as CIDRs, `default` left out. */
export function parseIpRoutes(json: string, family: 4 | 6 = 4): RouteEntry[] {
  const text = json.trim();
  if (text === "") return [];
  const rows = JSON.parse(text) as Array<{ dst?: unknown; dev?: unknown; protocol?: unknown }>;
  const out: RouteEntry[] = [];
  for (const row of rows) {
    if (typeof row.dst !== "string" || row.dst === "default") continue;
    const cidr = row.dst.includes("/") ? row.dst : `${row.dst}/${family === 4 ? 32 : 128}`;
    out.push({ cidr, ...(typeof row.dev === "string" ? { dev: row.dev } : {}), ...(row.protocol !== undefined ? { protocol: String(row.protocol) } : {}) });
  }
  return out;
}

export interface WantedRoute {
  cidr: string;
  peer: string;
}

/** The routes the agent adds for peers (WgDriver.syncRoutes): every allowed IP outside the interface's own network, but never a /0. */
export function wantedPeerRoutes(peers: readonly Peer[], interfaceAddress: string): WantedRoute[] {
  const out: WantedRoute[] = [];
  for (const peer of peers) {
    for (const cidr of peer.allowedIps) {
      if (cidrCoveredBy(cidr, interfaceAddress) || cidr.endsWith("/0")) continue;
      out.push({ cidr, peer: peer.publicKey });
    }
  }
  return out;
}

export interface RouteAssessment {
  status: CheckStatus;
  lines: string[];
  repairable: boolean;
}

/**
 * Each wanted route against the table: through the interface is right; through another device
 * the agent leaves alone (a warning: the peer's subnet is not reached over the mesh); none fails.
 * Routes the agent added (its protocol number) that no peer wants any more warn.
 */
export function assessRoutes(wanted: readonly WantedRoute[], table: readonly RouteEntry[], interfaceName: string): RouteAssessment {
  const lines: string[] = [];
  let status: CheckStatus = "ok";
  let repairable = false;
  const raise = (s: CheckStatus) => {
    if (s === "fail" || (s === "warn" && status === "ok")) status = s;
  };
  for (const want of wanted) {
    const routes = table.filter((r) => r.cidr === want.cidr);
    if (routes.some((r) => r.dev === interfaceName)) {
      lines.push(`${want.cidr} (peer ${want.peer}) goes through ${interfaceName}`);
    } else if (routes.length > 0) {
      raise("warn");
      lines.push(`${want.cidr} (peer ${want.peer}) goes through ${routes.map((r) => r.dev ?? "a route without a device").join(", ")}, not ${interfaceName}: the agent leaves a prefix this node already routes elsewhere`);
    } else {
      raise("fail");
      repairable = true;
      lines.push(`no route to ${want.cidr} (peer ${want.peer}'s containers) through ${interfaceName}`);
    }
  }
  const wantedCidrs = new Set(wanted.map((w) => w.cidr));
  for (const stale of table.filter((r) => r.dev === interfaceName && r.protocol === String(WG_ROUTE_PROTOCOL) && !wantedCidrs.has(r.cidr))) {
    raise("warn");
    repairable = true;
    lines.push(`stale route ${stale.cidr} through ${interfaceName}: no peer allows it any more`);
  }
  return { status, lines, repairable };
}

export interface DigAnswer {
  /** NOERROR, NXDOMAIN, SERVFAIL, …; undefined when no server answered. */
  status?: string;
  /** A/AAAA addresses of the answer section, sorted. */
  addresses: string[];
}

/** dig's default output: the header's status and the A/AAAA records of the ANSWER SECTION. */
export function parseDigOutput(text: string): DigAnswer {
  const status = /status: ([A-Z]+)/.exec(text)?.[1];
  const addresses: string[] = [];
  let inAnswer = false;
  for (const line of text.split("\n")) {
    if (line.startsWith(";; ANSWER SECTION:")) {
      inAnswer = true;
      continue;
    }
    if (!inAnswer) continue;
    if (line.trim() === "" || line.startsWith(";;")) break;
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 5 && (fields[3] === "A" || fields[3] === "AAAA")) addresses.push(fields[4]!);
  }
  return { ...(status ? { status } : {}), addresses: addresses.sort() };
}

export interface RouteDiff {
  missing: Route[];
  changed: Array<{ want: Route; have: Route }>;
  extra: Route[];
}

/** Expected (installable) routes against the proxy's managed ones, by route id. */
export function diffRoutes(expected: readonly Route[], live: readonly Route[]): RouteDiff {
  const liveById = new Map(live.map((r) => [r.id, r]));
  const wantIds = new Set(expected.map((r) => r.id));
  const missing: Route[] = [];
  const changed: Array<{ want: Route; have: Route }> = [];
  for (const want of sortRoutes(expected)) {
    const have = liveById.get(want.id);
    if (!have) missing.push(want);
    else if (want.domain !== have.domain || want.serviceId !== have.serviceId || [...want.upstreams].sort().join() !== [...have.upstreams].sort().join()) {
      changed.push({ want, have });
    }
  }
  return { missing, changed, extra: sortRoutes(live.filter((r) => !wantIds.has(r.id))) };
}

export function describeRouteDiff(diff: RouteDiff): string[] {
  const show = (r: Route) => `${r.id} (${r.domain} → ${r.upstreams.join(", ") || "no upstreams"})`;
  return [
    ...diff.missing.map((r) => `route ${show(r)} is missing`),
    ...diff.changed.map(({ want, have }) => `route ${want.id} is ${have.domain} → ${have.upstreams.join(", ") || "no upstreams"} (service ${have.serviceId}), expected ${want.domain} → ${want.upstreams.join(", ")} (service ${want.serviceId})`),
    ...diff.extra.map((r) => `route ${show(r)} is not in the expected state`),
  ];
}

// ---------------------------------------------------------------------------------------------
// Probes

/** A probe never throws: a program that is not installed or times out comes back as a failed result with the reason. */
async function probe(file: string, args: string[]): Promise<ExecResult> {
  try {
    return await run(file, args, { timeoutMs: PROBE_TIMEOUT_MS, allowFailure: true });
  } catch (err) {
    return { exitCode: 127, stdout: "", stderr: `${file}: ${errorMessage(err)}` };
  }
}

interface ExpectedView {
  /** The state when one is known. */
  state?: ExpectedState;
  /** Why there is none, for a detail line. */
  none?: string;
}

async function expectedView(ctx: DoctorContext): Promise<ExpectedView> {
  const expected = await ctx.expected();
  if (expected.kind === "ok") return { state: expected.state };
  return { none: expected.kind === "none" ? expected.reason : `no usable expected state: ${expected.message}` };
}

interface LinkState {
  exists: boolean;
  up: boolean;
  addresses: string[];
}

/** The interface's flags and IPv4 addresses (`ip -j -4 address show dev IF`). */
async function linkState(name: string): Promise<LinkState> {
  const res = await probe("ip", ["-j", "-4", "address", "show", "dev", name]);
  if (res.exitCode !== 0) return { exists: false, up: false, addresses: [] };
  const rows = JSON.parse(res.stdout.trim() || "[]") as Array<{ flags?: string[]; addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
  const row = rows[0];
  if (!row) return { exists: false, up: false, addresses: [] };
  return { exists: true, up: (row.flags ?? []).includes("UP"), addresses: (row.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`) };
}

interface MeshLook {
  driver: WgDriver;
  link: LinkState;
  dump?: WgDumpDetail;
  dumpError?: string;
}

type Mesh = { off: string } | { look: MeshLook };

/** One look at the mesh interface per round, shared by network.wireguard and network.routes. */
function meshLook(ctx: DoctorContext): Promise<Mesh> {
  return ctx.memo("network:mesh", async (): Promise<Mesh> => {
    const { wireguard, wireguardOff } = nodeWireGuard(ctx.settings, ctx.dataDir, ctx.validIdentity());
    if (!wireguard) return { off: wireguardOff ?? "no WireGuard on this node" };
    const link = await linkState(wireguard.interfaceName);
    if (!link.exists) return { look: { driver: wireguard, link } };
    const res = await probe("wg", ["show", wireguard.interfaceName, "dump"]);
    if (res.exitCode !== 0) return { look: { driver: wireguard, link, dumpError: `wg show ${wireguard.interfaceName} dump failed: ${(res.stderr || res.stdout).trim() || `exit ${res.exitCode}`}` } };
    try {
      return { look: { driver: wireguard, link, dump: parseWgDumpDetail(res.stdout) } };
    } catch (err) {
      return { look: { driver: wireguard, link, dumpError: errorMessage(err) } };
    }
  });
}

/** The peers to (re)apply: the expected ones, else the live ones (repairs interface and routes without changing peers). */
async function peersToApply(ctx: DoctorContext, driver: WgDriver): Promise<Peer[]> {
  const view = await expectedView(ctx);
  if (view.state?.peers) return view.state.peers;
  return driver.observe();
}

function reapplyPeers(ctx: DoctorContext, driver: WgDriver, what: string): Fix {
  return {
    description: `${what}: apply the peers to ${driver.interfaceName} as the agent does (interface, address, wg syncconf, routes)`,
    apply: async () => {
      await driver.apply(await peersToApply(ctx, driver));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Checks

export const dnsCheck: Check<DoctorContext> = {
  id: "network.dns",
  title: "internal DNS (dnsmasq) answers",
  async run(ctx) {
    if (ctx.settings.dnsPort === 0) return resultOf(this, "skip", "--dns-port 0: internal DNS is off");
    const identity = ctx.validIdentity();
    const view = await expectedView(ctx);
    let dnsmasq: DnsmasqDriver;
    try {
      dnsmasq = nodeDnsmasq(ctx.settings, identity, ctx.subnetIdFor(view.state))!.dnsmasq;
    } catch (err) {
      return resultOf(this, "fail", `the DNS settings are not usable: ${errorMessage(err)}`);
    }
    const records = view.state?.dns;
    const fix: Fix = records
      ? { description: `write the ${records.length} expected record(s) and start dnsmasq as the agent does (port ${dnsmasq.port}, ${dnsmasq.runDir})`, apply: () => dnsmasq.apply(records) }
      : { description: `start dnsmasq as the agent does (port ${dnsmasq.port}, ${dnsmasq.runDir})`, apply: async () => void (await dnsmasq.ensureRunning()) };
    const pid = dnsmasq.runningPid();
    if (pid === undefined) {
      return resultOf(this, "fail", `the agent's dnsmasq is not running (no live dnsmasq with ${dnsmasq.confFile} in ${dnsmasq.pidFile}): containers cannot resolve *.internal names`, { fix });
    }
    if (!(await ctx.which("dig"))) return resultOf(this, "warn", `dnsmasq runs (pid ${pid}), but dig is not installed, so its answers were not checked (see host.tool.dig)`);

    const record = sortDnsRecords(records ?? [])[0];
    const wantV4 = record?.ips.filter((ip) => isIPv4(ip)) ?? [];
    const type = record && wantV4.length === 0 ? "AAAA" : "A";
    const want = record ? (type === "A" ? wantV4 : record.ips.filter((ip) => !isIPv4(ip))).sort() : [];
    const name = record?.name ?? DNS_PROBE_NAME;
    const servers = ["127.0.0.1", ...(identity ? [identity.wireguardIp.split("/")[0]!] : [])];
    const lines: string[] = [];
    let failed = false;
    let onlyMeshMissing = true;
    const answers = await Promise.all(
      servers.map(async (server) => ({ server, res: await probe("dig", ["+time=2", "+tries=1", `@${server}`, "-p", String(dnsmasq.port), name, type]) })),
    );
    for (const { server, res } of answers) {
      const answer = parseDigOutput(res.stdout);
      const where = `${server} port ${dnsmasq.port}`;
      const mesh = server !== "127.0.0.1";
      if (!answer.status) {
        failed = true;
        const meshDown = mesh && !(await localAddresses()).includes(server);
        if (!meshDown) onlyMeshMissing = false;
        lines.push(`no answer on ${where}${mesh ? " (the WireGuard address, where containers ask)" : ""}${meshDown ? `: no interface has ${server} (see network.wireguard)` : ""}`);
      } else if (!record) {
        const ok = answer.status === "NXDOMAIN";
        if (!ok) {
          failed = true;
          onlyMeshMissing = false;
        }
        lines.push(`${where}: ${name} (no record expected) answered ${answer.status}${ok ? ", from dnsmasq's own *.internal zone" : ", expected NXDOMAIN"}`);
      } else if (answer.addresses.join() === want.join()) {
        lines.push(`${where}: ${name} ${type} → ${answer.addresses.join(", ")}`);
      } else {
        failed = true;
        onlyMeshMissing = false;
        lines.push(`${where}: ${name} ${type} answered ${answer.addresses.join(", ") || answer.status}, expected ${want.join(", ")}`);
      }
    }
    const head = `dnsmasq runs (pid ${pid}${records ? `; ${records.length} expected record(s)` : `; ${view.none ?? "the expected state has no DNS records"}`})`;
    const detail = [head, ...lines].join("\n");
    if (!failed) return resultOf(this, "ok", detail);
    if (onlyMeshMissing) return resultOf(this, "fail", detail, { fix: { description: "bring up the WireGuard interface (network.wireguard's fix); dnsmasq binds its address when it appears" } });
    return resultOf(this, "fail", detail, { fix });
  },
};

/** IPv4 addresses of every interface (dnsmasq's bind-dynamic binds them as they appear). */
async function localAddresses(): Promise<string[]> {
  const res = await probe("ip", ["-j", "-4", "address", "show"]);
  if (res.exitCode !== 0) return [];
  const rows = JSON.parse(res.stdout.trim() || "[]") as Array<{ addr_info?: Array<{ local?: string }> }>;
  return rows.flatMap((r) => (r.addr_info ?? []).map((a) => a.local ?? ""));
}

export const wireguardCheck: Check<DoctorContext> = {
  id: "network.wireguard",
  title: "WireGuard mesh interface and peers",
  async run(ctx) {
    const mesh = await meshLook(ctx);
    if ("off" in mesh) return resultOf(this, "skip", mesh.off);
    const { driver, link, dump, dumpError } = mesh.look;
    const name = driver.interfaceName;
    if (!link.exists) return resultOf(this, "fail", `interface ${name} does not exist: no traffic to or from other nodes, and internal DNS does not answer on ${driver.address.split("/")[0]}`, { fix: reapplyPeers(ctx, driver, `create ${name}`) });
    const problems: string[] = [];
    if (!link.up) problems.push(`${name} is down`);
    if (!link.addresses.includes(driver.address)) problems.push(`${name} has ${link.addresses.join(", ") || "no IPv4 address"}, expected the registered ${driver.address}`);
    if (dumpError) return resultOf(this, "fail", [...problems, dumpError].join("\n"), { fix: reapplyPeers(ctx, driver, `repair ${name}`) });
    if (dump?.listenPort !== undefined && dump.listenPort !== driver.listenPort) problems.push(`${name} listens on UDP ${dump.listenPort}, expected ${driver.listenPort} (other nodes dial that port)`);
    const view = await expectedView(ctx);
    const peers = assessPeers(view.state?.peers, dump?.peers ?? [], Math.floor(Date.now() / 1000));
    const head = `${name}: ${link.up ? "up" : "down"}, ${link.addresses.join(", ") || "no address"}, ${dump?.peers.length ?? 0} peer(s)${view.state?.peers ? `, ${view.state.peers.length} expected` : `; peers not compared: ${view.none ?? "the expected state sends no peers"}`}`;
    const detail = [head, ...problems, ...peers.lines].join("\n");
    if (problems.length > 0) return resultOf(this, "fail", detail, { fix: reapplyPeers(ctx, driver, `repair ${name}`) });
    if (peers.repairable) return resultOf(this, peers.status, detail, { fix: reapplyPeers(ctx, driver, "sync the peers") });
    if (peers.status === "warn") return resultOf(this, "warn", detail, { fix: { description: "by hand: check that each named endpoint is reachable over UDP (firewall, NAT) and that its node's agent runs" } });
    return resultOf(this, peers.status, detail);
  },
};

export const routesCheck: Check<DoctorContext> = {
  id: "network.routes",
  title: "routes to peers' container subnets",
  async run(ctx) {
    const mesh = await meshLook(ctx);
    if ("off" in mesh) return resultOf(this, "skip", mesh.off);
    const { driver, link, dump } = mesh.look;
    const name = driver.interfaceName;
    if (!link.exists) return resultOf(this, "skip", `interface ${name} does not exist (see network.wireguard): there is nothing to route through`);
    const view = await expectedView(ctx);
    const peers: Peer[] = view.state?.peers ?? dump?.peers ?? [];
    const source = view.state?.peers ? "expected" : "live";
    const wanted = wantedPeerRoutes(peers, driver.address);
    let table: RouteEntry[];
    try {
      const [v4, v6] = await Promise.all([probe("ip", ["-j", "-4", "route", "show", "table", "main"]), probe("ip", ["-j", "-6", "route", "show", "table", "main"])]);
      if (v4.exitCode !== 0) throw new Error(`ip route show failed: ${v4.stderr.trim()}`);
      table = [...parseIpRoutes(v4.stdout, 4), ...(v6.exitCode === 0 ? parseIpRoutes(v6.stdout, 6) : [])];
    } catch (err) {
      return resultOf(this, "fail", `cannot read the routing table: ${errorMessage(err)}`);
    }
    const routes = assessRoutes(wanted, table, name);
    const head = `${wanted.length} route(s) wanted for ${peers.length} ${source} peer(s) (allowed IPs outside ${driver.address})`;
    const detail = [head, ...routes.lines].join("\n");
    if (routes.repairable) return resultOf(this, routes.status, detail, { fix: reapplyPeers(ctx, driver, "restore the routes") });
    return resultOf(this, routes.status, detail);
  },
};

const YAML_FILE = new Set([".yaml", ".yml"]);

export const proxyCheck: Check<DoctorContext> = {
  id: "network.proxy",
  title: "proxy carries the expected routes",
  async run(ctx) {
    if (!ctx.settings.proxy) return resultOf(this, "skip", "not a proxy node (no --proxy)");
    let driver: ProxyDriver;
    try {
      driver = await nodeProxyDriver(ctx.settings, { timeoutMs: PROBE_TIMEOUT_MS });
    } catch (err) {
      return resultOf(this, "fail", errorMessage(err), { fix: { description: "by hand: start Caddy or Traefik, or name the driver and its location (--proxy-driver, --caddy-admin-url, --traefik-dynamic-dir)" } });
    }
    const view = await expectedView(ctx);
    const lines: string[] = [];
    let status: CheckStatus = "ok";
    let repairable = false;
    let live: Route[];
    let liveCertificates: Certificate[] = [];
    if (driver instanceof TraefikDriver) {
      const dir = driver.dynamicDir;
      if (!existsSync(dir) || !statSync(dir).isDirectory()) {
        return resultOf(this, "fail", `Traefik's dynamic folder ${dir} does not exist`, { fix: applyRoutesFix(driver, view) });
      }
      const own = new Set([ROUTES_FILE, TLS_FILE]);
      live = [];
      for (const file of readdirSync(dir).filter((f) => YAML_FILE.has(extname(f))).sort()) {
        const path = join(dir, file);
        try {
          const text = readFileSync(path, "utf8");
          if (file === ROUTES_FILE) live = parseRoutesYaml(text);
          else if (file === TLS_FILE) parseTlsYaml(text);
          else (require("yaml") as typeof import("yaml")).parse(text);
        } catch (err) {
          status = "fail";
          if (own.has(file)) repairable = true;
          lines.push(`${path} does not parse${own.has(file) ? "" : " (not the agent's file: correct it by hand)"}: ${errorMessage(err).split("\n")[0]}`);
        }
      }
      if (!existsSync(driver.routesFile)) lines.push(`${driver.routesFile} does not exist (no routes)`);
      lines.unshift(`Traefik: ${dir}, ${live.length} managed route(s) in ${ROUTES_FILE}`);
      if (repairable) {
        try {
          liveCertificates = (await driver.observe()).certificates;
        } catch {
          // tls.yaml unreadable: the expected certificates are applied when known.
        }
      }
    } else {
      try {
        const observed = await driver.observe();
        live = observed.routes;
        liveCertificates = observed.certificates;
      } catch (err) {
        return resultOf(this, "fail", `Caddy's admin API does not answer: ${errorMessage(err)}`, { fix: { description: "by hand: start Caddy with its admin API, or point --caddy-admin-url at it" } });
      }
      lines.push(`Caddy: admin API answers${driver instanceof CaddyDriver ? ` at ${driver.adminUrl}` : ""}, ${live.length} managed route(s)`);
    }
    const expectedRoutes = view.state?.routes;
    if (expectedRoutes === undefined) {
      lines.push(`routes not compared: ${view.none ?? "the expected state sends no routes"}`);
    } else {
      const diff = diffRoutes(installable(expectedRoutes), live);
      const found = describeRouteDiff(diff);
      if (diff.missing.length > 0 || diff.changed.length > 0) status = "fail";
      else if (diff.extra.length > 0 && status === "ok") status = "warn";
      if (found.length > 0) repairable = true;
      lines.push(...(found.length > 0 ? found : [`all ${installable(expectedRoutes).length} expected route(s) present`]));
    }
    const detail = lines.join("\n");
    if (repairable) return resultOf(this, status, detail, { fix: applyRoutesFix(driver, view, liveCertificates) });
    if (status !== "ok") return resultOf(this, status, detail, { fix: { description: "by hand: correct the files named above" } });
    return resultOf(this, "ok", detail);
  },
};

/** Re-applies the expected routes (and certificates, else the live ones) through the driver; without an expected state there is nothing to re-apply. */
function applyRoutesFix(driver: ProxyDriver, view: ExpectedView, liveCertificates: Certificate[] = []): Fix {
  const routes = view.state?.routes;
  if (!routes) return { description: `by hand: ${view.none ?? "the expected state sends no routes"}; once doctor has an expected state (--state FILE|URL, or the control plane), its fix re-applies the routes` };
  return {
    description: `apply the ${installable(routes).length} expected route(s) to ${driver.name} as the agent does`,
    apply: () => driver.apply(routes, view.state?.certificates ?? liveCertificates),
  };
}

/** The network plane: internal DNS, the mesh interface and its peers, routes to peers, proxy routes. */
export const networkChecks: Check<DoctorContext>[] = [dnsCheck, wireguardCheck, routesCheck, proxyCheck];

