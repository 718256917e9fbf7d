import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../../lib/errors.ts";
import { BuildStepError } from "../buildErrors.ts";
import { secretsHash } from "../buildSecrets.ts";
import type { ImageRef } from "../imageRef.ts";
import { checkDigest, type BuildDriver, type BuildRequest } from "./BuildDriver.ts";
import { runTool } from "./runTool.ts";

/**
 * `podman build` arguments (pure). Dockerfile plans only: Railpack plans need BuildKit. The
 * `secrets-hash` build argument is passed when the Dockerfile declares `ARG secrets-hash` (buildah
 * warns about unused build arguments).
 */
export function podmanBuildArgs(request: Pick<BuildRequest, "plan" | "image" | "secrets">, dockerfileText = ""): string[] {
  const { plan } = request;
  if (plan.kind !== "dockerfile") throw new BuildStepError("build", "the podman builder can only build Dockerfiles");
  // --force-rm: a failed or cancelled step still removes its working container.
  const args = ["build", "--force-rm", "--layers", "--file", join(plan.dockerfileDir, plan.dockerfileName), "--tag", request.image.full];
  for (const name of Object.keys(request.secrets).sort()) args.push("--secret", `id=${name},env=${name}`);
  const hash = secretsHash(request.secrets);
  if (hash && /^\s*ARG\s+secrets-hash\b/im.test(dockerfileText)) args.push("--build-arg", `secrets-hash=${hash}`);
  args.push(plan.contextDir);
  return args;
}

export function podmanPushArgs(image: ImageRef, digestFile: string, insecure: boolean): string[] {
  return ["push", "--digestfile", digestFile, ...(insecure ? ["--tls-verify=false"] : []), image.full];
}

/** Builds with `podman build` (buildah) and pushes with `podman push`. */
export class PodmanBuildDriver implements BuildDriver {
  readonly name = "podman" as const;

  constructor(private readonly options: { podman?: string } = {}) {}

  async buildAndPush(request: BuildRequest): Promise<{ digest: string }> {
    const podman = this.options.podman ?? "podman";
    const startedAt = Date.now();
    const dockerfileText = request.plan.kind === "dockerfile" ? readFileSync(join(request.plan.dockerfileDir, request.plan.dockerfileName), "utf8") : "";
    const built = await runTool(podman, podmanBuildArgs(request, dockerfileText), {
      cwd: request.plan.contextDir,
      env: { ...request.secrets },
      signal: request.signal,
      timeoutMs: request.timeoutMs,
      onLine: request.log,
    });
    if (built.exitCode !== 0) {
      const error = [...built.tail].reverse().find((l) => /^Error:/.test(l)) ?? built.tail.slice(-3).join(" | ");
      throw new BuildStepError("build", `podman build failed (exit code ${built.exitCode}): ${error}`);
    }
    request.onPushing();
    const digestFile = join(request.workDir, "pushed-digest");
    const pushed = await runTool(podman, podmanPushArgs(request.image, digestFile, request.insecure), {
      signal: request.signal,
      timeoutMs: Math.max(60_000, request.timeoutMs - (Date.now() - startedAt)),
      onLine: request.log,
    });
    if (pushed.exitCode !== 0) {
      const error = [...pushed.tail].reverse().find((l) => /^Error:/.test(l)) ?? pushed.tail.slice(-3).join(" | ");
      throw new BuildStepError("push", `podman push of ${request.image.full} failed (exit code ${pushed.exitCode}): ${error}`);
    }
    if (!existsSync(digestFile)) throw new BuildStepError("push", "podman push wrote no digest file");
    try {
      return { digest: checkDigest(readFileSync(digestFile, "utf8"), "podman's digest file") };
    } catch (err) {
      throw new BuildStepError("push", errorMessage(err));
    }
  }
}
