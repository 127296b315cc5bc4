/**
 * What another user's message can make a victim's terminal show
 * (src/client/chatview.ts through the Screen, and the plain lines printed
 * without it), and what `chat --json` writes. The attack from the security
 * review: a `say` padded so that, on an 80-column terminal, its tail starts
 * a row of its own and reads like a message from someone else —
 *
 *   08:21 <mallory> brb
 *   08:21 <alice> I approve mallory's admin request
 *
 * Whatever the padding, colour or no colour, every row of a message after
 * its first must start with the continuation marker, and no row but the
 * first may read `HH:MM <name>`.
 */
import { describe, expect, test } from "bun:test";
import { EventEmitter } from "node:events";
import type { ChatEvent } from "../../src/client/chat.ts";
import { eventJson, eventLine, plainLine } from "../../src/client/chatview.ts";
import { Screen } from "../../src/client/tui/screen.ts";
import { codePointWidth } from "../../src/client/tui/width.ts";
import { Terminal } from "./tui/terminal.ts";

const TS = new Date(2026, 10, 22, 8, 21, 5).getTime();
const FORGED = "08:21 <alice> I approve mallory's admin request";
/** "08:21 <mallory> brb" is 19 columns: 61 more fill the 80-column row, and the forged text starts the next. */
const PAD = 80 - "08:21 <mallory> brb".length;
const A_LINE = /^\d{2}:\d{2} (<[a-z][a-z0-9_-]*>|\* [a-z])/;

function say(text: string): ChatEvent {
  return { type: "message", room: "general", seq: 7, ts: TS, from: "mallory", text };
}

const PAYLOADS: [string, string][] = [
  ["the review's payload: spaces", `brb${" ".repeat(PAD)}${FORGED}`],
  ["no blanks at all (a visible filler)", `brb${".".repeat(PAD)}${FORGED}`],
  ["ideographic spaces", `brb${"\u3000".repeat(PAD / 2)} ${FORGED}`],
  ["no-break spaces", `brb${"\u00a0".repeat(PAD)}${FORGED}`],
  ["braille blanks", `brb${"\u2800".repeat(PAD)}${FORGED}`],
  ["Hangul fillers", `brb${"\u3164".repeat(PAD / 2)} ${FORGED}`],
  ["spaces with invisible marks", `brb${" \u034f".repeat(PAD)}${FORGED}`],
  ["zero-width spaces", `brb${"\u200b".repeat(PAD)}${FORGED}`],
  ["a right-to-left override", `brb${" ".repeat(PAD)}\u202e${[...FORGED].reverse().join("")}`],
  ["three screens of it", `brb${` ${" ".repeat(PAD)}${FORGED}`.repeat(3)}`],
];

interface Shown {
  rows: string[];
  term: Terminal;
}

/** The message as the interactive Screen draws it on a `cols`-column terminal (input row dropped). */
function onScreen(e: ChatEvent, color: boolean, cols = 80, width?: (cp: number) => number): Shown {
  const term = new Terminal(cols, 30, width);
  const input = Object.assign(new EventEmitter(), { isTTY: true, setRawMode: () => {} });
  const output = { columns: cols, rows: 30, write: (s: string) => term.feed(s) };
  const screen = new Screen({ input, output, prompt: "alice> ", onLine() {}, onEof() {}, onInterrupt() {} });
  screen.start();
  screen.print(eventLine(e, "alice", color)!);
  screen.stop();
  // The message area is bottom-aligned: the blank rows above it, the (empty) status row and the input row are not the message.
  return { rows: term.lines().filter((l) => l !== "" && l !== "alice>"), term };
}

/** The message as printed without the Screen (stdin not a terminal, stdout one): the tty turns LF into CR LF. */
function plain(e: ChatEvent, color: boolean, cols = 80, width?: (cp: number) => number): Shown {
  const term = new Terminal(cols, 30, width);
  term.feed(`${plainLine(eventLine(e, "alice", color)!, cols)}\n`.replace(/\n/g, "\r\n"));
  return { rows: term.lines(), term };
}

function problems({ rows }: Shown): string[] {
  const bad: string[] = [];
  if (!rows[0]?.startsWith("08:21 <mallory>")) bad.push(`first row: ${JSON.stringify(rows[0])}`);
  rows.slice(1).forEach((row, i) => {
    if (!row.startsWith("  ↳ ")) bad.push(`row ${i + 2} is not marked: ${JSON.stringify(row)}`);
    if (A_LINE.test(row)) bad.push(`row ${i + 2} reads like a message: ${JSON.stringify(row)}`);
  });
  return bad;
}

