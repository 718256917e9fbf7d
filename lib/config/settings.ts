import { existsSync, statSync } from "node:fs";
import { z } from "zod";
import { UsageError } from "../errors.ts";
import { parseFlagJson, readFlagFile } from "../fs/readFlagFile.ts";
import { parsePortRange } from "../state/nodeRules.ts";
import { judgeConfigFile, type ConfigFileVerdict } from "./configFileRules.ts";

/**
 * Every setting is declared once here: its flag, its environment variable, its config-file key,
 * its validation and its default. Commands pick the settings they use; the README's Configuration
 * table lists the same declarations (test/unit/settings.test.ts checks that it does).
 */
export interface SettingSpec<T> {
  key: string;
  flag: string;
  env: string;
  description: string;
  kind: "string" | "boolean" | "number" | "list";
  schema: z.ZodType<T>;
  default?: T;
  /** Whether a value of this setting, as written in a config file, is a secret. */
  secret?: (value: unknown) => boolean;
}

const httpUrl = z
  .string()
  .trim()
  .refine((v) => {
    try {
      const u = new URL(v);
      return u.protocol === "http:" || u.protocol === "https:";
    } catch {
      return false;
    }
  }, "must be an http:// or https:// URL")
  .transform((v) => v.replace(/\/+$/, ""));

function spec<T>(s: SettingSpec<T>): SettingSpec<T> {
  return s;
}

const always = () => true;
/** `https://user:password@host/…`: the URL carries a credential. */
const hasCredentials = (value: unknown) => typeof value === "string" && /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value.trim());

