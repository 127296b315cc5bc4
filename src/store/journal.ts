/**
 * The hook between the chat core and the record of what happened. The chat
 * core appends every event here and serves history on join from here, so the
 * two cannot disagree. `MemoryJournal` keeps recent room history in memory,
 * within a byte budget; the transcript (docs/TRANSCRIPT.md, with history.db)
 * implements the same interface on disk.
 */
import type { AdminAction, Message } from "../protocol/messages.ts";
import { DEFAULT_HISTORY_MEMORY, type KeptMessage, RecentRooms } from "./recent.ts";
import { type RoomChange, type RoomState, applyRoomChange, cloneRoomState } from "./roomstate.ts";

export type { KeptMessage } from "./recent.ts";

export type RoomMessage = Message<"message">;
export type DirectMessage = Message<"direct">;

/**
 * Direct messages kept for delivery and `/history @user`: every DM is kept
 * until it is older than the retention; one sent while its recipient was
 * offline is `stored`, and is delivered late to each of the recipient's
 * logins. A stored DM is *undelivered* until the recipient's next login
 * (its `session_open` entry), which is what the per-recipient cap counts.
 */
export interface KeptDirect {
  message: DirectMessage;
  stored: boolean;
  /** What an edit or delete needs (PROTOCOL.md §7.12): the transcript entry that recorded it (absent without a transcript), its edits so far. */
  tseq?: number;
  edits?: number;
}

export type JournalEvent =
  | { kind: "session_open"; user: string; session: string; source: string; ts: number }
  | { kind: "session_close"; user: string; session: string; ts: number }
  | { kind: "join"; room: string; user: string; ts: number }
  | { kind: "leave"; room: string; user: string; ts: number }
  // `cid`: the sender's client message id (PROTOCOL.md §7.15), recorded so a resend after a restart is known.
  | { kind: "message"; message: RoomMessage; cid?: string }
  | { kind: "direct"; message: DirectMessage; stored?: boolean; cid?: string }
  | { kind: "login_failed"; source: string; reason: string; ts: number }
  | { kind: "session_revoked"; user: string; session: string; target: string; targetSession?: string; ts: number }
  | { kind: "password_changed"; user: string; session: string; ended: boolean; ts: number }
  // A server administrator's action on an account (PROTOCOL.md §7.10): `user` and `session` are the administrator's.
  | { kind: "admin_action"; user: string; session: string; action: AdminAction; target: string; ts: number }
  // Room moderation (PROTOCOL.md §7.9, store/roomstate.ts).
  | RoomChange
  // Devices (TRANSCRIPT.md §2.4): keys and signatures in base64, device ids as PROTOCOL.md §5.4 gives them.
  | { kind: "device_enrolled"; user: string; session?: string; device: string; key: string; name: string; by: string; sig?: string; source: string; ts: number }
  | { kind: "device_revoked"; user: string; session: string; device: string; key: string; ts: number }
  // An edit (with text) or a delete (without) by its author (PROTOCOL.md
  // §7.12) of the message `seq` of `room`, or of the direct message `seq` to
  // `to`; `ref` is the transcript seq of its `message` or `direct` entry,
  // when it has one (TRANSCRIPT.md §2.4 `edit`).
  | ({ kind: "edit"; text: string } & Change)
  | ({ kind: "delete" } & Change);

/** What an edit or delete names (exactly one of `room` and `to`), and who made it. */
export type Change = { room?: string; to?: string; seq: number; user: string; session: string; ref?: number; ts: number; cid?: string };

/**
 * A message the log recorded with its sender's client message id
 * (PROTOCOL.md §7.15), and what its `ack` said: what lets a restarted
 * server answer a resend with the first ack instead of recording it again.
 */
export interface AckedCid {
  user: string;
  cid: string;
  /** The ack's `seq`: the room's or the direct messages' number (for an edit or delete, the message's). */
  seq: number;
  ts: number;
  tseq: number;
  head: string;
  stored?: boolean;
}

/** Where an event was recorded; `durable` is absent when there is nothing to wait for. */
export interface Receipt {
  /** The transcript entry's seq and hash (the chain head after it), if recorded in a transcript. */
  seq?: number;
  hash?: string;
  /**
   * The entry's `ts` (TRANSCRIPT.md §2.3): the writer's clock, never before
   * the last entry's. A recorded message, DM or change carries it, live and
   * in its ack, so that they show the time history and the transcript show.
   */
  ts?: number;
  durable?: Promise<void>;
}

/** The log's last durable tree checkpoint, and proofs against it (PROTOCOL.md §7.13; the transcript's writer makes them). */
export interface LogState {
  /** The signed checkpoint note (TRANSCRIPT.md §4.1). */
  note: string;
  size: number;
  consistency: Uint8Array[] | null;
  inclusion: { leaf: number; proof: Uint8Array[] }[];
}

