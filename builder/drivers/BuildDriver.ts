import type { ImageRef } from "../imageRef.ts";
import type { BuildPlan } from "../plan/planBuild.ts";

export type BuilderName = "buildkit" | "podman";

export interface BuildRequest {
  plan: BuildPlan;
  image: ImageRef;
  /** Values reach the build tool through its environment only. */
  secrets: Record<string, string>;
  /** Isolates cache mounts per service (Railpack's `cache-key`). */
  cacheKey: string;
  /** The image's registry is configured as insecure (plain HTTP or unverified TLS). */
  insecure: boolean;
  /** Import/export the layer cache from/to `<repository>:buildcache` (BuildKit). */
  registryCache: boolean;
  /** Scratch folder of this build (metadata and digest files). */
  workDir: string;
  log: (line: string) => void;
  /** Called once when the push starts. */
  onPushing: () => void;
  signal: AbortSignal;
  timeoutMs: number;
}

export interface BuildDriver {
  readonly name: BuilderName;
  /** Builds and pushes; resolves to the pushed manifest digest (`sha256:…`). */
  buildAndPush(request: BuildRequest): Promise<{ digest: string }>;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function checkDigest(value: unknown, source: string): string {
  const digest = typeof value === "string" ? value.trim() : "";
  if (!DIGEST.test(digest)) throw new Error(`${source} holds no image digest (got ${JSON.stringify(value)})`);
  return digest;
}
