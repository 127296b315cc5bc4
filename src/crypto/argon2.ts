/**
 * argon2id (RFC 9106) as a key-derivation function, for the key backup file
 * (PROTOCOL.md Appendix A.7): @noble/hashes' implementation, run in slices
 * so the event loop keeps turning. The server's password verifiers use
 * Bun.password (PHC strings), which cannot take a salt or give the raw key.
 */
import { argon2idAsync } from "@noble/hashes/argon2.js";

export interface Argon2Params {
  /** Memory in KiB. */
  m: number;
  /** Passes. */
  t: number;
  /** Lanes. */
  p: number;
}

/** A 32-byte key from `password` (bytes, the caller's to wipe) and `salt`. */
export function argon2idKey(password: Uint8Array, salt: Uint8Array, params: Argon2Params): Promise<Uint8Array> {
  return argon2idAsync(password, salt, { m: params.m, t: params.t, p: params.p, dkLen: 32 });
}
