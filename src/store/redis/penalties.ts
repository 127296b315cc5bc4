/**
 * Failed-login penalties shared by every node of the cluster, in Redis: the
 * same doubling backoff per source as the single node's PenaltyBox
 * (src/server/limits.ts), one Lua script per step, on Redis's own clock.
 * A source's key expires `forgetMs` after its last failure (or when its
 * penalty ends, if later): a source that stopped failing starts over, and
 * no key outlives its use, so memory is bounded by the sources that failed
 * within the last `forgetMs` without a cap of our own.
 */
import type { RedisLink } from "./link.ts";
import { DOWN, runScriptOrDown } from "./script.ts";

const PREFIX = "securechat:penalty:";

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** KEYS[1] the source; ARGV freeFailures, baseMs, maxMs, forgetMs. Returns the penalty now due (ms, 0 if none). */
const FAIL = `${NOW}
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local forget = tonumber(ARGV[4])
local failures = (tonumber(redis.call('HGET', KEYS[1], 'failures')) or 0) + 1
local over = failures - free
local penalty = 0
if over > 0 then penalty = math.min(max, base * 2 ^ math.min(over - 1, 30)) end
redis.call('HSET', KEYS[1], 'failures', failures, 'until', now + penalty)
redis.call('PEXPIRE', KEYS[1], math.max(forget, penalty))
return penalty
`;

/** KEYS[1] the source. Returns how long it must still wait (ms, 0 if not). */
const BLOCKED = `${NOW}
local u = tonumber(redis.call('HGET', KEYS[1], 'until'))
if u == nil or u <= now then return 0 end
return u - now
`;

/** The backoff: `freeFailures` free, then `baseMs` doubling up to `maxMs`; forgotten after `forgetMs` without a failure. */
export interface PenaltySteps {
  freeFailures: number;
  baseMs: number;
  maxMs: number;
  forgetMs: number;
}

/** A wait in ms, or null when Redis could not be asked. */
export type PenaltyAnswer = number | null;

export class ClusterPenalties {
  constructor(
    private readonly link: RedisLink,
    private readonly policy: PenaltySteps,
  ) {}

  /** Records a failed login from `source`; answers the penalty it now serves (ms), or null if Redis is unreachable. */
  async failure(source: string): Promise<PenaltyAnswer> {
    const p = this.policy;
    const r = await runScriptOrDown(this.link, FAIL, [PREFIX + source], [String(p.freeFailures), String(p.baseMs), String(p.maxMs), String(p.forgetMs)]);
    return r === DOWN ? null : Number(r);
  }

  /** How long `source` must still wait (ms, 0 if not), or null if Redis is unreachable. */
  async blockedFor(source: string): Promise<PenaltyAnswer> {
    const r = await runScriptOrDown(this.link, BLOCKED, [PREFIX + source], []);
    return r === DOWN ? null : Number(r);
  }
}
