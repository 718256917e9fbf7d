/**
 * The two settings of /etc/containers/containers.conf the agent depends on, read and rewritten
 * without disturbing the rest of the file: `[engine] runtime` and `[containers] default_ulimits`.
 * containers.conf is TOML; only the subset those keys use is understood here (tables, `key =`
 * strings and arrays of strings, possibly over several lines, comments).
 */

export interface ConfEntry {
  table: string;
  key: string;
  /** The value's TOML text (an array may span lines). */
  raw: string;
  /** Line span of the entry, inclusive, 0-based. */
  startLine: number;
  endLine: number;
}

export interface ContainersConf {
  entries: ConfEntry[];
  /** Line of each table header, 0-based. */
  tables: Map<string, number>;
  lines: string[];
}

export function parseContainersConf(text: string): ContainersConf {
  const lines = text.split("\n");
  const entries: ConfEntry[] = [];
  const tables = new Map<string, number>();
  let table = "";
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i]!).trim();
    if (line === "") continue;
    const header = /^\[\s*([A-Za-z0-9_.-]+)\s*\]$/.exec(line);
    if (header) {
      table = header[1]!;
      if (!tables.has(table)) tables.set(table, i);
      continue;
    }
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
    if (!kv) continue;
    let raw = kv[2]!;
    const start = i;
    if (raw.startsWith("[")) {
      while (bracketDepth(raw) > 0 && i + 1 < lines.length) {
        i++;
        raw += "\n" + stripComment(lines[i]!).trim();
      }
    }
    entries.push({ table, key: kv[1]!, raw, startLine: start, endLine: i });
  }
  return { entries, tables, lines };
}

export function confString(conf: ContainersConf, table: string, key: string): string | undefined {
  const entry = find(conf, table, key);
  if (!entry) return undefined;
  return quotedStrings(entry.raw)[0];
}

export function confStringList(conf: ContainersConf, table: string, key: string): string[] | undefined {
  const entry = find(conf, table, key);
  return entry ? quotedStrings(entry.raw) : undefined;
}

/** The file with `key` in `table` set to `value` (TOML text), replacing the old entry or adding one. */
export function setConfValue(text: string, table: string, key: string, value: string): string {
  const conf = parseContainersConf(text);
  const line = `${key} = ${value}`;
  const lines = [...conf.lines];
  const entry = find(conf, table, key);
  if (entry) {
    lines.splice(entry.startLine, entry.endLine - entry.startLine + 1, line);
    return lines.join("\n");
  }
  const header = conf.tables.get(table);
  if (header !== undefined) {
    lines.splice(header + 1, 0, line);
    return lines.join("\n");
  }
  const body = text.length === 0 || text.endsWith("\n") ? text : text + "\n";
  return `${body}${body.trim() === "" ? "" : "\n"}[${table}]\n${line}\n`;
}

export function tomlStringArray(values: readonly string[]): string {
  return `[${values.map((v) => JSON.stringify(v)).join(",")}]`;
}

export interface Ulimit {
  name: string;
  soft: number;
  hard: number;
}

/** `nofile=10000:20000` → {nofile, 10000, 20000}; `nofile=10000` means soft = hard. */
export function parseUlimit(text: string): Ulimit | undefined {
  const m = /^\s*([a-z]+)\s*=\s*(-?\d+)(?::(-?\d+))?\s*$/.exec(text);
  if (!m) return undefined;
  const soft = Number(m[2]);
  return { name: m[1]!, soft, hard: m[3] === undefined ? soft : Number(m[3]) };
}

/** Hard limits from /proc/<pid>/limits, by ulimit name; `undefined` value = unlimited. */
export function parseProcLimits(text: string): Map<string, number | undefined> {
  const out = new Map<string, number | undefined>();
  for (const line of text.split("\n")) {
    const m = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const name = PROC_LIMIT_NAMES[m[1]!];
    if (!name) continue;
    out.set(name, m[3] === "unlimited" ? undefined : Number(m[3]));
  }
  return out;
}

const PROC_LIMIT_NAMES: Record<string, string> = {
  "Max cpu time": "cpu",
  "Max file size": "fsize",
  "Max data size": "data",
  "Max stack size": "stack",
  "Max core file size": "core",
  "Max resident set": "rss",
  "Max processes": "nproc",
  "Max open files": "nofile",
  "Max locked memory": "memlock",
  "Max address space": "as",
  "Max file locks": "locks",
  "Max pending signals": "sigpending",
  "Max msgqueue size": "msgqueue",
  "Max nice priority": "nice",
  "Max realtime priority": "rtprio",
  "Max realtime timeout": "rttime",
};

function find(conf: ContainersConf, table: string, key: string): ConfEntry | undefined {
  return conf.entries.find((e) => e.table === table && e.key === key);
}

function quotedStrings(raw: string): string[] {
  const out: string[] = [];
  for (const m of raw.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'/g)) out.push(m[1] !== undefined ? JSON.parse(`"${m[1]}"`) : m[2]!);
  return out;
}

/** The line without a `#` comment (a `#` inside a quoted string is kept). */
function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") return line.slice(0, i);
  }
  return line;
}

function bracketDepth(raw: string): number {
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "[") depth++;
    else if (c === "]") depth--;
  }
  return depth;
}
