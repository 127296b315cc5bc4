/**
 * One line by its seq without scanning the log (src/transcript/lineat.ts,
 * docs/TRANSCRIPT.md §4.4): across rotated files, in a file that ends in a
 * torn line, after crash recovery cut one, and past an empty file; the
 * lookup reads O(log n) lines, counted (never timed).
 */
import { describe, expect, test } from "bun:test";
import { appendFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { type LineReads, SCAN_BYTES, readLineBySeq } from "../../src/transcript/lineat.ts";
import { MAX_LINE_BYTES } from "../../src/transcript/read.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(31);

function open(dir: string, rotateBytes = DEFAULT_WRITER.rotateBytes): TranscriptWriter {
  return TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, checkpointEvery: 50, rotateBytes, dir, hostKey: HOST, version: "t", log: silentLogger });
}

/** Every line of the transcript, in seq order, as stored. */
function allLines(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".jsonl"))
    .sort()
    .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").slice(0, -1));
}

const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

describe("readLineBySeq", () => {
  test("every line of a rotated multi-file log, by bisecting, with texts of very different lengths", () => {
    const dir = join(tempDir("lineat"), "transcript");
    const w = open(dir, 64 * 1024);
    for (let i = 0; i < 3000; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: i % 2 ? "alice" : "bob", text: "x".repeat((i * 37) % 900 + 1) });
    w.close("done");
    expect(readdirSync(dir).filter((f) => f.endsWith(".jsonl")).length).toBeGreaterThan(10);
    const lines = allLines(dir);
    for (let seq = 1; seq <= lines.length; seq++) expect([seq, text(readLineBySeq(dir, seq))]).toEqual([seq, lines[seq - 1]!]);
    expect(readLineBySeq(dir, lines.length + 1)).toBeNull();
    expect(readLineBySeq(dir, 0)).toBeNull();
  });

  test("one large file: the lines read grow with log2 of its size, not with it", () => {
    const dir = join(tempDir("lineat"), "transcript");
    const w = open(dir);
    for (let i = 0; i < 40_000; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `message number ${i}` });
    w.close("done");
    const files = readdirSync(dir).filter((f) => f.endsWith(".jsonl"));
    expect(files.length).toBe(1);
    const size = readFileSync(join(dir, files[0]!)).length;
    expect(size).toBeGreaterThan(40 * SCAN_BYTES);
    let worst: LineReads = { reads: 0, bytes: 0 };
    for (const seq of [1, 2, 777, 20_000, 31_337, 39_999, 40_000]) {
      const stats = { reads: 0, bytes: 0 };
      expect(JSON.parse(text(readLineBySeq(dir, seq, stats))!).seq).toBe(seq);
      if (stats.bytes > worst.bytes) worst = stats;
    }
    // Each probe reads a block to find an LF and the line after it; then at most SCAN_BYTES and a line.
    const probes = Math.ceil(Math.log2(size / SCAN_BYTES)) + 2;
    expect(worst.reads).toBeLessThanOrEqual(probes * 3 + SCAN_BYTES / 100);
    expect(worst.bytes).toBeLessThanOrEqual(probes * 3 * 4096 + 2 * SCAN_BYTES);
    expect(worst.bytes).toBeLessThan(size / 20);
  });

  test("a file that ends in a torn line: the whole lines are found, the torn one is not; after recovery, all of them", () => {
    const dir = join(tempDir("lineat"), "transcript");
    const w = open(dir, 16 * 1024);
    for (let i = 0; i < 400; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `hello ${i}` });
    w.close("done");
    const before = allLines(dir);
    const last = readdirSync(dir).filter((f) => f.endsWith(".jsonl")).sort().at(-1)!;
    // A crash mid-write: the start of the next line, no LF.
    appendFileSync(join(dir, last), `{"from":"alice","prev":"${"0".repeat(64)}","room":"lobby","room_seq":401,"seq":${before.length + 1},"te`);
    for (const seq of [1, before.length - 1, before.length]) expect(text(readLineBySeq(dir, seq))).toBe(before[seq - 1]!);
    expect(readLineBySeq(dir, before.length + 1)).toBeNull();
    // The next start cuts it (into FILE.torn) and continues with a recovery entry.
    const again = open(dir, 16 * 1024);
    again.append("message", { room: "lobby", room_seq: 401, from: "alice", text: "after the crash" });
    again.close("done");
    expect(readdirSync(dir).some((f) => f.endsWith(".torn"))).toBe(true);
    const after = allLines(dir);
    expect(after.slice(0, before.length)).toEqual(before);
    for (let seq = before.length - 2; seq <= after.length; seq++) expect(text(readLineBySeq(dir, seq))).toBe(after[seq - 1]!);
    expect(JSON.parse(text(readLineBySeq(dir, before.length + 1))!).type).toBe("recovery");
  });

  test("an empty file (a crash right after creating it) is passed over; a line longer than any entry is not read", () => {
    const dir = join(tempDir("lineat"), "transcript");
    const w = open(dir);
    for (let i = 0; i < 5; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `m${i}` });
    w.close("done");
    const lines = allLines(dir);
    writeFileSync(join(dir, `2099-01-01.${String(lines.length + 1).padStart(12, "0")}.jsonl`), "");
    expect(text(readLineBySeq(dir, lines.length))).toBe(lines.at(-1)!);
    expect(readLineBySeq(dir, lines.length + 1)).toBeNull();
    const long = join(tempDir("lineat"), "transcript");
    TranscriptWriter.open({ ...DEFAULT_WRITER, dir: long, hostKey: HOST, version: "t", log: silentLogger }).close("done");
    const name = readdirSync(long).find((f) => f.endsWith(".jsonl"))!;
    writeFileSync(join(long, name), `${"y".repeat(MAX_LINE_BYTES + 10)}\n`);
    const stats = { reads: 0, bytes: 0 };
    expect(readLineBySeq(long, 1, stats)).toBeNull();
    expect(stats.bytes).toBeLessThanOrEqual(MAX_LINE_BYTES + 4096 + 1);
  });
});
