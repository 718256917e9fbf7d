/**
 * Helpers for build tests.
 *
 * Exports:
 *   removeImagesBuiltOn(base)      removes every image (tagged, untagged, intermediate) whose history starts FROM `base`
 *   processesWithCmdline(cmdline)  pids of live processes whose argv joined by spaces is exactly `cmdline`
 */
import { readdirSync, readFileSync } from "node:fs";
import { podman } from "./podman.ts";

/**
 * Builds leave images behind (the layer cache, images a re-tag left untagged, pulls by digest).
 * A test builds FROM a base image name of its own run, so its images are the ones whose history
 * mentions that name; nobody else's are touched.
 */
export async function removeImagesBuiltOn(base: string): Promise<void> {
  const ids = (await podman(["images", "-a", "--format", "{{.ID}}"], { allowFailure: true })).split("\n").filter(Boolean);
  const ours: string[] = [];
  for (const id of new Set(ids)) {
    const history = await podman(["image", "inspect", id, "--format", "{{json .History}}"], { allowFailure: true });
    if (history.includes(`FROM ${base}`)) ours.push(id);
  }
  if (ours.length > 0) await podman(["rmi", "-f", ...ours], { allowFailure: true });
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
