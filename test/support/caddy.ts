import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "../../lib/exec.ts";
import { CaddyDriver } from "../../lib/proxy/CaddyDriver.ts";
import { waitFor } from "./podman.ts";

type Child = ReturnType<typeof spawn>;

/** A real `caddy run`, boxed: an execa child is a thenable, and returning it from an async function would wait for its exit. */
export interface RunningCaddy {
  child: Child;
}

/** Starts `caddy run` on `config` (written into `dir`) and waits for its admin API on `adminPort`. */
export async function startCaddy(dir: string, config: unknown, adminPort: number): Promise<RunningCaddy> {
  const file = join(dir, `caddy-${adminPort}.json`);
  writeFileSync(file, JSON.stringify(config));
  const child = spawn("caddy", ["run", "--config", file]);
  child.catch(() => undefined);
  await waitFor(() => new CaddyDriver({ adminUrl: `http://127.0.0.1:${adminPort}` }).reachable(), 15_000, `caddy admin API on ${adminPort}`);
  return { child };
}

export async function stopCaddy(caddy: RunningCaddy | undefined): Promise<void> {
  if (!caddy) return;
  caddy.child.kill("SIGTERM");
  await Promise.race([caddy.child.catch(() => undefined), Bun.sleep(5000)]);
}