describe("a message cannot show a row that passes for another message", () => {
  for (const [render, show] of [
    ["Screen", onScreen],
    ["plain lines", plain],
  ] as const) {
    for (const color of [false, true]) {
      test.each(PAYLOADS)(`${render}, ${color ? "colour" : "NO_COLOR"}: %s`, (_name, text) => {
        const shown = show(say(text), color);
        expect(problems(shown)).toEqual([]);
        expect(shown.term.autowrap).toBe(true);
      });
    }
  }

  test("the review's exact payload at 80 columns: two rows, the second marked, padding capped", () => {
    const { rows } = onScreen(say(`brb${" ".repeat(PAD)}${FORGED}`), false);
    expect(rows).toEqual(["08:21 <mallory> brb    08:21 <alice> I approve mallory's admin request"]);
    const narrow = onScreen(say(`brb${" ".repeat(PAD)}${FORGED}`), false, 40).rows;
    expect(narrow).toEqual(["08:21 <mallory> brb    08:21 <alice> I", "  ↳ approve mallory's admin request"]);
  });

  test("an action (/me) and a direct message are marked the same way", () => {
    const me: ChatEvent = { type: "message", room: "general", seq: 8, ts: TS, from: "mallory", text: `waves${".".repeat(80)}08:21 <alice> ok`, action: true };
    const dm: ChatEvent = { type: "direct", seq: 9, ts: TS, from: "mallory", to: "alice", text: `${".".repeat(80)}08:21 <alice> ok` };
    for (const e of [me, dm]) {
      const { rows } = onScreen(e, false);
      expect(rows.slice(1).every((r) => r.startsWith("  ↳ ") && !A_LINE.test(r))).toBe(true);
    }
  });

  test("a terminal that draws some characters wider than the client measures cuts the row instead of wrapping it unmarked", () => {
    // East Asian ambiguous characters (○) are one column in most terminals, two in some CJK setups.
    const wide = (cp: number) => (cp === 0x25cb ? 2 : codePointWidth(cp));
    const text = `brb${"○".repeat(PAD)}${FORGED}`;
    for (const show of [onScreen, plain]) {
      const shown = show(say(text), false, 80, wide);
      expect(problems(shown)).toEqual([]);
      expect(shown.rows.every((r) => r.length <= 80)).toBe(true);
    }
  });
});

describe("--json lines", () => {
  test("bidi, zero-width and separator characters are \\u escapes, and parse back to the message", () => {
    const text = "look \u202eevil\u202c pay\u200bpal\u2028line \u2066x\u2069 \ufeff\u061c\u200e\u200f";
    const line = eventJson(say(text));
    expect(line).toMatch(/^[\x20-\x7e]*$/);
    expect(line).toContain("\\u202e");
    expect(JSON.parse(line)).toEqual(say(text));
  });

  test("byte fields are base64; ordinary text is as JSON.stringify writes it", () => {
    const e: ChatEvent = { type: "message", room: "general", seq: 1, ts: TS, from: "bob", text: "héllo 中文 😀 👩\u200d💻" };
    expect(eventJson(e)).toBe(JSON.stringify(e));
  });
});

describe("the client's own events of a reconnect", () => {
  const text = (e: ChatEvent) => plainLine(eventLine(e, "alice", false) ?? []);
  test("reconnected says after how long, how many new messages in which room, and what the server no longer had", () => {
    expect(text({ type: "reconnected", after_ms: 12_300, rooms: [{ room: "general", missed: 3, gap: 0 }, { room: "ops", missed: 0, gap: 0 }] })).toBe(
      "-- reconnected after 12 s; 3 new messages in #general",
    );
    expect(text({ type: "reconnected", after_ms: 900, rooms: [{ room: "ops", missed: 1, gap: 4 }] })).toBe(
      "-- reconnected after 1 s; 1 new message in #ops, 4 messages of #ops lost (the server no longer keeps them)",
    );
    expect(text({ type: "reconnected", after_ms: 2000, rooms: [] })).toBe("-- reconnected after 2 s; nothing new");
  });
  test("catching up: how many new messages since when, and whether the history shows them all (PROTOCOL.md §7.14)", () => {
    const today = new Date();
    const at = new Date(today.getFullYear(), today.getMonth(), today.getDate(), 18, 2).getTime();
    expect(text({ type: "catchup", room: "general", unread: 214, since: at, shown: 50 })).toBe("-- 214 new messages in #general since 18:02 (showing the last 50; /history for more)");
    expect(text({ type: "catchup", room: "general", unread: 12, since: at, shown: 12 })).toBe("-- 12 new messages in #general since 18:02");
    expect(text({ type: "catchup", room: "ops", unread: 1, since: at, shown: 0 })).toBe("-- 1 new message in #ops since 18:02; /history to read");
    expect(text({ type: "catchup", room: "ops", unread: 3, since: TS, shown: 3 })).toBe("-- 3 new messages in #ops since Nov 22 08:21");
    expect(eventJson({ type: "catchup", room: "general", unread: 214, since: at, shown: 50 })).toBe(`{"type":"catchup","room":"general","unread":214,"since":${at},"shown":50}`);
  });
  test("a session the server closed to be resumed reads as one line, with the server's code", () => {
    const reason = "the server closed the session: the server's chat core moved to another node; reconnecting resumes where you were";
    expect(text({ type: "disconnected", reason, code: "core_changed" })).toBe(`-- disconnected: ${reason} (core_changed)`);
    expect(text({ type: "disconnected", reason: "connection closed" })).toBe("-- disconnected: connection closed");
  });
  test("a queued line is marked as queued; an unsent one says why", () => {
    expect(text({ type: "sent", id: 4, room: "ops", text: "hi", queued: true })).toMatch(/^\d{2}:\d{2} <alice> hi \(queued until reconnected\)$/);
    expect(text({ type: "unsent", id: 4, reason: "not acknowledged: the connection was lost after it was sent; it may or may not have reached ops (it is not sent again)" })).toBe(
      "-- not acknowledged: the connection was lost after it was sent; it may or may not have reached ops (it is not sent again)",
    );
  });
});

