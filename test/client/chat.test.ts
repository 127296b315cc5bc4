/**
 * The chat client (src/client/chat.ts, src/client/chatcommands.ts): what a typed line means
 * (parseLine), what runCommand does with it, the local refusals that keep a
 * bad line from closing the session, and the window that keeps a fast script
 * from outrunning the server's flood queue.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ChatClient, WINDOW } from "../../src/client/chat.ts";
import { COMMANDS, type Command, HELP_TEXT, parseLine, runCommand } from "../../src/client/chatcommands.ts";
import { existsSync } from "node:fs";
import { ignorePath } from "../../src/client/ignores.ts";
import { terminalText } from "../../src/text.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { AWAY_TEXT_MAX, MESSAGE_TEXT_MAX, TOPIC_CODE_POINTS_MAX } from "../../src/protocol/limits.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { type Seed, Collector, Peer, connectClient, cred, machine, quitAll, seedAccounts, serverFrom } from "../server/chat-helpers.ts";
import type { TestServer } from "../server/helpers.ts";

/** Bound for network tests and their hooks: generous for a loaded machine (bunfig's [test] timeout is not applied by bun 1.4.5). */
const NET = 15_000;

describe("parseLine", () => {
  const cases: [string, Command | null][] = [
    ["", null],
    ["   ", null],
    ["hello", { kind: "say", text: "hello" }],
    ["  spaced out  ", { kind: "say", text: "  spaced out  " }],
    ["bye", { kind: "quit" }],
    ["  bye ", { kind: "quit" }],
    ["bye now", { kind: "say", text: "bye now" }],
    ["//etc/passwd is a path", { kind: "say", text: "/etc/passwd is a path" }],
    ["//", { kind: "say", text: "/" }],
    ["/join lobby", { kind: "join", room: "lobby" }],
    ["/JOIN lobby", { kind: "join", room: "lobby" }],
    ["/join   lobby", { kind: "join", room: "lobby" }],
    ["/join r2-d2_x", { kind: "join", room: "r2-d2_x" }],
    ["/leave", { kind: "leave" }],
    ["/leave lobby", { kind: "leave", room: "lobby" }],
    ["/part lobby", { kind: "leave", room: "lobby" }],
    ["/rooms", { kind: "rooms" }],
    ["/list", { kind: "rooms" }],
    ["/who", { kind: "who" }],
    ["/who lobby", { kind: "who", room: "lobby" }],
    ["/msg bob hi there", { kind: "msg", to: "bob", text: "hi there" }],
    ["/msg bob   two  spaces", { kind: "msg", to: "bob", text: "two  spaces" }],
    ["/me waves", { kind: "me", text: "waves" }],
    ["/me   waves slowly  ", { kind: "me", text: "waves slowly" }],
    ["/history", { kind: "history", limit: 20 }],
    ["/history 5", { kind: "history", limit: 5 }],
    ["/history 1", { kind: "history", limit: 1 }],
    ["/history 1000", { kind: "history", limit: 1000 }],
    ["/help", { kind: "help" }],
    ["/?", { kind: "help" }],
    ["/quit", { kind: "quit" }],
    ["/exit", { kind: "quit" }],
    ["/bye", { kind: "quit" }],
    ["/switch ops", { kind: "switch", to: "ops" }],
    ["/switch #ops", { kind: "switch", to: "ops" }],
    ["/switch 2", { kind: "switch", to: "2" }],
    ["/notify off", { kind: "notify", on: false }],
    ["/notify on", { kind: "notify", on: true }],
    ["/ignore", { kind: "ignore" }],
    ["/ignore   ", { kind: "ignore" }],
    ["/ignore bob", { kind: "ignore", user: "bob" }],
    ["/ignore @bob", { kind: "ignore", user: "bob" }],
    ["/IGNORE  bob ", { kind: "ignore", user: "bob" }],
    ["/unignore bob", { kind: "unignore", user: "bob" }],
    ["/unignore @bob", { kind: "unignore", user: "bob" }],
    ["/away at lunch", { kind: "away", text: "at lunch" }],
    ["/away   back at 2  ", { kind: "away", text: "back at 2" }],
    [`/away ${"é".repeat(AWAY_TEXT_MAX / 2)}`, { kind: "away", text: "é".repeat(AWAY_TEXT_MAX / 2) }],
    ["/away", { kind: "away" }],
    ["/away   ", { kind: "away" }],
    ["/back", { kind: "away" }],
    ["/BACK ", { kind: "away" }],
    // Room moderation (PROTOCOL.md §7.9).
    ["/topic release friday — ✓", { kind: "topic", text: "release friday — ✓" }],
    ["/topic", { kind: "topic" }],
    [`/topic ${"🔐".repeat(TOPIC_CODE_POINTS_MAX)}`, { kind: "topic", text: "🔐".repeat(TOPIC_CODE_POINTS_MAX) }],
    ["/op bob", { kind: "moderate", action: "op", user: "bob" }],
    ["/deop @bob", { kind: "moderate", action: "deop", user: "bob" }],
    ["/ban carol", { kind: "moderate", action: "ban", user: "carol" }],
    ["/unban carol", { kind: "moderate", action: "unban", user: "carol" }],
    ["/mute dave", { kind: "moderate", action: "mute", user: "dave" }],
    ["/unmute dave", { kind: "moderate", action: "unmute", user: "dave" }],
    ["/invite erin", { kind: "moderate", action: "invite", user: "erin" }],
    ["/kick carol", { kind: "kick", user: "carol" }],
    ["/kick carol  spam, again ", { kind: "kick", user: "carol", reason: "spam, again" }],
    ["/bans", { kind: "bans" }],
    ["/drop", { kind: "drop" }],
    ["/mode +i", { kind: "mode", invite_only: true }],
    ["/mode -s", { kind: "mode", secret: false }],
    ["/mode +i-s", { kind: "mode", invite_only: true, secret: false }],
    ["/mode +is", { kind: "mode", invite_only: true, secret: true }],
    ["/mode -i +s", { kind: "mode", invite_only: false, secret: true }],
    // Editing and deleting one's own messages (PROTOCOL.md §7.12): a number is N only when a text follows it.
    ["/edit the plan", { kind: "edit", which: { back: 1 }, text: "the plan" }],
    ["/edit 2 the plan", { kind: "edit", which: { back: 2 }, text: "the plan" }],
    ["/edit #42 the plan", { kind: "edit", which: { seq: 42 }, text: "the plan" }],
    ["/edit 1 3 apples", { kind: "edit", which: { back: 1 }, text: "3 apples" }],
    ["/edit 5", { kind: "edit", which: { back: 1 }, text: "5" }],
    ["/delete", { kind: "delete", which: { back: 1 } }],
    ["/delete 3", { kind: "delete", which: { back: 3 } }],
    ["/delete  #7 ", { kind: "delete", which: { seq: 7 } }],
    ["/edit @bob the plan", { kind: "edit", which: { back: 1 }, text: "the plan", to: "bob" }],
    ["/edit @bob 2 the plan", { kind: "edit", which: { back: 2 }, text: "the plan", to: "bob" }],
    ["/edit @bob #9 the plan", { kind: "edit", which: { seq: 9 }, text: "the plan", to: "bob" }],
    ["/delete @bob", { kind: "delete", which: { back: 1 }, to: "bob" }],
    ["/delete @bob #9", { kind: "delete", which: { seq: 9 }, to: "bob" }],
  ];
  for (const [line, want] of cases) {
    test(JSON.stringify(line), () => {
      expect(parseLine(line)).toEqual(want);
    });
  }

  test("interactive: a bare bye is said to the room; /bye and /quit leave", () => {
    expect(parseLine("bye", true)).toEqual({ kind: "say", text: "bye" });
    expect(parseLine("  bye ", true)).toEqual({ kind: "say", text: "  bye " });
    expect(parseLine("/bye", true)).toEqual({ kind: "quit" });
    expect(parseLine("/quit", true)).toEqual({ kind: "quit" });
  });

  const errors: [string, RegExp][] = [
    ["/join", /usage: \/join/],
    ["/join Lobby", /usage: \/join/],
    ["/join -dash", /usage: \/join/],
    ["/join a-room-name-that-is-far-too-long-x", /usage: \/join/],
    ["/leave Not!", /usage: \/leave/],
    ["/who ??", /usage: \/who/],
    ["/msg", /usage: \/msg/],
    ["/msg bob", /usage: \/msg/],
    ["/msg Bob hi", /usage: \/msg/],
    ["/msg b hi", /usage: \/msg/],
    ["/me", /usage: \/me/],
    ["/me    ", /usage: \/me/],
    ["/history 0", /usage: \/history/],
    ["/history 1001", /usage: \/history/],
    ["/history -3", /usage: \/history/],
    ["/history 2.5", /usage: \/history/],
    ["/history lots", /usage: \/history/],
    ["/switch", /usage: \/switch/],
    ["/switch Not!", /usage: \/switch/],
    ["/notify", /usage: \/notify/],
    ["/notify maybe", /usage: \/notify/],
    ["/ignore Bob", /usage: \/ignore/],
    ["/ignore bob carol", /usage: \/ignore/],
    ["/ignore @", /usage: \/ignore/],
    ["/ignore ../x", /usage: \/ignore/],
    ["/unignore", /usage: \/unignore/],
    ["/unignore b", /usage: \/unignore/],
    [`/away ${"é".repeat(AWAY_TEXT_MAX / 2)}x`, /usage: \/away TEXT \(at most 64 bytes/],
    ["/away tab\there", /usage: \/away/],
    ["/back now", /usage: \/back/],
    [`/topic ${"x".repeat(TOPIC_CODE_POINTS_MAX + 1)}`, /usage: \/topic TEXT \(at most 256 characters/],
    ["/topic tab\there", /usage: \/topic/],
    ["/op", /usage: \/op USER/],
    ["/ban Carol", /usage: \/ban USER/],
    ["/mute dave erin", /usage: \/mute USER/],
    ["/kick", /usage: \/kick USER/],
    [`/kick carol ${"x".repeat(257)}`, /usage: \/kick USER \[REASON\]/],
    ["/mode", /usage: \/mode/],
    ["/mode i", /usage: \/mode/],
    ["/mode +x", /usage: \/mode/],
    ["/mode +i-i", /usage: \/mode/],
    ["/drop now", /usage: \/drop/],
    ["/edit", /usage: \/edit \[@USER\] \[N\|#SEQ\] TEXT/],
    ["/edit @bob", /usage: \/edit/],
    ["/edit @Bob hi", /usage: \/edit/],
    ["/delete @Bob", /usage: \/delete/],
    ["/delete @bob 2 3", /usage: \/delete/],
    ["/edit   ", /usage: \/edit/],
    ["/edit 51 too far back", /usage: \/edit/],
    ["/delete 0", /usage: \/delete/],
    ["/delete 51", /usage: \/delete/],
    ["/delete #0", /usage: \/delete/],
    ["/delete 2 3", /usage: \/delete/],
    ["/delete last", /usage: \/delete/],
    ["/frobnicate now", /unknown command \/frobnicate/],
    ["/", /unknown command/],
  ];
  for (const [line, text] of errors) {
    test(`${JSON.stringify(line)} → error`, () => {
      const c = parseLine(line);
      expect(c?.kind).toBe("error");
      expect(c?.kind === "error" && c.text).toMatch(text);
    });
  }
});

describe("ChatClient without a connection", () => {
  const offline = () => {
    const sink = new Collector();
    const client = new ChatClient(
      {
        addr: parseServerAddress("127.0.0.1:1"),
        user: "alice",
        trust: { acceptNew: false },
        room: "lobby",
        password: () => Promise.reject(new Error("test: not used")),
        reconnect: false,
      },
      sink,
    );
    return { client, sink };
  };

  test("help and usage errors are shown locally; quit asks to leave", async () => {
    const { client, sink } = offline();
    expect(await runCommand(client, { kind: "help" })).toBe(true);
    expect(sink.of("local").map((e) => e.text)).toEqual(HELP_TEXT);
    // As the screen shows them: nothing capped or escaped, every command named.
    for (const line of HELP_TEXT) expect(terminalText(line)).toBe(line);
    for (const c of COMMANDS) expect(HELP_TEXT.some((l) => (l.split(" — ")[0] ?? "").split(" ").includes(c))).toBe(true);
    expect(await runCommand(client, parseLine("/join")!)).toBe(true);
    expect(sink.of("local").at(-1)?.text).toMatch(/usage: \/join/);
    expect(await runCommand(client, parseLine("bye")!)).toBe(false);
    expect(await runCommand(client, parseLine("/quit")!)).toBe(false);
  });

  test("piped or --json, /ignore says the list is the interactive screen's, and nothing is filtered or written", async () => {
    const { client, sink } = offline();
    expect(await runCommand(client, parseLine("/ignore bob")!)).toBe(true);
    expect(sink.of("local").at(-1)?.text).toBe("/ignore is for the interactive client: piped and --json output carry every line");
    await runCommand(client, parseLine("/unignore bob")!);
    expect(sink.of("local").at(-1)?.text).toBe("/unignore is for the interactive client: piped and --json output carry every line");
    expect(existsSync(ignorePath("127.0.0.1:1", "alice"))).toBe(false);
  });

  test("a line typed while not connected is queued (said so); quitting before a connection reports it unsent, never silently", async () => {
    const { client, sink } = offline();
    await runCommand(client, parseLine("hello?")!);
    await runCommand(client, parseLine("/msg bob hello?")!);
    expect(sink.of("sent")).toEqual([
      { type: "sent", id: 1, room: "lobby", text: "hello?", queued: true },
      { type: "sent", id: 2, to: "bob", text: "hello?", queued: true },
    ]);
    expect(client.unacknowledged).toBe(0);
    await runCommand(client, parseLine("/who")!);
    expect(sink.of("local").at(-1)?.text).toMatch(/^not connected/);
    await client.quit();
    expect(sink.of("unsent").map((e) => e.id)).toEqual([1, 2]);
    expect(sink.of("unsent")[0]?.reason).toMatch(/not sent/);
    expect(client.unacknowledged).toBe(2);
  });
});

let seed: Seed;
const alicePC = machine("client-alice");
const bobPC = machine("client-bob");

beforeAll(async () => {
  seed = await seedAccounts(["alice", "bob"]);
}, NET);

describe("ChatClient against a server", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: { ...DEFAULT_CHAT, history: 10, flood: { rate: 100_000, burst: 100_000 } } });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  test("refuses control characters, broken text and more than 4096 bytes locally: counted, shown, never sent; the session goes on", async () => {
    let a: ChatClient | undefined;
    let bob: Peer | undefined;
    try {
      bob = await Peer.login(t.port, cred(seed, "bob"));
      await bob.join("strict");
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "strict");
      a = alice.client;
      const refused = [
        "bell \u0007",
        "line\nbreak",
        "carriage\rreturn",
        "escape \u001b[31mred",
        "delete \u007f",
        "c1 \u0085 next line",
        "lone \ud800 surrogate",
        "y".repeat(MESSAGE_TEXT_MAX + 1),
        "€".repeat(1366), // 4098 bytes in 1366 characters
      ];
      for (const line of refused) await a.say(line);
      await a.dm("bob", "beep \u0007");
      expect(a.unacknowledged).toBe(refused.length + 1);
      const locals = alice.sink.of("unsent").map((e) => e.reason);
      expect(locals).toHaveLength(refused.length + 1);
      expect(locals.every((x) => x.startsWith("not sent: "))).toBe(true);
      expect(locals.filter((x) => x.includes("control characters"))).toHaveLength(7);
      expect(locals.filter((x) => x.includes("not valid text"))).toHaveLength(1);
      expect(locals.filter((x) => x.includes(`longer than ${MESSAGE_TEXT_MAX} bytes`))).toHaveLength(2);
      expect(alice.sink.of("sent")).toEqual([]);

      // What is allowed still goes, on the same session: tabs become spaces, 4096 bytes exactly is fine.
      const exact = "z".repeat(MESSAGE_TEXT_MAX);
      await a.say("tab\there");
      await a.say(exact);
      await bob.until("two lines", () => bob!.of("message").length === 2);
      expect(bob.of("message").map((m) => m.text)).toEqual(["tab    here", exact]);
      await alice.sink.until("two acks", () => alice.sink.of("ack").length === 2);
      expect(a.failure).toBeNull();
      expect(a.unacknowledged).toBe(refused.length + 1);
    } finally {
      bob?.close();
      await quitAll(a);
    }
  }, NET);

  test("runCommand drives the session: /join switches the room, /who, /rooms, /history, /me, /msg, /leave", async () => {
    let a: ChatClient | undefined;
    let bob: Peer | undefined;
    try {
      bob = await Peer.login(t.port, cred(seed, "bob"));
      await bob.join("attic");
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "cellar");
      a = alice.client;
      const run = async (line: string) => expect(await runCommand(a!, parseLine(line)!)).toBe(true);

      await run("/join attic");
      await alice.sink.inRoom("attic");
      expect(a.room).toBe("attic");
      expect(a.rooms).toEqual(["cellar", "attic"]);
      const currents = () => alice.sink.of("current").map((e) => e.room);
      expect(currents().at(-1)).toBe("attic");
      const before = currents().length;
      await run("/switch cellar");
      expect(a.room).toBe("cellar");
      await run("/switch 2");
      expect(a.room).toBe("attic");
      await run("/switch 3");
      expect(alice.sink.of("local").at(-1)?.text).toBe("there is no room 3: you are in 2");
      await run("/switch nowhere");
      expect(alice.sink.of("local").at(-1)?.text).toBe("you are not in nowhere: /join nowhere first");
      expect(currents().slice(before)).toEqual(["cellar", "attic"]);
      await run("hello attic");
      await run("/me dusts off a chair");
      await run("//slash at the start");
      await bob.until("three lines", () => bob!.of("message").length === 3);
      expect(bob.of("message").map((m) => [m.text, m.action ?? false])).toEqual([
        ["hello attic", false],
        ["dusts off a chair", true],
        ["/slash at the start", false],
      ]);
      await run("/msg bob psst");
      await bob.until("the dm", () => bob!.of("direct").length === 1);
      expect(bob.of("direct")[0]).toEqual(expect.objectContaining({ from: "alice", to: "bob", text: "psst" }));

      await run("/who");
      await alice.sink.until("members", () => alice.sink.of("members").length === 1);
      expect(alice.sink.of("members")[0]).toEqual({ type: "members", room: "attic", users: ["alice", "bob"] });
      await run("/rooms");
      await alice.sink.until("the room list", () => alice.sink.of("room_list").length === 1);
      expect(alice.sink.of("room_list")[0]?.rooms).toEqual([
        { name: "attic", users: 2 },
        { name: "cellar", users: 1 },
      ]);
      await run("/history 2");
      await alice.sink.until("history", () => alice.sink.of("history_end").filter((h) => h.room === "attic").length === 2);
      expect(alice.sink.of("message").filter((m) => m.history).map((m) => m.text)).toEqual(["dusts off a chair", "/slash at the start"]);

      await run("/leave");
      await bob.until("alice's departure", () => bob!.of("left").length === 1);
      expect(alice.sink.of("left").at(-1)).toEqual(expect.objectContaining({ room: "attic", user: "alice" }));
      // Leaving the current room makes the one joined before it current.
      await alice.sink.until("the switch back", () => a!.room === "cellar");
      expect(a.rooms).toEqual(["cellar"]);
      expect(alice.sink.of("current").at(-1)).toEqual({ type: "current", room: "cellar" });
      await alice.sink.until("acks", () => alice.sink.of("ack").length === 4);
      await a.quit();
      expect(a.unacknowledged).toBe(0);
    } finally {
      bob?.close();
      await quitAll(a);
    }
  }, NET);

  test("/away TEXT is confirmed; /who shows it to others; a /msg to someone away says so; /back clears it", async () => {
    let a: ChatClient | undefined;
    let bob: Peer | undefined;
    try {
      bob = await Peer.login(t.port, cred(seed, "bob"));
      await bob.join("porch");
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "porch");
      a = alice.client;
      const run = async (line: string) => expect(await runCommand(a!, parseLine(line)!)).toBe(true);

      await run("/away at lunch");
      await alice.sink.until("the away notice", () => alice.sink.of("notice").some((n) => n.code === "away"));
      expect(alice.sink.of("notice").find((n) => n.code === "away")?.text).toBe("you are marked away: at lunch");
      bob.send({ type: "who", room: "porch" });
      await bob.until("members", () => bob!.of("members").length === 1);
      expect(bob.of("members")[0]).toEqual({ type: "members", room: "porch", users: ["alice", "bob"], away: [{ user: "alice", text: "at lunch" }] });
      bob.send({ type: "dm", id: 1, to: "alice", text: "lunch where?" });
      await bob.until("the ack", () => bob!.of("ack").length === 1);
      expect(bob.of("ack")[0]?.away).toBe("at lunch");

      // Alice sees bob away the same way.
      bob.send({ type: "away", text: "on a call" });
      await bob.until("bob's away notice", () => bob!.of("notice").some((n) => n.code === "away"));
      await run("/who");
      await alice.sink.until("members", () => alice.sink.of("members").length === 1);
      expect(alice.sink.of("members")[0]?.away).toEqual([
        { user: "alice", text: "at lunch" },
        { user: "bob", text: "on a call" },
      ]);
      await run("/msg bob quick question");
      await alice.sink.until("the away line", () => alice.sink.of("local").some((l) => l.text.startsWith("bob is away")));
      expect(alice.sink.of("local").map((l) => l.text)).toContain("bob is away: on a call");

      await run("/back");
      await alice.sink.until("the back notice", () => alice.sink.of("notice").some((n) => n.code === "back"));
      bob.send({ type: "who", room: "porch" });
      await bob.until("members again", () => bob!.of("members").length === 2);
      expect(bob.of("members")[1]).toEqual({ type: "members", room: "porch", users: ["alice", "bob"], away: [{ user: "bob", text: "on a call" }] });
      await a.quit();
    } finally {
      bob?.close();
      await quitAll(a);
    }
  }, NET);

  test("room moderation (PROTOCOL.md §7.9): the owner's /op, /topic, /kick, /ban reach the other client, which leaves the room and cannot rejoin", async () => {
    let a: ChatClient | undefined;
    let b: ChatClient | undefined;
    try {
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "modroom");
      a = alice.client;
      const bob = await connectClient(t, machine("bob-mod"), cred(seed, "bob"), "modroom");
      b = bob.client;
      expect(bob.sink.of("room")[0]?.owner).toBe("alice");
      const run = async (c: ChatClient, line: string) => expect(await runCommand(c, parseLine(line)!)).toBe(true);
      const changed = (sink: Collector, action: string) => sink.of("room_changed").filter((e) => e.action === action);

      await run(a, "/topic release friday");
      await bob.sink.until("the topic", () => changed(bob.sink, "topic").length === 1);
      expect(changed(bob.sink, "topic")[0]).toEqual(expect.objectContaining({ room: "modroom", by: "alice", text: "release friday" }));
      await run(b, "/kick alice");
      await bob.sink.until("the refusal", () => bob.sink.of("notice").some((n) => n.code === "not_operator"));
      await run(a, "/op bob");
      await bob.sink.until("the op", () => changed(bob.sink, "op").length === 1);
      await run(b, "/kick alice");
      await bob.sink.until("the owner's protection", () => bob.sink.of("notice").some((n) => n.code === "protected_user"));

      await run(a, "/kick bob too loud");
      await bob.sink.until("the kick", () => changed(bob.sink, "kick").length === 1);
      expect(changed(bob.sink, "kick")[0]).toEqual(expect.objectContaining({ by: "alice", user: "bob", text: "too loud" }));
      expect(b.rooms).toEqual([]);
      await run(b, "/join modroom");
      await bob.sink.until("the rejoin", () => bob.sink.of("room").length === 2);
      expect(bob.sink.of("room")[1]?.topic).toBe("release friday");

      await run(a, "/ban bob");
      await bob.sink.until("the ban", () => changed(bob.sink, "ban").length === 1);
      expect(b.rooms).toEqual([]);
      await run(b, "/join modroom");
      await bob.sink.until("the refusal to join", () => bob.sink.of("notice").some((n) => n.code === "banned"));
      // The refused join is not waiting any more: another join is answered as usual.
      await run(b, "/join elsewhere");
      await bob.sink.inRoom("elsewhere");
      expect(b.rooms).toEqual(["elsewhere"]);
      await run(a, "/bans");
      await alice.sink.until("the ban list", () => alice.sink.of("ban_list").length === 1);
      expect(alice.sink.of("ban_list")[0]).toEqual({ type: "ban_list", room: "modroom", bans: ["bob"] });
    } finally {
      await quitAll(a, b);
    }
  }, NET);

  // Editing and deleting one's own messages (PROTOCOL.md §7.12).
  test("/edit changes your last line (or your N-th last, or #SEQ), /delete your last; the others see edited and deleted; nothing to change is said locally", async () => {
    let a: ChatClient | undefined;
    let bob: Peer | undefined;
    try {
      bob = await Peer.login(t.port, cred(seed, "bob"));
      await bob.join("den");
      bob.send({ type: "say", id: 1, room: "den", text: "bob's own" });
      await bob.until("bob's ack", () => bob!.of("ack").length === 1);
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "den");
      a = alice.client;
      const run = async (line: string) => expect(await runCommand(a!, parseLine(line)!)).toBe(true);
      const locals = () => alice.sink.of("local").map((l) => l.text);

      await run("/edit too soon");
      expect(locals().at(-1)).toBe("nothing to edit: this client has not seen a message of yours in den (/edit #SEQ names any)");
      await run("first");
      await run("second");
      await run("third");
      // right after a line, /edit waits for its ack: it means that line
      await run("/edit third, fixed");
      await run("/edit 3 first, fixed");
      await run("/delete 2");
      await bob.until("the changes", () => bob!.of("edited").length === 2 && bob!.of("deleted").length === 1);
      expect(bob.of("edited").map((e) => [e.seq, e.by, e.text])).toEqual([
        [4, "alice", "third, fixed"],
        [2, "alice", "first, fixed"],
      ]);
      expect(bob.of("deleted").map((e) => [e.seq, e.by])).toEqual([[3, "alice"]]);
      await alice.sink.until("the confirmations", () => locals().filter((l) => l.startsWith("you ")).length === 3);
      expect(locals().filter((l) => l.startsWith("you "))).toEqual([
        "you edited your message 4 in den: third, fixed (edited)",
        "you edited your message 2 in den: first, fixed (edited)",
        "you deleted your message 3 in den [deleted]",
      ]);
      // the deleted one is no longer "yours": /delete 2 now means message 2
      await run("/delete 2");
      await bob.until("the second delete", () => bob!.of("deleted").length === 2);
      expect(bob.of("deleted")[1]?.seq).toBe(2);
      // bob's message by number: refused by the server, shown as a nack
      await run("/edit #1 not mine");
      await alice.sink.until("the nack", () => alice.sink.of("nack").length === 1);
      expect(alice.sink.of("nack")[0]).toEqual(expect.objectContaining({ code: "not_yours" }));
      expect(alice.sink.of("change_sent").map((c) => [c.seq, c.text])).toEqual([
        [4, "third, fixed"],
        [2, "first, fixed"],
        [3, undefined],
        [2, undefined],
        [1, "not mine"],
      ]);
      await a.quit();
      expect(a.unacknowledged).toBe(0);
    } finally {
      bob?.close();
      await quitAll(a);
    }
  }, NET);

  test("/edit @USER and /delete @USER change your last direct message to USER (or your N-th last); USER sees edited and deleted", async () => {
    let a: ChatClient | undefined;
    let bob: Peer | undefined;
    try {
      bob = await Peer.login(t.port, cred(seed, "bob"));
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "hall");
      a = alice.client;
      const run = async (line: string) => expect(await runCommand(a!, parseLine(line)!)).toBe(true);
      await run("/edit @bob too soon");
      expect(alice.sink.of("local").at(-1)?.text).toBe("nothing to edit: this client has not seen a message of yours in your direct messages to bob (/edit @bob #SEQ names any)");
      await run("/msg bob meet at 5");
      await run("/msg bob bring the keys");
      await run("/edit @bob 2 meet at 6");
      await run("/delete @bob");
      await bob.until("the changes", () => bob!.of("edited").length === 1 && bob!.of("deleted").length === 1);
      const [first, second] = bob.of("direct").map((d) => d.seq);
      expect(bob.of("edited")[0]).toEqual(expect.objectContaining({ to: "bob", seq: first, by: "alice", text: "meet at 6" }));
      expect(bob.of("deleted")[0]).toEqual(expect.objectContaining({ to: "bob", seq: second, by: "alice" }));
      expect(bob.of("edited")[0]?.room).toBeUndefined();
      await a.quit();
      expect(a.unacknowledged).toBe(0);
    } finally {
      bob?.close();
      await quitAll(a);
    }
  }, NET);
});

