/**
 * Verifying a transcript's files (docs/TRANSCRIPT.md §8): the lines of every
 * file, read in batches, fed to the chain check (src/transcript/chain.ts),
 * a few lines read ahead at a break to name it; sealed bodies opened with
 * the auditor's identity; and, with `--against`, each entry handed to the
 * client's acks (src/transcript/against.ts). verifyTranscript is
 * `transcript verify`; verifyTail is the writer's check at start;
 * verifiedBatches is what export and follow read through.
 */
import { statSync } from "node:fs";
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import { fingerprint } from "../fingerprint.ts";
import { AckChecker, type AgainstReport } from "./against.ts";
import { type ChainOptions, ChainVerifier, type Problem, type Suspect, TranscriptFailure } from "./chain.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { type Entry, checkpointNote, parseEntry, verifyCheckpointNote } from "./format.ts";
import { noteCosignatures } from "./cosignature.ts";
import { type Checkpoint, type NoteVerifier, noteKeyId, openNote, parseCheckpoint, parseNote } from "./note.ts";
import { leafHash } from "./merkle.ts";
import { Unsealer } from "./keys.ts";
import { verifyTreeOnly } from "./treeverify.ts";
import type { UnsignedRange } from "./unsigned.ts";
import { type TranscriptFile, type TranscriptLine, type TranscriptListing, listTranscript, readFileLineBatchesSync, readLinesBackward, readTranscriptBatches } from "./read.ts";

/** Lines read past a sequence break to tell a deletion from a reordering or an insertion. */
export const LOOKAHEAD_LINES = 16;

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
  /**
   * The last checkpoint that signs a tree root (§4.1): the tree size and root
   * it signs; and the leaf hashes of the lines from there on (§3.6), for the
   * writer to check its stored hashes against.
   */
  tree: { size: number; root: Uint8Array; note: string; tail: Uint8Array[] } | null;
}

/**
 * How a canonical checkpoint line ends (§3.3: `type` sorts after every
 * other member of a checkpoint, `hash` comes last). `,"` cannot occur inside
 * a JSON string, whose `"` are escaped, so only a checkpoint's line ends so.
 * Such a line that is not a valid, signed checkpoint is where the check
 * then fails; a checkpoint spelled otherwise is never a start, and fails
 * as malformed when the check reaches it.
 */
export const CHECKPOINT_END = /,"type":"checkpoint","hash":"[0-9a-f]{64}"\}$/;

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

/**
 * The last checkpoint entry that signs a tree root (TRANSCRIPT.md §4.1),
 * walking the files backwards; null if there is none. Its note is signed:
 * what reads it checks the signature, not this.
 */
export function lastTreeCheckpoint(files: TranscriptFile[]): Entry | null {
  for (const { entry } of treeCheckpointsBackward(files)) return entry;
  return null;
}

/**
 * The checkpoint entries that sign a tree root, last first, with where
 * each line starts (an index in `files`, a byte offset); read back only as
 * far as the caller iterates. Their signatures are not checked here.
 */
function* treeCheckpointsBackward(files: TranscriptFile[]): Generator<{ entry: Entry; file: number; start: number }> {
  for (let i = files.length - 1; i >= 0; i--) {
    for (const l of readLinesBackward(files[i]!.path)) {
      if (!CHECKPOINT_END.test(l.bytes.toString("latin1", Math.max(0, l.bytes.length - 96)))) continue;
      let e: Entry;
      try {
        e = parseEntry(l.bytes.toString("utf8"));
      } catch {
        continue;
      }
      if (typeof e.root === "string") yield { entry: e, file: i, start: l.start };
    }
  }
}

/**
 * The last checkpoint that signs the root of at most `maxSize` lines, if
 * its note signature verifies under `hostKey` (null otherwise, or if there
 * is none), and where its line starts: its line is leaf `head_seq`.
 */
