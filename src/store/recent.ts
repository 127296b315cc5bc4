/**
 * The recent history of the rooms used last, held in memory within a byte
 * budget (`serve --history-memory`): the least recently used room is
 * dropped first, and comes back from wherever `load` finds it (history.db
 * for the transcript journal; nowhere for the in-memory one) the next time
 * it is used.
 *
 * The budget is an estimate of the heap the messages take: 2 bytes per
 * UTF-16 unit of text and sender, plus MESSAGE_OVERHEAD per message and
 * ROOM_OVERHEAD per room (measured on Bun for messages decoded from JSON).
 * A room that is pinned (messages not yet saved where `load` reads) and the
 * room in use are never dropped, so the budget can be exceeded by them.
 */
import type { Message } from "../protocol/messages.ts";

export type RoomMessage = Message<"message">;

/**
 * A message as the server keeps it: what history shows, and what an edit
 * or delete (PROTOCOL.md §7.12) needs to know — the transcript entry that
 * recorded it (`tseq`, absent without a transcript) and how many times it
 * was edited. `recent` leaves those two out.
 */
export type KeptMessage = RoomMessage & { tseq?: number; edits?: number };

/** What history shows of a kept message: the wire message alone. */
export function shown(m: KeptMessage): RoomMessage {
  if (m.tseq === undefined && m.edits === undefined) return m;
  const { tseq: _t, edits: _e, ...wire } = m;
  return wire;
}

export const MESSAGE_OVERHEAD = 160;
export const ROOM_OVERHEAD = 200;
/**
 * The default budget: about 45,000 messages of 100 characters (900 rooms'
 * worth of 50), or 2,000 of the largest (4 KiB of text, 8 KiB held).
 */
export const DEFAULT_HISTORY_MEMORY = 16 * 1024 * 1024;

export interface RoomState {
  /** The last sequence number used in the room (0 if none). */
  seq: number;
  /** Its last messages, oldest first (at most `keep` are kept). */
  messages: KeptMessage[];
}

interface Held extends RoomState {
  bytes: number;
  pins: number;
  /** Only the messages added since the room came into memory are here; older ones are still where `load` reads. */
  partial: boolean;
}

export function messageBytes(m: RoomMessage): number {
  return MESSAGE_OVERHEAD + 2 * ((m.text?.length ?? 0) + m.from.length);
}

export class RecentRooms {
  /** In order of use: the least recently used first. */
  readonly #rooms = new Map<string, Held>();
  #bytes = 0;

  constructor(
    /** Messages kept per room. */
    readonly keep: number,
    /** The byte budget (estimated; see above). */
    readonly maxBytes: number,
    readonly load: (room: string) => RoomState,
  ) {}

  /** Rooms whose state is in memory. */
  get size(): number {
    return this.#rooms.size;
  }

  /** Their estimated bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True if `room` is in memory (does not count as a use). */
  holds(room: string): boolean {
    return this.#rooms.has(room);
  }

