/**
 * Known-answer vectors for the securechat transcript (docs/TRANSCRIPT.md
 * §11). Builds, from fixed inputs, a small transcript of two files written
 * by two runs of a server — the first run ends in a crash that tears its
 * last line, the second seals message bodies to an auditor key and stops
 * cleanly — with every entry type once or more, and records each entry's
 * canonical form, hash and line, the checkpoint signature inputs, the
 * seal_key wrap and the sealed bodies with their plaintexts. Then a list of
 * damaged copies, each with what a verifier must say about it (§8).
 *
 *   bun run scripts/gen-transcript-vectors.ts   → test/vectors/transcript/*
 *
 * The entries are built with the reference format (src/transcript/format.ts).
 * Sealing there draws random nonces (and random file and ephemeral keys);
 * here the same construction is done with the primitives and fixed values,
 * so the output is a pure function of the inputs below and
 * test/transcript/vectors.test.ts can rebuild it in memory and compare.
 * Any change to this output is a format change (docs/DESIGN.md §10).
 *
 * Secret and random inputs are nothing-up-my-sleeve values:
 * SHA-256("securechat/1 test vector: transcript <name>"), truncated where a
 * value is shorter than 32 bytes.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { concat, fromBase64, toBase64, toHex, u64be, utf8 } from "../src/bytes.ts";
import { ed25519Generate, ed25519Sign, hkdf, labels, sha256, x25519, x25519Generate, xchachaSeal } from "../src/crypto/index.ts";
import { deviceId } from "../src/fingerprint.ts";
import { signEnrollment } from "../src/protocol/devices.ts";
import { type Entry, type EntryFields, GENESIS, canonical, checkpointInput, checkpointNote, entryHash, entryLine, makeEntry, signCheckpoint, treeCheckpointFields } from "../src/transcript/format.ts";
import { Frontier, leafHash } from "../src/transcript/merkle.ts";
import { checkpointText, formatVerifierKey, noteKeyId } from "../src/transcript/note.ts";

/** Where the committed vectors live, relative to the repository root. */
export const VECTORS_DIR = "test/vectors/transcript";
/** The JSON file with inputs and intermediate values, inside VECTORS_DIR. */
export const VECTORS_JSON = "transcript.json";

/** SHA-256("securechat/1 test vector: transcript <name>"), first `n` bytes. */
export function fixedBytes(name: string, n = 32): Uint8Array {
  return sha256(utf8(`securechat/1 test vector: transcript ${name}`)).slice(0, n);
}

/** 2026-11-20T09:00:00.000Z and 2026-11-21T08:30:00.000Z, in milliseconds since the epoch. */
export const T1 = 1_795_165_200_000;
export const T2 = 1_795_249_800_000;
export const VERSION = "0.1.0";
/** The log origin the vectors' checkpoints are signed under (§4.1). */
export const ORIGIN = "chat.example.com/securechat";
export const FILE_A = "2026-11-20.000000000001.jsonl";
export const FILE_B = "2026-11-21.000000000007.jsonl";
export const TORN_FILE = `${FILE_A}.torn`;
/** How many bytes of the line being written when run 1 crashed reached the disk. */
export const TORN_LENGTH = 61;

const b64 = toBase64;

interface Sealed {
  key_seq: number;
  nonce: string;
  aad: string;
  plaintext: string;
  plaintext_utf8: string;
  box: string;
}

interface SealKey {
  ephemeral_secret: string;
  ephemeral_public: string;
  shared_secret: string;
  salt: string;
  wrap_key: string;
  nonce: string;
  file_key: string;
  wrapped: string;
}

interface Checkpoint {
  signature_input: string;
  signature: string;
  /** The tree checkpoint (§4.1): the tree's size, the note's text, the key ID, the whole signed note. */
  tree_size: number;
  note_text: string;
  key_id: string;
  note: string;
}

export interface VectorEntry {
  file: string;
  line: number;
  entry: Entry;
  canonical: string;
  hash: string;
  line_text: string;
  seal_key?: SealKey;
  sealed?: Sealed;
  checkpoint?: Checkpoint;
}