export const SETTINGS = {
  url: spec({ key: "url", flag: "--url <url>", env: "AGENT_URL", kind: "string", description: "control plane base URL", schema: httpUrl, secret: hasCredentials }),
  token: spec({
    key: "token",
    flag: "--token <token>",
    env: "AGENT_TOKEN",
    kind: "string",
    description: "one-time registration token (first start only)",
    schema: z.string().trim().min(1, "must not be empty"),
    secret: always,
  }),
  dataDir: spec({
    key: "dataDir",
    flag: "--data-dir <dir>",
    env: "AGENT_DATA_DIR",
    kind: "string",
    description: "data directory (identity, keys, volumes, builds)",
    schema: z.string().trim().min(1, "must not be empty").refine((v) => v.startsWith("/"), "must be an absolute path"),
    default: "/var/lib/techulus-agent",
  }),
  logsEndpoint: spec({
    key: "logsEndpoint",
    flag: "--logs-endpoint <url>",
    env: "AGENT_LOGS_ENDPOINT",
    kind: "string",
    description: "VictoriaLogs base URL for build and container logs",
    schema: httpUrl,
    secret: hasCredentials,
  }),
  shipAgentLog: spec({
    key: "shipAgentLog",
    flag: "--ship-agent-log",
    env: "AGENT_SHIP_AGENT_LOG",
    kind: "boolean",
    description: "also ship the agent's own log to the logs endpoint (log_type agent)",
    schema: z.boolean(),
    default: false,
  }),
  proxy: spec({
    key: "proxy",
    flag: "--proxy",
    env: "AGENT_PROXY",
    kind: "boolean",
    description: "this node is a proxy node (reconciles proxy routes)",
    schema: z.boolean(),
    default: false,
  }),
  proxyDriver: spec({
    key: "proxyDriver",
    flag: "--proxy-driver <driver>",
    env: "AGENT_PROXY_DRIVER",
    kind: "string",
    description: "proxy of a proxy node: caddy, traefik, or auto (Caddy when its admin API answers, else Traefik when its dynamic folder exists)",
    schema: z.enum(["auto", "caddy", "traefik"], { error: "must be auto, caddy or traefik" }),
    default: "auto" as const,
  }),
  caddyAdminUrl: spec({
    key: "caddyAdminUrl",
    flag: "--caddy-admin-url <url>",
    env: "AGENT_CADDY_ADMIN_URL",
    kind: "string",
    description: "Caddy's admin API",
    schema: httpUrl,
    secret: hasCredentials,
    default: "http://127.0.0.1:2019",
  }),
  accessLog: spec({
    key: "accessLog",
    flag: "--access-log <file>",
    env: "AGENT_ACCESS_LOG",
    kind: "string",
    description: "proxy nodes: the JSON access log shipped as log_type http (Caddy: the agent configures Caddy to write it; Traefik: its accessLog.filePath)",
    schema: z.string().refine((v) => v.startsWith("/"), "must be an absolute path"),
    default: "/var/log/caddy/techulus-access.log",
  }),
  traefikDynamicDir: spec({
    key: "traefikDynamicDir",
    flag: "--traefik-dynamic-dir <dir>",
    env: "AGENT_TRAEFIK_DYNAMIC_DIR",
    kind: "string",
    description: "folder Traefik's file provider watches (routes.yaml, tls.yaml)",
    schema: z.string().trim().min(1, "must not be empty").refine((v) => v.startsWith("/"), "must be an absolute path"),
    default: "/etc/traefik/dynamic",
  }),
  wireguard: spec({
    key: "wireguard",
    flag: "--wireguard <on|off>",
    env: "AGENT_WIREGUARD",
    kind: "string",
    description: "manage the WireGuard mesh interface of a registered node (off: leave WireGuard alone)",
    schema: z.enum(["on", "off"], { error: "must be on or off" }),
    default: "on" as const,
  }),
  wireguardInterface: spec({
    key: "wireguardInterface",
    flag: "--wireguard-interface <name>",
    env: "AGENT_WIREGUARD_INTERFACE",
    kind: "string",
    description: "WireGuard mesh interface",
    schema: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, "must be an interface name (1–15 letters, digits, _ . -)"),
    default: "wg0",
  }),
  wireguardPort: spec({
    key: "wireguardPort",
    flag: "--wireguard-port <port>",
    env: "AGENT_WIREGUARD_PORT",
    kind: "number",
    description: "UDP port WireGuard listens on",
    schema: z.number().int("must be a whole number").min(1, "must be 1–65535").max(65535, "must be 1–65535"),
    default: 51820,
  }),
  dnsPort: spec({
    key: "dnsPort",
    flag: "--dns-port <port>",
    env: "AGENT_DNS_PORT",
    kind: "number",
    description: "port of the internal DNS (dnsmasq); 0 turns internal DNS off",
    schema: z.number().int("must be a whole number").min(0, "must be 0–65535").max(65535, "must be 0–65535"),
    default: 53,
  }),
  dnsRunDir: spec({
    key: "dnsRunDir",
    flag: "--dns-run-dir <dir>",
    env: "AGENT_DNS_RUN_DIR",
    kind: "string",
    description: "folder of the agent's dnsmasq (config, pid, records); must be readable by nobody",
    schema: z.string().refine((v) => v.startsWith("/"), "must be an absolute path"),
    default: "/run/techulus-agent/dnsmasq",
  }),
  logFormat: spec({
    key: "logFormat",
    flag: "--log-format <format>",
    env: "AGENT_LOG_FORMAT",
    kind: "string",
    description: "log line format: text or json",
    schema: z.enum(["text", "json"], { error: "must be text or json" }),
    default: "text" as const,
  }),
  signing: spec({
    key: "signing",
    flag: "--signing <mode>",
    env: "AGENT_SIGNING",
    kind: "string",
    description: "request signing: v1 (timestamp:body) or v2 (method, path and body)",
    schema: z.enum(["v1", "v2"], { error: "must be v1 or v2" }),
    default: "v1" as const,
  }),
  pollInterval: spec({
    key: "pollInterval",
    flag: "--poll-interval <seconds>",
    env: "AGENT_POLL_INTERVAL",
    kind: "number",
    description: "seconds between expected-state polls while idle",
    schema: z.number().min(1, "must be at least 1 second").max(3600, "must be at most 3600 seconds"),
    default: 10,
  }),
  passTimeout: spec({
    key: "passTimeout",
    flag: "--pass-timeout <seconds>",
    env: "AGENT_PASS_TIMEOUT",
    kind: "number",
    description: "longest time one reconcile pass may apply changes back to back",
    schema: z.number().positive("must be a positive number of seconds").max(3600, "must be at most 3600 seconds"),
    default: 300,
  }),
  networkName: spec({
    key: "networkName",
    flag: "--network-name <name>",
    env: "AGENT_NETWORK_NAME",
    kind: "string",
    description: "podman bridge network of managed containers",
    schema: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, "must be a podman network name (letters, digits, _ . -)"),
    default: "techulus",
  }),
  hostPortRange: spec({
    key: "hostPortRange",
    flag: "--host-port-range <ranges>",
    env: "AGENT_HOST_PORT_RANGE",
    kind: "list",
    description: "host ports containers may publish: FROM-TO ranges or single ports, comma-separated (the agent's own ports never)",
    schema: z
      .array(z.string().trim().refine((v) => parsePortRange(v) !== undefined, "must be ports or FROM-TO ranges within 1–65535, comma-separated (e.g. 1024-65535)"))
      .min(1, "must name at least one port or range"),
    default: ["1024-65535"],
  }),
  requestTimeout: spec({
    key: "requestTimeout",
    flag: "--request-timeout <seconds>",
    env: "AGENT_REQUEST_TIMEOUT",
    kind: "number",
    description: "timeout of one control-plane request, seconds",
    schema: z.number().positive("must be a positive number of seconds").max(600, "must be at most 600 seconds"),
    default: 15,
  }),
  workQueueInterval: spec({
    key: "workQueueInterval",
    flag: "--work-queue-interval <seconds>",
    env: "AGENT_WORK_QUEUE_INTERVAL",
    kind: "number",
    description: "seconds between work-queue polls of agent run",
    schema: z.number().min(0.1, "must be at least 0.1 seconds").max(3600, "must be at most 3600 seconds"),
    default: 5,
  }),
  volumeArchiveKeep: spec({
    key: "volumeArchiveKeep",
    flag: "--volume-archive-keep <count>",
    env: "AGENT_VOLUME_ARCHIVE_KEEP",
    kind: "number",
    description: "volume archives always kept per service (cleanup_volumes)",
    schema: z.number().int("must be a whole number").min(0, "must not be negative").max(1000, "must be at most 1000"),
    default: 3,
  }),
  volumeArchiveDays: spec({
    key: "volumeArchiveDays",
    flag: "--volume-archive-days <days>",
    env: "AGENT_VOLUME_ARCHIVE_DAYS",
    kind: "number",
    description: "volume archives younger than this are kept too (cleanup_volumes)",
    schema: z.number().min(0, "must not be negative").max(3650, "must be at most 3650 days"),
    default: 7,
  }),
  insecureRegistries: spec({
    key: "insecureRegistries",
    flag: "--insecure-registry <host:port,...>",
    env: "AGENT_INSECURE_REGISTRIES",
    kind: "list",
    description: "registries (host or host:port) images are pulled from without TLS verification",
    schema: z.array(
      z
        .string()
        .trim()
        .toLowerCase()
        .regex(/^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?$/, "must be a list of host or host:port (no scheme, no path)"),
    ),
    default: [] as string[],
  }),
  buildPollInterval: spec({
    key: "buildPollInterval",
    flag: "--build-poll-interval <seconds>",
    env: "AGENT_BUILD_POLL_INTERVAL",
    kind: "number",
    description: "seconds between polls for pending builds (agent run)",
    schema: z.number().min(1, "must be at least 1 second").max(3600, "must be at most 3600 seconds"),
    default: 30,
  }),
  builder: spec({
    key: "builder",
    flag: "--builder <builder>",
    env: "AGENT_BUILDER",
    kind: "string",
    description: "image builder: buildkit, podman, or auto (BuildKit when its daemon answers, else podman)",
    schema: z.enum(["auto", "buildkit", "podman"], { error: "must be auto, buildkit or podman" }),
    default: "auto" as const,
  }),
  buildkitHost: spec({
    key: "buildkitHost",
    flag: "--buildkit-host <address>",
    env: "BUILDKIT_HOST",
    kind: "string",
    description: "BuildKit daemon address for buildctl --addr",
    schema: z.string().trim().regex(/^(tcp|unix|ssh|docker-container|podman-container|kube-pod):\/\/\S+$/, "must be a buildctl address such as tcp://127.0.0.1:1234 or unix:///run/buildkit/buildkitd.sock"),
    default: "tcp://127.0.0.1:1234",
  }),
  railpackFrontend: spec({
    key: "railpackFrontend",
    flag: "--railpack-frontend <image>",
    env: "AGENT_RAILPACK_FRONTEND",
    kind: "string",
    description: "Railpack BuildKit frontend image (default: the frontend of the installed railpack's version)",
    schema: z.string().trim().regex(/^[A-Za-z0-9][A-Za-z0-9._\/:@-]*$/, "must be an image reference"),
  }),
  registryCache: spec({
    key: "registryCache",
    flag: "--registry-cache",
    env: "AGENT_REGISTRY_CACHE",
    kind: "boolean",
    description: "BuildKit: import and export the layer cache at <image repository>:buildcache",
    schema: z.boolean(),
    default: false,
  }),
  buildkitKeepStorage: spec({
    key: "buildkitKeepStorage",
    flag: "--buildkit-keep-storage <MB>",
    env: "AGENT_BUILDKIT_KEEP_STORAGE",
    kind: "number",
    description: "BuildKit: after each build, prune the daemon's build cache down to this many MB (buildctl prune --keep-storage); 0 never prunes",
    schema: z.number().int("must be a whole number").min(0, "must be 0 or more"),
    default: 10_240,
  }),
  buildTimeout: spec({
    key: "buildTimeout",
    flag: "--build-timeout <seconds>",
    env: "AGENT_BUILD_TIMEOUT",
    kind: "number",
    description: "longest time one build (clone, plan, build, push) may take",
    schema: z.number().min(10, "must be at least 10 seconds").max(86_400, "must be at most 86400 seconds"),
    default: 3600,
  }),
  githubAppId: spec({
    key: "githubAppId",
    flag: "--github-app-id <id>",
    env: "AGENT_GITHUB_APP_ID",
    kind: "string",
    description: "GitHub App id (or client id) whose installation token clones the repository",
    schema: z.string().trim().regex(/^(\d+|Iv[0-9A-Za-z.]+)$/, "must be a GitHub App id (digits) or client id"),
  }),
  githubPrivateKeyFile: spec({
    key: "githubPrivateKeyFile",
    flag: "--github-private-key-file <file>",
    env: "AGENT_GITHUB_PRIVATE_KEY_FILE",
    kind: "string",
    description: "the GitHub App's private key (PEM file)",
    schema: z.string().trim().min(1, "must not be empty"),
  }),
  githubInstallationId: spec({
    key: "githubInstallationId",
    flag: "--installation-id <id>",
    env: "AGENT_GITHUB_INSTALLATION_ID",
    kind: "number",
    description: "GitHub App installation id (default: looked up from the repository)",
    schema: z.number().int("must be a whole number").positive("must be a positive installation id"),
  }),
  githubApiUrl: spec({
    key: "githubApiUrl",
    flag: "--github-api-url <url>",
    env: "AGENT_GITHUB_API_URL",
    kind: "string",
    description: "GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3)",
    schema: httpUrl,
    secret: hasCredentials,
    default: "https://api.github.com",
  }),
  githubUrl: spec({
    key: "githubUrl",
    flag: "--github-url <url>",
    env: "AGENT_GITHUB_URL",
    kind: "string",
    description: "GitHub web/git base URL that repositories are cloned from (default: from --github-api-url)",
    schema: httpUrl,
    secret: hasCredentials,
  }),
} as const;

