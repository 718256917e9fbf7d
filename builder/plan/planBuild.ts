import { existsSync, mkdirSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { run, which } from "../../lib/exec.ts";
import { UsageError, errorMessage } from "../../lib/errors.ts";
import { BuildStepError } from "../buildErrors.ts";
import { runTool } from "../drivers/runTool.ts";

export const RAILPACK_FRONTEND_IMAGE = "ghcr.io/railwayapp/railpack-frontend";
export const RAILPACK_PLAN_FILE = "railpack-plan.json";
export const RAILPACK_INFO_FILE = "railpack-info.json";

export type BuildPlan =
  | {
      kind: "dockerfile";
      contextDir: string;
      /** Folder holding the Dockerfile, and its file name (BuildKit's `--local dockerfile` + `filename`). */
      dockerfileDir: string;
      dockerfileName: string;
    }
  | {
      kind: "railpack";
      contextDir: string;
      /** Folder holding railpack-plan.json and railpack-info.json (outside the checkout). */
      planDir: string;
      railpackVersion: string;
      frontendImage: string;
    };

export interface PlanOptions {
  contextDir: string;
  /** Scratch folder of this build for the Railpack plan files. */
  workDir: string;
  /** Dockerfile path relative to the context; when given it must exist. */
  dockerfile?: string;
  secrets: Record<string, string>;
  /** Frontend image override; default: the frontend of the installed Railpack CLI's version. */
  railpackFrontend?: string;
  /** Railpack plans need BuildKit; the podman driver cannot build them. */
  driver: "buildkit" | "podman";
  log: (line: string) => void;
  signal: AbortSignal;
  timeoutMs: number;
}

/** The Dockerfile path inside the context, refusing paths that leave it. */
export function dockerfileLocation(contextDir: string, path: string): { dir: string; name: string; full: string } {
  if (isAbsolute(path)) throw new UsageError(`--dockerfile: must be a path inside the source (got ${JSON.stringify(path)})`);
  const full = resolve(contextDir, path);
  if (!isInside(contextDir, full)) throw new UsageError(`--dockerfile: must be a path inside the source (got ${JSON.stringify(path)})`);
  return { dir: dirname(full), name: basename(full), full };
}

function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

/** `railpack version 0.15.4` → `0.15.4`. */
export function parseRailpackVersion(output: string): string | undefined {
  return output.match(/(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?)/)?.[1];
}

export function railpackFrontendFor(version: string): string {
  return `${RAILPACK_FRONTEND_IMAGE}:v${version}`;
}

/** A Dockerfile when there is one, otherwise a Railpack plan. */
export async function planBuild(options: PlanOptions): Promise<BuildPlan> {
  const { contextDir, log } = options;
  const wanted = options.dockerfile ?? "Dockerfile";
  const location = dockerfileLocation(contextDir, wanted);
  if (existsSync(location.full) && statSync(location.full).isFile()) {
    // podman reads the Dockerfile on the host and prints its lines: a symlink must not lead out.
    if (!isInside(realpathSync(contextDir), realpathSync(location.full))) {
      throw new BuildStepError("plan", `the Dockerfile ${wanted} points outside the source`);
    }
    log(`using ${relative(contextDir, location.full)}`);
    return { kind: "dockerfile", contextDir, dockerfileDir: location.dir, dockerfileName: location.name };
  }
  if (options.dockerfile) throw new BuildStepError("plan", `the Dockerfile ${options.dockerfile} does not exist in the source`);
  log("no Dockerfile found: planning the build with Railpack");
  if (options.driver === "podman") {
    throw new BuildStepError("plan", "the source has no Dockerfile, and Railpack builds need BuildKit (the podman builder cannot run them)", {
      hint: "add a Dockerfile (or pass --dockerfile PATH), or build with --builder buildkit",
    });
  }
  const railpack = await which("railpack");
  if (!railpack) {
    throw new BuildStepError("plan", "the source has no Dockerfile and railpack is not installed", {
      hint: "install Railpack (https://railpack.com/installation, e.g. curl -sSL https://railpack.com/install.sh | sh) or add a Dockerfile",
    });
  }
  const railpackVersion = await installedRailpackVersion(railpack);
  const frontendImage = options.railpackFrontend ?? railpackFrontendFor(railpackVersion);
  log(`railpack ${railpackVersion}, frontend ${frontendImage}`);
  const planDir = join(options.workDir, "plan");
  mkdirSync(planDir, { recursive: true, mode: 0o700 });
  const secretNames = Object.keys(options.secrets).sort();
  const args = ["prepare", ".", "--plan-out", join(planDir, RAILPACK_PLAN_FILE), "--info-out", join(planDir, RAILPACK_INFO_FILE)];
  // A name-only --env makes Railpack read the value from its environment: names in argv, values not.
  for (const name of secretNames) args.push("--env", name);
  const result = await runTool(railpack, args, {
    cwd: contextDir,
    env: options.secrets,
    onLine: log,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  });
  if (result.exitCode !== 0) {
    throw new BuildStepError("plan", `railpack prepare failed (exit code ${result.exitCode}): ${result.tail.slice(-3).join(" | ")}`);
  }
  if (!existsSync(join(planDir, RAILPACK_PLAN_FILE))) throw new BuildStepError("plan", "railpack prepare wrote no plan file");
  return { kind: "railpack", contextDir, planDir, railpackVersion, frontendImage };
}

async function installedRailpackVersion(railpack: string): Promise<string> {
  let output: string;
  try {
    output = (await run(railpack, ["--version"], { timeoutMs: 15_000 })).stdout;
  } catch (err) {
    throw new BuildStepError("plan", `cannot run railpack --version: ${errorMessage(err)}`);
  }
  const version = parseRailpackVersion(output);
  if (!version) throw new BuildStepError("plan", `cannot read the Railpack version from ${JSON.stringify(output.trim())}`, { hint: "pass --railpack-frontend IMAGE" });
  return version;
}
