/**
 * Chat over real sockets on 127.0.0.1: real ChatClients (ticket login,
 * join, say, dm, quit) and raw peers (to count records, to stop reading, to
 * ignore pings) against an in-process server. Accounts are registered once
 * for the file; each describe runs its own server on a copy of them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ChatClient } from "../../src/client/chat.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { type Seed, Peer, connectClient, cred, machine, quitAll, seedAccounts, serverFrom } from "./chat-helpers.ts";
import { type TestServer, sleep, waitFor } from "./helpers.ts";

/** Bound for network tests and their hooks: generous for a loaded machine (bunfig's [test] timeout is not applied by bun 1.4.5). */
const NET = 15_000;

const FAST = { ...DEFAULT_CHAT, flood: { rate: 100_000, burst: 100_000 }, requests: { rate: 100_000, burst: 100_000 } };

const alicePC = machine("alice");
const bobPC = machine("bob");
const carolPC = machine("carol");

let seed: Seed;
beforeAll(async () => {
  seed = await seedAccounts(["alice", "bob", "carol", "dave", "erin"]);
}, NET);

describe("chat between real clients", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: FAST });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  test("two users chat in a room: each sees the other's lines, their own only as acks", async () => {
    let a: ChatClient | undefined;
    let b: ChatClient | undefined;
    try {
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "lobby");
      a = alice.client;
      expect(alice.sink.of("connected")).toEqual([expect.objectContaining({ type: "connected", server: t.address, user: "alice" })]);
      expect(alice.sink.of("room")[0]).toEqual({ type: "room", room: "lobby", users: ["alice"], seq: 0, owner: "alice" });
      const bob = await connectClient(t, bobPC, cred(seed, "bob"), "lobby");
      b = bob.client;
      expect(bob.sink.of("room")[0]).toEqual({ type: "room", room: "lobby", users: ["alice", "bob"], seq: 0, owner: "alice" });
      await alice.sink.until("bob's arrival", () => alice.sink.of("joined").some((j) => j.user === "bob" && j.room === "lobby"));

      await a.say("hi bob");
      await bob.sink.until("alice's line", () => bob.sink.said().length === 1);
      await b.say("hi alice");
      await b.say("waves", true);
      await alice.sink.until("bob's lines", () => alice.sink.said().length === 2);

      expect(bob.sink.said("lobby")).toEqual(["alice: hi bob"]);
      expect(alice.sink.said("lobby")).toEqual(["bob: hi alice", "bob: waves"]);
      expect(alice.sink.of("message").at(-1)).toEqual(expect.objectContaining({ from: "bob", text: "waves", action: true, seq: 3 }));
      expect(alice.sink.of("sent")).toEqual([expect.objectContaining({ type: "sent", room: "lobby", text: "hi bob" })]);
      await bob.sink.until("bob's acks", () => bob.sink.of("ack").length === 2);
      expect(bob.sink.of("ack").map((x) => x.seq)).toEqual([2, 3]);

      await a.quit();
      expect(a.unacknowledged).toBe(0);
      expect(a.failure).toBeNull();
      await bob.sink.until("alice's departure", () => bob.sink.of("left").some((l) => l.user === "alice"));
      await b.quit();
      expect(b.unacknowledged).toBe(0);
      expect(b.failure).toBeNull();
    } finally {
      await quitAll(a, b);
    }
  }, NET);

  test("direct messages: delivered to the recipient and acked; to an offline account, stored (ack stored: true); to no account, nacked and counted", async () => {
    let a: ChatClient | undefined;
    let b: ChatClient | undefined;
    try {
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "dm-a");
      a = alice.client;
      const bob = await connectClient(t, bobPC, cred(seed, "bob"), "dm-b");
      b = bob.client;
      await a.dm("bob", "just between us");
      await bob.sink.until("the dm", () => bob.sink.of("direct").length === 1);
      expect(bob.sink.of("direct")[0]).toEqual(expect.objectContaining({ type: "direct", from: "alice", to: "bob", text: "just between us" }));
      await alice.sink.until("the ack", () => alice.sink.of("ack").length === 1);
      expect(alice.sink.of("direct")).toEqual([]);

      await a.dm("dave", "are you there?");
      await alice.sink.until("the second ack", () => alice.sink.of("ack").length === 2);
      expect(alice.sink.of("ack")[1]).toEqual(expect.objectContaining({ stored: true }));
      await a.dm("zed", "anyone?");
      await alice.sink.until("the nack", () => alice.sink.of("nack").length === 1);
      expect(alice.sink.of("nack")[0]).toEqual(expect.objectContaining({ code: "no_such_user" }));
      expect(a.unacknowledged).toBe(1);
      await a.quit();
      expect(a.unacknowledged).toBe(1);
    } finally {
      await quitAll(a, b);
    }
  }, NET);

  test("history on join: a newcomer is shown the room's recent messages, marked as history, then history_end", async () => {
    let a: ChatClient | undefined;
    let c: ChatClient | undefined;
    try {
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "hist");
      a = alice.client;
      for (const text of ["first", "second", "third"]) await a.say(text);
      await alice.sink.until("three acks", () => alice.sink.of("ack").length === 3);
      const carol = await connectClient(t, carolPC, cred(seed, "carol"), "hist");
      c = carol.client;
      await carol.sink.until("the recorded notice", () => carol.sink.of("notice").some((n) => n.code === "recorded"));
      const seen = carol.sink.events.filter((e) => e.type !== "connected" && e.type !== "current");
      expect(seen.map((e) => e.type)).toEqual(["room", "message", "message", "message", "history_end", "notice"]);
      expect(carol.sink.of("message").map((m) => [m.from, m.text, m.seq, m.history])).toEqual([
        ["alice", "first", 1, true],
        ["alice", "second", 2, true],
        ["alice", "third", 3, true],
      ]);
      expect(carol.sink.of("history_end")[0]).toEqual({ type: "history_end", room: "hist", count: 3 });
      await a.say("fourth");
      await carol.sink.until("a live line", () => carol.sink.said("hist").length === 1);
      expect(carol.sink.of("message").at(-1)).toEqual(expect.objectContaining({ text: "fourth", seq: 4 }));
      expect(carol.sink.of("message").at(-1)?.history).toBeUndefined();
    } finally {
      await quitAll(a, c);
    }
  }, NET);

  test("one user on two terminals: both get the room's messages; each terminal's lines reach the other", async () => {
    let b1: ChatClient | undefined;
    let b2: ChatClient | undefined;
    let a: ChatClient | undefined;
    try {
      const bob1 = await connectClient(t, bobPC, cred(seed, "bob"), "multi");
      b1 = bob1.client;
      const bob2 = await connectClient(t, bobPC, cred(seed, "bob"), "multi");
      b2 = bob2.client;
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "multi");
      a = alice.client;
      expect(alice.sink.of("room")[0]).toEqual({ type: "room", room: "multi", users: ["alice", "bob"], seq: 0, owner: "bob" });
      await a.say("hello both of you");
      await bob1.sink.until("alice's line", () => bob1.sink.said().length === 1);
      await bob2.sink.until("alice's line", () => bob2.sink.said().length === 1);
      await b1.say("typed on the laptop");
      await bob2.sink.until("the laptop's line", () => bob2.sink.said().length === 2);
      await alice.sink.until("the laptop's line", () => alice.sink.said().length === 1);
      expect(bob1.sink.said()).toEqual(["alice: hello both of you"]);
      expect(bob2.sink.said()).toEqual(["alice: hello both of you", "bob: typed on the laptop"]);
      expect(alice.sink.said()).toEqual(["bob: typed on the laptop"]);
      // Bob's second terminal is not news to bob's first, nor to anyone else.
      expect(bob1.sink.of("joined").map((j) => j.user)).toEqual(["alice"]);
      await b1.quit();
      await sleep(50);
      expect(alice.sink.of("left")).toEqual([]);
      await b2.quit();
      await alice.sink.until("bob's departure", () => alice.sink.of("left").length === 1);
    } finally {
      await quitAll(a, b1, b2);
    }
  }, NET);

  test("acks and a clean exit: 50 lines, then quit → all 50 acked, none unacknowledged, the listener has all 50 in order", async () => {
    let a: ChatClient | undefined;
    let b: ChatClient | undefined;
    try {
      const bob = await connectClient(t, bobPC, cred(seed, "bob"), "bulk");
      b = bob.client;
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "bulk");
      a = alice.client;
      const texts = Array.from({ length: 50 }, (_, i) => `line ${i + 1}`);
      for (const text of texts) await a.say(text);
      await a.quit();
      expect(a.unacknowledged).toBe(0);
      expect(a.failure).toBeNull();
      const sent = alice.sink.of("sent");
      expect(sent.map((s) => s.text)).toEqual(texts);
      expect(alice.sink.of("ack").map((x) => x.id)).toEqual(sent.map((s) => s.id));
      expect(alice.sink.of("bye")).toHaveLength(1);
      await bob.sink.until("all 50 lines", () => bob.sink.said("bulk").length === 50);
      expect(bob.sink.said("bulk")).toEqual(texts.map((x) => `alice: ${x}`));
      expect(bob.sink.of("message").map((m) => m.seq)).toEqual(texts.map((_, i) => i + 1));
    } finally {
      await quitAll(a, b);
    }
  }, NET);

  test("coalescing: 20 quick lines reach a listener in fewer than 20 records, all in order", async () => {
    let a: ChatClient | undefined;
    let erin: Peer | undefined;
    try {
      erin = await Peer.login(t.port, cred(seed, "erin"));
      await erin.join("burst");
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "burst");
      a = alice.client;
      await erin.until("alice's arrival", () => erin!.of("joined").length === 1);
      const before = erin.records.length;
      const texts = Array.from({ length: 20 }, (_, i) => `quick ${i + 1}`);
      await Promise.all(texts.map((x) => a!.say(x)));
      await erin.until("20 lines", () => erin!.of("message").length === 20);
      const records = erin.records.slice(before).filter((r) => r.some((m) => m.type === "message"));
      console.log(`coalescing: 20 messages arrived in ${records.length} record(s)`);
      expect(records.length).toBeLessThan(20);
      expect(erin.of("message").map((m) => m.text)).toEqual(texts);
      expect(erin.error).toBeNull();
    } finally {
      erin?.close();
      await quitAll(a);
    }
  }, NET);

  test("coalescing never makes a record too large: a window of 4000-byte lines is split across records, in order", async () => {
    let a: ChatClient | undefined;
    let erin: Peer | undefined;
    try {
      erin = await Peer.login(t.port, cred(seed, "erin"));
      await erin.join("wide");
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "wide");
      a = alice.client;
      await erin.until("alice's arrival", () => erin!.of("joined").length === 1);
      const before = erin.records.length;
      const texts = Array.from({ length: 32 }, (_, i) => `${i + 1} ${"w".repeat(4000)}`);
      await Promise.all(texts.map((x) => a!.say(x)));
      await erin.until("32 lines", () => erin!.of("message").length === 32);
      const records = erin.records.slice(before).filter((r) => r.some((m) => m.type === "message"));
      // 32 × ~4 KB does not fit one 64 KiB record; the Peer's decoder refuses any frame over MAX_FRAME.
      expect(records.length).toBeGreaterThan(1);
      expect(records.length).toBeLessThan(32);
      expect(erin.of("message").map((m) => m.text)).toEqual(texts);
      expect(erin.error).toBeNull();
      await alice.sink.until("32 acks", () => alice.sink.of("ack").length === 32);
    } finally {
      erin?.close();
      await quitAll(a);
    }
  }, NET);
});

