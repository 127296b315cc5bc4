/**
 * A stand-in cluster node for test/store/redis.test.ts: beats as node
 * argv[2] on the Redis at $REDIS_URL (from the environment, never argv)
 * until killed, and prints "beating" once its first beat is in.
 */
import { silentLogger } from "../../src/log.ts";
import { RedisLink } from "../../src/store/redis/link.ts";
import { Liveness } from "../../src/store/redis/liveness.ts";

const link = new RedisLink(process.env.REDIS_URL!, { log: silentLogger, role: "beater" }).start();
await link.ready();
const live = new Liveness(link);
live.beat(process.argv[2]!);
while (!(await live.alive(process.argv[2]!))) await Bun.sleep(10);
console.log("beating");
