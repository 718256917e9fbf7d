import { Box, Text, useAnimation, useApp, useInput, useStdout } from "ink";
import { createContext, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore, type ReactNode } from "react";
import type { CheckStatus } from "../../lib/doctor/Check.ts";
import { levelOf, type AgentLog } from "../../lib/doctor/agentLog.ts";
import { proposedFixesOf, type CheckEntry, type DoctorSession, type FixOutcome, type ProposedFix } from "../../lib/doctor/DoctorSession.ts";
import { STATUS_MARK } from "./doctorReport.ts";
import type { LogTail } from "./LogTail.ts";

export interface DoctorScreenProps {
  session: DoctorSession;
  /** --fix: apply every automatic fix once the checks are done, then exit. */
  autoFix?: boolean;
  /** --yes: enter applies the selection without asking again. */
  assumeYes?: boolean;
  /** Doctor's own log lines (they cannot go to stderr while the screen is up). */
  logs?: LogTail;
  /** A line under the title (which data dir, which expected state). */
  subtitle?: string;
  /** False (NO_COLOR): no colors nor other text styles; the marks carry the meaning. */
  color?: boolean;
  /** How many of the agent's log lines `l` reads. */
  agentLogLines?: number;
}

type Color = "green" | "yellow" | "red" | "cyan" | "gray";
const COLOR: Record<CheckStatus, Color> = { ok: "green", warn: "yellow", fail: "red", skip: "gray" };
const WORD: Record<CheckStatus, string> = { ok: "ok", warn: "warning", fail: "failed", skip: "skipped" };
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/** Lines the detail pane keeps at least, when the terminal is short and the list long. */
const MIN_PANE = 4;

type Mode = "checking" | "ready" | "confirm" | "applying" | "done";
type View = "details" | "log";
type LogState = { kind: "loading" } | AgentLog;

const ColorOn = createContext(true);
const NO_LINES: readonly string[] = [];
const noLogs = { subscribe: () => () => {}, snapshot: () => NO_LINES };

/** Text whose colors and styles fall away without color; always one terminal line (cut at the edge). */
function T({ color, dim, bold, children, wrap = "truncate-end" }: { color?: Color; dim?: boolean; bold?: boolean; children: ReactNode; wrap?: "wrap" | "truncate-end" }) {
  const on = useContext(ColorOn);
  return (
    <Text color={on ? color : undefined} dimColor={on ? dim : undefined} bold={on ? bold : undefined} wrap={wrap}>
      {children}
    </Text>
  );
}

/** One line of a pane, already cut to the terminal's width. */
interface Line {
  text: string;
  color?: Color;
  dim?: boolean;
  bold?: boolean;
}

