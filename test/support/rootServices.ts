/**
 * The servers an installer test on a fresh root needs, on the root's own loopback (shared/HOST.md:
 * started in the root's network namespace with nsenter, so every address stays 127.0.0.1): a static
 * file server for install.sh and the release, the test control plane, and a registry holding the
 * web image the expected state deploys. They run in a child process (`nsenter -t PID -n bun
 * rootServices.ts`); the test drives them with JSON lines over its stdin/stdout.
 *
 *   startRootServices(root, servedDir)  → RootServices { files, controlPlane, registry, image, call(op, args), stop() }
 *     files          http://127.0.0.1:<port>: servedDir's files (GET only), each request recorded
 *     controlPlane   http://127.0.0.1:<port>: TestControlPlane
 *     image          "<registry>/hello-web:test", pushed from this machine's localhost/hello-web:test
 *   ops: token → { token };  servers → [{ id, registered, registrations }];
 *        expect { serverId, state } → sets that server's expected state;  status { serverId } → { count, last: the latest status report's body };
 *        fileRequests → ["GET /path 200", …]
 */
import { existsSync, statSync } from "node:fs";
import { join, normalize, resolve } from "node:path";
import { createInterface } from "node:readline";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { TestControlPlane } from "./TestControlPlane.ts";
import { pushImage, startRegistry } from "./podman.ts";
import type { DebianRoot } from "./debianRoot.ts";

const WEB_IMAGE = "localhost/hello-web:test";
const BUN = resolve(import.meta.dir, "../../node_modules/.bin/bun");

export interface RootServices {
  files: string;
  controlPlane: string;
  registry: string;
  image: string;
  call<T = unknown>(op: string, args?: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

export async function startRootServices(root: DebianRoot, servedDir: string): Promise<RootServices> {
  const child: ChildProcessWithoutNullStreams = spawn("nsenter", ["-t", String(root.pid), "-n", BUN, import.meta.path, servedDir], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr.on("data", (d: Buffer) => stderr.push(d.toString()));
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let ready: ((v: Record<string, string>) => void) | undefined;
  let failed: ((e: Error) => void) | undefined;
  const readyPromise = new Promise<Record<string, string>>((res, rej) => {
    ready = res;
    failed = rej;
  });
  createInterface({ input: child.stdout }).on("line", (line) => {
    const msg = JSON.parse(line) as { ready?: Record<string, string>; id?: number; result?: unknown; error?: string };
    if (msg.ready) return ready?.(msg.ready);
    const waiter = pending.get(msg.id ?? -1);
    pending.delete(msg.id ?? -1);
    if (msg.error !== undefined) waiter?.reject(new Error(msg.error));
    else waiter?.resolve(msg.result);
  });
  child.on("exit", (code) => {
    const err = new Error(`root services exited (${code}): ${stderr.join("").trim().slice(-2000)}`);
    failed?.(err);
    for (const w of pending.values()) w.reject(err);
    pending.clear();
  });
  const timeout = setTimeout(() => failed?.(new Error(`root services did not start: ${stderr.join("")}`)), 60_000);
  const endpoints = await readyPromise.finally(() => clearTimeout(timeout));
  let nextId = 0;
  return {
    files: endpoints.files!,
    controlPlane: endpoints.controlPlane!,
    registry: endpoints.registry!,
    image: endpoints.image!,
    call<T>(op: string, args: Record<string, unknown> = {}) {
      const id = nextId++;
      return new Promise<T>((res, rej) => {
        pending.set(id, { resolve: res as (v: unknown) => void, reject: rej });
        child.stdin.write(`${JSON.stringify({ id, op, args })}\n`);
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((res) => child.once("exit", res));
      child.stdin.end();
      await Promise.race([exited, Bun.sleep(10_000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
    },
  };
}

/** The child: runs inside the root's network namespace. */
async function serve(servedDir: string): Promise<void> {
  const fileRequests: string[] = [];
  const files = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = normalize(decodeURIComponent(new URL(req.url).pathname));
      const file = join(servedDir, path);
      const ok = req.method === "GET" && file.startsWith(servedDir) && existsSync(file) && statSync(file).isFile();
      fileRequests.push(`${req.method} ${path} ${ok ? 200 : 404}`);
      return ok ? new Response(Bun.file(file)) : new Response("not found\n", { status: 404 });
    },
  });
  const cp = await new TestControlPlane().start();
  const registry = await startRegistry();
  const image = await pushImage(WEB_IMAGE, registry.host, "hello-web:test");

  const ops: Record<string, (args: Record<string, unknown>) => unknown> = {
    token: () => ({ token: cp.issueToken() }),
    servers: () =>
      [...cp.servers.values()].map((s) => ({
        id: s.id,
        registered: s.tokenUsedAt !== undefined,
        registrations: cp.requests.filter((r) => r.path === "/api/v1/agent/register" && r.status === 200 && r.body.includes(s.token)).length,
      })),
    expect: (args) => cp.setExpectedState(String(args.serverId), args.state),
    status: (args) => {
      const reports = cp.servers.get(String(args.serverId))?.statusReports ?? [];
      return { count: reports.length, last: reports.at(-1)?.body ?? null };
    },
    fileRequests: () => fileRequests,
  };
  const shutdown = async () => {
    await files.stop(true);
    await cp.stop();
    await registry.stop();
    process.exit(0);
  };
  createInterface({ input: process.stdin })
    .on("line", async (line) => {
      const { id, op, args } = JSON.parse(line) as { id: number; op: string; args: Record<string, unknown> };
      try {
        const fn = ops[op];
        if (!fn) throw new Error(`unknown op ${op}`);
        process.stdout.write(`${JSON.stringify({ id, result: (await fn(args)) ?? null })}\n`);
      } catch (err) {
        process.stdout.write(`${JSON.stringify({ id, error: (err as Error).message })}\n`);
      }
    })
    .on("close", () => void shutdown());
  process.stdout.write(`${JSON.stringify({ ready: { files: `http://127.0.0.1:${files.port}`, controlPlane: cp.url, registry: registry.host, image } })}\n`);
}

if (import.meta.main) {
  const dir = resolve(process.argv[2] ?? ".");
  if (!existsSync(dir)) throw new Error(`no folder ${dir}`);
  await serve(dir);
}