export interface Journal {
  /**
   * False while events cannot be recorded (the transcript's disk is full or
   * failing): the server then refuses what would have to be recorded.
   */
  readonly recording: boolean;
  /** Calls `fn(recording)` whenever `recording` changes. */
  watch?(fn: (recording: boolean) => void): void;
  append(e: JournalEvent): Receipt;
  /** The last `limit` messages of `room`, oldest first. */
  recent(room: string, limit: number): RoomMessage[];
  /** The first `limit` kept messages of `room` after seq `since`, oldest first (a member catching up, PROTOCOL.md §7.3). */
  after(room: string, since: number, limit: number): RoomMessage[];
  /**
   * The message `seq` of `room` if it can still be edited or deleted
   * (PROTOCOL.md §7.12): it is among the room's kept history and, in a
   * transcript, its entry is within EDIT_REACH entries of the end.
   */
  editable(room: string, seq: number): KeptMessage | undefined;
  /** The direct message `seq` if it can still be edited or deleted: kept (within the retention) and, in a transcript, within EDIT_REACH. */
  editableDirect(seq: number): KeptDirect | undefined;
  /** The last sequence number used in `room` (0 if none), so numbering continues after a restart. */
  lastSeq(room: string): number;
  /** The last sequence number of direct messages. */
  lastDirectSeq(): number;
  /**
   * The DMs to `user` — stored while it was offline, or delivered live —
   * with `ts` >= `since` and seq > `after`, not deleted, oldest first: the
   * newest `limit` of them. A login is shown those its device missed
   * (`after`: the device's direct-message read marker).
   */
  missedDirects(user: string, since: number, after: number, limit: number): DirectMessage[];
  /** How many stored DMs to `user` with `ts` >= `since` no login of `user` has been shown yet. */
  undelivered(user: string, since: number): number;
  /**
   * The DMs between `a` and `b` (either way) with `ts` >= `since` and seq <
   * `before`: the newest `limit` of them, oldest first.
   */
  directsBetween(a: string, b: string, since: number, before: number, limit: number): DirectMessage[];
  /** Forgets the DMs with `ts` < `before` (the retention), wherever they are kept. */
  expireDirects(before: number): void;
  /** The log's state and proofs, from the tree of `from` lines and for `leaves`; absent or null without a signed tree. */
  logState?(from: number | undefined, leaves: readonly number[]): LogState | null;
  /** The consistency proof from the tree of `m` lines to that of `n` (at most the signed size); null if it cannot be made. */
  consistency?(m: number, n: number): Uint8Array[] | null;
  /** Calls `fn` each time a newer signed tree checkpoint becomes durable. */
  onSignedTree?(fn: () => void): void;
  /** The lines (without their LFs) of the transcript entries with these seqs, as stored; null for one there is none to read. */
  entryLines?(seqs: readonly number[]): (Uint8Array | null)[];
  /**
   * The same lines, by seq, for a journal whose record is not in this
   * process (PostgreSQL): read before the request's turn, as `prepare`
   * loads; a seq with no stored line is absent.
   */
  readEntryLines?(seqs: readonly number[]): Promise<Map<number, Uint8Array>>;
  /**
   * The messages with a client message id among the log's last entries
   * (newest last), those a checkpoint of their own run signed, with `ts` >=
   * `since`: read once at start, so a resend is known across a restart.
   */
  ackedCids?(since: number): AckedCid[];
  /**
   * Loads what the next synchronous read named by `need` will read, for a
   * journal whose record is not in this process (PostgreSQL); null when
   * nothing is missing. Absent: every read is ready at any time.
   */
  prepare?(need: Need): Promise<void> | null;
  /** Clean shutdown (the transcript writes server_stop and a checkpoint). */
  close?(reason: string): void;
  /** The persistent rooms (PROTOCOL.md §7.9) as the `room_change` events recorded so far left them: copies. */
  roomStates(): Map<string, RoomState>;
}

/**
 * What a chat core is about to read (Journal.prepare). Each direct-message
 * read is named with its arguments, so that a journal can load exactly its
 * answer (a bounded query) rather than everything a user ever sent.
 */
export interface Need {
  /** A room's recent history (join, history, an edit in it). */
  room?: string;
  /** With `room`: a member catching up reads the first `limit` messages after this seq (`after`; by default one answer's page). */
  since?: number;
  limit?: number;
  /** `missedDirects(user, since, after, limit)` for any `after`: a login is shown the DMs its device missed. */
  missed?: { user: string; since: number; limit: number };
  /** `undelivered(user, since)`: a DM to someone offline counts what waits for them. */
  undelivered?: { user: string; since: number };
  /** `directsBetween(a, b, since, before, limit)`: `/history @user`. */
  between?: { a: string; b: string; since: number; before: number; limit: number };
  /** `editableDirect(seq)`: an edit or delete of a direct message. */
  direct?: number;
}

/** Copies of the states, for a chat core to own. */
export function copyRoomStates(states: Map<string, RoomState>): Map<string, RoomState> {
  return new Map([...states].map(([name, s]) => [name, cloneRoomState(s)]));
}

const NOTHING: Receipt = {};