export function DoctorScreen({ session, autoFix = false, assumeYes = false, logs, subtitle, color = true, agentLogLines = 200 }: DoctorScreenProps) {
  const snap = useSyncExternalStore(session.subscribe, session.snapshot);
  const ownLines = useSyncExternalStore(logs?.subscribe ?? noLogs.subscribe, logs?.snapshot ?? noLogs.snapshot);
  const { exit } = useApp();
  const size = useTerminalSize();
  const [mode, setMode] = useState<Mode>("checking");
  const [cursor, setCursor] = useState(0);
  const [picked, setPicked] = useState<ReadonlySet<string>>(new Set());
  const [confirming, setConfirming] = useState<string[]>([]);
  const [lastOutcomes, setLastOutcomes] = useState<FixOutcome[]>([]);
  const [view, setView] = useState<View>("details");
  const [agentLog, setAgentLog] = useState<LogState | undefined>();
  const [notice, setNotice] = useState<string | undefined>();
  const started = useRef(false);
  const moved = useRef(false);
  const viewRef = useRef<View>("details");
  viewRef.current = view;

  const entries = snap.entries;
  const fixes = useMemo(() => proposedFixesOf(entries), [entries]);
  const automatic = fixes.filter((f) => f.automatic);
  const fixOf = useMemo(() => new Map(fixes.map((f) => [f.checkId, f])), [fixes]);
  const busy = entries.some((e) => e.state === "running") || mode === "applying";
  const { frame } = useAnimation({ interval: 80, isActive: busy });
  const spinner = SPINNER[frame % SPINNER.length]!;
  const at = Math.min(cursor, Math.max(0, entries.length - 1));
  const current = entries[at];

  function loadAgentLog(): void {
    setAgentLog({ kind: "loading" });
    void session.ctx.agentLog(agentLogLines).then(
      (log) => setAgentLog(log),
      (err: unknown) => setAgentLog({ kind: "unavailable", reason: String(err) }),
    );
  }

  /** Runs every check (again); `then` continues once they are done. */
  async function check(): Promise<void> {
    setMode("checking");
    setLastOutcomes([]);
    setPicked(new Set());
    await session.runAll();
    if (viewRef.current === "log") loadAgentLog();
    // Until the person moves, the cursor goes to what needs attention.
    if (!moved.current) {
      const all = session.snapshot().entries;
      const first = ["fail", "warn"].map((s) => all.findIndex((e) => e.result?.status === s)).find((i) => i >= 0);
      if (first !== undefined) setCursor(first);
    }
  }

  async function apply(ids: string[]): Promise<void> {
    setMode("applying");
    const outcomes = await session.applyFixes(ids);
    setLastOutcomes(outcomes);
    setPicked(new Set());
    setMode("ready");
  }

  useEffect(() => {
    if (started.current) return;
    started.current = true;
    void (async () => {
      await check();
      if (autoFix) {
        const ids = proposedFixesOf(session.snapshot().entries)
          .filter((f) => f.automatic)
          .map((f) => f.checkId);
        if (ids.length > 0) await apply(ids);
        setMode("done");
        return;
      }
      setMode("ready");
    })();
  }, []);

  // Exit only once the final state has been drawn, so it stays on the terminal.
  useEffect(() => {
    if (mode === "done") exit();
  }, [mode]);

  function move(to: number): void {
    moved.current = true;
    setNotice(undefined);
    setCursor(Math.max(0, Math.min(entries.length - 1, to)));
  }

  useInput((input, key) => {
    if (mode === "applying" || mode === "done") return;
    if (mode === "confirm") {
      if (input === "y" || input === "Y") void apply(confirming);
      else if (input === "n" || input === "N" || key.escape || input === "q") setMode("ready");
      return;
    }
    if (input === "q" || key.escape) {
      exit();
      return;
    }
    if (key.upArrow || input === "k") move(at - 1);
    else if (key.downArrow || input === "j") move(at + 1);
    else if (key.pageUp) move(at - 10);
    else if (key.pageDown) move(at + 10);
    else if (key.home || input === "g") move(0);
    else if (key.end || input === "G") move(entries.length - 1);
    else if (input === "l") {
      const next = view === "log" ? "details" : "log";
      setView(next);
      if (next === "log") loadAgentLog();
    } else if (mode !== "ready") return;
    else if (input === "r") {
      setNotice(undefined);
      void check().then(() => setMode("ready"));
    } else if (input === " ") {
      const fix = current && fixOf.get(current.id);
      if (!fix) setNotice("this check proposes no fix");
      else if (!fix.automatic) setNotice("this fix is for a person to do (see below)");
      else {
        setNotice(undefined);
        setPicked((s) => toggle(s, fix.checkId));
      }
    } else if (input === "a") {
      setNotice(undefined);
      setPicked((s) => (automatic.length > 0 && automatic.every((f) => s.has(f.checkId)) ? new Set() : new Set(automatic.map((f) => f.checkId))));
    } else if (key.return) {
      const chosen = automatic.filter((f) => picked.has(f.checkId)).map((f) => f.checkId);
      const here = current && fixOf.get(current.id);
      const ids = chosen.length > 0 ? chosen : here?.automatic ? [here.checkId] : [];
      if (ids.length === 0) {
        setNotice(automatic.length > 0 ? "no fix picked: space picks the fix of the check under ›" : "nothing here can be fixed from this screen");
        return;
      }
      setNotice(undefined);
      setConfirming(ids);
      setPicked(new Set(ids));
      if (assumeYes) void apply(ids);
      else setMode("confirm");
    }
  });

  const width = Math.max(1, size.columns);
  const summary = session.summary();
  const done = entries.filter((e) => e.state === "done").length;
  const manual = fixes.length - automatic.length;

  // What sits under the list, worked out as lines so the whole frame fits the terminal's height.
  const status: ReactNode[] = [];
  if (mode === "checking") {
    status.push(
      <T key="s" color="cyan">
        {spinner} checking: {done} of {entries.length} done
      </T>,
    );
  } else {
    status.push(
      <T key="s" wrap="wrap">
        <T color="green">{summary.ok} ok</T>, <T color="yellow">{summary.warn} warning{summary.warn === 1 ? "" : "s"}</T>, <T color="red">{summary.fail} failed</T>,{" "}
        <T dim>{summary.skip} skipped</T>
      </T>,
    );
    if (lastOutcomes.length > 0) status.push(<OutcomeLine key="o" outcomes={lastOutcomes} />);
    if (fixes.length > 0) {
      status.push(
        <T key="f" wrap="wrap">
          fixes: {automatic.length} here{picked.size > 0 ? ` (${picked.size} picked)` : ""}
          {manual > 0 ? `, ${manual} by hand` : ""}
        </T>,
      );
    }
  }
  // The summary may wrap on a narrow terminal.
  const statusHeight = status.length + (mode !== "checking" && width < 45 ? 1 : 0);

  const prompt: ReactNode =
    mode === "confirm" ? (
      <T color="cyan" wrap="wrap">
        Apply {confirming.length} fix{confirming.length === 1 ? "" : "es"}? (y/n)
      </T>
    ) : mode === "applying" ? (
      <T color="cyan">{spinner} applying fixes…</T>
    ) : notice ? (
      <T color="yellow" wrap="wrap">
        {notice}
      </T>
    ) : null;

  const help = wrapText(keyHelp(mode, automatic.length > 0), width);
  const ownLogHeight = ownLines.length > 0 ? ownLines.length + 1 : 0;
  const promptHeight = mode === "confirm" || mode === "applying" ? 1 : notice ? wrapText(notice, width).length : 0;

  const pane = view === "log" ? logPane(agentLog, width) : detailPane(current, current ? fixOf.get(current.id) : undefined, picked, width, spinner);
  const fixed = 1 + 1 + statusHeight + 1 + promptHeight + help.length + ownLogHeight;
  // ink redraws the whole screen when a frame reaches the terminal's height, so stay one line under it.
  const room = size.rows > 0 ? size.rows - 1 - fixed : Number.POSITIVE_INFINITY;
  const { listHeight, paneHeight } = split(entries.length, pane.length, room);
  const window = windowOf(entries.length, at, listHeight);
  const shownPane = cutPane(pane, paneHeight, view === "log");

  return (
    <ColorOn.Provider value={color}>
      <Box flexDirection="column" width={width}>
        <T>
          <T bold>agent doctor</T>
          {subtitle ? <T dim> {subtitle}</T> : null}
        </T>
        {window.above > 0 ? <T dim> ↑ {window.above} more</T> : null}
        {entries.slice(window.start, window.end).map((entry, i) => (
          <EntryRow key={entry.id} entry={entry} here={window.start + i === at} fix={fixOf.get(entry.id)} picked={picked.has(entry.id)} spinner={spinner} />
        ))}
        {window.below > 0 ? <T dim> ↓ {window.below} more</T> : null}
        <Box marginTop={1} flexDirection="column">
          {status}
        </Box>
        <Box marginTop={1} flexDirection="column">
          {shownPane.map((line, i) => (
            <T key={i} color={line.color} dim={line.dim} bold={line.bold}>
              {line.text}
            </T>
          ))}
        </Box>
        {prompt}
        {mode === "done"
          ? null
          : help.map((line, i) => (
              <T key={i} dim>
                {line}
              </T>
            ))}
        {ownLines.length > 0 ? (
          <Box flexDirection="column" marginTop={1}>
            {ownLines.map((line, i) => (
              <T key={i} dim>
                {line}
              </T>
            ))}
          </Box>
        ) : null}
      </Box>
    </ColorOn.Provider>
  );
}

