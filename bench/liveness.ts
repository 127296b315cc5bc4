/**
 * How long after a node stops (SIGSTOP) the liveness watcher
 * (src/store/redis/liveness.ts) reports it gone, against a real redis-server:
 * a child process beats, is stopped at a random point of its beat cycle, and
 * the time from the signal to the report is taken, RUNS times. The bound is
 * TTL + POLL after the last beat (6 s with the defaults); from the signal it
 * is at most that. Prints the figures; never fails on them.
 *
 * `bun run bench/liveness.ts [RUNS]` (default 8).
 */
import { silentLogger } from "../src/log.ts";
import { RedisLink } from "../src/store/redis/link.ts";
import { Liveness, NODE_POLL_MS, NODE_TTL_MS } from "../src/store/redis/liveness.ts";
import { requireEngines, startRedis } from "../test/engines.ts";

const RUNS = Number(process.argv[2] ?? 8);
if (!requireEngines("redis")) process.exit(process.env.CI === "true" ? 1 : 0);
const r = await startRedis();
const link = new RedisLink(r.url, { log: silentLogger, role: "watcher" }).start();
await link.ready();
const live = new Liveness(link);
const res: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const node = `bench-${i}`;
  let goneAt = 0;
  let seen = false;
  const stop = live.watch(
    (n) => void (n === node && (goneAt = performance.now())),
    (n) => void (n === node && (seen = true)),
  );
  // The Redis URL holds its password: the child gets it in its environment.
  const child = Bun.spawn(["bun", `${import.meta.dir}/../test/store/redis-beater.ts`, node], { env: { ...process.env, REDIS_URL: r.url }, stdout: "pipe" });
  await child.stdout.getReader().read();
  while (!seen) await Bun.sleep(10);
  await Bun.sleep(Math.random() * 1000);
  const t = performance.now();
  process.kill(child.pid, "SIGSTOP");
  while (!goneAt) await Bun.sleep(5);
  res.push(Math.round(goneAt - t));
  child.kill("SIGKILL");
  stop();
}
res.sort((a, b) => a - b);
console.log(`liveness: SIGSTOP to reported gone, ${RUNS} runs (ms): ${res.join(" ")}; max ${res.at(-1)}; bound ${NODE_TTL_MS + NODE_POLL_MS} after the last beat`);
link.close();
await r.stop();
