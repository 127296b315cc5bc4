/**
 * The transcript's entry format (docs/TRANSCRIPT.md): one JSON object per
 * line, hash-chained. This file only defines and checks bytes: encoding,
 * hashing, parsing, checkpoint signature input, sealing. No files here.
 *
 *   canonical(e) = RFC 8785 (JCS) serialization of e without "hash"
 *   e.hash       = hex(SHA-256("securechat/1 transcript entry" ‖ 0x00 ‖ UTF-8(canonical(e))))
 *   e.prev       = previous entry's hash (64 zeros for the first entry ever)
 *
 * The value domain is small on purpose (strings, safe integers, booleans,
 * flat objects): JCS over it is "sort keys by UTF-16 code units, serialize
 * as ECMAScript JSON.stringify does", which any language can reproduce.
 */
import { concat, fromBase64, fromHex, fromUtf8, toBase64, toHex, u64be, utf8 } from "../bytes.ts";
import {
  ed25519Sign,
  ed25519Verify,
  hkdf,
  labels,
  randomBytes,
  sha256,
  sha256Hex,
  wipe,
  x25519,
  x25519Generate,
  xchachaOpenRandom,
  xchachaSealRandom,
} from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { CID_RE } from "../protocol/cid.ts";
import { TIME_MAX_MS } from "../time.ts";
import { checkpointText, formatNote, isKeyName, noteKeyId, openNote, signatureLine } from "./note.ts";

export const GENESIS = "0".repeat(64);

/** What an entry's hash is of, before its canonical form's UTF-8 (§3.4). */
export const ENTRY_HASH_PREFIX: Uint8Array = concat(labels.TRANSCRIPT_ENTRY, new Uint8Array([0]));

export type Scalar = string | number | boolean;
export type EntryFields = Record<string, Scalar>;

export interface Entry extends EntryFields {
  seq: number;
  ts: number;
  type: string;
  prev: string;
  hash: string;
}

/** The fields each entry type carries beyond seq, ts, type, prev, hash ("?" marks optional). */
export const ENTRY_TYPES: Record<string, Record<string, "string" | "int" | "bool" | "hex32" | "b64" | "string?" | "bool?" | "b64?" | "int?">> = {
  server_start: { host_key: "b64", version: "string" },
  server_stop: { reason: "string" },
  seal_key: { recipient: "b64", epk: "b64", wrapped: "b64" },
  session_open: { user: "string", session: "b64", source: "string" },
  session_close: { user: "string", session: "b64" },
  login_failed: { source: "string", reason: "string" },
  session_revoked: { user: "string", session: "b64", target: "string", target_session: "b64?" },
  password_changed: { user: "string", session: "b64", ended_sessions: "bool" },
  admin_action: { user: "string", session: "b64", action: "string", target: "string" },
  // Room moderation (PROTOCOL.md §7.9).
  room_change: { room: "string", user: "string", session: "b64", owner: "string", action: "string", target: "string?", text: "string?", invite_only: "bool?", secret: "bool?" },
  device_enrolled: { user: "string", session: "b64?", device: "string", key: "b64", name: "string", by: "string", sig: "b64?", source: "string" },
  device_revoked: { user: "string", session: "b64", device: "string", key: "b64" },
  join: { room: "string", user: "string" },
  leave: { room: "string", user: "string" },
  message: { room: "string", room_seq: "int", from: "string", text: "string?", sealed: "b64?", key_seq: "int?", action: "bool?", cid: "string?" },
  direct: { dm_seq: "int", from: "string", to: "string", text: "string?", sealed: "b64?", key_seq: "int?", action: "bool?", stored: "bool?", cid: "string?" },
  recovery: { file: "string", torn_bytes: "int", torn_sha256: "hex32", reason: "string" },
  // An edit or a delete of the room message (room, room_seq) or direct message (dm_seq, to) at transcript seq `ref` (TRANSCRIPT.md §2.4).
  edit: { room: "string?", room_seq: "int?", dm_seq: "int?", to: "string?", ref: "int", user: "string", session: "b64", text: "string?", sealed: "b64?", key_seq: "int?", cid: "string?" },
  delete: { room: "string?", room_seq: "int?", dm_seq: "int?", to: "string?", ref: "int", user: "string", session: "b64", cid: "string?" },
  checkpoint: { head_seq: "int", head: "hex32", sig: "b64", origin: "string?", root: "b64?", note_sig: "b64?" },
};