function keyHelp(mode: Mode, canFix: boolean): string {
  if (mode === "confirm") return "y apply · n cancel";
  if (mode === "applying" || mode === "done") return "";
  if (mode === "checking") return "↑↓ move · l agent log · q quit";
  return canFix ? "↑↓ move · space pick fix · a all · enter apply · r re-run · l agent log · q quit" : "↑↓ move · r re-run · l agent log · q quit";
}

function EntryRow({ entry, here, fix, picked, spinner }: { entry: CheckEntry; here: boolean; fix?: ProposedFix; picked: boolean; spinner: string }) {
  const pointer = here ? "›" : " ";
  if (entry.state === "pending") {
    return (
      <T dim={!here}>
        {pointer} · {entry.title}
      </T>
    );
  }
  if (entry.state === "running" || !entry.result) {
    return (
      <T>
        {pointer} <T color="cyan">{spinner}</T> {entry.title}
      </T>
    );
  }
  const r = entry.result;
  return (
    <T bold={here}>
      {pointer} <T color={COLOR[r.status]}>{STATUS_MARK[r.status]}</T>
      {fix?.automatic ? ` [${picked ? "x" : " "}]` : ""} {r.title}
      {entry.fix?.state === "applied" ? <T color="green"> (fix applied)</T> : null}
      {entry.fix?.state === "applying" ? <T color="cyan"> (applying fix…)</T> : null}
      {entry.fix?.state === "failed" ? <T color="red"> (fix failed)</T> : null}
    </T>
  );
}

