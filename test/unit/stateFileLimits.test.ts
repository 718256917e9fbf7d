import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_ANSWER_BYTES } from "../../lib/controlplane/readAnswer.ts";
import { InvalidInputError } from "../../lib/errors.ts";
import { loadStateFile, type NormalizeOptions } from "../../lib/reconcile/expectedStateSource.ts";

const dir = mkdtempSync(join(tmpdir(), "state-limits-"));
const OPTIONS: NormalizeOptions = { isProxy: false, volumesRoot: join(dir, "volumes"), node: { subnetId: 1, hostPorts: [{ from: 1024, to: 65535 }], reservedPorts: [] } };
const EMPTY_STATE = JSON.stringify({ containers: [], dns: { records: [] }, traefik: { routes: [] }, wireguard: { peers: [] } });

const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/huge") return new Response(new Uint8Array(MAX_ANSWER_BYTES + 1).fill(0x20));
    if (path === "/endless-chunks") {
      // No Content-Length: the limit must hold on the bytes that arrive.
      const chunk = new Uint8Array(1024 * 1024).fill(0x20);
      let sent = 0;
      return new Response(new ReadableStream({ pull: (c) => (sent++ < 64 ? c.enqueue(chunk) : c.close()) }));
    }
    if (path === "/moved") return new Response(EMPTY_STATE, { status: 302, headers: { location: "http://example.com/state.json" } });
    return new Response(EMPTY_STATE, { headers: { "content-type": "application/json" } });
  },
});

afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

test("--state URL: an answer within the limit is read", async () => {
  const state = await loadStateFile(`http://127.0.0.1:${server.port}/ok`, OPTIONS);
  expect(state.containers).toEqual([]);
});

test("--state URL: an answer over the size limit is refused, by its length or by what arrived", async () => {
  for (const path of ["/huge", "/endless-chunks"]) {
    const err = await loadStateFile(`http://127.0.0.1:${server.port}${path}`, OPTIONS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toBe(`--state http://127.0.0.1:${server.port}${path}: the answer is over the size limit of 8 MiB`);
  }
});

test("--state URL: a redirect is an error, not followed and not parsed", async () => {
  const err = await loadStateFile(`http://127.0.0.1:${server.port}/moved`, OPTIONS).catch((e: unknown) => e);
  expect((err as Error).message).toBe(`GET http://127.0.0.1:${server.port}/moved answered 302 (a redirect to http://example.com/state.json, not followed)`);
});

test("--state FILE: a file over the size limit is refused before it is read", async () => {
  const file = join(dir, "huge.json");
  writeFileSync(file, "");
  truncateSync(file, MAX_ANSWER_BYTES + 1);
  const err = await loadStateFile(file, OPTIONS).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(InvalidInputError);
  expect((err as Error).message).toBe(`--state ${file}: the file is over the size limit of 8 MiB`);
});
