/**
 * Known-answer tests for the transcript format against
 * test/vectors/transcript/ (docs/TRANSCRIPT.md §11):
 *
 *   (a) the reference format (src/transcript/format.ts) reproduces every
 *       canonical form, hash, line, checkpoint signature input and
 *       signature, parses every line back, and opens the sealed bodies;
 *   (b) an independent implementation written from docs/TRANSCRIPT.md
 *       alone — primitives from @noble only, nothing from src/ — recomputes
 *       every hash, verifies the checkpoint signatures, unwraps the file key
 *       with the auditor secret, opens the sealed bodies, and verifies the
 *       transcript and each damaged copy as §8 says: the check that the
 *       SPEC, not just the code, matches the bytes;
 *   (c) the generator, run in memory, reproduces the committed files.
 *
 * Plus doc-consistency checks: the labels of src/crypto/labels.ts are in
 * §9 with their hex, and every entry type of format.ts's ENTRY_TYPES has its
 * member table in §2.4 with the same members as the spec's (transcribed in
 * SPEC_TYPES below).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { type CaseFile, type TranscriptVectors, VECTORS_DIR, VECTORS_JSON, buildTranscriptVectors } from "../../scripts/gen-transcript-vectors.ts";
import { labels } from "../../src/crypto/index.ts";
import {
  ENTRY_TYPES,
  type Entry,
  canonical,
  checkpointInput,
  entryHash,
  entryLine,
  makeEntry,
  openBody,
  parseEntry,
  signCheckpoint,
  unwrapFileKey,
  verifyCheckpoint,
} from "../../src/transcript/format.ts";

const ROOT = join(import.meta.dir, "..", "..");
const DIR = join(ROOT, VECTORS_DIR);
const V: TranscriptVectors = JSON.parse(readFileSync(join(DIR, VECTORS_JSON), "utf8"));
const SPEC = readFileSync(join(ROOT, "docs", "TRANSCRIPT.md"), "utf8");
const I = V.inputs;

// Byte helpers of this file's own, so that (b) uses nothing from src/.
const enc = new TextEncoder();
const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string): Uint8Array => new Uint8Array((s.match(/../g) ?? []).map((h) => Number.parseInt(h, 16)));
const cat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};
/** Canonical padded base64 (PROTOCOL.md §1.2): decode, re-encode, compare. */
const unb64 = (s: string): Uint8Array | null => {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) return null;
  const b = new Uint8Array(Buffer.from(s, "base64"));
  return Buffer.from(b).toString("base64") === s ? b : null;
};
const u64be = (n: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
};

const secret = (hexValue: string): Uint8Array => unhex(hexValue);

// ---------------------------------------------------------------------------
// (a) the reference format.