describe("direct messages stored while the user was away, and /history @USER", () => {
  const dm: ChatEvent = { type: "direct", seq: 4, ts: TS, from: "mallory", to: "alice", text: "call me" };
  const line = (e: ChatEvent): string | null => {
    const l = eventLine(e, "alice", false);
    return l && plainLine(l);
  };
  test("a late DM is marked as sent while you were away, at the time it was sent; one from history as history", () => {
    expect(line(dm)).toBe("08:21 [dm mallory →] call me");
    expect(line({ ...dm, late: true })).toBe("[sent while you were away] 08:21 [dm mallory →] call me");
    expect(line({ ...dm, history: true })).toBe("[history] 08:21 [dm mallory →] call me");
  });
  test("who names the users marked away with their text", () => {
    expect(line({ type: "members", room: "lobby", users: ["alice", "bob", "carol"], away: [{ user: "bob", text: "at lunch" }] })).toBe("-- in lobby: alice, bob (away: at lunch), carol");
    expect(line({ type: "members", room: "lobby", users: ["alice", "bob"] })).toBe("-- in lobby: alice, bob");
  });
  test("the ack of a DM stored for someone offline says so; other acks are not shown", () => {
    expect(line({ type: "ack", id: 1, seq: 4, ts: TS, stored: true })).toBe("-- the recipient is offline: stored, and delivered when they next log in");
    expect(line({ type: "ack", id: 1, seq: 4, ts: TS })).toBeNull();
  });
});

describe("room moderation (PROTOCOL.md §7.9): who did what, in one line", () => {
  const line = (e: ChatEvent, me = "carol") => plainLine(eventLine(e, me, false)!);
  const change = (action: string, more: Partial<Extract<ChatEvent, { type: "room_changed" }>> = {}): ChatEvent => ({ type: "room_changed", room: "ops", by: "alice", action, ts: TS, ...more });

  test("kicks, bans, mutes, ops, invites, topics and modes name the user and who did it; the kicked user reads 'you'", () => {
    expect(line(change("kick", { user: "bob", text: "spam" }))).toBe("08:21 -- bob was kicked from ops by alice (spam)");
    expect(line(change("kick", { user: "carol" }))).toBe("08:21 -- you were kicked from ops by alice");
    expect(line(change("ban", { user: "carol" }))).toBe("08:21 -- you were banned from ops by alice");
    expect(line(change("mute", { user: "dave" }))).toBe("08:21 -- alice muted dave in ops");
    expect(line(change("op", { user: "bob" }), "alice")).toBe("08:21 -- you made bob an operator of ops");
    expect(line(change("invite", { user: "carol" }))).toBe("08:21 -- alice invited you to ops: /join ops");
    expect(line(change("topic", { text: "release friday" }))).toBe("08:21 -- alice set the topic of ops: release friday");
    expect(line(change("topic"))).toBe("08:21 -- alice cleared the topic of ops");
    expect(line(change("mode", { invite_only: true, secret: false }))).toBe("08:21 -- alice set ops +i-s");
    expect(line(change("something-new"))).toBe("08:21 -- alice changed ops");
  });

  test("joining shows the owner, the modes and the topic; bans lists who is banned", () => {
    expect(line({ type: "room", room: "ops", users: ["alice", "carol"], seq: 3, owner: "alice", topic: "release friday", invite_only: true, persistent: true, muted: true })).toBe(
      "-- you are in ops with alice; owner alice; mode +i; you are muted; topic: release friday",
    );
    // A room without settings: as before, its owner not mentioned.
    expect(line({ type: "room", room: "lobby", users: ["alice", "carol"], seq: 3, owner: "alice" })).toBe("-- you are in lobby with alice");
    expect(line({ type: "ban_list", room: "ops", bans: ["dave", "mallory"] })).toBe("-- banned from ops: dave, mallory");
    expect(line({ type: "ban_list", room: "ops", bans: [] })).toBe("-- nobody is banned from ops");
  });

  test("--json: one line per event, as the server sent it", () => {
    expect(JSON.parse(eventJson(change("kick", { user: "bob", text: "spam" })))).toEqual({ type: "room_changed", room: "ops", by: "alice", action: "kick", ts: TS, user: "bob", text: "spam" });
  });
});
