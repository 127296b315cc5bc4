/**
 * Client message ids (PROTOCOL.md §7.15): a say, dm, edit or delete sent
 * again with the `cid` of one the server acknowledged is answered with the
 * first ack and is neither recorded nor relayed again — in the chat core,
 * and across a restart that came between recording a message and sending
 * its ack (the ids are read back from the transcript). The memory is
 * bounded per user, in time and in all.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../src/log.ts";
import { type Message, newCid } from "../../src/protocol/messages.ts";
import { Chat, type ChatOptions, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { CID_TTL_MS, CIDS_PER_USER, CidMemory } from "../../src/server/cids.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { type Journal, MemoryJournal } from "../../src/store/journal.ts";
import { ackedCidsInTail } from "../../src/transcript/cids.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { listTranscript } from "../../src/transcript/read.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { Clock, FakeMember } from "./chat-helpers.ts";
import { freshPath, waitFor } from "./helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };
const OPTS: ChatOptions = { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD };
const silent: Logger = { info() {}, warn() {} };

function chatOn(journal: Journal, now: () => number = Date.now) {
  const chat = new Chat(OPTS, journal, now);
  const connect = (user: string, label = user): FakeMember => {
    const m = new FakeMember(user, label);
    chat.connect(m);
    return m;
  };
  let id = 0;
  /** Sends `req` with a fresh id; its answer, once it came. */
  const send = async (m: FakeMember, req: Record<string, unknown>): Promise<Message<"ack" | "nack">> => {
    const n = ++id;
    chat.handle(m, { ...req, id: n } as Message<"say" | "dm" | "edit" | "delete">);
    const answer = () => m.inbox.find((x): x is Message<"ack" | "nack"> => (x.type === "ack" || x.type === "nack") && x.id === n);
    await waitFor(`the answer to ${n}`, () => answer() !== undefined, 10_000);
    return answer()!;
  };
  const join = (m: FakeMember, room: string) => chat.handle(m, { type: "join", room });
  /** The room's messages a fresh joiner is shown. */
  const historyOf = (room: string): string[] => {
    // A new user each time: a user's read marker would hide what it was shown before.
    const late = connect(`zed${++id}`);
    join(late, room);
    const shown = late.of("message").map((x) => `${x.seq} ${x.text}`);
    chat.disconnect(late);
    return shown;
  };
  /** `user` connected, in lobby. */
  const inLobby = (user: string): FakeMember => {
    const m = connect(user);
    join(m, "lobby");
    return m;
  };
  /** alice and bob, both in lobby. */
  const pair = (): [FakeMember, FakeMember] => [inLobby("alice"), inLobby("bob")];
  return { chat, connect, send, join, historyOf, pair };
}

/** What an ack promises, without the request id it echoes. */
const promise = (a: Message<"ack" | "nack">) => {
  if (a.type !== "ack") throw new Error(`expected an ack, got ${JSON.stringify(a)}`);
  const { id: _id, ...rest } = a;
  return rest;
};