/** The check under the cursor: its title, status and id, every line of its detail, and its fix. */
function detailPane(entry: CheckEntry | undefined, fix: ProposedFix | undefined, picked: ReadonlySet<string>, width: number, spinner: string): Line[] {
  if (!entry) return [];
  const lines: Line[] = [];
  const push = (text: string, style: Omit<Line, "text"> = {}, indent = "") => {
    for (const part of wrapText(text, width - indent.length)) lines.push({ text: indent + part, ...style });
  };
  const r = entry.result;
  push(`${entry.state === "running" ? spinner : r ? STATUS_MARK[r.status] : "·"} ${entry.title}`, { bold: true });
  if (!r || entry.state !== "done") {
    push(`${entry.state === "running" ? "running" : "waiting to run"} · ${entry.id}`, { dim: true }, "  ");
    return lines;
  }
  push(`${WORD[r.status]} · ${entry.id}`, { color: COLOR[r.status] }, "  ");
  for (const line of r.detail.split("\n")) push(line, {}, "  ");
  if (fix) {
    const how = fix.automatic ? `fix${picked.has(fix.checkId) ? " [x] picked" : ""}: ` : "fix (by hand): ";
    push(how + fix.fix.description, { color: "cyan" }, "  ");
  }
  if (entry.fix?.state === "applied") push("fix applied; checked again", { color: "green" }, "  ");
  if (entry.fix?.state === "failed") push(`fix failed: ${entry.fix.error}`, { color: "red" }, "  ");
  return lines;
}

/** The agent's recent log lines (`l`), newest last, or why there are none. */
function logPane(log: LogState | undefined, width: number): Line[] {
  const lines: Line[] = [];
  if (!log || log.kind === "loading") return [{ text: "reading the agent log…", dim: true }];
  if (log.kind === "unavailable") {
    for (const part of wrapText(`agent log unavailable: ${log.reason}`, width)) lines.push({ text: part, color: "yellow" });
    return lines;
  }
  const counts = `${log.lines.length} line${log.lines.length === 1 ? "" : "s"}, ${log.errors} error${log.errors === 1 ? "" : "s"}, ${log.warnings} warning${log.warnings === 1 ? "" : "s"}`;
  for (const part of wrapText(`agent log: ${log.source} (${counts})`, width)) lines.push({ text: part, bold: true });
  if (log.lines.length === 0) lines.push({ text: "  (empty)", dim: true });
  for (const line of log.lines) {
    const level = levelOf(line);
    lines.push({ text: `  ${line}`, ...(level === "error" ? { color: "red" as const } : level === "warn" ? { color: "yellow" as const } : {}) });
  }
  return lines;
}

