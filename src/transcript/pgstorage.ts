/**
 * The transcript in PostgreSQL (docs/TRANSCRIPT.md §2.7): a storage for the
 * writer (storage.ts) whose rows hold exactly the lines the file storage
 * writes, under the same file names, with the tree's stored hashes beside
 * them (store/pg/log.ts has the tables). A line is durable once the COMMIT
 * that inserts it has returned: the writer's sync is that COMMIT, so its
 * group commit batches lines into transactions as it batches them into
 * fsyncs. Every COMMIT is fenced by the writer lease's epoch; a fenced
 * writer stops for good (its waiting acks fail). A database that cannot be
 * reached blocks the writer, which retries with backoff (1 s doubling to
 * 10 s); nothing is acknowledged meanwhile and nothing waiting is lost.
 *
 * Whole rows are committed or none: there are no torn lines to cut (§7).
 * At open the tail from the last checkpoint on is verified as the file
 * storage verifies it, and the stored hashes must give the root that
 * checkpoint signs. The stored hashes are kept in memory (32 bytes each,
 * about two per line) so that proofs stay synchronous reads.
 */
import type { SQL } from "bun";
import { fromBase64, utf8 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  FencedError,
  LEASE_MS,
  LOG_COMPONENT,
  type LineRow,
  RENEW_MS,
  acquireLease,
  appendBatch,
  lastCheckpointSeq,
  listFiles,
  readHead,
  readLines,
  readTreeHashes,
  releaseLease,
  renewLease,
  transient,
} from "../store/pg/log.ts";
import { migrate } from "../store/pg/pg.ts";
import { ChainVerifier, TranscriptFailure } from "./chain.ts";
import { type Entry, checkpointNote } from "./format.ts";
import { Frontier, HASH_SIZE, type Hash, leafHash, storedHashIndex, treeHash } from "./merkle.ts";
import { MAX_LINE_BYTES, type TranscriptLine } from "./read.ts";
import { type LogStorage, type LogTree, type OpenContext, type OpenedLog, refuseCorrupt } from "./storage.ts";
import { CHECKPOINT_END, verifyLinesSync } from "./verify.ts";

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A stored line as a reader's line (read.ts), its defects named as a file reader names them. */
export function rowLine(r: LineRow): TranscriptLine {
  const base = { file: r.file, line: r.line, start: 0, end: r.bytes.length + 1 };
  if (r.bytes.length > MAX_LINE_BYTES) return { ...base, text: "", defect: "too_long" };
  try {
    return { ...base, text: fatalUtf8.decode(r.bytes), bytes: r.bytes };
  } catch {
    return { ...base, text: "", defect: "not_utf8" };
  }
}

function* oneBatch(lines: TranscriptLine[]): Generator<TranscriptLine[]> {
  yield lines;
}

/** The tree with every stored hash in memory; new hashes go to the storage's next COMMIT. */
class MemoryTree implements LogTree {
  readonly path = "log_tree";
  readonly broken = null;
  #stored: Buffer;
  #count: number;
  #flushed: number;
  readonly #frontier: Frontier;

  constructor(
    stored: Buffer,
    size: number,
    private readonly take: (first: number, hashes: Uint8Array) => void,
  ) {
    this.#stored = stored;
    this.#count = this.#flushed = stored.length / HASH_SIZE;
    this.#frontier = Frontier.load(size, (level, index) => this.#at(storedHashIndex(level, index)));
  }

  get size(): number {
    return this.#frontier.size;
  }

