/**
 * The hook between the chat core and the record of what happened. The chat
 * core appends every event here and serves history on join from here, so the
 * two cannot disagree. `MemoryJournal` keeps recent room history in memory,
 * within a byte budget; the transcript (docs/TRANSCRIPT.md, with history.db)
 * implements the same interface on disk.
 */
import type { Message } from "../protocol/messages.ts";
import { DEFAULT_HISTORY_MEMORY, RecentRooms } from "./recent.ts";

export type RoomMessage = Message<"message">;

export type JournalEvent =
  | { kind: "session_open"; user: string; session: string; source: string; ts: number }
  | { kind: "session_close"; user: string; session: string; ts: number }
  | { kind: "join"; room: string; user: string; ts: number }
  | { kind: "leave"; room: string; user: string; ts: number }
  | { kind: "message"; message: RoomMessage }
  | { kind: "direct"; message: Message<"direct"> }
  | { kind: "login_failed"; source: string; reason: string; ts: number }
  | { kind: "session_revoked"; user: string; session: string; target: string; targetSession?: string; ts: number }
  | { kind: "password_changed"; user: string; session: string; ended: boolean; ts: number };

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
  /**
   * The recent history of the rooms used last, within `maxBytes`
   * (store/recent.ts). There is no disk behind it: a room pushed out of
   * memory has no history the next time it is used.
   */
  readonly rooms: RecentRooms;
  /** Kept for every room, even when its history is not, so sequence numbers are never reused while the server runs. */
  readonly #seqs = new Map<string, number>();
  #directSeq = 0;

  readonly recording = true;

  constructor(
    readonly keep: number,
    maxBytes = DEFAULT_HISTORY_MEMORY,
  ) {
    this.rooms = new RecentRooms(keep, maxBytes, (room) => ({ seq: this.lastSeq(room), messages: [] }));
  }

  append(e: JournalEvent): Receipt {
    if (e.kind === "direct") this.#directSeq = e.message.seq;
    if (e.kind === "message") {
      this.#seqs.set(e.message.room, Math.max(this.lastSeq(e.message.room), e.message.seq));
      this.rooms.add(e.message);
    }
    return NOTHING;
  }

  recent(room: string, limit: number): RoomMessage[] {
    return this.rooms.recent(room, limit);
  }

  lastSeq(room: string): number {
    return this.#seqs.get(room) ?? 0;
  }

  lastDirectSeq(): number {
    return this.#directSeq;
  }
}
