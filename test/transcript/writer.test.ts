/**
 * The transcript writer (src/transcript/writer.ts) against docs/TRANSCRIPT.md:
 * layout and modes (§2.1), the chain (§3), checkpoints (§4), sealing (§5),
 * durability (§6), crash recovery (§7) and failure (§6, last paragraphs).
 * What the writer wrote is always checked with the reference verifier
 * (verifyTranscript) as well as read back line by line.
 *
 * fsync is observed by spying on the `node:fs` module namespace: bun:test's
 * spyOn replaces the live binding, so the writer's own `import { fsync }`
 * sees the spy (checked in "spying on node:fs reaches the writer").
 *
 * Writers that a test abandons to simulate a crash get a checkpoint interval
 * far beyond the test run, so their timer never fires; their fd is leaked on
 * purpose (a crashed process does not close it either).
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64, toHex } from "../../src/bytes.ts";
import { ed25519Generate, sha256, x25519Generate } from "../../src/crypto/index.ts";
import type { LogFields, Logger } from "../../src/log.ts";
import { type Entry, GENESIS, entryHash, entryLine, makeEntry, openBody, parseEntry, signCheckpoint, unwrapFileKey, verifyCheckpoint } from "../../src/transcript/format.ts";
import { reportLines } from "../../src/transcript/report.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, TranscriptWriter, type WriterOptions, transcriptFiles } from "../../src/transcript/writer.ts";
import { clientAcks, hostKeyPair, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(7);
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const FILE_RE = /^(\d{4}-\d{2}-\d{2})\.(\d{12})\.jsonl$/;
/** Far beyond any test run (and below setInterval's 2^31 - 1 ms limit). */
const NEVER = 1_000_000_000;
const T = Date.UTC(2026, 2, 1, 12, 0, 0);

interface LogEvent {
  level: "info" | "warn";
  event: string;
  fields: LogFields;
}

function collectingLog(): { log: Logger; events: LogEvent[] } {
  const events: LogEvent[] = [];
  return {
    events,
    log: {
      info: (event, fields = {}) => void events.push({ level: "info", event, fields }),
      warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }),
    },
  };
}

/** An injectable clock: `now` returns whatever `t` is. */
class FakeClock {
  constructor(public t = T) {}
  readonly now = (): number => this.t;
}

/** A transcript directory that does not exist yet (the writer creates it). */
function freshDir(): string {
  return join(tempDir("writer"), "transcript");
}

function options(dir: string, over: Partial<WriterOptions> = {}): WriterOptions {
  return { ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: NEVER, dir, hostKey: HOST, version: "test", log: collectingLog().log, ...over };
}

interface Read {
  file: string;
  entry: Entry;
  line: string;
}

/** Every line of every transcript file, in order, parsed. */
function readAll(dir: string): Read[] {
  const out: Read[] = [];
  for (const file of transcriptFiles(dir)) {
    const text = readFileSync(join(dir, file), "utf8");
    expect(text === "" || text.endsWith("\n")).toBe(true);
    for (const line of text.split("\n").slice(0, -1)) out.push({ file, entry: parseEntry(line), line });
  }
  return out;
}

const entriesOf = (dir: string): Entry[] => readAll(dir).map((r) => r.entry);

/** The chain rules of §3.4 checked directly, on top of the verifier. */
function expectChained(entries: Entry[]): void {
  let prev = GENESIS;
  let ts = 0;
  entries.forEach((e, i) => {
    expect(e.seq).toBe(i + 1);
    expect(e.prev).toBe(prev);
    expect(entryHash(e)).toBe(e.hash);
    expect(e.ts).toBeGreaterThanOrEqual(ts);
    prev = e.hash;
    ts = e.ts;
  });
}

async function expectVerified(dir: string) {
  const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
  expect(r.problem).toBeNull();
  expect(r.ok).toBe(true);
  return r;
}

const modeOf = (path: string): number => statSync(path).mode & 0o777;
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `cond` holds; fails after `timeoutMs` (timers are late on a loaded machine, never early). */
async function until(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Settles to "resolved" or the rejection's code, never throws. */
function settle(p: Promise<void>): Promise<string> {
  return p.then(
    () => "resolved",
    (e: unknown) => `rejected:${(e as { code?: string }).code ?? String(e)}`,
  );
}

/** A plain room message's fields. */
const msg = (n: number, text = `message ${n}`) => ({ room: "lobby", room_seq: n, from: "alice", text });

/** Opens a writer, appends `n` messages, waits until they are written; leaves it open (a crash). */
async function crashedRun(dir: string, clock: FakeClock, n = 2): Promise<TranscriptWriter> {
  const w = TranscriptWriter.open(options(dir, { now: clock.now }));
  const receipts = Array.from({ length: n }, (_, i) => w.append("message", msg(i + 1)));
  await Promise.all(receipts.map((r) => r.durable));
  return w;
}

/**
 * Opens a writer, appends `n` joins — entries no ack waits on, so no
 * checkpoint is written for them (§6) — waits until they are durable, and
 * leaves it open (a crash): a run whose tail no checkpoint signs.
 */
async function unsignedRun(dir: string, clock: FakeClock, n: number, over: Partial<WriterOptions> = {}): Promise<TranscriptWriter> {
  const w = TranscriptWriter.open(options(dir, { now: clock.now, ...over }));
  const receipts = Array.from({ length: n }, (_, i) => w.append("join", { room: `room${i + 1}`, user: "alice" }));
  await Promise.all(receipts.map((r) => r.durable));
  return w;
}

/** A run on an existing transcript that appends one entry and crashes. */
async function crashedRunFrom(dir: string, clock: FakeClock): Promise<TranscriptWriter> {
  const w = TranscriptWriter.open(options(dir, { now: clock.now }));
  await w.append("message", msg(50)).durable;
  return w;
}

/** Bytes that look like the start of the next line, as a crash mid-write leaves them. */
function partialLine(prevHash: string, seq: number, len = 61): Uint8Array {
  const line = entryLine(makeEntry(prevHash, seq, T, "message", msg(99, "never finished")));
  return new Uint8Array(Buffer.from(line).subarray(0, len));
}

const spies: { mockRestore(): void }[] = [];
/** Restored after the test. */
function track<S extends { mockRestore(): void }>(s: S): S {
  spies.push(s);
  return s;
}

/** The `code` of what `fn` throws (undefined if it does not throw). */
function thrownCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return undefined;
}

afterEach(() => {
  for (const s of spies.splice(0)) s.mockRestore();
});

// ---------------------------------------------------------------------------

describe("a fresh directory", () => {
  test("server_start first, entries chained, close writes server_stop + checkpoint; modes 0600/0700", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = TranscriptWriter.open(options(dir, { now: clock.now }));
    expect(w.seq).toBe(1);
    expect(w.file).toBe("2026-03-01.000000000001.jsonl");
    expect(w.stopped).toBe(false);
    clock.t += 10;
    w.append("session_open", { user: "alice", session: toBase64(new Uint8Array(16).fill(1)), source: "127.0.0.1" });
    clock.t += 10;
    w.append("join", { room: "lobby", user: "alice" });
    clock.t += 10;
    const last = w.append("message", { ...msg(1, 'héllo "wörld" \\o/ 😀'), action: true });
    expect(w.seq).toBe(4);
    expect(w.head).toBe(last.entry.hash);
    await last.durable;
    clock.t += 10;
    w.close("bye");
    expect(w.stopped).toBe(true);

    const read = readAll(dir);
    const entries = read.map((r) => r.entry);
    // the message was acknowledged (durable): a checkpoint signs it (§6)
    expect(entries.map((e) => e.type)).toEqual(["server_start", "session_open", "join", "message", "checkpoint", "server_stop", "checkpoint"]);
    expectChained(entries);
    // every line is byte for byte line(e) (§3.3)
    for (const r of read) expect(`${r.line}\n`).toBe(entryLine(r.entry));
    expect(entries.map((e) => e.ts)).toEqual([T, T + 10, T + 20, T + 30, T + 30, T + 40, T + 40]);

    const [start, , , message, signed, stop, cp] = entries as [Entry, Entry, Entry, Entry, Entry, Entry, Entry];
    expect(signed.head_seq).toBe(message.seq);
    expect(start.prev).toBe(GENESIS);
    expect(start.host_key).toBe(toBase64(HOST.publicKey));
    expect(start.version).toBe("test");
    expect(message.text).toBe('héllo "wörld" \\o/ 😀');
    expect(message.action).toBe(true);
    expect(stop.reason).toBe("bye");
    expect(cp.head_seq).toBe(stop.seq);
    expect(cp.head).toBe(stop.hash);
    expect(verifyCheckpoint(HOST.publicKey, cp)).toBe(true);
    expect(w.seq).toBe(cp.seq);
    expect(w.head).toBe(cp.hash);

    expect(modeOf(dir)).toBe(0o700);
    expect(modeOf(join(dir, w.file))).toBe(0o600);
    expect(readdirSync(dir)).toEqual([w.file]);

    const r = await expectVerified(dir);
    expect(r.entries).toBe(7);
    expect(r.lastCheckpoint).toBe(7);
    expect(r.unsealed).toBe(0);
    expect(r.recoveries.count).toBe(0);
  });

  test("after close: a second close is a no-op and append throws transcript_closed", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir));
    w.close("bye");
    const before = readFileSync(join(dir, w.file));
    w.close("again");
    expect(thrownCode(() => w.append("join", { room: "lobby", user: "alice" }))).toBe("transcript_closed");
    await sleep(5);
    expect(readFileSync(join(dir, w.file))).toEqual(before);
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start", "server_stop", "checkpoint"]);
  });

  test("makeEntry's value domain is enforced: a negative or fractional value is refused, nothing written", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir));
    expect(thrownCode(() => w.append("message", { ...msg(1), room_seq: -1 }))).toBe("entry_value");
    expect(thrownCode(() => w.append("message", { ...msg(1), room_seq: 1.5 }))).toBe("entry_value");
    expect(w.seq).toBe(1);
    w.close("bye");
    await expectVerified(dir);
    expect(entriesOf(dir).map((e) => e.seq)).toEqual([1, 2, 3]);
  });
});

