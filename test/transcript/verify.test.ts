/**
 * `transcript verify` as an auditor meets it: a faithful transcript passes;
 * every single-entry edit, deletion, insertion, duplication and adjacent
 * swap — first, middle and last line of each file, and across file
 * boundaries — fails with exit 5 naming the file:line where the chain
 * breaks and what it looks like; key pinning; checkpoints; --against.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { appendFileSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64, utf8 } from "../../src/bytes.ts";
import { EXIT } from "../../src/commands/exit.ts";
import { fingerprint } from "../../src/fingerprint.ts";
import { type Entry, entryLine } from "../../src/transcript/format.ts";
import { CHUNK_BYTES, MAX_LINE_BYTES, listTranscript, readFileLineBatches, readFileLineBatchesSync, readFileLines, readLinesBackward, readTranscriptLines, readTranscriptLinesSync } from "../../src/transcript/read.ts";
import { type VerifyReport, verifyTranscript } from "../../src/transcript/verify.ts";
import { Chain, auditorKeyPair, buildTranscript, clientAcks, fileName, hostKeyPair, runCli, tempDir, writeChain, writeFiles } from "./helpers.ts";

const ENTRIES = 60;
const EVERY = 7;
const base = buildTranscript({ entries: ENTRIES, files: 3, checkpointEvery: EVERY });
const HOST_PUB_LINE = `ed25519 ${toBase64(base.host.publicKey)}`;

function copyFiles(): string[][] {
  return base.files.map((f) => [...f]);
}

/** Verifies `files` (named like the base transcript) through the CLI. */
async function verifyFiles(files: string[][], ...flags: string[]) {
  const dir = tempDir();
  writeFiles(dir, base.names, files);
  const r = await runCli("transcript", "verify", dir, "--host-key", HOST_PUB_LINE, ...flags);
  rmSync(dir, { recursive: true, force: true });
  return r;
}

function expectFail(r: { code: number; stdout: string; stderr: string }, at: string, reason: RegExp): void {
  expect(r.stdout).toBe("");
  const first = r.stderr.split("\n")[0]!;
  expect(first).toStartWith(`securechat: FAIL: ${at}: `);
  expect(first).toMatch(reason);
  expect(r.code).toBe(EXIT.TRANSCRIPT);
}

function edited(line: string): string {
  const o = JSON.parse(line) as Entry;
  if (typeof o.text === "string") o.text += " (edited)";
  else if (typeof o.user === "string") o.user = "mallory";
  else o.ts += 1;
  return entryLine(o).slice(0, -1); // canonical, old hash: "recompute nothing"
}

describe("verify: a faithful transcript", () => {
  test("passes unpinned, saying the key is the transcript's own", async () => {
    const r = await runCli("transcript", "verify", base.dir);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(`PASS: ${ENTRIES} entries in 3 files; last checkpoint at seq ${ENTRIES}`);
    expect(r.stdout).toContain(`checked against the key the transcript names (${fingerprint(base.host.publicKey)}); pass --host-key to pin it`);
    expect(r.stdout).not.toContain("not sealed");
  });

  const pins: [string, () => string][] = [
    ["base64", () => toBase64(base.host.publicKey)],
    ["the host_key.pub line", () => HOST_PUB_LINE],
    ["a path to host_key.pub", () => {
      const p = join(tempDir(), "host_key.pub");
      writeFileSync(p, `${HOST_PUB_LINE}\n`);
      return p;
    }],
    ["a SHA256: fingerprint", () => fingerprint(base.host.publicKey)],
    ["a client's known_hosts line", () => `127.0.0.1:7447 ${HOST_PUB_LINE}`],
    ["a known_hosts file holding that server's line (comments and blank lines skipped)", () => {
      const p = join(tempDir(), "known_hosts");
      writeFileSync(p, `# pinned by securechat\n\nchat.example:7447 ${HOST_PUB_LINE}\n`);
      return p;
    }],
  ];
  for (const [what, pin] of pins) {
    test(`passes pinned by ${what}, without the unpinned note`, async () => {
      const r = await runCli("transcript", "verify", base.dir, "--host-key", pin());
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith(`PASS: ${ENTRIES} entries in 3 files`);
      expect(r.stdout).not.toContain("pass --host-key");
    });
  }

  test("a known_hosts file with several servers is refused, asking for this server's line; another key's line fails (exit 5)", async () => {
    const p = join(tempDir(), "known_hosts");
    const other = toBase64(hostKeyPair(9).publicKey);
    writeFileSync(p, `a:1 ${HOST_PUB_LINE}\nb:2 ed25519 ${other}\n`);
    const r = await runCli("transcript", "verify", base.dir, "--host-key", p);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toStartWith(`securechat: --host-key: ${p} holds 2 servers' keys; pass the line of this server ("HOST:PORT ed25519 BASE64")\n`);
    const wrong = await runCli("transcript", "verify", base.dir, "--host-key", `b:2 ed25519 ${other}`);
    expect(wrong.code).toBe(EXIT.TRANSCRIPT);
    expect(wrong.stderr).toContain("host key changed");
    const junk = await runCli("transcript", "verify", base.dir, "--host-key", "b:2 rsa AAAA");
    expect(junk.code).toBe(EXIT.USAGE);
    expect(junk.stderr).toContain("a known_hosts line");
  });

  test("the report counts files, entries and checkpoints", async () => {
    const rep = await verifyTranscript(base.dir, { hostKey: base.host.publicKey });
    expect(rep).toMatchObject({ ok: true, problem: null, files: 3, entries: ENTRIES, firstSeq: 1, lastSeq: ENTRIES, lastCheckpoint: ENTRIES, unsealed: 0, pinned: true });
    expect(rep.head).toBe(base.entries.at(-1)!.hash);
  });

  test("a single file is verified on its own; the first file passes", async () => {
    const r = await runCli("transcript", "verify", join(base.dir, base.names[0]!));
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("PASS: 20 entries in 1 file;");
  });

  test("a later file alone does not start at the beginning", async () => {
    const r = await runCli("transcript", "verify", join(base.dir, base.names[1]!));
    expectFail(r, `${base.names[1]}:1`, /the transcript does not start at the beginning/);
  });

  test("a truncated tail (entries removed, no checkpoint after them) passes with the not-sealed warning", async () => {
    const files = copyFiles();
    files[2] = files[2]!.slice(0, -4);
    const kept = base.entries.slice(0, ENTRIES - 4);
    const lastCp = kept.findLast((e) => e.type === "checkpoint")!.seq;
    const r = await verifyFiles(files);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(`PASS: ${ENTRIES - 4} entries in 3 files; last checkpoint at seq ${lastCp}\n`);
    expect(r.stdout).toContain(`warning: ${ENTRIES - 4 - lastCp} entries after the last checkpoint (seq ${lastCp}) are not sealed by a signature`);
  });

  test("a whole last file removed passes too (only --against can tell), with the warning if unsealed", async () => {
    const dir = tempDir();
    writeFiles(dir, base.names.slice(0, 2), base.files.slice(0, 2));
    const rep = await verifyTranscript(dir);
    expect(rep.ok).toBe(true);
    expect(rep.entries).toBe(40);
  });

  test(".torn files and recovery entries are mentioned, not read", async () => {
    const c = new Chain(base.host);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.add("join", { room: "r", user: "u" });
    c.add("recovery", { file: "x.jsonl", torn_bytes: 7, torn_sha256: "ab".repeat(32), reason: "torn last line cut after a crash" });
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.checkpoint();
    const dir = writeChain(c);
    writeFileSync(join(dir, `${fileName(c.entries[0]!.ts, 1)}.torn`), "{\"seq\":3,");
    const r = await runCli("transcript", "verify", dir);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("note: 1 crash recovery recorded (seq 3)");
    expect(r.stdout).toContain(`note: 1 .torn file (bytes cut off by crash recovery, not part of the chain): ${fileName(c.entries[0]!.ts, 1)}.torn`);
  });
});

