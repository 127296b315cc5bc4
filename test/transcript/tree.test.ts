/**
 * The writer's Merkle tree (docs/TRANSCRIPT.md §3.6, §4.1; src/transcript/
 * tree.ts): every checkpoint signs the root of the lines before it, under a
 * signed note; tree.hashes holds every stored hash; a restart continues
 * from it after checking it against the last signed root, and rebuilds it —
 * saying why — when it is missing, damaged, or older than trees; with the
 * transcript's first files archived away it cannot, and the writer says so
 * and signs chain checkpoints only.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64, utf8 } from "../../src/bytes.ts";
import type { LogFields, Logger } from "../../src/log.ts";
import { type Entry, checkpointNote, parseEntry } from "../../src/transcript/format.ts";
import { Frontier, HASH_SIZE, leafHash, storedHashCount, storedHashIndex } from "../../src/transcript/merkle.ts";
import { formatVerifierKey, openCheckpoint, parseVerifierKey } from "../../src/transcript/note.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, TranscriptWriter, type WriterOptions, transcriptFiles, treePath } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(11);
const NEVER = 1_000_000_000;

function logger(): { log: Logger; events: { level: string; event: string; fields: LogFields }[] } {
  const events: { level: string; event: string; fields: LogFields }[] = [];
  return {
    events,
    log: { info: (event, fields = {}) => void events.push({ level: "info", event, fields }), warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }) },
  };
}

function open(dir: string, over: Partial<WriterOptions> = {}) {
  const { log, events } = logger();
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: NEVER, dir, hostKey: HOST, version: "test", log, ...over });
  return { w, events };
}

/** Every line of the transcript, as written, without LFs. */
function lines(dir: string): string[] {
  return transcriptFiles(dir).flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").slice(0, -1));
}

/** The stored hashes of these lines, as merkle.ts numbers them. */
function storedOf(ls: string[]): Uint8Array {
  const f = new Frontier();
  const out: Uint8Array[] = [];
  for (const l of ls) out.push(...f.append(leafHash(utf8(l))));
  return Buffer.concat(out);
}

function write(w: TranscriptWriter, n: number): void {
  for (let i = 0; i < n; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `line ${i}` });
}

const checkpoints = (dir: string): Entry[] => lines(dir).map((l) => parseEntry(l)).filter((e) => e.type === "checkpoint");
const warnings = (events: { level: string; event: string; fields: LogFields }[]) => events.filter((e) => e.level === "warn").map((e) => `${e.event}${e.fields.reason ? `: ${e.fields.reason}` : ""}`);

describe("checkpoints sign the tree", () => {
  test("every checkpoint's root is the tree of the lines before it, its note opens with the log's verifier key, and tree.hashes holds every stored hash", async () => {
    const dir = join(tempDir("tree"), "transcript");
    const { w } = open(dir, { checkpointEvery: 7, origin: "chat.example.com/securechat" });
    write(w, 40);
    w.close("done");
    const ls = lines(dir);
    const verifier = parseVerifierKey(formatVerifierKey("chat.example.com/securechat", HOST.publicKey));
    const cps = checkpoints(dir);
    expect(cps.length).toBeGreaterThan(5);
    for (const e of cps) {
      const size = e.head_seq as number;
      const f = new Frontier();
      for (const l of ls.slice(0, size)) f.append(leafHash(utf8(l)));
      expect(e.root).toBe(toBase64(f.root()));
      const c = openCheckpoint(checkpointNote(e)!, verifier);
      expect(c).toMatchObject({ origin: "chat.example.com/securechat", size });
    }
    expect(new Uint8Array(readFileSync(treePath(dir)))).toEqual(new Uint8Array(storedOf(ls)));
    const r = await verifyTranscript(dir, { hostKey: HOST.publicKey });
    expect(r.problem).toBeNull();
    const all = new Frontier();
    for (const l of ls) all.append(leafHash(utf8(l)));
    expect(r.tree).toEqual({ size: ls.length, root: toBase64(all.root()) });
  });

  test("without --log-origin the origin is securechat/ and 16 hex digits of the host key's hash", () => {
    const dir = join(tempDir("tree"), "transcript");
    const { w } = open(dir);
    w.close("done");
    expect(checkpoints(dir).at(-1)!.origin).toMatch(/^securechat\/[0-9a-f]{16}$/);
  });
});

