import { existsSync, readFileSync, statfsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { errorMessage } from "../errors.ts";
import { run } from "../exec.ts";
import { writeFileAtomic } from "../fs/atomicWrite.ts";
import { SERVICE_IDLE_SECONDS, pingPodmanSocket, podmanSocketCandidates } from "../podman/PodmanSocket.ts";
import { DEFAULT_TRAEFIK_DYNAMIC_DIR } from "../proxy/TraefikDriver.ts";
import { resultOf, type Check, type CheckResult, type Fix } from "./Check.ts";
import { confString, confStringList, parseContainersConf, parseProcLimits, parseUlimit, setConfValue, tomlStringArray } from "./containersConf.ts";
import type { DoctorContext } from "./DoctorContext.ts";

type HostCheck = Check<DoctorContext>;

const GiB = 1024 ** 3;

function aptInstall(pkg: string): Fix {
  return { description: `install ${pkg}: apt-get install -y ${pkg}`, command: ["apt-get", "install", "-y", "--no-install-recommends", pkg] };
}

export const rootCheck: HostCheck = {
  id: "host.root",
  title: "running as root",
  async run(ctx) {
    if (ctx.isRoot()) return resultOf(this, "ok", "uid 0");
    return resultOf(this, "fail", `running as uid ${process.getuid?.() ?? "?"}: the agent manages podman, networks and WireGuard and must run as root; several checks below cannot see everything (run sudo agent doctor)`);
  },
};

export const podmanCheck: HostCheck = {
  id: "host.podman",
  title: "podman installed",
  async run(ctx) {
    const version = await podmanVersion(ctx);
    if (version.error) return resultOf(this, "fail", version.error, { fix: aptInstall("podman") });
    const major = Number(version.version!.split(".")[0]);
    if (major < 4) return resultOf(this, "fail", `podman ${version.version}: the agent uses the libpod API v4 and needs podman 4 or newer`);
    return resultOf(this, "ok", `podman ${version.version}`);
  },
};

function podmanVersion(ctx: DoctorContext): Promise<{ version?: string; error?: string }> {
  return ctx.memo("podmanVersion", async () => {
    try {
      const res = await run("podman", ["--version"], { timeoutMs: 15_000 });
      const version = /(\d+\.\d+(?:\.\d+)?)/.exec(res.stdout)?.[1];
      return version ? { version } : { error: `podman --version printed ${JSON.stringify(res.stdout.trim())}` };
    } catch (err) {
      return { error: errorMessage(err) };
    }
  });
}

/** cgroup v2 only ("unified") or v1/hybrid, from the mount table. */
export function cgroupMode(mounts: string): "unified" | "legacy" {
  for (const line of mounts.split("\n")) {
    const [, mountPoint, type] = line.split(" ");
    if (mountPoint === "/sys/fs/cgroup") return type === "cgroup2" ? "unified" : "legacy";
  }
  return "legacy";
}

function readContainersConf(ctx: DoctorContext): { text?: string; error?: string } {
  const path = ctx.paths.containersConf;
  if (!existsSync(path)) return {};
  try {
    return { text: readFileSync(path, "utf8") };
  } catch (err) {
    return { error: `cannot read ${path}: ${errorMessage(err)}` };
  }
}

function writeContainersConf(ctx: DoctorContext, change: (text: string) => string): Promise<void> {
  const path = ctx.paths.containersConf;
  const before = existsSync(path) ? readFileSync(path, "utf8") : "";
  writeFileAtomic(path, change(before), { mode: 0o644 });
  return Promise.resolve();
}

export const ociRuntimeCheck: HostCheck = {
  id: "host.oci-runtime",
  title: "podman uses runc",
  async run(ctx) {
    const path = ctx.paths.containersConf;
    const conf = readContainersConf(ctx);
    if (conf.error) return resultOf(this, "fail", conf.error);
    const runtime = conf.text === undefined ? undefined : confString(parseContainersConf(conf.text), "engine", "runtime");
    let mounts = "";
    try {
      mounts = readFileSync(ctx.paths.procMounts, "utf8");
    } catch {
      // Unknown cgroup layout: treat it as the one where crun fails.
    }
    const legacy = cgroupMode(mounts) === "legacy";
    const setRunc: Fix = {
      description: `set [engine] runtime = "runc" in ${path}`,
      apply: () => writeContainersConf(ctx, (text) => setConfValue(text, "engine", "runtime", '"runc"')),
    };
    if (runtime === "runc") {
      if (!(await ctx.which("runc"))) return resultOf(this, "fail", `${path} selects runc, but runc is not installed`, { fix: aptInstall("runc") });
      return resultOf(this, "ok", `runtime = "runc" in ${path}`);
    }
    const current = runtime ? `runtime = "${runtime}"` : `no runtime set in ${path} (podman picks crun when installed)`;
    if (!legacy) return resultOf(this, "ok", `${current}; cgroups v2 only, so crun works too`);
    return resultOf(this, "fail", `${current} on a cgroups v1/hybrid host: crun fails here ("cgroups in hybrid mode not supported"), so every container start fails`, { fix: setRunc });
  },
};

export const ulimitsCheck: HostCheck = {
  id: "host.ulimits",
  title: "podman default_ulimits within the hard limits",
  async run(ctx) {
    const path = ctx.paths.containersConf;
    const conf = readContainersConf(ctx);
    if (conf.error) return resultOf(this, "fail", conf.error);
    const list = conf.text === undefined ? undefined : confStringList(parseContainersConf(conf.text), "containers", "default_ulimits");
    if (!list || list.length === 0) return resultOf(this, "ok", `no default_ulimits in ${path}: containers inherit podman's limits`);
    let hard: Map<string, number | undefined>;
    try {
      hard = parseProcLimits(readFileSync(ctx.paths.procSelfLimits, "utf8"));
    } catch (err) {
      return resultOf(this, "skip", `cannot read ${ctx.paths.procSelfLimits}: ${errorMessage(err)}`);
    }
    const problems: string[] = [];
    const fixed = list.map((entry) => {
      const u = parseUlimit(entry);
      if (!u) {
        problems.push(`${JSON.stringify(entry)} is not name=soft[:hard]`);
        return entry;
      }
      const max = hard.get(u.name);
      if (max === undefined || (u.soft <= max && u.hard <= max)) return entry;
      problems.push(`${entry} is above the hard limit ${u.name}=${max}`);
      return `${u.name}=${Math.min(u.soft, max)}:${Math.min(u.hard, max)}`;
    });
    const shown = `default_ulimits = ${tomlStringArray(list)}`;
    if (problems.length === 0) return resultOf(this, "ok", `${shown}; hard limits ${describeHard(hard, list)}`);
    const detail = `${shown} in ${path}: ${problems.join("; ")}. Raising a limit above the hard limit fails (EPERM), so every container create fails`;
    const malformed = problems.some((p) => p.includes("is not name="));
    return resultOf(this, "fail", detail, {
      fix: malformed
        ? { description: `correct default_ulimits in ${path} by hand` }
        : { description: `set default_ulimits = ${tomlStringArray(fixed)} in ${path}`, apply: () => writeContainersConf(ctx, (text) => setConfValue(text, "containers", "default_ulimits", tomlStringArray(fixed))) },
    });
  },
};

function describeHard(hard: Map<string, number | undefined>, entries: string[]): string {
  return entries
    .map((e) => parseUlimit(e)?.name)
    .filter((n): n is string => n !== undefined)
    .map((n) => `${n}=${hard.has(n) ? (hard.get(n) ?? "unlimited") : "?"}`)
    .join(", ");
}

export const podmanSocketCheck: HostCheck = {
  id: "host.podman-socket",
  title: "podman API socket answers",
  async run(ctx) {
    if ((await podmanVersion(ctx)).error) return resultOf(this, "skip", "podman is not installed");
    const own = join(ctx.dataDir.root, "podman.sock");
    const candidates = [...new Set([...podmanSocketCandidates(ctx.env), own])];
    for (const socket of candidates) {
      if (await pingPodmanSocket(socket)) {
        return resultOf(this, "ok", socket === own ? `${socket} (the agent's own service; it exits by itself ${SERVICE_IDLE_SECONDS} s after its last use)` : socket);
      }
    }
    const detail = `no podman API socket answers (tried ${candidates.join(", ")}); the agent starts its own podman system service on ${own} when it needs one (it exits by itself ${SERVICE_IDLE_SECONDS} s after its last use)`;
    const fix: Fix | undefined = existsSync(ctx.paths.systemdRunDir)
      ? { description: "start podman's socket unit: systemctl enable --now podman.socket", command: ["systemctl", "enable", "--now", "podman.socket"] }
      : undefined;
    return resultOf(this, "warn", detail, fix ? { fix } : {});
  },
};

interface ToolSpec {
  program: string;
  pkg: string;
  title: string;
  /** Why this node needs the program, or undefined when it does not (then the check is skipped). */
  need(ctx: DoctorContext): { status: "fail" | "warn"; why: string } | { skip: string };
}

function toolCheck(spec: ToolSpec): HostCheck {
  return {
    id: `host.tool.${spec.program}`,
    title: spec.title,
    async run(ctx) {
      const need = spec.need(ctx);
      if ("skip" in need) return resultOf(this, "skip", need.skip);
      const path = await ctx.which(spec.program);
      if (path) return resultOf(this, "ok", path);
      return resultOf(this, need.status, `${spec.program} is not on PATH; ${need.why}`, { fix: aptInstall(spec.pkg) });
    },
  };
}

function isDirectory(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

/** Whether the kernel can make WireGuard interfaces itself (module loaded, loadable or built in). */
export function kernelHasWireGuard(ctx: DoctorContext): boolean {
  if (existsSync(ctx.paths.sysModuleWireguard)) return true;
  for (const file of ["modules.dep", "modules.builtin"]) {
    try {
      if (/(^|\/)wireguard\.ko/m.test(readFileSync(join(ctx.paths.modulesDir, file), "utf8"))) return true;
    } catch {
      // No such list: the module is not known to be there.
    }
  }
  return false;
}

/** WireGuard is needed by every registered node; before registration only if it is going to register. */
function wireguardNeed(ctx: DoctorContext, why: string): { status: "fail" | "warn"; why: string } {
  const registered = ctx.identity().kind !== "absent";
  return { status: registered ? "fail" : "warn", why: registered ? why : `${why} (once this server is registered)` };
}

export const toolChecks: HostCheck[] = [
  toolCheck({
    program: "dnsmasq",
    pkg: "dnsmasq",
    title: "dnsmasq installed",
    need: (ctx) => (ctx.settings.dnsPort === 0 ? { skip: "internal DNS is off (--dns-port 0)" } : { status: "fail", why: "the agent serves internal DNS (*.internal) with it" }),
  }),
  toolCheck({
    program: "dig",
    pkg: "dnsutils",
    title: "dig installed",
    need: (ctx) => (ctx.settings.dnsPort === 0 ? { skip: "internal DNS is off (--dns-port 0)" } : { status: "warn", why: "it is how you check what internal DNS answers" }),
  }),
  toolCheck({ program: "wg", pkg: "wireguard-tools", title: "wg installed", need: (ctx) => wireguardNeed(ctx, "the agent manages the WireGuard mesh with it") }),
  toolCheck({
    program: "wireguard-go",
    pkg: "wireguard-go",
    title: "wireguard-go installed (no kernel module)",
    need: (ctx) => (kernelHasWireGuard(ctx) ? { skip: "the kernel has WireGuard" } : wireguardNeed(ctx, "the kernel has no WireGuard module, so the mesh interface runs in userspace")),
  }),
  toolCheck({
    program: "caddy",
    pkg: "caddy",
    title: "caddy installed (proxy node)",
    need: (ctx) => {
      if (!ctx.settings.proxy) return { skip: "not a proxy node" };
      if (ctx.settings.proxyDriver === "traefik") return { skip: "this proxy node uses Traefik" };
      // As selectProxyDriver does: auto falls back to Traefik when its dynamic folder exists.
      const traefikDir = ctx.settings.traefikDynamicDir ?? DEFAULT_TRAEFIK_DYNAMIC_DIR;
      if (ctx.settings.proxyDriver !== "caddy" && isDirectory(traefikDir)) return { skip: `--proxy-driver auto can use Traefik (${traefikDir} exists)` };
      return { status: "fail", why: "this proxy node routes traffic through Caddy" };
    },
  }),
];

export const diskCheck: HostCheck = {
  id: "host.disk",
  title: "free disk space for the data dir",
  async run(ctx) {
    let dir = ctx.dataDir.root;
    while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
    let free: number;
    let total: number;
    try {
      const fs = statfsSync(dir);
      free = fs.bavail * fs.bsize;
      total = fs.blocks * fs.bsize;
    } catch (err) {
      return resultOf(this, "skip", `cannot stat the file system of ${dir}: ${errorMessage(err)}`);
    }
    return diskResult(this, dir, free, total);
  },
};

export function diskResult(check: { id: string; title: string }, dir: string, free: number, total: number): CheckResult {
  const percent = total > 0 ? (free / total) * 100 : 0;
  const detail = `${(free / GiB).toFixed(1)} GiB free of ${(total / GiB).toFixed(1)} GiB (${percent.toFixed(0)}%) on the file system of ${dir}`;
  if (free < 1 * GiB || percent < 2) return resultOf(check, "fail", `${detail}: image pulls, builds and volumes will fail`);
  if (free < 5 * GiB || percent < 10) return resultOf(check, "warn", `${detail}: running low`);
  return resultOf(check, "ok", detail);
}

export const hostChecks: HostCheck[] = [rootCheck, podmanCheck, ociRuntimeCheck, ulimitsCheck, podmanSocketCheck, ...toolChecks, diskCheck];
