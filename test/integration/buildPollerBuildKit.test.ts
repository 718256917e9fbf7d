/**
 * Control-plane builds on a real buildkitd (../shared/tools, one per run): a failing step reported
 * to the test control plane, and a cancellation that ends buildctl, the daemon's solve and the RUN
 * step's process.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startBuildPoller, type BuildPoller } from "../../builder/BuildPoller.ts";
import { DataDir } from "../../lib/datadir/DataDir.ts";
import { VictoriaLogsShipper } from "../../lib/logs/VictoriaLogsShipper.ts";
import { ensureRegistered, type Registered } from "../../lib/registration.ts";
import { tempDir } from "../support/agentBinary.ts";
import { BUILDKIT_BIN, cacheRecordsInUse, pushBaseImage, startBuildkitd, type Buildkitd } from "../support/buildkit.ts";
import { processesWithCmdline, tokenCloneUrl } from "../support/builds.ts";
import { FakeGitHub } from "../support/FakeGitHub.ts";
import { GitServer } from "../support/GitServer.ts";
import { processesWhere, startRegistry, uniquePrefix, waitFor, type Registry } from "../support/podman.ts";
import { TestControlPlane } from "../support/TestControlPlane.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";

const prefix = uniquePrefix("q");
// The slow RUN step, recognised by its command line: a number of this run's own (builderPodman
// uses 4000-4899, buildPoller 5000-5899).
const SLOW = `sleep ${6000 + Math.floor(Math.random() * 900)}`;
const savedPath = process.env.PATH;
const cp = new TestControlPlane();
const github = new FakeGitHub();
const git = new GitServer({ authorize: (token, repo) => github.tokenCovers(token, repo) });
const logs = new TestVictoriaLogs();
let registry: Registry;
let daemon: Buildkitd;
let registered: Registered;
let dataDir: DataDir;
let shipper: VictoriaLogsShipper;
let poller: BuildPoller | undefined;
const dirs: Array<{ cleanup: () => void }> = [];

beforeAll(async () => {
  process.env.PATH = `${BUILDKIT_BIN}:${savedPath}`;
  registry = await startRegistry();
  daemon = await startBuildkitd({ insecureRegistries: [registry.host] });
  await Promise.all([cp.start(), github.start(), git.start(), logs.start()]);
  const base = await pushBaseImage(registry.host, `${prefix}/busybox:latest`);
  git.createRepo("acme/broken", [{ "Dockerfile": `FROM ${base}\nRUN echo about to fail ${prefix} && exit 3\n` }]);
  git.createRepo("acme/slow", [{ "Dockerfile": `FROM ${base}\nRUN ${SLOW}\n` }]);
  github.install("acme", ["acme/broken", "acme/slow"]);
  const d = tempDir("build-poller-bk-");
  dirs.push(d);
  dataDir = new DataDir(join(d.path, "data"));
  registered = await ensureRegistered({ dataDir, url: cp.url, token: cp.issueToken() });
  shipper = new VictoriaLogsShipper({ endpoint: logs.url });
  poller = startBuildPoller({
    client: registered.client,
    dataDir,
    encryptionKey: registered.identity.encryptionKey,
    shipper,
    intervalMs: 200,
    cancelCheckIntervalMs: 250,
    builder: "buildkit",
    buildkitHost: daemon.addr,
    insecureRegistries: [registry.host],
  });
}, 120_000);

afterAll(async () => {
  await poller?.stop();
  await shipper?.close();
  await registered?.client.close();
  await daemon?.stop();
  await registry?.stop();
  await Promise.all([cp.stop(), github.stop(), git.stop(), logs.stop()]);
  process.env.PATH = savedPath;
  dirs.forEach((d) => d.cleanup());
}, 120_000);

const buildctlRuns = () => processesWhere(({ argv }) => argv.some((a) => a.endsWith("buildctl")) && argv.includes(daemon.addr) && argv.includes("build"));

describe("control-plane builds on a real BuildKit", () => {
  test("a failing step is reported failed with BuildKit's error (command and exit code); its output is in the build log", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/broken"), imageUri: `${registry.host}/${prefix}/broken:1` });
    await waitFor(() => build.history.at(-1)?.status === "failed", 90_000, "the build to fail");
    await waitFor(() => !existsSync(join(dataDir.buildsDir, build.id)), 10_000, "the build folder to be removed");
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building", "failed"]);
    expect(build.history.at(-1)!.error).toMatch(new RegExp(`^buildctl build failed \\(exit code 1\\): .*echo about to fail ${prefix} && exit 3.* exit code: 3`));
    await shipper.flush();
    const lines = logs.lines.filter((l) => l.build_id === build.id).map((l) => l._msg);
    expect(lines.some((l) => l.endsWith(`about to fail ${prefix}`))).toBe(true);
  }, 120_000);

  test("a build cancelled during a long RUN: buildctl ends, the daemon's solve and the step end, the folder goes, nothing more is reported", async () => {
    const build = cp.addBuild({ cloneUrl: await tokenCloneUrl(github, git, "acme/slow"), imageUri: `${registry.host}/${prefix}/slow:1` });
    await waitFor(() => processesWithCmdline(SLOW).length > 0, 60_000, "the slow RUN step to start");
    expect(buildctlRuns().length).toBe(1);
    expect(await cacheRecordsInUse(daemon.addr)).toBeGreaterThan(0);
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building"]);
    cp.cancelBuild(build.id);
    await waitFor(() => buildctlRuns().length === 0, 20_000, "buildctl to end");
    await waitFor(() => processesWithCmdline(SLOW).length === 0, 20_000, "the RUN step's process to end");
    await waitFor(async () => (await cacheRecordsInUse(daemon.addr)) === 0, 20_000, "the daemon to release the solve's cache records");
    await waitFor(() => !existsSync(join(dataDir.buildsDir, build.id)), 20_000, "the build folder to be removed");
    expect(build.history.map((h) => h.status)).toEqual(["cloning", "building"]);
    expect(build.status).toBe("cancelled");
  }, 120_000);
});