function fail(code: string, message: string): never {
  throw new SecureChatError(code, `transcript: ${message}`);
}

/** The members of each shape of entry (its names in the order given) in canonical order, `hash` left out; null for a shape the loop serializes. */
const SORTED = new Map<string, string[] | null>();

/** Member names as JSON strings, memoized: entries use a few dozen names, over and over. */
const QUOTED = new Map<string, string>();

function quotedKey(k: string): string {
  let q = QUOTED.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (QUOTED.size < 1024) QUOTED.set(k, q);
  }
  return q;
}

/**
 * RFC 8785 over the transcript's value domain (no floats, no null, no
 * nesting): members sorted by their names' UTF-16 code units (the default
 * string sort), strings as JSON.stringify writes them (which is §3.2.2.2's
 * escaping), safe integers and booleans as JSON.stringify writes them.
 */
export function canonical(fields: EntryFields): string {
  const names = Object.keys(fields);
  const shape = names.join(",");
  let order = SORTED.get(shape);
  if (order === undefined) {
    // An array-index name would be put first by any object it is set on, and "__proto__" would set its prototype: such shapes take the loop below.
    order = names.some((k) => k === "__proto__" || /^(?:0|[1-9][0-9]*)$/.test(k)) ? null : names.filter((k) => k !== "hash").sort();
    if (SORTED.size < 1024) SORTED.set(shape, order);
  }
  if (order !== null) {
    // The members set in canonical order on a fresh object, serialized in one call: the same text as the loop, faster.
    const o: EntryFields = {};
    let plain = true;
    for (let i = 0; i < order.length; i++) {
      const v = fields[order[i]!]!;
      if (!(typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isSafeInteger(v)))) plain = false;
      o[order[i]!] = v;
    }
    if (plain) return JSON.stringify(o);
  }
  const keys = names.sort();
  let out = "{";
  for (const k of keys) {
    if (k === "hash") continue;
    const v = fields[k];
    if (out.length > 1) out += ",";
    out += `${quotedKey(k)}:${typeof v === "string" ? JSON.stringify(v) : String(v)}`;
  }
  return `${out}}`;
}

/** The hash of an entry whose canonical form (without `hash`) is `canon`. */
export function canonicalHash(canon: string): string {
  return sha256Hex(ENTRY_HASH_PREFIX, canon);
}

export function entryHash(fields: EntryFields): string {
  return canonicalHash(canonical(fields));
}

/** Builds the next entry of a chain; refuses values outside the format's domain (§3). */
export function makeEntry(prev: string, seq: number, ts: number, type: string, fields: EntryFields): Entry {
  return makeEntryLine(prev, seq, ts, type, fields).entry;
}

/**
 * The next entry of a chain without its hash, and its canonical form (§3.2);
 * refuses values outside the format's domain (§3). Its hash is that of
 * ENTRY_HASH_PREFIX ‖ UTF-8(canon), its line canonicalLine(canon, hash).
 */
export function prepareEntry(prev: string, seq: number, ts: number, type: string, fields: EntryFields): { entry: Omit<Entry, "hash">; canon: string } {
  const e = { seq, ts, type, prev, ...fields } as Omit<Entry, "hash">;
  if (ts > TIME_MAX_MS) fail("entry_value", `${type}.ts is past 8.64e15 ms, a time no date can hold`);
  for (const k in e) {
    const v = (e as EntryFields)[k];
    const ok = typeof v === "boolean" || (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) || (typeof v === "string" && v.isWellFormed());
    if (!ok) fail("entry_value", `${type}.${k} is not a string, a non-negative safe integer or a boolean`);
  }
  return { entry: e, canon: canonical(e) };
}

/** makeEntry, and the entry's line, from one canonical serialization. */
export function makeEntryLine(prev: string, seq: number, ts: number, type: string, fields: EntryFields): { entry: Entry; line: string } {
  const { entry: e, canon } = prepareEntry(prev, seq, ts, type, fields);
  const hash = canonicalHash(canon);
  const entry = e as Entry;
  entry.hash = hash;
  return { entry, line: canonicalLine(canon, hash) };
}

/** The line written for an entry: keys in canonical order, then `hash` last. */
export function entryLine(e: Entry): string {
  return canonicalLine(canonical(e), e.hash);
}

