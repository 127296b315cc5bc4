/**
 * Edits and deletes in the transcript (TRANSCRIPT.md §2.4 `edit`/`delete`,
 * §8.2): the original `message` entry is never changed; each edit or delete
 * is a new entry naming it, recorded before anyone is told; history.db
 * applies them, so history shows the current text after a restart and after
 * a rebuild; sealed edits are sealed as messages are; and verify refuses an
 * edit or delete that does not name an earlier message of the same user.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { x25519Generate } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { Chat, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { EDIT_REACH, type Entry, entryLine, makeEntry, parseEntry } from "../../src/transcript/format.ts";
import { ChainVerifier, TranscriptFailure } from "../../src/transcript/chain.ts";
import { type JournalOptions, TranscriptJournal, historyDbPath } from "../../src/transcript/journal.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, transcriptFiles } from "../../src/transcript/writer.ts";
import { FakeMember } from "../server/chat-helpers.ts";
import { Chain, hostKeyPair, readLines, tempDir, writeChain } from "./helpers.ts";

const HOST = hostKeyPair(11);
const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };
const SESSION_A = new FakeMember("alice").session;

const open: (dir: string, over?: Partial<JournalOptions>) => TranscriptJournal = (dir, over = {}) =>
  TranscriptJournal.open({ ...DEFAULT_WRITER, fsync: "off", dir, hostKey: HOST, version: "test", log: silentLogger, history: 50, historyFlushMs: 0, ...over });

function entriesOf(dir: string): Entry[] {
  return transcriptFiles(dir).flatMap((f) => readLines(join(dir, f)).map((l) => parseEntry(l)));
}

const journals: TranscriptJournal[] = [];
afterEach(() => {
  for (const j of journals.splice(0)) j.close("shutdown");
});

/** A chat on a transcript in `dir`: alice and bob in lobby. */
function chatOn(dir: string, over: Partial<JournalOptions> = {}) {
  const journal = open(dir, over);
  journals.push(journal);
  const chat = new Chat({ ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD }, journal);
  const alice = new FakeMember("alice");
  const bob = new FakeMember("bob");
  for (const m of [alice, bob]) {
    chat.connect(m);
    chat.handle(m, { type: "join", room: "lobby" });
  }
  let id = 0;
  /** Sends a request with an id and waits for its ack or nack (acks wait for the transcript). */
  const ask = async (m: FakeMember, req: Message<"say" | "dm" | "edit" | "delete">): Promise<Message<"ack" | "nack">> => {
    const n = ++id;
    chat.handle(m, { ...req, id: n });
    for (let i = 0; i < 500; i++) {
      const a = m.inbox.find((x): x is Message<"ack" | "nack"> => (x.type === "ack" || x.type === "nack") && x.id === n);
      if (a) return a;
      await Bun.sleep(5);
    }
    throw new Error(`no answer to request ${n}`);
  };
  const close = () => {
    journals.splice(journals.indexOf(journal), 1);
    journal.close("shutdown");
  };
  return { chat, journal, alice, bob, ask, close };
}

/** Runs `check` on the journal a restart opens on `dir`, then on the one a rebuild opens (history.db deleted). */
function afterRestartAndRebuild(dir: string, check: (j: TranscriptJournal) => void): void {
  for (const rebuild of [false, true]) {
    if (rebuild) rmSync(historyDbPath(dir));
    const j = open(dir);
    try {
      check(j);
    } finally {
      j.close("shutdown");
    }
  }
}

