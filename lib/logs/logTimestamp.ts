/**
 * `_time` values for VictoriaLogs: RFC 3339 in UTC with nanoseconds. Dates only carry
 * milliseconds, so the sub-millisecond digits come from a per-process counter: lines stamped in
 * the same millisecond keep the order in which they were stamped (until the counter wraps after
 * a million lines).
 */
const NANOS_PER_MS = 1_000_000;
let sequence = 0;

let cachedMs = Number.NaN;
let cachedPrefix = "";

export function rfc3339Nano(ms: number, subMsNanos: number): string {
  // Lines come in runs of the same millisecond: its ISO form is made once.
  if (ms !== cachedMs) {
    cachedPrefix = new Date(ms).toISOString().slice(0, -1); // 2026-11-25T16:00:00.123
    cachedMs = ms;
  }
  const sub = String(Math.min(Math.max(Math.trunc(subMsNanos), 0), NANOS_PER_MS - 1));
  return `${cachedPrefix}${"000000".slice(sub.length)}${sub}Z`;
}

/**
 * Stamps for one source that never go backwards: a line stamped at or before the previous one
 * gets the previous stamp plus a nanosecond. Seeded with the last stamp of an earlier run, lines
 * resumed after a restart sort after the ones shipped before it.
 */
export class MonotonicStamps {
  constructor(private last: { ms: number; subMsNanos: number } = { ms: -Infinity, subMsNanos: 0 }) {}

  next(ms: number): { ms: number; subMsNanos: number } {
    if (ms > this.last.ms) this.last = { ms, subMsNanos: 0 };
    else if (this.last.subMsNanos < NANOS_PER_MS - 1) this.last = { ms: this.last.ms, subMsNanos: this.last.subMsNanos + 1 };
    else this.last = { ms: this.last.ms + 1, subMsNanos: 0 };
    return this.last;
  }
}

/** Stamps one line: its own time when valid, else now. */
export function logTimestamp(time?: Date): string {
  const own = time?.getTime();
  const ms = own !== undefined && Number.isFinite(own) ? own : Date.now();
  sequence = (sequence + 1) % NANOS_PER_MS;
  return rfc3339Nano(ms, sequence);
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** True for an RFC 3339 date-time (any fraction up to nanoseconds) that denotes a real instant. */
export function isRfc3339(value: string): boolean {
  const m = RFC3339.exec(value);
  if (!m) return false;
  const [, , month, day, hour, minute, second] = m.map(Number) as number[];
  if (month! < 1 || month! > 12 || day! < 1 || day! > 31 || hour! > 23 || minute! > 59 || second! > 60) return false;
  return Number.isFinite(Date.parse(value.replace(/(\.\d{3})\d+/, "$1")));
}
