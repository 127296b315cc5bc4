/**
 * The Redis layer (src/store/redis/) against a real redis-server
 * (test/engines.ts): a link that loses Redis says so once, retries with
 * backoff and says when it is back, never showing the password; the bus
 * keeps one publisher's order, batches a turn's payloads, bounds what it
 * queues while down and reports every loss; liveness reports a stopped node
 * within its bound and no live node after Redis comes back empty; the shared
 * token buckets are atomic across nodes and fail open or closed as asked;
 * failed-login penalties double as a single node's do and expire by
 * themselves; a user's connection slots count live nodes only and are
 * written again after Redis comes back empty.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Logger, LogFields } from "../../src/log.ts";
import { type BusLoss, Bus } from "../../src/store/redis/bus.ts";
import { ClusterBuckets } from "../../src/store/redis/buckets.ts";
import { RedisLink, parseRedisUrl } from "../../src/store/redis/link.ts";
import { Liveness, NODE_POLL_MS, NODE_TTL_MS } from "../../src/store/redis/liveness.ts";
import { ClusterPenalties } from "../../src/store/redis/penalties.ts";
import { ClusterSlots } from "../../src/store/redis/slots.ts";
import { type RedisHandle, requireEngines, startRedis } from "../engines.ts";

const hasRedis = requireEngines("redis");
// Tests wait for events (a reconnect, an expiry) with generous timeouts, never for a speed.
setDefaultTimeout(60_000);

interface Line {
  level: "info" | "warn";
  event: string;
  fields: LogFields;
}

function recorder(): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  return {
    lines,
    info: (event, fields = {}) => void lines.push({ level: "info", event, fields }),
    warn: (event, fields = {}) => void lines.push({ level: "warn", event, fields }),
  };
}

/** Resolves when `cond()` holds; fails after a generous time (a wait for an event, not a speed bound). */
async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

const passwordOf = (url: string) => parseRedisUrl(url).password;

test("backoff: doubles from 0.1 s to at most 5 s, each delay drawn in its upper half", () => {
  const at = (r: number) => new RedisLink("redis://:pw@127.0.0.1:1", { log: recorder(), role: "t", random: () => r });
  expect([0, 1, 2, 3, 6, 20].map((n) => at(0).delayMs(n))).toEqual([50, 100, 200, 400, 2500, 2500]);
  expect([0, 1, 2, 3, 6, 20].map((n) => at(0.999999).delayMs(n))).toEqual([100, 200, 400, 800, 5000, 5000]);
});

