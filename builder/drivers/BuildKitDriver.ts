import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../../lib/errors.ts";
import { BuildStepError } from "../buildErrors.ts";
import { secretEnv, secretEnvName, secretsHash } from "../buildSecrets.ts";
import { repositoryName } from "../imageRef.ts";
import { RAILPACK_PLAN_FILE } from "../plan/planBuild.ts";
import { checkDigest, type BuildDriver, type BuildRequest } from "./BuildDriver.ts";
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

/** Builds with a BuildKit daemon through `buildctl` (build and push are one command). */
export class BuildKitDriver implements BuildDriver {
  readonly name = "buildkit" as const;

  constructor(private readonly options: { addr: string; buildctl?: string }) {}

  async buildAndPush(request: BuildRequest): Promise<{ digest: string }> {
    const invocation = buildctlInvocation(request, this.options.addr);
    let pushing = false;
    const result = await runTool(this.options.buildctl ?? "buildctl", invocation.args, {
      cwd: request.plan.contextDir,
      env: invocation.env,
      signal: request.signal,
      timeoutMs: request.timeoutMs,
      onLine: (line) => {
        if (!pushing && /^#\d+ pushing (layers|manifest)/.test(line)) {
          pushing = true;
          request.onPushing();
        }
        request.log(line);
      },
    });
    if (result.exitCode !== 0) {
      const step = pushing ? "push" : "build";
      throw new BuildStepError(step, `buildctl build failed (exit code ${result.exitCode}): ${summarise(result.tail)}`);
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
