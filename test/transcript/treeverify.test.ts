/**
 * `transcript verify --tree-only` (docs/TRANSCRIPT.md §8.6): every line's
 * leaf, the root at every checkpoint, every checkpoint's signatures. A log
 * the writer wrote passes with the root the full verify computes; a changed
 * line before a checkpoint (a wrong leaf), a checkpoint that signs another
 * root (even one the host key signed), and checkpoint signatures by another
 * key fail at that checkpoint's line with exit 5; a checkpoint hidden behind
 * an escape is not skipped.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { EXIT } from "../../src/commands/exit.ts";
import { ed25519Signer, sha256 } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log.ts";
import { type Entry, checkpointNote, entryHash, entryLine, parseEntry, signCheckpoint, treeCheckpointFields } from "../../src/transcript/format.ts";
import { fingerprint } from "../../src/fingerprint.ts";
import { reportObjects } from "../../src/transcript/report.ts";
import { verifyTreeOnly } from "../../src/transcript/treeverify.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { hostKeyPair, runCli, tempDir } from "./helpers.ts";

const HOST = hostKeyPair(41);
const OTHER = hostKeyPair(42);

/** A log the writer wrote: 60 messages, a checkpoint every 10 entries, some texts with quotes and backslashes. */
function written(): { dir: string; file: string; lines: string[] } {
  const dir = join(tempDir("treeonly"), "transcript");
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointEvery: 10, checkpointIntervalMs: 1e9, dir, hostKey: HOST, version: "t", log: silentLogger });
  for (let i = 1; i <= 60; i++) w.append("message", { room: "lobby", room_seq: i, from: "alice", text: i % 7 === 0 ? `say "checkpoint" \\ ${i}` : `message ${i}` });
  w.close("done");
  const file = join(dir, readdirSync(dir).find((f) => f.endsWith(".jsonl"))!);
  return { dir, file, lines: readFileSync(file, "utf8").split("\n").slice(0, -1) };
}

function copy(src: string): { dir: string; file: string } {
  const dir = join(tempDir("treeonly-copy"), "transcript");
  cpSync(src, dir, { recursive: true });
  return { dir, file: join(dir, readdirSync(dir).find((f) => f.endsWith(".jsonl"))!) };
}

/** The log with line `i` (0-based) replaced. */
function withLine(src: { dir: string; lines: string[] }, i: number, line: string): string {
  const c = copy(src.dir);
  const lines = [...src.lines];
  lines[i] = line;
  writeFileSync(c.file, `${lines.join("\n")}\n`);
  return c.dir;
}

/** An entry rewritten with its hash recomputed: the line a forger would write. */
function rewritten(e: Entry, change: Record<string, string | number>): string {
  const { hash: _, ...rest } = { ...e, ...change };
  return entryLine({ ...rest, hash: entryHash(rest) } as Entry).slice(0, -1);
}

const checkpointLines = (lines: string[]): number[] => lines.flatMap((l, i) => (parseEntry(l).type === "checkpoint" ? [i] : []));

async function treeOnly(dir: string) {
  return verifyTranscript(dir, { hostKey: HOST.publicKey, treeOnly: true });
}