describe("lines of every width", () => {
  test("a turn of lines from 1-byte to 4-byte characters, more than the write buffer holds, is written, chained and in the tree byte for byte", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir));
    const chars = Array.from("aé€😀\u2028\"\\");
    const texts = Array.from({ length: 300 }, (_, i) => `${chars[i % chars.length]!.repeat(1 + ((i * 37) % 900))} ${i}`);
    texts.forEach((text, i) => w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text }));
    w.close("done");
    const lines = transcriptFiles(dir).flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").slice(0, -1));
    expect(lines.filter((l) => l.includes('"type":"message"')).map((l) => parseEntry(l).text)).toEqual(texts);
    const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(r.ok).toBe(true);
    // The tree the writer kept is the one of the lines on disk.
    expect(r.tree).toEqual({ size: w.tree!.size, root: toBase64(w.tree!.root) });
  });
});

describe("durability (§6)", () => {
  test("spying on node:fs reaches the writer", async () => {
    const fsync = track(spyOn(fs, "fsync"));
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5 }));
    await w.append("join", { room: "lobby", user: "alice" }).durable;
    expect(fsync).toHaveBeenCalled();
    w.close("bye");
  });

  test("batch: one fsync covers a turn's entries; durable waits for it, then resolves in seq order", async () => {
    const realFsync = fs.fsync;
    const held: (() => void)[] = [];
    const fsync = track(spyOn(fs, "fsync")).mockImplementation(((fd: number, cb: fs.NoParamCallback) => void held.push(() => realFsync(fd, cb))) as typeof fs.fsync);
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5 }));
    const order: number[] = [];
    const receipts = Array.from({ length: 10 }, (_, i) => w.append("message", msg(i + 1)));
    const all = receipts.map((r) => r.durable.then(() => void order.push(r.entry.seq)));

    await until("the group fsync", () => held.length > 0);
    await sleep(30); // several windows later: still that one fsync, nothing resolved
    expect(fsync).toHaveBeenCalledTimes(1);
    expect(held.length).toBe(1);
    expect(order).toEqual([]); // written, but not durable until the fsync returns
    // written to the file already (§6: written at the end of the turn), with the checkpoint that signs them
    expect(entriesOf(dir).length).toBe(12);
    expect(entriesOf(dir).at(-1)).toMatchObject({ type: "checkpoint", head_seq: 11 });

    held.shift()!();
    await Promise.all(all);
    expect(order).toEqual(receipts.map((r) => r.entry.seq));
    expect(order).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(fsync).toHaveBeenCalledTimes(1);
    w.close("bye");
    await expectVerified(dir);
  });

  test("batch: on a quiet writer the fsync starts at once; another within the window waits for the window", async () => {
    const realFsync = fs.fsync;
    const held: (() => void)[] = [];
    const fsync = track(spyOn(fs, "fsync")).mockImplementation(((fd: number, cb: fs.NoParamCallback) => void held.push(() => realFsync(fd, cb))) as typeof fs.fsync);
    const dir = freshDir();
    // A window far longer than the test: any wait for it would show.
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 60_000 }));
    const first = w.append("message", msg(1));
    await until("the first fsync, without waiting for the window", () => held.length === 1);
    held.shift()!();
    await first.durable;
    const second = w.append("message", msg(2));
    let durable = false;
    void second.durable.then(() => (durable = true));
    for (let i = 0; i < 20; i++) await nextTurn();
    expect(fsync).toHaveBeenCalledTimes(1); // the second waits for the window: at most one fsync per window
    expect(durable).toBe(false);
    w.close("bye"); // close fsyncs whatever is written
    await second.durable;
    await expectVerified(dir);
  });

  test("batch: appends over many turns all become durable, in seq order, with fewer fsyncs than entries", async () => {
    const fsync = track(spyOn(fs, "fsync"));
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5 }));
    const order: number[] = [];
    const seqs: number[] = [];
    const all: Promise<void>[] = [];
    for (let i = 0; i < 30; i++) {
      const r = w.append("message", msg(i + 1));
      seqs.push(r.entry.seq);
      all.push(r.durable.then(() => void order.push(r.entry.seq)));
      if (i % 3 === 2) await nextTurn();
    }
    await Promise.all(all);
    expect(order).toEqual(seqs);
    expect(fsync.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(fsync.mock.calls.length).toBeLessThan(30);
    w.close("bye");
    await expectVerified(dir);
  });

  test("always: an fsync starts as soon as a turn is written; one at a time; each entry waits for the fsync after it", async () => {
    const realFsync = fs.fsync;
    const held: (() => void)[] = [];
    const fsync = track(spyOn(fs, "fsync")).mockImplementation(((fd: number, cb: fs.NoParamCallback) => void held.push(() => realFsync(fd, cb))) as typeof fs.fsync);
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "always" }));
    const order: number[] = [];
    const a = w.append("message", msg(1));
    const pa = a.durable.then(() => void order.push(a.entry.seq));
    await nextTurn(); // the writer's flush ran: written, fsync started at once (no window)
    expect(fsync).toHaveBeenCalledTimes(1);

    const b = w.append("message", msg(2));
    const pb = b.durable.then(() => void order.push(b.entry.seq));
    await nextTurn();
    expect(fsync).toHaveBeenCalledTimes(1); // no second fsync while one is running
    expect(order).toEqual([]);

    held.shift()!(); // the first fsync returns: it began before b was written
    await pa;
    await sleep(5);
    expect(order).toEqual([a.entry.seq]);
    expect(fsync).toHaveBeenCalledTimes(2); // …so b needs one of its own

    held.shift()!();
    await pb;
    expect(order).toEqual([a.entry.seq, b.entry.seq]);
    w.close("bye");
    await expectVerified(dir);
  });

  test("off: durable resolves once written, without any fsync", async () => {
    const fsync = track(spyOn(fs, "fsync"));
    const fsyncSync = track(spyOn(fs, "fsyncSync"));
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "off" }));
    fsyncSync.mockClear(); // open syncs the directory after creating the file
    const order: number[] = [];
    const receipts = Array.from({ length: 5 }, (_, i) => w.append("message", msg(i + 1)));
    await Promise.all(receipts.map((r) => r.durable.then(() => void order.push(r.entry.seq))));
    expect(order).toEqual([2, 3, 4, 5, 6]);
    // written when durable resolved, with the checkpoint that signs them (§6)
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start", ...order.map(() => "message"), "checkpoint"]);
    expect(fsync).not.toHaveBeenCalled();
    expect(fsyncSync).not.toHaveBeenCalled();
    w.close("bye");
    await expectVerified(dir);
  });
});

