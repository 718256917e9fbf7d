import pkg from "../package.json" with { type: "json" };

// Replaced by install/build.ts (Bun's `define`) in a compiled binary; absent when run from source.
declare const AGENT_BUILD_VERSION: string | undefined;
declare const AGENT_BUILD_COMMIT: string | undefined;

/** The version a release was built as (package.json's unless the release said otherwise). */
export const agentVersion: string = typeof AGENT_BUILD_VERSION === "string" ? AGENT_BUILD_VERSION : pkg.version;

/** The git commit the binary was built from, "-dirty" when the tree had changes; "source" when not compiled. */
export const agentCommit: string = typeof AGENT_BUILD_COMMIT === "string" ? AGENT_BUILD_COMMIT : "source";

/** What `agent --version` prints: `0.1.0 (commit 1a2b3c4)`; the first word is the version. */
export function versionLine(): string {
  return `${agentVersion} (commit ${agentCommit})`;
}