describe("(a) the reference format reproduces the vectors", () => {
  test("every entry's canonical form, hash and line; every line parses back to its entry", () => {
    expect(V.entries.length).toBe(27);
    for (const v of V.entries) {
      const e = v.entry as Entry;
      expect(canonical(e)).toBe(v.canonical);
      expect(entryHash(e)).toBe(v.hash);
      expect(e.hash).toBe(v.hash);
      expect(entryLine(e)).toBe(v.line_text);
      expect(parseEntry(v.line_text.slice(0, -1))).toEqual(e);
      const { seq, ts, type, prev, hash: _, ...fields } = e;
      expect(makeEntry(prev, seq, ts, type, fields)).toEqual(e);
    }
  });

  test("the files are the entries' lines, in order, and match their listed sizes and hashes", () => {
    for (const f of V.files) {
      const bytes = readFileSync(join(DIR, f.name));
      const lines = V.entries.filter((e) => e.file === f.name);
      expect(lines.map((e) => e.line)).toEqual(lines.map((_, i) => i + 1));
      expect(lines[0]!.entry.seq).toBe(f.first_seq);
      expect(bytes.toString("utf8")).toBe(lines.map((e) => e.line_text).join(""));
      expect(bytes.length).toBe(f.bytes);
      expect(hex(sha256(bytes))).toBe(f.sha256);
    }
  });

  test("checkpoints: signature input, signature, and verifyCheckpoint", () => {
    const checkpoints = V.entries.filter((v) => v.checkpoint);
    expect(checkpoints.map((v) => v.entry.seq)).toEqual([6, 27]);
    for (const v of checkpoints) {
      const e = v.entry as Entry;
      expect(hex(checkpointInput(e.head_seq as number, e.head as string))).toBe(v.checkpoint!.signature_input);
      const sig = signCheckpoint(secret(I.host_key_seed), e.head_seq as number, e.head as string);
      expect(sig).toBe(e.sig as string);
      expect(hex(unb64(sig)!)).toBe(v.checkpoint!.signature);
      expect(verifyCheckpoint(unhex(I.host_key_public), e)).toBe(true);
    }
  });

  test("seal_key unwraps with the auditor secret; sealed bodies open to their plaintexts", () => {
    const sk = V.entries.find((v) => v.seal_key)!;
    const fileKey = unwrapFileKey(secret(I.auditor_secret), sk.entry as Entry);
    expect(hex(fileKey)).toBe(sk.seal_key!.file_key);
    const sealed = V.entries.filter((v) => v.sealed);
    expect(sealed.map((v) => v.entry.seq)).toEqual([13, 14, 21]);
    for (const v of sealed) {
      expect(v.entry.key_seq).toBe(sk.entry.seq);
      expect(openBody(fileKey, v.entry.seq, v.entry.sealed as string)).toBe(v.sealed!.plaintext);
    }
  });

  test("the .torn file is the start of the line that was being written, and the recovery entry accounts for it", () => {
    const torn = readFileSync(join(DIR, V.torn.name));
    expect(hex(torn)).toBe(V.torn.bytes);
    expect(V.torn.would_have_been.startsWith(torn.toString("utf8"))).toBe(true);
    expect(torn.length).toBeLessThan(enc.encode(V.torn.would_have_been).length);
    const recovery = V.entries.find((v) => v.entry.type === "recovery")!.entry;
    expect(recovery.file).toBe(V.torn.of);
    expect(recovery.torn_bytes).toBe(torn.length);
    expect(recovery.torn_sha256).toBe(hex(sha256(torn)));
    // "continues the chain from the last whole entry" (§7): the torn line's seq is reused.
    expect(recovery.seq).toBe(JSON.parse(V.torn.would_have_been).seq);
    expect(recovery.prev).toBe(JSON.parse(V.torn.would_have_been).prev);
  });

  test("every entry type occurs in the vectors", () => {
    expect(new Set(V.entries.map((v) => v.entry.type))).toEqual(new Set(Object.keys(ENTRY_TYPES)));
  });
});

// ---------------------------------------------------------------------------
// (b) an independent implementation of docs/TRANSCRIPT.md.

const GENESIS = "0".repeat(64);
const LABEL_ENTRY = enc.encode("securechat/1 transcript entry");
const LABEL_CHECKPOINT = enc.encode("securechat/1 transcript checkpoint");
const LABEL_SEAL_KEY = enc.encode("securechat/1 transcript seal key");
const MAX_LINE = 1_048_576;
const HEX32 = /^[0-9a-f]{64}$/;

/** The kinds of §1.2/§2.4, with lengths and bounds as the spec gives them. */
type Kind = "text" | "int" | "int1" | "bool" | "hex32" | "b64:16" | "b64:32" | "b64:64" | "b64:68" | "b64:72" | "sealed" | "cid";
type Member = { kind: Kind; optional?: true };
const req = (kind: Kind): Member => ({ kind });
const opt = (kind: Kind): Member => ({ kind, optional: true });
const body = { text: opt("text"), sealed: opt("sealed"), key_seq: opt("int1"), action: opt("bool"), cid: opt("cid") };
/** What an edit or delete names: a room message or a direct message (§2.4). */
const changed = { room: opt("text"), room_seq: opt("int1"), dm_seq: opt("int1"), to: opt("text"), ref: req("int1"), user: req("text"), session: req("b64:16"), cid: opt("cid") };

