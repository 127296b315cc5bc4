/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) via @noble/ciphers, for
 * secrets at rest: its 192-bit nonces may be chosen at random for the life of
 * a long-lived key, which AES-GCM's 96-bit nonces may not.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { SecureChatError } from "../errors.ts";
import { randomBytes } from "./util.ts";

export const XCHACHA_KEY_LENGTH = 32;
export const XCHACHA_NONCE_LENGTH = 24;
export const XCHACHA_TAG_LENGTH = 16;

function checkSizes(key: Uint8Array, nonce: Uint8Array): void {
  if (key.length !== XCHACHA_KEY_LENGTH) {
    throw new SecureChatError("aead_key_length", `xchacha20-poly1305: key is ${key.length} bytes, expected 32`);
  }
  if (nonce.length !== XCHACHA_NONCE_LENGTH) {
    throw new SecureChatError("aead_nonce_length", `xchacha20-poly1305: nonce is ${nonce.length} bytes, expected 24`);
  }
}

/** Returns ciphertext ‖ tag. */
export function xchachaSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  checkSizes(key, nonce);
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/** Opens ciphertext ‖ tag; throws `aead_auth_failed` if it does not authenticate. */
export function xchachaOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  checkSizes(key, nonce);
  if (sealed.length < XCHACHA_TAG_LENGTH) {
    throw new SecureChatError("aead_auth_failed", "xchacha20-poly1305: ciphertext shorter than the tag");
  }
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
  } catch (cause) {
    throw new SecureChatError("aead_auth_failed", "xchacha20-poly1305: invalid tag", { cause });
  }
}

/** Seals under a fresh random nonce; returns nonce ‖ ciphertext ‖ tag. */
export function xchachaSealRandom(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = randomBytes(XCHACHA_NONCE_LENGTH);
  const sealed = xchachaSeal(key, nonce, plaintext, aad);
  const out = new Uint8Array(nonce.length + sealed.length);
  out.set(nonce, 0);
  out.set(sealed, nonce.length);
  return out;
}

export function xchachaOpenRandom(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Uint8Array {
  if (box.length < XCHACHA_NONCE_LENGTH + XCHACHA_TAG_LENGTH) {
    throw new SecureChatError("aead_auth_failed", "xchacha20-poly1305: sealed box too short");
  }
  return xchachaOpen(key, box.subarray(0, XCHACHA_NONCE_LENGTH), box.subarray(XCHACHA_NONCE_LENGTH), aad);
}
