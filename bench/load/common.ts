/**
 * Shared bits of the load benchmark's child processes: argument parsing and
 * one-JSON-object-per-line output on stdout (the parent reads it).
 */

/** `--key value` pairs (and bare `--flag`s as "true"). */
export function parseArgs(argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new Error(`bench/load: unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      out.set(a.slice(2), next);
      i++;
    } else out.set(a.slice(2), "true");
  }
  return out;
}

export function intArg(args: Map<string, string>, key: string, fallback?: number): number {
  const v = args.get(key);
  if (v === undefined) {
    if (fallback === undefined) throw new Error(`bench/load: missing --${key}`);
    return fallback;
  }
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`bench/load: --${key} must be a number, got ${v}`);
  return n;
}

export function strArg(args: Map<string, string>, key: string): string {
  const v = args.get(key);
  if (v === undefined) throw new Error(`bench/load: missing --${key}`);
  return v;
}

/** One event for the parent: a JSON object on its own line. */
export function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** Credentials the server child hands the load generator (hex strings). */
export interface BenchCred {
  user: string;
  ticket: string;
  ticketKey: string;
}

export const ROOM = "bench";
/** Body size of the bare relay's message frames, and roughly the text of a securechat say. */
export const BODY_BYTES = 100;

/**
 * SIGUSR2 → a full, synchronous garbage collection (Bun.gc(true)). The idle
 * memory bench sends it to Bun servers before reading their RSS, so the
 * figure is memory held, not garbage not yet collected.
 */
export function gcOnSignal(onDone?: () => void): void {
  process.on("SIGUSR2", () => {
    Bun.gc(true);
    onDone?.();
  });
}

/** Nearest-rank percentile (0 < q ≤ 1) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Polls `cond` every 5 ms until it holds; throws after `timeoutMs`, or as
 * soon as `failure()` reports an error. `who` names the generator in errors.
 */
export async function waitUntil(who: string, what: string, cond: () => boolean, timeoutMs: number, failure: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    const error = failure();
    if (error) throw new Error(`${who}: ${error} (while waiting for ${what})`);
    if (Date.now() > deadline) throw new Error(`${who}: timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** The closed loop's marks: one after `warmupMs`, then one every `sampleMs`, `samples` times. */
export async function markSamples(warmupMs: number, sampleMs: number, samples: number, mark: () => void): Promise<void> {
  await Bun.sleep(warmupMs);
  mark();
  for (let s = 0; s < samples; s++) {
    await Bun.sleep(sampleMs);
    mark();
  }
}

/** Runs a generator's main: exit 0, or an {"event":"error"} line and exit 1. */
export async function runGenerator(main: () => Promise<void>): Promise<never> {
  try {
    await main();
    process.exit(0);
  } catch (e) {
    emit({ event: "error", error: String(e instanceof Error ? e.message : e) });
    process.exit(1);
  }
}
