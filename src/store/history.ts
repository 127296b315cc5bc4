/**
 * history.db (bun:sqlite, WAL): what the server shows on join, on disk, so
 * that memory holds only the rooms in use (recent.ts). It keeps each room's
 * last sequence number, its last `keep` messages, the direct-message
 * sequence, and how far into the transcript all of it has been brought (the
 * seq and hash of the last entry applied). Everything in it can be rebuilt
 * from the transcript, so it is written with `synchronous = NORMAL` (a crash
 * may lose its last commits, which the next start replays) and a file that
 * cannot be read is replaced by an empty one.
 *
 * Sealed (`serve --auditor-key`): no message text is written in the clear.
 * Texts are sealed under a key made when the database is opened and held
 * only in memory (XChaCha20-Poly1305, aad = room ‖ 0 ‖ u64be(seq)), so a
 * room dropped from memory gets its history back while the server runs. At
 * the next open that key is gone and the rows of a sealed run are deleted;
 * so, when sealing, are any in the clear an unsealed run left (deleted rows
 * are overwritten, `secure_delete`, and the WAL is truncated).
 */
import { Database } from "bun:sqlite";
import { existsSync, rmSync } from "node:fs";
import { concat, fromUtf8, u64be, utf8 } from "../bytes.ts";
import { XCHACHA_KEY_LENGTH, randomBytes, wipe, xchachaOpenRandom, xchachaSealRandom } from "../crypto/index.ts";
import { createPrivateFile } from "../paths.ts";
import type { DirectMessage, KeptDirect } from "./journal.ts";
import type { KeptMessage, RoomState } from "./recent.ts";
import { type RoomState as ModState, roomStateFromJson, roomStateToJson } from "./roomstate.ts";

/** Its layout; another makes the server rebuild it from the transcript. */
const SCHEMA_VERSION = 4;

const SCHEMA = `
  CREATE TABLE state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq  INTEGER NOT NULL,
    applied_hash TEXT NOT NULL,
    direct_seq   INTEGER NOT NULL,
    keep         INTEGER NOT NULL,
    sealed       INTEGER NOT NULL
  ) STRICT;
  INSERT INTO state VALUES (1, 0, '', 0, 0, 0);
  CREATE TABLE rooms (
    name     TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE messages (
    room   TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text   TEXT,
    sealed BLOB,
    action INTEGER NOT NULL,
    tseq    INTEGER,
    edits   INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, seq),
    CHECK (CASE deleted WHEN 1 THEN text IS NULL AND sealed IS NULL ELSE (text IS NULL) <> (sealed IS NULL) END)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE directs (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    sender    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text      TEXT,
    sealed    BLOB,
    action    INTEGER NOT NULL,
    stored    INTEGER NOT NULL,
    tseq      INTEGER,
    edits     INTEGER NOT NULL DEFAULT 0,
    deleted   INTEGER NOT NULL DEFAULT 0,
    CHECK (CASE deleted WHEN 1 THEN text IS NULL AND sealed IS NULL ELSE (text IS NULL) <> (sealed IS NULL) END)
  ) STRICT;
  CREATE INDEX directs_to ON directs (recipient, stored, seq);
  CREATE INDEX directs_recipient ON directs (recipient, seq);
  CREATE INDEX directs_pair ON directs (sender, recipient, seq);
  CREATE INDEX directs_ts ON directs (ts);
  CREATE TABLE delivered (
    user TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  -- Persistent rooms (PROTOCOL.md §7.9): each one's state as JSON (store/roomstate.ts), from its room_change entries.
  CREATE TABLE room_state (
    name  TEXT PRIMARY KEY,
    state TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;
  PRAGMA user_version = ${SCHEMA_VERSION};`;

export interface Applied {
  /** The seq and hash of the last transcript entry whose effects are in the database (0 and "" if none). */
  seq: number;
  hash: string;
}

/** What one transaction writes. */
export interface HistoryBatch {
  /** Messages for history (the newest `keep` of each room are kept). */
  messages: KeptMessage[];
  /** Edits (with text) and deletes (without) of kept messages, after `messages` (PROTOCOL.md §7.12). */
  changes: MessageChange[];
  /** Room sequence numbers (each room keeps the largest it was given). */
  seqs: Map<string, number>;
  /** The direct-message sequence (the largest is kept). */
  directSeq: number;
  /** Direct messages to keep (until the retention). */
  directs: KeptDirect[];
  /** Per user, the DM seq of its last login (the largest is kept). */
  delivered: Map<string, number>;
  /** Persistent rooms' states after the batch's room changes (null: dropped). */
  roomStates: Map<string, ModState | null>;
  applied: Applied;
}

