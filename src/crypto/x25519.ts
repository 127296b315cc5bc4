/**
 * X25519 (RFC 7748) through the runtime's native `node:crypto` (BoringSSL in
 * Bun): constant-time field arithmetic, and 10× faster than the pure-JS
 * @noble/curves this replaced (docs/PERFORMANCE.md; noble stays in the tests
 * as an independent cross-check). Keys cross the API as raw 32-byte strings;
 * each call wraps them in the fixed DER prefixes of RFC 8410 and wipes the
 * wrapped secret once the runtime has its own copy.
 *
 * The shared secret is rejected when it is all zero: RFC 7748 §6.1
 * "implementations MAY check ... that the resulting shared secret is not all
 * zero" — we MUST (PROTOCOL.md §4), since a low-order public key would
 * otherwise force a known key.
 */
import { type KeyObject, createPrivateKey, createPublicKey, diffieHellman } from "node:crypto";
import { SecureChatError } from "../errors.ts";
import { isAllZero, randomBytes, wipe } from "./util.ts";

export const X25519_KEY_LENGTH = 32;

export interface X25519KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/** RFC 8410 §7 / §4: PKCS#8 and SubjectPublicKeyInfo for id-X25519 (1.3.101.110), key bytes last. */
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00]);

function privateKey(secretKey: Uint8Array): KeyObject {
  const der = new Uint8Array(PKCS8_PREFIX.length + X25519_KEY_LENGTH);
  der.set(PKCS8_PREFIX);
  der.set(secretKey, PKCS8_PREFIX.length);
  try {
    return createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: "der", type: "pkcs8" });
  } finally {
    wipe(der);
  }
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const der = new Uint8Array(SPKI_PREFIX.length + X25519_KEY_LENGTH);
  der.set(SPKI_PREFIX);
  der.set(publicKey, SPKI_PREFIX.length);
  return createPublicKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: "der", type: "spki" });
}

/** The raw public key of a KeyObject (the last 32 bytes of its SPKI). */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const spki = key.export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

export function x25519Generate(secretKey: Uint8Array = randomBytes(X25519_KEY_LENGTH)): X25519KeyPair {
  checkLength("secret key", secretKey);
  return { secretKey, publicKey: rawPublicKey(createPublicKey(privateKey(secretKey))) };
}

/** Scalar multiplication; throws `x25519_low_order` on an all-zero output. */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  checkLength("secret key", secretKey);
  checkLength("public key", publicKey);
  let shared: Uint8Array;
  try {
    const out = diffieHellman({ privateKey: privateKey(secretKey), publicKey: publicKeyObject(publicKey) });
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
