import { Box, Text, useAnimation, useApp, useInput } from "ink";
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type { CheckStatus } from "../../lib/doctor/Check.ts";
import { proposedFixesOf, type CheckEntry, type DoctorSession, type FixOutcome } from "../../lib/doctor/DoctorSession.ts";
import { STATUS_MARK } from "./doctorReport.ts";
import type { LogTail } from "./LogTail.ts";

export interface DoctorScreenProps {
  session: DoctorSession;
  /** --fix: apply every automatic fix once the checks are done, then exit. */
  autoFix?: boolean;
  /** --yes: enter applies the selection without asking again. */
  assumeYes?: boolean;
  logs?: LogTail;
  /** A line under the title (which data dir, which expected state). */
  subtitle?: string;
}

const COLOR: Record<CheckStatus, string> = { ok: "green", warn: "yellow", fail: "red", skip: "gray" };
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const MAX_DETAIL_LINES = 12;

type Mode = "checking" | "choose" | "confirm" | "applying" | "done";

export function DoctorScreen({ session, autoFix = false, assumeYes = false, logs, subtitle }: DoctorScreenProps) {
  const snap = useSyncExternalStore(session.subscribe, session.snapshot);
  const { exit } = useApp();
  const [mode, setMode] = useState<Mode>("checking");
  const [cursor, setCursor] = useState(0);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [lastOutcomes, setLastOutcomes] = useState<FixOutcome[]>([]);
  const started = useRef(false);

  const fixes = useMemo(() => proposedFixesOf(snap.entries), [snap.entries]);
  const automatic = fixes.filter((f) => f.automatic);
  const manual = fixes.filter((f) => !f.automatic);

  async function apply(ids: string[]): Promise<void> {
    setMode("applying");
    const outcomes = await session.applyFixes(ids);
    setLastOutcomes(outcomes);
    setSelected(new Set());
    setCursor(0);
    setMode("choose");
  }

  useEffect(() => {
    if (started.current) return;
    started.current = true;
    void (async () => {
      await session.runAll();
      if (autoFix) {
        const ids = proposedFixesOf(session.snapshot().entries)
          .filter((f) => f.automatic)
          .map((f) => f.checkId);
        if (ids.length > 0) await apply(ids);
        setMode("done");
        return;
      }
      setMode("choose");
    })();
  }, []);

  // Exit only once the final state has been drawn, so it stays on the terminal.
  useEffect(() => {
    if (mode === "done") exit();
  }, [mode]);

  useInput((input, key) => {
    if (mode === "applying" || mode === "done") return;
    if (mode === "confirm") {
      if (input === "y" || input === "Y") void apply([...selected]);
      else if (input === "n" || input === "N" || key.escape || input === "q") setMode("choose");
      return;
    }
    if (input === "q" || key.escape) {
      exit();
      return;
    }
    if (mode !== "choose" || automatic.length === 0) return;
    if (key.upArrow || input === "k") setCursor((c) => Math.max(0, c - 1));
    else if (key.downArrow || input === "j") setCursor((c) => Math.min(automatic.length - 1, c + 1));
    else if (input === " ") {
      const id = automatic[Math.min(cursor, automatic.length - 1)]!.checkId;
      setSelected((s) => toggle(s, id));
    } else if (input === "a") {
      setSelected((s) => (s.size === automatic.length ? new Set() : new Set(automatic.map((f) => f.checkId))));
    } else if (key.return) {
      const ids = selected.size > 0 ? automatic.filter((f) => selected.has(f.checkId)).map((f) => f.checkId) : [automatic[Math.min(cursor, automatic.length - 1)]!.checkId];
      setSelected(new Set(ids));
      if (assumeYes) void apply(ids);
      else setMode("confirm");
    }
  });

  const summary = session.summary();
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>agent doctor</Text>
        {subtitle ? <Text dimColor> {subtitle}</Text> : null}
      </Text>
      {snap.entries.map((entry) => (
        <EntryRow key={entry.id} entry={entry} />
      ))}
      {mode === "checking" ? null : (
        <Box marginTop={1} flexDirection="column">
          <Text>
            <Text color="green">{summary.ok} ok</Text>, <Text color="yellow">{summary.warn} warning{summary.warn === 1 ? "" : "s"}</Text>,{" "}
            <Text color="red">{summary.fail} failed</Text>, <Text dimColor>{summary.skip} skipped</Text>
          </Text>
          {lastOutcomes.length > 0 ? <OutcomeLine outcomes={lastOutcomes} /> : null}
        </Box>
      )}
      {mode === "choose" || mode === "confirm" || mode === "applying" ? (
        <Box marginTop={1} flexDirection="column">
          {automatic.length > 0 ? (
            <>
              <Text bold>Fixes {mode === "choose" ? <Text dimColor>— ↑/↓ move · space select · a all · enter apply · q quit</Text> : null}</Text>
              {automatic.map((f, i) => (
                <Text key={f.checkId}>
                  <Text color="cyan">{i === cursor && mode === "choose" ? "›" : " "}</Text> {selected.has(f.checkId) ? "[x]" : "[ ]"}{" "}
                  <Text color={COLOR[f.status]}>{f.title}</Text>: {f.fix.description}
                </Text>
              ))}
            </>
          ) : (
            <Text>Nothing this screen can fix{manual.length > 0 ? "; see the steps below" : ""}. Press q to quit.</Text>
          )}
          {manual.length > 0 ? (
            <Box flexDirection="column" marginTop={1}>
              <Text bold>By hand</Text>
              {manual.map((f) => (
                <Text key={f.checkId}>
                  {"  "}
                  <Text color={COLOR[f.status]}>{f.title}</Text>: {f.fix.description}
                </Text>
              ))}
            </Box>
          ) : null}
          {mode === "confirm" ? (
            <Text color="cyan">
              Apply {selected.size} fix{selected.size === 1 ? "" : "es"}? (y/n)
            </Text>
          ) : null}
          {mode === "applying" ? <Busy text="applying fixes…" /> : null}
        </Box>
      ) : null}
      {logs ? <LogLines logs={logs} /> : null}
    </Box>
  );
}

