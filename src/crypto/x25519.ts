/**
 * X25519 (RFC 7748) via @noble/curves. The shared secret is rejected when it
 * is all zero: RFC 7748 §6.1 "implementations MAY check ... that the
 * resulting shared secret is not all zero" — we MUST (PROTOCOL.md §4), since a
 * low-order public key would otherwise force a known key.
 */
import { x25519 as noble } from "@noble/curves/ed25519.js";
import { SecureChatError } from "../errors.ts";
import { isAllZero, randomBytes } from "./util.ts";

export const X25519_KEY_LENGTH = 32;

export interface X25519KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function x25519Generate(secretKey: Uint8Array = randomBytes(X25519_KEY_LENGTH)): X25519KeyPair {
  checkLength("secret key", secretKey);
  return { secretKey, publicKey: noble.getPublicKey(secretKey) };
}

/** Scalar multiplication; throws `x25519_low_order` on an all-zero output. */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  checkLength("secret key", secretKey);
  checkLength("public key", publicKey);
  let shared: Uint8Array;
  try {
    shared = noble.scalarMult(secretKey, publicKey);
  } catch (cause) {
    // noble refuses the all-zero result itself; report it the same way.
    throw new SecureChatError("x25519_low_order", "x25519: shared secret is all zero (low-order public key)", { cause });
  }
  if (isAllZero(shared)) {
    throw new SecureChatError("x25519_low_order", "x25519: shared secret is all zero (low-order public key)");
  }
  return shared;
}

function checkLength(what: string, b: Uint8Array): void {
  if (b.length !== X25519_KEY_LENGTH) {
    throw new SecureChatError("x25519_length", `x25519: ${what} is ${b.length} bytes, expected ${X25519_KEY_LENGTH}`);
  }
}
