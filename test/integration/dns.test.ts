import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSocket, type Socket } from "node:dgram";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DnsmasqDriver } from "../../lib/dns/DnsmasqDriver.ts";
import { AgentError, InvalidInputError } from "../../lib/errors.ts";
import { run } from "../../lib/exec.ts";
import type { DnsRecord } from "../../lib/state/types.ts";
import { TEST_IMAGE, cleanupPodman, freePort, freeSubnet, podman, uniquePrefix, waitFor } from "../support/podman.ts";

// The agent's own dnsmasq on 127.0.0.1:<free port>, run dir in a temp folder (made traversable,
// because dnsmasq reads the hosts folder after dropping root to `nobody`).
const prefix = uniquePrefix("dns");
const root = mkdtempSync(join(tmpdir(), `${prefix}-`));
chmodSync(root, 0o755);
let port: number;
let driver: DnsmasqDriver;
const drivers: DnsmasqDriver[] = [];

function newDriver(runDir: string, listenAddresses: string[], dnsPort: number): DnsmasqDriver {
  const d = new DnsmasqDriver({ runDir, listenAddresses, port: dnsPort, upstreamServers: [] });
  drivers.push(d);
  return d;
}

async function dig(name: string, server = "127.0.0.1", dnsPort = port): Promise<string[]> {
  const res = await run("dig", ["+short", "+time=1", "+tries=2", `@${server}`, "-p", String(dnsPort), name], { timeoutMs: 10_000 });
  return res.stdout.split("\n").filter(Boolean).sort();
}

async function status(name: string): Promise<string> {
  const res = await run("dig", ["+time=1", "+tries=2", "@127.0.0.1", "-p", String(port), name], { timeoutMs: 10_000 });
  return /status: (\w+)/.exec(res.stdout)?.[1] ?? "none";
}

const records: DnsRecord[] = [
  { name: "web.internal", ips: ["10.200.1.3"] },
  { name: "api.internal", ips: ["10.200.1.2", "10.200.2.2"] },
];

beforeAll(async () => {
  port = await freePort();
  driver = newDriver(join(root, "main"), ["127.0.0.1"], port);
});

afterAll(async () => {
  for (const d of drivers) await d.stop();
  await cleanupPodman(prefix);
  rmSync(root, { recursive: true, force: true });
});

