/**
 * Exporting and following a transcript (docs/TRANSCRIPT.md §8; opening
 * sealed bodies, §5.4): entries as JSON lines, exactly as stored, verified
 * as they are read by the same ChainVerifier as `verify`. Output stops at the first problem, so what was
 * written before it is a verified prefix. With the auditor's identity,
 * sealed bodies are opened: such an entry is written with `text` and
 * `"decrypted":true` instead of `sealed`/`key_seq` (its hash then no longer
 * matches; it is a reading copy, not a transcript line).
 *
 * Output lines are for terminals and other tools as much as for files, so
 * the characters src/text.ts calls unsafe — DEL, C1, bidi controls,
 * zero-width and other format characters, U+2028/U+2029 — which the
 * canonical form leaves raw, are written as `\uXXXX` escapes (`jsonText`).
 * The values, and so each entry's hash, are unchanged; only such a line's
 * spelling differs from the stored one (docs/TRANSCRIPT.md §3.5).
 *
 * Each line gets a `time` member, `ts` in ISO 8601 UTC, unless `stored`
 * asks for the lines exactly as stored (docs/TRANSCRIPT.md §3.5).
 *
 * follow is export that does not stop at the end: it polls the last file
 * for new complete lines and the directory for the next file (rotation).
 */
import { existsSync, statSync } from "node:fs";
import { SecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { jsonText } from "../text.ts";
import { type Entry, entryLine } from "./format.ts";
import { Unsealer } from "./keys.ts";
import { type TranscriptFile, type TranscriptLine, listTranscript, readFileLineBatches, readTranscriptBatches } from "./read.ts";
import { type ChainOptions, ChainVerifier, TranscriptFailure } from "./chain.ts";
import { CheckpointWatch, type LineSource, directorySource, unseal, verifiedBatches } from "./verify.ts";

/** How often follow looks for new lines and files. */
export const FOLLOW_POLL_MS = 200;
/** Output is written in batches of about this many bytes (and at every poll). */
const OUTPUT_BATCH_BYTES = 64 * 1024;

export interface Filter {
  /** Only entries with ts >= since (epoch ms). */
  since?: number;
  /** Only entries with ts < until (epoch ms). */
  until?: number;
  /** Only join/leave/message/room_change/edit/delete entries of this room. */
  room?: string;
  /** Only entries whose user, from or to is this user, and administrators' actions on it. */
  user?: string;
}

export interface ExportOptions extends ChainOptions, Filter {
  /** The auditor's X25519 secret key: open sealed bodies. */
  identity?: Uint8Array;
  /** Write each line as stored, without the `time` member (docs/TRANSCRIPT.md §3.5). */
  stored?: boolean;
}

/** Where output lines go; `closed` set means the reader has gone (EPIPE): stop quietly. */
export interface Sink {
  write(line: string): void | Promise<void>;
  flush?(): void | Promise<void>;
  readonly closed?: boolean;
}

export interface ExportSummary {
  /** Entries verified, and how many of them were written. */
  entries: number;
  written: number;
  lastCheckpoint: number | null;
  unsealed: number;
  hostKey: string | null;
  pinned: boolean;
  /** Sealed entries written as stored because their file key is wrapped to another auditor key. */
  leftSealed: number;
}

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?(Z|[+-]\d{2}:\d{2})?$/;
const CLOCK_RE = /^(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:\d{2})?$/;
const AGO_RE = /^(\d{1,9})(s|m|h|d|w)$/;
const DAY_MS = 86_400_000;
const AGO_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS };

/** Minutes east of UTC of `Z`, `+02:00` or `-05:30` (0 without one); null if out of range. */
function offsetMinutes(zone: string | undefined): number | null {
  if (zone === undefined || zone === "Z") return 0;
  const h = Number(zone.slice(1, 3));
  const m = Number(zone.slice(4, 6));
  if (h > 23 || m > 59) return null;
  return (zone[0] === "-" ? -1 : 1) * (h * 60 + m);
}

/** 00:00 UTC of the day `t` falls on. */
const utcMidnight = (t: number): number => t - (((t % DAY_MS) + DAY_MS) % DAY_MS);

/**
 * `--since` / `--until`, against `now` (epoch ms):
 *   - ISO 8601: `2026-11-22`, `2026-11-22T10:30`, `2026-11-22T10:30:00.250+01:00`;
 *   - a time of today: `08:00`, `08:00:30`, `08:00+01:00`;
 *   - a while ago: `90s`, `30m`, `2h`, `7d`, `2w`;
 *   - `now`, `today` (00:00), `yesterday` (00:00 the day before);
 *   - epoch milliseconds (digits only).
 * Without an offset, times and days are UTC, as `ts`, `time` and transcript
 * file names are: `today` is the current UTC day.
 */
