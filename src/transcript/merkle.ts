/**
 * The Merkle tree of RFC 9162 §2.1 (RFC 6962 §2.1) over the transcript's
 * lines: hashing, the incremental right frontier a writer keeps, and
 * inclusion and consistency proofs — made from stored subtree hashes and
 * checked with the RFC's verification algorithms.
 *
 * Hashes of complete subtrees are *stored hashes*, numbered in the order an
 * append-only writer produces them (the numbering of Go's
 * golang.org/x/mod/sumdb/tlog): appending leaf n stores its leaf hash, then
 * the hash of every complete subtree that leaf closes, lowest level first.
 * The subtree at level L, index i covers leaves [i·2^L, (i+1)·2^L). Proofs
 * read only stored hashes: O(log n) of them, never the leaves.
 */
import { constantTimeEqual, sha256, sha256Prefixed } from "../crypto/index.ts";

export type Hash = Uint8Array;

export const HASH_SIZE = 32;

/** Reads the stored hash of the complete subtree at `level`, `index` (it must exist). */
export type HashReader = (level: number, index: number) => Hash;

/** MTH of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT: Hash = sha256(new Uint8Array(0));

/** RFC 9162 §2.1.1: a leaf's hash, SHA-256(0x00 ‖ data). */
export function leafHash(data: Uint8Array): Hash {
  return sha256Prefixed(0x00, data);
}

/** RFC 9162 §2.1.1: an interior node's hash, SHA-256(0x01 ‖ left ‖ right). */
export function nodeHash(left: Hash, right: Hash): Hash {
  return sha256Prefixed(0x01, left, right);
}

function checkSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`merkle: ${what} ${n} is not a tree size`);
}

/** Where the hash of the subtree at `level`, `index` is in the stored order. */
export function storedHashIndex(level: number, index: number): number {
  // The subtree's last leaf is leaf (index+1)·2^level − 1; its hash is stored
  // right after that leaf's, `level` merges later.
  const last = (index + 1) * 2 ** level - 1;
  return storedHashCount(last) + level;
}

/** How many hashes a tree of `n` leaves has stored: n + n/2 + n/4 + … (integer halves). */
export function storedHashCount(n: number): number {
  checkSize(n, "size");
  let count = 0;
  for (let m = n; m > 0; m = Math.floor(m / 2)) count += m;
  return count;
}

/** The largest power of two smaller than n (n ≥ 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The right edge of a tree: the hashes of its maximal complete subtrees,
 * largest (leftmost) first — one per set bit of the size. What a writer
 * keeps to append in O(1) amortized and know the root at any time.
 */
export class Frontier {
  #size = 0;
  /** [level, hash] of each complete subtree on the right edge, left to right. */
  #edge: { level: number; hash: Hash }[] = [];

  get size(): number {
    return this.#size;
  }

  /** Appends a leaf by its hash, for a caller that stores nothing (a verifier). */
  push(leaf: Hash): void {
    let level = 0;
    let hash = leaf;
    const edge = this.#edge;
    while (edge.length > 0 && edge[edge.length - 1]!.level === level) {
      hash = nodeHash(edge.pop()!.hash, hash);
      level++;
    }
    edge.push({ level, hash });
    this.#size++;
  }

  /**
   * Appends a leaf by its hash; returns the hashes to store, in the stored
   * order: the leaf's, then each subtree it completes, lowest level first.
   */
  append(leaf: Hash): Hash[] {
    const stored = [leaf];
    let node = { level: 0, hash: leaf };
    while (this.#edge.length > 0 && this.#edge[this.#edge.length - 1]!.level === node.level) {
      const left = this.#edge.pop()!;
      node = { level: node.level + 1, hash: nodeHash(left.hash, node.hash) };
      stored.push(node.hash);
    }
    this.#edge.push(node);
    this.#size++;
    return stored;
  }

