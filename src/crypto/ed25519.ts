/**
 * Ed25519 (RFC 8032) through the runtime's native `node:crypto` (BoringSSL
 * in Bun): constant-time signing, and 10× faster than the pure-JS
 * @noble/curves this replaced (docs/PERFORMANCE.md).
 *
 * Verification is strict (PROTOCOL.md §1.2): RFC 8032 §5.1.7 with S < L
 * (BoringSSL, so signatures are not malleable; R is compared as bytes, so
 * it must be canonical), and a public key of small order or in a
 * non-canonical encoding is refused before BoringSSL sees it. BoringSSL alone accepts the "universal" signature (R = identity,
 * S = 0) under such a key for every message, so a key of small order
 * would bind nothing; @noble/curves with `zip215: false`, which this
 * replaced, refused them too. test/crypto cross-checks every answer against
 * noble on random, mutated and small-order inputs, besides Wycheproof.
 */
import { type KeyObject, createPublicKey, sign, verify } from "node:crypto";
import { SecureChatError } from "../errors.ts";
import { ED25519_DER, privateKeyObject, publicKeyObject, rawPublicKey } from "./der.ts";
import { randomBytes } from "./util.ts";

export const ED25519_SECRET_LENGTH = 32;
export const ED25519_PUBLIC_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;

export interface Ed25519KeyPair {
  /** The 32-byte RFC 8032 seed. */
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/**
 * Every encoding of a point of order 1, 2, 4 or 8, compared with the sign
 * bit of x (bit 255) ignored — the blocklist of libsodium's
 * `ge25519_has_small_order`: y = 0, 1, the two y of order 8, p − 1, and the
 * non-canonical p and p + 1 (y ≥ p can only encode y < 19).
 */
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => Uint8Array.from(h.match(/../g)!, (b) => Number.parseInt(b, 16)));

/**
 * True if `key` is a non-canonical encoding: y ≥ p = 2^255 − 19 (bit 255,
 * the sign of x, is not part of y). Such a key names the same point as
 * another byte string, and RFC 8032 §5.1.3 says to reject it.
 */
export function ed25519IsNonCanonical(key: Uint8Array): boolean {
  if (key.length !== ED25519_PUBLIC_LENGTH) return false;
  if ((key[31]! & 0x7f) !== 0x7f || key[0]! < 0xed) return false;
  for (let i = 1; i < 31; i++) if (key[i] !== 0xff) return false;
  return true;
}

/** True if `key` encodes a point of small order (public data: no need for constant time). */
export function ed25519IsSmallOrder(key: Uint8Array): boolean {
  if (key.length !== ED25519_PUBLIC_LENGTH) return false;
  return SMALL_ORDER.some((bad) => {
    for (let i = 0; i < 31; i++) if (key[i] !== bad[i]) return false;
    return (key[31]! & 0x7f) === bad[31];
  });
}

function checkSeed(seed: Uint8Array): void {
  if (seed.length !== ED25519_SECRET_LENGTH) {
    throw new SecureChatError("ed25519_length", `ed25519: secret key is ${seed.length} bytes, expected 32`);
  }
}

export function ed25519Generate(seed: Uint8Array = randomBytes(ED25519_SECRET_LENGTH)): Ed25519KeyPair {
  checkSeed(seed);
  return { secretKey: seed, publicKey: rawPublicKey(createPublicKey(privateKeyObject(ED25519_DER, seed))) };
}

export function ed25519Sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  checkSeed(secretKey);
  const sig = sign(null, message, privateKeyObject(ED25519_DER, secretKey));
  return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
}

/**
 * Signs many messages with one key, imported once: importing a seed derives
 * its public key, which costs more than the signature (bun run bench:micro).
 * For a key held for the process's life (the host key); the key object
 * keeps its own copy of the secret for as long as the function is kept.
 */
export function ed25519Signer(secretKey: Uint8Array): (message: Uint8Array) => Uint8Array {
  checkSeed(secretKey);
  const key = privateKeyObject(ED25519_DER, secretKey);
  return (message) => {
    const sig = sign(null, message, key);
    return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
  };
}

/** Returns false for any invalid signature, key or length; never throws. */
/**
 * The last key verified with, checked and imported: a transcript's
 * checkpoints are all verified under one host key, and importing it took
 * most of each verify. A public key, so kept as is.
 */
let lastVerifyKey: { raw: Uint8Array; key: KeyObject | null } | null = null;

function verifyKey(publicKey: Uint8Array): KeyObject | null {
  const last = lastVerifyKey;
  if (last && last.raw.length === publicKey.length && last.raw.every((b, i) => b === publicKey[i])) return last.key;
  const key = ed25519IsSmallOrder(publicKey) || ed25519IsNonCanonical(publicKey) ? null : publicKeyObject(ED25519_DER, publicKey);
  lastVerifyKey = { raw: new Uint8Array(publicKey), key };
  return key;
}

export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_PUBLIC_LENGTH || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  try {
    const key = verifyKey(publicKey);
    if (key === null) return false;
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}
