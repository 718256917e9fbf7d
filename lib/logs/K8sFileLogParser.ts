/**
 * Parses the log file Podman's `k8s-file` driver (its default) keeps for a container — the file
 * `podman logs` reads: one entry a line, "<RFC 3339 time with nanoseconds> <stdout|stderr> <P|F>
 * <text>\n". `P` marks a partial entry (conmon cut the line at its buffer size or the output
 * stopped mid-line); the entries up to the next `F` of that stream make one line. Pure: complete
 * entries in (whole lines of the file, decoded), lines out.
 */
export interface K8sFileLogEntry {
  stream: "stdout" | "stderr";
  text: string;
  /** Unix ms of the line's first entry, or undefined when its time does not parse. */
  ms?: number;
}

interface Pending {
  parts: string[];
  chars: number;
  ms?: number;
}

export class K8sFileLogParser {
  private readonly pending: Record<"stdout" | "stderr", Pending | undefined> = { stdout: undefined, stderr: undefined };
  private lastStamp = "";
  private lastMs: number | undefined;

  /** `maxLineChars`: a line that grows beyond this without its final entry is emitted in pieces. */
  constructor(private readonly maxLineChars = 64 * 1024) {}

  /**
   * Parses `text`, whole entries each ending in "\n", calling `emit` for every complete line in
   * file order. Returns how many lines were emitted.
   */
  parse(text: string, emit: (entry: K8sFileLogEntry) => void): number {
    let emitted = 0;
    let start = 0;
    const end = text.length;
    while (start < end) {
      let nl = text.indexOf("\n", start);
      if (nl < 0) nl = end;
      const s1 = text.indexOf(" ", start);
      if (s1 < 0 || s1 > nl) {
        start = nl + 1; // not an entry (a torn write): skipped
        continue;
      }
      const stamp = text.slice(start, s1);
      let ms: number | undefined;
      if (stamp === this.lastStamp) ms = this.lastMs;
      else {
        const parsed = Date.parse(stamp);
        ms = Number.isFinite(parsed) ? parsed : undefined;
        this.lastStamp = stamp;
        this.lastMs = ms;
      }
      const s2 = text.indexOf(" ", s1 + 1);
      if (s2 < 0 || s2 > nl) {
        start = nl + 1;
        continue;
      }
      const stream = text.charCodeAt(s1 + 4) === 0x65 /* stderr: "e" */ ? "stderr" : "stdout";
      // The tag: "F" or "P", possibly followed by ":"-separated others; the text may be empty (no space then).
      let s3 = text.indexOf(" ", s2 + 1);
      if (s3 < 0 || s3 > nl) s3 = nl;
      const partial = text.charCodeAt(s2 + 1) === 0x50; // "P"
      let line = s3 >= nl ? "" : text.slice(s3 + 1, nl);
      start = nl + 1;
      const waiting = this.pending[stream];
      if (partial) {
        const p = waiting ?? (this.pending[stream] = { parts: [], chars: 0, ms });
        p.parts.push(line);
        p.chars += line.length;
        if (p.chars >= this.maxLineChars) {
          this.pending[stream] = undefined;
          emit({ stream, text: p.parts.join(""), ms: p.ms });
          emitted++;
        }
        continue;
      }
      let lineMs = ms;
      if (waiting) {
        waiting.parts.push(line);
        line = waiting.parts.join("");
        lineMs = waiting.ms;
        this.pending[stream] = undefined;
      }
      if (line.charCodeAt(line.length - 1) === 0x0d) line = line.slice(0, -1); // a TTY's "\r\n"
      emit({ stream, text: line, ms: lineMs });
      emitted++;
    }
    return emitted;
  }

  /** Lines still waiting for their final entry (the file ended mid-line); not counted as shipped. */
  end(emit: (entry: K8sFileLogEntry) => void): void {
    for (const stream of ["stdout", "stderr"] as const) {
      const p = this.pending[stream];
      this.pending[stream] = undefined;
      if (p && p.chars > 0) emit({ stream, text: p.parts.join(""), ms: p.ms });
    }
  }

  /** True while a line's final entry has not come yet: a read starting here would cut that line. */
  get midLine(): boolean {
    return this.pending.stdout !== undefined || this.pending.stderr !== undefined;
  }

  /** Forgets partial lines (the file was replaced or truncated). */
  reset(): void {
    this.pending.stdout = undefined;
    this.pending.stderr = undefined;
  }
}
