/**
 * The transcript writer on PostgreSQL (transcript/pgstorage.ts,
 * store/pg/log.ts) against a real server (test/engines.ts): the same bytes
 * as the file storage, acks only after COMMIT, the writer lease and its
 * epoch fencing, and a database that goes away and comes back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { SQL } from "bun";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { LogFields, Logger } from "../../src/log.ts";
import { acquireLease, renewLease } from "../../src/store/pg/log.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { writeDirectory } from "../../src/transcript/pgread.ts";
import { PgStorage, type PgStorageOptions } from "../../src/transcript/pgstorage.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, TranscriptWriter, type WriterOptions } from "../../src/transcript/writer.ts";
import { type PostgresHandle, requireEngines, startPostgres } from "../engines.ts";
import { T0, hostKeyPair, tempDir } from "./helpers.ts";

const hasPg = requireEngines("postgres");
const HOST = hostKeyPair(7);
const NEVER = 1e9;

function collectingLog(): { log: Logger; events: { event: string; fields: LogFields }[] } {
  const events: { event: string; fields: LogFields }[] = [];
  const push = (event: string, fields: LogFields = {}) => void events.push({ event, fields });
  return { events, log: { info: push, warn: push } };
}

let roomSeq = 0;
function msg(from: string, text: string): { room: string; room_seq: number; from: string; text: string } {
  return { room: "ops", room_seq: ++roomSeq, from, text };
}

function options(over: Partial<WriterOptions> = {}): WriterOptions {
  return { ...DEFAULT_WRITER, fsync: "always", checkpointIntervalMs: NEVER, dir: "(database)", hostKey: HOST, version: "test", log: collectingLog().log, ...over };
}

async function storage(sql: SQL, over: Partial<PgStorageOptions> = {}): Promise<PgStorage> {
  const s = await PgStorage.open(sql, { holder: "node-a", log: collectingLog().log, ...over });
  if (!s) throw new Error("lease not taken");
  return s;
}

async function count(sql: SQL, where = "true"): Promise<number> {
  return Number((await sql.unsafe(`SELECT count(*) AS n FROM log_lines WHERE ${where}`))[0].n);
}

/** Polls until `cond()` or fails after `ms` (a generous bound for an event, not a speed claim). */
async function until(cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(20);
  }
}

