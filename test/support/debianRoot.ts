/**
 * A fresh Debian 12 machine with systemd as PID 1, for tests that must run something the way a
 * person would on a new server (the README's quick start, an installer, a unit file, restarts):
 * a privileged podman container made from a minimal debootstrapped root (shared/HOST.md, "systemd
 * as PID 1"). Needs root and podman on the host.
 *
 *   DEBIAN_IMAGE                       "localhost/techulus-debian-systemd:bookworm"
 *   ensureDebianImage({ log? })        debootstraps bookworm (minbase + systemd, dbus, ca-certificates) from
 *                                      this machine's Debian mirror and imports it as DEBIAN_IMAGE, once:
 *                                      an existing image of the same recipe is reused → { image, built }
 *   startDebianRoot({ prefix?, log? }) boots a root from it (ensureDebianImage first) and waits for systemd;
 *                                      on failure everything it made is removed again → DebianRoot
 *   checkoutFiles(repo)                the working tree's files as git lists them (tracked + untracked, not
 *                                      ignored; never node_modules/ or dist/), relative paths
 *
 * DebianRoot:
 *   name, id, pid      container name and id; host pid of the root's init (`nsenter -t PID -n CMD` starts a
 *                      server in the root's network namespace, so everything stays on loopback)
 *   hostDir            per-run host folder; <hostDir>/containers is the root's /var/lib/containers
 *                      (Podman's overlay driver fails on the container's own overlay root)
 *   failedUnits        units systemd reported failed at boot ("degraded"), usually empty
 *   env                environment every exec gets: NODE_EXTRA_CA_CERTS (see below), HOME
 *   exec(argv, { cwd, env, timeoutMs, onLine, allowFailure, buffer })  runs argv inside, streaming its lines;
 *                      throws on a non-zero exit unless allowFailure (like lib/exec's run)
 *   copyIn(hostPath, rootPath)        `podman cp` semantics: into rootPath when it is an existing folder
 *   copyCheckout(rootPath?, repo?)    copies checkoutFiles(repo) plus .git to rootPath (default /root/agent),
 *                                      owned by root, so uncommitted work is tested too → rootPath
 *   stop()             removes the container and hostDir; idempotent, safe after any failure
 *
 * The machine's environment, not the project's: these machines reach Debian's mirror and the npm
 * registry only through a proxy whose CA is in /usr/local/share/ca-certificates. startDebianRoot
 * copies those certificates in and runs update-ca-certificates, and exec sets NODE_EXTRA_CA_CERTS,
 * so the project's scripts run inside exactly as on a fresh server.
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { run, spawn, type ExecResult } from "../../lib/exec.ts";

export const DEBIAN_IMAGE = "localhost/techulus-debian-systemd:bookworm";
const SUITE = "bookworm";
const INCLUDE = "systemd,systemd-sysv,dbus,ca-certificates";
/** Label on the image: a change of the recipe (suite, packages, post-processing) rebuilds it. */
const RECIPE_LABEL = "techulus.debian-root.recipe";
const RECIPE = `debootstrap minbase ${SUITE} ${INCLUDE}; sources with updates+security; empty machine-id; v1`;
const REPO_ROOT = resolve(import.meta.dir, "../..");
const DEFAULT_MIRROR = "http://deb.debian.org/debian";
const CA_DIR = "/usr/local/share/ca-certificates";
const ROOT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

type Log = (message: string) => void;
const defaultLog: Log = (message) => process.stderr.write(`[debian-root] ${message}\n`);

export interface RootExecOptions {
  /** Working folder inside the root. */
  cwd?: string;
  /** Extra environment, on top of DebianRoot.env. */
  env?: Record<string, string>;
  /** Milliseconds before the command (and its process group inside) is killed. */
  timeoutMs?: number;
  /** Every line of the command's stdout and stderr as it arrives. */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Do not throw on a non-zero exit. */
  allowFailure?: boolean;
  /** false: keep no stdout/stderr in the result (long, chatty commands read through onLine). */
  buffer?: boolean;
}