describe("checkpoints (§4)", () => {
  test("every N entries (the checkpoint not counted) and at close; each signs the entry before it", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { checkpointEvery: 5 }));
    for (let i = 1; i <= 13; i++) w.append("message", msg(i));
    w.close("bye");
    const entries = entriesOf(dir);
    expectChained(entries);
    const cps = entries.filter((e) => e.type === "checkpoint");
    // server_start + 4 messages → cp 6; 5 messages → cp 12; 4 messages, server_stop → cp 18
    expect(cps.map((e) => e.seq)).toEqual([6, 12, 18]);
    const other = ed25519Generate();
    let since = 0;
    for (const e of entries) {
      if (e.type !== "checkpoint") {
        since++;
        continue;
      }
      const before = entries[e.seq - 2]!;
      expect(e.head_seq).toBe(before.seq);
      expect(e.head).toBe(before.hash);
      expect(e.prev).toBe(before.hash);
      expect(verifyCheckpoint(HOST.publicKey, e)).toBe(true);
      expect(verifyCheckpoint(other.publicKey, e)).toBe(false);
      expect(since).toBeLessThanOrEqual(5);
      since = 0;
    }
    expect(entries.at(-1)!.type).toBe("checkpoint");
    expect(entries.at(-2)!.type).toBe("server_stop");
    const r = await expectVerified(dir);
    expect(r.lastCheckpoint).toBe(18);
    expect(r.unsealed).toBe(0);
  });

  test("every T when there are new entries, none while idle", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { checkpointIntervalMs: 50 }));
    const checkpoints = () => entriesOf(dir).filter((e) => e.type === "checkpoint");
    const opened = Date.now();
    // server_start was new: one checkpoint for it after about T…
    await until("the first interval checkpoint", () => checkpoints().length > 0);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(40);
    expect(checkpoints().map((e) => e.head_seq)).toEqual([1]);
    // …then nothing while idle (three more intervals)
    await sleep(150);
    expect(checkpoints().length).toBe(1);
    expect(w.seq).toBe(2);

    const m = w.append("message", msg(1));
    await until("the second interval checkpoint", () => checkpoints().length > 1);
    expect(checkpoints().map((e) => e.head_seq)).toEqual([1, m.entry.seq]);
    await sleep(150);
    expect(checkpoints().length).toBe(2);
    w.close("bye");
    for (const cp of checkpoints()) expect(verifyCheckpoint(HOST.publicKey, cp)).toBe(true);
    await expectVerified(dir);
  });
});

describe("time (§2.3)", () => {
  test("a clock stepped back is clamped: ts never decreases, within a run and across a restart", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    let w = TranscriptWriter.open(options(dir, { now: clock.now }));
    clock.t = T + 100;
    w.append("message", msg(1));
    clock.t = T - 60_000; // stepped back a minute
    w.append("message", msg(2));
    w.append("message", msg(3));
    clock.t = T + 150;
    w.append("message", msg(4));
    clock.t = T + 120;
    w.close("bye");
    expect(entriesOf(dir).map((e) => e.ts)).toEqual([T, T + 100, T + 100, T + 100, T + 150, T + 150, T + 150]);

    clock.t = T - 3_600_000; // the next run starts with a clock an hour behind
    w = TranscriptWriter.open(options(dir, { now: clock.now }));
    w.append("message", msg(5));
    w.close("bye");
    const ts = entriesOf(dir).map((e) => e.ts);
    expect(ts.slice(7)).toEqual([T + 150, T + 150, T + 150, T + 150]);
    await expectVerified(dir);
  });
});

describe("rotation (§2.1)", () => {
  test("by size: files named DATE.<first seq>.jsonl, the chain continues across them", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = TranscriptWriter.open(options(dir, { rotateBytes: 4096, now: clock.now }));
    for (let i = 1; i <= 60; i++) {
      clock.t += 1;
      w.append("message", msg(i, `${i} `.padEnd(200, "x")));
    }
    w.close("bye");
    const files = transcriptFiles(dir);
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(readdirSync(dir).sort()).toEqual([...files].sort());
    const read = readAll(dir);
    expectChained(read.map((r) => r.entry));
    for (const f of files) {
      const m = FILE_RE.exec(f)!;
      expect(m[1]).toBe("2026-03-01");
      const first = read.find((r) => r.file === f)!;
      expect(Number(m[2])).toBe(first.entry.seq);
      expect(modeOf(join(dir, f))).toBe(0o600);
    }
    // every file but the last stayed within the limit (no checkpoint or server_stop landed in them)
    for (const f of files.slice(0, -1)) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(4096);
    const r = await expectVerified(dir);
    expect(r.files).toBe(files.length);
    expect(r.entries).toBe(63);
  });

  test("starting a file: the old file is fsynced, then the new one created, then the directory fsynced", async () => {
    const realOpen = fs.openSync;
    const realFsyncSync = fs.fsyncSync;
    const calls: string[] = [];
    const fds = new Map<number, string>();
    track(spyOn(fs, "openSync")).mockImplementation(((path: fs.PathLike, flags: fs.OpenMode = "r", mode?: fs.Mode | null) => {
      const fd = realOpen(path, flags, mode);
      fds.set(fd, String(path));
      calls.push(`open ${String(path)}`);
      return fd;
    }) as typeof fs.openSync);
    track(spyOn(fs, "fsyncSync")).mockImplementation(((fd: number) => {
      calls.push(`fsync ${fds.get(fd) ?? fd}`);
      realFsyncSync(fd);
    }) as typeof fs.fsyncSync);
    const dir = freshDir();
    const clock = new FakeClock();
    const w = TranscriptWriter.open(options(dir, { rotateBytes: 1, now: clock.now }));
    await nextTurn();
    calls.length = 0;
    w.append("message", msg(1));
    const oldPath = join(dir, "2026-03-01.000000000001.jsonl");
    const newPath = join(dir, "2026-03-01.000000000002.jsonl");
    expect(calls).toEqual([`fsync ${oldPath}`, `open ${newPath}`, `open ${dir}`, `fsync ${dir}`]);
    w.close("bye");
    await expectVerified(dir);
  });

  test("by UTC day: an entry after midnight UTC starts a new file; a restart continues today's file and starts a new one on a new day", async () => {
    const dir = freshDir();
    const clock = new FakeClock(Date.UTC(2026, 2, 1, 23, 59, 59, 990));
    let w = TranscriptWriter.open(options(dir, { now: clock.now }));
    w.append("message", msg(1));
    clock.t = Date.UTC(2026, 2, 2, 0, 0, 0, 5);
    const after = w.append("message", msg(2));
    expect(after.entry.seq).toBe(3);
    expect(w.file).toBe("2026-03-02.000000000003.jsonl");
    w.close("bye");
    expect(transcriptFiles(dir)).toEqual(["2026-03-01.000000000001.jsonl", "2026-03-02.000000000003.jsonl"]);
    expect(readAll(dir).filter((r) => r.file.startsWith("2026-03-02")).map((r) => r.entry.type)).toEqual(["message", "server_stop", "checkpoint"]);

    // same day: the last file is continued
    clock.t += 60_000;
    w = TranscriptWriter.open(options(dir, { now: clock.now }));
    expect(w.file).toBe("2026-03-02.000000000003.jsonl");
    w.close("bye");
    // next day: a new file, named for the seq of its first entry
    clock.t = Date.UTC(2026, 2, 3, 8);
    w = TranscriptWriter.open(options(dir, { now: clock.now }));
    expect(w.file).toBe("2026-03-03.000000000009.jsonl");
    w.close("bye");
    expect(transcriptFiles(dir)).toEqual(["2026-03-01.000000000001.jsonl", "2026-03-02.000000000003.jsonl", "2026-03-03.000000000009.jsonl"]);
    const r = await expectVerified(dir);
    expect(r.files).toBe(3);
    expect(r.entries).toBe(11);
  });
});

