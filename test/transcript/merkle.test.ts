/**
 * The transcript's Merkle tree (src/transcript/merkle.ts) against RFC 9162
 * §2.1 computed straight from the leaves, and against vectors made by an
 * independent implementation (Go's golang.org/x/mod/sumdb/tlog,
 * scripts/crosscheck/merkle.go): roots, stored hashes, inclusion and
 * consistency proofs; and the verifiers refuse every altered proof.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fromBase64, utf8 } from "../../src/bytes.ts";
import { sha256, sha256Hex } from "../../src/crypto/index.ts";
import {
  EMPTY_ROOT,
  Frontier,
  type Hash,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  storedHashCount,
  storedHashIndex,
  treeHash,
  verifyConsistency,
  verifyInclusion,
} from "../../src/transcript/merkle.ts";

const hex = (h: Hash) => Buffer.from(h).toString("hex");
const leafData = (i: number) => utf8(`leaf ${i}`);

/** RFC 9162 §2.1.1 MTH, straight from the leaves. */
function mth(d: Uint8Array[]): Hash {
  if (d.length === 0) return sha256(new Uint8Array(0));
  if (d.length === 1) return leafHash(d[0]!);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return nodeHash(mth(d.slice(0, k)), mth(d.slice(k)));
}

/** RFC 9162 §2.1.3.1 PATH. */
function path(m: number, d: Uint8Array[]): Hash[] {
  if (d.length <= 1) return [];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m < k ? [...path(m, d.slice(0, k)), mth(d.slice(k))] : [...path(m - k, d.slice(k)), mth(d.slice(0, k))];
}

/** RFC 9162 §2.1.4.1 SUBPROOF. */
function subproof(m: number, d: Uint8Array[], b: boolean): Hash[] {
  if (m === d.length) return b ? [] : [mth(d)];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m <= k ? [...subproof(m, d.slice(0, k), b), mth(d.slice(k))] : [...subproof(m - k, d.slice(k), false), mth(d.slice(0, k))];
}

/** A writer's stored hashes for `n` leaves, and a reader over them. */
function build(n: number): { frontier: Frontier; stored: Hash[]; read: (level: number, index: number) => Hash } {
  const frontier = new Frontier();
  const stored: Hash[] = [];
  for (let i = 0; i < n; i++) stored.push(...frontier.append(leafHash(leafData(i))));
  return { frontier, stored, read: (level, index) => stored[storedHashIndex(level, index)]! };
}

