/**
 * Rooms as windows in the interactive client, irssi-style, over one merged
 * scrollback (the Screen's):
 *
 * - the prompt names the current room (`alice@#ops> `); the status row
 *   lists the joined rooms in join order, numbered for Alt-1…9, the current
 *   one marked `*`, others with their unread count and `@N` for mentions of
 *   the user's name (`[1:#general 3 @1] [2:#ops*]`); a room joined at start
 *   with messages this device has not read counts them (its `catchup`);
 * - a line from a room other than the current one carries the room's name
 *   after its time (`12:01 #general <bob> alice, you there?`); switching
 *   prints a line saying so, so the unlabelled lines after it are plainly
 *   the new room's;
 * - a mention of the user's name (as a whole word, any case) is highlighted
 *   and rings the bell, as does a direct message from someone else, unless
 *   `/notify off`; history is never counted or rung;
 * - the user's own lines wait in the Screen's pending rows (dim, "sending…")
 *   until the server's `ack`, then go into the scrollback in the server's
 *   order with the server's time; a `nack` or `unsent` puts them there
 *   marked as not delivered, with the reason;
 * - Tab completes /commands at the start of a line, `#rooms`, and the names
 *   seen in `room`, `joined`, `left` and `members` events (a name that
 *   starts a line gets ": "; after `@`, `@name`);
 * - the users on the ignore list (/ignore, src/client/ignores.ts) are not
 *   heard: their room messages (history too), direct messages, joins and
 *   leaves are not shown, counted or rung for. Lists of names (`/who`, the
 *   room line) still name them, and the engine still receives everything:
 *   only this screen leaves it out.
 *
 * All remote text goes to the Screen as segments, which escapes it.
 */
import type { ChatEvent } from "./chat.ts";
import { COMMANDS } from "./chatcommands.ts";
import { eventLine } from "./chatview.ts";
import type { IgnoreChange, IgnoreList } from "./ignores.ts";
import { colorize, dim, formatTime } from "./tui/colors.ts";
import type { KeyName } from "./tui/keys.ts";
import type { Segment } from "./tui/sanitize.ts";
import type { Line, Screen } from "./tui/screen.ts";

/** What the window needs of the engine (src/client/chat.ts). */
export interface Rooms {
  readonly room: string;
  readonly rooms: readonly string[];
  switchTo(room: string): boolean;
}

/** What the window needs of the ignore list (src/client/ignores.ts). */
export type Ignores = Pick<IgnoreList, "has" | "list" | "add" | "remove">;

/** The part of the Screen the window draws on. */
export type WindowScreen = Pick<Screen, "print" | "setStatus" | "setPending" | "setPrompt" | "bell">;

interface Pending {
  readonly room?: string;
  readonly to?: string;
  readonly text: string;
  readonly action: boolean;
  readonly queued: boolean;
}

const NAME_CHAR = "[\\p{L}\\p{N}_-]";

/** How long after a reconnect the joins of those who were in a room before are not shown (they are coming back too). */
const REJOIN_QUIET_MS = 60_000;

export class ChatWindow {
  notify = true;
  readonly #unread = new Map<string, number>();
  readonly #mentions = new Map<string, number>();
  readonly #nicks = new Map<string, Set<string>>();
  readonly #pending = new Map<number, Pending>();
  /** Edits and deletes sent and not yet answered (PROTOCOL.md §7.12): what a refusal says was not done. */
  readonly #changes = new Map<number, "edited" | "deleted">();
  readonly #mention: RegExp;
  /** The room the last "now talking in" line named; at first, the first room joined. */
  #announced: string | null = null;
  /**
   * Who was in each room when the connection dropped. A server that lost its
   * rooms (a restart, a cluster's core moving to another node) sees everyone
   * join again as their clients come back: those joins are not news, and are
   * not shown, until REJOIN_QUIET_MS after this client is back.
   */
  #rejoining: Map<string, Set<string>> | null = null;
  #rejoiningUntil = 0;

