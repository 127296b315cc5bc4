/**
 * The chat core over a record kept elsewhere (a journal with `prepare`, an
 * account store that answers later, markers that load): a request that
 * reads what must be loaded waits for it, in order, and the connection's
 * later requests wait behind it. Fake members, no sockets; each load is a
 * promise the test settles, so the waits are seen, not timed.
 */
import { describe, expect, test } from "bun:test";
import type { Message } from "../../src/protocol/messages.ts";
import { Chat, DEFAULT_CHAT, type ChatOptions } from "../../src/server/chat.ts";
import { MemoryJournal, type Need } from "../../src/store/journal.ts";
import { MemoryMarkers } from "../../src/store/markers.ts";
import { Clock, FakeMember } from "./chat-helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };

interface Gate {
  promise: Promise<void>;
  open(): void;
  fail(e: Error): void;
}

function gate(): Gate {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    open = res;
    fail = rej;
  });
  return { promise, open, fail };
}

/** A MemoryJournal whose `prepare` waits for a gate the test opens, and records what it was asked. */
class PreparingJournal extends MemoryJournal {
  readonly asked: Need[] = [];
  gates: Gate[] = [];

  prepare(need: Need): Promise<void> | null {
    this.asked.push(need);
    const g = gate();
    this.gates.push(g);
    return g.promise;
  }

  openAll(): void {
    for (const g of this.gates.splice(0)) g.open();
  }
}

/** Markers whose load waits for a gate. */
class LoadingMarkers extends MemoryMarkers {
  readonly loads = new Map<string, Gate>();

  load(user: string): Promise<void> | null {
    const g = gate();
    this.loads.set(user, g);
    return g.promise;
  }
}

function setup(accounts: Map<string, Gate & { is: boolean }>) {
  const o: ChatOptions = { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD };
  const clock = new Clock();
  const journal = new PreparingJournal(o.history);
  const markers = new LoadingMarkers();
  const isAccount = (u: string): Promise<boolean> => {
    const a = accounts.get(u);
    return a ? a.promise.then(() => a.is) : Promise.resolve(false);
  };
  const chat = new Chat(o, journal, clock.now, isAccount, markers);
  return { chat, journal, markers, clock };
}

/** alice, connected, her DMs and markers loaded. */
async function loggedIn(chat: Chat, journal: PreparingJournal, markers: LoadingMarkers): Promise<FakeMember> {
  const alice = new FakeMember("alice");
  const ready = chat.connect(alice);
  markers.loads.get("alice")!.open();
  journal.openAll();
  await ready;
  return alice;
}

const settle = () => new Promise((r) => setImmediate(r));
const types = (m: FakeMember) => m.inbox.map((x) => x.type);

