/**
 * Per-user flood control: token buckets (rate per second, burst). A user's
 * terminals share its buckets, so opening more terminals buys no more rate.
 */
export interface FloodPolicy {
  /** Messages per second, sustained. */
  rate: number;
  /** Messages allowed at once after a quiet period. */
  burst: number;
}

/** `say` and `dm`. */
export const DEFAULT_FLOOD: FloodPolicy = { rate: 10, burst: 30 };
/**
 * Every other request (join, leave, who, rooms, history, ping). The burst
 * covers a client rejoining every room a connection may be in (32) at once;
 * the rate bounds what one user can make the server build and record (a
 * join or leave is a transcript entry) to 5 a second.
 */
export const DEFAULT_REQUESTS: FloodPolicy = { rate: 5, burst: 40 };

export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly policy: FloodPolicy,
    now: number,
  ) {
    this.#tokens = policy.burst;
    this.#at = now;
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.policy.burst, this.#tokens + ((now - this.#at) * this.policy.rate) / 1000);
      this.#at = now;
    }
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** True when the bucket has refilled: it is then no different from a new one. */
  full(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.policy.burst;
  }

  /** Milliseconds until a token will be there. */
  wait(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) * 1000) / this.policy.rate);
  }
}