describe("sealing (§5)", () => {
  test("seal_key after server_start and first in each rotated file; bodies sealed under the file's key; verifies without the auditor key", async () => {
    const auditor = x25519Generate();
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { auditorKey: auditor.publicKey, rotateBytes: 4096 }));
    const texts = new Map<number, string>();
    for (let i = 1; i <= 30; i++) {
      const text = `SECRET-${i} ${"ünïcode ".repeat(10)}😀`;
      const fields = i % 3 === 0 ? { dm_seq: i, from: "alice", to: "bob", text } : msg(i, text);
      const r = w.append(i % 3 === 0 ? "direct" : "message", i % 5 === 0 ? { ...fields, action: true } : fields);
      texts.set(r.entry.seq, text);
      expect(r.entry.text).toBeUndefined();
    }
    w.append("join", { room: "lobby", user: "visible-user" });
    w.close("bye");

    const files = transcriptFiles(dir);
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) expect(readFileSync(join(dir, f)).includes(Buffer.from("SECRET-"))).toBe(false);

    const read = readAll(dir);
    const entries = read.map((r) => r.entry);
    expectChained(entries);
    expect(entries[0]!.type).toBe("server_start");
    expect(entries[1]!.type).toBe("seal_key");
    expect(entries[1]!.recipient).toBe(toBase64(auditor.publicKey));
    for (const f of files.slice(1)) expect(read.find((r) => r.file === f)!.entry.type).toBe("seal_key");

    const keys = new Map<number, Uint8Array>();
    let currentKey = 0;
    let opened = 0;
    for (const { file, entry: e } of read) {
      if (e.type === "seal_key") {
        keys.set(e.seq, unwrapFileKey(auditor.secretKey, e));
        currentKey = e.seq;
      }
      if (e.type !== "message" && e.type !== "direct") continue;
      expect(e.text).toBeUndefined();
      expect(typeof e.sealed).toBe("string");
      expect(e.key_seq).toBe(currentKey); // the most recent seal_key…
      expect(read.find((r) => r.entry.seq === e.key_seq)!.file).toBe(file); // …which is in the same file
      expect(openBody(keys.get(currentKey)!, e.seq, e.sealed as string)).toBe(texts.get(e.seq)!);
      expect(() => openBody(keys.get(currentKey)!, e.seq + 1, e.sealed as string)).toThrow(); // bound to its seq
      opened++;
    }
    expect(opened).toBe(30);
    expect(entries.filter((e) => e.action === true).length).toBe(6);
    expect(entries.find((e) => e.type === "join")!.user).toBe("visible-user");
    // every file key differs
    expect(new Set([...keys.values()].map((k) => toHex(k))).size).toBe(keys.size);

    const r = await expectVerified(dir);
    expect(r.entries).toBe(entries.length);
  });

  test("a restart writes a new seal_key after its server_start", async () => {
    const auditor = x25519Generate();
    const dir = freshDir();
    let w = TranscriptWriter.open(options(dir, { auditorKey: auditor.publicKey }));
    w.append("message", msg(1, "first run"));
    w.close("bye");
    w = TranscriptWriter.open(options(dir, { auditorKey: auditor.publicKey }));
    const m = w.append("message", msg(2, "second run"));
    w.close("bye");
    const entries = entriesOf(dir);
    expect(entries.map((e) => e.type)).toEqual(["server_start", "seal_key", "message", "server_stop", "checkpoint", "server_start", "seal_key", "message", "server_stop", "checkpoint"]);
    expect(m.entry.key_seq).toBe(7);
    expect(openBody(unwrapFileKey(auditor.secretKey, entries[6]!), 8, m.entry.sealed as string)).toBe("second run");
    await expectVerified(dir);
  });
});

describe("crash recovery (§7)", () => {
  test("(a) after a clean close: no recovery entry, nothing logged", async () => {
    const dir = freshDir();
    TranscriptWriter.open(options(dir)).close("bye");
    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { log }));
    w.close("bye");
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start", "server_stop", "checkpoint", "server_start", "server_stop", "checkpoint"]);
    expect(events.filter((e) => e.level === "warn")).toEqual([]);
    expect((await expectVerified(dir)).recoveries.count).toBe(0);
  });

  test("(a') a transcript ending in server_stop without its checkpoint also counts as clean", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
    const file = transcriptFiles(dir)[0]!;
    const lines = readFileSync(join(dir, file), "utf8").split("\n");
    writeFileSync(join(dir, file), `${lines.slice(0, -2).join("\n")}\n`); // drop the final checkpoint
    const w = TranscriptWriter.open(options(dir, { now: clock.now }));
    w.close("bye");
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start", "server_stop", "server_start", "server_stop", "checkpoint"]);
  });

  test("(b) a run that ended without server_stop: recovery with torn_bytes 0, then server_start", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    await crashedRun(dir, clock);
    const lastBefore = entriesOf(dir).at(-1)!;
    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { log, now: clock.now }));
    w.close("bye");
    const entries = entriesOf(dir);
    const rec = entries[lastBefore.seq]!;
    expect(rec.type).toBe("recovery");
    expect(rec.seq).toBe(lastBefore.seq + 1);
    expect(rec.prev).toBe(lastBefore.hash);
    expect(rec.file).toBe(transcriptFiles(dir)[0]!);
    expect(rec.torn_bytes).toBe(0);
    expect(rec.torn_sha256).toBe(EMPTY_SHA256);
    expect(typeof rec.reason).toBe("string");
    expect(entries[lastBefore.seq + 1]!.type).toBe("server_start");
    expect(events).toContainEqual({ level: "warn", event: "transcript_unclean_stop", fields: { seq: lastBefore.seq } });
    expect(events.some((e) => e.event === "transcript_torn_tail")).toBe(false);
    expect(readdirSync(dir).filter((n) => n.endsWith(".torn"))).toEqual([]);
    const r = await expectVerified(dir);
    expect(r.recoveries.seqs).toEqual([rec.seq]);
  });

  test("(c) a torn last line: cut to the last LF, kept in FILE.torn (0600, exact bytes), recorded, chain continues", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
    const file = transcriptFiles(dir)[0]!;
    const path = join(dir, file);
    const whole = readFileSync(path);
    const lastWhole = entriesOf(dir).at(-1)!;
    const torn = partialLine(lastWhole.hash, lastWhole.seq + 1);
    appendFileSync(path, torn);

    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { log, now: clock.now }));
    // cut before anything was appended; the writer continues the same file
    expect(w.file).toBe(file);
    w.close("bye");

    expect(readFileSync(`${path}.torn`)).toEqual(Buffer.from(torn));
    expect(modeOf(`${path}.torn`)).toBe(0o600);
    expect(readFileSync(path).subarray(0, whole.length)).toEqual(whole);
    const entries = entriesOf(dir);
    const rec = entries[lastWhole.seq]!;
    expect(rec.type).toBe("recovery");
    expect(rec.prev).toBe(lastWhole.hash);
    expect(rec.file).toBe(file);
    expect(rec.torn_bytes).toBe(torn.length);
    expect(rec.torn_sha256).toBe(toHex(sha256(torn)));
    expect(entries[lastWhole.seq + 1]!.type).toBe("server_start");
    expect(events).toContainEqual({ level: "warn", event: "transcript_torn_tail", fields: { file, bytes: torn.length } });
    expect(events.some((e) => e.event === "transcript_unclean_stop")).toBe(false);
    const r = await expectVerified(dir);
    expect(r.torn).toEqual([`${file}.torn`]);
    expect(r.recoveries.count).toBe(1);
  });

  test("(c') a torn line after a crash (no server_stop either): one recovery, for the torn line", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    await crashedRun(dir, clock, 3);
    const file = transcriptFiles(dir)[0]!;
    const lastWhole = entriesOf(dir).at(-1)!;
    appendFileSync(join(dir, file), partialLine(lastWhole.hash, lastWhole.seq + 1, 200));
    const w = TranscriptWriter.open(options(dir, { now: clock.now }));
    w.close("bye");
    const recs = entriesOf(dir).filter((e) => e.type === "recovery");
    expect(recs.length).toBe(1);
    expect(recs[0]!.torn_bytes).toBe(200);
    await expectVerified(dir);
  });

  test("(d) the torn line is the only content of a new file: the file is emptied and reused, its name still right", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
    const first = transcriptFiles(dir)[0]!;
    const firstBytes = readFileSync(join(dir, first));
    const lastWhole = entriesOf(dir).at(-1)!;
    // a crash right after rotating: the new file holds part of its first line only
    const name = `2026-03-01.${String(lastWhole.seq + 1).padStart(12, "0")}.jsonl`;
    const torn = partialLine(lastWhole.hash, lastWhole.seq + 1, 40);
    writeFileSync(join(dir, name), torn, { mode: 0o600 });

    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { log, now: clock.now }));
    expect(w.file).toBe(name);
    w.close("bye");

    expect(readFileSync(join(dir, first))).toEqual(firstBytes);
    expect(readFileSync(join(dir, `${name}.torn`))).toEqual(Buffer.from(torn));
    const read = readAll(dir);
    const inNew = read.filter((r) => r.file === name).map((r) => r.entry);
    expect(inNew[0]!.type).toBe("recovery");
    expect(inNew[0]!.seq).toBe(lastWhole.seq + 1);
    expect(inNew[0]!.prev).toBe(lastWhole.hash);
    expect(inNew[0]!.file).toBe(name);
    expect(inNew[0]!.torn_bytes).toBe(40);
    expect(inNew[0]!.torn_sha256).toBe(toHex(sha256(torn)));
    expect(events.map((e) => e.event)).toContain("transcript_torn_tail");
    const r = await expectVerified(dir);
    expect(r.files).toBe(2);
  });

  test("(d') a torn first line in the very first file: the chain starts over from GENESIS", async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const name = "2026-03-01.000000000001.jsonl";
    const torn = partialLine(GENESIS, 1, 30);
    writeFileSync(join(dir, name), torn);
    const w = TranscriptWriter.open(options(dir, { now: new FakeClock().now }));
    w.close("bye");
    const entries = entriesOf(dir);
    expect(entries.map((e) => e.type)).toEqual(["recovery", "server_start", "server_stop", "checkpoint"]);
    expect(entries[0]!.prev).toBe(GENESIS);
    expect(entries[0]!.torn_bytes).toBe(30);
    expect(readFileSync(join(dir, `${name}.torn`))).toEqual(Buffer.from(torn));
    await expectVerified(dir);
  });

  test("(e) a last whole entry that does not match its hash: open throws transcript_corrupt and writes nothing", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = TranscriptWriter.open(options(dir, { now: clock.now }));
    await w.append("message", msg(1, "the original")).durable; // then the process dies
    const file = transcriptFiles(dir)[0]!;
    const path = join(dir, file);
    const edited = readFileSync(path, "utf8").replace('"text":"the original"', '"text":"the forgery!"');
    writeFileSync(path, edited);
    const snapshot = () => readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n)).toString("base64"), modeOf(join(dir, n))]);
    const before = snapshot();

    const { log, events } = collectingLog();
    expect(thrownCode(() => TranscriptWriter.open(options(dir, { log, now: clock.now })))).toBe("transcript_corrupt");
    expect(snapshot()).toEqual(before);
    expect(events).toEqual([]);
  });

  test("(e') the second-to-last entry edited, or the last two not chained: transcript_corrupt", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
    const path = join(dir, transcriptFiles(dir)[0]!);
    const good = readFileSync(path, "utf8");
    writeFileSync(path, good.replace('"reason":"bye"', '"reason":"bye!"'));
    expect(thrownCode(() => TranscriptWriter.open(options(dir, { now: clock.now })))).toBe("transcript_corrupt");
    // a valid entry that does not chain to the one before it
    const lines = good.split("\n").slice(0, -1);
    const stray = entryLine(makeEntry("ab".repeat(32), 3, T, "message", msg(1)));
    writeFileSync(path, `${lines.slice(0, 2).join("\n")}\n${stray}`);
    expect(thrownCode(() => TranscriptWriter.open(options(dir, { now: clock.now })))).toBe("transcript_corrupt");
    expect(readdirSync(dir)).toEqual([transcriptFiles(dir)[0]!]);
  });

  test("(f) torn tails after two crashes: FILE.torn, then FILE.1.torn; both recorded", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    await crashedRun(dir, clock, 1);
    const file = transcriptFiles(dir)[0]!;
    const path = join(dir, file);
    let last = entriesOf(dir).at(-1)!;
    const tornA = partialLine(last.hash, last.seq + 1, 50);
    appendFileSync(path, tornA);

    const second = await crashedRunFrom(dir, clock); // recovers A, then crashes too
    expect(second.file).toBe(file);
    last = entriesOf(dir).at(-1)!;
    const tornB = partialLine(last.hash, last.seq + 1, 77);
    appendFileSync(path, tornB);

    const w = TranscriptWriter.open(options(dir, { now: clock.now }));
    w.close("bye");
    expect(readFileSync(`${path}.torn`)).toEqual(Buffer.from(tornA));
    expect(readFileSync(join(dir, `${file}.1.torn`))).toEqual(Buffer.from(tornB));
    expect(modeOf(join(dir, `${file}.1.torn`))).toBe(0o600);
    const recs = entriesOf(dir).filter((e) => e.type === "recovery");
    expect(recs.map((e) => [e.torn_bytes, e.torn_sha256])).toEqual([
      [50, toHex(sha256(tornA))],
      [77, toHex(sha256(tornB))],
    ]);
    const r = await expectVerified(dir);
    expect(r.torn).toEqual([`${file}.1.torn`, `${file}.torn`]);
    expect(r.recoveries.count).toBe(2);
  });
});

