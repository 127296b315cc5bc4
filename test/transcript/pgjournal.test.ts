/**
 * The chat core's Journal on PostgreSQL (transcript/pgjournal.ts) against a
 * real server (test/engines.ts): what the core reads back after a restart —
 * rooms' numbers and history, edits, stored DMs and who was shown them,
 * persistent rooms — comes from the history tables, committed with the
 * entry's line or not at all; reads are synchronous once `prepare` loaded
 * what they need.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { SQL } from "bun";
import { toBase64 } from "../../src/bytes.ts";
import { silentLogger } from "../../src/log.ts";
import type { JournalEvent, RoomMessage } from "../../src/store/journal.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { roomStateToJson } from "../../src/store/roomstate.ts";
import { CAUGHT_UP_MAX, PgJournal, type PgJournalOptions } from "../../src/transcript/pgjournal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { type PostgresHandle, requireEngines, startPostgres } from "../engines.ts";
import { hostKeyPair } from "./helpers.ts";

const hasPg = requireEngines("postgres");
const HOST = hostKeyPair(11);
const T = Date.UTC(2026, 11, 3, 9, 0, 0);
const SESSION = toBase64(new Uint8Array(16).fill(0xab));

function say(room: string, seq: number, text = `${room} #${seq}`): JournalEvent {
  const message: RoomMessage = { type: "message", room, seq, ts: T + seq, from: "alice", text };
  return { kind: "message", message };
}

function dm(seq: number, to: string, stored: boolean): JournalEvent {
  return { kind: "direct", message: { type: "direct", seq, ts: T + seq, from: "alice", to, text: `dm #${seq}` }, stored };
}

describe.skipIf(!hasPg)("PgJournal", () => {
  let pg: PostgresHandle;
  let sql: SQL;
  const open: PgJournal[] = [];
  beforeAll(async () => {
    // pg_stat_statements: a test counts the statements a commit makes.
    pg = await startPostgres({ fsync: false, settings: { shared_preload_libraries: "pg_stat_statements" } });
  });
  afterAll(async () => {
    await pg?.stop();
  });
  afterEach(async () => {
    for (const j of open.splice(0)) {
      j.close("test end");
      await j.closed().catch(() => {});
    }
    await sql?.close();
  });

  async function fresh(): Promise<void> {
    sql = openPg(pg.url, { max: 4 });
    await sql.unsafe("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
  }

  async function journal(over: Partial<PgJournalOptions> = {}): Promise<PgJournal> {
    const j = await PgJournal.open(sql, { ...DEFAULT_WRITER, fsync: "always", dir: "(database)", hostKey: HOST, version: "test", log: silentLogger, history: 50, holder: "node-a", ...over });
    if (!j) throw new Error("lease held");
    open.push(j);
    return j;
  }

  async function restart(j: PgJournal, over: Partial<PgJournalOptions> = {}): Promise<PgJournal> {
    j.close("restart");
    await j.closed();
    open.splice(open.indexOf(j), 1);
    return journal(over);
  }

  /** A fresh log with 40 messages in room busy (history 5), its journal restarted: nothing of the room in memory. */
  async function busyRoom(historyKeep: number): Promise<PgJournal> {
    await fresh();
    const j = await journal({ history: 5, historyKeep });
    const acks: (Promise<void> | undefined)[] = [];
    for (let i = 1; i <= 40; i++) acks.push(j.append(say("busy", i)).durable);
    await Promise.all(acks);
    return restart(j, { history: 5, historyKeep });
  }

  test("a member catching up past --history: prepare({room, since}) loads every kept message after it, after() gives them in order with memory's newer ones", async () => {
    const j = await busyRoom(100);
    // after a restart nothing of the room is in memory: prepared, then read
    await j.prepare({ room: "busy" });
    expect(j.recent("busy", 50).map((m) => m.seq)).toEqual([36, 37, 38, 39, 40]);
    await j.prepare({ room: "busy", since: 2, limit: 100 });
    const more = j.append(say("busy", 41)).durable;
    expect(j.after("busy", 2, 100).map((m) => m.seq)).toEqual(Array.from({ length: 39 }, (_, i) => i + 3));
    // what prepare loaded is read once (memory stays bounded): each page prepares again
    await j.prepare({ room: "busy", since: 2, limit: 10 });
    expect(j.after("busy", 2, 10).map((m) => m.seq)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // memory holds all after 37: no database read needed
    expect(j.prepare({ room: "busy", since: 37 })).toBeNull();
    expect(j.after("busy", 37, 100).map((m) => m.seq)).toEqual([38, 39, 40, 41]);
    await more;
  });

  /** `sql`, counting the rows its queries of log_messages return (what a catch-up costs the database and the core's memory). */
  function countingRows(of: SQL, seen: { rows: number }): SQL {
    return new Proxy(of, {
      apply(target, self, args) {
        const q = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args) as Promise<unknown[]>;
        const text = Array.isArray(args[0]) ? (args[0] as string[]).join("?") : "";
        if (!text.includes("FROM log_messages")) return q;
        return q.then((rows) => {
          seen.rows += rows.length;
          return rows;
        });
      },
      get(target, p) {
        const v = Reflect.get(target, p, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }

  test("a catch-up page reads one page from the database, and only from the room's last --history-keep: since 0 does not reach the room's first message", async () => {
    const j = await busyRoom(20);
    j.close("restart");
    await j.closed();
    open.splice(open.indexOf(j), 1);
    const seen = { rows: 0 };
    const k = await PgJournal.open(countingRows(sql, seen), { ...DEFAULT_WRITER, fsync: "always", dir: "(database)", hostKey: HOST, version: "test", log: silentLogger, history: 5, historyKeep: 20, holder: "node-a" });
    if (!k) throw new Error("lease held");
    open.push(k);
    // a joiner with since 0, paging as the chat core does (limit: history + 1)
    await k.prepare({ room: "busy", since: 0 });
    expect(k.after("busy", 0, 6).map((m) => m.seq)).toEqual([21, 22, 23, 24, 25, 26]);
    // the room's recent history (5, loaded once) and one page (6): not the 20 kept
    expect(seen.rows).toBeLessThanOrEqual(5 + 6);
    await k.prepare({ room: "busy", since: 26 });
    expect(k.after("busy", 26, 6).map((m) => m.seq)).toEqual([27, 28, 29, 30, 31, 32]);
    expect(seen.rows).toBeLessThanOrEqual(5 + 6 + 6);
  });

  test("two members catching up in one room at once, from different seqs, each read every kept message after their own", async () => {
    const j = await busyRoom(100);
    // both rejoins prepared before either is answered (a reconnect storm after a core change)
    await Promise.all([j.prepare({ room: "busy", since: 2 }), j.prepare({ room: "busy", since: 20 })]);
    expect(j.after("busy", 20, 6).map((m) => m.seq)).toEqual([21, 22, 23, 24, 25, 26]);
    expect(j.after("busy", 2, 6).map((m) => m.seq)).toEqual([3, 4, 5, 6, 7, 8]);
  });

  test("catch-up pages whose read never comes (a /history or a refused join of rooms one is not in) do not pile up: dropped after 60 s, and never more than CAUGHT_UP_MAX", async () => {
    await fresh();
    let now = T;
    const j = await journal({ now: () => now });
    await j.append(say("busy", 1)).durable;
    // an attacker's requests, each for a room (existing or not) and a since, none of them ever read
    for (let i = 0; i < 200; i++) await j.prepare({ room: `nowhere-${i}`, since: i });
    await j.prepare({ room: "busy", since: 1 });
    expect(j.memory.pages).toBe(201);
    // a minute later, the next catch-up finds them gone (before: kept for the core's life, one per room)
    now += 60_001;
    await j.prepare({ room: "busy", since: 0 });
    expect(j.memory.pages).toBe(1);
    expect(j.after("busy", 0, 6).map((m) => m.seq)).toEqual([1]);
    expect(j.memory.pages).toBe(0);
    // within the minute, however many: the oldest go first
    for (let i = 0; i < CAUGHT_UP_MAX + 50; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => j.prepare({ room: `nowhere-${i + k}`, since: 0 })));
    expect(j.memory.pages).toBe(CAUGHT_UP_MAX);
  }, 120_000);

  test("a room's history loaded for a read that never comes (a join or an edit refused) is dropped after 60 s, not kept until someone joins", async () => {
    await fresh();
    let now = T;
    let j = await journal({ now: () => now });
    const acks: (Promise<void> | undefined)[] = [];
    for (let i = 1; i <= 30; i++) acks.push(j.append(say(`room-${i}`, 1)).durable);
    await Promise.all(acks);
    j = await restart(j, { now: () => now });
    // refused joins of every room in the database: each room's history loaded, none read
    for (let i = 1; i <= 30; i++) await j.prepare({ room: `room-${i}` });
    expect(j.memory.rooms).toBe(30);
    now += 60_001;
    expect(j.prepare({ room: "room-1" })).not.toBeNull();
    expect(j.memory.rooms).toBe(0);
  }, 60_000);

  test("after a restart: room numbers at once, history (with its edits) once prepared, stored DMs and who was shown them, persistent rooms", async () => {
    await fresh();
    let j = await journal();
    const acks: (Promise<void> | undefined)[] = [];
    for (let i = 1; i <= 5; i++) acks.push(j.append(say("ops", i)).durable);
    acks.push(j.append(say("dev", 1)).durable);
    acks.push(j.append({ kind: "edit", room: "ops", seq: 3, user: "alice", session: SESSION, ref: j.editable("ops", 3)!.tseq!, text: "third, edited", ts: T + 10 }).durable);
    acks.push(j.append(dm(1, "bob", true)).durable);
    acks.push(j.append(dm(2, "bob", true)).durable);
    acks.push(j.append(dm(3, "carol", false)).durable);
    acks.push(j.append({ kind: "room_change", room: "ops", user: "alice", session: SESSION, owner: "alice", action: "topic", text: "release friday", ts: T }).durable);
    await Promise.all(acks);

    j = await restart(j);
    expect(j.lastSeq("ops")).toBe(5);
    expect(j.lastSeq("dev")).toBe(1);
    expect(j.lastDirectSeq()).toBe(3);
    expect(JSON.parse(roomStateToJson(j.roomStates().get("ops")!)).topic).toBe("release friday");
    const ready = j.prepare({ room: "ops", missed: { user: "bob", since: 0, limit: 10 } });
    expect(ready).not.toBeNull();
    await ready;
    expect(j.prepare({ room: "ops" })).toBeNull();
    expect(j.recent("ops", 10).map((m) => m.text)).toEqual(["ops #1", "ops #2", "third, edited", "ops #4", "ops #5"]);
    expect(j.recent("ops", 10)[2]!.edited).toBe(true);
    expect(j.missedDirects("bob", 0, 0, 10).map((m) => m.seq)).toEqual([1, 2]);
    await j.prepare({ undelivered: { user: "bob", since: 0 } });
    expect(j.undelivered("bob", 0)).toBe(2);
    await j.prepare({ direct: 2 });
    expect(j.editableDirect(2)?.message.text).toBe("dm #2");

    // bob logs in: the stored DMs were shown; that survives a restart too
    await j.prepare({ undelivered: { user: "bob", since: 0 } });
    await j.append({ kind: "session_open", user: "bob", session: SESSION, source: "127.0.0.1", ts: T + 20 }).durable;
    expect(j.undelivered("bob", 0)).toBe(0);
    await j.append(say("ops", 6)).durable;
    j = await restart(j);
    await j.prepare({ room: "ops", undelivered: { user: "bob", since: 0 } });
    expect(j.undelivered("bob", 0)).toBe(0);
    await j.prepare({ missed: { user: "bob", since: 0, limit: 10 } });
    expect(j.missedDirects("bob", 0, 0, 10).map((m) => m.seq)).toEqual([1, 2]);
    expect(j.recent("ops", 2).map((m) => m.text)).toEqual(["ops #5", "ops #6"]);
    await j.prepare({ between: { a: "alice", b: "carol", since: 0, before: 100, limit: 10 } });
    expect(j.directsBetween("alice", "carol", 0, 100, 10).map((m) => m.seq)).toEqual([3]);
  }, 60_000);

  test("direct messages: each read loads its own bounded answer, and memory holds none of them once committed and read", async () => {
    await fresh();
    let j = await journal();
    // alice sends 300 DMs to bob while he is online (not stored), and 3 while he is away (stored)
    const acks: (Promise<void> | undefined)[] = [];
    for (let i = 1; i <= 300; i++) acks.push(j.append(dm(i, "bob", false)).durable);
    for (let i = 301; i <= 303; i++) acks.push(j.append(dm(i, "bob", true)).durable);
    await Promise.all(acks);
    expect(j.memory).toEqual({ directs: 0, answers: 0, pages: 0, rooms: 0 });
    j = await restart(j);
    // a login reads the stored ones only: its answer holds the cap's worth at most
    await j.prepare({ missed: { user: "bob", since: 0, limit: 2 } });
    expect(j.memory).toEqual({ directs: 0, answers: 1, pages: 0, rooms: 0 });
    expect(j.missedDirects("bob", 0, 0, 2).map((m) => m.seq)).toEqual([302, 303]);
    // /history @bob: one page, then the page before it
    await j.prepare({ between: { a: "alice", b: "bob", since: 0, before: Number.MAX_SAFE_INTEGER, limit: 11 } });
    expect(j.directsBetween("alice", "bob", 0, Number.MAX_SAFE_INTEGER, 11).map((m) => m.seq)).toEqual([293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303]);
    await j.prepare({ between: { a: "bob", b: "alice", since: 0, before: 293, limit: 3 } });
    expect(j.directsBetween("bob", "alice", 0, 293, 3).map((m) => m.seq)).toEqual([290, 291, 292]);
    expect(j.memory).toEqual({ directs: 0, answers: 0, pages: 0, rooms: 0 });
  }, 60_000);

  test("a DM committed while a read's query runs is in its answer; an edit of a DM committed before the restart reaches the table", async () => {
    await fresh();
    let j = await journal();
    await j.append(dm(1, "bob", true)).durable;
    j = await restart(j);
    const ready = j.prepare({ missed: { user: "bob", since: 0, limit: 10 } });
    await j.append(dm(2, "bob", true)).durable; // committed (and gone from memory) before the read
    await ready;
    expect(j.missedDirects("bob", 0, 0, 10).map((m) => m.seq)).toEqual([1, 2]);

    await j.prepare({ direct: 1 });
    const d = j.editableDirect(1)!;
    expect(d.message.text).toBe("dm #1");
    await j.append({ kind: "edit", to: "bob", seq: 1, user: "alice", session: SESSION, ref: d.tseq!, text: "dm #1, edited", ts: T + 50 }).durable;
    j = await restart(j);
    await j.prepare({ between: { a: "alice", b: "bob", since: 0, before: 100, limit: 10 } });
    expect(j.directsBetween("alice", "bob", 0, 100, 10).map((m) => m.text)).toEqual(["dm #1, edited", "dm #2"]);
  }, 60_000);

  test("a read nobody prepared sees only what memory holds, and says so in the log", async () => {
    await fresh();
    let j = await journal();
    await j.append(dm(1, "bob", true)).durable;
    const logged: string[] = [];
    const log = { ...silentLogger, warn: (event: string) => void logged.push(event) } as typeof silentLogger;
    j = await restart(j, { log });
    expect(j.missedDirects("bob", 0, 0, 10)).toEqual([]);
    expect(logged).toContain("history_unprepared");
  }, 60_000);

  test("a history row is committed with its entry's line, or not at all: a fenced writer's message leaves neither", async () => {
    await fresh();
    const j = await journal({ leaseMs: 1000, renewMs: 1e9 });
    await j.append(say("ops", 1)).durable;
    expect(Number((await sql`SELECT count(*) AS n FROM log_messages`)[0].n)).toBe(1);
    // the lease expires (this node paused) and another node takes it
    await sql`UPDATE log_lease SET expires_at = now() - interval '1 millisecond'`;
    const other = await PgJournal.open(sql, { ...DEFAULT_WRITER, fsync: "always", dir: "(database)", hostKey: HOST, version: "test", log: silentLogger, history: 50, holder: "node-b" });
    open.push(other!);
    await expect(j.append(say("ops", 2, "from the fenced node")).durable!).rejects.toThrow(/another writer/);
    const texts = (await sql`SELECT msg FROM log_messages ORDER BY seq`).map((r: { msg: RoomMessage }) => r.msg.text);
    expect(texts).toEqual(["ops #1"]);
    expect(Number((await sql`SELECT count(*) AS n FROM log_lines WHERE convert_from(bytes, 'UTF8') LIKE '%fenced node%'`)[0].n)).toBe(0);
    expect(other!.lastSeq("ops")).toBe(1);
  }, 60_000);

  test("a commit of many messages writes their history rows in a few statements, not two per message (one per message could not keep up with a busy room)", async () => {
    await fresh();
    await sql`CREATE EXTENSION pg_stat_statements`;
    const j = await journal({ fsync: "batch" });
    await sql`SELECT pg_stat_statements_reset()`;
    const acks: Promise<void>[] = [];
    for (let i = 1; i <= 200; i++) acks.push(j.append(say(i % 2 ? "odd" : "even", Math.ceil(i / 2))).durable!);
    // In the same commit: an edit of a message of it, and a room's state beside its number.
    acks.push(j.append({ kind: "edit", room: "odd", seq: 100, user: "alice", session: SESSION, ref: j.editable("odd", 100)!.tseq!, text: "odd #100, edited", ts: T + 500 }).durable!);
    acks.push(j.append({ kind: "room_change", room: "odd", user: "alice", session: SESSION, owner: "alice", action: "topic", text: "busy", ts: T }).durable!);
    await Promise.all(acks);
    const calls = async (prefix: string): Promise<number> =>
      Number((await sql`SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_statements WHERE query LIKE ${`${prefix}%`}`)[0].n);
    const commits = await calls("UPDATE log_head SET seq");
    expect(commits).toBeGreaterThan(0);
    // The writer groups what was appended in one turn: far fewer commits than messages.
    expect(commits).toBeLessThan(20);
    expect(await calls("INSERT INTO log_messages")).toBeLessThanOrEqual(commits);
    // (+ 1: the room change's state is a statement of its own, in whichever commit it falls)
    expect(await calls("INSERT INTO log_rooms")).toBeLessThanOrEqual(commits + 1);
    // Every row is there, and what a restart reads back is whole.
    expect(Number((await sql`SELECT count(*) AS n FROM log_messages`)[0].n)).toBe(200);
    const rooms = await sql`SELECT room, last_seq FROM log_rooms ORDER BY room`;
    expect(rooms.map((r: { room: string; last_seq: string }) => [r.room, Number(r.last_seq)])).toEqual([["even", 100], ["odd", 100]]);
    const k = await restart(j);
    expect([k.lastSeq("odd"), k.lastSeq("even")]).toEqual([100, 100]);
    await k.prepare({ room: "odd" });
    expect(k.recent("odd", 3).map((m) => m.text)).toEqual(["odd #98", "odd #99", "odd #100, edited"]);
    expect(k.roomStates().get("odd")?.topic).toBe("busy");
  }, 60_000);

  test("a writer taking over the lease knows the client message ids its predecessor acknowledged, so a resend is answered with the first ack", async () => {
    await fresh();
    const j = await journal({ leaseMs: 1000, renewMs: 1e9 });
    const said = j.append({ ...(say("ops", 1) as Extract<JournalEvent, { kind: "message" }>), cid: "c1c1c1c1c1c1c1c1c1c1cw" });
    const sent = j.append({ ...(dm(1, "bob", true) as Extract<JournalEvent, { kind: "direct" }>), cid: "d2d2d2d2d2d2d2d2d2d2dw" });
    await Promise.all([said.durable, sent.durable]);
    j.append(say("ops", 2, "no id"));
    // The holder stops renewing (paused, or killed) and another node takes the lease.
    await sql`UPDATE log_lease SET expires_at = now() - interval '1 millisecond'`;
    const other = await PgJournal.open(sql, { ...DEFAULT_WRITER, fsync: "always", dir: "(database)", hostKey: HOST, version: "test", log: silentLogger, history: 50, holder: "node-b" });
    open.push(other!);
    expect(other!.ackedCids(0)).toEqual([
      { user: "alice", cid: "c1c1c1c1c1c1c1c1c1c1cw", seq: 1, ts: expect.any(Number), tseq: said.seq!, head: said.hash! },
      { user: "alice", cid: "d2d2d2d2d2d2d2d2d2d2dw", seq: 1, ts: expect.any(Number), tseq: sent.seq!, head: sent.hash!, stored: true },
    ]);
    const [first] = other!.ackedCids(0);
    expect(other!.ackedCids(first!.ts + 1e9)).toEqual([]);
  }, 60_000);
});
