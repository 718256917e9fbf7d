/**
 * `agent build` through the compiled binary: the documented CI line against a private repository
 * (fake GitHub App, git http-backend), real podman and registry; exit codes; `--build-id`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { ensureRegistered } from "../../lib/registration.ts";
import { GitHubAppTokens } from "../../builder/source/GitHubAppTokens.ts";
import { runAgentCli, startAgentCli, tempDir } from "../support/agentBinary.ts";
import { makeBaseImage, cleanupBuildRun, processesWithCmdline, runText } from "../support/builds.ts";
import { FakeGitHub } from "../support/FakeGitHub.ts";
import { GitServer } from "../support/GitServer.ts";
import { podman, startRegistry, TEST_IMAGE, uniquePrefix, waitFor, type Registry } from "../support/podman.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";

const prefix = uniquePrefix("e");
const BASE = `localhost/${prefix}-base:1`;
const github = new FakeGitHub();
const git = new GitServer({ authorize: (token, repo) => github.tokenCovers(token, repo) });
const logs = new TestVictoriaLogs();
const cp = new TestControlPlane();
let registry: Registry;
let keyFile = "";
let shas: string[] = [];
const dirs: Array<{ path: string; cleanup: () => void }> = [];
function dir(): string {
  const d = tempDir("build-e2e-");
  dirs.push(d);
  return d.path;
}

beforeAll(async () => {
  registry = await startRegistry();
  await Promise.all([github.start(), git.start(), logs.start(), cp.start()]);
  await makeBaseImage(BASE, prefix);
  shas = git.createRepo("acme/app", [
    { "Dockerfile": `FROM ${BASE}\nRUN --mount=type=secret,id=APP_SECRET test -s /run/secrets/APP_SECRET\nCOPY app.txt /app.txt\nCMD ["cat", "/app.txt"]\n`, "app.txt": "hello from ci\n" },
  ]);
  git.createRepo("acme/broken", [{ "Dockerfile": `FROM ${BASE}\nRUN exit 7\n` }]);
  github.install("acme", ["acme/app", "acme/broken"]);
  keyFile = join(dir(), "app.pem");
  writeFileSync(keyFile, github.privateKeyPem, { mode: 0o600 });
}, 120_000);

afterAll(async () => {
  await cleanupBuildRun(BASE, prefix);
  await registry?.stop();
  await Promise.all([github.stop(), git.stop(), logs.stop(), cp.stop()]);
  dirs.forEach((d) => d.cleanup());
}, 120_000);

function ciArgs(extra: string[] = []): string[] {
  return [
    "build",
    "--repo", "acme/app",
    "--ref", shas[0]!,
    "--image", `${registry.host}/${prefix}/app:ci`,
    "--github-app-id", String(github.appId),
    "--github-private-key-file", keyFile,
    "--github-api-url", github.url,
    "--github-url", git.url,
    "--builder", "podman",
    "--insecure-registry", registry.host,
    "--secret", "APP_SECRET",
    ...extra,
  ];
}

describe("agent build (CI mode)", () => {
  test("the documented CI line pushes the image and prints its reference with the digest", async () => {
    const res = await runAgentCli([...ciArgs(), "--logs-endpoint", logs.url], { env: { APP_SECRET: "ci-secret-value" }, timeoutMs: 120_000 });
    expect(res.stderr).not.toContain("ci-secret-value");
    expect(res.stderr).not.toContain("PRIVATE KEY");
    expect(res.exitCode).toBe(0);
    const reference = res.stdout.trim();
    expect(reference).toMatch(new RegExp(`^${registry.host.replace(/\./g, "\\.")}/${prefix}/app@sha256:[0-9a-f]{64}$`));
    const inspected = JSON.parse(await runText(["skopeo", "inspect", "--tls-verify=false", `docker://${registry.host}/${prefix}/app:ci`]));
    expect(reference.endsWith(inspected.Digest)).toBe(true);
    expect((await podman(["run", "--rm", "--tls-verify=false", reference])).trim()).toBe("hello from ci");
    expect(res.stderr).toContain("[build:clone] checked out");
    await logs.waitFor(() => logs.lines.some((l) => l._msg.startsWith("pushed ")), 10_000);
    const buildIds = new Set(logs.lines.map((l) => l.build_id));
    expect(buildIds.size).toBe(1);
    expect(logs.lines.every((l) => l.log_type === "build")).toBe(true);
  }, 120_000);

  test("--json prints the result as one JSON object", async () => {
    const res = await runAgentCli(ciArgs(["--json"]), { env: { APP_SECRET: "x" }, timeoutMs: 120_000 });
    expect(res.exitCode).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out).toMatchObject({ ok: true, image: `${registry.host}/${prefix}/app:ci`, commitSha: shas[0], builder: "podman", logLinesLost: 0 });
    expect(out.reference).toBe(`${registry.host}/${prefix}/app@${out.digest}`);
  }, 120_000);

  test("a Dockerfile that fails exits 1 and says which step failed", async () => {
    const res = await runAgentCli(["build", "--repo", "acme/broken", "--image", `${registry.host}/${prefix}/broken:ci`, "--github-app-id", String(github.appId), "--github-private-key-file", keyFile, "--github-api-url", github.url, "--github-url", git.url, "--builder", "podman", "--json"], { timeoutMs: 120_000 });
    expect(res.exitCode).toBe(1);
    expect(res.stderr).toMatch(/agent: podman build failed \(exit code \d+\): Error: .*exit status 7/);
    expect(JSON.parse(res.stdout)).toMatchObject({ ok: false, status: "failed", step: "build" });
  }, 120_000);

  test("SIGTERM (to the whole process group, as a CI runner sends it) cancels the build, leaves no build container, exits 5", async () => {
    const source = dir();
    const seconds = 4000 + Math.floor(Math.random() * 900);
    writeFileSync(join(source, "Dockerfile"), `FROM ${BASE}\nRUN sleep ${seconds}\n`);
    const agent = startAgentCli(["build", "--source", source, "--image", `${registry.host}/${prefix}/app:cancelled`, "--builder", "podman", "--insecure-registry", registry.host], { processGroup: true });
    try {
      await waitFor(() => processesWithCmdline(`sleep ${seconds}`).length > 0, 60_000, "the RUN step to start");
      agent.signalGroup("SIGTERM");
      expect(await agent.exited()).toBe(5);
      expect(agent.stderr()).toContain("received SIGTERM: stopping the build");
      expect(agent.stderr()).toContain("agent: the build was cancelled");
    } finally {
      if (agent.proc.exitCode === null) await agent.stop("SIGKILL");
    }
    expect(processesWithCmdline(`sleep ${seconds}`)).toEqual([]);
    const working = (JSON.parse((await runText(["buildah", "containers", "--json"])) || "null") ?? []) as Array<{ imagename: string }>;
    expect(working.filter((c) => c.imagename === BASE)).toEqual([]);
  }, 120_000);

  test("usage errors exit 2 with one clear line", async () => {
    const cases: Array<[string[], Record<string, string>, string]> = [
      [["build", "--repo", "acme/app"], {}, "agent: --image is required (REGISTRY/NAME:TAG)"],
      [["build", "--repo", "acme/app", "--image", "r.example.com/a:1", "--builder", "docker"], {}, 'agent: --builder: must be auto, buildkit or podman (got "docker")'],
      [["build", "--repo", "acme/app", "--image", "r.example.com/a:1", "--secret", "TOKEN=abc"], {}, "agent: --secret TOKEN: give the name only; the value is read from the environment variable of that name (never from the command line)"],
      [["build", "--repo", "acme/app", "--image", "r.example.com/a:1", "--secret", "NOT_SET_HERE"], {}, "agent: --secret NOT_SET_HERE: the environment variable NOT_SET_HERE is not set"],
      [["build", "--repo", "acme/app", "--image", "r.example.com/a:1", "--github-app-id", "1"], {}, "agent: --github-app-id and --github-private-key-file go together"],
      [["build", "--repo", "acme/app", "--image", "r.example.com/a:1", "--github-app-id", "1", "--github-private-key-file", "/nonexistent.pem"], {}, "agent: --github-private-key-file: cannot read /nonexistent.pem: ENOENT"],
      [["build", "--build-id", "b1", "--repo", "acme/app"], {}, "agent: --build-id takes everything from the control plane; drop --repo"],
      [["build", "--repo", "acme/app", "--image", "r.example.com/a:1"], { BUILDKIT_HOST: "localhost:1234" }, "agent: --buildkit-host (from BUILDKIT_HOST): must be a buildctl address"],
    ];
    for (const [args, env, first] of cases) {
      const res = await runAgentCli(args, { env });
      expect({ args, code: res.exitCode }).toEqual({ args, code: 2 });
      expect(res.stderr.split("\n")[0]).toStartWith(first);
    }
  }, 120_000);

  test("--build-id without a registered data dir exits 2 and says how to register", async () => {
    const res = await runAgentCli(["build", "--build-id", "b1", "--data-dir", join(dir(), "data")]);
    expect(res.exitCode).toBe(2);
    expect(res.stderr).toContain("--build-id needs a registered node");
    expect(res.stderr).toContain("hint: register first with: agent run");
  }, 120_000);
});

describe("agent build --build-id (one control-plane build from a shell)", () => {
  test("claims the build, reports each step and completes; a second claim of the same build exits 1", async () => {
    const dataDirPath = join(dir(), "data");
    const registered = await ensureRegistered({ dataDir: new DataDir(dataDirPath), url: cp.url, token: cp.issueToken() });
    await registered.client.close();
    const { token } = await new GitHubAppTokens({ appId: github.appId, privateKey: github.privateKeyPem, apiUrl: github.url }).installationToken({ owner: "acme", repo: "app" });
    const build = cp.addBuild({
      cloneUrl: git.cloneUrl("acme/app").replace("http://", `http://x-access-token:${token}@`),
      imageUri: `${registry.host}/${prefix}/app:cp`,
      commitSha: shas[0]!,
      secrets: { APP_SECRET: cp.encrypt("from-the-control-plane") },
    });
    const res = await runAgentCli(["build", "--build-id", build.id, "--data-dir", dataDirPath, "--builder", "podman", "--insecure-registry", registry.host], { timeoutMs: 120_000 });
    expect(res.stderr).not.toContain(token);
    expect(res.exitCode).toBe(0);
    expect(res.stdout.trim()).toMatch(new RegExp(`^${registry.host.replace(/\./g, "\\.")}/${prefix}/app@sha256:[0-9a-f]{64}$`));
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building", "pushing", "completed"]);

    const again = await runAgentCli(["build", "--build-id", build.id, "--data-dir", dataDirPath], { timeoutMs: 30_000 });
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain(`build ${build.id} cannot be claimed`);
  }, 120_000);
});
