/**
 * Token buckets shared by every node of the cluster, kept in Redis: one Lua
 * script reads a bucket, refills it for the time passed (Redis's own clock,
 * so nodes' clocks do not matter), takes `cost` tokens if it holds them and
 * writes it back, atomically. A bucket's key expires when it would be full
 * again, so a key no one uses any more disappears by itself, and a missing
 * key is a full bucket.
 *
 * When Redis cannot be reached the caller decides: fail closed (a login: no
 * unlimited guessing while the shared limit is out of reach) or fail open
 * (chat flood control: the node's own per-connection limits still hold).
 */
import { SecureChatError } from "../../errors.ts";
import type { RedisLink } from "./link.ts";
import { DOWN, runScriptOrDown } from "./script.ts";

const PREFIX = "securechat:bucket:";

/** KEYS[1] the bucket; ARGV rate (tokens/s), burst, cost. Returns {ok 0|1, waitMs}. */
const TAKE = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(s[1])
local at = tonumber(s[2])
if tokens == nil or at == nil then
  tokens = burst
elseif now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
end
local ok = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  ok = 1
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
local full = math.ceil((burst - tokens) * 1000 / rate)
if full <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], full)
end
return {ok, wait}
`;

export interface Take {
  ok: boolean;
  /** When ok is false: how long until `cost` tokens are there (ms). */
  waitMs: number;
  /** True when Redis could not be asked and the answer is the caller's fail-open or fail-closed choice. */
  unchecked?: true;
}

export interface TakeOptions {
  /** Tokens per second, sustained. */
  rate: number;
  /** Tokens the bucket holds when full. */
  burst: number;
  /** Tokens this request takes (default 1, at most burst). */
  cost?: number;
  /** What to answer when Redis is down: refuse (closed) or allow (open). */
  whenDown: "closed" | "open";
}

/** How long a fail-closed refusal asks the caller to wait while Redis is down. */
export const BUCKET_DOWN_WAIT_MS = 1000;

export class ClusterBuckets {
  constructor(private readonly link: RedisLink) {}

  async take(key: string, o: TakeOptions): Promise<Take> {
    const cost = o.cost ?? 1;
    if (!(o.rate > 0) || !(o.burst >= 1) || !(cost > 0) || cost > o.burst) {
      throw new SecureChatError("bucket_options", `bucket: rate ${o.rate}, burst ${o.burst}, cost ${cost}: need rate > 0, burst ≥ 1 and 0 < cost ≤ burst`);
    }
    const r = await runScriptOrDown(this.link, TAKE, [PREFIX + key], [String(o.rate), String(o.burst), String(cost)]);
    if (r === DOWN) return o.whenDown === "open" ? { ok: true, waitMs: 0, unchecked: true } : { ok: false, waitMs: BUCKET_DOWN_WAIT_MS, unchecked: true };
    const [ok, wait] = r as [number, number];
    return { ok: ok === 1, waitMs: ok === 1 ? 0 : wait };
  }
}
