/**
 * Helpers for build tests.
 *
 * Exports:
 *   makeBaseImage(name, prefix)    builds `name` FROM localhost/busybox:test with a label of the run, so it has an id of its own
 *   imagesBuiltOn(base)            images (tagged, untagged, intermediate) whose history starts FROM `base`
 *   removeImagesBuiltOn(base)      removes every image (tagged, untagged, intermediate) whose history starts FROM `base`
 *   removeImagesNamed(prefix)      removes images (also untagged ones, e.g. pulled by digest) whose repository contains `/<prefix>`
 *   processesWithCmdline(cmdline)  pids of live processes whose argv joined by spaces is exactly `cmdline`
 *   runText(argv)                  runs a program (skopeo, buildah) and returns its stdout; throws with stderr on failure
 *   writeSource(dir, files)        writes {path: content} files under dir (a build context); returns dir
 *   RecordingTerminal              a BuildTerminal that keeps every line and phase
 *   tokenCloneUrl(github, git, repo)  the repository's clone URL with a fresh installation token in it
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildTerminal } from "../../builder/progress/BuildTerminal.ts";
import { GitHubAppTokens } from "../../builder/source/GitHubAppTokens.ts";
import type { FakeGitHub } from "./FakeGitHub.ts";
import type { GitServer } from "./GitServer.ts";
import { cleanupPodman, podman, TEST_IMAGE } from "./podman.ts";

/**
 * A base image for one run's builds. Not a tag of the shared test image: a tag shares that image's
 * id, and any cleanup that removes by id (or podman's `rmi x x`, which deletes an image named
 * twice) would take the shared image away from every other test.
 */
export async function makeBaseImage(name: string, prefix: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "base-image-"));
  try {
    writeFileSync(join(dir, "Containerfile"), `FROM ${TEST_IMAGE}\nLABEL techulus.test.run=${prefix}\n`);
    await podman(["build", "--pull=never", "-q", "-t", name, dir]);
    return name;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ImageRow {
  Id: string;
  Names?: string[] | null;
}

async function images(): Promise<ImageRow[]> {
  const out = await podman(["images", "-a", "--format", "json"], { allowFailure: true });
  try {
    return (JSON.parse(out || "[]") as ImageRow[] | null) ?? [];
  } catch {
    return [];
  }
}

/**
 * Removes images safely: an image whose every name is ours (or that has no name) goes by id; one
 * that also carries somebody else's name (a tag of this run on `localhost/busybox:test` shares its
 * id) only loses our names.
 */
async function removeImages(candidates: ImageRow[], ours: (name: string) => boolean): Promise<void> {
  // Each name and id once: `podman rmi x x` counts as two names of the image and deletes it outright.
  const byId = new Set<string>();
  const byName = new Set<string>();
  for (const image of candidates) {
    const names = image.Names ?? [];
    if (names.every(ours)) byId.add(image.Id);
    else for (const name of names.filter(ours)) byName.add(name);
  }
  for (const name of byName) await podman(["rmi", name], { allowFailure: true });
  if (byId.size > 0) await podman(["rmi", "-f", ...byId], { allowFailure: true });
}

/**
 * Builds leave images behind (the layer cache, images a re-tag left untagged, pulls by digest).
 * A test builds FROM a base image name of its own run, so its images are the ones whose history
 * mentions that name; nobody else's are touched.
 */
export async function removeImagesBuiltOn(base: string): Promise<void> {
  const candidates = await imagesBuiltOn(base);
  const prefix = base.replace(/^localhost\//, "").replace(/-base:1$/, "");
  await removeImages(candidates, (name) => name.includes(`/${prefix}`));
}

/** Images (tagged, untagged, intermediate) whose history starts FROM `base`. */
export async function imagesBuiltOn(base: string): Promise<ImageRow[]> {
  const found: ImageRow[] = [];
  for (const image of await images()) {
    const history = await podman(["image", "inspect", image.Id, "--format", "{{json .History}}"], { allowFailure: true });
    if (history.includes(`FROM ${base}`)) found.push(image);
  }
  return found;
}

export async function removeImagesNamed(prefix: string): Promise<void> {
  if (!/^t[0-9a-z]{4,}/.test(prefix)) throw new Error(`refusing to remove images with prefix ${JSON.stringify(prefix)}`);
  const ours = (name: string) => name.includes(`/${prefix}`);
  // Untagged images pulled by digest have no name but keep their repository in RepoDigests.
  const all = await images();
  const candidates: ImageRow[] = [];
  for (const image of all) {
    if ((image.Names ?? []).some(ours)) {
      candidates.push(image);
      continue;
    }
    if ((image.Names ?? []).length > 0) continue;
    const digests = await podman(["image", "inspect", image.Id, "--format", "{{json .RepoDigests}}"], { allowFailure: true });
    if (digests.includes(`/${prefix}/`)) candidates.push(image);
  }
  await removeImages(candidates, ours);
}

export function processesWithCmdline(cmdline: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
      const state = readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]?.[0];
      if (cmd === cmdline && state !== "Z") out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

export async function runText(argv: string[]): Promise<string> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} failed: ${err}`);
  return out;
}

/** Everything a builder test run leaves in podman: images built on its base, images named after it, its containers. */
export async function cleanupBuildRun(base: string, prefix: string): Promise<void> {
  await removeImagesBuiltOn(base);
  await removeImagesNamed(prefix);
  await cleanupPodman(prefix);
}

export function writeSource(dir: string, files: Record<string, string>): string {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

export class RecordingTerminal implements BuildTerminal {
  lines: string[] = [];
  phases: string[] = [];
  phase(p: string) {
    this.phases.push(p);
  }
  line(t: string) {
    this.lines.push(t);
  }
  async finish() {}
}

export async function tokenCloneUrl(github: FakeGitHub, git: GitServer, repo: string): Promise<string> {
  const [owner, name] = repo.split("/") as [string, string];
  const { token } = await new GitHubAppTokens({ appId: github.appId, privateKey: github.privateKeyPem, apiUrl: github.url }).installationToken({ owner, repo: name });
  return git.cloneUrl(repo).replace("http://", `http://x-access-token:${token}@`);
}
