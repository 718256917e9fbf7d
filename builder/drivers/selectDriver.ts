import { which } from "../../lib/exec.ts";
import { AgentError } from "../../lib/errors.ts";
import type { BuildDriver, BuilderName } from "./BuildDriver.ts";
import { BuildKitDriver } from "./BuildKitDriver.ts";
import { buildkitAnswers } from "./buildkitProbe.ts";
import { PodmanBuildDriver } from "./PodmanBuildDriver.ts";

export type BuilderChoice = BuilderName | "auto";

export interface DriverChoice {
  builder: BuilderChoice;
  buildkitHost: string;
  /** BuildKit cache bound after each build (MB; 0 never prunes). */
  buildkitKeepStorageMb?: number;
}

/** The driver asked for, or with `auto`: BuildKit when its daemon answers, else podman. */
export async function selectDriver({ builder: choice, buildkitHost, buildkitKeepStorageMb }: DriverChoice): Promise<BuildDriver> {
  const buildkit = () => new BuildKitDriver({ addr: buildkitHost, keepStorageMb: buildkitKeepStorageMb ?? 0 });
  if (choice === "buildkit") {
    if (!(await which("buildctl"))) {
      throw new AgentError("--builder buildkit: buildctl is not installed", { hint: "install BuildKit (buildctl and buildkitd), or use --builder podman" });
    }
    return buildkit();
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
  return buildkit();
}
