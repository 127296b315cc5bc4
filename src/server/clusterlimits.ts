/**
 * A cluster node's login limits (limits.ts LoginLimits), shared by every
 * node through Redis, so N nodes give one budget, not N: the source's
 * failed-login penalty (ClusterPenalties), the login rates per source and
 * per user (ClusterBuckets, the same token buckets as --login-rate and
 * --login-burst), and the user's logged-in connections across the cluster
 * (ClusterSlots, tied to each node's liveness).
 *
 * Fail closed: while Redis cannot be asked, a login is refused `server_busy`
 * (no unlimited guessing while the shared limits are out of reach); sessions
 * already open go on. A failure that could not be recorded is logged.
 *
 * At accept (no time to ask Redis) a node refuses the sources it knows are
 * penalized: those whose penalty an answer from Redis told it; every
 * attempt is checked against Redis itself.
 */
import { SecureChatError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ClusterBuckets, Take } from "../store/redis/buckets.ts";
import type { ClusterPenalties } from "../store/redis/penalties.ts";
import type { ClusterSlots } from "../store/redis/slots.ts";
import type { FloodPolicy } from "./flood.ts";
import { type LoginLimits, refuse } from "./limits.ts";

/** Sources remembered as penalized for the accept-time check, at most. */
const MAX_KNOWN_PENALTIES = 65_536;

function unreachable(): SecureChatError {
  return new SecureChatError("server_busy", "the cluster's login limits are out of reach right now (Redis); retry in a moment");
}

export interface ClusterLimitsOptions {
  logins: FloodPolicy;
  maxConnectionsPerUser: number;
  log: Logger;
}

export class ClusterLoginLimits implements LoginLimits {
  /** Source → when its penalty ends (this node's clock), as Redis last said. */
  readonly #penalized = new Map<string, number>();
  /** Connection → the user whose slot it holds. */
  readonly #slots = new Map<object, string>();
  /** Connections released (gone): a claim still in flight for one gives its slot back. */
  readonly #gone = new WeakSet<object>();

  constructor(
    private readonly buckets: ClusterBuckets,
    private readonly penalties: ClusterPenalties,
    private readonly slots: ClusterSlots,
    private readonly opts: ClusterLimitsOptions,
  ) {}

  penalized(source: string, now: number): number {
    const until = this.#penalized.get(source);
    if (until === undefined) return 0;
    if (until <= now) this.#penalized.delete(source);
    return Math.max(0, until - now);
  }

  async admitSource(source: string, now: number): Promise<void> {
    const wait = await this.penalties.blockedFor(source);
    if (wait === null) throw unreachable();
    if (wait > 0) {
      this.#remember(source, now + wait);
      throw refuse.penalized(wait);
    }
    const t = await this.#take(`login:source:${source}`);
    if (!t.ok) throw refuse.sourceRate(t.waitMs);
  }

  failed(source: string, now: number): void {
    this.penalties.failure(source).then(
      (wait) => {
        if (wait === null) this.opts.log.warn("penalty_not_recorded", { source, effect: "logins are refused while Redis is unreachable" });
        else if (wait > 0) this.#remember(source, now + wait);
      },
      (e) => this.opts.log.warn("penalty_not_recorded", { source, error: e instanceof Error ? e.message : String(e) }),
    );
  }

  async admitUser(user: string, _now: number, holder: object): Promise<void> {
    const held = this.#slots.get(holder);
    if (held !== user) {
      if (held !== undefined) this.#free(holder);
      const c = await this.slots.claim(user, this.opts.maxConnectionsPerUser);
      if (c.unchecked) throw unreachable();
      if (!c.ok) throw refuse.connections(user, c.count);
      // The connection closed while Redis was asked: nobody will release this slot but us.
      if (this.#gone.has(holder)) {
        this.slots.release(user);
        return;
      }
      this.#slots.set(holder, user);
    }
    const t = await this.#take(`login:user:${user}`);
    if (!t.ok) {
      this.#free(holder);
      throw refuse.userRate(user, t.waitMs);
    }
  }

  release(holder: object): void {
    this.#gone.add(holder);
    this.#free(holder);
  }

  #free(holder: object): void {
    const user = this.#slots.get(holder);
    if (user === undefined) return;
    this.#slots.delete(holder);
    this.slots.release(user);
  }

  prune(now: number): void {
    for (const [source, until] of this.#penalized) if (until <= now) this.#penalized.delete(source);
  }

  async #take(key: string): Promise<Take> {
    const t = await this.buckets.take(key, { ...this.opts.logins, whenDown: "closed" });
    if (t.unchecked) throw unreachable();
    return t;
  }

  #remember(source: string, until: number): void {
    this.#penalized.delete(source);
    this.#penalized.set(source, until);
    while (this.#penalized.size > MAX_KNOWN_PENALTIES) this.#penalized.delete(this.#penalized.keys().next().value!);
  }
}
