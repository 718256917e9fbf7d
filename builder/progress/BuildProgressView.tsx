import { Box, Text } from "ink";
import { useSyncExternalStore } from "react";
import { PHASES, type BuildProgressState, type BuildProgressStore, type PhaseState } from "./BuildProgressStore.ts";

const ICON: Record<PhaseState, string> = { pending: "·", running: "▸", done: "✔", failed: "✖" };
const COLOR: Record<PhaseState, string | undefined> = { pending: "gray", running: "cyan", done: "green", failed: "red" };

function seconds(ms: number | undefined): string {
  return ms === undefined ? "" : `${(ms / 1000).toFixed(1)}s`;
}

/** One frame of the live build view: the phases with their durations, then the latest output. */
export function BuildProgressView({ state }: { state: BuildProgressState }) {
  return (
    <Box flexDirection="column">
      <Text bold>{state.title}</Text>
      <Box flexDirection="row" gap={2}>
        {PHASES.map((p) => (
          <Text key={p} color={COLOR[state.phases[p].state]}>
            {ICON[state.phases[p].state]} {p} {seconds(state.phases[p].ms)}
          </Text>
        ))}
      </Box>
      <Box flexDirection="column" paddingLeft={2}>
        {state.lines.map((line, i) => (
          <Text key={i} dimColor wrap="truncate-end">
            {line}
          </Text>
        ))}
      </Box>
      {state.outcome ? (
        <Text color={state.outcome.kind === "completed" ? "green" : state.outcome.kind === "failed" ? "red" : "yellow"}>
          {state.outcome.kind === "completed" ? "✔ pushed " : state.outcome.kind === "failed" ? "✖ failed: " : "■ cancelled: "}
          {state.outcome.summary}
        </Text>
      ) : null}
    </Box>
  );
}

export function LiveBuildProgress({ store }: { store: BuildProgressStore }) {
  const state = useSyncExternalStore(store.subscribe, store.get);
  return <BuildProgressView state={state} />;
}
