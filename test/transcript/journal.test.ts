/**
 * The transcript-backed Journal (src/transcript/journal.ts): every chat event
 * becomes the entry docs/TRANSCRIPT.md §2.4–§2.5 describes, receipts name the
 * entry (seq, hash — what the sender's ack carries, §6), and after a restart
 * room history and sequence numbers come back from disk — except sealed
 * bodies, which the server cannot read back (§5.3). A journal whose writer is
 * closed or failed answers with a rejected `durable`, never a throw, and
 * never an unhandled rejection.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { x25519Generate } from "../../src/crypto/index.ts";
import type { JournalEvent, Receipt, RoomMessage } from "../../src/server/journal.ts";
import { silentLogger } from "../../src/server/log.ts";
import { type Entry, parseEntry } from "../../src/transcript/format.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, type WriterOptions, transcriptFiles } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(9);
const T = Date.UTC(2026, 4, 10, 9, 30);
const NEVER = 1_000_000_000;

function open(dir: string, over: Partial<WriterOptions & { history: number }> = {}): TranscriptJournal {
  return TranscriptJournal.open({
    ...DEFAULT_WRITER,
    fsync: "off",
    checkpointIntervalMs: NEVER,
    dir,
    hostKey: HOST,
    version: "test",
    log: silentLogger,
    history: 50,
    ...over,
  });
}

const freshDir = (): string => join(tempDir("journal"), "transcript");

function entriesOf(dir: string): Entry[] {
  return transcriptFiles(dir).flatMap((f) =>
    readFileSync(join(dir, f), "utf8")
      .split("\n")
      .slice(0, -1)
      .map((l) => parseEntry(l)),
  );
}

/** An entry's members beyond the five common ones. */
function own(e: Entry): Record<string, unknown> {
  const { seq: _s, ts: _t, type: _y, prev: _p, hash: _h, ...rest } = e;
  return rest;
}

const SESSION = toBase64(new Uint8Array(16).fill(0xab));

function roomMessage(room: string, seq: number, from = "alice", action = false): RoomMessage {
  return { type: "message", room, seq, ts: T + seq, from, text: `${room} #${seq} from ${from}`, ...(action ? { action: true } : {}) };
}

function say(room: string, seq: number, from = "alice", action = false): JournalEvent {
  return { kind: "message", message: roomMessage(room, seq, from, action) };
}

function dm(seq: number, action = false): JournalEvent {
  return { kind: "direct", message: { type: "direct", seq, ts: T + seq, from: "alice", to: "bob", text: `dm #${seq}`, ...(action ? { action: true } : {}) } };
}

async function settle(p: Promise<void> | undefined): Promise<string> {
  if (!p) return "none";
  return p.then(
    () => "resolved",
    (e: unknown) => `rejected:${(e as { code?: string }).code ?? (e as Error).message}`,
  );
}

const spies: { mockRestore(): void }[] = [];
afterEach(() => {
  for (const s of spies.splice(0)) s.mockRestore();
});

/**
 * Collects unhandled rejections while `fn` runs (and a few turns after).
 * bun test also fails the running test on one by itself; this makes the
 * expectation explicit and names what leaked.
 */
async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown) => void seen.push(reason);
  process.on("unhandledRejection", onRejection);
  try {
    await fn();
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 2));
    Bun.gc(true);
    await new Promise((r) => setTimeout(r, 5));
  } finally {
    process.off("unhandledRejection", onRejection);
  }
  return seen;
}

