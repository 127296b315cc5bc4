/**
 * Reading transcript files (docs/TRANSCRIPT.md §2.1, §2.2, §3.5 rules 1–2):
 * which files make up a transcript and in what order, and their lines,
 * streamed in fixed-size chunks so that a transcript of any length is read
 * in bounded memory.
 * This file knows bytes and lines only; what a line means is format.ts's
 * business and whether the lines chain is verify.ts's.
 *
 *   DIR/YYYY-MM-DD.NNNNNNNNNNNN.jsonl   N = seq of the file's first entry; files are ordered by N
 *   DIR/*.torn                          bytes cut from a torn last line by crash recovery (not read)
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { SecureChatError } from "../errors.ts";

/** Bytes read from a file at a time. */
export const CHUNK_BYTES = 64 * 1024;
/**
 * The longest line a reader accepts. A message is at most a few KiB
 * (protocol/limits.ts); a longer line is damage, and is reported without
 * being held in memory.
 */
export const MAX_LINE_BYTES = 1024 * 1024;

/**
 * Bytes this process has read from transcript files through this module:
 * what a server start reads is checked against it (it must not depend on
 * the transcript's length), by counting, not by timing.
 */
export const transcriptReads = { bytes: 0 };

export const TRANSCRIPT_FILE_RE = /^(\d{4}-\d{2}-\d{2})\.(\d{12})\.jsonl$/;
const TORN_RE = /\.torn$/;

export interface TranscriptFile {
  /** The file's name, as problems are reported: `2026-11-22.000000000001.jsonl`. */
  name: string;
  path: string;
  /** The seq its name says its first entry has; null for a file given by path with another name. */
  firstSeq: number | null;
}

export interface TranscriptListing {
  dir: string;
  files: TranscriptFile[];
  /** `*.torn` files beside them (crash-recovery leftovers, never read as entries). */
  torn: string[];
}

/**
 * The files of a transcript directory in chain order, or a single file.
 * Throws `transcript_missing` when `path` does not exist.
 */
