/**
 * `serve --database/--redis` and SECURECHAT_DATABASE_URL / SECURECHAT_REDIS_URL:
 * both or neither; a password in argv draws a warning; no URL is echoed but
 * redacted; serve itself refuses them until cluster mode is wired, touching
 * nothing; serve --check checks the engines for real (test/engines.ts):
 * versions, synchronous_commit, pending schema steps, Redis's eviction
 * policy, and each failure as the operator reads it.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { RedisClient, type SQL } from "bun";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT } from "../../src/commands/exit.ts";
import { type CheckResult, runChecks } from "../../src/commands/servecheck.ts";
import { type Component, migrate, openPg } from "../../src/store/pg/pg.ts";
import { runCli } from "../cli.ts";
import { type PostgresHandle, type RedisHandle, requireEngines, startPostgres, startRedis } from "../engines.ts";

setDefaultTimeout(60_000);
const hasEngines = requireEngines("postgres", "redis");
const PG = "postgres://chat:pg-s3cr3t-pw@127.0.0.1:1/chat";
const RD = "redis://:rd-s3cr3t-pw@127.0.0.1:1";

/** runCli with these environment variables set for the call only. */
async function withEnv(env: Record<string, string | undefined>, ...argv: string[]) {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) v === undefined ? delete process.env[k] : (process.env[k] = v);
  try {
    return await runCli(...argv);
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
  }
}

