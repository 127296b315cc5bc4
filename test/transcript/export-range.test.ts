/**
 * An entry whose `ts` is past the last instant a Date (and so an ISO 8601
 * `time`) can hold, 8.64e15 ms, with a correct hash: written by a server
 * with a broken clock, or by whoever can write the transcript's tail. The
 * format refuses it (TRANSCRIPT.md §3), so `verify` and `export` both say
 * FAIL (exit 5) instead of `export` dying with "internal error: Invalid Date".
 */
import { expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { EXIT } from "../../src/commands/exit.ts";
import { entryHash, entryLine } from "../../src/transcript/format.ts";
import type { Entry } from "../../src/transcript/format.ts";
import { Chain, T0, fileName, hostKeyPair, runCli, tempDir } from "./helpers.ts";

test("an entry whose ts no Date can hold: export and verify say FAIL (exit 5), never an internal error", async () => {
  const host = hostKeyPair();
  const c = new Chain(host);
  c.add("join", { room: "ops", user: "alice" });
  c.checkpoint();
  // Past what the writer would ever make: built by hand, hash and all.
  const fields = { seq: c.seq + 1, ts: 9_000_000_000_000_000, type: "join", prev: c.head, room: "ops", user: "bob" };
  c.entries.push({ ...fields, hash: entryHash(fields) } as Entry);
  const data = tempDir("data");
  mkdirSync(join(data, "transcript"));
  writeFileSync(join(data, "transcript", fileName(T0, 1)), c.entries.map(entryLine).join(""));
  const pin = ["--host-key", toBase64(host.publicKey)];
  for (const args of [["export", "--data", data, ...pin], ["verify", join(data, "transcript"), ...pin]]) {
    const r = await runCli("transcript", ...args);
    expect(r.stderr).not.toContain("internal error");
    expect(r.stderr + r.stdout).toContain("FAIL");
    expect(r.code).toBe(EXIT.TRANSCRIPT);
  }
});
