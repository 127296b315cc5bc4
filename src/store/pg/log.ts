/**
 * The transcript in PostgreSQL (docs/TRANSCRIPT.md §2.7): the `log`
 * component's tables, the writer lease with its epoch, and the rows the
 * transcript's PostgreSQL storage (transcript/pgstorage.ts) and readers use.
 *
 *   log_lines  one row per line: `seq` (its position, 1-based, which is its
 *              entry's seq), the file it belongs to and its line number
 *              there (so an export reproduces the directory), the line's
 *              bytes without the LF, and whether it ends as a checkpoint
 *   log_tree   the Merkle tree's stored hashes (§3.6), in stored order,
 *              a run of 32-byte hashes per row from index `first`
 *   log_head   one row: the last line's seq and hash, the tree's size, and
 *              the epoch of the writer allowed to append
 *   log_lease  one row: who holds the writer lease, its epoch, until when
 *
 * One writer at a time (§2.1): a node appends only while it holds the lease
 * (`acquireLease`: taken when free or expired, by the database's clock,
 * each time with a new epoch, written to log_head in the same transaction;
 * renewed every RENEW_MS, for LEASE_MS). Every transaction that appends
 * updates log_head only `WHERE epoch = mine AND seq = the seq it continues`:
 * a writer whose lease was taken over — paused, partitioned, slow — finds
 * no row to update and appends nothing (fenced), however late it wakes.
 */
import type { SQL } from "bun";
import { SecureChatError } from "../../errors.ts";
import type { Component } from "./pg.ts";

/** How long a lease lasts without renewal, and how often its holder renews it. */
export const LEASE_MS = 5000;
export const RENEW_MS = 1000;

export const LOG_COMPONENT: Component = {
  name: "log",
  steps: [
    `CREATE TABLE log_lines (seq bigint PRIMARY KEY, file text NOT NULL, line integer NOT NULL, bytes bytea NOT NULL, is_checkpoint boolean NOT NULL);
     CREATE INDEX log_lines_checkpoints ON log_lines (seq) WHERE is_checkpoint;
     CREATE TABLE log_tree (first bigint PRIMARY KEY, hashes bytea NOT NULL);
     CREATE TABLE log_head (id smallint PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash text NOT NULL, tree_size bigint NOT NULL, epoch bigint NOT NULL);
     INSERT INTO log_head VALUES (1, 0, '', 0, 0);
     CREATE TABLE log_lease (id smallint PRIMARY KEY CHECK (id = 1), holder text NOT NULL, epoch bigint NOT NULL, expires_at timestamptz NOT NULL);`,
    // What the chat core reads back (transcript/pgjournal.ts), like history.db: written in the transaction of the line it comes from.
    `CREATE TABLE log_rooms (room text PRIMARY KEY, last_seq bigint NOT NULL DEFAULT 0, state text);
     CREATE TABLE log_messages (room text NOT NULL, seq bigint NOT NULL, tseq bigint NOT NULL, msg jsonb NOT NULL, edits integer NOT NULL DEFAULT 0, PRIMARY KEY (room, seq));
     CREATE TABLE log_directs (seq bigint PRIMARY KEY, sender text NOT NULL, recipient text NOT NULL, ts bigint NOT NULL, stored boolean NOT NULL, tseq bigint NOT NULL, msg jsonb NOT NULL, edits integer NOT NULL DEFAULT 0);
     CREATE INDEX log_directs_sender ON log_directs (sender, seq);
     CREATE INDEX log_directs_recipient ON log_directs (recipient, seq);
     CREATE INDEX log_directs_tseq ON log_directs (tseq);
     CREATE TABLE log_delivered ("user" text PRIMARY KEY, seq bigint NOT NULL);
     CREATE TABLE log_counters (id smallint PRIMARY KEY CHECK (id = 1), direct_seq bigint NOT NULL);
     INSERT INTO log_counters VALUES (1, 0);`,
    // The newest checkpoint witnesses cosigned (TRANSCRIPT.md §4.5), kept for whichever node is the core next.
    `CREATE TABLE log_cosigned (id smallint PRIMARY KEY CHECK (id = 1), size bigint NOT NULL, note text NOT NULL);`,
  ],
};

/** The kept cosigned checkpoint (a signed note with its cosignatures), or null. */
export async function readCosigned(sql: SQL): Promise<string | null> {
  const [r] = await sql`SELECT note FROM log_cosigned WHERE id = 1`;
  return r ? (r.note as string) : null;
}

/**
 * Keeps `note`, the cosigned checkpoint of the tree of `size` lines, in place
 * of the one kept, unless that one is of a larger tree (a core that was
 * replaced while a round ran must not put back an older checkpoint).
 */
