/**
 * AES-256-GCM (NIST SP 800-38D) for records on the wire, through the
 * runtime's native `node:crypto` (hardware AES, constant time, 40× faster
 * than a pure-JS GCM per DESIGN.md). Only the sizes securechat uses are
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
  const out = new Uint8Array(head.length + tail.length);
  out.set(head, 0);
  out.set(tail, head.length);
  return out;
}
