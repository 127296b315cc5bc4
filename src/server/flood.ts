/**
 * Per-user flood control: a token bucket (rate per second, burst). A user's
 * terminals share one bucket, so opening more terminals buys no more rate.
 */
export interface FloodPolicy {
  /** Messages per second, sustained. */
  rate: number;
  /** Messages allowed at once after a quiet period. */
  burst: number;
}

export const DEFAULT_FLOOD: FloodPolicy = { rate: 10, burst: 30 };

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

  /** Milliseconds until a token will be there. */
  wait(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) * 1000) / this.policy.rate);
  }
}
