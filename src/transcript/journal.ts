/**
 * The server's Journal backed by the transcript: every chat event becomes a
 * transcript entry. What `join` shows comes from memory for the rooms used
 * last (store/recent.ts, within `historyMemory` bytes) and from history.db
 * (store/history.ts, beside the transcript directory) for the others.
 *
 * history.db follows the transcript and does not get ahead of it: a message
 * goes into it once its entry is durable (the writer's fsync policy), with
 * the others of the last `historyFlushMs` in one transaction, and until then
 * its room stays in memory.
 * When the journal opens, history.db gets the entries it has not seen yet —
 * those after the last one it applied, found by reading the files backwards
 * from the end — or, if it is missing, unreadable or does not match the
 * transcript, every entry (a rebuild, logged). Start-up therefore reads the
 * entries history.db has not seen, not the transcript nor even its last
 * file: after a clean stop, one chunk.
 *
 * Sealed bodies cannot be read back by the server (only the auditor holds
 * the key): after a restart their rooms keep their sequence numbers but
 * show no older history. While it runs, history.db holds their texts
 * sealed under a key that exists only in memory (store/history.ts).
 */
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { type AckedCid, copyRoomStates, type DirectMessage, type Journal, type JournalEvent, type KeptDirect, type LogState, type KeptMessage, type Receipt, type RoomMessage, changedDirect, changedKept, countUndelivered, isBetween, newest } from "../store/journal.ts";
import type { Logger } from "../log.ts";
import { type Applied, type HistoryBatch, HistoryDb, type MessageChange } from "../store/history.ts";
import { type RoomChange, type RoomState, ROOM_ACTIONS, type RoomAction, applyRoomChange, cloneRoomState } from "../store/roomstate.ts";
import { DEFAULT_HISTORY_MEMORY, RecentRooms, shown } from "../store/recent.ts";
import { ackedCidsInTail } from "./cids.ts";
import { EDIT_REACH, parseEntry } from "./format.ts";
import { type TranscriptFile, listTranscript, readLinesBackward, readTranscriptLinesSync } from "./read.ts";
import { readLinesBySeq } from "./lineat.ts";
import { type TranscriptWriter, type WriterOptions, TranscriptWriter as Writer } from "./writer.ts";

export interface JournalOptions extends WriterOptions {
  /** Messages of history a join is shown, and kept per room in memory (serve --history). */
  history: number;
  /** Messages kept per room in history.db for members catching up after a disconnect (serve --history-keep; at least `history`). */
  historyKeep?: number;
  /** Estimated bytes of room history held in memory (serve --history-memory). */
  historyMemory?: number;
  /** How long durable messages may wait to go into history.db together (default FLUSH_MS). */
  historyFlushMs?: number;
}

/** history.db lives beside the transcript directory: DATA/history.db for DATA/transcript. */
export function historyDbPath(transcriptDir: string): string {
  return join(dirname(transcriptDir), "history.db");
}

/** A message or direct message recorded in the transcript but not yet in history.db. */
interface Unsaved {
  /** Its transcript entry. */
  entry: Applied;
  /** A room message's room and number… */
  room?: string;
  roomSeq?: number;
  /** …and the message itself, for history (not when only its number can be kept). */
  message?: KeptMessage;
  /** An edit or delete of a kept message (PROTOCOL.md §7.12). */
  change?: MessageChange;
  directSeq?: number;
  /** A direct message's text, for delivery and history (not when only its number can be kept). */
  direct?: KeptDirect;
  /** A login (session_open): the user and the DM seq at that point; stored DMs up to it are delivered. */
  delivered?: { user: string; seq: number };
  /** A room change (PROTOCOL.md §7.9): the room's state after it (null: dropped, or a kick of a room with none). */
  roomState?: { room: string; state: RoomState | null };
  /** The writer's promise for it (not for entries replayed at start). */
  durable?: Promise<void>;
}

/** How often history.db gets the messages that are durable, at most; and how many may wait. */
const FLUSH_MS = 200;
const FLUSH_MESSAGES = 4096;
/** Transactions of a replay hold at most this many entries. */
const REPLAY_BATCH = 4096;

/** The part of a Journal on the transcript writer that is the writer's own: recording, and the log's proofs. */
export abstract class WriterJournal {
  constructor(readonly writer: TranscriptWriter) {}

  get recording(): boolean {
    return this.writer.recording;
  }

