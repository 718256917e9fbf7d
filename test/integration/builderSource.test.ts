import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BuildCancelledError, BuildStepError } from "../../builder/buildErrors.ts";
import { GitHubAppTokens } from "../../builder/source/GitHubAppTokens.ts";
import { cloneSource } from "../../builder/source/cloneSource.ts";
import { parseCloneUrl } from "../../builder/source/gitRemote.ts";
import { AgentError, UsageError } from "../../lib/errors.ts";
import { redact } from "../../lib/redact.ts";
import { REPO_ROOT, tempDir } from "../support/agentBinary.ts";
import { FakeGitHub } from "../support/FakeGitHub.ts";
import { GitServer } from "../support/GitServer.ts";
import type { Invocation } from "../support/standins/record.ts";

const github = new FakeGitHub();
const git = new GitServer({ authorize: (token, repo) => github.tokenCovers(token, repo) });
const dirs: Array<{ path: string; cleanup: () => void }> = [];
function dir(): string {
  const d = tempDir("builder-src-");
  dirs.push(d);
  return d.path;
}
let shas: string[] = [];
let installationId = 0;
const savedEnv = { PATH: process.env.PATH, STANDIN_BUN: process.env.STANDIN_BUN, STANDIN_RECORD_DIR: process.env.STANDIN_RECORD_DIR };
let recordDir = "";

beforeAll(async () => {
  await github.start();
  await git.start();
  shas = git.createRepo("acme/app", [{ "README.md": "one\n" }, { "README.md": "two\n", "app.txt": "v2\n" }, { "app.txt": "v3\n" }]);
  git.createRepo("acme/other", [{ "x.txt": "x\n" }]);
  git.createRepo("public/site", [{ "index.html": "hi\n" }]);
  git.publicRepos.add("public/site");
  installationId = github.install("acme", ["acme/app"]).id;
  // git runs through a recording stand-in first on PATH, so argv and env can be inspected.
  recordDir = dir();
  process.env.PATH = `${join(REPO_ROOT, "test/support/bin")}:${process.env.PATH}`;
  process.env.STANDIN_BUN = process.execPath;
  process.env.STANDIN_RECORD_DIR = recordDir;
}, 120_000);

afterAll(async () => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await git.stop();
  await github.stop();
  dirs.forEach((d) => d.cleanup());
}, 120_000);

function gitInvocations(): Invocation[] {
  return readdirSync(recordDir)
    .filter((f) => f.startsWith("git-"))
    .map((f) => JSON.parse(readFileSync(join(recordDir, f), "utf8")) as Invocation);
}

function tokens(): GitHubAppTokens {
  return new GitHubAppTokens({ appId: github.appId, privateKey: github.privateKeyPem, apiUrl: github.url });
}

const never = new AbortController().signal;

function processesMentioning(text: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
      if (cmdline.includes(text)) out.push(`${pid} ${cmdline}`);
    } catch {
      // gone
    }
  }
  return out;
}