/** §2.4's tables, transcribed. */
const SPEC_TYPES: Record<string, Record<string, Member>> = {
  server_start: { host_key: req("b64:32"), version: req("text") },
  server_stop: { reason: req("text") },
  seal_key: { recipient: req("b64:32"), epk: req("b64:32"), wrapped: req("b64:72") },
  session_open: { user: req("text"), session: req("b64:16"), source: req("text") },
  session_close: { user: req("text"), session: req("b64:16") },
  login_failed: { source: req("text"), reason: req("text") },
  session_revoked: { user: req("text"), session: req("b64:16"), target: req("text"), target_session: opt("b64:16") },
  password_changed: { user: req("text"), session: req("b64:16"), ended_sessions: req("bool") },
  admin_action: { user: req("text"), session: req("b64:16"), action: req("text"), target: req("text") },
  room_change: {
    room: req("text"),
    user: req("text"),
    session: req("b64:16"),
    owner: req("text"),
    action: req("text"),
    target: opt("text"),
    text: opt("text"),
    invite_only: opt("bool"),
    secret: opt("bool"),
  },
  device_enrolled: { user: req("text"), session: opt("b64:16"), device: req("text"), key: req("b64:32"), name: req("text"), by: req("text"), sig: opt("b64:64"), source: req("text") },
  device_revoked: { user: req("text"), session: req("b64:16"), device: req("text"), key: req("b64:32") },
  join: { room: req("text"), user: req("text") },
  leave: { room: req("text"), user: req("text") },
  message: { room: req("text"), room_seq: req("int1"), from: req("text"), ...body },
  direct: { dm_seq: req("int1"), from: req("text"), to: req("text"), ...body, stored: opt("bool") },
  edit: { ...changed, text: opt("text"), sealed: opt("sealed"), key_seq: opt("int1") },
  delete: changed,
  recovery: { file: req("text"), torn_bytes: req("int"), torn_sha256: req("hex32"), reason: req("text") },
  checkpoint: { head_seq: req("int1"), head: req("hex32"), sig: req("b64:64"), origin: opt("text"), root: opt("b64:32"), note_sig: opt("b64:68") },
};

type Obj = Record<string, string | number | boolean>;

