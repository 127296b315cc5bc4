/**
 * Proofs that an entry is in the transcript (docs/TRANSCRIPT.md §4.2), in the
 * format of c2sp.org/tlog-proof@v1: the entry's leaf index, its RFC 9162
 * inclusion proof, and the signed checkpoint the proof leads to — checked
 * offline with nothing but the proof and the log's verifier key.
 *
 * `proveEntry` makes one from a data directory: the last checkpoint that
 * signs a tree, the entry's line, and O(log n) stored hashes read from
 * tree.hashes (never the leaves). It checks the proof it made against the
 * signed root before it returns it, so a damaged tree.hashes gives an
 * error, never a proof that does not verify.
 */
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import { SecureChatError } from "../errors.ts";
import { type Entry, checkpointNote, parseEntry } from "./format.ts";
import { HASH_SIZE, type Hash, inclusionProof, leafHash, storedHashIndex, verifyInclusion } from "./merkle.ts";
import { type Checkpoint, type NoteVerifier, openCheckpoint } from "./note.ts";
import { listTranscript, readFileLineBatchesSync } from "./read.ts";
import { lastTreeCheckpoint } from "./verify.ts";

export const PROOF_HEADER = "c2sp.org/tlog-proof@v1";

/** A proof is one checkpoint and at most 63 hashes: anything longer is not one. */
export const PROOF_BYTES_MAX = 64 * 1024;

export interface Proof {
  index: number;
  /** The `extra` data: here, the entry's line (without its LF), when the proof carries it. */
  extra: Uint8Array | null;
  hashes: Hash[];
  /** The signed checkpoint, verbatim. */
  checkpoint: string;
}

function bad(message: string): never {
  throw new SecureChatError("proof_invalid", `proof: ${message}`);
}

/** The proof's text: header, `extra`, `index`, one base64 hash per line, a blank line, the checkpoint. */
export function formatProof(p: Proof): string {
  const extra = p.extra ? `extra ${toBase64(p.extra)}\n` : "";
  return `${PROOF_HEADER}\n${extra}index ${p.index}\n${p.hashes.map((h) => `${toBase64(h)}\n`).join("")}\n${p.checkpoint}`;
}

/** Parses a proof's text (the syntax only; `verifyProof` checks it). */
export function parseProof(text: string): Proof {
  if (text.length > PROOF_BYTES_MAX) bad("longer than any proof");
  const lines = text.split("\n");
  let i = 0;
  if (lines[i++] !== PROOF_HEADER) bad(`the first line is not ${PROOF_HEADER}`);
  let extra: Uint8Array | null = null;
  if (lines[i]?.startsWith("extra ")) {
    try {
      extra = fromBase64(lines[i++]!.slice(6));
    } catch {
      bad("the extra line is not base64");
    }
  }
  const index = /^index (0|[1-9][0-9]{0,15})$/.exec(lines[i++] ?? "");
  if (!index || !Number.isSafeInteger(Number(index[1]))) bad("no index line (index N)");
  const hashes: Hash[] = [];
  for (; i < lines.length && lines[i] !== ""; i++) {
    try {
      hashes.push(fromBase64(lines[i]!, HASH_SIZE));
    } catch {
      bad(`line ${i + 1} is not a base64 SHA-256 hash`);
    }
  }
  if (i >= lines.length) bad("no blank line before the checkpoint");
  if (hashes.length > 63) bad("more hashes than any tree needs");
  const checkpoint = lines.slice(i + 1).join("\n");
  if (checkpoint === "") bad("no checkpoint after the blank line");
  return { index: Number(index[1]), extra, hashes, checkpoint };
}

export interface VerifiedProof {
  checkpoint: Checkpoint;
  index: number;
  /** The entry's line, from `extra` or as given. */
  line: Uint8Array;
}

/**
 * Checks a proof: the checkpoint is signed by `verifier`, and the leaf —
 * `line` if given (it must then equal `extra`, when there is one), else
 * `extra` — is at `index` in that checkpoint's tree.
 */
