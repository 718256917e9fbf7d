/**
 * `agent doctor --bundle FILE` (the compiled binary) on a registered data dir with planted secrets:
 * a container of the test's own on the machine's podman (through a private API service), a
 * wireguard-go interface keyed with the data dir's WireGuard key and a preshared key, dnsmasq
 * files, Traefik files written by the agent's driver (with a TLS key), a config file with a token and URL passwords, a last good expected state with encrypted
 * env values and a TLS key, and an agent log that mentions secrets. The bundle is unpacked and
 * every file searched for every secret (and its base64 form).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { encryptSecret } from "../../lib/crypto/secrets.ts";
import { wireGuardPublicKey, generateWireGuardPrivateKey } from "../../lib/crypto/wireguardKey.ts";
import { run } from "../../lib/exec.ts";
import { TraefikDriver } from "../../lib/proxy/TraefikDriver.ts";
import { runAgentCli, tempDir } from "../support/agentBinary.ts";
import { registeredDataDir } from "../support/doctorFixtures.ts";
import { TEST_IMAGE, podman, startPodmanService, uniquePrefix, type PodmanService } from "../support/podman.ts";

const prefix = uniquePrefix("bdl");
const wgInterface = `tbw${randomBytes(3).toString("hex")}`;
const containerName = `${prefix}-probe`;
const tmp = tempDir(`${prefix}-`);
let service: PodmanService;
let wgUp = false;

const TOKEN = `regtok-${randomBytes(12).toString("hex")}`;
const URL_PASSWORD = `urlpw-${randomBytes(8).toString("hex")}`;
const LOGS_PASSWORD = `logspw-${randomBytes(8).toString("hex")}`;
const ENV_PLAIN = `envplain-${randomBytes(8).toString("hex")}`;
const PSK = generateWireGuardPrivateKey();
const TLS_KEY_BODY = `TLSKEY${randomBytes(24).toString("base64")}`;

beforeAll(async () => {
  service = await startPodmanService();
  await podman(["run", "-d", "--name", containerName, TEST_IMAGE, "sleep", "600"]);
}, 120_000);

afterAll(async () => {
  await podman(["rm", "-f", "-t", "0", containerName], { allowFailure: true });
  await service?.stop();
  if (wgUp) await run("ip", ["link", "del", wgInterface], { allowFailure: true });
  tmp.cleanup();
}, 120_000);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("agent doctor --bundle", () => {
  test("writes a 0600 tar.gz with the checks, log, podman, WireGuard, DNS and config, and no secret in any file", async () => {
    const root = join(tmp.path, "data");
    const dataDir = registeredDataDir(root);
    const identity = dataDir.readIdentity();
    const wgKey = readFileSync(dataDir.wireguardKeyFile, "utf8").trim();
    const signingPem = readFileSync(dataDir.privateKeyFile, "utf8");
    const signingBody = signingPem.split("\n").filter((l) => l && !l.startsWith("-----"));

    // The mesh interface, keyed as the agent keys it, with a peer that has a preshared key.
    writeFileSync(join(tmp.path, "psk"), PSK + "\n", { mode: 0o600 });
    await run("wireguard-go", [wgInterface], { timeoutMs: 20_000 });
    wgUp = true;
    const peerKey = wireGuardPublicKey(generateWireGuardPrivateKey());
    await run("wg", ["set", wgInterface, "private-key", dataDir.wireguardKeyFile, "peer", peerKey, "preshared-key", join(tmp.path, "psk"), "allowed-ips", "10.100.99.0/24"]);

    // What the agent writes: the last good expected state (encrypted env, a TLS key), dnsmasq files.
    const envCipher = encryptSecret(ENV_PLAIN, identity.encryptionKey);
    const tlsKey = `-----BEGIN PRIVATE KEY-----\n${TLS_KEY_BODY}\n-----END PRIVATE KEY-----\n`;
    const certificate = { domain: "a.example", certificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", certificateKey: tlsKey };
    dataDir.writeStateJson("expected-state.json", {
      containers: [
        {
          deploymentId: `${prefix}-dep`,
          serviceId: `${prefix}-svc`,
          serviceName: "web",
          name: `${prefix}-web`,
          image: TEST_IMAGE,
          ipAddress: "10.200.7.50",
          ports: [],
          env: { DB_PASSWORD: envCipher },
          healthCheck: null,
          volumes: [],
        },
      ],
      traefik: { routes: [], certificates: [certificate] },
    });
    const traefikDir = join(tmp.path, "traefik", "dynamic");
    await new TraefikDriver({ dynamicDir: traefikDir }).apply([{ id: `${prefix}-r1`, domain: "a.example", upstreams: ["10.200.7.50:8080"], serviceId: `${prefix}-svc` }], [certificate]);
    const dnsDir = join(tmp.path, "dns");
    mkdirSync(join(dnsDir, "hosts"), { recursive: true });
    writeFileSync(join(dnsDir, "dnsmasq.conf"), `port=5353\nlisten-address=127.0.0.1\nhostsdir=${join(dnsDir, "hosts")}\n`);
    writeFileSync(join(dnsDir, "hosts", "techulus.hosts"), `10.200.7.50 web.${prefix}.internal\n`);

    // A config file with a token and passwords in URLs; an agent log that mentions secrets.
    const configFile = join(tmp.path, "agent.json");
    writeFileSync(
      configFile,
      JSON.stringify({ token: TOKEN, caddyAdminUrl: `http://admin:${URL_PASSWORD}@127.0.0.1:9`, logsEndpoint: `https://logs:${LOGS_PASSWORD}@127.0.0.1:9`, networkName: "techulus" }),
      { mode: 0o600 },
    );
    const agentLog = join(tmp.path, "agent.log");
    writeFileSync(
      agentLog,
      [
        "2026-01-01T00:00:00Z [agent] info: reconcile pass done (0 changes)",
        `2026-01-01T00:00:01Z [agent] info: registering with token ${TOKEN} (${b64(TOKEN)})`,
        `2026-01-01T00:00:02Z [logs] warn: cannot ship to https://logs:${LOGS_PASSWORD}@127.0.0.1:9/insert`,
        `2026-01-01T00:00:03Z [podman] error: container env was ${ENV_PLAIN}, key ${identity.encryptionKey}`,
        `{"level":"error","component":"x","msg":"oops","secretValue":"${ENV_PLAIN}"}`,
      ].join("\n") + "\n",
    );

    const bundle = join(tmp.path, "out", "bug.tar.gz");
    mkdirSync(join(tmp.path, "out"));
    const res = await runAgentCli(
      ["doctor", "--bundle", bundle, "--data-dir", root, "--config", configFile, "--dns-port", "0", "--dns-run-dir", dnsDir, "--wireguard-interface", wgInterface, "--agent-log", agentLog, "--proxy", "--proxy-driver", "traefik", "--traefik-dynamic-dir", traefikDir],
      { env: { CONTAINER_HOST: `unix://${service.socketPath}`, AGENT_TOKEN: TOKEN }, timeoutMs: 150_000 },
    );
    const info = `exit ${res.exitCode}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`;
    expect(res.stdout, info).toMatch(new RegExp(`bundle written to ${bundle.replace(/[.]/g, "\\.")} \\(\\d+(\\.\\d)? (B|KiB|MiB), \\d+ files`));
    expect(res.stdout, info).toMatch(/^[✓!✗-] /m); // the usual check lines
    expect(statSync(bundle).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(tmp.path, "out"))).toEqual(["bug.tar.gz"]); // no temp file left

    const unpacked = join(tmp.path, "unpacked");
    mkdirSync(unpacked);
    await run("tar", ["-xzf", bundle, "-C", unpacked]);
    const [top] = readdirSync(unpacked);
    expect(top).toMatch(/^agent-doctor-.+-\d{8}T\d{6}Z$/);
    const dir = join(unpacked, top!);
    const read = (name: string) => readFileSync(join(dir, name), "utf8");
    const names = filesUnder(dir).map((f) => relative(dir, f)).sort();
    for (const name of [
      "README.txt",
      "manifest.json",
      "doctor.json",
      "agent-log.txt",
      "podman/ps-a.txt",
      "podman/network-ls.txt",
      "podman/info.txt",
      "wireguard/wg-show.txt",
      "dns/dnsmasq.conf",
      "dns/techulus.hosts",
      "config/agent-config.json",
      "config/effective-settings.json",
      "datadir/config.json",
      "datadir/state/expected-state.json",
      "datadir/listing.txt",
      "proxy/traefik-routes.yaml",
      "proxy/traefik-tls.yaml",
    ])
      expect(names, info).toContain(name);

    // Real content.
    const report = JSON.parse(read("doctor.json"));
    expect(report.checks.length).toBeGreaterThan(5);
    expect(report.exitCode).toBe(res.exitCode);
    expect(read("agent-log.txt")).toContain("reconcile pass done (0 changes)");
    expect(read("podman/ps-a.txt")).toContain(containerName);
    expect(read("podman/network-ls.txt")).toContain("NETWORK ID");
    expect(read("podman/info.txt")).toContain("networkBackend");
    const wg = read("wireguard/wg-show.txt");
    expect(wg).toContain(`interface: ${wgInterface}`);
    expect(wg).toContain(`public key: ${wireGuardPublicKey(wgKey)}`);
    expect(wg).toContain(`peer: ${peerKey}`);
    expect(wg).toMatch(/private key: \[redacted\]/);
    expect(wg).toMatch(/preshared key: \[redacted\]/);
    expect(read("dns/dnsmasq.conf")).toContain("listen-address=127.0.0.1");
    expect(read("dns/techulus.hosts")).toContain(`web.${prefix}.internal`);
    expect(read("proxy/traefik-routes.yaml")).toContain("10.200.7.50:8080");
    expect(read("proxy/traefik-tls.yaml")).toContain("a.example");
    const config = JSON.parse(read("config/agent-config.json"));
    expect(config).toEqual({ token: "[redacted]", caddyAdminUrl: "http://[redacted]@127.0.0.1:9", logsEndpoint: "https://[redacted]@127.0.0.1:9", networkName: "techulus" });
    expect(JSON.parse(read("config/effective-settings.json"))).toMatchObject({ dataDir: root, wireguardInterface: wgInterface, configFile });
    const identityOut = JSON.parse(read("datadir/config.json"));
    expect(identityOut).toMatchObject({ serverId: identity.serverId, subnetId: identity.subnetId, encryptionKey: "[redacted]" });
    const state = JSON.parse(read("datadir/state/expected-state.json"));
    expect(state.containers[0]).toMatchObject({ name: `${prefix}-web`, env: { DB_PASSWORD: "[redacted]" } });
    expect(state.traefik.certificates[0]).toMatchObject({ domain: "a.example", certificateKey: "[redacted]" });
    expect(read("datadir/listing.txt")).toMatch(/-0600 \d+:\d+ +\d+ wireguard\.key/);
    const manifest = JSON.parse(read("manifest.json"));
    expect(manifest).toMatchObject({ agentVersion: expect.any(String), hostname: expect.any(String), dataDir: root });
    expect(manifest.files.map((f: { name: string }) => f.name)).toContain("podman/ps-a.txt");
    // Everything was collected (the shared podman may have no `techulus` network to inspect).
    expect(manifest.notCollected.filter((n: { piece: string }) => !n.piece.startsWith("podman network inspect"))).toEqual([]);
    expect(read("README.txt")).toContain("Not collected:");

    // No planted secret, in any form, in any file.
    const secrets: Record<string, string> = {
      TOKEN,
      URL_PASSWORD,
      LOGS_PASSWORD,
      ENV_PLAIN,
      envCipher,
      PSK,
      TLS_KEY_BODY,
      wgKey,
      encryptionKey: identity.encryptionKey,
      signingKey: signingBody.join(""),
      ...Object.fromEntries(signingBody.map((line, i) => [`signingKeyLine${i}`, line])),
    };
    for (const path of filesUnder(dir)) {
      const content = readFileSync(path, "utf8");
      for (const [what, value] of Object.entries(secrets)) {
        for (const form of [value, b64(value)]) {
          if (content.includes(form)) throw new Error(`${relative(dir, path)} contains ${what} (${form === value ? "plain" : "base64"})`);
        }
      }
    }
  }, 180_000);

  test("a --bundle path in a missing folder (or a folder) exits 2 with one line and writes nothing", async () => {
    const missing = join(tmp.path, "no-such-folder", "bug.tar.gz");
    const res = await runAgentCli(["doctor", "--bundle", missing, "--data-dir", join(tmp.path, "unused")]);
    expect(res.exitCode).toBe(2);
    expect(res.stderr.trim()).toBe(`agent: --bundle: folder ${join(tmp.path, "no-such-folder")} does not exist`);
    expect(res.stdout).toBe("");
    expect(existsSync(join(tmp.path, "no-such-folder"))).toBe(false);
    expect(existsSync(join(tmp.path, "unused"))).toBe(false);

    const folder = await runAgentCli(["doctor", "--bundle", tmp.path, "--data-dir", join(tmp.path, "unused")]);
    expect(folder.exitCode).toBe(2);
    expect(folder.stderr).toContain(`agent: --bundle: ${tmp.path} is a folder`);
  }, 60_000);
});
