import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { AgentError, UsageError } from "../errors.ts";
import { FileLock } from "../fs/fileLock.ts";
import { writeFileAtomic, writeJsonAtomic } from "../fs/atomicWrite.ts";
import { logger } from "../logger.ts";
import { PeerWire, describeIssues } from "../controlplane/schemas.ts";
import { inspectDataDir, judgeDataDir } from "./dataDirRules.ts";

const log = logger("datadir");

/** What registration gave this server; persisted in config.json (0600). */
export const Identity = z.object({
  serverId: z.string().min(1),
  subnetId: z.number().int().min(0).max(255),
  wireguardIp: z.string().min(1),
  encryptionKey: z.string().regex(/^[0-9a-fA-F]{64}$/),
  controlPlaneUrl: z.string().optional(),
  peers: z.array(PeerWire).default([]),
  registeredAt: z.string().optional(),
});
export type Identity = z.infer<typeof Identity>;

/** The agent's data directory (PROTOCOL.md "Data directory"). */
export class DataDir {
  constructor(readonly root: string) {}

  /**
   * The data dir a command was given (--data-dir), refused with a usage error when it is not a
   * folder the agent may take as its own (lib/datadir/dataDirRules); nothing is created here.
   */
  static open(root: string, onWarning: (message: string) => void = (message) => log.warn(message)): DataDir {
    const verdict = judgeDataDir(inspectDataDir(root, process.getuid?.() ?? 0));
    if (verdict.refusal) throw new UsageError(`--data-dir: ${verdict.refusal}`);
    if (verdict.warning) onWarning(verdict.warning);
    return new DataDir(root);
  }

  get configFile() {
    return join(this.root, "config.json");
  }
  get privateKeyFile() {
    return join(this.root, "keys", "private.key");
  }
  get publicKeyFile() {
    return join(this.root, "keys", "public.key");
  }
  get wireguardKeyFile() {
    return join(this.root, "wireguard.key");
  }
  get lockFile() {
    return join(this.root, "agent.lock");
  }
  get volumesDir() {
    return join(this.root, "volumes");
  }
  get buildsDir() {
    return join(this.root, "builds");
  }
  /** Archives the agent keeps before deleting data (volumes of cleaned-up services). */
  get archivesDir() {
    return join(this.root, "archives");
  }
  /** Agent-owned state (last good expected state, ledgers). */
  get stateDir() {
    return join(this.root, "state");
  }

  /**
   * Creates the folders that are missing with mode 0700 (also under a umask that would take bits
   * away). A folder that exists keeps its mode: the agent never re-permissions what it did not create.
   */
  ensure(): void {
    for (const dir of [this.root, join(this.root, "keys"), this.stateDir]) {
      if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
    }
  }

  lock(options: { waitMs?: number } = {}): Promise<FileLock> {
    this.ensure();
    return FileLock.acquire(this.lockFile, { ...options, what: `data dir ${this.root}` });
  }

  hasIdentity(): boolean {
    return existsSync(this.configFile);
  }

  readIdentity(): Identity {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(this.configFile, "utf8"));
    } catch (err) {
      throw new AgentError(`cannot read ${this.configFile}: ${(err as Error).message}`, { hint: "run agent doctor" });
    }
    const parsed = Identity.safeParse(json);
    if (!parsed.success) throw new AgentError(`${this.configFile} is invalid: ${describeIssues(parsed.error)}`, { hint: "run agent doctor" });
    return parsed.data;
  }

  writeIdentity(identity: Identity): void {
    writeJsonAtomic(this.configFile, identity, { mode: 0o600 });
  }

  readText(path: string): string | undefined {
    return existsSync(path) ? readFileSync(path, "utf8") : undefined;
  }

  writeSecret(path: string, content: string): void {
    writeFileAtomic(path, content, { mode: 0o600 });
  }

  writePublic(path: string, content: string): void {
    writeFileAtomic(path, content, { mode: 0o644 });
  }

  readStateJson(name: string): unknown {
    const text = this.readText(join(this.stateDir, name));
    return text === undefined ? undefined : JSON.parse(text);
  }

  writeStateJson(name: string, value: unknown): void {
    writeJsonAtomic(join(this.stateDir, name), value, { mode: 0o600 });
  }
}
