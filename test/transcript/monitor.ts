/**
 * What a monitor of a tlog-tiles directory checks, independently of the
 * code that wrote it: the checkpoint's signature, the entry bundles against
 * the transcript's lines, and every tile hash against an RFC 6962 tree hash
 * computed here.
 */
import { expect } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type NoteVerifier, openCheckpoint } from "../../src/transcript/note.ts";
import { decodeBundle, tileCounts, tilePath } from "../../src/transcript/tiles.ts";

/** The lines of the transcript files in `dir`, in order, without their LF. */
export function lines(dir: string): Buffer[] {
  const out: Buffer[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".jsonl")).sort()) {
    const b = readFileSync(join(dir, f));
    for (let at = 0; at < b.length; ) {
      const nl = b.indexOf(0x0a, at);
      out.push(b.subarray(at, nl));
      at = nl + 1;
    }
  }
  return out;
}

// An independent RFC 6962 tree hash.
export const sha = (...parts: Uint8Array[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
function mth(leaves: Uint8Array[]): Buffer {
  if (leaves.length === 1) return sha(Buffer.from([0]), leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha(Buffer.from([1]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** What a monitor checks: checkpoint signature, bundles = lines, every tile hash = MTH of its range, root = MTH of all. */
export function checkLikeAMonitor(out: string, transcriptLines: Buffer[], verifier: NoteVerifier): number {
  const cp = openCheckpoint(readFileSync(join(out, "checkpoint"), "utf8"), verifier);
  const n = cp.size;
  const bundled: Uint8Array[] = [];
  for (let b = 0; b * 256 < n; b++) bundled.push(...decodeBundle(readFileSync(join(out, tilePath("entries", b, Math.min(256, n - b * 256))))));
  expect(bundled.length).toBe(n);
  for (let i = 0; i < n; i++) expect(Buffer.from(bundled[i]!).equals(transcriptLines[i]!)).toBe(true);
  expect(mth(bundled).equals(Buffer.from(cp.root))).toBe(true);
  for (let level = 0; 256 ** level <= n; level++) {
    const span = 256 ** level;
    const { full, partial } = tileCounts(n, level);
    for (let t = 0; t <= full; t++) {
      const width = t < full ? 256 : partial;
      if (width === 0) continue;
      const tile = readFileSync(join(out, tilePath(level, t, width)));
      expect(tile.length).toBe(width * 32);
      for (let i = 0; i < width; i++) {
        const start = (t * 256 + i) * span;
        expect(tile.subarray(i * 32, i * 32 + 32).equals(mth(bundled.slice(start, start + span)))).toBe(true);
      }
    }
  }
  return n;
}
