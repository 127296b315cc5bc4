/**
 * Bounded, seeded fuzzing of every target in ./targets.ts (a few hundred
 * runs each). The seed is in each test's name; FUZZ_SEED overrides it, and
 * fast-check prints the seed and shrunk counterexample path on failure, so
 * `FUZZ_SEED=<seed> bun test test/fuzz` replays a failure.
 * Longer runs: `bun run fuzz --seconds N` (scripts/fuzz.ts).
 */
import { afterAll, describe, test } from "bun:test";
import fc from "fast-check";
import { TARGETS, cleanupScratch, fuzzSeed } from "./targets.ts";

const seed = fuzzSeed();

afterAll(() => cleanupScratch());

describe(`fuzz (seed ${seed})`, () => {
  for (const t of TARGETS) {
    test(`${t.name}: ${t.runs} runs, seed ${seed}`, async () => {
      await fc.assert(t.property(), { seed, numRuns: t.runs });
    }, 60_000);
  }
});