export class MemoryJournal implements Journal {
  /**
   * The recent history of the rooms used last, within `maxBytes`
   * (store/recent.ts). There is no disk behind it: a room pushed out of
   * memory has no history the next time it is used.
   */
  readonly rooms: RecentRooms;
  /** Kept for every room, even when its history is not, so sequence numbers are never reused while the server runs. */
  readonly #seqs = new Map<string, number>();
  #directSeq = 0;
  /** Every DM kept, in seq order. */
  #directs: KeptDirect[] = [];
  /** Per user, the last DM seq when it last logged in: stored DMs up to it have been delivered. */
  readonly #delivered = new Map<string, number>();
  /** The persistent rooms, kept like the rest: a new Chat on this journal (a "restart" in tests) gets them back. */
  readonly #roomStates = new Map<string, RoomState>();

  readonly recording = true;

  constructor(
    readonly keep: number,
    maxBytes = DEFAULT_HISTORY_MEMORY,
  ) {
    this.rooms = new RecentRooms(keep, maxBytes, (room) => ({ seq: this.lastSeq(room), messages: [] }));
  }

  append(e: JournalEvent): Receipt {
    if (e.kind === "direct") {
      this.#directSeq = e.message.seq;
      this.#directs.push({ message: e.message, stored: e.stored === true });
    }
    if (e.kind === "session_open") this.#delivered.set(e.user, this.#directSeq);
    if (e.kind === "room_change") applyRoomChange(this.#roomStates, e);
    if (e.kind === "message") {
      this.#seqs.set(e.message.room, Math.max(this.lastSeq(e.message.room), e.message.seq));
      this.rooms.add(e.message);
    }
    if ((e.kind === "edit" || e.kind === "delete") && e.room !== undefined) this.rooms.change(e.room, e.seq, (m) => changedKept(m, e));
    else if (e.kind === "edit" || e.kind === "delete") {
      const d = this.editableDirect(e.seq);
      if (d) Object.assign(d, changedDirect(d, e));
    }
    return NOTHING;
  }

  editable(room: string, seq: number): KeptMessage | undefined {
    return this.rooms.message(room, seq);
  }

  editableDirect(seq: number): KeptDirect | undefined {
    return this.#directs.findLast((d) => d.message.seq === seq);
  }

  recent(room: string, limit: number): RoomMessage[] {
    return this.rooms.recent(room, limit);
  }

  after(room: string, since: number, limit: number): RoomMessage[] {
    return limit <= 0 ? [] : this.rooms.recent(room, this.rooms.keep).filter((m) => m.seq > since).slice(0, limit);
  }

  lastSeq(room: string): number {
    return this.#seqs.get(room) ?? 0;
  }

  lastDirectSeq(): number {
    return this.#directSeq;
  }

  missedDirects(user: string, since: number, after: number, limit: number): DirectMessage[] {
    return newest(this.#directs.filter((d) => !d.message.deleted && d.message.to === user && d.message.ts >= since && d.message.seq > after), limit);
  }

  undelivered(user: string, since: number): number {
    return countUndelivered(this.#directs, user, since, this.#delivered.get(user) ?? 0);
  }

  directsBetween(a: string, b: string, since: number, before: number, limit: number): DirectMessage[] {
    return newest(this.#directs.filter((d) => d.message.seq < before && d.message.ts >= since && isBetween(d.message, a, b)), limit);
  }

  expireDirects(before: number): void {
    this.#directs = this.#directs.filter((d) => d.message.ts >= before);
  }

  roomStates(): Map<string, RoomState> {
    return copyRoomStates(this.#roomStates);
  }
}

type Edit = { kind: "edit"; text: string } | { kind: "delete" };

/** A message after an edit (its new text, `edited`) or a delete (no text, `deleted`). */
export function changed<M extends RoomMessage | DirectMessage>(m: M, e: Edit): M {
  const { text: _t, action: _a, edited: _e, ...rest } = m;
  if (e.kind === "delete") return { ...rest, deleted: true } as M;
  return { ...m, text: e.text, edited: true };
}

/** A kept room message after an edit (one more edit) or a delete. */
export function changedKept(m: KeptMessage, e: Edit): KeptMessage {
  return { ...changed(m, e), ...(e.kind === "edit" ? { edits: (m.edits ?? 0) + 1 } : {}) };
}

/** A kept direct message after an edit (one more edit) or a delete. */
export function changedDirect(d: KeptDirect, e: Edit): KeptDirect {
  return { ...d, message: changed(d.message, e), ...(e.kind === "edit" ? { edits: (d.edits ?? 0) + 1 } : {}) };
}

/** The last `limit` of `kept` (in seq order), as messages. */
export function newest(kept: KeptDirect[], limit: number): DirectMessage[] {
  return limit <= 0 ? [] : kept.slice(-limit).map((d) => d.message);
}

export function isBetween(m: DirectMessage, a: string, b: string): boolean {
  return (m.from === a && m.to === b) || (m.from === b && m.to === a);
}

/** Stored DMs to `user` since `since` after its delivered mark. */
export function countUndelivered(kept: Iterable<KeptDirect>, user: string, since: number, delivered: number): number {
  let n = 0;
  for (const d of kept) if (d.stored && d.message.to === user && d.message.seq > delivered && d.message.ts >= since) n++;
  return n;
}
