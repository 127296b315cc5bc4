/**
 * `transcript verify --checkpoint FILE` (docs/TRANSCRIPT.md §8.5): a
 * checkpoint saved earlier is evidence kept elsewhere. A log that still
 * extends it passes and says so; one cut back below it (rolled back), one
 * whose first lines differ (a fork or a rewrite), and a checkpoint of
 * another log each fail with exit 5 and their own class. `follow
 * --checkpoint` checks the same while following, and keeps FILE updated
 * with the newest checkpoint that extends it.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EXIT } from "../../src/commands/exit.ts";
import { silentLogger } from "../../src/log.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import { cosignatureLine, formatCosignerKey, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { checkpointNote, parseEntry } from "../../src/transcript/format.ts";
import { parseNote } from "../../src/transcript/note.ts";
import { followTranscript } from "../../src/transcript/export.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { hostKeyPair, runCli, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(31);

function write(dir: string, texts: string[], host = HOST): void {
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: host, version: "t", log: silentLogger });
  texts.forEach((text, i) => w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text }));
  w.close("done");
}

/** The note of the transcript's last checkpoint, as `transcript checkpoint` prints it. */
function lastNote(dir: string): string {
  const lines = readdirSync(dir)
    .filter((f) => f.endsWith(".jsonl"))
    .sort()
    .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").slice(0, -1));
  return checkpointNote(parseEntry(lines.at(-1)!))!;
}

/** Cuts the transcript's only file to its first `n` lines. */
function cut(dir: string, n: number): void {
  const f = join(dir, readdirSync(dir).find((x) => x.endsWith(".jsonl"))!);
  writeFileSync(f, `${readFileSync(f, "utf8").split("\n").slice(0, n).join("\n")}\n`);
}

/** A log of four messages and its last checkpoint; a copy cut back below it; a copy cut back and grown another way (a fork). */
function badLogs(): { dir: string; note: string; size: number; rolled: string; fork: string } {
  const dir = join(tempDir("saved"), "transcript");
  write(dir, ["a", "b", "c", "d"]);
  const note = lastNote(dir);
  const size = Number(note.split("\n")[1]);
  const rolled = join(tempDir("saved"), "transcript");
  cpSync(dir, rolled, { recursive: true });
  cut(rolled, size - 2);
  // The fork: cut back below the checkpoint, then a different history written on with the same host key.
  const fork = join(tempDir("saved"), "transcript");
  cpSync(dir, fork, { recursive: true });
  cut(fork, 3);
  write(fork, ["another", "story", "told", "here"]);
  return { dir, note, size, rolled, fork };
}

describe("verify --checkpoint", () => {
  test("a log that grew since passes, and says it extends the saved checkpoint", async () => {
    const dir = join(tempDir("saved"), "transcript");
    write(dir, ["a", "b", "c"]);
    const note = lastNote(dir);
    write(dir, ["d", "e"]);
    const r = await verifyTranscript(dir, { hostKey: HOST.publicKey, checkpoint: note });
    expect(r.problem).toBeNull();
    expect(r.saved).toEqual({ size: Number(note.split("\n")[1]), origin: note.split("\n")[0]! });
  });

  test("rolled back below it: rolled_back; rewritten from within it (a fork): forked, at the line where they part", async () => {
    const { note, size, rolled, fork } = badLogs();
    const rb = await verifyTranscript(rolled, { hostKey: HOST.publicKey, checkpoint: note });
    expect(rb.problem).toMatchObject({ code: "rolled_back" });
    const r = await verifyTranscript(fork, { hostKey: HOST.publicKey, checkpoint: note });
    expect(r.problem).toMatchObject({ code: "forked", line: size });
  });

  test("another log's checkpoint is refused as such; through the CLI each failure exits 5", async () => {
    const dir = join(tempDir("saved"), "transcript");
    write(dir, ["a", "b"]);
    const other = join(tempDir("saved"), "transcript");
    write(other, ["x", "y"], hostKeyPair(32));
    const foreign = lastNote(other);
    expect((await verifyTranscript(dir, { checkpoint: foreign })).problem).toMatchObject({ code: "checkpoint_foreign" });
    const file = join(tempDir("saved"), "other.checkpoint");
    writeFileSync(file, foreign);
    const r = await runCli("transcript", "verify", dir, "--checkpoint", file);
    expect(r.code).toBe(EXIT.TRANSCRIPT);
    expect(r.stderr).toContain("is not signed by this log's host key");
    const junk = join(tempDir("saved"), "junk");
    writeFileSync(junk, "not a note\n");
    expect((await runCli("transcript", "verify", dir, "--checkpoint", junk)).code).toBe(EXIT.USAGE);
  });
});

