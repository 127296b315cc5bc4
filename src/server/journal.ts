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

export interface Journal {
  append(e: JournalEvent): void;
  /** The last `limit` messages of `room`, oldest first. */
  recent(room: string, limit: number): RoomMessage[];
  /** The last sequence number used in `room` (0 if none), so numbering continues after a restart. */
  lastSeq(room: string): number;
  /** The last sequence number of direct messages. */
  lastDirectSeq(): number;
}

export class MemoryJournal implements Journal {
  readonly #rooms = new Map<string, RoomMessage[]>();
  /** Kept even when no history is, so sequence numbers are never reused while the server runs. */
  readonly #seqs = new Map<string, number>();
  #directSeq = 0;

  constructor(readonly keep: number) {}

  append(e: JournalEvent): void {
    if (e.kind === "direct") this.#directSeq = e.message.seq;
    if (e.kind !== "message") return;
    this.#seqs.set(e.message.room, e.message.seq);
    if (this.keep === 0) return;
    let ring = this.#rooms.get(e.message.room);
    if (!ring) this.#rooms.set(e.message.room, (ring = []));
    ring.push(e.message);
    if (ring.length > this.keep) ring.splice(0, ring.length - this.keep);
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
