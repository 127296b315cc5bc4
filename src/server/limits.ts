/**
 * Abuse limits of the server (DESIGN.md "Server limits"): random early drop
 * of unauthenticated connections, per-source penalties after failed logins,
 * and a bounded gate around argon2id verification.
 */
import { SecureChatError } from "../errors.ts";

/** OpenSSH `MaxStartups start:rate:full`. */
export interface StartupPolicy {
  start: number;
  rate: number;
  full: number;
}

export function parseStartups(s: string): StartupPolicy {
  const m = /^(\d+):(\d+):(\d+)$/.exec(s);
  const [start, rate, full] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [NaN, NaN, NaN];
  if (!m || rate > 100 || start > full || full < 1) {
    throw new SecureChatError("config_invalid", `max-startups: "${s}" is not start:rate:full with start ≤ full and rate ≤ 100`);
  }
  return { start, rate, full };
}

/**
 * sshd_config(5) MaxStartups: "refuse connection attempts with a probability
 * of rate/100 if there are currently start unauthenticated connections. The
 * probability increases linearly and all connection attempts are refused if
 * the number of unauthenticated connections reaches full."
 */
export function shouldDropStartup(p: StartupPolicy, unauthenticated: number, random: number = Math.random()): boolean {
  if (unauthenticated >= p.full) return true;
  if (unauthenticated < p.start) return false;
  const span = p.full - p.start;
  const probability = (p.rate + ((100 - p.rate) * (unauthenticated - p.start)) / (span === 0 ? 1 : span)) / 100;
  return random < probability;
}

export interface PenaltyPolicy {
  /** Failures from one source before penalties start. */
  freeFailures: number;
  /** First penalty; each further failure doubles it. */
  baseMs: number;
  maxMs: number;
  /** A source with no failure for this long starts over. */
  forgetMs: number;
  /** Bound on sources tracked; the least recently failed are forgotten first. */
  maxSources: number;
}

export const DEFAULT_PENALTIES: PenaltyPolicy = { freeFailures: 3, baseMs: 1000, maxMs: 60_000, forgetMs: 10 * 60_000, maxSources: 65_536 };

interface SourceRecord {
  failures: number;
  lastFailure: number;
  until: number;
}

/** Per-source failure backoff in bounded memory (a Map kept in failure order). */
export class PenaltyBox {
  readonly #sources = new Map<string, SourceRecord>();

  constructor(readonly policy: PenaltyPolicy = DEFAULT_PENALTIES) {}

  get size(): number {
    return this.#sources.size;
  }

  /** Milliseconds the source must still wait, or 0. */
  blockedFor(source: string, now: number): number {
    const r = this.#sources.get(source);
    if (!r) return 0;
    if (now - r.lastFailure > this.policy.forgetMs) {
      this.#sources.delete(source);
      return 0;
    }
    return Math.max(0, r.until - now);
  }

  failure(source: string, now: number): void {
    const prev = this.#sources.get(source);
    const fresh = !prev || now - prev.lastFailure > this.policy.forgetMs;
    const failures = fresh ? 1 : prev.failures + 1;
    const over = failures - this.policy.freeFailures;
    const penalty = over > 0 ? Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** Math.min(over - 1, 30)) : 0;
    this.#sources.delete(source);
    this.#sources.set(source, { failures, lastFailure: now, until: now + penalty });
    while (this.#sources.size > this.policy.maxSources) {
      this.#sources.delete(this.#sources.keys().next().value!);
    }
  }
}

/**
 * At most `concurrency` tasks at once, at most `queue` waiting; past that,
 * `run` refuses with `server_busy` rather than letting a login flood queue
 * unbounded argon2id work (DESIGN.md: "at most one argon2id verification per
 * core at a time").
 */
export class Gate {
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    readonly concurrency: number,
    readonly queue: number,
  ) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.queue) throw new SecureChatError("server_busy", "server: busy, retry in a moment");
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
