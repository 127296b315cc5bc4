/**
 * Reading one transcript line by its seq (src/transcript/lineat.ts,
 * docs/TRANSCRIPT.md §4.4), as the server does for each receipt a client
 * asks for: writes a transcript of N messages of 1 to 7 phrases (default
 * 300,000; files rotated at 64 MiB like the writer's default) in a
 * temporary directory, then looks up 1000 lines spread over it and reports
 * the reads and bytes read per lookup (counted, not timed).
 *
 *   bun run bench/lineat.ts                  300,000 entries
 *   bun run bench/lineat.ts --entries 1000000
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519Generate } from "../src/crypto/index.ts";
import { silentLogger } from "../src/log.ts";
import { type LineReads, readLineBySeq } from "../src/transcript/lineat.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../src/transcript/writer.ts";

const at = process.argv.indexOf("--entries");
const n = at > 0 ? Number(process.argv[at + 1]) : 300_000;
const root = mkdtempSync(join(tmpdir(), "lineat-"));
try {
  const dir = join(root, "transcript");
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: ed25519Generate(), version: "bench", log: silentLogger });
  for (let i = 0; i < n; i++) {
    w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `message ${i} `.repeat(1 + (i % 7)) });
    if (i % 5000 === 0) await new Promise((r) => setImmediate(r));
  }
  w.close("done");
  const files = readdirSync(dir).filter((f) => f.endsWith(".jsonl"));
  const bytes = files.reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  let worst: LineReads = { reads: 0, bytes: 0 };
  const total: LineReads = { reads: 0, bytes: 0 };
  let lookups = 0;
  for (let seq = 1; seq <= n; seq += Math.max(1, Math.floor(n / 1000))) {
    const s = { reads: 0, bytes: 0 };
    if (!readLineBySeq(dir, seq, s)) throw new Error(`no line ${seq}`);
    lookups++;
    total.reads += s.reads;
    total.bytes += s.bytes;
    if (s.bytes > worst.bytes) worst = s;
  }
  console.log(
    `${n} entries, ${files.length} files, ${(bytes / 1e6).toFixed(1)} MB: ${lookups} lookups, ` +
      `mean ${(total.reads / lookups).toFixed(1)} reads / ${Math.round(total.bytes / lookups)} bytes, worst ${worst.reads} reads / ${worst.bytes} bytes`,
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