export interface Expectation {
  ok: boolean;
  /** The failure class (docs/TRANSCRIPT.md §8.3) when !ok. */
  class?: string;
  file?: string;
  line?: number;
  /** When ok: entries read, seq of the last checkpoint, entries after it. */
  entries?: number;
  last_checkpoint?: number | null;
  unsealed?: number;
}

/** A file of a damaged copy: its whole text, or the name of the good file it is a byte-for-byte copy of. */
export type CaseFile = { name: string; text: string } | { name: string; same_as: string };

export interface NegativeCase {
  name: string;
  description: string;
  files: CaseFile[];
  expect: Expectation;
}

/** The good transcript, built once per call. */
function buildChain() {
  const host = ed25519Generate(fixedBytes("host key seed"));
  const auditorSecret = fixedBytes("auditor secret");
  const auditor = x25519Generate(auditorSecret);
  const entries: VectorEntry[] = [];
  let head = GENESIS;
  let seq = 0;
  const tree = new Frontier();
  const lineOf: Record<string, number> = {};
  const add = (file: string, ts: number, type: string, fields: EntryFields, extra: Partial<VectorEntry> = {}): Entry => {
    seq += 1;
    const entry = makeEntry(head, seq, ts, type, fields);
    head = entry.hash;
    lineOf[file] = (lineOf[file] ?? 0) + 1;
    tree.append(leafHash(utf8(entryLine(entry).slice(0, -1))));
    entries.push({ file, line: lineOf[file]!, entry, canonical: canonical(entry), hash: entry.hash, line_text: entryLine(entry), ...extra });
    return entry;
  };
  const checkpoint = (file: string, ts: number): Entry => {
    const input = checkpointInput(seq, head);
    const sig = signCheckpoint(host.secretKey, seq, head);
    const size = seq;
    const fields = treeCheckpointFields((m) => ed25519Sign(host.secretKey, m), host.publicKey, ORIGIN, size, tree.root());
    const entry = add(file, ts, "checkpoint", { head_seq: size, head, sig, ...fields });
    entries.at(-1)!.checkpoint = {
      signature_input: toHex(input),
      signature: toHex(fromBase64(sig)),
      tree_size: size,
      note_text: checkpointText({ origin: ORIGIN, size, root: fromBase64(fields.root as string) }),
      key_id: toHex(noteKeyId(ORIGIN, host.publicKey)),
      note: checkpointNote(entry)!,
    };
    return entry;
  };
  const session1 = b64(fixedBytes("session 1", 16));
  const session2 = b64(fixedBytes("session 2", 16));
  const session3 = b64(fixedBytes("session 3", 16));

  // Run 1: no --auditor-key; the machine crashes while entry 7 is being written.
  add(FILE_A, T1, "server_start", { host_key: b64(host.publicKey), version: VERSION });
  add(FILE_A, T1 + 1_520, "session_open", { user: "alice", session: session1, source: "192.0.2.10" });
  add(FILE_A, T1 + 1_523, "join", { room: "lobby", user: "alice" });
  add(FILE_A, T1 + 4_250, "message", { room: "lobby", room_seq: 1, from: "alice", text: 'héllo "wörld" \\o/ 😀' });
  add(FILE_A, T1 + 9_001, "login_failed", { source: "198.51.100.7", reason: "password" });
  checkpoint(FILE_A, T1 + 60_000);
  const wouldBe = makeEntry(head, seq + 1, T1 + 61_000, "session_close", { user: "alice", session: session1 });
  const torn = utf8(entryLine(wouldBe)).slice(0, TORN_LENGTH);

  // Run 2, the next UTC day, with --auditor-key: a new file; recovery first.
  add(FILE_B, T2, "recovery", { file: FILE_A, torn_bytes: torn.length, torn_sha256: toHex(sha256(torn)), reason: "torn last line cut after a crash" });
  add(FILE_B, T2, "server_start", { host_key: b64(host.publicKey), version: VERSION });

  const fileKey = fixedBytes("file key");
  const ephSecret = fixedBytes("seal ephemeral secret");
  const eph = x25519Generate(ephSecret);
  const shared = x25519(ephSecret, auditor.publicKey);
  const salt = concat(eph.publicKey, auditor.publicKey);
  const wrapKey = hkdf(shared, salt, labels.TRANSCRIPT_SEAL_KEY, 32);
  const wrapNonce = fixedBytes("wrap nonce", 24);
  const wrapped = concat(wrapNonce, xchachaSeal(wrapKey, wrapNonce, fileKey, new Uint8Array(0)));
  const sealKey: SealKey = {
    ephemeral_secret: toHex(ephSecret),
    ephemeral_public: toHex(eph.publicKey),
    shared_secret: toHex(shared),
    salt: toHex(salt),
    wrap_key: toHex(wrapKey),
    nonce: toHex(wrapNonce),
    file_key: toHex(fileKey),
    wrapped: toHex(wrapped),
  };
  const keySeq = add(FILE_B, T2, "seal_key", { recipient: b64(auditor.publicKey), epk: b64(eph.publicKey), wrapped: b64(wrapped) }, { seal_key: sealKey }).seq;

  const seal = (text: string, nonceName: string): { sealed: string; vector: Sealed } => {
    const s = seq + 1;
    const nonce = fixedBytes(nonceName, 24);
    const aad = u64be(BigInt(s));
    const box = concat(nonce, xchachaSeal(fileKey, nonce, utf8(text), aad));
    return {
      sealed: b64(box),
      vector: { key_seq: keySeq, nonce: toHex(nonce), aad: toHex(aad), plaintext: text, plaintext_utf8: toHex(utf8(text)), box: toHex(box) },
    };
  };

  add(FILE_B, T2 + 2_100, "session_open", { user: "bob", session: session2, source: "2001:db8::b0b" });
  add(FILE_B, T2 + 2_400, "session_open", { user: "alice", session: session3, source: "192.0.2.10" });
  add(FILE_B, T2 + 2_403, "join", { room: "lobby", user: "alice" });
  const m = seal("only the auditor reads this: ünïcødé ✓", "body nonce 13");
  add(FILE_B, T2 + 5_000, "message", { room: "lobby", room_seq: 2, from: "alice", sealed: m.sealed, key_seq: keySeq }, { sealed: m.vector });
  const d = seal("waves at bob 👋", "body nonce 14");
  add(FILE_B, T2 + 7_300, "direct", { dm_seq: 1, from: "alice", to: "bob", sealed: d.sealed, key_seq: keySeq, action: true }, { sealed: d.vector });
  add(FILE_B, T2 + 8_200, "session_revoked", { user: "bob", session: session2, target: "5e551017c4e7" });
  add(FILE_B, T2 + 8_500, "password_changed", { user: "bob", session: session2, ended_sessions: false });
  // Bob's first device approves a second one, then revokes it (PROTOCOL.md §7.11).
  const bobFirst = ed25519Generate(fixedBytes("device seed bob first"));
  const bobSecond = ed25519Generate(fixedBytes("device seed bob second")).publicKey;
  const approval = signEnrollment(bobFirst.secretKey, "bob", bobSecond);
  add(FILE_B, T2 + 8_600, "device_enrolled", {
    user: "bob",
    session: session2,
    device: deviceId(bobSecond),
    key: b64(bobSecond),
    name: "work laptop",
    by: deviceId(bobFirst.publicKey),
    sig: b64(approval),
    source: "2001:db8::b0c",
  });
  add(FILE_B, T2 + 8_650, "device_revoked", { user: "bob", session: session2, device: deviceId(bobSecond), key: b64(bobSecond) });
  add(FILE_B, T2 + 8_700, "admin_action", { user: "alice", session: session3, action: "lock", target: "bob" });
  add(FILE_B, T2 + 8_800, "room_change", { room: "lobby", user: "alice", session: session3, owner: "alice", action: "topic", text: "release friday — ✓" });
  // alice edits her sealed message (entry 13), then deletes it: new entries naming it by `ref`.
  const ed = seal("only the auditor reads this, edited ✓", "body nonce 21");
  add(FILE_B, T2 + 8_850, "edit", { room: "lobby", room_seq: 2, ref: 13, user: "alice", session: session3, sealed: ed.sealed, key_seq: keySeq }, { sealed: ed.vector });
  add(FILE_B, T2 + 8_900, "delete", { room: "lobby", room_seq: 2, ref: 13, user: "alice", session: session3 });
  add(FILE_B, T2 + 9_000, "leave", { room: "lobby", user: "alice" });
  add(FILE_B, T2 + 9_001, "session_close", { user: "alice", session: session3 });
  add(FILE_B, T2 + 11_950, "session_close", { user: "bob", session: session2 });
  add(FILE_B, T2 + 12_000, "server_stop", { reason: "shutdown" });
  checkpoint(FILE_B, T2 + 12_000);

  return { host, auditorSecret, auditor, entries, torn, wouldBe, sessions: [session1, session2, session3] };
}

