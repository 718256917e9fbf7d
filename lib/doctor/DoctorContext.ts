import { release } from "node:os";
import type { Settings } from "../config/settings.ts";
import { SigningKey } from "../crypto/signingKey.ts";
import { DataDir, type Identity } from "../datadir/DataDir.ts";
import { errorMessage } from "../errors.ts";
import { which as whichOnPath } from "../exec.ts";
import { FileLock, type LockHolder } from "../fs/fileLock.ts";
import { NODE_SETTING_KEYS, createNodeDrivers, type NodeDrivers } from "../agent/nodeDrivers.ts";
import { nodeRulesFor } from "../agent/nodeRulesFor.ts";
import { loadStateFile, parseExpectedState, type NormalizeOptions } from "../reconcile/expectedStateSource.ts";
import { registerSecret } from "../redact.ts";
import { inferSubnetId } from "../state/nodeRules.ts";
import type { ExpectedState } from "../state/types.ts";
import { recentAgentLog, type AgentLog } from "./agentLog.ts";
import { probeControlPlane, type ControlPlaneProbe } from "./probeControlPlane.ts";

/** The settings `agent doctor` takes: the control-plane ones and everything that shapes the node's drivers. */
export const DOCTOR_SETTING_KEYS = ["url", "dataDir", "signing", "requestTimeout", "logFormat", "passTimeout", "builder", "buildkitHost", ...NODE_SETTING_KEYS] as const;
export type DoctorSettings = Settings<(typeof DOCTOR_SETTING_KEYS)[number]>;

/** Host files the checks read; tests point them at fixtures. */
export interface HostPaths {
  containersConf: string;
  procSelfLimits: string;
  procMounts: string;
  procLocks: string;
  /** Present when the WireGuard kernel module is loaded. */
  sysModuleWireguard: string;
  /** `/lib/modules/<kernel release>`: modules.dep and modules.builtin list loadable and built-in modules. */
  modulesDir: string;
  systemdRunDir: string;
}

export const DEFAULT_HOST_PATHS: HostPaths = {
  containersConf: "/etc/containers/containers.conf",
  procSelfLimits: "/proc/self/limits",
  procMounts: "/proc/self/mounts",
  procLocks: "/proc/locks",
  sysModuleWireguard: "/sys/module/wireguard",
  modulesDir: `/lib/modules/${release()}`,
  systemdRunDir: "/run/systemd/system",
};

export interface DoctorContextOptions {
  settings: DoctorSettings;
  /** `--state FILE|URL`: the expected state drift is measured against, instead of the control plane. */
  state?: string;
  subnetId?: number;
  /** `--agent-log FILE`: the agent's output when systemd's journal does not have it. */
  agentLogFile?: string;
  env?: Record<string, string | undefined>;
  paths?: Partial<HostPaths>;
  isRoot?: () => boolean;
  which?: (program: string) => Promise<string | undefined>;
}

export type IdentityState = { kind: "absent" } | { kind: "invalid"; message: string } | { kind: "valid"; identity: Identity };

export type ExpectedSource =
  | { kind: "none"; reason: string }
  | { kind: "error"; origin: string; message: string }
  | { kind: "ok"; origin: string; state: ExpectedState; encryptionKey?: string };

const LAST_GOOD_FILE = "expected-state.json";

/**
 * What the checks share: settings, the data dir, host paths, and facts that several checks use
 * (identity, one control-plane probe, the expected state, the node's drivers), each worked out
 * once per round. `refresh()` forgets the facts so a re-check after a fix sees the new world;
 * the drivers stay open until `close()`.
 */
export class DoctorContext {
  readonly settings: DoctorSettings;
  readonly dataDir: DataDir;
  readonly stateLocation?: string;
  readonly subnetIdOverride?: number;
  readonly agentLogFile?: string;
  readonly env: Record<string, string | undefined>;
  readonly paths: HostPaths;
  private readonly isRootFn: () => boolean;
  private readonly whichFn: (program: string) => Promise<string | undefined>;
  private memos = new Map<string, unknown>();
  private nodes = new Map<number, Promise<NodeDrivers>>();

  constructor(options: DoctorContextOptions) {
    this.settings = options.settings;
    // A folder the agent would refuse is refused here too; a loose mode is the datadir.dir check's finding.
    this.dataDir = DataDir.open(options.settings.dataDir!, () => {});
    this.stateLocation = options.state;
    this.subnetIdOverride = options.subnetId;
    this.agentLogFile = options.agentLogFile;
    this.env = options.env ?? process.env;
    this.paths = { ...DEFAULT_HOST_PATHS, ...options.paths };
    this.isRootFn = options.isRoot ?? (() => process.getuid?.() === 0);
    this.whichFn = options.which ?? whichOnPath;
  }

  isRoot(): boolean {
    return this.isRootFn();
  }

  which(program: string): Promise<string | undefined> {
    return this.memo(`which:${program}`, () => this.whichFn(program));
  }

  /** Forget what was found, so the next checks look again. */
  refresh(): void {
    this.memos.clear();
  }

  memo<T>(key: string, compute: () => T): T {
    if (!this.memos.has(key)) this.memos.set(key, compute());
    return this.memos.get(key) as T;
  }

