import { lstat, realpath } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { InvalidInputError } from "../errors.ts";
import { quote } from "../state/Problems.ts";
import { isSafeId } from "../state/validate.ts";

/**
 * Checks that a service id from a work item is one harmless path segment before it comes near
 * the file system. Each rule has its own message so an operator sees what was wrong; the final
 * whitelist catches whatever the specific rules did not name.
 */
export function checkServiceIdSegment(raw: string): string {
  const refuse = (why: string) => new InvalidInputError(`service id ${quote(raw)} ${why}; refusing`);
  if (raw === "") throw refuse("is empty");
  if (raw.includes("\0")) throw refuse("contains a NUL byte");
  if (raw.startsWith("/")) throw refuse("is an absolute path");
  if (raw.includes("/") || raw.includes("\\")) throw refuse("contains a path separator");
  if (raw === "." || raw === "..") throw refuse("is a relative path reference");
  if (/%[0-9a-fA-F]{2}/.test(raw)) throw refuse("contains percent-encoded characters (an encoded separator or dot is not decoded, and not allowed)");
  if (raw.startsWith(".")) throw refuse("starts with a dot");
  if (!isSafeId(raw)) throw refuse("must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
  return raw;
}

export type ServiceVolumeDir = { kind: "missing"; path: string } | { kind: "directory"; path: string };

/**
 * Locates `<volumes>/<serviceId>` and proves it is a real directory that is a direct child of the
 * real volumes folder: a symbolic link (to anywhere, even inside the volumes folder) or anything
 * that resolves elsewhere is refused.
 */
export async function resolveServiceVolumeDir(volumesDir: string, rawServiceId: string): Promise<ServiceVolumeDir> {
  const serviceId = checkServiceIdSegment(rawServiceId);
  const candidate = join(volumesDir, serviceId);
  let realRoot: string;
  try {
    realRoot = await realpath(volumesDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "missing", path: candidate };
    throw err;
  }
  let stats;
  try {
    stats = await lstat(candidate);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "missing", path: candidate };
    throw err;
  }
  if (stats.isSymbolicLink()) throw new InvalidInputError(`${candidate} is a symbolic link, not a volume folder; refusing`);
  if (!stats.isDirectory()) throw new InvalidInputError(`${candidate} is not a directory; refusing`);
  const real = await realpath(candidate);
  if (dirname(real) !== realRoot || basename(real) !== serviceId) {
    throw new InvalidInputError(`${candidate} resolves to ${real}, outside ${realRoot}; refusing`);
  }
  return { kind: "directory", path: real };
}
