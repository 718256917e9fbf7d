/**
 * Control-plane builds: the build poller of `agent run` against the test control plane, with real
 * git over HTTP, podman and a registry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { startBuildPoller, type BuildPoller } from "../../builder/BuildPoller.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { VictoriaLogsShipper } from "../../lib/logs/VictoriaLogsShipper.ts";
import { ensureRegistered, type Registered } from "../../lib/registration.ts";
import { tempDir } from "../support/agentBinary.ts";
import { cleanupBuildRun, makeBaseImage, processesWithCmdline, tokenCloneUrl } from "../support/builds.ts";
import { FakeGitHub } from "../support/FakeGitHub.ts";
import { GitServer } from "../support/GitServer.ts";
import { podman, startRegistry, TEST_IMAGE, uniquePrefix, waitFor, type Registry } from "../support/podman.ts";
import { TestControlPlane, type BuildRecord } from "../support/TestControlPlane.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";

const prefix = uniquePrefix("p");
const BASE = `localhost/${prefix}-base:1`;
const SECRET = `poller-secret-${prefix}`;
// The slow RUN step, recognised by its command line: a number of this run's own, so a concurrent
// run of these tests (or of builderPodman's, 4000-4899 s) is never mistaken for it.
const SLOW = `sleep ${5000 + Math.floor(Math.random() * 900)}`;
const cp = new TestControlPlane();
const github = new FakeGitHub();
const git = new GitServer({ authorize: (token, repo) => github.tokenCovers(token, repo) });
const logs = new TestVictoriaLogs();
let registry: Registry;
let registered: Registered;
let dataDir: DataDir;
let shipper: VictoriaLogsShipper;
let poller: BuildPoller | undefined;
const dirs: Array<{ cleanup: () => void }> = [];
let shas: string[] = [];

beforeAll(async () => {
  registry = await startRegistry();
  await Promise.all([cp.start(), github.start(), git.start(), logs.start()]);
  await makeBaseImage(BASE, prefix);
  shas = git.createRepo("acme/app", [
    { "Dockerfile": `FROM ${BASE}\nARG secrets-hash\nRUN --mount=type=secret,id=APP_SECRET busybox sha256sum /run/secrets/APP_SECRET | busybox cut -d' ' -f1 > /secret.sha256\nCOPY app.txt /app.txt\nCMD ["sh", "-c", "cat /app.txt /secret.sha256"]\n`, "app.txt": "first\n" },
    { "app.txt": "second\n" },
  ]);
  git.createRepo("acme/broken", [{ "Dockerfile": `FROM ${BASE}\nRUN echo about to fail && exit 3\n` }]);
  git.createRepo("acme/slow", [{ "Dockerfile": `FROM ${BASE}\nRUN ${SLOW}\n` }]);
  github.install("acme", ["acme/app", "acme/broken", "acme/slow"]);
  const d = tempDir("build-poller-");
  dirs.push(d);
  dataDir = new DataDir(join(d.path, "data"));
  registered = await ensureRegistered({ dataDir, url: cp.url, token: cp.issueToken() });
  shipper = new VictoriaLogsShipper({ endpoint: logs.url });
  // A build folder left behind by a crash two hours ago.
  mkdirSync(join(dataDir.buildsDir, "crashed-build"), { recursive: true });
  const twoHoursAgo = (Date.now() - 2 * 3600_000) / 1000;
  utimesSync(join(dataDir.buildsDir, "crashed-build"), twoHoursAgo, twoHoursAgo);
  poller = startPoller();
}, 120_000);

afterAll(async () => {
  await poller?.stop();
  await shipper?.close();
  await registered?.client.close();
  await cleanupBuildRun(BASE, prefix);
  await registry?.stop();
  await Promise.all([cp.stop(), github.stop(), git.stop(), logs.stop()]);
  dirs.forEach((d) => d.cleanup());
}, 120_000);

function startPoller(): BuildPoller {
  return startBuildPoller({
    client: registered.client,
    dataDir,
    encryptionKey: registered.identity.encryptionKey,
    shipper,
    intervalMs: 200,
    cancelCheckIntervalMs: 250,
    builder: "podman",
    insecureRegistries: [registry.host],
  });
}

async function finished(build: BuildRecord, timeoutMs = 90_000): Promise<string[]> {
  await waitFor(() => ["completed", "failed"].includes(build.history.at(-1)?.status ?? ""), timeoutMs, `build ${build.id} to finish`);
  await waitFor(() => !existsSync(join(dataDir.buildsDir, build.id)), 10_000, "the build folder to be removed");
  return build.history.map((h) => h.status);
}

describe("control-plane builds (agent run's build poller)", () => {
  test("a pending build goes cloning → building → pushing → completed, with decrypted secrets, logs and no folder left", async () => {
    const build = cp.addBuild({
      cloneUrl: await tokenCloneUrl(github, git, "acme/app"),
      imageUri: `${registry.host}/${prefix}/app:${shas[0]}`,
      commitSha: shas[0]!,
      branch: "main",
      secrets: { APP_SECRET: cp.encrypt(SECRET) },
    });
    expect(await finished(build)).toEqual(["cloning", "building", "pushing", "completed"]);
    expect(build.claimedBy).toBe(registered.identity.serverId);
    // Pushed, then removed from local storage: the run below pulls it from the registry.
    expect(await podman(["images", "-q", `${registry.host}/${prefix}/app:${shas[0]}`])).toBe("");
    const out = await podman(["run", "--rm", "--tls-verify=false", `${registry.host}/${prefix}/app:${shas[0]}`]);
    expect(out.trim().split("\n")).toEqual(["first", createHash("sha256").update(SECRET).digest("hex")]);

    await shipper.flush();
    const lines = logs.lines.filter((l) => l.build_id === build.id);
    expect(lines.length).toBeGreaterThan(5);
    for (const l of lines) expect(l).toMatchObject({ log_type: "build", service_id: build.serviceId, project_id: build.projectId });
    expect(lines.some((l) => l._msg.startsWith("STEP 3/5: RUN"))).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(SECRET);
    expect(JSON.stringify(lines)).not.toMatch(/x-access-token:ghs_/);
  }, 120_000);

  test("stale build folders are removed when the poller starts", () => {
    expect(existsSync(join(dataDir.buildsDir, "crashed-build"))).toBe(false);
  }, 120_000);

  test("commitSha HEAD builds the tip of the branch", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/app"), imageUri: `${registry.host}/${prefix}/app:head`, secrets: { APP_SECRET: cp.encrypt(SECRET) } });
    expect(await finished(build)).toEqual(["cloning", "building", "pushing", "completed"]);
    const out = await podman(["run", "--rm", "--tls-verify=false", `${registry.host}/${prefix}/app:head`]);
    expect(out.trim().split("\n")[0]).toBe("second");
  }, 120_000);

  test("a Dockerfile that fails is reported failed with podman's error", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/broken"), imageUri: `${registry.host}/${prefix}/broken:1` });
    expect(await finished(build)).toEqual(["cloning", "building", "failed"]);
    expect(build.history.at(-1)!.error).toMatch(/^podman build failed \(exit code \d+\): Error: .*exit status 3/);
  }, 120_000);

  test("an unknown commit sha is reported failed naming the commit", async () => {
    const missing = "feedface".repeat(5);
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/app"), imageUri: `${registry.host}/${prefix}/app:missing`, commitSha: missing });
    expect(await finished(build)).toEqual(["cloning", "failed"]);
    expect(build.history.at(-1)!.error).toBe(`commit ${missing} was not found in ${git.cloneUrl("acme/app")}`);
  }, 120_000);

  test("a clone URL without a token for a private repository is reported as an authentication failure", async () => {
    const build = cp.addBuild({ cloneUrl: git.cloneUrl("acme/app"), imageUri: `${registry.host}/${prefix}/app:noauth` });
    expect(await finished(build)).toEqual(["cloning", "failed"]);
    expect(build.history.at(-1)!.error).toContain("authentication to");
  }, 120_000);

  test("a secret that does not decrypt fails the build naming the key, never the value", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/app"), imageUri: `${registry.host}/${prefix}/app:badsecret`, secrets: { APP_SECRET: "bm90LWVuY3J5cHRlZC1hdC1hbGwtYnV0LWxvbmctZW5vdWdo" } });
    // Nothing is cloned for a build that cannot get its secrets.
    expect(await finished(build)).toEqual(["failed"]);
    expect(build.history.at(-1)!.error).toBe("build secret APP_SECRET: secret failed to decrypt (wrong key or tampered value)");
  }, 120_000);

  test("a build another agent claimed first (409) is skipped quietly and taken once it is free", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/app"), imageUri: `${registry.host}/${prefix}/app:contended`, secrets: { APP_SECRET: cp.encrypt(SECRET) } });
    const claimPath = `/api/v1/agent/builds/${build.id}/claim`;
    const release = cp.intercept((req) => (req.path === claimPath ? Response.json({ error: "Build already claimed" }, { status: 409 }) : undefined));
    const claims = () => cp.requests.filter((r) => r.path === claimPath).length;
    await waitFor(() => claims() >= 2, 10_000, "two claim attempts");
    expect(build.history).toEqual([]);
    release();
    expect(await finished(build)).toEqual(["cloning", "building", "pushing", "completed"]);
  }, 120_000);

  test("a build cancelled mid-build stops: the RUN step is killed, nothing more is reported, the folder is removed", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/slow"), imageUri: `${registry.host}/${prefix}/slow:1` });
    await waitFor(() => processesWithCmdline(SLOW).length > 0, 60_000, "the slow RUN step to start");
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building"]);
    cp.cancelBuild(build.id);
    await waitFor(() => processesWithCmdline(SLOW).length === 0, 20_000, "the RUN step to be killed");
    await waitFor(() => !existsSync(join(dataDir.buildsDir, build.id)), 20_000, "the build folder to be removed");
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building"]);
    expect(build.status).toBe("cancelled");
  }, 120_000);

  test("stopping the agent mid-build kills the build, reports it failed and cleans up", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/slow"), imageUri: `${registry.host}/${prefix}/slow:2` });
    await waitFor(() => processesWithCmdline(SLOW).length > 0, 60_000, "the slow RUN step to start");
    await poller!.stop();
    poller = undefined;
    expect(processesWithCmdline(SLOW)).toEqual([]);
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building", "failed"]);
    expect(build.history.at(-1)!.error).toBe("build stopped: the agent is shutting down");
    expect(existsSync(join(dataDir.buildsDir, build.id))).toBe(false);
  }, 120_000);
});