describe("edit and delete entries", () => {
  test("the message entry stays as it was; edit and delete are new entries naming it (ref, room, room_seq, user, session); acks carry their tseq; verify passes", async () => {
    const dir = join(tempDir("edit"), "transcript");
    const { alice, bob, ask, close } = chatOn(dir);
    const said = await ask(alice, { type: "say", id: 0, room: "lobby", text: "teh plan" });
    const other = await ask(alice, { type: "say", id: 0, room: "lobby", text: "my password is hunter2" });
    const edit = await ask(alice, { type: "edit", id: 0, room: "lobby", seq: said.type === "ack" ? said.seq : 0, text: "the plan" });
    const del = await ask(alice, { type: "delete", id: 0, room: "lobby", seq: other.type === "ack" ? other.seq : 0 });
    expect([said.type, other.type, edit.type, del.type]).toEqual(["ack", "ack", "ack", "ack"]);
    expect(bob.of("edited").map((e) => e.text)).toEqual(["the plan"]);
    expect(bob.of("deleted").map((e) => e.seq)).toEqual([2]);
    close();

    const entries = entriesOf(dir);
    const messages = entries.filter((e) => e.type === "message");
    expect(messages.map((e) => [e.room_seq, e.from, e.text])).toEqual([
      [1, "alice", "teh plan"],
      [2, "alice", "my password is hunter2"],
    ]);
    const e = entries.find((x) => x.type === "edit")!;
    const d = entries.find((x) => x.type === "delete")!;
    const named = (x: Entry) => ({ room: x.room, room_seq: x.room_seq, ref: x.ref, user: x.user, session: x.session, text: x.text });
    const by = { room: "lobby", user: "alice", session: SESSION_A };
    expect(named(e)).toEqual({ ...by, room_seq: 1, ref: messages[0]!.seq, text: "the plan" });
    expect(named(d)).toEqual({ ...by, room_seq: 2, ref: messages[1]!.seq, text: undefined });
    expect((edit as Message<"ack">).tseq).toBe(e.seq);
    expect((del as Message<"ack">).tseq).toBe(d.seq);
    const report = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(report.problem).toBeNull();
  });

  test("history shows the current text after a restart, and after history.db is rebuilt from the transcript", async () => {
    const dir = join(tempDir("edit"), "transcript");
    const first = chatOn(dir);
    await first.ask(first.alice, { type: "say", id: 0, room: "lobby", text: "v0" });
    await first.ask(first.alice, { type: "say", id: 0, room: "lobby", text: "gone" });
    await first.ask(first.alice, { type: "say", id: 0, room: "lobby", text: "plain" });
    await first.ask(first.alice, { type: "edit", id: 0, room: "lobby", seq: 1, text: "v1" });
    await first.ask(first.alice, { type: "edit", id: 0, room: "lobby", seq: 1, text: "v2" });
    await first.ask(first.alice, { type: "delete", id: 0, room: "lobby", seq: 2 });
    const live = first.journal.recent("lobby", 50);
    first.close();
    const shown = (j: TranscriptJournal) => j.recent("lobby", 50).map((m) => [m.seq, m.text, m.edited, m.deleted]);
    const want = [
      [1, "v2", true, undefined],
      [2, undefined, undefined, true],
      [3, "plain", undefined, undefined],
    ];
    expect(live.map((m) => [m.seq, m.text, m.edited, m.deleted])).toEqual(want);
    afterRestartAndRebuild(dir, (j) => {
      expect(shown(j)).toEqual(want);
      // the count of edits, which the edit limit bounds, survives too
      expect(j.editable("lobby", 1)?.edits).toBe(2);
    });
  });

  test("sealed: the edit's text is sealed as a message's (no plaintext in the files); verify --identity opens it", async () => {
    const auditor = x25519Generate();
    const dir = join(tempDir("edit"), "transcript");
    const { alice, ask, close } = chatOn(dir, { auditorKey: auditor.publicKey });
    await ask(alice, { type: "say", id: 0, room: "lobby", text: "draft one" });
    expect((await ask(alice, { type: "edit", id: 0, room: "lobby", seq: 1, text: "secret final text" })).type).toBe("ack");
    close();
    for (const f of transcriptFiles(dir)) expect(readFileSync(join(dir, f), "utf8")).not.toContain("secret final");
    const e = entriesOf(dir).find((x) => x.type === "edit")!;
    expect(e.text).toBeUndefined();
    expect(typeof e.sealed).toBe("string");
    const report = await verifyTranscript(dir, { hostKey: HOST.publicKey, identity: auditor.secretKey });
    expect(report.problem).toBeNull();
    expect(report.sealed?.opened).toBe(2);
  });
});

