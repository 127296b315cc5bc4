/**
 * The engine harness (test/engines.ts) against the real binaries: each engine
 * starts, answers, survives restart() (Postgres keeps its data, Redis comes
 * back empty since it has no persistence), stops, and leaves no process and no
 * file behind.
 */
import { describe, expect, test } from "bun:test";
import { RedisClient, SQL } from "bun";
import { existsSync, readdirSync, statSync } from "node:fs";
import { alive, engineVerdict, requireEngines, startPostgres, startRedis } from "./engines.ts";

const T = 120_000;
const hasPostgres = requireEngines("postgres");
const hasRedis = requireEngines("redis");

async function until(what: string, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe("a missing engine", () => {
  const found = { postgres: null, redis: "/usr/bin/redis-server" };
  test("on a developer's machine: skipped with a warning that names the package to install", () => {
    expect(engineVerdict(["redis"], found, false)).toEqual({ run: true });
    const v = engineVerdict(["postgres", "redis"], found, false);
    expect(v.run).toBe(false);
    if (!v.run) expect(v.warning).toMatch(/SKIPPING tests that need postgres:[\s\S]*apt-get install -y postgresql\n/);
  });

  test("under CI=true: a failure, never a skip", () => {
    expect(() => engineVerdict(["postgres"], found, true)).toThrow(/postgres not found.*CI must install them \(apt-get install -y postgresql\)/);
    expect(() => engineVerdict(["redis"], { postgres: "/x", redis: null }, true)).toThrow(/apt-get install -y redis-server/);
  });
});

describe.skipIf(!hasPostgres)("startPostgres", () => {
  test("answers a query, keeps its data across restart() and a crash restart, then stops leaving no process and no files", async () => {
    const pg = await startPostgres();
    const { dir } = pg;
    const pids: number[] = [pg.pid];
    try {
      expect(pg.url).toStartWith(`postgres://postgres:`);
      // The server itself runs as the postgres user when we are root (postgres refuses root).
      const uid = statSync(`/proc/${pg.pid}`).uid;
      if (process.getuid!() === 0) expect(uid).not.toBe(0);
      expect(existsSync(`${dir}/data/PG_VERSION`)).toBe(true);
      // No password file is left next to the data.
      expect(existsSync(`${dir}/pw`)).toBe(false);

      let sql = new SQL(pg.url);
      const [row] = await sql`SELECT 40 + 2 AS answer, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc`;
      expect(row).toEqual({ answer: 42, fsync: "on", sc: "on" });
      await sql`CREATE TABLE kept (n int)`;
      await sql`INSERT INTO kept VALUES (1), (2), (3)`;
      await sql.close();

      const port = pg.port;
      await pg.restart();
      pids.push(pg.pid);
      expect(pg.port).toBe(port);
      expect(alive(pids[0]!)).toBe(false);
      sql = new SQL(pg.url);
      expect((await sql`SELECT sum(n)::int AS s FROM kept`)[0]).toEqual({ s: 6 });
      await sql`INSERT INTO kept VALUES (4)`;
      await sql.close();

      await pg.restart({ crash: true });
      pids.push(pg.pid);
      sql = new SQL(pg.url);
      // A committed row survives an immediate shutdown (recovered from the WAL).
      expect((await sql`SELECT sum(n)::int AS s FROM kept`)[0]).toEqual({ s: 10 });
      await sql.close();
      expect(pg.cpuSeconds()).toBeGreaterThanOrEqual(0);
    } finally {
      await pg.stop();
    }
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    await pg.stop(); // idempotent
  }, T);

  test("wrong password is refused (the URL's password is real)", async () => {
    const pg = await startPostgres({ fsync: false });
    try {
      const bad = new SQL(pg.url.replace(/:[^:@/]+@/, ":wrong@"));
      await expect(bad`SELECT 1`.then(() => "accepted")).rejects.toThrow();
      await bad.close().catch(() => {});
      const sql = new SQL(pg.url);
      expect((await sql`SELECT current_setting('fsync') AS f`)[0]).toEqual({ f: "off" });
      await sql.close();
    } finally {
      await pg.stop();
    }
  }, T);

  test("two servers run side by side on different ports", async () => {
    const [a, b] = await Promise.all([startPostgres({ fsync: false }), startPostgres({ fsync: false })]);
    try {
      expect(a.port).not.toBe(b.port);
      expect(a.dir).not.toBe(b.dir);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    expect(alive(a.pid) || alive(b.pid)).toBe(false);
  }, T);
});

describe.skipIf(!hasRedis)("startRedis", () => {
  test("answers PING and a pub/sub round trip, comes back empty after restart(), then stops leaving no process and no files", async () => {
    const r = await startRedis();
    const { dir } = r;
    const pids: number[] = [r.pid];
    try {
      expect(r.url).toStartWith("redis://:");
      const client = new RedisClient(r.url);
      const sub = new RedisClient(r.url);
      try {
        expect(await client.send("PING", [])).toBe("PONG");
        const got: string[] = [];
        await sub.subscribe("room", (message) => got.push(message));
        await client.publish("room", "hello");
        await until("the published message", async () => got.length === 1);
        expect(got).toEqual(["hello"]);

        await client.set("k", "v");
        expect(await client.get("k")).toBe("v");
      } finally {
        client.close();
        sub.close();
      }

      await r.restart();
      pids.push(r.pid);
      expect(alive(pids[0]!)).toBe(false);
      const after = new RedisClient(r.url);
      try {
        expect(await after.get("k")).toBeNull();
        expect(await after.send("DBSIZE", [])).toBe(0);
      } finally {
        after.close();
      }
      // No persistence: nothing was written to its directory.
      expect(readdirSync(dir).filter((f) => f !== "redis.log")).toEqual([]);

      await r.restart({ crash: true });
      pids.push(r.pid);
      const again = new RedisClient(r.url);
      expect(await again.send("PING", [])).toBe("PONG");
      again.close();
    } finally {
      await r.stop();
    }
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  }, T);

  test("a client without the password is refused", async () => {
    const r = await startRedis();
    try {
      const anon = new RedisClient(`redis://127.0.0.1:${r.port}`);
      await expect(anon.send("GET", ["k"])).rejects.toThrow(/NOAUTH|auth/i);
      anon.close();
    } finally {
      await r.stop();
    }
  }, T);
});
