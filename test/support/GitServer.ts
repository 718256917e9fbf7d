import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Server } from "bun";

/**
 * Bare repositories served over git's smart HTTP protocol by the real `git http-backend` (CGI),
 * on 127.0.0.1. Like GitHub with installation tokens, a private repository needs HTTP Basic auth
 * `x-access-token:<token>` with a token `authorize` accepts; anything else gets 401 with a
 * `WWW-Authenticate` challenge. Fetching an exact commit by sha is allowed, as on GitHub.
 */
export interface GitServerOptions {
  /** Decides whether `token` may read `repo` (`owner/name`). */
  authorize: (token: string | undefined, repo: string) => boolean;
}

export interface RecordedGitRequest {
  method: string;
  path: string;
  user?: string;
  status: number;
}

export class GitServer {
  readonly root = mkdtempSync(join(tmpdir(), "git-server-"));
  readonly requests: RecordedGitRequest[] = [];
  /** Repositories anyone may read. */
  readonly publicRepos = new Set<string>();
  private server?: Server<unknown>;

  constructor(private readonly options: GitServerOptions) {}

  async start(): Promise<this> {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => this.handle(req) });
    return this;
  }

  get url(): string {
    if (!this.server) throw new Error("git server not started");
    return `http://127.0.0.1:${this.server.port}`;
  }

  cloneUrl(repo: string): string {
    return `${this.url}/${repo}.git`;
  }

  async stop(): Promise<void> {
    await this.server?.stop(true);
    this.server = undefined;
    rmSync(this.root, { recursive: true, force: true });
  }

  /**
   * Creates `owner/name` with one commit per entry of `commits` (files to write, relative path →
   * content) on `branch`, and returns the commit shas in order.
   */
  createRepo(repo: string, commits: Array<Record<string, string>>, branch = "main"): string[] {
    const bare = join(this.root, `${repo}.git`);
    mkdirSync(dirname(bare), { recursive: true });
    git(["init", "--quiet", "--bare", "--initial-branch", branch, bare]);
    git(["-C", bare, "config", "uploadpack.allowAnySHA1InWant", "true"]);
    git(["-C", bare, "config", "uploadpack.allowReachableSHA1InWant", "true"]);
    git(["-C", bare, "config", "http.uploadpack", "true"]);
    return this.addCommits(repo, commits, branch);
  }

  /** Appends commits to `branch` (created from the default branch's tip when new). */
  addCommits(repo: string, commits: Array<Record<string, string>>, branch = "main"): string[] {
    const bare = join(this.root, `${repo}.git`);
    const work = mkdtempSync(join(tmpdir(), "git-work-"));
    try {
      git(["clone", "--quiet", bare, work]);
      const exists = git(["-C", work, "ls-remote", "--heads", "origin", branch]).trim() !== "";
      git(["-C", work, "checkout", "--quiet", ...(exists ? [branch] : ["-B", branch])]);
      const shas: string[] = [];
      for (const [index, files] of commits.entries()) {
        for (const [path, content] of Object.entries(files)) {
          mkdirSync(dirname(join(work, path)), { recursive: true });
          writeFileSync(join(work, path), content);
        }
        git(["-C", work, "add", "--all"]);
        git(["-C", work, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "--allow-empty", "-m", `commit ${index + 1}`]);
        shas.push(git(["-C", work, "rev-parse", "HEAD"]).trim());
      }
      git(["-C", work, "push", "--quiet", "origin", `HEAD:refs/heads/${branch}`]);
      return shas;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  private async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const match = url.pathname.match(/^\/([^/]+\/[^/]+?)\.git(\/.*)$/);
    const record: RecordedGitRequest = { method: req.method, path: url.pathname + url.search, status: 0 };
    this.requests.push(record);
    if (!match) return this.done(record, new Response("not found\n", { status: 404 }));
    const repo = match[1]!;
    const credentials = basicAuth(req.headers.get("authorization"));
    record.user = credentials?.user;
    const token = credentials?.user === "x-access-token" ? credentials.password : undefined;
    if (!this.publicRepos.has(repo) && !this.options.authorize(token, repo)) {
      return this.done(record, new Response("Authentication required\n", { status: 401, headers: { "www-authenticate": 'Basic realm="GitHub"' } }));
    }
    const body = req.method === "POST" ? new Uint8Array(await req.arrayBuffer()) : undefined;
    const proc = Bun.spawn([realGit(), "http-backend"], {
      env: {
        PATH: "/usr/local/bin:/usr/bin:/bin",
        GIT_PROJECT_ROOT: this.root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: `/${repo}.git${match[2]}`,
        QUERY_STRING: url.search.replace(/^\?/, ""),
        REQUEST_METHOD: req.method,
        CONTENT_TYPE: req.headers.get("content-type") ?? "",
        CONTENT_LENGTH: body ? String(body.byteLength) : "",
        HTTP_CONTENT_ENCODING: req.headers.get("content-encoding") ?? "",
        GIT_PROTOCOL: req.headers.get("git-protocol") ?? "",
        REMOTE_USER: credentials?.user ?? "",
        REMOTE_ADDR: "127.0.0.1",
      },
      stdin: body ?? "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err] = await Promise.all([new Response(proc.stdout).arrayBuffer(), new Response(proc.stderr).text(), proc.exited]);
    const response = parseCgi(Buffer.from(out));
    if (response.status >= 500) process.stderr.write(`[git-server] http-backend: ${err}\n`);
    return this.done(record, response);
  }

  private done(record: RecordedGitRequest, res: Response): Response {
    record.status = res.status;
    return res;
  }
}

function basicAuth(header: string | null): { user: string; password: string } | undefined {
  const m = header?.match(/^Basic\s+(.+)$/i);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, "base64").toString();
  const colon = decoded.indexOf(":");
  return colon < 0 ? { user: decoded, password: "" } : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function parseCgi(out: Buffer): Response {
  let end = out.indexOf("\r\n\r\n");
  let sep = 4;
  if (end < 0) {
    end = out.indexOf("\n\n");
    sep = 2;
  }
  if (end < 0) return new Response("bad CGI output\n", { status: 502 });
  const headers = new Headers();
  let status = 200;
  for (const line of out.subarray(0, end).toString().split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === "status") status = Number.parseInt(value, 10) || 200;
    else headers.append(name, value);
  }
  return new Response(out.subarray(end + sep), { status, headers });
}

/** git itself, never the recording stand-in that tests put first on PATH. */
function realGit(): string {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!dir || dir.endsWith("test/support/bin")) continue;
    const path = Bun.which("git", { PATH: dir });
    if (path) return path;
  }
  return "/usr/bin/git";
}

function git(args: string[]): string {
  const res = Bun.spawnSync([realGit(), ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } });
  if (res.exitCode !== 0) throw new Error(`git ${args.join(" ")} failed: ${res.stderr.toString()}`);
  return res.stdout.toString();
}
