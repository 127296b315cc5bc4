/**
 * What a server start reads of its transcript (docs/TRANSCRIPT.md §7): the
 * entries after the last checkpoint, and those history.db has not seen —
 * never the whole transcript, nor even the whole last file, however long it
 * is. Counted in bytes read from transcript files (read.ts counts them),
 * not timed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, readFileSync, rmSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { type Logger, silentLogger } from "../../src/log.ts";
import { type JournalOptions, TranscriptJournal } from "../../src/transcript/journal.ts";
import { Frontier, HASH_SIZE, leafHash } from "../../src/transcript/merkle.ts";
import { CHUNK_BYTES, transcriptReads } from "../../src/transcript/read.ts";
import { DEFAULT_WRITER, transcriptFiles, treePath } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(11);
const EVERY = 100;
/** Messages in the transcript: about 2.5 MiB, in one file (40 × CHUNK_BYTES). */
const MESSAGES = 10_000;
/** What a start may read: the last checkpoint's tail (EVERY lines of about 250 bytes), history.db's, and a chunk or two of slack. */
const BOUND = 4 * CHUNK_BYTES;

/** The data directories made here (a few MiB each), removed at the end. */
const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
const dataDir = (prefix: string): string => {
  const d = tempDir(prefix);
  made.push(d);
  return d;
};

function open(dir: string, log: Logger = silentLogger, over: Partial<JournalOptions> = {}): TranscriptJournal {
  return TranscriptJournal.open({ ...DEFAULT_WRITER, fsync: "off", checkpointEvery: EVERY, checkpointIntervalMs: 1e9, dir, hostKey: HOST, version: "test", log, history: 50, historyFlushMs: 0, ...over });
}

function capture(): { log: Logger; events: { level: string; event: string; fields: Record<string, unknown> }[] } {
  const events: { level: string; event: string; fields: Record<string, unknown> }[] = [];
  return { events, log: { info: (event, fields = {}) => void events.push({ level: "info", event, fields }), warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }) } };
}

/** `n` messages in room "lobby" (from seq `from`), all durable and in history.db. */
async function say(j: TranscriptJournal, from: number, n: number): Promise<void> {
  const durable: Promise<void>[] = [];
  for (let s = from; s < from + n; s++) {
    const d = j.append({ kind: "message", message: { type: "message", room: "lobby", seq: s, ts: Date.now(), from: "alice", text: `message ${s} in the lobby, long enough to look like chat: ${"x".repeat(60)}` } }).durable;
    if (d) durable.push(d);
  }
  await Promise.all(durable);
  await Bun.sleep(5); // history.db's write of them
}

/** A transcript of MESSAGES messages in one file, history.db up to date, stopped cleanly. */
async function longTranscript(): Promise<string> {
  const dir = join(dataDir("startup"), "transcript");
  const j = open(dir);
  await say(j, 1, MESSAGES);
  j.close("shutdown");
  expect(transcriptFiles(dir).length).toBe(1);
  expect(statSync(join(dir, transcriptFiles(dir)[0]!)).size).toBeGreaterThan(10 * BOUND);
  return dir;
}

/** Bytes of transcript read while `f` runs. */
function bytesRead<T>(f: () => T): [T, number] {
  const before = transcriptReads.bytes;
  const r = f();
  return [r, transcriptReads.bytes - before];
}

