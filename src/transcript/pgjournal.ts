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
 * within edit reach (EDIT_REACH entries). The rest is loaded by `prepare`:
 * a room's recent history before the first read of it (join, history), a
 * user's direct messages and delivery mark before the first read of them
 * (login, /history @user). `prepare` returns null when nothing is missing.
 * A read that was not prepared sees only what this journal appended since
 * it opened, and says so once in the log (`history_unprepared`).
 *
 * With an auditor key (sealed bodies) the tables keep numbers, not texts:
 * the server cannot read sealed bodies back, so, as with history.db, a
 * restart keeps the rooms' numbers and shows no older history.
 */
import type { SQL } from "bun";
import type { Logger } from "../log.ts";
import {
  type DirectMessage,
  type Journal,
  type JournalEvent,
  type KeptDirect,
  type KeptMessage,
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
import { EDIT_REACH } from "./format.ts";
import { WriterJournal, handled, toEntry } from "./journal.ts";
import { type PgStorage, type PgStorageOptions, PgStorage as Storage } from "./pgstorage.ts";
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

/** What prepare may be asked to load. */
export interface Need {
  room?: string;
  user?: string;
  /** With `room`: a member catching up will read the room's messages after this seq (`after`). */
  since?: number;
  /** With `since`: how many it will read (default: one answer's page, --history + 1; at most --history-keep). */
  limit?: number;
}

/** Pages of catch-up kept per room at once (a reconnect storm: one per rejoin still to be answered). */
const CAUGHT_UP_PER_ROOM = 64;

/** A page of a room's messages after one `since`, loaded for `readers` members catching up. */
interface CaughtUp {
  messages: KeptMessage[];
  /** As many as asked: more may follow its last. */
  full: boolean;
  readers: number;
}

interface UserDirects {
  /** The DMs to or from the user, in seq order. */
  directs: KeptDirect[];
  delivered: number;
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
  readonly #sql: SQL;
  readonly #storage: PgStorage;
  readonly #log: Logger;
  readonly #sealed: boolean;
  /** Each room's last number: every room, so numbers never repeat whatever memory holds. */
  readonly #seqs: Map<string, number>;
  /** Rooms' recent history loaded by prepare, until the room's first read takes it. */
  readonly #loaded = new Map<string, RecentState>();
  /** Rooms whose memory holds their history (not only what was added since they came back). */
  readonly #whole = new Set<string>();
  /**
   * Per room and `since`, the page prepare loaded for members catching up
   * (`after`), until as many reads as prepares took it: several members may
   * rejoin one room at once from different seqs. At most CAUGHT_UP_PER_ROOM
   * pages per room, the oldest dropped (its reader then sees memory only, and says so).
   */
  readonly #caughtUp = new Map<string, Map<number, CaughtUp>>();
  readonly #historyKeep: number;
  /** What one answer to a member catching up reads (Chat's #sendHistory: --history, and one to tell whether more remain). */
  readonly #page: number;
  readonly #roomStates: Map<string, RoomState>;
  #directSeq: number;
  /** The DMs within edit reach at open, and every one appended since, by seq. */
  readonly #directs = new Map<number, KeptDirect>();
  readonly #users = new Map<string, UserDirects>();
  /** Delivery marks set since open (a session_open), for users not loaded. */
  readonly #delivered = new Map<string, number>();
  readonly #warned = new Set<string>();
  #closed = false;

  private constructor(writer: TranscriptWriter, sql: SQL, storage: PgStorage, opts: PgJournalOptions, loaded: Loaded) {
    super(writer);
    this.#sql = sql;
    this.#storage = storage;
    this.#log = opts.log;
    this.#sealed = opts.auditorKey !== undefined;
    this.#seqs = loaded.seqs;
    this.#roomStates = loaded.states;
    this.#directSeq = loaded.directSeq;
    for (const d of loaded.directs) this.#directs.set(d.message.seq, d);
    this.#historyKeep = Math.max(opts.history, opts.historyKeep ?? opts.history);
    this.#page = opts.history + 1;
    this.rooms = new RecentRooms(opts.history, opts.historyMemory ?? DEFAULT_HISTORY_MEMORY, (room) => this.#load(room));
  }

  /** Takes the writer lease and opens the log; null while another node holds the lease. */
  static async open(sql: SQL, opts: PgJournalOptions): Promise<PgJournal | null> {
    const storage = await Storage.open(sql, { holder: opts.holder, log: opts.log, leaseMs: opts.leaseMs, renewMs: opts.renewMs });
    if (!storage) return null;
    const head = Number((await sql`SELECT seq FROM log_head WHERE id = 1`)[0].seq);
    const [rooms, counters, directs] = await Promise.all([
      sql`SELECT room, last_seq, state FROM log_rooms`,
      sql`SELECT direct_seq FROM log_counters WHERE id = 1`,
      sql`SELECT msg, stored, tseq, edits FROM log_directs WHERE tseq > ${head - EDIT_REACH} ORDER BY seq`,
    ]);
    const loaded: Loaded = {
      seqs: new Map(rooms.map((r: { room: string; last_seq: string }) => [r.room, Number(r.last_seq)])),
      states: new Map(rooms.filter((r: { state: string | null }) => r.state !== null).map((r: { room: string; state: string }) => [r.room, roomStateFromJson(r.state)])),
      directSeq: Number(counters[0].direct_seq),
      directs: directs.map(keptDirect),
    };
    const writer = TranscriptWriter.openOn(storage, opts);
    return new PgJournal(writer, sql, storage, opts, loaded);
  }

  /**
   * Loads what the next synchronous read of `need.room` (its recent
   * history) or of `need.user` (their DMs and delivery mark) needs; null
   * when it is already here.
   */
  prepare(need: Need): Promise<void> | null {
    const jobs: Promise<void>[] = [];
    const { room, user } = need;
    if (room !== undefined && !(this.rooms.holds(room) && this.#whole.has(room)) && !this.#loaded.has(room) && (this.#seqs.get(room) ?? 0) > 0) jobs.push(this.#prepareRoom(room));
    if (user !== undefined && !this.#users.has(user)) jobs.push(this.#prepareUser(user));
    if (room !== undefined && need.since !== undefined && !this.#memoryHasAfter(room, need.since)) jobs.push(this.#prepareAfter(room, need.since, need.limit));
    return jobs.length === 0 ? null : Promise.all(jobs).then(() => {});
  }

  async #prepareRoom(room: string): Promise<void> {
    const rows = this.#sealed ? [] : await this.#sql`SELECT msg, tseq, edits FROM log_messages WHERE room = ${room} ORDER BY seq DESC LIMIT ${this.rooms.keep}`;
    if (this.rooms.holds(room) && this.#whole.has(room)) return; // read meanwhile
    this.#loaded.set(room, { seq: this.#seqs.get(room) ?? 0, messages: (rows as MessageRow[]).map(keptMessage).reverse() });
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
    const pages = this.#caughtUp.get(room) ?? new Map<number, CaughtUp>();
    this.#caughtUp.set(room, pages);
    const readers = (pages.get(since)?.readers ?? 0) + 1;
    pages.delete(since);
    pages.set(since, { messages: (rows as MessageRow[]).map(keptMessage), full: rows.length === page, readers });
    for (const oldest of pages.keys()) {
      if (pages.size <= CAUGHT_UP_PER_ROOM) break;
      pages.delete(oldest);
    }
  }

  /** True if memory holds every message of `room` after `since` (or memory holds none and there are none). */
  #memoryHasAfter(room: string, since: number): boolean {
    if (!(this.rooms.holds(room) && this.#whole.has(room))) return false;
    const first = this.rooms.recent(room, this.rooms.keep)[0]?.seq;
    return first === undefined ? (this.#seqs.get(room) ?? 0) <= since : first <= since + 1;
  }

  async #prepareUser(user: string): Promise<void> {
    const [rows, mark] = await Promise.all([
      this.#sql`SELECT msg, stored, tseq, edits FROM log_directs WHERE sender = ${user} OR recipient = ${user} ORDER BY seq`,
      this.#sql`SELECT seq FROM log_delivered WHERE "user" = ${user}`,
    ]);
    if (this.#users.has(user)) return;
    const byseq = new Map<number, KeptDirect>((rows as DirectRow[]).map((r) => [r.msg.seq, keptDirect(r)]));
    // Appended here since (committed or not): the journal's own copy is the newest.
    for (const d of this.#directs.values()) if (d.message.from === user || d.message.to === user) byseq.set(d.message.seq, d);
    const delivered = Math.max(Number(mark[0]?.seq ?? 0), this.#delivered.get(user) ?? 0);
    this.#users.set(user, { directs: [...byseq.values()].sort((a, b) => a.message.seq - b.message.seq), delivered });
  }

  #load(room: string): RecentState {
    this.#whole.add(room);
    const loaded = this.#loaded.get(room);
    if (loaded) {
      this.#loaded.delete(room);
      return loaded;
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

  /** The DMs a read about `user` sees: theirs if prepared, else those appended here since open. */
  #userDirects(user: string): UserDirects {
    const u = this.#users.get(user);
    if (u) return u;
    this.#unprepared(`user ${user}`);
    return { directs: [...this.#directs.values()].filter((d) => d.message.from === user || d.message.to === user), delivered: this.#delivered.get(user) ?? 0 };
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
        attach(async (tx) => {
          await tx`INSERT INTO log_rooms (room, last_seq) VALUES (${m.room}, ${m.seq}) ON CONFLICT (room) DO UPDATE SET last_seq = GREATEST(log_rooms.last_seq, EXCLUDED.last_seq)`;
          if (msg) await tx`INSERT INTO log_messages (room, seq, tseq, msg) VALUES (${m.room}, ${m.seq}, ${entry.seq}, ${msg})`;
        });
        break;
      }
      case "direct": {
        const d: KeptDirect = { message: { ...e.message, ts: entry.ts }, stored: e.stored === true, tseq: entry.seq };
        this.#directSeq = Math.max(this.#directSeq, d.message.seq);
        this.#directs.set(d.message.seq, d);
        for (const u of new Set([d.message.from, d.message.to])) this.#users.get(u)?.directs.push(d);
        const msg = this.#sealed ? { ...d.message, text: undefined } : d.message;
        attach(async (tx) => {
          await tx`INSERT INTO log_directs (seq, sender, recipient, ts, stored, tseq, msg) VALUES (${d.message.seq}, ${d.message.from}, ${d.message.to}, ${d.message.ts}, ${d.stored}, ${entry.seq}, ${msg})`;
          await tx`UPDATE log_counters SET direct_seq = GREATEST(direct_seq, ${d.message.seq}) WHERE id = 1`;
        });
        break;
      }
      case "session_open": {
        const mark = this.#directSeq;
        this.#delivered.set(e.user, mark);
        const u = this.#users.get(e.user);
        if (u) u.delivered = Math.max(u.delivered, mark);
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
          const d = this.#directs.get(e.seq);
          if (d) {
            Object.assign(d, changedDirect(d, e));
            const msg = this.#sealed ? { ...d.message, text: undefined } : d.message;
            attach((tx) => tx`UPDATE log_directs SET msg = ${msg}, edits = ${d.edits ?? 0} WHERE seq = ${e.seq}`);
          }
        }
        break;
      }
    }
    return { seq: entry.seq, hash: entry.hash, durable: handled(durable) };
  }

  recent(room: string, limit: number): RoomMessage[] {
    return this.rooms.recent(room, limit);
  }

  /** What prepare({room, since}) loaded, then memory's newer and current copies; memory alone when it holds them all. */
  after(room: string, since: number, limit: number): RoomMessage[] {
    if (limit <= 0) return [];
    const held = this.rooms.recent(room, this.rooms.keep);
    const bySeq = new Map<number, RoomMessage>();
    const pages = this.#caughtUp.get(room);
    const loaded = pages?.get(since);
    /** A full page loaded: messages past its last may not follow it without a hole, so memory's are taken only up to it. */
    let upTo = Number.POSITIVE_INFINITY;
    if (loaded) {
      for (const m of loaded.messages) if (m.seq > since) bySeq.set(m.seq, shown(m));
      if (loaded.full) upTo = loaded.messages.at(-1)!.seq;
    } else if (!this.#memoryHasAfter(room, since)) {
      this.#unprepared(`room ${room} after ${since}`);
    }
    if (loaded && --loaded.readers === 0) pages!.delete(since);
    if (pages?.size === 0) this.#caughtUp.delete(room);
    for (const m of held) if (m.seq > since && m.seq <= upTo) bySeq.set(m.seq, m);
    return [...bySeq.values()].sort((x, y) => x.seq - y.seq).slice(0, limit);
  }

  editable(room: string, seq: number): KeptMessage | undefined {
    const m = this.rooms.message(room, seq);
    return m?.tseq !== undefined && this.writer.seq + 2 - m.tseq <= EDIT_REACH ? m : undefined;
  }

  editableDirect(seq: number): KeptDirect | undefined {
    const d = this.#directs.get(seq);
    return d?.tseq !== undefined && this.writer.seq + 2 - d.tseq <= EDIT_REACH ? d : undefined;
  }

  lastSeq(room: string): number {
    return this.rooms.holds(room) ? this.rooms.seq(room) : (this.#seqs.get(room) ?? 0);
  }

  lastDirectSeq(): number {
    return this.#directSeq;
  }

  storedDirects(user: string, since: number, limit: number): DirectMessage[] {
    const kept = this.#userDirects(user).directs.filter((d) => d.stored && !d.message.deleted && d.message.to === user && d.message.ts >= since);
    return newest(kept, limit);
  }

  undelivered(user: string, since: number): number {
    const u = this.#userDirects(user);
    return countUndelivered(u.directs, user, since, u.delivered);
  }

  directsBetween(a: string, b: string, since: number, before: number, limit: number): DirectMessage[] {
    const from = this.#users.has(a) || !this.#users.has(b) ? a : b;
    return newest(this.#userDirects(from).directs.filter((d) => d.message.seq < before && d.message.ts >= since && isBetween(d.message, a, b)), limit);
  }

  /** Forgets the DMs older than `before` here at once, and in the database in the background. */
  expireDirects(before: number): void {
    if (this.#closed) return;
    for (const [seq, d] of this.#directs) if (d.message.ts < before) this.#directs.delete(seq);
    for (const u of this.#users.values()) u.directs = u.directs.filter((d) => d.message.ts >= before);
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
  directs: KeptDirect[];
}
