/**
 * What the chat core remembers of the client message ids it acknowledged
 * (PROTOCOL.md §7.15): per user, the ack each `cid` got, so that the same
 * message sent again — a client resending what was unacknowledged when its
 * connection dropped — is answered with that ack and neither recorded nor
 * relayed a second time.
 *
 * Bounded three ways: the last CIDS_PER_USER ids of each user, none older
 * than CID_TTL_MS, and CIDS_MAX in all (the oldest go first). A client
 * resends at most its window of unacknowledged messages, right after it
 * reconnects; what falls outside the bounds is a new message again.
 */
import type { Receipt } from "../store/journal.ts";

/** Ids remembered per user: far more than a client's window of unacknowledged messages (32). */
export const CIDS_PER_USER = 256;
/** How long an id is remembered. */
export const CID_TTL_MS = 24 * 3600 * 1000;
/** Ids remembered in all, across users (about 200 bytes each: at most about 50 MiB). */
export const CIDS_MAX = 262_144;

/** An acknowledged message, as its ack is made again. */
export interface Acked {
  seq: number;
  ts: number;
  /** The transcript entry's seq and hash, and the promise the ack waits for (Chat's #ack). */
  receipt: Receipt;
  stored?: boolean;
}

interface Kept extends Acked {
  user: string;
  cid: string;
  /** When it was remembered (for an id read back at start: its entry's ts). */
  at: number;
}

const keyOf = (user: string, cid: string): string => `${user}\u0000${cid}`;

export class CidMemory {
  /** In the order remembered, oldest first. */
  readonly #all = new Map<string, Kept>();
  /** Per user, its keys oldest first. */
  readonly #users = new Map<string, string[]>();

  constructor(
    readonly now: () => number,
    readonly limits = { perUser: CIDS_PER_USER, ttlMs: CID_TTL_MS, max: CIDS_MAX },
  ) {}

  get size(): number {
    return this.#all.size;
  }

  /** The ack `user`'s message `cid` got, if it is remembered. */
  get(user: string, cid: string): Acked | undefined {
    const k = this.#all.get(keyOf(user, cid));
    if (!k) return undefined;
    if (this.now() - k.at > this.limits.ttlMs) {
      this.forget(user, cid);
      return undefined;
    }
    return k;
  }

  remember(user: string, cid: string, acked: Acked, at = this.now()): void {
    const key = keyOf(user, cid);
    if (this.#all.has(key)) this.forget(user, cid);
    this.#all.set(key, { ...acked, user, cid, at });
    const keys = this.#users.get(user) ?? [];
    keys.push(key);
    this.#users.set(user, keys);
    while (keys.length > this.limits.perUser) this.#drop(keys[0]!);
    const cutoff = this.now() - this.limits.ttlMs;
    for (const [k, v] of this.#all) {
      if (this.#all.size <= this.limits.max && v.at >= cutoff) break;
      this.#drop(k);
    }
  }

  /** An ack that did not happen after all (the transcript failed): a resend is a new message. */
  forget(user: string, cid: string): void {
    this.#drop(keyOf(user, cid));
  }

  #drop(key: string): void {
    const k = this.#all.get(key);
    if (!k) return;
    this.#all.delete(key);
    const keys = this.#users.get(k.user)!;
    keys.splice(keys.indexOf(key), 1);
    if (keys.length === 0) this.#users.delete(k.user);
  }
}
