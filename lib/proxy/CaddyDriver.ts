import { AgentError } from "../errors.ts";
import { logger } from "../logger.ts";
import { registerSecret } from "../redact.ts";
import type { ProxyDriver } from "../drivers.ts";
import type { Certificate, Route } from "../state/types.ts";
import { certificatesFromCaddy, mergeCaddyCertificates, mergeCaddyRoutes, mergeLogging, mergeServerLogs, routesFromCaddy } from "./caddyConfig.ts";
import { assertValidProxyInput, installable } from "./proxyInput.ts";

const log = logger("caddy");
const ATTEMPTS = 5;

export interface CaddyDriverOptions {
  /** Caddy's admin API; default http://127.0.0.1:2019. */
  adminUrl?: string;
  /** The HTTP server whose routes the agent manages; default srv0 (what a Caddyfile's first server is called). */
  serverName?: string;
  /** Listen addresses when the agent has to create the server; default [":80", ":443"]. */
  listen?: string[];
  /** Default true. false sets automatic_https.disable on a server the agent creates (plain-HTTP setups, tests). */
  automaticHttps?: boolean;
  /** Per admin API request; default 10 s. */
  timeoutMs?: number;
  /** Where Caddy writes the access log of the agent's routes (JSON); none configured without it. */
  accessLogFile?: string;
}

interface AdminResponse {
  status: number;
  body: unknown;
  etag?: string;
}

class ConflictError extends Error {}

/**
 * Proxy routes through Caddy's admin API. Managed routes carry `@id: techulus-<route id>`; the
 * agent replaces the routes array in one request guarded by Caddy's ETag (If-Match), keeping
 * every route without such an id exactly where it was, and retries when someone else changed the
 * routes in between. observe() reads the live config, so a Caddy restart that lost the routes is drift.
 */
export class CaddyDriver implements ProxyDriver {
  readonly name = "caddy" as const;
  readonly adminUrl: string;
  readonly serverName: string;
  private readonly options: CaddyDriverOptions;

  constructor(options: CaddyDriverOptions = {}) {
    this.adminUrl = (options.adminUrl ?? "http://127.0.0.1:2019").replace(/\/+$/, "");
    this.serverName = options.serverName ?? "srv0";
    if (!/^[A-Za-z0-9_.-]+$/.test(this.serverName)) throw new AgentError(`Caddy server name ${JSON.stringify(this.serverName)} is invalid`);
    this.options = options;
  }

  private get serverPath(): string {
    return `/config/apps/http/servers/${this.serverName}`;
  }
  private get routesPath(): string {
    return `${this.serverPath}/routes`;
  }
  private readonly loadPemPath = "/config/apps/tls/certificates/load_pem";

  async observe(): Promise<{ routes: Route[]; certificates: Certificate[] }> {
    const [routes, certificates] = await Promise.all([this.readArray(this.routesPath), this.readArray(this.loadPemPath)]);
    const certs = certificatesFromCaddy(certificates?.items ?? []);
    for (const cert of certs) registerSecret(cert.certificateKey);
    return { routes: routesFromCaddy(routes?.items ?? []), certificates: certs };
  }

  async apply(routes: Route[], certificates: Certificate[]): Promise<void> {
    assertValidProxyInput(routes, certificates);
    for (const cert of certificates) registerSecret(cert.certificateKey);
    const wanted = installable(routes);
    // Certificates first, so a new route's domain already has its certificate when it goes live.
    await this.replaceArray(this.loadPemPath, (live) => mergeCaddyCertificates(live, certificates), certificates.length > 0, (items) => ({
      method: "PUT",
      path: this.loadPemPath,
      body: items,
    }));
    await this.replaceArray(this.routesPath, (live) => mergeCaddyRoutes(live, wanted), true, (items) => this.createServer(items));
    if (this.options.accessLogFile) {
      // The routes work without it: a logger Caddy refuses (a folder it cannot write) is a warning.
      await this.configureAccessLog(this.options.accessLogFile, wanted).catch((err) => log.warn(`cannot configure the access log of the agent's routes: ${(err as Error).message}`));
    }
    log.info(`applied ${wanted.length} route(s) and ${certificates.length} certificate(s) to Caddy server ${this.serverName}`);
  }

