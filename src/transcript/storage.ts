/**
 * Where the transcript writer's lines go (docs/TRANSCRIPT.md §2.1, §6, §7):
 * the writer (writer.ts) numbers, chains, signs and hashes the entries and
 * decides when a file ends; a storage keeps the bytes. Two exist: the
 * directory of JSONL files with tree.hashes beside it (filestorage.ts, the
 * single node's) and PostgreSQL (store/pg/log.ts, a cluster's), whose rows
 * hold the very same lines under the same file names.
 */
import type { Ed25519KeyPair } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { TranscriptFailure } from "./chain.ts";
import type { Entry } from "./format.ts";
import type { Hash } from "./merkle.ts";

/** The writer's Merkle tree (§3.6) over the lines, wherever its stored hashes are kept. */
export interface LogTree {
  readonly size: number;
  /** Why the stored hashes are no longer written, if they are not. */
  readonly broken: string | null;
  /** Where the stored hashes are, for the log. */
  readonly path: string;
  root(): Hash;
  /** The stored hash at `level`, `index`; null once they cannot be read. */
  read(level: number, index: number): Hash | null;
  /** Appends a line (without its LF) as the next leaf. */
  append(line: string | Uint8Array): void;
  /** Hands the hashes stored since the last flush to the storage. */
  flush(): void;
  /** After the last flush; `clean` at a clean stop. */
  close(clean: boolean): void;
}

/** What a storage found at the end of the log when the writer opened it. */
export interface OpenedLog {
  last: Entry | null;
  beforeLast: Entry | null;
  /** A torn last line cut by crash recovery (§7): its file and bytes. Never for a storage that commits whole lines. */
  torn: { file: string; bytes: Uint8Array } | null;
  /** The last durable tree checkpoint: the size it signs and its note. */
  signedTree: { size: number; note: string } | null;
  tree: LogTree | null;
  /** The last file, its name and size in bytes (null: none yet). */
  lastFile: { name: string; bytes: number } | null;
}

export interface OpenContext {
  hostKey: Ed25519KeyPair;
  log: Logger;
}

export interface LogStorage {
  /** Reads and recovers the end of the log, and opens its tree; once, before anything else. */
  open(ctx: OpenContext): OpenedLog;
  /** Lines written from now on belong to file `name`; `fresh`: it is empty (a torn only line was cut). */
  startFile(name: string, fresh: boolean): void;
  /** The current file is finished: true if everything written is durable now. */
  endFile(): boolean;
  /** Takes bytes of whole lines from `off` on; returns how many it took (at least one, or throws). */
  write(buf: Uint8Array, off: number): number;
  /** A write error after which the writer may wait and retry (a full disk), rather than fail for good. */
  writeRetryable(e: unknown): boolean;
  /** Makes everything written durable; `done` once it is, or with why not. */
  sync(done: (err: Error | null) => void): void;
  /** The same, blocking, where the storage can (files); absent, the writer uses `sync`. */
  syncNow?(): void;
  /** A sync error after which the writer may wait and retry (a database that is down), rather than fail for good. */
  syncRetryable(e: unknown): boolean;
  /** Bytes written but held in memory until a sync makes them durable (a database's batch); absent: none (a file's are in the page cache). */
  heldBytes?(): number;
  /** How long to wait before retry number `attempt` (1, 2, …); absent: the writer's retryMs. */
  retryDelayMs?(attempt: number): number;
  /** Calls `fn` if the storage learns, between writes, that this writer may no longer write (a lost lease). */
  onLost?(fn: (cause: Error) => void): void;
  /** Whether writing is possible at all (a file is open). */
  readonly ready: boolean;
  /** Releases what the storage holds, once what `sync` started has finished. */
  close(): void;
  /** Resolves once `close`'s work is done (a last COMMIT, a lease given back). */
  closed?(): Promise<void>;
}

/**
 * A storage's check of the log's end at open failed: rethrows anything but
 * a TranscriptFailure, which becomes `transcript_corrupt` naming the line
 * and how to verify the whole (`verify`: the command's arguments).
 */
export function refuseCorrupt(e: unknown, verify: string): never {
  if (!(e instanceof TranscriptFailure)) throw e;
  const p = e.problem;
  throw new SecureChatError(
    "transcript_corrupt",
    `transcript: ${p.file}:${p.line}: ${p.reason}; the server will not append to a transcript that does not verify: run "securechat transcript verify ${verify}"`,
    { cause: e },
  );
}
