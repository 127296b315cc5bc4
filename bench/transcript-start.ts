/**
 * What a server start costs as the transcript grows (docs/TRANSCRIPT.md §7,
 * PERFORMANCE.md §9), in one run: for an empty data directory and for
 * transcripts of each --entries size, written by the transcript writer
 * itself (fsync off, a checkpoint every 1000 entries, 64 MiB files; messages
 * in 100 rooms, one of them "bench"), `BIN serve` is timed from spawn to its
 * "listening" line, and its RSS read a second later and again after one
 * client has logged in and joined "bench" (whose answer shows the room's
 * last 50 messages, from history.db).
 *
 *   bun run bench/transcript-start.ts [--entries 1000000[,10000000]] [--runs 5] [BIN...]
 *
 * BIN defaults to dist/securechat (`bun run build`); with several (another
 * checkout's build, say), the restarts run each in turn on the same
 * directory, and the one-off cases run with the first. For each size:
 *   first    the first start: history.db does not exist yet, so it is
 *            rebuilt from the whole transcript (O(n), logged); one run
 *   clean    a restart after a clean stop: --runs runs
 *   crash    a restart after a crash that left 998 entries after the last
 *            checkpoint and a torn last line: --runs runs
 *   no tree  tree.hashes deleted: rebuilt from every line (O(n), logged); one run
 * Every run starts on the data directory as it was before the first run of
 * its case (the files a start changes are put back; the transcript's older
 * files are never written), with the files in the page cache. A run whose
 * server logs a warning other than the one its case expects is reported.
 * Temporary directories are removed at the end. Never fails on speed.
 */
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import type { Subprocess } from "bun";
import { silentLogger } from "../src/log.ts";
import { loadOrCreateHostKey } from "../src/server/hostkey.ts";
import { listTranscript } from "../src/transcript/read.ts";
import { DEFAULT_WRITER, TranscriptWriter, type WriterOptions, treePath } from "../src/transcript/writer.ts";
import { BenchConn } from "./load/logins.ts";
import { type BenchCred, ROOM } from "./load/common.ts";
import { seedAccount } from "./lib/account.ts";
import { table } from "./lib/table.ts";

const argv = Bun.argv.slice(2);
function option(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv.splice(i, 2)[1];
}
const positive = (name: string, v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`usage: ${name} takes positive integers`);
  return n;
};
const SIZES = [0, ...(option("--entries") ?? "1000000").split(",").map((v) => positive("--entries", v))];
const RUNS = positive("--runs", option("--runs") ?? "5");
const BINS = argv.length > 0 ? argv : [join(import.meta.dir, "..", "dist", "securechat")];
for (const bin of BINS) if (!existsSync(bin)) throw new Error(`bench: ${bin} does not exist: run "bun run build" first, or pass BIN`);
const EVERY = 1000;
const ROOMS = 100;

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const MiB = (bytes: number): number => bytes / 1048576;
const temps: string[] = [];
const temp = (what: string): string => {
  const d = mkdtempSync(join(tmpdir(), `securechat-bench-start-${what}-`));
  temps.push(d);
  return d;
};
process.on("exit", () => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130));

function writerOptions(data: string): WriterOptions {
  // checkpointIntervalMs: far beyond the run, so that only the entry count places checkpoints
  return { ...DEFAULT_WRITER, dir: join(data, "transcript"), hostKey: loadOrCreateHostKey(data).key, fsync: "off", checkpointEvery: EVERY, checkpointIntervalMs: 1e9, version: "bench", log: silentLogger };
}

/** About `n` entries through the writer: messages in ROOMS rooms, a join and a leave now and then; stopped cleanly. */
async function generate(data: string, n: number): Promise<void> {
  if (n === 0) return;
  const w = TranscriptWriter.open(writerOptions(data));
  const seqs = new Array<number>(ROOMS).fill(0);
  let last: Promise<void> = Promise.resolve();
  for (let i = 1; w.seq < n; i++) {
    const r = i % ROOMS;
    const room = r === 0 ? ROOM : `room${r}`;
    const user = `user${i % 97}`;
    if (i % 1000 === 0) w.append("join", { room, user });
    last = w.append("message", { room, room_seq: ++seqs[r]!, from: user, text: `message number ${i}: the quick brown fox jumps over the lazy dog` }).durable;
    if (i % 10_000 === 0) await last; // let the writer write now and then
    if (i % 1_000_000 === 0) log(`  ${w.seq.toLocaleString("en")} entries`);
  }
  await last;
  w.close("bench");
}

/**
 * The data directory as it is now, to put back before each run: the files a
 * start may change are copied aside; the transcript's files but the last are
 * never written, and tree.hashes only cut back to a checkpoint and extended
 * with the same hashes, so those are only cut back to their size.
 */