export function treeCheckpointAtMost(files: TranscriptFile[], maxSize: number, hostKey: Uint8Array): { entry: Entry; file: number; start: number } | null {
  for (const c of treeCheckpointsBackward(files)) {
    if ((c.entry.head_seq as number) > maxSize) continue;
    return verifyCheckpointNote(hostKey, c.entry) ? c : null;
  }
  return null;
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
    const report: TailReport = { last: null, beforeLast: null, torn: null, tree: null };
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
      if (e.type === "checkpoint" && typeof e.root === "string") report.tree = { size: e.head_seq as number, root: fromBase64(e.root, 32), note: checkpointNote(e)!, tail: [] };
      report.tree?.tail.push(leafHash(utf8(l.text)));
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
  /**
   * A checkpoint note saved earlier (TRANSCRIPT.md §4.1, §8.5): it must be
   * signed by the log's host key, and the log must still extend it — its
   * first `size` lines must have the root it signs.
   */
  checkpoint?: string;
  /** With `checkpoint`: it must carry valid cosignatures of at least `quorum` of these witnesses (§4.5). */
  witnesses?: { witnesses: readonly NoteVerifier[]; quorum: number };
  /**
   * Only what makes it a transparency log (§8.6): every line's leaf, the
   * root at every checkpoint, every checkpoint's signatures. Not with
   * `against` or `identity`.
   */
  treeOnly?: boolean;
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
  /** The Merkle tree (TRANSCRIPT.md §3.6) of the lines that verified: its size and root in base64. */
  tree: { size: number; root: string } | null;
  /** With a saved checkpoint that the log extends: its size and origin. */
  saved: { size: number; origin: string } | null;
  /** With `treeOnly`: how many checkpoints were checked (§8.6); the chain was not, so `head` is null. */
  treeOnly: { checkpoints: number } | null;
}

/** What a saved checkpoint is compared with: the tree the check built, and the key it checked signatures with. */
interface CheckedTree {
  treeSize: number;
  watched: { root: Uint8Array; file: string; line: number } | null;
  hostKey: { key: Uint8Array | null };
}

/** A saved checkpoint (§8.5): its body, and the note to check its signature once the log's key is known. */
interface SavedCheckpoint extends Checkpoint {
  note: string;
}

function parseSavedCheckpoint(note: string): SavedCheckpoint {
  return { ...parseCheckpoint(parseNote(note).text), note };
}

/**
 * After the last line: the saved checkpoint is the log's own, the log
 * reached its size, and its first lines then had the root it signs.
 */
function checkSaved(v: CheckedTree, saved: SavedCheckpoint, lastFile: string, witnesses?: VerifyOptions["witnesses"]): void {
  ownCheckpoint(v, saved);
  if (witnesses) witnessedCheckpoint(saved, witnesses);
  if (v.treeSize < saved.size || !v.watched) {
    throw new TranscriptFailure({
      code: "rolled_back",
      file: lastFile,
      line: 0,
      reason: `this log has ${v.treeSize} lines, but the saved checkpoint signed ${saved.size}: it no longer contains what it showed (rolled back or truncated)`,
    });
  }
  if (!constantTimeEqual(v.watched.root, saved.root)) {
    throw new TranscriptFailure({
      code: "forked",
      file: v.watched.file,
      line: v.watched.line,
      reason: `this log's first ${saved.size} lines, up to this one, are not the ones the saved checkpoint signed: the log was rewritten, or this is another branch of it (a fork)`,
    });
  }
}

/** The saved checkpoint carries valid cosignatures of at least `quorum` of the witnesses (§4.5). */
function witnessedCheckpoint(saved: SavedCheckpoint, w: NonNullable<VerifyOptions["witnesses"]>): void {
  let count = 0;
  let why = "";
  try {
    count = noteCosignatures(saved.note, w.witnesses).length;
  } catch (e) {
    why = `: ${(e as Error).message.replace(/^cosignature: /, "")}`;
  }
  if (why !== "" || count < w.quorum) {
    throw new TranscriptFailure({
      code: "checkpoint_unwitnessed",
      file: "--checkpoint",
      line: 0,
      reason: `the saved checkpoint carries ${why ? "a cosignature that does not verify" : `valid cosignatures of ${count}`} of the ${w.witnesses.length} witness(es) given, and ${w.quorum} are required${why}`,
    });
  }
}

