/**
 * Ed25519 (RFC 8032) via @noble/curves, verified strictly: `zip215: false`
 * gives RFC 8032 §5.1.7 verification — S MUST be < L (no malleable
 * signatures) and R and A MUST be canonical encodings.
 */
import { ed25519 as noble } from "@noble/curves/ed25519.js";
import { SecureChatError } from "../errors.ts";
import { randomBytes } from "./util.ts";

export const ED25519_SECRET_LENGTH = 32;
export const ED25519_PUBLIC_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;

export interface Ed25519KeyPair {
  /** The 32-byte RFC 8032 seed. */
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function ed25519Generate(seed: Uint8Array = randomBytes(ED25519_SECRET_LENGTH)): Ed25519KeyPair {
  if (seed.length !== ED25519_SECRET_LENGTH) {
    throw new SecureChatError("ed25519_length", `ed25519: secret key is ${seed.length} bytes, expected 32`);
  }
  return { secretKey: seed, publicKey: noble.getPublicKey(seed) };
}

export function ed25519Sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  if (secretKey.length !== ED25519_SECRET_LENGTH) {
    throw new SecureChatError("ed25519_length", `ed25519: secret key is ${secretKey.length} bytes, expected 32`);
  }
  return noble.sign(message, secretKey);
}

/** Returns false for any invalid signature, key or length; never throws. */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_PUBLIC_LENGTH || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  try {
    return noble.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
