/**
 * The chat core's Journal on the transcript kept in PostgreSQL (TRANSCRIPT.md
 * §2.7): every event becomes an entry through the writer on PgStorage, and
 * what the core reads back — room history, room numbers, direct messages,
 * who has been shown which stored DM, the persistent rooms — is kept in the
 * `log_*` history tables, written by statements attached to the entry's line
 * (PgStorage.attach): committed in the transaction that commits the line, or
 * not at all. The tables never get ahead of the log, nor fall behind it.
 *
 * The Journal's reads are synchronous; the database is not. What every read
 * may need at any time is loaded when the journal opens: each room's last
 * number, the persistent rooms' states, the last DM number and the DMs still
 * The rest is loaded by `prepare`: a room's recent history before the
 * first read of it (join, history), and each direct-message read's own
 * answer, by a query as bounded as the read (what a login is shown, the
 * count a DM to someone offline checks, a page of `/history @user`, the one
 * DM an edit names). Memory holds direct messages only while their line is
 * not yet committed, and an answer only from its prepare to its read: it
 * never grows with what users have sent. `prepare` returns null when
 * nothing is missing. A read that was not prepared sees only what this
 * journal holds, and says so once in the log (`history_unprepared`).
 *
 * With an auditor key (sealed bodies) the tables keep numbers, not texts:
 * the server cannot read sealed bodies back, so, as with history.db, a
 * restart keeps the rooms' numbers and shows no older history.
 */
import type { SQL } from "bun";
import type { Logger } from "../log.ts";
import {
  type AckedCid,
  type DirectMessage,
  type Journal,
  type JournalEvent,
  type KeptDirect,
  type KeptMessage,
  type Need,
  type Receipt,
  type RoomMessage,
  changedDirect,
  changedKept,
  copyRoomStates,
  countUndelivered,
  isBetween,
  newest,
} from "../store/journal.ts";
import { readLinesAt } from "../store/pg/log.ts";
import { DEFAULT_HISTORY_MEMORY, RecentRooms, type RoomState as RecentState, shown } from "../store/recent.ts";
import { type RoomState, applyRoomChange, roomStateFromJson, roomStateToJson } from "../store/roomstate.ts";
import { CID_SCAN_ENTRIES, ackedCidsIn } from "./cids.ts";
import { EDIT_REACH } from "./format.ts";
import { WriterJournal, handled, toEntry } from "./journal.ts";
import { type AttachGroup, type PgStorage, type PgStorageOptions, PgStorage as Storage } from "./pgstorage.ts";
import { TranscriptWriter, type WriterOptions } from "./writer.ts";

export interface PgJournalOptions extends WriterOptions {
  /** Messages of history kept per room in memory and shown on join (serve --history). */
  history: number;
  /** The most messages after a `since` a member catching up is given (serve --history-keep). */
  historyKeep?: number;
  /** Estimated bytes of room history held in memory (serve --history-memory). */
  historyMemory?: number;
  /** This node, as the writer lease names its holder. */
  holder: string;
  leaseMs?: PgStorageOptions["leaseMs"];
  renewMs?: PgStorageOptions["renewMs"];
}

/** How long a prepared direct-message answer waits for its read before it is dropped (a read that never came). */
const ANSWER_TTL_MS = 60_000;
/** Prepared direct-message answers kept at once, the oldest dropped first (its read then sees memory only, and says so). */
const ANSWERS_MAX = 4096;

/**
 * The answer to one prepared direct-message read: what the query found,
 * plus every matching DM appended or changed since the prepare began (so
 * nothing committed between the query's snapshot and the read is missed).
 */
interface DirectAnswer {
  /** The DMs the read may see, by seq: the query's rows, overridden by newer copies from appends. */
  directs: Map<number, KeptDirect>;
  /** Seqs set by an append or change since the prepare began: the query's row for them is older. */
  fresh: Set<number>;
  /** Whether a DM (as appended or changed) belongs in this answer. */
  matches: (d: KeptDirect) => boolean;
  /** An undelivered count's delivery mark (for other answers: 0). */
  delivered: number;
  /** For undelivered answers: the user whose mark this is. */
  user?: string;
  /** The query, while it runs. */
  loading: Promise<void> | null;
  /** Reads still to come (prepares of the same read share the answer). */
  readers: number;
  /** When it was made (ms), for ANSWER_TTL_MS. */
  at: number;
}