function toggle(set: ReadonlySet<string>, id: string): ReadonlySet<string> {
  const next = new Set(set);
  if (next.has(id)) next.delete(id);
  else next.add(id);
  return next;
}

function Busy({ text }: { text: string }) {
  const { frame } = useAnimation({ interval: 80 });
  return (
    <Text>
      <Text color="cyan">{SPINNER[frame % SPINNER.length]}</Text> {text}
    </Text>
  );
}

function EntryRow({ entry }: { entry: CheckEntry }) {
  if (entry.state === "pending") return <Text dimColor>· {entry.title}</Text>;
  if (entry.state === "running" || !entry.result) return <Busy text={entry.fix?.state === "applying" ? `${entry.title} (applying fix…)` : entry.title} />;
  const r = entry.result;
  const [first = "", ...rest] = r.detail.split("\n");
  const quiet = r.status === "ok" || r.status === "skip";
  const shown = rest.slice(0, MAX_DETAIL_LINES);
  return (
    <Box flexDirection="column">
      <Text>
        <Text color={COLOR[r.status]}>{STATUS_MARK[r.status]}</Text> {r.title}
        {quiet ? <Text dimColor> {first}</Text> : null}
        {entry.fix?.state === "applied" ? <Text color="green"> (fix applied)</Text> : null}
        {entry.fix?.state === "applying" ? <Text color="cyan"> (applying fix…)</Text> : null}
      </Text>
      {quiet ? null : (
        <Box flexDirection="column" marginLeft={4}>
          <Text color={COLOR[r.status]}>{first}</Text>
          {shown.map((line, i) => (
            <Text key={i}>{line}</Text>
          ))}
          {rest.length > shown.length ? <Text dimColor>… {rest.length - shown.length} more (agent doctor --json shows all)</Text> : null}
        </Box>
      )}
      {entry.fix?.state === "failed" ? (
        <Box marginLeft={4}>
          <Text color="red">fix failed: {entry.fix.error}</Text>
        </Box>
      ) : null}
    </Box>
  );
}

function OutcomeLine({ outcomes }: { outcomes: FixOutcome[] }) {
  const applied = outcomes.filter((o) => o.applied).length;
  const failed = outcomes.length - applied;
  return (
    <Text>
      {applied > 0 ? <Text color="green">{applied} fix{applied === 1 ? "" : "es"} applied</Text> : null}
      {applied > 0 && failed > 0 ? ", " : null}
      {failed > 0 ? <Text color="red">{failed} failed</Text> : null}
      <Text dimColor> (re-checked above)</Text>
    </Text>
  );
}

function LogLines({ logs }: { logs: LogTail }) {
  const lines = useSyncExternalStore(logs.subscribe, logs.snapshot);
  if (lines.length === 0) return null;
  return (
    <Box flexDirection="column" marginTop={1}>
      {lines.map((line, i) => (
        <Text key={i} dimColor wrap="truncate-end">
          {line}
        </Text>
      ))}
    </Box>
  );
}
