/**
 * The transcript's tree as static files in the layout of c2sp.org/tlog-tiles
 * (docs/TRANSCRIPT.md §4.3): the last signed checkpoint, the hash tiles, and
 * optionally the entry bundles, written into a directory any web server can
 * serve to monitors, witnesses and clients that already speak tlog-tiles.
 *
 * A tile at level L, index N holds up to 256 hashes: hash i is the Merkle
 * tree hash of leaves [(N·256 + i)·256^L, (N·256 + i + 1)·256^L) — the
 * stored hash at tree level 8·L, index N·256 + i (merkle.ts's numbering), so
 * every tile is copied from tree.hashes, never recomputed from the lines.
 * An entry bundle holds the lines of the level-0 tile of the same index,
 * each as a big-endian uint16 length and the line's bytes (without its LF).
 *
 * Export is incremental: full tiles and bundles are immutable and written
 * once; the checkpoint is written last, so a reader never sees a checkpoint
 * whose tiles are not all there. Before anything is written the directory's
 * own checkpoint, if any, must be a prefix of this log (its root equals this
 * tree's root at its size) — else it is another log, or this one was rolled
 * back or forked since, and nothing is touched.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fromBase64 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { checkpointNote } from "./format.ts";
import { EMPTY_ROOT, HASH_SIZE, type Hash, type HashReader, leafHash, nodeHash, storedHashIndex, treeHash } from "./merkle.ts";
import { parseCheckpoint, parseNote } from "./note.ts";
import { listTranscript, readFileLineBatchesSync } from "./read.ts";
import { lastTreeCheckpoint } from "./verify.ts";

/** Tree levels per tile (tlog-tiles fixes it at 8), and hashes per full tile. */
export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;
/** The longest line an entry bundle can hold (its length is a uint16). */
export const BUNDLE_ENTRY_MAX = 0xffff;

/**
 * A tile's path under the log's prefix: `tile/L/N[.p/W]`, or
 * `tile/entries/N[.p/W]` for an entry bundle; N in 3-digit elements, all
 * but the last prefixed with x (1234067 → x001/x234/067).
 */
export function tilePath(level: number | "entries", index: number, width: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`tiles: index ${index}`);
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH) throw new RangeError(`tiles: width ${width}`);
  const parts: string[] = [];
  let n = index;
  do {
    parts.unshift(String(n % 1000).padStart(3, "0"));
    n = Math.floor(n / 1000);
  } while (n > 0);
  const elements = parts.map((p, i) => (i < parts.length - 1 ? `x${p}` : p)).join("/");
  return `tile/${level}/${elements}${width < TILE_WIDTH ? `.p/${width}` : ""}`;
}

/** The tiles of level `level` a tree of `size` leaves has: how many are full, and the width of the partial one (0: none). */
export function tileCounts(size: number, level: number): { full: number; partial: number } {
  const below = Math.floor(size / TILE_WIDTH ** level); // hashes at this level
  return { full: Math.floor(below / TILE_WIDTH), partial: below % TILE_WIDTH };
}

/** The bytes of tile (level, index) of `width` hashes, from the stored hashes. */
export function tileData(level: number, index: number, width: number, read: HashReader): Uint8Array {
  const out = new Uint8Array(width * HASH_SIZE);
  for (let i = 0; i < width; i++) out.set(read(TILE_HEIGHT * level, index * TILE_WIDTH + i), i * HASH_SIZE);
  return out;
}

/** An entry bundle: each line as a big-endian uint16 length and its bytes. */
export function encodeBundle(lines: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const l of lines) {
    if (l.length > BUNDLE_ENTRY_MAX) throw new RangeError(`tiles: a ${l.length}-byte line does not fit an entry bundle`);
    n += 2 + l.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const l of lines) {
    out[at] = l.length >> 8;
    out[at + 1] = l.length & 0xff;
    out.set(l, at + 2);
    at += 2 + l.length;
  }
  return out;
}

/** The lines of an entry bundle; throws on a truncated one. */
export function decodeBundle(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; ) {
    if (at + 2 > bytes.length) throw new RangeError("tiles: entry bundle ends inside a length");
    const n = (bytes[at]! << 8) | bytes[at + 1]!;
    if (at + 2 + n > bytes.length) throw new RangeError("tiles: entry bundle ends inside an entry");
    out.push(bytes.subarray(at + 2, at + 2 + n));
    at += 2 + n;
  }
  return out;
}

export interface TilesOptions {
  /** Also write the entry bundles: the lines themselves (everything the transcript holds in the clear). */
  entries: boolean;
}

export interface TilesReport {
  origin: string;
  /** The tree size of the checkpoint written. */
  size: number;
  /** The size of the checkpoint the directory held before (0: none). */
  previous: number;
  tiles: number;
  bundles: number;
  /** With entries: the first leaf bundled (above 0 when the transcript's first files are no longer here). */
  firstBundled: number | null;
}

