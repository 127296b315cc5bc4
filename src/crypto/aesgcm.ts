/**
 * AES-256-GCM (NIST SP 800-38D) for records on the wire, through the
 * runtime's native `node:crypto` (hardware AES, constant time, 40× faster
 * than a pure-JS GCM, docs/DESIGN.md §9). Only the sizes securechat uses are
 * accepted: 256-bit key, 96-bit nonce, 128-bit tag.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { SecureChatError } from "../errors.ts";

export const AES_GCM_KEY_LENGTH = 32;
export const AES_GCM_NONCE_LENGTH = 12;
export const AES_GCM_TAG_LENGTH = 16;

function checkSizes(key: Uint8Array, nonce: Uint8Array): void {
  if (key.length !== AES_GCM_KEY_LENGTH) {
    throw new SecureChatError("aead_key_length", `aes-gcm: key is ${key.length} bytes, expected 32`);
  }
  if (nonce.length !== AES_GCM_NONCE_LENGTH) {
    throw new SecureChatError("aead_nonce_length", `aes-gcm: nonce is ${nonce.length} bytes, expected 12`);
  }
}

/** Returns ciphertext ‖ tag. */
export function aesGcmSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  checkSizes(key, nonce);
  const c = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: AES_GCM_TAG_LENGTH });
  c.setAAD(aad);
  const head = c.update(plaintext);
  const tail = c.final();
  const tag = c.getAuthTag();
  const out = new Uint8Array(head.length + tail.length + AES_GCM_TAG_LENGTH);
  out.set(head, 0);
  out.set(tail, head.length);
  out.set(tag, head.length + tail.length);
  return out;
}

/**
 * Seals a record straight into its frame: writes `header ‖ ciphertext ‖ tag`
 * into `out` at `offset`, with `header` as the AAD, and returns the number
 * of bytes written. The relay seals the same plaintext for every member of a
 * room, so the bytes it seals per second are what it spends its time on
 * (docs/PERFORMANCE.md): sealing into a reused buffer saves an allocation
 * and its page faults per record.
 */
export function aesGcmSealFrame(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, header: Uint8Array, out: Uint8Array, offset = 0): number {
  checkSizes(key, nonce);
  const total = header.length + plaintext.length + AES_GCM_TAG_LENGTH;
  if (!(offset >= 0 && offset + total <= out.length)) {
    throw new SecureChatError("aead_output_length", `aes-gcm: ${total} bytes do not fit at offset ${offset} of a ${out.length}-byte buffer`);
  }
  const c = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: AES_GCM_TAG_LENGTH });
  c.setAAD(header);
  const head = c.update(plaintext);
  const tail = c.final();
  const tag = c.getAuthTag();
  let at = offset;
  out.set(header, at);
  out.set(head, (at += header.length));
  out.set(tail, (at += head.length));
  out.set(tag, at + tail.length);
  return total;
}

/** Opens ciphertext ‖ tag; throws `aead_auth_failed` if it does not authenticate. */
export function aesGcmOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  checkSizes(key, nonce);
  if (sealed.length < AES_GCM_TAG_LENGTH) {
    throw new SecureChatError("aead_auth_failed", "aes-gcm: ciphertext shorter than the tag");
  }
  const ctLen = sealed.length - AES_GCM_TAG_LENGTH;
  const d = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: AES_GCM_TAG_LENGTH });
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(ctLen));
  const head = d.update(sealed.subarray(0, ctLen));
  let tail: Buffer;
  try {
    tail = d.final();
  } catch (cause) {
    head.fill(0);
    throw new SecureChatError("aead_auth_failed", "aes-gcm: invalid tag", { cause });
  }
  if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.byteLength);
  // GCM never holds bytes back for final(), but if it did, the pieces are wiped once joined.
  const out = new Uint8Array(head.length + tail.length);
  out.set(head, 0);
  out.set(tail, head.length);
  head.fill(0);
  tail.fill(0);
  return out;
}
