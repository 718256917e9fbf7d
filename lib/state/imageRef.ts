import { InvalidInputError } from "../errors.ts";
import { quote } from "./Problems.ts";

/** A parsed image reference, registry and repository always filled in (`docker.io`, `library/…`). */
export interface ImageReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const SHELL_METACHARACTERS = new Set([..."';|&$`<>()\"\\!*?{}[]#~^%=,"]);
const ALLOWED = /^[A-Za-z0-9._\-/:@]$/;
const REGISTRY = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const MAX_NAME_LENGTH = 255;

/**
 * Parses an image reference the way Docker and Podman read it: a first component holding `.` or
 * `:`, or equal to `localhost`, is a registry, otherwise the image is on Docker Hub. Throws an
 * InvalidInputError for anything a shell or a registry would read differently.
 */
export function parseImageRef(ref: string): ImageReference {
  const bad = (why: string): never => {
    throw new InvalidInputError(`image ${quote(ref)} ${why}`);
  };
  if (ref.length === 0) bad("is empty");
  if (/\s/.test(ref)) bad("has whitespace");
  for (const char of ref) {
    if (SHELL_METACHARACTERS.has(char)) bad(`has shell metacharacter ${quote(char)}`);
    if (!ALLOWED.test(char)) bad(`has character ${quote(char)}, which no image reference contains`);
  }

  const at = ref.indexOf("@");
  const namePart = at < 0 ? ref : ref.slice(0, at);
  let digest: string | undefined;
  if (at >= 0) {
    digest = ref.slice(at + 1);
    if (!DIGEST.test(digest)) bad(`has a bad digest (expected sha256: and 64 lower-case hex digits)`);
  }

  let name = namePart;
  let tag: string | undefined;
  const lastColon = namePart.lastIndexOf(":");
  if (lastColon > namePart.lastIndexOf("/")) {
    name = namePart.slice(0, lastColon);
    tag = namePart.slice(lastColon + 1);
    if (!TAG.test(tag)) bad(`has a bad tag ${quote(tag)} (letters, digits, _ . -, at most 128)`);
  }
  if (name.length === 0) bad("has no name");
  if (name.length > MAX_NAME_LENGTH) bad(`has a name longer than ${MAX_NAME_LENGTH} characters`);
  if (/^[a-f0-9]{64}$/.test(name)) bad("is an image ID, not a reference");

  const components = name.split("/");
  if (components.some((c) => c.length === 0)) bad("has an empty part");
  const first = components[0]!;
  const hasRegistry = components.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost");
  let registry = "docker.io";
  if (hasRegistry) {
    registry = first.toLowerCase();
    if (!REGISTRY.test(registry)) bad(`has a bad registry ${quote(first)}`);
    if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = "docker.io";
    components.shift();
  }
  for (const component of components) {
    if (component !== component.toLowerCase()) bad("has an upper-case repository path (repository names are lower-case)");
    if (!PATH_COMPONENT.test(component)) bad(`has a bad repository path component ${quote(component)}`);
  }
  if (registry === "docker.io" && components.length === 1) components.unshift("library");
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository: components.join("/"), tag, digest };
}

export function formatImageRef(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag === undefined ? "" : `:${ref.tag}`}${ref.digest === undefined ? "" : `@${ref.digest}`}`;
}

/**
 * The fully qualified form: `nginx` ⇒ `docker.io/library/nginx:latest`, `ghcr.io/o/a` ⇒
 * `ghcr.io/o/a:latest`; tags and digests are kept. Throws InvalidInputError on a bad reference.
 */
export function normalizeImageRef(ref: string): string {
  return formatImageRef(parseImageRef(ref));
}

/**
 * True when both references name the same image. Two references pinned by digest are the same
 * when repository and digest agree, whatever their tags. A reference that does not parse (an
 * image ID reported by the runtime, say) is only the same as the identical string.
 */
export function sameImage(a: string, b: string): boolean {
  let left: ImageReference;
  let right: ImageReference;
  try {
    left = parseImageRef(a);
    right = parseImageRef(b);
  } catch (err) {
    if (err instanceof InvalidInputError) return a === b;
    throw err;
  }
  if (left.registry !== right.registry || left.repository !== right.repository) return false;
  if (left.digest !== undefined && right.digest !== undefined) return left.digest === right.digest;
  return left.tag === right.tag && left.digest === right.digest;
}
