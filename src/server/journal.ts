/**
 * The hook between the chat core and the record of what happened. The chat
 * core appends every event here and serves history on join from here, so the
 * two cannot disagree. `MemoryJournal` keeps recent room history in memory;
 * the transcript (docs/TRANSCRIPT.md) implements the same interface on disk.
 */
import type { Message } from "../protocol/messages.ts";

export type RoomMessage = Message<"message">;

export type JournalEvent =
  | { kind: "session_open"; user: string; session: string; source: string; ts: number }
  | { kind: "session_close"; user: string; session: string; ts: number }
  | { kind: "join"; room: string; user: string; ts: number }
  | { kind: "leave"; room: string; user: string; ts: number }
  | { kind: "message"; message: RoomMessage }
  | { kind: "direct"; message: Message<"direct"> }
  | { kind: "login_failed"; source: string; reason: string; ts: number };

/** Where an event was recorded; `durable` is absent when there is nothing to wait for. */
export interface Receipt {
  /** The transcript entry's seq and hash (the chain head after it), if recorded in a transcript. */
  seq?: number;
  hash?: string;
  durable?: Promise<void>;
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
  /** The last sequence number used in `room` (0 if none), so numbering continues after a restart. */
  lastSeq(room: string): number;
  /** The last sequence number of direct messages. */
  lastDirectSeq(): number;
  /** Clean shutdown (the transcript writes server_stop and a checkpoint). */
  close?(reason: string): void;
}

const NOTHING: Receipt = {};

export class MemoryJournal implements Journal {
  readonly #rooms = new Map<string, RoomMessage[]>();
  /** Kept even when no history is, so sequence numbers are never reused while the server runs. */
  readonly #seqs = new Map<string, number>();
  #directSeq = 0;

  readonly recording = true;

  constructor(readonly keep: number) {}

  append(e: JournalEvent): Receipt {
    if (e.kind === "direct") this.#directSeq = e.message.seq;
    if (e.kind === "message") this.remember(e.message);
    return NOTHING;
  }

  /** Keeps a room message for history and its number for the room's sequence. */
  remember(m: RoomMessage): void {
    this.#seqs.set(m.room, Math.max(this.#seqs.get(m.room) ?? 0, m.seq));
    if (this.keep === 0) return;
    let ring = this.#rooms.get(m.room);
    if (!ring) this.#rooms.set(m.room, (ring = []));
    ring.push(m);
    if (ring.length > this.keep) ring.splice(0, ring.length - this.keep);
  }

  /** Notes a room sequence number without keeping the message (e.g. sealed, unreadable). */
  rememberSeq(room: string, seq: number): void {
    this.#seqs.set(room, Math.max(this.#seqs.get(room) ?? 0, seq));
  }

  rememberDirectSeq(seq: number): void {
    this.#directSeq = Math.max(this.#directSeq, seq);
  }

  recent(room: string, limit: number): RoomMessage[] {
    const ring = this.#rooms.get(room) ?? [];
    return limit <= 0 ? [] : ring.slice(-limit);
  }

  lastSeq(room: string): number {
    return this.#seqs.get(room) ?? 0;
  }

  lastDirectSeq(): number {
    return this.#directSeq;
  }
}