describe("dnsmasq driver", () => {
  test("nothing is served before the first apply, and observe says so", async () => {
    expect(driver.runningPid()).toBeUndefined();
    expect(await driver.observe()).toEqual([]);
  });

  test("apply starts dnsmasq and the records resolve", async () => {
    await driver.apply(records);
    expect(driver.runningPid()).toBeNumber();
    expect(await dig("api.internal")).toEqual(["10.200.1.2", "10.200.2.2"]);
    expect(await dig("web.internal")).toEqual(["10.200.1.3"]);
    expect(await driver.observe()).toEqual([
      { name: "api.internal", ips: ["10.200.1.2", "10.200.2.2"] },
      { name: "web.internal", ips: ["10.200.1.3"] },
    ]);
  });

  test("an unknown .internal name is NXDOMAIN (answered locally, never forwarded)", async () => {
    expect(await status("nope.internal")).toBe("NXDOMAIN");
  });

  test("an update is served by the same dnsmasq, without a restart; a removed name stops resolving", async () => {
    const pid = driver.runningPid();
    await driver.apply([{ name: "api.internal", ips: ["10.200.3.9"] }]);
    await waitFor(async () => (await dig("api.internal")).join() === "10.200.3.9", 10_000, "the new address of api.internal");
    expect(await status("web.internal")).toBe("NXDOMAIN");
    expect(driver.runningPid()).toBe(pid!);
    expect(await driver.observe()).toEqual([{ name: "api.internal", ips: ["10.200.3.9"] }]);
  });

  test("an empty record list is applied as such", async () => {
    await driver.apply([]);
    await waitFor(async () => (await status("api.internal")) === "NXDOMAIN", 10_000, "api.internal to disappear");
    expect(await driver.observe()).toEqual([]);
  });

  test("dnsmasq not running: observe reports nothing served, apply starts it again", async () => {
    await driver.apply(records);
    const pid = driver.runningPid()!;
    process.kill(pid, "SIGKILL");
    await waitFor(() => driver.runningPid() === undefined, 5000, "dnsmasq to die");
    expect(await driver.observe()).toEqual([]);
    await driver.apply(records);
    expect(driver.runningPid()).not.toBe(pid);
    expect(await dig("web.internal")).toEqual(["10.200.1.3"]);
  });

  test("a dnsmasq config change (listen addresses) restarts it; the records stay", async () => {
    const pid = driver.runningPid();
    const changed = new DnsmasqDriver({ runDir: driver.runDir, listenAddresses: ["127.0.0.1", "::1"], port, upstreamServers: [] });
    await changed.apply(records);
    expect(changed.runningPid()).not.toBe(pid!);
    expect(readFileSync(changed.confFile, "utf8")).toContain("listen-address=127.0.0.1,::1");
    expect(await dig("web.internal", "::1")).toEqual(["10.200.1.3"]);
    await driver.apply(records);
    expect(readFileSync(driver.confFile, "utf8")).toContain("listen-address=127.0.0.1\n");
  });

  test("records that would inject lines or are not addresses are refused and nothing changes", async () => {
    const before = readFileSync(driver.hostsFile, "utf8");
    const bad: DnsRecord[][] = [
      [{ name: "evil.internal\n10.0.0.1 bank.example", ips: ["10.200.1.2"] }],
      [{ name: "ok.internal", ips: ["10.200.1.2 extra.internal"] }],
      [{ name: "ok.internal", ips: ["999.1.1.1"] }],
      [{ name: "Upper.internal", ips: ["10.200.1.2"] }],
      [{ name: "a b.internal", ips: ["10.200.1.2"] }],
    ];
    for (const recs of bad) await expect(driver.apply(recs)).rejects.toBeInstanceOf(InvalidInputError);
    expect(readFileSync(driver.hostsFile, "utf8")).toBe(before);
  });

  test("a run folder inside a private folder is refused before dnsmasq starts (it could not read its records)", async () => {
    const privateDir = join(root, "private");
    mkdirSync(privateDir, { mode: 0o700 });
    const d = newDriver(join(privateDir, "dnsmasq"), ["127.0.0.1"], port);
    await expect(d.apply(records)).rejects.toThrow(/runs as nobody and .*private is private/);
    expect(d.runningPid()).toBeUndefined();
  });

  test("a port held by another program is a clear error", async () => {
    const busyPort = await freePort();
    const socket: Socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(busyPort, "127.0.0.1", resolve));
    try {
      const d = newDriver(join(root, "busy"), ["127.0.0.1"], busyPort);
      const err = await d.apply(records).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AgentError);
      expect((err as AgentError).message).toMatch(/dnsmasq failed to start: .*(in use|listening socket)/);
    } finally {
      socket.close();
    }
  });
});

describe("a container resolves *.internal through the agent's dnsmasq", () => {
  let gateway: string;
  const network = `${prefix}net`;

  beforeAll(async () => {
    const { prefix: net, subnetId } = await freeSubnet();
    gateway = `${net}.${subnetId}.1`;
    await podman(["network", "create", "--disable-dns", "--subnet", `${net}.${subnetId}.0/24`, "--gateway", gateway, network]);
    // The bridge (and its gateway address on the host) exists while a container is attached.
    await podman(["run", "-d", "--name", `${prefix}keep`, "--network", network, TEST_IMAGE, "sleep", "600"]);
  });

  test("nslookup inside a container on the node's network gets the record", async () => {
    // busybox nslookup only asks port 53; this dnsmasq binds port 53 on this run's gateway address only.
    const d = newDriver(join(root, "container"), [gateway], 53);
    await d.apply([{ name: "api.internal", ips: ["10.200.1.2"] }]);
    expect(await dig("api.internal", gateway, 53)).toEqual(["10.200.1.2"]);
    const out = await podman(["run", "--rm", "--network", network, "--dns", gateway, TEST_IMAGE, "nslookup", "api.internal"], { allowFailure: true });
    expect(out).toContain("10.200.1.2");
    const missing = await run("podman", ["run", "--rm", "--network", network, "--dns", gateway, TEST_IMAGE, "nslookup", "nope.internal"], {
      allowFailure: true,
      timeoutMs: 60_000,
    });
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stdout + missing.stderr).toMatch(/NXDOMAIN|can't find/);
  });
});