describe("GitHub App installation tokens", () => {
  test("a token is minted with a verified app JWT, the installation looked up from the repository", async () => {
    const before = github.requests.length;
    const minted = await tokens().installationToken({ owner: "acme", repo: "app" });
    expect(minted.installationId).toBe(installationId);
    expect(github.tokenCovers(minted.token, "acme/app")).toBe(true);
    expect(github.tokenCovers(minted.token, "acme/other")).toBe(false);
    const calls = github.requests.slice(before).map((r) => `${r.method} ${r.path} ${r.status}`);
    expect(calls).toEqual([`GET /repos/acme/app/installation 200`, `POST /app/installations/${installationId}/access_tokens 201`]);
    expect(JSON.parse(github.requests.at(-1)!.body!)).toEqual({ repositories: ["app"] });
    expect(redact(`token ${minted.token}`)).toBe("token ***");
  });

  test("an explicit installation id skips the lookup", async () => {
    const before = github.requests.length;
    const minted = await tokens().installationToken({ owner: "acme", repo: "app", installationId });
    expect(github.tokenCovers(minted.token, "acme/app")).toBe(true);
    expect(github.requests.slice(before).map((r) => r.path)).toEqual([`/app/installations/${installationId}/access_tokens`]);
  });

  test("a key that is not the app's is refused by GitHub with a clear message", async () => {
    const otherKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs1", format: "pem" }).toString();
    const wrong = new GitHubAppTokens({ appId: github.appId, privateKey: otherKey, apiUrl: github.url });
    const err = await wrong.installationToken({ owner: "acme", repo: "app" }).catch((e) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err.message).toContain("refused the app's credentials");
    expect(err.hint).toContain("--github-private-key-file");
    expect(github.requests.at(-1)!.status).toBe(401);
  });

  test("an app not installed on the repository says where it is installed", async () => {
    const err = await tokens().installationToken({ owner: "acme", repo: "other" }).catch((e) => e);
    expect(err.message).toBe("the GitHub App is not installed on acme/other");
    expect(err.hint).toBe("it is installed on: acme");
  });

  test("a key file that is missing or not a PEM key is a usage error", () => {
    expect(() => GitHubAppTokens.fromKeyFile(1, "/nonexistent/app.pem")).toThrow(UsageError);
    const notPem = join(dir(), "key.pem");
    writeFileSync(notPem, "hello");
    expect(() => GitHubAppTokens.fromKeyFile(1, notPem)).toThrow(/not a PEM private key/);
  });
});