/**
 * The tamper matrix. Positions are 0-based (file, index); expectations are
 * "FILE:LINE" (1-based) and the reason's pattern. The base transcript has
 * 3 files of 20 entries; its last entry (file 3, line 20) is a checkpoint.
 */
describe("verify: every single-entry tampering fails at the right file:line", () => {
  const n = (f: number) => base.files[f]!.length;
  const name = (f: number) => base.names[f]!;
  const positions: [number, number][] = [];
  for (let f = 0; f < 3; f++) positions.push([f, 0], [f, Math.floor(n(f) / 2)], [f, n(f) - 1]);

  interface Case {
    label: string;
    mutate: (files: string[][]) => void;
    at: string;
    reason: RegExp;
  }
  const cases: Case[] = [];
  for (const [f, i] of positions) {
    const here = `${name(f)}:${i + 1}`;
    const lastOfAll = f === 2 && i === n(2) - 1;
    const firstOfAll = f === 0 && i === 0;
    const nextPos = i + 1 < n(f) ? `${name(f)}:${i + 1}` : `${name(f + 1)}:1`;

    cases.push({ label: `edit ${here}`, mutate: (fs) => void (fs[f]![i] = edited(fs[f]![i]!)), at: here, reason: /entry edited \(its hash does not match its content\)/ });

    if (!lastOfAll) {
      cases.push({
        label: `delete ${here}`,
        mutate: (fs) => void fs[f]!.splice(i, 1),
        at: nextPos,
        reason: firstOfAll ? /the transcript does not start at the beginning \(its first entry is seq 2/ : /entry deleted \(sequence gap: expected seq \d+, found \d+\)/,
      });
    }

    // A verbatim entry from another file, inserted before this line.
    const src = base.files[(f + 2) % 3]![10]!;
    cases.push({ label: `insert before ${here}`, mutate: (fs) => void fs[f]!.splice(i, 0, src), at: here, reason: /entry inserted/ });

    cases.push({ label: `duplicate ${here}`, mutate: (fs) => void fs[f]!.splice(i + 1, 0, fs[f]![i]!), at: `${name(f)}:${i + 2}`, reason: /duplicated entry/ });

    if (!lastOfAll) {
      // Swap with the next entry, which for a file's last line is the next file's first.
      cases.push({
        label: `swap ${here} with the next entry`,
        mutate: (fs) => {
          const [g, j] = i + 1 < n(f) ? [f, i + 1] : [f + 1, 0];
          [fs[f]![i], fs[g]![j]] = [fs[g]![j]!, fs[f]![i]!];
        },
        at: here,
        reason: /entries reordered \(expected seq \d+, found seq \d+; seq \d+ comes 1 line later\)/,
      });
    }
  }
  const last = `${name(2)}:${n(2)}`;
  cases.push(
    { label: "swap the last two entries", mutate: (fs) => void fs[2]!.splice(n(2) - 2, 2, fs[2]![n(2) - 1]!, fs[2]![n(2) - 2]!), at: `${name(2)}:${n(2) - 1}`, reason: /entries reordered/ },
    { label: "insert after the last entry", mutate: (fs) => void fs[2]!.push(base.files[0]![5]!), at: `${name(2)}:${n(2) + 1}`, reason: /entry inserted \(seq goes backwards/ },
    { label: "duplicate a file's last entry as the next file's first", mutate: (fs) => void fs[1]!.unshift(fs[0]!.at(-1)!), at: `${name(1)}:1`, reason: /duplicated entry \(the same entry as .*:20\)/ },
    { label: "move an entry 3 lines later", mutate: (fs) => void fs[1]!.splice(8, 0, ...fs[1]!.splice(5, 1)), at: `${name(1)}:6`, reason: /entries reordered \(.*comes 3 lines later\)/ },
    { label: "delete a whole middle file", mutate: (fs) => void fs[1]!.splice(0), at: `${name(2)}:1`, reason: /20 entries deleted \(sequence gap: expected seq 21, found 41\)/ },
    { label: "edit the hash field itself", mutate: (fs) => void (fs[1]![3] = fs[1]![3]!.replace(/"hash":"./, '"hash":"f')), at: `${name(1)}:4`, reason: /entry edited/ },
    { label: "edit prev", mutate: (fs) => void (fs[0]![7] = fs[0]![7]!.replace(/"prev":"./, '"prev":"f')), at: `${name(0)}:8`, reason: /entry edited/ },
    { label: "a line made non-canonical (space added)", mutate: (fs) => void (fs[0]![4] = fs[0]![4]!.replace(",", ", ")), at: `${name(0)}:5`, reason: /malformed line \(not in canonical form/ },
    // Other spellings of the same entry (its hash unchanged, still right for it) are malformed, not edited.
    { label: "a line's members reordered", mutate: (fs) => void (fs[1]![6] = fs[1]![6]!.replace(/^\{("[a-z_]+":[^,]+),("[a-z_]+":[^,]+),/, "{$2,$1,")), at: `${name(1)}:7`, reason: /malformed line \(not in canonical form/ },
    { label: "a letter written as an escape", mutate: (fs) => void (fs[2]![3] = fs[2]![3]!.replace(/"type":"(.)/, (_, c: string) => `"type":"\\u00${c.charCodeAt(0).toString(16)}`)), at: `${name(2)}:4`, reason: /malformed line \(not in canonical form/ },
    { label: "a member written twice", mutate: (fs) => void (fs[0]![9] = fs[0]![9]!.replace('"seq":', '"seq":0,"seq":')), at: `${name(0)}:10`, reason: /malformed line \(not in canonical form/ },
    { label: "a garbage line", mutate: (fs) => void fs[1]!.splice(2, 0, "not json"), at: `${name(1)}:3`, reason: /malformed line \(line is not JSON\)/ },
    { label: "an unknown entry type", mutate: (fs) => void (fs[1]![2] = fs[1]![2]!.replace(/"type":"[a-z_]+"/, '"type":"shout"')), at: `${name(1)}:3`, reason: /malformed line \(unknown entry type "shout"\)/ },
  );

  test("the matrix covers first/middle/last of each file for every kind", () => {
    expect(cases.length).toBeGreaterThanOrEqual(50);
    expect(last).toBe(`${name(2)}:20`);
  });

  for (const c of cases) {
    test(c.label, async () => {
      const files = copyFiles();
      c.mutate(files);
      expectFail(await verifyFiles(files), c.at, c.reason);
    });
  }

  test("deleting the very last entry is a truncation: PASS, with the not-sealed warning", async () => {
    const files = copyFiles();
    files[2]!.pop();
    const r = await verifyFiles(files);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`warning: ${ENTRIES - 1 - base.entries.slice(0, -1).findLast((e) => e.type === "checkpoint")!.seq} entries after the last checkpoint`);
  });

  test("a renamed file (its name no longer says its first seq) fails", async () => {
    const dir = tempDir();
    writeFiles(dir, base.names, base.files);
    const moved = fileName(base.entries[20]!.ts, 22);
    renameSync(join(dir, base.names[1]!), join(dir, moved));
    const r = await runCli("transcript", "verify", dir);
    expectFail(r, `${moved}:1`, /the file name says its first entry is seq 22, but it is seq 21/);
  });

  test("a torn last line fails as torn", async () => {
    const dir = tempDir();
    writeFiles(dir, base.names, base.files);
    appendFileSync(join(dir, base.names[2]!), '{"prev":"00');
    expectFail(await runCli("transcript", "verify", dir), `${name(2)}:21`, /torn last line \(11 bytes without a final LF/);
  });

  test("an empty directory fails; a missing one is a runtime error (exit 1)", async () => {
    const dir = tempDir();
    const r = await runCli("transcript", "verify", dir);
    expect(r.code).toBe(EXIT.TRANSCRIPT);
    expect(r.stderr).toContain("no transcript files");
    const m = await runCli("transcript", "verify", join(dir, "nope"));
    expect(m.code).toBe(EXIT.FAILURE);
    expect(m.stderr).toContain("does not exist");
  });
});

describe("verify: host keys and checkpoints", () => {
  const other = hostKeyPair(9);

  test("a wrong pinned host key fails at the first server_start", async () => {
    for (const pin of [toBase64(other.publicKey), fingerprint(other.publicKey)]) {
      const r = await runCli("transcript", "verify", base.dir, "--host-key", pin);
      expectFail(r, `${base.names[0]}:1`, /host key changed \(server_start names SHA256:\S+; --host-key pins SHA256:\S+\)/);
    }
  });

  test("a checkpoint signed by another key fails as a bad signature", async () => {
    const c = new Chain(base.host);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.add("join", { room: "r", user: "u" });
    c.checkpoint();
    c.add("leave", { room: "r", user: "u" });
    c.checkpoint(other);
    const dir = writeChain(c);
    expectFail(await runCli("transcript", "verify", dir), `${fileName(c.entries[0]!.ts, 1)}:5`, /bad checkpoint signature \(not made by host key SHA256:/);
  });

  test("a forged entry with the whole chain after it recomputed fails at the next checkpoint", async () => {
    // Without the host key, the forger must re-sign every later checkpoint with a key of their own.
    const c = new Chain(base.host);
    let forgedAt = 0;
    let firstCpAfter = 0;
    for (const e of base.entries) {
      const { seq: _s, ts, type, prev: _p, hash: _h, ...fields } = e;
      if (e.seq === 25) {
        forgedAt = c.add("message", { room: "general", room_seq: 999, from: "alice", text: "forged" }, ts).seq;
      }
      if (type === "checkpoint") {
        const cp = c.checkpoint(forgedAt ? other : base.host);
        if (forgedAt && !firstCpAfter) firstCpAfter = cp.seq;
      } else c.add(type, fields, ts);
    }
    const dir = writeChain(c);
    expectFail(await runCli("transcript", "verify", dir), `${fileName(c.entries[0]!.ts, 1)}:${firstCpAfter}`, /bad checkpoint signature/);
  });

  test("a transcript forged from the start under another key passes only unpinned, which is why the note says so", async () => {
    const forged = buildTranscript({ entries: 30, files: 2, checkpointEvery: 7, host: other });
    const unpinned = await runCli("transcript", "verify", forged.dir);
    expect(unpinned.code).toBe(0);
    expect(unpinned.stdout).toContain(`checked against the key the transcript names (${fingerprint(other.publicKey)}); pass --host-key to pin it`);
    expectFail(await runCli("transcript", "verify", forged.dir, "--host-key", HOST_PUB_LINE), `${forged.names[0]}:1`, /host key changed/);
  });

  test("a checkpoint naming the wrong head fails", async () => {
    const c = new Chain(base.host);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.add("join", { room: "r", user: "u" });
    c.add("checkpoint", { head_seq: 1, head: c.entries[0]!.hash, sig: toBase64(new Uint8Array(64)) });
    expectFail(await runCli("transcript", "verify", writeChain(c)), `${fileName(c.entries[0]!.ts, 1)}:3`, /bad checkpoint \(it must seal the entry before it, seq 2; it names seq 1\)/);
  });

  test("a later server_start with another key fails as host key changed", async () => {
    const c = new Chain(base.host);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.checkpoint();
    c.add("server_start", { host_key: toBase64(other.publicKey), version: "t" });
    const r = await runCli("transcript", "verify", writeChain(c));
    expectFail(r, `${fileName(c.entries[0]!.ts, 1)}:3`, /host key changed \(server_start names .*; the first server_start \(seq 1\) names/);
  });

  test("a checkpoint before any server_start needs --host-key", async () => {
    const c = new Chain(base.host);
    c.add("join", { room: "r", user: "u" });
    c.checkpoint();
    const dir = writeChain(c);
    expectFail(await runCli("transcript", "verify", dir), `${fileName(c.entries[0]!.ts, 1)}:2`, /checkpoint before any server_start/);
    expect((await runCli("transcript", "verify", dir, "--host-key", toBase64(base.host.publicKey))).code).toBe(0);
  });

  test("time going backwards fails", async () => {
    const c = new Chain(base.host);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.add("join", { room: "r", user: "u" });
    c.add("leave", { room: "r", user: "u" }, c.ts - 1);
    expectFail(await runCli("transcript", "verify", writeChain(c)), `${fileName(c.entries[0]!.ts, 1)}:3`, /time goes backwards \(ts \d+ is before the previous entry's ts \d+\)/);
  });

  test("equal timestamps are fine (ts never decreases)", async () => {
    const c = new Chain(base.host);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.add("join", { room: "r", user: "u" }, c.ts);
    c.checkpoint();
    expect((await runCli("transcript", "verify", writeChain(c))).code).toBe(0);
  });

  test("a bad --host-key value is a usage error", async () => {
    for (const bad of ["SHA256:short", "ed25519 AAAA", "/nonexistent/host_key.pub", "securechat"]) {
      const r = await runCli("transcript", "verify", base.dir, "--host-key", bad);
      expect(r.code).toBe(EXIT.USAGE);
      expect(r.stderr).toStartWith("securechat: --host-key: ");
    }
  });
});

describe("verify --against a client's transcript", () => {
  function clientFile(lines: string[]): string {
    const p = join(tempDir("client"), "alice.transcript");
    writeFileSync(p, lines.map((l) => `${l}\n`).join(""));
    return p;
  }
  const aliceAcks = clientAcks(base.entries, "alice");
  const ackCount = aliceAcks.filter((l) => l.includes('"kind":"ack"')).length;

  test("passes on a faithful server log, naming the inferred user", async () => {
    const r = await runCli("transcript", "verify", base.dir, "--against", clientFile(aliceAcks));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`against alice.transcript: ${ackCount} acknowledged messages found in the server transcript (user alice)`);
    expect(ackCount).toBeGreaterThan(5);
  });

  test("catches a truncated (rolled back) server log", async () => {
    const dir = tempDir();
    writeFiles(dir, base.names.slice(0, 2), base.files.slice(0, 2));
    const firstLost = base.entries.find((e) => e.seq > 40 && e.type === "message" && e.from === "alice")!;
    const lines = clientAcks(base.entries, "alice", false);
    const lineNo = lines.findIndex((l) => l.includes('"kind":"ack"') && l.includes(`"seq":${firstLost.room_seq},`) && l.includes('"room":"general"')) + 1;
    const r = await runCli("transcript", "verify", dir, "--against", clientFile(lines));
    expectFail(r, `alice.transcript:${lineNo}`, new RegExp(`acknowledged message not in the server transcript \\(room general seq ${firstLost.room_seq}\\) — the server log was truncated or rolled back`));
  });

  test("catches a message changed in a rewritten (re-chained) server log", async () => {
    // The server rewrites alice's first message and recomputes the whole chain.
    const c = new Chain(base.host);
    let target = 0;
    for (const e of base.entries) {
      const { seq: _s, ts, type, prev: _p, hash: _h, ...fields } = e;
      if (type === "checkpoint") c.checkpoint();
      else if (!target && type === "message" && fields.from === "alice") {
        target = e.seq;
        c.add(type, { ...fields, text: "something alice never said" }, ts);
      } else c.add(type, fields, ts);
    }
    const dir = writeChain(c);
    const plain = clientAcks(base.entries, "alice", false);
    const lineNo = plain.findIndex((l) => l.includes('"kind":"ack"')) + 1;
    expectFail(await runCli("transcript", "verify", dir, "--against", clientFile(plain)), `alice.transcript:${lineNo}`, /message changed \(room general seq 1: the text differs at /);
    // With the ack's tseq/head, the rewrite is caught by the hash the server promised.
    expectFail(await runCli("transcript", "verify", dir, "--against", clientFile(aliceAcks)), `alice.transcript:${lineNo}`, /as transcript entry \d+ with hash .* has another hash — the server log was rewritten/);
  });

  test("acks from two users cannot both be the client's", async () => {
    const mixed = [...clientAcks(base.entries, "alice"), ...clientAcks(base.entries, "bob")];
    const r = await runCli("transcript", "verify", base.dir, "--against", clientFile(mixed));
    expect(r.code).toBe(EXIT.TRANSCRIPT);
    expect(r.stderr).toMatch(/acknowledged message is from another user/);
    expect((await runCli("transcript", "verify", base.dir, "--against", clientFile(aliceAcks), "--user", "bob")).stderr).toMatch(/--user says bob/);
  });

  test("a malformed client line fails naming its line; other kinds are ignored", async () => {
    const lines = [JSON.stringify({ kind: "recv", whatever: 1 }), ...aliceAcks.slice(0, 4), "{oops", ...aliceAcks.slice(4)];
    expectFail(await runCli("transcript", "verify", base.dir, "--against", clientFile(lines)), "alice.transcript:6", /malformed client transcript line \(not JSON\)/);
    const badAck = [JSON.stringify({ kind: "ack", id: 1, room: "general", seq: 0, ts: 1, text: "x" })];
    expectFail(await runCli("transcript", "verify", base.dir, "--against", clientFile(badAck)), "alice.transcript:1", /ack.seq must be a positive integer/);
  });

  test("sealed bodies: without --identity the text is not compared (and it says so); with it, it is", async () => {
    const auditor = auditorKeyPair();
    const sealed = buildTranscript({ entries: 45, files: 2, checkpointEvery: 5, seal: auditor.publicKey });
    const acks = clientAcks(sealed.entries, "alice", false, sealed.plain);
    const n = acks.filter((l) => l.includes('"kind":"ack"')).length;
    const r = await runCli("transcript", "verify", sealed.dir, "--against", clientFile(acks));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`note: ${n} of them are sealed; their text was not compared (pass --identity)`);

    const keyFile = join(tempDir("auditor"), "auditor.key");
    writeFileSync(keyFile, `securechat-auditor-key-v1 ${toBase64(auditor.secretKey)}\n`, { mode: 0o600 });
    const ok = await runCli("transcript", "verify", sealed.dir, "--against", clientFile(acks), "--identity", keyFile);
    expect(ok.code).toBe(0);
    expect(ok.stdout).not.toContain("not compared");

    const lied = acks.map((l, k) => (k === acks.findIndex((x) => x.includes('"kind":"ack"')) ? l.replace(/"text":"[^"]*"/, '"text":"forged"') : l));
    const bad = await runCli("transcript", "verify", sealed.dir, "--against", clientFile(lied), "--identity", keyFile);
    expect(bad.code).toBe(EXIT.TRANSCRIPT);
    expect(bad.stderr).toMatch(/message changed \(room general seq 1: the text differs/);
  });
});

describe("verify --identity opens every sealed body", () => {
  const auditor = auditorKeyPair();
  const keyFile = join(tempDir("auditor"), "auditor.key");
  writeFileSync(keyFile, `securechat-auditor-key-v1 ${toBase64(auditor.secretKey)}\n`, { mode: 0o600 });

  test("a faithful sealed transcript: PASS, saying how many bodies opened", async () => {
    const sealed = buildTranscript({ entries: 40, files: 2, checkpointEvery: 6, seal: auditor.publicKey });
    const r = await runCli("transcript", "verify", sealed.dir, "--identity", keyFile);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`note: ${sealed.plain.size} sealed bodies opened with --identity\n`);
    const other = join(tempDir("auditor"), "other.key");
    writeFileSync(other, `securechat-auditor-key-v1 ${toBase64(auditorKeyPair(8).secretKey)}\n`, { mode: 0o600 });
    const o = await runCli("transcript", "verify", sealed.dir, "--identity", other);
    expect(o.code).toBe(0);
    expect(o.stdout).toContain(`note: 0 sealed bodies opened with --identity; ${sealed.plain.size} sealed to another auditor key, not checked`);
  });

  test("a sealed body moved to another entry chains, but does not open: sealed_body", async () => {
    const c = new Chain(base.host, auditor.publicKey);
    c.add("server_start", { host_key: toBase64(base.host.publicKey), version: "t" });
    c.sealKey();
    const m = c.add("message", { room: "general", room_seq: 1, from: "alice", text: "mine" });
    c.add("message", { room: "general", room_seq: 2, from: "alice", sealed: m.sealed!, key_seq: m.key_seq! });
    c.checkpoint();
    const dir = writeChain(c);
    expect((await runCli("transcript", "verify", dir)).code).toBe(0);
    expectFail(await runCli("transcript", "verify", dir, "--identity", keyFile), `${fileName(c.entries[0]!.ts, 1)}:4`, /sealed body does not open \(the sealed body of seq 4 does not open with its file key\)/);
  });
});

describe("read: lines in bounded chunks", () => {
  test("lines spanning chunk boundaries come back whole, with 1-based numbers and offsets", async () => {
    const dir = tempDir();
    const lines = Array.from({ length: 50 }, (_, k) => `${k}:${"é".repeat(1000 + ((k * 7919) % 5000))}`);
    const body = lines.map((l) => `${l}\n`).join("");
    writeFileSync(join(dir, "x.jsonl"), body);
    expect(Buffer.byteLength(body)).toBeGreaterThan(3 * CHUNK_BYTES);
    const got = [];
    for await (const l of readFileLines(join(dir, "x.jsonl"), "x.jsonl")) got.push(l);
    expect(got.map((l) => l.text)).toEqual(lines);
    expect(got.map((l) => l.line)).toEqual(lines.map((_, k) => k + 1));
    expect(got.every((l) => l.defect === undefined)).toBe(true);
    expect(got.at(-1)!.end).toBe(Buffer.byteLength(body));
  });

  test("a last line without LF is torn (or held back with partial: stop); bad UTF-8 and overlong lines are flagged", async () => {
    const dir = tempDir();
    const p = join(dir, "y.jsonl");
    writeFileSync(p, Buffer.concat([Buffer.from("ok\n"), Buffer.from([0xff, 0xfe, 0x0a]), Buffer.alloc(MAX_LINE_BYTES + 10, 0x61), Buffer.from("\nnext\ntail")]));
    const got = [];
    for await (const l of readFileLines(p, "y.jsonl")) got.push([l.line, l.defect ?? l.text]);
    expect(got).toEqual([[1, "ok"], [2, "not_utf8"], [3, "too_long"], [4, "next"], [5, "torn"]]);
    const held = [];
    for await (const l of readFileLines(p, "y.jsonl", { partial: "stop", start: 3, firstLine: 2 })) held.push(l.line);
    expect(held).toEqual([2, 3, 4]);
  });

  test("the sync reader (the writer's, at start) yields exactly what the async one does", async () => {
    const dir = tempDir();
    const p = join(dir, "z.jsonl");
    const long = Array.from({ length: 40 }, (_, k) => `${k}:${"é".repeat(1000 + ((k * 7919) % 5000))}\n`).join("");
    writeFileSync(p, Buffer.concat([Buffer.from(long), Buffer.from([0xff, 0x0a]), Buffer.alloc(MAX_LINE_BYTES + 10, 0x61), Buffer.from("\nnext\ntail")]));
    for (const opts of [{}, { partial: "stop" as const }, { start: Buffer.byteLength(long), firstLine: 41 }]) {
      const async = [];
      for await (const b of readFileLineBatches(p, "z.jsonl", opts)) async.push(b);
      expect([...readFileLineBatchesSync(p, "z.jsonl", opts)]).toEqual(async);
    }
  });

  test("backwards: whole lines last first, with their offsets; not the torn tail; overlong lines skipped; only as far as asked", () => {
    const dir = tempDir();
    const p = join(dir, "b.jsonl");
    const lines = ["", ...Array.from({ length: 30 }, (_, k) => `${k}:${"é".repeat(1000 + ((k * 7919) % 9000))}`)];
    const head = lines.map((l) => `${l}\n`).join("");
    // just over the limit, and over it by more than a chunk
    const over = Buffer.concat([Buffer.alloc(MAX_LINE_BYTES + 1, 0x62), Buffer.from("\n"), Buffer.alloc(MAX_LINE_BYTES + 3 * CHUNK_BYTES, 0x63)]);
    writeFileSync(p, Buffer.concat([Buffer.from(head), over, Buffer.from("\nlast\ntorn, no LF")]));
    const got = [...readLinesBackward(p)];
    const overEnd = Buffer.byteLength(head) + over.length + 1;
    expect(got.map((l) => l.bytes.toString())).toEqual(["last", ...[...lines].reverse()]);
    expect(got[0]).toMatchObject({ start: overEnd, end: overEnd + 5 });
    let end = Buffer.byteLength(head);
    for (const [k, l] of got.slice(1).entries()) {
      const n = Buffer.byteLength(lines[lines.length - 1 - k]!) + 1;
      expect([l.start, l.end]).toEqual([end - n, end]);
      end -= n;
    }
    // from a given offset: the lines that end at or before it
    expect([...readLinesBackward(p, got[3]!.end)].map((l) => l.start)).toEqual(got.slice(3).map((l) => l.start));
    expect([...readLinesBackward(p, 0)]).toEqual([]);
  });

  test("the synchronous reader (server start-up) yields the lines the streaming one reads, as bytes, but no overlong or torn one", async () => {
    const dir = tempDir();
    const long = Array.from({ length: 40 }, (_, k) => `${k}:${"é".repeat(1000 + ((k * 7919) % 5000))}`);
    writeFileSync(
      join(dir, "2026-11-22.000000000001.jsonl"),
      Buffer.concat([
        Buffer.from(long.slice(0, 20).map((l) => `${l}\n`).join("")),
        Buffer.from([0xff, 0xfe, 0x0a]),
        Buffer.alloc(MAX_LINE_BYTES + 3 * CHUNK_BYTES, 0x61),
        Buffer.from(`\n${long.slice(20).join("\n")}\ntorn`),
      ]),
    );
    writeFileSync(join(dir, "2026-11-22.000000000099.jsonl"), "after\n\nlast\n");
    const { files } = listTranscript(dir);
    const streamed: string[] = [];
    for await (const l of readTranscriptLines(files)) if (!l.defect) streamed.push(l.text);
    expect(streamed).toEqual([...long, "after", "", "last"]);
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const read: string[] = [];
    for (const line of readTranscriptLinesSync(files)) {
      try {
        read.push(decoder.decode(line));
      } catch {
        read.push("(not UTF-8)");
      }
    }
    expect(read).toEqual([...long.slice(0, 20), "(not UTF-8)", ...long.slice(20), "after", "", "last"]);
  });

  test("files are ordered by the seq in their names, not by day or listing order", async () => {
    const dir = tempDir();
    for (const n of ["2026-11-23.000000000100.jsonl", "2026-11-22.000000000002.jsonl", "2026-11-21.000000000010.jsonl", "notes.txt", "2026-11-22.000000000002.jsonl.torn"]) writeFileSync(join(dir, n), "");
    const l = listTranscript(dir);
    expect(l.files.map((f) => f.firstSeq)).toEqual([2, 10, 100]);
    expect(l.torn).toEqual(["2026-11-22.000000000002.jsonl.torn"]);
    const all = [];
    for await (const x of readTranscriptLines(l.files)) all.push(x);
    expect(all).toEqual([]);
  });
});

describe("verify: report type", () => {
  test("a failure report names the problem and how far the chain verified", async () => {
    const files = copyFiles();
    files[1]![4] = edited(files[1]![4]!);
    const dir = tempDir();
    writeFiles(dir, base.names, files);
    const rep: VerifyReport = await verifyTranscript(dir);
    expect(rep.ok).toBe(false);
    expect(rep.problem).toEqual({ code: "edited", file: base.names[1]!, line: 5, seq: 25, reason: "entry edited (its hash does not match its content)" });
    expect(rep.entries).toBe(24);
    expect(rep.lastSeq).toBe(24);
  });
});

/**
 * A crashed run's entries after its last checkpoint were acknowledged to no
 * one (§6) and rest on the files alone: verify names them, per crash, as a
 * warning, and still passes.
 */
describe("verify: entries a crashed run never signed (§8.2)", () => {
  const host = hostKeyPair(9);
  const start = (c: Chain) => c.add("server_start", { host_key: toBase64(host.publicKey), version: "t" });
  const crash = (c: Chain) => c.add("recovery", { file: "x.jsonl", torn_bytes: 0, torn_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", reason: "the previous run ended without server_stop" });
  const stop = (c: Chain) => {
    c.add("server_stop", { reason: "shutdown" });
    c.checkpoint();
  };
  let roomSeq = 0;
  /** A message that was acknowledged: a checkpoint follows it. */
  const acked = (c: Chain) => {
    c.add("message", { room: "lobby", room_seq: ++roomSeq, from: "alice", text: "signed" });
    c.checkpoint();
  };
  const unsigned = (c: Chain) => c.add("message", { room: "lobby", room_seq: ++roomSeq, from: "alice", text: "never acknowledged" });
  const join = (c: Chain) => c.add("join", { room: "lobby", user: "bob" });

  async function verifyChain(c: Chain) {
    const r = await runCli("transcript", "verify", writeChain(c), "--host-key", toBase64(host.publicKey));
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("PASS: ");
    return { r, lines: r.stdout.split("\n").filter((l) => /never.signed/.test(l)) };
  }

  test("clean runs, and a crash right after an acknowledged message's checkpoint: no warning", async () => {
    const c = new Chain(host);
    start(c);
    acked(c);
    join(c);
    stop(c);
    start(c);
    acked(c);
    crash(c); // killed right after the checkpoint of its last message
    start(c);
    acked(c);
    stop(c);
    const { r, lines } = await verifyChain(c);
    expect(lines).toEqual([]);
    expect(r.stdout).toContain("note: 1 crash recovery recorded (seq 10)");
    const rep = await verifyTranscript(writeChain(c), { hostKey: host.publicKey });
    expect(rep.neverSigned).toEqual({ count: 0, entries: 0, ranges: [] });
  });

  test("the entries after the last checkpoint of a crashed run are named, per crash, with how many are messages", async () => {
    const c = new Chain(host);
    start(c); // 1
    acked(c); // 2, 3
    join(c); // 4
    unsigned(c); // 5
    crash(c); // 6
    start(c); // 7
    acked(c); // 8, 9
    unsigned(c); // 10
    crash(c); // 11
    start(c); // 12
    stop(c); // 13, 14
    const { r, lines } = await verifyChain(c);
    expect(lines).toEqual([
      "warning: 2 entries, seq 4–5 (1 message), written before the crash at seq 6, were never signed: the server acknowledged none of them, and they rest on the files alone",
      "warning: 1 entry, seq 10 (1 message), written before the crash at seq 11, was never signed: the server did not acknowledge it, and it rests on the files alone",
    ]);
    expect(r.stdout).toContain("note: 2 crash recoveries recorded (seq 6, 11)");
    const rep = await verifyTranscript(writeChain(c), { hostKey: host.publicKey });
    expect(rep.neverSigned).toEqual({
      count: 2,
      entries: 3,
      ranges: [
        { from: 4, to: 5, messages: 1, crash: 6 },
        { from: 10, to: 10, messages: 1, crash: 11 },
      ],
    });
  });

  /** Each case: the runs as steps (one entry each, `acked` two), and the warnings verify prints. */
  const cases: [string, string, string[]][] = [
    [
      "a run that crashed before its first checkpoint: its own recovery and server_start are in the next crash's stretch",
      "start acked unsigned crash start join crash start stop", // seq 1, 2–3, 4, 5, 6, 7, 8, 9
      [
        "warning: 1 entry, seq 4 (1 message), written before the crash at seq 5, was never signed: the server did not acknowledge it, and it rests on the files alone",
        "warning: 3 entries, seq 5–7, written before the crash at seq 8, were never signed: the server acknowledged none of them, and they rest on the files alone",
      ],
    ],
    [
      "a restart with no recovery entry (removed, or never written) still ends the run before it",
      "start acked unsigned start stop", // seq 1, 2–3, 4, 5
      ["warning: 1 entry, seq 4 (1 message), written before the crash at seq 5, was never signed: the server did not acknowledge it, and it rests on the files alone"],
    ],
    [
      "a full disk's recovery entry in mid-run is not a crash; a crash after server_stop leaves server_stop unsigned",
      "start join crash acked server_stop crash start stop", // seq 1, 2, 3 (the disk was full), 4–5, 6 (killed before its checkpoint), 7, 8
      ["warning: 1 entry, seq 6, written before the crash at seq 7, was never signed: the server did not acknowledge it, and it rests on the files alone"],
    ],
  ];
  for (const [name, steps, warnings] of cases) {
    test(name, async () => {
      const c = new Chain(host);
      const step: Record<string, (c: Chain) => unknown> = { start, acked, unsigned, join, crash, stop, server_stop: (c) => c.add("server_stop", { reason: "shutdown" }) };
      for (const s of steps.split(" ")) step[s]!(c);
      expect((await verifyChain(c)).lines).toEqual(warnings);
    });
  }

  test("after five crashes, the rest are counted in one line", async () => {
    const c = new Chain(host);
    start(c);
    for (let i = 0; i < 7; i++) {
      acked(c);
      unsigned(c);
      unsigned(c);
      crash(c);
      start(c);
    }
    stop(c);
    const { lines } = await verifyChain(c);
    expect(lines.length).toBe(6);
    expect(lines.slice(0, 5).every((l) => l.startsWith("warning: 2 entries, seq ") && l.includes("(2 messages)"))).toBe(true);
    expect(lines[5]).toBe("warning: … and 2 more crashes with never-signed entries (14 such entries in all)");
  });
});

/** RFC 9162 §2.1.1 MTH, straight from the definition (not src/transcript/merkle.ts). */
function rfcTreeHash(d: Uint8Array[]): Uint8Array {
  const h = (...parts: Uint8Array[]) => new Uint8Array(createHash("sha256").update(Buffer.concat(parts)).digest());
  if (d.length === 1) return h(new Uint8Array([0]), d[0]!);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return h(new Uint8Array([1]), rfcTreeHash(d.slice(0, k)), rfcTreeHash(d.slice(k)));
}

describe("verify --json (§8.3): one object per finding, then a summary", () => {
  type Obj = Record<string, unknown>;
  const parse = (stdout: string): Obj[] => {
    expect(stdout).toEndWith("\n");
    return stdout.slice(0, -1).split("\n").map((l) => JSON.parse(l) as Obj);
  };

  const failures: [string, (fs: string[][]) => void, { class: string; file: string; line: number; seq?: number }][] = [
    ["edited", (fs) => void (fs[1]![3] = edited(fs[1]![3]!)), { class: "edited", file: base.names[1]!, line: 4, seq: 24 }],
    ["deleted", (fs) => void fs[1]!.splice(5, 2), { class: "deleted", file: base.names[1]!, line: 6, seq: 28 }],
    ["duplicated", (fs) => void fs[0]!.splice(3, 0, fs[0]![2]!), { class: "duplicated", file: base.names[0]!, line: 4, seq: 3 }],
    ["reordered", (fs) => void fs[1]!.splice(8, 0, ...fs[1]!.splice(5, 1)), { class: "reordered", file: base.names[1]!, line: 6, seq: 27 }],
    ["malformed (no entry, so no seq)", (fs) => void fs[1]!.splice(2, 0, "not json"), { class: "malformed", file: base.names[1]!, line: 3 }],
  ];
  for (const [label, mutate, want] of failures) {
    test(`${label}: the class as §8.3 spells it, file, line, seq, and the FAIL text; exit 5 as without --json`, async () => {
      const files = copyFiles();
      mutate(files);
      const text = await verifyFiles(files);
      const r = await verifyFiles(files, "--json");
      expect(r.code).toBe(EXIT.TRANSCRIPT);
      expect(r.stderr).toBe(text.stderr); // the FAIL line and its follow-up, unchanged
      const objs = parse(r.stdout);
      expect(objs.map((o) => o.kind)).toEqual(["failure", "summary"]);
      const [failure, summary] = objs as [Obj, Obj];
      expect(failure).toEqual({ kind: "failure", ...want, text: text.stderr.split("\n")[0]!.replace(/^securechat: /, "") });
      expect(summary).toMatchObject({ kind: "summary", result: "fail", class: want.class, files: 3, pinned: true, text: text.stderr.split("\n")[1]!.replace(/^hint: /, "") });
    });
  }

  test("a torn last line and an empty directory: line as far as known (null for the whole transcript)", async () => {
    const dir = tempDir();
    writeFiles(dir, base.names, base.files);
    appendFileSync(join(dir, base.names[2]!), '{"prev":"00');
    const torn = parse((await runCli("transcript", "verify", dir, "--json")).stdout);
    expect(torn[0]).toMatchObject({ kind: "failure", class: "torn", file: base.names[2]!, line: 21 });
    expect(torn[0]).not.toHaveProperty("seq");
    const empty = await runCli("transcript", "verify", tempDir(), "--json");
    expect(empty.code).toBe(EXIT.TRANSCRIPT);
    const objs = parse(empty.stdout);
    expect(objs[0]).toMatchObject({ kind: "failure", class: "empty", line: null });
    expect(objs[1]).toMatchObject({ kind: "summary", result: "fail", class: "empty", entries: 0, text: null });
  });

  test("a pass: warnings (never signed by a crashed run, unsigned tail) and notes as objects, the summary last; the text output unchanged", async () => {
    const host = hostKeyPair(9);
    const c = new Chain(host);
    c.add("server_start", { host_key: toBase64(host.publicKey), version: "t" }); // 1
    c.add("message", { room: "lobby", room_seq: 1, from: "alice", text: "signed" }); // 2
    c.checkpoint(); // 3
    c.add("join", { room: "lobby", user: "bob" }); // 4
    c.add("message", { room: "lobby", room_seq: 2, from: "alice", text: "never acknowledged" }); // 5
    c.add("recovery", { file: "x.jsonl", torn_bytes: 0, torn_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", reason: "the previous run ended without server_stop" }); // 6
    c.add("server_start", { host_key: toBase64(host.publicKey), version: "t" }); // 7
    c.add("join", { room: "lobby", user: "carol" }); // 8: after the last checkpoint
    const dir = writeChain(c);
    const text = await runCli("transcript", "verify", dir);
    const r = await runCli("transcript", "verify", dir, "--json");
    expect(r.code).toBe(0);
    expect(text.code).toBe(0);
    const objs = parse(r.stdout);
    expect(objs.map((o) => `${o.kind}:${o.warning ?? o.note ?? ""}`)).toEqual([
      "note:merkle_root",
      "warning:unsigned_tail",
      "note:host_key_unpinned",
      "note:recoveries",
      "warning:never_signed",
      "summary:",
    ]);
    // The root any RFC 9162 implementation computes over the file's lines (without their newlines).
    const lines = readdirSync(dir)
      .filter((f) => f.endsWith(".jsonl"))
      .sort()
      .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").slice(0, -1));
    expect(objs[0]).toEqual({ kind: "note", note: "merkle_root", size: 8, root: toBase64(rfcTreeHash(lines.map((l) => utf8(l)))), text: expect.stringMatching(/^root: [A-Za-z0-9+/]{43}= \(RFC 9162 Merkle tree of the 8 lines/) });
    expect(objs[1]).toMatchObject({ entries: 5, last_checkpoint: 3 });
    expect(objs[4]).toEqual({
      kind: "warning",
      warning: "never_signed",
      from: 4,
      to: 5,
      messages: 1,
      crash: 6,
      text: "warning: 2 entries, seq 4–5 (1 message), written before the crash at seq 6, were never signed: the server acknowledged none of them, and they rest on the files alone",
    });
    const summary = objs.at(-1)!;
    expect(summary).toMatchObject({ kind: "summary", result: "pass", class: null, entries: 8, first_seq: 1, last_seq: 8, last_checkpoint: 3, unsigned: 5, pinned: false, recoveries: 1, never_signed: { crashes: 1, entries: 2 } });
    // The same findings, in the text output's order (the summary is its PASS line).
    expect(text.stdout).toBe(`${[summary.text, ...objs.slice(0, -1).map((o) => o.text)].join("\n")}\n`);
    expect(text.stdout).toStartWith("PASS: 8 entries in 1 file; last checkpoint at seq 3\n");
  });
});