test("sealed: history.db holds edited texts sealed, so a room dropped from memory, and direct messages, come back edited while the server runs", async () => {
  const dir = join(tempDir("edit"), "transcript");
  // a budget so small that only the room in use stays in memory
  const { alice, bob, chat, journal, ask } = chatOn(dir, { auditorKey: x25519Generate().publicKey, historyMemory: 1 });
  await ask(alice, { type: "say", id: 0, room: "lobby", text: "draft" });
  await ask(alice, { type: "say", id: 0, room: "lobby", text: "doomed" });
  await ask(alice, { type: "edit", id: 0, room: "lobby", seq: 1, text: "final" });
  await ask(alice, { type: "delete", id: 0, room: "lobby", seq: 2 });
  const dm = (await ask(alice, { type: "dm", id: 0, to: "bob", text: "dm draft" })) as Message<"ack">;
  await ask(alice, { type: "edit", id: 0, to: "bob", seq: dm.seq, text: "dm final" });
  await Bun.sleep(50); // history.db gets what is durable (historyFlushMs 0)
  chat.handle(bob, { type: "join", room: "other" });
  await ask(bob, { type: "say", id: 0, room: "other", text: "pushes lobby out of memory" });
  await Bun.sleep(50);
  expect(journal.rooms.holds("lobby")).toBe(false);
  for (const f of [historyDbPath(dir), `${historyDbPath(dir)}-wal`]) if (existsSync(f)) expect(readFileSync(f).includes("final")).toBe(false);
  expect(journal.directsBetween("alice", "bob", 0, Number.MAX_SAFE_INTEGER, 10).map((m) => [m.text, m.edited])).toEqual([["dm final", true]]);
  expect(journal.recent("lobby", 50).map((m) => [m.seq, m.text, m.edited, m.deleted])).toEqual([
    [1, "final", true, undefined],
    [2, undefined, undefined, true],
  ]);
});

test("direct messages: the edit and delete entries name the direct entry (dm_seq, to, ref); history with the user is current before history.db has the change, after a restart and after a rebuild", async () => {
  const dir = join(tempDir("edit"), "transcript");
  // history.db gets nothing until the journal closes: what is read meanwhile comes from memory
  const first = chatOn(dir, { historyFlushMs: 1_000_000 });
  const dm = async (text: string) => ((await first.ask(first.alice, { type: "dm", id: 0, to: "bob", text })) as Message<"ack">).seq;
  const kept = await dm("see you at 5");
  const gone = await dm("the door code is 1234");
  expect((await first.ask(first.alice, { type: "edit", id: 0, to: "bob", seq: kept, text: "see you at 6" })).type).toBe("ack");
  expect((await first.ask(first.alice, { type: "delete", id: 0, to: "bob", seq: gone })).type).toBe("ack");
  expect((await first.ask(first.bob, { type: "edit", id: 0, to: "bob", seq: kept, text: "no" })).type).toBe("nack");
  const shown = (j: TranscriptJournal) => j.directsBetween("alice", "bob", 0, Number.MAX_SAFE_INTEGER, 10).map((m) => [m.seq, m.text, m.edited, m.deleted]);
  const want = [
    [kept, "see you at 6", true, undefined],
    [gone, undefined, undefined, true],
  ];
  expect(shown(first.journal)).toEqual(want);
  expect(first.journal.editableDirect(kept)?.edits).toBe(1);
  first.close();

  const entries = entriesOf(dir);
  const directs = entries.filter((e) => e.type === "direct");
  const named = (x: Entry) => ({ dm_seq: x.dm_seq, to: x.to, ref: x.ref, user: x.user, text: x.text, room: x.room });
  expect(named(entries.find((e) => e.type === "edit")!)).toEqual({ dm_seq: kept, to: "bob", ref: directs[0]!.seq, user: "alice", text: "see you at 6", room: undefined });
  expect(named(entries.find((e) => e.type === "delete")!)).toEqual({ dm_seq: gone, to: "bob", ref: directs[1]!.seq, user: "alice", text: undefined, room: undefined });
  expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
  afterRestartAndRebuild(dir, (j) => {
    expect(shown(j)).toEqual(want);
    expect(j.editableDirect(kept)?.edits).toBe(1);
  });
});

