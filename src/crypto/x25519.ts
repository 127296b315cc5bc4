/**
 * X25519 (RFC 7748) through the runtime's native `node:crypto` (BoringSSL in
 * Bun): constant-time field arithmetic, and 10× faster than the pure-JS
 * @noble/curves this replaced (docs/PERFORMANCE.md; noble stays in the tests
 * as an independent cross-check). Keys cross the API as raw 32-byte strings,
 * wrapped per call as RFC 8410 DER (der.ts).
 *
 * The shared secret is rejected when it is all zero: RFC 7748 §6.1
 * "implementations MAY check ... that the resulting shared secret is not all
 * zero" — we MUST (PROTOCOL.md §4), since a low-order public key would
 * otherwise force a known key.
 */
import { createPublicKey, diffieHellman } from "node:crypto";
import { SecureChatError } from "../errors.ts";
import { X25519_DER, privateKeyObject, publicKeyObject, rawPublicKey } from "./der.ts";
import { isAllZero, randomBytes } from "./util.ts";

export const X25519_KEY_LENGTH = 32;

export interface X25519KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function x25519Generate(secretKey: Uint8Array = randomBytes(X25519_KEY_LENGTH)): X25519KeyPair {
  checkLength("secret key", secretKey);
  return { secretKey, publicKey: rawPublicKey(createPublicKey(privateKeyObject(X25519_DER, secretKey))) };
}

/** Scalar multiplication; throws `x25519_low_order` on an all-zero output. */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  checkLength("secret key", secretKey);
  checkLength("public key", publicKey);
  let shared: Uint8Array;
  try {
    const out = diffieHellman({ privateKey: privateKeyObject(X25519_DER, secretKey), publicKey: publicKeyObject(X25519_DER, publicKey) });
    shared = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (cause) {
    // BoringSSL refuses the all-zero result itself (X25519() returns 0); any
    // 32-byte public key is otherwise a valid input, so this is that case.
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