  watch(fn: (recording: boolean) => void): void {
    this.writer.watch(fn);
  }

  logState(from: number | undefined, leaves: readonly number[]): LogState | null {
    return this.writer.logState(from, leaves);
  }

  consistency(m: number, n: number): Uint8Array[] | null {
    return this.writer.consistency(m, n);
  }

  onSignedTree(fn: () => void): void {
    this.writer.onSignedTree(fn);
  }
}

export class TranscriptJournal extends WriterJournal implements Journal {
  readonly #db: HistoryDb;
  /** The rooms whose history is in memory. */
  readonly rooms: RecentRooms;
  readonly #log: Logger;
  /** The transcript directory. */
  readonly #dir: string;
  readonly #flushMs: number;
  #directSeq: number;
  /** In transcript order. */
  readonly #unsaved: Unsaved[] = [];
  /** The last transcript seq known durable. */
  #durableSeq = 0;
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** A durable promise is being waited for (#watch). */
  #watching = false;
  #failing = false;
  #closed = false;
  /** The persistent rooms as the recorded room changes left them (history.db's, then each one appended). */
  readonly #roomStates: Map<string, RoomState>;

  private constructor(
    writer: TranscriptWriter,
    db: HistoryDb,
    opts: JournalOptions,
    /** Transcript lines read when it opened. */
    readonly linesRead: number,
  ) {
    super(writer);
    this.#db = db;
    this.#log = opts.log;
    this.#dir = opts.dir;
    this.#flushMs = opts.historyFlushMs ?? FLUSH_MS;
    this.#directSeq = db.directSeq;
    this.#roomStates = db.roomStates();
    this.rooms = new RecentRooms(opts.history, opts.historyMemory ?? DEFAULT_HISTORY_MEMORY, (room) => db.room(room, opts.history));
  }

  static open(opts: JournalOptions): TranscriptJournal {
    const writer = Writer.open(opts);
    let db: HistoryDb | undefined;
    try {
      const opened = HistoryDb.open(historyDbPath(opts.dir), Math.max(opts.history, opts.historyKeep ?? opts.history), opts.auditorKey !== undefined);
      db = opened;
      const lines = opened.replay(() => catchUp(opened, opts.dir, opts.auditorKey !== undefined, opts.log));
      return new TranscriptJournal(writer, opened, opts, lines);
    } catch (e) {
      db?.close();
      writer.close("failed to start");
      throw e;
    }
  }

  /**
   * Never throws into the chat core or a socket handler: a closed journal or
   * writer (late connection close at shutdown) records nothing; a failed writer
   * answers with a rejected `durable`, which turns the sender's ack into a
   * nack `not_recorded`.
   */
  append(e: JournalEvent): Receipt {
    if (this.#closed) return { durable: handled(Promise.reject(new Error("transcript closed"))) };
    const [type, fields] = toEntry(e);
    const recording = !this.writer.stopped;
    if (e.kind === "direct") this.#directSeq = Math.max(this.#directSeq, e.message.seq);
    if (!recording) {
      if (e.kind === "message") this.rooms.add(e.message);
      return { durable: handled(Promise.reject(new Error("transcript stopped"))) };
    }
    try {
      const { entry, durable } = this.writer.append(type, fields);
      if (e.kind === "room_change") {
        applyRoomChange(this.#roomStates, e);
        const st = this.#roomStates.get(e.room);
        this.#unsaved.push({ entry: { seq: entry.seq, hash: entry.hash }, durable, roomState: { room: e.room, state: st ? cloneRoomState(st) : null } });
        if (!this.#watching) this.#watch(entry.seq, durable);
      }
      // In memory at once (pinned there until history.db has it), with the entry an edit will name.
      if (e.kind === "message") this.rooms.add({ ...e.message, ts: entry.ts, tseq: entry.seq }, true);
      // (a direct message's edit reaches its readers through #current until history.db has it)
      const pinned = (e.kind === "edit" || e.kind === "delete") && e.room !== undefined && this.rooms.change(e.room, e.seq, (m) => changedKept(m, e), true);
      if (e.kind === "message" || e.kind === "direct" || e.kind === "session_open" || e.kind === "edit" || e.kind === "delete") {
        const u: Unsaved = { entry: { seq: entry.seq, hash: entry.hash }, durable };
        // history.db has what the transcript has: the entry's ts, as a rebuild would
        if (e.kind === "message") Object.assign(u, { room: e.message.room, roomSeq: e.message.seq, message: { ...e.message, ts: entry.ts, tseq: entry.seq } });
        else if (e.kind === "direct") Object.assign(u, { directSeq: e.message.seq, direct: { message: { ...e.message, ts: entry.ts }, stored: e.stored === true, tseq: entry.seq } });
        else if (e.kind === "edit" || e.kind === "delete") Object.assign(u, { change: changeOf(e), ...(pinned ? { room: e.room, roomSeq: e.seq } : {}) });
        else u.delivered = { user: e.user, seq: this.#directSeq };
        this.#unsaved.push(u);
        if (!this.#watching) this.#watch(entry.seq, durable);
      }
      return { seq: entry.seq, hash: entry.hash, ts: entry.ts, durable: handled(durable) };
    } catch (err) {
      // Not recorded: what others were shown stays in memory, as for a message whose write failed.
      if (e.kind === "message") this.rooms.add(e.message);
      if ((e.kind === "edit" || e.kind === "delete") && e.room !== undefined) this.rooms.change(e.room, e.seq, (m) => changedKept(m, e));
      return { durable: handled(Promise.reject(err)) };
    }
  }

  /** The messages with a client message id among the transcript's last entries (transcript/cids.ts). */
  ackedCids(since: number): AckedCid[] {
    try {
      return ackedCidsInTail(listTranscript(this.#dir).files, since);
    } catch (err) {
      // Not fatal: without them a resend across this restart is recorded again, as before ids existed.
      this.#log.warn("cids_unread", { error: (err as Error).message });
      return [];
    }
  }

  /**
   * A kept message an edit or delete may name: its entry is recent enough
   * that the edit's `ref` stays within EDIT_REACH of it (TRANSCRIPT.md
   * §2.4), counting a seal_key and the edit itself that may come first.
   */
  editable(room: string, seq: number): KeptMessage | undefined {
    const m = this.rooms.message(room, seq);
    return m?.tseq !== undefined && this.writer.seq + 2 - m.tseq <= EDIT_REACH ? m : undefined;
  }

  /** The same for a direct message: in history.db or not yet written there, with the edits not yet written there. */
  editableDirect(seq: number): KeptDirect | undefined {
    let d: KeptDirect | undefined;
    for (const u of this.#unsaved) if (u.direct?.message.seq === seq) d = u.direct;
    if (!d) {
      try {
        d = this.#db.direct(seq);
      } catch (err) {
        this.#log.warn("history_db_failed", { error: (err as Error).message });
      }
    }
    for (const u of this.#unsaved) if (d && u.change?.room === undefined && u.change?.seq === seq) d = changedDirect(d, editOf(u.change));
    return d?.tseq !== undefined && this.writer.seq + 2 - d.tseq <= EDIT_REACH ? d : undefined;
  }

  /** Direct messages as they are now: with the edits and deletes history.db does not have yet. */
  #current(list: DirectMessage[]): DirectMessage[] {
    const changes = this.#unsaved.filter((u) => u.change !== undefined && u.change.room === undefined);
    if (changes.length === 0) return list;
    return list.map((m) => {
      let d: KeptDirect = { message: m, stored: false };
      for (const u of changes) if (u.change!.seq === m.seq) d = changedDirect(d, editOf(u.change!));
      return d.message;
    });
  }

  /**
   * history.db gets what is durable in one transaction every `flushMs`, or
   * at once when FLUSH_MESSAGES are waiting: a commit writes every page it
   * touched to the WAL, so committing per event-loop turn would write each
   * busy room's pages over and over.
   */
  #durable(seq: number): void {
    this.#durableSeq = Math.max(this.#durableSeq, seq);
    if (this.#closed) return;
    // (while history.db is failing, only the timer tries again)
    if (this.#unsaved.length >= FLUSH_MESSAGES && !this.#failing) {
      if (this.#flushTimer) clearTimeout(this.#flushTimer);
      this.#flushTimer = null;
      this.#flush(this.#durableSeq);
    } else if (!this.#flushTimer) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = null;
        this.#flush(this.#durableSeq);
      }, this.#flushMs);
      this.#flushTimer.unref?.();
    }
  }

  /**
   * Waits for one entry to be durable, then for the newest appended since:
   * entries become durable in order, so one promise at a time tells how far
   * the transcript is durable.
   */
  #watch(seq: number, durable: Promise<void>): void {
    this.#watching = true;
    durable.then(
      () => {
        this.#watching = false;
        this.#durable(seq);
        const last = this.#unsaved.at(-1);
        if (!this.#closed && last && last.entry.seq > seq) this.#watch(last.entry.seq, last.durable!);
      },
      () => {
        // The writer failed: what was not durable by now never will be, and never reaches history.db.
        this.#watching = false;
        const i = this.#unsaved.findIndex((u) => u.entry.seq > this.#durableSeq);
        if (i >= 0) for (const u of this.#unsaved.splice(i)) if (u.room !== undefined) this.rooms.unpin(u.room);
      },
    );
  }

  /**
   * Writes what is durable up to `upTo` to history.db in one transaction
   * (`applied` defaults to the last entry written). If that fails (a full
   * disk), it stays in memory, pinned, and the next flush tries again.
   */
  #flush(upTo: number, applied?: Applied): void {
    if (this.#closed) return;
    let n = 0;
    while (n < this.#unsaved.length && this.#unsaved[n]!.entry.seq <= upTo) n++;
    if (n === 0 && !applied) return;
    const batch: HistoryBatch = { messages: [], changes: [], seqs: new Map(), directSeq: 0, directs: [], delivered: new Map(), roomStates: new Map(), applied: applied ?? this.#unsaved[n - 1]!.entry };
    for (let i = 0; i < n; i++) addTo(batch, this.#unsaved[i]!);
    try {
      this.#db.apply(batch);
    } catch (err) {
      if (!this.#failing) this.#log.warn("history_db_failed", { error: (err as Error).message });
      this.#failing = true;
      return;
    }
    if (this.#failing) this.#log.info("history_db_recovered");
    this.#failing = false;
    for (const u of this.#unsaved.splice(0, n)) if (u.room !== undefined) this.rooms.unpin(u.room);
  }

  recent(room: string, limit: number): RoomMessage[] {
    return this.rooms.recent(room, limit);
  }

  /**
   * history.db's rows after `since`, then what is not in it yet (messages
   * and edits waiting for the next flush), then memory's copies, which are
   * the newest and current: each message once, as it is now.
   */
  after(room: string, since: number, limit: number): RoomMessage[] {
    if (limit <= 0) return [];
    const held = this.rooms.recent(room, this.rooms.keep);
    // A short absence (the usual resume): memory holds every message after `since`, history.db is not read.
    if (held.length > 0 && held[0]!.seq <= since + 1) return held.filter((m) => m.seq > since).slice(0, limit);
    const bySeq = new Map<number, KeptMessage>();
    for (const m of this.#db.after(room, since, limit)) bySeq.set(m.seq, m);
    for (const u of this.#unsaved) {
      if (u.message?.room === room && u.message.seq > since) bySeq.set(u.message.seq, u.message);
      const was = u.change?.room === room ? bySeq.get(u.change.seq) : undefined;
      if (was) bySeq.set(was.seq, changedKept(was, editOf(u.change!)));
    }
    for (const m of held) if (m.seq > since) bySeq.set(m.seq, m);
    return [...bySeq.values()]
      .sort((x, y) => x.seq - y.seq)
      .slice(0, limit)
      .map(shown);
  }

  lastSeq(room: string): number {
    return this.rooms.seq(room);
  }

  lastDirectSeq(): number {
    return this.#directSeq;
  }

  // The DM queries read history.db and the DMs not yet written to it.

  #unsavedDirects(): KeptDirect[] {
    const out: KeptDirect[] = [];
    for (const u of this.#unsaved) if (u.direct) out.push(u.direct);
    return out;
  }

  missedDirects(user: string, since: number, after: number, limit: number): DirectMessage[] {
    const recent = this.#unsavedDirects().filter((d) => d.message.to === user && d.message.ts >= since && d.message.seq > after);
    // a deleted one is not delivered late (PROTOCOL.md §7.12)
    return this.#current([...this.#db.missedDirects(user, since, after, limit), ...newest(recent, limit)].slice(-limit)).filter((m) => !m.deleted);
  }

  undelivered(user: string, since: number): number {
    let mark = this.#db.deliveredSeq(user);
    for (const u of this.#unsaved) if (u.delivered?.user === user) mark = Math.max(mark, u.delivered.seq);
    return this.#db.countStored(user, since, mark) + countUndelivered(this.#unsavedDirects(), user, since, mark);
  }

  directsBetween(a: string, b: string, since: number, before: number, limit: number): DirectMessage[] {
    const recent = this.#unsavedDirects().filter((d) => d.message.seq < before && d.message.ts >= since && isBetween(d.message, a, b));
    return this.#current([...this.#db.directsBetween(a, b, since, before, limit), ...newest(recent, limit)].slice(-limit));
  }

  roomStates(): Map<string, RoomState> {
    return copyRoomStates(this.#roomStates);
  }

  expireDirects(before: number): void {
    if (this.#closed) return;
    try {
      this.#db.expireDirects(before);
    } catch (err) {
      this.#log.warn("history_db_failed", { error: (err as Error).message });
    }
  }

  entryLines(seqs: readonly number[]): (Uint8Array | null)[] {
    return readLinesBySeq(this.writer.opts.dir, seqs);
  }

  /**
   * Closes the transcript, then history.db. A writer that closes cleanly has
   * fsynced everything, so history.db gets every message and records the
   * transcript's last entry (server_stop's checkpoint): the next start reads
   * nothing but what it writes itself.
   */
  close(reason: string): void {
    if (this.#closed) return;
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    const wasRecording = !this.writer.stopped;
    try {
      this.writer.close(reason);
      if (wasRecording) this.#flush(Number.POSITIVE_INFINITY, { seq: this.writer.seq, hash: this.writer.head });
      else this.#flush(this.#durableSeq);
    } finally {
      this.#closed = true;
      this.#db.close();
    }
  }
}

function addTo(b: HistoryBatch, u: Unsaved): void {
  if (u.room !== undefined) b.seqs.set(u.room, Math.max(b.seqs.get(u.room) ?? 0, u.roomSeq!));
  if (u.message) b.messages.push(u.message);
  if (u.change) b.changes.push(u.change);
  if (u.directSeq !== undefined) b.directSeq = Math.max(b.directSeq, u.directSeq);
  if (u.direct) b.directs.push(u.direct);
  if (u.delivered) b.delivered.set(u.delivered.user, Math.max(b.delivered.get(u.delivered.user) ?? 0, u.delivered.seq));
  if (u.roomState) b.roomStates.set(u.roomState.room, u.roomState.state);
}

/**
 * Brings history.db up to date with the transcript in `dir`: the entries
 * after the last one it applied, if that entry is in the transcript with
 * the hash it recorded; otherwise (a new database, another transcript, one
 * that lost its tail) every entry. Returns the number of lines read.
 */
function catchUp(db: HistoryDb, dir: string, sealed: boolean, log: Logger): number {
  const files = listTranscript(dir).files;
  const last = db.applied;
  let why = db.rebuild;
  let lines = 0;
  if (why === null && last.seq > 0) {
    const at = files.findLastIndex((f) => f.firstSeq !== null && f.firstSeq <= last.seq);
    if (at < 0) {
      // The file holding it is gone (archived): nothing to check it against.
      const first = files[0]?.firstSeq ?? 0;
      if (first > last.seq + 1) log.warn("history_gap", { applied: last.seq, first_seq: first });
      lines = replay(db, files, { seq: 0, hash: "" }, sealed).lines;
      log.info("history_loaded", { lines, applied: db.applied.seq });
      return lines;
    }
    // Found from the end: as far back as the entries history.db has not seen, not the whole file.
    const found = afterApplied(files, at, last);
    lines = found.lines;
    const r = found.at ? replay(db, files.slice(found.at.file), last, sealed, found.at.offset) : { matched: false, lines: 0 };
    lines += r.lines;
    if (r.matched) {
      log.info("history_loaded", { lines, applied: db.applied.seq });
      return lines;
    }
    why = `history.db's last entry (seq ${last.seq}) is not in the transcript`;
    db.reset();
  }
  // (A new server's transcript is empty: nothing to rebuild, nothing to say.)
  if (why !== null && files.some((f) => statSync(f.path).size > 0)) log.warn("history_rebuild", { reason: why });
  lines += replay(db, files, { seq: 0, hash: "" }, sealed).lines;
  log.info("history_loaded", { lines, applied: db.applied.seq });
  return lines;
}

/**
 * Where the entries after `last` begin: the file (an index in `files`, `from`
 * or later) and the byte offset just after `last`'s line, found by reading
 * the files backwards from the end; null if the line with its seq is not
 * there with its hash. `lines`: the lines read.
 */
function afterApplied(files: TranscriptFile[], from: number, last: Applied): { at: { file: number; offset: number } | null; lines: number } {
  let lines = 0;
  for (let i = files.length - 1; i >= from; i--) {
    for (const l of readLinesBackward(files[i]!.path)) {
      lines++;
      const seq = lineSeq(l.bytes);
      if (seq === null || seq > last.seq) continue;
      return { at: seq === last.seq && lineHash(l.bytes) === last.hash ? { file: i, offset: l.end } : null, lines };
    }
  }
  return { at: null, lines };
}

/**
 * Applies the entries of `files` after `after` to history.db; `matched` is
 * false (and nothing after it applied) if the entry at `after.seq` is not
 * there with `after.hash`. With `start` (the offset in the first file just
 * after that entry's line, where afterApplied found it), reading begins
 * there. Lines are looked at as bytes, and only message
 * and direct entries after `after` are decoded and parsed. A line that is
 * not an entry is skipped (verify reports it). Sealed (or unreadable) texts
 * give sequence numbers only; so does every text when sealing, where
 * history.db keeps no plaintext.
 *
 * A message is shown as history only once a checkpoint has signed it: the
 * messages after a run's last checkpoint, when the next `server_start` or
 * the end of the files comes first, were never signed — the crashed run
 * acknowledged none of them, and they rest on the files alone (TRANSCRIPT.md
 * §2.5, §8.2) — so only their numbers are kept. Until a checkpoint comes,
 * nothing after them is applied, so an interrupted replay starts again
 * before them.
 */
function replay(db: HistoryDb, files: TranscriptFile[], after: Applied, sealed: boolean, start?: number): { matched: boolean; lines: number } {
  let matched = after.seq === 0 || start !== undefined;
  let lines = 0;
  let batch: HistoryBatch = { messages: [], changes: [], seqs: new Map(), directSeq: 0, directs: [], delivered: new Map(), roomStates: new Map(), applied: after };
  let size = 0;
  let unsigned: Unsaved[] = [];
  const settle = (signed: boolean): void => {
    for (const u of unsigned) addTo(batch, signed ? u : { ...u, message: undefined, direct: undefined, change: undefined });
    unsigned = [];
  };
  // The DM seq as of each entry, for the logins (session_open) replayed.
  let directSeq = after.seq === 0 ? 0 : db.directSeq;
  // Persistent rooms touched by the replay, each read from history.db once, then changed here.
  const states = new Map<string, RoomState>();
  const loaded = new Set<string>();
  for (const line of readTranscriptLinesSync(files, start)) {
    lines++;
    const seq = lineSeq(line);
    if (seq === null) continue;
    if (seq <= after.seq) {
      if (seq === after.seq) matched = lineHash(line) === after.hash;
      continue;
    }
    if (!matched) return { matched, lines };
    const hash = lineHash(line);
    if (hash === null) continue;
    const type = lineType(line);
    if (type === "checkpoint") settle(true);
    else if (type === "server_start") settle(false);
    batch.applied = { seq, hash };
    const u = type !== null && HISTORY_TYPES.has(type) ? unsavedOf(line, sealed, directSeq) : type === "room_change" ? roomChangeOf(line, db, states, loaded) : null;
    if (u?.directSeq !== undefined) directSeq = Math.max(directSeq, u.directSeq);
    if (u?.message || u?.direct || u?.change) unsigned.push(u);
    else if (u) addTo(batch, u);
    if (++size >= REPLAY_BATCH && unsigned.length === 0) {
      db.apply(batch);
      batch = { messages: [], changes: [], seqs: new Map(), directSeq: 0, directs: [], delivered: new Map(), roomStates: new Map(), applied: batch.applied };
      size = 0;
    }
  }
  settle(false);
  if (matched && size > 0) db.apply(batch);
  return { matched, lines };
}

// An entry line's members are sorted and `hash` is last (TRANSCRIPT.md §3.3),
// and a `"` inside a string is always escaped: `"seq":` and `"type":"`
// can only be members, and the line ends with `,"hash":"<64 hex>"}`.
const SEQ_MEMBER = Buffer.from('"seq":');
const HASH_TAIL = Buffer.from(',"hash":"');
const TYPE_MEMBER = Buffer.from('"type":"');
/** The entry types history.db takes something from (unsavedOf). */
const HISTORY_TYPES = new Set(["message", "direct", "session_open", "edit", "delete"]);
const HEX64 = /^[0-9a-f]{64}$/;
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** An entry line's seq, read from its bytes; null if it has none. */
function lineSeq(line: Buffer): number | null {
  const at = line.indexOf(SEQ_MEMBER);
  if (at < 0) return null;
  let seq = 0;
  let i = at + SEQ_MEMBER.length;
  for (; i < line.length && line[i]! >= 0x30 && line[i]! <= 0x39; i++) seq = seq * 10 + line[i]! - 0x30;
  return i > at + SEQ_MEMBER.length && (line[i] === 0x2c || line[i] === 0x7d) ? seq : null;
}

/** An entry line's type, read from its bytes (type names need no escapes); null if it has none. */
function lineType(line: Buffer): string | null {
  const at = line.indexOf(TYPE_MEMBER);
  if (at < 0) return null;
  const end = line.indexOf(0x22, at + TYPE_MEMBER.length);
  return end < 0 ? null : line.toString("latin1", at + TYPE_MEMBER.length, end);
}

/** An entry line's hash, read from its bytes; null if it does not end with one. */
function lineHash(line: Buffer): string | null {
  const n = line.length;
  if (n < 76 || line[n - 1] !== 0x7d || line[n - 2] !== 0x22 || !line.subarray(n - 75, n - 66).equals(HASH_TAIL)) return null;
  const hash = line.toString("latin1", n - 66, n - 2);
  return HEX64.test(hash) ? hash : null;
}

/** What a message, direct, edit, delete or session_open entry line brings to history.db (`directSeq`: the DM seq before it); null for anything else. */
function unsavedOf(line: Buffer, sealed: boolean, directSeq: number): Unsaved | null {
  let e: ReturnType<typeof parseEntry>;
  try {
    e = parseEntry(utf8Strict.decode(line));
  } catch {
    return null;
  }
  const entry = { seq: e.seq, hash: e.hash };
  if (e.type === "session_open") return { entry, delivered: { user: e.user as string, seq: directSeq } };
  if (e.type === "direct") {
    const seq = e.dm_seq as number;
    if (sealed || typeof e.text !== "string") return { entry, directSeq: seq };
    const message: DirectMessage = { type: "direct", seq, ts: e.ts, from: e.from as string, to: e.to as string, text: e.text, ...(e.action ? { action: true } : {}) };
    return { entry, directSeq: seq, direct: { message, stored: e.stored === true, tseq: e.seq } };
  }
  if (e.type === "edit" || e.type === "delete") {
    // a room message's (room, room_seq), or a direct message's dm_seq
    const at = e.dm_seq !== undefined ? { seq: e.dm_seq as number } : { room: e.room as string, seq: e.room_seq as number };
    if (e.type === "delete") return { entry, change: at };
    return sealed || typeof e.text !== "string" ? null : { entry, change: { ...at, text: e.text } };
  }
  if (e.type !== "message") return null;
  const room = e.room as string;
  const seq = e.room_seq as number;
  if (sealed || typeof e.text !== "string") return { entry, room, roomSeq: seq };
  return { entry, room, roomSeq: seq, message: { type: "message", room, seq, ts: e.ts, from: e.from as string, text: e.text, ...(e.action ? { action: true } : {}), tseq: e.seq } };
}

/** What history.db applies of an edit or delete. */
function changeOf(e: JournalEvent & { kind: "edit" | "delete" }): MessageChange {
  return { ...(e.room !== undefined ? { room: e.room } : {}), seq: e.seq, ...(e.kind === "edit" ? { text: e.text } : {}) };
}

/** A change as an edit (with text) or a delete. */
function editOf(c: MessageChange): { kind: "edit"; text: string } | { kind: "delete" } {
  return c.text === undefined ? { kind: "delete" } : { kind: "edit", text: c.text };
}

/** A room_change entry line, applied to `states` (each room read from history.db the first time it is met): the room's state after it. */
function roomChangeOf(line: Buffer, db: HistoryDb, states: Map<string, RoomState>, loaded: Set<string>): Unsaved | null {
  let e: ReturnType<typeof parseEntry>;
  try {
    e = parseEntry(utf8Strict.decode(line));
  } catch {
    return null;
  }
  if (e.type !== "room_change" || !ROOM_ACTIONS.includes(e.action as RoomAction)) return null;
  const room = e.room as string;
  if (!loaded.has(room)) {
    loaded.add(room);
    const st = db.roomState(room);
    if (st) states.set(room, st);
  }
  applyRoomChange(states, roomChangeFromEntry(e));
  const st = states.get(room);
  return { entry: { seq: e.seq, hash: e.hash }, roomState: { room, state: st ? cloneRoomState(st) : null } };
}

/** A room_change entry's members as the change they record (TRANSCRIPT.md §2.4). */
export function roomChangeFromEntry(e: Record<string, string | number | boolean>): RoomChange {
  return {
    kind: "room_change",
    room: e.room as string,
    user: e.user as string,
    session: e.session as string,
    owner: e.owner as string,
    action: e.action as RoomAction,
    ...(typeof e.target === "string" ? { target: e.target } : {}),
    ...(typeof e.text === "string" ? { text: e.text } : {}),
    ...(typeof e.invite_only === "boolean" ? { inviteOnly: e.invite_only } : {}),
    ...(typeof e.secret === "boolean" ? { secret: e.secret } : {}),
    ts: e.ts as number,
  };
}

/** Most receipts (joins, sessions) are not awaited: a failure must not become an unhandled rejection. */
export function handled(p: Promise<void>): Promise<void> {
  p.catch(() => {});
  return p;
}

/** A journal event as the transcript entry that records it: its type and members. */
export function toEntry(e: JournalEvent): [string, Record<string, string | number | boolean>] {
  switch (e.kind) {
    case "session_open":
      return ["session_open", { user: e.user, session: e.session, source: e.source }];
    case "session_close":
      return ["session_close", { user: e.user, session: e.session }];
    case "login_failed":
      return ["login_failed", { source: e.source, reason: e.reason }];
    case "password_changed":
      return ["password_changed", { user: e.user, session: e.session, ended_sessions: e.ended }];
    case "session_revoked":
      return ["session_revoked", { user: e.user, session: e.session, target: e.target, ...(e.targetSession ? { target_session: e.targetSession } : {}) }];
    case "admin_action":
      return ["admin_action", { user: e.user, session: e.session, action: e.action, target: e.target }];
    case "device_enrolled":
      return [
        "device_enrolled",
        { user: e.user, ...(e.session ? { session: e.session } : {}), device: e.device, key: e.key, name: e.name, by: e.by, ...(e.sig ? { sig: e.sig } : {}), source: e.source },
      ];
    case "device_revoked":
      return ["device_revoked", { user: e.user, session: e.session, device: e.device, key: e.key }];
    case "join":
      return ["join", { room: e.room, user: e.user }];
    case "leave":
      return ["leave", { room: e.room, user: e.user }];
    case "message": {
      const m = e.message;
      return ["message", { room: m.room, room_seq: m.seq, from: m.from, text: m.text!, ...(m.action ? { action: true } : {}), ...(e.cid ? { cid: e.cid } : {}) }];
    }
    // `ref` is always known here (editable): an edit without one is refused by the writer.
    case "edit":
    case "delete": {
      const at: Record<string, string | number> = e.room !== undefined ? { room: e.room, room_seq: e.seq } : { dm_seq: e.seq, to: e.to! };
      return [e.kind, { ...at, ref: e.ref!, user: e.user, session: e.session, ...(e.kind === "edit" ? { text: e.text } : {}), ...(e.cid ? { cid: e.cid } : {}) }];
    }
    case "direct": {
      const m = e.message;
      return ["direct", { dm_seq: m.seq, from: m.from, to: m.to, text: m.text!, ...(m.action ? { action: true } : {}), ...(e.stored ? { stored: true } : {}), ...(e.cid ? { cid: e.cid } : {}) }];
    }
    case "room_change":
      return [
        "room_change",
        {
          room: e.room,
          user: e.user,
          session: e.session,
          owner: e.owner,
          action: e.action,
          ...(e.target !== undefined ? { target: e.target } : {}),
          ...(e.text !== undefined ? { text: e.text } : {}),
          ...(e.inviteOnly !== undefined ? { invite_only: e.inviteOnly } : {}),
          ...(e.secret !== undefined ? { secret: e.secret } : {}),
        },
      ];
  }
}