describe("a message sent again with its cid, in the chat core", () => {
  test("a say: the first ack again, nothing relayed or kept twice; a new cid, or another user's same cid, is a new message", async () => {
    const { connect, send, join, historyOf, pair } = chatOn(new MemoryJournal(50));
    const [alice, bob] = pair();
    const cid = newCid();
    const first = await send(alice, { type: "say", room: "lobby", text: "once", cid });
    // The same client on a new connection (its first ack was lost with the old one).
    const again = connect("alice", "alice-reconnected");
    join(again, "lobby");
    const repeat = await send(again, { type: "say", room: "lobby", text: "once", cid });
    expect(promise(repeat)).toEqual(promise(first));
    expect(repeat.id).not.toBe(first.id);
    expect(bob.of("message").map((m) => m.text)).toEqual(["once"]);
    expect(historyOf("lobby")).toEqual(["1 once"]);

    expect((await send(again, { type: "say", room: "lobby", text: "once", cid: newCid() })).type === "ack" && bob.of("message").length).toBe(2);
    const carol = connect("carol");
    join(carol, "lobby");
    expect(promise(await send(carol, { type: "say", room: "lobby", text: "mine", cid }))).toMatchObject({ seq: 3 });
    expect(historyOf("lobby")).toEqual(["1 once", "2 once", "3 mine"]);
  });

  test("a dm, an edit and a delete: the first ack again, the recipient and the room told once", async () => {
    const { connect, send, join, historyOf, pair } = chatOn(new MemoryJournal(50));
    const [alice, bob] = pair();
    const dm = { type: "dm", to: "bob", text: "psst", cid: newCid() };
    const firstDm = await send(alice, dm);
    expect(promise(await send(alice, dm))).toEqual(promise(firstDm));
    expect(bob.of("direct").map((m) => m.text)).toEqual(["psst"]);

    await send(alice, { type: "say", room: "lobby", text: "tpyo", cid: newCid() });
    const edit = { type: "edit", room: "lobby", seq: 1, text: "typo", cid: newCid() };
    const firstEdit = await send(alice, edit);
    expect(promise(await send(alice, edit))).toEqual(promise(firstEdit));
    expect(bob.of("edited")).toHaveLength(1);
    const del = { type: "delete", room: "lobby", seq: 1, cid: newCid() };
    const firstDelete = await send(alice, del);
    // Without the cid this would be refused (the message is deleted already); with it, the first answer again.
    expect(promise(await send(alice, del))).toEqual(promise(firstDelete));
    expect(bob.of("deleted")).toHaveLength(1);
    expect(historyOf("lobby")).toEqual(["1 undefined"]);
  });

  test("a message the transcript failed to record is not remembered: sent again, it is tried again", async () => {
    const journal = new MemoryJournal(50);
    let fail = true;
    const append = journal.append.bind(journal);
    journal.append = (e) => {
      const r = append(e);
      return e.kind === "message" && fail ? { ...r, durable: Promise.reject(new Error("disk gone")) } : r;
    };
    const { connect, send, join, historyOf } = chatOn(journal);
    const alice = connect("alice");
    join(alice, "lobby");
    const say = { type: "say", room: "lobby", text: "try me", cid: newCid() };
    expect(await send(alice, say)).toMatchObject({ type: "nack", code: "not_recorded" });
    fail = false;
    expect(await send(alice, say)).toMatchObject({ type: "ack", seq: 2 });
    expect(historyOf("lobby")).toEqual(["1 try me", "2 try me"]);
  });
});

describe("the memory's bounds", () => {
  const acked = (seq: number) => ({ seq, ts: 0, receipt: {} });

  test(`the last ${CIDS_PER_USER} ids of each user`, () => {
    const clock = new Clock();
    const mem = new CidMemory(clock.now);
    const cids = Array.from({ length: CIDS_PER_USER + 1 }, () => newCid());
    cids.forEach((c, i) => mem.remember("alice", c, acked(i + 1)));
    mem.remember("bob", cids[0]!, acked(1));
    expect(mem.get("alice", cids[0]!)).toBeUndefined();
    expect(mem.get("alice", cids[1]!)?.seq).toBe(2);
    expect(mem.get("alice", cids.at(-1)!)?.seq).toBe(CIDS_PER_USER + 1);
    expect(mem.get("bob", cids[0]!)?.seq).toBe(1);
    expect(mem.size).toBe(CIDS_PER_USER + 1);
  });

  test("none older than 24 h", () => {
    const clock = new Clock();
    const mem = new CidMemory(clock.now);
    const old = newCid();
    mem.remember("alice", old, acked(1));
    clock.t += CID_TTL_MS - 1;
    const recent = newCid();
    mem.remember("alice", recent, acked(2));
    expect(mem.get("alice", old)?.seq).toBe(1);
    clock.t += 2;
    expect(mem.get("alice", old)).toBeUndefined();
    mem.remember("bob", newCid(), acked(3));
    expect(mem.size).toBe(2);
    expect(mem.get("alice", recent)?.seq).toBe(2);
  });

  test("at most `max` in all, the oldest forgotten first", () => {
    const clock = new Clock();
    const mem = new CidMemory(clock.now, { perUser: 256, ttlMs: CID_TTL_MS, max: 3 });
    const ids = ["a", "b", "c", "d"].map((u) => ({ u, c: newCid() }));
    for (const { u, c } of ids) mem.remember(u, c, acked(1));
    expect(mem.size).toBe(3);
    expect(mem.get("a", ids[0]!.c)).toBeUndefined();
    expect(mem.get("d", ids[3]!.c)).toBeDefined();
  });
});

