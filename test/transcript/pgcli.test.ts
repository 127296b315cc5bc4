/**
 * `transcript verify|export|follow|checkpoint|prove|tiles --database` against a real PostgreSQL
 * (test/engines.ts) holding a log written by the writer on PgStorage: the
 * same report and lines as over the directory it stands for, the directory
 * written back out byte for byte, a proof and tiles that check out with the
 * log's key alone, followed as later runs commit, a line altered in the table failing with
 * exit 5 at its file and line, and the URL's password never shown.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { SQL } from "bun";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { fingerprint } from "../../src/fingerprint.ts";
import { openPg, redactUrl } from "../../src/store/pg/pg.ts";
import { followSource } from "../../src/transcript/export.ts";
import { formatVerifierKey, parseVerifierKey } from "../../src/transcript/note.ts";
import { databaseFollowSource } from "../../src/transcript/pgread.ts";
import { PgStorage } from "../../src/transcript/pgstorage.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { runCli } from "../cli.ts";
import { type PostgresHandle, requireEngines, startPostgres } from "../engines.ts";
import { hostKeyPair, tempDir } from "./helpers.ts";
import { checkLikeAMonitor, lines } from "./monitor.ts";

const hasPg = requireEngines("postgres");

/** Polls until `cond()` (a generous bound for an event, not a speed claim). */
async function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(20);
  }
}
const HOST = hostKeyPair(9);

