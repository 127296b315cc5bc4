/**
 * Room history: what it costs `securechat serve` in memory, and how long a
 * start takes on a large transcript. The server is the real `serve` (or the
 * one at --main, to compare with another checkout), in its own process.
 *
 *   bun run bench/history.ts [--rooms 20000] [--mark N] [--messages 3] [--conns 4]
 *                            [--entries 1000000] [--main PATH/src/main.ts]
 *                            [--only rooms,heap,startup] [-- EXTRA SERVE FLAGS]
 *
 * rooms: a fresh data directory, one account with a ticket made in the
 *   store; `serve` starts; RSS once it is listening (fresh); then --conns
 *   connections each join a room, say --messages messages in it and leave,
 *   for --rooms distinct rooms (every room ends); RSS after every --mark
 *   rooms (default: once, at the end); SIGTERM, start again on the same
 *   directory; RSS after the restart, and the time to "listening" of both
 *   starts.
 * heap: the same rooms and messages appended to the checkout's
 *   TranscriptJournal directly (the one of --main's checkout), in this
 *   process: the JS heap after a full GC (what is live, without the
 *   allocator's slack that RSS includes) after every --mark rooms, and
 *   what opening it again (a restart) adds.
 * startup: a transcript of about --entries entries (sessions, joins,
 *   messages in 10,000 rooms, leaves; 2 MiB files) written with the
 *   transcript writer directly, then the time from spawning `serve` to its
 *   "listening" line and its RSS then: a first start, and a second start
 *   on the same directory after a clean stop.
 *
 * RSS is read from /proc 3 s after the server is idle (no forced GC: it is
 * what an operator sees). One JSON object on stdout at the end; progress on
 * stderr.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { randomBytes } from "../src/crypto/index.ts";
import { loadOrCreateHostKey } from "../src/server/hostkey.ts";
import { silentLogger } from "../src/log.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../src/transcript/writer.ts";
import { rssKiB, stopChild } from "./load.ts";
import { type BenchCred, intArg, parseArgs } from "./load/common.ts";
import { seedAccount } from "./lib/account.ts";
import { BenchConn } from "./load/logins.ts";

const dashdash = Bun.argv.indexOf("--");
const args = parseArgs(Bun.argv.slice(2, dashdash < 0 ? undefined : dashdash));
const extra = dashdash < 0 ? [] : Bun.argv.slice(dashdash + 1);
const ROOMS = intArg(args, "rooms", 20_000);
const MARK = intArg(args, "mark", ROOMS);
const MESSAGES = intArg(args, "messages", 3);
const CONNS = intArg(args, "conns", 4);
const ENTRIES = intArg(args, "entries", 1_000_000);
const MAIN = args.get("main") ?? join(import.meta.dir, "..", "src", "main.ts");
const ONLY = new Set((args.get("only") ?? "rooms,heap,startup").split(","));

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const MiB = (kib: number): number => Math.round((kib / 1024) * 10) / 10;

interface Serving {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  /** Spawn to the "listening" log line. */
  startMs: number;
}

