/**
 * The chat core (src/server/chat.ts) with fake members and an injected
 * clock: no sockets, no real time. What each connection is posted is exactly
 * what its user would see, so every assertion is on a member's inbox.
 */
import { afterEach, describe, expect, jest, test } from "bun:test";
import { isSecureChatError } from "../../src/errors.ts";
import { AWAY_LIST_MAX, AWAY_TEXT_MAX } from "../../src/protocol/limits.ts";
import { type Message, encodeMessage } from "../../src/protocol/messages.ts";
import { Chat, type ChatOptions, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { MemoryJournal } from "../../src/store/journal.ts";
import { Clock, FakeMember, rng } from "./chat-helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };

/** `accounts`: the names that are accounts (default: any name). */
function setup(opts: Partial<ChatOptions> = {}, accounts?: string[]) {
  const o: ChatOptions = { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD, ...opts };
  const clock = new Clock();
  const journal = new MemoryJournal(o.history);
  const chat = new Chat(o, journal, clock.now, accounts ? (u) => accounts.includes(u) : undefined);
  /** As the server logs a connection in: the chat first, then its session_open entry. */
  const connect = (user: string, label = user): FakeMember => {
    const m = new FakeMember(user, label);
    chat.connect(m);
    journal.append({ kind: "session_open", user, session: label, source: "test", ts: clock.t });
    return m;
  };
  let id = 0;
  const say = (m: FakeMember, room: string, text: string, action = false): number => {
    const n = ++id;
    chat.handle(m, { type: "say", id: n, room, text, ...(action ? { action: true } : {}) });
    return n;
  };
  const dm = (m: FakeMember, to: string, text: string): number => {
    const n = ++id;
    chat.handle(m, { type: "dm", id: n, to, text });
    return n;
  };
  const join = (m: FakeMember, room: string) => chat.handle(m, { type: "join", room });
  const leave = (m: FakeMember, room: string) => chat.handle(m, { type: "leave", room });
  return { chat, clock, connect, say, dm, join, leave, opts: o };
}

/** Room messages as "room from: text". */
const lines = (m: FakeMember): string[] => m.of("message").map((x) => `${x.room} ${x.from}: ${x.text}${x.history ? " (history)" : ""}`);
const types = (msgs: Message[]): string[] => msgs.map((m) => m.type);

afterEach(() => {
  if (jest.isFakeTimers()) jest.useRealTimers();
});

describe("membership and relay", () => {
  test("nothing crosses rooms; the sender gets an ack, not its own message; the user's other terminal gets it", () => {
    const { connect, join, say, clock } = setup();
    const alice = connect("alice", "alice/1");
    const alice2 = connect("alice", "alice/2");
    const bob = connect("bob");
    const carol = connect("carol");
    join(alice, "red");
    join(alice2, "red");
    join(bob, "red");
    join(carol, "blue");
    for (const m of [alice, alice2, bob, carol]) m.take();

    clock.advance(5);
    const id = say(alice, "red", "hello red");
    expect(alice.take()).toEqual([{ type: "ack", id, seq: 1, ts: clock.t }]);
    const relayed: Message = { type: "message", room: "red", seq: 1, ts: clock.t, from: "alice", text: "hello red" };
    expect(alice2.take()).toEqual([relayed]);
    expect(bob.take()).toEqual([relayed]);
    expect(carol.take()).toEqual([]);

    const id2 = say(carol, "blue", "hello blue", true);
    expect(carol.take()).toEqual([{ type: "ack", id: id2, seq: 1, ts: clock.t }]);
    for (const m of [alice, alice2, bob]) expect(m.take()).toEqual([]);

    // A reply from the other terminal reaches the first one like anyone else's.
    const id3 = say(alice2, "red", "from my laptop");
    expect(alice2.take()).toEqual([{ type: "ack", id: id3, seq: 2, ts: clock.t }]);
    expect(lines(alice)).toEqual(["red alice: from my laptop"]);
    expect(lines(bob)).toEqual(["red alice: from my laptop"]);
  });

  test("join answers room (users, seq), history, history_end, then the recorded notice; the others get joined", () => {
    const { connect, join, say, clock } = setup({ history: 3 });
    const alice = connect("alice");
    join(alice, "lobby");
    expect(alice.take()).toEqual([
      { type: "room", room: "lobby", users: ["alice"], seq: 0, owner: "alice" },
      { type: "history_end", room: "lobby", count: 0 },
      expect.objectContaining({ type: "notice", code: "recorded" }),
    ]);
    const sent: number[] = [];
    for (let i = 1; i <= 5; i++) {
      clock.advance(10);
      sent.push(clock.t);
      say(alice, "lobby", `m${i}`);
    }
    alice.take();
    clock.advance(10);
    const bob = connect("bob");
    join(bob, "lobby");
    expect(alice.take()).toEqual([{ type: "joined", room: "lobby", user: "bob", ts: clock.t }]);
    expect(bob.take()).toEqual([
      { type: "room", room: "lobby", users: ["alice", "bob"], seq: 5, owner: "alice" },
      { type: "message", room: "lobby", seq: 3, ts: sent[2]!, from: "alice", text: "m3", history: true },
      { type: "message", room: "lobby", seq: 4, ts: sent[3]!, from: "alice", text: "m4", history: true },
      { type: "message", room: "lobby", seq: 5, ts: sent[4]!, from: "alice", text: "m5", history: true },
      { type: "history_end", room: "lobby", count: 3 },
      expect.objectContaining({ type: "notice", code: "recorded" }),
    ]);
  });

  test("history on request is capped at the server's history; joining twice re-sends the welcome without a second joined", () => {
    const { chat, connect, join, say } = setup({ history: 3 });
    const alice = connect("alice");
    const bob = connect("bob");
    join(alice, "lobby");
    join(bob, "lobby");
    for (let i = 1; i <= 5; i++) say(alice, "lobby", `m${i}`);
    alice.take();
    bob.take();

    chat.handle(bob, { type: "history", room: "lobby", limit: 2 });
    expect(bob.take().map((m) => (m.type === "message" ? `${m.text}${m.history ? "+h" : ""}` : m.type))).toEqual(["m4+h", "m5+h", "history_end"]);
    chat.handle(bob, { type: "history", room: "lobby", limit: 1000 });
    const h = bob.take();
    expect(h.filter((m) => m.type === "message")).toHaveLength(3);
    expect(h.at(-1)).toEqual({ type: "history_end", room: "lobby", count: 3 });

    join(bob, "lobby");
    expect(types(bob.take())).toEqual(["room", "message", "message", "message", "history_end", "notice"]);
    expect(alice.take()).toEqual([]);

    chat.handle(bob, { type: "history", room: "elsewhere", limit: 5 });
    expect(bob.take()).toEqual([expect.objectContaining({ type: "notice", code: "not_member" })]);
  });

  test("a room's seq continues after it empties and is made again; its history is still served", () => {
    const { chat, connect, join, leave, say } = setup({ history: 10 });
    const alice = connect("alice");
    join(alice, "lobby");
    say(alice, "lobby", "one");
    say(alice, "lobby", "two");
    leave(alice, "lobby");
    alice.take();
    chat.handle(alice, { type: "rooms" });
    expect(alice.take()).toEqual([{ type: "room_list", rooms: [] }]);

    const bob = connect("bob");
    join(bob, "lobby");
    expect(bob.take()[0]).toEqual({ type: "room", room: "lobby", users: ["bob"], seq: 2, owner: "bob" });
    const id = say(bob, "lobby", "three");
    expect(bob.take()).toEqual([expect.objectContaining({ type: "ack", id, seq: 3 })]);
  });

  test("joined and left are sent once per user, however many terminals the user has in the room", () => {
    const { chat, connect, join, leave } = setup();
    const bob = connect("bob");
    join(bob, "lobby");
    const a1 = connect("alice", "alice/1");
    const a2 = connect("alice", "alice/2");
    bob.take();

    join(a1, "lobby");
    join(a2, "lobby");
    expect(bob.take()).toEqual([expect.objectContaining({ type: "joined", room: "lobby", user: "alice" })]);
    // The first terminal does not hear about the second: alice was already in.
    expect(a1.take().filter((m) => m.type === "joined")).toEqual([]);
    expect(a2.take()[0]).toEqual({ type: "room", room: "lobby", users: ["alice", "bob"], seq: 0, owner: "bob" });

    chat.handle(bob, { type: "who", room: "lobby" });
    expect(bob.take()).toEqual([{ type: "members", room: "lobby", users: ["alice", "bob"] }]);

    leave(a1, "lobby");
    expect(a1.take()).toEqual([expect.objectContaining({ type: "left", room: "lobby", user: "alice" })]);
    expect(bob.take()).toEqual([]);
    expect(a2.take()).toEqual([]);

    chat.disconnect(a2);
    expect(bob.take()).toEqual([expect.objectContaining({ type: "left", room: "lobby", user: "alice" })]);
    chat.handle(bob, { type: "who", room: "lobby" });
    expect(bob.take()).toEqual([{ type: "members", room: "lobby", users: ["bob"] }]);
  });

  test("who and rooms: sorted, users counted once, unknown rooms empty", () => {
    const { chat, connect, join } = setup();
    const [a1, a2, bob, carol] = [connect("alice"), connect("alice"), connect("bob"), connect("carol")];
    join(a1, "zeta");
    join(a2, "zeta");
    join(bob, "zeta");
    join(carol, "alpha");
    join(a1, "mid");
    carol.take();
    chat.handle(carol, { type: "rooms" });
    chat.handle(carol, { type: "who", room: "zeta" });
    chat.handle(carol, { type: "who", room: "nowhere" });
    expect(carol.take()).toEqual([
      {
        type: "room_list",
        rooms: [
          { name: "alpha", users: 1 },
          { name: "mid", users: 1 },
          { name: "zeta", users: 2 },
        ],
      },
      { type: "members", room: "zeta", users: ["alice", "bob"] },
      { type: "members", room: "nowhere", users: [] },
    ]);
    expect(chat.stats).toEqual({ users: 3, connections: 4, rooms: 3 });
  });

  test("say to a room not joined is nacked not_member and reaches no one; leave of a room not joined is a notice", () => {
    const { connect, join, leave, say } = setup();
    const alice = connect("alice");
    const bob = connect("bob");
    join(bob, "lobby");
    bob.take();
    const id = say(alice, "lobby", "let me in");
    const id2 = say(alice, "nowhere", "anyone?");
    expect(alice.take()).toEqual([
      expect.objectContaining({ type: "nack", id, code: "not_member" }),
      expect.objectContaining({ type: "nack", id: id2, code: "not_member" }),
    ]);
    leave(alice, "lobby");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "notice", code: "not_member" })]);
    expect(bob.take()).toEqual([]);
  });

  test("room limits: per connection and per server", () => {
    const { connect, join } = setup({ maxRoomsPerConnection: 2, maxRooms: 3 });
    const alice = connect("alice");
    join(alice, "r1");
    join(alice, "r2");
    alice.take();
    join(alice, "r3");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "notice", code: "room_limit" })]);
    const bob = connect("bob");
    join(bob, "r3");
    bob.take();
    join(bob, "r4");
    expect(bob.take()).toEqual([expect.objectContaining({ type: "notice", code: "room_limit" })]);
    join(bob, "r1"); // an existing room is fine
    expect(bob.take()[0]).toEqual({ type: "room", room: "r1", users: ["alice", "bob"], seq: 0, owner: "alice" });
  });

  test("a request from a connection that is not connected is refused", () => {
    const { chat } = setup();
    let err: unknown;
    try {
      chat.handle(new FakeMember("ghost"), { type: "rooms" });
    } catch (e) {
      err = e;
    }
    expect(isSecureChatError(err, "chat_state")).toBe(true);
  });
});

