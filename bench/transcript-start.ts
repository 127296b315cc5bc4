/**
 * What a server start costs on a long transcript (docs/TRANSCRIPT.md §7):
 * makes a data directory whose transcript of about N entries is written by
 * the writer itself (a checkpoint every 1000 entries, 64 MiB files), ending
 * either with a clean stop or with a crash 999 entries after the last
 * checkpoint — the most the check at start reads back with those settings —
 * then, on a fresh copy each time, times the writer's open in this process
 * and each given binary's `serve` from spawn to its "listening" log line.
 *
 *   bun run bench/transcript-start.ts [--entries N] [--runs R] [BIN...]
 *
 * Prints medians (and min–max) of R runs. Never fails on speed.
 */
import { cpSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateHostKey } from "../src/server/hostkey.ts";
import { silentLogger } from "../src/log.ts";
import { listTranscript } from "../src/transcript/read.ts";
import { DEFAULT_WRITER, TranscriptWriter, type WriterOptions } from "../src/transcript/writer.ts";
import { table } from "./lib/table.ts";

const argv = Bun.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(argv.splice(i, 2)[1]);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`usage: ${name} takes a positive integer`);
  return v;
};
const N = flag("--entries", 200_000);
const RUNS = flag("--runs", 5);
const bins = argv;
const EVERY = 1000;

function writerOptions(dir: string, data: string): WriterOptions {
  // checkpointIntervalMs: far beyond the run, so that only --checkpoint-every places checkpoints
  return { ...DEFAULT_WRITER, dir, hostKey: loadOrCreateHostKey(data).key, fsync: "off", checkpointEvery: EVERY, checkpointIntervalMs: 1e9, version: "bench", log: silentLogger };
}

/**
 * A data dir whose transcript ends cleanly, or crashed with EVERY - 1
 * entries after its last checkpoint. Messages are signed before they are
 * acknowledged (docs/TRANSCRIPT.md §6), so a crashed run's unsigned tail
 * is made of entries no ack waits on: joins.
 */
async function make(ending: "clean" | "crash"): Promise<string> {
  const data = mkdtempSync(join(tmpdir(), `securechat-bench-start-${ending}-`));
  const w = TranscriptWriter.open(writerOptions(join(data, "transcript"), data));
  const k = ending === "crash" ? Math.max(0, Math.floor(N / EVERY) * EVERY - EVERY) : N;
  let last: Promise<void> = Promise.resolve();
  for (let i = 1; i <= k; i++) {
    last = w.append("message", { room: "general", room_seq: i, from: `user${i % 97}`, text: `message number ${i}: the quick brown fox jumps over the lazy dog` }).durable;
    if (i % 10_000 === 0) await last; // let the writer flush now and then
  }
  await last;
  if (ending === "crash") {
    // the last message's checkpoint is the last one: EVERY - 1 joins follow it
    for (let i = 1; i < EVERY; i++) last = w.append("join", { room: `room${i}`, user: `user${i % 97}` }).durable;
    await last;
  }
  if (ending === "clean") w.close("bench");
  return data; // "crash": abandoned, as kill -9 leaves it
}

interface Sample {
  median: number;
  min: number;
  max: number;
}

async function sample(runs: number, once: () => Promise<number>): Promise<Sample> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) ms.push(await once());
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)]!, min: ms[0]!, max: ms.at(-1)! };
}

/**
 * Runs `f` on a fresh copy of `data` (a start appends to the transcript),
 * written back to disk first so that no start pays for the copy's fsync.
 */
async function onCopy(data: string, f: (copy: string) => Promise<number> | number): Promise<number> {
  const copy = mkdtempSync(join(tmpdir(), "securechat-bench-start-copy-"));
  cpSync(data, copy, { recursive: true });
  Bun.spawnSync(["sync"]);
  try {
    return await f(copy);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/** Milliseconds of the writer's open (its close not counted). */
function open(copy: string): number {
  const t0 = performance.now();
  const w = TranscriptWriter.open(writerOptions(join(copy, "transcript"), copy));
  const ms = performance.now() - t0;
  w.close("bench");
  return ms;
}

/** Milliseconds from spawning `BIN serve` to its "listening" line; then SIGKILL. */
async function serve(bin: string, data: string): Promise<number> {
  const t0 = performance.now();
  const p = Bun.spawn([bin, "serve", "--port", "0", "--data", data, "--json", "--checkpoint-every", String(EVERY)], { stdout: "pipe", stderr: "pipe" });
  let seen = "";
  const decoder = new TextDecoder();
  for await (const chunk of p.stdout) {
    seen += decoder.decode(chunk, { stream: true });
    if (seen.includes('"event":"listening"')) break;
  }
  const ms = performance.now() - t0;
  p.kill("SIGKILL");
  await p.exited;
  if (!seen.includes('"event":"listening"')) throw new Error(`bench: ${bin} serve did not start: ${await new Response(p.stderr).text()}`);
  return ms;
}

const fmt = (s: Sample): string => `${s.median.toFixed(1)} ms (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
const rows: string[][] = [];
for (const ending of ["clean", "crash"] as const) {
  const data = await make(ending);
  const files = listTranscript(join(data, "transcript")).files;
  const mib = files.reduce((n, f) => n + statSync(f.path).size, 0) / 1048576;
  const what = `${ending}: ${mib.toFixed(0)} MiB in ${files.length} file${files.length === 1 ? "" : "s"}`;
  rows.push([what, "TranscriptWriter.open (this tree)", fmt(await sample(RUNS, () => onCopy(data, open)))]);
  for (const bin of bins) rows.push([what, `${bin} serve → listening`, fmt(await sample(RUNS, () => onCopy(data, (copy) => serve(bin, copy))))]);
  rmSync(data, { recursive: true, force: true });
}
console.log(table(`server start on a transcript of about ${N.toLocaleString("en")} entries, a checkpoint every ${EVERY}: median (min–max) of ${RUNS}`, ["transcript", "what", "time"], rows));