/** Rows per multi-row INSERT (PostgreSQL takes at most 65535 parameters in one statement). */
const ROWS_PER_INSERT = 1000;

/**
 * A commit's room messages: each room's last number moved on in one upsert
 * (its largest seq in the batch), and the messages' rows (bodies not sealed)
 * in one INSERT per ROWS_PER_INSERT.
 */
const MESSAGE_ROWS: AttachGroup<{ room: string; seq: number; tseq: number; msg: object | null }> = {
  async run(tx, items) {
    const last = new Map<string, number>();
    for (const i of items) last.set(i.room, Math.max(last.get(i.room) ?? 0, i.seq));
    const rooms = [...last].map(([room, last_seq]) => ({ room, last_seq }));
    for (let i = 0; i < rooms.length; i += ROWS_PER_INSERT) {
      await tx`INSERT INTO log_rooms ${tx(rooms.slice(i, i + ROWS_PER_INSERT))} ON CONFLICT (room) DO UPDATE SET last_seq = GREATEST(log_rooms.last_seq, EXCLUDED.last_seq)`;
    }
    const rows = items.flatMap((i) => (i.msg ? [{ room: i.room, seq: i.seq, tseq: i.tseq, msg: i.msg }] : []));
    for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) await tx`INSERT INTO log_messages ${tx(rows.slice(i, i + ROWS_PER_INSERT))}`;
  },
};

/**
 * Catch-up pages kept at once, all rooms together, the oldest dropped first
 * (a reconnect storm: one per rejoin still to be answered). A page whose
 * read never comes (a join refused, a connection gone) is dropped after
 * ANSWER_TTL_MS, as a direct-message answer is.
 */
export const CAUGHT_UP_MAX = 4096;

/** A page of a room's messages after one `since`, loaded for `readers` members catching up. */
interface CaughtUp {
  messages: KeptMessage[];
  /** As many as asked: more may follow its last. */
  full: boolean;
  readers: number;
  /** When it was loaded (ms), for ANSWER_TTL_MS. */
  at: number;
}

type MessageRow = { msg: RoomMessage; tseq: string; edits: number };
type DirectRow = { msg: DirectMessage; stored: boolean; tseq: string; edits: number };

function keptMessage(r: MessageRow): KeptMessage {
  return { ...r.msg, tseq: Number(r.tseq), ...(r.edits > 0 ? { edits: r.edits } : {}) };
}

function keptDirect(r: DirectRow): KeptDirect {
  return { message: r.msg, stored: r.stored, tseq: Number(r.tseq), ...(r.edits > 0 ? { edits: r.edits } : {}) };
}