export function parseTime(input: string, now: number = Date.now()): number {
  const s = input.trim();
  if (/^\d{1,16}$/.test(s)) return Number(s);
  if (s === "now") return now;
  if (s === "today") return utcMidnight(now);
  if (s === "yesterday") return utcMidnight(now) - DAY_MS;
  const ago = AGO_RE.exec(s);
  if (ago) {
    const t = now - Number(ago[1]) * AGO_MS[ago[2]!]!;
    if (t >= 0) return t;
  }
  const clock = CLOCK_RE.exec(s);
  if (clock) {
    const [, h, mi, sec = "00", zone] = clock;
    const off = offsetMinutes(zone);
    if (off !== null && Number(h) < 24 && Number(mi) < 60 && Number(sec) < 60) {
      // "Today" is the day it is now where the offset says.
      const day = utcMidnight(now + off * 60_000);
      return day + ((Number(h) * 60 + Number(mi) - off) * 60 + Number(sec)) * 1000;
    }
  }
  const m = TIME_RE.exec(s);
  if (m) {
    const [, y, mo, d, h = "00", mi = "00", sec = "00", frac = "0", zone = "Z"] = m;
    const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${sec}.${frac.padEnd(3, "0")}${zone}`);
    const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
    // Date.parse rolls 2026-02-30 over to March; a date that does not exist is a typo.
    if (!Number.isNaN(ms) && check.getUTCMonth() === Number(mo) - 1 && check.getUTCDate() === Number(d) && Number(h) < 24 && Number(mi) < 60 && Number(sec) < 60) return ms;
  }
  throw new SecureChatError(
    "time_invalid",
    `time: "${input}" is not a time: use 2026-11-22, 2026-11-22T10:30 (UTC unless an offset is given), 08:00 (today, UTC), 2h or 7d (ago), today, yesterday, or epoch ms`,
  );
}

/** The entries `--room` selects: a room's joins, leaves, messages, room changes, and the edits and deletes of its messages. */
const ROOM_TYPES = new Set(["join", "leave", "message", "room_change", "edit", "delete"]);

export function matches(e: Entry, f: Filter): boolean {
  if (f.since !== undefined && e.ts < f.since) return false;
  if (f.until !== undefined && e.ts >= f.until) return false;
  if (f.room !== undefined && !(ROOM_TYPES.has(e.type) && e.room === f.room)) return false;
  // A room_change's `target` is the user acted on (PROTOCOL.md §7.9), as is an admin_action's (§7.10).
  if (f.user !== undefined && e.user !== f.user && e.from !== f.user && e.to !== f.user && !((e.type === "room_change" || e.type === "admin_action") && e.target === f.user)) return false;
  return true;
}

/** Turns verified entries into output lines: the filter, and opening sealed bodies. */
class Renderer {
  readonly #filter: Filter;
  readonly #unsealer: Unsealer | null;
  readonly #stored: boolean;
  /** Written as stored: sealed to another auditor key. */
  leftSealed = 0;

  constructor(opts: ExportOptions) {
    this.#filter = { since: opts.since, until: opts.until, room: opts.room, user: opts.user };
    this.#unsealer = opts.identity ? new Unsealer(opts.identity) : null;
    this.#stored = opts.stored === true;
  }

  /** The line to write for an entry, or null when the filter drops it. */
  render(e: Entry, at: TranscriptLine): string | null {
    // Unsealed even when filtered out: seal_key entries carry the file keys.
    const text = this.#unsealer ? unseal(this.#unsealer, e, at) : null;
    if (!matches(e, this.#filter)) return null;
    if (text === null && this.#unsealer && typeof e.sealed === "string") this.leftSealed++;
    if (text === null && this.#stored) return `${jsonText(at.text)}\n`;
    let out: Entry = e;
    if (text !== null) {
      const { sealed: _s, key_seq: _k, ...rest } = e;
      out = { ...rest, text, decrypted: true } as Entry;
    }
    // entryLine puts `time` in its place in canonical member order (§3.2).
    if (!this.#stored) out = { ...out, time: new Date(e.ts).toISOString() };
    // entryLine ends with its LF, which jsonText would escape.
    return `${jsonText(entryLine(out).slice(0, -1))}\n`;
  }

  wipe(): void {
    this.#unsealer?.wipe();
  }
}

function summary(v: ChainVerifier, r: Renderer, written: number): ExportSummary {
  const { key, pinned } = v.hostKey;
  return {
    entries: v.entries,
    written,
    lastCheckpoint: v.lastCheckpoint,
    unsealed: v.sinceCheckpoint,
    hostKey: key ? fingerprint(key) : null,
    pinned,
    leftSealed: r.leftSealed,
  };
}

/**
 * Writes the entries of a transcript (directory or file) that match the
 * filter to `sink`, verifying the whole chain as it goes. Throws
 * TranscriptFailure at the first problem; lines before it are already written.
 */
export async function exportTranscript(path: string, opts: ExportOptions, sink: Sink): Promise<ExportSummary> {
  return exportSource(directorySource(path), opts, sink);
}

/** exportTranscript over any LineSource (a directory's files, a database's rows). */
export async function exportSource(src: LineSource, opts: ExportOptions, sink: Sink): Promise<ExportSummary> {
  if (src.files.length === 0) throw new TranscriptFailure({ code: "empty", file: src.where, line: 0, reason: src.empty });
  const v = new ChainVerifier(opts);
  const r = new Renderer(opts);
  let written = 0;
  try {
    read: for await (const batch of verifiedBatches(src.batches(), v)) {
      for (const { entry, line } of batch) {
        const out = r.render(entry, line);
        if (out === null) continue;
        await sink.write(out);
        written++;
        if (sink.closed) break read;
      }
    }
  } finally {
    r.wipe();
    await sink.flush?.();
  }
  return summary(v, r, written);
}

export interface FollowOptions extends ExportOptions {
  /** Verify what is there already without writing it; write only entries added later. */
  fromEnd?: boolean;
  pollMs?: number;
  signal?: AbortSignal;
  /** Called once, when what was there at the start has been read and verified. */
  onCaughtUp?: (s: ExportSummary) => void;
  /** A checkpoint note saved earlier (§8.5): the log must extend it, else TranscriptFailure (rolled_back, forked, checkpoint_foreign). */
  checkpoint?: string;
  /** With `checkpoint`: each newer tree checkpoint that extends it, once caught up (the newest of those read before, then each new one). */
  onCheckpoint?: (note: string, size: number) => void;
}

/**
 * What follow does whatever it reads from: verifies and writes the entries
 * of each batch it is given (`take`), and, caught up, says so once, hands
 * on the newest checkpoint that extends the saved one and waits a poll
 * (`idle`).
 */
class Follower {
  readonly watch: CheckpointWatch | null;
  readonly v: ChainVerifier;
  readonly r: Renderer;
  readonly #opts: FollowOptions;
  readonly #sink: Sink;
  readonly #aborted: Promise<void>;
  #writing: boolean;
  #caughtUp = false;
  written = 0;

  constructor(opts: FollowOptions, sink: Sink) {
    this.watch = opts.checkpoint === undefined ? null : new CheckpointWatch(opts.checkpoint);
    this.v = new ChainVerifier({ ...opts, ...(this.watch ? { watchSize: this.watch.watchSize } : {}) });
    this.r = new Renderer(opts);
    this.#opts = opts;
    this.#sink = sink;
    this.#writing = !opts.fromEnd;
    this.#aborted = new Promise<void>((resolve) => opts.signal?.addEventListener("abort", () => resolve(), { once: true }));
  }

  stopped(): boolean {
    return this.#opts.signal?.aborted === true || this.#sink.closed === true;
  }

  /** Verifies (and writes) the lines of `batches`; `read(line)` after each one verified. */
  async take(batches: AsyncIterable<TranscriptLine[]>, read: (l: TranscriptLine) => void): Promise<void> {
    for await (const batch of verifiedBatches(batches, this.v)) {
      for (const { entry, line } of batch) {
        read(line);
        this.watch?.entry(this.v, entry);
        // Rendered even when not written: seal_key entries carry the file keys.
        const out = this.r.render(entry, line);
        if (this.#writing && out !== null) {
          await this.#sink.write(out);
          this.written++;
        }
        if (this.stopped()) return;
      }
    }
  }

  /** Everything there now was read (`last`: the file it ended in): say so once, then wait a poll. */
  async idle(last: string): Promise<void> {
    if (!this.#caughtUp) {
      this.#caughtUp = true;
      this.watch?.caughtUp(this.v, last);
      this.#opts.onCaughtUp?.(this.summary());
    }
    const newest = this.watch?.take();
    if (newest) this.#opts.onCheckpoint?.(newest, this.watch!.size);
    this.#writing = true;
    await this.#sink.flush?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#aborted, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#opts.pollMs ?? FOLLOW_POLL_MS)))]);
    clearTimeout(timer);
  }

  summary(): ExportSummary {
    return summary(this.v, this.r, this.written);
  }

  async finish(): Promise<void> {
    this.r.wipe();
    await this.#sink.flush?.();
  }
}

/**
 * Like `tail -f` over a transcript directory: writes the entries there
 * (unless fromEnd), then polls for new complete lines in the current file
 * and for the next file. A partial last line is waited on, not written.
 * Returns when `signal` aborts or the sink closes; throws TranscriptFailure
 * at the first problem.
 */
export async function followTranscript(dir: string, opts: FollowOptions, sink: Sink): Promise<ExportSummary> {
  const f = new Follower(opts, sink);
  let current: TranscriptFile | null = null;
  let offset = 0;
  let nextLine = 1;
  const lost = (reason: string): never => {
    throw new TranscriptFailure({ code: "truncated", file: current!.name, line: 0, reason });
  };

  /** Verifies (and writes) the lines of the current file from `offset`. */
  const drain = async (partial: "torn" | "stop"): Promise<void> => {
    const file = current!;
    if (!existsSync(file.path)) lost("the file was removed while being followed");
    const size = statSync(file.path).size;
    if (size < offset) lost(`the file shrank while being followed (from at least ${offset} bytes to ${size})`);
    if (size === offset) return;
    await f.take(readFileLineBatches(file.path, file.name, { start: offset, firstLine: nextLine, partial }), (line) => {
      offset = line.end;
      nextLine = line.line + 1;
    });
  };

  try {
    while (!f.stopped()) {
      const files = existsSync(dir) ? listTranscript(dir).files : [];
      if (current === null && files.length > 0) current = files[0]!;
      if (current !== null) {
        await drain("stop");
        if (f.stopped()) break;
        const i = files.findIndex((x) => x.name === current!.name);
        if (i < 0) lost("the file was removed while being followed");
        const nextFile = files[i + 1];
        if (nextFile) {
          // The writer finishes a file before it starts the next: what is left now is whole lines, or a torn one.
          await drain("torn");
          current = nextFile;
          offset = 0;
          nextLine = 1;
          continue;
        }
      }
      await f.idle(current?.name ?? dir);
    }
  } finally {
    await f.finish();
  }
  return f.summary();
}

/**
 * A log that is not a directory (a database's rows, pgread.ts) as follow
 * reads it: the lines after the first `read` ones; and how many there are
 * now, to tell a log that lost lines already read.
 */
export interface FollowSource {
  where: string;
  linesAfter(read: number): AsyncIterable<TranscriptLine[]>;
  count(): Promise<number>;
}

/** followTranscript over a FollowSource: polls for lines after those read. */
export async function followSource(src: FollowSource, opts: FollowOptions, sink: Sink): Promise<ExportSummary> {
  const f = new Follower(opts, sink);
  let read = 0;
  let last = src.where;
  try {
    while (!f.stopped()) {
      const n = await src.count();
      if (n < read) throw new TranscriptFailure({ code: "truncated", file: last, line: 0, reason: `the log lost lines while being followed (from at least ${read} to ${n})` });
      const before = read;
      if (n > read) {
        await f.take(src.linesAfter(read), (line) => {
          read++;
          last = line.file;
        });
        if (f.stopped()) break;
      }
      if (read === before) await f.idle(last);
    }
  } finally {
    await f.finish();
  }
  return f.summary();
}

/**
 * stdout as a Sink: lines are batched, the stream's back-pressure is
 * respected (so memory stays bounded when the reader is slow), and a reader
 * that goes away (EPIPE, `| head`) closes the sink instead of failing.
 */
export class StdoutSink implements Sink {
  #buf: string[] = [];
  #bytes = 0;
  #closed = false;
  readonly #stream: NodeJS.WriteStream;
  readonly #onError = (e: Error): void => {
    if ((e as NodeJS.ErrnoException).code === "EPIPE") this.#closed = true;
    else this.#error = e;
  };
  #error: Error | null = null;

  constructor(stream: NodeJS.WriteStream = process.stdout) {
    this.#stream = stream;
    stream.on("error", this.#onError);
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(line: string): void | Promise<void> {
    this.#buf.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= OUTPUT_BATCH_BYTES) return this.flush();
  }

  async flush(): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#buf.length === 0 || this.#closed) return;
    const chunk = this.#buf.join("");
    this.#buf = [];
    this.#bytes = 0;
    if (this.#stream.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.#stream.off("drain", done);
        this.#stream.off("error", done);
        this.#stream.off("close", done);
        resolve();
      };
      this.#stream.on("drain", done);
      this.#stream.on("error", done);
      this.#stream.on("close", done);
    });
  }

  dispose(): void {
    this.#stream.off("error", this.#onError);
  }
}