test("a Redis URL is shown without its password, and a non-Redis URL is refused", () => {
  const p = parseRedisUrl("redis://app:s3cr3t@cache.example:6379/2");
  expect(p.shown).toBe("redis://app:***@cache.example:6379/2");
  expect(p.bare).not.toContain("s3cr3t");
  expect(p.password).toBe("s3cr3t");
  expect(() => parseRedisUrl("postgres://a:b@h/db")).toThrow(/expected redis:\/\//);
  expect(() => parseRedisUrl("not a url s3cr3t")).toThrow(/cannot be parsed/);
  try {
    parseRedisUrl("not a url s3cr3t");
  } catch (e) {
    expect((e as Error).message).not.toContain("s3cr3t");
  }
});

describe.skipIf(!hasRedis)("with redis-server", () => {
  let redis: RedisHandle;
  const links: RedisLink[] = [];
  const link = (log: Logger = recorder(), role = "test", url?: string) => {
    const l = new RedisLink(url ?? redis.url, { log, role }).start();
    links.push(l);
    return l;
  };
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const l of links) l.close();
    await redis?.stop();
  });

  test("a lost connection: one warning, retries, one line when back, and the password in none of them", async () => {
    const log = recorder();
    const l = link(log, "bus-publish");
    await l.ready();
    await redis.restart({ crash: true });
    await until(() => log.lines.some((x) => x.event === "redis_up"), "the link to come back");
    expect(await l.send("PING", [])).toBe("PONG");
    expect(log.lines.map((x) => `${x.level} ${x.event}`)).toEqual(["warn redis_down", "info redis_up"]);
    expect(log.lines[0]!.fields.redis).toBe(`redis://:***@127.0.0.1:${redis.port}`);
    expect(log.lines[0]!.fields.role).toBe("bus-publish");
    expect(JSON.stringify(log.lines)).not.toContain(passwordOf(redis.url));
    expect(l.counts.lost).toBe(1);
  });

  test("a wrong password is reported as such, without the password tried", async () => {
    const log = recorder();
    const wrong = redis.url.replace(/:[^:@/]*@/, ":not-the-password-42@");
    const l = link(log, "check", wrong);
    await until(() => log.lines.length > 0, "a report");
    await until(() => l.counts.failedAttempts >= 3, "retries");
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]!.event).toBe("redis_down");
    expect(String(log.lines[0]!.fields.error)).toMatch(/WRONGPASS|invalid username-password/i);
    expect(JSON.stringify(log.lines)).not.toContain("not-the-password-42");
    expect(l.up).toBe(false);
    l.close();
  });

  test("bus: a turn's payloads go out as one message per channel, in the order published", async () => {
    const pub = link();
    const sub = link();
    const bus = new Bus(pub, sub);
    const seen: Record<string, string[]> = { a: [], b: [] };
    bus.subscribe("t1:a", (p) => seen.a!.push(p));
    bus.subscribe("t1:b", (p) => seen.b!.push(p));
    await Promise.all([pub.ready(), sub.ready()]);
    await Bun.sleep(50); // the SUBSCRIBE is sent on connect; give it its round trip
    for (let i = 0; i < 1000; i++) bus.publish(i % 3 === 0 ? "t1:b" : "t1:a", `m${i}`);
    await until(() => seen.a!.length + seen.b!.length === 1000, "every payload");
    const want = (c: string) => Array.from({ length: 1000 }, (_, i) => i).filter((i) => (i % 3 === 0) === (c === "b")).map((i) => `m${i}`);
    expect(seen.a).toEqual(want("a"));
    expect(seen.b).toEqual(want("b"));
    expect(bus.stats.batches).toBe(2);
    bus.close();
  });

  test("bus: while the link is down payloads queue up to the bound, the rest are dropped and reported; the queue goes out, in order, when it is up", async () => {
    const losses: BusLoss[] = [];
    const sub = link();
    const pub = new RedisLink(redis.url, { log: recorder(), role: "late" });
    links.push(pub);
    const bus = new Bus(pub, sub, { maxQueued: 10, onLoss: (l) => losses.push(l) });
    const got: string[] = [];
    bus.subscribe("t2", (p) => got.push(p));
    await sub.ready();
    await Bun.sleep(50);
    for (let i = 0; i < 15; i++) bus.publish("t2", `m${i}`);
    await until(() => losses.length > 0, "the loss report");
    expect(losses).toEqual([{ side: "publish", channel: "t2", dropped: 5, why: "queue_full" }]);
    expect(bus.backlog).toBe(10);
    expect(bus.stats.dropped).toBe(5);
    pub.start();
    await until(() => got.length === 10, "the queued payloads");
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(bus.backlog).toBe(0);
    bus.close();
  });

  test("bus: after Redis restarts, the subscriber says what it may have missed and is subscribed again", async () => {
    const losses: BusLoss[] = [];
    const pub = link();
    const sub = link();
    const bus = new Bus(pub, sub, { onLoss: (l) => losses.push(l) });
    const got: string[] = [];
    bus.subscribe("t3", (p) => got.push(p));
    await Promise.all([pub.ready(), sub.ready()]);
    await Bun.sleep(50);
    bus.publish("t3", "before");
    await until(() => got.length === 1, "the first payload");
    await redis.restart({ crash: true });
    await until(() => losses.some((l) => l.side === "subscribe"), "the subscriber's loss report");
    expect(losses.find((l) => l.side === "subscribe")).toEqual({ side: "subscribe", channels: ["t3"] });
    await Promise.all([pub.ready(), sub.ready()]);
    await Bun.sleep(50);
    bus.publish("t3", "after");
    await until(() => got.length === 2, "a payload after the restart");
    expect(got).toEqual(["before", "after"]);
    bus.close();
  });

  test("liveness: a node stopped with SIGSTOP is reported gone within TTL + poll, and seen again after SIGCONT", async () => {
    const watcher = link();
    await watcher.ready();
    const live = new Liveness(watcher);
    const gone: [string, number][] = [];
    const seen: string[] = [];
    const stopWatch = live.watch(
      (n) => gone.push([n, performance.now()]),
      (n) => seen.push(n),
    );
    const child = Bun.spawn(["bun", `${import.meta.dir}/redis-beater.ts`, "node-b"], { env: { ...process.env, REDIS_URL: redis.url }, stdout: "pipe", stderr: "inherit" });
    try {
      const reader = child.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("beating");
      await until(() => seen.includes("node-b"), "the watcher to see node-b");
      const stoppedAt = performance.now();
      process.kill(child.pid, "SIGSTOP");
      await until(() => gone.length > 0, "node-b to be reported gone");
      expect(gone.map(([n]) => n)).toEqual(["node-b"]);
      expect(await live.alive("node-b")).toBe(false);
      // The measured figure (not asserted: the machine is shared).
      console.log(`liveness: SIGSTOP to reported gone ${Math.round(gone[0]![1] - stoppedAt)} ms (bound ${NODE_TTL_MS + NODE_POLL_MS} ms after the last beat)`);
      process.kill(child.pid, "SIGCONT");
      await until(() => seen.filter((n) => n === "node-b").length === 2, "node-b to be seen again");
      expect(await live.alive("node-b")).toBe(true);
    } finally {
      child.kill("SIGKILL");
      stopWatch();
    }
  }, 60_000);

  test("liveness: Redis restarting empty reports no live node gone; a node that stops during the grace is reported after it", async () => {
    const opts = { ttlMs: 600, beatMs: 150, pollMs: 100, graceMs: 1500 };
    // node-a's link comes back last (0.5-1 s after Redis), as a node whose backoff had grown would.
    const slow = new RedisLink(redis.url, { log: recorder(), role: "slow", minDelayMs: 1000, maxDelayMs: 1000 }).start();
    links.push(slow);
    const [w, a, b] = [link(), slow, link()];
    await Promise.all([w.ready(), a.ready(), b.ready()]);
    const gone: string[] = [];
    const stop = new Liveness(w, opts).watch((n) => gone.push(n));
    const beatA = new Liveness(a, opts).beat("node-a");
    const beatB = new Liveness(b, opts).beat("node-b");
    const live = new Liveness(w, opts);
    await until(async () => (await live.alive("node-a")) && (await live.alive("node-b")), "both beating");
    await Bun.sleep(300);
    await redis.restart({ crash: true });
    await Promise.all([w.ready(), a.ready(), b.ready()]);
    await beatB.stop();
    await until(() => gone.length > 0, "node-b to be reported gone");
    // node-a kept beating through the restart and beyond the grace: never reported.
    await until(async () => w.up && (await live.alive("node-a")), "node-a alive");
    await Bun.sleep(opts.graceMs + 3 * opts.ttlMs);
    expect(gone).toEqual(["node-b"]);
    await beatA.stop();
    stop();
  }, 60_000);

  test("buckets: the burst, then a refusal saying how long to wait; a key that is full again is gone", async () => {
    const b = new ClusterBuckets(link());
    await links.at(-1)!.ready();
    const takes = [];
    for (let i = 0; i < 4; i++) takes.push(await b.take("login:alice", { rate: 0.5, burst: 3, whenDown: "closed" }));
    expect(takes.map((t) => t.ok)).toEqual([true, true, true, false]);
    // An empty bucket at 0.5 token/s: the next token in at most 2 s (a little less, as time passed).
    expect(takes[3]!.waitMs).toBeGreaterThan(0);
    expect(takes[3]!.waitMs).toBeLessThanOrEqual(2000);
    const big = await b.take("login:bob", { rate: 1, burst: 10, cost: 10, whenDown: "closed" });
    expect(big.ok).toBe(true);
    expect((await b.take("login:bob", { rate: 1, burst: 10, cost: 2, whenDown: "closed" })).waitMs).toBeGreaterThan(1000);
    await expect(b.take("x", { rate: 1, burst: 2, cost: 3, whenDown: "open" })).rejects.toThrow(/cost ≤ burst/);
    const l = links.at(-1)!;
    const ttl = Number(await l.send("PTTL", ["securechat:bucket:login:alice"]));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(6000);
    await b.take("fast", { rate: 1000, burst: 5, whenDown: "open" });
    await until(async () => (await l.send("EXISTS", ["securechat:bucket:fast"])) === 0, "the refilled bucket's key to expire");
  });

  test("buckets: two nodes racing on one bucket take exactly its burst between them", async () => {
    const [x, y] = [link(), link()];
    await Promise.all([x.ready(), y.ready()]);
    const bx = new ClusterBuckets(x);
    const by = new ClusterBuckets(y);
    const o = { rate: 0.0001, burst: 30, whenDown: "closed" as const };
    const all = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? bx : by).take("flood:carol", o)));
    expect(all.filter((t) => t.ok)).toHaveLength(30);
    expect(all.every((t) => t.unchecked === undefined)).toBe(true);
  });

  test("buckets: after Redis restarts empty the script is loaded again; while it is unreachable, closed refuses and open allows", async () => {
    const l = link();
    await l.ready();
    const b = new ClusterBuckets(l);
    expect((await b.take("r", { rate: 1, burst: 1, whenDown: "closed" })).ok).toBe(true);
    await redis.restart({ crash: true });
    await l.ready();
    expect(await b.take("r", { rate: 1, burst: 1, whenDown: "closed" })).toEqual({ ok: true, waitMs: 0 });
    const nowhere = new RedisLink("redis://:pw@127.0.0.1:1", { log: recorder(), role: "nowhere" });
    const down = new ClusterBuckets(nowhere);
    expect(await down.take("r", { rate: 1, burst: 1, whenDown: "closed" })).toEqual({ ok: false, waitMs: 1000, unchecked: true });
    expect(await down.take("r", { rate: 1, burst: 1, whenDown: "open" })).toEqual({ ok: true, waitMs: 0, unchecked: true });
  });

  test("penalties: free failures, then a doubling penalty capped at maxMs, one record for every node; the key expires forgetMs after the last failure", async () => {
    const [x, y] = [link(), link()];
    await Promise.all([x.ready(), y.ready()]);
    const steps = { freeFailures: 2, baseMs: 1000, maxMs: 4000, forgetMs: 20_000 };
    const [px, py] = [new ClusterPenalties(x, steps), new ClusterPenalties(y, steps)];
    expect(await px.blockedFor("10.1.1.1")).toBe(0);
    const due = [];
    for (let i = 0; i < 6; i++) due.push(await (i % 2 ? py : px).failure("10.1.1.1"));
    expect(due).toEqual([0, 0, 1000, 2000, 4000, 4000]);
    const wait = (await py.blockedFor("10.1.1.1"))!;
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(4000);
    expect(await px.blockedFor("10.1.1.2")).toBe(0);
    const ttl = Number(await x.send("PTTL", ["securechat:penalty:10.1.1.1"]));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(20_000);
    const nowhere = new ClusterPenalties(new RedisLink("redis://:pw@127.0.0.1:1", { log: recorder(), role: "nowhere" }), steps);
    expect(await nowhere.failure("10.1.1.1")).toBeNull();
    expect(await nowhere.blockedFor("10.1.1.1")).toBeNull();
  });

  test("slots: two live nodes share one user's count; after Redis restarts empty each node writes its counts again", async () => {
    // Each node's beat and counts on one link, as a cluster node has them.
    const [x, y] = [link(), link()];
    await Promise.all([x.ready(), y.ready()]);
    // (The slots first, as node.ts makes them: their counts must still go out after the beat.)
    const [sx, sy] = [new ClusterSlots(x, "slot-x", 60_000), new ClusterSlots(y, "slot-y", 60_000)];
    const beats = [new Liveness(x).beat("slot-x"), new Liveness(y).beat("slot-y")];
    await until(async () => (await x.send("EXISTS", ["{securechat}:node:slot-x"])) === 1 && (await x.send("EXISTS", ["{securechat}:node:slot-y"])) === 1, "both nodes' liveness keys");
    expect(await sx.claim("dora", 3)).toEqual({ ok: true, count: 0 });
    expect(await sy.claim("dora", 3)).toEqual({ ok: true, count: 1 });
    expect(await sx.claim("dora", 3)).toEqual({ ok: true, count: 2 });
    expect(await sy.claim("dora", 3)).toEqual({ ok: false, count: 3 });
    expect([sx.held("dora"), sy.held("dora")]).toEqual([2, 1]);
    sy.release("dora");
    await until(async () => (await sx.claim("dora", 3)).ok, "y's released slot");
    expect(await sy.claim("dora", 3)).toEqual({ ok: false, count: 3 });

    // Redis forgets everything; the nodes beat again and write what they hold: x's three still count.
    await redis.restart({ crash: true });
    await Promise.all([x.ready(), y.ready()]);
    await until(async () => (await y.send("HGET", ["{securechat}:conns:dora", "slot-x"])) === "3", "x's count written again");
    expect(await sy.claim("dora", 3)).toEqual({ ok: false, count: 3 });
    for (const b of beats) await b.stop();
    sx.close();
    sy.close();
  });
});
