/**
 * Transcript reading at scale: generates a transcript of N entries (default
 * 1,000,000; a checkpoint every 1000, files rotated at 64 MiB like the
 * writer's default) in a temporary directory, then times `verifyTranscript`
 * and `exportTranscript` (to a sink that drops lines) over it, sampling
 * process.memoryUsage().rss every 10 ms; then runs `transcript verify` and
 * `transcript export` as fresh processes and reads their peak RSS from the
 * kernel. A peak that does not grow with N is the point: both stream in
 * 64 KiB chunks.
 *
 *   bun run bench/transcript.ts                 1,000,000 entries
 *   bun run bench/transcript.ts --entries 200000
 *   bun run bench/transcript.ts --json
 *   bun run bench/transcript.ts --checkpoint-every 1    a checkpoint after every entry:
 *                                                      a quiet chat, each message signed
 *                                                      before its ack (TRANSCRIPT.md §6)
 *
 * Never fails on speed; exits non-zero only if the transcript does not verify.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBase64 } from "../src/bytes.ts";
import { ed25519Generate } from "../src/crypto/index.ts";
import { exportTranscript } from "../src/transcript/export.ts";
import { GENESIS, entryLine, makeEntry, signCheckpoint } from "../src/transcript/format.ts";
import { listTranscript } from "../src/transcript/read.ts";
import { verifyTranscript } from "../src/transcript/verify.ts";
import { table } from "./lib/table.ts";

const argv = Bun.argv.slice(2);
const json = argv.includes("--json");
const VALUED = ["--entries", "--checkpoint-every"];
const valueOf = (flag: string, dflt: number): number => {
  const i = argv.indexOf(flag);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const N = valueOf("--entries", 1_000_000);
const CHECKPOINT_EVERY = valueOf("--checkpoint-every", 1000);
if (
  !Number.isSafeInteger(N) ||
  N < 10 ||
  !Number.isSafeInteger(CHECKPOINT_EVERY) ||
  CHECKPOINT_EVERY < 1 ||
  argv.some((a, i) => a !== "--json" && !VALUED.includes(a) && !VALUED.includes(argv[i - 1] ?? ""))
) {
  console.error("usage: bun run bench/transcript.ts [--entries N] [--checkpoint-every K] [--json]");
  process.exit(2);
}
const ROTATE_BYTES = 64 * 1024 * 1024;

const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
const log = (s: string): void => void (json ? process.stderr : process.stdout).write(`${s}\n`);

/** Writes the transcript the way the writer lays it out, without holding it in memory. */
function generate(dir: string): { bytes: number; files: number } {
  const host = ed25519Generate(new Uint8Array(32).fill(1));
  let prev = GENESIS;
  let ts = Date.UTC(2026, 10, 22);
  let fd = -1;
  let fileBytes = 0;
  let total = 0;
  let files = 0;
  let batch: string[] = [];
  let since = 0;
  let roomSeq = 0;
  const flush = (): void => {
    const b = Buffer.from(batch.join(""));
    writeSync(fd, b);
    batch = [];
  };
  for (let seq = 1; seq <= N; seq++) {
    let type: string;
    let fields: Record<string, string | number | boolean>;
    if (seq === 1) [type, fields] = ["server_start", { host_key: toBase64(host.publicKey), version: "bench" }];
    else if (since >= CHECKPOINT_EVERY || seq === N) {
      [type, fields] = ["checkpoint", { head_seq: seq - 1, head: prev, sig: signCheckpoint(host.secretKey, seq - 1, prev) }];
    } else if (seq % 10 === 0) [type, fields] = ["join", { room: "general", user: `user${seq % 97}` }];
    else [type, fields] = ["message", { room: "general", room_seq: ++roomSeq, from: `user${seq % 97}`, text: `message number ${seq}: the quick brown fox jumps over the lazy dog` }];
    since = type === "checkpoint" ? 0 : since + 1;
    ts += seq % 3 === 0 ? 1 : 0;
    const e = makeEntry(prev, seq, ts, type, fields);
    const line = entryLine(e);
    if (fd < 0 || fileBytes + line.length > ROTATE_BYTES) {
      if (fd >= 0) {
        flush();
        closeSync(fd);
      }
      const name = `${new Date(ts).toISOString().slice(0, 10)}.${String(seq).padStart(12, "0")}.jsonl`;
      fd = openSync(join(dir, name), "w", 0o600);
      fileBytes = 0;
      files++;
    }
    batch.push(line);
    fileBytes += line.length;
    total += line.length;
    if (batch.length >= 4096) flush();
    prev = e.hash;
  }
  flush();
  closeSync(fd);
  return { bytes: total, files };
}

interface Phase {
  name: string;
  seconds: number;
  entriesPerSecond: number;
  mbPerSecond: number;
  rssBeforeMiB: number;
  peakRssMiB: number;
}