describe("TranscriptJournal: entries", () => {
  test("every JournalEvent kind becomes its entry with the right members; receipts carry seq and hash", async () => {
    const dir = freshDir();
    const j = open(dir, { now: () => T });
    const events: JournalEvent[] = [
      { kind: "session_open", user: "alice", session: SESSION, source: "192.0.2.10", ts: T },
      { kind: "login_failed", source: "198.51.100.7", reason: "password", ts: T },
      { kind: "login_failed", source: "2001:db8::b0b", reason: "ticket", ts: T },
      { kind: "join", room: "lobby", user: "alice", ts: T },
      say("lobby", 1),
      say("lobby", 2, "alice", true),
      dm(1),
      dm(2, true),
      { kind: "leave", room: "lobby", user: "alice", ts: T },
      { kind: "session_close", user: "alice", session: SESSION, ts: T },
    ];
    const receipts: Receipt[] = events.map((e) => j.append(e));
    for (const r of receipts) expect(await settle(r.durable)).toBe("resolved");
    expect(receipts.map((r) => r.seq)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    j.close("shutdown");

    const entries = entriesOf(dir);
    expect(entries.map((e) => e.type)).toEqual([
      "server_start",
      "session_open",
      "login_failed",
      "login_failed",
      "join",
      "message",
      "message",
      "direct",
      "direct",
      "leave",
      "session_close",
      "checkpoint", // signs the messages before their acks (TRANSCRIPT.md §6)
      "server_stop",
      "checkpoint",
    ]);
    receipts.forEach((r) => {
      const e = entries[r.seq! - 1]!;
      expect(e.seq).toBe(r.seq!);
      expect(e.hash).toBe(r.hash!);
    });
    const members = entries.slice(1, 11).map(own);
    expect(members).toEqual([
      { user: "alice", session: SESSION, source: "192.0.2.10" },
      { source: "198.51.100.7", reason: "password" },
      { source: "2001:db8::b0b", reason: "ticket" },
      { room: "lobby", user: "alice" },
      { room: "lobby", room_seq: 1, from: "alice", text: "lobby #1 from alice" },
      { room: "lobby", room_seq: 2, from: "alice", text: "lobby #2 from alice", action: true },
      { dm_seq: 1, from: "alice", to: "bob", text: "dm #1" },
      { dm_seq: 2, from: "alice", to: "bob", text: "dm #2", action: true },
      { room: "lobby", user: "alice" },
      { user: "alice", session: SESSION },
    ]);
    expect(entries.at(-2)!.reason).toBe("shutdown");
    const report = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(report.problem).toBeNull();
  });

  test("with fsync batch, durable resolves for every receipt", async () => {
    const dir = freshDir();
    const j = open(dir, { fsync: "batch", batchMs: 5 });
    const rs = [j.append(say("lobby", 1)), j.append(say("lobby", 2)), j.append(dm(1))];
    expect(await Promise.all(rs.map((r) => settle(r.durable)))).toEqual(["resolved", "resolved", "resolved"]);
    j.close("shutdown");
  });
});

describe("TranscriptJournal: history and numbering after a restart", () => {
  test("recent(room) comes back from disk; lastSeq and lastDirectSeq continue", async () => {
    const dir = freshDir();
    let j = open(dir);
    for (let s = 1; s <= 7; s++) j.append(say("lobby", s, s % 2 ? "alice" : "bob", s === 6));
    j.append(say("ops", 1, "carol"));
    j.append(say("ops", 2, "carol"));
    for (let s = 1; s <= 3; s++) j.append(dm(s));
    expect(j.lastSeq("lobby")).toBe(7);
    expect(j.lastDirectSeq()).toBe(3);
    j.close("shutdown");
    const disk = entriesOf(dir);

    j = open(dir);
    expect(j.lastSeq("lobby")).toBe(7);
    expect(j.lastSeq("ops")).toBe(2);
    expect(j.lastSeq("nowhere")).toBe(0);
    expect(j.lastDirectSeq()).toBe(3);
    const recent = j.recent("lobby", 5);
    expect(recent.map((m) => m.seq)).toEqual([3, 4, 5, 6, 7]);
    // the messages as they were recorded: ts is the entry's (the writer's), not the client-facing one (§2.3)
    expect(recent).toEqual(
      [3, 4, 5, 6, 7].map((s) => {
        const e = disk.find((x) => x.type === "message" && x.room === "lobby" && x.room_seq === s)!;
        return { type: "message", room: "lobby", seq: s, ts: e.ts, from: s % 2 ? "alice" : "bob", text: `lobby #${s} from ${s % 2 ? "alice" : "bob"}`, ...(s === 6 ? { action: true } : {}) };
      }),
    );
    expect(j.recent("ops", 50).map((m) => m.text)).toEqual(["ops #1 from carol", "ops #2 from carol"]);
    expect(j.recent("nowhere", 50)).toEqual([]);
    expect(j.recent("lobby", 0)).toEqual([]);

    // numbering is the chat core's; the journal records what it is given and keeps the maximum
    const r = j.append(say("lobby", 8));
    expect(r.seq).toBe(disk.length + 2); // a clean restart: server_start, then this
    expect(j.lastSeq("lobby")).toBe(8);
    expect(j.recent("lobby", 2).map((m) => m.seq)).toEqual([7, 8]);
    j.close("shutdown");
    const report = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(report.problem).toBeNull();
    expect(report.recoveries.count).toBe(0);
  });

  test("history keeps at most `history` messages per room; 0 keeps none but still the numbers", async () => {
    const dir = freshDir();
    let j = open(dir);
    for (let s = 1; s <= 6; s++) j.append(say("lobby", s));
    j.close("shutdown");
    j = open(dir, { history: 3 });
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual([4, 5, 6]);
    j.close("shutdown");
    j = open(dir, { history: 0 });
    expect(j.recent("lobby", 50)).toEqual([]);
    expect(j.lastSeq("lobby")).toBe(6);
    j.close("shutdown");
  });

  test("a crashed run's messages come back too (the restart records a recovery)", async () => {
    const dir = freshDir();
    const j1 = open(dir);
    const rs = [j1.append(say("lobby", 1)), j1.append(say("lobby", 2)), j1.append(dm(4))];
    await Promise.all(rs.map((r) => r.durable));
    // no close: the process died. (The abandoned writer's timer never fires: NEVER.)
    const j2 = open(dir);
    expect(j2.recent("lobby", 10).map((m) => m.seq)).toEqual([1, 2]);
    expect(j2.lastDirectSeq()).toBe(4);
    j2.close("shutdown");
    expect(entriesOf(dir).filter((e) => e.type === "recovery").length).toBe(1);
  });

  test("sealed: rooms keep their numbers but no history; direct numbering continues", async () => {
    const auditor = x25519Generate();
    const dir = freshDir();
    let j = open(dir, { auditorKey: auditor.publicKey });
    for (let s = 1; s <= 4; s++) j.append(say("lobby", s));
    j.append(dm(1));
    j.append(dm(2));
    // while running, the server itself still knows what it was sent
    expect(j.recent("lobby", 10).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    j.close("shutdown");
    for (const f of transcriptFiles(dir)) expect(readFileSync(join(dir, f), "utf8")).not.toContain("lobby #");

    j = open(dir, { auditorKey: auditor.publicKey });
    expect(j.recent("lobby", 10)).toEqual([]);
    expect(j.lastSeq("lobby")).toBe(4);
    expect(j.lastDirectSeq()).toBe(2);
    j.close("shutdown");
    // and a server restarted without sealing still cannot show them
    j = open(dir);
    expect(j.recent("lobby", 10)).toEqual([]);
    expect(j.lastSeq("lobby")).toBe(4);
    j.close("shutdown");
    const report = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(report.problem).toBeNull();
  });
});

describe("TranscriptJournal: a stopped writer", () => {
  test("append after close: a receipt without seq whose durable rejects; no throw, no unhandled rejection", async () => {
    const dir = freshDir();
    const j = open(dir);
    j.close("shutdown");
    const before = entriesOf(dir);
    const unhandled = await unhandledDuring(async () => {
      const receipts = [
        j.append({ kind: "session_close", user: "alice", session: SESSION, ts: T }), // not awaited, like the server's
        j.append({ kind: "leave", room: "lobby", user: "alice", ts: T }),
      ];
      for (const r of receipts) {
        expect(r.seq).toBeUndefined();
        expect(r.hash).toBeUndefined();
        expect(r.durable).toBeInstanceOf(Promise);
      }
      const m = j.append(say("lobby", 1));
      expect(m.seq).toBeUndefined();
      expect(await settle(m.durable)).toMatch(/^rejected:/);
    });
    expect(unhandled).toEqual([]);
    expect(entriesOf(dir)).toEqual(before);
    expect(j.writer.stopped).toBe(true);
  });

  test("a failed writer: the pending receipt's durable rejects (transcript_write), later ones reject without a seq", async () => {
    const dir = freshDir();
    spies.push(
      spyOn(fs, "fsync").mockImplementation(((_fd: number, cb: fs.NoParamCallback) =>
        void setImmediate(() => cb(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" })))) as typeof fs.fsync),
    );
    const j = open(dir, { fsync: "batch", batchMs: 5 });
    const unhandled = await unhandledDuring(async () => {
      j.append({ kind: "join", room: "lobby", user: "alice", ts: T }); // not awaited
      const first = j.append(say("lobby", 1));
      expect(first.seq).toBe(3);
      expect(await settle(first.durable)).toBe("rejected:transcript_write");
      expect(j.writer.stopped).toBe(true);
      const later = j.append(say("lobby", 2));
      expect(later.seq).toBeUndefined();
      expect(await settle(later.durable)).toMatch(/^rejected:/);
    });
    expect(unhandled).toEqual([]);
    expect(() => j.close("shutdown")).not.toThrow();
  });
});
