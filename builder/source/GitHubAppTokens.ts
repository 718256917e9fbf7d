import { readFlagFile } from "../../lib/fs/readFlagFile.ts";
import { App } from "@octokit/app";
// @octokit/core is @octokit/app's own dependency; its `defaults` is how @octokit/app documents a
// custom API base URL (GitHub Enterprise Server, tests).
import { Octokit } from "@octokit/core";
import { AgentError, UsageError, errorMessage } from "../../lib/errors.ts";
import { redact, registerSecret } from "../../lib/redact.ts";

export const GITHUB_API_URL = "https://api.github.com";

export interface GitHubAppConfig {
  appId: string | number;
  privateKey: string;
  /** REST API base URL; `https://HOST/api/v3` for GitHub Enterprise Server. */
  apiUrl?: string;
}

export interface InstallationToken {
  token: string;
  expiresAt?: string;
  installationId: number;
}

/** Mints GitHub App installation tokens (app JWT signed with the app's private key, RS256). */
export class GitHubAppTokens {
  private readonly app: App;
  readonly apiUrl: string;

  constructor(config: GitHubAppConfig) {
    registerSecret(config.privateKey);
    this.apiUrl = (config.apiUrl ?? GITHUB_API_URL).replace(/\/+$/, "");
    const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
    this.app = new App({
      appId: config.appId,
      privateKey: config.privateKey,
      Octokit: Octokit.defaults({ baseUrl: this.apiUrl }),
      log: silent,
    });
  }

  static fromKeyFile(appId: string | number, keyFile: string, apiUrl?: string): GitHubAppTokens {
    const privateKey = readFlagFile("--github-private-key-file", keyFile);
    if (!/-----BEGIN (RSA )?PRIVATE KEY-----/.test(privateKey)) {
      throw new UsageError(`--github-private-key-file: ${keyFile} is not a PEM private key`, "download the key from the GitHub App's settings page (a .pem file)");
    }
    return new GitHubAppTokens({ appId, privateKey, apiUrl });
  }

  /** The installation of this app that covers `owner/repo`. */
  async installationFor(owner: string, repo: string): Promise<number> {
    try {
      const res = await this.app.octokit.request("GET /repos/{owner}/{repo}/installation", { owner, repo });
      return res.data.id;
    } catch (err) {
      if (statusOf(err) === 404) {
        const where = await this.installedAccounts().catch(() => undefined);
        throw new AgentError(`the GitHub App is not installed on ${owner}/${repo}`, {
          hint: where && where.length > 0 ? `it is installed on: ${where.join(", ")}` : "install the app on the repository, or pass --installation-id",
        });
      }
      throw this.apiError(err, `looking up the installation of ${owner}/${repo}`);
    }
  }

  /** A token for one installation, limited to `repo` when given. Registered as a secret. */
  async installationToken(options: { installationId?: number; owner: string; repo: string }): Promise<InstallationToken> {
    const installationId = options.installationId ?? (await this.installationFor(options.owner, options.repo));
    try {
      const auth = (await this.app.octokit.auth({ type: "installation", installationId, repositoryNames: [options.repo] })) as {
        token: string;
        expiresAt?: string;
      };
      registerSecret(auth.token);
      return { token: auth.token, expiresAt: auth.expiresAt, installationId };
    } catch (err) {
      throw this.apiError(err, `minting an installation token (installation ${installationId})`);
    }
  }

  private async installedAccounts(): Promise<string[]> {
    const res = await this.app.octokit.request("GET /app/installations", { per_page: 100 });
    return res.data.map((i) => (i.account && "login" in i.account ? i.account.login : String(i.id)));
  }

  private apiError(err: unknown, what: string): AgentError {
    const status = statusOf(err);
    const detail = redact(errorMessage(err)).split("\n")[0];
    if (status === 401) {
      return new AgentError(`GitHub (${this.apiUrl}) refused the app's credentials while ${what}: ${detail}`, {
        hint: "check --github-app-id and that --github-private-key-file belongs to that app (and the clock is right)",
      });
    }
    if (status === undefined) return new AgentError(`cannot reach GitHub (${this.apiUrl}) while ${what}: ${detail}`);
    return new AgentError(`GitHub (${this.apiUrl}) answered ${status} while ${what}: ${detail}`);
  }
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { status?: unknown }).status;
  return typeof status === "number" && status > 0 ? status : undefined;
}

/** `https://github.com/owner/repo.git` for the API's host (`https://HOST/api/v3` → `https://HOST`). */
export function githubWebUrl(apiUrl: string): string {
  const url = new URL(apiUrl);
  if (url.hostname === "api.github.com") return "https://github.com";
  return url.origin + url.pathname.replace(/\/api\/v3\/?$/, "").replace(/\/+$/, "");
}

export function parseRepo(value: string): { owner: string; repo: string } {
  const m = value.trim().match(/^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})$/);
  if (!m || m[2] === "." || m[2] === "..") throw new UsageError(`--repo: must be OWNER/NAME (got ${JSON.stringify(value)})`);
  return { owner: m[1]!, repo: m[2]!.replace(/\.git$/, "") };
}