/**
 * What an attacker who can write the files, but does not hold the host key,
 * does to the tail: changes the entry with seq `seq` (`edit`), then
 * recomputes the hash of it and — unless `only` — `prev` and `hash` of
 * every later entry; a checkpoint keeps its `head` and `sig`, which only
 * the key could redo. Every file is written back with the same lines.
 */
function rewriteFrom(dir: string, seq: number, edit: (e: Entry) => Entry, only = false): void {
  let prev = GENESIS;
  for (const file of transcriptFiles(dir)) {
    const path = join(dir, file);
    const lines = readFileSync(path, "utf8")
      .split("\n")
      .slice(0, -1)
      .map((l) => {
        let e = parseEntry(l);
        if (e.seq === seq) e = edit(e);
        if (e.seq > seq && !only) e = { ...e, prev };
        if (e.seq === seq || (e.seq > seq && !only)) e = { ...e, hash: entryHash(e) };
        prev = e.hash;
        return entryLine(e);
      });
    writeFileSync(path, lines.join(""));
  }
}

/** `FILE:LINE` of the entry with this seq. */
function lineOf(dir: string, seq: number): string {
  const all = readAll(dir);
  const i = all.findIndex((r) => r.entry.seq === seq);
  const file = all[i]!.file;
  return `${file}:${all.slice(0, i + 1).filter((r) => r.file === file).length}`;
}

/** What open throws: its code and message; "opened" if it does not throw. */
function refusal(dir: string, over: Partial<WriterOptions> = {}): { code?: string; message: string } {
  try {
    TranscriptWriter.open(options(dir, over)).close("bye");
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  return { message: "opened" };
}

/** Expects open to refuse with transcript_corrupt, naming `at` (FILE:LINE) and `transcript verify`, and to touch nothing. */
function expectRefused(dir: string, at: string, reason: string, over: Partial<WriterOptions> = {}): void {
  const snapshot = () => readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n)).toString("base64"), modeOf(join(dir, n))]);
  const before = snapshot();
  const { log, events } = collectingLog();
  const r = refusal(dir, { log, ...over });
  expect(r.code).toBe("transcript_corrupt");
  expect(r.message).toStartWith(`transcript: ${at}: ${reason}`);
  expect(r.message).toEndWith(`run "securechat transcript verify ${dir}"`);
  expect(snapshot()).toEqual(before);
  expect(events).toEqual([]);
}

const EUR100 = { room: "lobby", room_seq: 1, from: "alice", text: "I owe bob 100 EUR" };
const to100k = (e: Entry): Entry => ({ ...e, text: "I owe bob 100,000 EUR" });