type Chain = ReturnType<typeof buildChain>;

function fileText(entries: VectorEntry[], file: string): string {
  return entries
    .filter((e) => e.file === file)
    .map((e) => e.line_text)
    .join("");
}

/** Damaged copies of the good transcript, and what §8 says about each (verified with --host-key pinned). */
function buildNegative(c: Chain): NegativeCase[] {
  const lines = (file: string): string[] => c.entries.filter((e) => e.file === file).map((e) => e.line_text);
  const A = lines(FILE_A);
  const B = lines(FILE_B);
  const entryAt = (seq: number): Entry => ({ ...c.entries[seq - 1]!.entry });
  const join = (ls: string[]): string => ls.join("");
  const goodText: Record<string, string> = { [FILE_A]: join(A), [FILE_B]: join(B) };
  /** A file of a case: its text, or `same_as` the good file whose bytes it has. */
  const file = (name: string, ls: string[]): CaseFile => {
    const text = join(ls);
    const same = Object.keys(goodText).find((g) => goodText[g] === text);
    return same === undefined ? { name, text } : { name, same_as: same };
  };
  const both = (a: string[], b: string[]): CaseFile[] => [file(FILE_A, a), file(FILE_B, b)];
  const rehash = (e: Omit<Entry, "hash"> & { hash?: string }): Entry => {
    const { hash: _, ...rest } = e;
    return { ...rest, hash: entryHash(rest) } as Entry;
  };
  /** Re-chains `es` after `prev` (new prev and hash for each), re-signing checkpoints with `signer` if given. */
  const rechain = (prev: string, es: Entry[], signer?: Uint8Array): Entry[] => {
    const out: Entry[] = [];
    for (const e of es) {
      let f: Entry = { ...e, prev };
      if (f.type === "checkpoint") {
        const last = out.at(-1)!;
        f = { ...f, head_seq: last.seq, head: last.hash };
        if (signer) f.sig = signCheckpoint(signer, last.seq, last.hash);
      }
      f = rehash(f);
      out.push(f);
      prev = f.hash;
    }
    return out;
  };
  const fail = (cls: string, file: string, line: number): Expectation => ({ ok: false, class: cls, file, line });
  const out: NegativeCase[] = [];
  const add = (name: string, description: string, files: CaseFile[], expect: Expectation): void => {
    out.push({ name, description, files, expect });
  };

  add("not_json", "line 3 of the first file is cut short and followed by its LF: not JSON", both([A[0]!, A[1]!, `${A[2]!.slice(0, 40)}\n`, ...A.slice(3)], B), fail("malformed", FILE_A, 3));
  {
    const e = entryAt(4);
    const { hash, ...rest } = e;
    const insertion: Record<string, unknown> = { seq: rest.seq, ts: rest.ts, type: rest.type, prev: rest.prev, room: rest.room, room_seq: rest.room_seq, from: rest.from, text: rest.text, hash };
    add(
      "key_order",
      "entry 4 written with its keys in another order (same values, same hash): not the canonical line",
      both([...A.slice(0, 3), `${JSON.stringify(insertion)}\n`, ...A.slice(4)], B),
      fail("malformed", FILE_A, 4),
    );
  }
  add(
    "duplicate_key",
    'entry 4 with a second "text" member placed before the real one: JSON.parse keeps the last, so the hash matches, but a first-wins parser would read "I never said that"',
    both([...A.slice(0, 3), A[3]!.replace('"text":', '"text":"I never said that","text":'), ...A.slice(4)], B),
    fail("malformed", FILE_A, 4),
  );
  add("crlf", "the first file with CRLF line ends (JSON.parse would accept the CR as whitespace)", both(A.map((l) => l.replace(/\n$/, "\r\n")), B), fail("malformed", FILE_A, 1));
  add(
    "torn",
    "the second file's last line (the final checkpoint) written only in part: no LF at the end of the file",
    both(A, [...B.slice(0, -1), B.at(-1)!.slice(0, 90)]),
    fail("torn", FILE_B, B.length),
  );
  add(
    "edited",
    "entry 4's text changed; its hash left as it was",
    both([...A.slice(0, 3), A[3]!.replace("\\\\o/", "\\\\o/ (edited)"), ...A.slice(4)], B),
    fail("edited", FILE_A, 4),
  );
  {
    const forged = rehash({ ...entryAt(5), source: "203.0.113.66" });
    add(
      "replaced",
      "entry 5 replaced by another entry with seq 5, the right prev and a hash that matches it: entry 6's prev no longer matches",
      both([...A.slice(0, 4), entryLine(forged), ...A.slice(5)], B),
      fail("inserted", FILE_A, 6),
    );
  }
  add("deleted", "entry 5 deleted: a sequence gap that no later line fills", both([...A.slice(0, 4), ...A.slice(5)], B), fail("deleted", FILE_A, 5));
  {
    const forged = makeEntry(entryAt(4).hash, 5, entryAt(5).ts, "message", { room: "lobby", room_seq: 2, from: "alice", text: "I never said that" });
    add(
      "inserted",
      "a forged message with seq 5 and the right prev inserted after entry 4: the real entry 5 on the next line is a second entry 5",
      both([...A.slice(0, 4), entryLine(forged), ...A.slice(4)], B),
      fail("inserted", FILE_A, 6),
    );
  }
  add("reordered", "entries 2 and 3 swapped", both([A[0]!, A[2]!, A[1]!, ...A.slice(3)], B), fail("reordered", FILE_A, 2));
  add("duplicated", "entry 4 written twice in a row", both([...A.slice(0, 4), A[3]!, ...A.slice(4)], B), fail("duplicated", FILE_A, 5));
  {
    const e3 = rehash({ ...entryAt(3), ts: T1 + 1_000 });
    add(
      "time_backwards",
      "entry 3's ts set 520 ms before entry 2's, its hash recomputed",
      both([...A.slice(0, 2), entryLine(e3), ...A.slice(3)], B),
      fail("time_backwards", FILE_A, 3),
    );
  }
  {
    const e6 = entryAt(6);
    const wrong = rehash({ ...e6, sig: signCheckpoint(c.host.secretKey, 4, entryAt(4).hash) });
    add(
      "bad_signature",
      "checkpoint 6 carrying a genuine host-key signature, but over (4, hash of entry 4); its hash recomputed",
      both([...A.slice(0, 5), entryLine(wrong)], B),
      fail("bad_signature", FILE_A, 6),
    );
    // The tree checkpoint (§4.1): a root that is not the tree of the lines before it, signed by the host key
    // itself (a server lying about its log), and the right root signed by another key.
    const four = new Frontier();
    for (const line of A.slice(0, 4)) four.append(leafHash(utf8(line.slice(0, -1))));
    const sign = (m: Uint8Array) => ed25519Sign(c.host.secretKey, m);
    const lying = rehash({ ...e6, ...treeCheckpointFields(sign, c.host.publicKey, ORIGIN, 5, four.root()) });
    add(
      "tree_root_wrong",
      "checkpoint 6 whose root is the tree of the first 4 lines, not 5, under a genuine host-key note signature; its hash recomputed",
      both([...A.slice(0, 5), entryLine(lying)], B),
      fail("bad_checkpoint", FILE_A, 6),
    );
    const other = ed25519Generate(fixedBytes("other host key seed"));
    const forged = rehash({ ...e6, note_sig: treeCheckpointFields((m) => ed25519Sign(other.secretKey, m), c.host.publicKey, ORIGIN, 5, fromBase64(e6.root as string)).note_sig! });
    add(
      "tree_note_forged",
      "checkpoint 6 with the right root, but its note signed by another key (under the host key's key ID); its hash recomputed",
      both([...A.slice(0, 5), entryLine(forged)], B),
      fail("bad_signature", FILE_A, 6),
    );
    const moved = rehash({ ...e6, head_seq: 4, head: entryAt(4).hash, sig: signCheckpoint(c.host.secretKey, 4, entryAt(4).hash) });
    add(
      "checkpoint_not_previous",
      "checkpoint 6 validly signed over (4, hash of entry 4) instead of the entry before it (5)",
      both([...A.slice(0, 5), entryLine(moved)], B),
      fail("bad_checkpoint", FILE_A, 6),
    );
  }
  {
    // The attacker can write files but has no host key: it rewrites the tail and every hash after it.
    const tail = c.entries.slice(13).map((v) => ({ ...v.entry }));
    tail[0] = { ...tail[0]!, to: "carol" };
    const re = rechain(entryAt(13).hash, tail);
    add(
      "rewritten_tail",
      "entry 14 (the direct message) redirected to carol and every later prev, hash and the final checkpoint's head recomputed: only the signature is left wrong",
      both(A, [...B.slice(0, 7), ...re.map(entryLine)]),
      fail("bad_signature", FILE_B, B.length),
    );
  }
  {
    const other = ed25519Generate(fixedBytes("other host key seed"));
    const tail = c.entries.slice(7).map((v) => ({ ...v.entry }));
    tail[0] = { ...tail[0]!, host_key: b64(other.publicKey) };
    const re = rechain(entryAt(7).hash, tail, other.secretKey);
    add(
      "host_key_changed",
      "run 2 rewritten by someone with another host key: its server_start names that key and its checkpoint is signed by it",
      both(A, [B[0]!, ...re.map(entryLine)]),
      fail("host_key_changed", FILE_B, 2),
    );
  }
  {
    const e13 = rehash({ ...entryAt(13), key_seq: 8 });
    add(
      "key_seq",
      "entry 13's key_seq set to 8 (a server_start, not a seal_key), its hash recomputed",
      both(A, [...B.slice(0, 6), entryLine(e13), ...B.slice(7)]),
      fail("key_seq", FILE_B, 7),
    );
  }
  {
    // A server (it holds the host key) records bob editing alice's message: the chain and signature are fine, the edit is not.
    const tail = c.entries.slice(20).map((v) => ({ ...v.entry }));
    tail[0] = { ...tail[0]!, user: "bob" };
    const re = rechain(entryAt(20).hash, tail, c.host.secretKey);
    add(
      "edit_not_author",
      "entry 21 (alice's edit of her message, entry 13) attributed to bob, and every later entry re-chained and re-signed with the host key: an edit must be by the message's author",
      both(A, [...B.slice(0, 14), ...re.map(entryLine)]),
      fail("bad_edit", FILE_B, 15),
    );
  }
  add("first_file_deleted", "only the second file: the chain does not start at seq 1 from the genesis value", [file(FILE_B, B)], fail("not_genesis", FILE_B, 1));
  add(
    "file_name",
    "the second file renamed to say that its first entry is seq 8",
    [file(FILE_A, A), file("2026-11-21.000000000008.jsonl", B)],
    fail("file_name", "2026-11-21.000000000008.jsonl", 1),
  );
  add("empty", "no transcript files at all", [], { ok: false, class: "empty" });
  add(
    "truncated_to_checkpoint",
    "the second file deleted: the transcript ends with a valid checkpoint, so it verifies — truncation is not detectable from the transcript alone (§8.4)",
    [file(FILE_A, A)],
    { ok: true, entries: 6, last_checkpoint: 6, unsealed: 0 },
  );
  add(
    "truncated_tail",
    "the last two entries (server_stop and the final checkpoint) cut off at a line boundary: verifies, with a warning that 19 entries after the last checkpoint are not covered by a signature",
    both(A, B.slice(0, -2)),
    { ok: true, entries: 25, last_checkpoint: 6, unsealed: 19 },
  );
  return out;
}

