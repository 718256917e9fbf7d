/**
 * Decodes the body of libpod's `GET /containers/{id}/logs?timestamps=true`: frames of an 8-byte
 * header [stream (1 stdout, 2 stderr), 0, 0, 0, size uint32 BE] and `size` bytes of payload,
 * each payload "<RFC 3339 time> <text>". The text ends in "\n" (or "\r\n" with a TTY) unless
 * the log driver split a long line into partial frames, which are joined here. Pure: bytes in,
 * lines out, chunk boundaries anywhere.
 */
export interface ContainerLogEntry {
  stream: "stdout" | "stderr";
  text: string;
  /** Unix seconds of the line's first frame (podman stamps with second precision), or undefined. */
  seconds?: number;
}

const HEADER_BYTES = 8;
const STAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/;
const EMPTY = Buffer.alloc(0);

interface PendingLine {
  parts: Buffer[];
  bytes: number;
  seconds?: number;
}

export class LibpodLogDecoder {
  private buffer: Buffer = EMPTY;
  private readonly pending: Record<"stdout" | "stderr", PendingLine | undefined> = { stdout: undefined, stderr: undefined };

  /** `maxLineBytes`: a line that grows beyond this without a newline is emitted in pieces. */
  constructor(private readonly maxLineBytes = 64 * 1024) {}

  push(chunk: Uint8Array): ContainerLogEntry[] {
    this.buffer = this.buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk]);
    const out: ContainerLogEntry[] = [];
    let offset = 0;
    while (this.buffer.length - offset >= HEADER_BYTES) {
      const size = this.buffer.readUInt32BE(offset + 4);
      if (this.buffer.length - offset - HEADER_BYTES < size) break;
      const kind = this.buffer[offset]!;
      const payload = this.buffer.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + size);
      offset += HEADER_BYTES + size;
      // 0 is stdin (never sent for logs); 3 is the Docker API's system-error stream.
      const stream = kind === 2 || kind === 3 ? "stderr" : "stdout";
      this.frame(stream, payload, out);
    }
    this.buffer = offset === this.buffer.length ? EMPTY : Buffer.from(this.buffer.subarray(offset));
    return out;
  }

  /** Lines still waiting for their newline (a stream that ended mid-line); not counted as shipped. */
  end(): ContainerLogEntry[] {
    const out: ContainerLogEntry[] = [];
    for (const stream of ["stdout", "stderr"] as const) {
      const p = this.pending[stream];
      if (p && p.bytes > 0) out.push(this.emit(stream, p));
      this.pending[stream] = undefined;
    }
    this.buffer = EMPTY;
    return out;
  }

  private frame(stream: "stdout" | "stderr", payload: Buffer, out: ContainerLogEntry[]): void {
    let text = payload;
    let seconds: number | undefined;
    const space = payload.indexOf(0x20);
    if (space > 0 && space <= 40) {
      const stamp = payload.subarray(0, space).toString("latin1");
      const parsed = STAMP.test(stamp) ? Date.parse(stamp) : Number.NaN;
      if (Number.isFinite(parsed)) {
        seconds = Math.floor(parsed / 1000);
        text = payload.subarray(space + 1);
      }
    }
    const waiting = this.pending[stream];
    let p: PendingLine = waiting && waiting.bytes > 0 ? waiting : { parts: [], bytes: 0, seconds };
    let start = 0;
    for (let nl = text.indexOf(0x0a); nl >= 0; nl = text.indexOf(0x0a, start)) {
      this.append(p, text.subarray(start, nl));
      out.push(this.emit(stream, p));
      p = { parts: [], bytes: 0, seconds };
      start = nl + 1;
    }
    if (start < text.length) {
      this.append(p, text.subarray(start));
      if (p.bytes >= this.maxLineBytes) {
        out.push(this.emit(stream, p));
        p = { parts: [], bytes: 0, seconds };
      }
    }
    this.pending[stream] = p.bytes > 0 ? p : undefined;
  }

  private append(p: PendingLine, bytes: Buffer): void {
    if (bytes.length === 0) return;
    p.parts.push(Buffer.from(bytes));
    p.bytes += bytes.length;
  }

  private emit(stream: "stdout" | "stderr", p: PendingLine): ContainerLogEntry {
    const text = Buffer.concat(p.parts, p.bytes).toString("utf8").replace(/\r$/, "");
    return p.seconds === undefined ? { stream, text } : { stream, text, seconds: p.seconds };
  }
}