describe("the tail is verified at start, from the last checkpoint (§7)", () => {
  test("an edit after the last checkpoint, every later hash recomputed, is refused when a checkpoint follows the entry", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    // a checkpoint every 3 entries: one follows bob's join
    const w = TranscriptWriter.open(options(dir, { now: clock.now, checkpointEvery: 3 }));
    w.append("join", { room: "lobby", user: "alice" });
    const joined = w.append("join", { room: "lobby", user: "bob" });
    await w.append("leave", { room: "lobby", user: "bob" }).durable;
    await w.append("leave", { room: "lobby", user: "alice" }).durable;
    // kill -9: no close, no server_stop, no final checkpoint
    const cp = entriesOf(dir).find((e) => e.type === "checkpoint" && e.seq > joined.entry.seq)!;
    rewriteFrom(dir, joined.entry.seq, (e) => ({ ...e, user: "mallory" }));
    expectRefused(dir, lineOf(dir, cp.seq), `bad checkpoint (it must seal the entry before it, seq ${cp.seq - 1}; it names seq ${cp.seq - 1} with another hash`, { now: clock.now });
  });

  test("a checkpoint signed by another key (forged, or the host key was replaced): refused", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = await unsignedRun(dir, clock, 3);
    const forger = ed25519Generate();
    const forged = makeEntry(w.head, w.seq + 1, T, "checkpoint", { head_seq: w.seq, head: w.head, sig: signCheckpoint(forger.secretKey, w.seq, w.head) });
    appendFileSync(join(dir, w.file), entryLine(forged));
    expectRefused(dir, lineOf(dir, forged.seq), "bad checkpoint signature", { now: clock.now });
  });

  test("a checkpoint right after another: a genuine one is accepted (it signs the checkpoint before it), a forged one refused at its own line", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = await crashedRun(dir, clock, 2); // ends with the checkpoint that signed the messages
    expect(entriesOf(dir).at(-1)!.type).toBe("checkpoint");
    const clean = `${dir}-clean`;
    fs.cpSync(dir, clean, { recursive: true });
    const genuine = makeEntry(w.head, w.seq + 1, T, "checkpoint", { head_seq: w.seq, head: w.head, sig: signCheckpoint(HOST.secretKey, w.seq, w.head) });
    appendFileSync(join(clean, w.file), entryLine(genuine));
    expect(refusal(clean, { now: clock.now }).message).toBe("opened");
    await expectVerified(clean);

    const forged = makeEntry(w.head, w.seq + 1, T, "checkpoint", { head_seq: w.seq, head: w.head, sig: signCheckpoint(ed25519Generate().secretKey, w.seq, w.head) });
    appendFileSync(join(dir, w.file), entryLine(forged));
    expectRefused(dir, lineOf(dir, forged.seq), "bad checkpoint signature", { now: clock.now });
  });

  test("the last checkpoint's signature altered, its hash recomputed: refused", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
    const cp = entriesOf(dir).at(-1)!;
    const sig = Buffer.from(cp.sig as string, "base64");
    sig[0]! ^= 1;
    rewriteFrom(dir, cp.seq, (e) => ({ ...e, sig: toBase64(sig) }));
    expectRefused(dir, lineOf(dir, cp.seq), "bad checkpoint signature", { now: clock.now });
  });

  test("an entry before a clean stop's checkpoint rewritten, every later hash recomputed: refused at the checkpoint", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = TranscriptWriter.open(options(dir, { now: clock.now }));
    const paid = w.append("message", EUR100);
    w.append("leave", { room: "lobby", user: "alice" });
    w.close("bye");
    rewriteFrom(dir, paid.entry.seq, to100k);
    expectRefused(dir, lineOf(dir, entriesOf(dir).at(-1)!.seq), "bad checkpoint (it must seal the entry before it", { now: clock.now });
  });

  test("an entry deep in the unsigned tail edited (its own hash recomputed, the later ones not): refused at the next line", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    // a checkpoint mid-file, then a tail of 4 entries: the line numbers are counted, not assumed
    await unsignedRun(dir, clock, 10, { checkpointEvery: 6 });
    const entries = entriesOf(dir);
    const lastCp = entries.findLast((e) => e.type === "checkpoint")!;
    const victim = entries.find((e) => e.seq > lastCp.seq + 1 && e.type === "join")!;
    expect(entries.at(-1)!.seq - victim.seq).toBeGreaterThan(2); // not one of the last two the old check read
    rewriteFrom(dir, victim.seq, (e) => ({ ...e, user: "mallory" }), true);
    expectRefused(dir, lineOf(dir, victim.seq + 1), "entry inserted or replaced (prev does not match the previous entry's hash", { now: clock.now });
  });

  test("no checkpoint at all: verified from the genesis", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    await unsignedRun(dir, clock, 5);
    rewriteFrom(dir, 2, (e) => ({ ...e, user: "mallory" }), true);
    expectRefused(dir, lineOf(dir, 3), "entry inserted or replaced", { now: clock.now });
  });

  describe("across file rotation", () => {
    /** Run 1 stops cleanly (its checkpoint ends file 1); run 2 writes one entry per file, none signed, then crashes. */
    async function rotated(dir: string, clock: FakeClock): Promise<Entry[]> {
      TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
      const w = TranscriptWriter.open(options(dir, { now: clock.now, rotateBytes: 1 }));
      for (let i = 1; i <= 4; i++) await w.append("join", { room: `room${i}`, user: "alice" }).durable;
      expect(transcriptFiles(dir).length).toBeGreaterThan(4);
      return entriesOf(dir);
    }

    test("a tail edited in a middle file: refused, naming the file where the chain breaks", async () => {
      const dir = freshDir();
      const clock = new FakeClock();
      const entries = await rotated(dir, clock);
      const victim = entries.find((e) => e.type === "join" && e.room === "room2")!;
      rewriteFrom(dir, victim.seq, (e) => ({ ...e, user: "mallory" }), true);
      const at = lineOf(dir, victim.seq + 1);
      expect(at).toEndWith(".jsonl:1");
      expect(at).not.toBe(lineOf(dir, victim.seq).replace(/:\d+$/, ":1"));
      expectRefused(dir, at, "entry inserted or replaced", { now: clock.now });
    });

    test("an entry of the first file rewritten, hashes recomputed through every later file: refused at the checkpoint in the first file", async () => {
      const dir = freshDir();
      const clock = new FakeClock();
      const entries = await rotated(dir, clock);
      const cp = entries.find((e) => e.type === "checkpoint")!;
      rewriteFrom(dir, cp.seq - 1, (e) => ({ ...e, reason: "crash" }));
      expect(lineOf(dir, cp.seq)).toStartWith(`${transcriptFiles(dir)[0]!}:`);
      expectRefused(dir, lineOf(dir, cp.seq), "bad checkpoint (it must seal the entry before it", { now: clock.now });
    });

    test("a clean tail across files opens, and a torn last line is still cut and recorded", async () => {
      const dir = freshDir();
      const clock = new FakeClock();
      const entries = await rotated(dir, clock);
      const last = entries.at(-1)!;
      const lastFile = transcriptFiles(dir).at(-1)!;
      const torn = partialLine(last.hash, last.seq + 1, 90);
      appendFileSync(join(dir, lastFile), torn);
      const w = TranscriptWriter.open(options(dir, { now: clock.now }));
      expect(w.seq).toBe(last.seq + 2); // recovery, server_start
      w.close("bye");
      expect(readFileSync(join(dir, `${lastFile}.torn`))).toEqual(Buffer.from(torn));
      const rec = entriesOf(dir).find((e) => e.seq === last.seq + 1)!;
      expect([rec.type, rec.file, rec.torn_bytes]).toEqual(["recovery", lastFile, 90]);
      await expectVerified(dir);
    });
  });

  test("a torn last line after a tail that does not verify: refused, and nothing is cut", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    await unsignedRun(dir, clock, 5);
    rewriteFrom(dir, 3, (e) => ({ ...e, user: "mallory" }), true);
    const last = entriesOf(dir).at(-1)!;
    const at = lineOf(dir, 4);
    appendFileSync(join(dir, transcriptFiles(dir)[0]!), partialLine(last.hash, last.seq + 1));
    expectRefused(dir, at, "entry inserted or replaced", { now: clock.now });
    expect(readdirSync(dir).filter((n) => n.endsWith(".torn"))).toEqual([]);
  });

  test("only the entry the last checkpoint signs and what follows are read: damage further back is left to transcript verify", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const w = TranscriptWriter.open(options(dir, { now: clock.now, checkpointEvery: 5 }));
    for (let i = 1; i <= 12; i++) w.append("message", msg(i));
    w.close("bye");
    const first = entriesOf(dir).find((e) => e.type === "message")!;
    rewriteFrom(dir, first.seq, to100k, true); // breaks the chain two checkpoints back
    const w2 = TranscriptWriter.open(options(dir, { now: clock.now }));
    w2.close("bye");
    const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(r.problem?.code).toBe("inserted");
    expect(`${r.problem!.file}:${r.problem!.line}`).toBe(lineOf(dir, first.seq + 1));
  });
});

/** The seqs of the message and direct entries in `entries` that no checkpoint among them covers. */
function uncovered(entries: Entry[]): number[] {
  const lastCp = entries.findLast((e) => e.type === "checkpoint");
  return entries.filter((e) => (e.type === "message" || e.type === "direct") && e.seq > (lastCp ? (lastCp.head_seq as number) : 0)).map((e) => e.seq);
}

/**
 * The attacker's other move: cut the transcript back to its entry `keep`,
 * and append `forged` entries chained after it (no checkpoint: that takes
 * the host key).
 */