/** The line of an entry whose canonical form (without `hash`) is `canon`. */
export function canonicalLine(canon: string, hash: string): string {
  return `${canon.slice(0, -1)},"hash":${JSON.stringify(hash)}}\n`;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Decoded sizes of base64 fields (§2): exact, or a minimum for sealed bodies. */
const B64_LENGTH: Record<string, number> = { host_key: 32, session: 16, target_session: 16, recipient: 32, epk: 32, wrapped: 72, sig: 64, key: 32, root: 32, note_sig: 68 };
const SEALED_MIN = 24 + 16;
/** Sequence-valued fields are positive. */
const POSITIVE = new Set(["room_seq", "dm_seq", "key_seq", "head_seq", "ref"]);
/** Entries whose text may be sealed (§5.3): they carry exactly one of text and sealed. */
export const BODY_TYPES = new Set(["message", "direct", "edit"]);
/**
 * How far back an edit or delete may reach (§2.4): its `ref` is at most this
 * many entries before it, so a verifier checks every one against the
 * message it changes while remembering only the messages of the last
 * EDIT_REACH entries.
 */
export const EDIT_REACH = 131_072;

/**
 * Parses and checks one line (without its LF): JSON object, known type,
 * exactly the type's fields with the right kinds. The hash is NOT checked
 * here (verify.ts does, to say what is wrong).
 */
export function parseEntry(line: string): Entry {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    fail("entry_json", "line is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail("entry_json", "line is not a JSON object");
  const o = v as Record<string, unknown>;
  const { seq, ts, type, prev, hash } = o;
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) fail("entry_field", "seq must be a positive integer");
  if (!Number.isSafeInteger(ts) || (ts as number) < 0 || (ts as number) > TIME_MAX_MS) fail("entry_field", "ts must be an integer from 0 to 8.64e15 (a time a date can hold)");
  if (typeof type !== "string" || !Object.hasOwn(ENTRY_TYPES, type)) fail("entry_type", `unknown entry type ${JSON.stringify(type)}`);
  if (typeof prev !== "string" || !HEX64.test(prev)) fail("entry_field", "prev must be 64 lowercase hex digits");
  if (typeof hash !== "string" || !HEX64.test(hash)) fail("entry_field", "hash must be 64 lowercase hex digits");
  const spec = ENTRY_TYPES[type]!;
  for (const key in o) {
    if (!COMMON_FIELDS.has(key) && !Object.hasOwn(spec, key)) fail("entry_field", `${type} has unknown field ${JSON.stringify(key)}`);
  }
  for (const { key, base, optional, positive } of FIELD_SPECS[type]!) {
    const x = o[key];
    if (x === undefined) {
      if (!optional) fail("entry_field", `${type}.${key} is missing`);
      continue;
    }
    // base64 is decoded once: to check it, then its length.
    let decoded = -1;
    if (base === "b64" && typeof x === "string") {
      try {
        decoded = fromBase64(x).length;
      } catch {
        // not base64: refused below
      }
    }
    const ok =
      base === "string" ? typeof x === "string"
      : base === "int" ? Number.isSafeInteger(x) && (x as number) >= 0
      : base === "bool" ? typeof x === "boolean"
      : base === "hex32" ? typeof x === "string" && HEX64.test(x)
      : decoded >= 0;
    if (!ok) fail("entry_field", `${type}.${key} must be ${base}`);
    if (typeof x === "string" && !x.isWellFormed()) fail("entry_field", `${type}.${key} must be well-formed unicode`);
    if (positive && (x as number) < 1) fail("entry_field", `${type}.${key} must be at least 1`);
    if (base === "b64") {
      const want = B64_LENGTH[key];
      if (want !== undefined && decoded !== want) fail("entry_field", `${type}.${key} must decode to ${want} bytes`);
      if (key === "sealed" && decoded < SEALED_MIN) fail("entry_field", `${type}.sealed must decode to at least ${SEALED_MIN} bytes`);
    }
  }
  if (BODY_TYPES.has(type) && (o.text === undefined) === (o.sealed === undefined)) {
    fail("entry_field", `${type} must carry exactly one of text and sealed`);
  }
  if ((type === "edit" || type === "delete") && !(o.room !== undefined && o.room_seq !== undefined && o.dm_seq === undefined && o.to === undefined) && !(o.room === undefined && o.room_seq === undefined && o.dm_seq !== undefined && o.to !== undefined)) {
    fail("entry_field", `${type} must name a room message (room, room_seq) or a direct message (dm_seq, to)`);
  }
  if (BODY_TYPES.has(type) && (o.sealed === undefined) !== (o.key_seq === undefined)) {
    fail("entry_field", `${type}.sealed and key_seq go together`);
  }
  if (o.cid !== undefined && !CID_RE.test(o.cid as string)) fail("entry_field", `${type}.cid must be a client message id (22 characters of base64url: 16 bytes)`);
  if (type === "checkpoint" && !((o.origin === undefined) === (o.root === undefined) && (o.root === undefined) === (o.note_sig === undefined))) {
    fail("entry_field", "checkpoint.origin, root and note_sig go together");
  }
  if (type === "checkpoint" && o.origin !== undefined && !isOrigin(o.origin as string)) {
    fail("entry_field", "checkpoint.origin must be a key name (1 to 255 bytes, no spaces, no +)");
  }
  return o as Entry;
}

/** The members every entry has (§2.3). */
const COMMON_FIELDS = new Set(["seq", "ts", "type", "prev", "hash"]);

/** ENTRY_TYPES as parseEntry walks it: each type's fields, their kinds taken apart once. */
const FIELD_SPECS: Record<string, { key: string; base: string; optional: boolean; positive: boolean }[]> = Object.fromEntries(
  Object.entries(ENTRY_TYPES).map(([type, spec]) => [type, Object.entries(spec).map(([key, kind]) => ({ key, base: kind.replace("?", ""), optional: kind.endsWith("?"), positive: POSITIVE.has(key) }))]),
);

/**
 * Whether `text`, which parsed to `e` (parseEntry), is `line(e)` without its
 * LF (§3.5 rule 5), without building line(e): its members are in canonical
 * order with `hash` last, and it is exactly how JSON.stringify writes them
 * in that order — which, over the value domain parseEntry admits, is
 * canonicalLine(canonical(e), e.hash).
 */
export function isCanonicalLine(e: Entry, text: string): boolean {
  const keys = Object.keys(e);
  const last = keys.length - 1;
  if (keys[last] !== "hash") return false;
  for (let i = 1; i < last; i++) if (keys[i - 1]! >= keys[i]!) return false;
  return JSON.stringify(e) === text;
}

/** The bytes a canonical line (without its LF) has after canonical(e) minus its "}": `,"hash":"` + 64 hex digits + `"}`. */
const HASH_MEMBER_BYTES = 75;
let lineHashInput = new Uint8Array(4096);

/**
 * The hash (§3.4) of the entry whose line, in canonical form (isCanonicalLine)
 * and without its LF, is `line`: canonical(e) is the line up to its `hash`
 * member, closed with "}", so it is hashed from the bytes as read, without
 * serializing the entry again.
 */
export function canonicalLineHash(line: Uint8Array): string {
  const canon = line.length - HASH_MEMBER_BYTES;
  const n = ENTRY_HASH_PREFIX.length + canon + 1;
  if (lineHashInput.length < n) lineHashInput = new Uint8Array(n * 2);
  lineHashInput.set(ENTRY_HASH_PREFIX, 0);
  lineHashInput.set(line.subarray(0, canon), ENTRY_HASH_PREFIX.length);
  lineHashInput[n - 1] = 0x7d; // "}"
  return sha256Hex(lineHashInput.subarray(0, n));
}

/** What a checkpoint's host-key signature covers: the seq and hash of the entry it seals. */
export function checkpointInput(headSeq: number, head: string): Uint8Array {
  return concat(labels.TRANSCRIPT_CHECKPOINT, new Uint8Array([0]), u64be(BigInt(headSeq)), fromHex(head));
}

export function signCheckpoint(hostSecret: Uint8Array, headSeq: number, head: string): string {
  return toBase64(ed25519Sign(hostSecret, checkpointInput(headSeq, head)));
}

export function verifyCheckpoint(hostPublic: Uint8Array, e: Entry): boolean {
  if (e.type !== "checkpoint") return false;
  return ed25519Verify(hostPublic, checkpointInput(e.head_seq as number, e.head as string), fromBase64(e.sig as string));
}

/** A log origin (§4.1): a signed-note key name of at most 255 bytes. */
export function isOrigin(s: string): boolean {
  return isKeyName(s) && utf8(s).length <= 255;
}

/** The origin of a server that names none (serve --log-origin): "securechat/" and 16 hex digits of SHA-256 of its host key. */
export function defaultOrigin(hostPublic: Uint8Array): string {
  return `securechat/${toHex(sha256(hostPublic)).slice(0, 16)}`;
}

/**
 * The members a checkpoint adds for its tree (§4.1): the origin, the root of
 * the tree of the `headSeq` lines before it, and the host key's signed-note
 * signature (key ID ‖ signature) over the checkpoint text.
 */
export function treeCheckpointFields(sign: (m: Uint8Array) => Uint8Array, hostPublic: Uint8Array, origin: string, headSeq: number, root: Uint8Array): EntryFields {
  const text = checkpointText({ origin, size: headSeq, root });
  const line = signatureLine(text, origin, hostPublic, sign);
  return { origin, root: toBase64(root), note_sig: line.slice(line.lastIndexOf(" ") + 1, -1) };
}

/** The checkpoint as a signed note (c2sp.org/tlog-checkpoint), for a checkpoint entry with a tree root. */
export function checkpointNote(e: Entry): string | null {
  if (e.type !== "checkpoint" || typeof e.root !== "string") return null;
  const text = checkpointText({ origin: e.origin as string, size: e.head_seq as number, root: fromBase64(e.root, 32) });
  return formatNote(text, [`\u2014 ${e.origin} ${e.note_sig}\n`]);
}

/** True if the entry's note signature is the host key's over its checkpoint text. */
export function verifyCheckpointNote(hostPublic: Uint8Array, e: Entry): boolean {
  const note = checkpointNote(e);
  if (note === null) return false;
  try {
    openNote(note, { name: e.origin as string, keyId: noteKeyId(e.origin as string, hostPublic), publicKey: hostPublic });
    return true;
  } catch {
    return false;
  }
}

/**
 * Sealing (age-style, docs/TRANSCRIPT.md §5): each transcript file gets a
 * fresh 32-byte file key, wrapped to the auditor's X25519 public key with an
 * ephemeral key (X25519 + HKDF-SHA256 + XChaCha20-Poly1305) in a `seal_key`
 * entry; message bodies are XChaCha20-Poly1305 under the file key with the
 * entry's seq as associated data, so a sealed body cannot be moved to
 * another entry. The hash covers the sealed form: the chain verifies
 * without the auditor's private key.
 */
export function wrapFileKey(recipient: Uint8Array): { fileKey: Uint8Array; fields: EntryFields } {
  const fileKey = randomBytes(32);
  const eph = x25519Generate();
  const shared = x25519(eph.secretKey, recipient);
  const wrapKey = hkdf(shared, concat(eph.publicKey, recipient), labels.TRANSCRIPT_SEAL_KEY, 32);
  const wrapped = xchachaSealRandom(wrapKey, fileKey, new Uint8Array(0));
  wipe(eph.secretKey, shared, wrapKey);
  return { fileKey, fields: { recipient: toBase64(recipient), epk: toBase64(eph.publicKey), wrapped: toBase64(wrapped) } };
}

export function unwrapFileKey(identity: Uint8Array, e: Entry): Uint8Array {
  const epk = fromBase64(e.epk as string, 32);
  const recipient = fromBase64(e.recipient as string, 32);
  const shared = x25519(identity, epk);
  const wrapKey = hkdf(shared, concat(epk, recipient), labels.TRANSCRIPT_SEAL_KEY, 32);
  try {
    const fileKey = xchachaOpenRandom(wrapKey, fromBase64(e.wrapped as string), new Uint8Array(0));
    if (fileKey.length !== 32) fail("seal_key_length", `seal_key at seq ${e.seq} wraps ${fileKey.length} bytes, not a 32-byte file key`);
    return fileKey;
  } finally {
    wipe(shared, wrapKey);
  }
}

export function sealBody(fileKey: Uint8Array, seq: number, text: string): string {
  return toBase64(xchachaSealRandom(fileKey, utf8(text), u64be(BigInt(seq))));
}

export function openBody(fileKey: Uint8Array, seq: number, sealed: string): string {
  return fromUtf8(xchachaOpenRandom(fileKey, fromBase64(sealed), u64be(BigInt(seq))));
}