describe("a slow consumer", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: FAST, maxSendBuffer: 64 * 1024 });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  test("a member that stops reading is dropped; the others keep receiving everything in order, without stalling", async () => {
    let a: ChatClient | undefined;
    let b: ChatClient | undefined;
    let dave: Peer | undefined;
    try {
      dave = await Peer.login(t.port, cred(seed, "dave"));
      await dave.join("flood");
      const bob = await connectClient(t, bobPC, cred(seed, "bob"), "flood");
      b = bob.client;
      const alice = await connectClient(t, alicePC, cred(seed, "alice"), "flood");
      a = alice.client;
      dave.pause();

      const slow = () => t.events.some((e) => e.event === "slow_consumer" && e.fields.user === "dave");
      // 1000-byte lines: a full client window (32) of them is well under the
      // server's 64 KiB, so only a reader that really stops falls behind (see
      // the report: one turn's fan-out counts against the limit).
      const big = "x".repeat(1000);
      let n = 0;
      const start = Date.now();
      // Enough to fill the kernel's buffers for dave and then the server's
      // 64 KiB, and then some more for everyone else.
      let after = -1;
      while (n < 15_000 && (after < 0 || n < after + 300)) {
        await a.say(`${++n} ${big}`);
        if (after < 0 && slow()) after = n;
      }
      await alice.sink.until("every ack", () => alice.sink.of("ack").length === n, 10_000);
      const elapsed = Date.now() - start;
      const ackTimes = alice.sink.events.map((e, i) => (e.type === "ack" ? alice.sink.at[i]! : -1)).filter((x) => x >= 0);
      const gaps = ackTimes.slice(1).map((x, i) => x - ackTimes[i]!);
      console.log(`slow consumer: dropped after ${after} of ${n} messages (${((n * 1000) / 1e6).toFixed(1)} MB) in ${elapsed} ms; longest gap between the sender's acks ${Math.max(...gaps)} ms`);
      expect(after).toBeGreaterThan(0);
      expect(t.events.filter((e) => e.event === "slow_consumer").map((e) => e.fields.user)).toEqual(["dave"]);

      // The sender was never held up by the one who stopped reading: every one
      // of its messages was acknowledged, in order, none refused.
      const acked = alice.sink.of("ack").map((x) => x.id);
      expect(acked.length).toBe(n);
      expect(acked.every((id, i) => i === 0 || id > acked[i - 1]!)).toBe(true);
      expect(a.unacknowledged).toBe(0);

      // The other listener got everything, in order.
      await bob.sink.until("every line", () => bob.sink.said("flood").length === n, 10_000);
      expect(bob.sink.of("message").map((m) => Number(m.text!.split(" ")[0]))).toEqual(Array.from({ length: n }, (_, i) => i + 1));

      // The slow one is logged, leaves the room for the others, and its connection closes.
      expect(t.events.find((e) => e.event === "slow_consumer")?.level).toBe("warn");
      await bob.sink.until("dave's departure", () => bob.sink.of("left").some((l) => l.user === "dave"), 5000);
      dave.resume();
      expect(await dave.waitClosed(5000)).toBe(true);
      await waitFor("the server to forget dave", () => t.server.chat.stats.users === 2, 3000);
      expect(b.failure).toBeNull();
    } finally {
      dave?.destroy();
      await quitAll(a, b);
    }
  }, 20_000);
});