  /** Answers when the admin API is reachable (used to detect the proxy in `--proxy-driver auto`). */
  async reachable(): Promise<boolean> {
    try {
      const res = await this.call("GET", "/config/", undefined, {}, 2000);
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** The agent's access logger, and its domains mapped to it on the server. */
  private async configureAccessLog(file: string, routes: Route[]): Promise<void> {
    const logging = await this.call("GET", "/config/logging");
    if (logging.status !== 200 && !isMissingPath(logging)) throw adminError("GET", "/config/logging", logging);
    await this.write("POST", "/config/logging", mergeLogging(logging.status === 200 ? logging.body : undefined, file), {});
    const path = `${this.serverPath}/logs`;
    const logs = await this.call("GET", path);
    if (logs.status !== 200 && !isMissingPath(logs)) throw adminError("GET", path, logs);
    await this.write("POST", path, mergeServerLogs(logs.status === 200 ? logs.body : undefined, routes), {});
  }

  private createServer(routes: unknown[]): { method: string; path: string; body: unknown } {
    const server: Record<string, unknown> = { listen: this.options.listen ?? [":80", ":443"], routes };
    if (this.options.automaticHttps === false) server.automatic_https = { disable: true };
    log.info(`creating Caddy server ${this.serverName} listening on ${(server.listen as string[]).join(", ")}`);
    return { method: "PUT", path: this.serverPath, body: server };
  }

  /**
   * Read–merge–write of one array in Caddy's config. When it exists: PATCH with If-Match, retried
   * on 412. When only its key is missing (its parent exists): PUT at its path. When its parent is
   * missing too: `create`. Neither when there is nothing to write.
   */
  private async replaceArray(
    path: string,
    merge: (live: unknown[]) => unknown[],
    createWhenMissing: boolean,
    create: (items: unknown[]) => { method: string; path: string; body: unknown },
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const live = await this.readArray(path);
        const ifMatch: Record<string, string> = live?.etag ? { "if-match": live.etag } : {};
        if (live?.items) {
          await this.write("PATCH", path, merge(live.items), ifMatch);
        } else if (!createWhenMissing) {
          return;
        } else if (live) {
          await this.write("PUT", path, merge([]), ifMatch);
        } else {
          const c = create(merge([]));
          await this.write(c.method, c.path, c.body, {});
        }
        return;
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= ATTEMPTS) throw err;
        log.info(`${path} changed while it was being updated; retrying (${attempt}/${ATTEMPTS - 1})`);
      }
    }
  }

  /**
   * The array at `path` with its ETag; `items` null when its parent exists without it (Caddy answers
   * null); undefined when a parent does not exist.
   */
  private async readArray(path: string): Promise<{ items: unknown[] | null; etag?: string } | undefined> {
    const res = await this.call("GET", path);
    if (res.status === 200) {
      if (res.body === null) return { items: null, etag: res.etag };
      if (!Array.isArray(res.body)) throw new AgentError(`Caddy admin API: ${path} is not an array`);
      return { items: res.body, etag: res.etag };
    }
    if (isMissingPath(res)) return undefined;
    throw adminError("GET", path, res);
  }

  private async write(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<void> {
    const res = await this.call(method, path, body, headers);
    if (res.status === 200) return;
    // 412: the ETag no longer matches. A PUT of something that now exists: created concurrently.
    if (res.status === 412 || (method === "PUT" && res.status === 409)) throw new ConflictError();
    throw adminError(method, path, res);
  }

  private async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs?: number): Promise<AdminResponse> {
    const timeout = timeoutMs ?? this.options.timeoutMs ?? 10_000;
    // undici when Caddy is first called: worker nodes, which have no proxy, never load it.
    const { request } = await import("../http/undici.ts");
    let res;
    try {
      res = await request(`${this.adminUrl}${path}`, {
        method: method as "GET",
        headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        // Caddy restarts its admin listener on config changes, closing idle keep-alive sockets;
        // a reused dead socket would fail the next call, so every call gets its own connection.
        reset: true,
      });
    } catch (err) {
      throw new AgentError(`cannot reach Caddy's admin API at ${this.adminUrl}: ${(err as Error).message}`, {
        hint: "start Caddy (with its admin API enabled) or point --caddy-admin-url at it",
        cause: err,
      });
    }
    const text = await res.body.text();
    let parsed: unknown = undefined;
    if (text.trim() !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    const etag = headerValue(res.trailers?.etag) ?? headerValue(res.headers.etag);
    return { status: res.statusCode, body: parsed, etag };
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function isMissingPath(res: AdminResponse): boolean {
  if (res.status === 404) return true;
  const message = (res.body as { error?: unknown } | undefined)?.error;
  return res.status === 400 && typeof message === "string" && /invalid traversal path|does not exist/.test(message);
}

function adminError(method: string, path: string, res: AdminResponse): AgentError {
  const detail = (res.body as { error?: unknown } | undefined)?.error ?? (typeof res.body === "string" ? res.body : "");
  return new AgentError(`Caddy admin API ${method} ${path} answered ${res.status}${detail ? `: ${String(detail).slice(0, 300)}` : ""}`, {
    hint: "check Caddy's log; run agent doctor",
  });
}
