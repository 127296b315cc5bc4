/**
 * One line of the transcript by its `seq` (leaf index + 1), without scanning
 * the log (docs/TRANSCRIPT.md §4.4): the file is found by the first seq its
 * name carries (§2.1), and the line within it by bisecting the file's bytes —
 * from a byte offset, the next whole line is found (the bytes after the next
 * LF) and its `seq` parsed; lines are in seq order, so each probe halves the
 * stretch that can hold the line. A lookup costs O(log(file size)) reads of
 * at most one line each (MAX_LINE_BYTES), and a final scan of at most
 * SCAN_BYTES.
 *
 * Nothing here is trusted: the line found must parse as an entry with that
 * seq, and callers check its leaf hash against a signed root before they
 * show it to anyone. A file that ends in a torn line (a crash mid-write, not
 * yet recovered, or a line still being written) is read up to its last LF.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { MAX_LINE_BYTES, type TranscriptFile, listTranscript } from "./read.ts";

/** Bytes read at a time while looking for an LF. */
const BLOCK_BYTES = 4096;
/** Bytes a bisection probe reads first: the end of one line and the whole next one, for lines under 1 KiB. */
const PROBE_BYTES = 2048;
/** Below this many bytes between the bounds, the lines are read one by one instead of bisected. */
export const SCAN_BYTES = 8 * 1024;

/** What a lookup read, for tests and for the bound. */
export interface LineReads {
  reads: number;
  bytes: number;
}

class FileReader {
  readonly size: number;
  constructor(
    readonly fd: number,
    readonly stats: LineReads,
  ) {
    this.size = fstatSync(fd).size;
  }

  #read(buf: Uint8Array, at: number): number {
    const n = readSync(this.fd, buf, 0, buf.length, at);
    this.stats.reads++;
    this.stats.bytes += n;
    return n;
  }

  /** The offset of the first LF at or after `from`, looking at most `limit` bytes; -1 if none. */
  lfAt(from: number, limit: number): number {
    const buf = new Uint8Array(BLOCK_BYTES);
    for (let at = from; at < this.size && at - from < limit; ) {
      const n = this.#read(buf, at);
      if (n <= 0) return -1;
      const i = buf.subarray(0, n).indexOf(0x0a);
      if (i >= 0) return at + i;
      at += n;
    }
    return -1;
  }

  /**
   * The first LF at or after `from`, and the whole line after it if that
   * line starts before `hi` (null otherwise): most often from one read of
   * PROBE_BYTES, which holds both for lines of a usual message's size.
   */
  probe(from: number, hi: number): { lf: number; next: { bytes: Uint8Array; end: number } | null } {
    const buf = this.bytesAt(from, PROBE_BYTES);
    const i = buf.indexOf(0x0a);
    const lf = i >= 0 ? from + i : this.lfAt(from + buf.length, MAX_LINE_BYTES + 1);
    if (lf < 0 || lf + 1 >= hi) return { lf, next: null };
    const j = i >= 0 ? buf.indexOf(0x0a, i + 1) : -1;
    return { lf, next: j >= 0 ? { bytes: buf.subarray(i + 1, j), end: from + j + 1 } : this.lineAt(lf + 1) };
  }

  /** `n` bytes (fewer at the end of the file) from `at`. */
  bytesAt(at: number, n: number): Uint8Array {
    const buf = new Uint8Array(Math.max(0, Math.min(n, this.size - at)));
    if (buf.length === 0) return buf;
    return buf.subarray(0, this.#read(buf, at));
  }

  /** The whole line starting at `start` (without its LF) and the offset after its LF; null if it has no LF within MAX_LINE_BYTES. */
  lineAt(start: number): { bytes: Uint8Array; end: number } | null {
    // Most lines fit one block: read once; a longer one is found first, then read whole.
    const first = this.bytesAt(start, BLOCK_BYTES);
    const i = first.indexOf(0x0a);
    if (i >= 0) return { bytes: first.subarray(0, i), end: start + i + 1 };
    const lf = this.lfAt(start + first.length, MAX_LINE_BYTES + 1 - first.length);
    if (lf < 0 || lf - start > MAX_LINE_BYTES) return null;
    const bytes = this.bytesAt(start, lf - start);
    return bytes.length === lf - start ? { bytes, end: lf + 1 } : null;
  }
}

/** The `seq` of a line, or null if it is no entry. */
function seqOf(bytes: Uint8Array): number | null {
  try {
    const v = JSON.parse(Buffer.from(bytes).toString("utf8")) as { seq?: unknown };
    return typeof v === "object" && v !== null && Number.isSafeInteger(v.seq) ? (v.seq as number) : null;
  } catch {
    return null;
  }
}

/** The line of `seq` in one file, by bisection over its bytes. */
function findInFile(r: FileReader, seq: number): Uint8Array | null {
  let loLine = r.lineAt(0);
  if (!loLine) return null;
  let hi = r.size;
  for (;;) {
    const s = seqOf(loLine.bytes);
    if (s === null || s > seq) return null;
    if (s === seq) return loLine.bytes;
    if (hi - loLine.end <= SCAN_BYTES) break;
    const mid = loLine.end + Math.floor((hi - loLine.end) / 2);
    const { lf, next } = r.probe(mid - 1, hi);
    if (!next) {
      hi = mid;
      continue;
    }
    const t = seqOf(next.bytes);
    if (t === null) return null;
    if (t <= seq) loLine = next;
    else hi = lf + 1;
  }
  // A short stretch left: read at once, its lines one by one (a line that runs past it, by itself).
  let at = loLine.end;
  const stretch = r.bytesAt(at, hi - at + BLOCK_BYTES);
  let off = 0;
  while (at < r.size) {
    const i = stretch.indexOf(0x0a, off);
    const line = i >= 0 ? { bytes: stretch.subarray(off, i), end: at + (i - off) + 1 } : r.lineAt(at);
    if (!line) return null;
    const s = seqOf(line.bytes);
    if (s === null || s > seq) return null;
    if (s === seq) return line.bytes;
    if (i < 0) return null;
    off = i + 1;
    at = line.end;
  }
  return null;
}

/** The file whose name says it holds `seq`: the last one starting at or before it. */
function fileOf(files: TranscriptFile[], seq: number): number {
  let lo = 0;
  let hi = files.length; // first index whose firstSeq > seq
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((files[mid]!.firstSeq ?? 0) <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * The line (without its LF) of the entry with `seq` in the transcript
 * directory `dir`, as stored; null if no file holds a whole line with that
 * seq. `files` is the directory's listing (listed once for several lookups);
 * `stats` counts what was read.
 */
export function readLineBySeq(dir: string, seq: number, stats: LineReads = { reads: 0, bytes: 0 }, files: TranscriptFile[] = listTranscript(dir).files): Uint8Array | null {
  // An empty file (a crash right after creating it) holds nothing: the line is in the one before it.
  for (let i = fileOf(files, seq); i >= 0; i--) {
    const fd = openSync(files[i]!.path, "r");
    try {
      const r = new FileReader(fd, stats);
      if (r.size === 0) continue;
      return findInFile(r, seq);
    } finally {
      closeSync(fd);
    }
  }
  return null;
}

/** The lines of several entries (readLineBySeq each), listing the directory once. */
export function readLinesBySeq(dir: string, seqs: readonly number[]): (Uint8Array | null)[] {
  if (seqs.length === 0) return [];
  const files = listTranscript(dir).files;
  return seqs.map((seq) => readLineBySeq(dir, seq, undefined, files));
}