export class PgJournal extends WriterJournal implements Journal {
  readonly rooms: RecentRooms;
  // A line not yet committed is lost for good if this writer is fenced, and another writer numbers on from
  // before it: nothing the core sends may show one before it is. The cluster's core holds all it sends, in
  // order, until settled() (redislink.ts CoreEndpoint).
  readonly #sql: SQL;
  readonly #storage: PgStorage;
  readonly #log: Logger;
  readonly #sealed: boolean;
  /** Each room's last number: every room, so numbers never repeat whatever memory holds. */
  readonly #seqs: Map<string, number>;
  /** Rooms' recent history loaded by prepare, until the room's first read takes it. */
  readonly #loaded = new Map<string, { state: RecentState; at: number }>();
  /** Rooms whose memory holds their history (not only what was added since they came back). */
  readonly #whole = new Set<string>();
  /**
   * Per room and `since` (caughtUpKey), the page prepare loaded for members
   * catching up (`after`), until as many reads as prepares took it: several
   * members may rejoin one room at once from different seqs. Oldest first;
   * at most CAUGHT_UP_MAX, each for ANSWER_TTL_MS (a dropped page's reader
   * sees memory only, and says so).
   */
  readonly #caughtUp = new Map<string, CaughtUp>();
  readonly #now: () => number;
  readonly #historyKeep: number;
  /** What one answer to a member catching up reads (Chat's #sendHistory: --history, and one to tell whether more remain). */
  readonly #page: number;
  readonly #roomStates: Map<string, RoomState>;
  #directSeq: number;
  /** The DMs (and edited copies) whose line is not yet committed, by seq: a query cannot see them yet. */
  readonly #directs = new Map<number, KeptDirect>();
  /** Delivery marks (session_open) not yet committed, by user. */
  readonly #delivered = new Map<string, number>();
  /** Prepared direct-message answers, by read (answerKey), oldest first. */
  readonly #answers = new Map<string, DirectAnswer>();
  /** The DM the last editableDirect read returned: the edit or delete appended next, in the same turn, changes it. */
  #editing: KeptDirect | undefined;
  readonly #warned = new Set<string>();
  #closed = false;
  /** Loaded at open: what the previous writers acknowledged with a client message id (ackedCids). */
  readonly #cids: AckedCid[];
  /** The durable promise of the last entry appended, until it settles (settled()). */
  #unsettled: Promise<void> | null = null;

  private constructor(writer: TranscriptWriter, sql: SQL, storage: PgStorage, opts: PgJournalOptions, loaded: Loaded) {
    super(writer);
    this.#sql = sql;
    this.#storage = storage;
    this.#log = opts.log;
    this.#sealed = opts.auditorKey !== undefined;
    this.#seqs = loaded.seqs;
    this.#roomStates = loaded.states;
    this.#directSeq = loaded.directSeq;
    this.#cids = loaded.cids;
    this.#historyKeep = Math.max(opts.history, opts.historyKeep ?? opts.history);
    this.#page = opts.history + 1;
    this.#now = opts.now ?? Date.now;
    this.rooms = new RecentRooms(opts.history, opts.historyMemory ?? DEFAULT_HISTORY_MEMORY, (room) => this.#load(room));
  }

  /** Takes the writer lease and opens the log; null while another node holds the lease. */
  static async open(sql: SQL, opts: PgJournalOptions): Promise<PgJournal | null> {
    const storage = await Storage.open(sql, { holder: opts.holder, log: opts.log, leaseMs: opts.leaseMs, renewMs: opts.renewMs });
    if (!storage) return null;
    const head = Number((await sql`SELECT seq FROM log_head WHERE id = 1`)[0].seq);
    const [rooms, counters, tail] = await Promise.all([
      sql`SELECT room, last_seq, state FROM log_rooms`,
      sql`SELECT direct_seq FROM log_counters WHERE id = 1`,
      // The previous writers' last lines, newest first: their acknowledged client message ids (cids.ts).
      sql`SELECT bytes FROM log_lines WHERE seq > ${head - CID_SCAN_ENTRIES} ORDER BY seq DESC`,
    ]);
    const loaded: Loaded = {
      seqs: new Map(rooms.map((r: { room: string; last_seq: string }) => [r.room, Number(r.last_seq)])),
      states: new Map(rooms.filter((r: { state: string | null }) => r.state !== null).map((r: { room: string; state: string }) => [r.room, roomStateFromJson(r.state)])),
      directSeq: Number(counters[0].direct_seq),
      cids: ackedCidsIn(
        tail.map((r: { bytes: Uint8Array }) => Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength)),
        0,
      ),
    };
    const writer = TranscriptWriter.openOn(storage, opts);
    return new PgJournal(writer, sql, storage, opts, loaded);
  }

