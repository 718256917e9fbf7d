/**
 * A real BuildKit daemon (v0.11.6, ../shared/tools/bin) for tests and benchmarks, one per run, with
 * state of its own.
 *
 * Exports:
 *   BUILDKIT_BIN                          the folder with buildkitd and buildctl (read-only in CI)
 *   buildkitBinaries()                    { buildkitd, buildctl }; throws a clear error when they are missing
 *   startBuildkitd(options)               buildkitd on tcp://127.0.0.1:<free port>, its own --root, runc,
 *                                         plain-HTTP registries in its toml → { addr, root, logFile, stop() }
 *   buildctl(addr, args)                  runs the real buildctl against addr; returns stdout, throws with stderr
 *   cacheRecordsInUse(addr)               build cache records a running solve holds (`buildctl du --verbose`)
 *   cacheSizeBytes(addr)                  total size of the daemon's build cache (`buildctl du`)
 *   pushBaseImage(registryHost, repo)     copies localhost/busybox:test into the registry (BuildKit pulls FROM there)
 */
import { createWriteStream, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./agentBinary.ts";
import { freePort, TEST_IMAGE, waitFor } from "./podman.ts";
import { runText } from "./builds.ts";

export const BUILDKIT_BIN = join(REPO_ROOT, "../shared/tools/bin");

export function buildkitBinaries(): { buildkitd: string; buildctl: string } {
  const buildkitd = join(BUILDKIT_BIN, "buildkitd");
  const buildctl = join(BUILDKIT_BIN, "buildctl");
  const missing = [buildkitd, buildctl].filter((f) => !existsSync(f));
  if (missing.length > 0) {
    throw new Error(`BuildKit binaries missing: ${missing.join(", ")}. The buildkit tests need buildkitd and buildctl v0.11.6 in ../shared/tools/bin next to the checkout (see ../shared/tools/README.md)`);
  }
  return { buildkitd, buildctl };
}

export interface Buildkitd {
  /** `tcp://127.0.0.1:<port>` */
  addr: string;
  root: string;
  /** Everything the daemon printed. */
  logFile: string;
  stop(): Promise<void>;
}

export function buildkitdToml(insecureRegistries: readonly string[]): string {
  const registries = insecureRegistries.map((host) => `[registry."${host}"]\n  http = true\n`);
  return ["[worker.containerd]\n  enabled = false\n", ...registries].join("\n");
}

export async function startBuildkitd(options: { insecureRegistries: readonly string[] }): Promise<Buildkitd> {
  const { buildkitd, buildctl: client } = buildkitBinaries();
  const state = mkdtempSync(join(tmpdir(), "buildkitd-"));
  const root = join(state, "root");
  const config = join(state, "buildkitd.toml");
  const logFile = join(state, "buildkitd.log");
  writeFileSync(config, buildkitdToml(options.insecureRegistries));
  const addr = `tcp://127.0.0.1:${await freePort()}`;
  const log = createWriteStream(logFile);
  const proc = Bun.spawn([buildkitd, "--root", root, "--addr", addr, "--oci-worker-binary", "runc", "--oci-worker-net", "host", "--config", config], { stdout: "pipe", stderr: "pipe" });
  for (const stream of [proc.stdout, proc.stderr]) void stream.pipeTo(new WritableStream({ write: (chunk) => void log.write(chunk) })).catch(() => {});
  const stop = async () => {
    proc.kill("SIGTERM");
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!exited) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    log.end();
    rmSync(state, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`buildkitd exited with code ${proc.exitCode} on ${addr}`);
        const probe = Bun.spawn([client, "--addr", addr, "debug", "workers"], { stdout: "ignore", stderr: "ignore" });
        return (await probe.exited) === 0;
      },
      30_000,
      `buildkitd on ${addr}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { addr, root, logFile, stop };
}

export function buildctl(addr: string, args: string[]): Promise<string> {
  return runText([buildkitBinaries().buildctl, "--addr", addr, ...args]);
}

interface CacheRecord {
  inUse?: boolean;
  size?: number;
}

async function cacheRecords(addr: string): Promise<CacheRecord[]> {
  // One JSON array of every record (`null` when there is none).
  return (JSON.parse(await buildctl(addr, ["du", "--format", "{{json .}}"])) as CacheRecord[] | null) ?? [];
}

export async function cacheRecordsInUse(addr: string): Promise<number> {
  return (await cacheRecords(addr)).filter((r) => r.inUse).length;
}

export async function cacheSizeBytes(addr: string): Promise<number> {
  return (await cacheRecords(addr)).reduce((sum, r) => sum + (r.size ?? 0), 0);
}

export async function pushBaseImage(registryHost: string, repo = "library/busybox:latest"): Promise<string> {
  const target = `${registryHost}/${repo}`;
  await runText(["skopeo", "copy", "--dest-tls-verify=false", `containers-storage:${TEST_IMAGE}`, `docker://${target}`]);
  return target;
}