  constructor(
    readonly screen: WindowScreen,
    readonly rooms: Rooms,
    readonly me: string,
    readonly color: boolean,
    readonly ignores: Ignores = { has: () => false, list: () => [], add: () => "absent", remove: () => "absent" },
  ) {
    // User names are [a-z0-9_-]: nothing in them needs escaping in a pattern but "-", which is literal outside a class.
    this.#mention = new RegExp(`(?<!${NAME_CHAR})${me}(?!${NAME_CHAR})`, "giu");
  }

  prompt(): string {
    return `${this.me}@#${this.rooms.room}> `;
  }

  setNotify(on: boolean): void {
    this.notify = on;
    this.screen.print(this.#note(on ? "the bell rings for mentions and direct messages" : "no bell for mentions and direct messages (/notify on)"));
    this.#status();
  }

  /** /ignore USER, or /ignore alone: the list. */
  ignore(user?: string): void {
    if (user === undefined) {
      const names = this.ignores.list();
      return this.screen.print(this.#note(names.length === 0 ? "you ignore no one (/ignore USER)" : `you ignore ${names.join(", ")}`));
    }
    if (user === this.me) return this.screen.print(this.#note("you cannot ignore yourself"));
    this.#changeIgnores(() => this.ignores.add(user), {
      added: `ignoring ${user}: their messages, direct messages, joins and leaves are not shown (/unignore ${user})`,
      already: `you already ignore ${user}`,
    });
  }

  unignore(user: string): void {
    this.#changeIgnores(() => this.ignores.remove(user), { removed: `no longer ignoring ${user}`, absent: `you do not ignore ${user}` });
  }

  /** Changes the list and says what became of it; a file that cannot be read or written leaves it as it was, and says why. */
  #changeIgnores(change: () => IgnoreChange, say: Partial<Record<IgnoreChange, string>>): void {
    let text: string;
    try {
      const result = change();
      text = say[result] ?? result;
    } catch (e) {
      text = `the ignore list is unchanged: ${e instanceof Error ? e.message : String(e)}`;
    }
    this.screen.print(this.#note(text));
  }

  /** Alt-1…9: that room; Alt-←/→: the previous/next one, round. */
  key(name: KeyName): void {
    const rooms = this.rooms.rooms;
    if (rooms.length === 0) return;
    let to: string | undefined;
    if (name === "alt-left" || name === "alt-right") {
      const i = rooms.indexOf(this.rooms.room);
      to = rooms[(i + (name === "alt-left" ? rooms.length - 1 : 1)) % rooms.length];
    } else if (name.startsWith("alt-")) {
      to = rooms[Number(name.slice(4)) - 1];
    }
    if (to === undefined) this.screen.bell();
    else this.rooms.switchTo(to);
  }

  complete(word: string, atStart: boolean): string[] {
    if (atStart && word.startsWith("/")) return COMMANDS.map((c) => `${c} `);
    if (word.startsWith("#")) return this.rooms.rooms.map((r) => `#${r} `);
    const names = new Set<string>();
    for (const r of [this.rooms.room, ...this.rooms.rooms]) for (const n of this.#nicks.get(r) ?? []) if (n !== this.me) names.add(n);
    if (word.startsWith("@")) return [...names].map((n) => `@${n} `);
    if (atStart) return [...names].map((n) => `${n}: `);
    return [...names, ...this.rooms.rooms].map((n) => `${n} `);
  }

  show(e: ChatEvent): void {
    switch (e.type) {
      case "current":
        this.#unread.delete(e.room);
        this.#mentions.delete(e.room);
        this.screen.setPrompt(this.prompt());
        // Said when it changes, not when an engine confirms the room it started in (or rejoined).
        if (e.room !== this.#announced) this.screen.print(this.#note(`now talking in #${e.room}`));
        this.#announced = e.room;
        return this.#status();
      case "room":
        this.#announced ??= e.room;
        this.#nicks.set(e.room, new Set(e.users));
        this.#print(e);
        return this.#status();
      case "members":
        if (this.rooms.rooms.includes(e.room)) this.#nicks.set(e.room, new Set(e.users));
        return this.#print(e);
      case "joined":
        this.#nicks.get(e.room)?.add(e.user);
        if (this.ignores.has(e.user) || this.#rejoined(e.room, e.user)) return;
        return this.#print(e);
      case "disconnected": {
        // A new outage, or another within the quiet time of the last: who is in each room now is coming back too.
        if (this.#rejoining === null || Date.now() >= this.#rejoiningUntil) this.#rejoining = new Map();
        for (const [room, users] of this.#nicks) {
          const back = this.#rejoining.get(room) ?? new Set();
          for (const u of users) back.add(u);
          this.#rejoining.set(room, back);
        }
        this.#rejoiningUntil = Number.POSITIVE_INFINITY;
        return this.#print(e);
      }
      case "reconnected":
        this.#rejoiningUntil = Date.now() + REJOIN_QUIET_MS;
        return this.#print(e);
      case "left":
        this.#rejoining?.get(e.room)?.delete(e.user);
        if (e.user === this.me) {
          this.#nicks.delete(e.room);
          this.#unread.delete(e.room);
          this.#mentions.delete(e.room);
        } else {
          this.#nicks.get(e.room)?.delete(e.user);
          if (this.ignores.has(e.user)) return;
        }
        this.#print(e);
        return this.#status();
      case "room_changed":
        // A kick or ban (PROTOCOL.md §7.9) takes the user out of the room, as a leave does.
        if ((e.action === "kick" || e.action === "ban") && e.user !== undefined) {
          if (e.user === this.me) {
            this.#nicks.delete(e.room);
            this.#unread.delete(e.room);
            this.#mentions.delete(e.room);
          } else this.#nicks.get(e.room)?.delete(e.user);
        }
        this.#print(e);
        return this.#status();
      case "message":
        if (this.ignores.has(e.from)) return;
        return this.#message(e);
      case "edited":
      case "deleted":
        if (this.ignores.has(e.by)) return;
        return this.#print(e);
      case "catchup":
        // A room joined at start with messages this device has not read (PROTOCOL.md §7.14): counted as unread there.
        this.#print(e);
        if (e.room !== this.rooms.room) this.#unread.set(e.room, (this.#unread.get(e.room) ?? 0) + e.unread);
        return this.#status();
      case "direct":
        if (e.from !== this.me && this.ignores.has(e.from)) return;
        this.#print(e);
        if (e.from !== this.me && this.notify) this.screen.bell();
        return;
      case "sent":
        this.#pending.set(e.id, { room: e.room, to: e.to, text: e.text, action: e.action === true, queued: e.queued === true });
        return this.#drawPending();
      case "change_sent":
        this.#changes.set(e.id, e.text === undefined ? "deleted" : "edited");
        return;
      case "ack":
      case "nack": {
        const change = this.#changes.get(e.id);
        if (change !== undefined) {
          this.#changes.delete(e.id);
          // done: the engine says so next (a local line)
          if (e.type === "nack") this.screen.print(this.#note(`not ${change}: ${e.message}`));
          return;
        }
        if (e.type === "ack") return this.#acked(e);
        const p = this.#take(e.id);
        if (p) this.screen.print([...this.#own(p, Date.now()), "  ", this.#mark(`[not delivered: ${e.message}]`)]);
        else this.#print(e);
        return;
      }
      case "unsent": {
        const p = this.#take(e.id);
        if (p) this.screen.print([...this.#own(p, Date.now()), "  ", this.#mark(`[${e.reason}]`)]);
        else this.#print(e);
        return;
      }
      default:
        return this.#print(e);
    }
  }

  #acked(e: ChatEvent & { type: "ack" }): void {
    const p = this.#take(e.id);
    if (p) this.screen.print(e.stored ? [...this.#own(p, e.ts), "  ", dim(`[stored: ${p.to} is offline; delivered at their next login]`, this.color)] : this.#own(p, e.ts));
  }

  /** True once for a user who was in `room` before the connection dropped and is joining it again (the server took everyone back). */
  #rejoined(room: string, user: string): boolean {
    if (this.#rejoining === null) return false;
    if (Date.now() >= this.#rejoiningUntil) {
      this.#rejoining = null;
      return false;
    }
    return this.#rejoining.get(room)?.delete(user) ?? false;
  }

  #print(e: ChatEvent): void {
    const line = eventLine(e, this.me, this.color);
    if (line) this.screen.print(line);
  }

  #note(text: string): Line {
    return [dim("--", this.color), " ", text];
  }

  #mark(text: string): Segment {
    return this.color ? { text, sgr: "1;31" } : text;
  }

  #message(e: ChatEvent & { type: "message" }): void {
    const elsewhere = e.room !== this.rooms.room;
    // A deleted message (history only) has no text: the plain line says so.
    if (e.text === undefined) return this.#print(e);
    const mentioned = e.from !== this.me && !e.history && this.#mentions_(e.text);
    if (!e.history && elsewhere) {
      this.#unread.set(e.room, (this.#unread.get(e.room) ?? 0) + 1);
      if (mentioned) this.#mentions.set(e.room, (this.#mentions.get(e.room) ?? 0) + 1);
      this.#status();
    }
    const head: Segment[] = e.history ? [dim("[history]", this.color), " "] : [];
    head.push(dim(formatTime(e.ts), this.color), " ");
    if (elsewhere) head.push(this.#label(e.room), " ");
    const text = mentioned ? this.#highlight(e.text) : [e.text];
    if (e.edited) text.push(" ", dim("(edited)", this.color));
    this.screen.print(e.action ? [...head, "* ", colorize(e.from, this.color), " ", ...text] : [...head, "<", colorize(e.from, this.color), "> ", ...text]);
    if (mentioned && this.notify) this.screen.bell();
  }

  #mentions_(text: string): boolean {
    this.#mention.lastIndex = 0;
    return this.#mention.test(text);
  }

  #label(room: string): Segment {
    return this.color ? { text: `#${room}`, sgr: "1" } : `#${room}`;
  }

  #highlight(text: string): Segment[] {
    if (!this.color) return [text];
    const out: Segment[] = [];
    let at = 0;
    for (const m of text.matchAll(this.#mention)) {
      out.push(text.slice(at, m.index), { text: m[0], sgr: "1;7" });
      at = m.index + m[0].length;
    }
    out.push(text.slice(at));
    return out;
  }

  #take(id: number): Pending | undefined {
    const p = this.#pending.get(id);
    if (!p) return undefined;
    this.#pending.delete(id);
    this.#drawPending();
    return p;
  }

  /** The user's own line as the scrollback shows it (`ts`: the server's time, once acknowledged). */
  #own(p: Pending, ts: number): Segment[] {
    const head: Segment[] = [dim(formatTime(ts), this.color), " "];
    if (p.to !== undefined) return [...head, "[dm → ", colorize(p.to, this.color), "] ", p.action ? `* ${this.me} ${p.text}` : p.text];
    if (p.room !== undefined && p.room !== this.rooms.room) head.push(this.#label(p.room), " ");
    return p.action ? [...head, "* ", colorize(this.me, this.color), " ", p.text] : [...head, "<", colorize(this.me, this.color), "> ", p.text];
  }

  #drawPending(): void {
    const rows: Line[] = [];
    for (const p of this.#pending.values()) {
      const where = p.to !== undefined ? `[dm → ${p.to}] ` : p.room !== undefined && p.room !== this.rooms.room ? `#${p.room} ` : "";
      const text = p.action ? `* ${this.me} ${p.text}` : p.to !== undefined ? p.text : `<${this.me}> ${p.text}`;
      const state = p.queued ? "(waiting for the connection)" : "(sending…)";
      rows.push(this.color ? [{ text: `${where}${text}`, sgr: "2" }, " ", { text: state, sgr: "2" }] : `${where}${text} ${state}`);
    }
    this.screen.setPending(rows);
  }

  #status(): void {
    const parts: Segment[] = [];
    this.rooms.rooms.forEach((room, i) => {
      const current = room === this.rooms.room;
      const unread = this.#unread.get(room) ?? 0;
      const mentions = this.#mentions.get(room) ?? 0;
      const text = `[${i + 1}:#${room}${current ? "*" : ""}${unread ? ` ${unread}` : ""}${mentions ? ` @${mentions}` : ""}]`;
      if (parts.length > 0) parts.push(" ");
      parts.push(this.color && (current || mentions) ? { text, sgr: current ? "7" : "1" } : text);
    });
    if (!this.notify) parts.push(" [notify off]");
    this.screen.setStatus(parts);
  }
}