/** At most `height` lines of a pane: the first ones (details), or the heading and the newest ones (a log, newest last). */
function cutPane(pane: Line[], height: number, newest: boolean): Line[] {
  if (pane.length <= height) return pane;
  const keep = Math.max(1, height - 1);
  if (newest) return [pane[0]!, { text: `  … ${pane.length - keep} earlier lines`, dim: true }, ...pane.slice(pane.length - keep + 1)];
  return [...pane.slice(0, keep), { text: `… ${pane.length - keep} more lines (agent doctor --json shows all)`, dim: true }];
}

/** Shares the rows left between the list of checks and the pane below it. */
export function split(listLength: number, paneLength: number, room: number): { listHeight: number; paneHeight: number } {
  if (listLength + paneLength <= room) return { listHeight: listLength, paneHeight: paneLength };
  const pane = Math.min(paneLength, Math.max(MIN_PANE, Math.floor(room / 2)));
  const list = Math.min(listLength, Math.max(3, room - pane));
  return { listHeight: list, paneHeight: Math.max(MIN_PANE, room - list) };
}

/** Which checks the list shows in `height` rows, keeping the cursor in view; a row each for "↑ n more" and "↓ n more". */
export function windowOf(length: number, cursor: number, height: number): { start: number; end: number; above: number; below: number } {
  if (length <= height) return { start: 0, end: length, above: 0, below: 0 };
  const body = Math.max(1, height - 2);
  const start = Math.max(0, Math.min(length - body, cursor - Math.floor(body / 2)));
  const end = start + body;
  return { start, end, above: start, below: length - end };
}

/** Word-wraps `text` to `width` columns (long words are cut), one string per terminal line. */
export function wrapText(text: string, width: number): string[] {
  const w = Math.max(1, width);
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const indent = /^\s*/.exec(raw)![0].slice(0, Math.floor(w / 2));
    let line = "";
    for (const word of raw.trim().split(/ +/)) {
      if (word.length === 0) continue;
      const candidate = line.length === 0 ? indent + word : `${line} ${word}`;
      if (widthOf(candidate) <= w) {
        line = candidate;
        continue;
      }
      if (line.length > 0) out.push(line);
      line = indent + word;
      while (widthOf(line) > w) {
        const cut = cutAt(line, w);
        out.push(line.slice(0, cut));
        line = line.slice(cut);
      }
    }
    out.push(line);
  }
  return out;
}

function widthOf(s: string): number {
  return Bun.stringWidth(s);
}

/** The longest prefix of `s` (in UTF-16 units) that fits `w` columns. */
function cutAt(s: string, w: number): number {
  let used = 0;
  let i = 0;
  for (const ch of s) {
    const cw = widthOf(ch);
    if (used + cw > w) break;
    used += cw;
    i += ch.length;
  }
  return Math.max(1, i);
}

function useTerminalSize(): { columns: number; rows: number } {
  const stdout = useStdout().stdout as NodeJS.WriteStream;
  const read = () => ({ columns: stdout.columns || 80, rows: stdout.rows || 0 });
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = () => setSize(read());
    stdout.on("resize", onResize);
    return () => {
      stdout.off("resize", onResize);
    };
  }, [stdout]);
  return size;
}

function toggle(set: ReadonlySet<string>, id: string): ReadonlySet<string> {
  const next = new Set(set);
  if (next.has(id)) next.delete(id);
  else next.add(id);
  return next;
}

function OutcomeLine({ outcomes }: { outcomes: FixOutcome[] }) {
  const applied = outcomes.filter((o) => o.applied).length;
  const failed = outcomes.length - applied;
  return (
    <T wrap="wrap">
      {applied > 0 ? <T color="green">{applied} fix{applied === 1 ? "" : "es"} applied</T> : null}
      {applied > 0 && failed > 0 ? ", " : null}
      {failed > 0 ? <T color="red">{failed} failed</T> : null}
      <T dim> (checked again)</T>
    </T>
  );
}
