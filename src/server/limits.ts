/**
 * Abuse limits of the server (docs/SECURITY.md §2.3): random early drop of
 * unauthenticated connections, per-source penalties after failed logins,
 * rates per key (logins per address and per user), and a bounded gate
 * around argon2id verification. A "source" is an address as an attacker
 * holds them: an IPv4 address, or an IPv6 /64 (one host is usually given a
 * whole /64, so counting single IPv6 addresses would count nothing).
 */
import { SecureChatError } from "../errors.ts";
import { type FloodPolicy, TokenBucket } from "./flood.ts";

/**
 * The key under which per-address limits count `address`: IPv4 as is (also
 * when written as an IPv4-mapped IPv6 address), IPv6 as its /64 prefix.
 */
export function sourceKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(":")) return address;
  const [head, tail = ""] = address.toLowerCase().split("%")[0]!.split("::");
  const left = head ? head.split(":") : [];
  const right = address.includes("::") && tail ? tail.split(":") : [];
  const groups = address.includes("::") ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(":")}::/64`;
}

/**
 * A token bucket per key (logins per source, logins per user), in bounded
 * memory: a key whose bucket has refilled carries no state and is dropped;
 * past `maxKeys` the least recently used key is forgotten (it starts full).
 */
export class RateLimiter {
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(
    readonly policy: FloodPolicy,
    readonly maxKeys = 65_536,
  ) {}

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token for `key`: 0 if there was one, else the milliseconds until there will be. */
  take(key: string, now: number): number {
    let b = this.#buckets.get(key);
    if (b) this.#buckets.delete(key);
    else b = new TokenBucket(this.policy, now);
    this.#buckets.set(key, b);
    while (this.#buckets.size > this.maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    return b.take(now) ? 0 : b.wait(now);
  }

  /** Forgets every key whose bucket is full again (called by the server's sweep). */
  prune(now: number): void {
    for (const [key, b] of this.#buckets) if (b.full(now)) this.#buckets.delete(key);
  }
}

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
 * unbounded argon2id work (docs/DESIGN.md §7: at most one argon2id
 * verification per core at a time).
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

/**
 * The login path's limits (SECURITY.md §2.3), checked by login.ts and the
 * edge: the source's failed-login penalty and login rate, then, once the
 * credentials are proved, the user's logged-in connections and login rate.
 * A single node keeps them in memory (LocalLoginLimits); a cluster node
 * shares them through Redis (clusterlimits.ts), so N nodes give one budget.
 */
export interface LoginLimits {
  /** At accept, without waiting: how long `source` must still wait for its failed logins as far as this node knows (0: not). */
  penalized(source: string, now: number): number;
  /** Every login-phase attempt (login, register, enroll, check_name): the penalty, then the source's login rate. Rejects with the refusal. */
  admitSource(source: string, now: number): Promise<void>;
  /** A login from `source` failed on its credentials. */
  failed(source: string, now: number): void;
  /**
   * The credentials are proved: the user's connections, then its login
   * rate. `holder` (the connection) then holds one of the user's
   * connection slots until `release(holder)`; admitting the same holder
   * again does not take a second.
   */
  admitUser(user: string, now: number, holder: object): Promise<void>;
  /** The holder (a connection) is gone: its slot, if any, is free. */
  release(holder: object): void;
  /** Forgets what has expired (the server's sweep). */
  prune(now: number): void;
}

export const refuse = {
  penalized: (waitMs: number) => new SecureChatError("rate_limited", `too many failed logins from your address; retry in ${Math.ceil(waitMs / 1000)} s`),
  sourceRate: (waitMs: number) => new SecureChatError("rate_limited", `too many logins from your address; retry in ${Math.ceil(waitMs / 1000)} s`),
  connections: (user: string, n: number) => new SecureChatError("too_many_connections", `${user} has ${n} connections open already; close one first`),
  userRate: (user: string, waitMs: number) => new SecureChatError("rate_limited", `too many logins as ${user}; retry in ${Math.ceil(waitMs / 1000)} s`),
};

/**
 * A single node's login limits, in memory: a PenaltyBox, a RateLimiter per
 * source and one per user, and the logged-in connections the chat counts.
 */
export class LocalLoginLimits implements LoginLimits {
  constructor(
    readonly penalties: PenaltyBox,
    readonly bySource: RateLimiter,
    readonly byUser: RateLimiter,
    private readonly limits: { connectionsOf(user: string): number; readonly maxConnectionsPerUser: number },
  ) {}

  penalized(source: string, now: number): number {
    return this.penalties.blockedFor(source, now);
  }

  async admitSource(source: string, now: number): Promise<void> {
    const wait = this.penalties.blockedFor(source, now);
    if (wait > 0) throw refuse.penalized(wait);
    const busy = this.bySource.take(source, now);
    if (busy > 0) throw refuse.sourceRate(busy);
  }

  failed(source: string, now: number): void {
    this.penalties.failure(source, now);
  }

  async admitUser(user: string, now: number): Promise<void> {
    const n = this.limits.connectionsOf(user);
    if (n >= this.limits.maxConnectionsPerUser) throw refuse.connections(user, n);
    const wait = this.byUser.take(user, now);
    if (wait > 0) throw refuse.userRate(user, wait);
  }

  /** The chat counts logged-in connections itself: nothing is held here. */
  release(): void {}

  prune(now: number): void {
    this.bySource.prune(now);
    this.byUser.prune(now);
  }
}
