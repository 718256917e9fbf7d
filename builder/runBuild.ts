import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { simpleGit } from "simple-git";
import { AgentError, InvalidInputError } from "../lib/errors.ts";
import { BuildCancelledError } from "./buildErrors.ts";
import type { BuildLog } from "./BuildLog.ts";
import { checkBuildSecrets } from "./buildSecrets.ts";
import type { BuilderOptions } from "./builderOptions.ts";
import type { BuildDriver, BuilderName } from "./drivers/BuildDriver.ts";
import { selectDriver } from "./drivers/selectDriver.ts";
import { isInsecureRegistry, parseImageRef, repositoryName } from "./imageRef.ts";
import { planBuild } from "./plan/planBuild.ts";
import { cloneSource } from "./source/cloneSource.ts";
import type { GitRef, GitRemote } from "./source/gitRemote.ts";

export type BuildSource = { kind: "git"; remote: GitRemote; ref: GitRef } | { kind: "dir"; path: string };

/** One build: where the code is, what to build it into. */
export interface BuildJob {
  source: BuildSource;
  /** Push target `REGISTRY/NAME:TAG`. */
  image: string;
  /** Dockerfile path inside the source; default `Dockerfile`, Railpack when absent. */
  dockerfile?: string;
  secrets: Record<string, string>;
  /** Cache isolation key (the service id in control-plane mode). */
  cacheKey: string;
}

/** Status changes the control plane hears about; awaited, and may throw BuildCancelledError. */
export type BuildStatusHook = (status: "cloning" | "building" | "pushing") => Promise<void>;

export interface BuildContext {
  /** Scratch folder of this build (the caller creates and removes it). */
  workDir: string;
  options: BuilderOptions;
  log: BuildLog;
  signal: AbortSignal;
  onStatus?: BuildStatusHook;
  /** A driver chosen in advance; otherwise from options.builder. */
  driver?: BuildDriver;
}

export interface BuildResult {
  /** The pushed `REGISTRY/NAME:TAG`. */
  image: string;
  digest: string;
  /** `REGISTRY/NAME@sha256:…`: the exact image, for deploys. */
  reference: string;
  commitSha?: string;
  builder: BuilderName;
  durationMs: number;
}

/** clone → plan → build → push, streaming every line to the build log. */
export async function runBuild(job: BuildJob, ctx: BuildContext): Promise<BuildResult> {
  const startedAt = Date.now();
  const deadline = startedAt + ctx.options.timeoutMs;
  const remaining = () => {
    const ms = deadline - Date.now();
    if (ms <= 0) throw new AgentError(`the build took longer than ${Math.round(ctx.options.timeoutMs / 1000)} s (--build-timeout)`);
    return ms;
  };
  const image = parseImageRef(job.image);
  const secrets = checkBuildSecrets(job.secrets);
  const cacheKey = job.cacheKey.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 128) || "default";
  const checkCancelled = () => {
    if (ctx.signal.aborted) throw new BuildCancelledError();
  };

  await ctx.onStatus?.("cloning");
  ctx.log.phase("clone");
  let contextDir: string;
  let commitSha: string | undefined;
  if (job.source.kind === "git") {
    const { remote, ref } = job.source;
    const what = ref.commit ? `commit ${ref.commit}${ref.branch ? ` (${ref.branch})` : ""}` : `the tip of ${ref.branch}`;
    ctx.log.line(`cloning ${what} from ${remote.url}`);
    contextDir = join(ctx.workDir, "src");
    const cloned = await cloneSource({ remote, ref, dir: contextDir, log: ctx.log.for("clone"), signal: ctx.signal, idleTimeoutMs: Math.min(remaining(), 10 * 60_000) });
    commitSha = cloned.commitSha;
  } else {
    contextDir = resolve(job.source.path);
    if (!existsSync(contextDir) || !statSync(contextDir).isDirectory()) throw new InvalidInputError(`--source: ${job.source.path} is not a folder`);
    commitSha = await headOf(contextDir);
    ctx.log.line(`building the local folder ${contextDir}${commitSha ? ` at ${commitSha}` : ""}`);
  }
  checkCancelled();

  const driver = ctx.driver ?? (await selectDriver(ctx.options));
  ctx.log.phase("plan");
  ctx.log.line(`builder: ${driver.name}`);
  const plan = await planBuild({
    contextDir,
    workDir: ctx.workDir,
    dockerfile: job.dockerfile,
    secrets,
    railpackFrontend: ctx.options.railpackFrontend,
    driver: driver.name,
    log: ctx.log.for("plan"),
    signal: ctx.signal,
    timeoutMs: remaining(),
  });
  checkCancelled();

  await ctx.onStatus?.("building");
  ctx.log.phase("build");
  ctx.log.line(`building ${image.full}`);
  let pushing: Promise<void> | undefined;
  const { digest } = await driver.buildAndPush({
    plan,
    image,
    secrets,
    cacheKey,
    insecure: isInsecureRegistry(image.registry, ctx.options.insecureRegistries),
    registryCache: ctx.options.registryCache,
    workDir: ctx.workDir,
    log: (line) => ctx.log.line(line),
    onPushing: () => {
      ctx.log.phase("push");
      pushing = ctx.onStatus?.("pushing");
      // A rejection here is a cancellation; the cancel watcher aborts the push, and it is rethrown below.
      pushing?.catch(() => {});
    },
    signal: ctx.signal,
    timeoutMs: remaining(),
  });
  await pushing;
  checkCancelled();
  const reference = `${repositoryName(image)}@${digest}`;
  ctx.log.line(`pushed ${image.full} (${digest})`, "push");
  return { image: image.full, digest, reference, ...(commitSha ? { commitSha } : {}), builder: driver.name, durationMs: Date.now() - startedAt };
}

/** The checked-out commit of a local folder, when it is a git work tree. */
async function headOf(dir: string): Promise<string | undefined> {
  try {
    return (await simpleGit({ baseDir: dir }).revparse(["HEAD"])).trim() || undefined;
  } catch {
    return undefined;
  }
}

