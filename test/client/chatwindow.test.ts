/**
 * Rooms as windows (src/client/chatwindow.ts), on a recording stand-in for
 * the Screen: what the user sees as events arrive — labels on lines from
 * other rooms, unread and mention counts on the status row, the bell for
 * mentions and direct messages (and not with /notify off, nor for
 * history), the user's own lines pending until acknowledged and then in the
 * server's order, and what Tab and Alt-keys do.
 */
import { describe, expect, setSystemTime, test } from "bun:test";
import type { ChatEvent } from "../../src/client/chat.ts";
import { ChatWindow, type Ignores, type Rooms, type WindowScreen } from "../../src/client/chatwindow.ts";
import type { IgnoreChange } from "../../src/client/ignores.ts";
import { formatTime } from "../../src/client/tui/colors.ts";
import type { Line } from "../../src/client/tui/screen.ts";
import { renderSegments } from "../../src/client/tui/sanitize.ts";

const raw = (l: Line) => renderSegments(l);
const text = (l: Line) => raw(l).replace(/\b\d\d:\d\d /, "HH:MM ");

class FakeScreen implements WindowScreen {
  printed: string[] = [];
  raw: string[] = [];
  status = "";
  pending: string[] = [];
  prompt = "";
  bells = 0;
  print(line: Line): void {
    this.printed.push(text(line));
    this.raw.push(raw(line));
  }
  setStatus(line: Line): void {
    this.status = text(line);
  }
  setPending(lines: readonly Line[]): void {
    this.pending = lines.map(text);
  }
  setPrompt(prompt: string): void {
    this.prompt = prompt;
  }
  bell(): void {
    this.bells++;
  }
}

class FakeRooms implements Rooms {
  #room = "general";
  /** Reading the room before the engine exists (the window is made first) fails, as a getter over a const in its TDZ does. */
  ready = false;
  get room(): string {
    if (!this.ready) throw new ReferenceError("the engine is not made yet");
    return this.#room;
  }
  set room(room: string) {
    this.#room = room;
  }
  rooms: string[] = [];
  constructor(private readonly emit: (e: ChatEvent) => void) {}
  switchTo(room: string): boolean {
    if (!this.rooms.includes(room)) return false;
    this.room = room;
    this.emit({ type: "current", room });
    return true;
  }
}

/** An ignore list in memory; `broken` makes every change fail as an unreadable file would. */
class FakeIgnores implements Ignores {
  names = new Set<string>();
  broken: string | null = null;
  has(name: string): boolean {
    return this.names.has(name);
  }
  list(): string[] {
    return [...this.names].sort();
  }
  add(name: string): IgnoreChange {
    if (this.broken) throw new Error(this.broken);
    if (this.names.has(name)) return "already";
    this.names.add(name);
    return "added";
  }
  remove(name: string): IgnoreChange {
    if (this.broken) throw new Error(this.broken);
    return this.names.delete(name) ? "removed" : "absent";
  }
}

function setup() {
  const screen = new FakeScreen();
  let win!: ChatWindow;
  const rooms = new FakeRooms((e) => win.show(e));
  const ignores = new FakeIgnores();
  win = new ChatWindow(screen, rooms, "alice", false, ignores);
  rooms.ready = true;
  const join = (room: string, users: string[]) => {
    rooms.rooms.push(room);
    win.show({ type: "room", room, users, seq: 0 });
    rooms.switchTo(room);
  };
  let seq = 0;
  const say = (room: string, from: string, t: string, history = false): ChatEvent => ({ type: "message", room, seq: ++seq, ts: 0, from, text: t, ...(history ? { history: true } : {}) });
  return { screen, rooms, win, join, say, ignores };
}

