/**
 * `agent doctor --bundle FILE`: a `.tar.gz` for a bug report. Collectors (each with a timeout; one
 * that fails adds a note instead of failing the bundle) gather the check results, the agent's log,
 * podman, WireGuard, proxy, DNS and config facts; every file then passes through the redaction of
 * lib/doctor/bundleRedaction.ts (structural for JSON, then the node's known secrets in any text,
 * then lib/redact's registered secrets); the archive writer stages them and writes the tarball
 * atomically with mode 0600.
 */
import { accessSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { hostname, release, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { SETTINGS, type SettingKey, type SettingSpec } from "../config/settings.ts";
import { decryptSecret } from "../crypto/secrets.ts";
import { HOSTS_FILE_NAME } from "../dns/DnsmasqDriver.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { run, which } from "../exec.ts";
import { writeFileAtomic } from "../fs/atomicWrite.ts";
import { octalMode } from "../fs/fileMode.ts";
import { DEFAULT_TRAEFIK_DYNAMIC_DIR } from "../proxy/TraefikDriver.ts";
import { ROUTES_FILE, TLS_FILE } from "../proxy/traefikFiles.ts";
import { agentVersion, agentCommit } from "../buildInfo.ts";
import { redact } from "../redact.ts";
import { tailLines } from "./agentLog.ts";
import { isEnvName, pemSecrets, redactJson, redactJsonText, scrubText, secretValuesIn, urlSecrets } from "./bundleRedaction.ts";
import type { DoctorContext } from "./DoctorContext.ts";

/** One file of the bundle, path relative to the bundle's top folder. */
export interface BundleFile {
  name: string;
  description: string;
  content: string;
}

/** A piece that could not be collected, and why. */
export interface BundleNote {
  piece: string;
  reason: string;
}

export interface CollectorOutput {
  files: BundleFile[];
  notes: BundleNote[];
}

export interface Collector {
  name: string;
  timeoutMs: number;
  collect(): Promise<CollectorOutput>;
}

export interface WrittenBundle {
  path: string;
  bytes: number;
  files: BundleFile[];
  notes: BundleNote[];
}

const COMMAND_TIMEOUT_MS = 15_000;
const AGENT_LOG_LINES = 1000;
const DNSMASQ_LOG_LINES = 200;
const LAST_GOOD_FILE = "expected-state.json";

/**
 * The absolute path a `--bundle FILE` names, checked before anything runs: its folder must exist
 * and be writable, and it must not be a folder itself. A usage error (exit 2) otherwise.
 */
export function checkBundlePath(file: string): string {
  if (file.trim() === "") throw new UsageError("--bundle: needs a file name, e.g. --bundle /tmp/agent-doctor.tar.gz");
  const path = resolve(file);
  if (existsSync(path) && statSync(path).isDirectory()) throw new UsageError(`--bundle: ${path} is a folder; name a file in it, e.g. ${join(path, "agent-doctor.tar.gz")}`);
  const dir = dirname(path);
  if (!existsSync(dir)) throw new UsageError(`--bundle: folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`--bundle: ${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError(`--bundle: folder ${dir} is not writable`);
  }
  return path;
}

/** Collects, redacts and writes the bundle to `path` (already checked by checkBundlePath). */
export async function writeDoctorBundle(ctx: DoctorContext, report: unknown, path: string, now = new Date()): Promise<WrittenBundle> {
  const secrets = knownSecrets(ctx);
  const { files, notes } = await runCollectors(doctorCollectors(ctx, report));
  const scrub = (f: BundleFile): BundleFile => ({ ...f, content: finalScrub(f.name, f.content, secrets) });
  const clean = files.map(scrub);
  const all = [...clean, ...manifest(ctx, clean, notes, now).map(scrub)];
  const top = `agent-doctor-${safeName(hostname())}-${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`;
  const bytes = await writeBundleArchive(path, top, all);
  return { path, bytes, files: all, notes };
}

/** The last pass over every file: the process's registered secrets (lib/redact), then JSON structurally, then the node's known secrets. */
function finalScrub(name: string, content: string, secrets: readonly string[]): string {
  const registered = redact(content);
  return name.endsWith(".json") ? redactJsonText(registered, secrets) : scrubText(registered, secrets);
}

/** Runs every collector with its timeout; a failure or timeout becomes a note. */
export async function runCollectors(collectors: readonly Collector[]): Promise<CollectorOutput> {
  const outputs = await Promise.all(
    collectors.map(async (c): Promise<CollectorOutput> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${c.timeoutMs < 1000 ? `${c.timeoutMs} ms` : `${Math.round(c.timeoutMs / 1000)} s`}`)), c.timeoutMs);
      });
      try {
        return await Promise.race([c.collect(), timeout]);
      } catch (err) {
        return { files: [], notes: [{ piece: c.name, reason: redact(errorMessage(err)) }] };
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { files: outputs.flatMap((o) => o.files), notes: outputs.flatMap((o) => o.notes) };
}

/**
 * Secret values of this node, hunted for in every file of the bundle: the config file's secret
 * fields, secret settings from the environment, the identity's encryption key, the signing and
 * WireGuard private keys, and the last good expected state's env values (encrypted and decrypted)
 * and certificate keys.
 */
export function knownSecrets(ctx: DoctorContext): string[] {
  const out: string[] = [];
  const add = (values: Iterable<string>) => out.push(...values);
  const configFile = ctx.settings.configFile;
  if (configFile) add(secretValuesIn(readJsonQuietly(configFile)));
  for (const [key, spec] of Object.entries(SETTINGS) as Array<[SettingKey, SettingSpec<unknown>]>) {
    const value = ctx.env[spec.env];
    if (value && spec.secret?.(value)) add(key === "token" ? [value] : urlSecrets(value));
  }
  for (const value of Object.values(ctx.settings)) if (typeof value === "string") add(urlSecrets(value));
  const identity = readJsonQuietly(ctx.dataDir.configFile);
  add(secretValuesIn(identity));
  const encryptionKey = typeof (identity as { encryptionKey?: unknown })?.encryptionKey === "string" ? (identity as { encryptionKey: string }).encryptionKey : undefined;
  const pem = readTextQuietly(ctx.dataDir.privateKeyFile);
  if (pem) add(pemSecrets(pem));
  const wgKey = readTextQuietly(ctx.dataDir.wireguardKeyFile);
  if (wgKey) add([wgKey.trim()]);
  const lastGood = readJsonQuietly(join(ctx.dataDir.stateDir, LAST_GOOD_FILE));
  add(secretValuesIn(lastGood));
  if (encryptionKey) add(decryptedEnvValues(lastGood, encryptionKey));
  return out.filter((v) => v.trim().length > 0);
}

/** The plain values of every env map (and build secrets) in a wire expected state that decrypt with the key. */
export function decryptedEnvValues(value: unknown, encryptionKey: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") {
      for (const [k, child] of Object.entries(v)) {
        if (isEnvName(k) && child !== null && typeof child === "object" && !Array.isArray(child)) {
          for (const encrypted of Object.values(child)) {
            if (typeof encrypted !== "string") continue;
            try {
              out.push(decryptSecret(encrypted, encryptionKey));
            } catch {
              // not encrypted with this key: the value itself is already a known secret
            }
          }
        } else walk(child);
      }
    }
  };
  walk(value);
  return out;
}

function readTextQuietly(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function readJsonQuietly(path: string): unknown {
  const text = readTextQuietly(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const file = (name: string, description: string, content: string): BundleFile => ({ name, description, content });
const note = (piece: string, reason: string): BundleNote => ({ piece, reason });
const one = (f: BundleFile): CollectorOutput => ({ files: [f], notes: [] });
const missing = (piece: string, reason: string): CollectorOutput => ({ files: [], notes: [note(piece, reason)] });

/** What a bundle collects on this node. */
export function doctorCollectors(ctx: DoctorContext, report: unknown): Collector[] {
  const s = ctx.settings;
  const collectors: Collector[] = [
    { name: "check results", timeoutMs: 5_000, collect: async () => one(file("doctor.json", "the check results: the document `agent doctor --json` prints", JSON.stringify(report, null, 2) + "\n")) },
    { name: "agent log", timeoutMs: 20_000, collect: () => agentLogCollector(ctx) },
    command("podman ps -a", "podman/ps-a.txt", "every container (`podman ps -a`)", "podman", ["ps", "-a"]),
    command("podman network ls", "podman/network-ls.txt", "podman networks (`podman network ls`)", "podman", ["network", "ls"]),
    command("podman info", "podman/info.txt", "podman's view of the host (`podman info`)", "podman", ["info"]),
    command(
      `podman network inspect ${s.networkName}`,
      `podman/network-inspect-${s.networkName}.json`,
      `the agent's container network (\`podman network inspect ${s.networkName}\`)`,
      "podman",
      ["network", "inspect", s.networkName ?? "techulus"],
    ),
    { name: "wireguard", timeoutMs: COMMAND_TIMEOUT_MS + 5_000, collect: () => wireguardCollector(s.wireguardInterface ?? "wg0") },
    { name: "proxy routes", timeoutMs: 10_000, collect: () => proxyCollector(ctx) },
    { name: "dnsmasq", timeoutMs: 5_000, collect: async () => dnsCollector(s.dnsRunDir ?? "/run/techulus-agent/dnsmasq", s.dnsPort) },
    { name: "config", timeoutMs: 5_000, collect: async () => configCollector(ctx) },
    { name: "data dir", timeoutMs: 5_000, collect: async () => dataDirCollector(ctx) },
  ];
  return collectors;
}

function command(piece: string, name: string, description: string, program: string, args: string[]): Collector {
  return {
    name: piece,
    timeoutMs: COMMAND_TIMEOUT_MS + 5_000,
    async collect() {
      const path = await which(program);
      if (!path) return missing(piece, `${program} is not installed (not on PATH)`);
      const res = await run(path, args, { timeoutMs: COMMAND_TIMEOUT_MS, allowFailure: true });
      if (res.exitCode !== 0) return missing(piece, `exited with ${res.exitCode}: ${lastLine(res.stderr)}`);
      return one(file(name, description, res.stdout.endsWith("\n") ? res.stdout : res.stdout + "\n"));
    },
  };
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1) ?? "";
}

async function agentLogCollector(ctx: DoctorContext): Promise<CollectorOutput> {
  const log = await ctx.agentLog(AGENT_LOG_LINES);
  if (log.kind === "unavailable") {
    return { files: [file("agent-log.txt", "why the agent's log is not in the bundle", `The agent's log could not be collected: ${log.reason}\n`)], notes: [note("agent log", log.reason)] };
  }
  return one(file("agent-log.txt", `the agent's last ${AGENT_LOG_LINES} log lines at most (${log.source})`, `# from ${log.source}\n${log.lines.join("\n")}\n`));
}

async function wireguardCollector(iface: string): Promise<CollectorOutput> {
  const wg = await which("wg");
  if (!wg) return missing("wireguard", "wg (wireguard-tools) is not installed");
  const list = await run(wg, ["show", "interfaces"], { timeoutMs: COMMAND_TIMEOUT_MS, allowFailure: true });
  if (list.exitCode !== 0) return missing("wireguard", `wg show interfaces exited with ${list.exitCode}: ${lastLine(list.stderr)}`);
  const interfaces = list.stdout.trim().split(/\s+/).filter(Boolean);
  if (!interfaces.includes(iface)) return missing("wireguard", `the mesh interface ${iface} does not exist (interfaces: ${interfaces.join(", ") || "none"})`);
  // `wg show IF` prints "(hidden)" for the private and preshared keys (`dump` would print them).
  const res = await run(wg, ["show", iface], { timeoutMs: COMMAND_TIMEOUT_MS, allowFailure: true });
  if (res.exitCode !== 0) return missing("wireguard", `wg show ${iface} exited with ${res.exitCode}: ${lastLine(res.stderr)}`);
  return one(file("wireguard/wg-show.txt", `the mesh interface (\`wg show ${iface}\`, private and preshared keys hidden)`, res.stdout + "\n"));
}

async function proxyCollector(ctx: DoctorContext): Promise<CollectorOutput> {
  const s = ctx.settings;
  if (!s.proxy) return missing("proxy routes", "not a proxy node (--proxy is off): the agent manages no proxy routes here");
  const out: CollectorOutput = { files: [], notes: [] };
  const driver = s.proxyDriver ?? "auto";
  if (driver !== "traefik") {
    const adminUrl = (s.caddyAdminUrl ?? "http://127.0.0.1:2019").replace(/\/+$/, "");
    try {
      const res = await fetch(`${adminUrl}/config/`, { signal: AbortSignal.timeout(5_000) });
      const text = await res.text();
      if (res.status !== 200) out.notes.push(note("caddy config", `GET /config/ of Caddy's admin API answered HTTP ${res.status}`));
      else out.files.push(file("proxy/caddy-config.json", "Caddy's running config (GET /config/ of its admin API; TLS keys redacted)", text));
    } catch (err) {
      out.notes.push(note("caddy config", `Caddy's admin API does not answer: ${errorMessage(err)}`));
    }
  }
  if (driver !== "caddy") {
    const dir = s.traefikDynamicDir ?? DEFAULT_TRAEFIK_DYNAMIC_DIR;
    for (const name of [ROUTES_FILE, TLS_FILE]) {
      const text = readTextQuietly(join(dir, name));
      if (text === undefined) out.notes.push(note(`traefik ${name}`, `${join(dir, name)} does not exist or cannot be read`));
      else out.files.push(file(`proxy/traefik-${name}`, `Traefik dynamic file ${join(dir, name)}`, text));
    }
  }
  return out;
}

function dnsCollector(runDir: string, port: number | undefined): CollectorOutput {
  const out: CollectorOutput = { files: [], notes: [] };
  const pieces: Array<[string, string, string]> = [
    ["dnsmasq.conf", "dns/dnsmasq.conf", "the agent's dnsmasq config"],
    [join("hosts", HOSTS_FILE_NAME), `dns/${HOSTS_FILE_NAME}`, "the internal DNS records the agent serves"],
  ];
  for (const [rel, name, description] of pieces) {
    const path = join(runDir, rel);
    const text = readTextQuietly(path);
    if (text === undefined) out.notes.push(note(`dnsmasq ${rel}`, `${path} does not exist or cannot be read${port === 0 ? " (internal DNS is off: --dns-port 0)" : ""}`));
    else out.files.push(file(name, `${description} (${path})`, text));
  }
  const logFile = join(runDir, "dnsmasq.log");
  if (existsSync(logFile)) {
    try {
      out.files.push(file("dns/dnsmasq.log", `the last ${DNSMASQ_LOG_LINES} lines of ${logFile}`, tailLines(logFile, DNSMASQ_LOG_LINES).join("\n") + "\n"));
    } catch (err) {
      out.notes.push(note("dnsmasq log", errorMessage(err)));
    }
  }
  return out;
}

function configCollector(ctx: DoctorContext): CollectorOutput {
  const out: CollectorOutput = { files: [], notes: [] };
  const { configFile, ...effective } = ctx.settings;
  out.files.push(file("config/effective-settings.json", "the settings doctor ran with (flags > environment > config file > defaults), secrets redacted", JSON.stringify(redactJson({ configFile, ...effective }), null, 2) + "\n"));
  if (!configFile) out.notes.push(note("config file", "no config file: no --config, no AGENT_CONFIG, and /etc/techulus-agent/agent.json does not exist"));
  else {
    const text = readTextQuietly(configFile);
    if (text === undefined) out.notes.push(note("config file", `${configFile} cannot be read`));
    else out.files.push(file("config/agent-config.json", `the config file ${configFile}, secrets redacted`, text));
  }
  return out;
}

function dataDirCollector(ctx: DoctorContext): CollectorOutput {
  const out: CollectorOutput = { files: [], notes: [] };
  const d = ctx.dataDir;
  const identity = readTextQuietly(d.configFile);
  if (identity === undefined) out.notes.push(note("data dir config.json", `${d.configFile} does not exist (not registered) or cannot be read`));
  else out.files.push(file("datadir/config.json", `the registration ${d.configFile}, encryption key redacted`, identity));
  const lastGoodPath = join(d.stateDir, LAST_GOOD_FILE);
  const lastGood = readTextQuietly(lastGoodPath);
  if (lastGood === undefined) out.notes.push(note("last good expected state", `${lastGoodPath} does not exist`));
  else out.files.push(file(`datadir/state/${LAST_GOOD_FILE}`, `the last good expected state ${lastGoodPath}, every env value and certificate key redacted`, lastGood));
  out.files.push(file("datadir/listing.txt", `modes, owners and sizes of ${d.root}, keys/ and state/ (names only, no contents)`, listing(d.root, [".", "keys", "state", "state/wireguard"])));
  return out;
}

/** `mode uid:gid size name` of the entries of some folders under root. */
export function listing(root: string, folders: readonly string[]): string {
  const lines: string[] = [];
  for (const folder of folders) {
    const dir = join(root, folder);
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (err) {
      if (folder === ".") lines.push(`${dir}: ${errorMessage(err)}`);
      continue;
    }
    lines.push(`${dir}:`);
    for (const name of names) {
      try {
        const st = lstatSync(join(dir, name));
        const kind = st.isDirectory() ? "d" : st.isSymbolicLink() ? "l" : "-";
        lines.push(`  ${kind}${octalMode(st.mode & 0o7777)} ${st.uid}:${st.gid} ${String(st.size).padStart(10)} ${name}`);
      } catch (err) {
        lines.push(`  ? ${name}: ${errorMessage(err)}`);
      }
    }
  }
  return lines.join("\n") + "\n";
}

/** manifest.json and README.txt: version, time, host, what each file is, what is missing and why. */
function manifest(ctx: DoctorContext, files: readonly BundleFile[], notes: readonly BundleNote[], now: Date): BundleFile[] {
  const os = osName();
  const doc = {
    agentVersion,
    agentCommit,
    createdAt: now.toISOString(),
    hostname: hostname(),
    kernel: release(),
    ...(os ? { os } : {}),
    dataDir: ctx.dataDir.root,
    files: files.map((f) => ({ name: f.name, description: f.description, bytes: Buffer.byteLength(f.content) })),
    notCollected: notes,
  };
  const lines = [
    "agent doctor bundle",
    "",
    `agent:    ${agentVersion} (commit ${agentCommit})`,
    `created:  ${doc.createdAt}`,
    `hostname: ${doc.hostname}`,
    `kernel:   ${doc.kernel}${os ? `   os: ${os}` : ""}`,
    `data dir: ${doc.dataDir}`,
    "",
    "Files:",
    ...files.map((f) => `  ${f.name} — ${f.description}`),
    "  manifest.json — this list, as JSON",
    "",
    "Not collected:",
    ...(notes.length > 0 ? notes.map((n) => `  ${n.piece} — ${n.reason}`) : ["  (nothing: every piece was collected)"]),
    "",
    "Redacted: registration tokens, the encryption key, signing and WireGuard private keys, preshared keys,",
    "TLS certificate keys, every env value of the expected state (names kept), passwords in URLs, and any",
    "field whose name looks like a token, key, secret or password. Known secret values (and their base64",
    "forms) are also removed from every text file, logs included. Redacted values read [redacted] or ***.",
    "",
  ];
  return [file("manifest.json", "this bundle's manifest", JSON.stringify(doc, null, 2) + "\n"), file("README.txt", "what this bundle holds", lines.join("\n"))];
}

function osName(): string | undefined {
  const text = readTextQuietly("/etc/os-release");
  return text?.match(/^PRETTY_NAME="?([^"\n]*)"?$/m)?.[1];
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64) || "host";
}

/**
 * Writes the files as `<top>/<name>` into a gzip tarball at `path`, atomically (temp file in the
 * same folder, rename) with mode 0600; returns its size. The files are staged in a private temp
 * folder (0700) for tar, which is removed afterwards.
 */
export async function writeBundleArchive(path: string, top: string, files: readonly BundleFile[]): Promise<number> {
  const stage = mkdtempSync(join(tmpdir(), "agent-bundle-"));
  try {
    for (const f of files) {
      const target = join(stage, top, f.name);
      mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
      writeFileSync(target, f.content, { mode: 0o600 });
    }
    // tar is loaded only when a bundle is written, not by every command.
    const { create } = await import("tar");
    const chunks: Buffer[] = [];
    const pack = create({ gzip: true, cwd: stage, portable: true }, [top]);
    for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(Buffer.from(chunk));
    const archive = Buffer.concat(chunks);
    writeFileAtomic(path, archive, { mode: 0o600 });
    return archive.length;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
