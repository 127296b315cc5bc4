/** Constant-time comparison, wiping, and the one source of randomness. */
import { timingSafeEqual } from "node:crypto";

/** Compares two byte strings in time independent of their contents. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/**
 * Overwrites a secret in place. JavaScript gives no guarantee that no copy
 * survives elsewhere (the GC may have moved it, a string may hold it); this
 * removes the copy we own, which is what the runtime allows.
 */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  crypto.getRandomValues(out);
  return out;
}

/** True if every byte is zero, in time independent of the contents. */
export function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}