describe("verify checks what an edit or delete names (bad_edit)", () => {
  const S = toBase64(new Uint8Array(16).fill(7));
  /** server_start, alice's message 1 (seq 2), bob's message 2 (seq 3), then `more`. */
  function chain(more: (c: Chain) => void): Chain {
    const c = new Chain(HOST);
    c.add("server_start", { host_key: toBase64(HOST.publicKey), version: "test" });
    c.add("message", { room: "lobby", room_seq: 1, from: "alice", text: "a" });
    c.add("message", { room: "lobby", room_seq: 2, from: "bob", text: "b" });
    more(c);
    c.checkpoint();
    return c;
  }
  const verdict = async (c: Chain): Promise<string> => {
    const r = await verifyTranscript(writeChain(c), { hostKey: HOST.publicKey });
    return r.problem ? `${r.problem.code}: ${r.problem.reason}` : "pass";
  };
  const edit = (c: Chain, fields: Record<string, string | number>, type = "edit") =>
    c.add(type, { room: "lobby", room_seq: 1, ref: 2, user: "alice", session: S, ...(type === "edit" ? { text: "x" } : {}), ...fields });

  test("an edit and a delete of one's own earlier message pass", async () => {
    expect(await verdict(chain((c) => (edit(c, {}), edit(c, {}, "delete"), edit(c, { room_seq: 2, ref: 3, user: "bob" }))))).toBe("pass");
  });
  test("someone else's message", async () => {
    expect(await verdict(chain((c) => edit(c, { user: "bob" })))).toStartWith("bad_edit: edit of lobby message 1 is by bob, but the message is alice's");
    expect(await verdict(chain((c) => edit(c, { room_seq: 2, ref: 3 }, "delete")))).toStartWith("bad_edit: delete of lobby message 2 is by alice, but the message is bob's");
  });
  test("a ref that is not that message's entry, or not before the edit", async () => {
    expect(await verdict(chain((c) => edit(c, { ref: 3 })))).toStartWith("bad_edit: edit of lobby message 1 names seq 3, which is not that message's entry");
    expect(await verdict(chain((c) => edit(c, { room: "other" })))).toStartWith("bad_edit: edit of other message 1 names seq 2, which is not that message's entry");
    expect(await verdict(chain((c) => edit(c, { ref: 4 })))).toStartWith("bad_edit: edit of lobby message 1 names seq 4, which is not before it");
  });
  test("a direct message: by its recipient, or named with another recipient", async () => {
    const dm = (c: Chain) => c.add("direct", { dm_seq: 1, from: "alice", to: "bob", text: "d" });
    const change = (fields: Record<string, string | number>) => (c: Chain) => c.add("delete", { dm_seq: 1, to: "bob", ref: 4, user: "alice", session: S, ...fields });
    expect(await verdict(chain((c) => (dm(c), change({})(c))))).toBe("pass");
    expect(await verdict(chain((c) => (dm(c), change({ user: "bob" })(c))))).toStartWith("bad_edit: delete of direct message 1 is by bob, but the message is alice's");
    expect(await verdict(chain((c) => (dm(c), change({ to: "carol" })(c))))).toStartWith("bad_edit: delete of direct message 1 names seq 4, which is not that message's entry");
  });
  test("a message deleted before", async () => {
    expect(await verdict(chain((c) => (edit(c, {}, "delete"), edit(c, {}))))).toStartWith("bad_edit: edit of lobby message 1: the message was deleted before");
  });
  test("after EDIT_REACH more messages, an edit reaching exactly that far back still finds its message, the later of two entries with its room seq", () => {
    const v = new ChainVerifier();
    let prev = "0".repeat(64);
    const feed = (seq: number, type: string, fields: Record<string, string | number>): string => {
      const e = makeEntry(prev, seq, 0, type, fields);
      prev = e.hash;
      try {
        v.check({ file: "x.jsonl", line: seq, text: entryLine(e).slice(0, -1), start: 0, end: 0 });
        return "pass";
      } catch (err) {
        return (err as TranscriptFailure).problem.code;
      }
    };
    const other = (seq: number): string => feed(seq, "message", { room: "other", room_seq: seq, from: "bob", text: "x" });
    feed(1, "message", { room: "lobby", room_seq: 1, from: "mallory", text: "first" });
    other(2);
    feed(3, "message", { room: "lobby", room_seq: 1, from: "alice", text: "again" });
    // Enough other messages that seq 1 is out of reach, and forgotten as each one is remembered; seq 3 is not.
    for (let seq = 4; seq <= 2 + EDIT_REACH; seq++) expect(other(seq)).toBe("pass");
    expect(feed(3 + EDIT_REACH, "edit", { room: "lobby", room_seq: 1, ref: 3, user: "alice", session: S, text: "edited" })).toBe("pass");
  }, 60_000); // writes and verifies EDIT_REACH (131,072) entries: seconds on a loaded machine, a generous wait, not a bound

  test("a ref more than EDIT_REACH entries back; mid-chain, one before the first entry checked is taken as given", () => {
    const at = (seq: number, ref: number): Entry =>
      makeEntry("0".repeat(64), seq, 0, "delete", { room: "lobby", room_seq: 1, ref, user: "alice", session: S });
    const check = (e: Entry): string => {
      const v = new ChainVerifier({ midChain: true });
      try {
        v.check({ file: "x.jsonl", line: 2, text: entryLine(e).slice(0, -1), start: 0, end: 0 });
        return "pass";
      } catch (err) {
        return (err as TranscriptFailure).problem.code;
      }
    };
    const seq = EDIT_REACH + 100;
    expect(check(at(seq, seq - EDIT_REACH))).toBe("pass");
    expect(check(at(seq, seq - EDIT_REACH - 1))).toBe("bad_edit");
  });
});
