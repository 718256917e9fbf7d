/**
 * A real VictoriaLogs (v1.93.7, ../shared/tools/bin/victoria-logs; see ../shared/tools/README.md)
 * started by a test on a free loopback port with a storage folder of its own, and queried back.
 *
 *   startVictoriaLogs()           → RealVictoriaLogs (rejects, naming the path, when the binary is missing)
 *   vl.url                        "http://127.0.0.1:PORT" (pass as --logs-endpoint)
 *   vl.query(logsql)              rows of /select/logsql/query, each with _msg, _time, _stream and the named fields
 *   vl.waitForRows(logsql, n, ms) polls query until it returns at least n rows; returns them
 *   vl.stop()                     SIGTERM (VictoriaLogs flushes), storage removed
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { REPO_ROOT } from "./agentBinary.ts";
import { freePort } from "./podman.ts";

export const VICTORIA_LOGS_BINARY = join(REPO_ROOT, "../shared/tools/bin/victoria-logs");

export type VlRow = Record<string, string> & { _msg: string; _time: string };

export interface RealVictoriaLogs {
  url: string;
  query(logsql: string): Promise<VlRow[]>;
  waitForRows(logsql: string, count: number, timeoutMs?: number): Promise<VlRow[]>;
  stop(): Promise<void>;
}

export async function startVictoriaLogs(): Promise<RealVictoriaLogs> {
  if (!existsSync(VICTORIA_LOGS_BINARY)) {
    throw new Error(`VictoriaLogs binary not found at ${VICTORIA_LOGS_BINARY}: these tests need the real receiver from ../shared/tools (see its README)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "vlogs-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc: Subprocess = Bun.spawn(
    [VICTORIA_LOGS_BINARY, "-httpListenAddr", `127.0.0.1:${port}`, "-storageDataPath", join(dir, "data"), "-retentionPeriod", "100y", "-loggerLevel", "ERROR"],
    { stdout: "ignore", stderr: "pipe", stdin: "ignore" },
  );
  const stop = async () => {
    if (proc.exitCode === null) proc.kill("SIGTERM");
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  while (!(await healthy(url))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      const stderr = await new Response(proc.stderr as ReadableStream).text().catch(() => "");
      await stop();
      throw new Error(`VictoriaLogs did not become healthy on ${url} (exit ${proc.exitCode}): ${stderr.slice(-2000)}`);
    }
    await Bun.sleep(100);
  }
  const query = async (logsql: string): Promise<VlRow[]> => {
    const res = await fetch(`${url}/select/logsql/query`, { method: "POST", body: new URLSearchParams({ query: logsql }) });
    const text = await res.text();
    if (!res.ok) throw new Error(`VictoriaLogs query ${logsql} answered ${res.status}: ${text}`);
    return text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as VlRow);
  };
  return {
    url,
    query,
    async waitForRows(logsql, count, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const rows = await query(logsql);
        if (rows.length >= count) return rows;
        if (Date.now() > until) throw new Error(`VictoriaLogs: ${rows.length} rows for ${logsql} after ${timeoutMs} ms, waiting for ${count}`);
        await Bun.sleep(250);
      }
    },
    stop,
  };
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`);
    return res.ok && (await res.text()).trim() === "OK";
  } catch {
    return false;
  }
}

/** Rows sorted by `_time` to the nanosecond (VictoriaLogs trims trailing zeros of the fraction). */
export function byTime(rows: readonly VlRow[]): VlRow[] {
  return rows
    .map((row) => ({ row, ns: timeNs(row._time) }))
    .sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0))
    .map((x) => x.row);
}

function timeNs(time: string): bigint {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(time);
  if (!m) throw new Error(`unexpected _time ${time}`);
  return BigInt(Date.parse(`${m[1]}Z`)) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}
