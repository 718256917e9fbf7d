/**
 * Stand-in for `buildctl`, for Railpack plans only: their gateway frontend image cannot be pulled
 * here, so a real daemon cannot run them (Dockerfile builds run on the real BuildKit in
 * ../shared/tools). It parses argv the way buildctl
 * does and enforces what a real build would need: a daemon address, an existing context and
 * dockerfile folder, the Dockerfile or the Railpack plan named by `filename`, a frontend image
 * for gateway.v0, every `--secret id=K,env=K` present in its environment, an image output. It
 * prints `--progress plain` style lines on stderr and writes the metadata file with a digest.
 *
 * Knob: STANDIN_BUILDKIT_UP=1 makes `debug workers` answer (driver detection).
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fail, record } from "./record.ts";

record("buildctl");
const args = process.argv.slice(2);
let addr = process.env.BUILDKIT_HOST;
while (args[0]?.startsWith("--")) {
  const flag = args.shift()!;
  if (flag === "--addr") addr = args.shift();
  else if (flag.startsWith("--addr=")) addr = flag.slice(7);
  else if (flag === "--debug") continue;
  else fail(`flag provided but not defined: ${flag}`);
}
const command = args.shift();
if (command === "debug" && args[0] === "workers") {
  if (process.env.STANDIN_BUILDKIT_UP !== "1") fail(`error: listing workers for Build: failed to list workers: Unavailable: connection error: desc = "transport: Error while dialing: dial tcp ${addr?.replace(/^tcp:\/\//, "")}: connect: connection refused"`);
  process.stdout.write("ID\t\t\t\tPLATFORMS\nstandin0\t\t\tlinux/amd64\n");
  process.exit(0);
}
if (command !== "build") fail(`No help topic for '${command ?? ""}'`, 3);
if (!addr) fail("error: buildkit address is required (--addr or BUILDKIT_HOST)");

const repeatable = new Set(["--local", "--opt", "--secret", "--import-cache", "--export-cache"]);
const single = new Set(["--progress", "--frontend", "--output", "--metadata-file", "--trace"]);
const multi: Record<string, string[]> = {};
const one: Record<string, string> = {};
for (let i = 0; i < args.length; i++) {
  let flag = args[i]!;
  let value: string | undefined;
  const eq = flag.indexOf("=");
  if (flag.startsWith("--") && eq > 0) {
    value = flag.slice(eq + 1);
    flag = flag.slice(0, eq);
  }
  if (!repeatable.has(flag) && !single.has(flag)) fail(`flag provided but not defined: ${flag}`);
  value ??= args[++i];
  if (value === undefined) fail(`flag needs an argument: ${flag}`);
  if (repeatable.has(flag)) (multi[flag] ??= []).push(value);
  else one[flag] = value;
}
const kv = (list: string[] | undefined) => Object.fromEntries((list ?? []).map((s) => [s.slice(0, s.indexOf("=")), s.slice(s.indexOf("=") + 1)]));
const locals = kv(multi["--local"]);
const opts = kv(multi["--opt"]);
const frontend = one["--frontend"];
if (frontend !== "dockerfile.v0" && frontend !== "gateway.v0") fail(`error: unsupported frontend ${frontend}`);
for (const name of ["context", "dockerfile"]) {
  const dir = locals[name];
  if (!dir || !existsSync(dir) || !statSync(dir).isDirectory()) fail(`error: failed to get local ${name}: ${dir ?? "(missing --local " + name + ")"}: no such directory`);
}
const definition = join(locals.dockerfile!, opts.filename ?? "Dockerfile");
if (!existsSync(definition)) fail(`error: failed to solve: failed to read dockerfile: open ${opts.filename ?? "Dockerfile"}: no such file or directory`);
if (frontend === "gateway.v0") {
  if (!opts.source) fail("error: failed to solve: gateway frontend requires a source");
  try {
    JSON.parse(readFileSync(definition, "utf8"));
  } catch {
    fail("error: failed to solve: the Railpack plan is not valid JSON");
  }
}
for (const s of multi["--secret"] ?? []) {
  const fields = Object.fromEntries(s.split(",").map((f) => f.split("=") as [string, string]));
  if (!fields.id) fail(`error: invalid secret ${s}`);
  if (fields.env !== undefined && process.env[fields.env] === undefined) fail(`error: secret ${fields.id}: environment variable ${fields.env} is not set`);
  if (fields.src !== undefined && !existsSync(fields.src)) fail(`error: secret ${fields.id}: ${fields.src} does not exist`);
}
const output = Object.fromEntries((one["--output"] ?? "").split(",").map((f) => f.split("=") as [string, string]));
if (output.type !== "image" || !output.name) fail(`error: invalid output ${one["--output"] ?? "(none)"}`);

const say = (line: string) => process.stderr.write(line + "\n");
say(`#1 [internal] load build definition from ${opts.filename ?? "Dockerfile"}`);
say("#1 transferring dockerfile: 120B done");
say("#1 DONE 0.0s");
if (frontend === "gateway.v0") {
  say(`#2 resolve image config for docker-image://${opts.source}`);
  say("#2 DONE 0.1s");
}
say("#3 [internal] load .dockerignore");
say("#3 DONE 0.0s");
say("#4 [1/2] RUN build step");
say("#4 DONE 0.2s");
const digest = "sha256:" + createHash("sha256").update(`${output.name}\n${Date.now()}\n${Math.random()}`).digest("hex");
say("#5 exporting to image");
say("#5 exporting layers 0.1s done");
say(`#5 naming to ${output.name} done`);
if (output.push === "true") {
  say("#5 pushing layers 0.1s done");
  say(`#5 pushing manifest for ${output.name}@${digest} 0.0s done`);
}
say("#5 DONE 0.3s");
if (one["--metadata-file"]) {
  writeFileSync(one["--metadata-file"], JSON.stringify({ "containerimage.digest": digest, "image.name": output.name, "containerimage.config.digest": "sha256:" + "0".repeat(64) }, null, 2));
}
