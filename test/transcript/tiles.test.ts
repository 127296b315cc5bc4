/**
 * The log as c2sp.org/tlog-tiles static files (docs/TRANSCRIPT.md §4.3;
 * src/transcript/tiles.ts), checked the way a monitor would: the tiles are
 * recomputed here from the bundled lines with node:crypto's SHA-256 (not
 * the code that wrote them), the checkpoint opens under the log's vkey and
 * its root is the tree of the bundles; a second export only adds; a
 * directory holding a checkpoint this log does not extend is refused and
 * left as it was.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fromBase64 } from "../../src/bytes.ts";
import { silentLogger } from "../../src/log.ts";
import { formatVerifierKey, openCheckpoint, parseVerifierKey } from "../../src/transcript/note.ts";
import { BUNDLE_ENTRY_MAX, decodeBundle, encodeBundle, exportTiles, tileCounts, tilePath } from "../../src/transcript/tiles.ts";
import { DEFAULT_WRITER, TranscriptWriter, treePath } from "../../src/transcript/writer.ts";
import { codeOf } from "../protocol/helpers.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";
import { checkLikeAMonitor, lines, sha } from "./monitor.ts";

const HOST = hostKeyPair(31);
const ORIGIN = "chat.example.com/securechat";
const VERIFIER = parseVerifierKey(formatVerifierKey(ORIGIN, HOST.publicKey));

/** Appends `n` messages to the transcript in `dir` (made if absent), then stops cleanly. */
function grow(dir: string, n: number, text = "line"): string {
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, checkpointEvery: 100, dir, hostKey: HOST, version: "t", log: silentLogger, origin: ORIGIN });
  for (let i = 0; i < n; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `${text} ${i}` });
  w.close("done");
  return dir;
}

describe("tile paths and bundles", () => {
  test("paths as tlog-tiles spells them", () => {
    expect(tilePath(0, 1234067, 256)).toBe("tile/0/x001/x234/067");
    expect(tilePath(3, 5, 8)).toBe("tile/3/005.p/8");
    expect(tilePath("entries", 1000, 255)).toBe("tile/entries/x001/000.p/255");
    expect(tilePath(0, 0, 256)).toBe("tile/0/000");
  });

  test("a tree of 70,000 has the tiles the spec lists; one of 256 a full tile and a partial level-1 tile of 1", () => {
    expect([0, 1, 2].map((l) => tileCounts(70_000, l))).toEqual([
      { full: 273, partial: 112 },
      { full: 1, partial: 17 },
      { full: 0, partial: 1 },
    ]);
    expect([0, 1].map((l) => tileCounts(256, l))).toEqual([
      { full: 1, partial: 0 },
      { full: 0, partial: 1 },
    ]);
  });

  test("a bundle is uint16-length-prefixed lines; a line too long for one is refused", () => {
    const ls = [new Uint8Array(0), new Uint8Array([1, 2, 3]), new Uint8Array(300).fill(7)];
    const b = encodeBundle(ls);
    expect(Array.from(b.subarray(0, 7))).toEqual([0, 0, 0, 3, 1, 2, 3]);
    expect(b[7]).toBe(1);
    expect(b[8]).toBe(44);
    expect(decodeBundle(b).map((l) => l.length)).toEqual([0, 3, 300]);
    expect(() => decodeBundle(b.subarray(0, b.length - 1))).toThrow(/ends inside an entry/);
    expect(() => encodeBundle([new Uint8Array(BUNDLE_ENTRY_MAX + 1)])).toThrow(/does not fit/);
  });
});