/** §3.2: RFC 8785 over the value domain of §3.1, written out rule by rule. */
function jcsString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c >= 0xd800 && c <= 0xdfff) throw new Error("unpaired surrogate");
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0c) out += "\\f";
    else if (c === 0x0d) out += "\\r";
    else if (c < 0x20) out += `\\u00${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Compares by UTF-16 code units (RFC 8785 §3.2.3). */
function utf16Compare(a: string, b: string): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = a.charCodeAt(i) - b.charCodeAt(i);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function jcsValue(v: string | number | boolean): string {
  if (typeof v === "string") return jcsString(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`not in the value domain: ${v}`);
  return String(v);
}

function specCanonical(e: Obj): string {
  const names = Object.keys(e)
    .filter((k) => k !== "hash")
    .sort(utf16Compare);
  return `{${names.map((k) => `${jcsString(k)}:${jcsValue(e[k]!)}`).join(",")}}`;
}

/** §3.4 */
function specHash(e: Obj): string {
  return hex(sha256(cat(LABEL_ENTRY, new Uint8Array([0]), enc.encode(specCanonical(e)))));
}

/** §3.3 */
function specLine(e: Obj): string {
  return `${specCanonical(e).slice(0, -1)},"hash":"${e.hash}"}\n`;
}

function kindOk(kind: Kind, v: unknown): boolean {
  switch (kind) {
    case "text":
      return typeof v === "string" && v.isWellFormed();
    case "int":
      return Number.isSafeInteger(v) && (v as number) >= 0;
    case "int1":
      return Number.isSafeInteger(v) && (v as number) >= 1;
    case "bool":
      return typeof v === "boolean";
    case "hex32":
      return typeof v === "string" && HEX32.test(v);
    case "sealed": {
      const b = typeof v === "string" ? unb64(v) : null;
      return b !== null && b.length >= 40;
    }
    case "cid":
      // 16 bytes as unpadded base64url, canonical: decoding and encoding again gives it back.
      return typeof v === "string" && /^[A-Za-z0-9_-]{22}$/.test(v) && Buffer.from(v, "base64url").length === 16 && Buffer.from(v, "base64url").toString("base64url") === v;
    default: {
      const b = typeof v === "string" ? unb64(v) : null;
      return b !== null && b.length === Number(kind.slice(4));
    }
  }
}

/** §3.5 rules 3 and 4; null if the text is not an entry. */
function specParse(text: string): Obj | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const common: Record<string, Kind> = { seq: "int1", ts: "int", prev: "hex32", hash: "hex32" };
  for (const [k, kind] of Object.entries(common)) if (!kindOk(kind, o[k])) return null;
  if (typeof o.type !== "string" || !Object.hasOwn(SPEC_TYPES, o.type)) return null;
  const members = SPEC_TYPES[o.type]!;
  for (const k of Object.keys(o)) if (!(k in common) && k !== "type" && !Object.hasOwn(members, k)) return null;
  for (const [k, m] of Object.entries(members)) {
    if (o[k] === undefined) {
      if (!m.optional) return null;
    } else if (!kindOk(m.kind, o[k])) return null;
  }
  // §2.4: an edit or delete names a room message or a direct message, never both
  if (o.type === "edit" || o.type === "delete") {
    const room = o.room !== undefined && o.room_seq !== undefined && o.dm_seq === undefined && o.to === undefined;
    const dm = o.room === undefined && o.room_seq === undefined && o.dm_seq !== undefined && o.to !== undefined;
    if (!room && !dm) return null;
  }
  if (o.type === "message" || o.type === "direct" || o.type === "edit") {
    if ((o.text === undefined) === (o.sealed === undefined)) return null;
    if ((o.sealed === undefined) !== (o.key_seq === undefined)) return null;
  }
  if (o.type === "checkpoint") {
    const n = [o.origin, o.root, o.note_sig].filter((x) => x !== undefined).length;
    if (n !== 0 && n !== 3) return null;
    if (typeof o.origin === "string" && (o.origin.length === 0 || enc.encode(o.origin).length > 255 || /[\s+]/u.test(o.origin))) return null;
  }
  return o as Obj;
}

/** Ed25519-Verify, strictly (PROTOCOL.md §1.2). */
function specVerifySig(hostKey: Uint8Array, headSeq: number, head: string, sig: string): boolean {
  const input = cat(LABEL_CHECKPOINT, new Uint8Array([0]), u64be(headSeq), unhex(head));
  try {
    return ed25519.verify(unb64(sig)!, input, hostKey, { zip215: false });
  } catch {
    return false;
  }
}

/** §5.4: the file key of a seal_key entry, with the auditor secret `a`. */
function specUnwrap(a: Uint8Array, e: Obj): Uint8Array {
  const epk = unb64(e.epk as string)!;
  const recipient = unb64(e.recipient as string)!;
  const ss = x25519.scalarMult(a, epk);
  if (ss.every((b) => b === 0)) throw new Error("all-zero shared secret");
  const wrapKey = hkdf(sha256, ss, cat(epk, recipient), LABEL_SEAL_KEY, 32);
  const w = unb64(e.wrapped as string)!;
  const fileKey = xchacha20poly1305(wrapKey, w.subarray(0, 24), new Uint8Array(0)).decrypt(w.subarray(24));
  if (fileKey.length !== 32) throw new Error("file key is not 32 bytes");
  return fileKey;
}

/** §5.4: a sealed body's text. */
function specOpen(fileKey: Uint8Array, e: Obj): string {
  const b = unb64(e.sealed as string)!;
  const p = xchacha20poly1305(fileKey, b.subarray(0, 24), u64be(e.seq as number)).decrypt(b.subarray(24));
  return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(p);
}

interface Line {
  file: string;
  line: number;
  /** null when step 1 or rule 1–2 already failed */
  text: string | null;
  defect?: "torn" | "malformed";
}

type Result = { ok: true; entries: number; last_checkpoint: number | null; unsealed: number } | { ok: false; class: string; file?: string; line?: number };

const FILE_RE = /^(\d{4}-\d{2}-\d{2})\.(\d{12})\.jsonl$/;

/** §8: verifies a transcript given as file name → bytes, with the host key pinned. */
/** §3.6: RFC 9162's MTH over the lines' bytes, by its definition. */
function specTreeHash(leaves: Uint8Array[]): Uint8Array {
  const h = (...parts: Uint8Array[]) => sha256(cat(...parts));
  if (leaves.length === 0) return h();
  if (leaves.length === 1) return h(new Uint8Array([0]), leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return h(new Uint8Array([1]), specTreeHash(leaves.slice(0, k)), specTreeHash(leaves.slice(k)));
}

/** §4.1: the checkpoint note's signature, by the host key under the entry's origin. */
function specVerifyNote(hostKey: Uint8Array, e: Obj): boolean {
  const text = `${e.origin}\n${e.head_seq}\n${e.root}\n`;
  const keyId = sha256(cat(enc.encode(e.origin as string), new Uint8Array([0x0a, 0x01]), hostKey)).subarray(0, 4);
  const raw = unb64(e.note_sig as string)!;
  if (hex(raw.subarray(0, 4)) !== hex(keyId)) return false;
  try {
    return ed25519.verify(raw.subarray(4), enc.encode(text), hostKey, { zip215: false });
  } catch {
    return false;
  }
}

function specVerify(files: Record<string, Uint8Array>, hostKey: Uint8Array): Result {
  const names = Object.keys(files)
    .filter((n) => FILE_RE.test(n))
    .sort((a, b) => Number(FILE_RE.exec(a)![2]) - Number(FILE_RE.exec(b)![2]));
  if (names.length === 0) return { ok: false, class: "empty" };
  const lines: Line[] = [];
  for (const name of names) {
    const bytes = files[name]!;
    let start = 0;
    let n = 0;
    while (start < bytes.length) {
      const nl = bytes.indexOf(0x0a, start);
      n += 1;
      if (nl < 0) {
        lines.push({ file: name, line: n, text: null, defect: "torn" });
        break;
      }
      const raw = bytes.subarray(start, nl);
      let text: string | null = null;
      if (raw.length <= MAX_LINE) {
        try {
          text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
        } catch {
          text = null;
        }
      }
      lines.push(text === null ? { file: name, line: n, text: null, defect: "malformed" } : { file: name, line: n, text });
      start = nl + 1;
    }
  }
  /** Steps 1–3 only, for looking ahead. */
  const peek = (l: Line): Obj | null => {
    if (l.text === null) return null;
    const e = specParse(l.text);
    return e && specHash(e) === e.hash ? e : null;
  };
  let P: Obj | null = null;
  const key = hostKey;
  const sealKeys = new Set<number>();
  /** §8.2: room messages by "room seq", for the edits and deletes that name them. */
  const messages = new Map<string, { seq: number; from: string; to?: string; deleted: boolean }>();
  let entries = 0;
  let lastCheckpoint: number | null = null;
  let unsealed = 0;
  /** The lines so far, the leaves of §3.6. */
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const fail = (cls: string): Result => ({ ok: false, class: cls, file: l.file, line: l.line });
    if (l.defect === "torn") return fail("torn");
    if (l.text === null) return fail("malformed");
    const e = specParse(l.text);
    if (!e) return fail("malformed");
    if (specHash(e) !== e.hash) return fail("edited");
    if (specLine(e) !== `${l.text}\n`) return fail("malformed");
    const x = P ? (P.seq as number) + 1 : 1;
    const h = P ? (P.hash as string) : GENESIS;
    const seq = e.seq as number;
    const following: Obj[] = [];
    for (const f of lines.slice(i + 1, i + 17)) {
      const n = peek(f);
      if (!n) break;
      following.push(n);
    }
    const continues = (n: Obj | undefined): boolean => n !== undefined && n.seq === x && n.prev === h;
    if (seq > x) {
      if (continues(following[0]) && e.prev !== following[0]!.hash) return fail("inserted");
      if (following.some(continues)) return fail("reordered");
      return fail(P ? "deleted" : "not_genesis");
    }
    if (seq < x) {
      if (e.hash === P!.hash) return fail("duplicated");
      if (seq === P!.seq) return fail("inserted");
      return fail(following.length === 0 || continues(following[0]) ? "inserted" : "reordered");
    }
    if (e.prev !== h) return fail(P ? "inserted" : "not_genesis");
    if (P && (e.ts as number) < (P.ts as number)) return fail("time_backwards");
    if (l.line === 1 && Number(FILE_RE.exec(l.file)![2]) !== seq) return fail("file_name");
    if (e.type === "server_start" && hex(unb64(e.host_key as string)!) !== hex(key)) return fail("host_key_changed");
    if (e.type === "checkpoint") {
      if (!P || e.head_seq !== P.seq || e.head !== P.hash) return fail("bad_checkpoint");
      if (!specVerifySig(key, e.head_seq as number, e.head as string, e.sig as string)) return fail("bad_signature");
      if (e.root !== undefined) {
        if (!specVerifyNote(key, e)) return fail("bad_signature");
        if (Buffer.from(specTreeHash(leaves)).toString("base64") !== e.root) return fail("bad_checkpoint");
      }
    }
    if (e.type === "seal_key") sealKeys.add(seq);
    if (e.key_seq !== undefined && !sealKeys.has(e.key_seq as number)) return fail("key_seq");
    if (e.type === "message") messages.set(`${e.room} ${e.room_seq}`, { seq, from: e.from as string, deleted: false });
    if (e.type === "direct") messages.set(`dm ${e.dm_seq}`, { seq, from: e.from as string, to: e.to as string, deleted: false });
    if (e.type === "edit" || e.type === "delete") {
      const m = messages.get(e.dm_seq !== undefined ? `dm ${e.dm_seq}` : `${e.room} ${e.room_seq}`);
      const ref = e.ref as number;
      if (ref >= seq || seq - ref > 131072 || !m || m.seq !== ref || m.from !== e.user || m.to !== e.to || m.deleted) return fail("bad_edit");
      if (e.type === "delete") m.deleted = true;
    }
    P = e;
    entries += 1;
    leaves.push(enc.encode(l.text));
    if (e.type === "checkpoint") {
      lastCheckpoint = seq;
      unsealed = 0;
    } else unsealed += 1;
  }
  if (entries === 0) return { ok: false, class: "empty" };
  return { ok: true, entries, last_checkpoint: lastCheckpoint, unsealed };
}

function goodFiles(): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const name of readdirSync(DIR)) out[name] = new Uint8Array(readFileSync(join(DIR, name)));
  return out;
}

function caseFiles(files: CaseFile[]): Record<string, Uint8Array> {
  const good = goodFiles();
  const out: Record<string, Uint8Array> = {};
  for (const f of files) out[f.name] = "text" in f ? enc.encode(f.text) : good[f.same_as]!;
  return out;
}

describe("(b) an independent implementation of docs/TRANSCRIPT.md agrees", () => {
  test("the fixed inputs are SHA-256 of their labels, and the keys derive from them", () => {
    const fixed = (name: string, n = 32): string => hex(sha256(enc.encode(`securechat/1 test vector: transcript ${name}`)).slice(0, n));
    expect(I.host_key_seed).toBe(fixed("host key seed"));
    expect(I.host_key_public).toBe(hex(ed25519.getPublicKey(unhex(I.host_key_seed))));
    expect(I.host_key_base64).toBe(Buffer.from(unhex(I.host_key_public)).toString("base64"));
    expect(I.auditor_secret).toBe(fixed("auditor secret"));
    expect(I.auditor_public).toBe(hex(x25519.getPublicKey(unhex(I.auditor_secret))));
    expect(I.sessions).toEqual(["session 1", "session 2", "session 3"].map((n) => Buffer.from(unhex(fixed(n, 16))).toString("base64")));
    // §5.1 key files
    expect(I.auditor_key_file).toBe(`securechat-auditor-key-v1 ${Buffer.from(unhex(I.auditor_secret)).toString("base64")}\n`);
    expect(I.auditor_pub_line).toBe(`securechat-auditor-pub-v1 ${Buffer.from(unhex(I.auditor_public)).toString("base64")}`);
    expect(I.genesis).toBe(GENESIS);
  });

  test("every line: parses by §3.5, its canonical form, hash and line are §3.2–§3.4's", () => {
    for (const v of V.entries) {
      const e = specParse(v.line_text.slice(0, -1));
      expect(e).not.toBeNull();
      expect(specCanonical(e!)).toBe(v.canonical);
      expect(specHash(e!)).toBe(v.hash);
      expect(specLine(e!)).toBe(v.line_text);
    }
  });

  test("the chain: seq from 1 by 1, prev from GENESIS, ts never decreasing, across both files", () => {
    let prev = GENESIS;
    let ts = 0;
    V.entries.forEach((v, i) => {
      expect(v.entry.seq).toBe(i + 1);
      expect(v.entry.prev).toBe(prev);
      expect(v.entry.ts).toBeGreaterThanOrEqual(ts);
      prev = v.hash;
      ts = v.entry.ts;
    });
  });

  test("checkpoints sign the entry before them with the host key (§4)", () => {
    for (const v of V.entries.filter((x) => x.entry.type === "checkpoint")) {
      const e = v.entry;
      const before = V.entries[e.seq - 2]!.entry;
      expect(e.head_seq).toBe(before.seq);
      expect(e.head).toBe(before.hash);
      expect(e.head).toBe(e.prev);
      const input = cat(LABEL_CHECKPOINT, new Uint8Array([0]), u64be(e.head_seq as number), unhex(e.head as string));
      expect(input.length).toBe(75);
      expect(hex(input)).toBe(v.checkpoint!.signature_input);
      expect(specVerifySig(unhex(I.host_key_public), e.head_seq as number, e.head as string, e.sig as string)).toBe(true);
      // The same signature does not verify for any other head.
      expect(specVerifySig(unhex(I.host_key_public), (e.head_seq as number) - 1, e.head as string, e.sig as string)).toBe(false);
    }
  });

  test("seal_key: every intermediate value of the wrap (§5.2), and the unwrap with the auditor secret (§5.4)", () => {
    const v = V.entries.find((x) => x.seal_key)!;
    const s = v.seal_key!;
    const A = unhex(I.auditor_public);
    expect(hex(x25519.getPublicKey(unhex(s.ephemeral_secret)))).toBe(s.ephemeral_public);
    expect(hex(x25519.scalarMult(unhex(s.ephemeral_secret), A))).toBe(s.shared_secret);
    expect(s.salt).toBe(s.ephemeral_public + I.auditor_public);
    expect(hex(hkdf(sha256, unhex(s.shared_secret), unhex(s.salt), LABEL_SEAL_KEY, 32))).toBe(s.wrap_key);
    const sealed = xchacha20poly1305(unhex(s.wrap_key), unhex(s.nonce), new Uint8Array(0)).encrypt(unhex(s.file_key));
    expect(s.wrapped).toBe(s.nonce + hex(sealed));
    expect(unb64(v.entry.wrapped as string)!.length).toBe(72);
    expect(hex(unb64(v.entry.wrapped as string)!)).toBe(s.wrapped);
    expect(hex(unb64(v.entry.recipient as string)!)).toBe(I.auditor_public);
    expect(hex(unb64(v.entry.epk as string)!)).toBe(s.ephemeral_public);
    expect(hex(specUnwrap(unhex(I.auditor_secret), v.entry))).toBe(s.file_key);
  });

  test("sealed bodies open with the file key and their seq, and only with their seq (§5.3)", () => {
    const fileKey = specUnwrap(unhex(I.auditor_secret), V.entries.find((x) => x.seal_key)!.entry);
    for (const v of V.entries.filter((x) => x.sealed)) {
      const s = v.sealed!;
      expect(s.aad).toBe(hex(u64be(v.entry.seq)));
      expect(s.plaintext_utf8).toBe(hex(enc.encode(s.plaintext)));
      const box = xchacha20poly1305(fileKey, unhex(s.nonce), unhex(s.aad)).encrypt(unhex(s.plaintext_utf8));
      expect(s.box).toBe(s.nonce + hex(box));
      expect(hex(unb64(v.entry.sealed as string)!)).toBe(s.box);
      expect(unb64(v.entry.sealed as string)!.length).toBe(24 + enc.encode(s.plaintext).length + 16);
      expect(specOpen(fileKey, v.entry)).toBe(s.plaintext);
      expect(() => specOpen(fileKey, { ...v.entry, seq: v.entry.seq + 1 })).toThrow();
    }
  });

  test("the committed transcript verifies (§8): 27 entries, ending with a checkpoint", () => {
    expect(specVerify(goodFiles(), unhex(I.host_key_public))).toEqual({ ok: true, entries: 27, last_checkpoint: 27, unsealed: 0 });
  });

  test("the torn file's hash is the one the recovery entry records (§7)", () => {
    const torn = readFileSync(join(DIR, V.torn.name));
    const recovery = V.entries.find((v) => v.entry.type === "recovery")!.entry;
    expect(recovery.torn_sha256).toBe(hex(sha256(torn)));
  });

  for (const c of V.negative) {
    test(`damaged copy "${c.name}": ${c.expect.ok ? "verifies" : `${c.expect.class}${c.expect.file ? ` at ${c.expect.file}:${c.expect.line}` : ""}`}`, () => {
      const expected: Result = c.expect.ok
        ? { ok: true, entries: c.expect.entries!, last_checkpoint: c.expect.last_checkpoint!, unsealed: c.expect.unsealed! }
        : { ok: false, class: c.expect.class!, ...(c.expect.file ? { file: c.expect.file, line: c.expect.line! } : {}) };
      expect(specVerify(caseFiles(c.files), unhex(I.host_key_public))).toEqual(expected);
    });
  }

  test("the damaged copies cover every failure class of §8.3 that needs no --identity", () => {
    const classes = new Set(V.negative.filter((c) => !c.expect.ok).map((c) => c.expect.class));
    const table = /### 8\.3 Failure classes\n([\s\S]*?)\n\n/.exec(SPEC)![1]!;
    const specClasses = [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!);
    expect(specClasses.length).toBeGreaterThan(10);
    for (const cls of specClasses) {
      if (cls === "sealed_body" || cls === "no_host_key") continue;
      expect(classes.has(cls)).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------
// (c) regeneration.

describe("(c) the generator reproduces the committed files", () => {
  test("byte for byte, and nothing else in the directory but README.md", () => {
    const { files } = buildTranscriptVectors();
    for (const [name, bytes] of Object.entries(files)) {
      expect(hex(new Uint8Array(readFileSync(join(DIR, name))))).toBe(hex(bytes));
    }
    expect(readdirSync(DIR).sort()).toEqual([...Object.keys(files), "README.md"].sort());
  });
});

// ---------------------------------------------------------------------------
// The document and the code agree.

describe("docs/TRANSCRIPT.md and the code agree", () => {
  test("every TRANSCRIPT_* label is in §9 with its hex", () => {
    const section = SPEC.slice(SPEC.indexOf("## 9. Labels"), SPEC.indexOf("## 10."));
    const ours = Object.entries(labels).filter(([name]) => name.startsWith("TRANSCRIPT_"));
    expect(ours.map(([n]) => n).sort()).toEqual(["TRANSCRIPT_CHECKPOINT", "TRANSCRIPT_ENTRY", "TRANSCRIPT_SEAL_KEY"]);
    for (const [name, value] of ours) {
      const bytes = value as Uint8Array;
      expect(section).toContain(`| \`${name}\` | \`${new TextDecoder().decode(bytes)}\` | \`${hex(bytes)}\` |`);
    }
    expect(hex(LABEL_ENTRY)).toBe(hex(labels.TRANSCRIPT_ENTRY));
    expect(hex(LABEL_CHECKPOINT)).toBe(hex(labels.TRANSCRIPT_CHECKPOINT));
    expect(hex(LABEL_SEAL_KEY)).toBe(hex(labels.TRANSCRIPT_SEAL_KEY));
  });

  test("§2.4 has a member table for every entry type, listing exactly ENTRY_TYPES' members", () => {
    const section = SPEC.slice(SPEC.indexOf("### 2.4 Entry types"), SPEC.indexOf("### 2.5"));
    expect(Object.keys(SPEC_TYPES).sort()).toEqual(Object.keys(ENTRY_TYPES).sort());
    for (const [type, members] of Object.entries(ENTRY_TYPES)) {
      const at = section.indexOf(`**\`${type}\`**`);
      expect(at).toBeGreaterThanOrEqual(0);
      const next = section.indexOf("\n**`", at + 1);
      const text = section.slice(at, next < 0 ? undefined : next);
      for (const m of Object.keys(members)) expect(text).toContain(`\`${m}\``);
      expect(Object.keys(SPEC_TYPES[type]!).sort()).toEqual(Object.keys(members).sort());
      for (const [m, kind] of Object.entries(members)) expect(SPEC_TYPES[type]![m]!.optional === true).toBe(kind.endsWith("?"));
    }
  });

  test("the examples in the text are the vectors' values", () => {
    const e4 = V.entries[3]!;
    expect(SPEC).toContain(e4.canonical);
    expect(SPEC).toContain(e4.hash);
    expect(SPEC).toContain(V.entries[5]!.entry.head as string);
    expect(SPEC).toContain(I.host_key_base64);
    expect(SPEC).toContain(hex(sha256(new Uint8Array(0))));
    for (const f of V.files) expect(SPEC).toContain(f.name);
  });
});