function cutAndForge(dir: string, keep: number, forged: [string, Record<string, string | number | boolean>][]): Entry[] {
  const kept: Entry[] = [];
  for (const file of transcriptFiles(dir)) {
    const mine = readAll(dir).filter((r) => r.file === file && r.entry.seq <= keep);
    kept.push(...mine.map((r) => r.entry));
    if (mine.length === 0) fs.rmSync(join(dir, file));
    else writeFileSync(join(dir, file), mine.map((r) => `${r.line}\n`).join(""));
  }
  let last = kept.at(-1)!;
  const made: Entry[] = [];
  for (const [type, fields] of forged) {
    last = makeEntry(last.hash, last.seq + 1, last.ts, type, fields);
    made.push(last);
  }
  appendFileSync(join(dir, transcriptFiles(dir).at(-1)!), made.map((e) => entryLine(e)).join(""));
  return made;
}

describe("no acknowledgement without a signature (§6, §10)", () => {
  for (const [policy, rotateBytes] of [["off", 0], ["batch", 0], ["always", 0], ["batch", 1024]] as const) {
    const rotating = rotateBytes > 0 ? `, rotating every ${rotateBytes} bytes` : "";
    test(`${policy}${rotating}: when a message's durable resolves, the file holds a host-key checkpoint covering it, written before the fsync that made it durable`, async () => {
      const dir = freshDir();
      const realFsync = fs.fsync;
      const atFsync: number[][] = [];
      track(spyOn(fs, "fsync")).mockImplementation(((fd: number, cb: fs.NoParamCallback) => {
        atFsync.push(uncovered(entriesOf(dir)));
        realFsync(fd, cb);
      }) as typeof fs.fsync);
      const w = TranscriptWriter.open(options(dir, { fsync: policy, batchMs: 2, ...(rotateBytes > 0 ? { rotateBytes } : {}) }));
      const seen: { seq: number; onDisk: Entry[] }[] = [];
      const watch = (r: { entry: Entry; durable: Promise<void> }) => r.durable.then(() => void seen.push({ seq: r.entry.seq, onDisk: entriesOf(dir) }));
      const waits: Promise<void>[] = [];
      let n = 0;
      // a quiet chat (one message a turn), then bursts in one turn, with entries no ack waits on between
      for (const burst of [1, 1, 1, 6, 3]) {
        for (let i = 0; i < burst; i++) {
          waits.push(watch(w.append("message", msg(++n))));
          waits.push(watch(w.append("direct", { dm_seq: n, from: "alice", to: "bob", text: `dm ${n}` })));
          w.append("join", { room: `room${n}`, user: "bob" });
        }
        await nextTurn();
      }
      await Promise.all(waits);
      expect(seen.length).toBe(2 * n);
      for (const { seq, onDisk } of seen) {
        const cover = onDisk.find((e) => e.type === "checkpoint" && (e.head_seq as number) >= seq);
        expect(cover).toBeDefined();
        expect(verifyCheckpoint(HOST.publicKey, cover!)).toBe(true);
        expectChained(onDisk);
      }
      // every fsync began with every message in the file already signed
      if (policy !== "off") expect(atFsync.length).toBeGreaterThan(0);
      for (const seqs of atFsync) expect(seqs).toEqual([]);
      w.close("bye");
      const r = await expectVerified(dir);
      expect(r.neverSigned.count).toBe(0);
      if (rotateBytes > 0) expect(r.files).toBeGreaterThan(3);
    });
  }

  test("entries no ack waits on (joins, sessions, leaves) get no checkpoint of their own", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 2 }));
    for (let i = 1; i <= 3; i++) {
      await w.append("join", { room: `room${i}`, user: "alice" }).durable;
      await w.append("session_close", { user: "alice", session: toBase64(new Uint8Array(16).fill(i)) }).durable;
    }
    expect(entriesOf(dir).filter((e) => e.type === "checkpoint")).toEqual([]);
    await w.append("message", msg(1)).durable;
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start", ...Array(3).fill(["join", "session_close"]).flat(), "message", "checkpoint"]);
    w.close("bye");
  });

  test("the review's attack: alice's acknowledged message rewritten after kill -9, every later hash recomputed: a checkpoint signed it before her ack, so the start refuses", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    // default checkpoint settings: nothing but her ack makes a checkpoint follow her message
    const w = TranscriptWriter.open(options(dir, { now: clock.now, fsync: "batch", batchMs: 2 }));
    w.append("join", { room: "lobby", user: "alice" });
    const paid = w.append("message", EUR100);
    await paid.durable; // alice has her ack
    await w.append("leave", { room: "lobby", user: "alice" }).durable;
    // kill -9: no close, no server_stop; the tail after the last checkpoint is the leave alone
    const cp = entriesOf(dir).findLast((e) => e.type === "checkpoint")!;
    expect(cp.head_seq).toBe(paid.entry.seq);
    rewriteFrom(dir, paid.entry.seq, to100k);
    expect(readFileSync(join(dir, transcriptFiles(dir)[0]!), "utf8")).toContain("100,000 EUR");
    expectRefused(dir, lineOf(dir, cp.seq), `bad checkpoint (it must seal the entry before it, seq ${paid.entry.seq}; it names seq ${paid.entry.seq} with another hash`, { now: clock.now });
    const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(r.problem?.code).toBe("bad_checkpoint");
  });

  describe("the attacker's only other move: cut back to the checkpoint before her message", () => {
    /** bob's message and its checkpoint, then alice's acknowledged message and its own, then a crash. */
    async function paidRun(dir: string, clock: FakeClock): Promise<{ before: Entry; paid: Entry; acks: string }> {
      const w = TranscriptWriter.open(options(dir, { now: clock.now }));
      w.append("join", { room: "lobby", user: "alice" });
      await w.append("message", { room: "lobby", room_seq: 1, from: "bob", text: "you owe me" }).durable;
      const before = entriesOf(dir).findLast((e) => e.type === "checkpoint")!;
      const paid = w.append("message", { ...EUR100, room_seq: 2 });
      await paid.durable;
      const acks = join(tempDir("acks"), "alice.tr");
      writeFileSync(acks, `${clientAcks([paid.entry], "alice").join("\n")}\n`);
      return { before, paid: paid.entry, acks };
    }

    test("…and re-add her message forged: the server starts (it could have written that), and verify says the forgery was never signed; her ack convicts it", async () => {
      const dir = freshDir();
      const clock = new FakeClock();
      const { before, paid, acks } = await paidRun(dir, clock);
      const forged = cutAndForge(dir, before.seq, [
        ["message", { ...EUR100, room_seq: 2, text: "I owe bob 100,000 EUR" }],
        ["leave", { room: "lobby", user: "alice" }],
      ]);
      expect(forged[0]!.seq).toBe(paid.seq); // the same seq, another hash
      expect(forged[0]!.hash).not.toBe(paid.hash);
      // the restart cannot tell: it starts, and its checkpoints sign what the files hold
      const w = TranscriptWriter.open(options(dir, { now: clock.now }));
      w.close("bye");
      const recovery = entriesOf(dir).find((e) => e.type === "recovery")!;
      expect(recovery.seq).toBe(forged.at(-1)!.seq + 1);

      const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
      expect(r.ok).toBe(true);
      expect(r.neverSigned).toEqual({ count: 1, entries: 2, ranges: [{ from: paid.seq, to: paid.seq + 1, messages: 1, crash: recovery.seq }] });
      expect(reportLines(r)).toContain(
        `warning: 2 entries, seq ${paid.seq}–${paid.seq + 1} (1 message), written before the crash at seq ${recovery.seq}, were never signed: the server acknowledged none of them, and they rest on the files alone`,
      );
      const against = await verifyTranscript(dir, { hostKey: HOST.publicKey, against: acks });
      expect(against.problem?.code).toBe("ack_head");
      expect(against.problem?.reason).toContain("the server log was rewritten");
    });

    test("…and stop there: verify passes with no warning (a truncation), her ack shows it, before and after a restart", async () => {
      const dir = freshDir();
      const clock = new FakeClock();
      const { before, paid, acks } = await paidRun(dir, clock);
      cutAndForge(dir, before.seq, []);
      const cut = await verifyTranscript(dir, { hostKey: HOST.publicKey });
      expect([cut.ok, cut.lastSeq, cut.unsealed, cut.neverSigned.count]).toEqual([true, before.seq, 0, 0]);
      expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, against: acks })).problem?.code).toBe("ack_missing");
      TranscriptWriter.open(options(dir, { now: clock.now })).close("bye");
      const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
      expect(r.ok).toBe(true);
      expect(r.neverSigned.count).toBe(0);
      // the restart's recovery entry now holds her tseq, under another hash
      expect(entriesOf(dir).find((e) => e.seq === paid.seq)!.type).toBe("recovery");
      expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, against: acks })).problem?.code).toBe("ack_head");
    });

    test("left alone, the crash leaves her message signed and no warning: only what no one was acknowledged is flagged", async () => {
      const dir = freshDir();
      const clock = new FakeClock();
      const { paid, acks } = await paidRun(dir, clock);
      const w = TranscriptWriter.open(options(dir, { now: clock.now }));
      w.close("bye");
      const r = await verifyTranscript(dir, { hostKey: HOST.publicKey, against: acks });
      expect(r.problem).toBeNull();
      expect(r.neverSigned.count).toBe(0);
      expect(r.recoveries.count).toBe(1);
      expect(entriesOf(dir).find((e) => e.seq === paid.seq + 1)!.type).toBe("checkpoint");
    });
  });
});