describe("rooms as windows", () => {
  test("the prompt names the current room; switching says so and the status row follows", () => {
    const { screen, join, rooms } = setup();
    join("general", ["alice", "bob"]);
    join("ops", ["alice"]);
    expect(screen.prompt).toBe("alice@#ops> ");
    expect(screen.status).toBe("[1:#general] [2:#ops*]");
    rooms.switchTo("general");
    expect(screen.prompt).toBe("alice@#general> ");
    expect(screen.printed.at(-1)).toBe("-- now talking in #general");
    expect(screen.status).toBe("[1:#general*] [2:#ops]");
  });

  test("a room caught up at start shows its summary and counts what was missed on the status row; the current room does not", () => {
    const { screen, win, join, rooms, say } = setup();
    const since = Date.now();
    join("general", ["alice", "bob"]);
    win.show({ type: "catchup", room: "general", unread: 4, since, shown: 4 });
    rooms.rooms.push("ops");
    win.show({ type: "room", room: "ops", users: ["alice"], seq: 9 });
    win.show({ type: "catchup", room: "ops", unread: 214, since, shown: 50 });
    win.show(say("ops", "bob", "old news", true));
    expect(screen.printed.filter((l) => l.includes("new messages")).map((l) => l.replace(/\d\d:\d\d/, "HH:MM"))).toEqual([
      "-- 4 new messages in #general since HH:MM",
      "-- 214 new messages in #ops since HH:MM (showing the last 50; /history for more)",
    ]);
    expect(screen.status).toBe("[1:#general*] [2:#ops 214]");
    rooms.switchTo("ops");
    expect(screen.status).toBe("[1:#general] [2:#ops*]");
  });

  test("the first room confirmed again is not announced; a real change is", () => {
    const { screen, join, rooms } = setup();
    join("general", ["alice"]);
    expect(screen.printed.filter((l) => l.includes("now talking"))).toEqual([]);
    join("ops", ["alice"]);
    rooms.switchTo("ops");
    expect(screen.printed.filter((l) => l.includes("now talking"))).toEqual(["-- now talking in #ops"]);
  });

  test("a line from another room is labelled and counted; a mention is counted and rings; switching clears the counts", () => {
    const { screen, win, join, say, rooms } = setup();
    join("general", ["alice", "bob"]);
    join("ops", ["alice"]);
    win.show(say("general", "bob", "anyone?"));
    win.show(say("general", "bob", "Alice, you there?"));
    win.show(say("general", "bob", "malice is not a mention"));
    expect(screen.printed.slice(-3)).toEqual(["HH:MM #general <bob> anyone?", "HH:MM #general <bob> Alice, you there?", "HH:MM #general <bob> malice is not a mention"]);
    expect(screen.status).toBe("[1:#general 3 @1] [2:#ops*]");
    expect(screen.bells).toBe(1);
    win.show(say("ops", "bob", "here"));
    expect(screen.printed.at(-1)).toBe("HH:MM <bob> here");
    rooms.switchTo("general");
    expect(screen.status).toBe("[1:#general*] [2:#ops]");
  });

  test("history is labelled but never counted or rung", () => {
    const { screen, win, join, say } = setup();
    join("general", ["alice"]);
    join("ops", ["alice"]);
    win.show(say("general", "bob", "alice: old news", true));
    expect(screen.printed.at(-1)).toBe("[history] HH:MM #general <bob> alice: old news");
    expect(screen.status).toBe("[1:#general] [2:#ops*]");
    expect(screen.bells).toBe(0);
  });

  test("direct messages from others ring; /notify off silences mentions and direct messages and shows on the status row", () => {
    const { screen, win, join, say } = setup();
    join("general", ["alice", "bob"]);
    win.show({ type: "direct", seq: 1, ts: 0, from: "bob", to: "alice", text: "psst" });
    expect(screen.bells).toBe(1);
    win.show({ type: "direct", seq: 2, ts: 0, from: "alice", to: "bob", text: "from my other session" });
    expect(screen.bells).toBe(1);
    win.setNotify(false);
    expect(screen.status).toBe("[1:#general*] [notify off]");
    win.show({ type: "direct", seq: 3, ts: 0, from: "bob", to: "alice", text: "psst again" });
    win.show(say("general", "bob", "alice!"));
    expect(screen.bells).toBe(1);
  });

  test("own lines are pending until acked, then shown in the order the server acknowledged them, with the server's time", () => {
    const { screen, win, join } = setup();
    join("general", ["alice"]);
    const before = screen.printed.length;
    win.show({ type: "sent", id: 1, room: "general", text: "first" });
    win.show({ type: "sent", id: 2, to: "bob", text: "psst" });
    win.show({ type: "sent", id: 3, room: "general", text: "third", queued: true });
    expect(screen.pending).toEqual(["<alice> first (sending…)", "[dm → bob] psst (sending…)", "<alice> third (waiting for the connection)"]);
    expect(screen.printed.length).toBe(before);
    win.show({ type: "ack", id: 2, seq: 1, ts: Date.UTC(2026, 0, 1, 12, 0) });
    win.show({ type: "ack", id: 1, seq: 7, ts: 0 });
    expect(screen.printed.slice(before)).toEqual(["HH:MM [dm → bob] psst", "HH:MM <alice> first"]);
    expect(screen.raw[before]).toBe(`${formatTime(Date.UTC(2026, 0, 1, 12, 0))} [dm → bob] psst`);
    expect(screen.pending).toEqual(["<alice> third (waiting for the connection)"]);
    // The engine's reason says whether the line was sent at all: it is shown as it is, not prefixed again.
    win.show({ type: "unsent", id: 3, reason: "not sent: the session ended before the connection came back (wrong password)" });
    expect(screen.printed.at(-1)).toBe("HH:MM <alice> third  [not sent: the session ended before the connection came back (wrong password)]");
    expect(screen.pending).toEqual([]);
  });

  test("a DM to someone offline, acked stored, says it waits for their next login; one stored for you is marked as sent while you were away", () => {
    const { screen, win, join } = setup();
    join("general", ["alice"]);
    win.show({ type: "sent", id: 1, to: "carol", text: "lunch?" });
    win.show({ type: "ack", id: 1, seq: 3, ts: 0, stored: true });
    expect(screen.printed.at(-1)).toBe("HH:MM [dm → carol] lunch?  [stored: carol is offline; delivered at their next login]");
    win.show({ type: "direct", seq: 2, ts: 0, from: "bob", to: "alice", text: "call me", late: true });
    expect(screen.printed.at(-1)).toBe("[sent while you were away] HH:MM [dm bob →] call me");
  });

  test("a nack marks the pending line as not delivered; an ack for an unknown id shows nothing", () => {
    const { screen, win, join } = setup();
    join("general", ["alice"]);
    win.show({ type: "sent", id: 1, room: "general", text: "hi" });
    win.show({ type: "nack", id: 1, code: "rate_limited", message: "slow down" });
    expect(screen.printed.at(-1)).toBe("HH:MM <alice> hi  [not delivered: slow down]");
    const n = screen.printed.length;
    win.show({ type: "ack", id: 99, seq: 1, ts: 0 });
    expect(screen.printed.length).toBe(n);
  });

  test("an own line acked after switching away is labelled with its room", () => {
    const { screen, win, join, rooms } = setup();
    join("general", ["alice"]);
    join("ops", ["alice"]);
    rooms.switchTo("general");
    win.show({ type: "sent", id: 1, room: "general", text: "hi" });
    rooms.switchTo("ops");
    win.show({ type: "ack", id: 1, seq: 1, ts: 0 });
    expect(screen.printed.at(-1)).toBe("HH:MM #general <alice> hi");
  });

  test("Alt-1…9 picks a room by number, Alt-←/→ the previous/next one (round); a missing number rings", () => {
    const { screen, win, join, rooms } = setup();
    join("general", ["alice"]);
    join("ops", ["alice"]);
    join("dev", ["alice"]);
    win.key("alt-1");
    expect(rooms.room).toBe("general");
    win.key("alt-left");
    expect(rooms.room).toBe("dev");
    win.key("alt-right");
    expect(rooms.room).toBe("general");
    win.key("alt-9");
    expect(rooms.room).toBe("general");
    expect(screen.bells).toBe(1);
  });

  test("Tab candidates: commands at the start, #rooms, and names seen in room, joined, left and members events", () => {
    const { win, join } = setup();
    join("general", ["alice", "bob"]);
    win.show({ type: "joined", room: "general", user: "carol", ts: 0 });
    win.show({ type: "joined", room: "general", user: "dave", ts: 0 });
    win.show({ type: "left", room: "general", user: "dave", ts: 0 });
    expect(win.complete("/sw", true)).toContain("/switch ");
    expect(win.complete("#", false)).toEqual(["#general "]);
    expect(win.complete("", true).sort()).toEqual(["bob: ", "carol: "]);
    expect(win.complete("", false).sort()).toEqual(["bob ", "carol ", "general "]);
  });

  test("after a reconnect, those who were in the room before and join it again (the server lost its rooms) are not announced; a newcomer is", () => {
    const { screen, win, join } = setup();
    join("general", ["alice", "bob", "carol"]);
    win.show({ type: "disconnected", reason: "the server closed the session: the server's chat core moved to another node", code: "core_changed" });
    win.show({ type: "joined", room: "general", user: "carol", ts: 0 }); // back before this client
    win.show({ type: "room", room: "general", users: ["alice", "carol"], seq: 0 });
    win.show({ type: "reconnected", after_ms: 1000, rooms: [{ room: "general", missed: 0, gap: 0 }] });
    const before = screen.printed.length;
    win.show({ type: "joined", room: "general", user: "bob", ts: 0 }); // back after
    expect(screen.printed.length).toBe(before);
    win.show({ type: "joined", room: "general", user: "dave", ts: 0 });
    expect(screen.printed.at(-1)).toMatch(/dave joined general/);
    // bob's next join is news again: he left and came back
    win.show({ type: "left", room: "general", user: "bob", ts: 0 });
    win.show({ type: "joined", room: "general", user: "bob", ts: 0 });
    expect(screen.printed.at(-1)).toMatch(/bob joined general/);
    expect(screen.printed.filter((l) => l.includes("carol joined"))).toEqual([]);
    expect(win.complete("", true).sort()).toEqual(["bob: ", "carol: ", "dave: "]);
  });

  test("a second outage long after the first: those in the room then are not announced either (the quiet list is taken again)", () => {
    const { screen, win, join } = setup();
    const outage = (back: string[]) => {
      win.show({ type: "disconnected", reason: "connection: server closed the connection" });
      win.show({ type: "room", room: "general", users: ["alice"], seq: 0 });
      win.show({ type: "reconnected", after_ms: 1000, rooms: [{ room: "general", missed: 0, gap: 0 }] });
      for (const user of back) win.show({ type: "joined", room: "general", user, ts: 0 });
    };
    try {
      setSystemTime(new Date("2026-12-03T10:00:00Z"));
      join("general", ["alice", "bob"]);
      outage(["bob"]);
      win.show({ type: "joined", room: "general", user: "carol", ts: 0 }); // a newcomer
      setSystemTime(new Date("2026-12-03T10:30:00Z"));
      outage(["bob", "carol"]);
      expect(screen.printed.filter((l) => l.includes(" joined "))).toEqual([expect.stringContaining("carol joined general")]);
    } finally {
      setSystemTime();
    }
  });

  test("Tab after @ completes @names, at the start of a line and after other words", () => {
    const { win, join } = setup();
    join("general", ["alice", "bob"]);
    join("ops", ["alice", "carol"]);
    expect(win.complete("@", true).sort()).toEqual(["@bob ", "@carol "]);
    expect(win.complete("@b", false).sort()).toEqual(["@bob ", "@carol "]);
    expect(win.complete("@", false)).not.toContain("@alice ");
  });
});