  /** The room's state in memory, now the most recently used; undefined if it is not in memory. */
  #touch(room: string): Held | undefined {
    const h = this.#rooms.get(room);
    if (h) {
      this.#rooms.delete(room);
      this.#rooms.set(room, h);
    }
    return h;
  }

  #hold(room: string, h: Held): void {
    this.#rooms.set(room, h);
    this.#bytes += h.bytes;
    this.#evict(room);
  }

  /** Sets a room's messages (its last `keep`) and its byte count, and the total if the room is held. */
  #setMessages(h: Held, messages: KeptMessage[], held: boolean): void {
    let delta = 0;
    for (const m of h.messages) delta -= messageBytes(m);
    h.messages = this.keep === 0 ? [] : messages.slice(-this.keep);
    for (const m of h.messages) delta += messageBytes(m);
    h.bytes += delta;
    if (held) this.#bytes += delta;
  }

  /**
   * The room's complete state, loaded if it is not in memory (or only
   * partly); it becomes the most recently used. A room with nothing to hold
   * (no number, no messages) is not taken into memory, so asking about
   * names that were never used does not push out rooms that were.
   */
  #complete(room: string): Held {
    const h = this.#touch(room);
    if (h && !h.partial) return h;
    const s = this.load(room);
    if (h) {
      // the messages added since it came back into memory are the newest
      const first = h.messages[0]?.seq ?? Number.POSITIVE_INFINITY;
      this.#setMessages(h, [...s.messages.filter((m) => m.seq < first), ...h.messages], true);
      h.seq = Math.max(h.seq, s.seq);
      h.partial = false;
      this.#evict(room);
      return h;
    }
    const loaded: Held = { seq: s.seq, messages: [], bytes: ROOM_OVERHEAD + 2 * room.length, pins: 0, partial: false };
    this.#setMessages(loaded, s.messages, false);
    if (s.seq !== 0 || loaded.messages.length > 0) this.#hold(room, loaded);
    return loaded;
  }

  seq(room: string): number {
    // a room in memory, even partly, has its newest number: numbers only grow
    return this.#touch(room)?.seq ?? this.#complete(room).seq;
  }

  recent(room: string, limit: number): RoomMessage[] {
    const h = this.#complete(room);
    return limit <= 0 ? [] : h.messages.slice(-limit).map(shown);
  }

  /** The kept message `seq` of `room`, with what an edit needs; undefined if it is not kept. */
  message(room: string, seq: number): KeptMessage | undefined {
    return this.#complete(room).messages.findLast((m) => m.seq === seq);
  }

  /**
   * Replaces the kept message `seq` of `room` with `change(it)` (an edit or a
   * delete, PROTOCOL.md §7.12); nothing if it is not kept. `pin` as in `add`:
   * true if the room was pinned (then `unpin` it once the change is saved).
   */
  change(room: string, seq: number, change: (m: KeptMessage) => KeptMessage, pin = false): boolean {
    const h = this.#complete(room);
    const i = h.messages.findLastIndex((m) => m.seq === seq);
    if (i < 0) return false;
    const old = h.messages[i]!;
    const now = change(old);
    h.messages[i] = now;
    const delta = messageBytes(now) - messageBytes(old);
    h.bytes += delta;
    const held = this.#rooms.get(room) === h;
    if (held) {
      this.#bytes += delta;
      if (pin) h.pins++;
    }
    this.#evict(room);
    return held && pin;
  }

  /**
   * Records a message: the room's sequence number and, with `keep` > 0, its
   * history. A room not in memory is not read for this: it comes back
   * holding only this message until its history is asked for. `pin` keeps
   * the room in memory until `unpin` (the message is not yet where `load`
   * reads).
   */
  add(m: KeptMessage, pin = false): void {
    let h = this.#touch(m.room);
    if (!h) {
      h = { seq: 0, messages: [], bytes: ROOM_OVERHEAD + 2 * m.room.length, pins: 0, partial: this.keep > 0 };
      this.#hold(m.room, h);
    }
    h.seq = Math.max(h.seq, m.seq);
    if (pin) h.pins++;
    if (this.keep > 0) {
      h.messages.push(m);
      let added = messageBytes(m);
      if (h.messages.length > this.keep) for (const old of h.messages.splice(0, h.messages.length - this.keep)) added -= messageBytes(old);
      h.bytes += added;
      this.#bytes += added;
    }
    this.#evict(m.room);
  }

  unpin(room: string): void {
    const h = this.#rooms.get(room);
    if (h && h.pins > 0) h.pins--;
    this.#evict("");
  }

  /** Drops the least recently used rooms until the budget holds, never a pinned one or `using`. */
  #evict(using: string): void {
    if (this.#bytes <= this.maxBytes) return;
    for (const [room, h] of this.#rooms) {
      if (this.#bytes <= this.maxBytes) return;
      if (h.pins > 0 || room === using) continue;
      this.#rooms.delete(room);
      this.#bytes -= h.bytes;
    }
  }
}