  /**
   * Loads what the next synchronous read named by `need` reads: a room's
   * recent history, a catch-up page, or one direct-message read's answer;
   * null when it is already here.
   */
  prepare(need: Need): Promise<void> | null {
    const jobs: Promise<void>[] = [];
    const { room } = need;
    // A room loaded for a read that never came (a join or an edit refused) goes after ANSWER_TTL_MS, oldest first.
    const now = this.#now();
    for (const [r, l] of this.#loaded) {
      if (now - l.at < ANSWER_TTL_MS) break;
      this.#loaded.delete(r);
    }
    if (room !== undefined && !(this.rooms.holds(room) && this.#whole.has(room)) && !this.#loaded.has(room) && (this.#seqs.get(room) ?? 0) > 0) jobs.push(this.#prepareRoom(room));
    if (room !== undefined && need.since !== undefined && !this.#memoryHasAfter(room, need.since)) jobs.push(this.#prepareAfter(room, need.since, need.limit));
    const direct = this.#prepareDirects(need);
    if (direct) jobs.push(direct);
    return jobs.length === 0 ? null : Promise.all(jobs).then(() => {});
  }

  async #prepareRoom(room: string): Promise<void> {
    const rows = this.#sealed ? [] : await this.#sql`SELECT msg, tseq, edits FROM log_messages WHERE room = ${room} ORDER BY seq DESC LIMIT ${this.rooms.keep}`;
    if (this.rooms.holds(room) && this.#whole.has(room)) return; // read meanwhile
    this.#loaded.set(room, { state: { seq: this.#seqs.get(room) ?? 0, messages: (rows as MessageRow[]).map(keptMessage).reverse() }, at: this.#now() });
  }

  /**
   * One page of what a member catching up reads: the messages after `since`
   * among the room's last --history-keep (all that history.db would keep;
   * log_messages keeps every one), at most `limit` of them. Never more than
   * a page, so a request costs the database and memory what its answer does.
   */
  async #prepareAfter(room: string, since: number, limit = this.#page): Promise<void> {
    const page = Math.max(1, Math.min(limit, this.#historyKeep));
    const from = Math.max(since, this.lastSeq(room) - this.#historyKeep);
    const rows = this.#sealed ? [] : await this.#sql`SELECT msg, tseq, edits FROM log_messages WHERE room = ${room} AND seq > ${from} ORDER BY seq LIMIT ${page}`;
    const key = caughtUpKey(room, since);
    const now = this.#now();
    const readers = (this.#caughtUp.get(key)?.readers ?? 0) + 1;
    this.#caughtUp.delete(key);
    this.#caughtUp.set(key, { messages: (rows as MessageRow[]).map(keptMessage), full: rows.length === page, readers, at: now });
    for (const [oldest, p] of this.#caughtUp) {
      if (this.#caughtUp.size <= CAUGHT_UP_MAX && now - p.at < ANSWER_TTL_MS) break;
      this.#caughtUp.delete(oldest);
    }
  }

  /** True if memory holds every message of `room` after `since` (or memory holds none and there are none). */
  #memoryHasAfter(room: string, since: number): boolean {
    if (!(this.rooms.holds(room) && this.#whole.has(room))) return false;
    const first = this.rooms.recent(room, this.rooms.keep)[0]?.seq;
    return first === undefined ? (this.#seqs.get(room) ?? 0) <= since : first <= since + 1;
  }

  /** The direct-message read `need` names, if any: its answer started (or joined, for a read already prepared). */
  #prepareDirects(need: Need): Promise<void> | null {
    const read = directRead(need);
    if (!read) return null;
    const now = this.#now();
    for (const [key, a] of this.#answers) {
      if (this.#answers.size < ANSWERS_MAX && now - a.at < ANSWER_TTL_MS) break;
      this.#answers.delete(key);
    }
    const known = this.#answers.get(read.key);
    if (known) {
      known.readers++;
      return known.loading;
    }
    const a: DirectAnswer = { directs: new Map(), fresh: new Set(), matches: read.matches, delivered: 0, loading: null, readers: 1, at: now, ...(read.user !== undefined ? { user: read.user } : {}) };
    // What no query can see yet: the DMs (and changes) whose lines are not committed, and a delivery mark.
    for (const d of this.#directs.values()) if (a.matches(d)) this.#fresh(a, d);
    if (read.user !== undefined) a.delivered = this.#delivered.get(read.user) ?? 0;
    this.#answers.set(read.key, a);
    a.loading = this.#query(read).then(({ rows, delivered }) => {
      for (const r of rows) {
        const d = keptDirect(r);
        if (!a.fresh.has(d.message.seq)) a.directs.set(d.message.seq, d);
      }
      a.delivered = Math.max(a.delivered, delivered);
      a.loading = null;
    });
    return a.loading;
  }

  /** The rows a direct-message read sees in the database, at most as many as it reads. */
  async #query(read: DirectRead): Promise<{ rows: DirectRow[]; delivered: number }> {
    const sql = this.#sql;
    const n = read.need;
    if (n.missed) {
      const { user, since, limit } = n.missed;
      return { rows: await sql`SELECT msg, stored, tseq, edits FROM log_directs WHERE recipient = ${user} AND ts >= ${since} ORDER BY seq DESC LIMIT ${limit}`, delivered: 0 };
    }
    if (n.undelivered) {
      const { user, since } = n.undelivered;
      const mark = Number((await sql`SELECT seq FROM log_delivered WHERE "user" = ${user}`)[0]?.seq ?? 0);
      // Bounded by the recipient's cap: past it a DM is refused, not stored.
      return { rows: await sql`SELECT msg, stored, tseq, edits FROM log_directs WHERE recipient = ${user} AND stored AND seq > ${mark} AND ts >= ${since} ORDER BY seq`, delivered: mark };
    }
    if (n.between) {
      const { a, b, since, before, limit } = n.between;
      return {
        rows: await sql`SELECT msg, stored, tseq, edits FROM log_directs WHERE ((sender = ${a} AND recipient = ${b}) OR (sender = ${b} AND recipient = ${a})) AND seq < ${before} AND ts >= ${since} ORDER BY seq DESC LIMIT ${limit}`,
        delivered: 0,
      };
    }
    return { rows: await sql`SELECT msg, stored, tseq, edits FROM log_directs WHERE seq = ${n.direct!}`, delivered: 0 };
  }

  /** Sets a DM appended or changed here into an answer: newer than any row its query finds. */
  #fresh(a: DirectAnswer, d: KeptDirect): void {
    a.directs.set(d.message.seq, d);
    a.fresh.add(d.message.seq);
  }

  /**
   * The answer prepared for a read (taken by it: the last of its readers
   * removes it), or, when none was, what memory holds, said once in the log.
   */
  #answer(need: Need, what: string): { directs: KeptDirect[]; delivered: number } {
    const read = directRead(need)!;
    const a = this.#answers.get(read.key);
    if (a && a.loading === null) {
      if (--a.readers <= 0) this.#answers.delete(read.key);
      return { directs: [...a.directs.values()].sort((x, y) => x.message.seq - y.message.seq), delivered: a.delivered };
    }
    this.#unprepared(what);
    const held = [...this.#directs.values()].filter(read.matches).sort((x, y) => x.message.seq - y.message.seq);
    return { directs: held, delivered: read.user !== undefined ? (this.#delivered.get(read.user) ?? 0) : 0 };
  }

  /** A DM appended or changed: held until its line is committed, and given to every answer it belongs in. */
  #hold(d: KeptDirect, durable: Promise<unknown>): void {
    const seq = d.message.seq;
    this.#directs.set(seq, d);
    const release = () => {
      if (this.#directs.get(seq) === d) this.#directs.delete(seq);
    };
    durable.then(release, release);
    for (const a of this.#answers.values()) if (a.directs.has(seq) || a.matches(d)) this.#fresh(a, d);
  }

  #load(room: string): RecentState {
    this.#whole.add(room);
    const loaded = this.#loaded.get(room);
    if (loaded) {
      this.#loaded.delete(room);
      return loaded.state;
    }
    const seq = this.#seqs.get(room) ?? 0;
    if (seq > 0) this.#unprepared(`room ${room}`);
    return { seq, messages: [] };
  }

  #unprepared(what: string): void {
    if (this.#warned.has(what)) return;
    this.#warned.add(what);
    this.#log.warn("history_unprepared", { what, effect: "read before prepare(): only what this node appended since it started is shown" });
  }

  /**
   * The messages with a client message id that the log's previous writers
   * acknowledged (a signed entry among its last CID_SCAN_ENTRIES lines, as
   * for a directory: transcript/cids.ts), with `ts` >= `since`, oldest
   * first: a new core answers a resend of one with its first ack instead
   * of recording it a second time.
   */
  ackedCids(since: number): AckedCid[] {
    return this.#cids.filter((a) => a.ts >= since);
  }

  /**
   * Resolves once every entry appended so far is durable (the last one's
   * COMMIT: the writer commits in order), rejects if it never will be; null
   * when none is waiting. The cluster's core publishes what it sends the
   * edges only after it (redislink.ts CoreEndpoint).
   */
  settled(): Promise<void> | null {
    return this.#unsettled;
  }

  append(e: JournalEvent): Receipt {
    if (this.#closed) return { durable: handled(Promise.reject(new Error("transcript closed"))) };
    if (this.writer.stopped) return { durable: handled(Promise.reject(new Error("transcript stopped"))) };
    const [type, fields] = toEntry(e);
    let appended: ReturnType<TranscriptWriter["append"]>;
    try {
      appended = this.writer.append(type, fields);
    } catch (err) {
      return { durable: handled(Promise.reject(err)) };
    }
    const { entry, durable } = appended;
    this.#unsettled = durable;
    const settle = () => {
      if (this.#unsettled === durable) this.#unsettled = null;
    };
    durable.then(settle, settle);
    const attach = (run: (tx: SQL) => Promise<unknown>) => this.#storage.attach(entry.seq, run);
    switch (e.kind) {
      case "message": {
        const m: KeptMessage = { ...e.message, ts: entry.ts, tseq: entry.seq };
        this.#seqs.set(m.room, Math.max(this.#seqs.get(m.room) ?? 0, m.seq));
        // A room not in memory comes back holding only this message: its history is to be loaded again.
        if (!this.rooms.holds(m.room)) this.#whole.delete(m.room);
        // Pinned in memory until its row is committed (or never will be).
        this.rooms.add(m, true);
        const unpin = () => this.rooms.unpin(m.room);
        durable.then(unpin, unpin);
        const msg = this.#sealed ? null : { ...e.message, ts: entry.ts };
        this.#storage.attachTo(entry.seq, MESSAGE_ROWS, { room: m.room, seq: m.seq, tseq: entry.seq, msg });
        break;
      }
      case "direct": {
        const d: KeptDirect = { message: { ...e.message, ts: entry.ts }, stored: e.stored === true, tseq: entry.seq };
        this.#directSeq = Math.max(this.#directSeq, d.message.seq);
        this.#hold(d, durable);
        const msg = this.#sealed ? { ...d.message, text: undefined } : d.message;
        attach(async (tx) => {
          await tx`INSERT INTO log_directs (seq, sender, recipient, ts, stored, tseq, msg) VALUES (${d.message.seq}, ${d.message.from}, ${d.message.to}, ${d.message.ts}, ${d.stored}, ${entry.seq}, ${msg})`;
          await tx`UPDATE log_counters SET direct_seq = GREATEST(direct_seq, ${d.message.seq}) WHERE id = 1`;
        });
        break;
      }
      case "session_open": {
        const mark = this.#directSeq;
        const user = e.user;
        this.#delivered.set(user, Math.max(this.#delivered.get(user) ?? 0, mark));
        const release = () => {
          if (this.#delivered.get(user) === mark) this.#delivered.delete(user);
        };
        durable.then(release, release);
        for (const a of this.#answers.values()) if (a.user === user) a.delivered = Math.max(a.delivered, mark);
        attach((tx) => tx`INSERT INTO log_delivered ("user", seq) VALUES (${e.user}, ${mark}) ON CONFLICT ("user") DO UPDATE SET seq = GREATEST(log_delivered.seq, EXCLUDED.seq)`);
        break;
      }
      case "room_change": {
        applyRoomChange(this.#roomStates, e);
        const st = this.#roomStates.get(e.room);
        const json = st ? roomStateToJson(st) : null;
        if (e.action !== "kick") attach((tx) => tx`INSERT INTO log_rooms (room, state) VALUES (${e.room}, ${json}) ON CONFLICT (room) DO UPDATE SET state = EXCLUDED.state`);
        break;
      }
      case "edit":
      case "delete": {
        if (e.room !== undefined) {
          const room = e.room;
          let after: KeptMessage | undefined;
          if (this.rooms.change(room, e.seq, (m) => (after = changedKept(m, e)), true)) {
            const unpin = () => this.rooms.unpin(room);
            durable.then(unpin, unpin);
          }
          if (after && !this.#sealed) {
            const { tseq: _t, edits, ...msg } = after;
            attach((tx) => tx`UPDATE log_messages SET msg = ${msg}, edits = ${edits ?? 0} WHERE room = ${room} AND seq = ${e.seq}`);
          }
        } else {
          const before = this.#directs.get(e.seq) ?? (this.#editing?.message.seq === e.seq ? this.#editing : undefined);
          this.#editing = undefined;
          if (before) {
            const d: KeptDirect = { ...before, ...changedDirect(before, e) };
            this.#hold(d, durable);
            const msg = this.#sealed ? { ...d.message, text: undefined } : d.message;
            attach((tx) => tx`UPDATE log_directs SET msg = ${msg}, edits = ${d.edits ?? 0} WHERE seq = ${e.seq}`);
          }
        }
        break;
      }
    }
    return { seq: entry.seq, hash: entry.hash, ts: entry.ts, durable: handled(durable) };
  }

  recent(room: string, limit: number): RoomMessage[] {
    return this.rooms.recent(room, limit);
  }

  /** What prepare({room, since}) loaded, then memory's newer and current copies; memory alone when it holds them all. */
  after(room: string, since: number, limit: number): RoomMessage[] {
    if (limit <= 0) return [];
    const held = this.rooms.recent(room, this.rooms.keep);
    const bySeq = new Map<number, RoomMessage>();
    const key = caughtUpKey(room, since);
    const loaded = this.#caughtUp.get(key);
    /** A full page loaded: messages past its last may not follow it without a hole, so memory's are taken only up to it. */
    let upTo = Number.POSITIVE_INFINITY;
    if (loaded) {
      for (const m of loaded.messages) if (m.seq > since) bySeq.set(m.seq, shown(m));
      if (loaded.full) upTo = loaded.messages.at(-1)!.seq;
    } else if (!this.#memoryHasAfter(room, since)) {
      this.#unprepared(`room ${room} after ${since}`);
    }
    if (loaded && --loaded.readers === 0) this.#caughtUp.delete(key);
    for (const m of held) if (m.seq > since && m.seq <= upTo) bySeq.set(m.seq, m);
    return [...bySeq.values()].sort((x, y) => x.seq - y.seq).slice(0, limit);
  }

  editable(room: string, seq: number): KeptMessage | undefined {
    const m = this.rooms.message(room, seq);
    return m?.tseq !== undefined && this.writer.seq + 2 - m.tseq <= EDIT_REACH ? m : undefined;
  }

  editableDirect(seq: number): KeptDirect | undefined {
    const prepared = this.#answer({ direct: seq }, `direct message ${seq}`).directs.find((x) => x.message.seq === seq);
    const d = this.#directs.get(seq) ?? prepared;
    this.#editing = d;
    return d?.tseq !== undefined && this.writer.seq + 2 - d.tseq <= EDIT_REACH ? d : undefined;
  }

  lastSeq(room: string): number {
    return this.rooms.holds(room) ? this.rooms.seq(room) : (this.#seqs.get(room) ?? 0);
  }

  lastDirectSeq(): number {
    return this.#directSeq;
  }

  missedDirects(user: string, since: number, after: number, limit: number): DirectMessage[] {
    const { directs } = this.#answer({ missed: { user, since, limit } }, `direct messages to ${user}`);
    return newest(
      directs.filter((d) => !d.message.deleted && d.message.to === user && d.message.ts >= since && d.message.seq > after),
      limit,
    );
  }

  undelivered(user: string, since: number): number {
    const { directs, delivered } = this.#answer({ undelivered: { user, since } }, `undelivered direct messages of ${user}`);
    return countUndelivered(directs, user, since, delivered);
  }

  directsBetween(a: string, b: string, since: number, before: number, limit: number): DirectMessage[] {
    const { directs } = this.#answer({ between: { a, b, since, before, limit } }, `direct messages between ${a} and ${b}`);
    return newest(
      directs.filter((d) => d.message.seq < before && d.message.ts >= since && isBetween(d.message, a, b)),
      limit,
    );
  }

  /** Forgets the DMs older than `before` in the database (in the background); what memory holds goes once committed. */
  expireDirects(before: number): void {
    if (this.#closed) return;
    this.#sql`DELETE FROM log_directs WHERE ts < ${before}`.catch((err: Error) => this.#log.warn("history_expire_failed", { error: err.message }));
  }

  /** Journal.readEntryLines: a log proof's lines, from the stored rows (the file journal bisects its files for entryLines). */
  async readEntryLines(seqs: readonly number[]): Promise<Map<number, Uint8Array>> {
    return new Map((await readLinesAt(this.#sql, seqs)).map((r) => [r.seq, r.bytes]));
  }

  roomStates(): Map<string, RoomState> {
    return copyRoomStates(this.#roomStates);
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.writer.close(reason);
  }

  /** What memory holds of what reads load: DMs not yet committed, prepared answers, catch-up pages and rooms' history not yet read (for tests). */
  get memory(): { directs: number; answers: number; pages: number; rooms: number } {
    return { directs: this.#directs.size, answers: this.#answers.size, pages: this.#caughtUp.size, rooms: this.#loaded.size };
  }

  /** The writer lease's epoch this journal writes under (a cluster's core says it to its edges). */
  get epoch(): number {
    return this.#storage.epoch;
  }

  /** Calls `fn` once the writer lease is lost (another node took it): nothing more is appended here. */
  onLost(fn: (cause: Error) => void): void {
    this.#storage.onLost(fn);
  }

  /** Once close's last COMMIT is done and the lease given back. */
  closed(): Promise<void> {
    return this.writer.closed();
  }
}

interface Loaded {
  seqs: Map<string, number>;
  states: Map<string, RoomState>;
  directSeq: number;
  /** The acknowledged client message ids among the log's last CID_SCAN_ENTRIES lines, oldest first. */
  cids: AckedCid[];
}

/** One direct-message read: the need that names it, its key among the answers, and which DMs belong in its answer. */
interface DirectRead {
  need: Need;
  key: string;
  matches: (d: KeptDirect) => boolean;
  /** An undelivered count: whose delivery mark it reads. */
  user?: string;
}

/** A catch-up page's key: its room and `since`. */
function caughtUpKey(room: string, since: number): string {
  return `${room}\0${since}`;
}

/**
 * The direct-message read `need` names, if any. The key leaves out `since`
 * (the read is made a moment after its prepare, with a later `since`, and
 * filters by it): an answer may hold a little more than its read shows.
 */
function directRead(need: Need): DirectRead | null {
  if (need.missed) {
    const { user, limit } = need.missed;
    return { need, key: `missed\0${user}\0${limit}`, matches: (d) => d.message.to === user };
  }
  if (need.undelivered) {
    const { user } = need.undelivered;
    return { need, key: `undelivered\0${user}`, matches: (d) => d.stored && d.message.to === user, user };
  }
  if (need.between) {
    const { a, b, before, limit } = need.between;
    return { need, key: `between\0${a}\0${b}\0${before}\0${limit}`, matches: (d) => d.message.seq < before && isBetween(d.message, a, b) };
  }
  if (need.direct !== undefined) {
    const seq = need.direct;
    return { need, key: `direct\0${seq}`, matches: (d) => d.message.seq === seq };
  }
  return null;
}
