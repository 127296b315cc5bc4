/**
 * The client's `--transcript` file (docs/TRANSCRIPT.md Appendix A): the
 * user's own view as JSON lines, appended (mode 0600 when created). How much
 * the client receives is the server's choice, so what a server can make the
 * client write is bounded twice:
 *
 * - per line: at most TRANSCRIPT_LINE_MAX bytes. The lines are `sent`, `ack`
 *   and `recv` (one per `message` or `direct`); every field of them is
 *   bounded by the protocol (PROTOCOL.md §5.0), the text at MESSAGE_TEXT_MAX
 *   bytes, which JSON at worst doubles (`"` and `\` are escaped; control
 *   characters and lone surrogates are refused on the wire). A longer line
 *   is not written.
 * - in total: the file is never made larger than `max` bytes
 *   (`chat --transcript-max`, default 1 GiB). The line that would pass it
 *   is not written, nor is anything after it.
 *
 * A write that fails (a full disk, a file that went away) stops the writing
 * as well. Every line not written is counted, the first one of each kind is
 * reported once, and `problem` says what happened, for the exit status.
 */
import { appendFileSync, statSync } from "node:fs";
import { MESSAGE_TEXT_MAX } from "../protocol/limits.ts";

/** The longest line written: a message's text escaped at worst, plus every other field at its limit (under 256 bytes). */
export const TRANSCRIPT_LINE_MAX = 2 * MESSAGE_TEXT_MAX + 512;
/**
 * The longest `receipt` line: its tlog-proof@v1 text holds the entry's line
 * (at most 8704 bytes, as a message line, in base64: 11608), at most 63
 * hashes of 45 bytes and a checkpoint note (under 1 KiB); with the
 * newlines escaped and the other members, under 16 KiB. 20 KiB leaves room.
 */
export const RECEIPT_LINE_MAX = 20 * 1024;
/** `chat --transcript-max` by default. */
export const DEFAULT_TRANSCRIPT_MAX = 1024 ** 3;

export class TranscriptFile {
  #size: number;
  #stopped: string | null = null;
  #tooLong = 0;
  #notWritten = 0;

  constructor(
    readonly path: string,
    readonly max: number,
    /** Says something to the user (once per kind of trouble). */
    readonly report: (text: string) => void,
  ) {
    this.#size = sizeOf(path);
  }

  /** Bytes in the file, as far as this writer knows. */
  get size(): number {
    return this.#size;
  }

  /** Lines that were not written (too long, past `max`, or after a failed write). */
  get notWritten(): number {
    return this.#notWritten;
  }

  /** Why the file is incomplete, or null if every line was written. */
  get problem(): string | null {
    if (this.#notWritten === 0) return null;
    const why = [this.#stopped, this.#tooLong > 0 ? `${this.#tooLong} longer than ${TRANSCRIPT_LINE_MAX} bytes` : null].filter((x) => x !== null);
    return `${this.#notWritten} line(s) were not written to the transcript ${this.path} (${why.join("; ")})`;
  }

  append(line: object): void {
    if (this.#stopped !== null) {
      this.#notWritten++;
      return;
    }
    const text = `${JSON.stringify(line)}\n`;
    const n = Buffer.byteLength(text);
    const max = (line as { kind?: unknown }).kind === "receipt" ? RECEIPT_LINE_MAX : TRANSCRIPT_LINE_MAX;
    if (n > max) {
      this.#notWritten++;
      if (this.#tooLong++ === 0) this.report(`transcript: a line of ${n} bytes is longer than ${max} and was not written`);
      return;
    }
    if (this.#size + n > this.max) {
      this.#stop(`it reached --transcript-max ${this.max} bytes`);
      return;
    }
    try {
      appendFileSync(this.path, text, { mode: 0o600 });
      this.#size += n;
    } catch (e) {
      this.#stop(`writing failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  #stop(why: string): void {
    this.#stopped = why;
    this.#notWritten++;
    this.report(`transcript ${this.path}: ${why}; nothing more is written to it`);
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0; // not there yet: the first line creates it
  }
}
