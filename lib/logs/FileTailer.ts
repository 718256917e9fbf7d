import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";

const CHUNK = 64 * 1024;

/**
 * Reads the lines appended to a file, surviving rotation: when the path names another file
 * (renamed away and created again) the old file is read to its end first, then the new one from
 * its start; when the file shrank (truncated in place) reading restarts at its start. `poll()`
 * reads what is there now; the caller decides how often. Lines come without their "\n"; a line
 * longer than `maxLineBytes` comes in pieces.
 */
export class FileTailer {
  private fd?: number;
  private ino?: number;
  private offset = 0;
  private partial: Buffer[] = [];
  private partialBytes = 0;

  /** `fromEnd`: skip what the file holds when it is first opened (lines of files created later are all read). */
  constructor(
    readonly path: string,
    private fromEnd = true,
    private readonly maxLineBytes = 64 * 1024,
  ) {}

  /** Reads up to `maxLines` complete lines (more calls get the rest). */
  poll(maxLines = 10_000): string[] {
    const out: string[] = [];
    if (this.fd === undefined && !this.open()) return out;
    this.readInto(out, maxLines);
    if (out.length >= maxLines) return out;
    const current = statOrUndefined(this.path);
    // Renamed away with nothing in its place yet: the old file is kept until a new one appears.
    if (current && current.ino !== this.ino) {
      this.close();
      if (this.open()) this.readInto(out, maxLines);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.partial = [];
    this.partialBytes = 0;
  }

  private open(): boolean {
    try {
      this.fd = openSync(this.path, "r");
    } catch {
      this.fromEnd = false;
      return false;
    }
    const st = fstatSync(this.fd);
    this.ino = st.ino;
    this.offset = this.fromEnd ? st.size : 0;
    this.fromEnd = false;
    return true;
  }

  private readInto(out: string[], maxLines: number): void {
    const fd = this.fd!;
    if (fstatSync(fd).size < this.offset) {
      this.offset = 0;
      this.partial = [];
      this.partialBytes = 0;
    }
    const buf = Buffer.allocUnsafe(CHUNK);
    while (out.length < maxLines) {
      const n = readSync(fd, buf, 0, CHUNK, this.offset);
      if (n <= 0) return;
      this.offset += n;
      let start = 0;
      for (let nl = buf.indexOf(0x0a, 0); nl !== -1 && nl < n; nl = buf.indexOf(0x0a, start)) {
        this.append(buf.subarray(start, nl));
        out.push(this.take());
        start = nl + 1;
        if (out.length >= maxLines) {
          this.offset -= n - start;
          return;
        }
      }
      if (start < n) this.append(buf.subarray(start, n));
      if (this.partialBytes >= this.maxLineBytes) out.push(this.take());
    }
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.partial.push(Buffer.from(bytes));
    this.partialBytes += bytes.length;
  }

  private take(): string {
    const line = Buffer.concat(this.partial, this.partialBytes).toString("utf8");
    this.partial = [];
    this.partialBytes = 0;
    return line;
  }
}

function statOrUndefined(path: string): { ino: number } | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
