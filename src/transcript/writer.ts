/**
 * The server's transcript appender (docs/TRANSCRIPT.md §2, §6, §7). Entries
 * are numbered, hashed and chained as they are appended; lines go to the
 * current file at the end of each event-loop turn; `durable` resolves once
 * the line is where the fsync policy says an acknowledged entry must be:
 *
 *   always  fsync as soon as the line is written
 *   batch   group commit: at most one fsync per `batchMs`, covering everything
 *           written before it starts; one starts at once if none has started
 *           within the last `batchMs` (a quiet server does not wait the window)
 *   off     written to the OS; no fsync (a machine crash may lose the tail)
 *
 * No acknowledgement without a signature: the `durable` of a message or
 * direct entry (whose ack waits on it) resolves only once a checkpoint
 * covering it is durable too. Before each fsync under always and batch, and
 * before each write under off, the writer appends a checkpoint if such an
 * entry is not yet covered by one, so it goes out with them. (The fsyncs of
 * rotation and of a full disk's retry sign nothing: the acks they would
 * have released wait for the next one.) The transcript of a run that
 * crashes thus ends, after its last checkpoint, only in entries whose
 * senders got no ack (TRANSCRIPT.md §6, §10).
 *
 * Where the lines go is a storage (storage.ts): the directory of files
 * (filestorage.ts, `open`) or PostgreSQL (`openOn`). On open the storage
 * reads and recovers the end of the log; a torn last line it cut is
 * reported and recorded with a `recovery` entry that continues the chain
 * from the last whole entry. "fsync" below is the storage's sync: an fsync
 * of the file, or a database's COMMIT.
 *
 * A write the disk refuses for want of space (ENOSPC, EDQUOT), or a sync
 * the storage says may be retried (a database that is down), blocks the
 * writer: `recording` turns false (the server then refuses what it would
 * have to record), what it could not write stays in memory (bounded), its
 * waiters keep waiting, and it retries every `retryMs`. Once a retry is
 * written and fsynced, a `recovery` entry records the outage and
 * `recording` turns true again. Any other write error, and any fsync
 * error, fails the writer for good (TRANSCRIPT.md §6).
 */
import { existsSync } from "node:fs";
import { toBase64, toHex } from "../bytes.ts";
import type { Ed25519KeyPair } from "../crypto/index.ts";
import { ed25519Signer, sha256, sha256Hex } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { HeldLock } from "../store/lock.ts";
import { FileStorage, treePath } from "./filestorage.ts";
import { TRANSCRIPT_FILE_RE, listTranscript } from "./read.ts";
import {
  BODY_TYPES,
  ENTRY_HASH_PREFIX,
  type Entry,
  type EntryFields,
  GENESIS,
  checkpointInput,
  checkpointNote,
  defaultOrigin,
  prepareEntry,
  sealBody,
  treeCheckpointFields,
  wrapFileKey,
} from "./format.ts";
import { type Hash, consistencyProof, inclusionProof } from "./merkle.ts";
import type { LogStorage, LogTree } from "./storage.ts";

import type { LogState } from "../store/journal.ts";

export type FsyncPolicy = "always" | "batch" | "off";

export interface WriterOptions {
  dir: string;
  /** While the disk is full: how often to try again. */
  retryMs?: number;
  hostKey: Ed25519KeyPair;
  fsync: FsyncPolicy;
  /** Group-commit window for `batch`. */
  batchMs: number;
  checkpointEvery: number;
  checkpointIntervalMs: number;
  rotateBytes: number;
  /** Seal message bodies to this X25519 public key. */
  auditorKey?: Uint8Array;
  version: string;
  log: Logger;
  now?: () => number;
  /** The data directory's lock (store/lock.ts): when given, nothing is written unless it is held. */
  lock?: HeldLock;
  /** The log's origin, the name its checkpoints are signed under (§4.1; serve --log-origin); default: defaultOrigin(host key). */
  origin?: string;
}

export { treePath };