describe("restarts", () => {
  test("after a clean stop the file is taken as it is (no rebuild), and the tree goes on from it", async () => {
    const dir = join(tempDir("tree"), "transcript");
    open(dir).w.close("one");
    const { w, events } = open(dir);
    write(w, 5);
    w.close("two");
    expect(warnings(events)).toEqual([]);
    expect(new Uint8Array(readFileSync(treePath(dir)))).toEqual(new Uint8Array(storedOf(lines(dir))));
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
  });

  test("after a crash the hashes up to the last signed root are kept and the ones after it recomputed from the lines", async () => {
    const dir = join(tempDir("tree"), "transcript");
    const first = open(dir);
    write(first.w, 5);
    first.w.checkpoint();
    write(first.w, 3);
    await new Promise((r) => setImmediate(r)); // written (fsync off), never closed: a crash
    // Damage what follows the last checkpoint in tree.hashes: it must not be trusted.
    const buf = readFileSync(treePath(dir));
    buf[buf.length - 1]! ^= 0xff;
    writeFileSync(treePath(dir), buf);
    const { w, events } = open(dir);
    w.close("after crash");
    expect(warnings(events)).toEqual(["transcript_unclean_stop"]);
    expect(new Uint8Array(readFileSync(treePath(dir)))).toEqual(new Uint8Array(storedOf(lines(dir))));
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
  });

  test("a missing or damaged tree.hashes, or a transcript older than trees, is rebuilt from every line, and the log says why", async () => {
    const dir = join(tempDir("tree"), "transcript");
    const a = open(dir);
    write(a.w, 9);
    a.w.close("one");
    rmSync(treePath(dir));
    const b = open(dir);
    b.w.close("two");
    expect(warnings(b.events)).toEqual(["transcript_tree_rebuilt: no tree.hashes file"]);
    // Rebuilt before the run appended its own three lines (server_start, server_stop, checkpoint).
    expect(b.events.find((e) => e.event === "transcript_tree_rebuilt")!.fields.lines).toBe(lines(dir).length - 3);

    // A flipped bit in a hash the last signed root depends on: the largest complete subtree's.
    const signed = checkpoints(dir).at(-1)!.head_seq as number;
    const level = Math.floor(Math.log2(signed));
    const buf = readFileSync(treePath(dir));
    buf[storedHashIndex(level, 0) * HASH_SIZE]! ^= 1;
    writeFileSync(treePath(dir), buf);
    const c = open(dir);
    c.w.close("three");
    expect(warnings(c.events)).toEqual(["transcript_tree_rebuilt: the root of tree.hashes differs from the one the last checkpoint signed"]);

    // Cut short.
    writeFileSync(treePath(dir), readFileSync(treePath(dir)).subarray(0, 3 * HASH_SIZE));
    const d = open(dir);
    d.w.close("four");
    expect(warnings(d.events)).toEqual(["transcript_tree_rebuilt: tree.hashes is shorter than the transcript"]);
    expect(new Uint8Array(readFileSync(treePath(dir)))).toEqual(new Uint8Array(storedOf(lines(dir))));
    expect(readFileSync(treePath(dir)).length).toBe(storedHashCount(lines(dir).length) * HASH_SIZE);
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
  });

  test("with the first files archived and no tree.hashes to trust, the writer says so and its checkpoints sign the chain only; putting them back brings the tree back", async () => {
    const dir = join(tempDir("tree"), "transcript");
    const clock = { t: Date.UTC(2026, 2, 1, 12) };
    const a = open(dir, { now: () => clock.t });
    write(a.w, 4);
    a.w.close("day one");
    clock.t += 86_400_000; // the next UTC day: a new file
    const b = open(dir, { now: () => clock.t });
    b.w.close("day two");
    const [firstFile] = transcriptFiles(dir);
    const archived = readFileSync(join(dir, firstFile!));
    rmSync(join(dir, firstFile!));
    rmSync(treePath(dir));
    const c = open(dir, { now: () => clock.t });
    c.w.close("archived");
    expect(warnings(c.events)).toEqual(["transcript_no_tree: no tree.hashes file, and the transcript's first files are not here to rebuild it from"]);
    const last = checkpoints(dir).at(-1)!;
    expect(last.root).toBeUndefined();
    writeFileSync(join(dir, firstFile!), archived);
    const d = open(dir, { now: () => clock.t });
    d.w.close("restored");
    // The last checkpoint signed no root (the tree was missing then): rebuilt from every line, now all here.
    expect(warnings(d.events)).toEqual(["transcript_tree_rebuilt: no checkpoint signs a tree root yet"]);
    expect(checkpoints(dir).at(-1)!.root).toBeDefined();
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey })).problem).toBeNull();
  });
});