export function listTranscript(path: string): TranscriptListing {
  if (!existsSync(path)) throw new SecureChatError("transcript_missing", `transcript: ${path} does not exist`);
  if (!statSync(path).isDirectory()) {
    const name = basename(path);
    const m = TRANSCRIPT_FILE_RE.exec(name);
    return { dir: dirname(path), files: [{ name, path, firstSeq: m ? Number(m[2]) : null }], torn: [] };
  }
  const names = readdirSync(path);
  const files = names
    .flatMap((name) => {
      const m = TRANSCRIPT_FILE_RE.exec(name);
      return m ? [{ name, path: join(path, name), firstSeq: Number(m[2]) }] : [];
    })
    .sort((a, b) => a.firstSeq - b.firstSeq || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { dir: path, files, torn: names.filter((n) => TORN_RE.test(n)).sort() };
}

export interface TranscriptLine {
  file: string;
  /** 1-based line number within the file. */
  line: number;
  /** The line without its LF; "" when `defect` is too_long or not_utf8. */
  text: string;
  /**
   * The same line as the bytes read (UTF-8, without its LF), when it has no
   * defect: what its leaf hash is of (§3.6). A view of the reader's buffer,
   * valid only until the next batch is read.
   */
  bytes?: Uint8Array;
  /** Byte offsets of the line's first byte and of the byte after its LF. */
  start: number;
  end: number;
  /**
   * Why this line cannot be an entry, seen while reading:
   *   torn       the file ends without an LF after it (a torn/incomplete last line)
   *   too_long   longer than MAX_LINE_BYTES
   *   not_utf8   not valid UTF-8
   */
  defect?: "torn" | "too_long" | "not_utf8";
}

export interface ReadOptions {
  /** Byte offset to start at (the start of a line). */
  start?: number;
  /** The line number of the line at `start`. */
  firstLine?: number;
  /** What to do with a last line that has no LF: yield it as `torn` (default), or stop before it. */
  partial?: "torn" | "stop";
}

/** The lines of one file, read CHUNK_BYTES at a time. */
export async function* readFileLines(path: string, name: string, opts: ReadOptions = {}): AsyncGenerator<TranscriptLine> {
  for await (const batch of readFileLineBatches(path, name, opts)) yield* batch;
}

/** The lines of every file of a listing, in chain order. */
export async function* readTranscriptLines(files: TranscriptFile[]): AsyncGenerator<TranscriptLine> {
  for (const f of files) yield* readFileLines(f.path, f.name);
}

/** readTranscriptLines a chunk's worth at a time: one await per 64 KiB instead of per line. */
export async function* readTranscriptBatches(files: TranscriptFile[]): AsyncGenerator<TranscriptLine[]> {
  for (const f of files) yield* readFileLineBatches(f.path, f.name);
}

/**
 * Splits a file into lines as it is read into `buf` a chunk at a time from
 * `pos`, for the readers below (async and sync alike). A line that spans
 * chunks is gathered (at most MAX_LINE_BYTES); a longer one is reported as
 * too_long without being held.
 */
class LineSplitter {
  /** Where each chunk is read (the lines' `bytes` are views of it until the next). */
  readonly buf = Buffer.allocUnsafe(CHUNK_BYTES);
  /** The file offset the next chunk is read from. */
  pos: number;
  /** True once a read returned nothing: the file is done. */
  done = false;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  readonly #name: string;
  readonly #partial: ReadOptions["partial"];
  #lineNo: number;
  #lineStart: number;
  #parts: Buffer[] = [];
  #partLen = 0;
  #tooLong = false;

  constructor(name: string, opts: ReadOptions) {
    this.#name = name;
    this.#partial = opts.partial;
    this.pos = this.#lineStart = opts.start ?? 0;
    this.#lineNo = opts.firstLine ?? 1;
  }

  #finish(last: Buffer, end: number, defect?: "torn"): TranscriptLine {
    let text = "";
    let bad: TranscriptLine["defect"] = this.#tooLong ? "too_long" : undefined;
    let bytes: Buffer | undefined;
    if (!bad) {
      bytes = this.#partLen === 0 ? last : Buffer.concat([...this.#parts, last]);
      try {
        text = this.#decoder.decode(bytes);
      } catch {
        bad = "not_utf8";
      }
    }
    const l: TranscriptLine = { file: this.#name, line: this.#lineNo++, text, start: this.#lineStart, end };
    if (defect ?? bad) l.defect = defect ?? bad;
    else l.bytes = bytes;
    this.#lineStart = end;
    this.#parts = [];
    this.#partLen = 0;
    this.#tooLong = false;
    return l;
  }

  /**
   * The lines completed by the `n` bytes just read into `buf` at `pos`; when
   * `n` is 0, the end of the file: the unfinished last line as `torn`
   * (unless `partial: "stop"`), and `done`.
   */
  take(n: number): TranscriptLine[] {
    const batch: TranscriptLine[] = [];
    if (n === 0) {
      this.done = true;
      if (this.pos > this.#lineStart && this.#partial !== "stop") batch.push(this.#finish(Buffer.alloc(0), this.pos, "torn"));
      return batch;
    }
    const chunk = this.buf.subarray(0, n);
    let i = 0;
    while (i < n) {
      const nl = chunk.indexOf(0x0a, i);
      const stop = nl < 0 ? n : nl;
      if (!this.#tooLong && this.#partLen + (stop - i) > MAX_LINE_BYTES) {
        this.#tooLong = true;
        this.#parts = [];
        this.#partLen = 0;
      }
      if (nl < 0) {
        if (!this.#tooLong) {
          // The buffer is reused: keep a copy of the unfinished line.
          this.#parts.push(Buffer.from(chunk.subarray(i, stop)));
          this.#partLen += stop - i;
        }
        break;
      }
      batch.push(this.#finish(this.#tooLong ? Buffer.alloc(0) : chunk.subarray(i, stop), this.pos + nl + 1));
      i = nl + 1;
    }
    this.pos += n;
    return batch;
  }
}

/**
 * The lines of one file, one batch per chunk read. Memory stays below
 * CHUNK_BYTES + MAX_LINE_BYTES (plus the batch) whatever the file's size.
 */
export async function* readFileLineBatches(path: string, name: string, opts: ReadOptions = {}): AsyncGenerator<TranscriptLine[]> {
  const fh = await open(path, "r");
  try {
    for (const s = new LineSplitter(name, opts); !s.done; ) {
      const n = (await fh.read(s.buf, 0, CHUNK_BYTES, s.pos)).bytesRead;
      transcriptReads.bytes += n;
      const batch = s.take(n);
      if (batch.length > 0) yield batch;
    }
  } finally {
    await fh.close();
  }
}

/** readFileLineBatches for a caller that cannot wait (the writer, at start). */
export function* readFileLineBatchesSync(path: string, name: string, opts: ReadOptions = {}): Generator<TranscriptLine[]> {
  const fd = openSync(path, "r");
  try {
    for (const s = new LineSplitter(name, opts); !s.done; ) {
      const n = readSync(fd, s.buf, 0, CHUNK_BYTES, s.pos);
      transcriptReads.bytes += n;
      const batch = s.take(n);
      if (batch.length > 0) yield batch;
    }
  } finally {
    closeSync(fd);
  }
}

/** A whole line found by readLinesBackward: its bytes without the LF, and its offsets (`end` is after the LF). */
export interface RawLine {
  start: number;
  end: number;
  bytes: Buffer;
}

/**
 * The whole lines of a file that end at or before byte `end` (default: the
 * file's size), last first, read CHUNK_BYTES at a time from the end: what
 * comes after the last LF (a torn line) is not a line, and a line longer
 * than MAX_LINE_BYTES is skipped. Reads only as far back as the caller
 * iterates.
 */
export function* readLinesBackward(path: string, end?: number): Generator<RawLine> {
  const fd = openSync(path, "r");
  try {
    let pos = end ?? fstatSync(fd).size;
    // Bytes from `pos` up to the end of the line being gathered (`lineEnd`, after its LF).
    let carry: Buffer = Buffer.alloc(0);
    let lineEnd = -1;
    let tooLong = false;
    while (pos > 0) {
      const n = Math.min(CHUNK_BYTES, pos);
      const chunk = Buffer.allocUnsafe(n);
      transcriptReads.bytes += readSync(fd, chunk, 0, n, pos - n);
      pos -= n;
      let stop = n;
      for (let nl = chunk.lastIndexOf(0x0a, n - 1); nl >= 0; nl = nl > 0 ? chunk.lastIndexOf(0x0a, nl - 1) : -1) {
        if (lineEnd >= 0 && !tooLong && lineEnd - (pos + nl + 1) - 1 <= MAX_LINE_BYTES) {
          const bytes = Buffer.concat([chunk.subarray(nl + 1, stop), carry]);
          yield { start: pos + nl + 1, end: lineEnd, bytes: bytes.subarray(0, bytes.length - 1) };
        }
        carry = Buffer.alloc(0);
        tooLong = false;
        lineEnd = pos + nl + 1;
        stop = nl + 1;
      }
      if (lineEnd >= 0 && !tooLong) {
        carry = Buffer.concat([chunk.subarray(0, stop), carry]);
        if (carry.length > MAX_LINE_BYTES + 1) {
          tooLong = true;
          carry = Buffer.alloc(0);
        }
      }
    }
    if (lineEnd > 0 && !tooLong && lineEnd - 1 <= MAX_LINE_BYTES) yield { start: 0, end: lineEnd, bytes: carry.subarray(0, carry.length - 1) };
  } finally {
    closeSync(fd);
  }
}

/**
 * The whole lines of every file of a listing, in chain order, as bytes
 * without their LF, read synchronously CHUNK_BYTES at a time (for a server
 * starting up, which has nothing else to do, and decodes only the lines it
 * needs). A line longer than MAX_LINE_BYTES, or without an LF at the end of
 * its file, is skipped. A yielded Buffer is only valid until the next one.
 * `start`: the byte offset of a line in the first file to begin at.
 */
export function* readTranscriptLinesSync(files: TranscriptFile[], start = 0): Generator<Buffer> {
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  for (const [i, f] of files.entries()) {
    const fd = openSync(f.path, "r");
    let pos = i === 0 ? start : 0;
    const next = (): number => {
      const n = readSync(fd, buf, 0, CHUNK_BYTES, pos);
      pos += n;
      transcriptReads.bytes += n;
      return n;
    };
    try {
      // The start of a line that spans chunks; once too long, only its end is looked for.
      let carry: Buffer[] = [];
      let carried = 0;
      let tooLong = false;
      for (let n = next(); n > 0; n = next()) {
        const chunk = buf.subarray(0, n);
        let i = 0;
        for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, i)) {
          const skip = tooLong || carried + (nl - i) > MAX_LINE_BYTES;
          const line = skip ? null : carried === 0 ? chunk.subarray(i, nl) : Buffer.concat([...carry, chunk.subarray(i, nl)]);
          carry = [];
          carried = 0;
          tooLong = false;
          i = nl + 1;
          if (line) yield line;
        }
        if (tooLong || carried + (n - i) > MAX_LINE_BYTES) {
          tooLong = true;
          carry = [];
          carried = 0;
        } else if (i < n) {
          carry.push(Buffer.from(chunk.subarray(i)));
          carried += n - i;
        }
      }
    } finally {
      closeSync(fd);
    }
  }
}