describe("idle connections", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: FAST, idleMs: 300 });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  test("a peer that never answers pings is pinged, then closed with idle_timeout; a ChatClient, which answers, stays", async () => {
    let c: ChatClient | undefined;
    let dave: Peer | undefined;
    try {
      const carol = await connectClient(t, carolPC, cred(seed, "carol"), "quiet");
      c = carol.client;
      dave = await Peer.login(t.port, cred(seed, "dave"));
      dave.answerPings = false;
      dave.send({ type: "join", room: "quiet" });
      const silentFrom = Date.now();
      expect(await dave.waitClosed(10_000)).toBe(true);
      const after = dave.closedAt! - silentFrom;
      console.log(`idle: the silent peer was closed after ${after} ms (idleMs 300: pinged after 300, dropped after 600)`);
      // Pinged first, then (the ping unanswered) dropped with the reason.
      const got = dave.messages.map((m) => m.type);
      expect(got).toContain("ping");
      expect(got.indexOf("ping")).toBeLessThan(got.length - 1);
      expect(dave.messages.at(-1)).toEqual(expect.objectContaining({ type: "error", code: "idle_timeout" }));
      expect(t.events.some((e) => e.event === "idle_timeout" && e.fields.user === "dave")).toBe(true);
      await carol.sink.until("dave's departure", () => carol.sink.of("left").some((l) => l.user === "dave"));

      // Carol said nothing for as long (well past twice idleMs), but her client answered the pings.
      await sleep(600);
      expect(c.failure).toBeNull();
      expect(carol.sink.of("disconnected")).toEqual([]);
      expect(t.events.some((e) => e.event === "idle_timeout" && e.fields.user === "carol")).toBe(false);
      await c.say("still here");
      await carol.sink.until("the ack", () => carol.sink.of("ack").length === 1);
    } finally {
      dave?.destroy();
      await quitAll(c);
    }
  }, NET);
});