describe("a chat core over a record kept elsewhere", () => {
  test("a login's stored DMs and its requests wait for its DMs and read markers to load; then they are answered in order", async () => {
    const { chat, journal, markers, clock } = setup(new Map());
    // bob's DM to alice, stored while she was offline
    journal.append({ kind: "direct", message: { type: "direct", seq: 1, ts: clock.t, from: "bob", to: "alice", text: "while you were out" }, stored: true });
    const alice = new FakeMember("alice");
    const ready = chat.connect(alice);
    expect(ready).toBeInstanceOf(Promise);
    // the read a login makes, with its arguments: the DMs stored for alice within the retention, at most the cap
    expect(journal.asked).toEqual([{ missed: { user: "alice", since: clock.t - DEFAULT_CHAT.dmRetentionMs, limit: DEFAULT_CHAT.maxStoredDms } }]);
    chat.handle(alice, { type: "ping" });
    chat.handle(alice, { type: "join", room: "ra" });
    await settle();
    expect(alice.inbox).toEqual([]);
    markers.loads.get("alice")!.open();
    journal.openAll();
    await ready;
    await settle();
    // the late DM, the pong; the join now waits for its room to load
    expect(types(alice)).toEqual(["direct", "pong"]);
    expect(journal.asked.at(-1)).toEqual({ room: "ra" });
    journal.openAll();
    await settle();
    expect(types(alice)).toEqual(["direct", "pong", "room", "history_end", "notice"]);
  });

  test("a bye waits behind a join that waits for its room", async () => {
    const { chat, journal, markers } = setup(new Map());
    const alice = await loggedIn(chat, journal, markers);
    chat.handle(alice, { type: "join", room: "ra", since: 5 });
    expect(journal.asked.at(-1)).toEqual({ room: "ra", since: 5 });
    let byeRan = false;
    chat.afterHeld(alice, () => {
      byeRan = true;
    });
    await settle();
    expect(byeRan).toBe(false);
    journal.openAll();
    await settle();
    expect(types(alice)).toEqual(["room", "history_end", "notice"]);
    expect(byeRan).toBe(true);
  });

  test("a dm to an offline name waits for the account store: no_such_user for a name that is none, stored for one that is; a say after it waits", async () => {
    const carol = { ...gate(), is: true };
    const nobody = { ...gate(), is: false };
    const { chat, journal, markers } = setup(new Map([["carol", carol], ["nobody", nobody]]));
    const alice = await loggedIn(chat, journal, markers);
    chat.handle(alice, { type: "dm", id: 1, to: "nobody", text: "hi" });
    chat.handle(alice, { type: "dm", id: 2, to: "carol", text: "hi" });
    chat.handle(alice, { type: "ping" });
    await settle();
    expect(alice.inbox).toEqual([]);
    // the recipient's undelivered DMs are loaded too (dm_store_full)
    expect(journal.asked.at(-1)).toEqual({ undelivered: { user: "nobody", since: expect.any(Number) } });
    nobody.open();
    journal.openAll();
    await settle();
    expect(alice.inbox[0]).toMatchObject({ type: "nack", id: 1, code: "no_such_user" });
    expect(alice.inbox).toHaveLength(1);
    carol.open();
    journal.openAll();
    await settle();
    expect(alice.inbox.slice(1)).toEqual([{ type: "ack", id: 2, seq: 1, ts: expect.any(Number), stored: true }, { type: "pong" }] as Message[]);
  });

  test("a dm whose account check fails (the store unreachable) is refused not_recorded, and the connection goes on", async () => {
    const carol = { ...gate(), is: true };
    const { chat, journal, markers } = setup(new Map([["carol", carol]]));
    const alice = await loggedIn(chat, journal, markers);
    chat.handle(alice, { type: "dm", id: 1, to: "carol", text: "hi" });
    carol.fail(new Error("connection refused"));
    journal.openAll();
    await settle();
    chat.handle(alice, { type: "ping" });
    await settle();
    expect(alice.inbox).toEqual([{ type: "nack", id: 1, code: "not_recorded", message: expect.any(String) }, { type: "pong" }] as Message[]);
  });

  test("a login whose markers cannot load: connect rejects (the session is to end)", async () => {
    const { chat, journal, markers } = setup(new Map());
    const alice = new FakeMember("alice");
    const ready = chat.connect(alice) as Promise<void>;
    journal.openAll();
    markers.loads.get("alice")!.fail(new Error("connection refused"));
    expect(ready).rejects.toThrow("connection refused");
  });

  test("history of a room the connection is not in loads nothing: it is answered not_member at once", async () => {
    const { chat, journal, markers } = setup(new Map());
    const alice = await loggedIn(chat, journal, markers);
    const asked = journal.asked.length;
    for (let i = 0; i < 100; i++) chat.handle(alice, { type: "history", room: `r${i}`, since: i, limit: 10 });
    await settle();
    expect(journal.asked.length).toBe(asked);
    expect(alice.inbox.filter((m) => m.type === "notice" && m.code === "not_member").length).toBe(100);
  });

  test("history with a user loads that page of their DMs; a room edit loads the room", async () => {
    const { chat, journal, markers } = setup(new Map());
    const alice = await loggedIn(chat, journal, markers);
    chat.handle(alice, { type: "history", with: "bob", limit: 10 });
    // one more than shown: whether older ones remain
    expect(journal.asked.at(-1)).toEqual({ between: { a: "alice", b: "bob", since: expect.any(Number), before: Number.MAX_SAFE_INTEGER, limit: 11 } });
    journal.openAll();
    await settle();
    chat.handle(alice, { type: "join", room: "ra" });
    journal.openAll();
    await settle();
    chat.handle(alice, { type: "edit", id: 3, room: "ra", seq: 1, text: "x" });
    expect(journal.asked.at(-1)).toEqual({ room: "ra" });
    journal.openAll();
    await settle();
    expect(alice.inbox.at(-1)).toMatchObject({ type: "nack", id: 3, code: "no_such_message" });
  });
});