describe("a start reads a bounded tail of the transcript, not its length", () => {
  test("after a clean stop: a few chunks of a long file, and the history is all there", async () => {
    const dir = await longTranscript();
    const { log, events } = capture();
    const [j, bytes] = bytesRead(() => open(dir, log));
    expect(bytes).toBeLessThanOrEqual(BOUND);
    expect(j.linesRead).toBeLessThan(10);
    expect(events.filter((e) => e.level === "warn")).toEqual([]);
    expect(j.lastSeq("lobby")).toBe(MESSAGES);
    expect(j.recent("lobby", 50).map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => MESSAGES - 49 + i));
    j.close("shutdown");
  });

  test("after a crash with a torn last line: the unsigned tail and what history.db missed, and those messages are shown", async () => {
    const dir = await longTranscript();
    const j1 = open(dir);
    await say(j1, MESSAGES + 1, 30);
    // the process dies: no server_stop, and half a line at the end
    const last = join(dir, transcriptFiles(dir).at(-1)!);
    appendFileSync(last, '{"from":"alice","prev":"');
    const { log, events } = capture();
    const [j2, bytes] = bytesRead(() => open(dir, log));
    expect(bytes).toBeLessThanOrEqual(BOUND);
    expect(events.filter((e) => e.level === "warn").map((e) => e.event)).toEqual(["transcript_torn_tail"]);
    expect(j2.lastSeq("lobby")).toBe(MESSAGES + 30);
    expect(j2.recent("lobby", 50).at(-1)!.seq).toBe(MESSAGES + 30);
    j2.close("shutdown");
  });

  test("history.db's entry not where it said: rebuilt from the whole transcript, and logged", async () => {
    const dir = await longTranscript();
    // another transcript's history.db: its last entry's hash is not this one's
    const other = join(dataDir("startup-other"), "transcript");
    const o = open(other);
    await say(o, 1, MESSAGES + 5);
    o.close("shutdown");
    rmSync(join(dir, "..", "history.db"));
    for (const ext of ["", "-wal", "-shm"]) {
      try {
        appendFileSync(join(dir, "..", `history.db${ext}`), readFileSync(join(other, "..", `history.db${ext}`)));
      } catch {
        // no WAL left after a clean close
      }
    }
    const { log, events } = capture();
    const j = open(dir, log);
    expect(events.filter((e) => e.event === "history_rebuild").map((e) => e.fields.reason)).toEqual([expect.stringContaining("is not in the transcript")]);
    expect(j.recent("lobby", 50).at(-1)!.text).toStartWith(`message ${MESSAGES} in the lobby`);
    j.close("shutdown");
  });

  test("tree.hashes that lost its end (a machine that stopped): taken up to an earlier checkpoint, the lines since hashed again, not the whole transcript", async () => {
    const dir = await longTranscript();
    const lines = readFileSync(join(dir, transcriptFiles(dir)[0]!)).toString("utf8").split("\n").slice(0, -1);
    const cut = 8 * 1024;
    truncateSync(treePath(dir), statSync(treePath(dir)).size - cut);
    const { log, events } = capture();
    const [j, bytes] = bytesRead(() => open(dir, log));
    // a start's own, and the lines since that checkpoint read backwards to find it, then forwards
    expect(bytes).toBeLessThanOrEqual(2 * BOUND);
    const said = events.filter((e) => e.event.startsWith("transcript_tree_"));
    expect(said.map((e) => `${e.level} ${e.event} ${e.fields.reason}`)).toEqual(["warn transcript_tree_resumed tree.hashes is shorter than the transcript"]);
    // from a checkpoint (EVERY + 1 lines apart), at most a few before the end
    expect(lines.length - Number(said[0]!.fields.from)).toBeLessThanOrEqual(cut / HASH_SIZE);
    // the tree is the tree of every line, and what the next start finds in the file
    const f = new Frontier();
    for (const l of lines) f.append(leafHash(new TextEncoder().encode(l)));
    const writer = j.writer;
    expect(writer.seq).toBe(lines.length + 1); // + server_start
    j.close("shutdown");
    const all = readFileSync(join(dir, transcriptFiles(dir)[0]!)).toString("utf8").split("\n").slice(0, -1);
    for (const l of all.slice(lines.length)) f.append(leafHash(new TextEncoder().encode(l)));
    expect(Buffer.from(writer.tree!.root).toString("hex")).toBe(Buffer.from(f.root()).toString("hex"));
    const again = capture();
    open(dir, again.log).close("shutdown");
    expect(again.events.filter((e) => e.level === "warn")).toEqual([]);
  });

  test("tree.hashes missing: rebuilt from every line, and said so before it starts and once done", async () => {
    const dir = await longTranscript();
    rmSync(treePath(dir));
    const { log, events } = capture();
    const j = open(dir, log);
    expect(events.filter((e) => e.event.startsWith("transcript_tree_")).map((e) => `${e.level} ${e.event} ${e.fields.reason}`)).toEqual([
      "info transcript_tree_rebuilding no tree.hashes file",
      "warn transcript_tree_rebuilt no tree.hashes file",
    ]);
    expect(j.writer.tree!.size).toBe(j.writer.seq);
    j.close("shutdown");
  });
});