describe.skipIf(!hasPg)("the transcript in PostgreSQL", () => {
  let pg: PostgresHandle;
  let sql: SQL;
  const open: TranscriptWriter[] = [];
  beforeAll(async () => {
    pg = await startPostgres({ fsync: false });
  });
  afterAll(async () => {
    await pg?.stop();
  });
  /** A fresh database per test: every table dropped. */
  async function fresh(): Promise<SQL> {
    sql = openPg(pg.url, { max: 4 });
    await sql.unsafe("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    return sql;
  }
  afterEach(async () => {
    for (const w of open.splice(0)) {
      w.close("test end");
      await w.closed().catch(() => {});
    }
    await sql?.close();
  });

  function writer(s: PgStorage, over: Partial<WriterOptions> = {}): TranscriptWriter {
    const w = TranscriptWriter.openOn(s, options(over));
    open.push(w);
    return w;
  }

  test("the lines in the database are byte for byte the files the file storage writes, and export back to a directory that verifies", async () => {
    await fresh();
    let t = T0;
    const now = () => (t += 1000);
    const over = { now, checkpointEvery: 5, rotateBytes: 2000 };
    /** The same appends, at the same times, through a writer opened by `openWriter`. */
    async function run(openWriter: () => TranscriptWriter | Promise<TranscriptWriter>): Promise<TranscriptWriter> {
      t = T0;
      roomSeq = 0;
      const w = await openWriter();
      const acks = Array.from({ length: 30 }, (_, i) => w.append("message", msg("alice", `line ${i} ünïcode`)).durable);
      await Promise.all(acks);
      w.close("done");
      await w.closed();
      return w;
    }
    const dir = join(tempDir("pglog"), "transcript");
    await run(() => TranscriptWriter.open(options({ dir, fsync: "always", ...over })));
    const db = await run(async () => TranscriptWriter.openOn(await storage(sql), options(over)));
    const out = join(tempDir("pglog-export"), "transcript");
    const wrote = await writeDirectory(sql, out);
    const names = readdirSync(dir).sort();
    expect(names.length).toBeGreaterThan(1); // rotation happened
    expect(readdirSync(out).sort()).toEqual(names);
    for (const n of names) expect(readFileSync(join(out, n), "utf8")).toEqual(readFileSync(join(dir, n), "utf8"));
    expect(wrote.lines).toBe(db.seq);
    const report = await verifyTranscript(out, { hostKey: HOST.publicKey });
    expect(report.problem).toBeNull();
    expect(report.lastSeq).toBe(db.seq);
  }, 30_000);

  test("an ack's line is committed when it resolves; a new writer continues the chain from the database", async () => {
    await fresh();
    const w = writer(await storage(sql));
    const a = w.append("message", msg("alice", "hello"));
    await a.durable;
    const row = await sql`SELECT bytes FROM log_lines WHERE seq = ${a.entry.seq}`;
    expect(Buffer.from(row[0].bytes).toString()).toContain('"text":"hello"');
    // covered by a committed checkpoint (no ack without a signature)
    expect(await count(sql, `is_checkpoint AND seq > ${a.entry.seq}`)).toBe(1);
    w.close("restart");
    await w.closed();
    open.length = 0;
    const again = writer(await storage(sql, { holder: "node-b" }));
    await again.append("message", msg("bob", "after")).durable;
    again.close("done");
    await again.closed();
    open.length = 0;
    const out = join(tempDir("pglog-export"), "transcript");
    await writeDirectory(sql, out);
    const report = await verifyTranscript(out, { hostKey: HOST.publicKey });
    expect(report.problem).toBeNull();
    expect(report.lastSeq).toBe(again.seq);
  });

  test("a second writer cannot take a held lease; once it expires it can, and the old writer is fenced: its next append fails and lands nowhere", async () => {
    await fresh();
    // A writer paused past its lease: it never renews in this test.
    const a = writer(await storage(sql, { holder: "node-a", leaseMs: 1000, renewMs: NEVER }));
    await a.append("message", msg("alice", "before")).durable;
    expect(await PgStorage.open(sql, { holder: "node-b", log: collectingLog().log })).toBeNull();
    let b: PgStorage | null = null;
    await until(async () => (b = await PgStorage.open(sql, { holder: "node-b", log: collectingLog().log })) !== null);
    expect(b!.epoch).toBe(2);
    // The new holder has taken the lease but appended nothing yet: only the epoch stops the old one.
    const late = a.append("message", msg("alice", "from the paused writer"));
    await expect(late.durable).rejects.toThrow(/another writer holds the log's lease/);
    const bw = writer(b!);
    expect(a.recording).toBe(false);
    expect(() => a.append("message", msg("alice", "again"))).toThrow();
    await bw.append("message", msg("bob", "the new writer")).durable;
    expect(await count(sql, `convert_from(bytes, 'UTF8') LIKE '%paused writer%'`)).toBe(0);
    expect(await count(sql, `convert_from(bytes, 'UTF8') LIKE '%the new writer%'`)).toBe(1);
  }, 60_000);

  test("a writer whose lease was taken while it was paused learns it from its next renewal, without appending", async () => {
    await fresh();
    const { log, events } = collectingLog();
    const a = writer(await storage(sql, { holder: "node-a", leaseMs: 5000, renewMs: 100, log }));
    await a.append("message", msg("alice", "before")).durable;
    // As if node-a had been stopped past its lease: expired, and taken by node-b.
    await sql`UPDATE log_lease SET expires_at = now() - interval '1 millisecond'`;
    expect(await acquireLease(sql, "node-b")).toBe(2);
    await until(() => !a.recording);
    expect(events.some((e) => e.event === "transcript_fenced")).toBe(true);
    expect(a.stopped).toBe(true);
  });

  test("a database restarted after the lease expired gives its holder a whole lease to renew before another may take it; an ordinary expiry does not wait", async () => {
    const own = await startPostgres({ fsync: false });
    let db = openPg(own.url, { max: 2 });
    try {
      const s = (await PgStorage.open(db, { holder: "node-a", log: collectingLog().log, renewMs: NEVER }))!;
      expect(s.epoch).toBe(1);
      // The database goes down for longer than the lease: node-a could not renew.
      await db`UPDATE log_lease SET expires_at = now() - interval '10 seconds'`;
      await db.close();
      await own.restart();
      db = openPg(own.url, { max: 2 });
      expect(await acquireLease(db, "node-b", 2000)).toBeNull();
      expect(await renewLease(db, 1, 2000)).toBe(true);
      // Had node-a not come back, node-b takes the lease a lease after the database's start.
      await own.restart();
      await db.close();
      db = openPg(own.url, { max: 2 });
      await db`UPDATE log_lease SET expires_at = now() - interval '10 seconds'`;
      expect(await acquireLease(db, "node-b", 2000)).toBeNull();
      await until(async () => (await acquireLease(db, "node-b", 2000)) === 2);
      // An ordinary expiry, the database up all along: taken at once.
      await db`UPDATE log_lease SET expires_at = now() - interval '1 millisecond'`;
      expect(await acquireLease(db, "node-c", 2000)).toBe(3);
      s.close();
    } finally {
      await db.close().catch(() => {});
      await own.stop();
    }
  }, 120_000);

  test("a writer process stopped with SIGSTOP past its lease, then continued: it appends nothing more, says it is fenced, and the log verifies", async () => {
    await fresh();
    const child = Bun.spawn(["bun", join(import.meta.dir, "pgpaused_writer.ts"), pg.url, "node-a"], { stdout: "pipe", stderr: "inherit" });
    const out: string[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stdout) out.push(...decoder.decode(chunk).split("\n").filter((l) => l !== ""));
    })();
    try {
      await until(() => out.filter((l) => l.startsWith("acked")).length >= 3);
      child.kill("SIGSTOP");
      const ackedBefore = out.filter((l) => l.startsWith("acked")).length;
      let b: PgStorage | null = null;
      await until(async () => (b = await PgStorage.open(sql, { holder: "node-b", log: collectingLog().log })) !== null);
      const bw = writer(b!);
      await bw.append("message", msg("bob", "the new writer")).durable;
      child.kill("SIGCONT");
      expect(await child.exited).toBe(3);
      await reading;
      expect(out.at(-1)).toBe("fenced");
      // Acks the stopped process had in flight may land only if they committed before the takeover.
      const lines = (await sql`SELECT seq, convert_from(bytes, 'UTF8') AS t FROM log_lines ORDER BY seq`).map((r: { t: string }) => r.t);
      const takeover = lines.findIndex((t: string) => t.includes('"type":"server_start"') && lines.indexOf(t) > 0);
      expect(lines.slice(takeover).filter((t: string) => t.includes('"from":"node-a"'))).toEqual([]);
      expect(out.filter((l) => l.startsWith("acked")).length).toBeGreaterThanOrEqual(ackedBefore);
      bw.close("done");
      await bw.closed();
      open.length = 0;
      const dir = join(tempDir("pglog-export"), "transcript");
      await writeDirectory(sql, dir);
      expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
    } finally {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await child.exited;
    }
  }, 60_000);

  test("a database that crashes: acks wait, recording is false while it is down, then everything acknowledged is there and the outage is recorded", async () => {
    // Its own server with fsync and synchronous_commit on: what a COMMIT acknowledged survives the crash.
    const durable = await startPostgres();
    const own = openPg(durable.url, { max: 2 });
    let restarted: Promise<void> | null = null;
    try {
      const { log, events } = collectingLog();
      const s = (await PgStorage.open(own, { holder: "node-a", log }))!;
      // Where each COMMIT ended: a crash right after any of them must leave every message signed.
      const commits: number[] = [];
      const sync = s.sync.bind(s);
      s.sync = (done) => sync((err) => (err || commits.push(s.committed), done(err)));
      const w = TranscriptWriter.openOn(s, options({ log }));
      await w.append("message", msg("alice", "before")).durable;
      const changes: boolean[] = [];
      w.watch((r) => changes.push(r));
      restarted = durable.restart({ crash: true, downMs: 2000 }); // down long enough for a COMMIT to fail, however quick the restart
      const during = Array.from({ length: 5 }, (_, i) => w.append("message", msg("alice", `during ${i}`)).durable);
      let settled = false;
      void Promise.all(during).then(() => (settled = true));
      await until(() => !w.recording);
      expect(settled).toBe(false);
      // Appended while blocked (the server refuses messages then, but the writer takes what it is given): they wait too.
      during.push(w.append("message", msg("alice", "while blocked")).durable);
      await restarted;
      await Promise.all(during);
      await until(() => w.recording);
      expect(changes).toEqual([false, true]);
      w.close("done");
      await w.closed();
      const texts = (await own`SELECT convert_from(bytes, 'UTF8') AS t FROM log_lines ORDER BY seq`).map((r: { t: string }) => r.t);
      for (let i = 0; i < 5; i++) expect(texts.filter((t: string) => t.includes(`"text":"during ${i}"`))).toHaveLength(1);
      expect(texts.some((t: string) => t.includes('"type":"recovery"') && t.includes("the database refused writes"))).toBe(true);
      expect(events.map((e) => e.event)).toContain("transcript_blocked");
      const entries: { seq: number; type: string; head_seq?: number }[] = texts.map((t: string) => JSON.parse(t));
      for (const end of commits) {
        const signed = Math.max(0, ...entries.filter((e) => e.seq <= end && e.type === "checkpoint").map((e) => e.head_seq!));
        const unsigned = entries.filter((e) => e.seq <= end && e.type === "message" && e.seq > signed).map((e) => e.seq);
        expect({ end, unsigned }).toEqual({ end, unsigned: [] });
      }
      const out = join(tempDir("pglog-export"), "transcript");
      await writeDirectory(own, out);
      expect((await verifyTranscript(out, { hostKey: HOST.publicKey })).problem).toBeNull();
    } finally {
      await own.close();
      // A restart still under way would start a server after stop(): it ends first.
      await restarted?.catch(() => {});
      await durable.stop();
    }
  }, 120_000);

  test("a COMMIT that went through but whose reply was lost while more lines were written: its retry is recognised, the rest committed after it, nothing twice", async () => {
    await fresh();
    let loseNextReply = false;
    let replyLost = (): void => {};
    const lost = new Promise<void>((r) => (replyLost = r));
    // The database connection as seen by the writer: armed, its next transaction commits, and its reply is lost
    // once the test says so (lines appended meanwhile are written while that COMMIT is still in flight).
    const flaky = new Proxy(sql, {
      get(target, prop) {
        if (prop === "begin" && loseNextReply) {
          return async (fn: (tx: SQL) => Promise<unknown>) => {
            loseNextReply = false;
            await target.begin(fn);
            await lost;
            throw Object.assign(new Error("Connection closed"), { code: "ERR_POSTGRES_CONNECTION_CLOSED" });
          };
        }
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as SQL;
    const { log, events } = collectingLog();
    const s = (await PgStorage.open(flaky, { holder: "node-a", log, renewMs: NEVER }))!;
    const w = writer(s, { log });
    await w.append("message", msg("alice", "before")).durable;
    loseNextReply = true;
    const acks = [w.append("message", msg("alice", "its reply lost")).durable];
    await Bun.sleep(50);
    for (let i = 0; i < 3; i++) acks.push(w.append("message", msg("alice", `meanwhile ${i}`)).durable);
    await Bun.sleep(50);
    replyLost();
    await Promise.all(acks);
    await until(() => w.recording);
    expect(events.map((e) => e.event)).toContain("transcript_blocked");
    expect(events.map((e) => e.event)).not.toContain("transcript_failed");
    const texts = (await sql`SELECT convert_from(bytes, 'UTF8') AS t FROM log_lines ORDER BY seq`).map((r: { t: string }) => r.t);
    for (const t of ["before", "its reply lost", "meanwhile 0", "meanwhile 1", "meanwhile 2"]) expect(texts.filter((x: string) => x.includes(`"text":"${t}"`))).toHaveLength(1);
    w.close("done");
    await w.closed();
    const out = join(tempDir("pglog-lost-reply"), "transcript");
    await writeDirectory(sql, out);
    expect((await verifyTranscript(out, { hostKey: HOST.publicKey })).problem).toBeNull();
  }, 60_000);

  test("a database that stays down: what waits for a COMMIT counts toward the writer's 16 MiB bound, so the writer fails instead of growing without end", async () => {
    const down = await startPostgres({ fsync: false });
    const own = openPg(down.url, { max: 2 });
    try {
      const s = (await PgStorage.open(own, { holder: "node-a", log: collectingLog().log }))!;
      const w = TranscriptWriter.openOn(s, options());
      await w.append("message", msg("alice", "before")).durable;
      await down.stop();
      const big = "x".repeat(32 * 1024);
      const pour = (mib: number): Error | null => {
        try {
          for (let i = 0; i < mib * 32; i++) void w.append("message", msg("alice", big)).durable?.catch(() => {});
          return null;
        } catch (e) {
          return e as Error;
        }
      };
      // 10 MiB wait in the writer; its retry moves them into the storage's batch, and the COMMIT fails again
      expect(pour(10)).toBeNull();
      await until(() => s.heldBytes() > 10 * 1024 * 1024);
      // 10 MiB more: the writer holds 10, the batch 10, past the bound
      const failed = pour(10);
      expect(failed?.message ?? "").toContain("bytes waited for the disk");
      expect(w.stopped).toBe(true);
    } finally {
      await own.close().catch(() => {});
      await down.stop();
    }
  }, 120_000);
});
