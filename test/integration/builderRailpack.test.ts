/**
 * Railpack plans against recording stand-ins (test/support/standins): Railpack cannot be installed
 * here (HOST.md), and its gateway frontend image cannot be pulled, so these tests prove the exact
 * `railpack prepare` and `buildctl` command lines, environments and output handling — not that a
 * Railpack plan builds. Dockerfile builds run on a real BuildKit daemon in builderBuildKit.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BuildStepError } from "../../builder/buildErrors.ts";
import { BuildLog } from "../../builder/BuildLog.ts";
import { secretsHash } from "../../builder/buildSecrets.ts";
import { DEFAULT_BUILDER_OPTIONS, type BuilderOptions } from "../../builder/builderOptions.ts";
import { runTool } from "../../builder/drivers/runTool.ts";
import { runBuild, type BuildJob } from "../../builder/runBuild.ts";
import { REPO_ROOT, tempDir } from "../support/agentBinary.ts";
import { RecordingTerminal, writeSource } from "../support/builds.ts";
import type { Invocation } from "../support/standins/record.ts";

const STANDIN_BIN = join(REPO_ROOT, "test/support/bin");
const ENV_KEYS = ["PATH", "STANDIN_BUN", "STANDIN_RECORD_DIR", "STANDIN_BUILDKIT_UP", "STANDIN_RAILPACK_VERSION", "STANDIN_RAILPACK_FAIL"];
const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const dirs: Array<{ path: string; cleanup: () => void }> = [];
function dir(): string {
  const d = tempDir("builder-bk-");
  dirs.push(d);
  return d.path;
}
let recordDir = "";
const ADDR = "tcp://127.0.0.1:1234";
const SECRET_VALUE = `npm-secret-${process.pid}-${Math.random().toString(36).slice(2)}`;

beforeAll(() => {
  process.env.PATH = `${STANDIN_BIN}:${saved.PATH}`;
  process.env.STANDIN_BUN = process.execPath;
});
beforeEach(() => {
  recordDir = dir();
  process.env.STANDIN_RECORD_DIR = recordDir;
  process.env.STANDIN_BUILDKIT_UP = "1";
  for (const k of ["STANDIN_RAILPACK_VERSION", "STANDIN_RAILPACK_FAIL"]) delete process.env[k];
});
afterAll(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  dirs.forEach((d) => d.cleanup());
});

function calls(tool: string): Invocation[] {
  return readdirSync(recordDir)
    .filter((f) => f.startsWith(`${tool}-`))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(recordDir, f), "utf8")) as Invocation);
}

function source(files: Record<string, string>): string {
  return writeSource(dir(), files);
}

async function build(job: Partial<BuildJob> & { src: string }, options: Partial<BuilderOptions> = {}, signal = new AbortController().signal) {
  const terminal = new RecordingTerminal();
  const statuses: string[] = [];
  const workDir = dir();
  const result = await runBuild(
    { source: { kind: "dir", path: job.src }, image: job.image ?? "127.0.0.1:5000/acme/api:v1", secrets: job.secrets ?? {}, cacheKey: job.cacheKey ?? "svc-42", dockerfile: job.dockerfile },
    {
      workDir,
      options: { ...DEFAULT_BUILDER_OPTIONS, buildkitKeepStorageMb: 0, buildkitHost: ADDR, insecureRegistries: ["127.0.0.1:5000"], ...options },
      log: new BuildLog({ build_id: "b1" }, terminal),
      signal,
      onStatus: async (s) => void statuses.push(s),
    },
  ).catch((err) => ({ err }));
  return { result, terminal, statuses, workDir };
}

describe("Railpack plans (railpack and buildctl stand-ins)", () => {
  test("no Dockerfile: railpack prepare with secret names only, the frontend of the CLI's version, the plan outside the checkout", async () => {
    process.env.STANDIN_RAILPACK_VERSION = "0.9.7";
    const src = source({ "package.json": "{}\n", "index.js": "console.log(1)\n" });
    const { result, workDir, terminal } = await build({ src, secrets: { NPM_TOKEN: SECRET_VALUE } });
    if ("err" in result) throw result.err;
    const railpack = calls("railpack");
    expect(railpack.map((c) => c.argv[0])).toEqual(["--version", "prepare"]);
    const prepare = railpack[1]!;
    expect(prepare.argv).toEqual(["prepare", ".", "--plan-out", join(workDir, "plan/railpack-plan.json"), "--info-out", join(workDir, "plan/railpack-info.json"), "--env", "NPM_TOKEN"]);
    expect(prepare.cwd).toBe(src);
    expect(prepare.env.NPM_TOKEN).toBe(SECRET_VALUE);
    expect(existsSync(join(src, "railpack-plan.json"))).toBe(false);
    expect(terminal.lines.some((l) => l.trim() === "↳ Detected Node")).toBe(true);

    const call = calls("buildctl").find((c) => c.argv.includes("build"))!;
    expect(call.argv.slice(0, 17)).toEqual([
      "--addr", ADDR, "build", "--progress", "plain",
      "--frontend", "gateway.v0", "--opt", "source=ghcr.io/railwayapp/railpack-frontend:v0.9.7",
      "--local", `context=${src}`, "--local", `dockerfile=${join(workDir, "plan")}`, "--opt", "filename=railpack-plan.json",
      "--opt", "build-arg:cache-key=svc-42",
    ]);
    expect(call.argv).toContain(`build-arg:secrets-hash=${secretsHash({ NPM_TOKEN: SECRET_VALUE })}`);
    expect(call.argv).toContain("id=NPM_TOKEN,env=TECHULUS_BUILD_SECRET_NPM_TOKEN");
    expect(call.env.TECHULUS_BUILD_SECRET_NPM_TOKEN).toBe(SECRET_VALUE);
    for (const c of [...railpack, call]) expect(JSON.stringify(c.argv)).not.toContain(SECRET_VALUE);
  });

  test("--railpack-frontend overrides the frontend image", async () => {
    const src = source({ "package.json": "{}\n" });
    const { result } = await build({ src }, { railpackFrontend: "registry.example.com/mirror/railpack-frontend:v0.15.4" });
    if ("err" in result) throw result.err;
    expect(calls("buildctl").find((c) => c.argv.includes("build"))!.argv).toContain("source=registry.example.com/mirror/railpack-frontend:v0.15.4");
  });

  test("a failing railpack prepare fails the plan step with its exit code", async () => {
    process.env.STANDIN_RAILPACK_FAIL = "1";
    const src = source({ "README.md": "nothing to build\n" });
    const { result, statuses } = await build({ src });
    const err = (result as { err: BuildStepError }).err;
    expect(err.step).toBe("plan");
    expect(err.message).toMatch(/^railpack prepare failed \(exit code 1\): .*No start command was found/);
    expect(statuses).toEqual(["cloning"]);
    expect(calls("buildctl").filter((c) => c.argv.includes("build"))).toEqual([]);
  });

  test("railpack missing: a clear error with the fix", async () => {
    const bin = dir();
    symlinkSync(join(STANDIN_BIN, "buildctl"), join(bin, "buildctl"));
    const before = process.env.PATH;
    process.env.PATH = `${bin}:/usr/local/bin:/usr/bin:/bin`;
    try {
      const src = source({ "package.json": "{}\n" });
      const { result } = await build({ src });
      const err = (result as { err: BuildStepError }).err;
      expect(err.message).toBe("the source has no Dockerfile and railpack is not installed");
      expect(err.hint).toContain("https://railpack.com/installation");
    } finally {
      process.env.PATH = before;
    }
  });

  test("the podman builder refuses a Railpack plan and says what to do", async () => {
    const src = source({ "package.json": "{}\n" });
    const { result } = await build({ src }, { builder: "podman" });
    const err = (result as { err: BuildStepError }).err;
    expect(err.message).toContain("Railpack builds need BuildKit");
    expect(err.hint).toContain("--builder buildkit");
    expect(calls("railpack")).toEqual([]);
  });

  test("a Dockerfile that is a symlink out of the source is refused before any tool reads it", async () => {
    // podman reads the Dockerfile on the host and echoes its lines into the build log, so a cloned
    // repository could otherwise print any root-readable host file (config.json's key, say).
    const outside = join(dir(), "host-secret.json");
    writeFileSync(outside, `FROM scratch\n{"encryptionKey":"${SECRET_VALUE}"}\n`);
    const src = source({ "package.json": "{}\n" });
    symlinkSync(outside, join(src, "Dockerfile"));
    const linkedDir = source({ "package.json": "{}\n" });
    symlinkSync(join(outside, ".."), join(linkedDir, "docker"));
    for (const [from, dockerfile] of [[src, undefined], [linkedDir, "docker/host-secret.json"]] as const) {
      const { result, terminal } = await build({ src: from, dockerfile });
      const err = (result as { err: BuildStepError }).err;
      expect(err).toBeInstanceOf(BuildStepError);
      expect(err.step).toBe("plan");
      expect(err.message).toBe(`the Dockerfile ${dockerfile ?? "Dockerfile"} points outside the source`);
      expect(terminal.lines.join("\n")).not.toContain(SECRET_VALUE);
    }
    expect(calls("buildctl").filter((c) => c.argv.includes("build"))).toEqual([]);
    expect(calls("railpack")).toEqual([]);
    // A symlink that stays inside the source is fine.
    const inside = source({ "docker/Dockerfile.prod": "FROM scratch\n" });
    symlinkSync("docker/Dockerfile.prod", join(inside, "Dockerfile"));
    const { result } = await build({ src: inside });
    if ("err" in result) throw result.err;
  });

  test("an explicit --dockerfile that does not exist is an error, not a Railpack build", async () => {
    const src = source({ "package.json": "{}\n" });
    const { result } = await build({ src, dockerfile: "docker/Dockerfile.prod" });
    expect((result as { err: Error }).err.message).toBe("the Dockerfile docker/Dockerfile.prod does not exist in the source");
    expect(calls("railpack")).toEqual([]);
  });
});

describe("build tool output", () => {
  test("a tool that prints more than 100 MB is streamed to its end, not killed for it", async () => {
    let lines = 0;
    const result = await runTool("sh", ["-c", "head -c 110000000 /dev/zero | tr '\\0' x | fold -w 1000; echo; echo done"], {
      onLine: () => lines++,
      signal: new AbortController().signal,
      timeoutMs: 120_000,
    });
    expect(result.exitCode).toBe(0);
    expect(lines).toBe(110_001);
    expect(result.tail.at(-1)).toBe("done");
  }, 120_000);
});
