/**
 * `transcript verify --checkpoint FILE` (docs/TRANSCRIPT.md §8.5): a
 * checkpoint saved earlier is evidence kept elsewhere. A log that still
 * extends it passes and says so; one cut back below it (rolled back), one
 * whose first lines differ (a fork or a rewrite), and a checkpoint of
 * another log each fail with exit 5 and their own class.
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
    const dir = join(tempDir("saved"), "transcript");
    write(dir, ["a", "b", "c", "d"]);
    const note = lastNote(dir);
    const size = Number(note.split("\n")[1]);

    const rolled = join(tempDir("saved"), "transcript");
    cpSync(dir, rolled, { recursive: true });
    cut(rolled, size - 2);
    const rb = await verifyTranscript(rolled, { hostKey: HOST.publicKey, checkpoint: note });
    expect(rb.problem).toMatchObject({ code: "rolled_back" });

    // The fork: cut back below the checkpoint, then a different history written on with the same host key.
    const fork = join(tempDir("saved"), "transcript");
    cpSync(dir, fork, { recursive: true });
    cut(fork, 3);
    write(fork, ["another", "story", "told", "here"]);
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
