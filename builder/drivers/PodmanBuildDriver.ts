import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../../lib/errors.ts";
import { BuildStepError } from "../buildErrors.ts";
import { secretEnv, secretEnvName, secretsHash } from "../buildSecrets.ts";
import type { ImageRef } from "../imageRef.ts";
import { checkDigest, type BuildDriver, type BuildRequest } from "./BuildDriver.ts";
import { registryDigest } from "./registryDigest.ts";
import { failureSummary, runTool } from "./runTool.ts";

/**
 * `podman build` arguments (pure). Dockerfile plans only: Railpack plans need BuildKit. The
 * `secrets-hash` build argument is passed when the Dockerfile declares `ARG secrets-hash` (buildah
 * warns about unused build arguments).
 */
export function podmanBuildArgs(request: Pick<BuildRequest, "plan" | "image" | "secrets">, dockerfileText = "", secretFiles?: Record<string, string>): string[] {
  const { plan } = request;
  if (plan.kind !== "dockerfile") throw new BuildStepError("build", "the podman builder can only build Dockerfiles");
  // --force-rm: a failed or cancelled step still removes its working container.
  const args = ["build", "--force-rm", "--layers", "--file", join(plan.dockerfileDir, plan.dockerfileName), "--tag", request.image.full];
  for (const name of Object.keys(request.secrets).sort()) {
    args.push("--secret", secretFiles?.[name] ? `id=${name},src=${secretFiles[name]}` : `id=${name},env=${secretEnvName(name)}`);
  }
  const hash = secretsHash(request.secrets);
  if (hash && /^\s*ARG\s+secrets-hash\b/im.test(dockerfileText)) args.push("--build-arg", `secrets-hash=${hash}`);
  args.push(plan.contextDir);
  return args;
}

export function podmanPushArgs(image: ImageRef, digestFile: string, insecure: boolean): string[] {
  return ["push", "--digestfile", digestFile, ...(insecure ? ["--tls-verify=false"] : []), image.full];
}

/** True when the podman CLI talks to a podman service instead of the local store. */
export function podmanIsRemote(env: Record<string, string | undefined> = process.env): boolean {
  return !!(env.CONTAINER_HOST || env.CONTAINER_CONNECTION);
}

/**
 * Builds with `podman build` (buildah) and pushes with `podman push`. With a remote podman
 * (CONTAINER_HOST), which passes no `env=` secret into RUN steps and ignores --digestfile (podman
 * 4.3), secrets go as 0600 files in the build folder, deleted right after the build step, and the
 * digest is asked from the registry.
 */
export class PodmanBuildDriver implements BuildDriver {
  readonly name = "podman" as const;

  constructor(private readonly options: { podman?: string; remote?: boolean } = {}) {}

  async buildAndPush(request: BuildRequest): Promise<{ digest: string }> {
    const podman = this.options.podman ?? "podman";
    const startedAt = Date.now();
    const dockerfileText = request.plan.kind === "dockerfile" ? readFileSync(join(request.plan.dockerfileDir, request.plan.dockerfileName), "utf8") : "";
    const remote = this.options.remote ?? podmanIsRemote();
    const secretDir = join(request.workDir, "secrets");
    const secretFiles = remote && Object.keys(request.secrets).length > 0 ? writeSecretFiles(secretDir, request.secrets) : undefined;
    let built;
    try {
      built = await runTool(podman, podmanBuildArgs(request, dockerfileText, secretFiles), {
        cwd: request.plan.contextDir,
        env: secretFiles ? {} : secretEnv(request.secrets),
        signal: request.signal,
        timeoutMs: request.timeoutMs,
        onLine: request.log,
      });
    } finally {
      if (secretFiles) rmSync(secretDir, { recursive: true, force: true });
    }
    if (built.exitCode !== 0) {
      throw new BuildStepError("build", `podman build failed (exit code ${built.exitCode}): ${failureSummary(built.tail, /^Error:/)}`);
    }
    request.onPushing();
    const digestFile = join(request.workDir, "pushed-digest");
    const pushed = await runTool(podman, podmanPushArgs(request.image, digestFile, request.insecure), {
      signal: request.signal,
      timeoutMs: Math.max(60_000, request.timeoutMs - (Date.now() - startedAt)),
      onLine: request.log,
    });
    if (pushed.exitCode !== 0) {
      throw new BuildStepError("push", `podman push of ${request.image.full} failed (exit code ${pushed.exitCode}): ${failureSummary(pushed.tail, /^Error:/)}`);
    }
    let digest: string;
    try {
      if (existsSync(digestFile)) digest = checkDigest(readFileSync(digestFile, "utf8"), "podman's digest file");
      else {
        request.log("podman wrote no digest file (remote podman); asking the registry for the digest");
        digest = checkDigest(await registryDigest(request.image, request.insecure), "the registry's answer");
      }
    } catch (err) {
      throw new BuildStepError("push", errorMessage(err));
    }
    await this.removeLocalImage(podman, request);
    return { digest };
  }

  /**
   * The registry holds the pushed image; the node's copy would only fill its disk (podman also
   * drops the build's intermediate layer images that nothing else uses). Never fails the build.
   */
  private async removeLocalImage(podman: string, request: BuildRequest): Promise<void> {
    const removed = await runTool(podman, ["rmi", request.image.full], { signal: request.signal, timeoutMs: 60_000, onLine: () => {} }).catch((err: unknown) => ({ exitCode: -1, tail: [errorMessage(err)] }));
    if (removed.exitCode === 0) request.log(`removed ${request.image.full} from local storage (it is in the registry)`);
    else request.log(`warning: could not remove ${request.image.full} from local storage: ${failureSummary(removed.tail, /^Error:/)}`);
  }
}

function writeSecretFiles(dir: string, secrets: Record<string, string>): Record<string, string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: Record<string, string> = {};
  for (const [name, value] of Object.entries(secrets)) {
    files[name] = join(dir, name);
    writeFileSync(files[name], value, { mode: 0o600 });
  }
  return files;
}
