import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { runAgentCli, setBaseAgentEnv, startAgentCli, tempDir } from "../support/agentBinary.ts";
import { freeSubnetId, startIsolatedPodman, type IsolatedPodman } from "../support/isolatedPodman.ts";
import { uniquePrefix } from "../support/podman.ts";

const cp = new TestControlPlane();
const dirs: Array<{ cleanup: () => void }> = [];
function dataDir(): string {
  const d = tempDir("agent-data-");
  dirs.push(d);
  return join(d.path, "data");
}
const mode = (path: string) => statSync(path).mode & 0o777;

// `agent run` reconciles for real: give it a podman store of its own, no DNS and no WireGuard, so
// it cannot touch the host's containers, port 53 or interfaces.
let world: IsolatedPodman;
let subnet: number;
/** Every registration here gets the same subnet: the agents share one network name in one podman store. */
function issueToken(): string {
  cp.nextSubnet = subnet;
  return cp.issueToken();
}
beforeAll(async () => {
  await cp.start();
  subnet = await freeSubnetId();
  world = await startIsolatedPodman({ images: [] });
  setBaseAgentEnv({ ...world.env, AGENT_DNS_PORT: "0", AGENT_WIREGUARD: "off", AGENT_NETWORK_NAME: `${uniquePrefix("fd")}-net` });
});
afterAll(async () => {
  setBaseAgentEnv({});
  await world.stop();
  await cp.stop();
  dirs.forEach((d) => d.cleanup());
});

describe("the compiled binary", () => {
  test("--version and --help list the four commands", async () => {
    const version = await runAgentCli(["--version"]);
    expect(version.exitCode).toBe(0);
    // The version, then the commit the binary was built from (this checkout's).
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+\S* \(commit [0-9a-f]{7,40}(-dirty)?\)$/);
    const help = await runAgentCli(["--help"]);
    expect(help.exitCode).toBe(0);
    for (const cmd of ["run", "reconcile", "build", "doctor"]) expect(help.stdout).toMatch(new RegExp(`^  ${cmd} `, "m"));
  });

  test("--help of each command works, as `agent CMD --help` and `agent help CMD`, with the command's own flags", async () => {
    const flags = { run: "--poll-interval", build: "--build-id", doctor: "--fix", reconcile: "--once" };
    for (const [cmd, flag] of Object.entries(flags)) {
      for (const argv of [[cmd, "--help"], ["help", cmd]]) {
        const res = await runAgentCli(argv);
        expect(res.exitCode).toBe(0);
        expect(res.stdout).toContain(`Usage: agent ${cmd} [options]`);
        expect(res.stdout).toContain(flag);
      }
    }
  });

  test("a .env or bunfig.toml in the folder it is started from is not read", async () => {
    const dir = tempDir("agent-cwd-");
    try {
      writeFileSync(join(dir.path, ".env"), "AGENT_LOG_FORMAT=xml\n");
      writeFileSync(join(dir.path, "bunfig.toml"), 'preload = ["./evil.ts"]\n');
      writeFileSync(join(dir.path, "evil.ts"), 'console.error("bunfig preload ran");\n');
      const res = await runAgentCli(["reconcile", "--once", "--state", join(dir.path, "missing.json"), "--data-dir", join(dir.path, "data")], {
        wrapper: ["sh", "-c", `cd ${dir.path} && exec "$@"`, "sh"],
      });
      expect(res.stderr).not.toContain("AGENT_LOG_FORMAT");
      expect(res.stderr).not.toContain("preload ran");
      expect(res.stderr).toContain("--state: cannot read");
    } finally {
      dir.cleanup();
    }
  });

  test("an unknown command or a bad value exits 2 with one clear line", async () => {
    expect((await runAgentCli(["frobnicate"])).exitCode).toBe(2);
    const bad = await runAgentCli(["run", "--log-format", "xml"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.trim().split("\n")[0]).toBe('agent: --log-format: must be text or json (got "xml")');
    const env = await runAgentCli(["run"], { env: { AGENT_URL: "not a url" } });
    expect(env.exitCode).toBe(2);
    expect(env.stderr).toContain("--url (from AGENT_URL): must be an http:// or https:// URL");
  });
});

