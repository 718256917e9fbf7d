import { generateKeyPairSync, randomBytes, verify, type KeyObject } from "node:crypto";
import type { Server } from "bun";

/**
 * The few GitHub App endpoints the builder uses, with GitHub's checks: every app call carries an
 * RS256 JWT signed with the app's private key (verified here with its public key), `iss` is the
 * app id, the token lives at most 10 minutes. Installation tokens it issues are what GitServer
 * accepts as `x-access-token:<token>`.
 */
export interface FakeInstallation {
  id: number;
  account: string;
  /** `owner/name` of the repositories the app can reach through this installation. */
  repos: string[];
}

export interface IssuedToken {
  installationId: number;
  repos: string[];
  expiresAt: number;
}

export class FakeGitHub {
  readonly appId: number;
  readonly privateKeyPem: string;
  readonly publicKey: KeyObject;
  readonly installations: FakeInstallation[] = [];
  readonly tokens = new Map<string, IssuedToken>();
  readonly requests: Array<{ method: string; path: string; status: number; body?: string }> = [];
  private server?: Server<unknown>;
  private nextInstallation = 1000 + Math.floor(Math.random() * 1000);

  constructor(options: { appId?: number } = {}) {
    this.appId = options.appId ?? 100_000 + Math.floor(Math.random() * 100_000);
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.privateKeyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
    this.publicKey = publicKey;
  }

  async start(): Promise<this> {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => this.handle(req) });
    return this;
  }

  get url(): string {
    if (!this.server) throw new Error("fake GitHub not started");
    return `http://127.0.0.1:${this.server.port}`;
  }

  async stop(): Promise<void> {
    await this.server?.stop(true);
    this.server = undefined;
  }

  install(account: string, repos: string[]): FakeInstallation {
    const installation = { id: this.nextInstallation++, account, repos };
    this.installations.push(installation);
    return installation;
  }

  /** True when `token` is a live installation token that covers `repo` (`owner/name`). */
  tokenCovers(token: string | undefined, repo: string): boolean {
    const issued = token ? this.tokens.get(token) : undefined;
    return !!issued && issued.expiresAt > Date.now() && issued.repos.includes(repo);
  }

  private async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const body = req.method === "POST" ? await req.text() : undefined;
    const res = this.route(req.method, url.pathname, req.headers, body);
    this.requests.push({ method: req.method, path: url.pathname + url.search, status: res.status, body });
    return res;
  }

  private route(method: string, path: string, headers: Headers, body: string | undefined): Response {
    const jwtError = this.verifyJwt(headers.get("authorization"));
    if (jwtError) return json({ message: jwtError, documentation_url: "https://docs.github.com/rest" }, 401);

    if (method === "GET" && path === "/app/installations") {
      return json(this.installations.map((i) => this.installationJson(i)));
    }
    const repoInstall = path.match(/^\/repos\/([^/]+)\/([^/]+)\/installation$/);
    if (method === "GET" && repoInstall) {
      const full = `${repoInstall[1]}/${repoInstall[2]}`.toLowerCase();
      const found = this.installations.find((i) => i.repos.some((r) => r.toLowerCase() === full));
      return found ? json(this.installationJson(found)) : json({ message: "Not Found" }, 404);
    }
    const tokenPath = path.match(/^\/app\/installations\/(\d+)\/access_tokens$/);
    if (method === "POST" && tokenPath) {
      const installation = this.installations.find((i) => i.id === Number(tokenPath[1]));
      if (!installation) return json({ message: "Not Found" }, 404);
      let parsed: { repositories?: unknown } = {};
      try {
        parsed = body ? JSON.parse(body) : {};
      } catch {
        return json({ message: "Problems parsing JSON" }, 400);
      }
      let repos = installation.repos;
      if (Array.isArray(parsed.repositories)) {
        const wanted = parsed.repositories.map(String);
        const names = new Map(installation.repos.map((r) => [r.split("/")[1]!.toLowerCase(), r]));
        const missing = wanted.filter((w) => !names.has(w.toLowerCase()));
        if (missing.length > 0) return json({ message: `There is at least one repository that does not exist or is not accessible to the parent installation.` }, 422);
        repos = wanted.map((w) => names.get(w.toLowerCase())!);
      }
      const token = `ghs_${randomBytes(27).toString("base64url").slice(0, 36)}`;
      const expiresAt = Date.now() + 3600_000;
      this.tokens.set(token, { installationId: installation.id, repos, expiresAt });
      return json({ token, expires_at: new Date(expiresAt).toISOString(), permissions: { contents: "read" }, repository_selection: "selected" }, 201);
    }
    return json({ message: "Not Found" }, 404);
  }

  private installationJson(i: FakeInstallation) {
    return { id: i.id, app_id: this.appId, target_type: "Organization", account: { login: i.account, id: i.id, type: "Organization" } };
  }

  /** GitHub's checks of an app JWT; an error text, or undefined when valid. */
  private verifyJwt(header: string | null): string | undefined {
    const m = header?.match(/^Bearer (.+)$/i);
    if (!m) return "A JSON web token could not be decoded";
    const parts = m[1]!.split(".");
    if (parts.length !== 3) return "A JSON web token could not be decoded";
    let head: { alg?: string };
    let payload: { iss?: unknown; iat?: number; exp?: number };
    try {
      head = JSON.parse(Buffer.from(parts[0]!, "base64url").toString());
      payload = JSON.parse(Buffer.from(parts[1]!, "base64url").toString());
    } catch {
      return "A JSON web token could not be decoded";
    }
    if (head.alg !== "RS256") return "A JSON web token could not be decoded";
    const ok = verify("RSA-SHA256", Buffer.from(`${parts[0]}.${parts[1]}`), this.publicKey, Buffer.from(parts[2]!, "base64url"));
    if (!ok) return "A JSON web token could not be decoded";
    if (String(payload.iss) !== String(this.appId)) return "Integration not found";
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.iat !== "number" || typeof payload.exp !== "number") return "Missing 'issued at' or 'expiration time' claim";
    if (payload.iat > now + 60) return "'Issued at' claim ('iat') must be an Integer representing a time in the past.";
    if (payload.exp <= now) return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.";
    if (payload.exp - payload.iat > 600) return "'Expiration time' claim ('exp') is too far in the future";
    return undefined;
  }
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json; charset=utf-8" } });
}
