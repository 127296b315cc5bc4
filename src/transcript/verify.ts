/**
 * Verifying a transcript (docs/TRANSCRIPT.md §8, per line §8.2, classes
 * §8.3, --against §8.4 and Appendix A): every line is an entry
 * whose hash matches its content; seq rises by exactly 1 and prev is the
 * hash of the entry before, across files, from GENESIS; ts never decreases;
 * every checkpoint seals the entry before it with a valid host-key
 * signature; every server_start names the same host key. Verification stops
 * at the first problem and names its file:line and what it looks like
 * (edited, deleted, inserted, reordered, duplicated, …).
 *
 * ChainVerifier is the check itself, one line at a time with O(1) state, so
 * that export and follow verify exactly as verify does while streaming.
 * `--against` (AckChecker) then holds the server's log to what it
 * acknowledged to a client.
 */
import { existsSync, statSync } from "node:fs";
import { basename } from "node:path";
import { fromBase64 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { type Entry, GENESIS, canonical, canonicalHash, canonicalLine, entryHash, parseEntry, verifyCheckpoint } from "./format.ts";
import { Unsealer } from "./keys.ts";
import { type UnsignedRange, UnsignedTails } from "./unsigned.ts";
import { TRANSCRIPT_FILE_RE, type TranscriptFile, type TranscriptLine, listTranscript, readFileLineBatchesSync, readFileLines, readLinesBackward, readTranscriptBatches } from "./read.ts";

/** Lines read past a sequence break to tell a deletion from a reordering or an insertion. */
export const LOOKAHEAD_LINES = 16;

export type ProblemCode =
  | "empty"
  | "malformed"
  | "torn"
  | "edited"
  | "deleted"
  | "inserted"
  | "reordered"
  | "duplicated"
  | "not_genesis"
  | "time_backwards"
  | "file_name"
  | "truncated"
  | "bad_checkpoint"
  | "bad_signature"
  | "no_host_key"
  | "host_key_changed"
  | "key_seq"
  | "sealed_body"
  | "ack_malformed"
  | "ack_conflict"
  | "ack_missing"
  | "ack_user"
  | "ack_head"
  | "message_changed";

export interface Problem {
  code: ProblemCode;
  /** File name (no directory) the problem is in; line 0 when it concerns the whole file or transcript. */
  file: string;
  line: number;
  /** The seq of the entry on that line, when the line parsed as one. */
  seq?: number;
  reason: string;
}

/** The first problem found; `code` is "transcript_" + problem.code. */
export class TranscriptFailure extends SecureChatError {
  constructor(readonly problem: Problem) {
    super(`transcript_${problem.code}`, `transcript: ${where(problem)}: ${problem.reason}`);
  }
}

function where(p: Problem): string {
  return p.line > 0 ? `${p.file}:${p.line}` : p.file;
}

/** `FAIL: 2026-11-22.000000000001.jsonl:57: entry edited (…)`, as journalctl --verify says it. */
export function failLine(p: Problem): string {
  return `FAIL: ${where(p)}: ${p.reason}`;
}

export interface ChainOptions {
  /** Pin: checkpoints must be signed by, and every server_start must name, this Ed25519 key. */
  hostKey?: Uint8Array;
  /** Pin by fingerprint: the key the first server_start names must have it. */
  hostKeyFingerprint?: string;
}

export interface MidChainOptions extends ChainOptions {
  /**
   * The first line checked is not the transcript's first: its seq and prev
   * are taken as given (its form, its hash and its type's rules are still
   * checked), and a sealed body may name a key_seq before it, which this
   * check never saw.
   */
  midChain?: boolean;
}

interface Head {
  seq: number;
  hash: string;
  ts: number;
  file: string;
  line: number;
}

/** A chain break that the following lines may explain better. */
interface Suspect {
  kind: "gap" | "backwards";
  entry: Entry;
  at: TranscriptLine;
}

/**
 * The chain check, one line at a time. `check` returns the line's entry
 * once it is part of the verified chain, or a Suspect for the caller to
 * `diagnose` with the lines after it; other problems throw TranscriptFailure.
 */
export class ChainVerifier {
  #head: Head | null = null;
  #key: Uint8Array | null;
  readonly #fingerprintPin: string | null;
  /** Where the key checkpoints are checked against came from. */
  #keySource: "pinned" | number | null;
  readonly #sealKeys = new Set<number>();
  readonly #midChain: boolean;
  entries = 0;
  firstSeq: number | null = null;
  lastCheckpoint: number | null = null;
  sinceCheckpoint = 0;
  recoveries: number[] = [];
  #recoveryCount = 0;
  readonly #unsigned = new UnsignedTails();
  /** Crashed runs' stretches no checkpoint of theirs signed: the first few, and how many in all. */
  neverSigned: UnsignedRange[] = [];
  neverSignedCount = 0;
  neverSignedEntries = 0;

  constructor(opts: MidChainOptions = {}) {
    this.#midChain = opts.midChain === true;
    this.#key = opts.hostKey ?? null;
    this.#keySource = opts.hostKey ? "pinned" : null;
    this.#fingerprintPin = opts.hostKeyFingerprint ?? null;
  }

  get lastSeq(): number | null {
    return this.#head?.seq ?? null;
  }

  get head(): string | null {
    return this.#head?.hash ?? null;
  }

  /** The key checkpoints were checked against, and whether the caller pinned it. */
  get hostKey(): { key: Uint8Array | null; pinned: boolean } {
    return { key: this.#key, pinned: this.#keySource === "pinned" || this.#fingerprintPin !== null };
  }

  get recoveryCount(): number {
    return this.#recoveryCount;
  }

  check(l: TranscriptLine): Entry | Suspect {
    let seq: number | undefined;
    const at = (code: ProblemCode, reason: string): never => {
      throw new TranscriptFailure({ code, file: l.file, line: l.line, ...(seq === undefined ? {} : { seq }), reason });
    };
    if (l.defect === "torn") at("torn", `torn last line (${l.end - l.start} bytes without a final LF, as a crash mid-write leaves them)`);
    if (l.defect === "too_long") at("malformed", "malformed line (longer than 1 MiB)");
    if (l.defect === "not_utf8") at("malformed", "malformed line (not UTF-8)");
    let e: Entry;
    try {
      e = parseEntry(l.text);
    } catch (err) {
      return at("malformed", `malformed line (${isSecureChatError(err) ? err.message.replace(/^transcript: /, "") : String(err)})`);
    }
    seq = e.seq;
    const canon = canonical(e);
    if (canonicalHash(canon) !== e.hash) at("edited", "entry edited (its hash does not match its content)");
    // One spelling per entry: a line that only parses to its entry (duplicate
    // keys, other key order, spaces) could be read differently by another parser.
    if (canonicalLine(canon, e.hash) !== `${l.text}\n`) at("malformed", "malformed line (not in canonical form: key order, spacing or escapes differ from the writer's)");

    const prev = this.#head;
    const resumed = prev === null && this.#midChain;
    const expected = resumed ? e.seq : (prev?.seq ?? 0) + 1;
    const prevHash = resumed ? e.prev : (prev?.hash ?? GENESIS);
    if (e.seq > expected) return { kind: "gap", entry: e, at: l };
    if (e.seq < expected) {
      // Only reachable with a previous entry: seq >= 1 = expected otherwise.
      const p = prev!;
      if (e.hash === p.hash) at("duplicated", `duplicated entry (the same entry as ${p.file}:${p.line})`);
      if (e.seq === p.seq) at("inserted", `entry inserted or replaced (two different entries claim seq ${e.seq}: ${p.file}:${p.line} and this line)`);
      return { kind: "backwards", entry: e, at: l };
    }
    if (e.prev !== prevHash) {
      if (!prev) at("not_genesis", "the transcript does not start at the beginning (seq 1's prev is not the genesis value)");
      at("inserted", `entry inserted or replaced (prev does not match the previous entry's hash, ${prev!.file}:${prev!.line})`);
    }
    if (prev && e.ts < prev.ts) at("time_backwards", `time goes backwards (ts ${e.ts} is before the previous entry's ts ${prev.ts})`);
    if (l.line === 1) {
      const m = TRANSCRIPT_FILE_RE.exec(l.file);
      if (m && Number(m[2]) !== e.seq) at("file_name", `the file name says its first entry is seq ${Number(m[2])}, but it is seq ${e.seq}`);
    }
    this.#checkType(e, prev, at);

    this.#head = { seq: e.seq, hash: e.hash, ts: e.ts, file: l.file, line: l.line };
    this.entries++;
    this.firstSeq ??= e.seq;
    if (e.type === "checkpoint") {
      this.lastCheckpoint = e.seq;
      this.sinceCheckpoint = 0;
    } else this.sinceCheckpoint++;
    const unsigned = this.#unsigned.observe(e);
    if (unsigned) {
      this.neverSignedCount++;
      this.neverSignedEntries += unsigned.to - unsigned.from + 1;
      if (this.neverSigned.length < 5) this.neverSigned.push(unsigned);
    }
    return e;
  }

  #checkType(e: Entry, prev: Head | null, at: (code: ProblemCode, reason: string) => never): void {
    switch (e.type) {
      case "server_start": {
        let key: Uint8Array;
        try {
          key = fromBase64(e.host_key as string, 32);
        } catch {
          return at("malformed", "malformed line (server_start.host_key is not 32 bytes)");
        }
        if (this.#key === null) {
          if (this.#fingerprintPin !== null && fingerprint(key) !== this.#fingerprintPin) {
            at("host_key_changed", `host key changed (server_start names ${fingerprint(key)}; --host-key pins ${this.#fingerprintPin})`);
          }
          this.#key = key;
          this.#keySource = e.seq;
        } else if (!constantTimeEqual(key, this.#key)) {
          const expected = this.#keySource === "pinned" ? "--host-key pins" : `the first server_start (seq ${this.#keySource}) names`;
          at("host_key_changed", `host key changed (server_start names ${fingerprint(key)}; ${expected} ${fingerprint(this.#key)})`);
        }
        return;
      }
      case "checkpoint": {
        // Resumed mid-chain on a checkpoint: the entry it signs was not read, but its seq and prev are given.
        const signs = prev ?? (this.#midChain && this.entries === 0 ? { seq: e.seq - 1, hash: e.prev } : null);
        if (!signs || e.head_seq !== signs.seq || e.head !== signs.hash) {
          const names = prev && e.head_seq === prev.seq ? `seq ${e.head_seq} with another hash: that entry or one before it was changed` : `seq ${e.head_seq}`;
          at("bad_checkpoint", `bad checkpoint (it must seal the entry before it${prev ? `, seq ${prev.seq}` : ""}; it names ${names})`);
        }
        if (this.#key === null) at("no_host_key", "checkpoint before any server_start: no host key to check its signature against (pass --host-key)");
        if (!verifyCheckpoint(this.#key!, e)) at("bad_signature", `bad checkpoint signature (not made by host key ${fingerprint(this.#key!)})`);
        return;
      }
      case "seal_key":
        this.#sealKeys.add(e.seq);
        return;
      case "message":
      case "direct":
        if (e.key_seq !== undefined && !this.#sealKeys.has(e.key_seq as number) && !(this.#midChain && (e.key_seq as number) < (this.firstSeq ?? e.seq))) {
          at("key_seq", `sealed body names key_seq ${e.key_seq}, which is no seal_key entry before it`);
        }
        return;
      case "recovery":
        this.#recoveryCount++;
        if (this.recoveries.length < 5) this.recoveries.push(e.seq);
        return;
    }
  }

  /** Names a Suspect for what it is, given up to LOOKAHEAD_LINES lines that follow it. */
  diagnose(s: Suspect, following: TranscriptLine[]): Problem {
    const p = (code: ProblemCode, reason: string): Problem => ({ code, file: s.at.file, line: s.at.line, seq: s.entry.seq, reason });
    const next: Entry[] = [];
    for (const l of following) {
      if (l.defect) break;
      try {
        const e = parseEntry(l.text);
        if (entryHash(e) !== e.hash) break;
        next.push(e);
      } catch {
        break;
      }
    }
    const e = s.entry;
    const expected = (this.#head?.seq ?? 0) + 1;
    const prevHash = this.#head?.hash ?? GENESIS;
    if (s.kind === "gap") {
      const d = next.findIndex((n) => n.seq === expected && n.prev === prevHash);
      if (d === 0 && e.prev !== next[0]!.hash) {
        return p("inserted", `entry inserted (seq ${e.seq} does not belong before seq ${expected}, which follows on the next line)`);
      }
      if (d >= 0) return p("reordered", `entries reordered (expected seq ${expected}, found seq ${e.seq}; seq ${expected} comes ${d + 1} line${d > 0 ? "s" : ""} later)`);
      if (!this.#head) {
        return p("not_genesis", `the transcript does not start at the beginning (its first entry is seq ${e.seq}: earlier entries were deleted, or this is only part of a transcript)`);
      }
      const n = e.seq - expected;
      return p("deleted", `${n === 1 ? "entry" : `${n} entries`} deleted (sequence gap: expected seq ${expected}, found ${e.seq})`);
    }
    if (next.length === 0 || (next[0]!.seq === expected && next[0]!.prev === prevHash)) {
      return p("inserted", `entry inserted (seq goes backwards: seq ${e.seq} after seq ${expected - 1}${next.length > 0 ? `; the chain continues with seq ${expected} on the next line` : ""})`);
    }
    return p("reordered", `entries reordered (seq goes backwards: seq ${e.seq} after seq ${expected - 1})`);
  }
}

export interface VerifiedEntry {
  entry: Entry;
  line: TranscriptLine;
}

/**
 * The entries of `batches` (as readTranscriptBatches yields them) that
 * extend the verifier's chain, in order and in batches; at the first
 * problem, yields the entries before it, then throws TranscriptFailure
 * (after reading a few lines ahead to name it).
 */
export async function* verifiedBatches(batches: AsyncIterable<TranscriptLine[]>, v: ChainVerifier): AsyncGenerator<VerifiedEntry[]> {
  const it = batches[Symbol.asyncIterator]();
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      const lines = r.value;
      const out: VerifiedEntry[] = [];
      for (let i = 0; i < lines.length; i++) {
        let got: Entry | Suspect;
        try {
          got = v.check(lines[i]!);
        } catch (e) {
          if (out.length > 0) yield out;
          throw e;
        }
        if ("seq" in got) {
          out.push({ entry: got, line: lines[i]! });
          continue;
        }
        const following = lines.slice(i + 1, i + 1 + LOOKAHEAD_LINES);
        while (following.length < LOOKAHEAD_LINES) {
          const n = await it.next();
          if (n.done) break;
          following.push(...n.value.slice(0, LOOKAHEAD_LINES - following.length));
        }
        if (out.length > 0) yield out;
        throw new TranscriptFailure(v.diagnose(got, following));
      }
      if (out.length > 0) yield out;
    }
  } finally {
    await it.return?.();
  }
}

/**
 * verifiedBatches for a caller that cannot wait (the writer, at start):
 * checks every line, passing each entry that extends the chain to
 * `accept`; throws TranscriptFailure at the first problem.
 */
export function verifyLinesSync(batches: Generator<TranscriptLine[]>, v: ChainVerifier, accept: (e: Entry, l: TranscriptLine) => void): void {
  try {
    for (let r = batches.next(); !r.done; r = batches.next()) {
      const lines = r.value;
      for (let i = 0; i < lines.length; i++) {
        const got = v.check(lines[i]!);
        if ("seq" in got) {
          accept(got, lines[i]!);
          continue;
        }
        const following = lines.slice(i + 1, i + 1 + LOOKAHEAD_LINES);
        while (following.length < LOOKAHEAD_LINES) {
          const n = batches.next();
          if (n.done) break;
          following.push(...n.value.slice(0, LOOKAHEAD_LINES - following.length));
        }
        throw new TranscriptFailure(v.diagnose(got, following));
      }
    }
  } finally {
    batches.return(undefined);
  }
}

/** What the writer learns from checking the end of the transcript at start (docs/TRANSCRIPT.md §7). */
export interface TailReport {
  /** The last whole entry and the one before it, both verified (null if absent or not read). */
  last: Entry | null;
  beforeLast: Entry | null;
  /** The last file's bytes after its last LF, if there are any: a torn last line. */
  torn: { file: string; path: string; start: number; end: number } | null;
}

/**
 * How a canonical checkpoint line ends (§3.3: `type` sorts after every
 * other member of a checkpoint, `hash` comes last). `,"` cannot occur inside
 * a JSON string, whose `"` are escaped, so only a checkpoint's line ends so.
 * Such a line that is not a valid, signed checkpoint is where the check
 * then fails; a checkpoint spelled otherwise is never a start, and fails
 * as malformed when the check reaches it.
 */
const CHECKPOINT_END = /,"type":"checkpoint","hash":"[0-9a-f]{64}"\}$/;

/** Where checking starts: the index in `files` and the byte offset of a line. */
interface Start {
  file: number;
  offset: number;
}

/** The line before the last line that ends like a checkpoint, walking the files backwards; else the very beginning. */
function startOfTail(files: TranscriptFile[]): Start {
  for (let i = files.length - 1; i >= 0; i--) {
    for (const l of readLinesBackward(files[i]!.path)) {
      if (!CHECKPOINT_END.test(l.bytes.toString("latin1", Math.max(0, l.bytes.length - 96)))) continue;
      // One line earlier: the entry the checkpoint must sign (§4).
      for (let j = i; j >= 0; j--) {
        for (const before of readLinesBackward(files[j]!.path, j === i ? l.start : undefined)) return { file: j, offset: before.start };
      }
      return { file: 0, offset: 0 };
    }
  }
  return { file: 0, offset: 0 };
}

/** The number of LFs in the first `end` bytes of a file. */
function countLines(path: string, end: number): number {
  let n = 0;
  for (const batch of readFileLineBatchesSync(path, "", { partial: "stop" })) {
    for (const l of batch) if (l.end <= end) n++;
    if (batch.at(-1)!.end >= end) break;
  }
  return n;
}

/**
 * The writer's check at start (docs/TRANSCRIPT.md §7): from the last
 * checkpoint on, exactly as `transcript verify` checks it, with the
 * signatures pinned to the server's own host key — the entry the last
 * checkpoint signs, the checkpoint (it signs that entry, and the signature
 * verifies), and every whole line after it. Without a checkpoint, from the
 * beginning. The work is bounded by the entries since the last checkpoint,
 * not by the length of the transcript: nothing before that entry is read.
 * A torn last line is reported, not checked. Throws TranscriptFailure.
 */
export function verifyTail(files: TranscriptFile[], hostKey: Uint8Array): TailReport {
  const start = startOfTail(files);
  const run = (firstLine: number): TailReport => {
    const v = new ChainVerifier({ hostKey, midChain: start.offset > 0 || start.file > 0 });
    const report: TailReport = { last: null, beforeLast: null, torn: null };
    const lastFile = files.length - 1;
    let lastEnd = lastFile === start.file ? start.offset : 0;
    function* lines(): Generator<TranscriptLine[]> {
      for (let i = start.file; i <= lastFile; i++) {
        const f = files[i]!;
        const from = i === start.file ? { start: start.offset, firstLine } : {};
        yield* readFileLineBatchesSync(f.path, f.name, { ...from, partial: i === lastFile ? "stop" : "torn" });
      }
    }
    verifyLinesSync(lines(), v, (e, l) => {
      report.beforeLast = report.last;
      report.last = e;
      if (l.file === files[lastFile]!.name) lastEnd = l.end;
    });
    const f = files[lastFile];
    if (f) {
      const size = statSync(f.path).size;
      if (size > lastEnd) report.torn = { file: f.name, path: f.path, start: lastEnd, end: size };
    }
    return report;
  };
  if (start.offset === 0) return run(1);
  try {
    // Mid-file, line numbers are unknown without reading the file up to the
    // start; they only name a problem, so they are counted when there is one
    // (2 stands for "not the first line", which the file-name check needs).
    return run(2);
  } catch (e) {
    if (!(e instanceof TranscriptFailure)) throw e;
    return run(countLines(files[start.file]!.path, start.offset) + 1);
  }
}

/**
 * With the auditor's identity (docs/TRANSCRIPT.md §5.4): takes the file key
 * of a seal_key entry, or opens a sealed body. Returns the body's text, or
 * null (nothing sealed, or sealed to another auditor key). A wrap or body
 * that does not open is `sealed_body` at its line.
 */
export function unseal(u: Unsealer, e: Entry, at: TranscriptLine): string | null {
  const fail = (err: unknown, what: string): never => {
    throw new TranscriptFailure({ code: "sealed_body", file: at.file, line: at.line, reason: `${what} (${(err as Error).message.replace(/^transcript: /, "")})` });
  };
  if (e.type === "seal_key") {
    try {
      u.sealKey(e);
    } catch (err) {
      fail(err, "seal_key is addressed to this identity but does not open");
    }
    return null;
  }
  if (typeof e.sealed !== "string") return null;
  try {
    return u.open(e);
  } catch (err) {
    return fail(err, "sealed body does not open");
  }
}

export interface VerifyOptions extends ChainOptions {
  /** A client's `chat --transcript` file: every ack in it must be in the server's transcript. */
  against?: string;
  /** The client's user name (else inferred from the first acknowledged entry). */
  user?: string;
  /** The auditor's X25519 secret key: open every sealed body (and compare them with --against). */
  identity?: Uint8Array;
}

export interface AgainstReport {
  file: string;
  acks: number;
  user: string | null;
  /** Acks whose server entry is sealed and could not be opened, so whose text was not compared. */
  uncompared: number;
}

export interface VerifyReport {
  ok: boolean;
  problem: Problem | null;
  files: number;
  entries: number;
  firstSeq: number | null;
  lastSeq: number | null;
  head: string | null;
  /** Seq of the last checkpoint entry, and how many entries follow it. */
  lastCheckpoint: number | null;
  unsealed: number;
  /** Fingerprint of the key checkpoints were checked against; pinned = given by the caller. */
  hostKey: string | null;
  pinned: boolean;
  torn: string[];
  recoveries: { count: number; seqs: number[] };
  /**
   * Crashed runs' entries that no checkpoint of their run signed (§8.2): how
   * many such stretches, how many entries in all, and the first few.
   */
  neverSigned: { count: number; entries: number; ranges: UnsignedRange[] };
  /** With an identity: sealed bodies opened, and left sealed because they are another auditor's. */
  sealed: { opened: number; skipped: number } | null;
  against: AgainstReport | null;
}

/** Verifies a transcript directory (or one file); resolves to a report, never throws for a bad transcript. */
export async function verifyTranscript(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const listing = listTranscript(path);
  const v = new ChainVerifier(opts);
  const unsealer = opts.identity ? new Unsealer(opts.identity) : null;
  let acks: AckChecker | null = null;
  let problem: Problem | null = null;
  try {
    if (opts.against) acks = await AckChecker.load(opts.against, opts.user ?? null);
    if (listing.files.length === 0) throw new TranscriptFailure({ code: "empty", file: path, line: 0, reason: "no transcript files (YYYY-MM-DD.NNNNNNNNNNNN.jsonl) here" });
    for await (const batch of verifiedBatches(readTranscriptBatches(listing.files), v)) {
      for (const { entry, line } of batch) {
        const text = unsealer ? unseal(unsealer, entry, line) : null;
        acks?.entry(entry, line, text);
      }
    }
    if (v.entries === 0) throw new TranscriptFailure({ code: "empty", file: path, line: 0, reason: "the transcript has no entries" });
    acks?.finish();
  } catch (e) {
    if (!(e instanceof TranscriptFailure)) throw e;
    problem = e.problem;
  } finally {
    unsealer?.wipe();
  }
  const { key, pinned } = v.hostKey;
  const sealed = unsealer ? { opened: unsealer.opened, skipped: unsealer.skipped } : null;
  return {
    ok: problem === null,
    problem,
    files: listing.files.length,
    entries: v.entries,
    firstSeq: v.firstSeq,
    lastSeq: v.lastSeq,
    head: v.head,
    lastCheckpoint: v.lastCheckpoint,
    unsealed: v.sinceCheckpoint,
    hostKey: key ? fingerprint(key) : null,
    pinned,
    torn: listing.torn,
    recoveries: { count: v.recoveryCount, seqs: v.recoveries },
    neverSigned: { count: v.neverSignedCount, entries: v.neverSignedEntries, ranges: v.neverSigned },
    sealed,
    against: acks?.report() ?? null,
  };
}

type ChainState = { unsealed: number; lastCheckpoint: number | null; hostKey: string | null; pinned: boolean };

function unsignedTailLine(s: ChainState): string | null {
  if (s.unsealed === 0) return null;
  return s.lastCheckpoint === null
    ? `warning: no checkpoint: none of the ${s.unsealed} entries is sealed by a signature`
    : `warning: ${s.unsealed} entries after the last checkpoint (seq ${s.lastCheckpoint}) are not sealed by a signature`;
}

function unpinnedLine(s: ChainState): string | null {
  return s.hostKey && !s.pinned ? `note: signatures were checked against the key the transcript names (${s.hostKey}); pass --host-key to pin it` : null;
}

/** The caveats of a chain that verified: an unsigned tail, an unpinned key. */
export function chainNotes(s: ChainState): string[] {
  return [unsignedTailLine(s), unpinnedLine(s)].filter((l) => l !== null);
}

/**
 * One finding of `transcript verify`, as `--json` prints it (docs/TRANSCRIPT.md
 * §8.3): `text` is the line the text output prints for it.
 */
export type Finding =
  | { kind: "failure"; class: ProblemCode; file: string; line: number | null; seq?: number; text: string }
  | ({ kind: "warning"; text: string } & (
      | { warning: "unsigned_tail"; entries: number; last_checkpoint: number | null }
      | ({ warning: "never_signed" } & UnsignedRange)
      | { warning: "never_signed_more"; crashes: number; entries: number }
    ))
  | ({ kind: "note"; text: string } & (
      | { note: "host_key_unpinned"; host_key: string }
      | { note: "recoveries"; count: number; seqs: number[] }
      | { note: "sealed_bodies"; opened: number; skipped: number }
      | { note: "torn_files"; files: string[] }
      | { note: "against"; file: string; acks: number; user: string | null }
      | { note: "against_uncompared"; uncompared: number }
    ))
  | {
      kind: "summary";
      result: "pass" | "fail";
      class: ProblemCode | null;
      files: number;
      entries: number;
      first_seq: number | null;
      last_seq: number | null;
      head: string | null;
      last_checkpoint: number | null;
      unsigned: number;
      host_key: string | null;
      pinned: boolean;
      recoveries: number;
      never_signed: { crashes: number; entries: number };
      text: string | null;
    };

/** The report's findings in the order the text output prints them (the summary is its PASS line, or the line after FAIL). */
function findings(r: VerifyReport): Finding[] {
  const out: Finding[] = [];
  const summary = (text: string | null): Finding => ({
    kind: "summary",
    result: r.problem ? "fail" : "pass",
    class: r.problem?.code ?? null,
    files: r.files,
    entries: r.entries,
    first_seq: r.firstSeq,
    last_seq: r.lastSeq,
    head: r.head,
    last_checkpoint: r.lastCheckpoint,
    unsigned: r.unsealed,
    host_key: r.hostKey,
    pinned: r.pinned,
    recoveries: r.recoveries.count,
    never_signed: { crashes: r.neverSigned.count, entries: r.neverSigned.entries },
    text,
  });
  if (r.problem) {
    const p = r.problem;
    out.push({ kind: "failure", class: p.code, file: p.file, line: p.line > 0 ? p.line : null, ...(p.seq === undefined ? {} : { seq: p.seq }), text: failLine(p) });
    const n = `${r.entries} ${r.entries === 1 ? "entry" : "entries"}`;
    const client = p.code.startsWith("ack_") || p.code === "message_changed";
    out.push(summary(r.entries === 0 ? null : client ? `the server transcript verified (${n}) up to where this was found` : `the ${n} before it verified`));
    return out;
  }
  const files = `${r.files} file${r.files === 1 ? "" : "s"}`;
  out.push(summary(`PASS: ${r.entries} entries in ${files}; ${r.lastCheckpoint === null ? "no checkpoint" : `last checkpoint at seq ${r.lastCheckpoint}`}`));
  const tail = unsignedTailLine(r);
  if (tail !== null) out.push({ kind: "warning", warning: "unsigned_tail", entries: r.unsealed, last_checkpoint: r.lastCheckpoint, text: tail });
  const unpinned = unpinnedLine(r);
  if (unpinned !== null) out.push({ kind: "note", note: "host_key_unpinned", host_key: r.hostKey!, text: unpinned });
  const rec = r.recoveries;
  if (rec.count > 0) {
    const text = `note: ${rec.count} crash recover${rec.count === 1 ? "y" : "ies"} recorded (seq ${rec.seqs.join(", ")}${rec.count > rec.seqs.length ? ", …" : ""})`;
    out.push({ kind: "note", note: "recoveries", count: rec.count, seqs: rec.seqs, text });
  }
  for (const range of r.neverSigned.ranges) out.push({ kind: "warning", warning: "never_signed", ...range, text: neverSignedLine(range) });
  const more = neverSignedMoreLine(r.neverSigned);
  if (more !== null) out.push({ kind: "warning", warning: "never_signed_more", crashes: r.neverSigned.count - r.neverSigned.ranges.length, entries: r.neverSigned.entries, text: more });
  if (r.sealed) {
    const { opened, skipped } = r.sealed;
    const text = `note: ${opened} sealed bod${opened === 1 ? "y" : "ies"} opened with --identity${skipped > 0 ? `; ${skipped} sealed to another auditor key, not checked` : ""}`;
    out.push({ kind: "note", note: "sealed_bodies", opened, skipped, text });
  }
  if (r.torn.length > 0) {
    const text = `note: ${r.torn.length} .torn file${r.torn.length === 1 ? "" : "s"} (bytes cut off by crash recovery, not part of the chain): ${r.torn.join(", ")}`;
    out.push({ kind: "note", note: "torn_files", files: r.torn, text });
  }
  if (r.against) {
    const a = r.against;
    const text = `against ${a.file}: ${a.acks} acknowledged message${a.acks === 1 ? "" : "s"} found in the server transcript${a.user ? ` (user ${a.user})` : ""}`;
    out.push({ kind: "note", note: "against", file: a.file, acks: a.acks, user: a.user, text });
    if (a.uncompared > 0) out.push({ kind: "note", note: "against_uncompared", uncompared: a.uncompared, text: `note: ${a.uncompared} of them are sealed; their text was not compared (pass --identity)` });
  }
  return out;
}

/** What `transcript verify` prints: PASS and its warnings and notes, or FAIL and how far it got. */
export function reportLines(r: VerifyReport): string[] {
  return findings(r).flatMap((f) => (f.text === null ? [] : [f.text]));
}

/** What `transcript verify --json` prints: one object per finding, in the text output's order, then the summary. */
export function reportObjects(r: VerifyReport): Finding[] {
  const all = findings(r);
  return [...all.filter((f) => f.kind !== "summary"), ...all.filter((f) => f.kind === "summary")];
}

/**
 * "warning: 3 entries, seq 41–43 (1 message), written before the crash at
 * seq 44, were never signed: …", one line per crash, the first few.
 */
function neverSignedLines(n: VerifyReport["neverSigned"]): string[] {
  const out = n.ranges.map(neverSignedLine);
  const more = neverSignedMoreLine(n);
  if (more !== null) out.push(more);
  return out;
}

function neverSignedLine(r: UnsignedRange): string {
  const count = r.to - r.from + 1;
  const what = count === 1 ? `1 entry, seq ${r.from}` : `${count} entries, seq ${r.from}–${r.to}`;
  const messages = r.messages === 0 ? "" : ` (${r.messages} message${r.messages === 1 ? "" : "s"})`;
  const rest = count === 1 ? "was never signed: the server did not acknowledge it, and it rests" : "were never signed: the server acknowledged none of them, and they rest";
  return `warning: ${what}${messages}, written before the crash at seq ${r.crash}, ${rest} on the files alone`;
}

function neverSignedMoreLine(n: VerifyReport["neverSigned"]): string | null {
  const more = n.count - n.ranges.length;
  return more > 0 ? `warning: … and ${more} more crash${more === 1 ? "" : "es"} with never-signed entries (${n.entries} such entries in all)` : null;
}

interface Ack {
  line: number;
  raw: string;
  room?: string;
  to?: string;
  seq: number;
  text: string;
  action: boolean;
  tseq?: number;
  head?: string;
  found: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * `verify --against`: the acks a client recorded (`chat --transcript`,
 * {"kind":"ack","room"|"to",…,"seq","text"}) are the server's promises.
 * Each must be a message/direct entry of the server's transcript, from the
 * same user, with the same text, and, when the ack carries tseq/head, the
 * entry at tseq must have that hash.
 */
class AckChecker {
  readonly #file: string;
  readonly #acks = new Map<string, Ack>();
  readonly #byTseq = new Map<number, Ack>();
  #user: string | null;
  readonly #userGiven: boolean;
  #userFrom: string | null = null;
  #uncompared = 0;
  #lastSeq = 0;

  private constructor(file: string, user: string | null) {
    this.#file = file;
    this.#user = user;
    this.#userGiven = user !== null;
  }

  static async load(path: string, user: string | null): Promise<AckChecker> {
    if (!existsSync(path)) throw new SecureChatError("transcript_missing", `transcript: ${path} does not exist`);
    const c = new AckChecker(basename(path), user);
    for await (const l of readFileLines(path, basename(path))) c.#add(l);
    return c;
  }

  #fail(code: ProblemCode, line: number, reason: string): never {
    throw new TranscriptFailure({ code, file: this.#file, line, reason });
  }

  #add(l: TranscriptLine): void {
    const bad = (why: string): never => this.#fail("ack_malformed", l.line, `malformed client transcript line (${why})`);
    if (l.defect) bad(l.defect === "torn" ? "no final LF" : l.defect === "too_long" ? "longer than 1 MiB" : "not UTF-8");
    if (l.text === "") return;
    let v: unknown;
    try {
      v = JSON.parse(l.text);
    } catch {
      bad("not JSON");
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) bad("not a JSON object");
    const o = v as Record<string, unknown>;
    if (o.kind !== "ack") return;
    const posInt = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;
    if (!posInt(o.seq)) bad("ack.seq must be a positive integer");
    if (typeof o.text !== "string") bad("ack.text must be a string");
    if ((typeof o.room === "string") === (typeof o.to === "string")) bad("an ack names exactly one of room and to");
    if (o.action !== undefined && typeof o.action !== "boolean") bad("ack.action must be a boolean");
    if ((o.tseq === undefined) !== (o.head === undefined)) bad("ack.tseq and ack.head go together");
    if (o.tseq !== undefined && (!posInt(o.tseq) || typeof o.head !== "string" || !HEX64.test(o.head))) bad("ack.tseq/head must be a seq and 64 hex digits");
    const ack: Ack = {
      line: l.line,
      raw: l.text,
      seq: o.seq as number,
      text: o.text as string,
      action: o.action === true,
      found: false,
      ...(typeof o.room === "string" ? { room: o.room } : { to: o.to as string }),
      ...(o.tseq !== undefined ? { tseq: o.tseq as number, head: o.head as string } : {}),
    };
    const key = ackKey(ack.room, ack.seq);
    const seen = this.#acks.get(key);
    if (seen) {
      if (seen.raw === ack.raw) return;
      this.#fail("ack_conflict", l.line, `the server acknowledged two messages as ${describe(ack)} (lines ${seen.line} and ${l.line})`);
    }
    this.#acks.set(key, ack);
    if (ack.tseq !== undefined) {
      const other = this.#byTseq.get(ack.tseq);
      if (other) this.#fail("ack_conflict", l.line, `the server acknowledged two messages as transcript entry ${ack.tseq} (lines ${other.line} and ${l.line})`);
      this.#byTseq.set(ack.tseq, ack);
    }
  }

  /** Called with each verified server entry, in order, and the text of its sealed body if it was opened. */
  entry(e: Entry, at: TranscriptLine, opened: string | null): void {
    this.#lastSeq = e.seq;
    const byT = this.#byTseq.get(e.seq);
    if (byT && byT.head !== e.hash) {
      this.#fail("ack_head", byT.line, `the server acknowledged ${describe(byT)} as transcript entry ${e.seq} with hash ${byT.head!.slice(0, 16)}…, but ${at.file}:${at.line} has another hash — the server log was rewritten`);
    }
    if (e.type !== "message" && e.type !== "direct") return;
    const ack = this.#acks.get(e.type === "message" ? ackKey(e.room as string, e.room_seq as number) : ackKey(undefined, e.dm_seq as number));
    if (!ack) return;
    ack.found = true;
    const there = `${at.file}:${at.line}`;
    if (this.#user === null) {
      this.#user = e.from as string;
      this.#userFrom = there;
    } else if (e.from !== this.#user) {
      const whose = this.#userGiven ? "--user" : `the first acknowledged entry (${this.#userFrom})`;
      this.#fail("ack_user", ack.line, `acknowledged message is from another user (${describe(ack)} is from ${e.from} at ${there}; ${whose} says ${this.#user})`);
    }
    const changed = (what: string): never => this.#fail("message_changed", ack.line, `message changed (${describe(ack)}: ${what} differs at ${there})`);
    if (ack.to !== undefined && e.to !== ack.to) changed("the recipient");
    if ((e.action === true) !== ack.action) changed("the /me flag");
    const text = typeof e.text === "string" ? e.text : opened;
    if (text === null) this.#uncompared++;
    else if (text !== ack.text) changed("the text");
  }

  /** After the last entry: every ack must have been found. */
  finish(): void {
    let first: Ack | null = null;
    let why = "";
    for (const a of this.#acks.values()) {
      if (!a.found && (!first || a.line < first.line)) {
        first = a;
        why = `acknowledged message not in the server transcript (${describe(a)})`;
      }
      if (a.found && a.tseq !== undefined && a.tseq > this.#lastSeq && (!first || a.line < first.line)) {
        first = a;
        why = `acknowledged transcript entry ${a.tseq} (${describe(a)}) is not in the server transcript`;
      }
    }
    if (first) this.#fail("ack_missing", first.line, `${why} — the server log was truncated or rolled back`);
  }

  report(): AgainstReport {
    return { file: this.#file, acks: this.#acks.size, user: this.#user, uncompared: this.#uncompared };
  }
}

function ackKey(room: string | undefined, seq: number): string {
  return room === undefined ? `dm\u0000${seq}` : `room\u0000${room}\u0000${seq}`;
}

function describe(a: Ack): string {
  return a.room !== undefined ? `room ${a.room} seq ${a.seq}` : `direct message to ${a.to} dm seq ${a.seq}`;
}
