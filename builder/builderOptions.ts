import type { Settings } from "../lib/config/settings.ts";
import { DEFAULT_BUILDKIT_HOST } from "./drivers/BuildKitDriver.ts";
import type { BuilderChoice } from "./drivers/selectDriver.ts";

/** How this node builds images; the same for `agent build` and the build poller of `agent run`. */
export interface BuilderOptions {
  builder: BuilderChoice;
  /** buildctl --addr */
  buildkitHost: string;
  /** Railpack frontend image override. */
  railpackFrontend?: string;
  /** Registries (host or host:port) pushed to without TLS verification. */
  insecureRegistries: string[];
  /** BuildKit registry cache at `<repository>:buildcache`. */
  registryCache: boolean;
  /** BuildKit's build cache is pruned down to this many MB after each build; 0 never prunes. */
  buildkitKeepStorageMb: number;
  /** Whole-build time limit. */
  timeoutMs: number;
}

export const DEFAULT_BUILDER_OPTIONS: BuilderOptions = {
  builder: "auto",
  buildkitHost: DEFAULT_BUILDKIT_HOST,
  insecureRegistries: [],
  registryCache: false,
  buildkitKeepStorageMb: 10_240,
  timeoutMs: 3600_000,
};

/**
 * The build settings a command resolves (add them to its settings list). `insecureRegistries` is
 * used too; it is not listed here because the node settings already carry it.
 */
export const BUILDER_SETTINGS = ["builder", "buildkitHost", "railpackFrontend", "registryCache", "buildkitKeepStorage", "buildTimeout"] as const;

export function builderOptionsFrom(settings: Partial<Settings<(typeof BUILDER_SETTINGS)[number] | "insecureRegistries">>): BuilderOptions {
  return {
    builder: settings.builder ?? DEFAULT_BUILDER_OPTIONS.builder,
    buildkitHost: settings.buildkitHost ?? DEFAULT_BUILDER_OPTIONS.buildkitHost,
    ...(settings.railpackFrontend ? { railpackFrontend: settings.railpackFrontend } : {}),
    insecureRegistries: settings.insecureRegistries ?? [],
    registryCache: settings.registryCache ?? false,
    buildkitKeepStorageMb: settings.buildkitKeepStorage ?? DEFAULT_BUILDER_OPTIONS.buildkitKeepStorageMb,
    timeoutMs: (settings.buildTimeout ?? DEFAULT_BUILDER_OPTIONS.timeoutMs / 1000) * 1000,
  };
}