interface Snapshot {
  dir: string;
  files: Map<string, { size: number; copied: boolean }>;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
}

function snapshot(data: string): Snapshot {
  const dir = temp("snapshot");
  const lastFile = existsSync(join(data, "transcript")) ? listTranscript(join(data, "transcript")).files.at(-1)?.path : undefined;
  const files = new Map<string, { size: number; copied: boolean }>();
  for (const path of walk(data)) {
    const rel = relative(data, path);
    const appendOnly = path === treePath(join(data, "transcript")) || (rel.startsWith("transcript/") && rel.endsWith(".jsonl") && path !== lastFile);
    files.set(rel, { size: statSync(path).size, copied: !appendOnly });
    if (!appendOnly) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      copyFileSync(path, join(dir, rel));
    }
  }
  return { dir, files };
}

function restore(data: string, s: Snapshot): void {
  for (const path of walk(data)) if (!s.files.has(relative(data, path))) rmSync(path);
  for (const [rel, f] of s.files) {
    if (f.copied) copyFileSync(join(s.dir, rel), join(data, rel));
    else truncateSync(join(data, rel), f.size);
  }
  Bun.spawnSync(["sync"]);
}

interface Run {
  ms: number;
  /** RSS a second after "listening", and after the join's history (KiB). */
  rss: number;
  rssJoined: number;
  /** Messages the join was shown. */
  history: number;
  /** Warnings the server logged (event names). */
  warnings: string[];
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

async function stop(p: Subprocess): Promise<void> {
  p.kill("SIGTERM");
  if (!(await Promise.race([p.exited.then(() => true), Bun.sleep(60_000).then(() => false)]))) {
    p.kill("SIGKILL");
    await p.exited;
    throw new Error("bench: serve did not stop within 60 s of SIGTERM");
  }
}

/**
 * One start of `bin serve` on `data`: time to "listening", RSS, a join's
 * history (unless `joining` is false), then a clean stop.
 */
async function start(bin: string, data: string, cred: BenchCred, joining = true): Promise<Run> {
  const t0 = performance.now();
  const p = Bun.spawn([bin, "serve", "--port", "0", "--data", data, "--json", "--checkpoint-every", String(EVERY)], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const events: { event: string; level?: string; address?: string }[] = [];
  let listening: (e: { address?: string }) => void = () => {};
  const ready = new Promise<{ address?: string }>((res) => (listening = res));
  const stderr = new Response(p.stderr).text();
  void (async () => {
    let buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of p.stdout) {
      buf += decoder.decode(chunk, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const e = JSON.parse(buf.slice(0, nl)) as (typeof events)[number];
        buf = buf.slice(nl + 1);
        events.push(e);
        if (e.event === "listening") listening(e);
      }
    }
  })();
  const up = await Promise.race([ready, p.exited.then(async () => null)]);
  if (!up) throw new Error(`bench: serve did not start: ${await stderr}`);
  const ms = performance.now() - t0;
  await Bun.sleep(1000);
  const rss = rssKiB(p.pid);
  if (!joining) {
    await stop(p);
    return { ms, rss, rssJoined: Number.NaN, history: Number.NaN, warnings: events.filter((e) => e.level === "warn").map((e) => e.event) };
  }
  let history = 0;
  const conn = new BenchConn(Number(up.address!.split(":").at(-1)), cred, true, (m) => {
    if (m.type === "message" && m.room === ROOM) history++;
  });
  conn.start();
  await Promise.race([conn.ready, Bun.sleep(30_000).then(() => Promise.reject(new Error("bench: no history within 30 s of joining")))]);
  const rssJoined = rssKiB(p.pid);
  conn.close();
  await stop(p);
  return { ms, rss, rssJoined, history, warnings: events.filter((e) => e.level === "warn").map((e) => e.event) };
}

/** Makes the directory end as a crash leaves it: EVERY - 2 joins after a server_start past the last checkpoint, then half a line. */
async function crash(data: string): Promise<void> {
  const w = TranscriptWriter.open(writerOptions(data));
  let last: Promise<void> = Promise.resolve();
  for (let i = 1; i <= EVERY - 2; i++) last = w.append("join", { room: `room${i % ROOMS}`, user: `user${i % 97}` }).durable;
  await last;
  appendFileSync(join(data, "transcript", w.file), '{"from":"user1","prev":"');
  // abandoned, as kill -9 leaves it (its descriptors go with this process)
}

interface Row {
  bin: string;
  size: number;
  what: string;
  runs: Run[];
  expected: string[];
}

const rows: Row[] = [];
const disk: Record<number, string> = {};
const t0 = performance.now();
for (const n of SIZES) {
  const data = temp(`data-${n}`);
  log(`${n.toLocaleString("en")} entries: writing`);
  const g0 = performance.now();
  await generate(data, n);
  const cred = seedAccount(data, 7 * 86_400_000);
  if (n > 0) {
    const files = listTranscript(join(data, "transcript")).files;
    const bytes = files.reduce((s, f) => s + statSync(f.path).size, 0);
    disk[n] = `${MiB(bytes).toFixed(0)} MiB in ${files.length} file${files.length === 1 ? "" : "s"}, tree.hashes ${MiB(statSync(treePath(join(data, "transcript"))).size).toFixed(0)} MiB; written in ${((performance.now() - g0) / 1000).toFixed(0)} s`;
    log(`  ${disk[n]}`);
  }
  log(`  first start (history.db made from the transcript)`);
  // (no join: the read marker it would leave would hide the history from the joins of the runs after it)
  rows.push({ bin: BINS[0]!, size: n, what: "first start: history.db rebuilt", runs: [await start(BINS[0]!, data, cred, false)], expected: n > 0 ? ["history_rebuild"] : [] });
  const clean = snapshot(data);
  /** RUNS starts with each BIN in turn, each on the directory as `from` left it. */
  const restarts = async (what: string, from: Snapshot, expected: string[]): Promise<void> => {
    const runs = BINS.map(() => [] as Run[]);
    for (let i = 0; i < RUNS; i++) {
      for (const [b, bin] of BINS.entries()) {
        restore(data, from);
        runs[b]!.push(await start(bin, data, cred));
      }
    }
    for (const [b, bin] of BINS.entries()) {
      rows.push({ bin, size: n, what, runs: runs[b]!, expected });
      log(`  ${what}, ${bin}: ${runs[b]!.map((r) => r.ms.toFixed(0)).join(", ")} ms`);
    }
  };
  await restarts("restart after a clean stop", clean, []);
  restore(data, clean);
  await crash(data);
  const crashed = snapshot(data);
  await restarts("restart after a crash (torn line)", crashed, ["transcript_torn_tail"]);
  if (n > 0) {
    restore(data, clean);
    rmSync(treePath(join(data, "transcript")));
    rows.push({ bin: BINS[0]!, size: n, what: "restart, tree.hashes deleted: rebuilt", runs: [await start(BINS[0]!, data, cred)], expected: ["transcript_tree_rebuilt"] });
  }
  rmSync(data, { recursive: true, force: true });
  rmSync(clean.dir, { recursive: true, force: true });
  rmSync(crashed.dir, { recursive: true, force: true });
}

const stat = (xs: number[]): { median: number; min: number; max: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s.at(-1)! };
};
const ms = (xs: number[]): string => {
  const s = stat(xs);
  return xs.length === 1 ? `${s.median.toFixed(0)}` : `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;
};
const mib = (kib: number[]): string => (Number.isNaN(kib[0]) ? "–" : (stat(kib).median / 1024).toFixed(1));
const cleanMedian = (bin: string): number => stat(rows.find((r) => r.bin === bin && r.size === 0 && r.what.startsWith("restart after a clean"))!.runs.map((r) => r.ms)).median;
const out = rows.map((r) => {
  const unexpected = [...new Set(r.runs.flatMap((x) => x.warnings))].filter((w) => !r.expected.includes(w));
  return [
    r.size === 0 ? "empty" : r.size.toLocaleString("en"),
    r.what,
    ...(BINS.length > 1 ? [String(BINS.indexOf(r.bin) + 1)] : []),
    String(r.runs.length),
    ms(r.runs.map((x) => x.ms)),
    `×${(stat(r.runs.map((x) => x.ms)).median / cleanMedian(r.bin)).toFixed(2)}`,
    mib(r.runs.map((x) => x.rss)),
    mib(r.runs.map((x) => x.rssJoined)),
    Number.isNaN(r.runs[0]!.history) ? "–" : String(stat(r.runs.map((x) => x.history)).median),
    unexpected.length > 0 ? `unexpected: ${unexpected.join(",")}` : "",
  ];
});
console.log(
  table(
    `securechat serve start against the transcript's length: ${BINS.map((b, i) => (BINS.length > 1 ? `${i + 1} = ${b}` : b)).join(", ")}; a checkpoint every ${EVERY}; median (min–max) of the runs; "/ empty": over the same binary's clean restart on an empty directory; RSS a second after "listening", and after a join shown its history`,
    ["entries", "case", ...(BINS.length > 1 ? ["bin"] : []), "runs", "start ms", "/ empty", "RSS MiB", "joined", "history", ""],
    out,
  ),
);
for (const [n, d] of Object.entries(disk)) console.log(`${Number(n).toLocaleString("en")} entries: ${d}`);
console.log(`(${((performance.now() - t0) / 1000).toFixed(0)} s in all)`);
process.exit(0);
