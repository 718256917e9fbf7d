import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateWireGuardPrivateKey, wireGuardPublicKey } from "../../lib/crypto/wireguardKey.ts";
import { InvalidInputError } from "../../lib/errors.ts";
import { run } from "../../lib/exec.ts";
import type { Peer } from "../../lib/state/types.ts";
import { WgDriver } from "../../lib/wireguard/WireGuardDriver.ts";

// Two "nodes" in two network namespaces joined by a veth pair (10.254.0.1/30 ↔ 10.254.0.2/30,
// only inside the namespaces). Each runs wireguard-go (this kernel has no WireGuard module), set
// up and fed peers by the agent's driver. Interface names are unique per run because
// wireguard-go's control sockets live in the host's /var/run/wireguard.
const tag = `t${process.pid % 10000}${Math.random().toString(36).slice(2, 6)}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const ifA = `${tag}wa`;
const ifB = `${tag}wb`;
const dir = mkdtempSync(join(tmpdir(), `${tag}-wg-`));

const keyA = generateWireGuardPrivateKey();
const keyB = generateWireGuardPrivateKey();
const pubA = wireGuardPublicKey(keyA);
const pubB = wireGuardPublicKey(keyB);

function driver(node: "a" | "b", listenPort = 51820): WgDriver {
  return new WgDriver({
    interfaceName: node === "a" ? ifA : ifB,
    address: node === "a" ? "10.100.1.1/16" : "10.100.2.1/16",
    listenPort,
    privateKeyFile: join(dir, `${node}.key`),
    stateDir: join(dir, `state-${node}`),
    netns: node === "a" ? nsA : nsB,
    persistentKeepalive: 0,
  });
}

const peerB = (endpoint = "10.254.0.2:51820"): Peer => ({ publicKey: pubB, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"], endpoint });
const peerA: Peer = { publicKey: pubA, allowedIps: ["10.100.1.0/24", "10.200.1.0/24"], endpoint: "10.254.0.1:51820" };

async function inNs(ns: string, args: string[]) {
  return run("ip", ["netns", "exec", ns, ...args], { allowFailure: true, timeoutMs: 15_000 });
}

/** One ping that gets an answer within a few tries (the first packet also starts the handshake). */
async function pingWorks(ns: string, target: string): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    if ((await inNs(ns, ["ping", "-c", "1", "-W", "2", target])).exitCode === 0) return true;
  }
  return false;
}

async function pingFails(ns: string, target: string): Promise<boolean> {
  return (await inNs(ns, ["ping", "-c", "2", "-W", "1", target])).exitCode !== 0;
}

async function teardown() {
  for (const ns of [nsA, nsB]) {
    const pids = await run("ip", ["netns", "pids", ns], { allowFailure: true });
    for (const pid of pids.stdout.split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGTERM");
      } catch {
        // already gone
      }
    }
    await run("ip", ["netns", "del", ns], { allowFailure: true });
  }
  for (const name of [ifA, ifB]) rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
  rmSync(dir, { recursive: true, force: true });
}

beforeAll(async () => {
  writeFileSync(join(dir, "a.key"), keyA + "\n", { mode: 0o600 });
  writeFileSync(join(dir, "b.key"), keyB + "\n", { mode: 0o600 });
  try {
    await run("ip", ["netns", "add", nsA]);
    await run("ip", ["netns", "add", nsB]);
    await run("ip", ["link", "add", `${tag}va`, "type", "veth", "peer", "name", `${tag}vb`]);
    await run("ip", ["link", "set", `${tag}va`, "netns", nsA]);
    await run("ip", ["link", "set", `${tag}vb`, "netns", nsB]);
    for (const [ns, link, address] of [
      [nsA, `${tag}va`, "10.254.0.1/30"],
      [nsB, `${tag}vb`, "10.254.0.2/30"],
    ] as const) {
      await run("ip", ["netns", "exec", ns, "ip", "address", "add", address, "dev", link]);
      await run("ip", ["netns", "exec", ns, "ip", "link", "set", link, "up"]);
      await run("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    }
    // A container address behind node B, reachable from A only through the route the driver adds.
    await run("ip", ["netns", "exec", nsB, "ip", "address", "add", "10.200.2.7/32", "dev", "lo"]);
  } catch (err) {
    await teardown();
    throw err;
  }
});

afterAll(teardown);

describe("WireGuard driver on wireguard-go in two network namespaces", () => {
  test("observe reports no peers while the interface does not exist", async () => {
    expect(await driver("a").observe()).toEqual([]);
    expect(await driver("a").implementation()).toBe("absent");
  });

  test("peers applied by the driver carry a ping across the tunnel, and to a subnet behind the peer", async () => {
    // The loop and an update_wireguard item may apply at once, both before the interface exists.
    const a = driver("a");
    await Promise.all([a.apply([peerB()]), a.apply([peerB()])]);
    await driver("b").apply([peerA]);
    expect(await driver("a").implementation()).toBe("wireguard-go");
    expect(await pingWorks(nsA, "10.100.2.1")).toBe(true);
    expect(await pingWorks(nsA, "10.200.2.7")).toBe(true);
    expect(await driver("a").observe()).toEqual([peerB()]);
    // 10.100.2.0/24 is inside the interface's own 10.100.0.0/16, so only the container subnet gets a route.
    expect(await driver("a").managedRoutes()).toEqual(["10.200.2.0/24"]);
    const mode = statSync(driver("a").configFile).mode & 0o777;
    expect(mode).toBe(0o600);
  });

  test("observe reads the live interface, so a change made behind the agent's back is drift", async () => {
    await inNs(nsA, ["wg", "set", ifA, "peer", pubB, "allowed-ips", "10.100.2.0/24"]);
    expect(await driver("a").observe()).toEqual([{ ...peerB(), allowedIps: ["10.100.2.0/24"] }]);
    expect(await pingFails(nsA, "10.200.2.7")).toBe(true);
    await driver("a").apply([peerB()]);
    expect(await driver("a").observe()).toEqual([peerB()]);
    expect(await pingWorks(nsA, "10.200.2.7")).toBe(true);
  });

  test("re-applying the same peers does not recreate the interface or drop the session", async () => {
    const link = async () => (await inNs(nsA, ["ip", "-o", "link", "show", "dev", ifA])).stdout.split(":")[0];
    const handshake = async () => Number((await inNs(nsA, ["wg", "show", ifA, "latest-handshakes"])).stdout.trim().split(/\s+/)[1]);
    const [linkBefore, handshakeBefore] = [await link(), await handshake()];
    expect(handshakeBefore).toBeGreaterThan(0);
    await driver("a").apply([peerB()]);
    // Same interface index, and the session survived (a removed and re-added peer starts at 0).
    expect(await link()).toBe(linkBefore);
    expect(await handshake()).toBe(handshakeBefore);
  });

  test("a removed peer stops traffic and its routes go away", async () => {
    await driver("a").apply([]);
    expect(await driver("a").observe()).toEqual([]);
    expect(await driver("a").managedRoutes()).toEqual([]);
    expect(await pingFails(nsA, "10.100.2.1")).toBe(true);
    await driver("a").apply([peerB()]);
    expect(await pingWorks(nsA, "10.100.2.1")).toBe(true);
  });

  test("a changed endpoint is applied: node B moves to another port, A follows", async () => {
    await driver("b", 51821).apply([peerA]);
    expect(await pingFails(nsA, "10.100.2.1")).toBe(true);
    await driver("a").apply([peerB("10.254.0.2:51821")]);
    expect(await driver("a").observe()).toEqual([peerB("10.254.0.2:51821")]);
    expect(await pingWorks(nsA, "10.100.2.1")).toBe(true);
  });

  test("a peer without an endpoint is reported without one even after it connected (roaming is not drift)", async () => {
    const noEndpoint: Peer = { publicKey: pubB, allowedIps: ["10.100.2.0/24", "10.200.2.0/24"] };
    await driver("a").apply([noEndpoint]);
    // B knows A's endpoint; its ping teaches A where B is.
    expect(await pingWorks(nsB, "10.100.1.1")).toBe(true);
    const live = await inNs(nsA, ["wg", "show", ifA, "endpoints"]);
    expect(live.stdout).toContain("10.254.0.2:51821");
    expect(await driver("a").observe()).toEqual([noEndpoint]);
  });

  test("an allowed IP this node already routes through another link (its own container subnet) keeps that route", async () => {
    // Node A's container bridge: 10.200.1.0/24 on a link of its own. A peer list that (by mistake) gives
    // that subnet to another peer must not move the route onto the tunnel and cut A off from its containers.
    // (A veth pair stands in for the bridge: this kernel has no dummy links.)
    const bridge = `${tag}br`;
    await inNs(nsA, ["ip", "link", "add", bridge, "type", "veth", "peer", "name", `${tag}bp`]);
    try {
      await inNs(nsA, ["ip", "address", "add", "10.200.1.1/24", "dev", bridge]);
      for (const link of [bridge, `${tag}bp`]) await inNs(nsA, ["ip", "link", "set", link, "up"]);
      expect((await inNs(nsA, ["ip", "-o", "route", "show", "10.200.1.0/24"])).stdout).toContain(`dev ${bridge}`);
      const strayKey = wireGuardPublicKey(generateWireGuardPrivateKey());
      await driver("a").apply([peerB("10.254.0.2:51821"), { publicKey: strayKey, allowedIps: ["10.200.1.0/24", "10.200.3.0/24"] }]);
      expect((await inNs(nsA, ["ip", "-o", "route", "show", "10.200.1.0/24"])).stdout).toContain(`dev ${bridge}`);
      expect(await driver("a").managedRoutes()).toEqual(["10.200.2.0/24", "10.200.3.0/24"]);
    } finally {
      await inNs(nsA, ["ip", "link", "del", bridge]);
    }
  });

  test("invalid peers are refused before anything changes", async () => {
    await driver("a").apply([peerB("10.254.0.2:51821")]);
    const before = await driver("a").observe();
    const bad: Peer[][] = [
      [{ publicKey: "not-a-key", allowedIps: ["10.100.3.0/24"] }],
      [{ publicKey: pubA, allowedIps: ["10.100.3.0/24\nPrivateKey = x"] }],
      [{ publicKey: pubA, allowedIps: ["10.100.3.0/24"], endpoint: "203.0.113.1" }],
      [{ publicKey: pubA, allowedIps: ["10.100.300.0/24"] }],
    ];
    for (const peers of bad) {
      await expect(driver("a").apply(peers)).rejects.toBeInstanceOf(InvalidInputError);
    }
    expect(await driver("a").observe()).toEqual(before);
  });

  test("a missing private key is a clear error", async () => {
    const d = new WgDriver({ interfaceName: ifA, address: "10.100.1.1/16", privateKeyFile: join(dir, "nope.key"), stateDir: join(dir, "x"), netns: nsA });
    await expect(d.apply([])).rejects.toThrow(/nope\.key does not exist/);
  });

  test("the kernel implementation, when demanded, is used or refused with a hint", async () => {
    const name = `${tag}wk`;
    const probe = await inNs(nsA, ["ip", "link", "add", "dev", `${tag}pk`, "type", "wireguard"]);
    await inNs(nsA, ["ip", "link", "del", "dev", `${tag}pk`]);
    const d = new WgDriver({
      interfaceName: name,
      address: "10.100.9.1/16",
      privateKeyFile: join(dir, "a.key"),
      stateDir: join(dir, "k"),
      netns: nsA,
      implementation: "kernel",
    });
    if (probe.exitCode === 0) {
      await d.apply([]);
      expect(await d.implementation()).toBe("kernel");
    } else {
      await expect(d.apply([])).rejects.toThrow(/kernel module/);
      expect(await d.implementation()).toBe("absent");
    }
  });
});