  /** MTH of the leaves appended so far. */
  root(): Hash {
    if (this.#edge.length === 0) return EMPTY_ROOT;
    let h = this.#edge[this.#edge.length - 1]!.hash;
    for (let i = this.#edge.length - 2; i >= 0; i--) h = nodeHash(this.#edge[i]!.hash, h);
    return h;
  }

  /** The frontier of a tree of `n` leaves, from its stored hashes (log n reads). */
  static load(n: number, read: HashReader): Frontier {
    checkSize(n, "size");
    const f = new Frontier();
    let start = 0;
    for (let level = 52; level >= 0; level--) {
      const width = 2 ** level;
      if (Math.floor(n / width) % 2 === 0) continue;
      f.#edge.push({ level, hash: read(level, start / width) });
      start += width;
    }
    f.#size = n;
    return f;
  }
}

/**
 * MTH of leaves [lo, hi), lo a multiple of the largest power of two not
 * above hi − lo (as every range of the RFC's recursions is): the complete
 * subtrees it splits into, folded from the right.
 */
function rangeHash(lo: number, hi: number, read: HashReader): Hash {
  const blocks: Hash[] = [];
  for (let start = lo; start < hi; ) {
    let level = 0;
    while (start % 2 ** (level + 1) === 0 && start + 2 ** (level + 1) <= hi) level++;
    blocks.push(read(level, start / 2 ** level));
    start += 2 ** level;
  }
  let h = blocks[blocks.length - 1]!;
  for (let i = blocks.length - 2; i >= 0; i--) h = nodeHash(blocks[i]!, h);
  return h;
}

/** MTH of the first `n` leaves (RFC 9162 §2.1.1), from stored hashes. */
export function treeHash(n: number, read: HashReader): Hash {
  checkSize(n, "size");
  return n === 0 ? EMPTY_ROOT : rangeHash(0, n, read);
}

/** RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of the first `n` leaves. */
export function inclusionProof(index: number, n: number, read: HashReader): Hash[] {
  checkSize(n, "size");
  if (!Number.isSafeInteger(index) || index < 0 || index >= n) throw new RangeError(`merkle: leaf ${index} is not in a tree of ${n}`);
  // PATH(m, D[lo:hi]) = PATH(m, D[lo:lo+k]) : MTH(D[lo+k:hi]) when m < k, else PATH(m−k, D[lo+k:hi]) : MTH(D[lo:lo+k]).
  let lo = 0;
  let hi = n;
  const path: Hash[] = [];
  while (hi - lo > 1) {
    const k = split(hi - lo);
    if (index < lo + k) {
      path.push(rangeHash(lo + k, hi, read));
      hi = lo + k;
    } else {
      path.push(rangeHash(lo, lo + k, read));
      lo += k;
    }
  }
  // The recursion appends outer siblings last: the list built top-down is reversed.
  return path.reverse();
}

/** RFC 9162 §2.1.4.1: the consistency proof from the tree of the first `m` leaves to that of the first `n`. */
export function consistencyProof(m: number, n: number, read: HashReader): Hash[] {
  checkSize(m, "old size");
  checkSize(n, "new size");
  if (m > n) throw new RangeError(`merkle: a tree of ${m} cannot be a prefix of one of ${n}`);
  if (m === 0 || m === n) return [];
  // SUBPROOF(m, D[lo:hi], b), unrolled: each step adds one hash; the list built top-down is reversed.
  const path: Hash[] = [];
  let lo = 0;
  let hi = n;
  let complete = true;
  for (;;) {
    const size = hi - lo;
    const want = m - lo;
    if (want === size) {
      if (!complete) path.push(rangeHash(lo, hi, read));
      break;
    }
    const k = split(size);
    if (want <= k) {
      path.push(rangeHash(lo + k, hi, read));
      hi = lo + k;
    } else {
      path.push(rangeHash(lo, lo + k, read));
      lo += k;
      complete = false;
    }
  }
  return path.reverse();
}

function isPowerOfTwo(m: number): boolean {
  while (m % 2 === 0) m /= 2;
  return m === 1;
}

/** RFC 9162 §2.1.3.2: does `proof` show the leaf with hash `leaf` at `index` in the tree of `n` leaves with `root`? */
export function verifyInclusion(index: number, n: number, leaf: Hash, proof: readonly Hash[], root: Hash): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(n) || index < 0 || index >= n) return false;
  let fn = index;
  let sn = n - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && constantTimeEqual(r, root);
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree of `m` leaves with `oldRoot` is a prefix of the tree of `n` with `newRoot`? */
export function verifyConsistency(m: number, n: number, oldRoot: Hash, newRoot: Hash, proof: readonly Hash[]): boolean {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) return false;
  if (m === n) return proof.length === 0 && constantTimeEqual(oldRoot, newRoot);
  if (m === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  // If m is an exact power of two, the old root is the first node of the path.
  const path = isPowerOfTwo(m) ? [oldRoot, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && constantTimeEqual(fr, oldRoot) && constantTimeEqual(sr, newRoot);
}
