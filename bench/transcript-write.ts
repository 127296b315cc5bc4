/**
 * What the transcript writer costs per acknowledged message
 * (docs/TRANSCRIPT.md §6: no ack before a checkpoint covering the message is
 * durable). For each fsync policy, appends N room messages of ~100 bytes
 * and waits for their `durable` (what the sender's ack waits for), in
 * batches of B messages per event-loop turn: B = 1 is a quiet chat, where
 * every message gets a checkpoint of its own; larger B is a loaded server,
 * where one checkpoint covers a whole batch. Reports, per message: entries,
 * checkpoints, bytes on disk, and messages per second; and the time of one
 * checkpoint signature.
 *
 *   bun run bench/transcript-write.ts [--messages N]
 *
 * Never fails on speed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519Generate } from "../src/crypto/index.ts";
import { silentLogger } from "../src/log.ts";
import { GENESIS, parseEntry, signCheckpoint } from "../src/transcript/format.ts";
import { listTranscript, readFileLines } from "../src/transcript/read.ts";
import { DEFAULT_WRITER, type FsyncPolicy, TranscriptWriter } from "../src/transcript/writer.ts";
import { table } from "./lib/table.ts";

const argv = Bun.argv.slice(2);
const mi = argv.indexOf("--messages");
const N = mi >= 0 ? Number(argv[mi + 1]) : 2000;
if (!Number.isSafeInteger(N) || N < 1 || argv.some((a, i) => a !== "--messages" && argv[i - 1] !== "--messages")) {
  console.error("usage: bun run bench/transcript-write.ts [--messages N]");
  process.exit(2);
}
const host = ed25519Generate(new Uint8Array(32).fill(1));

async function run(fsync: FsyncPolicy, batch: number): Promise<string[]> {
  const root = mkdtempSync(join(tmpdir(), "securechat-bench-write-"));
  const dir = join(root, "transcript");
  try {
    const w = TranscriptWriter.open({ ...DEFAULT_WRITER, dir, hostKey: host, fsync, checkpointIntervalMs: 1e9, version: "bench", log: silentLogger });
    const startSeq = w.seq;
    const t0 = Bun.nanoseconds();
    for (let sent = 0; sent < N; ) {
      const acks: Promise<void>[] = [];
      for (let i = 0; i < batch && sent < N; i++, sent++) {
        acks.push(w.append("message", { room: "general", room_seq: sent + 1, from: "alice", text: `message ${sent}: the quick brown fox jumps over the lazy dog, ninety bytes or so` }).durable);
      }
      await Promise.all(acks);
    }
    const seconds = (Bun.nanoseconds() - t0) / 1e9;
    const endSeq = w.seq;
    w.close("bench");
    // what the messages cost: the entries after the start's, up to the shutdown's
    let entries = 0;
    let checkpoints = 0;
    let bytes = 0;
    for (const f of listTranscript(dir).files) {
      for await (const l of readFileLines(f.path, f.name)) {
        const e = parseEntry(l.text);
        if (e.seq <= startSeq || e.seq > endSeq) continue;
        entries++;
        if (e.type === "checkpoint") checkpoints++;
        bytes += l.end - l.start;
      }
    }
    return [fsync, String(batch), (entries / N).toFixed(2), (checkpoints / N).toFixed(3), (bytes / N).toFixed(0), Math.round(N / seconds).toLocaleString("en")];
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const rows: string[][] = [];
for (const fsync of ["batch", "always", "off"] as const) {
  for (const batch of [1, 32, 256]) rows.push(await run(fsync, batch));
}
const SIGNS = 2000;
const s0 = Bun.nanoseconds();
for (let i = 0; i < SIGNS; i++) signCheckpoint(host.secretKey, i + 1, GENESIS);
const signUs = (Bun.nanoseconds() - s0) / 1e3 / SIGNS;

console.log(
  table(
    `transcript writer: ${N.toLocaleString("en")} messages, acks awaited per batch of B (per message: entries, checkpoints, bytes; server_start and shutdown not counted)`,
    ["--fsync", "B", "entries", "checkpoints", "bytes", "messages/s"],
    rows,
  ),
);
console.log(`\none checkpoint signature (Ed25519): ${signUs.toFixed(0)} µs`);