export const DEFAULT_WRITER: Omit<WriterOptions, "dir" | "hostKey" | "version" | "log"> = {
  fsync: "batch",
  batchMs: 1,
  checkpointEvery: 1000,
  checkpointIntervalMs: 60_000,
  rotateBytes: 64 * 1024 * 1024,
};

export interface Appended {
  entry: Entry;
  /** Resolves when the entry is durable per the fsync policy; rejects if it cannot be. */
  durable: Promise<void>;
}

const FILE_RE = TRANSCRIPT_FILE_RE;

/** What a blocked writer keeps in memory for the disk before it fails for good. */
const MAX_BLOCKED_BYTES = 16 * 1024 * 1024;
/** How often a blocked writer says so again in the log. */
const BLOCKED_LOG_MS = 30_000;

/** The transcript's file names in chain order (read.ts decides the layout for writer and readers alike). */
export function transcriptFiles(dir: string): string[] {
  return existsSync(dir) ? listTranscript(dir).files.map((f) => f.name) : [];
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

const DAY_MS = 86_400_000;

/**
 * The lines appended and not yet written, as the bytes that will be
 * written: each line is encoded once, here, and its leaf hash is taken
 * from those bytes.
 */
class PendingLines {
  #buf = Buffer.allocUnsafe(64 * 1024);
  #used = 0;
  /** Lines added since the last take. */
  count = 0;

  get bytes(): number {
    return this.#used;
  }

  /**
   * Adds the line of the entry whose canonical form is `canon` (§3.3): the
   * form is encoded once, here, its hash taken from those bytes, and its
   * closing brace replaced by the `hash` member, the brace and the LF.
   * Returns the hash and the line's bytes without the LF (a view valid
   * until the next add): canonicalLine(canon, hash), as bytes.
   */
  add(canon: string): { hash: string; line: Uint8Array } {
    // A UTF-16 unit is at most 3 bytes of UTF-8; the hash member and the LF are 76 more.
    const need = this.#used + 3 * canon.length + 76;
    if (need > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.#buf.length));
      this.#buf.copy(grown, 0, 0, this.#used);
      this.#buf = grown;
    }
    const start = this.#used;
    const n = this.#buf.write(canon, start, "utf8");
    const hash = sha256Hex(ENTRY_HASH_PREFIX, this.#buf.subarray(start, start + n));
    let at = start + n - 1; // over the "}"
    at += this.#buf.write(`,"hash":"${hash}"}\n`, at, "latin1");
    this.#used = at;
    this.count++;
    return { hash, line: this.#buf.subarray(start, at - 1) };
  }

  /** Everything added, emptied: a view to write before the next add. */
  take(): Buffer {
    const out = this.#buf.subarray(0, this.#used);
    this.#used = 0;
    this.count = 0;
    // A burst (a full disk's backlog) does not keep its buffer.
    if (this.#buf.length > 1024 * 1024) this.#buf = Buffer.allocUnsafe(64 * 1024);
    return out;
  }
}

interface Blocked {
  since: number;
  error: string;
  logged: number;
}

/** Entries whose sender's ack waits for `durable` (TRANSCRIPT.md §2.5, §6): they are never durable unsigned. */
const ACKNOWLEDGED = new Set(["message", "direct", "edit", "delete"]);

interface Waiter {
  seq: number;
  /** An acknowledged entry: it also waits for a durable checkpoint covering it. */
  signed: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Two writers on one transcript would fork its chain for good: none writes without the lock it was given. */
function checkLock(lock: HeldLock | undefined): void {
  if (lock && !lock.held) throw new SecureChatError("transcript_unlocked", `transcript: not writing without the data directory's lock (${lock.path})`);
}

export class TranscriptWriter {
  readonly opts: WriterOptions;
  readonly #storage: LogStorage;
  #file = "";
  #fileBytes = 0;
  /** The UTC day of the file as [start, end) in ms: the rotation check compares numbers, not dates. */
  #fileDayMs: [number, number] = [0, 0];
  #seq = 0;
  #head = GENESIS;
  #lastTs = 0;
  #pending = new PendingLines();
  #writtenSeq = 0;
  #syncedSeq = 0;
  #syncing = false;
  #syncTimer: ReturnType<typeof setTimeout> | null = null;
  /** When the last fsync started (performance.now()), for batch's window. */
  #lastSyncStart = Number.NEGATIVE_INFINITY;
  #flushScheduled = false;
  #waiters: Waiter[] = [];
  #sinceCheckpoint = 0;
  /** The last acknowledged entry appended, and the last entry a checkpoint appended so far covers. */
  #ackedSeq = 0;
  #coveredSeq = 0;
  /** Checkpoints appended but not yet durable, by seq; and the last entry a durable checkpoint covers. */
  #checkpointsInFlight: number[] = [];
  #signedSeq = 0;
  #checkpointTimer: ReturnType<typeof setInterval> | null = null;
  #fileKey: Uint8Array | null = null;
  #keySeq = 0;
  #failed: SecureChatError | null = null;
  #closed = false;
  /** Bytes of a write the disk did not take (the rest of a line may be on disk already); written first. */
  #unwritten: Uint8Array | null = null;
  /** The disk refused a write for want of space: since when, and why. */
  #blocked: Blocked | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #watchers: ((recording: boolean) => void)[] = [];
  /** Retries since the writer blocked, for the storage's backoff. */
  #attempts = 0;
  /** The Merkle tree over the lines (§3.6), opened once the tail is known; null when it cannot be built (§7). */
  #tree: LogTree | null = null;
  readonly #sign: (m: Uint8Array) => Uint8Array;
  readonly origin: string;
  /** Tree checkpoints appended but not yet durable, in order; and the last durable one (§4.1). */
  #treeCheckpointsInFlight: { seq: number; size: number; note: string }[] = [];
  #signedTree: { size: number; note: string } | null = null;

  private constructor(opts: WriterOptions, storage: LogStorage) {
    this.opts = opts;
    this.#storage = storage;
    this.#sign = ed25519Signer(opts.hostKey.secretKey);
    this.origin = opts.origin ?? defaultOrigin(opts.hostKey.publicKey);
  }

  /**
   * The last tree checkpoint that is durable (under the fsync policy), and
   * proofs against it from the tree's stored hashes (PROTOCOL.md §7.13):
   * the consistency proof from the tree of `from` lines, and the inclusion
   * proof of each of `leaves`. Null without a tree, or while its hashes
   * cannot be read.
   */
  logState(from: number | undefined, leaves: readonly number[]): LogState | null {
    const signed = this.#signedTree;
    const tree = this.#tree;
    if (!signed || !tree) return null;
    const missing = Symbol("missing");
    const read = (level: number, index: number): Hash => {
      const h = tree.read(level, index);
      if (!h) throw missing;
      return h;
    };
    try {
      return {
        note: signed.note,
        size: signed.size,
        consistency: from !== undefined && from <= signed.size ? consistencyProof(from, signed.size, read) : null,
        inclusion: leaves.filter((i) => i < signed.size).map((leaf) => ({ leaf, proof: inclusionProof(leaf, signed.size, read) })),
      };
    } catch (e) {
      if (e === missing) return null;
      throw e;
    }
  }

  /**
   * The consistency proof from the tree of `m` lines to the tree of `n` ≤
   * the last durable signed size (RFC 9162 §2.1.4.1), from stored hashes;
   * null without a tree, past the signed size, or while its hashes cannot
   * be read. What a witness is sent (TRANSCRIPT.md §4.5).
   */
  consistency(m: number, n: number): Hash[] | null {
    const tree = this.#tree;
    if (!tree || !this.#signedTree || m > n || n > this.#signedTree.size) return null;
    try {
      return consistencyProof(m, n, (level, index) => {
        const h = tree.read(level, index);
        if (!h) throw new RangeError("stored hash missing");
        return h;
      });
    } catch {
      return null;
    }
  }

  /** Calls `fn` each time a newer tree checkpoint becomes durable (§4.1, §6). */
  onSignedTree(fn: () => void): void {
    this.#treeListeners.push(fn);
  }

  readonly #treeListeners: (() => void)[] = [];

  /** The tree of every line appended: its size and root (null without a tree). */
  get tree(): { size: number; root: Uint8Array } | null {
    return this.#tree ? { size: this.#tree.size, root: this.#tree.root() } : null;
  }

  get seq(): number {
    return this.#seq;
  }

  get head(): string {
    return this.#head;
  }

  get file(): string {
    return this.#file;
  }

  /** True once closed or failed: appending would throw. */
  get stopped(): boolean {
    return this.#closed || this.#failed !== null;
  }

  /** True while what is appended is being written: not closed, failed, or blocked on a full disk. */
  get recording(): boolean {
    return !this.stopped && this.#blocked === null;
  }

  /** Calls `fn(recording)` whenever `recording` changes. */
  watch(fn: (recording: boolean) => void): void {
    this.#watchers.push(fn);
  }

  #notify(): void {
    const recording = this.recording;
    for (const fn of this.#watchers) {
      try {
        fn(recording);
      } catch {
        // a watcher's failure is its own
      }
    }
  }

  #now(): number {
    const t = (this.opts.now ?? Date.now)();
    // ts never decreases (TRANSCRIPT.md §2): a clock that steps back is clamped.
    this.#lastTs = Math.max(this.#lastTs, t);
    return this.#lastTs;
  }

  /** Opens the transcript directory `opts.dir` (files, the single node's storage). */
  static open(opts: WriterOptions): TranscriptWriter {
    checkLock(opts.lock);
    return TranscriptWriter.openOn(new FileStorage(opts.dir), opts);
  }

  /** Opens the log kept by `storage` (opened and, for a database, holding its writer lease). */
  static openOn(storage: LogStorage, opts: WriterOptions): TranscriptWriter {
    checkLock(opts.lock);
    // Durable means synced (a COMMIT): a storage that only syncs asynchronously never acks before it.
    if (opts.fsync === "off" && !storage.syncNow) throw new SecureChatError("transcript_fsync", "transcript: fsync off is for files only; a database's lines are durable at COMMIT");
    const w = new TranscriptWriter(opts, storage);
    const tail = storage.open({ hostKey: opts.hostKey, log: opts.log });
    if (tail.last) {
      w.#seq = tail.last.seq;
      w.#head = tail.last.hash;
      w.#lastTs = tail.last.ts;
    }
    const cleanStop = tail.last?.type === "server_stop" || (tail.last?.type === "checkpoint" && tail.beforeLast?.type === "server_stop");
    w.#tree = tail.tree;
    w.#signedTree = tail.signedTree;
    const lastFile = tail.lastFile?.name;
    if (tail.lastFile) {
      const { name, bytes: size } = tail.lastFile;
      const day = FILE_RE.exec(name)![1]!;
      if (size > 0 && size < opts.rotateBytes && day === utcDay(w.#now())) {
        storage.startFile(name, false);
        w.#file = name;
        w.#fileBytes = size;
        w.#setFileDay(day);
      } else if (size === 0) {
        // A file emptied by cutting its only (torn) line: start it afresh.
        storage.startFile(name, true);
        w.#file = name;
        w.#setFileDay(day);
      }
    }
    if (!storage.ready) w.#newFile();
    storage.onLost?.((cause) => w.#fail(cause));
    w.#writtenSeq = w.#syncedSeq = w.#seq;
    if (tail.torn) {
      opts.log.warn("transcript_torn_tail", { file: tail.torn.file, bytes: tail.torn.bytes.length });
      w.#add("recovery", { file: tail.torn.file, torn_bytes: tail.torn.bytes.length, torn_sha256: toHex(sha256(tail.torn.bytes)), reason: "torn last line cut after a crash" });
    } else if (tail.last && !cleanStop) {
      opts.log.warn("transcript_unclean_stop", { seq: tail.last.seq });
      w.#add("recovery", { file: lastFile ?? w.#file, torn_bytes: 0, torn_sha256: toHex(sha256(new Uint8Array(0))), reason: "the previous run ended without server_stop" });
    }
    w.#add("server_start", { host_key: Buffer.from(opts.hostKey.publicKey).toString("base64"), version: opts.version });
    if (opts.auditorKey) w.#rekeySeal();
    w.#checkpointTimer = setInterval(() => {
      // A timer must never throw: a failed writer has already reported itself.
      if (w.#sinceCheckpoint > 0 && w.recording) {
        try {
          w.checkpoint();
        } catch {
          // #fail logged it and rejected every waiter
        }
      }
    }, opts.checkpointIntervalMs);
    w.#checkpointTimer.unref?.();
    return w;
  }

  #newFile(): void {
    const now = this.#now();
    const name = `${utcDay(now)}.${String(this.#seq + 1).padStart(12, "0")}.jsonl`;
    this.#storage.startFile(name, false);
    this.#file = name;
    this.#fileBytes = 0;
    this.#setFileDay(utcDay(now));
  }

  #setFileDay(day: string): void {
    const start = Date.parse(`${day}T00:00:00Z`);
    this.#fileDayMs = [start, start + DAY_MS];
  }

  #rekeySeal(): void {
    const { fileKey, fields } = wrapFileKey(this.opts.auditorKey!);
    this.#fileKey?.fill(0);
    this.#fileKey = fileKey;
    this.#keySeq = this.#add("seal_key", fields).seq;
  }

  /**
   * Starts a new file when this one is full or the UTC day has changed. Any
   * failure here (fsync of the old file, creating the new one) fails the
   * writer for good, so no later call touches a closed descriptor.
   */
  #maybeRotate(lineBytes: number): void {
    // A blocked file may end in part of a line: it is finished before anything rotates.
    if (this.#fileBytes === 0 || this.#blocked) return;
    const now = this.#now();
    if (this.#fileBytes + lineBytes <= this.opts.rotateBytes && now >= this.#fileDayMs[0] && now < this.#fileDayMs[1]) return;
    this.#writePending();
    if (this.#failed) throw this.#failed;
    try {
      if (this.#storage.endFile()) {
        this.#syncedSeq = this.#writtenSeq;
        this.#resolveUpTo(this.#syncedSeq);
      }
      this.#newFile();
    } catch (cause) {
      this.#fail(cause);
      throw this.#failed!;
    }
    if (this.opts.auditorKey) this.#rekeySeal();
  }

  #add(type: string, fields: EntryFields): Entry {
    if (this.#failed) throw this.#failed;
    if (this.#closed && type !== "checkpoint" && type !== "server_stop") throw new SecureChatError("transcript_closed", "transcript: closed");
    const seq = this.#seq + 1;
    let f = fields;
    if (this.#fileKey && BODY_TYPES.has(type) && typeof fields.text === "string") {
      const { text, ...rest } = fields;
      f = { ...rest, sealed: sealBody(this.#fileKey, seq, text), key_seq: this.#keySeq };
    }
    const { entry: prepared, canon } = prepareEntry(this.#head, seq, this.#now(), type, f);
    const { hash, line } = this.#pending.add(canon);
    const entry = prepared as Entry;
    entry.hash = hash;
    this.#tree?.append(line);
    this.#seq = seq;
    this.#head = hash;
    this.#fileBytes += line.length + 1;
    this.#sinceCheckpoint = type === "checkpoint" ? 0 : this.#sinceCheckpoint + 1;
    if (type === "checkpoint") {
      this.#coveredSeq = seq - 1;
      this.#checkpointsInFlight.push(seq);
    } else if (ACKNOWLEDGED.has(type)) this.#ackedSeq = seq;
    this.#scheduleFlush();
    return entry;
  }

  /** Appends an event; message/direct/edit text is sealed when an auditor key is set. */
  append(type: string, fields: EntryFields): Appended {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new SecureChatError("transcript_closed", "transcript: closed");
    checkLock(this.opts.lock);
    // Blocked, entries wait in memory; checked every 256 so the bound costs little.
    if (this.#blocked && this.#pending.count % 256 === 255 && this.#overBlockedBound()) {
      this.#fail(new Error(`${this.#blocked.error}; more than ${MAX_BLOCKED_BYTES} bytes waited for the disk`));
      throw this.#failed!;
    }
    this.#maybeRotate(sizeBound(fields));
    const entry = this.#add(type, fields);
    if (this.#sinceCheckpoint >= this.opts.checkpointEvery) this.checkpoint();
    return { entry, durable: this.#durable(entry.seq, ACKNOWLEDGED.has(type)) };
  }

  /** Seals the chain so far, and the tree of its lines, with host-key signatures (§4). */
  checkpoint(): Entry {
    const headSeq = this.#seq;
    const head = this.#head;
    const sig = toBase64(this.#sign(checkpointInput(headSeq, head)));
    const tree = this.#tree ? treeCheckpointFields(this.#sign, this.opts.hostKey.publicKey, this.origin, headSeq, this.#tree.root()) : {};
    const entry = this.#add("checkpoint", { head_seq: headSeq, head, sig, ...tree });
    if (this.#tree) this.#treeCheckpointsInFlight.push({ seq: entry.seq, size: headSeq, note: checkpointNote(entry)! });
    return entry;
  }

  #durable(seq: number, signed: boolean): Promise<void> {
    return new Promise((resolve, reject) => this.#waiters.push({ seq, signed, resolve, reject }));
  }

  /**
   * Called before writing lines that an fsync (or, under off, the write
   * itself) is about to make durable: if an acknowledged entry is not yet
   * covered by a checkpoint, appends one, so it goes out with them.
   */
  #signAcknowledged(): void {
    if (this.#ackedSeq > this.#coveredSeq) this.checkpoint();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Writes what is pending; true if it was all written. A blocked writer writes only when `retrying`. */
  #writePending(retrying = false): boolean {
    if (this.#failed || (this.#blocked && !retrying)) return false;
    if (this.#pending.bytes === 0 && !this.#unwritten) return true;
    const lines = this.#pending.take();
    const buf = this.#unwritten ? Buffer.concat([this.#unwritten, lines]) : lines;
    this.#unwritten = null;
    const upTo = this.#seq;
    let off = 0;
    try {
      while (off < buf.length) off += this.#storage.write(buf, off);
      this.#flushTree();
    } catch (cause) {
      if (!this.#storage.writeRetryable(cause)) {
        this.#fail(cause);
        return false;
      }
      this.#unwritten = new Uint8Array(buf.subarray(off));
      this.#block(cause);
      return false;
    }
    this.#writtenSeq = upTo;
    return true;
  }

  /** Writes the tree's new hashes; says once if it cannot (the next start rebuilds them). */
  #flushTree(): void {
    if (!this.#tree) return;
    const before = this.#tree.broken;
    this.#tree.flush();
    if (before === null && this.#tree.broken !== null) this.opts.log.warn("transcript_tree_unwritten", { path: this.#tree.path, error: this.#tree.broken });
  }

  /** The disk is full: keep what it did not take, refuse to record more, and try again later. */
  #block(cause: unknown): void {
    const error = (cause as Error).message;
    const now = Date.now();
    if (!this.#blocked) {
      this.#blocked = { since: now, error, logged: now };
      this.opts.log.warn("transcript_blocked", { file: this.#file, error, waiting_entries: this.#seq - this.#writtenSeq });
      this.#notify();
    } else if (now - this.#blocked.logged >= BLOCKED_LOG_MS) {
      this.#blocked.logged = now;
      this.opts.log.warn("transcript_still_blocked", { file: this.#file, error, for_s: Math.round((now - this.#blocked.since) / 1000), waiting_entries: this.#seq - this.#writtenSeq });
    }
    if (this.#overBlockedBound()) return this.#fail(new Error(`${error}; more than ${MAX_BLOCKED_BYTES} bytes waited for the disk`));
    this.#attempts++;
    this.#retryTimer ??= setTimeout(() => {
      this.#retryTimer = null;
      this.#retry();
    }, this.#storage.retryDelayMs?.(this.#attempts) ?? this.opts.retryMs ?? 2000);
    this.#retryTimer.unref?.();
  }

  #overBlockedBound(): boolean {
    let n = this.#unwritten?.length ?? 0;
    n += this.#pending.bytes;
    n += this.#storage.heldBytes?.() ?? 0;
    return n > MAX_BLOCKED_BYTES;
  }

  /**
   * One more try at what the storage refused; on success, sync, record the
   * outage, and record again. A storage that syncs only asynchronously (a
   * database) stays blocked until its sync has succeeded.
   */
  #retry(): void {
    const blocked = this.#blocked;
    if (!blocked || this.#failed || !this.#storage.ready) return;
    // A database's retry is a COMMIT like any other: it carries a checkpoint signing what it acknowledges.
    if (!this.#storage.syncNow) this.#signAcknowledged();
    if (!this.#writePending(true)) return; // still full (#block rescheduled), or failed for good
    const upTo = this.#writtenSeq;
    if (this.#storage.syncNow) {
      try {
        this.#storage.syncNow();
      } catch (cause) {
        return this.#fail(cause);
      }
      this.#recovered(blocked, upTo);
      return;
    }
    if (this.#syncing) {
      // The sync in flight covers what was written before; try again after it.
      this.#block(new Error(blocked.error));
      return;
    }
    this.#syncing = true;
    this.#storage.sync((err) => {
      this.#syncing = false;
      if (err) return this.#syncFailed(err);
      if (this.#blocked === blocked) this.#recovered(blocked, upTo);
      else this.#synced(upTo);
    });
  }

  /** A sync failed: wait and retry where the storage says it may be retried, else fail for good. */
  #syncFailed(err: Error): void {
    if (this.#failed) return;
    if (this.#storage.syncRetryable(err)) this.#block(err);
    else this.#fail(err);
  }

  #synced(upTo: number): void {
    this.#syncedSeq = Math.max(this.#syncedSeq, upTo);
    this.#resolveUpTo(this.#syncedSeq);
  }

  /** What waited is durable after an outage: record the outage, and record again. */
  #recovered(blocked: Blocked, upTo: number): void {
    this.#blocked = null;
    this.#attempts = 0;
    this.#synced(upTo);
    const seconds = Math.round((Date.now() - blocked.since) / 1000);
    this.opts.log.warn("transcript_recovered", { file: this.#file, after_s: seconds });
    this.#add("recovery", {
      file: this.#file,
      torn_bytes: 0,
      torn_sha256: toHex(sha256(new Uint8Array(0))),
      reason: `the ${this.#storage.syncNow ? "disk" : "database"} refused writes for ${seconds} s (${blocked.error}); what was waiting was written after it`,
    });
    this.#notify();
  }

  #flush(): void {
    // A writer that failed since this flush was scheduled (an append past the blocked bound) has nothing to sign or write.
    if (this.#failed) return;
    // Under off the write makes the lines durable; otherwise #startSync
    // signs before its fsync, here too when that fsync starts now, so the
    // checkpoint shares the turn's write.
    if (this.opts.fsync === "off" || this.#syncStartsNow()) this.#signAcknowledged();
    this.#writePending();
    if (this.#failed) return;
    if (this.opts.fsync === "off") {
      this.#syncedSeq = this.#writtenSeq;
      this.#resolveUpTo(this.#syncedSeq);
    } else if (this.opts.fsync === "always") {
      this.#startSync();
    } else if (!this.#syncTimer && !this.#syncing && this.#writtenSeq > this.#syncedSeq) {
      // Group commit: at most one fsync per window. One that has not started
      // within the last window starts now, so an entry on a quiet server
      // waits for one fsync, not for the window; under load, everything
      // written while the window runs shares the next one.
      const wait = this.#lastSyncStart + this.opts.batchMs - performance.now();
      if (wait <= 0) this.#startSync();
      else {
        this.#syncTimer = setTimeout(() => {
          this.#syncTimer = null;
          this.#startSync();
        }, wait);
      }
    }
  }

  /** Whether #flush, having written, will start an fsync at once. */
  #syncStartsNow(): boolean {
    if (this.#syncing || this.#blocked) return false;
    if (this.opts.fsync === "always") return true;
    return this.opts.fsync === "batch" && !this.#syncTimer && this.#lastSyncStart + this.opts.batchMs <= performance.now();
  }

  #startSync(): void {
    if (this.#syncing || this.#failed) return;
    this.#signAcknowledged();
    this.#writePending(); // blocked: what was written before still gets its fsync
    if (this.#failed || this.#writtenSeq <= this.#syncedSeq) return;
    this.#syncing = true;
    this.#lastSyncStart = performance.now();
    const upTo = this.#writtenSeq;
    this.#storage.sync((err) => {
      this.#syncing = false;
      if (err) return this.#syncFailed(err);
      this.#synced(upTo);
      if (this.#writtenSeq > this.#syncedSeq) this.#flush();
    });
  }

  #resolveUpTo(seq: number): void {
    const inFlight = this.#checkpointsInFlight;
    while (inFlight.length > 0 && inFlight[0]! <= seq) this.#signedSeq = inFlight.shift()! - 1;
    const trees = this.#treeCheckpointsInFlight;
    const before = this.#signedTree;
    while (trees.length > 0 && trees[0]!.seq <= seq) {
      const { size, note } = trees.shift()!;
      this.#signedTree = { size, note };
    }
    if (this.#signedTree !== before) for (const fn of this.#treeListeners) fn();
    let i = 0;
    for (; i < this.#waiters.length; i++) {
      const w = this.#waiters[i]!;
      if (w.seq > seq || (w.signed && w.seq > this.#signedSeq)) break;
      w.resolve();
    }
    if (i > 0) this.#waiters.splice(0, i);
  }

  #fail(cause: unknown): void {
    if (this.#failed) return;
    this.#failed = new SecureChatError("transcript_write", `transcript: cannot write ${this.#file}: ${(cause as Error).message}`, { cause });
    this.#blocked = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.opts.log.warn("transcript_failed", { file: this.#file, error: (cause as Error).message });
    for (const w of this.#waiters.splice(0)) w.reject(this.#failed);
    this.#notify();
  }

  /** Clean shutdown: server_stop, a checkpoint, everything written and fsynced. */
  close(reason: string): void {
    if (this.#closed) return;
    if (this.#blocked) this.#retry(); // one last try at what the full disk refused
    this.#closed = true;
    if (this.#checkpointTimer) clearInterval(this.#checkpointTimer);
    if (this.#syncTimer) clearTimeout(this.#syncTimer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (!this.#failed && !this.#blocked) {
      this.#add("server_stop", { reason });
      this.checkpoint();
      if (this.#writePending()) {
        const upTo = this.#writtenSeq;
        if (this.#storage.syncNow) {
          this.#storage.syncNow();
          this.#synced(upTo);
        } else if (!this.#syncing) this.#storage.sync((err) => (err ? this.#fail(err) : this.#synced(upTo)));
        // (else the sync in flight, when it ends, starts one for the rest)
      }
    }
    if (this.#blocked) {
      // The disk is still full: what waited is lost with the process, and
      // the next start finds a torn or unclean end (§7) and records it.
      this.opts.log.warn("transcript_lost", { file: this.#file, entries: this.#seq - this.#writtenSeq });
      this.#fail(new Error(this.#blocked.error));
    }
    this.#fileKey?.fill(0);
    this.#fileKey = null; // nothing is sealed after close; never under a zeroed key
    // Its hashes fsynced only at a clean stop: the next start trusts them only after one.
    this.#tree?.close(!this.#failed);
    this.#storage.close();
  }

  /** Resolves once what close started is done (a database's last COMMIT and its lease given back). */
  async closed(): Promise<void> {
    await this.#storage.closed?.();
  }
}

/**
 * An upper bound on the bytes an entry with these fields takes on its line,
 * for the rotation check made before the entry exists: every UTF-16 unit of
 * a string is at most 6 bytes escaped, a number or boolean at most 16, and
 * 256 covers the names, punctuation, seq, ts, type, prev and hash. (Sealed
 * text is base64 of the UTF-8 plus 40 bytes: within 6 per unit too.)
 */
function sizeBound(fields: EntryFields): number {
  let n = 256;
  for (const k in fields) {
    const v = fields[k];
    n += k.length + 4 + (typeof v === "string" ? 6 * v.length : 16);
  }
  return n;
}
