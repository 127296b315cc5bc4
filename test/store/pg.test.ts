/**
 * src/store/pg/pg.ts against a real PostgreSQL (test/engines.ts): migrations
 * run each step once even with several nodes starting together, a database
 * a newer binary migrated is refused untouched, and a URL's password never
 * reaches what may be shown.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { SQL } from "bun";
import { type Component, migrate, openPg, pendingSteps, redactUrl, schemaVersion } from "../../src/store/pg/pg.ts";
import { type PostgresHandle, requireEngines, startPostgres } from "../engines.ts";

const hasPg = requireEngines("postgres");

describe.skipIf(!hasPg)("migrations", () => {
  let pg: PostgresHandle;
  let sql: SQL;
  beforeAll(async () => {
    pg = await startPostgres({ fsync: false });
    sql = openPg(pg.url);
  });
  afterAll(async () => {
    await sql?.close();
    await pg?.stop();
  });

  const v1: Component = { name: "things", steps: ["CREATE TABLE things (id bigint PRIMARY KEY); CREATE TABLE runs (step int)", "INSERT INTO runs VALUES (2); ALTER TABLE things ADD COLUMN note text"] };

  test("five nodes migrating at once run each step exactly once, and a second run changes nothing", async () => {
    const pools = Array.from({ length: 5 }, () => openPg(pg.url, { max: 1 }));
    const results = await Promise.all(pools.map((p) => migrate(p, v1)));
    await Promise.all(pools.map((p) => p.close()));
    expect(results.map((r) => r.to)).toEqual([2, 2, 2, 2, 2]);
    expect(results.filter((r) => r.from === 0)).not.toHaveLength(0);
    expect(await sql`SELECT count(*)::int AS n FROM runs`).toEqual([{ n: 1 }] as never);
    expect(await migrate(sql, v1)).toEqual({ from: 2, to: 2 });
    expect(await pendingSteps(sql, v1)).toBe(0);
    expect(await pendingSteps(sql, { name: "things", steps: [...v1.steps, "SELECT 1"] })).toBe(1);
  });

  test("a database a newer binary migrated is refused, and left as it was", async () => {
    const newer: Component = { name: "later", steps: ["CREATE TABLE later_a (x int)", "CREATE TABLE later_b (x int)"] };
    await migrate(sql, newer);
    const older: Component = { name: "later", steps: [newer.steps[0]!] };
    await expect(migrate(sql, older)).rejects.toThrow(/newer than this securechat knows \(1\)/);
    await expect(pendingSteps(sql, older)).rejects.toThrow(/version 2/);
    expect(await schemaVersion(sql, newer)).toBe(2);
  });

  test("a failing step is rolled back whole, and the version stays before it", async () => {
    const bad: Component = { name: "bad", steps: ["CREATE TABLE bad_a (x int)", "CREATE TABLE bad_b (x int); INSERT INTO nowhere VALUES (1)"] };
    await expect(migrate(sql, bad)).rejects.toThrow();
    expect(await schemaVersion(sql, bad)).toBe(1);
    expect(await sql`SELECT to_regclass('bad_b') IS NULL AS gone`).toEqual([{ gone: true }] as never);
  });
});

test("redactUrl keeps where, never the password", () => {
  expect(redactUrl("postgres://chat:s3cr3t-pw@db.example:5432/chat")).toBe("postgres://chat:***@db.example:5432/chat");
  expect(redactUrl("redis://:hunter2@127.0.0.1:6379")).not.toContain("hunter2");
  expect(redactUrl("postgres://db.example/chat")).toBe("postgres://db.example/chat");
  expect(redactUrl("not a url s3cr3t")).not.toContain("s3cr3t");
});
