import { lstat, mkdir, realpath, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { InvalidInputError } from "../errors.ts";
import type { VolumeMount } from "../state/types.ts";

/**
 * Checks, without creating anything, that a volume's host path lies strictly inside the volumes
 * folder once every symbolic link on the way is resolved. Returns the resolved path (where the
 * missing tail would be created). Throws InvalidInputError naming the volume otherwise.
 */
export async function checkVolumeHostPath(volume: VolumeMount, volumesRoot: string): Promise<string> {
  const refuse = (why: string) =>
    new InvalidInputError(`volume "${volume.name}": host path ${JSON.stringify(volume.hostPath)} ${why}; volumes must live inside ${volumesRoot}/`);
  if (!volume.hostPath || !isAbsolute(volume.hostPath) || volume.hostPath.includes("\0")) throw refuse("is not an absolute path");
  if (!volume.containerPath || !isAbsolute(volume.containerPath) || volume.containerPath.includes("\0") || volume.containerPath.includes(",")) {
    throw new InvalidInputError(`volume "${volume.name}": container path ${JSON.stringify(volume.containerPath)} is not an absolute path`);
  }
  const rootReal = await realpath(volumesRoot);
  const lexical = resolve(volume.hostPath);
  if (!inside(resolve(volumesRoot), lexical) && !inside(rootReal, lexical)) throw refuse("is outside the volumes folder");

  // Walk down from "/" to the deepest component that exists; only that part can hold symlinks.
  const parts = lexical.split(sep).filter(Boolean);
  let existing: string = sep;
  let index = 0;
  for (; index < parts.length; index++) {
    const next = join(existing, parts[index]!);
    try {
      await lstat(next);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") break;
      throw refuse(`cannot be checked (${(err as NodeJS.ErrnoException).code})`);
    }
    existing = next;
  }
  let existingReal: string;
  try {
    existingReal = await realpath(existing);
  } catch {
    throw refuse(`goes through a dangling symbolic link (${existing})`);
  }
  const resolved = join(existingReal, ...parts.slice(index));
  if (!inside(rootReal, resolved)) throw refuse(`resolves to ${resolved}, outside the volumes folder`);
  if (index === parts.length && !(await stat(resolved)).isDirectory()) throw refuse("exists and is not a directory");
  return resolved;
}

/**
 * Checks the host path (see checkVolumeHostPath) and creates the missing folders with mode 0700,
 * then checks again, so a symlink swapped in meanwhile is caught before the mount.
 */
export async function prepareVolumeHostPath(volume: VolumeMount, volumesRoot: string): Promise<string> {
  const resolved = await checkVolumeHostPath(volume, volumesRoot);
  await mkdir(resolved, { recursive: true, mode: 0o700 });
  return checkVolumeHostPath({ ...volume, hostPath: resolved }, volumesRoot);
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}
