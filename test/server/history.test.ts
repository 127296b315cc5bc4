/**
 * Room history and numbering across a server restart, over real sockets,
 * with the transcript as the journal (docs/TRANSCRIPT.md §2.5, §5.3, §6):
 * what a restarted server shows on join is what the previous run recorded,
 * room sequence numbers are never reused, and every ack's `tseq`/`head` name
 * the transcript entry that recorded the message. With sealing, the restarted
 * server cannot show the old messages but still continues their numbering.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { cpSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { X25519KeyPair } from "../../src/crypto/index.ts";
import { x25519Generate } from "../../src/crypto/index.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import type { Logger } from "../../src/log.ts";
import { type Entry, openBody, parseEntry, unwrapFileKey } from "../../src/transcript/format.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, transcriptFiles } from "../../src/transcript/writer.ts";
import { Peer, type Seed, connectClient, cred, machine, quitAll, seedAccounts } from "./chat-helpers.ts";
import { type LogEvent, type TestServer, freshPath, startServer, waitFor } from "./helpers.ts";

let seed: Seed;
beforeAll(async () => {
  seed = await seedAccounts(["alice", "bob"]);
}, 20_000);

/** A private copy of the seeded data directory (accounts, tickets, host key). */
function dataDir(): string {
  const dir = freshPath("data");
  cpSync(seed.dataDir, dir, { recursive: true });
  return dir;
}

/** A server on `dir` whose journal is the transcript in DIR/transcript, as `serve` sets it up. */
async function serve(dir: string, auditor?: X25519KeyPair, historyMemory?: number): Promise<TestServer> {
  const events: LogEvent[] = [];
  const log: Logger = {
    info: (event, fields = {}) => void events.push({ level: "info", event, fields }),
    warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }),
  };
  const journal = TranscriptJournal.open({
    ...DEFAULT_WRITER,
    dir: join(dir, "transcript"),
    hostKey: loadOrCreateHostKey(dir).key,
    version: "test",
    log,
    history: 50,
    ...(auditor ? { auditorKey: auditor.publicKey } : {}),
    ...(historyMemory !== undefined ? { historyMemory } : {}),
  });
  return startServer({ dataDir: dir, journal, events });
}

function transcript(dir: string): Entry[] {
  const t = join(dir, "transcript");
  return transcriptFiles(t).flatMap((f) =>
    readFileSync(join(t, f), "utf8")
      .split("\n")
      .slice(0, -1)
      .map((l) => parseEntry(l)),
  );
}

/** Each ack names the entry that recorded its message: right seq, right hash, right content. */
function expectAcksMatch(dir: string, acks: Message<"ack">[], texts: Map<number, string>, room: string, from: string): void {
  const entries = transcript(dir);
  for (const ack of acks) {
    expect(ack.tseq).toBeDefined();
    expect(ack.head).toMatch(/^[0-9a-f]{64}$/);
    const e = entries[ack.tseq! - 1]!;
    expect(e.seq).toBe(ack.tseq!);
    expect(e.hash).toBe(ack.head!);
    expect(e.type).toBe("message");
    expect(e.room).toBe(room);
    expect(e.room_seq).toBe(ack.seq);
    expect(e.from).toBe(from);
    if (typeof e.text === "string") expect(e.text).toBe(texts.get(ack.id)!);
  }
}

/** Alice says `texts` in `room` one after another and collects the acks (in id order). */
async function aliceSays(t: TestServer, room: string, texts: string[]): Promise<Message<"ack">[]> {
  const alice = await Peer.login(t.port, cred(seed, "alice"));
  try {
    await alice.join(room);
    texts.forEach((text, i) => alice.send({ type: "say", id: i + 1, room, text }));
    await alice.until(`${texts.length} acks`, () => alice.of("ack").length + alice.of("nack").length >= texts.length);
    expect(alice.of("nack")).toEqual([]);
    return alice.of("ack").sort((a, b) => a.id - b.id);
  } finally {
    alice.close();
    await alice.waitClosed(2000);
  }
}

async function stop(t: TestServer): Promise<void> {
  await t.server.stop(1000);
}

