/**
 * The chain check of a transcript (docs/TRANSCRIPT.md §8, per line §8.2,
 * classes §8.3): every line is an entry whose hash matches its content; seq
 * rises by exactly 1 and prev is the hash of the entry before, across files,
 * from GENESIS; ts never decreases; every checkpoint seals the entry before
 * it with a valid host-key signature; every server_start names the same host
 * key. The check stops at the first problem and names its file:line and
 * what it looks like (edited, deleted, inserted, reordered, duplicated, …).
 *
 * ChainVerifier is the check itself, one line at a time with O(1) state, so
 * that export and follow verify exactly as verify does while streaming
 * (src/transcript/verify.ts feeds it lines).
 */
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { EDIT_REACH, type Entry, GENESIS, canonical, canonicalHash, canonicalLine, canonicalLineHash, entryHash, isCanonicalLine, parseEntry, verifyCheckpoint, verifyCheckpointNote } from "./format.ts";
import { Frontier, leafHash } from "./merkle.ts";
import { type UnsignedRange, UnsignedTails } from "./unsigned.ts";
import { TRANSCRIPT_FILE_RE, type TranscriptLine } from "./read.ts";

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
  | "bad_edit"
  | "sealed_body"
  | "ack_malformed"
  | "ack_conflict"
  | "ack_missing"
  | "ack_user"
  | "ack_head"
  | "message_changed"
  | "checkpoint_foreign"
  | "checkpoint_unwitnessed"
  | "forked"
  | "rolled_back";

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
  /** Keep the tree's root when it reaches this many lines (a saved checkpoint's size), with where. */
  watchSize?: number;
}

interface Head {
  seq: number;
  hash: string;
  ts: number;
  file: string;
  line: number;
}

/** A chain break that the following lines may explain better. */
export interface Suspect {
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
  /**
   * The room and direct messages of the last EDIT_REACH entries, by room
   * and room seq or by dm seq: what an edit or delete may name (TRANSCRIPT.md
   * §2.4, §8.2).
   */
  readonly #messages = new Map<string, { seq: number; from: string; to?: string; deleted: boolean }>();
  /**
   * The keys of #messages in the order they were remembered, and the seq
   * each was remembered at, from `#oldest` on: what to forget next. (A Map
   * iterated from its start after many deletes there skips every deleted
   * slot until it is rehashed: evicting by iterating it made a long
   * transcript's check quadratic.)
   */
  #rememberedKeys: string[] = [];
  #rememberedSeqs: number[] = [];
  #oldest = 0;
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
  /** The Merkle tree over the lines checked (TRANSCRIPT.md §3.6); none when checking starts mid-chain. */
  readonly #tree: Frontier | null;
  readonly #watchSize: number;

