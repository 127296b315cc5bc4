/**
 * For pgstorage.test.ts: a writer process on PgStorage that appends a
 * message every 50 ms and prints `acked SEQ` for each one acknowledged,
 * `fenced` once it learns its lease was taken (then exits 3).
 *
 *   bun test/transcript/pgpaused_writer.ts URL HOLDER
 */
import { silentLogger } from "../../src/log.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { PgStorage } from "../../src/transcript/pgstorage.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { hostKeyPair } from "./helpers.ts";

const [url, holder] = process.argv.slice(2) as [string, string];
const sql = openPg(url, { max: 2 });
const storage = await PgStorage.open(sql, { holder, log: silentLogger, leaseMs: 1000, renewMs: 200 });
if (!storage) process.exit(2);
const w = TranscriptWriter.openOn(storage, { ...DEFAULT_WRITER, fsync: "always", dir: "(database)", hostKey: hostKeyPair(7), version: "test", log: silentLogger });
w.watch((recording) => {
  if (!recording && w.stopped) {
    console.log("fenced");
    process.exit(3);
  }
});
let n = 0;
setInterval(() => {
  if (w.stopped) return;
  n++;
  const { entry, durable } = w.append("message", { room: "ops", room_seq: n, from: holder, text: `${holder} ${n}` });
  durable.then(
    () => console.log(`acked ${entry.seq}`),
    () => {},
  );
}, 50);
