/**
 * How chat events look: one JSON object per line for machines (`--json`, or
 * stdout not a terminal), or one formatted line for people. Remote text is
 * escaped (src/text.ts) by the Screen (interactive) or here (plain lines),
 * so no peer can send escape sequences, bidi or zero-width characters to the
 * user's terminal, and a message that wraps marks its later rows; in JSON
 * lines those characters are `\uXXXX` escapes, never raw.
 */
import { jsonText } from "../text.ts";
import type { ChatEvent } from "./chat.ts";
import { colorize, dim, formatTime } from "./tui/colors.ts";
import { type Segment, renderSegments, terminalBlock } from "./tui/sanitize.ts";

/** The JSON-lines form (README "Scripting"): the event's fields, byte fields in base64, unsafe characters escaped. */
export function eventJson(e: ChatEvent): string {
  return jsonText(JSON.stringify(e, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v)));
}

/** The human form, or null for events a person need not see (acks, pongs). */
export function eventLine(e: ChatEvent, me: string, color: boolean): Segment[] | null {
  const at = (ts: number): Segment => dim(formatTime(ts), color);
  const note = (text: string): Segment[] => [dim("--", color), " ", text];
  switch (e.type) {
    case "message": {
      const head: Segment[] = e.history ? [dim("[history]", color), " "] : [];
      // Edited or deleted since (history only, PROTOCOL.md §7.12): the current text, marked.
      if (e.deleted) return [...head, at(e.ts), " <", colorize(e.from, color), "> ", dim("[deleted]", color)];
      const mark: Segment[] = e.edited ? [" ", dim("(edited)", color)] : [];
      return e.action
        ? [...head, at(e.ts), " * ", colorize(e.from, color), " ", e.text!, ...mark]
        : [...head, at(e.ts), " <", colorize(e.from, color), "> ", e.text!, ...mark];
    }
    case "edited": {
      if (e.to !== undefined) {
        const who = e.by === me ? ["→ ", colorize(e.to, color)] : [colorize(e.by, color), " →"];
        return [at(e.ts), " [dm ", ...who, "] ", e.action ? `* ${e.by} ${e.text}` : e.text, " ", dim("(edited)", color)];
      }
      return e.action
        ? [at(e.ts), " * ", colorize(e.by, color), " ", e.text, " ", dim("(edited)", color)]
        : [at(e.ts), " <", colorize(e.by, color), "> ", e.text, " ", dim("(edited)", color)];
    }
    case "deleted": {
      const what = e.to !== undefined ? `a direct message to ${e.to === me ? "you" : e.to}` : `a message in ${e.room}`;
      return [at(e.ts), " ", ...note(`${e.by === me ? "you" : e.by} deleted ${what}`), " ", dim("[deleted]", color)];
    }
    case "direct": {
      const who = e.from === me ? ["→ ", colorize(e.to, color)] : [colorize(e.from, color), " →"];
      // stored while this user was offline (late), or asked for with /history @USER
      const head: Segment[] = e.late ? [dim("[sent while you were away]", color), " "] : e.history ? [dim("[history]", color), " "] : [];
      if (e.deleted) return [...head, at(e.ts), " [dm ", ...who, "] ", dim("[deleted]", color)];
      const mark: Segment[] = e.edited ? [" ", dim("(edited)", color)] : [];
      return [...head, at(e.ts), " [dm ", ...who, "] ", e.action ? `* ${e.from} ${e.text}` : e.text!, ...mark];
    }
    case "ack":
      return e.stored ? note("the recipient is offline: stored, and delivered when they next log in") : null;
    case "sent": {
      const queued: Segment[] = e.queued ? [" ", dim("(queued until reconnected)", color)] : [];
      if (e.to !== undefined) return [at(Date.now()), " [dm → ", colorize(e.to, color), "] ", e.action ? `* ${me} ${e.text}` : e.text, ...queued];
      return e.action ? [at(Date.now()), " * ", colorize(me, color), " ", e.text, ...queued] : [at(Date.now()), " <", colorize(me, color), "> ", e.text, ...queued];
    }
    case "unsent":
      return note(e.reason);
    case "reconnected":
      return note(reconnectedText(e.after_ms, e.rooms));
    case "catchup":
      return note(catchupText(e.room, e.unread, e.since, e.shown));
    case "current":
      return null;
    case "joined":
      return [at(e.ts), " ", ...note(`${e.user} joined ${e.room}`)];
    case "left":
      return [at(e.ts), " ", ...note(e.user === me ? `you left ${e.room}` : `${e.user} left ${e.room}`)];
    case "room": {
      // A persistent room's owner, its modes and topic (PROTOCOL.md §7.9), shown on joining; a room without settings looks as it always did.
      const owner = e.owner === undefined || !e.persistent ? "" : e.owner === me ? "; you own it" : `; owner ${e.owner}`;
      const modes = `${e.invite_only ? "i" : ""}${e.secret ? "s" : ""}`;
      const topic = e.topic === undefined ? "" : `; topic: ${e.topic}`;
      return note(`you are in ${e.room} with ${e.users.filter((u) => u !== me).join(", ") || "nobody else"}${owner}${modes ? `; mode +${modes}` : ""}${e.muted ? "; you are muted" : ""}${topic}`);
    }
    case "room_changed":
      return [at(e.ts), " ", ...note(roomChangedText(e, me))];
    case "ban_list":
      return note(e.bans.length === 0 ? `nobody is banned from ${e.room}` : `banned from ${e.room}: ${e.bans.join(", ")}`);
    case "members": {
      const away = new Map((e.away ?? []).map((a) => [a.user, a.text]));
      const who = e.users.map((u) => (away.has(u) ? `${u} (away: ${away.get(u)})` : u));
      return note(`in ${e.room}: ${who.join(", ") || "nobody"}`);
    }
    case "room_list":
      return note(e.rooms.length === 0 ? "no rooms" : `rooms: ${e.rooms.map((r) => `${r.name} (${r.users})`).join(", ")}`);
    case "history_end":
      return null;
    case "notice":
      return note(e.text);
    case "nack":
      return note(`not delivered: ${e.message}`);
    case "error":
      return note(`server: ${e.message} (${e.code})`);
    case "bye":
      return note(`server: ${e.reason}`);
    case "connected":
      return note(`connected to ${e.server} as ${e.user}`);
    case "disconnected":
      return note(`disconnected: ${e.reason}${e.code !== undefined ? ` (${e.code})` : ""}`);
    case "reconnecting":
      return note(`reconnecting in ${(e.in_ms / 1000).toFixed(1)} s (attempt ${e.attempt})`);
    case "local":
      return note(e.text);
    default:
      return null;
  }
}

