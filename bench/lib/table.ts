/** Plain-text tables and the number formats the benchmark prints. */
import type { Measurement } from "./measure.ts";

/** First column left-aligned, the rest right-aligned; `null` rows become rules. */
export function table(title: string, head: string[], rows: (string[] | null)[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r?.[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [title, line(head), rule, ...rows.map((r) => (r === null ? rule : line(r)))].join("\n");
}

/** 3 significant digits in ns, µs, ms or s. */
export function time(ns: number): string {
  if (Math.abs(ns) < 1e3) return `${sig(ns)} ns`;
  if (ns < 1e6) return `${sig(ns / 1e3)} µs`;
  if (ns < 1e9) return `${sig(ns / 1e6)} ms`;
  return `${sig(ns / 1e9)} s`;
}

/** The min and max sample relative to the median, e.g. "-2%/+5%". */
export function spread(m: Measurement): string {
  const pct = (x: number): string => `${Math.round((x / m.median - 1) * 100)}`;
  return `${pct(m.min)}%/+${pct(m.max)}%`;
}

export function perSecond(ns: number): string {
  const v = 1e9 / ns;
  return v >= 1e6 ? `${sig(v / 1e6)}M/s` : v >= 1e3 ? `${sig(v / 1e3)}k/s` : `${sig(v)}/s`;
}

export function mbPerSecond(bytes: number, ns: number): string {
  return `${sig((bytes / ns) * 1e3)} MB/s`;
}

export function ratio(x: number): string {
  return `${x.toFixed(2)}×`;
}

function sig(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}