describe("join since (resuming a room)", () => {
  /** seqs of the history messages, and the history_end, of what `m` was posted. */
  const answer = (msgs: Message[]) => ({
    room: msgs.find((x) => x.type === "room"),
    seqs: msgs.flatMap((x) => (x.type === "message" && x.history ? [x.seq] : [])),
    end: msgs.find((x) => x.type === "history_end"),
  });
  /** A lobby where bob has said `n` lines (`text(i)`), and alice, connected, not in it yet. */
  const lobby = (n: number, opts: Partial<ChatOptions>, text = (i: number) => `m${i}`) => {
    const s = setup(opts);
    const bob = s.connect("bob");
    s.join(bob, "lobby");
    for (let i = 1; i <= n; i++) s.say(bob, "lobby", text(i));
    return { ...s, bob, alice: s.connect("alice") };
  };

  test("join with since gets exactly the messages after since, oldest first; live ones follow without overlap", () => {
    const { chat, say, bob, alice } = lobby(7, { history: 10 });
    chat.handle(alice, { type: "join", room: "lobby", since: 4 });
    const a = answer(alice.take());
    expect(a.room).toEqual(expect.objectContaining({ type: "room", seq: 7 }));
    expect(a.seqs).toEqual([5, 6, 7]);
    expect(a.end).toEqual({ type: "history_end", room: "lobby", count: 3 });
    say(bob, "lobby", "m8");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "message", seq: 8, text: "m8" })]);
    expect(alice.inbox).toEqual([]);
  });

  test("since equal to the room's seq, or past it (the server lost its numbers), gets no history; the room's seq tells the client", () => {
    const { chat, connect, alice } = lobby(3, { history: 10 });
    chat.handle(alice, { type: "join", room: "lobby", since: 3 });
    expect(answer(alice.take())).toEqual({ room: expect.objectContaining({ seq: 3 }), seqs: [], end: { type: "history_end", room: "lobby", count: 0 } });
    const carol = connect("carol");
    chat.handle(carol, { type: "join", room: "lobby", since: 900 });
    expect(answer(carol.take())).toEqual({ room: expect.objectContaining({ seq: 3 }), seqs: [], end: { type: "history_end", room: "lobby", count: 0 } });
  });

  test("messages the server no longer keeps are a gap the client can see: the first seq sent is past since + 1", () => {
    const { chat, alice } = lobby(12, { history: 5 });
    chat.handle(alice, { type: "join", room: "lobby", since: 2 });
    const a = answer(alice.take());
    expect(a.seqs).toEqual([8, 9, 10, 11, 12]);
    expect(a.end).toEqual({ type: "history_end", room: "lobby", count: 5 });
  });

  test("what does not fit one answer is paged: the oldest after since that fit, more: true, then history with since continues", () => {
    const { chat, alice } = lobby(10, { history: 50, historyBytes: 20_000 }, (i) => `${i} ${"z".repeat(4000)}`);
    chat.handle(alice, { type: "join", room: "lobby", since: 1 });
    let a = answer(alice.take());
    expect(a.seqs).toEqual([2, 3, 4, 5]);
    expect(a.end).toEqual({ type: "history_end", room: "lobby", count: 4, more: true });
    const got = [...a.seqs];
    while (a.end?.type === "history_end" && a.end.more) {
      chat.handle(alice, { type: "history", room: "lobby", limit: 1000, since: got.at(-1)! });
      a = answer(alice.take());
      got.push(...a.seqs);
    }
    expect(got).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(a.end).toEqual({ type: "history_end", room: "lobby", count: 1 });
  });

  test("limit 0 asks for no history at all (a bot's --no-history); limit caps the count with or without since", () => {
    const { chat, alice, connect } = lobby(6, { history: 10 });
    chat.handle(alice, { type: "join", room: "lobby", limit: 0 });
    expect(answer(alice.take())).toEqual({ room: expect.objectContaining({ seq: 6 }), seqs: [], end: { type: "history_end", room: "lobby", count: 0 } });
    // (alice's joins now start at her read marker: another user's first join shows the cap)
    const carol = connect("carol");
    chat.handle(carol, { type: "join", room: "lobby", limit: 2 });
    expect(answer(carol.take()).seqs).toEqual([5, 6]);
    chat.handle(alice, { type: "join", room: "lobby", since: 1, limit: 2 });
    expect(answer(alice.take())).toEqual({ room: expect.anything(), seqs: [2, 3], end: { type: "history_end", room: "lobby", count: 2, more: true } });
    chat.handle(alice, { type: "join", room: "lobby", since: 1, limit: 0 });
    expect(answer(alice.take()).end).toEqual({ type: "history_end", room: "lobby", count: 0, more: true });
  });

  test("join since and history since each cost a request token like any other request", () => {
    const { chat, connect, join, say } = setup({ history: 10, requests: { rate: 1, burst: 2 } });
    const bob = connect("bob");
    join(bob, "lobby");
    say(bob, "lobby", "m1");
    const alice = connect("alice");
    chat.handle(alice, { type: "join", room: "lobby", since: 0 });
    chat.handle(alice, { type: "history", room: "lobby", limit: 5, since: 0 });
    chat.handle(alice, { type: "history", room: "lobby", limit: 5, since: 0 });
    const got = alice.take();
    expect(got.filter((x) => x.type === "history_end")).toHaveLength(2);
    expect(got.at(-1)).toEqual(expect.objectContaining({ type: "notice", code: "slow_down" }));
  });
});

