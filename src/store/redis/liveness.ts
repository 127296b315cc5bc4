/**
 * Which nodes of the cluster are alive, from Redis.
 *
 * `beat(node)` sets the node's key with a time to live (PX 5000) at once and
 * every 1000 ms after, and adds the node to a set of nodes. `alive(node)`
 * reads the key. `watch(gone)` polls every 1000 ms with one script that
 * returns the nodes of the set whose key still exists (and drops the others
 * from the set); a node seen before and missing now is reported gone, once.
 *
 * Detection bound: a node that stops (SIGSTOP, kill -9, a cut cable) right
 * after a beat has its key expire TTL later; Redis expires a key when it is
 * read, so the next poll sees it: gone is reported at most TTL + POLL (+ one
 * round trip) after the last beat, 6 s with the defaults. A node that keeps
 * beating is never reported, however loaded Redis is, as long as each beat
 * lands within TTL of the one before.
 *
 * Polling reads what Redis knows now; keyspace notifications would need
 * `notify-keyspace-events` set on the server and are only sent when Redis
 * gets round to expiring the key. Polling costs one script call per second
 * per watching node.
 *
 * A restart of Redis empties it: every node beats again as soon as its link
 * is back, but the watcher cannot tell a node that has not beaten yet from
 * one that died. For `graceMs` after its own link comes back (TTL plus the
 * longest reconnect delay by default) it reports no node gone; a node that
 * died during the outage is reported after that.
 *
 * Keys share the hash tag {securechat} so the script's keys live on one slot.
 */
import type { Logger } from "../../log.ts";
import { LINK_MAX_DELAY_MS, type RedisLink } from "./link.ts";
import { runScript } from "./script.ts";

export const NODE_TTL_MS = 5000;
export const NODE_BEAT_MS = 1000;
export const NODE_POLL_MS = 1000;

const SET = "{securechat}:nodes";
/** A live node's key: this prefix and its name (scripts tie what a node holds to it). */
export const NODE_KEY_PREFIX = "{securechat}:node:";

/** The nodes of the set whose key exists; the others are removed from it. */
const POLL = `
local members = redis.call('SMEMBERS', KEYS[1])
local alive = {}
for _, m in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. m) == 1 then
    alive[#alive + 1] = m
  else
    redis.call('SREM', KEYS[1], m)
  end
end
return alive
`;

export interface LivenessOptions {
  ttlMs?: number;
  beatMs?: number;
  pollMs?: number;
  /** After the link comes back, how long no node is reported gone (default TTL + the link's longest retry delay). */
  graceMs?: number;
  log?: Logger;
}

export class Liveness {
  private readonly ttlMs: number;
  private readonly beatMs: number;
  private readonly pollMs: number;
  private readonly graceMs: number;

  constructor(
    private readonly link: RedisLink,
    opts: LivenessOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? NODE_TTL_MS;
    this.beatMs = opts.beatMs ?? NODE_BEAT_MS;
    this.pollMs = opts.pollMs ?? NODE_POLL_MS;
    this.graceMs = opts.graceMs ?? this.ttlMs + LINK_MAX_DELAY_MS;
    if (!(this.beatMs < this.ttlMs)) throw new RangeError("liveness: the beat must be shorter than the time to live");
  }

  /** Keeps `node` alive until the returned stop() (which removes its key, so watchers see it leave). */
  beat(node: string): { stop(): Promise<void> } {
    const key = NODE_KEY_PREFIX + node;
    const once = (): void => {
      if (!this.link.up) return;
      this.link.send("SET", [key, "1", "PX", String(this.ttlMs)]).catch(() => {});
      this.link.send("SADD", [SET, node]).catch(() => {});
    };
    once();
    const timer = setInterval(once, this.beatMs);
    // Redis may have come back empty: beat at once rather than up to a beat later.
    const off = this.link.onUp(once);
    return {
      stop: async () => {
        clearInterval(timer);
        off();
        if (this.link.up) await Promise.all([this.link.send("DEL", [key]), this.link.send("SREM", [SET, node])]).catch(() => {});
      },
    };
  }

  /** Whether `node`'s key exists now; throws `redis_down` while the link is down. */
  async alive(node: string): Promise<boolean> {
    return (await this.link.send("EXISTS", [NODE_KEY_PREFIX + node])) === 1;
  }

  /**
   * Calls `gone(node)` once when a node seen alive stops beating (or stops
   * cleanly), and `seen(node)` when a node is first seen or comes back.
   * Returns the stopper.
   */
  watch(gone: (node: string) => void, seen: (node: string) => void = () => {}): () => void {
    let known = new Set<string>();
    let graceUntil = 0;
    let busy = false;
    const offUp = this.link.onUp((again) => {
      if (again) graceUntil = Date.now() + this.graceMs;
    });
    const poll = async (): Promise<void> => {
      if (busy || !this.link.up) return;
      busy = true;
      try {
        const alive = new Set<string>((await runScript(this.link, POLL, [SET], [NODE_KEY_PREFIX])) as string[]);
        for (const n of alive) if (!known.has(n)) seen(n);
        if (Date.now() < graceUntil) {
          for (const n of known) alive.add(n);
        } else {
          for (const n of known) if (!alive.has(n)) gone(n);
        }
        known = alive;
      } catch {
        // The link is down or came back empty: the next poll tries again.
      } finally {
        busy = false;
      }
    };
    void poll();
    const timer = setInterval(() => void poll(), this.pollMs);
    return () => {
      clearInterval(timer);
      offUp();
    };
  }
}