/** An edit (`text`) or a delete (no `text`) of the message `seq` of `room`, or (no `room`) of the direct message `seq`. */
export interface MessageChange {
  room?: string;
  seq: number;
  text?: string;
}

interface DirectRow {
  seq: number;
  ts: number;
  sender: string;
  recipient: string;
  text: string | null;
  sealed: Uint8Array | null;
  action: number;
  stored: number;
  tseq: number | null;
  edits: number;
  deleted: number;
}

interface MessageRow {
  seq: number;
  ts: number;
  sender: string;
  text: string | null;
  sealed: Uint8Array | null;
  action: number;
  tseq: number | null;
  edits: number;
  deleted: number;
}

export class HistoryDb {
  readonly #db: Database;
  /** The in-memory key texts are sealed under, when sealing. */
  #key: Uint8Array | null;
  /** The statements of the hot path, prepared once. */
  readonly #q: ReturnType<typeof prepare>;
  readonly #apply: (b: HistoryBatch) => void;

  private constructor(
    db: Database,
    readonly keep: number,
    seal: boolean,
    /** Why every entry of the transcript must be replayed into it (null: only those after `applied`). */
    readonly rebuild: string | null,
  ) {
    this.#db = db;
    this.#key = seal ? randomBytes(XCHACHA_KEY_LENGTH) : null;
    this.#q = prepare(db);
    this.#apply = db.transaction((b: HistoryBatch) => this.#write(b));
  }

  /**
   * Opens (or creates) the database at `path` for `keep` messages per room.
   * An unreadable file is replaced by an empty database; so are the messages
   * of a database that kept fewer than `keep` per room (a larger --history
   * than last time), unless sealing (no text could come back).
   */
  static open(path: string, keep: number, seal: boolean): HistoryDb {
    let rebuild: string | null = existsSync(path) ? null : "history.db is missing";
    let db: Database;
    let was: State;
    try {
      [db, was] = connect(path);
    } catch (e) {
      rebuild = e instanceof OtherSchema ? e.message : `history.db is unreadable (${(e as Error).message})`;
      for (const p of [path, `${path}-wal`, `${path}-shm`]) rmSync(p, { force: true });
      [db, was] = connect(path);
    }
    const grew = !seal && was.keep < keep && was.applied_seq > 0;
    const h = new HistoryDb(db, keep, seal, grew ? `history.db keeps ${was.keep} messages per room, --history is ${keep}` : rebuild);
    if (grew) h.reset();
    // Rows of a sealed run are sealed under its key, gone now; rows in the clear must go when sealing.
    else if (seal || was.sealed) h.#dropMessages();
    db.query("UPDATE state SET keep = ?, sealed = ?").run(keep, seal ? 1 : 0);
    return h;
  }