describe("across a restart", () => {
  const open = (dataDir: string) =>
    TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey: loadOrCreateHostKey(dataDir).key, version: "test", log: silent, history: 50 });
  const journals: TranscriptJournal[] = [];
  afterEach(() => {
    for (const j of journals.splice(0)) j.close("test over");
  });
  /** A chat core on a transcript in `dataDir` (closed after the test), and alice in lobby. */
  const running = (dataDir: string) => {
    const j = open(dataDir);
    journals.push(j);
    // The chat's clock a little behind the writer's (two reads of the clock, as in the server): what a client is
    // told of a message, live and in its ack, is still the time the transcript records.
    const c = chatOn(j, () => Date.now() - 3);
    const alice = c.connect("alice");
    c.join(alice, "lobby");
    return { j, c, alice };
  };

  test("killed after recording a message but before its ack reached the client: the resend is one message, acked with the first seq", async () => {
    const dataDir = freshPath("cid-before");
    const { c: one, alice } = running(dataDir);
    const bob = one.connect("bob");
    one.join(bob, "lobby");
    await one.send(alice, { type: "say", room: "lobby", text: "before", cid: newCid() });
    const cid = newCid();
    // Recorded, durable and signed (the ack is made): the process dies now, before the ack is written to the socket.
    const lostAck = await one.send(alice, { type: "say", room: "lobby", text: "in the crash", cid });
    const live = bob.inbox.find((x) => x.type === "message" && x.text === "in the crash");
    expect(live).toMatchObject({ seq: 2, ts: (lostAck as Message<"ack">).ts });
    const crashed = freshPath("cid-after");
    cpSync(dataDir, crashed, { recursive: true });

    const { j: j2, c: two, alice: again } = running(crashed);
    const repeat = await two.send(again, { type: "say", room: "lobby", text: "in the crash", cid });
    expect(promise(repeat)).toEqual(promise(lostAck));
    expect(promise(repeat)).toMatchObject({ seq: 2 });
    expect(two.historyOf("lobby")).toEqual(["1 before", "2 in the crash"]);
    const next = await two.send(again, { type: "say", room: "lobby", text: "after", cid: newCid() });
    expect(promise(next)).toMatchObject({ seq: 3 });
    j2.close("test over");
    journals.pop();
    const report = await verifyTranscript(join(crashed, "transcript"), { hostKey: loadOrCreateHostKey(crashed).key.publicKey });
    expect(report.ok).toBe(true);
  });

  test("killed after writing a message but before a checkpoint signed it: nobody was acked, history does not show it, and its resend is a new message", async () => {
    const dataDir = freshPath("cid-unsigned");
    const { c: one, alice } = running(dataDir);
    await one.send(alice, { type: "say", room: "lobby", text: "before", cid: newCid() });
    const cid = newCid();
    await one.send(alice, { type: "say", room: "lobby", text: "unsigned", cid });
    // The crash came between the message's line and the checkpoint after it: drop that checkpoint.
    const crashed = freshPath("cid-unsigned-after");
    cpSync(dataDir, crashed, { recursive: true });
    const file = listTranscript(join(crashed, "transcript")).files.at(-1)!.path;
    const lines = readFileSync(file, "utf8").split("\n");
    expect(lines.at(-2)).toContain('"type":"checkpoint"');
    expect(lines.at(-3)).toContain(cid);
    writeFileSync(file, `${lines.slice(0, -2).join("\n")}\n`);

    const { c: two, alice: again } = running(crashed);
    expect(promise(await two.send(again, { type: "say", room: "lobby", text: "unsigned", cid }))).toMatchObject({ seq: 3 });
    expect(two.historyOf("lobby")).toEqual(["1 before", "3 unsigned"]);
  });

  test("the ids are read back only from the last entries", async () => {
    const dataDir = freshPath("cid-tail");
    const { c, alice } = running(dataDir);
    const cids = [newCid(), newCid(), newCid()];
    for (const [i, cid] of cids.entries()) await c.send(alice, { type: "say", room: "lobby", text: `m${i}`, cid });
    const files = listTranscript(join(dataDir, "transcript")).files;
    expect(ackedCidsInTail(files, 0).map((a) => [a.user, a.cid, a.seq])).toEqual(cids.map((cid, i) => ["alice", cid, i + 1]));
    // Each message is followed by its checkpoint: the last 4 lines hold the last two messages.
    expect(ackedCidsInTail(files, 0, 4).map((a) => a.cid)).toEqual(cids.slice(1));
    expect(ackedCidsInTail(files, Date.now() + 1)).toEqual([]);
  });
});
