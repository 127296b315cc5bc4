/**
 * The transcript at scale, against `sha256sum` of the same bytes in the same
 * run (the floor: one pass of SHA-256 over the files, what any check of them
 * costs at least):
 *
 *   append   N entries through the writer itself (TranscriptWriter: the
 *            Merkle tree and its stored hashes, a tree checkpoint every 1000
 *            entries and before each fsync that makes a message durable,
 *            group commit `--fsync batch`), 1000 appended per event-loop
 *            turn, the next turn's batch while the last one's fsync runs;
 *            entries per second of wall time and per CPU-second of the
 *            process (fsyncs included): "per core"
 *   verify   `verifyTranscript` over what append wrote (the full check of
 *            TRANSCRIPT.md §8.2), and with `treeOnly` (§8.6: every leaf,
 *            the root at every checkpoint, every checkpoint signature)
 *   export   `exportTranscript` to a sink that drops lines, and with a
 *            filter that drops all
 *   the CLI  `transcript verify` (and `--tree-only`) and `transcript
 *            export` as fresh processes, their peak RSS from the kernel
 *   proof    one inclusion proof served from a tree.hashes of M leaves
 *            (default 10,000,000), as log_proof serves it: TranscriptTree
 *            over the file, inclusionProof with its O(log n) reads. The file
 *            is built directly through the Frontier from synthetic 300-byte
 *            leaves (not from M transcript lines); proofs are timed one at a
 *            time for random leaves (after 200 not counted), page cache
 *            warm.
 *
 * Memory is sampled as process.memoryUsage().rss every 10 ms.
 *
 *   bun run bench/transcript.ts                 1,000,000 entries, proofs at 10,000,000
 *   bun run bench/transcript.ts --entries 200000 --proof-leaves 1000000
 *   bun run bench/transcript.ts --json
 *   bun run bench/transcript.ts --checkpoint-every 1    a checkpoint after every entry:
 *                                                      a quiet chat, each message signed
 *                                                      before its ack (TRANSCRIPT.md §6)
 *
 * Never fails on speed; exits non-zero only if the transcript does not
 * verify or a proof does not.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBase64 } from "../src/bytes.ts";
import { ed25519Generate } from "../src/crypto/index.ts";
import { silentLogger } from "../src/log.ts";
import { exportTranscript } from "../src/transcript/export.ts";
import { Frontier, HASH_SIZE, type Hash, inclusionProof, leafHash, verifyInclusion } from "../src/transcript/merkle.ts";
import { listTranscript } from "../src/transcript/read.ts";
import { TranscriptTree } from "../src/transcript/tree.ts";
import { verifyTranscript } from "../src/transcript/verify.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../src/transcript/writer.ts";
import { table } from "./lib/table.ts";

const argv = Bun.argv.slice(2);
const json = argv.includes("--json");
const VALUED = ["--entries", "--checkpoint-every", "--proof-leaves"];
const valueOf = (flag: string, dflt: number): number => {
  const i = argv.indexOf(flag);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const N = valueOf("--entries", 1_000_000);
const CHECKPOINT_EVERY = valueOf("--checkpoint-every", 1000);
const PROOF_LEAVES = valueOf("--proof-leaves", 10_000_000);
if (
  !Number.isSafeInteger(N) ||
  N < 10 ||
  !Number.isSafeInteger(CHECKPOINT_EVERY) ||
  CHECKPOINT_EVERY < 1 ||
  !Number.isSafeInteger(PROOF_LEAVES) ||
  PROOF_LEAVES < 2 ||
  argv.some((a, i) => a !== "--json" && !VALUED.includes(a) && !VALUED.includes(argv[i - 1] ?? ""))
) {
  console.error("usage: bun run bench/transcript.ts [--entries N] [--checkpoint-every K] [--proof-leaves M] [--json]");
  process.exit(2);
}
/** Entries appended per event-loop turn: a loaded server's turn. */
const TURN = 1000;

const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
const log = (s: string): void => void (json ? process.stderr : process.stdout).write(`${s}\n`);
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

interface Append {
  seconds: number;
  cpuSeconds: number;
  entries: number;
  entriesPerSecond: number;
  entriesPerCpuSecond: number;
  checkpoints: number;
}

/**
 * The writer appends N entries (a server_start first, then joins and
 * messages as a chat makes them, checkpoints as the writer decides), TURN
 * per event-loop turn; each turn waits for the previous turn's messages to
 * be durable (written, a checkpoint signing them, fsynced), so fsyncs
 * overlap the next turn's appends as group commit has them.
 */