describe("/ignore", () => {
  test("an ignored user's messages, direct messages, joins and leaves are not shown, counted or rung; others' are", () => {
    const { screen, win, join, say } = setup();
    join("general", ["alice", "bob", "carol"]);
    join("ops", ["alice"]);
    win.ignore("bob");
    expect(screen.printed.at(-1)).toBe("-- ignoring bob: their messages, direct messages, joins and leaves are not shown (/unignore bob)");
    const before = screen.printed.length;
    win.show(say("general", "bob", "alice, look!"));
    win.show(say("general", "bob", "from the past, alice", true));
    win.show({ type: "direct", seq: 1, ts: 0, from: "bob", to: "alice", text: "psst alice" });
    win.show({ type: "joined", room: "ops", user: "bob", ts: 0 });
    win.show({ type: "left", room: "ops", user: "bob", ts: 0 });
    expect(screen.printed.length).toBe(before);
    expect(screen.bells).toBe(0);
    expect(screen.status).toBe("[1:#general] [2:#ops*]");
    // carol is heard as before.
    win.show(say("general", "carol", "alice?"));
    expect(screen.printed.at(-1)).toBe("HH:MM #general <carol> alice?");
    expect(screen.bells).toBe(1);
    expect(screen.status).toBe("[1:#general 1 @1] [2:#ops*]");
    // Lists of names still name bob; he can still be completed (to /unignore him, or to answer).
    win.show({ type: "members", room: "general", users: ["alice", "bob", "carol"] });
    expect(screen.printed.at(-1)).toContain("bob");
    expect(win.complete("@b", false)).toContain("@bob ");
  });

  test("/unignore: bob is heard again; a DM of alice's own to an ignored user is still shown", () => {
    const { screen, win, join, say } = setup();
    join("general", ["alice", "bob"]);
    win.ignore("bob");
    win.show({ type: "direct", seq: 1, ts: 0, from: "alice", to: "bob", text: "from my other session" });
    expect(screen.printed.at(-1)).toContain("from my other session");
    win.unignore("bob");
    expect(screen.printed.at(-1)).toBe("-- no longer ignoring bob");
    win.show(say("general", "bob", "back, alice"));
    expect(screen.printed.at(-1)).toBe("HH:MM <bob> back, alice");
    expect(screen.bells).toBe(1);
  });

  test("the list, twice, yourself, someone not ignored, and a list that cannot be changed", () => {
    const { screen, win, join, ignores } = setup();
    join("general", ["alice"]);
    win.ignore();
    expect(screen.printed.at(-1)).toBe("-- you ignore no one (/ignore USER)");
    win.ignore("dave");
    win.ignore("bob");
    win.ignore("bob");
    expect(screen.printed.at(-1)).toBe("-- you already ignore bob");
    win.ignore();
    expect(screen.printed.at(-1)).toBe("-- you ignore bob, dave");
    win.ignore("alice");
    expect(screen.printed.at(-1)).toBe("-- you cannot ignore yourself");
    win.unignore("carol");
    expect(screen.printed.at(-1)).toBe("-- you do not ignore carol");
    ignores.broken = "/home/a/accounts/h:1/alice.ignore: line 3 is not a user name";
    win.ignore("carol");
    expect(screen.printed.at(-1)).toBe("-- the ignore list is unchanged: /home/a/accounts/h:1/alice.ignore: line 3 is not a user name");
    expect(ignores.list()).toEqual(["bob", "dave"]);
  });
});
