/**
 * The writer's Merkle tree over the transcript's lines (docs/TRANSCRIPT.md
 * §3.6): the right frontier in memory, for the root a checkpoint signs, and
 * every stored hash (merkle.ts) appended to one file, `tree.hashes` beside
 * the transcript directory, 32 bytes each in stored order — so the hash of
 * any complete subtree is one read at a known offset, and proofs cost
 * O(log n) reads.
 *
 * The file is derived data, like history.db: the transcript's lines are the
 * record. At start it is trusted up to the last checkpoint that signs a
 * root, if the root it gives for that size is the signed one (O(log n)
 * reads: exactly the hashes the frontier is loaded from); the hashes after
 * that are recomputed from the lines after the checkpoint, which the writer
 * has just verified. A file that lost its end (hashes written since its
 * last fsync, gone with a machine that stopped) is trusted up to an
 * earlier signed checkpoint whose root it still gives, and the lines since
 * are hashed again. Otherwise — no such checkpoint (a transcript written
 * before trees were), a missing or damaged file — it is rebuilt from every
 * line, which reads the whole transcript once. (A damaged hash that the
 * signed root does not depend on is not found this way: only a proof that
 * uses it, which then fails to verify.) If the transcript's
 * first files have been archived away, there is nothing to rebuild it from,
 * and the writer goes on without a tree (its checkpoints then sign no root)
 * until they are put back.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync, statSync, writeSync } from "node:fs";
import { utf8 } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { Frontier, HASH_SIZE, type Hash, leafHash, storedHashCount, storedHashIndex, treeHash } from "./merkle.ts";

/**
 * How the tree was opened, for the log: as it was; resumed from an earlier
 * checkpoint (why the last one could not be used, the size it resumed from,
 * and the leaves hashed again); or rebuilt from every line.
 */
export type TreeOpen = { rebuilt: null; resumed?: { reason: string; from: number; leaves: number } } | { rebuilt: string; leaves: number };

/** An earlier checkpoint that signs a tree root, with the lines from its size on. */
export interface EarlierCheckpoint {
  size: number;
  root: Hash;
  /** The lines from leaf `size` on, in order, as bytes without LFs. */
  lines: Iterable<Uint8Array>;
}

/** What the writer knows at start about the transcript it continues. */
export interface TreeAnchor {
  /** Lines in the transcript (the seq of its last whole entry). */
  size: number;
  /** The transcript's first file starts at seq 1 (none has been archived away). */
  complete: boolean;
  /** The last checkpoint that signed a root: the size it covers and the root. */
  checkpoint: { size: number; root: Hash } | null;
  /** The leaf hashes of the lines from that checkpoint's size on, in order. */
  tail: Hash[];
  /** Every line of the transcript from the first, as bytes without LFs: read only for a rebuild. */
  lines: () => Iterable<Uint8Array>;
  /** Told why, before a rebuild starts (it reads the whole transcript). */
  rebuilding?: (why: string) => void;
  /**
   * The last checkpoint, before `checkpoint`, that signs the root of at
   * most `maxSize` lines, its signature checked; null if there is none.
   */
  earlier?: (maxSize: number) => EarlierCheckpoint | null;
}

export class TranscriptTree {
  #fd: number;
  readonly #frontier: Frontier;
  #pending: Hash[] = [];
  /** Set when a write to the file failed: it is left to be rebuilt at the next start. */
  #broken: string | null = null;

  private constructor(
    readonly path: string,
    fd: number,
    frontier: Frontier,
  ) {
    this.#fd = fd;
    this.#frontier = frontier;
  }

  get size(): number {
    return this.#frontier.size;
  }

  /** Why the file is no longer written, if it is not. */
  get broken(): string | null {
    return this.#broken;
  }

  /** The root of the tree of every line appended. */
  root(): Hash {
    return this.#frontier.root();
  }