export type SettingKey = keyof typeof SETTINGS;
type SettingValue<K extends SettingKey> = (typeof SETTINGS)[K] extends SettingSpec<infer T> ? T : never;
export type Settings<K extends SettingKey = SettingKey> = { [P in K]: SettingValue<P> | undefined } & {
  configFile?: string;
  /** What a person should know about the config file (a secret others can read); logged by the CLI. */
  configWarnings?: string[];
};

export const CONFIG_FILE_ENV = "AGENT_CONFIG";
export const DEFAULT_CONFIG_FILE = "/etc/techulus-agent/agent.json";

export interface SettingSources {
  /** Values commander parsed, keyed by setting key; undefined when the flag was not given. */
  flags: Record<string, unknown>;
  env: Record<string, string | undefined>;
  /** Explicit --config path; must exist when given. */
  configFile?: string;
}

/** Resolves settings with precedence flags > environment > config file > defaults. */
export function resolveSettings<K extends SettingKey>(keys: readonly K[], sources: SettingSources): Settings<K> {
  const { path: configPath, values: fileValues, warnings } = readConfigFile(sources);
  const out: Record<string, unknown> = { configFile: configPath, configWarnings: warnings };
  for (const key of keys) {
    const s = SETTINGS[key] as SettingSpec<unknown>;
    const flagName = s.flag.split(" ")[0]!;
    let raw: unknown;
    let origin: string;
    if (sources.flags[key] !== undefined) {
      raw = fromText(s, sources.flags[key], flagName);
      origin = flagName;
    } else if (sources.env[s.env] !== undefined && sources.env[s.env] !== "") {
      raw = fromText(s, sources.env[s.env], `${flagName} (from ${s.env})`);
      origin = `${flagName} (from ${s.env})`;
    } else if (fileValues[key] !== undefined) {
      raw = fileValues[key];
      origin = `${flagName} (from ${configPath} key "${key}")`;
    } else {
      out[key] = s.default;
      continue;
    }
    const parsed = s.schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]?.message ?? "invalid value";
      throw new UsageError(`${origin}: ${issue} (got ${JSON.stringify(raw)})`);
    }
    out[key] = parsed.data;
  }
  return out as Settings<K>;
}

