/**
 * Compiles the agent into one file: `bun install/build.ts [outfile]` → dist/agent for this machine.
 * The modules a command imports dynamically become chunks inside that file (splitting), loaded
 * when the command first needs them; cli/program.ts is where commands are wired to them.
 * install/release.ts uses compileAgent for the release binaries of every architecture.
 *
 * ink imports `react-devtools-core` when DEV=true; the package is not installed (it is a dev
 * tool), so `bun build --compile` fails to resolve it. The plugin below resolves it to a small
 * module whose `initialize`/`connectToDevTools` do nothing, so the binary renders ink screens and
 * never tries to reach a devtools server.
 */
import type { BunPlugin } from "bun";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

const REPO = resolve(import.meta.dir, "..");

const devtoolsStub: BunPlugin = {
  name: "react-devtools-core-stub",
  setup(build) {
    build.onResolve({ filter: /^react-devtools-core$/ }, () => ({ path: "react-devtools-core", namespace: "devtools-stub" }));
    build.onLoad({ filter: /.*/, namespace: "devtools-stub" }, () => ({
      contents: "export default { initialize() {}, connectToDevTools() {} };",
      loader: "js",
    }));
  },
};

/** The checkout's commit, short, with "-dirty" when tracked files changed; "unknown" outside git. */
export function gitCommit(repo = REPO): string {
  const head = Bun.spawnSync(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"], { stderr: "ignore" });
  if (head.exitCode !== 0) return "unknown";
  const status = Bun.spawnSync(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], { stderr: "ignore" });
  const dirty = status.exitCode === 0 && status.stdout.toString().trim() !== "";
  return `${head.stdout.toString().trim()}${dirty ? "-dirty" : ""}`;
}

export interface CompileOptions {
  outfile: string;
  /** Bun's cross-compilation target, e.g. "bun-linux-arm64"; default this machine. */
  target?: string;
  version?: string;
  commit?: string;
  /** Source maps beside the binary (default true; releases ship the binary alone). */
  sourcemap?: boolean;
}

export async function compileAgent(options: CompileOptions): Promise<void> {
  // Every chunk has its map, named by content hash: drop the previous build's.
  const dir = dirname(resolve(options.outfile));
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(dir)) {
    if (file === `${basename(options.outfile)}.map` || /^chunk-[a-z0-9]+\.js\.map$/.test(file)) rmSync(join(dir, file));
  }
  const result = await Bun.build({
    entrypoints: [resolve(REPO, "cli/agent.ts")],
    compile: {
      outfile: options.outfile,
      ...(options.target ? { target: options.target as never } : {}),
      // A root daemon reads its settings from flags, environment and its config file only: never
      // a .env or bunfig.toml from whatever folder it was started in.
      autoloadDotenv: false,
      autoloadBunfig: false,
      // JavaScriptCore compiles a function with its optimizing tiers only after 20× the usual
      // number of runs: start-up code and an idle agent's once-a-few-seconds work stay in the
      // interpreter and baseline JIT (an idle `agent run` ~4 MiB smaller, a cron reconcile
      // ~30 ms less CPU), while a hot loop (log shipping, builds) is still optimized soon enough.
      jitPolicy: 20,
    },
    // Chunks per dynamic import: a command parses and runs only the code it uses (`--version`
    // loads almost nothing, `reconcile` never loads ink or the builder).
    splitting: true,
    // Bytecode compiled at build time: the chunks a command loads are not parsed at every start
    // (an idle `reconcile --once` from cron spends a good part of its time there otherwise).
    bytecode: true,
    // ESM: chunks need it (with bytecode Bun's default format would be CommonJS).
    format: "esm",
    minify: true,
    sourcemap: options.sourcemap === false ? "none" : "linked",
    plugins: [devtoolsStub],
    define: {
      "process.env.NODE_ENV": JSON.stringify("production"),
      AGENT_BUILD_VERSION: JSON.stringify(options.version ?? pkg.version),
      AGENT_BUILD_COMMIT: JSON.stringify(options.commit ?? gitCommit()),
    },
  });
  if (!result.success) throw new Error(`bun build failed:\n${result.logs.map(String).join("\n")}`);
}

if (import.meta.main) {
  const outfile = process.argv[2] ?? "dist/agent";
  try {
    await compileAgent({ outfile });
  } catch (err) {
    console.error((err as Error).message);
    process.exit(1);
  }
  console.error(`built ${outfile}`);
}