/** Starts `serve` on `dataDir` and waits for its "listening" line. */
async function serve(dataDir: string): Promise<Serving> {
  const t0 = performance.now();
  const proc = Bun.spawn(
    [process.execPath, "run", MAIN, "serve", "--data", dataDir, "--port", "0", "--json", "--flood-rate", "1000000", "--flood-burst", "1000000", ...extra],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  const reader = proc.stdout.getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve exited before listening: ${await new Response(proc.stderr).text()}`);
    buf += new TextDecoder().decode(value);
    for (const line of buf.split("\n").slice(0, -1)) {
      const e = JSON.parse(line) as { event: string; address?: string };
      if (e.event === "listening") {
        const startMs = performance.now() - t0;
        reader.releaseLock();
        void proc.stdout.pipeTo(new WritableStream());
        return { proc, port: Number(e.address!.split(":").at(-1)), startMs };
      }
    }
    buf = buf.slice(buf.lastIndexOf("\n") + 1);
  }
}

async function idleRss(s: Serving): Promise<number> {
  await Bun.sleep(3000);
  return rssKiB(s.proc.pid);
}

/** Each connection: join room i (from ≤ i < to), say MESSAGES times, leave; 16 rooms in flight per connection. */
async function useRooms(port: number, cred: BenchCred, from: number, to: number): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: CONNS }, async () => {
      let resolveDone!: () => void;
      let rejectDone!: (e: Error) => void;
      const done = new Promise<void>((res, rej) => {
        resolveDone = res;
        rejectDone = rej;
      });
      let inFlight = 0;
      let id = 0;
      const conn: BenchConn = new BenchConn(port, cred, false, (m) => {
        if (m.type === "notice" && m.code !== "recorded") log(JSON.stringify(m));
        if (m.type === "nack" || m.type === "error") rejectDone(new Error(`server said ${JSON.stringify(m)}`));
        if (m.type === "left" && m.user === cred.user) {
          inFlight--;
          pump();
        }
      });
      const pump = (): void => {
        while (inFlight < 16 && next < to) {
          const room = `room-${next++}`;
          inFlight++;
          const says = Array.from({ length: MESSAGES }, (_, k) => ({ type: "say" as const, id: ++id, room, text: text(room, k + 1) }));
          conn.send([{ type: "join", room }, ...says, { type: "leave", room }]);
          if (next % 2000 === 0) log(`  ${next} rooms`);
        }
        if (inFlight === 0 && next >= to) resolveDone();
      };
      conn.start();
      await conn.ready;
      pump();
      await done;
      conn.close();
    }),
  );
}

async function roomsBench(): Promise<Record<string, number>> {
  const dataDir = mkdtempSync(join(tmpdir(), "sc-history-"));
  try {
    const cred = seedAccount(dataDir);
    let s = await serve(dataDir);
    const fresh = await idleRss(s);
    log(`rooms: fresh serve ${MiB(fresh)} MiB (listening after ${Math.round(s.startMs)} ms); using ${ROOMS} rooms × ${MESSAGES} messages`);
    const t0 = performance.now();
    const marks: Record<string, number> = {};
    let after = fresh;
    for (let from = 0; from < ROOMS; from += MARK) {
      const to = Math.min(ROOMS, from + MARK);
      await useRooms(s.port, cred, from, to);
      after = await idleRss(s);
      marks[`after_${to}_rooms_rss_mib`] = MiB(after);
      log(`rooms: after ${to} rooms ${MiB(after)} MiB`);
    }
    const useMs = performance.now() - t0;
    await stopChild(s.proc);
    s = await serve(dataDir);
    const restarted = await idleRss(s);
    log(`rooms: after a restart ${MiB(restarted)} MiB (listening after ${Math.round(s.startMs)} ms)`);
    await stopChild(s.proc);
    return {
      rooms: ROOMS,
      messages_per_room: MESSAGES,
      fresh_rss_mib: MiB(fresh),
      after_rss_mib: MiB(after),
      ...marks,
      restarted_rss_mib: MiB(restarted),
      use_ms: Math.round(useMs),
      restart_listening_ms: Math.round(s.startMs),
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The text of message k of a room, about a hundred bytes. */
const text = (room: string, k: number): string => `message ${k} of ${room}, about a hundred bytes long so that it looks like chat ${"x".repeat(40)}`;

async function heapBench(): Promise<Record<string, number>> {
  const root = resolve(MAIN, "..", "..");
  const { TranscriptJournal } = (await import(join(root, "src/transcript/journal.ts"))) as typeof import("../src/transcript/journal.ts");
  const { heapStats } = (await import("bun:jsc")) as { heapStats(): { heapSize: number } };
  const heap = (): number => {
    Bun.gc(true);
    return Math.round((heapStats().heapSize / 1048576) * 10) / 10;
  };
  const dataDir = mkdtempSync(join(tmpdir(), "sc-history-heap-"));
  const open = () =>
    TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey: loadOrCreateHostKey(dataDir).key, version: "bench", log: silentLogger, history: 50 });
  try {
    const out: Record<string, number> = { before_mib: heap() };
    let j = open();
    for (let from = 0; from < ROOMS; from += MARK) {
      for (let r = from; r < Math.min(ROOMS, from + MARK); r++) {
        const room = `room-${r}`;
        const durable: Promise<void>[] = [];
        for (let k = 1; k <= MESSAGES; k++) {
          const d = j.append({ kind: "message", message: { type: "message", room, seq: k, ts: Date.now(), from: "bench", text: text(room, k) } }).durable;
          if (d) durable.push(d);
        }
        if (r % 500 === 499) await Promise.all(durable);
      }
      await Bun.sleep(300); // history.db's last write of the chunk
      out[`after_${Math.min(ROOMS, from + MARK)}_rooms_mib`] = heap();
      log(`heap: after ${Math.min(ROOMS, from + MARK)} rooms ${out[`after_${Math.min(ROOMS, from + MARK)}_rooms_mib`]} MiB`);
    }
    j.close("bench");
    const closed = heap();
    // what opening it again adds (the closed one may still be counted: JSC's collector is conservative)
    j = open();
    out.reopening_adds_mib = Math.round((heap() - closed) * 10) / 10;
    log(`heap: opening it again adds ${out.reopening_adds_mib} MiB`);
    j.close("bench");
    return out;
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** About `n` entries of chat: per session 20 rooms joined, 3 messages in each, left. */
function writeTranscript(dataDir: string, n: number): number {
  const w = TranscriptWriter.open({
    ...DEFAULT_WRITER,
    dir: join(dataDir, "transcript"),
    hostKey: loadOrCreateHostKey(dataDir).key,
    fsync: "off",
    rotateBytes: 2 * 1024 * 1024,
    version: "bench",
    log: silentLogger,
  });
  const seqs = new Map<string, number>();
  let i = 0;
  while (w.seq < n) {
    const user = `user${i % 500}`;
    const session = Buffer.from(randomBytes(16)).toString("base64");
    w.append("session_open", { user, session, source: "127.0.0.1" });
    for (let r = 0; r < 20; r++) {
      const room = `room-${(i * 20 + r) % 10_000}`;
      w.append("join", { room, user });
      for (let k = 0; k < 3; k++) {
        const seq = (seqs.get(room) ?? 0) + 1;
        seqs.set(room, seq);
        w.append("message", { room, room_seq: seq, from: user, text: `message ${seq} in ${room}, about a hundred bytes long so that it looks like chat ${"x".repeat(30)}` });
      }
      w.append("leave", { room, user });
    }
    w.append("session_close", { user, session });
    i++;
  }
  w.close("bench");
  return w.seq;
}

async function startupBench(): Promise<Record<string, number>> {
  const dataDir = mkdtempSync(join(tmpdir(), "sc-history-start-"));
  try {
    log(`startup: writing a transcript of ~${ENTRIES} entries`);
    const entries = writeTranscript(dataDir, ENTRIES);
    let s = await serve(dataDir);
    const first = { ms: s.startMs, rss: await idleRss(s) };
    log(`startup: first start listening after ${Math.round(first.ms)} ms, ${MiB(first.rss)} MiB`);
    await stopChild(s.proc);
    s = await serve(dataDir);
    const second = { ms: s.startMs, rss: await idleRss(s) };
    log(`startup: second start listening after ${Math.round(second.ms)} ms, ${MiB(second.rss)} MiB`);
    await stopChild(s.proc);
    return {
      entries,
      first_listening_ms: Math.round(first.ms),
      first_rss_mib: MiB(first.rss),
      second_listening_ms: Math.round(second.ms),
      second_rss_mib: MiB(second.rss),
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const result: Record<string, unknown> = { main: MAIN, extra };
if (ONLY.has("rooms")) result.rooms = await roomsBench();
if (ONLY.has("heap")) result.heap = await heapBench();
if (ONLY.has("startup")) result.startup = await startupBench();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
