/**
 * For the e2e scripts: starts PostgreSQL and Redis (test/engines.ts), writes
 * `SECURECHAT_DATABASE_URL=…` and `SECURECHAT_REDIS_URL=…` lines to the file
 * named by argv[2] (made 0600: the URLs hold the passwords; a script reads
 * it into its environment, never into argv), then `ready` on stdout, and
 * runs until SIGTERM, when it stops both and removes their directories.
 * Without the binaries it prints `missing: …` and exits 3 (1 under CI=true).
 */
import { writeFileSync } from "node:fs";
import { requireEngines, startPostgres, startRedis } from "../engines.ts";

const out = process.argv[2];
if (!out) throw new Error("usage: bun test/e2e/engines.ts ENV_FILE");
if (!requireEngines("postgres", "redis")) {
  console.log("missing: postgresql and/or redis-server");
  process.exit(3);
}
const [pg, redis] = await Promise.all([startPostgres({ fsync: false, settings: { synchronous_commit: "on" } }), startRedis()]);
writeFileSync(out, `SECURECHAT_DATABASE_URL=${pg.url}\nSECURECHAT_REDIS_URL=${redis.url}\nREDIS_PORT=${redis.port}\nPG_PORT=${pg.port}\n`, { mode: 0o600 });
console.log("ready");
await new Promise<void>((resolve) => {
  process.once("SIGTERM", resolve);
  process.once("SIGINT", resolve);
});
await Promise.all([pg.stop(), redis.stop()]);
