/**
 * The whole pipeline for real: a private repository behind git http-backend, a GitHub App token
 * from the fake GitHub, `podman build` + `podman push` into a real registry, the image pulled
 * back and run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BuildCancelledError, BuildStepError } from "../../builder/buildErrors.ts";
import { DEFAULT_BUILDER_OPTIONS } from "../../builder/builderOptions.ts";
import { checkCiRequest, runCiBuild, type CiBuildRequest } from "../../builder/ciBuild.ts";
import { registryDigest } from "../../builder/drivers/registryDigest.ts";
import { parseImageRef } from "../../builder/imageRef.ts";
import { run as runProgram } from "../../lib/exec.ts";
import type { LogShipper } from "../../lib/logs/LogShipper.ts";
import { VictoriaLogsShipper } from "../../lib/logs/VictoriaLogsShipper.ts";
import { tempDir } from "../support/agentBinary.ts";
import { cleanupBuildRun, imagesBuiltOn, makeBaseImage, processesWithCmdline, RecordingTerminal, runText } from "../support/builds.ts";
import { FakeGitHub } from "../support/FakeGitHub.ts";
import { GitServer } from "../support/GitServer.ts";
import { freePort, podman, startRegistry, TEST_IMAGE, uniquePrefix, type Registry } from "../support/podman.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";

const prefix = uniquePrefix("b");
const github = new FakeGitHub();
const git = new GitServer({ authorize: (token, repo) => github.tokenCovers(token, repo) });
const logs = new TestVictoriaLogs();
let registry: Registry;
let keyFile = "";
const dirs: Array<{ path: string; cleanup: () => void }> = [];
const BASE = `localhost/${prefix}-base:1`;
const SECRET = `app-secret-${prefix}`;
let shas: string[] = [];

beforeAll(async () => {
  registry = await startRegistry();
  await github.start();
  await git.start();
  await logs.start();
  // A base image of this run's own, so the working containers of these builds are recognisable.
  await makeBaseImage(BASE, prefix);
  const dockerfile = [
    `FROM ${BASE}`,
    // Declared so that a changed secret value rebuilds the step (the README's advice).
    "ARG secrets-hash",
    "RUN --mount=type=secret,id=APP_SECRET busybox sha256sum /run/secrets/APP_SECRET | busybox cut -d' ' -f1 > /secret.sha256",
    "COPY app.txt /app.txt",
    'CMD ["sh", "-c", "cat /app.txt /secret.sha256"]',
    "",
  ].join("\n");
  shas = git.createRepo("acme/app", [{ "Dockerfile": dockerfile, "app.txt": "version one\n" }, { "app.txt": "version two\n" }]);
  git.createRepo("acme/pathsecret", [{ "Dockerfile": `FROM ${BASE}\nRUN --mount=type=secret,id=PATH busybox cat /run/secrets/PATH > /path.txt\nCMD ["cat", "/path.txt"]\n` }]);
  git.createRepo("acme/broken", [{ "Dockerfile": `FROM ${BASE}\nRUN echo compiling && exit 3\n` }]);
  github.install("acme", ["acme/app", "acme/pathsecret", "acme/broken", "acme/slow"]);
  const d = tempDir("builder-podman-");
  dirs.push(d);
  keyFile = join(d.path, "app.pem");
  writeFileSync(keyFile, github.privateKeyPem, { mode: 0o600 });
}, 120_000);

afterAll(async () => {
  await cleanupBuildRun(BASE, prefix);
  await registry?.stop();
  await git.stop();
  await github.stop();
  await logs.stop();
  dirs.forEach((d) => d.cleanup());
}, 120_000);

function request(overrides: Partial<CiBuildRequest>): CiBuildRequest {
  return {
    repo: "acme/app",
    image: `${registry.host}/${prefix}/app:v1`,
    secretNames: ["APP_SECRET"],
    env: { APP_SECRET: SECRET },
    github: { appId: String(github.appId), privateKeyFile: keyFile, apiUrl: github.url, url: git.url },
    ...overrides,
  };
}

async function ciBuild(req: CiBuildRequest, shipper?: LogShipper, signal = new AbortController().signal) {
  const terminal = new RecordingTerminal();
  const plan = checkCiRequest(req);
  const run = runCiBuild({ plan, options: { ...DEFAULT_BUILDER_OPTIONS, builder: "podman", insecureRegistries: [registry.host] }, terminal, shipper, signal });
  return { plan, terminal, result: await run.catch((err: Error) => ({ err })) };
}

async function pullAndRun(reference: string): Promise<string> {
  await podman(["pull", "--tls-verify=false", reference]);
  return podman(["run", "--rm", reference]);
}

describe("podman builds from a private GitHub repository", () => {
  test("an exact commit is cloned with an installation token, built with the secret, pushed, removed locally, pulled back and run", async () => {
    const { result, terminal } = await ciBuild(request({ ref: shas[0]! }), new VictoriaLogsShipper({ endpoint: logs.url }));
    if ("err" in result) throw result.err;
    expect(result.commitSha).toBe(shas[0]!);
    expect(result.builder).toBe("podman");
    expect(result.reference).toBe(`${registry.host}/${prefix}/app@${result.digest}`);
    const inspected = JSON.parse(await runText(["skopeo", "inspect", "--tls-verify=false", `docker://${registry.host}/${prefix}/app:v1`]));
    expect(inspected.Digest).toBe(result.digest);
    // What remote podman falls back to (it ignores --digestfile): the registry's own answer.
    expect(await registryDigest(parseImageRef(`${registry.host}/${prefix}/app:v1`), true)).toBe(result.digest);
    // The pushed image and the build's intermediate images are gone from local storage.
    expect(terminal.lines).toContain(`removed ${registry.host}/${prefix}/app:v1 from local storage (it is in the registry)`);
    expect((await runProgram("podman", ["image", "exists", `${registry.host}/${prefix}/app:v1`], { allowFailure: true })).exitCode).toBe(1);
    expect(await imagesBuiltOn(BASE)).toEqual([]);
    const output = await pullAndRun(result.reference);
    expect(output.trim().split("\n")).toEqual(["version one", createHash("sha256").update(SECRET).digest("hex")]);
    expect(terminal.lines.join("\n")).not.toContain(SECRET);
  }, 120_000);

  test("the branch tip by default; build logs reach VictoriaLogs with the build's fields", async () => {
    const before = logs.lines.length;
    const shipper = new VictoriaLogsShipper({ endpoint: logs.url });
    const { result, plan, terminal } = await ciBuild(request({ image: `${registry.host}/${prefix}/app:tip` }), shipper);
    if ("err" in result) throw result.err;
    await shipper.close();
    expect(result.commitSha).toBe(shas[1]!);
    expect((await pullAndRun(result.reference)).trim().split("\n")[0]).toBe("version two");
    const shipped = logs.lines.slice(before).filter((l) => l.build_id === plan.buildId);
    expect(shipped.length).toBe(terminal.lines.length);
    expect(shipped.every((l) => l.log_type === "build")).toBe(true);
    expect(shipped.map((l) => l._msg)).toEqual(terminal.lines);
    expect(shipped.some((l) => l._msg.startsWith("STEP 3/5: RUN"))).toBe(true);
    expect(shipped.some((l) => l._msg.includes(SECRET))).toBe(false);
    expect(shipper.stats().dropped).toBe(0);
  }, 120_000);

  test("a changed secret value rebuilds the steps that use it", async () => {
    const image = `${registry.host}/${prefix}/app:rotated`;
    const first = await ciBuild(request({ ref: shas[0]!, image }));
    if ("err" in first.result) throw first.result.err;
    const rotated = `${SECRET}-rotated`;
    const second = await ciBuild(request({ ref: shas[0]!, image, env: { APP_SECRET: rotated } }));
    if ("err" in second.result) throw second.result.err;
    expect(second.result.digest).not.toBe(first.result.digest);
    expect((await pullAndRun(second.result.reference)).trim().split("\n")[1]).toBe(createHash("sha256").update(rotated).digest("hex"));
    const runStep = second.terminal.lines.findIndex((l) => l.startsWith("STEP 3/5: RUN"));
    expect(runStep).toBeGreaterThan(0);
    expect(second.terminal.lines[runStep + 1]).not.toStartWith("--> Using cache");
  }, 120_000);

  test("a secret named PATH reaches the RUN step and leaves podman's own PATH alone", async () => {
    const { result } = await ciBuild(request({ repo: "acme/pathsecret", image: `${registry.host}/${prefix}/pathsecret:v1`, secretNames: ["PATH"], env: { PATH: `/nonexistent-${prefix}` } }));
    if ("err" in result) throw result.err;
    expect((await pullAndRun(result.reference)).trim()).toBe(`/nonexistent-${prefix}`);
  }, 120_000);

  test("a log endpoint that is down neither blocks nor fails the build; the lost lines are counted", async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const shipper = new VictoriaLogsShipper({ endpoint: down, retry: { attempts: 2, baseMs: 50, maxMs: 100 }, flushTimeoutMs: 1000 });
    const { result, terminal } = await ciBuild(request({ image: `${registry.host}/${prefix}/app:nologs` }), shipper);
    if ("err" in result) throw result.err;
    await shipper.close();
    const stats = shipper.stats();
    expect(stats.sent).toBe(0);
    expect(stats.dropped + stats.pending).toBe(terminal.lines.length);
  }, 120_000);

  test("a failing Dockerfile fails the build step with podman's exit code and error", async () => {
    const { result, terminal } = await ciBuild(request({ repo: "acme/broken", image: `${registry.host}/${prefix}/broken:v1`, secretNames: [], env: {} }));
    const err = (result as { err: BuildStepError }).err;
    expect(err).toBeInstanceOf(BuildStepError);
    expect(err.step).toBe("build");
    expect(err.message).toMatch(/^podman build failed \(exit code \d+\): Error: .*RUN echo compiling && exit 3.*exit status 3/);
    expect(terminal.lines).toContain("compiling");
    expect(await podman(["images", "-q", `${registry.host}/${prefix}/broken:v1`])).toBe("");
  }, 120_000);

  test("cancelling mid-build stops the RUN step, and podman removes its working container", async () => {
    const seconds = 4000 + Math.floor(Math.random() * 900);
    git.createRepo("acme/slow", [{ "Dockerfile": `FROM ${BASE}\nRUN sleep ${seconds}\n` }]);
    const aborter = new AbortController();
    const running = ciBuild(request({ repo: "acme/slow", image: `${registry.host}/${prefix}/slow:v1`, secretNames: [], env: {} }), undefined, aborter.signal);
    const deadline = Date.now() + 60_000;
    while (processesWithCmdline(`sleep ${seconds}`).length === 0) {
      if (Date.now() > deadline) throw new Error("the RUN step never started");
      await Bun.sleep(100);
    }
    aborter.abort();
    const { result } = await running;
    expect((result as { err: unknown }).err).toBeInstanceOf(BuildCancelledError);
    expect(processesWithCmdline(`sleep ${seconds}`)).toEqual([]);
    const containers = (JSON.parse((await runText(["buildah", "containers", "--json"])) || "null") ?? []) as Array<{ imagename: string }>;
    expect(containers.filter((c) => c.imagename === BASE)).toEqual([]);
  }, 120_000);

  test("a private repository without an app is refused as an authentication problem", async () => {
    const { result } = await ciBuild(request({ github: { apiUrl: github.url, url: git.url }, image: `${registry.host}/${prefix}/app:noauth` }));
    const err = (result as { err: BuildStepError }).err;
    expect(err.step).toBe("clone");
    expect(err.message).toBe(`authentication to ${git.url}/acme/app.git failed: the repository is private or the token has no access to it`);
  }, 120_000);

  test("an unknown commit sha fails the clone naming the commit", async () => {
    const missing = "0badc0de".repeat(5);
    const { result } = await ciBuild(request({ ref: missing, image: `${registry.host}/${prefix}/app:missing` }));
    expect((result as { err: Error }).err.message).toBe(`commit ${missing} was not found in ${git.url}/acme/app.git`);
  }, 120_000);
});