const scratch = mkdtempSync(join(tmpdir(), "serve-engines-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const clean = { SECURECHAT_DATABASE_URL: undefined, SECURECHAT_REDIS_URL: undefined };

describe("serve's engine flags", () => {
  test("one engine without the other is a usage error saying why, whichever way it is given", async () => {
    const data = join(scratch, "one");
    for (const [env, argv, lacks] of [
      [{}, ["--database", PG], "--redis (or SECURECHAT_REDIS_URL)"],
      [{ SECURECHAT_REDIS_URL: RD }, [], "--database (or SECURECHAT_DATABASE_URL)"],
    ] as const) {
      const r = await withEnv({ ...clean, ...env }, "serve", "--port", "0", "--data", data, ...argv);
      expect(r.code).toBe(EXIT.USAGE);
      expect(r.stderr).toContain(`without ${lacks}: a cluster node needs both`);
      expect(r.stdout + r.stderr).not.toMatch(/s3cr3t/);
    }
    expect(existsSync(data)).toBe(false);
  });

  test("serve with both, the engines unreachable, refuses to start, saying which and why, and touches nothing", async () => {
    const data = join(scratch, "both");
    const r = await withEnv({ SECURECHAT_DATABASE_URL: PG, SECURECHAT_REDIS_URL: RD }, "serve", "--port", "0", "--data", data);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(r.stderr).toContain("cannot start a cluster node:");
    expect(r.stderr).toContain("FAIL postgres: postgres://chat:***@127.0.0.1:1/chat cannot be used");
    expect(r.stderr).toContain("FAIL redis: redis://:***@127.0.0.1:1 cannot be used");
    expect(r.stdout + r.stderr).not.toMatch(/s3cr3t/);
    expect(existsSync(data)).toBe(false);
  });

  test("a password in a flag draws a warning naming the variable to use; the password is not echoed", async () => {
    const r = await withEnv(clean, "serve", "--port", "0", "--data", join(scratch, "w"), "--database", PG, "--redis", RD);
    expect(r.stderr).toContain("warning: --database holds a password, which every user of this machine can read with ps; set SECURECHAT_DATABASE_URL instead");
    expect(r.stderr).toContain("set SECURECHAT_REDIS_URL instead");
    expect(r.stdout + r.stderr).not.toMatch(/s3cr3t/);
    const env = await withEnv({ SECURECHAT_DATABASE_URL: PG, SECURECHAT_REDIS_URL: RD }, "serve", "--port", "0", "--data", join(scratch, "w"));
    expect(env.stderr).not.toContain("warning");
  });

  test("a URL that is not one, or of the wrong kind, is refused without being echoed", async () => {
    const bad = await withEnv(clean, "serve", "--data", join(scratch, "b"), "--database", "chat:pg-s3cr3t-pw at db", "--redis", RD);
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.stderr).toContain("--database is a chat: URL, not postgres:// or postgresql://");
    const junk = await withEnv(clean, "serve", "--data", join(scratch, "b"), "--database", PG, "--redis", "rd-s3cr3t-pw");
    expect(junk.stderr).toContain("--redis is not a URL");
    const kind = await withEnv({ ...clean, SECURECHAT_REDIS_URL: "http://u:rd-s3cr3t-pw@h/" }, "serve", "--data", join(scratch, "b"), "--database", PG);
    expect(kind.code).toBe(EXIT.USAGE);
    expect(kind.stderr).toContain("SECURECHAT_REDIS_URL is a http: URL, not redis:// or rediss://");
    for (const r of [bad, junk, kind]) expect(r.stdout + r.stderr).not.toMatch(/s3cr3t/);
  });
});

describe.skipIf(!hasEngines)("serve --check with the engines", () => {
  let pg: PostgresHandle;
  let redis: RedisHandle;
  let sql: SQL;
  let rc: RedisClient;
  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPostgres({ fsync: false, settings: { synchronous_commit: "on" } }), startRedis()]);
    sql = openPg(pg.url);
    rc = new RedisClient(redis.url);
    await rc.connect();
  });
  afterAll(async () => {
    rc?.close();
    await sql?.close();
    await Promise.all([pg?.stop(), redis?.stop()]);
  });
  const secrets = () => [new URL(pg.url).password, new URL(redis.url).password];
  const lines = (out: string, name: string) => out.split("\n").filter((l) => new RegExp(`^\\S+\\s+${name}:`).test(l));
  const check = (env: Record<string, string>) => withEnv(env, "serve", "--check", "--port", "0", "--data", join(scratch, "c"));

  test("healthy engines: each check ok, naming versions, and no password anywhere", async () => {
    const r = await check({ SECURECHAT_DATABASE_URL: pg.url, SECURECHAT_REDIS_URL: redis.url });
    expect(r.code).toBe(0);
    expect(lines(r.stdout, "postgres")[0]).toMatch(new RegExp(`^ok   postgres: postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${pg.port}/postgres answers: PostgreSQL 1[5-9]`));
    expect(lines(r.stdout, "postgres-commit")).toEqual(["ok   postgres-commit: synchronous_commit is on: a COMMIT returns once it is durable"]);
    // a fresh database: the first node to start makes the tables
    expect(lines(r.stdout, "schema accounts")).toEqual([expect.stringMatching(/^warn schema accounts: \d+ of \d+ steps to run \(the database is at version 0\) \(nothing to do: the first node to start runs them/)]);
    expect(lines(r.stdout, "redis")[0]).toMatch(new RegExp(`^ok   redis: redis://:\\*\\*\\*@127\\.0\\.0\\.1:${redis.port} answers: Redis [7-9]\\.`));
    expect(lines(r.stdout, "redis-eviction")).toEqual(["ok   redis-eviction: maxmemory-policy is noeviction, no maxmemory: no key is ever evicted"]);
    for (const s of secrets()) expect(r.stdout + r.stderr).not.toContain(s);
  });

  test("synchronous_commit off, and an evicting Redis, fail with what to do", async () => {
    await sql.unsafe("ALTER DATABASE postgres SET synchronous_commit = off");
    await rc.send("CONFIG", ["SET", "maxmemory", "64mb"]);
    await rc.send("CONFIG", ["SET", "maxmemory-policy", "allkeys-lru"]);
    try {
      const r = await check({ SECURECHAT_DATABASE_URL: pg.url, SECURECHAT_REDIS_URL: redis.url });
      expect(r.code).toBe(EXIT.FAILURE);
      expect(lines(r.stdout, "postgres-commit")[0]).toStartWith("FAIL postgres-commit: synchronous_commit is off: a COMMIT returns before it is on disk");
      expect(lines(r.stdout, "redis-eviction")[0]).toStartWith("FAIL redis-eviction: maxmemory-policy is allkeys-lru, maxmemory 64 MiB: at the limit Redis evicts any key (set maxmemory-policy noeviction");
      expect(r.stderr).toContain("serve --check: 2 of");
      await rc.send("CONFIG", ["SET", "maxmemory-policy", "volatile-lru"]);
      const v = await check({ SECURECHAT_DATABASE_URL: pg.url, SECURECHAT_REDIS_URL: redis.url });
      expect(lines(v.stdout, "redis-eviction")[0]).toStartWith("warn redis-eviction: maxmemory-policy is volatile-lru, maxmemory 64 MiB: at the limit Redis evicts keys with a time to live");
    } finally {
      await sql.unsafe("ALTER DATABASE postgres RESET synchronous_commit");
      await rc.send("CONFIG", ["SET", "maxmemory-policy", "noeviction"]);
      await rc.send("CONFIG", ["SET", "maxmemory", "0"]);
    }
  });

  test("unreachable engines and wrong passwords fail, naming the engine and why, never the password", async () => {
    const wrongPg = pg.url.replace(/:[^:@/]*@/, ":wrong-pg-pw-7@");
    const wrongRd = redis.url.replace(/:[^:@/]*@/, ":wrong-rd-pw-7@");
    const r = await check({ SECURECHAT_DATABASE_URL: wrongPg, SECURECHAT_REDIS_URL: wrongRd });
    expect(r.code).toBe(EXIT.FAILURE);
    expect(lines(r.stdout, "postgres")[0]).toMatch(/^FAIL postgres: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres cannot be used: .*password/i);
    expect(lines(r.stdout, "redis")[0]).toMatch(/^FAIL redis: redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ cannot be used: WRONGPASS/);
    expect(r.stdout + r.stderr).not.toMatch(/wrong-(pg|rd)-pw-7/);
    const none = await check({ SECURECHAT_DATABASE_URL: PG, SECURECHAT_REDIS_URL: RD });
    expect(lines(none.stdout, "postgres")[0]).toStartWith("FAIL postgres: postgres://chat:***@127.0.0.1:1/chat cannot be used:");
    expect(lines(none.stdout, "redis")[0]).toStartWith("FAIL redis: redis://:***@127.0.0.1:1 cannot be used: cannot connect: ECONNREFUSED");
    expect(none.stdout + none.stderr).not.toMatch(/s3cr3t/);
  });

  test("schema: steps pending is a warning (the first node runs them), a database newer than the binary fails", async () => {
    const parts: Component[] = [
      { name: "chk_done", steps: ["CREATE TABLE chk_done_a (x int)"] },
      { name: "chk_pending", steps: ["CREATE TABLE chk_pending_a (x int)", "CREATE TABLE chk_pending_b (x int)"] },
      { name: "chk_newer", steps: ["CREATE TABLE chk_newer_a (x int)"] },
    ];
    await migrate(sql, parts[0]!);
    await migrate(sql, { name: "chk_pending", steps: [parts[1]!.steps[0]!] });
    await migrate(sql, { name: "chk_newer", steps: [parts[2]!.steps[0]!, "CREATE TABLE chk_newer_b (x int)"] });
    const results = await runChecks({
      dataDir: join(scratch, "c"), host: "127.0.0.1", port: 0, rotateBytes: 4096, admins: new Set(), witnesses: [],
      tryListen: () => null, listenFailure: (e) => e,
      engines: { database: pg.url, redis: redis.url, components: parts },
    });
    const schema = results.filter((x) => x.check.startsWith("schema")).map((x: CheckResult) => `${x.status} ${x.check}: ${x.message}`);
    expect(schema).toEqual([
      "ok schema chk_done: up to date (version 1)",
      "warn schema chk_pending: 1 of 2 steps to run (the database is at version 1)",
      "FAIL schema chk_newer: the database's chk_newer tables are at version 2, newer than this securechat knows (1): a newer node migrated them; run that version",
    ]);
    expect(await sql`SELECT to_regclass('chk_pending_b') IS NULL AS untouched`).toEqual([{ untouched: true }] as never);
  });
});