/**
 * Brings `out` up to the transcript's last signed checkpoint. Throws
 * SecureChatError `tiles_*`: tiles_no_checkpoint, tiles_no_tree,
 * tiles_tree_damaged (tree.hashes does not give the signed root),
 * tiles_foreign (`out` holds a checkpoint this log does not extend),
 * tiles_line_mismatch, tiles_line_too_long.
 */
export function exportTiles(transcriptDir: string, treeFile: string, out: string, opts: TilesOptions): TilesReport {
  const files = listTranscript(transcriptDir).files;
  // What is read must be on disk: a checkpoint the server has written but
  // not yet made durable could be lost in a crash, and a published one with it.
  for (const f of [files.at(-1)?.path, treeFile]) if (f && existsSync(f)) syncFile(f);
  const cp = lastTreeCheckpoint(files);
  if (cp === null) throw new SecureChatError("tiles_no_checkpoint", `no checkpoint in ${transcriptDir} signs a tree root yet`);
  const size = cp.head_seq as number;
  const root = fromBase64(cp.root as string, HASH_SIZE);
  if (!existsSync(treeFile)) throw new SecureChatError("tiles_no_tree", `no ${treeFile}: start the server once to rebuild it`);
  const fd = openSync(treeFile, "r");
  try {
    const read: HashReader = (level, index) => {
      const h = new Uint8Array(HASH_SIZE);
      if (readSync(fd, h, 0, HASH_SIZE, storedHashIndex(level, index) * HASH_SIZE) !== HASH_SIZE) {
        throw new SecureChatError("tiles_tree_damaged", `${treeFile} is shorter than the transcript: restart the server to rebuild it`);
      }
      return h;
    };
    if (!constantTimeEqual(treeHash(size, read), root)) {
      throw new SecureChatError("tiles_tree_damaged", `${treeFile} does not give the root the last checkpoint signs: restart the server to rebuild it`);
    }
    const previous = publishedSize(out, size, read);
    // What is published must give the signed root as a monitor computes it,
    // from the tiles alone; each new full tile is checked against its
    // parent hash (in the tile above) as it is written.
    if (!constantTimeEqual(tilesRoot(0, size, read), root)) {
      throw new SecureChatError("tiles_tree_damaged", `${treeFile} does not give the root the last checkpoint signs: restart the server to rebuild it`);
    }
    const pub = new Publisher(out);
    const report: TilesReport = { origin: cp.origin as string, size, previous, tiles: 0, bundles: 0, firstBundled: null };
    for (let level = 0; TILE_WIDTH ** level <= size; level++) {
      const { full, partial } = tileCounts(size, level);
      for (let n = firstMissing(out, level, tileCounts(previous, level).full, full); n < full; n++) {
        const data = tileData(level, n, TILE_WIDTH, read);
        if (!constantTimeEqual(foldTile(data), read(TILE_HEIGHT * (level + 1), n))) {
          throw new SecureChatError("tiles_tree_damaged", `${treeFile}: tile ${tilePath(level, n, TILE_WIDTH)} does not hash to its parent: restart the server to rebuild it`);
        }
        if (pub.writeOnce(tilePath(level, n, TILE_WIDTH), data)) report.tiles++;
        rmSync(join(out, `${tilePath(level, n, TILE_WIDTH)}.p`), { recursive: true, force: true });
      }
      if (partial > 0 && pub.writeOnce(tilePath(level, full, partial), tileData(level, full, partial, read))) report.tiles++;
    }
    if (opts.entries) bundle(files, pub, size, tileCounts(previous, 0).full, read, report);
    pub.sync(); // the tiles' names are on disk before the checkpoint that needs them
    pub.write("checkpoint", new TextEncoder().encode(checkpointNote(cp)!));
    pub.sync();
    return report;
  } finally {
    closeSync(fd);
  }
}

