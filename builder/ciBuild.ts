import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidInputError, UsageError } from "../lib/errors.ts";
import type { LogShipper } from "../lib/logs/LogShipper.ts";
import { BuildLog } from "./BuildLog.ts";
import type { BuilderOptions } from "./builderOptions.ts";
import { parseImageRef } from "./imageRef.ts";
import type { BuildTerminal } from "./progress/BuildTerminal.ts";
import { runBuild, type BuildResult, type BuildSource } from "./runBuild.ts";
import { GitHubAppTokens, githubWebUrl, parseRepo } from "./source/GitHubAppTokens.ts";
import { resolveGitRef } from "./source/gitRemote.ts";

export interface GitHubOptions {
  appId?: string;
  privateKeyFile?: string;
  installationId?: number;
  apiUrl: string;
  /** Web/git base URL; default derived from apiUrl. */
  url?: string;
}

/** `agent build` in CI mode, as given on the command line. */
export interface CiBuildRequest {
  repo?: string;
  ref?: string;
  image?: string;
  source?: string;
  dockerfile?: string;
  /** Names of build secrets; values come from `env`. */
  secretNames: string[];
  cacheKey?: string;
  env: Record<string, string | undefined>;
  github: GitHubOptions;
}

export interface CiBuildPlan {
  buildId: string;
  image: string;
  dockerfile?: string;
  secrets: Record<string, string>;
  cacheKey: string;
  /** Resolves the source (mints a GitHub App token when configured). */
  source: () => Promise<BuildSource>;
}

/** Checks the flags (UsageError, exit 2) before anything runs. */
export function checkCiRequest(req: CiBuildRequest): CiBuildPlan {
  if (!req.image) throw new UsageError("--image is required (REGISTRY/NAME:TAG)");
  try {
    parseImageRef(req.image);
  } catch (err) {
    throw new UsageError(`--image: ${(err as Error).message}`);
  }
  if (!req.repo && !req.source) throw new UsageError("give --repo OWNER/NAME (to clone) or --source DIR (a checkout)");
  if (req.repo && req.source) throw new UsageError("--repo and --source are alternatives; give one");
  if (req.source && (!existsSync(req.source) || !statSync(req.source).isDirectory())) throw new UsageError(`--source: ${req.source} is not a folder`);
  if (req.source && req.ref) throw new UsageError("--ref applies to --repo; --source builds the folder as it is");
  const hasApp = !!req.github.appId || !!req.github.privateKeyFile;
  if (hasApp && (!req.github.appId || !req.github.privateKeyFile)) {
    throw new UsageError("--github-app-id and --github-private-key-file go together");
  }
  if (hasApp && req.source) throw new UsageError("--github-app-id is for cloning with --repo; --source needs no token");
  const secrets: Record<string, string> = {};
  for (const name of req.secretNames) {
    if (name.includes("=")) throw new UsageError(`--secret ${name.split("=")[0]}: give the name only; the value is read from the environment variable of that name (never from the command line)`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--secret: ${JSON.stringify(name)} is not an environment variable name`);
    const value = req.env[name];
    if (value === undefined) throw new UsageError(`--secret ${name}: the environment variable ${name} is not set`);
    secrets[name] = value;
  }
  let ref;
  try {
    ref = req.repo ? resolveGitRef({ ref: req.ref }) : undefined;
  } catch (err) {
    if (err instanceof InvalidInputError) throw new UsageError(`--ref: ${err.message}`);
    throw err;
  }
  const repo = req.repo ? parseRepo(req.repo) : undefined;
  const tokens = req.github.appId && req.github.privateKeyFile ? GitHubAppTokens.fromKeyFile(req.github.appId, req.github.privateKeyFile, req.github.apiUrl) : undefined;
  const cacheKey = req.cacheKey ?? (repo ? `${repo.owner}-${repo.repo}` : "local");
  return {
    buildId: randomUUID(),
    image: req.image,
    ...(req.dockerfile ? { dockerfile: req.dockerfile } : {}),
    secrets,
    cacheKey,
    source: async () => {
      if (!repo || !ref) return { kind: "dir", path: req.source! };
      const base = (req.github.url ?? githubWebUrl(req.github.apiUrl)).replace(/\/+$/, "");
      const url = `${base}/${repo.owner}/${repo.repo}.git`;
      if (!tokens) return { kind: "git", remote: { url }, ref };
      const { token } = await tokens.installationToken({ owner: repo.owner, repo: repo.repo, installationId: req.github.installationId });
      return { kind: "git", remote: { url, username: "x-access-token", password: token }, ref };
    },
  };
}

export interface CiBuildRun {
  plan: CiBuildPlan;
  options: BuilderOptions;
  terminal: BuildTerminal;
  shipper?: LogShipper;
  signal: AbortSignal;
}

/** Runs a checked CI build in a temporary folder that is always removed. */
export async function runCiBuild(run: CiBuildRun): Promise<BuildResult & { buildId: string; logLines: number }> {
  const { plan } = run;
  const workDir = mkdtempSync(join(tmpdir(), "agent-build-"));
  const log = new BuildLog({ build_id: plan.buildId }, run.terminal, run.shipper);
  try {
    log.phase("clone");
    const source = await plan.source();
    const result = await runBuild(
      { source, image: plan.image, dockerfile: plan.dockerfile, secrets: plan.secrets, cacheKey: plan.cacheKey },
      { workDir, options: run.options, log, signal: run.signal },
    );
    return { ...result, buildId: plan.buildId, logLines: log.lines };
  } catch (err) {
    log.line(`error: ${(err as Error).message}`);
    throw err;
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