describe("agent run: registration and identity", () => {
  test("neither config nor token: a clear error, exit 2, nothing registered", async () => {
    const dir = dataDir();
    const res = await runAgentCli(["run", "--data-dir", dir, "--url", cp.url]);
    expect(res.exitCode).toBe(2);
    expect(res.stderr).toContain("has no identity yet and --token is missing");
    expect(existsSync(join(dir, "config.json"))).toBe(false);
  });

  test("registers on a fresh data dir with the documented modes, and never registers twice", async () => {
    const dir = dataDir();
    const token = issueToken();
    const agent = startAgentCli(["run", "--data-dir", dir, "--url", cp.url, "--token", token]);
    await agent.waitForLog(/registered as server/);
    expect(await agent.stop()).toBe(0);
    expect(agent.stderr()).not.toContain(token);

    const server = cp.serverByToken(token)!;
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config.serverId).toBe(server.id);
    expect(config.encryptionKey).toBe(cp.encryptionKey);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, "config.json"))).toBe(0o600);
    expect(mode(join(dir, "keys/private.key"))).toBe(0o600);
    expect(mode(join(dir, "wireguard.key"))).toBe(0o600);
    expect(readFileSync(join(dir, "keys/public.key"), "utf8").trim()).toBe(server.signingPublicKey!);
    const wgPub = Bun.spawnSync(["wg", "pubkey"], { stdin: Bun.file(join(dir, "wireguard.key")) }).stdout.toString().trim();
    expect(wgPub).toBe(server.wireguardPublicKey!);

    const registrations = () => cp.requests.filter((r) => r.path === "/api/v1/agent/register").length;
    const before = registrations();
    // Later start: no token, no URL (remembered), no second registration.
    const again = startAgentCli(["run", "--data-dir", dir]);
    await again.waitForLog(/agent started for server/);
    expect(await again.stop("SIGINT")).toBe(0);
    expect(registrations()).toBe(before);
  });

  test("a failed registration leaves no identity, and a retry with a new token works", async () => {
    const dir = dataDir();
    const bad = await runAgentCli(["run", "--data-dir", dir, "--url", cp.url, "--token", "wrong-token"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain("answered 401: Invalid, expired, or already used token");
    expect(bad.stderr).not.toContain("wrong-token");
    expect(existsSync(join(dir, "config.json"))).toBe(false);

    const agent = startAgentCli(["run", "--data-dir", dir, "--url", cp.url, "--token", issueToken()]);
    await agent.waitForLog(/registered as server/);
    expect(await agent.stop()).toBe(0);
    expect(existsSync(join(dir, "config.json"))).toBe(true);
  });

  test("a second agent on the same data dir refuses, naming the holder's pid", async () => {
    const dir = dataDir();
    const first = startAgentCli(["run", "--data-dir", dir, "--url", cp.url, "--token", issueToken()]);
    await first.waitForLog(/agent started/);
    const second = await runAgentCli(["run", "--data-dir", dir]);
    expect(second.exitCode).toBe(4);
    expect(second.stderr).toContain(`locked by process ${first.proc.pid}`);
    expect(await first.stop()).toBe(0);
  });

  test("a lock left by a SIGKILLed agent does not block the next one", async () => {
    const dir = dataDir();
    const first = startAgentCli(["run", "--data-dir", dir, "--url", cp.url, "--token", issueToken()]);
    await first.waitForLog(/agent started/);
    await first.stop("SIGKILL");
    const next = startAgentCli(["run", "--data-dir", dir]);
    await next.waitForLog(/agent started/);
    expect(await next.stop()).toBe(0);
  });

  test("a config file supplies settings and a broken one is a usage error", async () => {
    const dir = dataDir();
    const d = tempDir();
    dirs.push(d);
    const file = join(d.path, "agent.json");
    writeFileSync(file, JSON.stringify({ url: cp.url, dataDir: dir, token: issueToken() }));
    const agent = startAgentCli(["run", "--config", file]);
    await agent.waitForLog(/registered as server/);
    expect(await agent.stop()).toBe(0);
    writeFileSync(file, "{ nope");
    const bad = await runAgentCli(["run"], { env: { AGENT_CONFIG: file } });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("is not valid JSON");
  });
});
