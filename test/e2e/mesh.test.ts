import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { run } from "../../lib/exec.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { startAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { freePort, waitFor } from "../support/podman.ts";

/**
 * `agent run` with WireGuard on: the mesh interface comes up with the registered address before
 * any peer exists (containers reach dnsmasq there), and peers from expected state reach the live
 * interface. The interface has a per-run name and is deleted afterwards.
 */
const cp = new TestControlPlane();
const tmp = tempDir("mesh-e2e-");
const iface = `wgt${process.pid % 100000}`;
let world: IsolatedPodman;

beforeAll(async () => {
  await cp.start();
  cp.nextSubnet = await freeSubnetId();
  world = await startIsolatedPodman({ images: [] });
});

afterAll(async () => {
  await run("ip", ["link", "del", iface], { allowFailure: true });
  await world.stop();
  await cp.stop();
  tmp.cleanup();
});

test("the mesh interface is up with the registered address before any peer, and expected peers reach it", async () => {
  const token = cp.issueToken();
  const server = cp.serverByToken(token)!;
  const peerKey = wireGuardPublicKey(generateWireGuardPrivateKey());
  const agent = startAgentCli(
    ["run", "--url", cp.url, "--token", token, "--data-dir", join(tmp.path, "data"), "--network-name", `${iface}-net`, "--dns-port", "0", "--wireguard-interface", iface, "--wireguard-port", String(await freePort()), "--poll-interval", "1", "--work-queue-interval", "60", "--build-poll-interval", "3600"],
    { env: world.env },
  );
  try {
    await agent.waitForLog(/agent started/, 30_000);
    const addr = await run("ip", ["-o", "-4", "addr", "show", "dev", iface]);
    expect(addr.stdout).toContain(`${server.wireguardIp}/16`);
    expect((await run("wg", ["show", iface, "peers"])).stdout.trim()).toBe("");

    cp.setExpectedState(server.id, { containers: [], wireguard: { peers: [{ publicKey: peerKey, allowedIps: "10.100.250.0/24, 10.200.250.0/24", endpoint: "127.0.0.1:51999" }] } });
    await waitFor(async () => (await run("wg", ["show", iface, "peers"])).stdout.includes(peerKey), 20_000, "the peer on the live interface");
    const allowed = (await run("wg", ["show", iface, "allowed-ips"])).stdout;
    expect(allowed).toContain("10.200.250.0/24");
    expect(await agent.stop()).toBe(0);
  } finally {
    if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
  }
});
