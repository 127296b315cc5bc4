/**
 * Raw 32-byte X25519 and Ed25519 keys as node:crypto KeyObjects, through the
 * fixed DER encodings of RFC 8410: PKCS#8 (private) and SubjectPublicKeyInfo
 * (public) are a constant prefix and then the key bytes. The wrapped copy
 * of a private key is wiped once the runtime has imported it.
 */
import { type KeyObject, createPrivateKey, createPublicKey } from "node:crypto";
import { wipe } from "./util.ts";

export interface Der {
  pkcs8: Uint8Array;
  spki: Uint8Array;
}

/** id-X25519 (1.3.101.110) and id-Ed25519 (1.3.101.112). */
export const X25519_DER: Der = {
  pkcs8: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]),
  spki: Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00]),
};
export const ED25519_DER: Der = {
  pkcs8: Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]),
  spki: Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]),
};

function wrap(prefix: Uint8Array, raw: Uint8Array): Buffer {
  const der = Buffer.alloc(prefix.length + raw.length);
  der.set(prefix);
  der.set(raw, prefix.length);
  return der;
}

export function privateKeyObject(der: Der, raw: Uint8Array): KeyObject {
  const wrapped = wrap(der.pkcs8, raw);
  try {
    return createPrivateKey({ key: wrapped, format: "der", type: "pkcs8" });
  } finally {
    wipe(wrapped);
  }
}

export function publicKeyObject(der: Der, raw: Uint8Array): KeyObject {
  return createPublicKey({ key: wrap(der.spki, raw), format: "der", type: "spki" });
}

/** The raw public key of a key object (the last 32 bytes of its SPKI). */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const spki = key.export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.length - 32));
}
