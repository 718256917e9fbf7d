import { InvalidInputError } from "../lib/errors.ts";

export interface ImageRef {
  /** Registry host[:port] (`docker.io` when the reference names none). */
  registry: string;
  /** Path inside the registry, e.g. `acme/api`. */
  repository: string;
  tag: string;
  /** `registry/repository:tag` as given (with `:latest` added when it had no tag). */
  full: string;
}

const DOMAIN = /^(?:localhost|(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*)(?::\d{1,5})?$/;
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** Parses a push target (`REGISTRY/NAME:TAG`) by the distribution reference grammar; no digests. */
export function parseImageRef(value: string): ImageRef {
  const bad = (why: string) => new InvalidInputError(`image ${JSON.stringify(value)} is not a valid image reference: ${why}`);
  const text = value.trim();
  if (text.includes("@")) throw bad("give a tag, not a digest");
  const slash = text.indexOf("/");
  const first = slash < 0 ? "" : text.slice(0, slash);
  const hasRegistry = slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost");
  const registry = hasRegistry ? first : "docker.io";
  if (hasRegistry && !DOMAIN.test(registry)) throw bad(`bad registry host ${JSON.stringify(registry)}`);
  let rest = hasRegistry ? text.slice(slash + 1) : text;
  let tag = "latest";
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`bad tag ${JSON.stringify(tag)}`);
  }
  if (!rest) throw bad("no repository name");
  for (const component of rest.split("/")) if (!COMPONENT.test(component)) throw bad(`bad name component ${JSON.stringify(component)}`);
  if (rest.length > 255) throw bad("name too long");
  const repository = !hasRegistry && !rest.includes("/") ? `library/${rest}` : rest;
  return { registry, repository, tag, full: `${hasRegistry ? registry + "/" : ""}${rest}:${tag}` };
}

/** `registry/repository` (no tag), the name a digest reference is built on. */
export function repositoryName(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Whether pushes to `registry` may use plain HTTP / unverified TLS: only registries listed as insecure. */
export function isInsecureRegistry(registry: string, insecure: readonly string[]): boolean {
  const host = registry.replace(/:\d+$/, "");
  return insecure.some((entry) => {
    const e = entry.trim().replace(/^https?:\/\//, "").replace(/\/+$/, "");
    return e === registry || (!e.includes(":") && e === host);
  });
}