/**
 * `follow --checkpoint` (TRANSCRIPT.md §8.5): the saved checkpoint checked
 * as `verify --checkpoint` checks it — once the log reaches its size (the
 * root of its first `size` lines), or, if it is caught up short of that, as
 * rolled back — and then the newest tree checkpoint the log signs after it.
 * Every such checkpoint extends the saved one: the verifier has checked its
 * root against the tree of the very lines whose prefix matched.
 */
export class CheckpointWatch {
  readonly #saved: SavedCheckpoint;
  #extended = false;
  #size: number;
  #newest: string | null = null;

  constructor(note: string) {
    this.#saved = parseSavedCheckpoint(note);
    this.#size = this.#saved.size;
  }

  /** The size the verifier must report the root at (ChainVerifier watchSize). */
  get watchSize(): number {
    return this.#saved.size;
  }

  /** The size of the newest checkpoint known to extend the saved one. */
  get size(): number {
    return this.#size;
  }

  /** After each entry the verifier accepted: throws `checkpoint_foreign` or `forked`. */
  entry(v: ChainVerifier, e: Entry): void {
    if (!this.#extended && v.watched) {
      checkSaved(v, this.#saved, v.watched.file);
      this.#extended = true;
    }
    if (this.#extended && e.type === "checkpoint" && typeof e.root === "string" && (e.head_seq as number) > this.#size) {
      this.#newest = checkpointNote(e);
      this.#size = e.head_seq as number;
    }
  }

  /** Everything there was read: a log still short of the saved size was rolled back (throws `rolled_back`). */
  caughtUp(v: ChainVerifier, lastFile: string): void {
    if (this.#extended) return;
    checkSaved(v, this.#saved, lastFile);
    this.#extended = true;
  }

  /** The newest checkpoint that extends the saved one and was not taken yet. */
  take(): string | null {
    const n = this.#newest;
    this.#newest = null;
    return n;
  }
}

/** The saved checkpoint is signed by the log's host key (pinned, or named by its server_start). */
function ownCheckpoint(v: CheckedTree, saved: SavedCheckpoint): void {
  const key = v.hostKey.key;
  const ok = key !== null && (() => {
    try {
      openNote(saved.note, { name: saved.origin, keyId: noteKeyId(saved.origin, key), publicKey: key });
      return true;
    } catch {
      return false;
    }
  })();
  if (!ok) {
    throw new TranscriptFailure({ code: "checkpoint_foreign", file: "--checkpoint", line: 0, reason: `the saved checkpoint is not signed by this log's host key${key ? ` (${fingerprint(key)})` : ""}: it is another log's` });
  }
}

/**
 * Where a verifier reads lines from: a directory's files, or a database's
 * rows (pgread.ts) — the same lines under the same file names.
 */
export interface LineSource {
  /** What a problem with the whole source is reported against. */
  where: string;
  /** The file names, in chain order. */
  files: string[];
  /** Crash-recovery leftovers beside the files (`*.torn`). */
  torn: string[];
  /** Why there is nothing to verify, when `files` is empty. */
  empty: string;
  batches(): AsyncIterable<TranscriptLine[]>;
}

/** A transcript directory (or one file) as a LineSource. */
export function directorySource(path: string): LineSource {
  const listing = listTranscript(path);
  return {
    where: path,
    files: listing.files.map((f) => f.name),
    torn: listing.torn,
    empty: "no transcript files (YYYY-MM-DD.NNNNNNNNNNNN.jsonl) here",
    batches: () => readTranscriptBatches(listing.files),
  };
}

/** Verifies a transcript directory (or one file); resolves to a report, never throws for a bad transcript. */
export async function verifyTranscript(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const listing = listTranscript(path);
  // A malformed saved checkpoint is the caller's mistake (the command checks it first): it throws.
  const saved = opts.checkpoint === undefined ? null : parseSavedCheckpoint(opts.checkpoint);
  if (opts.treeOnly) {
    if (opts.against !== undefined || opts.identity !== undefined) throw new Error("verify: tree-only checks neither acks nor sealed bodies");
    return treeOnlyReport(path, listing, opts, saved);
  }
  return verifySource(directorySource(path), opts, saved);
}

/** verifyTranscript over any LineSource (not tree-only). */
export async function verifySource(src: LineSource, opts: VerifyOptions = {}, saved = opts.checkpoint === undefined ? null : parseSavedCheckpoint(opts.checkpoint)): Promise<VerifyReport> {
  const v = new ChainVerifier({ ...opts, ...(saved ? { watchSize: saved.size } : {}) });
  const unsealer = opts.identity ? new Unsealer(opts.identity) : null;
  let acks: AckChecker | null = null;
  let problem: Problem | null = null;
  try {
    if (opts.against) acks = await AckChecker.load(opts.against, opts.user ?? null);
    if (src.files.length === 0) throw new TranscriptFailure({ code: "empty", file: src.where, line: 0, reason: src.empty });
    for await (const batch of verifiedBatches(src.batches(), v)) {
      for (const { entry, line } of batch) {
        const text = unsealer ? unseal(unsealer, entry, line) : null;
        acks?.entry(entry, line, text);
      }
    }
    if (v.entries === 0) throw new TranscriptFailure({ code: "empty", file: src.where, line: 0, reason: "the transcript has no entries" });
    acks?.finish();
    if (saved) checkSaved(v, saved, src.files.at(-1)!, opts.witnesses);
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
    files: src.files.length,
    entries: v.entries,
    firstSeq: v.firstSeq,
    lastSeq: v.lastSeq,
    head: v.head,
    lastCheckpoint: v.lastCheckpoint,
    unsealed: v.sinceCheckpoint,
    hostKey: key ? fingerprint(key) : null,
    pinned,
    torn: src.torn,
    recoveries: { count: v.recoveryCount, seqs: v.recoveries },
    neverSigned: { count: v.neverSignedCount, entries: v.neverSignedEntries, ranges: v.neverSigned },
    sealed,
    against: acks?.report() ?? null,
    tree: v.tree && v.tree.size > 0 ? { size: v.tree.size, root: toBase64(v.tree.root) } : null,
    saved: saved && problem === null ? { size: saved.size, origin: saved.origin } : null,
    treeOnly: null,
  };
}

/** verifyTranscript with `treeOnly` (§8.6). */
function treeOnlyReport(path: string, listing: TranscriptListing, opts: VerifyOptions, saved: SavedCheckpoint | null): VerifyReport {
  const r = verifyTreeOnly(path, { ...opts, ...(saved ? { watchSize: saved.size } : {}) });
  let problem = r.problem;
  if (problem === null && saved) {
    try {
      checkSaved({ treeSize: r.tree.size, watched: r.watched, hostKey: r.hostKey }, saved, listing.files.at(-1)!.name, opts.witnesses);
    } catch (e) {
      if (!(e instanceof TranscriptFailure)) throw e;
      problem = e.problem;
    }
  }
  const { key, pinned } = r.hostKey;
  return {
    ok: problem === null,
    problem,
    files: r.files,
    entries: r.lines,
    firstSeq: r.lines > 0 ? 1 : null,
    lastSeq: r.lines > 0 ? r.lines : null,
    head: null,
    lastCheckpoint: r.lastCheckpoint,
    unsealed: r.sinceCheckpoint,
    hostKey: key ? fingerprint(key) : null,
    pinned,
    torn: r.torn,
    recoveries: { count: 0, seqs: [] },
    neverSigned: { count: 0, entries: 0, ranges: [] },
    sealed: null,
    against: null,
    tree: r.tree.size > 0 ? { size: r.tree.size, root: toBase64(r.tree.root) } : null,
    saved: saved && problem === null ? { size: saved.size, origin: saved.origin } : null,
    treeOnly: { checkpoints: r.checkpoints },
  };
}