async function append(dir: string): Promise<Append> {
  const host = ed25519Generate(new Uint8Array(32).fill(1));
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, checkpointEvery: CHECKPOINT_EVERY, checkpointIntervalMs: 1e9, dir, hostKey: host, version: "bench", log: silentLogger });
  const c0 = cpuSeconds();
  const t0 = Bun.nanoseconds();
  let roomSeq = 0;
  let previous: Promise<void> = Promise.resolve();
  while (w.seq < N - 2) {
    let last: Promise<void> | null = null;
    for (let i = 0; i < TURN && w.seq < N - 2; i++) {
      const seq = w.seq + 1;
      if (seq % 10 === 0) w.append("join", { room: "general", user: `user${seq % 97}` });
      else last = w.append("message", { room: "general", room_seq: ++roomSeq, from: `user${seq % 97}`, text: `message number ${seq}: the quick brown fox jumps over the lazy dog` }).durable;
    }
    await previous;
    previous = last ?? previous;
  }
  await previous;
  w.close("bench"); // server_stop and its checkpoint: the transcript ends signed
  const seconds = (Bun.nanoseconds() - t0) / 1e9;
  const cpu = cpuSeconds() - c0;
  const entries = w.seq;
  let checkpoints = 0;
  for (const f of listTranscript(dir).files) checkpoints += (readFileSync(f.path, "latin1").match(/"type":"checkpoint"/g) ?? []).length;
  return { seconds, cpuSeconds: cpu, entries, entriesPerSecond: entries / seconds, entriesPerCpuSecond: entries / cpu, checkpoints };
}

