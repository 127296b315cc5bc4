/**
 * What the cluster design needs to know of its engines, measured in one run
 * against real servers started by test/engines.ts:
 *
 * (a) A transcript-like log appended in PostgreSQL with one ordering point: a
 *     head row locked FOR UPDATE, the entries (~300 bytes) inserted with their
 *     seq in the same transaction, the head moved on; fsync and
 *     synchronous_commit on. Batches of 1, 16 and 256 entries per transaction,
 *     1 and 2 concurrent writers (each on its own connection, contending for
 *     the head). Entries/s and p50/p99 transaction latency (BEGIN to COMMIT
 *     returned: what an ack would wait for). The log is checked gapless after.
 * (b) Redis pub/sub fan-out: one publisher connection, two subscriber
 *     connections, 300-byte messages; one message in flight (latency) and
 *     256 in flight (throughput). Messages/s and p50/p99 publish→deliver.
 * (c) CPU seconds the engines' processes used (/proc/PID/stat utime+stime of
 *     the server and its children) per 1000 entries or deliveries, beside the
 *     CPU of this Bun process (the client side) for the same work.
 *
 * `bun run bench/engines.ts [--seconds N]` (default 3 s per case). Prints a
 * table; never fails on speed. Without the binaries it says what to install
 * and exits 0 (1 under CI=true).
 */
import { RedisClient, SQL } from "bun";
import { requireEngines, startPostgres, startRedis } from "../test/engines.ts";
import { table, time } from "./lib/table.ts";

const secondsArg = process.argv.indexOf("--seconds");
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 3;
if (!(SECONDS > 0)) throw new Error("--seconds takes a positive number");
const ENTRY_BYTES = 300;

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

function clientCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function rate(n: number, ns: number): string {
  const v = n / (ns / 1e9);
  return v >= 1e3 ? `${(v / 1e3).toFixed(1)}k/s` : `${v.toFixed(0)}/s`;
}

/** CPU time per 1000 ops; /proc counts in ticks (10 ms), so short cases are coarse. */
function cpuPer1000(cpuSeconds: number, ops: number): string {
  return ops > 0 ? time((cpuSeconds / ops) * 1000 * 1e9) : "-";
}

interface Row {
  cells: string[];
}

async function postgresLog(): Promise<Row[]> {
  const pg = await startPostgres({ fsync: true });
  const rows: Row[] = [];
  try {
    const admin = new SQL(pg.url);
    await admin`CREATE TABLE log_head (log int PRIMARY KEY, seq bigint NOT NULL)`;
    await admin`CREATE TABLE log_entry (log int NOT NULL, seq bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (log, seq))`;
    let logId = 0;
    for (const writers of [1, 2]) {
      for (const batch of [1, 16, 256]) {
        const log = ++logId;
        await admin`INSERT INTO log_head VALUES (${log}, 0)`;
        const conns = Array.from({ length: writers }, () => new SQL({ url: pg.url, max: 1 }));
        for (const c of conns) await c`SELECT 1`;
        const body = Buffer.alloc(ENTRY_BYTES, 0x61);
        const lat: number[] = [];
        let entries = 0;
        const pgCpu0 = pg.cpuSeconds();
        const cli0 = clientCpu();
        const t0 = Bun.nanoseconds();
        const end = t0 + SECONDS * 1e9;
        await Promise.all(
          conns.map(async (sql) => {
            while (Bun.nanoseconds() < end) {
              const s = Bun.nanoseconds();
              await sql.begin(async (tx) => {
                const [head] = await tx`SELECT seq FROM log_head WHERE log = ${log} FOR UPDATE`;
                const first = Number(head.seq) + 1;
                const items = Array.from({ length: batch }, (_, i) => ({ log, seq: first + i, body }));
                await tx`INSERT INTO log_entry ${tx(items)}`;
                await tx`UPDATE log_head SET seq = ${first + batch - 1} WHERE log = ${log}`;
              });
              lat.push(Bun.nanoseconds() - s);
              entries += batch;
            }
          }),
        );
        const elapsed = Bun.nanoseconds() - t0;
        const pgCpu = pg.cpuSeconds() - pgCpu0;
        const cli = clientCpu() - cli0;
        for (const c of conns) await c.close();
        const [check] = await admin`SELECT count(*)::int AS n, coalesce(max(seq), 0)::int AS top, count(DISTINCT seq)::int AS d FROM log_entry WHERE log = ${log}`;
        const gapless = check.n === entries && check.top === entries && check.d === entries;
        lat.sort((a, b) => a - b);
        rows.push({
          cells: [
            `pg log: ${batch}/tx, ${writers} writer${writers > 1 ? "s" : ""}`,
            String(entries),
            rate(entries, elapsed),
            rate(lat.length, elapsed),
            time(pct(lat, 50)),
            time(pct(lat, 99)),
            cpuPer1000(pgCpu, entries),
            cpuPer1000(cli, entries),
            gapless ? "gapless" : `BROKEN ${JSON.stringify(check)}`,
          ],
        });
        console.error(`  done: ${rows[rows.length - 1]!.cells[0]}`);
      }
    }
    await admin.close();
  } finally {
    await pg.stop();
  }
  return rows;
}

