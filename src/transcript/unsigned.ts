/**
 * Which entries of a transcript no checkpoint of the run that wrote them
 * signed (docs/TRANSCRIPT.md §6, §7, §8.2). A server acknowledges a message
 * only once a checkpoint covering its entry is durable (§6), so the entries
 * a run wrote after its last checkpoint and before it crashed were
 * acknowledged to no one. A later run's checkpoints cover them too, but
 * only because they were in the files when it started: they rest on the
 * files alone, and whoever could write the files while the server was down
 * could have put them there (§10). A verifier warns about them; a server
 * rebuilding history at start does not show them as history.
 *
 * A run starts with its `server_start`, after the `recovery` entries the
 * restart wrote right before it, if any. Such a stretch is reported at each
 * `server_start`: the entries after the last checkpoint, up to the first
 * entry of the restart. (After a clean stop, whose last entries are
 * `server_stop` and its checkpoint, the stretch is empty.)
 */
import type { Entry } from "./format.ts";

export interface UnsignedRange {
  /** The first and last seq of the entries no checkpoint of their run covers. */
  from: number;
  to: number;
  /** How many of them are `message` or `direct` entries. */
  messages: number;
  /** The seq of the restart's first entry (its `recovery`, or its `server_start` when it wrote none); null at the end of the transcript. */
  crash: number | null;
}

/** Follows entries in chain order, O(1) state; `observe` returns a crashed run's never-signed stretch when a restart shows it. */
export class UnsignedTails {
  /** The first entry of the stretch no checkpoint covers yet (null before any entry). */
  #from: number | null = null;
  #messages = 0;
  /** The first of the recovery entries just seen, and how many messages came before it. */
  #restart: number | null = null;
  #messagesBeforeRestart = 0;
  #last = 0;

  observe(e: Entry): UnsignedRange | null {
    this.#from ??= e.seq;
    this.#last = e.seq;
    switch (e.type) {
      case "checkpoint":
        this.#from = e.seq + 1;
        this.#messages = 0;
        this.#restart = null;
        return null;
      case "recovery":
        if (this.#restart === null) {
          this.#restart = e.seq;
          this.#messagesBeforeRestart = this.#messages;
        }
        return null;
      case "server_start": {
        const crash = this.#restart ?? e.seq;
        const messages = this.#restart === null ? this.#messages : this.#messagesBeforeRestart;
        const range = this.#from < crash ? { from: this.#from, to: crash - 1, messages, crash } : null;
        // The new run's stretch starts with its own restart entries.
        this.#from = crash;
        this.#messages = 0;
        this.#restart = null;
        return range;
      }
      default:
        // A recovery followed by anything but server_start was written mid-run (a full disk, §6).
        this.#restart = null;
        if (e.type === "message" || e.type === "direct") this.#messages++;
        return null;
    }
  }

  /**
   * The entries after the last checkpoint at the end of what was observed:
   * not signed yet if the server is running, never signed if it crashed.
   */
  end(): UnsignedRange | null {
    return this.#from !== null && this.#from <= this.#last ? { from: this.#from, to: this.#last, messages: this.#messages, crash: null } : null;
  }
}

/**
 * For a server rebuilding history at start, before it appends anything:
 * the never-signed stretches of `entries` (the whole transcript, in order)
 * — before each crash, and at the end, where the previous run's tail is
 * never signed if it crashed (a clean stop leaves none). Their `message`
 * and `direct` entries were never acknowledged and rest on the files
 * alone: not to be shown as history (their numbers, room_seq and dm_seq,
 * still count as used: others in the room may have received them).
 */
export function neverSigned(entries: Iterable<Entry>): UnsignedRange[] {
  const t = new UnsignedTails();
  const out: UnsignedRange[] = [];
  for (const e of entries) {
    const r = t.observe(e);
    if (r) out.push(r);
  }
  const end = t.end();
  if (end) out.push(end);
  return out;
}
