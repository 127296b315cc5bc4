/**
 * `transcript verify --tree-only` (docs/TRANSCRIPT.md §8.6): the check of a
 * transparency log, and no more — every line's leaf hash, the Merkle root
 * at every checkpoint, every checkpoint's signatures — reading the files as
 * bytes and parsing only the lines that can be checkpoints. What it leaves
 * out (each entry's form, the hash chain, what entries mean) is the full
 * verify's, which stays the default.
 *
 * A line is parsed when it is the first line, or holds the bytes
 * `checkpoint` or a backslash: a checkpoint's line holds `checkpoint`
 * literally unless it is written with an escape, and every escape holds a
 * backslash. A parsed line must be an entry in canonical form whose hash is
 * right; any other line is only a leaf.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { toBase64 } from "../bytes.ts";
import { sha256Of } from "../crypto/index.ts";
import { isSecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { type ChainOptions, type Problem, type ProblemCode, TranscriptFailure } from "./chain.ts";
import { type Entry, canonicalLineHash, isCanonicalLine, parseEntry, verifyCheckpoint, verifyCheckpointNote } from "./format.ts";
import { Frontier } from "./merkle.ts";
import { MAX_LINE_BYTES, type TranscriptFile, listTranscript } from "./read.ts";

/** Bytes read at a time: larger than read.ts's chunks, as nothing here is held per line. */
const READ_BYTES = 1024 * 1024;
const CHECKPOINT = Buffer.from("checkpoint");
const BACKSLASH = 0x5c;
const LEAF_PREFIX = Buffer.from([0x00]);

export interface TreeOnlyResult {
  problem: Problem | null;
  files: number;
  /** Lines read as leaves before the problem, if any. */
  lines: number;
  tree: { size: number; root: Uint8Array };
  /** The seq of the last checkpoint, and how many lines follow it. */
  lastCheckpoint: number | null;
  sinceCheckpoint: number;
  checkpoints: number;
  hostKey: { key: Uint8Array | null; pinned: boolean };
  torn: string[];
  /** The root when the tree had `watchSize` lines, and the line that made it so. */
  watched: { root: Uint8Array; file: string; line: number } | null;
}

class TreeCheck {
  readonly tree = new Frontier();
  key: Uint8Array | null;
  readonly pinned: boolean;
  readonly #fingerprintPin: string | null;
  lastCheckpoint: number | null = null;
  sinceCheckpoint = 0;
  checkpoints = 0;
  watched: TreeOnlyResult["watched"] = null;
  readonly #watchSize: number;
  /** The previous line, for the hash a checkpoint says it signs. */
  #previous: Uint8Array | null = null;
  #decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  constructor(opts: ChainOptions, watchSize: number) {
    this.key = opts.hostKey ?? null;
    this.#fingerprintPin = opts.hostKeyFingerprint ?? null;
    this.pinned = opts.hostKey !== undefined || this.#fingerprintPin !== null;
    this.#watchSize = watchSize;
  }

  /** One whole line as 0x00 ‖ its bytes (without its LF); `parse` when it may be a checkpoint. */
  line(leaf: Uint8Array, parse: boolean, file: string, lineNo: number): void {
    if (parse || this.tree.size === 0) this.#entry(leaf.subarray(1), file, lineNo);
    else this.sinceCheckpoint++;
    this.tree.push(sha256Of(leaf));
    if (this.tree.size === this.#watchSize) this.watched = { root: this.tree.root(), file, line: lineNo };
    this.#previous = leaf;
  }

  /** Before `buf` is read into again: the previous line, if it is there, is kept as a copy. */
  release(buf: Buffer): void {
    if (this.#previous !== null && this.#previous.buffer === buf.buffer) this.#previous = new Uint8Array(this.#previous);
  }

  #entry(bytes: Uint8Array, file: string, lineNo: number): void {
    let seq: number | undefined;
    const at = (code: ProblemCode, reason: string): never => {
      throw new TranscriptFailure({ code, file, line: lineNo, ...(seq === undefined ? {} : { seq }), reason });
    };
    let e: Entry;
    let text: string;
    try {
      text = this.#decoder.decode(bytes);
    } catch {
      return at("malformed", "malformed line (not UTF-8)");
    }
    try {
      e = parseEntry(text);
    } catch (err) {
      return at("malformed", `malformed line (${isSecureChatError(err) ? err.message.replace(/^transcript: /, "") : String(err)})`);
    }
    seq = e.seq;
    if (!isCanonicalLine(e, text)) at("malformed", "malformed line (not in canonical form: key order, spacing or escapes differ from the writer's)");
    if (canonicalLineHash(bytes) !== e.hash) at("edited", "entry edited (its hash does not match its content)");
    const size = this.tree.size;
    if (size === 0 && e.type === "server_start" && this.key === null) {
      const key = Buffer.from(e.host_key as string, "base64");
      if (this.#fingerprintPin !== null && fingerprint(key) !== this.#fingerprintPin) {
        at("host_key_changed", `host key changed (server_start names ${fingerprint(key)}; --host-key pins ${this.#fingerprintPin})`);
      }
      this.key = new Uint8Array(key);
    }
    if (e.type !== "checkpoint") {
      this.sinceCheckpoint++;
      return;
    }
    // It signs the line before it: its seq, and the hash that line's entry says it has (the chain itself is not recomputed here).
    const before = this.#previous;
    const beforeHash = before && before.length > 67 ? Buffer.from(before.buffer, before.byteOffset + before.length - 66, 64).toString("latin1") : null;
    if (e.seq !== size + 1 || e.head_seq !== size || e.prev !== e.head || beforeHash !== e.head) {
      at("bad_checkpoint", `bad checkpoint (it must sign the line before it, seq ${size}; it names seq ${e.head_seq})`);
    }
    if (this.key === null) at("no_host_key", "checkpoint before any server_start: no host key to check its signature against (pass --host-key)");
    if (!verifyCheckpoint(this.key!, e)) at("bad_signature", `bad checkpoint signature (not made by host key ${fingerprint(this.key!)})`);
    if (e.root !== undefined) {
      if (!verifyCheckpointNote(this.key!, e)) at("bad_signature", `bad checkpoint note signature (not made by host key ${fingerprint(this.key!)} as ${e.origin})`);
      if (toBase64(this.tree.root()) !== e.root) at("bad_checkpoint", `bad checkpoint (the tree root it signs is not the root of the ${size} lines before it)`);
    }
    this.lastCheckpoint = e.seq;
    this.sinceCheckpoint = 0;
    this.checkpoints++;
  }
}