export interface DebianRoot {
  name: string;
  id: string;
  pid: number;
  hostDir: string;
  failedUnits: string[];
  env: Record<string, string>;
  exec(argv: string[], options?: RootExecOptions): Promise<ExecResult>;
  copyIn(hostPath: string, rootPath: string): Promise<void>;
  copyCheckout(rootPath?: string, repo?: string): Promise<string>;
  stop(): Promise<void>;
}

/** podman with warnings off: on this host every exec warns about a net_cls cgroup it cannot make. */
function podman(args: string[], options: Parameters<typeof run>[2] = {}): Promise<ExecResult> {
  return run("podman", ["--log-level=error", ...args], { timeoutMs: 120_000, ...options });
}

/** The Debian mirror (and security mirror) this machine's apt uses, read from its apt sources. */
export function aptMirrors(): { mirror: string; security?: string } {
  const entries: { uri: string; suites: string[] }[] = [];
  const listFile = "/etc/apt/sources.list";
  if (existsSync(listFile)) {
    for (const line of readFileSync(listFile, "utf8").split("\n")) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m) entries.push({ uri: m[1]!, suites: [m[2]!] });
    }
  }
  const dir = "/etc/apt/sources.list.d";
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".sources")).sort() : [];
  for (const file of files) {
    for (const paragraph of readFileSync(join(dir, file), "utf8").split(/\n\s*\n/)) {
      const fields = new Map<string, string>();
      for (const line of paragraph.split("\n")) {
        const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
        if (m) fields.set(m[1]!.toLowerCase(), m[2]!.trim());
      }
      if (!(fields.get("types") ?? "").split(/\s+/).includes("deb") || fields.get("enabled") === "no") continue;
      for (const uri of (fields.get("uris") ?? "").split(/\s+/).filter(Boolean)) {
        entries.push({ uri, suites: (fields.get("suites") ?? "").split(/\s+/) });
      }
    }
  }
  const trim = (uri: string) => uri.replace(/\/+$/, "");
  const mirror = entries.find((e) => e.suites.includes(SUITE))?.uri;
  const security = entries.find((e) => e.suites.includes(`${SUITE}-security`))?.uri;
  return { mirror: trim(mirror ?? DEFAULT_MIRROR), security: security ? trim(security) : undefined };
}

async function imageRecipe(image: string): Promise<string | undefined> {
  const exists = await podman(["image", "exists", image], { allowFailure: true });
  if (exists.exitCode !== 0) return undefined;
  const out = await podman(["image", "inspect", "--format", `{{index .Labels "${RECIPE_LABEL}"}}`, image]);
  return out.stdout.trim();
}

async function ensureDebootstrap(log: Log): Promise<void> {
  if (existsSync("/usr/sbin/debootstrap")) return;
  log("installing debootstrap (apt)");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () => run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "debootstrap"], { env, timeoutMs: 300_000, allowFailure: true });
  if ((await install()).exitCode === 0) return;
  await run("apt-get", ["update", "-qq"], { env, timeoutMs: 300_000 });
  const again = await install();
  if (again.exitCode !== 0) throw new Error(`apt-get install debootstrap failed: ${again.stderr.trim()}`);
}

/**
 * The image, built at most once per recipe. Two first builds at the same time both debootstrap;
 * the last import wins, which is harmless.
 */