function fromText(s: SettingSpec<unknown>, value: unknown, name: string): unknown {
  if (typeof value !== "string") return value;
  switch (s.kind) {
    case "boolean":
      if (/^(1|true|yes|on)$/i.test(value)) return true;
      if (/^(0|false|no|off)$/i.test(value)) return false;
      throw new UsageError(`${name}: must be true or false (got ${JSON.stringify(value)})`);
    case "number": {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) throw new UsageError(`${name}: must be a number (got ${JSON.stringify(value)})`);
      return n;
    }
    case "list":
      return value
        .split(",")
        .map((v) => v.trim())
        .filter(Boolean);
    default:
      return value;
  }
}

function readConfigFile(sources: SettingSources): { path?: string; values: Record<string, unknown>; warnings: string[] } {
  const explicit = sources.configFile ?? sources.env[CONFIG_FILE_ENV];
  const path = explicit || (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  if (!path) return { values: {}, warnings: [] };
  const { values, verdict } = loadConfigFile(path);
  if (verdict.refusal) throw new UsageError(`--config: ${verdict.refusal}`);
  return { path, values, warnings: verdict.warning ? [verdict.warning] : [] };
}

/** Reads a config file: its settings, and what its mode and owner mean for them (lib/config/configFileRules). */
export function loadConfigFile(path: string, processUid = process.getuid?.() ?? 0): { values: Record<string, unknown>; verdict: ConfigFileVerdict } {
  const text = readFlagFile("--config", path);
  const json = parseFlagJson("--config", path, text);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new UsageError(`--config: ${path} must contain a JSON object`);
  }
  const known = new Set(Object.keys(SETTINGS));
  const unknown = Object.keys(json).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new UsageError(`--config: ${path} has unknown key(s) ${unknown.map((k) => `"${k}"`).join(", ")}`, `known keys: ${[...known].join(", ")}`);
  }
  const values = json as Record<string, unknown>;
  const secretKeys = Object.keys(values).filter((key) => (SETTINGS[key as SettingKey] as SettingSpec<unknown>).secret?.(values[key]) === true);
  const st = statSync(path);
  return { values, verdict: judgeConfigFile({ path, mode: st.mode & 0o7777, uid: st.uid, processUid, secretKeys }) };
}
