import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../../lib/errors.ts";
import { BuildStepError } from "../buildErrors.ts";
import { secretEnv, secretEnvName, secretsHash } from "../buildSecrets.ts";
import { repositoryName } from "../imageRef.ts";
import { RAILPACK_PLAN_FILE } from "../plan/planBuild.ts";
import { checkDigest, type BuildDriver, type BuildRequest } from "./BuildDriver.ts";
import { pruneBuildCache } from "./buildkitCache.ts";
import { failureSummary, runTool } from "./runTool.ts";

export const DEFAULT_BUILDKIT_HOST = "tcp://127.0.0.1:1234";

export interface BuildKitInvocation {
  args: string[];
  /** Added to the inherited environment: the secret values (see secretEnvName), nothing else. */
  env: Record<string, string>;
  metadataFile: string;
}

/** The exact `buildctl` command line for one build (pure; see the README for each flag's reason). */
export function buildctlInvocation(request: Omit<BuildRequest, "log" | "onPushing" | "signal" | "timeoutMs">, addr: string): BuildKitInvocation {
  const { plan, image, secrets } = request;
  const metadataFile = join(request.workDir, "buildctl-metadata.json");
  const args = ["--addr", addr, "build", "--progress", "plain"];
  if (plan.kind === "dockerfile") {
    args.push("--frontend", "dockerfile.v0", "--local", `context=${plan.contextDir}`, "--local", `dockerfile=${plan.dockerfileDir}`, "--opt", `filename=${plan.dockerfileName}`);
  } else {
    args.push(
      "--frontend", "gateway.v0",
      "--opt", `source=${plan.frontendImage}`,
      "--local", `context=${plan.contextDir}`,
      "--local", `dockerfile=${plan.planDir}`,
      "--opt", `filename=${RAILPACK_PLAN_FILE}`,
    );
  }
  args.push("--opt", `build-arg:cache-key=${request.cacheKey}`);
  const hash = secretsHash(secrets);
  if (hash) args.push("--opt", `build-arg:secrets-hash=${hash}`);
  for (const name of Object.keys(secrets).sort()) args.push("--secret", `id=${name},env=${secretEnvName(name)}`);
  const insecure = request.insecure ? ",registry.insecure=true" : "";
  args.push("--output", `type=image,name=${image.full},push=true${insecure}`);
  if (request.registryCache) {
    const cacheRef = `${repositoryName(image)}:buildcache`;
    args.push("--import-cache", `type=registry,ref=${cacheRef}${insecure}`);
    args.push("--export-cache", `type=registry,ref=${cacheRef},mode=max${insecure}`);
  }
  args.push("--metadata-file", metadataFile);
  return { args, env: secretEnv(secrets), metadataFile };
}

/**
 * Builds with a BuildKit daemon through `buildctl` (build and push are one command), then prunes
 * the daemon's build cache down to `keepStorageMb` (0: never).
 */
export class BuildKitDriver implements BuildDriver {
  readonly name = "buildkit" as const;

  constructor(private readonly options: { addr: string; buildctl?: string; keepStorageMb?: number }) {}

  async buildAndPush(request: BuildRequest): Promise<{ digest: string }> {
    try {
      return await this.build(request);
    } finally {
      if (!request.signal.aborted) {
        await pruneBuildCache({ buildctl: this.buildctl, addr: this.options.addr, keepStorageMb: this.options.keepStorageMb ?? 0, log: request.log });
      }
    }
  }

  private get buildctl(): string {
    return this.options.buildctl ?? "buildctl";
  }

  private async build(request: BuildRequest): Promise<{ digest: string }> {
    const invocation = buildctlInvocation(request, this.options.addr);
    const baseImage = new BaseImageWatch();
    let pushing = false;
    const result = await runTool(this.buildctl, invocation.args, {
      cwd: request.plan.contextDir,
      env: invocation.env,
      signal: request.signal,
      timeoutMs: request.timeoutMs,
      onLine: (line) => {
        if (!pushing && /^#\d+ pushing (layers|manifest)/.test(line)) {
          pushing = true;
          request.onPushing();
        }
        baseImage.see(line);
        request.log(line);
      },
    });
    if (result.exitCode !== 0) {
      const step = pushing ? "push" : "build";
      throw new BuildStepError(step, baseImage.failure ?? `buildctl build failed (exit code ${result.exitCode}): ${summarise(result.tail)}`);
    }
    if (!pushing) request.onPushing();
    if (!existsSync(invocation.metadataFile)) throw new BuildStepError("push", "buildctl wrote no metadata file, so the pushed digest is unknown");
    try {
      const metadata = JSON.parse(readFileSync(invocation.metadataFile, "utf8")) as Record<string, unknown>;
      return { digest: checkDigest(metadata["containerimage.digest"], "the buildctl metadata file") };
    } catch (err) {
      throw new BuildStepError("push", errorMessage(err));
    }
  }
}

/** The lines that explain a failure: BuildKit's `error:` line first, else the last lines. */
export function summarise(tail: string[]): string {
  return failureSummary(tail, /^error:|ERROR:/);
}

/**
 * Watches `--progress plain` output for a FROM image that cannot be pulled: BuildKit reports it
 * on the image's `load metadata` step, and its final error line does not say it was the base image.
 */
export class BaseImageWatch {
  private readonly steps = new Map<string, string>();
  failure?: string;

  see(line: string): void {
    const metadata = /^#(\d+) \[internal\] load metadata for (\S+)$/.exec(line);
    if (metadata) {
      this.steps.set(metadata[1]!, metadata[2]!);
      return;
    }
    const error = /^#(\d+) ERROR: (.*)$/.exec(line);
    const image = error ? this.steps.get(error[1]!) : undefined;
    if (!image || this.failure) return;
    const reason = error![2]!.startsWith(`${image}: `) ? error![2]!.slice(image.length + 2) : error![2]!;
    this.failure = `the base image ${image} cannot be pulled: ${reason}`;
  }
}
