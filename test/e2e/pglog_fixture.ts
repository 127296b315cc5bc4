/**
 * For test/e2e/pglog.sh: a real PostgreSQL (test/engines.ts) holding a
 * transcript written by the server's writer on PgStorage over two runs (a
 * cluster's log until serve is wired to it), kept up until SIGTERM.
 *
 *   bun test/e2e/pglog_fixture.ts DIR
 *
 * writes DIR/url (0600: it holds the password), DIR/fingerprint (the host
 * key's), then DIR/ready. On SIGUSR2 it writes a third run (DIR/run3 once
 * committed); on SIGUSR1 it alters one message line in log_lines and
 * writes DIR/tampered with that line's FILE:LINE.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { fingerprint } from "../../src/fingerprint.ts";
import { silentLogger } from "../../src/log.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { PgStorage } from "../../src/transcript/pgstorage.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { startPostgres } from "../engines.ts";

const dir = process.argv[2]!;
const pg = await startPostgres({ fsync: false });
const sql = openPg(pg.url, { max: 2 });
writeFileSync(join(dir, "url"), pg.url, { mode: 0o600 });
const host = ed25519Generate(crypto.getRandomValues(new Uint8Array(32)));
let roomSeq = 0;
/** One run of the writer: 25 messages, then a clean stop. */
async function writeRun(run: number): Promise<void> {
  const storage = await PgStorage.open(sql, { holder: `node-${run}`, log: silentLogger });
  if (!storage) throw new Error("the lease is held");
  const w = TranscriptWriter.openOn(storage, { ...DEFAULT_WRITER, fsync: "batch", checkpointEvery: 8, rotateBytes: 4096, dir: "(database)", hostKey: host, version: "e2e", log: silentLogger });
  await Promise.all(Array.from({ length: 25 }, (_, i) => w.append("message", { room: "ops", room_seq: ++roomSeq, from: "alice", text: `run ${run} line ${i}` }).durable));
  w.close("e2e");
  await w.closed();
}
await writeRun(1);
await writeRun(2);
writeFileSync(join(dir, "fingerprint"), fingerprint(host.publicKey));
process.on("SIGUSR1", async () => {
  const row = (await sql`SELECT seq, file, line, bytes FROM log_lines WHERE convert_from(bytes, 'UTF8') LIKE '%run 1 line 7"%'`)[0];
  const forged = Buffer.from(Buffer.from(row.bytes).toString("utf8").replace("run 1 line 7", "run 1 line 8"));
  await sql`UPDATE log_lines SET bytes = ${forged} WHERE seq = ${row.seq}`;
  writeFileSync(join(dir, "tampered"), `${row.file}:${row.line}`);
});
process.on("SIGUSR2", async () => {
  await writeRun(3);
  writeFileSync(join(dir, "run3"), "");
});
process.on("SIGTERM", async () => {
  await sql.close();
  await pg.stop();
  process.exit(0);
});
writeFileSync(join(dir, "ready"), "");
setInterval(() => {}, 1 << 30);
