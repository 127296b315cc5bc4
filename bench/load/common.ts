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