describe("the log's state for clients (PROTOCOL.md §7.13)", () => {
  test("the last durable checkpoint, a consistency proof from an earlier size and inclusion proofs, all verifying against its note", async () => {
    const { parseVerifierKey, formatVerifierKey, openCheckpoint } = await import("../../src/transcript/note.ts");
    const { verifyConsistency, verifyInclusion } = await import("../../src/transcript/merkle.ts");
    const dir = join(tempDir("tree"), "transcript");
    const { w } = open(dir, { origin: "chat.example.com/securechat" });
    write(w, 6);
    w.checkpoint();
    await new Promise((r) => setImmediate(r)); // written: durable under --fsync off
    const first = w.logState(undefined, [])!;
    const verifier = parseVerifierKey(formatVerifierKey("chat.example.com/securechat", HOST.publicKey));
    const old = openCheckpoint(first.note, verifier);
    write(w, 9);
    w.checkpoint();
    await new Promise((r) => setImmediate(r));
    const now = w.logState(old.size, [0, 3, old.size + 2, 10_000])!;
    const c = openCheckpoint(now.note, verifier);
    expect(c.size).toBeGreaterThan(old.size);
    expect(verifyConsistency(old.size, c.size, old.root, c.root, now.consistency!)).toBe(true);
    // Leaves past the checkpoint are left out; the others verify against the lines.
    expect(now.inclusion.map((i) => i.leaf)).toEqual([0, 3, old.size + 2]);
    const ls = lines(dir);
    for (const { leaf, proof } of now.inclusion) expect(verifyInclusion(leaf, c.size, leafHash(utf8(ls[leaf]!)), proof, c.root)).toBe(true);
    // A size larger than the checkpoint's has no consistency proof (the client sees the rollback).
    expect(w.logState(c.size + 1, [])!.consistency).toBeNull();
    w.close("done");
    // After a restart, the last checkpoint on disk is the state.
    const again = open(dir);
    expect(openCheckpoint(again.w.logState(undefined, [])!.note, verifier).size).toBe(lines(dir).length - 1);
    again.w.close("done");
  });

  test("a checkpoint not yet durable is not shown: until its fsync, the previous one is", async () => {
    const dir = join(tempDir("tree"), "transcript");
    const { w } = open(dir, { fsync: "always" });
    write(w, 2);
    w.checkpoint();
    await new Promise((r) => setTimeout(r, 50));
    const before = w.logState(undefined, [])!;
    const held: (() => void)[] = [];
    const real = fs.fsync;
    const spy = spyOn(fs, "fsync").mockImplementation(((fd: number, cb: fs.NoParamCallback) => void held.push(() => real(fd, cb))) as typeof fs.fsync);
    try {
      write(w, 3);
      w.checkpoint();
      await new Promise((r) => setImmediate(r));
      expect(w.logState(undefined, [])!.size).toBe(before.size);
      for (const f of held.splice(0)) f();
      await new Promise((r) => setTimeout(r, 50));
      for (const f of held.splice(0)) f();
      await new Promise((r) => setTimeout(r, 50));
      expect(w.logState(undefined, [])!.size).toBeGreaterThan(before.size);
    } finally {
      spy.mockRestore();
      w.close("done");
    }
  });
});
