/**
 * Signed notes (c2sp.org/signed-note) with Ed25519 keys, and the checkpoint
 * body they carry (c2sp.org/tlog-checkpoint): the formats log operators,
 * witnesses and monitors already read, so a securechat checkpoint can be
 * checked with standard tooling (Go's golang.org/x/mod/sumdb/note among
 * them).
 *
 * A note is UTF-8 text ending in a newline, a blank line, then one or more
 * signature lines `— <key name> <base64(key ID ‖ signature)>`. An Ed25519
 * signer's key ID is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖
 * public key); its verifier key is `<name>+<hex key ID>+<base64(0x01 ‖
 * public key)>`.
 */
import { concat, fromBase64, fromHex, toBase64, toHex, utf8 } from "../bytes.ts";
import { ed25519Verify, sha256 } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";

/** The signature type byte of plain Ed25519 signatures in notes. */
export const ED25519_TYPE = 0x01;

/** At most this many signature lines are read (Go's note package stops there too). */
export const NOTE_SIGNATURES_MAX = 100;

/** A note longer than this is refused before it is parsed. */
export const NOTE_BYTES_MAX = 1 << 20;

const DASH = "\u2014 ";

export interface NoteVerifier {
  name: string;
  keyId: Uint8Array;
  publicKey: Uint8Array;
}

function bad(message: string): never {
  throw new SecureChatError("note_invalid", `signed note: ${message}`);
}

/** A key name: non-empty, no Unicode white space, no "+". */
export function isKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !/[\u0000-\u001f]/.test(name);
}

/** The key ID of an Ed25519 key under `name` (4 bytes). */
export function noteKeyId(name: string, publicKey: Uint8Array, type = ED25519_TYPE): Uint8Array {
  return sha256(concat(utf8(name), new Uint8Array([0x0a, type]), publicKey)).subarray(0, 4);
}

/**
 * The verifier key string of an Ed25519 public key: `name+hex(keyID)+base64(type ‖ key)`,
 * `type` 0x01 for a note signer, 0x04 for a cosigner (cosignature.ts).
 */
export function formatVerifierKey(name: string, publicKey: Uint8Array, type = ED25519_TYPE): string {
  if (!isKeyName(name)) bad(`"${name}" is not a key name (no spaces, no "+")`);
  return `${name}+${toHex(noteKeyId(name, publicKey, type))}+${toBase64(concat(new Uint8Array([type]), publicKey))}`;
}

/** Parses a verifier key string; only Ed25519 keys of signature type `type` are accepted, and the key ID must match. */
export function parseVerifierKey(vkey: string, type = ED25519_TYPE): NoteVerifier {
  // The base64 key may itself contain "+": split at the first two only.
  const s = vkey.trim();
  const i = s.indexOf("+");
  const j = s.indexOf("+", i + 1);
  if (i < 0 || j < 0) bad("a verifier key is NAME+KEYID+KEY");
  const [name, id, key] = [s.slice(0, i), s.slice(i + 1, j), s.slice(j + 1)];
  if (!isKeyName(name)) bad(`"${name}" is not a key name`);
  if (!/^[0-9a-f]{8}$/.test(id)) bad("the key ID of a verifier key is 8 lowercase hex digits");
  let raw: Uint8Array;
  try {
    raw = fromBase64(key);
  } catch {
    bad("the key of a verifier key is not base64");
  }
  const what = type === ED25519_TYPE ? "an Ed25519 key" : "an Ed25519 cosignature key";
  if (raw.length !== 33 || raw[0] !== type) bad(`the verifier key is not ${what} (type 0x0${type.toString(16)}, 32 bytes)`);
  const publicKey = raw.subarray(1);
  const keyId = fromHex(id);
  if (toHex(noteKeyId(name, publicKey, type)) !== id) bad("the verifier key's ID does not match its name and key");
  return { name, keyId, publicKey };
}

function checkText(text: string): void {
  if (!text.endsWith("\n")) bad("the text must end with a newline");
  if (text.includes("\n\n")) bad("the text must not contain a blank line");
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) bad("the text must not contain control characters");
}

/** One signature line for `text`, signed by `sign` (Ed25519 over the text's bytes). */
export function signatureLine(text: string, name: string, publicKey: Uint8Array, sign: (m: Uint8Array) => Uint8Array): string {
  checkText(text);
  if (!isKeyName(name)) bad(`"${name}" is not a key name`);
  return `${DASH}${name} ${toBase64(concat(noteKeyId(name, publicKey), sign(utf8(text))))}\n`;
}

/** The signed note: the text, a blank line, and the signature lines. */
export function formatNote(text: string, signatureLines: readonly string[]): string {
  checkText(text);
  if (signatureLines.length === 0) bad("a note needs a signature");
  return `${text}\n${signatureLines.join("")}`;
}

