/**
 * mulberry32: a small seeded PRNG, so a failing case can be replayed from
 * its seed. For picking test inputs only, never keys. No bun:test import,
 * so scripts/fuzz.ts can use it too.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export interface Picker {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  chance(p: number): boolean;
  pick<T>(xs: readonly T[]): T;
}

/** mulberry32 as choices: what the chat model tests and the interaction fuzz draw from. */
export function rng(seed: number): Picker {
  const u32 = mulberry32(seed);
  const next = (): number => u32() / 4294967296;
  const int = (n: number): number => Math.floor(next() * n);
  return { next, int, chance: (p) => next() < p, pick: (xs) => xs[int(xs.length)]! };
}