  #at(i: number): Hash {
    if (i >= this.#count) throw new Error(`log_tree: no stored hash ${i}`);
    return this.#stored.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }

  root(): Hash {
    return this.#frontier.root();
  }

  read(level: number, index: number): Hash | null {
    const i = storedHashIndex(level, index);
    return i < this.#count ? this.#at(i) : null;
  }

  append(line: string | Uint8Array): void {
    for (const h of this.#frontier.append(leafHash(typeof line === "string" ? utf8(line) : line))) {
      if ((this.#count + 1) * HASH_SIZE > this.#stored.length) {
        const grown = Buffer.allocUnsafe(Math.max(1024 * HASH_SIZE, 2 * this.#stored.length));
        this.#stored.copy(grown, 0, 0, this.#count * HASH_SIZE);
        this.#stored = grown;
      }
      this.#stored.set(h, this.#count * HASH_SIZE);
      this.#count++;
    }
  }

  flush(): void {
    if (this.#flushed === this.#count) return;
    this.take(this.#flushed, Buffer.from(this.#stored.subarray(this.#flushed * HASH_SIZE, this.#count * HASH_SIZE)));
    this.#flushed = this.#count;
  }

  close(): void {}
}

export interface PgStorageOptions {
  /** Who holds the lease, for operators (a node's name). */
  holder: string;
  log: Logger;
  leaseMs?: number;
  renewMs?: number;
}

interface Unsent {
  lines: (LineRow & { isCheckpoint: boolean })[];
  tree: { first: number; hashes: Uint8Array[] } | null;
}

/** A statement attached to a line: runs in the transaction that inserts the line. */
export type Attached = (tx: SQL) => Promise<unknown>;

/**
 * Statements for many lines at once: each line attaches an item, and the
 * transaction that commits a batch of lines calls `run` once with the items
 * of all of them, in line order — a few multi-row statements however many
 * lines a busy group commit holds, where one statement per line would make
 * the commit's round trips grow with the batch. A batch runs its groups
 * before its single statements (an update attached to a later line then
 * finds the row a group inserted).
 */
export interface AttachGroup<T> {
  run(tx: SQL, items: T[]): Promise<unknown>;
}

interface StoredFile {
  name: string;
  lines: number;
  bytes: number;
}

const HASH_MEMBER = /"hash":"([0-9a-f]{64})"\}$/;

export class PgStorage implements LogStorage {
  readonly #sql: SQL;
  readonly #opts: PgStorageOptions;
  readonly epoch: number;
  #head: { seq: number; hash: string };
  #files: StoredFile[];
  #treeHashes: Buffer;
  #tail: LineRow[];
  #file = "";
  #fileLines = 0;
  /** The seq of the last line handed over, and the last one committed. */
  #seq: number;
  #committed: number;
  #unsent: Unsent = { lines: [], tree: null };
  /** The bytes of the lines in #unsent. */
  #unsentBytes = 0;
  /** Statements to run in the transaction that commits the line they belong to (pgjournal.ts's history), by seq. */
  /** What a COMMIT that failed held (its lines and tree runs from the front of #unsent), until it is in. */
  #retryExtent: { lines: number; treeParts: number } | null = null;
  #attached: ({ seq: number; run: Attached } | { seq: number; group: AttachGroup<unknown>; item: unknown })[] = [];
  #inFlight: Promise<void> | null = null;
  #renewTimer: ReturnType<typeof setInterval> | null = null;
  #lostFns: ((cause: Error) => void)[] = [];
  #lost: Error | null = null;
  #renewFailing = false;
  #closing = false;

  private constructor(sql: SQL, opts: PgStorageOptions, epoch: number, head: { seq: number; hash: string }, files: StoredFile[], tree: Buffer, tail: LineRow[]) {
    this.#sql = sql;
    this.#opts = opts;
    this.epoch = epoch;
    this.#head = head;
    this.#files = files;
    this.#treeHashes = tree;
    this.#tail = tail;
    this.#seq = this.#committed = head.seq;
  }

  /**
   * Brings the `log` tables up to date, takes the writer lease and reads
   * what the writer's open needs. Null while another writer holds the lease.
   */
  static async open(sql: SQL, opts: PgStorageOptions): Promise<PgStorage | null> {
    await migrate(sql, LOG_COMPONENT);
    const epoch = await acquireLease(sql, opts.holder, opts.leaseMs ?? LEASE_MS);
    if (epoch === null) return null;
    const head = await readHead(sql);
    const cp = await lastCheckpointSeq(sql);
    const [files, tree, tail] = await Promise.all([listFiles(sql), readTreeHashes(sql), readLines(sql, Math.max(1, cp - 1), head.seq)]);
    const s = new PgStorage(sql, opts, epoch, head, files, tree, tail);
    s.#startRenewing();
    return s;
  }

  get ready(): boolean {
    return this.#file !== "";
  }

  /** The seq of the last line committed. */
  get committed(): number {
    return this.#committed;
  }

  open({ hostKey }: OpenContext): OpenedLog {
    const out: OpenedLog = { last: null, beforeLast: null, torn: null, signedTree: null, tree: null, lastFile: null };
    let signed: { size: number; root: Uint8Array } | null = null;
    const rows = this.#tail;
    this.#tail = [];
    const v = new ChainVerifier({ hostKey: hostKey.publicKey, midChain: rows.length > 0 && rows[0]!.seq > 1 });
    try {
      verifyLinesSync(oneBatch(rows.map(rowLine)), v, (e: Entry) => {
        out.beforeLast = out.last;
        out.last = e;
        if (e.type === "checkpoint" && typeof e.root === "string") {
          signed = { size: e.head_seq as number, root: fromBase64(e.root, 32) };
          out.signedTree = { size: signed.size, note: checkpointNote(e)! };
        }
      });
      if ((out.last?.seq ?? 0) !== this.#head.seq || (out.last?.hash ?? "") !== this.#head.hash) {
        throw new TranscriptFailure({ code: "truncated", file: "log_head", line: 0, reason: `log_head says seq ${this.#head.seq}, the lines end at ${out.last?.seq ?? 0}` });
      }
    } catch (e) {
      refuseCorrupt(e, "--database");
    }
    const tree = new MemoryTree(this.#treeHashes, this.#head.seq, (first, hashes) => this.#takeTree(first, hashes));
    this.#treeHashes = Buffer.alloc(0);
    const s = signed as { size: number; root: Uint8Array } | null;
    if (s && !constantTimeEqual(treeHash(s.size, (l, i) => tree.read(l, i) ?? new Uint8Array(32)), s.root)) {
      throw new SecureChatError("transcript_corrupt", `transcript: the stored tree hashes (log_tree) do not give the root the last checkpoint signs; the server will not append`);
    }
    out.tree = tree;
    const last = this.#files.at(-1);
    out.lastFile = last ? { name: last.name, bytes: last.bytes } : null;
    return out;
  }

  startFile(name: string): void {
    const known = this.#files.find((f) => f.name === name);
    this.#file = name;
    this.#fileLines = known?.lines ?? 0;
  }

  /** Nothing to make durable at a file's end: its rows commit with the next COMMIT. */
  endFile(): boolean {
    return false;
  }

  write(buf: Uint8Array, off: number): number {
    if (this.#lost) throw this.#lost;
    let start = off;
    for (let i = off; i < buf.length; i++) {
      if (buf[i] !== 0x0a) continue;
      const bytes = new Uint8Array(buf.subarray(start, i)); // a copy: the writer reuses its buffer
      const tailText = Buffer.from(bytes.buffer, bytes.byteOffset + Math.max(0, bytes.length - 96), Math.min(96, bytes.length)).toString("latin1");
      this.#unsent.lines.push({ seq: ++this.#seq, file: this.#file, line: ++this.#fileLines, bytes, isCheckpoint: CHECKPOINT_END.test(tailText) });
      this.#unsentBytes += bytes.length + 1;
      start = i + 1;
    }
    if (start !== buf.length) throw new Error("pgstorage: a write that does not end in a whole line");
    return buf.length - off;
  }

  /**
   * Runs `run` in the transaction that commits line `seq` (appended, not yet
   * written here): what is derived from the line is committed with it, or
   * not at all.
   */
  attach(seq: number, run: Attached): void {
    if (seq <= this.#seq) throw new Error(`pgstorage: line ${seq} is written already; attach before the writer flushes it`);
    this.#attached.push({ seq, run });
  }

  /** As `attach`, as one item of a group (AttachGroup): run with the other items of the same commit. */
  attachTo<T>(seq: number, group: AttachGroup<T>, item: T): void {
    if (seq <= this.#seq) throw new Error(`pgstorage: line ${seq} is written already; attach before the writer flushes it`);
    this.#attached.push({ seq, group: group as AttachGroup<unknown>, item });
  }

  #takeTree(first: number, hashes: Uint8Array): void {
    const t = this.#unsent.tree;
    if (t) t.hashes.push(hashes);
    else this.#unsent.tree = { first, hashes: [hashes] };
  }

  /** What waits for a COMMIT: a database that is down holds it here, and the writer's bound on what it holds counts it. */
  heldBytes(): number {
    return this.#unsentBytes;
  }

  /** Writes never fail here: only the COMMIT can. */
  writeRetryable(): boolean {
    return false;
  }

  sync(done: (err: Error | null) => void): void {
    const batch = this.#unsent;
    // After a failed COMMIT, exactly what it held is tried again first: one whose reply was lost after it went
    // through is then recognised as already there (appendBatch), which a batch grown since would not be.
    const retry = this.#retryExtent;
    const lines = retry ? batch.lines.slice(0, retry.lines) : batch.lines.slice();
    const last = lines.at(-1);
    if (!last) {
      queueMicrotask(() => done(null));
      return;
    }
    const hash = HASH_MEMBER.exec(Buffer.from(last.bytes.slice(-80)).toString("latin1"))?.[1] ?? "";
    const treeParts = batch.tree ? (retry ? batch.tree.hashes.slice(0, retry.treeParts) : batch.tree.hashes.slice()) : [];
    const tree = batch.tree ? { first: batch.tree.first, hashes: Buffer.concat(treeParts) } : null;
    let attached = 0;
    while (attached < this.#attached.length && this.#attached[attached]!.seq <= last.seq) attached++;
    const groups = new Map<AttachGroup<unknown>, unknown[]>();
    const singles: Attached[] = [];
    for (const a of this.#attached.slice(0, attached)) {
      if ("run" in a) singles.push(a.run);
      else {
        const items = groups.get(a.group);
        if (items) items.push(a.item);
        else groups.set(a.group, [a.item]);
      }
    }
    const runs: Attached[] = [...[...groups].map(([g, items]) => (tx: SQL) => g.run(tx, items)), ...singles];
    const run = appendBatch(this.#sql, { epoch: this.epoch, after: this.#committed, head: { seq: last.seq, hash, treeSize: last.seq }, lines, tree, attached: runs }).then(
      () => {
        this.#attached.splice(0, attached);
        // Committed: drop what the batch held; what was written meanwhile stays for the next.
        for (const l of this.#unsent.lines.splice(0, lines.length)) this.#unsentBytes -= l.bytes.length + 1;
        if (this.#unsent.tree && tree) {
          this.#unsent.tree.hashes.splice(0, treeParts.length);
          this.#unsent.tree = this.#unsent.tree.hashes.length === 0 ? null : { first: tree.first + tree.hashes.length / HASH_SIZE, hashes: this.#unsent.tree.hashes };
        }
        this.#committed = last.seq;
        this.#head = { seq: last.seq, hash };
        this.#retryExtent = null;
        // The batch that failed is in; what was written since is durable only once it is too.
        if (retry && this.#unsent.lines.length > 0) return this.sync(done);
        done(null);
      },
      (e: Error) => {
        if (e instanceof FencedError) this.#loseLease(e);
        else this.#retryExtent ??= { lines: lines.length, treeParts: treeParts.length };
        done(e);
      },
    );
    const tracked: Promise<void> = run.finally(() => {
      if (this.#inFlight === tracked) this.#inFlight = null;
    });
    this.#inFlight = tracked;
  }

  syncRetryable(e: unknown): boolean {
    return !(e instanceof FencedError) && transient(e);
  }

  /** 1 s, 2 s, 4 s, 8 s, then every 10 s. */
  retryDelayMs(attempt: number): number {
    return Math.min(10_000, 1000 * 2 ** (attempt - 1));
  }

  onLost(fn: (cause: Error) => void): void {
    this.#lostFns.push(fn);
    if (this.#lost) fn(this.#lost);
  }

  #loseLease(e: Error): void {
    if (this.#lost) return;
    this.#lost = e;
    this.#stopRenewing();
    this.#opts.log.warn("transcript_fenced", { epoch: this.epoch, error: e.message });
    for (const fn of this.#lostFns) fn(e);
  }

  #startRenewing(): void {
    const leaseMs = this.#opts.leaseMs ?? LEASE_MS;
    this.#renewTimer = setInterval(() => {
      renewLease(this.#sql, this.epoch, leaseMs).then(
        async (ok) => {
          if (this.#renewFailing) this.#opts.log.warn("transcript_lease_renewed", { epoch: this.epoch });
          this.#renewFailing = false;
          if (!ok && !this.#closing) this.#loseLease(new FencedError(this.epoch, (await readHead(this.#sql).catch(() => null))?.epoch ?? null));
        },
        (e: Error) => {
          if (!this.#renewFailing) this.#opts.log.warn("transcript_lease_unrenewed", { epoch: this.epoch, error: e.message, effect: "appends are fenced by the epoch: none lands once another writer takes the lease" });
          this.#renewFailing = true;
        },
      );
    }, this.#opts.renewMs ?? RENEW_MS);
    this.#renewTimer.unref?.();
  }

  #stopRenewing(): void {
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    this.#renewTimer = null;
  }

  close(): void {
    this.#closing = true;
    this.#stopRenewing();
  }

  /** Once every COMMIT started has ended: gives the lease back if it is still this writer's. */
  async closed(): Promise<void> {
    while (this.#inFlight) await this.#inFlight.catch(() => {});
    if (!this.#lost) await releaseLease(this.#sql, this.epoch).catch(() => {});
  }
}