  /**
   * The stored hash of the complete subtree at `level`, `index` (written
   * already, or pending); null once the file is not being written.
   */
  read(level: number, index: number): Hash | null {
    if (this.#broken) return null;
    const at = storedHashIndex(level, index);
    const written = storedHashCount(this.#frontier.size) - this.#pending.length;
    return at >= written ? this.#pending[at - written]! : readHash(this.#fd, at);
  }

  /** Appends a line (without its LF) as the next leaf. */
  append(line: string | Uint8Array): void {
    this.#appendLeaf(leafHash(typeof line === "string" ? utf8(line) : line));
  }

  #appendLeaf(leaf: Hash): void {
    this.#pending.push(...this.#frontier.append(leaf));
  }

  /** Writes the pending hashes; a failure leaves the file for the next start to rebuild. */
  flush(): void {
    if (this.#pending.length === 0 || this.#broken) {
      if (this.#broken) this.#pending = [];
      return;
    }
    const buf = Buffer.alloc(this.#pending.length * HASH_SIZE);
    this.#pending.forEach((h, i) => buf.set(h, i * HASH_SIZE));
    try {
      let off = 0;
      while (off < buf.length) off += writeSync(this.#fd, buf, off, buf.length - off);
      this.#pending = [];
    } catch (e) {
      this.#broken = (e as Error).message;
    }
  }

  /**
   * Closes the file; with `clean` (a clean stop), everything written and
   * fsynced first, so the next start can take the file as it is.
   */
  close(clean: boolean): void {
    if (this.#fd < 0) return;
    try {
      if (clean) {
        this.flush();
        if (!this.#broken) fsyncSync(this.#fd);
      }
    } finally {
      closeSync(this.#fd);
      this.#fd = -1;
    }
  }

  /**
   * Opens the tree of `path` for a transcript as `anchor` describes it.
   * Null, with the reason, when it can neither be trusted nor rebuilt.
   */
  static open(path: string, a: TreeAnchor): { tree: TranscriptTree; opened: TreeOpen } | { tree: null; missing: string } {
    const cp = a.checkpoint;
    if (a.size === 0) return { tree: new TranscriptTree(path, openSync(path, "w+", 0o600), new Frontier()), opened: { rebuilt: null } };
    const why = cp === null ? "no checkpoint signs a tree root yet" : untrusted(path, cp, a);
    if (why === null) {
      const fd = openSync(path, "r+");
      ftruncateSync(fd, storedHashCount(cp!.size) * HASH_SIZE);
      const frontier = Frontier.load(cp!.size, (level, index) => readHash(fd, storedHashIndex(level, index)));
      closeSync(fd);
      const tree = new TranscriptTree(path, openSync(path, "a+", 0o600), frontier);
      for (const leaf of a.tail) tree.#appendLeaf(leaf);
      tree.flush();
      return { tree, opened: { rebuilt: null } };
    }
    const resumed = why !== null && cp !== null ? TranscriptTree.#resume(path, a, cp, why) : null;
    if (resumed) return resumed;
    if (!a.complete) return { tree: null, missing: `${why}, and the transcript's first files are not here to rebuild it from` };
    a.rebuilding?.(why);
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    const tree = new TranscriptTree(tmp, fd, new Frontier());
    for (const line of a.lines()) {
      tree.append(line);
      if (tree.#pending.length >= 8192) tree.flush();
    }
    tree.flush();
    if (tree.#broken) throw new Error(`cannot write ${tmp}: ${tree.#broken}`);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    return { tree: new TranscriptTree(path, openSync(path, "a+", 0o600), tree.#frontier), opened: { rebuilt: why, leaves: tree.size } };
  }

  /**
   * The file lost its end (a machine that stopped before the hashes written
   * since the last fsync reached the disk): it is trusted up to the last
   * earlier checkpoint whose hashes it still holds, if it gives that
   * checkpoint's signed root, and the lines after it are hashed again —
   * the leaves since that checkpoint, not the whole transcript. The root at
   * the last checkpoint's size must then be the one it signs. Null if that
   * does not work out: the caller rebuilds.
   */
  static #resume(path: string, a: TreeAnchor, cp: { size: number; root: Hash }, why: string): { tree: TranscriptTree; opened: TreeOpen } | null {
    if (!a.earlier || a.tail.length !== a.size - cp.size || !existsSync(path)) return null;
    const have = Math.floor(statSync(path).size / HASH_SIZE);
    // the largest tree whose stored hashes the file holds
    let lo = 0;
    for (let hi = cp.size; lo < hi; ) {
      const mid = Math.ceil((lo + hi) / 2);
      if (storedHashCount(mid) <= have) lo = mid;
      else hi = mid - 1;
    }
    const e = lo > 0 ? a.earlier(Math.min(lo, cp.size - 1)) : null;
    if (!e || e.size > lo) return null;
    const fd = openSync(path, "r+");
    let frontier: Frontier;
    try {
      const read = (level: number, index: number) => readHash(fd, storedHashIndex(level, index));
      if (!constantTimeEqual(treeHash(e.size, read), e.root)) return null;
      ftruncateSync(fd, storedHashCount(e.size) * HASH_SIZE);
      frontier = Frontier.load(e.size, read);
    } finally {
      closeSync(fd);
    }
    const tree = new TranscriptTree(path, openSync(path, "a+", 0o600), frontier);
    for (const line of e.lines) {
      if (tree.size >= cp.size) break;
      tree.append(line);
      if (tree.#pending.length >= 8192) tree.flush();
    }
    if (tree.size !== cp.size || !constantTimeEqual(tree.root(), cp.root)) {
      tree.close(false);
      return null;
    }
    for (const leaf of a.tail) tree.#appendLeaf(leaf);
    tree.flush();
    return { tree, opened: { rebuilt: null, resumed: { reason: why, from: e.size, leaves: a.size - e.size } } };
  }
}

function readHash(fd: number, index: number): Hash {
  const h = new Uint8Array(HASH_SIZE);
  if (readSync(fd, h, 0, HASH_SIZE, index * HASH_SIZE) !== HASH_SIZE) throw new Error(`tree: no stored hash ${index}`);
  return h;
}

/** Why the file's hashes up to the checkpoint cannot be taken as they are, or null if they can. */
/**
 * Why the stored hashes at `path` cannot be taken as they are for a
 * transcript as `a` describes it (its last checkpoint `cp`), or null when
 * they can. Reads only.
 */
export function untrusted(path: string, cp: { size: number; root: Hash }, a: Pick<TreeAnchor, "size" | "tail">): string | null {
  if (a.tail.length !== a.size - cp.size) return "the lines after the last checkpoint were not all read";
  if (!existsSync(path)) return "no tree.hashes file";
  if (statSync(path).size < storedHashCount(cp.size) * HASH_SIZE) return "tree.hashes is shorter than the transcript";
  const fd = openSync(path, "r");
  try {
    const read = (level: number, index: number) => readHash(fd, storedHashIndex(level, index));
    if (!constantTimeEqual(treeHash(cp.size, read), cp.root)) return "the root of tree.hashes differs from the one the last checkpoint signed";
  } finally {
    closeSync(fd);
  }
  return null;
}
