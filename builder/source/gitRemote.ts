import { InvalidInputError } from "../../lib/errors.ts";

/** A clone URL without credentials, and the credentials that were embedded in it. */
export interface GitRemote {
  url: string;
  username?: string;
  password?: string;
}

/** Splits `https://x-access-token:TOKEN@host/owner/repo.git` into a clean URL and its credentials. */
export function parseCloneUrl(raw: string): GitRemote {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidInputError("the clone URL is not a valid URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new InvalidInputError(`the clone URL must be http:// or https:// (got ${url.protocol})`);
  }
  const username = url.username ? decodeURIComponent(url.username) : undefined;
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  url.username = "";
  url.password = "";
  return { url: url.toString(), ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

/**
 * Environment for a git child process that authenticates with HTTP Basic `username:password`
 * (GitHub: `x-access-token:<installation token>`) through `http.<url>.extraHeader`, set with
 * GIT_CONFIG_COUNT/KEY/VALUE so the token is in no argv and no file. The header is scoped to the
 * remote's origin, so a redirect to another host does not receive it.
 */
export function gitAuthEnv(remoteUrl: string, credentials: { username?: string; password?: string }): Record<string, string> {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: "0" };
  if (!credentials.password) return env;
  const origin = new URL(remoteUrl).origin + "/";
  const basic = Buffer.from(`${credentials.username ?? "x-access-token"}:${credentials.password}`).toString("base64");
  env.GIT_CONFIG_COUNT = "1";
  env.GIT_CONFIG_KEY_0 = `http.${origin}.extraHeader`;
  env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
  return env;
}

const SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;
const BRANCH = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!\/)(?!.*\/$)(?!.*\.lock$)(?!.*@\{)[A-Za-z0-9._\/+-]+$/;

export function isCommitSha(ref: string): boolean {
  return SHA.test(ref);
}

export function assertBranchName(branch: string): string {
  if (!BRANCH.test(branch) || branch.length > 255) throw new InvalidInputError(`"${branch}" is not a valid branch name`);
  return branch;
}

/** What to check out: a branch tip, or an exact commit (fetched from its branch when one is known). */
export interface GitRef {
  branch?: string;
  commit?: string;
}

/**
 * `--ref` and the control plane's `commitSha`/`branch`: a full sha is an exact commit, `HEAD` or
 * nothing is the tip of the branch (default `main`), anything else is a branch name.
 */
export function resolveGitRef(options: { ref?: string | null; branch?: string | null }): GitRef {
  const explicitBranch = options.branch?.trim() ? assertBranchName(options.branch.trim()) : undefined;
  const ref = options.ref?.trim();
  if (!ref || ref === "HEAD") return { branch: explicitBranch ?? "main" };
  if (isCommitSha(ref)) return { ...(explicitBranch ? { branch: explicitBranch } : {}), commit: ref.toLowerCase() };
  if (explicitBranch) throw new InvalidInputError(`commit "${ref}" is neither a full commit sha nor HEAD`);
  if (/^[0-9a-f]{7,39}$/i.test(ref)) {
    throw new InvalidInputError(`"${ref}" looks like a short commit sha; pass the full 40-character sha`);
  }
  return { branch: assertBranchName(ref) };
}
