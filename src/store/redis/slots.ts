/**
 * Counted slots shared by every node of the cluster, in Redis: a user's
 * logged-in connections (--max-connections-per-user), wherever they are.
 *
 * A user's key is a hash of node → the connections that node holds for the
 * user. Each node writes only its own field, and always the absolute count
 * it holds (never +1/-1): a write lost while Redis was unreachable is
 * corrected by the next, and when the link comes back (Redis restarted
 * empty, or calls failed) the node writes every count it holds again —
 * after its liveness beat when both use one link, as a cluster node's do.
 *
 * A node's counts live as long as the node: the claim script adds up only
 * the fields of nodes whose liveness key (liveness.ts) still exists, and
 * deletes the others. A node killed while holding a user's connections
 * stops counting once its key expires: at most NODE_TTL_MS (5 s) after its
 * last beat. The hash itself expires `ttlMs` after its last write; set that
 * above the longest session, so no count a live session stands on expires.
 *
 * Keys share the hash tag {securechat} with the liveness keys the script reads.
 */
import type { RedisLink } from "./link.ts";
import { NODE_KEY_PREFIX } from "./liveness.ts";
import { DOWN, runScriptOrDown } from "./script.ts";

const PREFIX = "{securechat}:conns:";

/**
 * KEYS[1] the user's hash; ARGV node, held (this node's count with the new
 * slot), max, the liveness key prefix, ttl. Returns {ok 0|1, the user's
 * connections on live nodes before this claim}.
 */
const CLAIM = `
local node = ARGV[1]
local held = tonumber(ARGV[2])
local others = 0
local f = redis.call('HGETALL', KEYS[1])
for i = 1, #f, 2 do
  if f[i] ~= node then
    if redis.call('EXISTS', ARGV[4] .. f[i]) == 1 then
      others = others + tonumber(f[i + 1])
    else
      redis.call('HDEL', KEYS[1], f[i])
    end
  end
end
if others + held > tonumber(ARGV[3]) then return {0, others + held - 1} end
redis.call('HSET', KEYS[1], node, held)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, others + held - 1}
`;

/** KEYS[1] the user's hash; ARGV node, held, ttl: this node's count, written as is (0 removes the field). */
const PUT = `
if tonumber(ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`;

export interface Claim {
  ok: boolean;
  /** The user's connections on live nodes, not counting this claim. */
  count: number;
  /** Redis could not be asked: nothing was claimed. */
  unchecked?: true;
}

export class ClusterSlots {
  /** This node's count per user, the truth its writes carry. */
  readonly #held = new Map<string, number>();
  /** Users whose count in Redis may be wrong (a write failed): written again when the link is up. */
  readonly #stale = new Set<string>();
  readonly #offUp: () => void;

  constructor(
    private readonly link: RedisLink,
    private readonly node: string,
    private readonly ttlMs: number,
  ) {
    // After the link's other listeners have run: on the node's liveness link the beat is then
    // sent first, so no other node's claim sees these counts while this node's key is missing.
    this.#offUp = link.onUp(() =>
      queueMicrotask(() => {
        for (const u of new Set([...this.#held.keys(), ...this.#stale])) this.#put(u);
      }),
    );
  }

  /** This node's count for `user`. */
  held(user: string): number {
    return this.#held.get(user) ?? 0;
  }

  /** Takes one of `user`'s `max` slots for this node, if the cluster-wide count leaves one. */
  async claim(user: string, max: number): Promise<Claim> {
    const held = this.held(user) + 1;
    this.#held.set(user, held);
    const r = await runScriptOrDown(this.link, CLAIM, [PREFIX + user], [this.node, String(held), String(max), NODE_KEY_PREFIX, String(this.ttlMs)]);
    if (r !== DOWN && (r as number[])[0] === 1) return { ok: true, count: Number((r as number[])[1]) };
    // Not taken: the count goes back, and Redis is told what this node holds now (other claims may have been in flight).
    this.#set(user, this.held(user) - 1);
    if (r === DOWN) {
      this.#stale.add(user);
      return { ok: false, count: 0, unchecked: true };
    }
    this.#put(user);
    return { ok: false, count: Number((r as number[])[1]) };
  }

  /** Gives back one of `user`'s slots on this node. */
  release(user: string): void {
    this.#set(user, this.held(user) - 1);
    this.#put(user);
  }

  close(): void {
    this.#offUp();
  }

  #set(user: string, n: number): void {
    if (n > 0) this.#held.set(user, n);
    else this.#held.delete(user);
  }

  #put(user: string): void {
    runScriptOrDown(this.link, PUT, [PREFIX + user], [this.node, String(this.held(user)), String(this.ttlMs)]).then(
      (r) => (r === DOWN ? this.#stale.add(user) : this.#stale.delete(user)),
      () => this.#stale.add(user),
    );
  }
}
