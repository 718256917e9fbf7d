import { ControlPlaneClient } from "./controlplane/ControlPlaneClient.ts";
import type { SigningMode } from "./controlplane/signing.ts";
import { DataDir, type Identity } from "./datadir/DataDir.ts";
import { loadOrCreateKeys, type NodeKeys } from "./datadir/keys.ts";
import { UsageError } from "./errors.ts";
import { logger } from "./logger.ts";
import { registerSecret } from "./redact.ts";

const log = logger("register");

export interface Registered {
  identity: Identity;
  keys: NodeKeys;
  client: ControlPlaneClient;
}

export interface RegistrationOptions {
  dataDir: DataDir;
  url?: string;
  token?: string;
  signing?: SigningMode;
  timeoutMs?: number;
  publicIp?: string;
}

/**
 * Returns this node's identity and a signed client, registering first when the data dir has no
 * identity yet. config.json is written last and atomically, so a failed registration leaves no
 * identity behind and a retry with a fresh token works.
 */
export async function ensureRegistered(options: RegistrationOptions): Promise<Registered> {
  const { dataDir } = options;
  registerSecret(options.token);
  if (dataDir.hasIdentity()) {
    const identity = dataDir.readIdentity();
    registerSecret(identity.encryptionKey);
    const url = options.url ?? identity.controlPlaneUrl;
    if (!url) throw new UsageError("no control plane URL: pass --url or set AGENT_URL");
    const keys = loadOrCreateKeys(dataDir);
    const client = new ControlPlaneClient({ baseUrl: url, serverId: identity.serverId, signingKey: keys.signing, signing: options.signing, timeoutMs: options.timeoutMs });
    return { identity, keys, client };
  }
  if (!options.url || !options.token) {
    const missing = [!options.url && "--url", !options.token && "--token"].filter(Boolean).join(" and ");
    throw new UsageError(
      `${dataDir.root} has no identity yet and ${missing} ${missing.includes(" and ") ? "are" : "is"} missing`,
      "register once with: agent run --url https://control-plane.example --token <token>",
    );
  }
  const keys = loadOrCreateKeys(dataDir);
  const client = new ControlPlaneClient({ baseUrl: options.url, signingKey: keys.signing, signing: options.signing, timeoutMs: options.timeoutMs });
  log.info(`registering with ${options.url}`);
  const res = await client.register({
    token: options.token,
    wireguardPublicKey: keys.wireguardPublicKey,
    signingPublicKey: keys.signing.publicKeyRawBase64(),
    ...(options.publicIp ? { publicIp: options.publicIp } : {}),
  });
  registerSecret(res.encryptionKey);
  const identity: Identity = {
    serverId: res.serverId,
    subnetId: res.subnetId,
    wireguardIp: res.wireguardIp,
    encryptionKey: res.encryptionKey,
    controlPlaneUrl: options.url,
    peers: res.peers,
    registeredAt: new Date().toISOString(),
  };
  dataDir.writeIdentity(identity);
  client.serverId = identity.serverId;
  log.info(`registered as server ${identity.serverId} (subnet ${identity.subnetId}, WireGuard ${identity.wireguardIp})`);
  return { identity, keys, client };
}
