/**
 * Stand-in for the Railpack CLI (not installable here): `railpack --version` and
 * `railpack prepare DIR --plan-out F --info-out G [--env NAME | --env NAME=VALUE]...` with the
 * real CLI's flag handling (a name-only --env takes its value from the environment). Writes a
 * plan that lists secret names only. STANDIN_RAILPACK_FAIL=1 makes planning fail like an app
 * Railpack cannot detect.
 */
import { existsSync, statSync, writeFileSync } from "node:fs";
import { record, fail } from "./record.ts";

record("railpack");
const version = process.env.STANDIN_RAILPACK_VERSION ?? "0.15.4";
const args = process.argv.slice(2);
if (args[0] === "--version" || args[0] === "-v") {
  process.stdout.write(`railpack version ${version}\n`);
  process.exit(0);
}
if (args[0] !== "prepare" && args[0] !== "p") fail(`No help topic for '${args[0] ?? ""}'`, 3);

let dir: string | undefined;
let planOut: string | undefined;
let infoOut: string | undefined;
const envs: Record<string, string> = {};
for (let i = 1; i < args.length; i++) {
  const a = args[i]!;
  const value = () => args[++i] ?? fail(`flag needs an argument: ${a}`, 1);
  if (a === "--plan-out") planOut = value();
  else if (a === "--info-out") infoOut = value();
  else if (a === "--env" || a === "-e") {
    const e = value();
    const eq = e.indexOf("=");
    if (eq < 0) {
      if (process.env[e] !== undefined) envs[e] = process.env[e]!;
    } else envs[e.slice(0, eq)] = e.slice(eq + 1);
  } else if (a.startsWith("-")) fail(`flag provided but not defined: ${a}`, 1);
  else if (dir === undefined) dir = a;
  else fail(`unexpected argument ${a}`, 1);
}
if (!dir) fail("directory argument is required", 1);
if (!existsSync(dir) || !statSync(dir).isDirectory()) fail(`error creating app: directory ${dir} does not exist`, 1);

process.stdout.write(`\nRailpack ${version}\n\n  ↳ Detected Node\n  ↳ Using npm package manager\n\n  Packages\n  node │ 22.11.0\n\n  Steps\n  ▸ install\n    $ npm ci\n\n  Deploy\n    $ node index.js\n`);
if (process.env.STANDIN_RAILPACK_FAIL) {
  process.stdout.write("\n  ✖ No start command was found\n");
  process.exit(1);
}
const secrets = Object.keys(envs).sort();
const plan = {
  $schema: "https://schema.railpack.com",
  steps: [{ name: "install", commands: [{ cmd: "npm ci" }], secrets }],
  deploy: { startCommand: "node index.js" },
  secrets,
};
if (planOut) writeFileSync(planOut, JSON.stringify(plan, null, 2));
if (infoOut) writeFileSync(infoOut, JSON.stringify({ success: true, railpackVersion: version, detectedProviders: ["node"], metadata: {} }, null, 2));