/** "bob was kicked from ops by alice (spam)", "alice set the topic of ops: …" (PROTOCOL.md §7.9). */
export function roomChangedText(e: Extract<ChatEvent, { type: "room_changed" }>, me: string): string {
  const by = e.by === me ? "you" : e.by;
  const who = e.user === me ? "you" : (e.user ?? "");
  switch (e.action) {
    case "topic":
      return e.text === undefined ? `${by} cleared the topic of ${e.room}` : `${by} set the topic of ${e.room}: ${e.text}`;
    case "op":
      return `${by} made ${who} an operator of ${e.room}`;
    case "deop":
      return `${by} took operator away from ${who} in ${e.room}`;
    case "kick":
      return `${who} ${who === "you" ? "were" : "was"} kicked from ${e.room} by ${by}${e.text === undefined ? "" : ` (${e.text})`}`;
    case "ban":
      return `${who} ${who === "you" ? "were" : "was"} banned from ${e.room} by ${by}`;
    case "unban":
      return `${by} unbanned ${who} in ${e.room}`;
    case "mute":
      return `${by} muted ${who} in ${e.room}${who === "you" ? ": you may read but not speak" : ""}`;
    case "unmute":
      return `${by} unmuted ${who} in ${e.room}`;
    case "invite":
      return `${by} invited ${who} to ${e.room}${who === "you" ? `: /join ${e.room}` : ""}`;
    case "mode": {
      const flag = (on: boolean | undefined, c: string) => (on === undefined ? "" : `${on ? "+" : "-"}${c}`);
      return `${by} set ${e.room} ${flag(e.invite_only, "i")}${flag(e.secret, "s")}`;
    }
    case "drop":
      return `${by} dropped the settings of ${e.room}`;
    default:
      return `${by} changed ${e.room}`;
  }
}

/** `reconnected after 12 s; 3 new messages in #general` (and what the server no longer had). */
function reconnectedText(ms: number, rooms: readonly { room: string; missed: number; gap: number }[]): string {
  const parts = rooms.flatMap((r) => [
    ...(r.missed > 0 ? [`${r.missed} new message${r.missed === 1 ? "" : "s"} in #${r.room}`] : []),
    ...(r.gap > 0 ? [`${r.gap} message${r.gap === 1 ? "" : "s"} of #${r.room} lost (the server no longer keeps them)`] : []),
  ]);
  return `reconnected after ${Math.round(ms / 1000)} s; ${parts.length > 0 ? parts.join(", ") : "nothing new"}`;
}

/**
 * The summary before a room's missed messages (PROTOCOL.md §7.14):
 * `214 new messages in #general since 18:02 (showing the last 50; /history for more)`,
 * `12 new messages in #general since 18:02` when all of them follow. The time
 * carries the date when it is not today's.
 */
export function catchupText(room: string, unread: number, since: number, shown: number, now = Date.now()): string {
  const d = new Date(since);
  const day = d.toDateString() === new Date(now).toDateString() ? "" : `${d.toLocaleDateString("en", { month: "short", day: "numeric" })} `;
  const head = `${unread} new message${unread === 1 ? "" : "s"} in #${room} since ${day}${formatTime(since)}`;
  if (shown >= unread) return head;
  if (shown === 0) return `${head}; /history to read`;
  return `${head} (showing the last ${shown}; /history for more)`;
}

/**
 * A line without the Screen, escaped and coloured only if asked. With
 * `columns` (the output is a terminal that wide) it is wrapped like the
 * Screen's lines, its later rows marked; without, it is one row.
 */
export function plainLine(segments: readonly Segment[], columns?: number): string {
  return columns ? terminalBlock(segments, columns) : renderSegments(segments);
}