/**
 * The vectors: the JSON object, and every file of VECTORS_DIR the generator
 * owns (name → bytes), transcript.json included.
 */
export function buildTranscriptVectors() {
  const c = buildChain();
  const fileA = fileText(c.entries, FILE_A);
  const fileB = fileText(c.entries, FILE_B);
  const label = (l: Uint8Array) => ({ ascii: new TextDecoder().decode(l), hex: toHex(l) });
  const json = {
    description:
      "Known-answer vectors for the securechat transcript format, docs/TRANSCRIPT.md §11. Generated by scripts/gen-transcript-vectors.ts; do not edit.",
    labels: {
      TRANSCRIPT_ENTRY: label(labels.TRANSCRIPT_ENTRY),
      TRANSCRIPT_CHECKPOINT: label(labels.TRANSCRIPT_CHECKPOINT),
      TRANSCRIPT_SEAL_KEY: label(labels.TRANSCRIPT_SEAL_KEY),
    },
    inputs: {
      note: "secrets and nonces are SHA-256(\"securechat/1 test vector: transcript <name>\"), truncated to 24 bytes for nonces and 16 for session ids; real nonces, file keys and ephemeral keys are random",
      host_key_seed: toHex(c.host.secretKey),
      host_key_public: toHex(c.host.publicKey),
      host_key_base64: b64(c.host.publicKey),
      auditor_secret: toHex(c.auditorSecret),
      auditor_public: toHex(c.auditor.publicKey),
      auditor_key_file: `securechat-auditor-key-v1 ${b64(c.auditorSecret)}\n`,
      auditor_pub_line: `securechat-auditor-pub-v1 ${b64(c.auditor.publicKey)}`,
      sessions: c.sessions,
      version: VERSION,
      t1: T1,
      t2: T2,
      genesis: GENESIS,
      origin: ORIGIN,
      vkey: formatVerifierKey(ORIGIN, c.host.publicKey),
    },
    files: [
      { name: FILE_A, first_seq: 1, lines: c.entries.filter((e) => e.file === FILE_A).length, bytes: utf8(fileA).length, sha256: toHex(sha256(utf8(fileA))) },
      { name: FILE_B, first_seq: 7, lines: c.entries.filter((e) => e.file === FILE_B).length, bytes: utf8(fileB).length, sha256: toHex(sha256(utf8(fileB))) },
    ],
    torn: {
      name: TORN_FILE,
      of: FILE_A,
      bytes: toHex(c.torn),
      length: c.torn.length,
      sha256: toHex(sha256(c.torn)),
      would_have_been: entryLine(c.wouldBe),
    },
    entries: c.entries,
    negative: buildNegative(c),
  };
  const files: Record<string, Uint8Array> = {
    [FILE_A]: utf8(fileA),
    [FILE_B]: utf8(fileB),
    [TORN_FILE]: c.torn,
    [VECTORS_JSON]: utf8(`${JSON.stringify(json, null, 2)}\n`),
  };
  return { json, files };
}

export type TranscriptVectors = ReturnType<typeof buildTranscriptVectors>["json"];

if (import.meta.main) {
  const dir = join(import.meta.dir, "..", VECTORS_DIR);
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(buildTranscriptVectors().files)) {
    writeFileSync(join(dir, name), bytes);
    console.log(`wrote ${VECTORS_DIR}/${name}`);
  }
}