describe("the window", () => {
  let t: TestServer;
  beforeAll(async () => {
    // A tight flood limit: the server holds most lines; maxHeld is above the window.
    t = await serverFrom(seed, { chat: { ...DEFAULT_CHAT, flood: { rate: 200, burst: 1 }, maxHeld: 48 } });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  test(`never more than ${WINDOW} lines in flight; a fast script is held, not refused`, async () => {
    let a: ChatClient | undefined;
    let bob: Peer | undefined;
    try {
      bob = await Peer.login(t.port, cred(seed, "bob"));
      await bob.join("narrow");
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "narrow");
      a = alice.client;
      const N = 100;
      const started = Date.now();
      for (let i = 1; i <= N; i++) await a.say(`fast ${i}`);
      await a.quit();
      console.log(`window: ${N} lines at 200/s took ${Date.now() - started} ms`);

      let inFlight = 0;
      let most = 0;
      for (const e of alice.sink.events) {
        if (e.type === "sent") inFlight++;
        if (e.type === "ack" || e.type === "nack") inFlight--;
        most = Math.max(most, inFlight);
      }
      expect(most).toBe(WINDOW);
      expect(alice.sink.of("notice").some((n) => n.code === "slow_down")).toBe(true);
      expect(alice.sink.of("nack")).toEqual([]);
      expect(alice.sink.of("ack")).toHaveLength(N);
      expect(a.unacknowledged).toBe(0);
      await bob.until("every line", () => bob!.of("message").length === N);
      expect(bob.of("message").map((m) => m.text)).toEqual(Array.from({ length: N }, (_, i) => `fast ${i + 1}`));
    } finally {
      bob?.close();
      await quitAll(a);
    }
  }, NET);
});