// Not here, on purpose (see the report that came with these tests):
// - chmod 0500 on the directory so the next rotation cannot create its file:
//   root ignores the mode bits (these tests run as root), and the same path
//   with a failure that root does hit (the next file's name taken by a
//   directory: EISDIR) shows a src defect — append throws the raw fs error,
//   the writer is not stopped, and the next append fsyncs/closes the fd it
//   already closed (EBADF, or someone else's fd once the number is reused).
// - the interval checkpoint after a failure: the timer calls checkpoint() on
//   the failed writer, which throws from the timer (an uncaught exception
//   that ends the process). The tests here keep the interval out of reach.
describe("failure (§6): a full disk blocks the writer until it has space; any other failure stops it for good", () => {
  for (const policy of ["batch", "always"] as const) {
    test(`${policy}: a failed fsync rejects durable, stops the writer, refuses later appends`, async () => {
      const fsync = track(spyOn(fs, "fsync")).mockImplementation(((_fd: number, cb: fs.NoParamCallback) =>
        void setImmediate(() => cb(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" })))) as typeof fs.fsync);
      const dir = freshDir();
      const { log, events } = collectingLog();
      const w = TranscriptWriter.open(options(dir, { fsync: policy, batchMs: 5, log }));
      const a = w.append("message", msg(1));
      const b = w.append("message", msg(2));
      expect(await settle(a.durable)).toBe("rejected:transcript_write");
      expect(await settle(b.durable)).toBe("rejected:transcript_write");
      expect(fsync).toHaveBeenCalledTimes(1); // never retried (§6)
      expect(w.stopped).toBe(true);
      expect(events.some((e) => e.level === "warn" && e.event === "transcript_failed")).toBe(true);
      expect(thrownCode(() => w.append("message", msg(3)))).toBe("transcript_write");
      const n = entriesOf(dir).length;
      expect(() => w.close("bye")).not.toThrow();
      expect(entriesOf(dir).length).toBe(n); // no server_stop after a failure
    });
  }

  test("a failed write that is not for want of space (EIO) rejects durable and stops the writer", async () => {
    const dir = freshDir();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5 }));
    await nextTurn(); // server_start written
    track(spyOn(fs, "writeSync")).mockImplementation(() => {
      throw Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" });
    });
    const a = w.append("message", msg(1));
    expect(await settle(a.durable)).toBe("rejected:transcript_write");
    expect(w.stopped).toBe(true);
    expect(w.recording).toBe(false);
    expect(thrownCode(() => w.append("message", msg(2)))).toBe("transcript_write");
    w.close("bye");
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start"]);
  });

  test("ENOSPC mid-line blocks the writer: recording turns false, durable waits, nothing torn is left once space returns; then a recovery entry and recording again", async () => {
    const dir = freshDir();
    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5, retryMs: 20, log }));
    const seen: boolean[] = [];
    w.watch((r) => seen.push(r));
    await nextTurn(); // server_start written
    let full = true;
    let tookSome = false;
    const real = fs.writeSync;
    track(spyOn(fs, "writeSync")).mockImplementation(((fd: number, buf: Uint8Array, off?: number, len?: number) => {
      if (!full) return real(fd, buf, off, len);
      // The disk takes 10 bytes, then is full: a line is left half written on disk.
      if (tookSome) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      tookSome = true;
      return real(fd, buf, off, Math.min(10, len ?? buf.length));
    }) as typeof fs.writeSync);
    const a = w.append("message", msg(1, "100 EUR to bob"));
    const b = w.append("message", msg(2));
    const onDiskWhenAcked = a.durable.then(() => entriesOf(dir));
    await until("blocked", () => !w.recording);
    expect(w.stopped).toBe(false);
    expect(seen).toEqual([false]);
    expect(events.some((e) => e.level === "warn" && e.event === "transcript_blocked" && String(e.fields.error).includes("ENOSPC"))).toBe(true);
    // Appends still queue (the server refuses what it can; a leave or a session's end cannot be refused).
    const c = w.append("leave", { room: "lobby", user: "alice" });
    await sleep(100); // several retries, all refused
    let outcome = "pending";
    void a.durable.then(() => (outcome = "durable"));
    await nextTurn();
    expect(outcome).toBe("pending");
    // Space returns.
    full = false;
    expect(await settle(a.durable)).toBe("resolved");
    expect(await settle(b.durable)).toBe("resolved");
    expect(await settle(c.durable)).toBe("resolved");
    expect(uncovered(await onDiskWhenAcked)).toEqual([]); // signed before acknowledged (§6)
    await until("recording again", () => w.recording);
    expect(seen).toEqual([false, true]);
    expect(events.some((e) => e.event === "transcript_recovered")).toBe(true);
    w.close("bye");
    const types = entriesOf(dir).map((e) => e.type);
    // the messages' acks waited for a checkpoint after the retry's fsync (§6)
    expect(types).toEqual(["server_start", "message", "message", "leave", "recovery", "checkpoint", "server_stop", "checkpoint"]);
    const recovery = entriesOf(dir).find((e) => e.type === "recovery")!;
    expect(String(recovery.reason)).toContain("ENOSPC");
    expect(entriesOf(dir).find((e) => e.type === "message")!.text).toBe("100 EUR to bob");
    await expectVerified(dir);
  });

  test("a disk still full at close: what waited is reported lost, no server_stop is written, and the next start records the unclean end", async () => {
    const dir = freshDir();
    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5, retryMs: 20, log }));
    await nextTurn();
    const spy = track(spyOn(fs, "writeSync")).mockImplementation(() => {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    });
    const a = w.append("message", msg(1));
    await until("blocked", () => !w.recording);
    w.close("bye");
    expect(await settle(a.durable)).toBe("rejected:transcript_write");
    expect(events.some((e) => e.event === "transcript_lost")).toBe(true);
    spy.mockRestore();
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start"]);
    const again = TranscriptWriter.open(options(dir, { log }));
    again.close("bye");
    expect(entriesOf(dir).map((e) => e.type)).toEqual(["server_start", "recovery", "server_start", "server_stop", "checkpoint"]);
    await expectVerified(dir);
  });

  // Real I/O, and works as root (chmod would not: root ignores the mode bits).
  // The file the next rotation creates is made a symlink to /dev/full, so the
  // writer opens it fine and its first write fails with ENOSPC.
  test.skipIf(!existsSync("/dev/full"))("a real ENOSPC (a transcript file on /dev/full) blocks the writer; a close while still full rejects what waited", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const { log, events } = collectingLog();
    const w = TranscriptWriter.open(options(dir, { fsync: "batch", batchMs: 5, rotateBytes: 1, retryMs: 20, now: clock.now, log }));
    await nextTurn();
    symlinkSync("/dev/full", join(dir, "2026-03-01.000000000002.jsonl"));
    const a = w.append("message", msg(1)); // rotates into the /dev/full "file"
    expect(w.file).toBe("2026-03-01.000000000002.jsonl");
    await until("blocked", () => !w.recording);
    expect(w.stopped).toBe(false);
    expect(events.find((e) => e.event === "transcript_blocked")?.fields.error).toContain("ENOSPC");
    w.close("bye");
    expect(await settle(a.durable)).toBe("rejected:transcript_write");
    expect(w.stopped).toBe(true);
  });
});