export interface NoteSignature {
  name: string;
  keyId: Uint8Array;
  /** The signature bytes after the key ID. */
  signature: Uint8Array;
  line: string;
}

export interface ParsedNote {
  text: string;
  signatures: NoteSignature[];
}

/** Splits a note into its text and signature lines, checking the syntax only. */
export function parseNote(note: string): ParsedNote {
  if (utf8(note).length > NOTE_BYTES_MAX) bad("too long");
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) bad("control characters");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) bad("no blank line before the signatures");
  const text = note.slice(0, split + 1);
  const rest = note.slice(split + 2);
  if (!rest.endsWith("\n")) bad("the last signature line must end with a newline");
  const lines = rest.slice(0, -1).split("\n");
  if (lines.length > NOTE_SIGNATURES_MAX) bad(`more than ${NOTE_SIGNATURES_MAX} signatures`);
  const signatures = lines.map((line) => {
    if (!line.startsWith(DASH)) bad("a signature line starts with an em dash and a space");
    const body = line.slice(DASH.length);
    const sp = body.indexOf(" ");
    if (sp <= 0) bad("a signature line is NAME SIGNATURE");
    const name = body.slice(0, sp);
    if (!isKeyName(name)) bad(`"${name}" is not a key name`);
    let raw: Uint8Array;
    try {
      raw = fromBase64(body.slice(sp + 1));
    } catch {
      bad("a signature is not base64");
    }
    if (raw.length < 5) bad("a signature is too short");
    return { name, keyId: raw.subarray(0, 4), signature: raw.subarray(4), line: `${line}\n` };
  });
  return { text, signatures };
}

export function sameId(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === 4 && b.length === 4 && a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/**
 * Opens a note: returns its text if `verifier` signed it. Signatures of
 * other keys are ignored; the first signature line of this key (same name
 * and key ID) decides: if it does not verify, the whole note is invalid, as
 * the spec says. Later lines of the same key are dropped unchecked, as Go's
 * note.Open drops them — so a note costs one signature check per key
 * however often a line is repeated — and are not in the signatures returned.
 */
export function openNote(note: string, verifier: NoteVerifier): ParsedNote {
  const parsed = parseNote(note);
  const isMine = (s: NoteSignature) => s.name === verifier.name && sameId(s.keyId, verifier.keyId);
  const first = parsed.signatures.find(isMine);
  if (!first) throw new SecureChatError("note_unsigned", `signed note: not signed by ${verifier.name}`);
  if (!ed25519Verify(verifier.publicKey, utf8(parsed.text), first.signature)) {
    throw new SecureChatError("note_bad_signature", `signed note: the signature of ${verifier.name} does not verify`);
  }
  return { text: parsed.text, signatures: parsed.signatures.filter((s) => s === first || !isMine(s)) };
}

/** A checkpoint's body (c2sp.org/tlog-checkpoint). */
export interface Checkpoint {
  origin: string;
  size: number;
  root: Uint8Array;
  /** Extension lines after the root, without their newlines. */
  extensions: string[];
}

/** The checkpoint's text: origin, decimal size, base64 root, one line each. */
export function checkpointText(c: Omit<Checkpoint, "extensions"> & { extensions?: string[] }): string {
  if (c.origin.length === 0 || c.origin.includes("\n")) bad("a checkpoint's origin is one non-empty line");
  if (!Number.isSafeInteger(c.size) || c.size < 0) bad("a checkpoint's size is a count");
  if (c.root.length !== 32) bad("a checkpoint's root is a SHA-256 hash");
  return `${c.origin}\n${c.size}\n${toBase64(c.root)}\n${(c.extensions ?? []).map((e) => `${e}\n`).join("")}`;
}

/** Parses a checkpoint's text (the note's text, once its signature is checked). */
export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split("\n");
  if (lines.length < 4 || lines[lines.length - 1] !== "") bad("a checkpoint is at least three lines, each ending in a newline");
  const [origin, size, root] = lines as [string, string, string];
  if (origin.length === 0) bad("a checkpoint's first line is its origin");
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(size) || !Number.isSafeInteger(Number(size))) bad("a checkpoint's second line is its size in decimal");
  let hash: Uint8Array;
  try {
    hash = fromBase64(root, 32);
  } catch {
    bad("a checkpoint's third line is its root hash in base64");
  }
  return { origin, size: Number(size), root: hash, extensions: lines.slice(3, -1) };
}

/** Opens a signed checkpoint note with `verifier` and parses its body. */
export function openCheckpoint(note: string, verifier: NoteVerifier): Checkpoint & { note: ParsedNote } {
  const parsed = openNote(note, verifier);
  return { ...parseCheckpoint(parsed.text), note: parsed };
}