/** sha256sum over the same files, in a fresh process: the floor. */
async function floor(dir: string): Promise<{ seconds: number; exitCode: number }> {
  const files = listTranscript(dir).files.map((f) => f.path);
  const t0 = Bun.nanoseconds();
  const p = Bun.spawn(["sha256sum", ...files], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  const exitCode = await p.exited;
  return { seconds: (Bun.nanoseconds() - t0) / 1e9, exitCode };
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

interface Proofs {
  leaves: number;
  buildSeconds: number;
  fileBytes: number;
  proofs: number;
  medianUs: number;
  p99Us: number;
  maxUs: number;
  hashesPerProof: number;
}

/**
 * A tree.hashes of M leaves written through the Frontier (each leaf the
 * hash of a 300-byte line naming its index), opened as the writer opens
 * it, then inclusion proofs of random leaves against the tree of all M,
 * each timed alone, each checked against the root.
 */
function proofs(path: string): Proofs {
  const t0 = Bun.nanoseconds();
  const f = new Frontier();
  const fd = openSync(path, "w", 0o600);
  const buf = Buffer.allocUnsafe(1 << 20);
  let used = 0;
  const line = Buffer.alloc(300, 0x61);
  for (let i = 0; i < PROOF_LEAVES; i++) {
    line.write(String(i).padStart(12, "0"), 0, "latin1");
    for (const h of f.append(leafHash(line))) {
      if (used + HASH_SIZE > buf.length) {
        writeSync(fd, buf, 0, used);
        used = 0;
      }
      buf.set(h, used);
      used += HASH_SIZE;
    }
  }
  writeSync(fd, buf, 0, used);
  closeSync(fd);
  const buildSeconds = (Bun.nanoseconds() - t0) / 1e9;
  const root = f.root();
  const opened = TranscriptTree.open(path, { size: PROOF_LEAVES, complete: true, checkpoint: { size: PROOF_LEAVES, root }, tail: [], lines: () => [] });
  if (opened.tree === null || opened.opened.rebuilt !== null) throw new Error("bench: the tree file was not taken as written");
  const tree = opened.tree;
  const read = (level: number, index: number): Hash => {
    const h = tree.read(level, index);
    if (!h) throw new Error("bench: a stored hash could not be read");
    return h;
  };
  const times: number[] = [];
  let hashes = 0;
  const K = 2000;
  // The first few compile the code: not counted.
  for (let k = 0; k < 200; k++) inclusionProof(Math.floor(Math.random() * PROOF_LEAVES), PROOF_LEAVES, read);
  for (let k = 0; k < K; k++) {
    const leaf = Math.floor(Math.random() * PROOF_LEAVES);
    const s = Bun.nanoseconds();
    const proof = inclusionProof(leaf, PROOF_LEAVES, read);
    times.push((Bun.nanoseconds() - s) / 1e3);
    hashes += proof.length;
    line.write(String(leaf).padStart(12, "0"), 0, "latin1");
    if (!verifyInclusion(leaf, PROOF_LEAVES, leafHash(line), proof, root)) throw new Error(`bench: the proof of leaf ${leaf} does not verify`);
  }
  tree.close(false);
  times.sort((a, b) => a - b);
  return {
    leaves: PROOF_LEAVES,
    buildSeconds,
    fileBytes: statSync(path).size,
    proofs: K,
    medianUs: times[K >> 1]!,
    p99Us: times[Math.floor(K * 0.99)]!,
    maxUs: times[K - 1]!,
    hashesPerProof: hashes / K,
  };
}

const root = mkdtempSync(join(tmpdir(), "securechat-bench-transcript-"));
const dir = join(root, "transcript");
mkdirSync(dir);
try {
  log(`appending ${N.toLocaleString("en")} entries through the writer (fsync batch) in ${dir} …`);
  const appended = await append(dir);
  const listing = listTranscript(dir).files;
  const files = listing.length;
  const bytes = listing.reduce((n, f) => n + statSync(f.path).size, 0);
  const entries = appended.entries;
  log(`  ${mib(bytes)} in ${files} files, ${appended.seconds.toFixed(1)} s`);

  const host = ed25519Generate(new Uint8Array(32).fill(1)).publicKey;
  const floors = [await floor(dir)];
  const phases: Phase[] = [];
  phases.push(
    await phase("verify", bytes, async () => {
      const r = await verifyTranscript(dir, { hostKey: host });
      if (!r.ok) throw new Error(`bench: the transcript does not verify: ${r.problem?.reason}`);
      return r.entries;
    }),
  );
  phases.push(
    await phase("verify --tree-only", bytes, async () => {
      const r = await verifyTranscript(dir, { hostKey: host, treeOnly: true });
      if (!r.ok) throw new Error(`bench: the transcript does not verify (tree only): ${r.problem?.reason}`);
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
  floors.push(await floor(dir));

  const pin = toBase64(host);
  const procs = [
    await cli("securechat transcript verify DIR", ["transcript", "verify", dir, "--host-key", pin]),
    await cli("securechat transcript verify DIR --tree-only", ["transcript", "verify", dir, "--tree-only", "--host-key", pin]),
    await cli("securechat transcript export > /dev/null", ["transcript", "export", "--data", root, "--host-key", pin]),
  ];
  for (const p of procs) if (p.exitCode !== 0) throw new Error(`bench: "${p.name}" exited ${p.exitCode}`);
  floors.push(await floor(dir));
  if (floors.some((f) => f.exitCode !== 0)) throw new Error("bench: sha256sum failed");
  // The floor taken before, between and after the phases: its median, so a burst of noise in one reading does not move it.
  const floorSeconds = floors.map((f) => f.seconds).sort((a, b) => a - b)[1]!;
  const sha256sum = { seconds: floorSeconds, entriesPerSecond: entries / floorSeconds, mbPerSecond: bytes / 1048576 / floorSeconds, runs: floors.map((f) => f.seconds) };

  log(`building a tree.hashes of ${PROOF_LEAVES.toLocaleString("en")} leaves for the proofs …`);
  const proof = proofs(join(root, "tree.hashes"));

  const result = { entries, files, bytes, generateSeconds: appended.seconds, append: appended, sha256sum, phases, processes: procs, proof, bun: Bun.version };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const ratio = (eps: number): string => `${(eps / sha256sum.entriesPerSecond).toFixed(2)}×`;
    log("");
    log(
      table(
        `transcript: ${entries.toLocaleString("en")} entries, ${mib(bytes)}, ${files} files (checkpoint every ${CHECKPOINT_EVERY}); floor: sha256sum of the same files, median of 3`,
        ["phase", "time", "entries/s", "MiB/s", "÷ sha256sum", "RSS before", "peak RSS"],
        [
          ["sha256sum FILES (the floor)", `${sha256sum.seconds.toFixed(2)} s`, Math.round(sha256sum.entriesPerSecond).toLocaleString("en"), sha256sum.mbPerSecond.toFixed(1), "1.00×", "", ""],
          [
            `append with proofs (writer, fsync batch)`,
            `${appended.seconds.toFixed(2)} s`,
            Math.round(appended.entriesPerSecond).toLocaleString("en"),
            (bytes / 1048576 / appended.seconds).toFixed(1),
            ratio(appended.entriesPerSecond),
            "",
            "",
          ],
          [`  per CPU-second (${appended.cpuSeconds.toFixed(2)} CPU-s)`, "", Math.round(appended.entriesPerCpuSecond).toLocaleString("en"), "", ratio(appended.entriesPerCpuSecond), "", ""],
          ...phases.map((p) => [p.name, `${p.seconds.toFixed(2)} s`, Math.round(p.entriesPerSecond).toLocaleString("en"), p.mbPerSecond.toFixed(1), ratio(p.entriesPerSecond), `${p.rssBeforeMiB.toFixed(0)} MiB`, `${p.peakRssMiB.toFixed(0)} MiB`]),
        ],
      ),
    );
    log("");
    log(
      table(
        "the CLI in a fresh process (peak RSS = the kernel's VmHWM for the whole process, incl. startup)",
        ["command", "time", "entries/s", "÷ sha256sum", "peak RSS"],
        procs.map((p) => [p.name, `${p.seconds.toFixed(2)} s`, Math.round(entries / p.seconds).toLocaleString("en"), ratio(entries / p.seconds), p.peakRssMiB === null ? "n/a" : `${p.peakRssMiB.toFixed(0)} MiB`]),
      ),
    );
    log("");
    log(
      table(
        `one inclusion proof served from tree.hashes (${mib(proof.fileBytes)}, built in ${proof.buildSeconds.toFixed(1)} s through the Frontier), ${proof.proofs} random leaves`,
        ["tree size", "hashes per proof", "median", "p99", "max"],
        [[proof.leaves.toLocaleString("en"), proof.hashesPerProof.toFixed(1), `${proof.medianUs.toFixed(1)} µs`, `${proof.p99Us.toFixed(1)} µs`, `${proof.maxUs.toFixed(1)} µs`]],
      ),
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