  /** Deletes every message row, overwriting their bytes (secure_delete) in the file and its WAL. */
  #dropMessages(): void {
    if (this.#db.query("SELECT 1 FROM messages UNION ALL SELECT 1 FROM directs LIMIT 1").get() === null) return;
    this.#db.query("DELETE FROM messages").run();
    this.#db.query("DELETE FROM directs").run();
    this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  get applied(): Applied {
    const r = this.#db.query<{ applied_seq: number; applied_hash: string }, []>("SELECT applied_seq, applied_hash FROM state").get()!;
    return { seq: r.applied_seq, hash: r.applied_hash };
  }

  get directSeq(): number {
    return this.#db.query<{ direct_seq: number }, []>("SELECT direct_seq FROM state").get()!.direct_seq;
  }

  /**
   * Forgets every message and where the transcript was applied to, for a
   * replay of the whole transcript. Sequence numbers stay: the replay only
   * raises them, so none is reused even if the transcript lost entries.
   */
  reset(): void {
    this.#db.transaction(() => {
      this.#db.query("DELETE FROM messages").run();
      this.#db.query("DELETE FROM directs").run();
      this.#db.query("DELETE FROM delivered").run();
      this.#db.query("DELETE FROM room_state").run();
      this.#db.query("UPDATE state SET applied_seq = 0, applied_hash = '', keep = ?").run(this.keep);
    })();
  }

  /**
   * Runs a replay (many batches) as one transaction: a page that many
   * batches touch is written to the WAL once, not once per batch, and a
   * crash part way leaves the database as it was. The WAL is checkpointed
   * at the end, so that the server does not meet a long checkpoint on its
   * first message.
   */
  replay<T>(fn: () => T): T {
    try {
      return this.#db.transaction(fn)();
    } finally {
      this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    }
  }

  /** Writes a batch in one transaction. */
  apply(b: HistoryBatch): void {
    this.#apply(b);
  }

  #write(b: HistoryBatch): void {
    const q = this.#q;
    if (this.keep > 0 && b.messages.length > 0) {
      const rooms = new Set<string>();
      for (const m of b.messages) {
        const sealed = this.#key && m.text !== undefined ? xchachaSealRandom(this.#key, utf8(m.text), aad(m.room, m.seq)) : null;
        q.insert.run(m.room, m.seq, m.ts, m.from, sealed ? null : (m.text ?? null), sealed, m.action ? 1 : 0, m.tseq ?? null, m.edits ?? 0, m.deleted ? 1 : 0);
        rooms.add(m.room);
      }
      for (const room of rooms) q.trim.run(room, room, this.keep - 1);
    }
    for (const { message: m, stored, tseq, edits } of b.directs) {
      const sealed = this.#key && m.text !== undefined ? xchachaSealRandom(this.#key, utf8(m.text), directAad(m.seq)) : null;
      q.insertDirect.run(m.seq, m.ts, m.from, m.to, sealed ? null : (m.text ?? null), sealed, m.action ? 1 : 0, stored ? 1 : 0, tseq ?? null, edits ?? 0, m.deleted ? 1 : 0);
    }
    // after the messages they change, which may be in this batch
    for (const c of b.changes) {
      if (c.room === undefined) {
        if (c.text === undefined) q.eraseDirect.run(c.seq);
        else {
          const sealed = this.#key ? xchachaSealRandom(this.#key, utf8(c.text), directAad(c.seq)) : null;
          q.editDirect.run(sealed ? null : c.text, sealed, c.seq);
        }
      } else if (c.text === undefined) q.erase.run(c.room, c.seq);
      else {
        const sealed = this.#key ? xchachaSealRandom(this.#key, utf8(c.text), aad(c.room, c.seq)) : null;
        q.edit.run(sealed ? null : c.text, sealed, c.room, c.seq);
      }
    }
    for (const [user, seq] of b.delivered) q.delivered.run(user, seq);
    for (const [room, st] of b.roomStates) {
      if (st) q.setRoomState.run(room, roomStateToJson(st));
      else q.dropRoomState.run(room);
    }
    for (const [room, n] of b.seqs) q.seq.run(room, n);
    q.applied.run(b.applied.seq, b.applied.hash, b.directSeq);
  }

  /** A room's last sequence number and its last `limit` messages (at most `keep`), oldest first. */
  room(name: string, limit = this.keep): RoomState {
    const seq = this.#q.roomSeq.get(name)?.last_seq ?? 0;
    const n = Math.min(limit, this.keep);
    if (n <= 0 || seq === 0) return { seq, messages: [] };
    return { seq, messages: this.#messages(name, this.#q.roomMessages.all(name, n).reverse()) };
  }

  /** The kept messages of `room` after `since`, oldest first: the first `limit` of them (a member catching up, PROTOCOL.md §7.3). */
  after(room: string, since: number, limit: number): KeptMessage[] {
    if (limit <= 0 || this.keep === 0) return [];
    return this.#messages(room, this.#q.roomAfter.all(room, since, limit));
  }

  /** Rows (oldest first) as kept messages; a sealed text this run cannot open is left out. */
  #messages(name: string, rows: MessageRow[]): KeptMessage[] {
    const messages: KeptMessage[] = [];
    for (const r of rows) {
      const kept = { ...(r.tseq !== null ? { tseq: r.tseq } : {}), ...(r.edits > 0 ? { edits: r.edits } : {}) };
      if (r.deleted) {
        messages.push({ type: "message", room: name, seq: r.seq, ts: r.ts, from: r.sender, deleted: true, ...kept });
        continue;
      }
      const text = r.text ?? this.#open(name, r);
      if (text !== null) messages.push({ type: "message", room: name, seq: r.seq, ts: r.ts, from: r.sender, text, ...(r.action ? { action: true } : {}), ...(r.edits > 0 ? { edited: true } : {}), ...kept });
    }
    return messages;
  }

  /** Every persistent room's state (PROTOCOL.md §7.9). */
  roomStates(): Map<string, ModState> {
    return new Map(this.#q.roomStates.all().map((r) => [r.name, roomStateFromJson(r.state)]));
  }

  /** One persistent room's state, or null. */
  roomState(name: string): ModState | null {
    const r = this.#q.roomState.get(name);
    return r ? roomStateFromJson(r.state) : null;
  }

  /** The DMs to `user` (stored or delivered live) with ts >= `since` and seq > `after`, not deleted: the newest `limit`, oldest first. */
  missedDirects(user: string, since: number, after: number, limit: number): DirectMessage[] {
    return this.#directs(this.#q.missed.all(user, after, since, limit));
  }

  /** The DM seq of `user`'s last login recorded here (0 if none). */
  deliveredSeq(user: string): number {
    return this.#q.deliveredSeq.get(user)?.seq ?? 0;
  }

  /** Stored DMs to `user` with ts >= `since` and seq > `after`. */
  countStored(user: string, since: number, after: number): number {
    return this.#q.countStored.get(user, since, after)!.n;
  }

  /** The DMs between `a` and `b` with ts >= `since` and seq < `before`: the newest `limit`, oldest first. */
  directsBetween(a: string, b: string, since: number, before: number, limit: number): DirectMessage[] {
    return this.#directs(this.#q.between.all(a, b, b, a, before, since, limit));
  }

  /** Deletes the DMs with ts < `before`. */
  expireDirects(before: number): void {
    this.#q.expire.run(before);
  }

  /** The direct message `seq` as kept, with what an edit needs; undefined if it is not kept (or not readable). */
  direct(seq: number): KeptDirect | undefined {
    const r = this.#q.direct.get(seq);
    const message = r ? this.#directOf(r) : null;
    return r && message ? { message, stored: r.stored === 1, ...(r.tseq !== null ? { tseq: r.tseq } : {}), ...(r.edits > 0 ? { edits: r.edits } : {}) } : undefined;
  }

  /** Rows newest first to messages oldest first (rows sealed by an earlier run never come back: dropped at open). */
  #directs(rows: DirectRow[]): DirectMessage[] {
    const out: DirectMessage[] = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      const m = this.#directOf(rows[i]!);
      if (m) out.push(m);
    }
    return out;
  }

  /** A row as a message: edited, or deleted without text (PROTOCOL.md §7.12); null if its text cannot be read. */
  #directOf(r: DirectRow): DirectMessage | null {
    const head = { type: "direct", seq: r.seq, ts: r.ts, from: r.sender, to: r.recipient } as const;
    if (r.deleted) return { ...head, deleted: true };
    const text = r.text ?? this.#openSealed(r.sealed, directAad(r.seq));
    return text === null ? null : { ...head, text, ...(r.action ? { action: true } : {}), ...(r.edits > 0 ? { edited: true } : {}) };
  }

  #open(room: string, r: MessageRow): string | null {
    return this.#openSealed(r.sealed, aad(room, r.seq));
  }

  #openSealed(sealed: Uint8Array | null, ad: Uint8Array): string | null {
    if (!this.#key || !sealed) return null;
    try {
      return fromUtf8(xchachaOpenRandom(this.#key, sealed, ad));
    } catch {
      return null; // not sealed by this run: dropped at open, so never expected
    }
  }

  close(): void {
    if (this.#key) wipe(this.#key);
    this.#key = null;
    for (const st of Object.values(this.#q)) st.finalize();
    this.#db.close(false);
  }
}

const DIRECT_COLUMNS = "seq, ts, sender, recipient, text, sealed, action, stored, tseq, edits, deleted";

function prepare(db: Database) {
  return {
    insert: db.prepare<void, [string, number, number, string, string | null, Uint8Array | null, number, number | null, number, number]>(
      "INSERT OR REPLACE INTO messages (room, seq, ts, sender, text, sealed, action, tseq, edits, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    edit: db.prepare<void, [string | null, Uint8Array | null, string, number]>("UPDATE messages SET text = ?, sealed = ?, edits = edits + 1 WHERE room = ? AND seq = ? AND deleted = 0"),
    erase: db.prepare<void, [string, number]>("UPDATE messages SET text = NULL, sealed = NULL, action = 0, deleted = 1 WHERE room = ? AND seq = ?"),
    // keeps a room's newest `keep` rows (its `keep`-th newest seq and above)
    trim: db.prepare<void, [string, string, number]>("DELETE FROM messages WHERE room = ? AND seq < (SELECT seq FROM messages WHERE room = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)"),
    seq: db.prepare<void, [string, number]>("INSERT INTO rooms (name, last_seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)"),
    applied: db.prepare<void, [number, string, number]>("UPDATE state SET applied_seq = ?, applied_hash = ?, direct_seq = max(direct_seq, ?)"),
    roomSeq: db.prepare<{ last_seq: number }, [string]>("SELECT last_seq FROM rooms WHERE name = ?"),
    insertDirect: db.prepare<void, [number, number, string, string, string | null, Uint8Array | null, number, number, number | null, number, number]>(
      "INSERT OR REPLACE INTO directs (seq, ts, sender, recipient, text, sealed, action, stored, tseq, edits, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    editDirect: db.prepare<void, [string | null, Uint8Array | null, number]>("UPDATE directs SET text = ?, sealed = ?, edits = edits + 1 WHERE seq = ? AND deleted = 0"),
    eraseDirect: db.prepare<void, [number]>("UPDATE directs SET text = NULL, sealed = NULL, action = 0, deleted = 1 WHERE seq = ?"),
    direct: db.prepare<DirectRow, [number]>(`SELECT ${DIRECT_COLUMNS} FROM directs WHERE seq = ?`),
    delivered: db.prepare<void, [string, number]>("INSERT INTO delivered (user, seq) VALUES (?, ?) ON CONFLICT (user) DO UPDATE SET seq = max(seq, excluded.seq)"),
    deliveredSeq: db.prepare<{ seq: number }, [string]>("SELECT seq FROM delivered WHERE user = ?"),
    // a deleted stored DM is not delivered late (PROTOCOL.md §7.12)
    missed: db.prepare<DirectRow, [string, number, number, number]>(
      `SELECT ${DIRECT_COLUMNS} FROM directs WHERE recipient = ? AND seq > ? AND deleted = 0 AND ts >= ? ORDER BY seq DESC LIMIT ?`,
    ),
    countStored: db.prepare<{ n: number }, [string, number, number]>("SELECT count(*) AS n FROM directs WHERE recipient = ? AND stored = 1 AND ts >= ? AND seq > ?"),
    between: db.prepare<DirectRow, [string, string, string, string, number, number, number]>(
      `SELECT ${DIRECT_COLUMNS} FROM directs WHERE ((sender = ? AND recipient = ?) OR (sender = ? AND recipient = ?)) AND seq < ? AND ts >= ? ORDER BY seq DESC LIMIT ?`,
    ),
    expire: db.prepare<void, [number]>("DELETE FROM directs WHERE ts < ?"),
    setRoomState: db.prepare<void, [string, string]>("INSERT OR REPLACE INTO room_state (name, state) VALUES (?, ?)"),
    dropRoomState: db.prepare<void, [string]>("DELETE FROM room_state WHERE name = ?"),
    roomStates: db.prepare<{ name: string; state: string }, []>("SELECT name, state FROM room_state"),
    roomState: db.prepare<{ state: string }, [string]>("SELECT state FROM room_state WHERE name = ?"),
    roomMessages: db.prepare<MessageRow, [string, number]>("SELECT seq, ts, sender, text, sealed, action, tseq, edits, deleted FROM messages WHERE room = ? ORDER BY seq DESC LIMIT ?"),
    roomAfter: db.prepare<MessageRow, [string, number, number]>("SELECT seq, ts, sender, text, sealed, action, tseq, edits, deleted FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?"),
  };
}

function aad(room: string, seq: number): Uint8Array {
  return concat(utf8(room), new Uint8Array([0]), u64be(BigInt(seq)));
}

/** A DM's aad: a NUL first, which no room name has, so a DM's sealed text cannot pass for a room message's. */
function directAad(seq: number): Uint8Array {
  return concat(new Uint8Array([0]), utf8("direct"), new Uint8Array([0]), u64be(BigInt(seq)));
}

interface State {
  keep: number;
  applied_seq: number;
  sealed: number;
}

/** A history.db another version of securechat wrote: not damaged, only laid out differently. */
class OtherSchema extends Error {
  constructor(readonly version: number) {
    super(`history.db was written by another version of securechat (schema ${version}; this one keeps ${SCHEMA_VERSION})`);
  }
}

/** Opens the database with its schema and reads its state, or throws if the file is not one this version can use. */
function connect(path: string): [Database, State] {
  createPrivateFile(path);
  const db = new Database(path, { create: true, strict: true });
  try {
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON; PRAGMA busy_timeout = 5000;");
    const version = db.query<{ user_version: number }, []>("PRAGMA user_version").get()!.user_version;
    if (version === 0) db.transaction(() => db.exec(SCHEMA))();
    else if (version !== SCHEMA_VERSION) throw new OtherSchema(version);
    // Added within schema 4 (a login reads the DMs to its user after its device's marker): built once on an older file.
    db.exec("CREATE INDEX IF NOT EXISTS directs_recipient ON directs (recipient, seq)");
    const state = db.query<State, []>("SELECT keep, applied_seq, sealed FROM state WHERE id = 1").get();
    if (!state) throw new Error("no state row");
    return [db, state];
  } catch (e) {
    db.close(false);
    throw e;
  }
}