  identity(): IdentityState {
    return this.memo("identity", (): IdentityState => {
      if (!this.dataDir.hasIdentity()) return { kind: "absent" };
      try {
        const identity = this.dataDir.readIdentity();
        registerSecret(identity.encryptionKey);
        return { kind: "valid", identity };
      } catch (err) {
        return { kind: "invalid", message: errorMessage(err) };
      }
    });
  }

  validIdentity(): Identity | undefined {
    const id = this.identity();
    return id.kind === "valid" ? id.identity : undefined;
  }

  /** The signing key, read without creating one (doctor never makes keys). */
  signingKey(): SigningKey | undefined {
    return this.memo("signingKey", () => {
      const pem = this.dataDir.readText(this.dataDir.privateKeyFile);
      if (pem === undefined) return undefined;
      try {
        return SigningKey.fromPem(pem);
      } catch {
        return undefined;
      }
    });
  }

  controlPlaneUrl(): string | undefined {
    return this.settings.url ?? this.validIdentity()?.controlPlaneUrl;
  }

  /** One signed GET of the expected state; undefined when there is no identity, key or URL to make it with. */
  probe(): Promise<ControlPlaneProbe | undefined> {
    return this.memo("probe", async () => {
      const identity = this.validIdentity();
      const key = this.signingKey();
      const url = this.controlPlaneUrl();
      if (!identity || !key || !url) return undefined;
      return probeControlPlane({
        baseUrl: url,
        serverId: identity.serverId,
        signingKey: key,
        signing: this.settings.signing ?? "v1",
        timeoutMs: (this.settings.requestTimeout ?? 15) * 1000,
      });
    });
  }

  normalizeOptions(): NormalizeOptions {
    const knownSubnetId = this.subnetIdOverride ?? this.validIdentity()?.subnetId;
    return { isProxy: this.settings.proxy === true, volumesRoot: this.dataDir.volumesDir, node: nodeRulesFor(this.settings, knownSubnetId) };
  }

  /** The state drift is measured against: --state, else the control plane's (its last good one when it does not answer). */
  expected(): Promise<ExpectedSource> {
    return this.memo("expected", async (): Promise<ExpectedSource> => {
      const encryptionKey = this.validIdentity()?.encryptionKey;
      if (this.stateLocation) {
        try {
          return { kind: "ok", origin: this.stateLocation, state: await loadStateFile(this.stateLocation, this.normalizeOptions()), encryptionKey };
        } catch (err) {
          return { kind: "error", origin: this.stateLocation, message: errorMessage(err) };
        }
      }
      if (!this.validIdentity()) return { kind: "none", reason: "this server is not registered and no --state FILE|URL was given" };
      const probe = await this.probe();
      if (probe?.status !== undefined && probe.status < 300 && probe.json !== undefined) {
        try {
          const state = parseExpectedState(probe.json, { ...this.normalizeOptions(), allowPlainEnv: false, origin: "the control plane" });
          return { kind: "ok", origin: "the control plane", state, encryptionKey };
        } catch (err) {
          return { kind: "error", origin: "the control plane", message: errorMessage(err) };
        }
      }
      let lastGood: unknown;
      try {
        lastGood = this.dataDir.readStateJson(LAST_GOOD_FILE);
      } catch (err) {
        return { kind: "error", origin: "the last good state", message: `the control plane gave no state and ${LAST_GOOD_FILE} cannot be read: ${errorMessage(err)}` };
      }
      if (lastGood === undefined) return { kind: "error", origin: "the control plane", message: "the control plane gave no expected state and there is no last good state" };
      try {
        const state = parseExpectedState(lastGood, { ...this.normalizeOptions(), allowPlainEnv: false, origin: "the last good state file" });
        return { kind: "ok", origin: "the last good state (the control plane gave none)", state, encryptionKey };
      } catch (err) {
        return { kind: "error", origin: "the last good state", message: errorMessage(err) };
      }
    });
  }

  subnetIdFor(state?: ExpectedState): number {
    return this.subnetIdOverride ?? this.validIdentity()?.subnetId ?? (state && inferSubnetId(state.containers)) ?? 1;
  }

  /** The node's drivers, as `agent run` would build them; kept open until close(). */
  node(subnetId: number): Promise<NodeDrivers> {
    let node = this.nodes.get(subnetId);
    if (!node) {
      node = createNodeDrivers({ settings: this.settings, dataDir: this.dataDir, identity: this.validIdentity(), subnetId });
      // A failed start is not cached: the next check (after a fix) tries again.
      node.catch(() => this.nodes.delete(subnetId));
      this.nodes.set(subnetId, node);
    }
    return node;
  }

  /** The agent's own recent log lines (journal of its unit, or --agent-log FILE). */
  agentLog(maxLines = 200): Promise<AgentLog> {
    return this.memo(`agentLog:${maxLines}`, () => recentAgentLog({ file: this.agentLogFile, systemdRunDir: this.paths.systemdRunDir, which: (p) => this.which(p), maxLines }));
  }

  lockHolder(): LockHolder {
    return FileLock.holder(this.dataDir.lockFile, this.paths.procLocks);
  }

  async close(): Promise<void> {
    const nodes = [...this.nodes.values()];
    this.nodes.clear();
    await Promise.all(nodes.map((n) => n.then((d) => d.close()).catch(() => {})));
  }
}
