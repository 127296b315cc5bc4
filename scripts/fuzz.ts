/**
 * Long-running fuzzing of the targets in test/fuzz/targets.ts, and of the
 * interaction target (test/hardening/interaction.ts).
 *
 *   bun run fuzz [--target NAME] [--seconds N] [--seed S]
 *
 * Runs each target (or just NAME) for N seconds (default 10) in rounds of
 * fc.check with interruptAfterTimeLimit, the k-th round seeded S + k (S
 * defaults to FUZZ_SEED or the test suite's seed), and prints runs, runs/s
 * and the seeds. On a counterexample it prints fast-check's report (seed,
 * path, shrunk value) and how to replay it, and exits 1.
 *
 * `interaction` is not a fast-check property: each run starts a server in
 * process and drives users, terminals and rooms against it over loopback
 * for a seeded random script (seeds S, S + 1, …; odd seeds with the
 * transcript journal, even ones in memory), and checks what every terminal
 * received. A failure prints the seed, the mismatch and the steps involved.
 */
import fc from "fast-check";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TARGETS, cleanupScratch, fuzzSeed } from "../test/fuzz/targets.ts";
import { runInteraction, summary } from "../test/hardening/interaction.ts";

const INTERACTION = "interaction";

function usage(message?: string): never {
  if (message) console.error(`fuzz: ${message}`);
  console.error("usage: bun run fuzz [--target NAME] [--seconds N] [--seed S]");
  console.error(`targets: ${[...TARGETS.map((t) => t.name), INTERACTION].join(", ")}`);
  process.exit(2);
}

const args = process.argv.slice(2);
let target: string | null = null;
let seconds = 10;
let seed = fuzzSeed();
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
  const value = (): string => {
    const v = inline ?? args[++i];
    if (v === undefined) usage(`${flag} needs a value`);
    return v;
  };
  if (flag === "--target") target = value();
  else if (flag === "--seconds") {
    seconds = Number(value());
    if (!(seconds > 0)) usage("--seconds must be a positive number");
  } else if (flag === "--seed") {
    seed = Number(value());
    if (!Number.isSafeInteger(seed)) usage("--seed must be an integer");
    seed |= 0;
  } else if (flag === "-h" || flag === "--help") usage();
  else usage(`unknown argument ${a}`);
}

const chosen = target === null ? TARGETS : TARGETS.filter((t) => t.name === target);
const interaction = target === null || target === INTERACTION;
if (chosen.length === 0 && !interaction) usage(`no target named ${target}`);

// Keep scratch files (verify_transcript) out of the user's data.
if (!process.env.SECURECHAT_DATA) {
  const root = mkdtempSync(join(tmpdir(), "securechat-fuzz-data-"));
  mkdirSync(root, { recursive: true });
  process.env.SECURECHAT_DATA = root;
  process.on("exit", () => rmSync(root, { recursive: true, force: true }));
}

console.log(`fuzz: ${chosen.length + (interaction ? 1 : 0)} target(s), ${seconds} s each, base seed ${seed}`);
let failed = false;
for (const t of chosen) {
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let runs = 0;
  let rounds = 0;
  while (performance.now() < deadline) {
    const left = Math.floor(deadline - performance.now());
    if (left < 20) break;
    const roundSeed = (seed + rounds) | 0;
    rounds++;
    const details = await fc.check(t.property(), { seed: roundSeed, numRuns: 1_000_000, interruptAfterTimeLimit: left });
    runs += details.numRuns;
    // An interrupted round with no counterexample (time ran out before any run) is not a failure.
    if (details.failed && details.counterexample !== null) {
      console.error(`FAIL ${t.name} (seed ${roundSeed}, path ${details.counterexamplePath ?? "?"})`);
      console.error(fc.defaultReportMessage(details) ?? "");
      const err = details.errorInstance;
      console.error(`error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      console.error(`replay: bun run fuzz --target ${t.name} --seed ${roundSeed} --seconds ${seconds}`);
      failed = true;
      break;
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  console.log(
    `${failed ? "FAIL" : "ok  "} ${t.name.padEnd(24)} ${String(runs).padStart(8)} runs in ${elapsed.toFixed(1)} s (${Math.round(runs / elapsed)} runs/s), seeds ${seed}..${(seed + Math.max(rounds, 1) - 1) | 0}`,
  );
  if (failed) break;
}
if (interaction && !failed) {
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  let runs = 0;
  let messages = 0;
  // At least one run, however short the time asked for.
  while (runs === 0 || performance.now() < deadline) {
    const runSeed = (seed + runs) >>> 0;
    try {
      const r = await runInteraction({ seed: runSeed, journal: runSeed % 2 === 1 ? "batch" : "memory" });
      runs++;
      messages += r.received;
      if (process.env.FUZZ_VERBOSE) console.log(summary(r));
    } catch (e) {
      console.error(`FAIL ${INTERACTION} (seed ${runSeed})`);
      console.error(e instanceof Error ? e.message : String(e));
      console.error(`replay: bun run fuzz --target ${INTERACTION} --seed ${runSeed} --seconds 1`);
      failed = true;
      break;
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  console.log(
    `${failed ? "FAIL" : "ok  "} ${INTERACTION.padEnd(24)} ${String(runs).padStart(8)} runs in ${elapsed.toFixed(1)} s (${messages} messages checked), ` +
      `seeds ${seed >>> 0}..${(seed + Math.max(runs, 1) - 1) >>> 0} (odd seeds with the transcript)`,
  );
}
cleanupScratch();
process.exit(failed ? 1 : 0);