describe("direct messages", () => {
  test("a dm reaches every terminal of the recipient and the sender's other terminals; the sender's gets the ack", () => {
    const { connect, dm, clock } = setup();
    const a1 = connect("alice", "alice/1");
    const a2 = connect("alice", "alice/2");
    const b1 = connect("bob", "bob/1");
    const b2 = connect("bob", "bob/2");
    const carol = connect("carol");
    clock.advance(3);
    const id = dm(a1, "bob", "psst");
    const direct: Message = { type: "direct", seq: 1, ts: clock.t, from: "alice", to: "bob", text: "psst" };
    expect(a1.take()).toEqual([{ type: "ack", id, seq: 1, ts: clock.t }]);
    expect(a2.take()).toEqual([direct]);
    expect(b1.take()).toEqual([direct]);
    expect(b2.take()).toEqual([direct]);
    expect(carol.take()).toEqual([]);

    // Direct numbering is one sequence across all users.
    const id2 = dm(carol, "alice", "hi");
    expect(carol.take()).toEqual([expect.objectContaining({ type: "ack", id: id2, seq: 2 })]);
    expect(a1.of("direct").map((d) => d.seq)).toEqual([2]);
    expect(a2.take()).toHaveLength(1);
    expect(b1.take()).toEqual([]);
  });

  test("a dm to a name that is not an account is refused no_such_user, stored nowhere, shown to no later login", () => {
    const { connect, dm } = setup({}, ["alice", "bob"]);
    const alice = connect("alice");
    const id = dm(alice, "dave", "are you there?");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "nack", id, code: "no_such_user" })]);
    expect(connect("dave").take()).toEqual([]);
  });
});