describe("cloning", () => {
  async function clone(ref: { branch?: string; commit?: string }, remote = parseCloneUrl(git.cloneUrl("acme/app")), signal = never) {
    const target = join(dir(), "src");
    const lines: string[] = [];
    const result = await cloneSource({ remote, ref, dir: target, log: (l) => lines.push(l), signal });
    return { target, lines, result };
  }

  async function authed() {
    const { token } = await tokens().installationToken({ owner: "acme", repo: "app" });
    return { token, remote: { url: git.cloneUrl("acme/app"), username: "x-access-token", password: token } };
  }

  test("the tip of a branch, shallow, with the token only in git's environment", async () => {
    const { token, remote } = await authed();
    const before = gitInvocations().length;
    const { target, result, lines } = await clone({ branch: "main" }, remote);
    expect(result.commitSha).toBe(shas[2]!);
    expect(readFileSync(join(target, "app.txt"), "utf8")).toBe("v3\n");
    expect(Bun.spawnSync(["git", "-C", target, "rev-list", "--count", "HEAD"]).stdout.toString().trim()).toBe("1");
    const calls = gitInvocations().slice(before);
    expect(calls.length).toBeGreaterThan(2);
    for (const call of calls) expect(JSON.stringify(call.argv)).not.toContain(token);
    const fetches = calls.filter((c) => c.argv.includes("fetch"));
    expect(fetches.length).toBe(1);
    expect(fetches[0]!.env.GIT_CONFIG_VALUE_0).toBe(`Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`);
    expect(readFileSync(join(target, ".git/config"), "utf8")).not.toContain(token);
    expect(lines.join("\n")).not.toContain(token);
    expect(git.requests.some((r) => r.user === "x-access-token" && r.status === 200)).toBe(true);
  });

  test("an exact commit that is not the branch tip is fetched by its sha", async () => {
    const { remote } = await authed();
    const { target, result, lines } = await clone({ branch: "main", commit: shas[0]! }, remote);
    expect(result.commitSha).toBe(shas[0]!);
    expect(readFileSync(join(target, "README.md"), "utf8")).toBe("one\n");
    expect(existsSync(join(target, "app.txt"))).toBe(false);
    expect(lines.some((l) => l.includes("is not the tip of main"))).toBe(true);
  });

  test("an exact commit without a branch is fetched directly", async () => {
    const { remote } = await authed();
    const { result } = await clone({ commit: shas[1]! }, remote);
    expect(result.commitSha).toBe(shas[1]!);
  });

  test("a clone URL with an embedded token works and the token stays out of argv and the checkout", async () => {
    const { token } = await authed();
    const withToken = git.cloneUrl("acme/app").replace("http://", `http://x-access-token:${token}@`);
    const before = gitInvocations().length;
    const { target, result } = await clone({ branch: "main" }, parseCloneUrl(withToken));
    expect(result.commitSha).toBe(shas[2]!);
    for (const call of gitInvocations().slice(before)) expect(JSON.stringify(call.argv)).not.toContain(token);
    expect(readFileSync(join(target, ".git/config"), "utf8")).not.toContain(token);
  });

  test("an unknown commit sha fails with a message naming the commit", async () => {
    const { remote } = await authed();
    const missing = "deadbeef".repeat(5);
    const err = await clone({ branch: "main", commit: missing }, remote).catch((e) => e);
    expect(err).toBeInstanceOf(BuildStepError);
    expect(err.message).toBe(`commit ${missing} was not found in ${git.cloneUrl("acme/app")}`);
  });

  test("an unknown branch fails with a message naming the branch", async () => {
    const { remote } = await authed();
    const err = await clone({ branch: "nope" }, remote).catch((e) => e);
    expect(err.message).toBe(`branch nope was not found in ${git.cloneUrl("acme/app")}`);
  });

  test("a private repository without a token fails as an authentication problem, without prompting", async () => {
    const err = await clone({ branch: "main" }).catch((e) => e);
    expect(err).toBeInstanceOf(BuildStepError);
    expect(err.message).toBe(`authentication to ${git.cloneUrl("acme/app")} failed: the repository is private or the token has no access to it`);
    expect(err.hint).toContain("--github-app-id");
    expect(git.requests.at(-1)!.status).toBe(401);
  });

  test("a token for another repository is refused too", async () => {
    const { token } = await tokens().installationToken({ owner: "acme", repo: "app" });
    const err = await clone({ branch: "main" }, { url: git.cloneUrl("acme/other"), username: "x-access-token", password: token }).catch((e) => e);
    expect(err.message).toContain("authentication to");
    expect(err.message).not.toContain(token);
  });

  test("a public repository clones without a token", async () => {
    const { target } = await clone({ branch: "main" }, parseCloneUrl(git.cloneUrl("public/site")));
    expect(readFileSync(join(target, "index.html"), "utf8")).toBe("hi\n");
  });

  test("an aborted clone stops as cancelled", async () => {
    const { remote } = await authed();
    const aborter = new AbortController();
    aborter.abort();
    const err = await clone({ branch: "main" }, remote, aborter.signal).catch((e) => e);
    expect(err).toBeInstanceOf(BuildCancelledError);
  });

  test("a clone cancelled while git waits on the server leaves no git process behind", async () => {
    // git's remote helpers outlive the SIGINT simple-git sends to git itself; they would keep
    // downloading (with the token in their environment) into a folder about to be removed.
    const tag = `hang-${process.pid}-${Math.random().toString(36).slice(2)}`;
    let asked = 0;
    const hanging = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (asked++, new Promise<Response>(() => {})) });
    try {
      const aborter = new AbortController();
      const cloning = clone({ branch: "main" }, { url: `http://127.0.0.1:${hanging.port}/${tag}/app.git` }, aborter.signal).catch((e) => e);
      for (let i = 0; asked === 0 && i < 200; i++) await Bun.sleep(50);
      expect(asked).toBeGreaterThan(0);
      aborter.abort();
      expect(await cloning).toBeInstanceOf(BuildCancelledError);
      expect(processesMentioning(tag)).toEqual([]);
    } finally {
      await hanging.stop(true);
    }
  });

  test("an unreachable server is named as such", async () => {
    const err = await clone({ branch: "main" }, { url: "http://127.0.0.1:9/acme/app.git" }).catch((e) => e);
    expect(err.message).toMatch(/^cannot reach http:\/\/127\.0\.0\.1:9\/acme\/app\.git/);
  });
});
