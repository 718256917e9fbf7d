import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ControlPlaneClient } from "../../lib/controlplane/ControlPlaneClient.ts";
import { SigningKey } from "../../lib/crypto/signingKey.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import type { WireGuardDriver } from "../../lib/drivers.ts";
import type { Peer } from "../../lib/state/types.ts";
import type { TestControlPlane } from "./TestControlPlane.ts";

/** Registers a fresh server on the test control plane; returns a signed client with fast retries. */
export async function registerTestServer(cp: TestControlPlane): Promise<{ client: ControlPlaneClient; serverId: string }> {
  const key = SigningKey.generate();
  const unsigned = new ControlPlaneClient({ baseUrl: cp.url, backoff: { attempts: 1, baseMs: 1, maxMs: 1 } });
  const { serverId } = await unsigned.register({ token: cp.issueToken(), wireguardPublicKey: "wg", signingPublicKey: key.publicKeyRawBase64() });
  await unsigned.close();
  const client = new ControlPlaneClient({ baseUrl: cp.url, serverId, signingKey: key, backoff: { attempts: 2, baseMs: 1, maxMs: 5 }, timeoutMs: 5000 });
  return { client, serverId };
}

/** A data dir in a fresh temp folder; `remove()` deletes it. */
export function tempDataDir(prefix = "wq"): DataDir & { remove(): void } {
  const root = mkdtempSync(join(tmpdir(), `agent-${prefix}-`));
  const dataDir = new DataDir(root) as DataDir & { remove(): void };
  dataDir.ensure();
  dataDir.remove = () => rmSync(root, { recursive: true, force: true });
  return dataDir;
}

/** In-memory WireGuardDriver for work-queue tests (the real driver is tested against wireguard-go). */
export class FakeWireGuard implements WireGuardDriver {
  peers: Peer[] = [];
  applied: Peer[][] = [];
  async observe(): Promise<Peer[]> {
    return this.peers;
  }
  async apply(peers: Peer[]): Promise<void> {
    this.applied.push(peers);
    this.peers = peers;
  }
}