export async function writeCosigned(sql: SQL, note: string, size: number): Promise<void> {
  await sql`INSERT INTO log_cosigned (id, size, note) VALUES (1, ${size}, ${note})
            ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size, note = EXCLUDED.note WHERE log_cosigned.size <= EXCLUDED.size`;
}

/** A writer whose lease was taken over: it may never append again. */
export class FencedError extends SecureChatError {
  constructor(mine: number, now: number | null) {
    super("transcript_fenced", `transcript: another writer holds the log's lease (epoch ${now ?? "unknown"}, this writer's ${mine}): this one stops appending`);
  }
}

/**
 * The lease, if `holder` may take it now: its new epoch; null while another
 * holds it. A lease is free once it has expired — but when the database
 * itself started after the lease expired (it was down, or restarted, and no
 * holder could renew), the holder gets a whole lease from the database's
 * start to renew it, so an outage of the database does not move the chat
 * core (and end every session) when the core is still there.
 */
export async function acquireLease(sql: SQL, holder: string, leaseMs = LEASE_MS): Promise<number | null> {
  return sql.begin(async (tx) => {
    const rows = await tx`SELECT holder, epoch,
                                 expires_at <= now() AND (pg_postmaster_start_time() <= expires_at OR now() >= pg_postmaster_start_time() + make_interval(secs => ${leaseMs / 1000})) AS expired
                          FROM log_lease WHERE id = 1 FOR UPDATE`;
    let epoch: number;
    if (rows.length === 0) {
      epoch = Number((await tx`SELECT epoch FROM log_head WHERE id = 1`)[0].epoch) + 1;
      await tx`INSERT INTO log_lease VALUES (1, ${holder}, ${epoch}, now() + make_interval(secs => ${leaseMs / 1000}))`;
    } else {
      if (!rows[0].expired) return null;
      epoch = Number(rows[0].epoch) + 1;
      await tx`UPDATE log_lease SET holder = ${holder}, epoch = ${epoch}, expires_at = now() + make_interval(secs => ${leaseMs / 1000}) WHERE id = 1`;
    }
    // The fence: from this COMMIT on, only this epoch appends.
    await tx`UPDATE log_head SET epoch = ${epoch} WHERE id = 1`;
    return epoch;
  });
}

/** Extends the lease of `epoch`; false when it is no longer this epoch's (taken over). */
export async function renewLease(sql: SQL, epoch: number, leaseMs = LEASE_MS): Promise<boolean> {
  const rows = await sql`UPDATE log_lease SET expires_at = now() + make_interval(secs => ${leaseMs / 1000}) WHERE id = 1 AND epoch = ${epoch} RETURNING epoch`;
  return rows.length === 1;
}

/** Gives the lease of `epoch` back at once (a clean stop), so the next writer need not wait for it to expire. */
export async function releaseLease(sql: SQL, epoch: number): Promise<void> {
  await sql`UPDATE log_lease SET expires_at = now() - interval '1 millisecond' WHERE id = 1 AND epoch = ${epoch}`;
}

export interface LogHead {
  seq: number;
  hash: string;
  treeSize: number;
  epoch: number;
}

export async function readHead(sql: SQL): Promise<LogHead> {
  const r = (await sql`SELECT seq, hash, tree_size, epoch FROM log_head WHERE id = 1`)[0];
  return { seq: Number(r.seq), hash: r.hash, treeSize: Number(r.tree_size), epoch: Number(r.epoch) };
}

export interface LineRow {
  seq: number;
  file: string;
  line: number;
  bytes: Uint8Array;
}

function lineRows(rows: { seq: string; file: string; line: number; bytes: Uint8Array }[]): LineRow[] {
  return rows.map((r) => ({ seq: Number(r.seq), file: r.file, line: Number(r.line), bytes: r.bytes }));
}

/** Lines with seq in [from, to], in order. */
export async function readLines(sql: SQL, from: number, to: number): Promise<LineRow[]> {
  return lineRows(await sql`SELECT seq, file, line, bytes FROM log_lines WHERE seq BETWEEN ${from} AND ${to} ORDER BY seq`);
}

/** The lines with these seqs (any order; those not stored are absent). */
export async function readLinesAt(sql: SQL, seqs: readonly number[]): Promise<LineRow[]> {
  if (seqs.length === 0) return [];
  return lineRows(await sql`SELECT seq, file, line, bytes FROM log_lines WHERE seq IN ${sql(seqs)}`);
}