  constructor(opts: MidChainOptions = {}) {
    this.#midChain = opts.midChain === true;
    this.#tree = this.#midChain ? null : new Frontier();
    this.#watchSize = opts.watchSize ?? -1;
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

  /** How many lines the tree holds (0 mid-chain, where there is none). */
  get treeSize(): number {
    return this.#tree?.size ?? 0;
  }

  /** The root when the tree had `watchSize` lines, and the line that made it so. */
  watched: { root: Uint8Array; file: string; line: number } | null = null;

  /** The tree of the lines that verified so far: its size and root (null mid-chain). */
  get tree(): { size: number; root: Uint8Array } | null {
    return this.#tree ? { size: this.#tree.size, root: this.#tree.root() } : null;
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
    if (l.bytes !== undefined && isCanonicalLine(e, l.text)) {
      // The usual case, checked without serializing the entry again: the hash of its canonical form is that of the bytes read.
      if (canonicalLineHash(l.bytes) !== e.hash) at("edited", "entry edited (its hash does not match its content)");
    } else {
      const canon = canonical(e);
      if (canonicalHash(canon) !== e.hash) at("edited", "entry edited (its hash does not match its content)");
      // One spelling per entry: a line that only parses to its entry (duplicate
      // keys, other key order, spaces) could be read differently by another parser.
      if (canonicalLine(canon, e.hash) !== `${l.text}\n`) at("malformed", "malformed line (not in canonical form: key order, spacing or escapes differ from the writer's)");
    }

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
    this.#tree?.push(leafHash(l.bytes ?? utf8(l.text)));
    if (this.#tree && this.#tree.size === this.#watchSize) this.watched = { root: this.#tree.root(), file: l.file, line: l.line };
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
        if (e.root !== undefined) {
          // The tree (§3.6, §4.1): its note signature, and, when the tree was built from the first line, its root.
          if (!verifyCheckpointNote(this.#key!, e)) at("bad_signature", `bad checkpoint note signature (not made by host key ${fingerprint(this.#key!)} as ${e.origin})`);
          if (this.#tree && this.#tree.size === e.head_seq && toBase64(this.#tree.root()) !== e.root) {
            at("bad_checkpoint", `bad checkpoint (the tree root it signs is not the root of the ${e.head_seq} lines before it)`);
          }
        }
        return;
      }
      case "seal_key":
        this.#sealKeys.add(e.seq);
        return;
      case "edit":
      case "delete":
      case "message":
      case "direct":
        if (e.type === "edit" || e.type === "delete") this.#checkEdit(e, at);
        if (e.type === "message" || e.type === "direct") this.#rememberMessage(e);
        // an edit's text is sealed as a message's is
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

  #rememberMessage(e: Entry): void {
    const key = messageKey(e);
    this.#messages.set(key, { seq: e.seq, from: e.from as string, ...(e.type === "direct" ? { to: e.to as string } : {}), deleted: false });
    const keys = this.#rememberedKeys;
    const seqs = this.#rememberedSeqs;
    keys.push(key);
    seqs.push(e.seq);
    while (this.#oldest < seqs.length && e.seq - seqs[this.#oldest]! > EDIT_REACH) {
      const k = keys[this.#oldest]!;
      const seq = seqs[this.#oldest++]!;
      // Remembered again since (the same room and room seq twice): that later one stays.
      if (this.#messages.get(k)?.seq === seq) this.#messages.delete(k);
    }
    if (this.#oldest > 4096 && this.#oldest * 2 > seqs.length) {
      this.#rememberedKeys = keys.slice(this.#oldest);
      this.#rememberedSeqs = seqs.slice(this.#oldest);
      this.#oldest = 0;
    }
  }

  /**
   * An edit or delete names, by `ref`, an earlier `message` (or `direct`)
   * entry at most EDIT_REACH entries back, of the same room and room seq
   * (or dm seq and recipient), by the same user, and not deleted
   * (TRANSCRIPT.md §8.2). Resumed mid-chain, one that names an entry before
   * the first checked is taken as given.
   */
  #checkEdit(e: Entry, at: (code: ProblemCode, reason: string) => never): void {
    const ref = e.ref as number;
    const what = e.dm_seq !== undefined ? `${e.type} of direct message ${e.dm_seq as number}` : `${e.type} of ${e.room as string} message ${e.room_seq as number}`;
    if (ref >= e.seq) at("bad_edit", `${what} names seq ${ref}, which is not before it`);
    if (e.seq - ref > EDIT_REACH) at("bad_edit", `${what} names seq ${ref}, more than ${EDIT_REACH} entries back`);
    if (this.#midChain && ref < (this.firstSeq ?? e.seq)) return;
    const m = this.#messages.get(messageKey(e));
    if (!m || m.seq !== ref || m.to !== e.to) at("bad_edit", `${what} names seq ${ref}, which is not that message's entry`);
    if (m!.from !== e.user) at("bad_edit", `${what} is by ${e.user as string}, but the message is ${m!.from}'s`);
    if (m!.deleted) at("bad_edit", `${what}: the message was deleted before`);
    if (e.type === "delete") m!.deleted = true;
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

/** A message's key among those an edit may name: "room seq" (no room name has a space) or " dm seq". */
function messageKey(e: Entry): string {
  return e.dm_seq !== undefined ? ` dm ${e.dm_seq as number}` : `${e.room as string} ${e.room_seq as number}`;
}
