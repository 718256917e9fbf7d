/**
 * The BuildKit driver against a real buildkitd (v0.11.6 from ../shared/tools, one per run with its
 * own root) and a real registry: build and push, secrets, cache, prune, failures, driver
 * selection and the doctor check. Railpack plans, which cannot run here, are in
 * builderRailpack.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BuildStepError } from "../../builder/buildErrors.ts";
import { BuildLog } from "../../builder/BuildLog.ts";
import { DEFAULT_BUILDER_OPTIONS, type BuilderOptions } from "../../builder/builderOptions.ts";
import { buildctlInvocation } from "../../builder/drivers/BuildKitDriver.ts";
import { selectDriver } from "../../builder/drivers/selectDriver.ts";
import { parseImageRef } from "../../builder/imageRef.ts";
import { runBuild, type BuildJob } from "../../builder/runBuild.ts";
import { buildkitCheck } from "../../lib/doctor/buildkitCheck.ts";
import { VictoriaLogsShipper } from "../../lib/logs/VictoriaLogsShipper.ts";
import { tempDir } from "../support/agentBinary.ts";
import { BUILDKIT_BIN, cacheSizeBytes, pushBaseImage, startBuildkitd, type Buildkitd } from "../support/buildkit.ts";
import { RecordingTerminal, removeImagesNamed, runText, writeSource } from "../support/builds.ts";
import { doctorContext } from "../support/doctorFixtures.ts";
import { freePort, podman, processesWhere, startRegistry, uniquePrefix, type Registry } from "../support/podman.ts";
import { TestVictoriaLogs } from "../support/TestVictoriaLogs.ts";

const prefix = uniquePrefix("k");
const SECRET = `bk-secret-${prefix}-${Math.random().toString(36).slice(2)}`;
const ROTATED = `${SECRET}-rotated-value`;
const savedPath = process.env.PATH;
const logs = new TestVictoriaLogs();
const dirs: Array<{ path: string; cleanup: () => void }> = [];
const daemons: Buildkitd[] = [];
let registry: Registry;
let daemon: Buildkitd;
let base = "";

function dir(): string {
  const d = tempDir("builder-bk-");
  dirs.push(d);
  return d.path;
}

async function daemonFor(): Promise<Buildkitd> {
  const d = await startBuildkitd({ insecureRegistries: [registry.host] });
  daemons.push(d);
  return d;
}

beforeAll(async () => {
  process.env.PATH = `${BUILDKIT_BIN}:${savedPath}`;
  registry = await startRegistry();
  await logs.start();
  daemon = await daemonFor();
  base = await pushBaseImage(registry.host, `${prefix}/busybox:latest`);
}, 120_000);

afterAll(async () => {
  process.env.PATH = savedPath;
  for (const d of daemons) await d.stop();
  await removeImagesNamed(prefix);
  await registry?.stop();
  await logs.stop();
  dirs.forEach((d) => d.cleanup());
}, 120_000);

function source(files: Record<string, string>): string {
  return writeSource(dir(), files);
}

interface BuildRun {
  src: string;
  image: string;
  secrets?: Record<string, string>;
  cacheKey?: string;
  on?: Buildkitd;
  options?: Partial<BuilderOptions>;
  shipper?: VictoriaLogsShipper;
}

async function build(run: BuildRun) {
  const terminal = new RecordingTerminal();
  const statuses: string[] = [];
  const workDir = dir();
  const job: BuildJob = { source: { kind: "dir", path: run.src }, image: run.image, secrets: run.secrets ?? {}, cacheKey: run.cacheKey ?? "svc-a" };
  const options: BuilderOptions = { ...DEFAULT_BUILDER_OPTIONS, builder: "buildkit", buildkitHost: (run.on ?? daemon).addr, insecureRegistries: [registry.host], buildkitKeepStorageMb: 0, ...run.options };
  const result = await runBuild(job, { workDir, options, log: new BuildLog({ build_id: `b-${prefix}` }, terminal, run.shipper), signal: new AbortController().signal, onStatus: async (s) => void statuses.push(s) }).catch(
    (err: Error) => ({ err }),
  );
  return { result, lines: terminal.lines, statuses, workDir };
}

function built<T>(result: T | { err: Error }): T {
  if (result && typeof result === "object" && "err" in result) throw result.err;
  return result as T;
}

/** Whether BuildKit served the step whose progress title contains `title` from its cache. */
function stepCached(lines: string[], title: string): boolean {
  const step = lines.map((l) => /^#(\d+) \[.*\] (.*)$/.exec(l)).find((m) => m?.[2]?.includes(title))?.[1];
  if (!step) throw new Error(`no build step titled ${JSON.stringify(title)} in:\n${lines.join("\n")}`);
  return lines.includes(`#${step} CACHED`);
}

async function catFromImage(reference: string, file: string): Promise<string> {
  return (await podman(["run", "--rm", "--tls-verify=false", reference, "cat", file])).trim();
}

describe("BuildKit driver on a real buildkitd", () => {
  test("a Dockerfile is built and pushed; the digest comes from --metadata-file and is what the registry holds", async () => {
    const src = source({ "Dockerfile": `FROM ${base}\nCOPY app.txt /app.txt\nRUN busybox wc -c /app.txt > /app.size\n`, "app.txt": `hello ${prefix}\n` });
    const image = `${registry.host}/${prefix}/app:v1`;
    const { result, lines, statuses, workDir } = await build({ src, image });
    const done = built(result);
    const metadata = JSON.parse(readFileSync(join(workDir, "buildctl-metadata.json"), "utf8"));
    expect(done.digest).toBe(metadata["containerimage.digest"]);
    expect(done.builder).toBe("buildkit");
    expect(done.reference).toBe(`${registry.host}/${prefix}/app@${done.digest}`);
    const inspected = JSON.parse(await runText(["skopeo", "inspect", "--tls-verify=false", `docker://${image}`]));
    expect(inspected.Digest).toBe(done.digest);
    expect(statuses).toEqual(["cloning", "building", "pushing"]);
    expect(lines.some((l) => /^#\d+ pushing layers/.test(l))).toBe(true);
    expect(await catFromImage(done.reference, "/app.txt")).toBe(`hello ${prefix}`);
  }, 120_000);

  test("a build secret reaches its RUN step and appears in no log line, shipped line, argv, daemon log or image", async () => {
    const src = source({ "Dockerfile": `FROM ${base}\nARG secrets-hash\nRUN --mount=type=secret,id=APP_SECRET busybox wc -c < /run/secrets/APP_SECRET > /secret.len && echo secret-step-${prefix}\n` });
    const image = `${registry.host}/${prefix}/secret:v1`;
    const shipper = new VictoriaLogsShipper({ endpoint: logs.url });
    const argvWithSecret: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const pid of processesWhere(({ argv }) => argv.join(" ").includes(SECRET))) argvWithSecret.push(String(pid));
        await Bun.sleep(20);
      }
    })();
    const { result, lines, workDir } = await build({ src, image, secrets: { APP_SECRET: SECRET }, shipper });
    watching = false;
    await watcher;
    await shipper.close();
    const done = built(result);
    expect(await catFromImage(done.reference, "/secret.len")).toBe(String(SECRET.length));
    expect(lines.some((l) => l.includes(`secret-step-${prefix}`))).toBe(true);
    const shipped = logs.lines.filter((l) => l.build_id === `b-${prefix}`);
    expect(shipped.length).toBeGreaterThan(5);
    expect(argvWithSecret).toEqual([]);
    const invocation = buildctlInvocation({ plan: { kind: "dockerfile", contextDir: src, dockerfileDir: src, dockerfileName: "Dockerfile" }, image: parseImageRef(image), secrets: { APP_SECRET: SECRET }, cacheKey: "svc-a", insecure: true, registryCache: false, workDir }, daemon.addr);
    const config = await runText(["skopeo", "inspect", "--config", "--tls-verify=false", `docker://${image}`]);
    for (const text of [lines.join("\n"), JSON.stringify(shipped), invocation.args.join(" "), readFileSync(daemon.logFile, "utf8"), config]) expect(text).not.toContain(SECRET);
  }, 120_000);

  test("a rotated secret rebuilds the steps that use it; an unchanged one is served from the cache", async () => {
    const src = source({ "Dockerfile": `FROM ${base}\nARG secrets-hash\nRUN --mount=type=secret,id=APP_SECRET busybox wc -c < /run/secrets/APP_SECRET > /secret.len && echo rotation-${prefix}\n` });
    const image = `${registry.host}/${prefix}/rotate:v1`;
    const first = await build({ src, image, secrets: { APP_SECRET: SECRET } });
    built(first.result);
    expect(stepCached(first.lines, `rotation-${prefix}`)).toBe(false);
    const same = await build({ src, image, secrets: { APP_SECRET: SECRET } });
    built(same.result);
    expect(stepCached(same.lines, `rotation-${prefix}`)).toBe(true);
    const rotated = await build({ src, image, secrets: { APP_SECRET: ROTATED } });
    const done = built(rotated.result);
    expect(stepCached(rotated.lines, `rotation-${prefix}`)).toBe(false);
    expect(await catFromImage(done.reference, "/secret.len")).toBe(String(ROTATED.length));
  }, 120_000);

  test("a failing RUN step fails the build with BuildKit's error line: the command and its exit code", async () => {
    const src = source({ "Dockerfile": `FROM ${base}\nRUN echo compiling-${prefix} && exit 3\n` });
    const { result, lines, statuses } = await build({ src, image: `${registry.host}/${prefix}/broken:v1` });
    const err = (result as { err: BuildStepError }).err;
    expect(err).toBeInstanceOf(BuildStepError);
    expect(err.step).toBe("build");
    expect(err.message).toMatch(new RegExp(`^buildctl build failed \\(exit code 1\\): .*echo compiling-${prefix} && exit 3.* exit code: 3`));
    expect(lines.some((l) => l.endsWith(`compiling-${prefix}`))).toBe(true);
    expect(statuses).toEqual(["cloning", "building"]);
  }, 120_000);

  test("a base image that cannot be pulled fails with one line naming it", async () => {
    const missing = `${registry.host}/${prefix}/no-such-base:1`;
    const src = source({ "Dockerfile": `FROM ${missing}\nRUN true\n` });
    const { result } = await build({ src, image: `${registry.host}/${prefix}/orphan:v1` });
    const err = (result as { err: BuildStepError }).err;
    expect(err).toBeInstanceOf(BuildStepError);
    expect(err.message.split("\n")).toHaveLength(1);
    expect(err.message).toContain(missing);
    expect(err.message).toBe(`the base image ${missing} cannot be pulled: not found`);
  }, 120_000);

  test("--registry-cache: a build on an empty daemon imports the cache another one exported; another service's cache key shares nothing", async () => {
    const dockerfile = `FROM ${base}\nARG cache-key\nCOPY app.txt /app.txt\nRUN busybox sha256sum /app.txt > /app.sum && echo cache-step-${prefix}\n`;
    const src = source({ "Dockerfile": dockerfile, "app.txt": `cache ${prefix}\n` });
    const options = { registryCache: true };
    const exported = await build({ src, image: `${registry.host}/${prefix}/svc-a:1`, cacheKey: "svc-a", options });
    built(exported.result);
    expect(stepCached(exported.lines, `cache-step-${prefix}`)).toBe(false);
    const tags = JSON.parse(await runText(["skopeo", "list-tags", "--tls-verify=false", `docker://${registry.host}/${prefix}/svc-a`])).Tags;
    expect(tags).toContain("buildcache");

    const empty = await daemonFor();
    const imported = await build({ src, image: `${registry.host}/${prefix}/svc-a:2`, cacheKey: "svc-a", on: empty, options });
    built(imported.result);
    expect(stepCached(imported.lines, `cache-step-${prefix}`)).toBe(true);

    // Service B: the same source, its own repository (so its own cache ref) and cache key.
    const other = await build({ src, image: `${registry.host}/${prefix}/svc-b:1`, cacheKey: "svc-b", on: await daemonFor(), options });
    built(other.result);
    expect(stepCached(other.lines, `cache-step-${prefix}`)).toBe(false);
    // And on the daemon that holds service A's layers, service B's key still misses them.
    const sameDaemon = await build({ src, image: `${registry.host}/${prefix}/svc-b:2`, cacheKey: "svc-b-2", on: empty, options });
    built(sameDaemon.result);
    expect(stepCached(sameDaemon.lines, `cache-step-${prefix}`)).toBe(false);
  }, 180_000);

  test("--buildkit-keep-storage prunes the build cache down to the bound after a build", async () => {
    const own = await daemonFor();
    const dockerfile = (n: number) => `FROM ${base}\nRUN busybox dd if=/dev/urandom of=/blob${n} bs=1M count=8 2>/dev/null && echo blob-${n}-${prefix}\n`;
    built((await build({ src: source({ "Dockerfile": dockerfile(1) }), image: `${registry.host}/${prefix}/blob:1`, on: own })).result);
    const before = await cacheSizeBytes(own.addr);
    expect(before).toBeGreaterThan(8_000_000);
    const pruned = await build({ src: source({ "Dockerfile": dockerfile(2) }), image: `${registry.host}/${prefix}/blob:2`, on: own, options: { buildkitKeepStorageMb: 12 } });
    built(pruned.result);
    const after = await cacheSizeBytes(own.addr);
    // A bound, not a wipe: what fits under it stays.
    expect(after).toBeLessThanOrEqual(12_000_000);
    expect(after).toBeGreaterThan(0);
    expect(pruned.lines.some((l) => /^BuildKit cache pruned to at most 12 MB \(freed \S+\)$/.test(l))).toBe(true);
    console.log(`build cache: ${before} bytes after the first build, ${after} bytes after the second with --buildkit-keep-storage 12`);
  }, 120_000);
});

