import { mkdirSync } from "node:fs";
import { GitPluginError, simpleGit, type SimpleGit } from "simple-git";
import { errorMessage } from "../../lib/errors.ts";
import { killProcessesWorkingIn } from "../../lib/processTree.ts";
import { redact, registerSecret } from "../../lib/redact.ts";
import { BuildCancelledError, BuildStepError } from "../buildErrors.ts";
import { gitAuthEnv, type GitRef, type GitRemote } from "./gitRemote.ts";

export interface CloneOptions {
  remote: GitRemote;
  ref: GitRef;
  /** An empty (or missing) folder that receives the checkout. */
  dir: string;
  log: (line: string) => void;
  signal: AbortSignal;
  /** Kill git after this long without output. */
  idleTimeoutMs?: number;
}

export interface CloneResult {
  commitSha: string;
  branch?: string;
}

/** GIT_* variables of the agent's own environment that a clone may keep (CA bundles). */
const AMBIENT_GIT_ENV = ["GIT_SSL_CAINFO", "GIT_SSL_CAPATH"];

/**
 * Shallow checkout of exactly one commit: the branch tip, or an exact sha (fetched on its own
 * when it is not the tip). Credentials travel in the child's environment only (gitAuthEnv).
 */
export async function cloneSource(options: CloneOptions): Promise<CloneResult> {
  if (options.signal.aborted) throw new BuildCancelledError();
  registerSecret(options.remote.password);
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  try {
    return await checkout(options);
  } catch (err) {
    // A cancelled or timed-out git leaves its remote helpers running, still fetching.
    await killProcessesWorkingIn(options.dir);
    throw err;
  }
}

async function checkout(options: CloneOptions): Promise<CloneResult> {
  const { remote, ref, dir, log, signal } = options;
  const authEnv = gitAuthEnv(remote.url, remote);
  const git = simpleGit({
    baseDir: dir,
    abort: signal,
    allowEnvironment: [...Object.keys(authEnv), ...AMBIENT_GIT_ENV],
    timeout: { block: options.idleTimeoutMs ?? 10 * 60_000 },
    // The GIT_CONFIG_* variables are ours (the auth header, see gitAuthEnv), not from input.
    unsafe: { allowUnsafeConfigEnvCount: true },
  }).env({ ...stringEnv(process.env), ...authEnv });
  git.outputHandler((_command, stdout, stderr, args) => {
    log(`$ git ${args.join(" ")}`);
    for (const stream of [stdout, stderr]) forEachLine(stream, log);
  });

  const where = remote.url;
  await step(() => git.init(["--quiet"]), where, "init");
  await step(() => git.addRemote("origin", remote.url), where, "init");

  let target: string | undefined;
  if (ref.branch) {
    const branchRef = `refs/remotes/origin/${ref.branch}`;
    const fetched = await step(() => fetch(git, `+refs/heads/${ref.branch}:${branchRef}`), where, "branch", ref.branch, !!ref.commit);
    if (fetched) {
      const tip = (await git.revparse([branchRef])).trim();
      if (!ref.commit || ref.commit === tip) target = tip;
      else log(`commit ${ref.commit} is not the tip of ${ref.branch} (${tip}); fetching it by sha`);
    }
  }
  if (!target && ref.commit) {
    await step(() => fetch(git, ref.commit!), where, "commit", ref.commit);
    target = ref.commit;
  }
  if (!target) throw new BuildStepError("clone", `nothing to check out from ${where}`);
  await step(() => git.raw(["checkout", "--quiet", "--detach", target!]), where, "checkout");
  const head = (await git.revparse(["HEAD"])).trim();
  if (ref.commit && head !== ref.commit) {
    throw new BuildStepError("clone", `checked out ${head} but commit ${ref.commit} was requested`);
  }
  log(`checked out ${head}${ref.branch ? ` (${ref.branch})` : ""}`);
  return { commitSha: head, ...(ref.branch ? { branch: ref.branch } : {}) };
}

async function fetch(git: SimpleGit, refspec: string): Promise<true> {
  await git.raw(["fetch", "--depth=1", "--no-tags", "--no-recurse-submodules", "origin", refspec]);
  return true;
}

/**
 * Runs one git step and turns git's stderr into a message a person can act on. With `tolerate`,
 * a missing branch is logged and reported as `false` (an exact commit may still be fetched).
 */
async function step<T>(
  fn: () => Promise<T>,
  where: string,
  what: "init" | "branch" | "commit" | "checkout",
  name?: string,
  tolerate = false,
): Promise<T | false> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof GitPluginError && err.plugin === "abort") throw new BuildCancelledError();
    const text = redact(errorMessage(err));
    if (/could not read Username|Authentication failed|terminal prompts disabled|returned error: 40[13]|Access denied/i.test(text)) {
      throw new BuildStepError("clone", `authentication to ${where} failed: the repository is private or the token has no access to it`, {
        hint: "give a GitHub App (--github-app-id, --github-private-key-file) installed on the repository, or check the clone URL's token",
      });
    }
    if (/Repository not found|returned error: 404|not found: .*\/info\/refs/i.test(text)) {
      throw new BuildStepError("clone", `repository ${where} was not found (or the token cannot see it)`);
    }
    if (/Could not resolve host|Failed to connect|Connection refused|Connection timed out|Couldn't connect/i.test(text)) {
      throw new BuildStepError("clone", `cannot reach ${where}: ${lastLine(text)}`);
    }
    if (what === "branch" && /couldn't find remote ref/i.test(text)) {
      if (tolerate) return false;
      throw new BuildStepError("clone", `branch ${name} was not found in ${where}`);
    }
    if (what === "commit" && /not our ref|unadvertised object|couldn't find remote ref|no such remote ref|not a valid object/i.test(text)) {
      throw new BuildStepError("clone", `commit ${name} was not found in ${where}`, {
        hint: "check that the commit was pushed; the server must allow fetching commits by sha (GitHub does)",
      });
    }
    throw new BuildStepError("clone", `git ${what} failed for ${where}: ${lastLine(text)}`);
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split("\n").filter((l) => l.trim());
  return lines.slice(-2).join(" ").trim();
}

function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let pending = "";
  stream.on("data", (chunk: Buffer | string) => {
    pending += chunk.toString();
    const parts = pending.split(/\r\n|\n|\r/);
    pending = parts.pop() ?? "";
    for (const part of parts) if (part.trim()) onLine(redact(part));
  });
  stream.on("end", () => {
    if (pending.trim()) onLine(redact(pending));
    pending = "";
  });
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}
