import { createPublicKey, randomBytes, randomUUID, verify } from "node:crypto";
import type { Server } from "bun";
import { encryptSecret } from "../../lib/crypto/secrets.ts";
import { signedMessage, type SigningMode } from "../../lib/controlplane/signing.ts";

/**
 * An in-memory control plane speaking PROTOCOL.md with the real one's checks and error texts:
 * required headers, ±60 s timestamps, the raw 32-byte key wrapped in SPKI, signatures over the
 * exact body bytes, one-time 24 h tokens, 409 on a second claim. Tests script expected state,
 * builds and work items through it and can inject faults with `intercept`.
 */
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const TIMESTAMP_TOLERANCE_MS = 60_000;
const TOKEN_EXPIRY_MS = 24 * 3600_000;

export interface ServerRecord {
  id: string;
  token: string;
  tokenCreatedAt: number;
  tokenUsedAt?: number;
  signingPublicKey?: string;
  wireguardPublicKey?: string;
  publicIp?: string;
  subnetId?: number;
  wireguardIp?: string;
  expectedState: unknown;
  workItems: WorkItemRecord[];
  statusReports: Array<{ at: number; body: any }>;
}

export interface WorkItemRecord {
  id: string;
  type: string;
  payload: string;
  status: "pending" | "completed" | "failed";
  error?: string;
  attempts: number;
  createdAt: string;
  acks: Array<{ status: string; error?: string }>;
}

export interface BuildRecord {
  id: string;
  serverId?: string;
  commitSha: string;
  commitMessage: string;
  branch: string;
  serviceId: string;
  projectId: string;
  githubRepoId: string | null;
  cloneUrl: string;
  imageUri: string;
  secrets: Record<string, string>;
  status: string;
  error?: string;
  claimedBy?: string;
  history: Array<{ status: string; error?: string }>;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  status?: number;
}

/** A fault for `intercept`: a 200 whose body starts, then never ends (a space every 100 ms, for as long as the client reads). */
export function trickledAnswer(): Response {
  let sent = 0;
  const body = new ReadableStream({
    async pull(controller) {
      if (sent++ > 0) await Bun.sleep(100);
      controller.enqueue(new TextEncoder().encode(sent === 1 ? '{"containers": [' : " "));
    },
  });
  return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
}

type Interceptor = (req: RecordedRequest) => Response | undefined | Promise<Response | undefined>;

export class TestControlPlane {
  readonly encryptionKey = randomBytes(32).toString("hex");
  readonly servers = new Map<string, ServerRecord>();
  readonly builds = new Map<string, BuildRecord>();
  readonly requests: RecordedRequest[] = [];
  signing: SigningMode = "v1";
  /** Milliseconds added to the control plane's clock (to test skew). */
  clockOffsetMs = 0;
  private interceptors: Interceptor[] = [];
  private server?: Server<unknown>;
  /** The subnet id the next registration gets (tests pick one no podman network uses). */
  nextSubnet = 1;