describe("builder selection and agent doctor with a real daemon", () => {
  test("auto picks BuildKit while its daemon answers and podman once it is gone; doctor says which, with the version", async () => {
    const d = await daemonFor();
    const root = dir();
    const check = (builder: string) => buildkitCheck.run(doctorContext(root, { flags: { builder, buildkitHost: d.addr } }));
    expect((await selectDriver({ builder: "auto", buildkitHost: d.addr })).name).toBe("buildkit");
    const up = await check("auto");
    expect(up.status).toBe("ok");
    expect(up.detail).toBe(`BuildKit v0.11.6 answers at ${d.addr} (1 worker)`);

    await d.stop();
    daemons.splice(daemons.indexOf(d), 1);
    expect((await selectDriver({ builder: "auto", buildkitHost: d.addr })).name).toBe("podman");
    const down = await check("auto");
    expect(down.status).toBe("warn");
    expect(down.detail).toMatch(new RegExp(`^no BuildKit daemon answers at ${d.addr} \\(.*connection refused.*\\): builds use podman \\(--builder auto\\)$`));
    expect((await check("buildkit")).status).toBe("fail");
    expect((await check("podman")).status).toBe("skip");
  }, 120_000);

  test("an address where nothing listens: auto falls back to podman", async () => {
    expect((await selectDriver({ builder: "auto", buildkitHost: `tcp://127.0.0.1:${await freePort()}` })).name).toBe("podman");
  }, 60_000);
});
