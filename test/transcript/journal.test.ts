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
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { x25519Generate } from "../../src/crypto/index.ts";
import { type JournalEvent, MemoryJournal, type Receipt, type RoomMessage } from "../../src/store/journal.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { HistoryDb } from "../../src/store/history.ts";
import { ROOM_OVERHEAD, messageBytes } from "../../src/store/recent.ts";
import { type Entry, makeEntryLine, parseEntry } from "../../src/transcript/format.ts";
import { type JournalOptions, TranscriptJournal, historyDbPath } from "../../src/transcript/journal.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, transcriptFiles } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";
import { Database } from "bun:sqlite";
import { type RoomChange, roomStateToJson } from "../../src/store/roomstate.ts";

const HOST = hostKeyPair(9);
const T = Date.UTC(2026, 4, 10, 9, 30);
const NEVER = 1_000_000_000;

function open(dir: string, over: Partial<JournalOptions> = {}): TranscriptJournal {
  return TranscriptJournal.open({
    ...DEFAULT_WRITER,
    fsync: "off",
    checkpointIntervalMs: NEVER,
    dir,
    hostKey: HOST,
    version: "test",
    log: silentLogger,
    history: 50,
    historyFlushMs: 0,
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

/** Waits until the receipts are durable and history.db has had them (open() flushes it at once, historyFlushMs 0). */
async function saved(rs: Receipt[]): Promise<void> {
  await Promise.all(rs.map((r) => r.durable));
  await new Promise((r) => setTimeout(r, 0));
}

/** Forty rooms of the same name length, room00 … room39. */
const ROOMS = Array.from({ length: 40 }, (_, i) => `room${String(i).padStart(2, "0")}`);

/** What `n` messages of say(room, …) count for in the memory budget. */
function roomBytes(room: string, n: number): number {
  let b = ROOM_OVERHEAD + 2 * room.length;
  for (let s = 1; s <= n; s++) b += messageBytes(roomMessage(room, s));
  return b;
}

/** Three messages in each room, in order; the receipts. */
function fill(j: { append(e: JournalEvent): Receipt }, rooms: string[]): Receipt[] {
  return rooms.flatMap((room) => [1, 2, 3].map((s) => j.append(say(room, s))));
}

/** The bytes of history.db and its WAL as text, to look for what must not be there. */
function historyDbBytes(dir: string): string {
  const path = historyDbPath(dir);
  return [path, `${path}-wal`].map((p) => (existsSync(p) ? readFileSync(p).toString("latin1") : "")).join("");
}

function capture(): { log: Logger; events: { level: string; event: string; fields: Record<string, unknown> }[] } {
  const events: { level: string; event: string; fields: Record<string, unknown> }[] = [];
  return {
    events,
    log: {
      info: (event, fields = {}) => void events.push({ level: "info", event, fields }),
      warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }),
    },
  };
}

const linesOnDisk = (dir: string): number => entriesOf(dir).length;

describe("history in memory is bounded; the rest is in history.db", () => {
  test("TranscriptJournal: after 40 rooms, memory holds the 5 that fit the budget; a dropped room's history and number come back from history.db", async () => {
    const dir = freshDir();
    const budget = 5 * roomBytes("room00", 3);
    const j = open(dir, { historyMemory: budget, now: () => T });
    await saved(fill(j, ROOMS));
    expect(j.rooms.size).toBe(5);
    expect(j.rooms.bytes).toBeLessThanOrEqual(budget);
    expect(ROOMS.filter((r) => j.rooms.holds(r))).toEqual(ROOMS.slice(-5));

    // room00 is not in memory: recent() reads it back, as recorded (the entry's ts)
    expect(j.recent("room00", 50)).toEqual([1, 2, 3].map((s) => ({ ...roomMessage("room00", s), ts: T })));
    expect(j.rooms.holds("room00")).toBe(true);
    expect(j.rooms.size).toBe(5);
    expect(j.lastSeq("room01")).toBe(3);
    await saved([j.append(say("room01", 4))]);
    expect(j.recent("room01", 2).map((m) => m.seq)).toEqual([3, 4]);
    // room01 grew: two rooms made way for it
    expect(j.rooms.size).toBe(4);
    expect(j.rooms.bytes).toBeLessThanOrEqual(budget);
    j.close("shutdown");
  });

  test("MemoryJournal: the same bound; a dropped room loses its history (no disk) but never its number", () => {
    const budget = 5 * roomBytes("room00", 3);
    const j = new MemoryJournal(50, budget);
    fill(j, ROOMS);
    expect(j.rooms.size).toBe(5);
    expect(j.rooms.bytes).toBeLessThanOrEqual(budget);
    expect(j.recent("room39", 50).map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(j.recent("room00", 50)).toEqual([]);
    expect(j.lastSeq("room00")).toBe(3);
  });

  test("room and direct numbering continue after eviction and after restarts, with --history 0 too", async () => {
    const dir = freshDir();
    for (const history of [50, 0]) {
      const d = join(dir, String(history), "transcript");
      let j = open(d, { history, historyMemory: 0 });
      await saved([...fill(j, ROOMS.slice(0, 4)), j.append(dm(1)), j.append(dm(2))]);
      // with a budget of 0, nothing stays in memory once it is in history.db
      expect(j.rooms.size).toBe(0);
      expect(ROOMS.slice(0, 4).map((r) => j.lastSeq(r))).toEqual([3, 3, 3, 3]);
      await saved([j.append(say("room00", 4))]);
      j.close("shutdown");
      j = open(d, { history, historyMemory: 0 });
      expect(ROOMS.slice(0, 4).map((r) => j.lastSeq(r))).toEqual([4, 3, 3, 3]);
      expect(j.lastDirectSeq()).toBe(2);
      expect(j.recent("room00", 50).map((m) => m.seq)).toEqual(history === 0 ? [] : [1, 2, 3, 4]);
      j.close("shutdown");
    }
  });

  test("sealed: history.db never holds a text in the clear; dropped rooms come back while the server runs, not after a restart", async () => {
    const auditor = x25519Generate();
    const dir = freshDir();
    let j = open(dir, { auditorKey: auditor.publicKey, historyMemory: 2 * roomBytes("room00", 3) });
    await saved(fill(j, ROOMS.slice(0, 10)));
    expect(j.rooms.holds("room00")).toBe(false);
    expect(historyDbBytes(dir)).toContain("room00"); // the rows are there…
    expect(historyDbBytes(dir)).not.toContain("from alice"); // …but not their texts
    expect(j.recent("room00", 50).map((m) => m.text)).toEqual([1, 2, 3].map((s) => `room00 #${s} from alice`));
    j.close("shutdown");
    expect(historyDbBytes(dir)).not.toContain("from alice");

    j = open(dir, { auditorKey: auditor.publicKey });
    expect(j.recent("room00", 50)).toEqual([]);
    expect(j.lastSeq("room00")).toBe(3);
    j.close("shutdown");
  });

  test("sealing turned on: the texts an unsealed run left in history.db are deleted from the file", async () => {
    const dir = freshDir();
    let j = open(dir);
    await saved(fill(j, ["lobby"]));
    j.close("shutdown");
    expect(historyDbBytes(dir)).toContain("lobby #2 from alice");

    j = open(dir, { auditorKey: x25519Generate().publicKey });
    expect(historyDbBytes(dir)).not.toContain("from alice");
    expect(j.recent("lobby", 50)).toEqual([]);
    expect(j.lastSeq("lobby")).toBe(3);
    j.close("shutdown");
  });
});

describe("history.db that cannot be written", () => {
  test("(a full disk) its rooms stay in memory whatever the budget, the failure is logged once, and a later write saves everything", async () => {
    const dir = freshDir();
    const { log, events } = capture();
    const j = open(dir, { historyMemory: 0, log });
    const full = spyOn(HistoryDb.prototype, "apply").mockImplementation(() => {
      throw new Error("database or disk is full");
    });
    spies.push(full);
    await saved(fill(j, ["lobby"]));
    await saved([j.append(say("ops", 1))]);
    expect(events.filter((e) => e.event.startsWith("history_db")).map((e) => [e.event, e.fields.error])).toEqual([["history_db_failed", "database or disk is full"]]);
    expect(["lobby", "ops"].map((r) => j.rooms.holds(r))).toEqual([true, true]);
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual([1, 2, 3]);

    full.mockRestore();
    await saved([j.append(say("lobby", 4))]);
    expect(events.map((e) => e.event)).toContain("history_db_recovered");
    expect(j.rooms.size).toBe(0);
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(j.lastSeq("ops")).toBe(1);
    j.close("shutdown");
  });
});

describe("start-up reads the transcript's tail; history.db is rebuilt when it must be", () => {
  test("a clean restart reads only the last file; files already applied can be archived", async () => {
    const dir = freshDir();
    let j = open(dir, { rotateBytes: 4096 });
    await saved(fill(j, ROOMS));
    j.close("shutdown");
    expect(transcriptFiles(dir).length).toBeGreaterThan(5);
    const linesOfLastFile = (): number => readFileSync(join(dir, transcriptFiles(dir).at(-1)!), "utf8").split("\n").length - 1;
    const total = linesOnDisk(dir);
    let last = linesOfLastFile();

    // only the last file is read (history.db applied everything up to its server_stop checkpoint)
    j = open(dir, { rotateBytes: 4096 });
    expect(j.linesRead).toBeLessThanOrEqual(last);
    expect(j.linesRead).toBeLessThan(total / 5);
    j.close("shutdown");

    // every file but the last is archived away: history and numbering are still all there
    for (const f of transcriptFiles(dir).slice(0, -1)) rmSync(join(dir, f));
    last = linesOfLastFile();
    const { log, events } = capture();
    j = open(dir, { rotateBytes: 4096, log });
    expect(j.linesRead).toBeLessThanOrEqual(last);
    expect(events.filter((e) => e.level === "warn")).toEqual([]);
    expect(j.recent("room00", 50).map((m) => m.text)).toEqual([1, 2, 3].map((s) => `room00 #${s} from alice`));
    expect(ROOMS.map((r) => j.lastSeq(r))).toEqual(ROOMS.map(() => 3));
    j.close("shutdown");
  });

  test("the file holding history.db's last entry archived too: the files after it are replayed, nothing else", async () => {
    const dir = freshDir();
    const j1 = open(dir, { now: () => T });
    await saved(fill(j1, ["lobby"]));
    j1.close("shutdown");
    // the next day's run starts a new file, and dies before history.db gets its messages
    const j2 = open(dir, { now: () => T + 86_400_000 });
    await Promise.all([j2.append(say("lobby", 4)), j2.append(say("ops", 1))].map((r) => r.durable));
    const [first, ...rest] = transcriptFiles(dir);
    expect(rest.length).toBe(1);
    rmSync(join(dir, first!));
    const { log, events } = capture();
    const j3 = open(dir, { now: () => T + 86_400_000, log });
    expect(events.filter((e) => e.level === "warn").map((e) => e.event)).toEqual(["transcript_unclean_stop"]);
    expect(j3.recent("lobby", 50).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(j3.lastSeq("ops")).toBe(1);
    j3.close("shutdown");
  });

  test("after a crash, the entries history.db had not got yet are replayed", async () => {
    const dir = freshDir();
    const j1 = open(dir);
    await saved(fill(j1, ROOMS.slice(0, 3)));
    // durable in the transcript, but the process dies before history.db's turn
    await Promise.all([j1.append(say("room00", 4)), j1.append(dm(7))].map((r) => r.durable));
    const { log, events } = capture();
    const j2 = open(dir, { log });
    expect(events.map((e) => e.event)).toEqual(["transcript_unclean_stop", "history_loaded"]);
    expect(j2.recent("room00", 50).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(j2.lastDirectSeq()).toBe(7);
    j2.close("shutdown");
  });

  test("history.db deleted, not a database, or from another version: rebuilt from the whole transcript, and logged (saying which)", async () => {
    const dir = freshDir();
    let j = open(dir);
    await saved([...fill(j, ROOMS.slice(0, 3)), j.append(dm(5))]);
    j.close("shutdown");
    for (const damage of ["deleted", "garbage", "another version"]) {
      const path = historyDbPath(dir);
      if (damage === "another version") {
        const db = new Database(path);
        db.exec("PRAGMA user_version = 1");
        db.close();
      } else for (const p of [path, `${path}-wal`, `${path}-shm`]) rmSync(p, { force: true });
      if (damage === "garbage") writeFileSync(path, "this is not a database, it is ".repeat(500));
      const { log, events } = capture();
      j = open(dir, { log });
      const reason = { deleted: "history.db is missing", garbage: expect.stringContaining("history.db is unreadable"), "another version": expect.stringMatching(/^history\.db was written by another version of securechat \(schema 1; this one keeps \d+\)$/) }[damage];
      expect(events.filter((e) => e.event === "history_rebuild").map((e) => String(e.fields.reason))).toEqual([reason]);
      expect(j.linesRead).toBe(linesOnDisk(dir));
      expect(ROOMS.slice(0, 3).map((r) => j.recent(r, 50).map((m) => m.seq))).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
      expect(j.lastDirectSeq()).toBe(5);
      j.close("shutdown");
    }
  });

  test("a history.db that does not match the transcript is rebuilt, and its numbers never go down", async () => {
    const a = freshDir();
    const b = freshDir();
    let j = open(a);
    await saved(fill(j, ["lobby", "lobby2"]).concat([j.append(say("lobby", 4)), j.append(say("lobby", 5))]));
    j.close("shutdown");
    j = open(b);
    await saved([j.append(say("lobby", 1)), j.append(say("ops", 1))]);
    j.close("shutdown");
    cpSync(historyDbPath(a), historyDbPath(b));

    const { log, events } = capture();
    j = open(b, { log });
    expect(events.some((e) => e.event === "history_rebuild")).toBe(true);
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual([1]); // what b's transcript holds
    expect(j.lastSeq("lobby")).toBe(5); // but never a number a's history.db had seen used
    expect(j.lastSeq("ops")).toBe(1);
    j.close("shutdown");
  });

  test("a larger --history than history.db kept: rebuilt from the transcript, so every kept message is shown", async () => {
    const dir = freshDir();
    let j = open(dir, { history: 2 });
    await saved([1, 2, 3, 4, 5].map((s) => j.append(say("lobby", s))));
    j.close("shutdown");
    j = open(dir, { history: 2 });
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual([4, 5]);
    j.close("shutdown");
    j = open(dir, { history: 4 });
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual([2, 3, 4, 5]);
    j.close("shutdown");
  });
});

describe("messages a crashed run never signed (TRANSCRIPT.md §2.5, §8.2)", () => {
  test("are left out of the history rebuilt at start, but their numbers stay used; signed ones are shown", async () => {
    const dir = freshDir();
    const j = open(dir);
    const signed = j.append(say("lobby", 1));
    expect(await settle(signed.durable)).toBe("resolved"); // a checkpoint signs it before its ack
    await j.close("crash is simulated below");
    // The files as a crashed run leaves them: after the last checkpoint, a
    // message no checkpoint signed (written by someone with the files but not
    // the host key, or by the run before it could sign) — and no server_stop.
    const file = join(dir, transcriptFiles(dir).at(-1)!);
    const lines = readFileSync(file, "utf8").split("\n").slice(0, -1);
    const kept = lines.slice(0, -2); // drop server_stop and its checkpoint
    const last = parseEntry(kept.at(-1)!);
    const forged = makeEntryLine(last.hash, last.seq + 1, last.ts, "message", { room: "lobby", room_seq: 2, from: "alice", text: "100,000 EUR to mallory" });
    writeFileSync(file, `${kept.join("\n")}\n${forged.line}`);
    rmSync(historyDbPath(dir), { force: true }); // rebuilt from the transcript
    const again = open(dir);
    try {
      expect(again.recent("lobby", 50).map((m) => m.text)).toEqual(["lobby #1 from alice"]);
      expect(again.lastSeq("lobby")).toBe(2);
    } finally {
      await again.close("done");
    }
  });
});

describe("direct messages kept for late delivery and /history @user (PROTOCOL.md §7.3)", () => {
  const to = (seq: number, from: string, recipient: string, stored = false): JournalEvent => ({
    kind: "direct",
    message: { type: "direct", seq, ts: T + seq, from, to: recipient, text: `${from} to ${recipient} #${seq}`},
    ...(stored ? { stored: true } : {}),
  });
  const login = (user: string): JournalEvent => ({ kind: "session_open", user, session: toBase64(new Uint8Array(16)), source: "127.0.0.1", ts: T });
  const seqs = (ms: { seq: number }[]) => ms.map((m) => m.seq);

  test("a stored DM is a transcript entry with stored: true, and is kept before and after history.db has it", async () => {
    const dir = freshDir();
    const j = open(dir);
    const r = j.append(to(1, "alice", "carol", true));
    // not yet in history.db: read from what waits for it
    expect(seqs(j.missedDirects("carol", 0, 0, 10))).toEqual([1]);
    expect(j.undelivered("carol", 0)).toBe(1);
    await saved([r]);
    expect(seqs(j.missedDirects("carol", 0, 0, 10))).toEqual([1]);
    expect(j.missedDirects("carol", 0, 0, 10)[0]).toEqual(expect.objectContaining({ from: "alice", to: "carol", text: "alice to carol #1" }));
    j.close("shutdown");
    expect(entriesOf(dir).filter((e) => e.type === "direct").map(own)).toEqual([{ dm_seq: 1, from: "alice", to: "carol", text: "alice to carol #1", stored: true }]);
  });

  test("the DMs a device missed: stored or delivered live, after its marker, before and after history.db has them", async () => {
    const dir = freshDir();
    const j = open(dir);
    const rs = [j.append(to(1, "alice", "carol", true)), j.append(to(2, "bob", "carol")), j.append(to(3, "carol", "bob")), j.append(to(4, "alice", "carol"))];
    expect(seqs(j.missedDirects("carol", 0, 0, 10))).toEqual([1, 2, 4]);
    expect(seqs(j.missedDirects("carol", 0, 2, 10))).toEqual([4]);
    expect(seqs(j.missedDirects("carol", 0, 0, 2))).toEqual([2, 4]);
    await saved(rs);
    expect(seqs(j.missedDirects("carol", 0, 0, 10))).toEqual([1, 2, 4]);
    expect(seqs(j.missedDirects("carol", 0, 1, 10))).toEqual([2, 4]);
    expect(seqs(j.missedDirects("carol", 0, 0, 2))).toEqual([2, 4]);
    j.close("shutdown");
  });

  test("stored DMs and who was shown them survive a crash and a rebuild of history.db: one source, the transcript", async () => {
    const dir = freshDir();
    const j1 = open(dir);
    const rs = [j1.append(to(1, "alice", "carol", true)), j1.append(to(2, "alice", "bob")), j1.append(login("carol")), j1.append(to(3, "bob", "carol", true))];
    expect(j1.undelivered("carol", 0)).toBe(1); // #1 was shown to carol's login, #3 not yet
    await Promise.all(rs.map((r) => r.durable));
    // no close: the process died before history.db got them
    const j2 = open(dir);
    expect(seqs(j2.missedDirects("carol", 0, 0, 10))).toEqual([1, 3]);
    expect(j2.undelivered("carol", 0)).toBe(1);
    expect(seqs(j2.directsBetween("alice", "bob", 0, Number.MAX_SAFE_INTEGER, 10))).toEqual([2]);
    expect(seqs(j2.directsBetween("carol", "alice", 0, Number.MAX_SAFE_INTEGER, 10))).toEqual([1]);
    j2.close("shutdown");
    const path = historyDbPath(dir);
    for (const p of [path, `${path}-wal`, `${path}-shm`]) rmSync(p, { force: true });
    const j3 = open(dir);
    expect(seqs(j3.missedDirects("carol", 0, 0, 10))).toEqual([1, 3]);
    expect(j3.undelivered("carol", 0)).toBe(1);
    // the retention: older than `since` is not shown, and expireDirects forgets it
    // (the entries' ts are the writer's clock: #1 and #3 may share a millisecond)
    const [ts1, ts3] = j3.missedDirects("carol", 0, 0, 10).map((m) => m.ts) as [number, number];
    expect(seqs(j3.missedDirects("carol", ts1, 0, 10))).toEqual([1, 3]);
    expect(j3.missedDirects("carol", ts3 + 1, 0, 10)).toEqual([]);
    j3.expireDirects(ts3 + 1);
    expect(j3.missedDirects("carol", 0, 0, 10)).toEqual([]);
    expect(j3.directsBetween("alice", "bob", 0, Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
    j3.close("shutdown");
  });

  test("paging between two users: the newest `limit` before `before`, oldest first", async () => {
    const dir = freshDir();
    const j = open(dir);
    const rs: Receipt[] = [];
    for (let s = 1; s <= 6; s++) rs.push(j.append(s % 2 ? to(s, "alice", "bob") : to(s, "bob", "alice")));
    rs.push(j.append(to(7, "alice", "carol")));
    await saved(rs);
    rs.length = 0;
    rs.push(j.append(to(8, "bob", "alice"))); // still waiting for history.db
    expect(seqs(j.directsBetween("alice", "bob", 0, Number.MAX_SAFE_INTEGER, 3))).toEqual([5, 6, 8]);
    expect(seqs(j.directsBetween("bob", "alice", 0, 5, 3))).toEqual([2, 3, 4]);
    expect(seqs(j.directsBetween("alice", "bob", 0, 2, 3))).toEqual([1]);
    await saved(rs);
    j.close("shutdown");
  });
});

describe("persistent rooms (PROTOCOL.md §7.9): their state is rebuilt from room_change entries", () => {
  const change = (action: RoomChange["action"], more: Partial<RoomChange> = {}): JournalEvent => ({
    kind: "room_change",
    room: "ops",
    user: "alice",
    session: SESSION,
    owner: "alice",
    action,
    ts: T,
    ...more,
  });
  const view = (j: TranscriptJournal) => Object.fromEntries([...j.roomStates()].map(([name, s]) => [name, JSON.parse(roomStateToJson(s))]));
  const OPS = { owner: "alice", ops: ["bob"], topic: "release friday", invite_only: true, secret: false, bans: ["carol"], mutes: ["dave"], invites: ["erin"] };

  test("each change is an entry with who did it; the state comes back after a clean restart, a crash, and a rebuild of history.db", async () => {
    const dir = freshDir();
    const j1 = open(dir);
    const rs = [
      change("topic", { text: "release friday" }),
      change("op", { target: "bob" }),
      change("op", { target: "carol" }),
      change("invite", { target: "carol" }),
      change("ban", { target: "carol" }),
      change("kick", { target: "dave", text: "spam" }),
      change("mute", { target: "dave" }),
      change("invite", { target: "erin" }),
      change("mode", { inviteOnly: true, secret: false }),
      { ...change("topic", { text: "gone soon" }), room: "tmp" },
      { ...change("drop"), room: "tmp" },
    ].map((e) => j1.append(e));
    await Promise.all(rs.map((r) => r.durable));
    expect(view(j1)).toEqual({ ops: OPS });
    // no close: the process died before history.db got them all
    const j2 = open(dir);
    expect(view(j2)).toEqual({ ops: OPS });
    j2.close("shutdown");
    const entries = entriesOf(dir).filter((e) => e.type === "room_change");
    expect(entries.map(own)[5]).toEqual({ room: "ops", user: "alice", session: SESSION, owner: "alice", action: "kick", target: "dave", text: "spam" });
    expect(entries.map(own)[8]).toEqual({ room: "ops", user: "alice", session: SESSION, owner: "alice", action: "mode", invite_only: true, secret: false });
    const j3 = open(dir);
    expect(view(j3)).toEqual({ ops: OPS });
    j3.close("shutdown");
    const path = historyDbPath(dir);
    for (const p of [path, `${path}-wal`, `${path}-shm`]) rmSync(p, { force: true });
    const j4 = open(dir);
    expect(view(j4)).toEqual({ ops: OPS });
    j4.append(change("drop"));
    j4.close("shutdown");
    expect(view(open(dir))).toEqual({});
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
  });

  test("MemoryJournal keeps them too, so a new chat core on it (a restart in tests) gets them back", () => {
    const j = new MemoryJournal(50);
    j.append(change("topic", { text: "t" }));
    expect([...j.roomStates().keys()]).toEqual(["ops"]);
    // a copy: changing it changes nothing in the journal
    j.roomStates().get("ops")!.bans.add("x");
    expect(j.roomStates().get("ops")!.bans.size).toBe(0);
  });
});

describe("after: a member catching up reads past what a join shows (serve --history-keep)", () => {
  const seqs = (ms: RoomMessage[]): number[] => ms.map((m) => m.seq);
  const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);

  test("history 5, keep 100: every message after `since`, paged, from history.db and memory, with edits and deletes as they are now", async () => {
    const dir = freshDir();
    let j = open(dir, { history: 5, historyKeep: 100 });
    const rs = range(1, 40).map((s) => j.append(say("lobby", s)));
    rs.push(j.append({ kind: "edit", room: "lobby", seq: 12, user: "alice", session: SESSION, ref: rs[11]!.seq!, text: "reworded", ts: T + 41 }));
    rs.push(j.append({ kind: "delete", room: "lobby", seq: 38, user: "alice", session: SESSION, ref: rs[37]!.seq!, ts: T + 42 }));
    await saved(rs);
    // a join is still shown 5
    expect(seqs(j.recent("lobby", 50))).toEqual(range(36, 40));
    expect(seqs(j.after("lobby", 3, 10))).toEqual(range(4, 13));
    expect(seqs(j.after("lobby", 30, 50))).toEqual(range(31, 40));
    expect(seqs(j.after("lobby", 0, 1000))).toEqual(range(1, 40));
    expect(j.after("lobby", 11, 1)[0]).toMatchObject({ seq: 12, text: "reworded", edited: true });
    expect(j.after("lobby", 37, 1)[0]).toMatchObject({ seq: 38, deleted: true });
    expect(j.after("lobby", 40, 10)).toEqual([]);
    expect(j.after("nowhere", 0, 10)).toEqual([]);
    j.close("shutdown");
    // after a restart, from history.db, the same
    j = open(dir, { history: 5, historyKeep: 100 });
    expect(seqs(j.after("lobby", 3, 10))).toEqual(range(4, 13));
    expect(seqs(j.after("lobby", 0, 1000))).toEqual(range(1, 40));
    expect(j.after("lobby", 11, 1)[0]).toMatchObject({ seq: 12, text: "reworded" });
    j.close("shutdown");
  });

  test("messages not yet in history.db come from memory, in order after those that are", async () => {
    const dir = freshDir();
    const j = open(dir, { history: 5, historyKeep: 100, historyFlushMs: 60_000 });
    const first = range(1, 20).map((s) => j.append(say("lobby", s)));
    await saved(first);
    j.append(say("lobby", 21));
    j.append(say("lobby", 22));
    expect(seqs(j.after("lobby", 10, 100))).toEqual(range(11, 22));
    j.close("shutdown");
  });

  test("history.db keeps the newest `keep` per room: older ones are gone, and `after` says so by starting later", async () => {
    const dir = freshDir();
    const j = open(dir, { history: 5, historyKeep: 20 });
    await saved(range(1, 50).map((s) => j.append(say("lobby", s))));
    expect(seqs(j.after("lobby", 0, 100))).toEqual(range(31, 50));
    j.close("shutdown");
  });

  test("MemoryJournal: what it holds after `since`", () => {
    const j = new MemoryJournal(10);
    for (const s of range(1, 30)) j.append(say("lobby", s));
    expect(seqs(j.after("lobby", 25, 3))).toEqual([26, 27, 28]);
    expect(seqs(j.after("lobby", 0, 100))).toEqual(range(21, 30));
  });
});
