/**
 * Editing and deleting one's own room messages (PROTOCOL.md §7.12), in the
 * chat core with fake members and an injected clock: what the author, the
 * others in the room and a later joiner's history see, every refusal, and
 * the bounds (window, edits per message, the message bucket).
 */
import { afterEach, describe, expect, jest, test } from "bun:test";
import type { Message } from "../../src/protocol/messages.ts";
import { Chat, type ChatOptions, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { MemoryJournal } from "../../src/store/journal.ts";
import { Clock, FakeMember } from "./chat-helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };

function setup(opts: Partial<ChatOptions> = {}) {
  const o: ChatOptions = { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD, ...opts };
  const clock = new Clock();
  const journal = new MemoryJournal(o.history);
  const chat = new Chat(o, journal, clock.now);
  const connect = (user: string, label = user): FakeMember => {
    const m = new FakeMember(user, label);
    chat.connect(m);
    return m;
  };
  let id = 0;
  /** Says `text` in `room`; returns the message's seq from the ack. */
  const say = (m: FakeMember, room: string, text: string, action = false): number => {
    chat.handle(m, { type: "say", id: ++id, room, text, ...(action ? { action: true } : {}) });
    return m.of("ack").at(-1)!.seq;
  };
  /** Sends a dm; returns its seq from the ack. */
  const dm = (m: FakeMember, to: string, text: string): number => {
    chat.handle(m, { type: "dm", id: ++id, to, text });
    return m.of("ack").at(-1)!.seq;
  };
  /** Sends an edit (with text) or a delete (without) of a room message, or (`@USER`) of a direct message to USER; returns its answer. */
  const change = (m: FakeMember, where: string, seq: number, text?: string): Message<"ack" | "nack"> => {
    const n = ++id;
    const at = where.startsWith("@") ? { to: where.slice(1) } : { room: where };
    chat.handle(m, text === undefined ? { type: "delete", id: n, ...at, seq } : { type: "edit", id: n, ...at, seq, text });
    return m.inbox.findLast((x): x is Message<"ack" | "nack"> => (x.type === "ack" || x.type === "nack") && x.id === n)!;
  };
  const join = (m: FakeMember, room: string) => chat.handle(m, { type: "join", room });
  /** The history a fresh joiner of `room` is shown. */
  const historyOf = (room: string): Message<"message">[] => {
    const late = connect("zed", `zed${++id}`);
    join(late, room);
    const shown = late.of("message");
    chat.disconnect(late);
    return shown;
  };
  /** alice and bob, both in lobby. */
  const pair = (): [FakeMember, FakeMember] => {
    const both: [FakeMember, FakeMember] = [connect("alice"), connect("bob")];
    for (const m of both) join(m, "lobby");
    return both;
  };
  return { chat, journal, clock, connect, say, dm, change, join, historyOf, pair };
}

afterEach(() => {
  if (jest.isFakeTimers()) jest.useRealTimers();
});

describe("edit and delete (PROTOCOL.md §7.12)", () => {
  test("an edit reaches every other connection in the room as edited; the author is acked with the message's seq; history shows the new text, edited", () => {
    const { clock, connect, say, change, join, historyOf } = setup();
    const [alice, alice2, bob, carol] = [connect("alice"), connect("alice", "alice-2"), connect("bob"), connect("carol")];
    for (const m of [alice, alice2, bob]) join(m, "lobby");
    join(carol, "elsewhere");
    const seq = say(alice, "lobby", "teh plan", true);
    for (const m of [alice, alice2, bob, carol]) m.take();
    clock.advance(5000);
    const ack = change(alice, "lobby", seq, "the plan");
    expect(ack).toMatchObject({ type: "ack", seq, ts: clock.t });
    const event: Message = { type: "edited", room: "lobby", seq, ts: clock.t, by: "alice", text: "the plan", action: true };
    expect(bob.take()).toEqual([event]);
    expect(alice2.take()).toEqual([event]);
    expect(alice.take()).toEqual([ack]);
    expect(carol.take()).toEqual([]);
    const [h] = historyOf("lobby");
    expect(h).toMatchObject({ seq, from: "alice", text: "the plan", action: true, edited: true, history: true });
    expect(h!.deleted).toBeUndefined();
  });

  test("a delete reaches the others as deleted; history shows the message deleted, without text; it cannot be edited or deleted again", () => {
    const { say, change, historyOf, pair } = setup();
    const [alice, bob] = pair();
    const first = say(alice, "lobby", "oops, my password is hunter2");
    const second = say(alice, "lobby", "stays");
    bob.take();
    expect(change(alice, "lobby", first)).toMatchObject({ type: "ack", seq: first });
    expect(bob.take()).toEqual([{ type: "deleted", room: "lobby", seq: first, ts: expect.any(Number), by: "alice" }]);
    const history = historyOf("lobby");
    expect(history.map((m) => [m.seq, m.text, m.deleted])).toEqual([
      [first, undefined, true],
      [second, "stays", undefined],
    ]);
    expect(JSON.stringify(history)).not.toContain("hunter2");
    bob.take(); // zed's joined and left
    expect(change(alice, "lobby", first, "again")).toMatchObject({ type: "nack", code: "no_such_message" });
    expect(change(alice, "lobby", first)).toMatchObject({ type: "nack", code: "no_such_message" });
    expect(bob.take()).toEqual([]);
  });

  test("bob cannot edit or delete alice's message: nack not_yours, nobody is told, the text stays", () => {
    const { say, change, historyOf, pair } = setup();
    const [alice, bob] = pair();
    const seq = say(alice, "lobby", "mine");
    alice.take();
    expect(change(bob, "lobby", seq, "yours now")).toMatchObject({ type: "nack", code: "not_yours" });
    expect(change(bob, "lobby", seq)).toMatchObject({ type: "nack", code: "not_yours" });
    expect(alice.take()).toEqual([]);
    expect(historyOf("lobby").map((m) => m.text)).toEqual(["mine"]);
  });

  test("only in a room one is in, and only a message the room has: not_member, no_such_message", () => {
    const { connect, say, change, join } = setup();
    const [alice, bob] = [connect("alice"), connect("bob")];
    join(alice, "lobby");
    const seq = say(alice, "lobby", "hi");
    expect(change(bob, "lobby", seq, "x")).toMatchObject({ type: "nack", code: "not_member" });
    expect(change(alice, "lobby", seq + 1, "x")).toMatchObject({ type: "nack", code: "no_such_message" });
    expect(change(alice, "other", seq, "x")).toMatchObject({ type: "nack", code: "not_member" });
  });

  test("past the server's window the message can be neither edited nor deleted (edit_window_closed); a window of 0 allows none", () => {
    const { clock, connect, say, change, join } = setup({ editWindowMs: 2000 });
    const alice = connect("alice");
    join(alice, "lobby");
    const seq = say(alice, "lobby", "hi");
    clock.advance(2000);
    expect(change(alice, "lobby", seq, "still in time")).toMatchObject({ type: "ack" });
    clock.advance(1);
    const late = change(alice, "lobby", seq, "too late");
    expect(late).toMatchObject({ type: "nack", code: "edit_window_closed" });
    expect((late as Message<"nack">).message).toContain("2 s");
    expect(change(alice, "lobby", seq)).toMatchObject({ type: "nack", code: "edit_window_closed" });

    const off = setup({ editWindowMs: 0 });
    const bob = off.connect("bob");
    off.join(bob, "lobby");
    const s = off.say(bob, "lobby", "hi");
    expect(off.change(bob, "lobby", s, "x")).toMatchObject({ type: "nack", code: "edit_window_closed" });
    expect(off.change(bob, "lobby", s)).toMatchObject({ type: "nack", code: "edit_window_closed" });
  });

  test("a user muted in the room may not edit its messages there (muted), but may delete them", () => {
    const { chat, say, change, pair } = setup();
    const [alice, bob] = pair(); // alice made the room: its owner
    const seq = say(bob, "lobby", "before the mute");
    chat.handle(alice, { type: "mute", room: "lobby", user: "bob" });
    expect(change(bob, "lobby", seq, "after the mute")).toMatchObject({ type: "nack", code: "muted" });
    expect(change(bob, "lobby", seq)).toMatchObject({ type: "ack" });
  });

  test("at most maxEdits edits per message (edit_limit past it, the text stays the last allowed); a delete is still allowed", () => {
    const { say, change, historyOf, pair } = setup({ maxEdits: 3 });
    const [alice, bob] = pair();
    const seq = say(alice, "lobby", "v0");
    for (const v of ["v1", "v2", "v3"]) expect(change(alice, "lobby", seq, v)).toMatchObject({ type: "ack" });
    bob.take();
    expect(change(alice, "lobby", seq, "v4")).toMatchObject({ type: "nack", code: "edit_limit" });
    expect(bob.take()).toEqual([]);
    expect(historyOf("lobby").map((m) => m.text)).toEqual(["v3"]);
    expect(change(alice, "lobby", seq)).toMatchObject({ type: "ack" });
  });

  test("while the journal cannot record, an edit or delete is refused not_recorded: nobody is told, history keeps the text", () => {
    const { journal, say, change, historyOf, pair } = setup();
    const [alice, bob] = pair();
    const seq = say(alice, "lobby", "as said");
    bob.take();
    let recording = false;
    Object.defineProperty(journal, "recording", { get: () => recording });
    expect(change(alice, "lobby", seq, "changed")).toMatchObject({ type: "nack", code: "not_recorded" });
    expect(change(alice, "lobby", seq)).toMatchObject({ type: "nack", code: "not_recorded" });
    expect(bob.take()).toEqual([]);
    recording = true;
    expect(historyOf("lobby").map((m) => [m.text, m.edited, m.deleted])).toEqual([["as said", undefined, undefined]]);
  });

  test("a message no longer in the room's kept history cannot be changed (no_such_message)", () => {
    const { connect, say, change, join } = setup({ history: 2 });
    const alice = connect("alice");
    join(alice, "lobby");
    const old = say(alice, "lobby", "1");
    say(alice, "lobby", "2");
    say(alice, "lobby", "3");
    expect(change(alice, "lobby", old, "x")).toMatchObject({ type: "nack", code: "no_such_message" });
  });

  test("edits and deletes take tokens from the message bucket, like say: past the burst they are held (slow_down) and answered later, in order", () => {
    jest.useFakeTimers();
    const { chat, clock, connect, join } = setup({ flood: { rate: 10, burst: 2 } });
    const alice = connect("alice");
    join(alice, "lobby");
    chat.handle(alice, { type: "say", id: 1, room: "lobby", text: "a" });
    chat.handle(alice, { type: "edit", id: 2, room: "lobby", seq: 1, text: "b" });
    chat.handle(alice, { type: "edit", id: 3, room: "lobby", seq: 1, text: "c" });
    chat.handle(alice, { type: "delete", id: 4, room: "lobby", seq: 1 });
    const first = alice.take().filter((m) => m.type === "ack" || (m.type === "notice" && m.code === "slow_down"));
    expect(first.map((m) => (m.type === "ack" ? `ack ${m.id}` : m.type === "notice" ? m.code : m.type))).toEqual(["ack 1", "ack 2", "slow_down"]);
    clock.advance(250);
    expect(alice.take().map((m) => (m.type === "ack" ? `ack ${m.id}` : m.type))).toEqual(["ack 3", "ack 4"]);
  });

  test("a direct message: its sender edits and deletes it; the recipient's terminals and the sender's others are told; history with them shows it; to anyone else it does not exist", () => {
    const { chat, connect, dm, change } = setup();
    const [alice, alice2, bob, bob2, carol] = [connect("alice"), connect("alice", "alice-2"), connect("bob"), connect("bob", "bob-2"), connect("carol")];
    const seq = dm(alice, "bob", "meet at 5");
    const other = dm(alice, "bob", "bring the keys");
    for (const m of [alice, alice2, bob, bob2, carol]) m.take();
    expect(change(alice, "@bob", seq, "meet at 6")).toMatchObject({ type: "ack", seq });
    expect(change(alice, "@bob", other)).toMatchObject({ type: "ack", seq: other });
    for (const m of [alice2, bob, bob2]) {
      expect(m.take()).toEqual([
        { type: "edited", to: "bob", seq, ts: expect.any(Number), by: "alice", text: "meet at 6" },
        { type: "deleted", to: "bob", seq: other, ts: expect.any(Number), by: "alice" },
      ]);
    }
    expect(carol.take()).toEqual([]);
    chat.handle(bob, { type: "history", with: "alice", limit: 10 });
    expect(bob.of("direct").map((d) => [d.seq, d.text, d.edited, d.deleted, d.history])).toEqual([
      [seq, "meet at 6", true, undefined, true],
      [other, undefined, undefined, true, true],
    ]);
    // the recipient may not change it; a third user is not told it exists; nor is the wrong pair
    expect(change(bob, "@bob", seq, "no")).toMatchObject({ type: "nack", code: "not_yours" });
    expect(change(carol, "@bob", seq, "no")).toMatchObject({ type: "nack", code: "no_such_message" });
    expect(change(alice, "@carol", seq, "no")).toMatchObject({ type: "nack", code: "no_such_message" });
    expect(change(alice, "@bob", other, "no")).toMatchObject({ type: "nack", code: "no_such_message" });
  });

  test("a stored direct message edited before its recipient logs in is delivered late with its current text; a deleted one is not delivered", () => {
    const { connect, dm, change } = setup();
    const alice = connect("alice");
    const kept = dm(alice, "bob", "draft");
    const gone = dm(alice, "bob", "oops");
    change(alice, "@bob", kept, "final");
    change(alice, "@bob", gone);
    const bob = connect("bob");
    expect(bob.of("direct").map((d) => [d.seq, d.text, d.edited, d.late])).toEqual([[kept, "final", true, true]]);
  });
});