describe("direct messages to offline users (PROTOCOL.md §7.3)", () => {
  const late = (m: FakeMember) => m.of("direct").map((d) => `${d.seq} ${d.from}: ${d.text}${d.late ? " (late)" : ""}`);

  test("stored and acked stored: true; every later login of the recipient is shown what its device has not read, marked late, oldest first — a live one too", () => {
    const { chat, connect, dm, clock } = setup({}, ["alice", "bob", "carol"]);
    const alice = connect("alice");
    const bob = connect("bob");
    const id = dm(alice, "carol", "lunch?");
    expect(alice.take()).toEqual([{ type: "ack", id, seq: 1, ts: clock.t, stored: true }]);
    clock.advance(1000);
    dm(bob, "carol", "call me");
    expect(bob.take()).toEqual([expect.objectContaining({ type: "ack", seq: 2, stored: true })]);

    const laptop = connect("carol", "carol/laptop");
    expect(late(laptop)).toEqual(["1 alice: lunch? (late)", "2 bob: call me (late)"]);
    expect(laptop.take()[0]).toEqual({ type: "direct", seq: 1, ts: clock.t - 1000, from: "alice", to: "carol", text: "lunch?", late: true });
    // while carol is online a dm is live: not stored, not late
    const id3 = dm(alice, "carol", "see you");
    expect(alice.take()).toEqual([{ type: "ack", id: id3, seq: 3, ts: clock.t }]);
    expect(late(laptop)).toEqual(["3 alice: see you"]);
    // her fakes are one device that has read nothing: the next login is shown everything, the live one too
    // (a connection that vanished before showing it — a node that died — loses nothing)
    const phone = connect("carol", "carol/phone");
    expect(late(phone)).toEqual(["1 alice: lunch? (late)", "2 bob: call me (late)", "3 alice: see you (late)"]);
    // once the device says it read them, its later logins are not shown them again
    chat.handle(phone, { type: "read", dm: 3 });
    chat.disconnect(laptop);
    chat.disconnect(phone);
    const again = connect("carol", "carol/laptop again");
    expect(late(again)).toEqual([]);
    for (const m of [alice, bob]) expect(m.take()).toEqual([]);
  });

  test("past maxStoredDms undelivered for one recipient, a dm to them is nacked dm_store_full; their next login makes room", () => {
    const { chat, connect, dm } = setup({ maxStoredDms: 3 }, ["alice", "bob", "carol"]);
    const alice = connect("alice");
    const bob = connect("bob");
    for (let i = 0; i < 3; i++) dm(alice, "carol", `spam ${i}`);
    expect(alice.take().map((m) => m.type)).toEqual(["ack", "ack", "ack"]);
    const id = dm(bob, "carol", "important");
    expect(bob.take()).toEqual([expect.objectContaining({ type: "nack", id, code: "dm_store_full" })]);
    // another recipient is not affected
    chat.disconnect(bob);
    dm(alice, "bob", "hi bob");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "ack", stored: true })]);
    const carol = connect("carol");
    expect(late(carol)).toEqual(["1 alice: spam 0 (late)", "2 alice: spam 1 (late)", "3 alice: spam 2 (late)"]);
    chat.disconnect(carol);
    const bob2 = connect("bob");
    bob2.take();
    dm(bob2, "carol", "important");
    expect(bob2.take()).toEqual([expect.objectContaining({ type: "ack", stored: true })]);
    // what a login is shown is bounded by the cap too: the newest maxStoredDms
    expect(late(connect("carol"))).toEqual(["2 alice: spam 1 (late)", "3 alice: spam 2 (late)", "5 bob: important (late)"]);
  });

  test("a login is shown only the stored DMs that fit the history budget, the newest, with a notice dm_more", () => {
    const { connect, dm } = setup({ historyBytes: 360 }, ["alice", "carol"]);
    const alice = connect("alice");
    for (let i = 1; i <= 4; i++) dm(alice, "carol", `message number ${i} ${"x".repeat(60)}`);
    const carol = connect("carol");
    const got = carol.take();
    expect(got[0]).toEqual(expect.objectContaining({ type: "notice", code: "dm_more" }));
    expect(got.slice(1).map((m) => (m.type === "direct" ? m.seq : 0))).toEqual([3, 4]);
  });

  test("after dmRetentionMs stored DMs are no longer shown nor counted against the cap", () => {
    const { chat, connect, dm, clock } = setup({ dmRetentionMs: 60_000, maxStoredDms: 1 }, ["alice", "carol"]);
    const alice = connect("alice");
    dm(alice, "carol", "old news");
    clock.advance(60_001);
    chat.prune();
    const id = dm(alice, "carol", "new news");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "ack" }), expect.objectContaining({ type: "ack", id, stored: true })]);
    expect(late(connect("carol"))).toEqual(["2 alice: new news (late)"]);
  });

  test("history with a user: the DMs between the two, either way, paged back with before; history_end says more", () => {
    const { chat, connect, dm } = setup({}, ["alice", "bob", "carol"]);
    const alice = connect("alice");
    const bob = connect("bob");
    const carol = connect("carol");
    for (let i = 1; i <= 5; i++) dm(i % 2 ? alice : bob, i % 2 ? "bob" : "alice", `m${i}`);
    dm(carol, "alice", "not with bob");
    for (const m of [alice, bob, carol]) m.take();
    chat.handle(alice, { type: "history", with: "bob", limit: 2 });
    expect(alice.take()).toEqual([
      expect.objectContaining({ type: "direct", seq: 4, from: "bob", to: "alice", text: "m4", history: true }),
      expect.objectContaining({ type: "direct", seq: 5, from: "alice", to: "bob", text: "m5", history: true }),
      { type: "history_end", with: "bob", count: 2, more: true },
    ]);
    chat.handle(alice, { type: "history", with: "bob", limit: 2, before: 4 });
    expect(alice.take().map((m) => (m.type === "direct" ? m.seq : m))).toEqual([2, 3, { type: "history_end", with: "bob", count: 2, more: true }]);
    chat.handle(alice, { type: "history", with: "bob", limit: 2, before: 2 });
    expect(alice.take().map((m) => (m.type === "direct" ? m.seq : m))).toEqual([1, { type: "history_end", with: "bob", count: 1 }]);
    // a third party sees none of it
    chat.handle(carol, { type: "history", with: "bob", limit: 10 });
    expect(carol.take()).toEqual([{ type: "history_end", with: "bob", count: 0 }]);
  });
});

describe("away (PROTOCOL.md §7.3)", () => {
  test("away is shown to others in who, and carried in the ack of a dm to the away user; every terminal of the user is told", () => {
    const { chat, connect, join, dm } = setup();
    const alice = connect("alice");
    const bob = connect("bob", "bob/1");
    const bob2 = connect("bob", "bob/2");
    const carol = connect("carol");
    join(alice, "lobby");
    join(bob, "lobby");
    join(carol, "lobby");
    for (const m of [alice, bob, bob2, carol]) m.take();

    chat.handle(bob, { type: "away", text: "at lunch" });
    const told: Message = { type: "notice", code: "away", text: "you are marked away: at lunch" };
    expect(bob.take()).toEqual([told]);
    expect(bob2.take()).toEqual([told]);
    expect(alice.take()).toEqual([]);

    chat.handle(alice, { type: "who", room: "lobby" });
    expect(alice.take()).toEqual([{ type: "members", room: "lobby", users: ["alice", "bob", "carol"], away: [{ user: "bob", text: "at lunch" }] }]);
    const id = dm(alice, "bob", "are you there?");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "ack", id, away: "at lunch" })]);
    // The message is delivered all the same.
    expect(bob.take()).toEqual([expect.objectContaining({ type: "direct", from: "alice", text: "are you there?" })]);
    // Not away: no away member at all.
    const id2 = dm(bob, "carol", "hi");
    expect(bob.take()).toEqual([{ type: "ack", id: id2, seq: 2, ts: expect.any(Number) }]);
  });

  test("away without text (back) clears it on every terminal; a new text replaces the old", () => {
    const { chat, connect, join, dm } = setup();
    const alice = connect("alice");
    const bob = connect("bob", "bob/1");
    const bob2 = connect("bob", "bob/2");
    join(alice, "lobby");
    join(bob, "lobby");
    chat.handle(bob, { type: "away", text: "at lunch" });
    chat.handle(bob2, { type: "away", text: "in a meeting" });
    for (const m of [alice, bob, bob2]) m.take();
    chat.handle(alice, { type: "who", room: "lobby" });
    expect(alice.take()).toEqual([{ type: "members", room: "lobby", users: ["alice", "bob"], away: [{ user: "bob", text: "in a meeting" }] }]);

    chat.handle(bob2, { type: "away" });
    const back: Message = { type: "notice", code: "back", text: "you are no longer marked away" };
    expect(bob.take()).toEqual([back]);
    expect(bob2.take()).toEqual([back]);
    chat.handle(alice, { type: "who", room: "lobby" });
    expect(alice.take()).toEqual([{ type: "members", room: "lobby", users: ["alice", "bob"] }]);
    const id = dm(alice, "bob", "welcome back");
    expect(alice.take()).toEqual([{ type: "ack", id, seq: 1, ts: expect.any(Number) }]);
  });

  test("away is presence: it lasts while one terminal is online and is forgotten when the last one closes", () => {
    const { chat, connect, join, dm } = setup();
    const alice = connect("alice");
    const bob = connect("bob", "bob/1");
    const bob2 = connect("bob", "bob/2");
    join(alice, "lobby");
    chat.handle(bob, { type: "away", text: "at lunch" });
    chat.disconnect(bob);
    alice.take();
    const id = dm(alice, "bob", "still away?");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "ack", id, away: "at lunch" })]);

    chat.disconnect(bob2);
    const bob3 = connect("bob", "bob/3");
    join(bob3, "lobby");
    bob3.take();
    alice.take();
    chat.handle(alice, { type: "who", room: "lobby" });
    expect(alice.take()).toEqual([{ type: "members", room: "lobby", users: ["alice", "bob"] }]);
    const id2 = dm(alice, "bob", "hello again");
    expect(alice.take()).toEqual([{ type: "ack", id: id2, seq: 2, ts: expect.any(Number) }]);
  });

  test("away costs a request token like who: past the burst it is held (slow_down) and answered in its turn", () => {
    jest.useFakeTimers();
    const { chat, connect, clock } = setup({ requests: { rate: 5, burst: 2 } });
    const bob = connect("bob");
    chat.handle(bob, { type: "away", text: "one" });
    chat.handle(bob, { type: "away", text: "two" });
    chat.handle(bob, { type: "away", text: "three" });
    expect(bob.take()).toEqual([
      { type: "notice", code: "away", text: "you are marked away: one" },
      { type: "notice", code: "away", text: "you are marked away: two" },
      expect.objectContaining({ type: "notice", code: "slow_down" }),
    ]);
    clock.advance(200);
    expect(bob.take()).toEqual([{ type: "notice", code: "away", text: "you are marked away: three" }]);
    expect(jest.getTimerCount()).toBe(0);
  });

  test("members.away lists at most AWAY_LIST_MAX users, the first of users, so the answer stays one frame", () => {
    const { chat, connect, join } = setup();
    const alice = connect("alice");
    join(alice, "big");
    for (let i = 0; i < AWAY_LIST_MAX + 5; i++) {
      const u = connect(`u${String(i).padStart(4, "0")}`);
      join(u, "big");
      chat.handle(u, { type: "away", text: "x".repeat(AWAY_TEXT_MAX) });
    }
    alice.take();
    chat.handle(alice, { type: "who", room: "big" });
    const [members] = alice.take() as [Message<"members">];
    expect(members.away!.map((a) => a.user)).toEqual(members.users.filter((u) => u !== "alice").slice(0, AWAY_LIST_MAX));
  });
});

