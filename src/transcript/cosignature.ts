/**
 * Checkpoint cosignatures (c2sp.org/tlog-cosignature, the Ed25519
 * `cosignature/v1` type): a witness's timestamped statement that a
 * checkpoint is the largest consistent tree it has seen of that log
 * (docs/TRANSCRIPT.md §4.5).
 *
 * A cosignature is a signed-note signature line `— <witness name>
 * base64(key ID ‖ u64be(timestamp) ‖ Ed25519 signature)` whose key ID is
 * the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key), and whose
 * signature is over `cosignature/v1\ntime <timestamp>\n` followed by the
 * checkpoint's text. A cosigner's verifier key is `<name>+<hex key
 * ID>+<base64(0x04 ‖ public key)>`.
 */
import { concat, toBase64, u64be, utf8 } from "../bytes.ts";
import { ed25519Verify } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { type NoteSignature, type NoteVerifier, formatVerifierKey, isKeyName, noteKeyId, parseNote, parseVerifierKey, sameId } from "./note.ts";

/** The signature type byte of Ed25519 checkpoint cosignatures. */
export const COSIGNATURE_TYPE = 0x04;

/** key ID (4) ‖ timestamp (8) ‖ Ed25519 signature (64). */
export const COSIGNATURE_BYTES = 76;

/** The largest timestamp the format allows: 2^63 − 1. */
const TIMESTAMP_MAX = (1n << 63n) - 1n;

/** A cosigner's verifier key string: `name+hex(keyID)+base64(0x04 ‖ key)`. */
export function formatCosignerKey(name: string, publicKey: Uint8Array): string {
  return formatVerifierKey(name, publicKey, COSIGNATURE_TYPE);
}

/** Parses a cosigner's verifier key (type 0x04 only; the key ID must match). */
export function parseCosignerKey(vkey: string): NoteVerifier {
  return parseVerifierKey(vkey, COSIGNATURE_TYPE);
}

/** The bytes a cosigner signs: `cosignature/v1\ntime T\n` ‖ the checkpoint's text. */
export function cosignedMessage(text: string, timestamp: bigint): Uint8Array {
  return utf8(`cosignature/v1\ntime ${timestamp}\n${text}`);
}

function checkTimestamp(timestamp: bigint): void {
  if (timestamp <= 0n || timestamp > TIMESTAMP_MAX) throw new SecureChatError("cosignature_invalid", "cosignature: the timestamp is not a time after 1970 (1 … 2^63 − 1)");
}

/** The cosignature line of `text` (a checkpoint's text, with its final LF) at `timestamp` (seconds). */
export function cosignatureLine(text: string, name: string, publicKey: Uint8Array, sign: (m: Uint8Array) => Uint8Array, timestamp: bigint): string {
  if (!isKeyName(name)) throw new SecureChatError("cosignature_invalid", `cosignature: "${name}" is not a key name`);
  checkTimestamp(timestamp);
  const sig = sign(cosignedMessage(text, timestamp));
  return `\u2014 ${name} ${toBase64(concat(noteKeyId(name, publicKey, COSIGNATURE_TYPE), u64be(timestamp), sig))}\n`;
}

/**
 * The timestamp of `sig` if it is `verifier`'s valid cosignature of `text`;
 * null if it is another key's (other name or key ID). Throws
 * `cosignature_bad` if it is this key's and does not verify: per
 * c2sp.org/signed-note such a note is malformed, not merely unsigned.
 */
export function verifyCosignature(text: string, sig: Pick<NoteSignature, "name" | "keyId" | "signature">, verifier: NoteVerifier): bigint | null {
  if (sig.name !== verifier.name || !sameId(sig.keyId, verifier.keyId)) return null;
  const bad = (): never => {
    throw new SecureChatError("cosignature_bad", `cosignature: the cosignature of ${verifier.name} does not verify`);
  };
  if (sig.signature.length !== COSIGNATURE_BYTES - 4) bad();
  const timestamp = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0, false);
  if (timestamp <= 0n || timestamp > TIMESTAMP_MAX) bad();
  if (!ed25519Verify(verifier.publicKey, cosignedMessage(text, timestamp), sig.signature.subarray(8))) bad();
  return timestamp;
}

export interface Cosigned {
  /** The witness's key name. */
  name: string;
  /** When it cosigned (POSIX seconds). */
  timestamp: bigint;
  /** The signature line, verbatim (with its LF). */
  line: string;
}

/**
 * The valid cosignatures in `note` (a signed checkpoint with any signature
 * lines) by the given witnesses, one per witness at most. Lines of other
 * keys are ignored; a line of a given witness that does not verify throws.
 */
export function noteCosignatures(note: string, witnesses: readonly NoteVerifier[]): Cosigned[] {
  const parsed = parseNote(note);
  const found = new Map<string, Cosigned>();
  for (const w of witnesses) {
    for (const s of parsed.signatures) {
      const timestamp = verifyCosignature(parsed.text, s, w);
      if (timestamp !== null && !found.has(formatCosignerKey(w.name, w.publicKey))) found.set(formatCosignerKey(w.name, w.publicKey), { name: w.name, timestamp, line: s.line });
    }
  }
  return [...found.values()];
}