export async function ensureDebianImage(options: { image?: string; log?: Log } = {}): Promise<{ image: string; built: boolean }> {
  const image = options.image ?? DEBIAN_IMAGE;
  const log = options.log ?? defaultLog;
  const recipe = await imageRecipe(image);
  if (recipe === RECIPE) return { image, built: false };
  log(recipe === undefined ? `building ${image}` : `rebuilding ${image} (its recipe changed)`);

  await ensureDebootstrap(log);
  const { mirror, security } = aptMirrors();
  const build = mkdtempSync("/var/tmp/techulus-debian-build-");
  try {
    const root = join(build, "root");
    log(`debootstrap ${SUITE} from ${mirror} (about 2 minutes)`);
    const tail: string[] = [];
    const res = await run("debootstrap", ["--variant=minbase", `--include=${INCLUDE}`, SUITE, root, mirror], {
      timeoutMs: 900_000,
      allowFailure: true,
      buffer: false,
      onLine: (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
      },
    });
    if (res.exitCode !== 0) throw new Error(`debootstrap failed (exit ${res.exitCode}):\n${tail.join("\n")}`);

    // What a Debian 12 installation has: the release, its updates and security updates.
    const sources = [`deb ${mirror} ${SUITE} main`, `deb ${mirror} ${SUITE}-updates main`];
    if (security) sources.push(`deb ${security} ${SUITE}-security main`);
    writeFileSync(join(root, "etc/apt/sources.list"), `${sources.join("\n")}\n`);
    // Every root made from this image gets its own machine id at boot.
    writeFileSync(join(root, "etc/machine-id"), "");
    rmSync(join(root, "var/lib/dbus/machine-id"), { force: true });
    for (const deb of readdirSync(join(root, "var/cache/apt/archives")).filter((f) => f.endsWith(".deb"))) {
      rmSync(join(root, "var/cache/apt/archives", deb));
    }

    const archive = join(build, "root.tar");
    await run("tar", ["--numeric-owner", "-C", root, "-cf", archive, "."], { timeoutMs: 300_000 });
    await podman(["import", "--change", `LABEL ${RECIPE_LABEL}="${RECIPE}"`, "--change", 'CMD ["/sbin/init"]', archive, image], { timeoutMs: 300_000 });
    log(`${image} ready`);
    return { image, built: true };
  } finally {
    rmSync(build, { recursive: true, force: true });
  }
}

