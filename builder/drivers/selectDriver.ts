import { run, which } from "../../lib/exec.ts";
import { AgentError } from "../../lib/errors.ts";
import type { BuildDriver, BuilderName } from "./BuildDriver.ts";
import { BuildKitDriver } from "./BuildKitDriver.ts";
import { PodmanBuildDriver } from "./PodmanBuildDriver.ts";

export type BuilderChoice = BuilderName | "auto";

/** True when a BuildKit daemon answers at `addr` (`buildctl debug workers`). */
export async function buildkitAnswers(addr: string, timeoutMs = 5000): Promise<boolean> {
  if (!(await which("buildctl"))) return false;
  try {
    const res = await run("buildctl", ["--addr", addr, "debug", "workers"], { timeoutMs, allowFailure: true });
    return res.exitCode === 0;
  } catch {
    return false;
  }
}

/** The driver asked for, or with `auto`: BuildKit when its daemon answers, else podman. */
export async function selectDriver(choice: BuilderChoice, buildkitHost: string): Promise<BuildDriver> {
  if (choice === "buildkit") {
    if (!(await which("buildctl"))) {
      throw new AgentError("--builder buildkit: buildctl is not installed", { hint: "install BuildKit (buildctl and buildkitd), or use --builder podman" });
    }
    return new BuildKitDriver({ addr: buildkitHost });
  }
  if (choice === "podman" || !(await buildkitAnswers(buildkitHost))) {
    if (!(await which("podman"))) {
      throw new AgentError(
        choice === "podman" ? "--builder podman: podman is not installed" : `no builder available: no BuildKit daemon answers at ${buildkitHost} and podman is not installed`,
        { hint: "install podman (apt-get install podman buildah), or run buildkitd and set BUILDKIT_HOST" },
      );
    }
    return new PodmanBuildDriver();
  }
  return new BuildKitDriver({ addr: buildkitHost });
}
