/**
 * Compiles the agent into one file, dist/agent.
 *
 * ink imports `react-devtools-core` when DEV=true; the package is not installed (it is a dev
 * tool), so `bun build --compile` fails to resolve it. The plugin below resolves it to a small
 * module whose `initialize`/`connectToDevTools` do nothing, so the binary renders ink screens and
 * never tries to reach a devtools server.
 */
import type { BunPlugin } from "bun";

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

const outfile = process.argv[2] ?? "dist/agent";
const result = await Bun.build({
  entrypoints: ["cli/agent.ts"],
  compile: { outfile },
  minify: true,
  sourcemap: "linked",
  plugins: [devtoolsStub],
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
});
if (!result.success) {
  for (const message of result.logs) console.error(message);
  process.exit(1);
}
console.error(`built ${outfile}`);