describe.skipIf(!hasPg)("transcript verify|export|follow|checkpoint|prove|tiles --database", () => {
  let pg: PostgresHandle;
  let sql: SQL;
  let password: string;
  const pin = () => fingerprint(HOST.publicKey);

  /** A run of the writer on the database: `n` messages, then a clean stop. */
  async function writeRun(texts: string[], firstRoomSeq: number): Promise<void> {
    const storage = await PgStorage.open(sql, { holder: "test", log: silentLogger });
    const w = TranscriptWriter.openOn(storage!, { ...DEFAULT_WRITER, fsync: "always", checkpointEvery: 4, rotateBytes: 1500, dir: "(database)", hostKey: HOST, version: "test", log: silentLogger });
    await Promise.all(texts.map((text, i) => w.append("message", { room: "ops", room_seq: firstRoomSeq + i, from: "alice", text }).durable));
    w.close("done");
    await w.closed();
  }

  beforeAll(async () => {
    pg = await startPostgres({ fsync: false });
    password = new URL(pg.url).password;
    sql = openPg(pg.url, { max: 2 });
    await writeRun(Array.from({ length: 20 }, (_, i) => `hello ${i}`), 1);
  }, 60_000);
  afterAll(async () => {
    await sql?.close();
    await pg?.stop();
  });

  test("verify and export over the database say and print what they say and print over the directory it exports to", async () => {
    const dir = join(tempDir("pgcli"), "transcript");
    const wrote = await runCli("transcript", "export", "--database", pg.url, "--directory", dir, "--host-key", pin());
    expect(wrote.code).toBe(0);
    expect(readdirSync(dir).length).toBeGreaterThan(1);
    expect(wrote.stderr).toContain(`lines in ${readdirSync(dir).length} files to ${dir}`);
    const overDir = await runCli("transcript", "verify", dir, "--host-key", pin());
    const overDb = await runCli("transcript", "verify", "--database", pg.url, "--host-key", pin());
    expect(overDir.code).toBe(0);
    expect(overDb.code).toBe(0);
    expect(overDb.stdout).toBe(overDir.stdout);
    const exDir = await runCli("transcript", "export", "--data", join(dir, ".."), "--stored");
    const exDb = await runCli("transcript", "export", "--database", pg.url, "--stored");
    expect(exDb.code).toBe(0);
    expect(exDb.stdout).toBe(exDir.stdout);
    expect(exDb.stdout.split("\n").filter((l) => l.includes('"type":"message"'))).toHaveLength(20);
    for (const r of [wrote, overDb, exDb]) expect(r.stdout + r.stderr).not.toContain(password);
  });

  test("SECURECHAT_DATABASE_URL is read when no directory is named", async () => {
    process.env.SECURECHAT_DATABASE_URL = pg.url;
    try {
      const r = await runCli("transcript", "verify", "--host-key", pin());
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^PASS: 29 entries in \d+ files/);
    } finally {
      delete process.env.SECURECHAT_DATABASE_URL;
    }
  });

  test("a line altered in the table fails verify with exit 5, naming its file and line", async () => {
    const row = (await sql`SELECT seq, file, line, bytes FROM log_lines WHERE convert_from(bytes, 'UTF8') LIKE '%hello 7%'`)[0];
    const forged = Buffer.from(Buffer.from(row.bytes).toString("utf8").replace("hello 7", "hello 8"));
    await sql`UPDATE log_lines SET bytes = ${forged} WHERE seq = ${row.seq}`;
    try {
      const r = await runCli("transcript", "verify", "--database", pg.url, "--host-key", pin());
      expect(r.code).toBe(5);
      expect(r.stderr).toContain(`FAIL: ${row.file}:${row.line}:`);
      expect(r.stdout + r.stderr).not.toContain(password);
    } finally {
      await sql`UPDATE log_lines SET bytes = ${row.bytes} WHERE seq = ${row.seq}`;
    }
  });

  test("a database that cannot be reached is exit 1, named without its password", async () => {
    const down = pg.url.replace(/:(\d+)\//, ":1/");
    const r = await runCli("transcript", "verify", "--database", down, "--host-key", pin());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(redactUrl(down));
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  test("follow over the database: what is there verified, then each line committed later, in order; a log that loses lines fails", async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    let caughtUp = 0;
    const following = followSource(databaseFollowSource(sql, "db"), { fromEnd: true, signal: stop.signal, pollMs: 50, hostKey: HOST.publicKey, onCaughtUp: (s) => (caughtUp = s.entries) }, { write: (l) => void lines.push(l) });
    await until(() => caughtUp > 0);
    expect(lines).toEqual([]);
    await writeRun(["later 1", "later 2"], 100);
    await until(() => lines.some((l) => l.includes('"type":"server_stop"')));
    const texts = lines.filter((l) => l.includes('"type":"message"')).map((l) => JSON.parse(l).text);
    expect(texts).toEqual(["later 1", "later 2"]);
    stop.abort();
    const summary = await following;
    expect(summary.entries).toBe(Number((await sql`SELECT seq FROM log_head`)[0].seq));

    // Rows removed under a follower: it says the log lost lines.
    const again = followSource(databaseFollowSource(sql, "db"), { pollMs: 50, hostKey: HOST.publicKey }, { write: () => {} });
    const head = (await sql`SELECT seq, hash FROM log_head`)[0];
    await Bun.sleep(200);
    const saved = await sql`SELECT * FROM log_lines WHERE seq > ${Number(head.seq) - 3}`;
    await sql`DELETE FROM log_lines WHERE seq > ${Number(head.seq) - 3}`;
    await sql`UPDATE log_head SET seq = ${Number(head.seq) - 3}`;
    try {
      await expect(again).rejects.toThrow(/lost lines while being followed/);
    } finally {
      await sql`INSERT INTO log_lines ${sql(saved)}`;
      await sql`UPDATE log_head SET seq = ${head.seq}`;
    }
  }, 60_000);

  test("checkpoint, prove, tiles and verify --tree-only over the database print what they print over the data directory it exports to; the proof and the tiles check out with the log's key alone", async () => {
    const data = tempDir("pgcli-data");
    const dir = join(data, "transcript");
    expect((await runCli("transcript", "export", "--database", pg.url, "--directory", dir, "--host-key", pin())).code).toBe(0);
    const exported = lines(dir);

    const cpDir = await runCli("transcript", "checkpoint", "--data", data);
    const cpDb = await runCli("transcript", "checkpoint", "--database", pg.url);
    expect(cpDb.code).toBe(0);
    expect(cpDb.stdout).toBe(cpDir.stdout);
    // After the warning that the URL in argv shows its password.
    expect(cpDb.stderr).toEndWith(cpDir.stderr);
    const origin = cpDb.stdout.split("\n")[0]!;
    const vkey = formatVerifierKey(origin, HOST.publicKey);

    const treeDir = await runCli("transcript", "verify", dir, "--tree-only", "--host-key", pin());
    const treeDb = await runCli("transcript", "verify", "--database", pg.url, "--tree-only", "--host-key", pin());
    expect(treeDb.code).toBe(0);
    expect(treeDb.stdout).toBe(treeDir.stdout);

    // The proof of an entry, checked offline with the log's verifier key: the line it proves is the one stored.
    const proofFile = join(tempDir("pgcli-proof"), "7.tlog-proof");
    const proved = await runCli("transcript", "prove", "--database", pg.url, "--seq", "7");
    expect(proved.code).toBe(0);
    writeFileSync(proofFile, proved.stdout);
    const checked = await runCli("transcript", "verify-proof", proofFile, "--vkey", vkey);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toBe(`${exported[6]!.toString()}\n`);

    // Tiles with their bundles, as a monitor checks them; the checkpoint published is the one above.
    const out = join(tempDir("pgcli-tiles"), "log");
    const tiled = await runCli("transcript", "tiles", "--database", pg.url, "--out", out, "--entries");
    expect(tiled.code).toBe(0);
    expect(checkLikeAMonitor(out, exported, parseVerifierKey(vkey))).toBe(Number(cpDb.stdout.split("\n")[1]));
    expect(readFileSync(join(out, "checkpoint"), "utf8")).toBe(cpDb.stdout);
    for (const r of [cpDb, treeDb, proved, tiled]) expect(r.stdout + r.stderr).not.toContain(password);
    // Nothing of the private copy is left behind, and none of it is named.
    for (const r of [cpDb, treeDb, proved, tiled]) expect(r.stdout + r.stderr).not.toContain("securechat-log-");
  });

  test("on a database that holds no transcript, or past the signed tree, they fail as over a directory, naming the database", async () => {
    const past = await runCli("transcript", "prove", "--database", pg.url, "--seq", "100000");
    expect(past.code).toBe(1);
    expect(past.stderr).toContain("is not in the last signed tree");
    await sql.unsafe("CREATE DATABASE no_log");
    const emptyDb = pg.url.replace(/\/[^/]*$/, "/no_log");
    const none = await runCli("transcript", "checkpoint", "--database", emptyDb);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`no checkpoint in ${redactUrl(emptyDb)} signs a tree root yet`);
    expect(none.stderr).not.toContain(password);
    const exportNone = await runCli("transcript", "export", "--database", emptyDb, "--directory", join(tempDir("pgcli-none"), "transcript"));
    expect(exportNone.code).toBe(1);
    expect(exportNone.stderr).toContain("the database holds no transcript lines");
    const cosigned = await runCli("transcript", "checkpoint", "--database", pg.url, "--cosigned");
    expect(cosigned.code).toBe(1);
    expect(cosigned.stderr).toContain(`no cosigned checkpoint in ${redactUrl(pg.url)}`);
  });

  test("a directory and --database together are usage errors", async () => {
    expect((await runCli("transcript", "verify", "somewhere", "--database", pg.url)).code).toBe(2);
    expect((await runCli("transcript", "prove", "--data", "somewhere", "--database", pg.url, "--seq", "1")).code).toBe(2);
    expect((await runCli("transcript", "export", "--directory", "x")).code).toBe(2);
  });
});