async function redisFanout(): Promise<Row[]> {
  const r = await startRedis();
  const rows: Row[] = [];
  try {
    const pub = new RedisClient(r.url);
    const subs = [new RedisClient(r.url), new RedisClient(r.url)];
    for (const window of [1, 256]) {
      const channel = `room-${window}`;
      const sent = new Map<number, number>();
      const pending = new Map<number, number>();
      const lat: number[] = [];
      let wake: (() => void) | null = null;
      let delivered = 0;
      const onMessage = (message: string): void => {
        const now = Bun.nanoseconds();
        const id = Number(message.slice(0, message.indexOf(" ")));
        lat.push(now - sent.get(id)!);
        delivered++;
        const left = pending.get(id)! - 1;
        if (left === 0) {
          pending.delete(id);
          sent.delete(id);
          wake?.();
        } else pending.set(id, left);
      };
      for (const s of subs) await s.subscribe(channel, onMessage);
      const pad = "x".repeat(ENTRY_BYTES);
      const message = (id: number): string => `${id} `.concat(pad).slice(0, ENTRY_BYTES);
      const redisCpu0 = r.cpuSeconds();
      const cli0 = clientCpu();
      const t0 = Bun.nanoseconds();
      const end = t0 + SECONDS * 1e9;
      let id = 0;
      let published = 0;
      while (Bun.nanoseconds() < end) {
        while (pending.size < window) {
          const n = ++id;
          pending.set(n, subs.length);
          sent.set(n, Bun.nanoseconds());
          pub.publish(channel, message(n)).then((receivers) => {
            if (receivers !== subs.length) throw new Error(`published to ${receivers} subscribers, not ${subs.length}`);
          });
          published++;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
      while (pending.size > 0) await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      const elapsed = Bun.nanoseconds() - t0;
      const redisCpu = r.cpuSeconds() - redisCpu0;
      const cli = clientCpu() - cli0;
      for (const s of subs) await s.unsubscribe(channel);
      lat.sort((a, b) => a - b);
      rows.push({
        cells: [
          `redis fan-out: 2 subs, ${window} in flight`,
          String(delivered),
          rate(delivered, elapsed),
          rate(published, elapsed),
          time(pct(lat, 50)),
          time(pct(lat, 99)),
          cpuPer1000(redisCpu, delivered),
          cpuPer1000(cli, delivered),
          delivered === published * subs.length ? "all delivered" : `LOST ${published * subs.length - delivered}`,
        ],
      });
      console.error(`  done: ${rows[rows.length - 1]!.cells[0]}`);
    }
    pub.close();
    for (const s of subs) s.close();
  } finally {
    await r.stop();
  }
  return rows;
}

if (!requireEngines("postgres", "redis")) process.exit(0);
console.error(`bench/engines.ts: ${SECONDS} s per case`);
const pgRows = await postgresLog();
const redisRows = await redisFanout();
console.log(
  "\n" +
    table(
      `Engines (${SECONDS} s per case, entries/messages of ${ENTRY_BYTES} B; pg: fsync and synchronous_commit on; CPU per 1000 entries (pg) or deliveries (redis))`,
      ["case", "ops", "ops/s", "tx or msg/s", "p50", "p99", "engine CPU/1000", "client CPU/1000", "check"],
      [...pgRows.map((r) => r.cells), null, ...redisRows.map((r) => r.cells)],
    ),
);