describe("hashing and the tree", () => {
  test("leaf and node hashes are RFC 9162's: 0x00 and 0x01 prefixes; the empty tree's root is SHA-256 of nothing", () => {
    expect(hex(EMPTY_ROOT)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(leafHash(new Uint8Array(0)))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    const l = leafHash(utf8("a"));
    expect(nodeHash(l, l)).toEqual(sha256(new Uint8Array([1, ...l, ...l])));
  });

  test("the frontier's root after each append is MTH of the leaves so far, and the stored hashes are numbered as storedHashIndex says", () => {
    const leaves: Uint8Array[] = [];
    const { frontier, stored } = build(0);
    for (let i = 0; i < 130; i++) {
      leaves.push(leafData(i));
      stored.push(...frontier.append(leafHash(leafData(i))));
      expect(frontier.size).toBe(i + 1);
      expect(hex(frontier.root())).toBe(hex(mth(leaves)));
      expect(stored.length).toBe(storedHashCount(i + 1));
    }
    // Every complete subtree's hash is where storedHashIndex puts it.
    for (let level = 0; 2 ** level <= 130; level++) {
      for (let index = 0; (index + 1) * 2 ** level <= 130; index++) {
        const lo = index * 2 ** level;
        expect(hex(stored[storedHashIndex(level, index)]!)).toBe(hex(mth(leaves.slice(lo, lo + 2 ** level))));
      }
    }
  });

  test("push (a verifier's append, storing nothing) reaches the same roots as append", () => {
    const a = new Frontier();
    const b = new Frontier();
    for (let i = 0; i < 300; i++) {
      a.append(leafHash(leafData(i)));
      b.push(leafHash(leafData(i)));
      expect(b.size).toBe(a.size);
      expect(hex(b.root())).toBe(hex(a.root()));
    }
  });

  test("leaf and node hashes equal node:crypto's SHA-256 of the prefixed bytes for every length, past the one-call buffer too", () => {
    const ref = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
    for (const n of [0, 1, 31, 32, 63, 64, 65, 300, 16_382, 16_383, 16_384, 70_000]) {
      const data = new Uint8Array(n).map((_, i) => (i * 7 + n) & 0xff);
      expect(hex(leafHash(data))).toBe(ref(new Uint8Array([0, ...data])));
      expect(hex(sha256(data))).toBe(ref(data));
      expect(hex(sha256(data, "é"))).toBe(ref(new Uint8Array([...data, 0xc3, 0xa9])));
      expect(sha256Hex(data)).toBe(ref(data));
      expect(sha256Hex(data, "é")).toBe(ref(new Uint8Array([...data, 0xc3, 0xa9])));
    }
    const l = leafHash(utf8("x"));
    const r = leafHash(utf8("y"));
    expect(hex(nodeHash(l, r))).toBe(ref(new Uint8Array([1, ...l, ...r])));
    // Each call returns its own copy: a later hash does not change an earlier one.
    expect(hex(l)).toBe(ref(new Uint8Array([0, 0x78])));
  });

  test("a frontier loaded from stored hashes continues exactly as the one that wrote them", () => {
    const { stored, read } = build(101);
    for (const n of [0, 1, 2, 3, 7, 8, 64, 99, 100]) {
      const f = Frontier.load(n, read);
      expect(f.size).toBe(n);
      expect(hex(f.root())).toBe(hex(treeHash(n, read)));
      const next = f.append(leafHash(leafData(n)));
      expect(next.map(hex)).toEqual(stored.slice(storedHashCount(n), storedHashCount(n + 1)).map(hex));
    }
  });
});

describe("proofs against RFC 9162 computed from the leaves", () => {
  const N = 40;
  const { read } = build(N);
  const leaves = Array.from({ length: N }, (_, i) => leafData(i));

  test("treeHash, inclusion and consistency proofs equal the RFC's for every size, leaf and prefix up to 40 leaves, and verify", () => {
    for (let n = 1; n <= N; n++) {
      const root = mth(leaves.slice(0, n));
      expect(hex(treeHash(n, read))).toBe(hex(root));
      for (let i = 0; i < n; i++) {
        const p = inclusionProof(i, n, read);
        expect(p.map(hex)).toEqual(path(i, leaves.slice(0, n)).map(hex));
        expect(verifyInclusion(i, n, leafHash(leaves[i]!), p, root)).toBe(true);
      }
      for (let m = 1; m <= n; m++) {
        const p = consistencyProof(m, n, read);
        expect(p.map(hex)).toEqual((m === n ? [] : subproof(m, leaves.slice(0, n), true)).map(hex));
        expect(verifyConsistency(m, n, mth(leaves.slice(0, m)), root, p)).toBe(true);
      }
    }
  });

  test("the verifiers refuse a wrong leaf, index, size, root, a flipped bit, a missing, extra or swapped hash", () => {
    const n = 21;
    const root = mth(leaves.slice(0, n));
    const flip = (p: Hash[], i: number) => p.map((h, j) => (j === i ? Uint8Array.from(h, (b, k) => (k === 0 ? b ^ 1 : b)) : h));
    for (const i of [0, 5, 16, 20]) {
      const p = inclusionProof(i, n, read);
      const leaf = leafHash(leaves[i]!);
      expect(verifyInclusion(i, n, leafHash(leaves[(i + 1) % n]!), p, root)).toBe(false);
      expect(verifyInclusion((i + 1) % n, n, leaf, p, root)).toBe(false);
      // A size whose path has another shape (the size itself is bound to the root by a signed checkpoint).
      expect(verifyInclusion(i, 2 * n, leaf, p, root)).toBe(false);
      expect(verifyInclusion(i, n, leaf, p, mth(leaves.slice(0, n - 1)))).toBe(false);
      expect(verifyInclusion(i, n, leaf, p.slice(1), root)).toBe(false);
      expect(verifyInclusion(i, n, leaf, [...p, p[0]!], root)).toBe(false);
      for (let j = 0; j < p.length; j++) expect(verifyInclusion(i, n, leaf, flip(p, j), root)).toBe(false);
      expect(verifyInclusion(i, n, leaf, [p[1]!, p[0]!, ...p.slice(2)], root)).toBe(false);
      expect(verifyInclusion(n, n, leaf, p, root)).toBe(false);
      expect(verifyInclusion(-1, n, leaf, p, root)).toBe(false);
    }
    for (const m of [1, 4, 7, 8, 13, 20]) {
      const p = consistencyProof(m, n, read);
      const old = mth(leaves.slice(0, m));
      expect(verifyConsistency(m, n, old, root, p)).toBe(true);
      expect(verifyConsistency(m, n, mth(leaves.slice(0, m + 1)), root, p)).toBe(false);
      expect(verifyConsistency(m, n, old, mth(leaves.slice(0, n - 1)), p)).toBe(false);
      expect(verifyConsistency(m, 2 * n, old, root, p)).toBe(false);
      expect(verifyConsistency(m, n, old, root, p.slice(0, -1))).toBe(false);
      expect(verifyConsistency(m, n, old, root, [...p, p[0]!])).toBe(false);
      for (let j = 0; j < p.length; j++) expect(verifyConsistency(m, n, old, root, flip(p, j))).toBe(false);
    }
    // Trivial cases: a tree is consistent with itself only with the same root and no proof; the empty tree with any.
    expect(verifyConsistency(n, n, root, root, [])).toBe(true);
    expect(verifyConsistency(n, n, root, mth(leaves.slice(0, n - 1)), [])).toBe(false);
    expect(verifyConsistency(0, n, EMPTY_ROOT, root, [])).toBe(true);
    expect(verifyConsistency(n + 1, n, root, root, [])).toBe(false);
  });

  test("proofs of what is not in the tree are refused as programming errors, not made up", () => {
    expect(() => inclusionProof(N, N, read)).toThrow(RangeError);
    expect(() => consistencyProof(N, N - 1, read)).toThrow(RangeError);
    expect(() => treeHash(-1, read)).toThrow(RangeError);
  });
});

describe("against Go's golang.org/x/mod/sumdb/tlog (test/vectors/merkle.json)", () => {
  const v = JSON.parse(readFileSync(new URL("../vectors/merkle.json", import.meta.url), "utf8")) as {
    roots: string[];
    stored: string[];
    inclusion: { index: number; size: number; proof: string[] }[];
    consistency: { old: number; new: number; proof: string[] }[];
  };
  const { stored, read } = build(v.roots.length);
  const b64 = (h: Hash) => Buffer.from(h).toString("base64");

  test("the same stored hashes, in the same order, and the same root at every size", () => {
    expect(stored.map(b64)).toEqual(v.stored);
    expect(v.roots.map((_, i) => b64(treeHash(i + 1, read)))).toEqual(v.roots);
  });

  test("the same inclusion and consistency proofs, and each verifies", () => {
    expect(v.inclusion.length).toBeGreaterThan(150);
    expect(v.consistency.length).toBeGreaterThan(150);
    for (const c of v.inclusion) {
      expect(inclusionProof(c.index, c.size, read).map(b64)).toEqual(c.proof);
      expect(verifyInclusion(c.index, c.size, leafHash(leafData(c.index)), c.proof.map((h) => fromBase64(h)), fromBase64(v.roots[c.size - 1]!))).toBe(true);
    }
    for (const c of v.consistency) {
      expect(consistencyProof(c.old, c.new, read).map(b64)).toEqual(c.proof);
      expect(verifyConsistency(c.old, c.new, fromBase64(v.roots[c.old - 1]!), fromBase64(v.roots[c.new - 1]!), c.proof.map((h) => fromBase64(h)))).toBe(true);
    }
  });
});