/**
 * Feeds every line of `f` to `check`, each as 0x00 ‖ its bytes (what its
 * leaf hash is of): read one byte into a buffer, so that the byte before a
 * line in it, the LF of the line before, can be overwritten with the 0x00.
 * A torn last line or one past MAX_LINE_BYTES fails.
 */
function readFile(f: TranscriptFile, check: TreeCheck, readBytes: number): void {
  const fd = openSync(f.path, "r");
  try {
    let lineNo = 1;
    let pos = 0;
    let carry: Buffer[] = [];
    let carried = 0;
    const at = (code: ProblemCode, reason: string): never => {
      throw new TranscriptFailure({ code, file: f.name, line: lineNo, reason });
    };
    const buf = Buffer.allocUnsafe(1 + readBytes);
    for (;;) {
      // A checkpoint's line is checked against the line before it, which may be in this buffer.
      check.release(buf);
      const n = readSync(fd, buf, 1, readBytes, pos);
      if (n === 0) break;
      pos += n;
      const end = 1 + n;
      let i = 1;
      let nextMark = buf.indexOf(CHECKPOINT, 1);
      let nextSlash = buf.indexOf(BACKSLASH, 1);
      for (let nl = buf.indexOf(0x0a, 1); nl >= 0 && nl < end; nl = buf.indexOf(0x0a, i)) {
        if (carried + (nl - i) > MAX_LINE_BYTES) at("malformed", "malformed line (longer than 1 MiB)");
        let leaf: Uint8Array;
        let parse: boolean;
        if (carried > 0) {
          leaf = Buffer.concat([LEAF_PREFIX, ...carry, buf.subarray(i, nl)]);
          parse = leaf.indexOf(BACKSLASH) >= 0 || Buffer.from(leaf.buffer, leaf.byteOffset, leaf.length).indexOf(CHECKPOINT) >= 0;
          carry = [];
          carried = 0;
        } else {
          buf[i - 1] = 0x00;
          leaf = buf.subarray(i - 1, nl);
          parse = (nextMark >= 0 && nextMark < nl) || (nextSlash >= 0 && nextSlash < nl);
        }
        check.line(leaf, parse, f.name, lineNo++);
        i = nl + 1;
        if (nextMark >= 0 && nextMark < i) nextMark = buf.indexOf(CHECKPOINT, i);
        if (nextSlash >= 0 && nextSlash < i) nextSlash = buf.indexOf(BACKSLASH, i);
      }
      if (i < end) {
        if (carried + (end - i) > MAX_LINE_BYTES) at("malformed", "malformed line (longer than 1 MiB)");
        carry.push(Buffer.from(buf.subarray(i, end)));
        carried += end - i;
      }
    }
    if (carried > 0) at("torn", `torn last line (${carried} bytes without a final LF, as a crash mid-write leaves them)`);
  } finally {
    closeSync(fd);
  }
}

/** The tree-only check of a transcript directory (or its first file); never throws for a bad transcript. */
export function verifyTreeOnly(path: string, opts: ChainOptions & { watchSize?: number; readBytes?: number } = {}): TreeOnlyResult {
  const listing = listTranscript(path);
  const check = new TreeCheck(opts, opts.watchSize ?? -1);
  let problem: Problem | null = null;
  try {
    if (listing.files.length === 0) throw new TranscriptFailure({ code: "empty", file: path, line: 0, reason: "no transcript files (YYYY-MM-DD.NNNNNNNNNNNN.jsonl) here" });
    for (const f of listing.files) readFile(f, check, opts.readBytes ?? READ_BYTES);
    if (check.tree.size === 0) throw new TranscriptFailure({ code: "empty", file: path, line: 0, reason: "the transcript has no entries" });
  } catch (e) {
    if (!(e instanceof TranscriptFailure)) throw e;
    problem = e.problem;
  }
  return {
    problem,
    files: listing.files.length,
    lines: check.tree.size,
    tree: { size: check.tree.size, root: check.tree.root() },
    lastCheckpoint: check.lastCheckpoint,
    sinceCheckpoint: check.sinceCheckpoint,
    checkpoints: check.checkpoints,
    hostKey: { key: check.key, pinned: check.pinned },
    torn: listing.torn,
    watched: check.watched,
  };
}