/** The hash of a full tile's subtree: its 256 hashes folded 8 levels up. */
function foldTile(data: Uint8Array): Hash {
  let level: Hash[] = [];
  for (let i = 0; i < TILE_WIDTH; i++) level.push(data.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  while (level.length > 1) {
    const up: Hash[] = [];
    for (let i = 0; i < level.length; i += 2) up.push(nodeHash(level[i]!, level[i + 1]!));
    level = up;
  }
  return level[0]!;
}

/**
 * The tree hash of leaves [lo, hi) from hashes at tile levels only (tree
 * levels 0, 8, 16, …), as a client that has only the tiles computes it.
 */
function tilesRoot(lo: number, hi: number, read: HashReader): Hash {
  const n = hi - lo;
  if (n === 0) return EMPTY_ROOT;
  for (let k = Math.floor(Math.log2(n) / TILE_HEIGHT); k >= 0; k--) {
    const span = TILE_WIDTH ** k;
    if (n === span && lo % span === 0) return read(TILE_HEIGHT * k, lo / span);
  }
  let k = 1;
  while (k * 2 < n) k *= 2;
  return nodeHash(tilesRoot(lo, lo + k, read), tilesRoot(lo + k, hi, read));
}

/** The size of the checkpoint `out` holds (0: none), once it is known to be a prefix of this tree. */
function publishedSize(out: string, size: number, read: HashReader): number {
  const path = join(out, "checkpoint");
  if (!existsSync(path)) return 0;
  let old: { size: number; root: Hash };
  try {
    old = parseCheckpoint(parseNote(readFileSync(path, "utf8")).text);
  } catch (e) {
    throw new SecureChatError("tiles_foreign", `${path} is not a checkpoint (${(e as Error).message}): export into an empty directory`);
  }
  if (old.size > size) {
    throw new SecureChatError("tiles_foreign", `${path} signs a tree of ${old.size} lines but this log's last checkpoint signs ${size}: this log was rolled back since, or ${out} holds another log`);
  }
  if (!constantTimeEqual(treeHash(old.size, read), old.root)) {
    throw new SecureChatError("tiles_foreign", `${path} signs a tree of ${old.size} lines that is not a prefix of this log: this log was forked or rewritten since, or ${out} holds another log`);
  }
  return old.size;
}

/**
 * The first full tile of `level` to write: the first the previous export
 * did not make, unless one before it is missing (an export interrupted
 * before its checkpoint, or files removed), then the first missing one.
 */
function firstMissing(out: string, level: number | "entries", made: number, full: number): number {
  const from = Math.min(made, full);
  if (from === 0 || existsSync(join(out, tilePath(level, from - 1, TILE_WIDTH)))) {
    return from;
  }
  for (let n = 0; n < from; n++) if (!existsSync(join(out, tilePath(level, n, TILE_WIDTH)))) return n;
  return from;
}

/** Writes the entry bundles from the first missing one on; each line checked against its leaf hash. */
function bundle(files: ReturnType<typeof listTranscript>["files"], pub: Publisher, size: number, made: number, read: HashReader, report: TilesReport): void {
  const { full, partial } = tileCounts(size, 0);
  const firstHere = files[0]?.firstSeq ?? 1; // the transcript's first files may have been archived
  let n = Math.max(firstMissing(pub.out, "entries", made, full), Math.ceil((firstHere - 1) / TILE_WIDTH));
  const last = partial > 0 ? full : full - 1;
  if (n > last) return;
  report.firstBundled = n * TILE_WIDTH;
  let lines: Uint8Array[] = [];
  const enc = new TextEncoder();
  let leaf = n * TILE_WIDTH;
  const start = files.findLastIndex((f) => f.firstSeq !== null && f.firstSeq - 1 <= leaf);
  for (const f of files.slice(Math.max(0, start))) {
    let at = (f.firstSeq ?? 1) - 1;
    for (const batch of readFileLineBatchesSync(f.path, f.name, { partial: "stop" })) {
      for (const l of batch) {
        if (at++ < leaf) continue;
        if (leaf >= size) break;
        const bytes = enc.encode(l.text);
        if (bytes.length > BUNDLE_ENTRY_MAX) {
          throw new SecureChatError("tiles_line_too_long", `${f.name}:${l.line} is ${bytes.length} bytes, more than an entry bundle holds (${BUNDLE_ENTRY_MAX}); export without --entries`);
        }
        if (!constantTimeEqual(leafHash(bytes), read(0, leaf))) {
          throw new SecureChatError("tiles_line_mismatch", `${f.name}:${l.line} is not leaf ${leaf} of the tree: run "securechat transcript verify"`);
        }
        lines.push(bytes);
        leaf++;
        if (lines.length === TILE_WIDTH || leaf === size) {
          if (pub.writeOnce(tilePath("entries", n, lines.length), encodeBundle(lines))) report.bundles++;
          if (lines.length === TILE_WIDTH) rmSync(join(pub.out, `${tilePath("entries", n, TILE_WIDTH)}.p`), { recursive: true, force: true });
          n++;
          lines = [];
        }
      }
      if (leaf >= size) return;
    }
  }
  if (leaf < size) throw new SecureChatError("tiles_line_mismatch", `the transcript ends at leaf ${leaf} but its last checkpoint signs ${size}: run "securechat transcript verify"`);
}

/**
 * Writes files whole or not at all (a temporary file beside each, fsynced,
 * renamed over it) and, on `sync`, makes their names durable.
 */
class Publisher {
  #dirs = new Set<string>();

  constructor(readonly out: string) {}

  /** Writes `path` unless it is there (a tile's content never changes); true if it wrote it. */
  writeOnce(path: string, data: Uint8Array): boolean {
    if (existsSync(join(this.out, path))) return false;
    this.write(path, data);
    return true;
  }

  write(path: string, data: Uint8Array): void {
    const full = join(this.out, path);
    mkdirSync(dirname(full), { recursive: true });
    this.#dirs.add(dirname(full));
    const tmp = `${full}.tmp`;
    const fd = openSync(tmp, "w", 0o644);
    try {
      for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, full);
  }

  sync(): void {
    for (const d of this.#dirs) syncFile(d);
    this.#dirs.clear();
  }
}

function syncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
