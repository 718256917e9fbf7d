import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** What a stand-in was called with; tests read these back (exact argv, env, cwd). */
export interface Invocation {
  tool: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  at: number;
}

/** Writes one JSON file per invocation into STANDIN_RECORD_DIR (when set). */
export function record(tool: string): void {
  const dir = process.env.STANDIN_RECORD_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const invocation: Invocation = {
    tool,
    argv: process.argv.slice(2),
    env: Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined)),
    cwd: process.cwd(),
    at: Date.now(),
  };
  writeFileSync(join(dir, `${tool}-${Date.now()}-${process.pid}.json`), JSON.stringify(invocation, null, 2));
}

export function fail(message: string, code = 1): never {
  process.stderr.write(message + "\n");
  process.exit(code);
}
