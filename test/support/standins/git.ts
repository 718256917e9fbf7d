/** Records git's argv and environment, then runs the real git from PATH (after this folder). */
import { dirname, resolve } from "node:path";
import { record } from "./record.ts";

record("git");
const self = resolve(dirname(process.argv[1]!), "../bin");
const real = (process.env.PATH ?? "")
  .split(":")
  .filter((d) => d && resolve(d) !== self)
  .map((d) => `${d}/git`)
  .find((p) => Bun.spawnSync(["test", "-x", p]).exitCode === 0);
if (!real) {
  process.stderr.write("git stand-in: no real git on PATH\n");
  process.exit(127);
}
const proc = Bun.spawn([real, ...process.argv.slice(2)], { stdio: ["inherit", "inherit", "inherit"] });
process.exit(await proc.exited);