async function phase(name: string, bytes: number, run: () => Promise<number>): Promise<Phase> {
  Bun.gc(true);
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  const t0 = Bun.nanoseconds();
  const entries = await run();
  const seconds = (Bun.nanoseconds() - t0) / 1e9;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  return {
    name,
    seconds,
    entriesPerSecond: entries / seconds,
    mbPerSecond: bytes / 1048576 / seconds,
    rssBeforeMiB: before / 1048576,
    peakRssMiB: peak / 1048576,
  };
}

/**
 * The CLI in a fresh process: wall time and its peak RSS, read as VmHWM
 * (the kernel's high-water mark) from /proc every 20 ms while it runs.
 * (Bun's subprocess resourceUsage().maxRSS was seen to report the parent's
 * peak, so it is not used.) Linux only; elsewhere the peak is null.
 */
async function cli(name: string, args: string[]): Promise<{ name: string; seconds: number; exitCode: number; peakRssMiB: number | null }> {
  const t0 = Bun.nanoseconds();
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "..", "src", "main.ts"), ...args], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  let peakKiB: number | null = null;
  const hwm = (): void => {
    try {
      const kib = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, "utf8"))?.[1]);
      if (Number.isFinite(kib)) peakKiB = Math.max(peakKiB ?? 0, kib);
    } catch {
      // exited, or no /proc
    }
  };
  const timer = setInterval(hwm, 20);
  const exitCode = await p.exited;
  clearInterval(timer);
  const seconds = (Bun.nanoseconds() - t0) / 1e9;
  return { name, seconds, exitCode, peakRssMiB: peakKiB === null ? null : peakKiB / 1024 };
}

const root = mkdtempSync(join(tmpdir(), "securechat-bench-transcript-"));
const dir = join(root, "transcript");
mkdirSync(dir);
try {
  log(`generating ${N.toLocaleString("en")} entries in ${dir} …`);
  const g0 = Bun.nanoseconds();
  const { bytes, files } = generate(dir);
  const genSeconds = (Bun.nanoseconds() - g0) / 1e9;
  const onDisk = listTranscript(dir).files.reduce((n, f) => n + statSync(f.path).size, 0);
  log(`  ${mib(onDisk)} in ${files} files, ${genSeconds.toFixed(1)} s`);

  const host = ed25519Generate(new Uint8Array(32).fill(1)).publicKey;
  const phases: Phase[] = [];
  phases.push(
    await phase("verify", bytes, async () => {
      const r = await verifyTranscript(dir, { hostKey: host });
      if (!r.ok) throw new Error(`bench: the generated transcript does not verify: ${r.problem?.reason}`);
      return r.entries;
    }),
  );
  phases.push(
    await phase("export (all, to a null sink)", bytes, async () => {
      let n = 0;
      await exportTranscript(dir, { hostKey: host }, { write: () => void n++ });
      return n;
    }),
  );
  phases.push(
    await phase("export --room nowhere (filter drops all)", bytes, async () => (await exportTranscript(dir, { hostKey: host, room: "nowhere" }, { write: () => {} })).entries),
  );

  const pin = toBase64(host);
  const procs = [
    await cli("securechat transcript verify DIR", ["transcript", "verify", dir, "--host-key", pin]),
    await cli("securechat transcript export > /dev/null", ["transcript", "export", "--data", root, "--host-key", pin]),
  ];
  for (const p of procs) if (p.exitCode !== 0) throw new Error(`bench: "${p.name}" exited ${p.exitCode}`);

  const result = { entries: N, files, bytes: onDisk, generateSeconds: genSeconds, phases, processes: procs, bun: Bun.version };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    log("");
    log(
      table(
        `transcript: ${N.toLocaleString("en")} entries, ${mib(onDisk)}, ${files} files (checkpoint every ${CHECKPOINT_EVERY})`,
        ["phase", "time", "entries/s", "MiB/s", "RSS before", "peak RSS"],
        phases.map((p) => [p.name, `${p.seconds.toFixed(2)} s`, Math.round(p.entriesPerSecond).toLocaleString("en"), p.mbPerSecond.toFixed(1), `${p.rssBeforeMiB.toFixed(0)} MiB`, `${p.peakRssMiB.toFixed(0)} MiB`]),
      ),
    );
    log("");
    log(
      table(
        "the CLI in a fresh process (peak RSS = the kernel's VmHWM for the whole process, incl. startup)",
        ["command", "time", "entries/s", "peak RSS"],
        procs.map((p) => [p.name, `${p.seconds.toFixed(2)} s`, Math.round(N / p.seconds).toLocaleString("en"), p.peakRssMiB === null ? "n/a" : `${p.peakRssMiB.toFixed(0)} MiB`]),
      ),
    );
  }
} finally {
  if (!process.env.BENCH_KEEP) rmSync(root, { recursive: true, force: true }); else console.error("kept", root);
}