export function verifyProof(p: Proof, verifier: NoteVerifier, line?: Uint8Array): VerifiedProof {
  let checkpoint: Checkpoint;
  try {
    checkpoint = openCheckpoint(p.checkpoint, verifier);
  } catch (e) {
    throw new SecureChatError("proof_checkpoint", `proof: the checkpoint is not the log's: ${(e as Error).message.replace(/^signed note: /, "")}`);
  }
  const leaf = line ?? p.extra;
  if (!leaf) throw new SecureChatError("proof_no_entry", "proof: it carries no entry; pass the entry's line");
  if (line && p.extra && Buffer.compare(Buffer.from(line), Buffer.from(p.extra)) !== 0) {
    throw new SecureChatError("proof_entry_mismatch", "proof: the entry given is not the one the proof carries");
  }
  if (!verifyInclusion(p.index, checkpoint.size, leafHash(leaf), p.hashes, checkpoint.root)) {
    throw new SecureChatError("proof_not_included", `proof: the entry is not leaf ${p.index} of the tree of ${checkpoint.size} lines this checkpoint signs`);
  }
  return { checkpoint, index: p.index, line: leaf };
}

/** The line of the entry with `seq`, from the transcript file that holds it. */
export function findEntryLine(transcriptDir: string, seq: number): { line: string; entry: Entry } {
  const files = listTranscript(transcriptDir).files;
  let file = null;
  for (const f of files) if (f.firstSeq !== null && f.firstSeq <= seq) file = f;
  if (!file) throw new SecureChatError("proof_no_such_entry", `no entry ${seq} in ${transcriptDir}`);
  let at = file.firstSeq!;
  for (const batch of readFileLineBatchesSync(file.path, file.name, { partial: "stop" })) {
    for (const l of batch) {
      if (at === seq) {
        const entry = parseEntry(l.text);
        if (entry.seq !== seq) throw new SecureChatError("proof_no_such_entry", `${file.name}:${l.line} holds entry ${entry.seq}, not ${seq}: run "securechat transcript verify"`);
        return { line: l.text, entry };
      }
      at++;
    }
  }
  throw new SecureChatError("proof_no_such_entry", `no entry ${seq} in ${transcriptDir}`);
}

/**
 * The proof of the entry with `seq` in the last checkpoint that signs a
 * tree, from `transcriptDir` and its `treeFile` (tree.hashes).
 */
export function proveEntry(transcriptDir: string, treeFile: string, seq: number): { proof: Proof; entry: Entry } {
  const cp = lastTreeCheckpoint(listTranscript(transcriptDir).files);
  if (!cp) throw new SecureChatError("proof_no_checkpoint", `no checkpoint in ${transcriptDir} signs a tree root yet`);
  const size = cp.head_seq as number;
  if (seq < 1 || seq > size) {
    throw new SecureChatError("proof_not_signed", `entry ${seq} is not in the last signed tree (entries 1 … ${size}); a later checkpoint will cover it`);
  }
  if (!existsSync(treeFile)) throw new SecureChatError("proof_no_tree", `no ${treeFile}: start the server once to rebuild it`);
  const { line, entry } = findEntryLine(transcriptDir, seq);
  const fd = openSync(treeFile, "r");
  let hashes: Hash[];
  try {
    hashes = inclusionProof(seq - 1, size, (level, index) => {
      const h = new Uint8Array(HASH_SIZE);
      if (readSync(fd, h, 0, HASH_SIZE, storedHashIndex(level, index) * HASH_SIZE) !== HASH_SIZE) {
        throw new SecureChatError("proof_tree_short", `${treeFile} is shorter than the transcript: start the server once to rebuild it`);
      }
      return h;
    });
  } finally {
    closeSync(fd);
  }
  const proof: Proof = { index: seq - 1, extra: utf8(line), hashes, checkpoint: checkpointNote(cp)! };
  if (!verifyInclusion(seq - 1, size, leafHash(utf8(line)), hashes, fromBase64(cp.root as string, HASH_SIZE))) {
    throw new SecureChatError("proof_tree_damaged", `${treeFile} does not match the transcript (the proof it gives does not verify): restart the server to rebuild it`);
  }
  return { proof, entry };
}
