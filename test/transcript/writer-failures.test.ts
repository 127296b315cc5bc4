/**
 * Regression tests for the writer's failure paths: a failed rotation fails
 * the writer for good, a failed writer's checkpoint timer never throws, and
 * a closed or failed writer refuses before it touches any file.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { isSecureChatError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "writer-fail-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const opts = () => ({ ...DEFAULT_WRITER, dir, hostKey: ed25519Generate(), version: "t", log: silentLogger, now: () => Date.UTC(2026, 0, 5, 12) });

test("a rotation that cannot create the next file fails the writer for good", async () => {
  const w = TranscriptWriter.open({ ...opts(), fsync: "off", rotateBytes: 1 });
  await Bun.sleep(5);
  mkdirSync(join(dir, "2026-01-05.000000000002.jsonl")); // the next file's name, taken by a directory
  let first: unknown;
  try {
    w.append("join", { room: "a", user: "b" });
  } catch (e) {
    first = e;
  }
  expect(isSecureChatError(first, "transcript_write")).toBe(true);
  expect(w.stopped).toBe(true);
  let second: unknown;
  try {
    w.append("join", { room: "a", user: "c" });
  } catch (e) {
    second = e;
  }
  expect(second).toBe(first); // the same failure, no new fs call on a closed descriptor
  w.close("done");
});

test("while a full disk blocks the writer, its checkpoint and retry timers do not throw (the process survives); close rejects what waited", async () => {
  const w = TranscriptWriter.open({ ...opts(), checkpointIntervalMs: 30, retryMs: 20, rotateBytes: 1 });
  await Bun.sleep(10);
  symlinkSync("/dev/full", join(dir, "2026-01-05.000000000002.jsonl"));
  const r = w.append("message", { room: "l", room_seq: 1, from: "a", text: "hi" });
  const outcome = r.durable.then(
    () => "durable",
    (e) => (isSecureChatError(e, "transcript_write") ? "failed" : String(e)),
  );
  await Bun.sleep(150); // several timer periods: an uncaught throw here would fail the test run
  expect(w.recording).toBe(false);
  expect(w.stopped).toBe(false);
  w.close("done");
  expect(await outcome).toBe("failed");
  expect(w.stopped).toBe(true);
});

test("a closed writer refuses before rotating: no new file appears", () => {
  const w = TranscriptWriter.open({ ...opts(), fsync: "off", rotateBytes: 1 });
  w.close("bye");
  const before = readdirSync(dir).sort();
  expect(() => w.append("join", { room: "a", user: "b" })).toThrow("transcript: closed");
  expect(readdirSync(dir).sort()).toEqual(before);
});