/** The working tree's files as `git ls-files --cached --others --exclude-standard` lists them. */
export async function checkoutFiles(repo: string = REPO_ROOT): Promise<string[]> {
  const out = await run("git", ["-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], { timeoutMs: 60_000 });
  const files = new Set<string>();
  for (const file of out.stdout.split("\0")) {
    if (!file || file.startsWith("node_modules/") || file.startsWith("dist/")) continue;
    // Deleted but not yet committed, or a submodule (a folder): nothing to copy.
    const stat = lstatSync(join(repo, file), { throwIfNoEntry: false });
    if (stat && !stat.isDirectory()) files.add(file);
  }
  return [...files].sort();
}

export async function startDebianRoot(options: { prefix?: string; image?: string; log?: Log } = {}): Promise<DebianRoot> {
  const log = options.log ?? defaultLog;
  const { image } = await ensureDebianImage({ image: options.image, log });
  const name = `${options.prefix ?? "techulus-debian"}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const hostDir = mkdtempSync(`/var/tmp/${name}-`);
  const env: Record<string, string> = { HOME: "/root", NODE_EXTRA_CA_CERTS: ROOT_CA_BUNDLE };
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await podman(["rm", "-f", "-t", "5", name], { allowFailure: true, timeoutMs: 120_000 }).catch(() => undefined);
    rmSync(hostDir, { recursive: true, force: true });
  };

  const exec = async (argv: string[], opts: RootExecOptions = {}): Promise<ExecResult> => {
    const flags: string[] = [];
    if (opts.cwd) flags.push("--workdir", opts.cwd);
    for (const [key, value] of Object.entries({ ...env, ...opts.env })) flags.push("--env", `${key}=${value}`);
    // Killing the podman client would leave the command running inside: coreutils' timeout
    // kills it (and its process group) there; the outer timeout is only a backstop.
    const inner = opts.timeoutMs ? ["timeout", "--kill-after=10", `${Math.ceil(opts.timeoutMs / 1000)}`, ...argv] : argv;
    const started = Date.now();
    const res = await run("podman", ["--log-level=error", "exec", ...flags, name, ...inner], {
      timeoutMs: opts.timeoutMs ? opts.timeoutMs + 30_000 : undefined,
      onLine: opts.onLine,
      buffer: opts.buffer,
      allowFailure: true,
    });
    const timedOut = opts.timeoutMs !== undefined && (res.exitCode === 124 || res.exitCode === 137) && Date.now() - started >= opts.timeoutMs;
    if (timedOut) throw new Error(`${argv.join(" ")} (in ${name}) timed out after ${opts.timeoutMs} ms`);
    if (res.exitCode !== 0 && !opts.allowFailure) {
      const tail = res.stderr.trim().split("\n").slice(-5).join("\n");
      throw new Error(`${argv.join(" ")} (in ${name}) exited with code ${res.exitCode}${tail ? `: ${tail}` : ""}`);
    }
    return res;
  };

  const copyIn = async (hostPath: string, rootPath: string) => {
    await podman(["cp", hostPath, `${name}:${rootPath}`], { timeoutMs: 300_000 });
  };

  const copyCheckout = async (rootPath = "/root/agent", repo = REPO_ROOT) => {
    const files = await checkoutFiles(repo);
    const list = join(hostDir, "checkout.list");
    const archive = join(hostDir, "checkout.tar");
    writeFileSync(list, [...files, ".git"].join("\0"));
    await run("tar", ["-C", repo, "--null", "-T", list, "-cf", archive], { timeoutMs: 300_000 });
    await copyIn(archive, "/tmp/checkout.tar");
    rmSync(archive);
    rmSync(list);
    await exec(["mkdir", "-p", rootPath]);
    await exec(["tar", "-C", rootPath, "--no-same-owner", "-xf", "/tmp/checkout.tar"], { timeoutMs: 300_000 });
    await exec(["rm", "/tmp/checkout.tar"]);
    return rootPath;
  };

  const root: DebianRoot = { name, id: "", pid: 0, hostDir, failedUnits: [], env, exec, copyIn, copyCheckout, stop };
  try {
    mkdirSync(join(hostDir, "containers"));
    await podman([
      "run", "-d", "--name", name, "--hostname", "debian",
      "--privileged", "--systemd=always", "--cgroupns=host",
      "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
      "-v", `${join(hostDir, "containers")}:/var/lib/containers`,
      image, "/sbin/init",
    ]);
    const [id, pid] = (await podman(["inspect", "--format", "{{.Id}} {{.State.Pid}}", name])).stdout.trim().split(" ");
    root.id = id ?? "";
    root.pid = Number(pid);
    if (!Number.isInteger(root.pid) || root.pid <= 0) throw new Error(`no pid for ${name}`);
    root.failedUnits = await waitForSystemd(root);
    if (root.failedUnits.length > 0) log(`${name}: systemd is degraded, failed units: ${root.failedUnits.join(", ")}`);
    await trustMachineCAs(root);
  } catch (err) {
    await stop();
    throw err;
  }
  return root;
}

/** Waits until `systemctl is-system-running` says running or degraded; returns the failed units. */
async function waitForSystemd(root: DebianRoot, timeoutMs = 120_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let state = "";
  while (Date.now() < deadline) {
    state = (await root.exec(["systemctl", "is-system-running"], { allowFailure: true, timeoutMs: 30_000 })).stdout.trim();
    if (state === "running") return [];
    if (state === "degraded") {
      const failed = await root.exec(["systemctl", "list-units", "--failed", "--no-legend", "--plain"], { allowFailure: true });
      return failed.stdout.split("\n").map((l) => l.trim().split(/\s+/)[0] ?? "").filter(Boolean);
    }
    if (state === "maintenance" || state === "stopping" || state === "offline") break;
    await Bun.sleep(500);
  }
  throw new Error(`systemd in ${root.name} did not come up (systemctl is-system-running: ${state || "no answer"})`);
}

async function trustMachineCAs(root: DebianRoot): Promise<void> {
  const certs = existsSync(CA_DIR) ? readdirSync(CA_DIR) : [];
  if (certs.length === 0) return;
  await root.copyIn(`${CA_DIR}/.`, `${CA_DIR}/`);
  await root.exec(["update-ca-certificates"], { timeoutMs: 60_000 });
}
