/**
 * Proofs (docs/TRANSCRIPT.md §4.2; src/transcript/proof.ts): every entry a
 * signed tree covers gets a c2sp.org/tlog-proof@v1 that verifies with the
 * log's verifier key alone; a changed hash, entry, index or checkpoint, or
 * another log's key, is refused; an entry no checkpoint covers yet, or a
 * damaged tree.hashes, gives an error, never a proof.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64, utf8 } from "../../src/bytes.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log.ts";
import { formatVerifierKey, parseVerifierKey } from "../../src/transcript/note.ts";
import { PROOF_HEADER, formatProof, parseProof, proveEntry, verifyProof } from "../../src/transcript/proof.ts";
import { DEFAULT_WRITER, TranscriptWriter, treePath } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";
import { codeOf } from "../protocol/helpers.ts";

const HOST = hostKeyPair(23);
const ORIGIN = "chat.example.com/securechat";
const VERIFIER = parseVerifierKey(formatVerifierKey(ORIGIN, HOST.publicKey));


/** A transcript of `n` messages, stopped cleanly (its last checkpoint covers everything but itself). */
function transcript(n: number): string {
  const dir = join(tempDir("proof"), "transcript");
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, checkpointEvery: 5, dir, hostKey: HOST, version: "t", log: silentLogger, origin: ORIGIN });
  for (let i = 0; i < n; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `line ${i}` });
  w.close("done");
  return dir;
}

describe("proving and verifying", () => {
  test("every entry the last checkpoint covers has a proof that verifies with the vkey alone, carrying the entry's line", () => {
    const dir = transcript(13);
    const lines = readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith(".jsonl"))!), "utf8").split("\n").slice(0, -1);
    const signed = lines.length - 1; // all but the final checkpoint
    for (let seq = 1; seq <= signed; seq++) {
      const { proof, entry } = proveEntry(dir, treePath(dir), seq);
      expect(entry.seq).toBe(seq);
      const text = formatProof(proof);
      expect(text.startsWith(`${PROOF_HEADER}\nextra ${toBase64(utf8(lines[seq - 1]!))}\nindex ${seq - 1}\n`)).toBe(true);
      const ok = verifyProof(parseProof(text), VERIFIER);
      expect(ok).toMatchObject({ index: seq - 1, checkpoint: { origin: ORIGIN, size: signed } });
      expect(new TextDecoder().decode(ok.line)).toBe(lines[seq - 1]!);
      // The line given separately, as the proof carries it: the same answer.
      expect(verifyProof(parseProof(text), VERIFIER, utf8(lines[seq - 1]!)).index).toBe(seq - 1);
    }
  });

  test("refused: a changed proof hash, another entry, another index, another log's key, a changed checkpoint", () => {
    const dir = transcript(9);
    const { proof } = proveEntry(dir, treePath(dir), 4);
    const flipped = { ...proof, hashes: proof.hashes.map((h, i) => (i === 1 ? Uint8Array.from(h, (b, k) => (k === 0 ? b ^ 1 : b)) : h)) };
    expect(codeOf(() => verifyProof(flipped, VERIFIER))).toBe("proof_not_included");
    expect(codeOf(() => verifyProof({ ...proof, extra: utf8('{"forged":true}') }, VERIFIER))).toBe("proof_not_included");
    expect(codeOf(() => verifyProof({ ...proof, index: proof.index + 1 }, VERIFIER))).toBe("proof_not_included");
    expect(codeOf(() => verifyProof(proof, VERIFIER, utf8("another line")))).toBe("proof_entry_mismatch");
    expect(codeOf(() => verifyProof({ ...proof, extra: null }, VERIFIER))).toBe("proof_no_entry");
    const other = parseVerifierKey(formatVerifierKey(ORIGIN, ed25519Generate().publicKey));
    expect(codeOf(() => verifyProof(proof, other))).toBe("proof_checkpoint");
    expect(codeOf(() => verifyProof({ ...proof, checkpoint: proof.checkpoint.replace(/\n(\d+)\n/, (_, n) => `\n${Number(n) + 1}\n`) }, VERIFIER))).toBe("proof_checkpoint");
  });

  test("no proof for an entry the last checkpoint does not cover, or from a damaged tree.hashes", () => {
    const dir = transcript(6);
    const size = proveEntry(dir, treePath(dir), 1).proof.checkpoint.split("\n")[1];
    expect(codeOf(() => proveEntry(dir, treePath(dir), Number(size) + 1))).toBe("proof_not_signed");
    expect(codeOf(() => proveEntry(dir, treePath(dir), 0))).toBe("proof_not_signed");
    const buf = readFileSync(treePath(dir));
    buf[0]! ^= 1; // leaf 0's stored hash: the proof of leaf 1 uses it
    writeFileSync(treePath(dir), buf);
    expect(codeOf(() => proveEntry(dir, treePath(dir), 2))).toBe("proof_tree_damaged");
    writeFileSync(treePath(dir), buf.subarray(0, 32));
    expect(codeOf(() => proveEntry(dir, treePath(dir), 5))).toBe("proof_tree_short");
  });

  test("parsing refuses what is not a proof", () => {
    for (const bad of ["", "c2sp.org/tlog-proof@v2\nindex 0\n\nx", `${PROOF_HEADER}\nindex 01\n\nx`, `${PROOF_HEADER}\nindex 0\nnot-base64\n\nx`, `${PROOF_HEADER}\nindex 0\nAAAA\n\nx`, `${PROOF_HEADER}\nindex 0\n`]) {
      expect(codeOf(() => parseProof(bad))).toBe("proof_invalid");
    }
  });
});