describe("history across a restart (plain transcript)", () => {
  test("a restarted server shows the recorded messages as history and continues the room's numbering", async () => {
    const dir = dataDir();
    const texts = ["one", "two", "three ✓", "four \"quoted\"", "five 😀"];
    const byId = new Map(texts.map((s, i) => [i + 1, s]));

    const first = await serve(dir);
    let acks: Message<"ack">[];
    try {
      acks = await aliceSays(first, "lobby", texts);
    } finally {
      await stop(first);
    }
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3, 4, 5]);
    // each ack arrives after its entry is durable, so the files hold it
    expectAcksMatch(dir, acks, byId, "lobby", "alice");
    expect(transcript(dir).slice(-2).map((e) => e.type)).toEqual(["server_stop", "checkpoint"]);

    const second = await serve(dir);
    const bob = machine("bob");
    let client: Awaited<ReturnType<typeof connectClient>>["client"] | undefined;
    try {
      const c = await connectClient(second, bob, cred(seed, "bob"), "lobby");
      client = c.client;
      const { sink } = c;
      const room = sink.of("room").find((r) => r.room === "lobby")!;
      expect(room.seq).toBe(5);
      const history = sink.of("message").filter((m) => m.history);
      expect(history.map((m) => [m.seq, m.from, m.text, m.room])).toEqual(texts.map((s, i) => [i + 1, "alice", s, "lobby"]));
      expect(sink.of("history_end").find((h) => h.room === "lobby")!.count).toBe(5);
      expect(sink.of("message").filter((m) => !m.history)).toEqual([]);

      await client.say("six, after the restart");
      await sink.until("the ack of the new message", () => sink.of("ack").length === 1);
      const ack = sink.of("ack")[0]!;
      expect(ack.seq).toBe(6);
      expectAcksMatch(dir, [ack], new Map([[ack.id, "six, after the restart"]]), "lobby", "bob");
    } finally {
      await quitAll(client);
      await stop(second);
    }

    const entries = transcript(dir);
    expect(entries.filter((e) => e.type === "server_start").length).toBe(2);
    expect(entries.filter((e) => e.type === "message").map((e) => e.room_seq)).toEqual([1, 2, 3, 4, 5, 6]);
    const report = await verifyTranscript(join(dir, "transcript"), { hostKey: loadOrCreateHostKey(dir).key.publicKey });
    expect(report.problem).toBeNull();
    expect(report.recoveries.count).toBe(0);
    expect(report.unsealed).toBe(0);
  }, 15_000);
});

describe("history across a restart (sealed transcript)", () => {
  test("no history after the restart, but the room's numbering continues; bodies open with the auditor key", async () => {
    const auditor = x25519Generate();
    const dir = dataDir();
    const texts = ["sealed one", "sealed two", "sealed three", "sealed four", "sealed five"];

    const first = await serve(dir, auditor);
    let acks: Message<"ack">[];
    try {
      acks = await aliceSays(first, "lobby", texts);
    } finally {
      await stop(first);
    }
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3, 4, 5]);
    expectAcksMatch(dir, acks, new Map(), "lobby", "alice");
    for (const f of transcriptFiles(join(dir, "transcript"))) expect(readFileSync(join(dir, "transcript", f), "utf8")).not.toContain("sealed ");

    const second = await serve(dir, auditor);
    const bob = await Peer.login(second.port, cred(seed, "bob"));
    try {
      await bob.join("lobby");
      expect(bob.of("room").find((r) => r.room === "lobby")!.seq).toBe(5);
      expect(bob.of("message")).toEqual([]);
      expect(bob.of("history_end").find((h) => h.room === "lobby")!.count).toBe(0);

      bob.send({ type: "say", id: 1, room: "lobby", text: "sealed six" });
      await bob.until("the ack", () => bob.of("ack").length + bob.of("nack").length > 0);
      expect(bob.of("nack")).toEqual([]);
      const ack = bob.of("ack")[0]!;
      expect(ack.seq).toBe(6);
      expectAcksMatch(dir, [ack], new Map(), "lobby", "bob");
    } finally {
      bob.close();
      await bob.waitClosed(2000);
      await stop(second);
    }

    // the auditor reads what the server could not
    const entries = transcript(dir);
    const keys = new Map<number, Uint8Array>();
    const opened: [number, string][] = [];
    for (const e of entries) {
      if (e.type === "seal_key") keys.set(e.seq, unwrapFileKey(auditor.secretKey, e));
      if (e.type === "message") opened.push([e.room_seq as number, openBody(keys.get(e.key_seq as number)!, e.seq, e.sealed as string)]);
    }
    expect(opened).toEqual([...texts, "sealed six"].map((s, i) => [i + 1, s]));
    const report = await verifyTranscript(join(dir, "transcript"), { hostKey: loadOrCreateHostKey(dir).key.publicKey });
    expect(report.problem).toBeNull();
  }, 15_000);
});

describe("history of a room pushed out of memory (--history-memory)", () => {
  test("with room history held for no room at all, a room's history comes back from history.db on join and its numbering continues", async () => {
    const dir = dataDir();
    const t = await serve(dir, undefined, 0);
    const bob = await Peer.login(t.port, cred(seed, "bob"));
    try {
      const texts = ["first", "second", "third"];
      expect((await aliceSays(t, "lobby", texts)).map((a) => a.seq)).toEqual([1, 2, 3]);
      // the lobby ended (alice left); another room is used since; once history.db has the
      // lobby's messages (a few hundred ms), nothing keeps them in memory
      await aliceSays(t, "elsewhere", ["somewhere else"]);
      const rooms = (t.server.journal as TranscriptJournal).rooms;
      await waitFor("the lobby to leave memory", () => !rooms.holds("lobby"));

      await bob.join("lobby");
      expect(bob.of("room").find((r) => r.room === "lobby")!.seq).toBe(3);
      expect(bob.of("message").map((m) => [m.seq, m.from, m.text, m.history])).toEqual(texts.map((s, i) => [i + 1, "alice", s, true]));
      bob.send({ type: "say", id: 1, room: "lobby", text: "fourth" });
      await bob.until("the ack", () => bob.of("ack").length + bob.of("nack").length > 0);
      expect(bob.of("ack").map((a) => a.seq)).toEqual([4]);
    } finally {
      bob.close();
      await bob.waitClosed(2000);
      await stop(t);
    }
  }, 15_000);
});
