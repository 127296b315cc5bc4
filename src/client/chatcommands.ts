/**
 * The chat command language: what a typed line means
 * (parseLine), the /help text, and what each command asks of the engine
 * (runCommand). The engine itself is src/client/chat.ts.
 */
import { AWAY_TEXT_MAX, REASON_TEXT_MAX, ROOM_NAME_RE, TOPIC_BYTES_MAX, TOPIC_CODE_POINTS_MAX, USER_NAME_RE } from "../protocol/limits.ts";
import { codePoints } from "../protocol/messages.ts";
import { hasControl } from "../text.ts";
import { type MessageRef, type ChatClient, MINE_MAX } from "./chat.ts";

/** What a typed line means (docs/DESIGN.md §8). */
export type Command =
  | { kind: "say"; text: string }
  | { kind: "me"; text: string }
  | { kind: "msg"; to: string; text: string }
  | { kind: "join"; room: string }
  | { kind: "leave"; room?: string }
  | { kind: "rooms" }
  | { kind: "who"; room?: string }
  /** Without text: back. */
  | { kind: "away"; text?: string }
  | { kind: "history"; limit: number }
  | { kind: "dm_history"; with: string; limit: number; more: boolean }
  | { kind: "switch"; to: string }
  | { kind: "notify"; on: boolean }
  | { kind: "ignore"; user?: string }
  | { kind: "unignore"; user: string }
  // Room moderation (PROTOCOL.md §7.9), for the current room.
  | { kind: "topic"; text?: string }
  | { kind: "moderate"; action: "op" | "deop" | "ban" | "unban" | "mute" | "unmute" | "invite"; user: string }
  | { kind: "kick"; user: string; reason?: string }
  | { kind: "bans" }
  | { kind: "mode"; invite_only?: boolean; secret?: boolean }
  | { kind: "drop" }
  | { kind: "help" }
  // Editing and deleting one's own room messages (PROTOCOL.md §7.12).
  | { kind: "edit"; which: MessageRef; text: string; to?: string }
  | { kind: "delete"; which: MessageRef; to?: string }
  | { kind: "quit" }
  | { kind: "error"; text: string };

/** The /help lines, with single blanks: a terminal shows a longer run of blanks capped (src/text.ts), so columns could not line up. */
export const HELP_TEXT = [
  "/join ROOM — join (or create) a room and make it current",
  "/switch ROOM|N — make a joined room current (also Alt-1…9, Alt-←/→)",
  "/leave [ROOM] — leave the current room (or ROOM)",
  "/rooms — list rooms",
  "/who [ROOM] — who is in the current room (or ROOM)",
  "/msg USER TEXT — direct message to USER",
  `/away TEXT — mark yourself away on all your terminals (TEXT: at most ${AWAY_TEXT_MAX} bytes), shown in /who and to whoever messages you; until you log off`,
  "/back or /away — no longer away",
  "/me TEXT — an action: * you TEXT",
  "/history [N] — show the last N messages of the room (default 20)",
  "/history @USER [N|more] — your direct messages with USER (the last N; more: the N before those shown)",
  "/notify off|on — the bell for mentions of your name and direct messages",
  "/ignore [USER] — hide USER's messages, direct messages, joins and leaves (no bell); alone: list who you ignore",
  "/unignore USER — show USER's lines again",
  `/topic [TEXT] — set the current room's topic (at most ${TOPIC_CODE_POINTS_MAX} characters); alone: clear it (operators)`,
  "/op USER, /deop USER — make USER an operator of the current room, or no longer one (the owner)",
  "/kick USER [REASON] — put USER out of the current room, saying why (operators)",
  "/ban USER, /unban USER — keep USER out of the current room, or let them in again (operators)",
  "/bans — who is banned from the current room",
  "/mute USER, /unmute USER — USER may read the current room but not speak, or may again (operators)",
  "/mode +i|-i|+s|-s — invite-only (+i) or secret, hidden from /rooms (+s) (operators)",
  "/invite USER — let USER into the current room while it is invite-only (operators)",
  "/drop — forget the current room's topic, ops, modes and bans (the owner)",
  "/edit [@USER] [N|#SEQ] TEXT — replace the text of your last message in this room (@USER: your last direct message to USER; N: your N-th last; #SEQ: message SEQ); shown as (edited)",
  "/delete [@USER] [N|#SEQ] — delete your last message in this room (or to USER; or your N-th last, or message SEQ); shown as [deleted]",
  "/help — this list",
  "/quit or /bye — leave (waits until the server has acknowledged what you sent)",
  "//text — send a line that starts with /",
  "PgUp/PgDn scroll back; Tab completes names, @names, rooms and commands.",
  "A bare \"bye\" is said to the room (piped input: it leaves, as /quit).",
];