/** Every line, `page` rows per query, in order. */
export async function* allLines(sql: SQL, page = 2000, from = 1): AsyncGenerator<LineRow[]> {
  let at = from;
  for (;;) {
    const rows = lineRows(await sql`SELECT seq, file, line, bytes FROM log_lines WHERE seq >= ${at} ORDER BY seq LIMIT ${page}`);
    if (rows.length === 0) return;
    yield rows;
    at = rows.at(-1)!.seq + 1;
  }
}

/** The seq of the last line stored as a checkpoint (0: none). */
export async function lastCheckpointSeq(sql: SQL): Promise<number> {
  const r = await sql`SELECT coalesce(max(seq), 0) AS seq FROM log_lines WHERE is_checkpoint`;
  return Number(r[0].seq);
}

/** The files, in order, with their lines and bytes (each line's LF counted). */
export async function listFiles(sql: SQL): Promise<{ name: string; first: number; lines: number; bytes: number }[]> {
  const rows = await sql`SELECT file, min(seq) AS first, count(*) AS lines, sum(octet_length(bytes) + 1) AS bytes FROM log_lines GROUP BY file ORDER BY min(seq)`;
  return rows.map((r: { file: string; first: string; lines: string; bytes: string }) => ({ name: r.file, first: Number(r.first), lines: Number(r.lines), bytes: Number(r.bytes) }));
}

/** The tree's stored hashes, in stored order, as one buffer; throws if a run is missing. */
export async function readTreeHashes(sql: SQL): Promise<Buffer> {
  const rows = await sql`SELECT first, hashes FROM log_tree ORDER BY first`;
  const parts: Buffer[] = [];
  let at = 0;
  for (const r of rows) {
    if (Number(r.first) !== at) throw new Error(`log_tree: hashes from ${at} missing (next run starts at ${r.first})`);
    parts.push(r.hashes);
    at += r.hashes.length / 32;
  }
  return Buffer.concat(parts);
}

export interface AppendBatch {
  epoch: number;
  /** The seq the first line continues from, and the new head. */
  after: number;
  head: { seq: number; hash: string; treeSize: number };
  lines: (LineRow & { isCheckpoint: boolean })[];
  tree: { first: number; hashes: Uint8Array } | null;
  /** Further statements for the same transaction, in order (what is derived from these lines). */
  attached?: ((tx: SQL) => Promise<unknown>)[];
}

/**
 * Appends the lines and hashes in one transaction, fenced by the epoch;
 * durable when it resolves (synchronous_commit on). A batch whose COMMIT
 * went through before its connection dropped is found already there and
 * counts as done. Throws FencedError when a newer epoch holds the log.
 */
export async function appendBatch(sql: SQL, b: AppendBatch): Promise<void> {
  await sql.begin(async (tx) => {
    const moved = await tx`UPDATE log_head SET seq = ${b.head.seq}, hash = ${b.head.hash}, tree_size = ${b.head.treeSize}
                           WHERE id = 1 AND epoch = ${b.epoch} AND seq = ${b.after} RETURNING seq`;
    if (moved.length === 0) {
      const now = (await tx`SELECT seq, hash, epoch FROM log_head WHERE id = 1`)[0];
      if (Number(now.epoch) !== b.epoch) throw new FencedError(b.epoch, Number(now.epoch));
      if (Number(now.seq) >= b.head.seq) {
        const there = await tx`SELECT bytes FROM log_lines WHERE seq = ${b.head.seq}`;
        const last = b.lines.at(-1);
        if (there.length === 1 && last && Buffer.compare(there[0].bytes, Buffer.from(last.bytes)) === 0) return; // committed already
      }
      throw new SecureChatError("transcript_diverged", `transcript: the database's log ends at seq ${now.seq}, not at ${b.after} where this writer continues`);
    }
    const rows = b.lines.map((l) => ({ seq: l.seq, file: l.file, line: l.line, bytes: Buffer.from(l.bytes), is_checkpoint: l.isCheckpoint }));
    for (let i = 0; i < rows.length; i += 1000) await tx`INSERT INTO log_lines ${tx(rows.slice(i, i + 1000))}`;
    if (b.tree && b.tree.hashes.length > 0) await tx`INSERT INTO log_tree (first, hashes) VALUES (${b.tree.first}, ${Buffer.from(b.tree.hashes)})`;
    for (const run of b.attached ?? []) await run(tx);
  });
}

/** Errors after which the same transaction may succeed later: the connection, or a server going or not yet up. */
export function transient(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? "";
  const state = String((e as { errno?: string }).errno ?? "");
  if (code.startsWith("ERR_POSTGRES_CONNECTION") || code === "ERR_POSTGRES_IDLE_TIMEOUT" || code === "ERR_POSTGRES_LIFETIME_TIMEOUT") return true;
  return /^(08|53|57P0|40001|40P01)/.test(state);
}