describe("exporting a log", () => {
  test("what a monitor fetches verifies with the vkey alone; a second export only adds what is new", () => {
    const dir = grow(join(tempDir("tiles"), "transcript"), 600);
    const out = join(tempDir("tiles-out"), "log");
    const first = exportTiles(dir, treePath(dir), out, { entries: true });
    const n1 = checkLikeAMonitor(out, lines(dir), VERIFIER);
    expect(first).toMatchObject({ origin: ORIGIN, size: n1, previous: 0, firstBundled: 0 });
    expect(n1).toBeGreaterThan(512);
    const fullTile = join(out, tilePath(0, 0, 256));
    const before = statSync(fullTile).mtimeMs;
    const partial0 = join(out, tilePath(0, 2, n1 % 256));
    expect(existsSync(partial0)).toBe(true);

    grow(dir, 300, "more");
    const second = exportTiles(dir, treePath(dir), out, { entries: true });
    const n2 = checkLikeAMonitor(out, lines(dir), VERIFIER);
    expect(second).toMatchObject({ size: n2, previous: n1 });
    expect(second.bundles).toBe(Math.ceil(n2 / 256) - 2); // from the first bundle the previous export left partial
    expect(statSync(fullTile).mtimeMs).toBe(before); // full tiles are immutable
    expect(existsSync(partial0)).toBe(false); // tile 2 is full now: its partial version is gone

    const again = exportTiles(dir, treePath(dir), out, { entries: true });
    expect(again).toMatchObject({ size: n2, previous: n2, bundles: 0 });
  });

  test("without --entries no line is published: the checkpoint and hash tiles only", () => {
    const dir = grow(join(tempDir("tiles"), "transcript"), 300);
    const out = join(tempDir("tiles-out"), "log");
    exportTiles(dir, treePath(dir), out, { entries: false });
    expect(readdirSync(join(out, "tile")).sort()).toEqual(["0", "1"]);
    expect(openCheckpoint(readFileSync(join(out, "checkpoint"), "utf8"), VERIFIER).size).toBe(lines(dir).length - 1);
  });

  test("a directory holding a checkpoint this log does not extend (another log, a fork, a rollback) is refused and left as it was", () => {
    const dir = grow(join(tempDir("tiles"), "transcript"), 400);
    const out = join(tempDir("tiles-out"), "log");
    exportTiles(dir, treePath(dir), out, { entries: true });
    const published = readFileSync(join(out, "checkpoint"), "utf8");
    const fork = grow(join(tempDir("tiles-fork"), "transcript"), 500, "other");
    expect(codeOf(() => exportTiles(fork, treePath(fork), out, { entries: true }))).toBe("tiles_foreign");
    const shorter = grow(join(tempDir("tiles-short"), "transcript"), 200);
    expect(codeOf(() => exportTiles(shorter, treePath(shorter), out, { entries: true }))).toBe("tiles_foreign");
    expect(readFileSync(join(out, "checkpoint"), "utf8")).toBe(published);
    checkLikeAMonitor(out, lines(dir), VERIFIER);
  });

  test("a damaged tree.hashes is refused before anything is written", () => {
    const dir = grow(join(tempDir("tiles"), "transcript"), 300);
    const hashes = readFileSync(treePath(dir));
    hashes[5] = hashes[5]! ^ 1;
    writeFileSync(treePath(dir), hashes);
    const out = join(tempDir("tiles-out"), "log");
    expect(codeOf(() => exportTiles(dir, treePath(dir), out, { entries: true }))).toBe("tiles_tree_damaged");
    expect(existsSync(join(out, "checkpoint"))).toBe(false);
  });

  test("the root the checkpoint signs is the one the tiles give", () => {
    const dir = grow(join(tempDir("tiles"), "transcript"), 260);
    const out = join(tempDir("tiles-out"), "log");
    exportTiles(dir, treePath(dir), out, { entries: false });
    const cp = openCheckpoint(readFileSync(join(out, "checkpoint"), "utf8"), VERIFIER);
    // 260 lines + checkpoints: one full level-0 tile and a partial one; the root is hash(tile 0's subtree, the rest)
    const tile0 = readFileSync(join(out, tilePath(0, 0, 256)));
    const rest = readFileSync(join(out, tilePath(0, 1, cp.size - 256)));
    const leaves: Buffer[] = [];
    for (let i = 0; i < cp.size - 256; i++) leaves.push(rest.subarray(i * 32, i * 32 + 32));
    const fold = (hs: Buffer[]): Buffer => (hs.length === 1 ? hs[0]! : sha(Buffer.from([1]), fold(hs.slice(0, 2 ** Math.floor(Math.log2(hs.length - 1)))), fold(hs.slice(2 ** Math.floor(Math.log2(hs.length - 1))))));
    const top: Buffer[] = [];
    for (let i = 0; i < 256; i++) top.push(tile0.subarray(i * 32, i * 32 + 32));
    expect(sha(Buffer.from([1]), fold(top), fold(leaves)).equals(Buffer.from(cp.root))).toBe(true);
    expect(fromBase64(readFileSync(join(out, "checkpoint"), "utf8").split("\n")[2]!, 32)).toEqual(cp.root);
  });
});
