/**
 * A tiny sampling timer. Each case warms up (doubling its batch until the
 * warm-up time is spent, which also calibrates its cost per op); then the
 * cases of a group take turns, one sample each per round, so that load from
 * other processes on this shared machine hits a case and its baseline alike.
 * Each case reports the median ns/op over its samples, with the fastest and
 * slowest sample. Compare cases measured in the same group.
 */

export interface Config {
  samples: number;
  sampleMs: number;
  warmupMs: number;
}

export interface Measurement {
  name: string;
  /** Nanoseconds per op: median, fastest and slowest sample. */
  median: number;
  min: number;
  max: number;
  iterations: number;
  samples: number;
}

/** Runs `iterations` ops and returns the nanoseconds to count for them. */
export type Batch = (iterations: number) => number;

export interface Case {
  name: string;
  /** An op to time whole, or a batch that times what it wants. */
  fn?: () => unknown;
  batch?: Batch;
  /** Fixed ops per sample; by default calibrated to ~sampleMs. */
  iterations?: number;
}

let config: Config = { samples: 7, sampleMs: 120, warmupMs: 100 };

export function configure(c: Config): void {
  config = c;
}

/** Keeps results alive so the engine cannot drop the work. */
export let sink: unknown;

function loop(fn: () => unknown): Batch {
  return (n) => {
    const t0 = Bun.nanoseconds();
    for (let i = 0; i < n; i++) sink = fn();
    return Bun.nanoseconds() - t0;
  };
}

/** Measures the cases with interleaved samples; results are in the same order. */
export function measureGroup<const C extends readonly Case[]>(cases: C): { [K in keyof C]: Measurement } {
  const runs = cases.map((c) => {
    const batch = c.batch ?? loop(c.fn ?? (() => undefined));
    return { name: c.name, batch, iterations: c.iterations ?? calibrate(batch), perOp: [] as number[] };
  });
  for (let s = 0; s < config.samples; s++) {
    for (const r of runs) r.perOp.push(r.batch(r.iterations) / r.iterations);
  }
  return runs.map((r): Measurement => {
    const sorted = r.perOp.sort((a, b) => a - b);
    return { name: r.name, median: median(sorted), min: sorted[0]!, max: sorted[sorted.length - 1]!, iterations: r.iterations, samples: sorted.length };
  }) as { [K in keyof C]: Measurement };
}

export function measure(name: string, fn: () => unknown, opts: { iterations?: number } = {}): Measurement {
  return measureGroup([{ name, fn, ...opts }])[0];
}

/** Warms up and returns the ops per sample that take ~sampleMs. */
function calibrate(batch: Batch): number {
  let n = 1;
  let spent = 0;
  let perOp = 0;
  do {
    const t = batch(n);
    spent += t;
    perOp = t / n;
    n *= 2;
  } while (spent < config.warmupMs * 1e6);
  return Math.max(1, Math.round((config.sampleMs * 1e6) / Math.max(perOp, 1)));
}

function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
