/**
 * The server's Journal backed by the transcript: every chat event becomes a
 * transcript entry, and history on join is rebuilt from the transcript at
 * start, so the two never disagree after a restart. Sealed bodies cannot be
 * read back by the server (only the auditor holds the key): after a restart
 * their rooms keep their sequence numbers but show no older history.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Journal, type JournalEvent, MemoryJournal, type Receipt, type RoomMessage } from "../server/journal.ts";
import { type Entry, parseEntry } from "./format.ts";
import { type TranscriptWriter, type WriterOptions, TranscriptWriter as Writer, transcriptFiles } from "./writer.ts";

export class TranscriptJournal implements Journal {
  readonly #memory: MemoryJournal;

  private constructor(
    readonly writer: TranscriptWriter,
    history: number,
  ) {
    this.#memory = new MemoryJournal(history);
  }

  static open(opts: WriterOptions & { history: number }): TranscriptJournal {
    const writer = Writer.open(opts);
    const j = new TranscriptJournal(writer, opts.history);
    j.#load(opts.dir);
    return j;
  }

  /** Rebuilds room history and sequence numbers from what is on disk. */
  #load(dir: string): void {
    for (const file of transcriptFiles(dir)) {
      const text = readFileSync(join(dir, file), "utf8");
      let start = 0;
      for (let nl = text.indexOf("\n"); nl >= 0; start = nl + 1, nl = text.indexOf("\n", start)) {
        let e: Entry;
        try {
          e = parseEntry(text.slice(start, nl));
        } catch {
          continue; // verify reports malformed lines; history just skips them
        }
        if (e.type === "message") {
          if (typeof e.text === "string") {
            this.#memory.remember({
              type: "message",
              room: e.room as string,
              seq: e.room_seq as number,
              ts: e.ts,
              from: e.from as string,
              text: e.text,
              ...(e.action ? { action: true } : {}),
            });
          } else this.#memory.rememberSeq(e.room as string, e.room_seq as number);
        } else if (e.type === "direct") this.#memory.rememberDirectSeq(e.dm_seq as number);
      }
    }
  }

  get recording(): boolean {
    return this.writer.recording;
  }

  watch(fn: (recording: boolean) => void): void {
    this.writer.watch(fn);
  }

  /**
   * Never throws into the chat core or a socket handler: a closed writer
   * (late connection close at shutdown) records nothing; a failed writer
   * answers with a rejected `durable`, which turns the sender's ack into a
   * nack `not_recorded`.
   */
  append(e: JournalEvent): Receipt {
    const [type, fields] = toEntry(e);
    this.#memory.append(e);
    if (this.writer.stopped) return { durable: handled(Promise.reject(new Error("transcript stopped"))) };
    try {
      const { entry, durable } = this.writer.append(type, fields);
      return { seq: entry.seq, hash: entry.hash, durable: handled(durable) };
    } catch (err) {
      return { durable: handled(Promise.reject(err)) };
    }
  }

  recent(room: string, limit: number): RoomMessage[] {
    return this.#memory.recent(room, limit);
  }

  lastSeq(room: string): number {
    return this.#memory.lastSeq(room);
  }

  lastDirectSeq(): number {
    return this.#memory.lastDirectSeq();
  }

  close(reason: string): void {
    this.writer.close(reason);
  }
}

/** Most receipts (joins, sessions) are not awaited: a failure must not become an unhandled rejection. */
function handled(p: Promise<void>): Promise<void> {
  p.catch(() => {});
  return p;
}

function toEntry(e: JournalEvent): [string, Record<string, string | number | boolean>] {
  switch (e.kind) {
    case "session_open":
      return ["session_open", { user: e.user, session: e.session, source: e.source }];
    case "session_close":
      return ["session_close", { user: e.user, session: e.session }];
    case "login_failed":
      return ["login_failed", { source: e.source, reason: e.reason }];
    case "join":
      return ["join", { room: e.room, user: e.user }];
    case "leave":
      return ["leave", { room: e.room, user: e.user }];
    case "message": {
      const m = e.message;
      return ["message", { room: m.room, room_seq: m.seq, from: m.from, text: m.text, ...(m.action ? { action: true } : {}) }];
    }
    case "direct": {
      const m = e.message;
      return ["direct", { dm_seq: m.seq, from: m.from, to: m.to, text: m.text, ...(m.action ? { action: true } : {}) }];
    }
  }
}
