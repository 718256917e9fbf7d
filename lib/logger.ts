import { redact } from "./redact.ts";

export type LogFormat = "text" | "json";
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogSink {
  write(line: string): void;
}

const stderrSink: LogSink = { write: (line) => process.stderr.write(line + "\n") };

let globalFormat: LogFormat = "text";
let globalLevel: LogLevel = parseLevel(process.env.AGENT_LOG_LEVEL) ?? "info";
let globalSink: LogSink = stderrSink;

function parseLevel(value: string | undefined): LogLevel | undefined {
  return value && value in LEVELS ? (value as LogLevel) : undefined;
}

export function configureLogging(options: { format?: LogFormat; level?: LogLevel; sink?: LogSink }): void {
  if (options.format) globalFormat = options.format;
  if (options.level) globalLevel = options.level;
  if (options.sink) globalSink = options.sink;
}

/** Where log lines go now (stderr unless configured otherwise). */
export function logSink(): LogSink {
  return globalSink;
}

/** `[component] message` lines on stderr, or JSON lines with --log-format json. Secrets are redacted. */
export class Logger {
  constructor(readonly component: string) {}

  child(component: string): Logger {
    return new Logger(component);
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.log("debug", message, fields);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.log("info", message, fields);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.log("warn", message, fields);
  }
  error(message: string, fields?: Record<string, unknown>): void {
    this.log("error", message, fields);
  }

  private log(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    if (LEVELS[level] < LEVELS[globalLevel]) return;
    if (globalFormat === "json") {
      // Redact the values before JSON escapes them: a secret with a line break (a PEM key) would no
      // longer match once written as `\n`.
      const record = { time: new Date().toISOString(), level, component: this.component, msg: message, ...fields };
      globalSink.write(redact(JSON.stringify(record, (_key, value: unknown) => (typeof value === "string" ? redact(value) : value))));
      return;
    }
    const suffix = fields && Object.keys(fields).length > 0 ? " " + formatFields(fields) : "";
    const prefix = level === "info" || level === "debug" ? "" : `${level}: `;
    globalSink.write(redact(`[${this.component}] ${prefix}${message}${suffix}`));
  }
}

function formatFields(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
}

export function logger(component: string): Logger {
  return new Logger(component);
}