/** The commands, for Tab completion. */
export const COMMANDS = [
  "/join", "/switch", "/leave", "/rooms", "/who", "/away", "/back", "/msg", "/me", "/history", "/notify", "/ignore", "/unignore", "/help", "/quit", "/bye",
  // Room moderation (PROTOCOL.md §7.9).
  "/topic", "/op", "/deop", "/kick", "/ban", "/unban", "/bans", "/mute", "/unmute", "/mode", "/invite", "/drop",
  // Editing and deleting one's own messages (PROTOCOL.md §7.12).
  "/edit", "/delete",
];

/**
 * `interactive`: a person at a terminal, for whom a bare "bye" is something
 * to say to the room; scripts (piped input) end with a "bye" line, and keep doing so.
 */
export function parseLine(line: string, interactive = false): Command | null {
  if (line.trim() === "") return null;
  if (line.trim() === "bye" && !interactive) return { kind: "quit" };
  if (!line.startsWith("/")) return { kind: "say", text: line };
  if (line.startsWith("//")) return { kind: "say", text: line.slice(1) };
  const [cmd = "", ...rest] = line.slice(1).split(" ");
  const arg = rest.join(" ").trim();
  const word = rest.find((w) => w !== "") ?? "";
  switch (cmd.toLowerCase()) {
    case "join":
      return ROOM_NAME_RE.test(word) ? { kind: "join", room: word } : { kind: "error", text: "usage: /join ROOM (1-32 of a-z 0-9 _ -)" };
    case "leave":
    case "part":
      return word === "" || ROOM_NAME_RE.test(word) ? { kind: "leave", ...(word ? { room: word } : {}) } : { kind: "error", text: "usage: /leave [ROOM]" };
    case "switch":
    case "window": {
      const to = word.replace(/^#/, "");
      return /^[1-9][0-9]*$/.test(to) || ROOM_NAME_RE.test(to) ? { kind: "switch", to } : { kind: "error", text: "usage: /switch ROOM or /switch N" };
    }
    case "notify":
      return word === "on" || word === "off" ? { kind: "notify", on: word === "on" } : { kind: "error", text: "usage: /notify off or /notify on" };
    case "ignore": {
      const user = oneUser(rest);
      if (word === "") return { kind: "ignore" };
      return user ? { kind: "ignore", user } : { kind: "error", text: "usage: /ignore USER, or /ignore alone to list" };
    }
    case "unignore": {
      const user = oneUser(rest);
      return user ? { kind: "unignore", user } : { kind: "error", text: "usage: /unignore USER" };
    }
    case "rooms":
    case "list":
      return { kind: "rooms" };
    case "who":
      return word === "" || ROOM_NAME_RE.test(word) ? { kind: "who", ...(word ? { room: word } : {}) } : { kind: "error", text: "usage: /who [ROOM]" };
    case "away":
      if (arg === "") return { kind: "away" };
      // The server closes a session over a malformed request: checked here first.
      return Buffer.byteLength(arg, "utf8") <= AWAY_TEXT_MAX && !hasControl(arg) && arg.isWellFormed()
        ? { kind: "away", text: arg }
        : { kind: "error", text: `usage: /away TEXT (at most ${AWAY_TEXT_MAX} bytes, no control characters), or /away alone to be back` };
    case "back":
      return arg === "" ? { kind: "away" } : { kind: "error", text: "usage: /back (to be away with a text: /away TEXT)" };
    case "msg": {
      const m = /^\s*(\S+)\s+(.+)$/.exec(rest.join(" "));
      if (!m || !USER_NAME_RE.test(m[1]!) || m[2]!.trim() === "") return { kind: "error", text: "usage: /msg USER TEXT" };
      return { kind: "msg", to: m[1]!, text: m[2]! };
    }
    case "me":
      return arg ? { kind: "me", text: arg } : { kind: "error", text: "usage: /me TEXT" };
    case "history": {
      if (word.startsWith("@")) {
        const [who, page = ""] = rest.filter((w) => w !== "");
        const n = page === "" || page === "more" ? 20 : Number(page);
        const ok = USER_NAME_RE.test(who!.slice(1)) && Number.isInteger(n) && n >= 1 && n <= 1000;
        return ok ? { kind: "dm_history", with: who!.slice(1), limit: n, more: page === "more" } : { kind: "error", text: "usage: /history @USER [N|more] (N 1-1000)" };
      }
      const n = word === "" ? 20 : Number(word);
      return Number.isInteger(n) && n >= 1 && n <= 1000 ? { kind: "history", limit: n } : { kind: "error", text: "usage: /history [N] (1-1000)" };
    }
    // Room moderation (PROTOCOL.md §7.9): the server closes a session over a malformed request, so each is checked here first.
    case "topic":
      if (arg === "") return { kind: "topic" };
      return isText(arg, TOPIC_BYTES_MAX) && codePoints(arg) <= TOPIC_CODE_POINTS_MAX
        ? { kind: "topic", text: arg }
        : { kind: "error", text: `usage: /topic TEXT (at most ${TOPIC_CODE_POINTS_MAX} characters, ${TOPIC_BYTES_MAX} bytes, no control characters), or /topic alone to clear it` };
    case "op":
    case "deop":
    case "ban":
    case "unban":
    case "mute":
    case "unmute":
    case "invite": {
      const user = oneUser(rest);
      return user ? { kind: "moderate", action: cmd.toLowerCase() as "op", user } : { kind: "error", text: `usage: /${cmd.toLowerCase()} USER` };
    }
    case "kick": {
      const user = (word || "").replace(/^@/, "");
      const reason = rest.slice(rest.indexOf(word) + 1).join(" ").trim();
      if (!USER_NAME_RE.test(user) || (reason !== "" && !isText(reason, REASON_TEXT_MAX))) return { kind: "error", text: `usage: /kick USER [REASON] (a reason of at most ${REASON_TEXT_MAX} bytes)` };
      return { kind: "kick", user, ...(reason ? { reason } : {}) };
    }
    case "bans":
      return { kind: "bans" };
    case "drop":
      return arg === "" ? { kind: "drop" } : { kind: "error", text: "usage: /drop (forgets the current room's settings)" };
    case "mode": {
      const mode = parseMode(arg);
      return mode ?? { kind: "error", text: "usage: /mode +i|-i|+s|-s (invite-only, secret; several at once: /mode +i-s)" };
    }
    case "help":
    case "?":
      return { kind: "help" };
    case "edit": {
      // /edit [@USER] TEXT, … N TEXT, … #SEQ TEXT: a number is N only when a text follows it
      const m = /^\s*(?:@(\S+)\s+)?(?:(#[1-9][0-9]{0,15}|[1-9][0-9]?)\s+)?(\S.*)?$/.exec(rest.join(" "));
      const to = m?.[1];
      const which = m?.[2] === undefined ? { back: 1 } : messageRef(m[2]);
      const text = m?.[3] ?? "";
      // a lone @USER names whose message to edit, with no text for it
      if (!m || which === null || (to !== undefined && !USER_NAME_RE.test(to)) || text.trim() === "" || /^@\S+$/.test(arg)) {
        return { kind: "error", text: `usage: /edit [@USER] [N|#SEQ] TEXT (N: 1-${MINE_MAX}, your N-th last message here or to USER; default your last)` };
      }
      return { kind: "edit", which, text: to === undefined && m[2] === undefined ? arg : text, ...(to !== undefined ? { to } : {}) };
    }
    case "delete": {
      const given = rest.filter((w) => w !== "");
      const to = given[0]?.startsWith("@") ? given.shift()!.slice(1) : undefined;
      const which = given.length === 0 ? { back: 1 } : given.length === 1 ? messageRef(given[0]!) : null;
      if (which === null || (to !== undefined && !USER_NAME_RE.test(to))) {
        return { kind: "error", text: `usage: /delete [@USER] [N|#SEQ] (N: 1-${MINE_MAX}, your N-th last message here or to USER; default your last)` };
      }
      return { kind: "delete", which, ...(to !== undefined ? { to } : {}) };
    }
    case "quit":
    case "exit":
    case "bye":
      return { kind: "quit" };
    default:
      return { kind: "error", text: `unknown command /${cmd}; /help lists them` };
  }
}

/** `3` (your 3rd last message in the room) or `#42` (the room's message 42), or null. */
function messageRef(word: string): MessageRef | null {
  if (/^#[1-9][0-9]{0,15}$/.test(word) && Number.isSafeInteger(Number(word.slice(1)))) return { seq: Number(word.slice(1)) };
  if (/^[1-9][0-9]*$/.test(word) && Number(word) <= MINE_MAX) return { back: Number(word) };
  return null;
}

/** The one user name (`bob` or `@bob`) of /ignore or /unignore, or null. */
function oneUser(words: string[]): string | null {
  const given = words.filter((w) => w !== "");
  const user = (given[0] ?? "").replace(/^@/, "");
  return given.length === 1 && USER_NAME_RE.test(user) ? user : null;
}

/** Text the server takes in a field of at most `max` bytes (PROTOCOL.md §5.0). */
function isText(s: string, max: number): boolean {
  return Buffer.byteLength(s, "utf8") <= max && !hasControl(s) && s.isWellFormed();
}

/** `+i`, `-s`, `+i-s`, `+i +s`: each of i and s at most once; null if anything else. */
function parseMode(arg: string): { kind: "mode"; invite_only?: boolean; secret?: boolean } | null {
  const out: { kind: "mode"; invite_only?: boolean; secret?: boolean } = { kind: "mode" };
  let sign: boolean | null = null;
  for (const ch of arg.replace(/\s+/g, "")) {
    if (ch === "+" || ch === "-") sign = ch === "+";
    else if ((ch === "i" || ch === "s") && sign !== null) {
      const key = ch === "i" ? "invite_only" : "secret";
      if (out[key] !== undefined) return null;
      out[key] = sign;
    } else return null;
  }
  return out.invite_only === undefined && out.secret === undefined ? null : out;
}

/** What only an interactive front end does (the bell, the ignore list). */
export interface FrontEnd {
  notify(on: boolean): void;
  /** `user`: start ignoring them; none: list who is ignored. */
  ignore(user?: string): void;
  unignore(user: string): void;
}

/** Runs one parsed command against the client. Returns false when the user asked to leave. */
export async function runCommand(client: ChatClient, cmd: Command, front?: FrontEnd): Promise<boolean> {
  switch (cmd.kind) {
    case "say":
      await client.say(cmd.text);
      return true;
    case "me":
      await client.say(cmd.text, true);
      return true;
    case "msg":
      await client.dm(cmd.to, cmd.text);
      return true;
    case "join":
      client.request({ type: "join", room: cmd.room });
      return true;
    case "leave":
      client.request({ type: "leave", room: cmd.room ?? client.room });
      return true;
    case "rooms":
      client.request({ type: "rooms" });
      return true;
    case "switch": {
      const room = /^[0-9]+$/.test(cmd.to) ? client.rooms[Number(cmd.to) - 1] : cmd.to;
      if (room === undefined || !client.switchTo(room)) {
        client.emit({ type: "local", text: room === undefined ? `there is no room ${cmd.to}: you are in ${client.rooms.length}` : `you are not in ${room}: /join ${room} first` });
      }
      return true;
    }
    case "notify":
      if (front) front.notify(cmd.on);
      else client.emit({ type: "local", text: "/notify is for the interactive client" });
      return true;
    case "ignore":
    case "unignore":
      if (!front) client.emit({ type: "local", text: `/${cmd.kind} is for the interactive client: piped and --json output carry every line` });
      else if (cmd.kind === "unignore") front.unignore(cmd.user);
      else front.ignore(cmd.user);
      return true;
    case "who":
      client.request({ type: "who", room: cmd.room ?? client.room });
      return true;
    case "away":
      client.request({ type: "away", ...(cmd.text !== undefined ? { text: cmd.text } : {}) });
      return true;
    case "history":
      client.request({ type: "history", room: client.room, limit: cmd.limit });
      return true;
    case "dm_history":
      client.directHistory(cmd.with, cmd.limit, cmd.more);
      return true;
    case "topic":
      client.request({ type: "topic", room: client.room, ...(cmd.text !== undefined ? { text: cmd.text } : {}) });
      return true;
    case "moderate":
      client.request({ type: cmd.action, room: client.room, user: cmd.user });
      return true;
    case "kick":
      client.request({ type: "kick", room: client.room, user: cmd.user, ...(cmd.reason !== undefined ? { reason: cmd.reason } : {}) });
      return true;
    case "bans":
    case "drop":
      client.request({ type: cmd.kind, room: client.room });
      return true;
    case "mode":
      client.request({ type: "mode", room: client.room, ...(cmd.invite_only !== undefined ? { invite_only: cmd.invite_only } : {}), ...(cmd.secret !== undefined ? { secret: cmd.secret } : {}) });
      return true;
    case "help":
      for (const line of HELP_TEXT) client.emit({ type: "local", text: line });
      return true;
    case "edit":
      await client.change(cmd.which, cmd.text, cmd.to);
      return true;
    case "delete":
      await client.change(cmd.which, undefined, cmd.to);
      return true;
    case "error":
      client.emit({ type: "local", text: cmd.text });
      return true;
    case "quit":
      return false;
  }
}