describe("verify --checkpoint --witness --witness-quorum (TRANSCRIPT.md §4.5)", () => {
  const W = [ed25519Generate(), ed25519Generate()];
  const vkeys = W.map((k, i) => formatCosignerKey(`witness.example/w${i}`, k.publicKey));
  const cosign = (note: string, i: number) => cosignatureLine(parseNote(note).text, `witness.example/w${i}`, W[i]!.publicKey, (m) => ed25519Sign(W[i]!.secretKey, m), 1_800_000_000n);
  const policy = (quorum: number) => ({ witnesses: vkeys.map(parseCosignerKey), quorum });

  test("a checkpoint cosigned by the quorum passes; fewer cosignatures, or one that does not verify, is checkpoint_unwitnessed", async () => {
    const dir = join(tempDir("saved"), "transcript");
    write(dir, ["a", "b", "c"]);
    const note = lastNote(dir);
    const both = note + cosign(note, 0) + cosign(note, 1);
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, checkpoint: both, witnesses: policy(2) })).problem).toBeNull();
    const one = note + cosign(note, 1);
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, checkpoint: one, witnesses: policy(1) })).problem).toBeNull();
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, checkpoint: one, witnesses: policy(2) })).problem).toMatchObject({ code: "checkpoint_unwitnessed" });
    const line = cosign(note, 0);
    const at = line.length - 12;
    const broken = note + line.slice(0, at) + (line[at] === "A" ? "B" : "A") + line.slice(at + 1) + cosign(note, 1);
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, checkpoint: broken, witnesses: policy(1) })).problem).toMatchObject({ code: "checkpoint_unwitnessed" });
  });

  test("through the CLI: exit 5 without the quorum, 0 with it; --witness without --checkpoint is a usage error", async () => {
    const dir = join(tempDir("saved"), "transcript");
    write(dir, ["a", "b"]);
    const note = lastNote(dir);
    const file = join(tempDir("saved"), "cosigned.checkpoint");
    writeFileSync(file, note + cosign(note, 0));
    const fail = await runCli("transcript", "verify", dir, "--checkpoint", file, "--witness", vkeys[0]!, "--witness", vkeys[1]!);
    expect(fail.code).toBe(EXIT.TRANSCRIPT);
    expect(fail.stderr).toContain("valid cosignatures of 1 of the 2 witness(es) given, and 2 are required");
    expect((await runCli("transcript", "verify", dir, "--checkpoint", file, "--witness", vkeys[0]!, "--witness", vkeys[1]!, "--witness-quorum", "1")).code).toBe(0);
    expect((await runCli("transcript", "verify", dir, "--witness", vkeys[0]!)).code).toBe(EXIT.USAGE);
  });
});

describe("follow --checkpoint", () => {
  /** Follows `dir` against `note` until `until` holds (or a failure); the checkpoints it hands on, and its failure code. */
  async function follow(dir: string, note: string, grow?: () => void, until: (kept: number[]) => boolean = () => true, pin = true) {
    const kept: { note: string; size: number }[] = [];
    const stop = new AbortController();
    let failure: string | null = null;
    let grown = false;
    const run = followTranscript(
      dir,
      {
        ...(pin ? { hostKey: HOST.publicKey } : {}),
        checkpoint: note,
        pollMs: 5,
        signal: stop.signal,
        onCheckpoint: (n, size) => {
          kept.push({ note: n, size });
          if (until(kept.map((k) => k.size))) stop.abort();
        },
        onCaughtUp: () => {
          if (grow && !grown) {
            grown = true;
            grow();
          } else if (!grow) stop.abort();
        },
      },
      { write: () => {} },
    ).catch((e) => {
      failure = (e as { problem?: { code: string } }).problem?.code ?? String(e);
    });
    const timer = setTimeout(() => stop.abort(), 20_000);
    await run;
    clearTimeout(timer);
    return { kept, failure: failure as string | null };
  }

  test("a log that extends it: followed, and each newer checkpoint it signs is handed on to keep (the newest read first, then each new one)", async () => {
    const dir = join(tempDir("saved"), "transcript");
    write(dir, ["a", "b", "c"]);
    const note = lastNote(dir);
    write(dir, ["d", "e"]);
    const grownTo = lastNote(dir);
    const r = await follow(dir, note, () => write(dir, ["f", "g", "h"]), (sizes) => sizes.length >= 2);
    expect(r.failure).toBeNull();
    expect(r.kept[0]!.note).toBe(grownTo);
    expect(r.kept.at(-1)!.note).toBe(lastNote(dir));
    expect(r.kept.map((k) => k.size)).toEqual([...r.kept.map((k) => k.size)].sort((x, y) => x - y));
    // The note handed on is itself one a later verify --checkpoint accepts.
    expect((await verifyTranscript(dir, { hostKey: HOST.publicKey, checkpoint: r.kept.at(-1)!.note })).problem).toBeNull();
  });

  test("rolled back below it, a fork, another log's: each fails with its class, nothing is handed on", async () => {
    const { note, rolled, fork } = badLogs();
    expect(await follow(rolled, note)).toEqual({ kept: [], failure: "rolled_back" });
    expect(await follow(fork, note)).toEqual({ kept: [], failure: "forked" });
    const other = join(tempDir("saved"), "transcript");
    write(other, ["x", "y", "z", "w", "v"], hostKeyPair(32));
    // Unpinned, as an auditor who has only the checkpoint would follow it: the log's own key does not sign it.
    expect(await follow(other, note, undefined, undefined, false)).toEqual({ kept: [], failure: "checkpoint_foreign" });
  });

  test("through the CLI: exit 5 on a fork; FILE is replaced by the newest checkpoint that extends it", async () => {
    const { dir, note, fork } = badLogs();
    const file = join(tempDir("saved"), "monitor.checkpoint");
    writeFileSync(file, note);
    const r = await runCli("transcript", "follow", "--data", join(fork, ".."), "--checkpoint", file);
    expect(r.code).toBe(EXIT.TRANSCRIPT);
    expect(r.stderr).toContain("a fork");
    write(dir, ["e", "f"]);
    const proc = Bun.spawn([process.execPath, "src/main.ts", "transcript", "follow", "--data", join(dir, ".."), "--from-end", "--checkpoint", file], { stdout: "ignore", stderr: "pipe" });
    const want = lastNote(dir);
    for (let i = 0; i < 400 && readFileSync(file, "utf8") !== want; i++) await Bun.sleep(25);
    proc.kill("SIGTERM");
    await proc.exited;
    expect(readFileSync(file, "utf8")).toBe(want);
  }, 30_000);
});
