/**
 * Read markers and catching up (PROTOCOL.md §7.14) in the chat core, with fake
 * members and an injected clock: what carol's devices are shown when they
 * come back, what `unread` lists, and the limits.
 */
import { describe, expect, test } from "bun:test";
import type { Message } from "../../src/protocol/messages.ts";
import { Chat, type ChatOptions, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { MemoryJournal } from "../../src/store/journal.ts";
import { MemoryMarkers } from "../../src/store/markers.ts";
import { Clock, FakeMember } from "./chat-helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };
const LAPTOP = new Uint8Array(32).fill(1);
const PHONE = new Uint8Array(32).fill(2);

function setup(opts: Partial<ChatOptions> = {}) {
  const o: ChatOptions = { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD, ...opts };
  const clock = new Clock();
  const journal = new MemoryJournal(o.history);
  const markers = new MemoryMarkers();
  const chat = new Chat(o, journal, clock.now, undefined, markers);
  const connect = (user: string, device: Uint8Array | null = null): FakeMember => {
    const m = new FakeMember(user);
    m.device = device;
    chat.connect(m);
    journal.append({ kind: "session_open", user, session: user, source: "test", ts: clock.t });
    return m;
  };
  let id = 0;
  const say = (m: FakeMember, room: string, text: string) => chat.handle(m, { type: "say", id: ++id, room, text });
  const dm = (m: FakeMember, to: string, text: string) => chat.handle(m, { type: "dm", id: ++id, to, text });
  const join = (m: FakeMember, room: string, extra: { since?: number; limit?: number } = {}) => chat.handle(m, { type: "join", room, ...extra });
  const read = (m: FakeMember, rooms: { room: string; seq: number }[], dmSeq?: number) =>
    chat.handle(m, { type: "read", ...(rooms.length > 0 ? { rooms } : {}), ...(dmSeq !== undefined ? { dm: dmSeq } : {}) });
  const unread = (m: FakeMember) => {
    chat.handle(m, { type: "unread" });
    return m.of("unread_list").at(-1)!.rooms;
  };
  /** A new connection of `user` from `device` joins `room` without since: its connection, the `room` answer and the history texts. */
  const comesBack = (user: string, device: Uint8Array | null, room: string) => {
    const m = connect(user, device);
    join(m, room);
    return { m, ...joined(m) };
  };
  return { chat, clock, connect, say, dm, join, read, unread, markers, comesBack };
}

/** The `room` answer of the last join, and the history texts after it. */
function joined(m: FakeMember): { room: Message<"room">; history: string[] } {
  const got = m.take();
  const i = got.findLastIndex((x) => x.type === "room");
  const room = got[i] as Message<"room">;
  const history = got.slice(i).flatMap((x) => (x.type === "message" && x.history && x.text !== undefined ? [x.text] : []));
  return { room, history };
}

describe("catching up on a room", () => {
  test("a device that comes back is shown exactly what came after its marker, with how many and since when", () => {
    const { connect, join, say, read, clock, chat, comesBack } = setup();
    const alice = connect("alice");
    join(alice, "general");
    say(alice, "general", "before carol");
    const carol = connect("carol", LAPTOP);
    join(carol, "general");
    // A first join is fresh: the recent history, nothing unread.
    expect(joined(carol).room.unread).toBeUndefined();
    say(alice, "general", "hi carol");
    clock.advance(1000);
    read(carol, [{ room: "general", seq: 2 }]);
    const readAt = clock.t;
    chat.disconnect(carol);

    for (let i = 1; i <= 3; i++) say(alice, "general", `missed ${i}`);
    const back = comesBack("carol", LAPTOP, "general");
    expect(back.room).toEqual(expect.objectContaining({ seq: 5, unread: 3, read_at: readAt }));
    expect(back.history).toEqual(["missed 1", "missed 2", "missed 3"]);

    // Read, gone, back: nothing new, nothing shown.
    read(back.m, [{ room: "general", seq: 5 }]);
    chat.disconnect(back.m);
    const again = comesBack("carol", LAPTOP, "general");
    expect(again.room.unread).toBeUndefined();
    expect(again.history).toEqual([]);
  });

  test("more missed than the history setting: the count is all of them, the history the newest that are kept", () => {
    const { connect, join, say, chat, comesBack } = setup({ history: 5 });
    const alice = connect("alice");
    const carol = connect("carol");
    join(alice, "general");
    join(carol, "general");
    chat.disconnect(carol);
    for (let i = 1; i <= 20; i++) say(alice, "general", `m${i}`);
    const { room, history } = comesBack("carol", null, "general");
    expect(room.unread).toBe(20);
    expect(history).toEqual(["m16", "m17", "m18", "m19", "m20"]);
  });

  test("a device without a marker starts where the most advanced device stopped; a device with its own gets what it missed", () => {
    const { connect, join, say, read, chat, comesBack } = setup();
    const alice = connect("alice");
    join(alice, "general");
    const laptop = connect("carol", LAPTOP);
    join(laptop, "general");
    for (let i = 1; i <= 6; i++) say(alice, "general", `m${i}`);
    read(laptop, [{ room: "general", seq: 4 }]);
    chat.disconnect(laptop);

    const p = comesBack("carol", PHONE, "general");
    expect(p.room.unread).toBe(2);
    expect(p.history).toEqual(["m5", "m6"]);
    for (let i = 7; i <= 8; i++) say(alice, "general", `m${i}`);
    read(p.m, [{ room: "general", seq: 8 }]);
    chat.disconnect(p.m);

    // The laptop stopped at 4: it missed 5…8, though the phone read them.
    const l = comesBack("carol", LAPTOP, "general");
    expect(l.room.unread).toBe(4);
    expect(l.history).toEqual(["m5", "m6", "m7", "m8"]);
  });

  test("a marker moves forward only, never past the room's last message, and only in rooms the connection is in", () => {
    const { connect, join, say, read, markers } = setup();
    const alice = connect("alice");
    const carol = connect("carol", LAPTOP);
    join(alice, "general");
    join(carol, "general");
    for (let i = 1; i <= 3; i++) say(alice, "general", `m${i}`);
    read(carol, [{ room: "general", seq: 2 }]);
    read(carol, [{ room: "general", seq: 1 }]);
    expect(markers.best("carol", "general")?.seq).toBe(2);
    read(carol, [{ room: "general", seq: 1000 }]);
    expect(markers.best("carol", "general")?.seq).toBe(3);
    join(alice, "ops");
    say(alice, "ops", "secret plans");
    read(carol, [{ room: "ops", seq: 1 }]);
    expect(markers.best("carol", "ops")).toBeNull();
    // No answer to a read: nothing is posted.
    carol.take();
    read(carol, [{ room: "general", seq: 3 }]);
    expect(carol.take()).toEqual([]);
  });

  test("a marker past the room's last seq (the server lost its numbering) comes back to it: nothing is hidden from what is said next", () => {
    const { connect, join, say, chat, markers, comesBack } = setup();
    markers.advance("carol", "", "general", 10, 0, 10); // kept from before the server lost its history
    const alice = connect("alice");
    join(alice, "general");
    say(alice, "general", "m1");
    const first = comesBack("carol", null, "general");
    expect(first.room.unread).toBeUndefined();
    expect(markers.best("carol", "general")?.seq).toBe(1);
    chat.disconnect(first.m);
    say(alice, "general", "m2");
    const again = comesBack("carol", null, "general");
    expect(again.room.unread).toBe(1);
    expect(again.history).toEqual(["m2"]);
  });

  test("join with since (a resume) is answered as before: the messages after since, no unread", () => {
    const { connect, join, say, chat } = setup();
    const alice = connect("alice");
    let carol = connect("carol");
    join(alice, "general");
    join(carol, "general");
    chat.disconnect(carol);
    for (let i = 1; i <= 4; i++) say(alice, "general", `m${i}`);
    carol = connect("carol");
    join(carol, "general", { since: 2 });
    const { room, history } = joined(carol);
    expect(room.unread).toBeUndefined();
    expect(history).toEqual(["m3", "m4"]);
  });

  test("leaving a room forgets the user's markers for it: it is no longer listed, and joining again is fresh", () => {
    const { connect, join, say, chat, unread, comesBack } = setup();
    const alice = connect("alice");
    const carol = connect("carol");
    join(alice, "general");
    join(carol, "general");
    join(carol, "ops");
    say(alice, "general", "m1");
    chat.handle(carol, { type: "leave", room: "general" });
    expect(unread(carol).map((r) => r.room)).toEqual(["ops"]);
    chat.disconnect(carol);
    say(alice, "general", "m2");
    const { room, history } = comesBack("carol", null, "general");
    expect(room.unread).toBeUndefined();
    expect(history).toEqual(["m1", "m2"]); // the recent history of a fresh join
  });

  test("a connection closing keeps the markers: the user is still in its rooms for its next start", () => {
    const { connect, join, chat, unread } = setup();
    let carol = connect("carol");
    join(carol, "general");
    chat.disconnect(carol);
    carol = connect("carol");
    expect(unread(carol).map((r) => r.room)).toEqual(["general"]);
  });
});

describe("unread: the user's rooms", () => {
  test("lists every room the user has a marker for, by name, with what this device has not read and since when", () => {
    const { connect, join, say, read, chat, unread, clock } = setup();
    const alice = connect("alice");
    join(alice, "general");
    join(alice, "ops");
    const laptop = connect("carol", LAPTOP);
    join(laptop, "ops");
    join(laptop, "general");
    const joinedAt = clock.t;
    say(alice, "general", "g1");
    clock.advance(10);
    read(laptop, [{ room: "general", seq: 1 }]);
    const readAt = clock.t;
    chat.disconnect(laptop);
    for (let i = 2; i <= 4; i++) say(alice, "general", `g${i}`);
    say(alice, "ops", "o1");

    // The phone never joined anything: it learns carol's rooms here.
    const phone = connect("carol", PHONE);
    expect(unread(phone)).toEqual([
      { room: "general", unread: 3, read_at: readAt },
      { room: "ops", unread: 1, read_at: joinedAt },
    ]);
    const dave = connect("dave");
    expect(unread(dave)).toEqual([]);
  });
});

describe("direct messages after the device's marker", () => {
  test("stored DMs are shown to a device until it has read them; another device starts where it stopped", () => {
    const { connect, dm, read, chat } = setup();
    const alice = connect("alice");
    dm(alice, "carol", "one");
    dm(alice, "carol", "two");
    const lateTexts = (m: FakeMember) => m.of("direct").flatMap((d) => (d.late ? [d.text] : []));

    let laptop = connect("carol", LAPTOP);
    expect(lateTexts(laptop)).toEqual(["one", "two"]);
    // Shown but not marked read (the client quit at once): shown again.
    chat.disconnect(laptop);
    laptop = connect("carol", LAPTOP);
    expect(lateTexts(laptop)).toEqual(["one", "two"]);
    read(laptop, [], laptop.of("direct")[0]!.seq);
    chat.disconnect(laptop);
    laptop = connect("carol", LAPTOP);
    expect(lateTexts(laptop)).toEqual(["two"]);
    read(laptop, [], 1_000_000); // never past the last DM
    chat.disconnect(laptop);

    dm(alice, "carol", "three");
    // The phone has no marker: it starts at the laptop's.
    const phone = connect("carol", PHONE);
    expect(lateTexts(phone)).toEqual(["three"]);
    chat.disconnect(phone);
    laptop = connect("carol", LAPTOP);
    expect(lateTexts(laptop)).toEqual(["three"]);
  });
});

describe("direct messages: each device its own marker from its first login", () => {
  test("DMs the phone read are still shown to the laptop, which had logged in before they came", () => {
    const { connect, dm, read, chat } = setup();
    const lateTexts = (m: FakeMember) => m.of("direct").flatMap((d) => (d.late ? [d.text] : []));
    const laptop = connect("carol", LAPTOP);
    chat.disconnect(laptop);
    const alice = connect("alice");
    dm(alice, "carol", "while both were away");
    const phone = connect("carol", PHONE);
    expect(lateTexts(phone)).toEqual(["while both were away"]);
    read(phone, [], phone.of("direct")[0]!.seq);
    chat.disconnect(phone);
    expect(lateTexts(connect("carol", LAPTOP))).toEqual(["while both were away"]);
  });
});

describe("limits", () => {
  test("a user has at most maxReadMarkers; past it the least recently set is forgotten and no longer listed", () => {
    const { connect, join, unread, clock, chat } = setup({ maxReadMarkers: 3 });
    const carol = connect("carol");
    for (const room of ["a", "b", "c", "d"]) {
      join(carol, room);
      clock.advance(1);
    }
    expect(unread(carol).map((r) => r.room)).toEqual(["b", "c", "d"]);
    chat.handle(carol, { type: "leave", room: "a" });
    expect(unread(carol).map((r) => r.room)).toEqual(["b", "c", "d"]);
  });

  test("read and unread each cost a token from the request bucket", () => {
    const { connect, join, chat } = setup({ requests: { rate: 1, burst: 2 } });
    const carol = connect("carol");
    join(carol, "general");
    chat.handle(carol, { type: "read", rooms: [{ room: "general", seq: 0 }] });
    chat.handle(carol, { type: "unread" });
    expect(carol.take().at(-1)).toEqual(expect.objectContaining({ type: "notice", code: "slow_down" }));
  });
});