describe("disconnect", () => {
  test("leaves every room: the others are told, empty rooms go, the user is offline", () => {
    const { chat, connect, join, dm } = setup();
    const dave = connect("dave");
    const alice = connect("alice");
    const bob = connect("bob");
    for (const r of ["r1", "r2", "r3"]) join(dave, r);
    join(alice, "r1");
    join(bob, "r2");
    for (const m of [dave, alice, bob]) m.take();

    chat.disconnect(dave);
    expect(alice.take()).toEqual([expect.objectContaining({ type: "left", room: "r1", user: "dave" })]);
    expect(bob.take()).toEqual([expect.objectContaining({ type: "left", room: "r2", user: "dave" })]);
    expect(dave.take()).toEqual([]);
    chat.handle(alice, { type: "rooms" });
    expect(alice.take()).toEqual([{ type: "room_list", rooms: [{ name: "r1", users: 1 }, { name: "r2", users: 1 }] }]);
    expect(chat.stats).toEqual({ users: 2, connections: 2, rooms: 2 });
    const id = dm(alice, "dave", "bye?");
    expect(alice.take()).toEqual([expect.objectContaining({ type: "ack", id, stored: true })]);
    chat.disconnect(dave); // twice is harmless
  });

  test("held requests of a connection that goes are dropped with it", () => {
    jest.useFakeTimers();
    const { chat, connect, join, say, clock } = setup({ flood: { rate: 10, burst: 1 } });
    const dave = connect("dave");
    const alice = connect("alice");
    join(dave, "r1");
    join(alice, "r1");
    alice.take();
    say(dave, "r1", "one");
    say(dave, "r1", "two");
    say(dave, "r1", "three");
    chat.disconnect(dave);
    clock.advance(1000);
    expect(lines(alice)).toEqual(["r1 dave: one"]);
    expect(types(alice.take())).toEqual(["message", "left"]);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe("flood control", () => {
  test("afterHeld (bye, logout) runs after every held request is answered, not before; at once when none is held", () => {
    jest.useFakeTimers();
    const { chat, connect, join, say, clock } = setup({ flood: { rate: 10, burst: 2 } });
    const alice = connect("alice");
    join(alice, "lobby");
    alice.take();
    let ran = 0;
    chat.afterHeld(alice, () => ran++);
    expect(ran).toBe(1); // nothing held: at once
    const ids = Array.from({ length: 5 }, (_, i) => say(alice, "lobby", `m${i + 1}`));
    chat.afterHeld(alice, () => {
      ran++;
      alice.post(encodeMessage({ type: "bye", reason: "goodbye" }));
    });
    expect(ran).toBe(1);
    clock.advance(1000);
    expect(ran).toBe(2);
    const got = alice.take().filter((m) => m.type !== "notice");
    expect(got.map((m) => (m.type === "ack" ? `ack ${m.id}` : m.type))).toEqual([...ids.map((id) => `ack ${id}`), "bye"]);
  });

  test("rate 10 burst 3: ten says → 3 acked at once, one slow_down, the rest acked later in order; none dropped; a later leave waits its turn", () => {
    jest.useFakeTimers();
    const { chat, connect, join, leave, say, clock } = setup({ flood: { rate: 10, burst: 3 } });
    const alice = connect("alice");
    const bob = connect("bob");
    join(alice, "lobby");
    join(bob, "lobby");
    alice.take();
    bob.take();

    const ids = Array.from({ length: 10 }, (_, i) => say(alice, "lobby", `m${i + 1}`));
    leave(alice, "lobby");
    chat.handle(alice, { type: "who", room: "lobby" });
    const first = alice.take();
    expect(types(first)).toEqual(["ack", "ack", "ack", "notice"]);
    expect(first[3]).toEqual(expect.objectContaining({ type: "notice", code: "slow_down" }));
    expect(first.slice(0, 3).map((a) => (a.type === "ack" ? a.id : -1))).toEqual(ids.slice(0, 3));
    expect(lines(bob)).toEqual(["lobby alice: m1", "lobby alice: m2", "lobby alice: m3"]);

    // One token per 100 ms.
    clock.advance(99);
    expect(alice.inbox).toEqual([]);
    clock.advance(1);
    expect(alice.take()).toEqual([{ type: "ack", id: ids[3]!, seq: 4, ts: clock.t }]);
    clock.advance(250);
    expect(alice.take().map((m) => (m.type === "ack" ? m.id : -1))).toEqual(ids.slice(4, 6));

    clock.advance(450);
    const rest = alice.take();
    // The held leave and who come after the last say, in the order sent; no second slow_down.
    expect(rest.map((m) => (m.type === "ack" ? `ack ${m.id}` : m.type))).toEqual([...ids.slice(6).map((id) => `ack ${id}`), "left", "members"]);
    expect(rest.at(-1)).toEqual({ type: "members", room: "lobby", users: ["bob"] });
    expect(lines(bob)).toEqual(ids.map((_, i) => `lobby alice: m${i + 1}`));
    expect(bob.of("message").map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(bob.inbox.at(-1)).toEqual(expect.objectContaining({ type: "left", user: "alice" }));
    expect(jest.getTimerCount()).toBe(0);
  });

  test("every request costs a token: a storm of joins is held at the request rate (one slow_down), in order, and answered later", () => {
    jest.useFakeTimers();
    const { chat, connect, join, clock } = setup({ requests: { rate: 5, burst: 3 } });
    const alice = connect("alice");
    for (let i = 0; i < 6; i++) join(alice, "lobby");
    chat.handle(alice, { type: "ping" });
    const first = alice.take();
    // Three answered at once (room … recorded, each), then one slow_down; nothing else yet.
    expect(first.filter((m) => m.type === "room").length).toBe(3);
    expect(first.at(-1)).toEqual(expect.objectContaining({ type: "notice", code: "slow_down" }));
    expect(first.filter((m) => m.type === "notice" && m.code === "slow_down").length).toBe(1);
    // One token per 200 ms.
    clock.advance(199);
    expect(alice.inbox).toEqual([]);
    clock.advance(1);
    expect(alice.take().filter((m) => m.type === "room").length).toBe(1);
    clock.advance(600);
    const rest = alice.take();
    expect(rest.filter((m) => m.type === "room").length).toBe(2);
    // The ping was a request like the others: answered in its turn, after the joins.
    expect(rest.at(-1)).toEqual({ type: "pong" });
    expect(jest.getTimerCount()).toBe(0);
  });

  test("messages and other requests draw on separate buckets: joins held do not slow says that arrive first", () => {
    const { connect, join, say, chat } = setup({ flood: { rate: 10, burst: 5 }, requests: { rate: 1, burst: 1 } });
    const alice = connect("alice");
    join(alice, "lobby");
    alice.take();
    const ids = [say(alice, "lobby", "a"), say(alice, "lobby", "b")];
    chat.handle(alice, { type: "who", room: "lobby" });
    expect(alice.take().map((m) => (m.type === "ack" ? `ack ${m.id}` : m.type === "notice" ? m.code : m.type))).toEqual([`ack ${ids[0]}`, `ack ${ids[1]}`, "slow_down"]);
  });

  test("a congested connection's requests wait, in order and without a slow_down, until it drains (wake)", () => {
    const { chat, connect, join, say } = setup();
    const alice = connect("alice");
    const bob = connect("bob");
    join(alice, "lobby");
    join(bob, "lobby");
    alice.take();
    bob.take();
    alice.congested = true;
    const id = say(alice, "lobby", "held");
    join(alice, "other");
    chat.handle(alice, { type: "rooms" });
    expect(alice.take()).toEqual([]);
    expect(bob.take()).toEqual([]);
    chat.wake(alice); // still congested: nothing moves
    expect(alice.take()).toEqual([]);
    alice.congested = false;
    chat.wake(alice);
    expect(types(alice.take())).toEqual(["ack", "room", "history_end", "notice", "room_list"]);
    expect(lines(bob)).toEqual(["lobby alice: held"]);
    expect(id).toBeGreaterThan(0);
  });

  test("a congested connection answers at most one held request past the point it became congested", () => {
    const { chat, connect, join } = setup();
    const alice = connect("alice");
    join(alice, "lobby");
    alice.take();
    alice.congested = true;
    for (let i = 0; i < 10; i++) join(alice, `r${i}`);
    alice.congested = false;
    // The fake becomes congested again as soon as it is posted the first answer.
    const post = alice.post.bind(alice);
    alice.post = (json: string) => {
      post(json);
      alice.congested = true;
    };
    chat.wake(alice);
    expect(alice.take().filter((m) => m.type === "room").map((m) => (m.type === "room" ? m.room : ""))).toEqual(["r0"]);
    alice.congested = false;
    chat.wake(alice);
    expect(alice.take().filter((m) => m.type === "room").map((m) => (m.type === "room" ? m.room : ""))).toEqual(["r1"]);
  });

  test("a user is in at most maxRoomsPerUser rooms across its connections, so it creates at most that many", () => {
    const { chat, connect, join } = setup({ maxRoomsPerUser: 3, maxRoomsPerConnection: 2 });
    const a1 = connect("alice", "alice/1");
    const a2 = connect("alice", "alice/2");
    join(a1, "r1");
    join(a1, "r2");
    join(a2, "r2"); // the same room again: no new room for the user
    join(a2, "r3");
    expect(chat.roomsOf("alice")).toBe(3);
    const a3 = connect("alice", "alice/3");
    join(a3, "r4");
    expect(a3.take()).toEqual([expect.objectContaining({ type: "notice", code: "room_limit", text: expect.stringContaining("3 rooms across its connections") })]);
    expect(chat.stats.rooms).toBe(3);
    // A room the user is in already is no new room: a third terminal may join it.
    join(a3, "r3");
    expect(a3.take().some((m) => m.type === "room" && m.room === "r3")).toBe(true);
    // Leaving one frees a place.
    chat.handle(a1, { type: "leave", room: "r1" });
    join(a3, "r4");
    expect(a3.take().some((m) => m.type === "room" && m.room === "r4")).toBe(true);
    for (const m of [a1, a2, a3]) chat.disconnect(m);
    expect(chat.roomsOf("alice")).toBe(0);
  });

  test("one answer's history is cut to historyBytes: the newest messages that fit, oldest first, and history_end counts them", () => {
    const { chat, connect, join, say } = setup({ history: 50, historyBytes: 20_000 });
    const bob = connect("bob");
    join(bob, "lobby");
    for (let i = 1; i <= 50; i++) say(bob, "lobby", `${i} ${"z".repeat(4000)}`);
    const alice = connect("alice");
    join(alice, "lobby");
    const got = alice.take();
    const past = got.filter((m) => m.type === "message");
    expect(past.length).toBe(4); // 4 × ~4.1 KB fit in 20,000; 5 do not
    expect(past.map((m) => (m.type === "message" ? m.seq : 0))).toEqual([47, 48, 49, 50]);
    expect(got.find((m) => m.type === "history_end")).toEqual({ type: "history_end", room: "lobby", count: 4 });
    chat.handle(alice, { type: "history", room: "lobby", limit: 1000 });
    expect(alice.take().filter((m) => m.type === "message").length).toBe(4);
  });

  test("past maxHeld, says are nacked flood and other requests dropped with a notice; the held ones still go out", () => {
    jest.useFakeTimers();
    const { chat, connect, join, say, clock } = setup({ flood: { rate: 10, burst: 1 }, maxHeld: 4 });
    const alice = connect("alice");
    const bob = connect("bob");
    join(alice, "lobby");
    join(bob, "lobby");
    alice.take();
    bob.take();
    const ids = Array.from({ length: 7 }, (_, i) => say(alice, "lobby", `m${i + 1}`));
    chat.handle(alice, { type: "rooms" });
    expect(alice.take().map((m) => (m.type === "ack" || m.type === "nack" ? `${m.type}${m.id}` : `${m.type}:${m.type === "notice" ? m.code : ""}`))).toEqual([
      `ack${ids[0]}`,
      "notice:slow_down",
      `nack${ids[5]}`,
      `nack${ids[6]}`,
      "notice:flood",
    ]);
    expect(alice.of("nack").every((n) => n.code === "flood")).toBe(true);
    clock.advance(400);
    expect(alice.take().map((m) => (m.type === "ack" ? m.id : m.type))).toEqual(ids.slice(1, 5));
    expect(lines(bob)).toEqual(["m1", "m2", "m3", "m4", "m5"].map((t) => `lobby alice: ${t}`));
  });

  test("a connection that goes on sending while refused (maxHeld more refusals before its queue empties) is closed: flood", () => {
    jest.useFakeTimers();
    const { chat, connect, join, say, clock } = setup({ flood: { rate: 10, burst: 1 }, maxHeld: 4 });
    const alice = connect("alice");
    join(alice, "lobby");
    alice.take();
    for (let i = 0; i < 1 + 4 + 4; i++) say(alice, "lobby", `m${i}`); // one acked, four held, four refused
    expect(alice.of("nack").length).toBe(4);
    let thrown: unknown;
    try {
      say(alice, "lobby", "one more");
    } catch (e) {
      thrown = e;
    }
    expect(isSecureChatError(thrown, "flood")).toBe(true);
    // A client that waits for its answers starts over once its queue has emptied.
    const bob = connect("bob");
    join(bob, "lobby");
    for (let i = 0; i < 1 + 4 + 4; i++) say(bob, "lobby", `b${i}`);
    clock.advance(1000);
    expect(() => say(bob, "lobby", "after the queue emptied")).not.toThrow();
    chat.disconnect(alice);
    chat.disconnect(bob);
  });

  test("logging out and in again buys no fresh burst: a user's buckets outlive its connections until they have refilled", () => {
    jest.useFakeTimers();
    const { chat, connect, join, say, clock } = setup({ flood: { rate: 10, burst: 3 } });
    let alice = connect("alice");
    join(alice, "lobby");
    for (let i = 0; i < 3; i++) say(alice, "lobby", `m${i}`);
    chat.disconnect(alice);
    alice = connect("alice");
    join(alice, "lobby");
    alice.take();
    say(alice, "lobby", "after a new login");
    expect(alice.take().map((m) => (m.type === "notice" ? m.code : m.type))).toEqual(["slow_down"]);
    chat.disconnect(alice);
    // Pruned only once refilled and offline; a pruned bucket is a new, full one.
    chat.prune();
    clock.advance(1000);
    chat.prune();
    alice = connect("alice");
    join(alice, "lobby");
    alice.take();
    for (let i = 0; i < 3; i++) say(alice, "lobby", `n${i}`);
    expect(alice.take().map((m) => m.type)).toEqual(["ack", "ack", "ack"]);
    chat.disconnect(alice);
  });

  test("a user's terminals share one bucket", () => {
    jest.useFakeTimers();
    const { connect, join, say, clock } = setup({ flood: { rate: 10, burst: 2 } });
    const a1 = connect("alice");
    const a2 = connect("alice");
    join(a1, "lobby");
    join(a2, "lobby");
    a1.take();
    a2.take();
    say(a1, "lobby", "one");
    say(a2, "lobby", "two");
    say(a1, "lobby", "three");
    expect(types(a1.take())).toEqual(["ack", "message", "notice"]);
    clock.advance(100);
    expect(types(a1.take())).toEqual(["ack"]);
    expect(lines(a2)).toEqual(["lobby alice: one", "lobby alice: three"]);
  });
});

// ---------------------------------------------------------------------------
// Random interleavings against a model

const USERS = ["ann", "ben", "cat", "dan", "eve"];
const ROOMS = ["red", "green", "blue"];
const HISTORY = 4;

interface ModelRoom {
  members: Set<FakeMember>;
  users: Map<string, number>;
  /** The user whose join created it (PROTOCOL.md §7.9). */
  owner: string;
}

/** What a user sees, minus free text of notices and nacks. */
function norm(m: Message): unknown {
  if (m.type === "notice") return { type: "notice", code: m.code };
  if (m.type === "nack") return { type: "nack", id: m.id, code: m.code };
  return m;
}

function runModel(seed: number, steps: number): void {
  const r = rng(seed);
  const clock = new Clock();
  const opts: ChatOptions = { ...DEFAULT_CHAT, history: HISTORY, flood: NO_FLOOD, requests: NO_FLOOD };
  const chat = new Chat(opts, new MemoryJournal(HISTORY), clock.now);

  const expected = new Map<FakeMember, unknown[]>();
  const all: FakeMember[] = [];
  const slots: (FakeMember | null)[] = [];
  const slotUser: string[] = [];
  for (const u of USERS) for (let i = 0; i < 2; i++) (slots.push(null), slotUser.push(u));

  const rooms = new Map<string, ModelRoom>();
  const seqs = new Map<string, number>();
  const history = new Map<string, Message<"message">[]>();
  const online = new Map<string, Set<FakeMember>>();
  const memberOf = new Map<FakeMember, Set<string>>();
  let directSeq = 0;
  /** DMs sent to each user: every later login is shown them, late (its fakes are one device that never reads them). */
  const storedFor = new Map<string, Message<"direct">[]>();
  let nextId = 0;
  /** Records what the model says member `m` must be posted next. */
  const expect_ = (m: FakeMember, msg: Message) => expected.get(m)!.push(norm(msg));

  /** Read markers (PROTOCOL.md §7.14), per user and room: the fakes have no device, so a user's terminals share one. */
  const markers = new Map<string, { seq: number; at: number }>();
  const welcome = (m: FakeMember, name: string) => {
    const room = rooms.get(name)!;
    const seq = seqs.get(name) ?? 0;
    const mark = markers.get(`${m.user}/${name}`);
    const unread = mark ? seq - mark.seq : 0;
    expect_(m, { type: "room", room: name, users: [...room.users.keys()].sort(), seq, owner: room.owner, ...(unread > 0 ? { unread, read_at: mark!.at } : {}) });
    sendHistory(m, name, HISTORY, mark?.seq);
    expect_(m, { type: "notice", code: "recorded", text: "" });
    if (!mark) markers.set(`${m.user}/${name}`, { seq, at: clock.t });
  };
  const sendHistory = (m: FakeMember, name: string, limit: number, after = 0) => {
    const past = (history.get(name) ?? []).slice(-limit).filter((h) => h.seq > after);
    for (const h of past) expect_(m, { ...h, history: true });
    expect_(m, { type: "history_end", room: name, count: past.length });
  };
  const leaveRoom = (m: FakeMember, name: string, tell: boolean) => {
    const room = rooms.get(name)!;
    room.members.delete(m);
    memberOf.get(m)!.delete(name);
    const count = room.users.get(m.user)! - 1;
    const left: Message = { type: "left", room: name, user: m.user, ts: clock.t };
    if (count > 0) room.users.set(m.user, count);
    else {
      room.users.delete(m.user);
      for (const o of room.members) expect_(o, left);
    }
    if (tell) expect_(m, left);
    if (tell && count === 0) markers.delete(`${m.user}/${name}`);
    if (room.members.size === 0) rooms.delete(name);
  };

  for (let step = 0; step < steps; step++) {
    clock.advance(1);
    const slot = r.int(slots.length);
    const m = slots[slot];
    if (!m) {
      const fresh = new FakeMember(slotUser[slot]!, `${slotUser[slot]}#${slot}@${step}`);
      slots[slot] = fresh;
      all.push(fresh);
      expected.set(fresh, []);
      memberOf.set(fresh, new Set());
      let set = online.get(fresh.user);
      if (!set) online.set(fresh.user, (set = new Set()));
      set.add(fresh);
      chat.connect(fresh);
      for (const d of storedFor.get(fresh.user) ?? []) expect_(fresh, { ...d, late: true });
      continue;
    }
    const roll = r.next();
    const name = r.pick(ROOMS);
    const mine = memberOf.get(m)!;
    if (roll < 0.22) {
      chat.handle(m, { type: "join", room: name });
      if (mine.has(name)) welcome(m, name);
      else {
        let room = rooms.get(name);
        if (!room) rooms.set(name, (room = { members: new Set(), users: new Map(), owner: m.user }));
        const count = room.users.get(m.user) ?? 0;
        if (count === 0) for (const o of room.members) expect_(o, { type: "joined", room: name, user: m.user, ts: clock.t });
        room.users.set(m.user, count + 1);
        room.members.add(m);
        mine.add(name);
        welcome(m, name);
      }
    } else if (roll < 0.34) {
      chat.handle(m, { type: "leave", room: name });
      if (mine.has(name)) leaveRoom(m, name, true);
      else expect_(m, { type: "notice", code: "not_member", text: "" });
    } else if (roll < 0.72) {
      const id = ++nextId;
      const text = `${m.label} says ${id}`;
      chat.handle(m, { type: "say", id, room: name, text });
      if (!mine.has(name)) expect_(m, { type: "nack", id, code: "not_member", message: "" });
      else {
        const seq = (seqs.get(name) ?? 0) + 1;
        seqs.set(name, seq);
        const msg: Message<"message"> = { type: "message", room: name, seq, ts: clock.t, from: m.user, text };
        const h = history.get(name) ?? [];
        h.push(msg);
        history.set(name, h.slice(-HISTORY));
        for (const o of rooms.get(name)!.members) if (o !== m) expect_(o, msg);
        expect_(m, { type: "ack", id, seq, ts: clock.t });
      }
    } else if (roll < 0.84) {
      const id = ++nextId;
      const to = r.pick(USERS);
      const text = `${m.label} whispers ${id}`;
      chat.handle(m, { type: "dm", id, to, text });
      const targets = online.get(to);
      const offline = !targets || targets.size === 0;
      directSeq += 1;
      const msg: Message<"direct"> = { type: "direct", seq: directSeq, ts: clock.t, from: m.user, to, text };
      // every later login of the recipient is shown it late: its fakes are one device that never sends `read` {dm}
      storedFor.set(to, [...(storedFor.get(to) ?? []), msg]);
      for (const t of new Set([...(targets ?? []), ...(online.get(m.user) ?? [])])) if (t !== m) expect_(t, msg);
      expect_(m, { type: "ack", id, seq: directSeq, ts: clock.t, ...(offline ? { stored: true } : {}) });
    } else if (roll < 0.86) {
      // A read marker moves forward only, and only for a room this connection is in; no answer.
      const seq = seqs.get(name) ?? 0;
      const to = r.int(seq + 3);
      chat.handle(m, { type: "read", rooms: [{ room: name, seq: to }] });
      const mark = markers.get(`${m.user}/${name}`);
      if (mine.has(name) && mark && Math.min(to, seq) > mark.seq) markers.set(`${m.user}/${name}`, { seq: Math.min(to, seq), at: clock.t });
    } else if (roll < 0.88) {
      chat.handle(m, { type: "who", room: name });
      expect_(m, { type: "members", room: name, users: [...(rooms.get(name)?.users.keys() ?? [])].sort() });
    } else if (roll < 0.9) {
      chat.handle(m, { type: "rooms" });
      const list = [...rooms.entries()].map(([n, room]) => ({ name: n, users: room.users.size })).sort((a, b) => (a.name < b.name ? -1 : 1));
      expect_(m, { type: "room_list", rooms: list });
    } else if (roll < 0.93) {
      const limit = 1 + r.int(6);
      chat.handle(m, { type: "history", room: name, limit });
      if (mine.has(name)) sendHistory(m, name, Math.min(limit, HISTORY));
      else expect_(m, { type: "notice", code: "not_member", text: "" });
    } else {
      chat.disconnect(m);
      for (const n of [...mine]) leaveRoom(m, n, false);
      online.get(m.user)!.delete(m);
      slots[slot] = null;
    }
  }

  for (const m of all) {
    const got = m.inbox.map(norm);
    if (JSON.stringify(got) !== JSON.stringify(expected.get(m))) {
      console.log(`chat model: seed ${seed} — connection ${m.label} differs from the model`);
    }
    expect(got).toEqual(expected.get(m)!);
    // Independent of the model: per room, live messages arrive in increasing
    // seq; per sender, in the order sent (the id in the text grows).
    const lastSeq = new Map<string, number>();
    const lastId = new Map<string, number>();
    for (const x of m.inbox) {
      if (x.type !== "message" || x.history) continue;
      expect(x.seq).toBeGreaterThan(lastSeq.get(x.room) ?? 0);
      lastSeq.set(x.room, x.seq);
      const [label, , n] = x.text!.split(" ");
      expect(Number(n)).toBeGreaterThan(lastId.get(label!) ?? 0);
      lastId.set(label!, Number(n));
      expect(label!.startsWith(`${x.from}#`)).toBe(true);
    }
  }
  // The run exercised what it claims to: relays, dms, presence, refusals, reconnects.
  const seen = new Map<string, number>();
  for (const m of all) for (const x of m.inbox) seen.set(x.type, (seen.get(x.type) ?? 0) + 1);
  for (const t of ["message", "direct", "ack", "nack", "joined", "left", "room", "history_end", "members", "room_list", "notice"]) expect(seen.get(t) ?? 0).toBeGreaterThan(0);
  expect(all.length).toBeGreaterThan(2 * USERS.length);
  console.log(`chat model seed ${seed}: ${all.length} connections, ${JSON.stringify(Object.fromEntries(seen))}`);
}

describe("random interleavings (5 users × 2 terminals × 3 rooms) match a simple model", () => {
  const fromEnv = process.env.CHAT_SEED ? [Number(process.env.CHAT_SEED)] : null;
  const seeds = fromEnv ?? [1, 20240607, Math.floor(Math.random() * 2 ** 31)];
  for (const seed of seeds) {
    test(`seed ${seed} (replay with CHAT_SEED=${seed})`, () => {
      console.log(`chat model seed: ${seed}`);
      runModel(seed, 1500);
    });
  }
});