  async start(): Promise<this> {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => this.handle(req) });
    return this;
  }

  get url(): string {
    if (!this.server) throw new Error("control plane not started");
    return `http://127.0.0.1:${this.server.port}`;
  }

  async stop(): Promise<void> {
    await this.server?.stop(true);
    this.server = undefined;
  }

  /** Creates a server slot with a fresh one-time token, as the UI's "add server" does. */
  issueToken(options: { createdAt?: number } = {}): string {
    const token = randomBytes(24).toString("base64url");
    const id = randomUUID();
    this.servers.set(id, {
      id,
      token,
      tokenCreatedAt: options.createdAt ?? Date.now(),
      expectedState: { containers: [], dns: { records: [] }, wireguard: { peers: [] } },
      workItems: [],
      statusReports: [],
    });
    return token;
  }

  encrypt(plain: string): string {
    return encryptSecret(plain, this.encryptionKey);
  }

  serverByToken(token: string): ServerRecord | undefined {
    return [...this.servers.values()].find((s) => s.token === token);
  }

  onlyServer(): ServerRecord {
    const registered = [...this.servers.values()].filter((s) => s.tokenUsedAt);
    if (registered.length !== 1) throw new Error(`expected one registered server, found ${registered.length}`);
    return registered[0]!;
  }

  setExpectedState(serverId: string, state: unknown): void {
    this.server_(serverId).expectedState = state;
  }

  addWorkItem(serverId: string, type: string, payload: unknown): WorkItemRecord {
    const item: WorkItemRecord = {
      id: randomUUID(),
      type,
      payload: typeof payload === "string" ? payload : JSON.stringify(payload),
      status: "pending",
      attempts: 0,
      createdAt: new Date().toISOString(),
      acks: [],
    };
    this.server_(serverId).workItems.push(item);
    return item;
  }

  addBuild(build: Partial<BuildRecord> & Pick<BuildRecord, "cloneUrl" | "imageUri">): BuildRecord {
    const record: BuildRecord = {
      id: randomUUID(),
      commitSha: "HEAD",
      commitMessage: "test build",
      branch: "main",
      serviceId: randomUUID(),
      projectId: randomUUID(),
      githubRepoId: null,
      secrets: {},
      status: "pending",
      history: [],
      ...build,
    };
    this.builds.set(record.id, record);
    return record;
  }

  cancelBuild(id: string): void {
    const build = this.builds.get(id);
    if (build) build.status = "cancelled";
  }

  /** Runs before normal handling; return a Response to answer instead (fault injection). */
  intercept(fn: Interceptor): () => void {
    this.interceptors.push(fn);
    return () => {
      this.interceptors = this.interceptors.filter((f) => f !== fn);
    };
  }

  private server_(id: string): ServerRecord {
    const s = this.servers.get(id);
    if (!s) throw new Error(`no server ${id}`);
    return s;
  }

  private async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const body = await req.text();
    const recorded: RecordedRequest = { method: req.method, path: url.pathname + url.search, headers: Object.fromEntries(req.headers), body };
    this.requests.push(recorded);
    for (const interceptor of this.interceptors) {
      const res = await interceptor(recorded);
      if (res) {
        recorded.status = res.status;
        return res;
      }
    }
    const res = await this.route(req.method, url, body, req.headers);
    recorded.status = res.status;
    // Like a real server, the Date header is the control plane's own clock (skew included).
    res.headers.set("date", new Date(this.now()).toUTCString());
    return res;
  }

  private async route(method: string, url: URL, body: string, headers: Headers): Promise<Response> {
    const path = url.pathname;
    if (method === "POST" && path === "/api/v1/agent/register") return this.register(body);

    const claim = path.match(/^\/api\/v1\/agent\/builds\/([^/]+)\/claim$/);
    // The real claim route verifies over an empty body, so a claim sent with a body fails with 401.
    const auth = this.verify(method, url.pathname + url.search, claim ? "" : body, headers);
    if (auth instanceof Response) return auth;
    const server = auth;

    if (method === "GET" && path === "/api/v1/agent/expected-state") return json(server.expectedState);
    if (method === "POST" && path === "/api/v1/agent/status") {
      const parsed = parseJson(body);
      if (!parsed || !Array.isArray(parsed.containers)) return error("Internal server error", 500);
      server.statusReports.push({ at: Date.now(), body: parsed });
      return json({ ok: true });
    }
    if (method === "GET" && path === "/api/v1/agent/pending-builds") {
      const build = [...this.builds.values()].find((b) => b.status === "pending" && (!b.serverId || b.serverId === server.id));
      return json({
        build: build
          ? { id: build.id, commitSha: build.commitSha, commitMessage: build.commitMessage, branch: build.branch, serviceId: build.serviceId, githubRepoId: build.githubRepoId }
          : null,
      });
    }
    if (method === "POST" && claim) {
      const build = this.builds.get(decodeURIComponent(claim[1]!));
      if (!build || build.status !== "pending") return error("Build already claimed or not found", 409);
      build.status = "claimed";
      build.claimedBy = server.id;
      return json({
        build: { id: build.id, commitSha: build.commitSha, commitMessage: build.commitMessage, branch: build.branch, serviceId: build.serviceId, projectId: build.projectId },
        cloneUrl: build.cloneUrl,
        imageUri: build.imageUri,
        secrets: build.secrets,
      });
    }
    const buildStatus = path.match(/^\/api\/v1\/agent\/builds\/([^/]+)\/status$/);
    if (buildStatus) {
      const build = this.builds.get(decodeURIComponent(buildStatus[1]!));
      if (!build) return error("Build not found", 404);
      if (method === "GET") return json({ status: build.status });
      const parsed = parseJson(body);
      const allowed = ["cloning", "building", "pushing", "completed", "failed"];
      if (!parsed || !allowed.includes(parsed.status)) return error("Invalid status", 400);
      build.history.push({ status: parsed.status, ...(parsed.error ? { error: parsed.error } : {}) });
      if (build.status === "cancelled") return json({ ok: true, cancelled: true });
      build.status = parsed.status;
      if (parsed.error) build.error = parsed.error;
      return json({ ok: true });
    }
    if (path === "/api/v1/agent/work-queue") {
      if (method === "GET") {
        const items = server.workItems.filter((i) => i.status === "pending");
        for (const item of items) item.attempts++;
        return json({
          items: items.map((i) => ({ id: i.id, serverId: server.id, type: i.type, payload: i.payload, status: "pending", createdAt: i.createdAt, startedAt: null, attempts: i.attempts })),
        });
      }
      const parsed = parseJson(body);
      if (!parsed || typeof parsed.id !== "string" || !["completed", "failed"].includes(parsed.status)) return error("Invalid request", 400);
      const item = server.workItems.find((i) => i.id === parsed.id);
      if (!item) return error("Work item not found", 404);
      item.acks.push({ status: parsed.status, ...(parsed.error ? { error: parsed.error } : {}) });
      item.status = parsed.status;
      if (parsed.error) item.error = parsed.error;
      return json({ ok: true });
    }
    return error("Not found", 404);
  }

  private register(body: string): Response {
    const parsed = parseJson(body);
    const missing = ["token", "wireguardPublicKey", "signingPublicKey"].filter((k) => typeof parsed?.[k] !== "string" || parsed[k] === "");
    if (!parsed || missing.length > 0) return error(missing.map((k) => `${k}: Required`).join(", ") || "Invalid request", 400);
    const server = this.serverByToken(parsed.token);
    if (!server || server.tokenUsedAt || server.tokenCreatedAt <= this.now() - TOKEN_EXPIRY_MS) {
      return error("Invalid, expired, or already used token", 401);
    }
    server.tokenUsedAt = this.now();
    server.signingPublicKey = parsed.signingPublicKey;
    server.wireguardPublicKey = parsed.wireguardPublicKey;
    server.publicIp = parsed.publicIp;
    server.subnetId = this.nextSubnet++;
    server.wireguardIp = `10.100.${server.subnetId}.1`;
    return json({ serverId: server.id, subnetId: server.subnetId, wireguardIp: server.wireguardIp, peers: [], encryptionKey: this.encryptionKey });
  }

  private verify(method: string, pathAndQuery: string, body: string, headers: Headers): ServerRecord | Response {
    const serverId = headers.get("x-server-id");
    const timestamp = headers.get("x-timestamp");
    const signature = headers.get("x-signature");
    if (!serverId || !timestamp || !signature) return error("Missing required headers: x-server-id, x-timestamp, x-signature", 400);
    const ts = Number.parseInt(timestamp, 10);
    if (Number.isNaN(ts) || Math.abs(this.now() - ts) > TIMESTAMP_TOLERANCE_MS) return error("Request timestamp expired or invalid", 401);
    const server = this.servers.get(serverId);
    if (!server || !server.signingPublicKey) return error("Server not found or not registered", 404);
    let valid = false;
    try {
      const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, Buffer.from(server.signingPublicKey, "base64")]), format: "der", type: "spki" });
      valid = verify(null, Buffer.from(signedMessage(this.signing, timestamp, method, pathAndQuery, body)), key, Buffer.from(signature, "base64"));
    } catch {
      valid = false;
    }
    if (!valid) return error("Invalid signature", 401);
    return server;
  }

  private now(): number {
    return Date.now() + this.clockOffsetMs;
  }
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

function error(text: string, status: number): Response {
  return json({ error: text }, status);
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