describe("verify --tree-only", () => {
  const log = written();
  const cps = checkpointLines(log.lines);
  // A checkpoint in the middle, with a tree root, and the line before it.
  const cp = cps[2]!;
  const cpEntry = parseEntry(log.lines[cp]!);

  test("the writer's log passes, with the root and size the full verify computes, and says what it did not check", async () => {
    expect(typeof cpEntry.root).toBe("string");
    const full = await verifyTranscript(log.dir, { hostKey: HOST.publicKey });
    const r = await treeOnly(log.dir);
    expect(full.ok).toBe(true);
    expect(r.ok).toBe(true);
    expect(r.tree).toEqual(full.tree!);
    expect(r.entries).toBe(log.lines.length);
    expect(r.lastCheckpoint).toBe(full.lastCheckpoint);
    expect(r.treeOnly).toEqual({ checkpoints: cps.length });
    const cli = await runCli("transcript", "verify", log.dir, "--tree-only", "--host-key", toBase64(HOST.publicKey));
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`root: ${full.tree!.root}`);
    expect(cli.stdout).toContain(`--tree-only: every line's leaf hash, the root and the signatures of all ${cps.length} checkpoints checked; not each entry's form, the hash chain`);
  });

  test("a wrong leaf: a message changed before a checkpoint fails at that checkpoint, its own hash recomputed or not", async () => {
    const i = cp - 3;
    const e = parseEntry(log.lines[i]!);
    for (const line of [log.lines[i]!.replace(`"text":"${e.text as string}"`, `"text":"${(e.text as string).toUpperCase()}"`), rewritten(e, { text: "I owe bob nothing" })]) {
      expect(line).not.toBe(log.lines[i]);
      const r = await treeOnly(withLine(log, i, line));
      expect(r.problem).toMatchObject({ code: "bad_checkpoint", line: cp + 1 });
      expect(r.problem!.reason).toContain(`the tree root it signs is not the root of the ${cp} lines before it`);
    }
  });

  test("a wrong root: a checkpoint signing another root fails, even with the host key's own valid signatures", async () => {
    const otherRoot = sha256(new Uint8Array([1, 2, 3]));
    const signedByHost = treeCheckpointFields(ed25519Signer(HOST.secretKey), HOST.publicKey, cpEntry.origin as string, cpEntry.head_seq as number, otherRoot);
    const r = await treeOnly(withLine(log, cp, rewritten(cpEntry, signedByHost as Record<string, string>)));
    expect(r.problem).toMatchObject({ code: "bad_checkpoint", line: cp + 1 });
    // The root alone changed: its note signature no longer verifies.
    const r2 = await treeOnly(withLine(log, cp, rewritten(cpEntry, { root: toBase64(otherRoot) })));
    expect(r2.problem).toMatchObject({ code: "bad_signature", line: cp + 1 });
  });

  test("a forged checkpoint signature: signed by another key, the note or the chain signature, fails as bad_signature", async () => {
    const root = Buffer.from(cpEntry.root as string, "base64");
    const forgedNote = treeCheckpointFields(ed25519Signer(OTHER.secretKey), HOST.publicKey, cpEntry.origin as string, cpEntry.head_seq as number, root);
    const r = await treeOnly(withLine(log, cp, rewritten(cpEntry, forgedNote as Record<string, string>)));
    expect(r.problem).toMatchObject({ code: "bad_signature", line: cp + 1 });
    expect(r.problem!.reason).toContain("bad checkpoint note signature");
    const forgedSig = signCheckpoint(OTHER.secretKey, cpEntry.head_seq as number, cpEntry.head as string);
    const r2 = await treeOnly(withLine(log, cp, rewritten(cpEntry, { sig: forgedSig })));
    expect(r2.problem).toMatchObject({ code: "bad_signature", line: cp + 1 });
    expect(r2.problem!.reason).toContain("bad checkpoint signature");
    // Through the binary's command: exit 5 and the FAIL line.
    const cli = await runCli("transcript", "verify", withLine(log, cp, rewritten(cpEntry, forgedNote as Record<string, string>)), "--tree-only", "--host-key", toBase64(HOST.publicKey));
    expect(cli.code).toBe(EXIT.TRANSCRIPT);
    expect(cli.stderr).toContain(`:${cp + 1}: bad checkpoint note signature`);
  });

  test("a checkpoint cannot hide: spelled with an escape it is malformed; moved to sign another size it is bad", async () => {
    const hidden = log.lines[cp]!.replace('"type":"checkpoint"', '"type":"\\u0063heckpoint"');
    expect((await treeOnly(withLine(log, cp, hidden))).problem).toMatchObject({ code: "malformed", line: cp + 1 });
    // A forged checkpoint line put where another line was: it signs the wrong size.
    const r = await treeOnly(withLine(log, cp - 1, log.lines[cps[1]!]!));
    expect(r.problem).toMatchObject({ code: "bad_checkpoint", line: cp });
  });

  test("read in chunks of any size (lines and checkpoints across chunk boundaries), the same root, and the same failure at the same line", async () => {
    const whole = verifyTreeOnly(log.dir, { hostKey: HOST.publicKey });
    const tampered = withLine(log, cp - 3, rewritten(parseEntry(log.lines[cp - 3]!), { text: "tampered" }));
    const wholeBad = verifyTreeOnly(tampered, { hostKey: HOST.publicKey });
    expect(whole.problem).toBeNull();
    expect(wholeBad.problem).toMatchObject({ code: "bad_checkpoint", line: cp + 1 });
    for (const readBytes of [1, 7, 64, 255, 256, 331, 1000, 4096]) {
      const r = verifyTreeOnly(log.dir, { hostKey: HOST.publicKey, readBytes });
      expect(r.problem).toBeNull();
      expect(r.tree).toEqual(whole.tree);
      expect(r.checkpoints).toBe(whole.checkpoints);
      expect(verifyTreeOnly(tampered, { hostKey: HOST.publicKey, readBytes }).problem).toEqual(wholeBad.problem);
    }
  });

  test("the host key: a fingerprint pin the first server_start does not match fails; without a pin, a log whose first line is no server_start has no key", async () => {
    const pinned = await verifyTranscript(log.dir, { hostKeyFingerprint: fingerprint(OTHER.publicKey), treeOnly: true });
    expect(pinned.problem).toMatchObject({ code: "host_key_changed", line: 1 });
    expect((await verifyTranscript(log.dir, { hostKeyFingerprint: fingerprint(HOST.publicKey), treeOnly: true })).ok).toBe(true);
    const unpinned = await verifyTranscript(log.dir, { treeOnly: true });
    expect(unpinned.ok).toBe(true);
    expect(unpinned.hostKey).toBe(fingerprint(HOST.publicKey));
    expect(unpinned.pinned).toBe(false);
    // The first line replaced by a message: nothing names the key the checkpoints are signed with.
    const noStart = withLine(log, 0, log.lines[1]!);
    expect((await verifyTranscript(noStart, { treeOnly: true })).problem).toMatchObject({ code: "no_host_key", line: cps[0]! + 1 });
  });

  test("--json says it was tree-only and how many checkpoints it checked", async () => {
    const objects = reportObjects(await treeOnly(log.dir));
    expect(objects).toContainEqual(expect.objectContaining({ kind: "note", note: "tree_only", checkpoints: cps.length }));
    expect(objects.at(-1)).toMatchObject({ kind: "summary", result: "pass", head: null, entries: log.lines.length });
  });

  test("a torn last line and an empty directory fail as the full verify says; --against and --identity are refused", async () => {
    const c = copy(log.dir);
    writeFileSync(c.file, `${log.lines.join("\n")}\n{"seq":`);
    expect((await treeOnly(c.dir)).problem).toMatchObject({ code: "torn" });
    expect((await treeOnly(tempDir("treeonly-empty"))).problem).toMatchObject({ code: "empty" });
    const cli = await runCli("transcript", "verify", log.dir, "--tree-only", "--against", log.file);
    expect(cli.code).toBe(EXIT.USAGE);
  });

  test("with --checkpoint: a log rolled back below a saved checkpoint, or forked, fails as the full verify says", async () => {
    const note = checkpointNote(cpEntry)!;
    expect((await verifyTranscript(log.dir, { hostKey: HOST.publicKey, treeOnly: true, checkpoint: note })).saved).toEqual({ size: cp, origin: cpEntry.origin as string });
    const cut = copy(log.dir);
    writeFileSync(cut.file, `${log.lines.slice(0, cp - 2).join("\n")}\n`);
    expect((await verifyTranscript(cut.dir, { hostKey: HOST.publicKey, treeOnly: true, checkpoint: note })).problem).toMatchObject({ code: "rolled_back" });
    // Cut back and a different history written after it (no checkpoint signs it yet).
    const fork = copy(log.dir);
    writeFileSync(fork.file, `${[...log.lines.slice(0, cp - 2), rewritten(parseEntry(log.lines[cp - 2]!), { text: "other" })].join("\n")}\n`);
    expect((await verifyTranscript(fork.dir, { hostKey: HOST.publicKey, treeOnly: true, checkpoint: note })).problem).toMatchObject({ code: "rolled_back" });
    writeFileSync(fork.file, `${[...log.lines.slice(0, cp - 2), rewritten(parseEntry(log.lines[cp - 2]!), { text: "other" }), log.lines[cp - 1]!].join("\n")}\n`);
    expect((await verifyTranscript(fork.dir, { hostKey: HOST.publicKey, treeOnly: true, checkpoint: note })).problem).toMatchObject({ code: "forked", line: cp });
  });
});
