/**
 * Rooms that belong to someone (PROTOCOL.md §7.9), in the chat core with
 * fake members: owner and operators, topic, kick, ban, mute, +i and
 * invites, +s, persistence across a restart (a new Chat on the same
 * journal), drop, the caps, and recording before anything takes effect.
 */
import { afterEach, describe, expect, jest, test } from "bun:test";
import { utf8 } from "../../src/bytes.ts";
import { MAX_FRAME, MAX_LIST, RECORD_TAG_LENGTH, ROOM_OPS_MAX, TOPIC_BYTES_MAX, TOPIC_CODE_POINTS_MAX } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage } from "../../src/protocol/messages.ts";
import { Chat, type ChatOptions, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { type JournalEvent, MemoryJournal, type Receipt } from "../../src/store/journal.ts";
import { Clock, FakeMember } from "./chat-helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };

/** A MemoryJournal that keeps every event, in order, and can stop recording. */
class ListJournal extends MemoryJournal {
  readonly events: JournalEvent[] = [];
  on = true;

  constructor(keep: number) {
    super(keep);
    // MemoryJournal's `recording` is a field (always true): this one follows `on`.
    Object.defineProperty(this, "recording", { get: () => this.on });
  }

  override append(e: JournalEvent): Receipt {
    this.events.push(e);
    return super.append(e);
  }
}

function setup(opts: Partial<ChatOptions> = {}, journal = new ListJournal(50)) {
  const o: ChatOptions = { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD, ...opts };
  const clock = new Clock();
  const chat = new Chat(o, journal, clock.now, (u) => u !== "nobody");
  const connect = (user: string, label = user): FakeMember => {
    const m = new FakeMember(user, label);
    chat.connect(m);
    return m;
  };
  const send = (m: FakeMember, req: Message): Message[] => {
    m.take();
    chat.handle(m, req as Parameters<Chat["handle"]>[1]);
    return m.take();
  };
  let id = 0;
  const say = (m: FakeMember, room: string, text: string): Message[] => send(m, { type: "say", id: ++id, room, text });
  const join = (m: FakeMember, room: string): Message[] => send(m, { type: "join", room });
  return { chat, clock, journal, connect, send, say, join };
}

/** The codes of the notices in `msgs`. */
const notices = (msgs: Message[]): string[] => msgs.flatMap((m) => (m.type === "notice" ? [m.code] : []));
const changes = (msgs: Message[]) => msgs.filter((m): m is Message<"room_changed"> => m.type === "room_changed");
const roomAnswer = (msgs: Message[]) => msgs.find((m): m is Message<"room"> => m.type === "room");

afterEach(() => {
  if (jest.isFakeTimers()) jest.useRealTimers();
});

describe("owner and operators", () => {
  test("the user whose join creates a room owns it; ops may set the topic, only the owner may op; everyone in the room sees who did it", () => {
    const { connect, join, send, clock } = setup();
    const alice = connect("alice");
    const bob = connect("bob");
    const carol = connect("carol");
    expect(roomAnswer(join(alice, "ops"))).toEqual({ type: "room", room: "ops", users: ["alice"], seq: 0, owner: "alice" });
    join(bob, "ops");
    join(carol, "ops");
    alice.take();
    bob.take();

    expect(notices(send(bob, { type: "topic", room: "ops", text: "mine now" }))).toEqual(["not_operator"]);
    const opped = send(alice, { type: "op", room: "ops", user: "bob" });
    const event: Message = { type: "room_changed", room: "ops", by: "alice", action: "op", user: "bob", ts: clock.t };
    expect(opped).toEqual([event]);
    expect(bob.take()).toEqual([event]);
    expect(carol.take()).toEqual([event]);

    expect(changes(send(bob, { type: "topic", room: "ops", text: "release friday" }))).toEqual([
      { type: "room_changed", room: "ops", by: "bob", action: "topic", text: "release friday", ts: clock.t },
    ]);
    expect(changes(carol.take()).map((c) => c.text)).toEqual(["release friday"]);
    // An operator is not the owner: it may not op, and may not act on the owner or another op.
    expect(notices(send(bob, { type: "op", room: "ops", user: "carol" }))).toEqual(["not_operator"]);
    expect(notices(send(bob, { type: "kick", room: "ops", user: "alice" }))).toEqual(["protected_user"]);
    send(alice, { type: "op", room: "ops", user: "carol" });
    expect(notices(send(bob, { type: "mute", room: "ops", user: "carol" }))).toEqual(["protected_user"]);
    expect(notices(send(alice, { type: "ban", room: "ops", user: "alice" }))).toEqual(["protected_user"]);
    // The room answer carries what a client shows.
    const again = roomAnswer(join(connect("dave"), "ops"));
    expect(again).toEqual({ type: "room", room: "ops", users: ["alice", "bob", "carol", "dave"], seq: 0, owner: "alice", ops: ["bob", "carol"], topic: "release friday", persistent: true });
  });

  test("undoing a mute or a ban acts on the user too: a muted operator cannot unmute itself, an operator cannot unmute another; the owner can", () => {
    const { connect, join, send } = setup();
    const alice = connect("alice");
    const bob = connect("bob");
    const carol = connect("carol");
    join(alice, "ops");
    join(bob, "ops");
    join(carol, "ops");
    send(alice, { type: "op", room: "ops", user: "bob" });
    send(alice, { type: "op", room: "ops", user: "carol" });
    send(alice, { type: "mute", room: "ops", user: "bob" });
    expect(notices(send(bob, { type: "unmute", room: "ops", user: "bob" }))).toEqual(["protected_user"]);
    expect(notices(send(carol, { type: "unmute", room: "ops", user: "bob" }))).toEqual(["protected_user"]);
    const said = send(bob, { type: "say", id: 1, room: "ops", text: "still muted?" });
    expect(said.filter((m) => m.type === "nack").map((m) => (m as Message<"nack">).code)).toEqual(["muted"]);
    expect(changes(send(alice, { type: "unmute", room: "ops", user: "bob" })).map((c) => c.action)).toEqual(["unmute"]);
    // An operator still unbans an ordinary user.
    send(bob, { type: "ban", room: "ops", user: "dave" });
    expect(changes(send(bob, { type: "unban", room: "ops", user: "dave" })).map((c) => c.action)).toEqual(["unban"]);
  });

  test("a target must be an account (no_such_user); a kick's target must be in the room (not_member); a request for no room is no_such_room", () => {
    const { connect, join, send } = setup();
    const alice = connect("alice");
    join(alice, "ops");
    expect(notices(send(alice, { type: "ban", room: "ops", user: "nobody" }))).toEqual(["no_such_user"]);
    expect(notices(send(alice, { type: "kick", room: "ops", user: "bob" }))).toEqual(["not_member"]);
    expect(notices(send(alice, { type: "topic", room: "nowhere", text: "x" }))).toEqual(["no_such_room"]);
  });

  test("a server administrator counts as the owner of every room, and cannot be kicked by it", () => {
    const { connect, join, send } = setup({ admins: new Set(["root"]) });
    const alice = connect("alice");
    const bob = connect("bob");
    const root = connect("root");
    join(alice, "ops");
    join(bob, "ops");
    expect(send(root, { type: "op", room: "ops", user: "bob" })).toEqual([expect.objectContaining({ type: "room_changed", by: "root", action: "op" })]);
    expect(changes(send(root, { type: "kick", room: "ops", user: "alice", reason: "taken over" }))).toHaveLength(1);
    join(root, "ops");
    expect(notices(send(alice, { type: "kick", room: "ops", user: "root" }))).toEqual(["protected_user"]);
  });
});

describe("kick, ban, mute", () => {
  test("a kicked user's connections leave the room and see why; the others see the kick, no separate left; recorded before the leave", () => {
    const { connect, join, send, say, journal, clock } = setup();
    const alice = connect("alice");
    const bob = connect("bob");
    const c1 = connect("carol", "carol/1");
    const c2 = connect("carol", "carol/2");
    for (const m of [alice, bob, c1, c2]) join(m, "ops");
    for (const m of [alice, bob, c1, c2]) m.take();
    const before = journal.events.length;

    send(alice, { type: "kick", room: "ops", user: "carol", reason: "spam" });
    const kick: Message = { type: "room_changed", room: "ops", by: "alice", action: "kick", user: "carol", text: "spam", ts: clock.t };
    expect(bob.take()).toEqual([kick]);
    expect(c1.take()).toEqual([kick]);
    expect(c2.take()).toEqual([kick]);
    expect(say(c1, "ops", "still here?")).toEqual([expect.objectContaining({ type: "nack", code: "not_member" })]);
    expect(bob.take()).toEqual([]);
    expect(journal.events.slice(before).map((e) => e.kind)).toEqual(["room_change", "leave"]);
    expect(journal.events[before]).toEqual({ kind: "room_change", room: "ops", user: "alice", session: alice.session, owner: "alice", action: "kick", target: "carol", text: "spam", ts: clock.t });
    // A kick is no ban: she may come back.
    expect(roomAnswer(join(c1, "ops"))).toBeDefined();
  });

  test("a banned user is put out and cannot rejoin (banned) until unbanned; bans lists them", () => {
    const { connect, join, send } = setup();
    const alice = connect("alice");
    const carol = connect("carol");
    join(alice, "ops");
    join(carol, "ops");
    send(alice, { type: "ban", room: "ops", user: "carol" });
    expect(changes(carol.take())).toEqual([expect.objectContaining({ action: "ban", by: "alice", user: "carol" })]);
    expect(notices(join(carol, "ops"))).toEqual(["banned"]);
    expect(send(alice, { type: "bans", room: "ops" })).toEqual([{ type: "ban_list", room: "ops", bans: ["carol"] }]);
    // Not in the room and not an op: no list.
    expect(notices(send(carol, { type: "bans", room: "ops" }))).toEqual(["not_member"]);
    send(alice, { type: "unban", room: "ops", user: "carol" });
    expect(roomAnswer(join(carol, "ops"))).toBeDefined();
  });

  test("a muted user reads but its say is nacked muted and reaches no one; unmute lets it speak", () => {
    const { connect, join, send, say } = setup();
    const alice = connect("alice");
    const dave = connect("dave");
    join(alice, "ops");
    join(dave, "ops");
    send(alice, { type: "mute", room: "ops", user: "dave" });
    expect(roomAnswer(join(connect("dave", "dave/2"), "ops"))?.muted).toBe(true);
    expect(say(dave, "ops", "let me speak")).toEqual([expect.objectContaining({ type: "nack", code: "muted" })]);
    expect(alice.take().filter((m) => m.type === "message")).toEqual([]);
    say(alice, "ops", "you can read this");
    expect(dave.take().filter((m) => m.type === "message")).toHaveLength(1);
    send(alice, { type: "unmute", room: "ops", user: "dave" });
    expect(say(dave, "ops", "thanks")).toEqual([expect.objectContaining({ type: "ack" })]);
  });
});

describe("modes", () => {
  test("+i: a join without an invite is refused invite_only; the invited user is told and may join; the owner and members are never refused", () => {
    const { connect, join, send, clock } = setup();
    const alice = connect("alice");
    const erin = connect("erin");
    join(alice, "ops");
    expect(changes(send(alice, { type: "mode", room: "ops", invite_only: true }))).toEqual([
      { type: "room_changed", room: "ops", by: "alice", action: "mode", invite_only: true, ts: clock.t },
    ]);
    expect(notices(join(erin, "ops"))).toEqual(["invite_only"]);
    send(alice, { type: "invite", room: "ops", user: "erin" });
    expect(changes(erin.take())).toEqual([expect.objectContaining({ action: "invite", by: "alice", user: "erin" })]);
    expect(roomAnswer(join(erin, "ops"))?.invite_only).toBe(true);
    send(alice, { type: "leave", room: "ops" });
    expect(roomAnswer(join(alice, "ops"))).toBeDefined();
  });

  test("+s: hidden from rooms and who of a non-member (as if it did not exist); members see it", () => {
    const { connect, join, send } = setup();
    const alice = connect("alice");
    const eve = connect("eve");
    join(alice, "ops");
    join(alice, "lobby");
    send(alice, { type: "mode", room: "ops", secret: true });
    expect(send(eve, { type: "rooms" })).toEqual([{ type: "room_list", rooms: [{ name: "lobby", users: 1 }] }]);
    expect(send(eve, { type: "who", room: "ops" })).toEqual([{ type: "members", room: "ops", users: [] }]);
    expect(notices(send(eve, { type: "bans", room: "ops" }))).toEqual(["no_such_room"]);
    expect(send(alice, { type: "rooms" })).toEqual([
      {
        type: "room_list",
        rooms: [
          { name: "lobby", users: 1 },
          { name: "ops", users: 1 },
        ],
      },
    ]);
  });
});

describe("persistence", () => {
  test("a changed room outlives its members and a restart: listed with 0 users, its topic, ops, bans and modes back; an unchanged room ends", () => {
    const journal = new ListJournal(50);
    const first = setup({}, journal);
    const alice = first.connect("alice");
    first.join(alice, "ops");
    first.join(alice, "plain");
    first.send(alice, { type: "topic", room: "ops", text: "release friday" });
    first.send(alice, { type: "op", room: "ops", user: "bob" });
    first.send(alice, { type: "ban", room: "ops", user: "carol" });
    first.send(alice, { type: "mute", room: "ops", user: "dave" });
    first.send(alice, { type: "mode", room: "ops", invite_only: true, secret: true });
    first.chat.disconnect(alice);
    expect(first.send(first.connect("alice"), { type: "rooms" })).toEqual([{ type: "room_list", rooms: [{ name: "ops", users: 0 }] }]);

    const second = setup({}, journal);
    const bob = second.connect("bob");
    expect(second.send(bob, { type: "rooms" })).toEqual([{ type: "room_list", rooms: [{ name: "ops", users: 0 }] }]);
    expect(roomAnswer(second.join(bob, "ops"))).toEqual({
      type: "room",
      room: "ops",
      users: ["bob"],
      seq: 0,
      owner: "alice",
      ops: ["bob"],
      topic: "release friday",
      invite_only: true,
      secret: true,
      persistent: true,
    });
    expect(notices(second.join(second.connect("carol"), "ops"))).toEqual(["banned"]);
    expect(notices(second.join(second.connect("erin"), "ops"))).toEqual(["invite_only"]);
    const dave = second.connect("dave");
    second.send(bob, { type: "invite", room: "ops", user: "dave" });
    second.join(dave, "ops");
    expect(second.say(dave, "ops", "hi")).toEqual([expect.objectContaining({ type: "nack", code: "muted" })]);
  });

  test("drop (owner only) forgets the settings: an empty room then ends and is free to be made again by someone else", () => {
    const { connect, join, send } = setup();
    const alice = connect("alice");
    const bob = connect("bob");
    join(alice, "ops");
    expect(notices(send(alice, { type: "drop", room: "ops" }))).toEqual(["not_persistent"]);
    send(alice, { type: "topic", room: "ops", text: "t" });
    send(alice, { type: "op", room: "ops", user: "bob" });
    expect(notices(send(bob, { type: "drop", room: "ops" }))).toEqual(["not_operator"]);
    send(alice, { type: "leave", room: "ops" });
    expect(changes(send(alice, { type: "drop", room: "ops" }))).toEqual([expect.objectContaining({ action: "drop", by: "alice" })]);
    expect(send(bob, { type: "rooms" })).toEqual([{ type: "room_list", rooms: [] }]);
    expect(roomAnswer(join(bob, "ops"))?.owner).toBe("bob");
  });
});

describe("caps", () => {
  test("rooms owned per user (maxRoomsOwned): past it the change that would make another persistent is refused owned_limit; drop makes room", () => {
    const { connect, join, send } = setup({ maxRoomsOwned: 2 });
    const alice = connect("alice");
    for (const r of ["a", "b", "c"]) join(alice, r);
    send(alice, { type: "topic", room: "a", text: "1" });
    send(alice, { type: "topic", room: "b", text: "2" });
    const refused = send(alice, { type: "topic", room: "c", text: "3" });
    expect(notices(refused)).toEqual(["owned_limit"]);
    expect(roomAnswer(join(connect("bob"), "c"))?.topic).toBeUndefined();
    // Changing a room already persistent is not a new one.
    expect(changes(send(alice, { type: "topic", room: "a", text: "1b" }))).toHaveLength(1);
    send(alice, { type: "drop", room: "b" });
    expect(changes(send(alice, { type: "topic", room: "c", text: "3" }))).toHaveLength(1);
  });

  test("persistent rooms on the server (maxPersistentRooms): past it, persistent_limit", () => {
    const { connect, join, send } = setup({ maxPersistentRooms: 1 });
    const alice = connect("alice");
    const bob = connect("bob");
    join(alice, "a");
    join(bob, "b");
    send(alice, { type: "topic", room: "a", text: "1" });
    expect(notices(send(bob, { type: "topic", room: "b", text: "2" }))).toEqual(["persistent_limit"]);
  });

  test("ops, bans, mutes and invites per room (maxRoomList): past it, list_full; an entry already there is no new one", () => {
    const { connect, join, send } = setup({ maxRoomList: 2 });
    const alice = connect("alice");
    join(alice, "ops");
    for (const action of ["op", "ban", "mute", "invite"] as const) {
      send(alice, { type: action, room: "ops", user: "u1" });
      send(alice, { type: action, room: "ops", user: "u2" });
      expect(notices(send(alice, { type: action, room: "ops", user: "u3" }))).toEqual(["list_full"]);
      expect(notices(send(alice, { type: action, room: "ops", user: "u2" }))).toEqual([]);
    }
  });

  test("operators are capped at ROOM_OPS_MAX even where the lists allow more, so that the largest room answer fits one record", () => {
    const { connect, join, send } = setup({ maxRoomList: 1000 });
    const alice = connect("alice");
    join(alice, "big");
    for (let i = 0; i < ROOM_OPS_MAX; i++) expect(notices(send(alice, { type: "op", room: "big", user: `op${String(i).padStart(3, "0")}` }))).toEqual([]);
    expect(notices(send(alice, { type: "op", room: "big", user: "one-more" }))).toEqual(["list_full"]);
    // Bans are not capped lower.
    for (let i = 0; i <= ROOM_OPS_MAX; i++) expect(notices(send(alice, { type: "ban", room: "big", user: `ban${String(i).padStart(3, "0")}` }))).toEqual([]);
    // The largest room answer the limits allow: MAX_LIST users and ROOM_OPS_MAX ops of the longest names, the longest topic.
    const name = (p: string, i: number) => `${p}${String(i).padStart(31 - p.length, "0")}`.padEnd(32, "x");
    const roomAnswer = (ops: number): Message<"room"> => ({
      type: "room",
      room: "r".repeat(32),
      users: Array.from({ length: MAX_LIST }, (_, i) => name("u", i)),
      seq: Number.MAX_SAFE_INTEGER,
      owner: name("o", 0),
      ops: Array.from({ length: ops }, (_, i) => name("p", i)),
      topic: "🔐".repeat(TOPIC_CODE_POINTS_MAX),
      invite_only: true,
      secret: true,
      persistent: true,
      muted: true,
      unread: Number.MAX_SAFE_INTEGER,
      read_at: Number.MAX_SAFE_INTEGER,
    });
    const largest = Buffer.byteLength(encodeMessage(roomAnswer(ROOM_OPS_MAX)));
    expect(largest).toBeLessThanOrEqual(MAX_FRAME - RECORD_TAG_LENGTH);
    // With as many ops as users it would not fit: a room nobody could join.
    expect(Buffer.byteLength(JSON.stringify(roomAnswer(MAX_LIST)))).toBeGreaterThan(MAX_FRAME - RECORD_TAG_LENGTH);
  });

  test("a topic is at most TOPIC_CODE_POINTS_MAX code points and TOPIC_BYTES_MAX bytes: longer is message_invalid", () => {
    const topic = (text: string) => decodeMessage(utf8(JSON.stringify({ type: "topic", room: "ops", text })));
    expect(topic("é".repeat(TOPIC_CODE_POINTS_MAX))).toEqual({ type: "topic", room: "ops", text: "é".repeat(256) });
    expect(() => topic("a".repeat(TOPIC_CODE_POINTS_MAX + 1))).toThrow(/code points/);
    // 256 code points of 4 bytes each are 1024 bytes: the byte bound holds too.
    expect(() => topic("🔐".repeat(TOPIC_CODE_POINTS_MAX) + "a")).toThrow();
    expect(Buffer.byteLength("🔐".repeat(TOPIC_CODE_POINTS_MAX))).toBe(TOPIC_BYTES_MAX);
  });

  test("every moderation request costs a request token: past the burst it is held (slow_down) and answered in its turn", () => {
    const { connect, join, send, chat, clock } = setup({ requests: { rate: 1, burst: 1 } });
    jest.useFakeTimers();
    const alice = connect("alice");
    join(alice, "ops");
    const held = send(alice, { type: "topic", room: "ops", text: "1" });
    expect(changes(held)).toEqual([]);
    expect(notices(held)).toEqual(["slow_down"]);
    clock.advance(1000);
    expect(changes(alice.take())).toEqual([expect.objectContaining({ action: "topic", text: "1" })]);
    void chat;
  });
});

describe("recording", () => {
  test("a change is recorded before it takes effect, with who did it; while the journal cannot record it is refused not_recorded and nothing changes", () => {
    const { connect, join, send, journal } = setup();
    const alice = connect("alice");
    const carol = connect("carol");
    join(alice, "ops");
    join(carol, "ops");
    journal.on = false;
    expect(notices(send(alice, { type: "ban", room: "ops", user: "carol" }))).toEqual(["not_recorded"]);
    expect(changes(carol.take())).toEqual([]);
    expect(journal.events.some((e) => e.kind === "room_change")).toBe(false);
    journal.on = true;
    send(alice, { type: "ban", room: "ops", user: "carol" });
    expect(journal.events.filter((e) => e.kind === "room_change")).toEqual([
      expect.objectContaining({ room: "ops", user: "alice", session: alice.session, owner: "alice", action: "ban", target: "carol" }),
    ]);
  });
});
