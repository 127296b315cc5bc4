/**
 * The client's log check (PROTOCOL.md §7.13, Appendix A.8;
 * src/client/logcheck.ts) against answers a real transcript writer makes:
 * the first answer is remembered (0600); a later one must be signed by the
 * pinned host key, no smaller, and proven to extend it, else log_unsigned,
 * log_rollback or log_fork; a server that gives no answer, or answers later
 * requests first, is refused once a checkpoint is remembered.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { checkpointPath, LogCheck } from "../../src/client/logcheck.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { parseCheckpoint, parseNote } from "../../src/transcript/note.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "../transcript/helpers.ts";
import { codeOf } from "../protocol/helpers.ts";

const HOST = hostKeyPair(41);
let servers = 0;


/** A writer on `dir` after `n` more messages, closed; its log's state as the server would answer, from `from`. */
async function grow(dir: string, n: number, from?: number, host = HOST): Promise<Message<"log_state">> {
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", checkpointIntervalMs: 1e9, dir, hostKey: host, version: "t", log: silentLogger });
  for (let i = 0; i < n; i++) w.append("message", { room: "lobby", room_seq: i + 1, from: "alice", text: `${dir} ${i}` });
  w.checkpoint();
  await new Promise((r) => setImmediate(r));
  const state = w.logState(from, [])!;
  w.close("done");
  const parsed = parseNote(state.note);
  const body = parseCheckpoint(parsed.text);
  const sig = parsed.signatures[0]!;
  return { type: "log_state", origin: body.origin, size: body.size, root: body.root, sig: new Uint8Array([...sig.keyId, ...sig.signature]), ...(state.consistency ? { consistency: state.consistency } : {}) };
}

describe("the log check at connect", () => {
  test("a first answer is remembered (0600); a later one that extends it replaces it, and the next request asks from it", async () => {
    const id = `log-${++servers}:7447`;
    const dir = join(tempDir("logcheck"), "transcript");
    const first = new LogCheck(id, HOST.publicKey);
    expect(first.request()).toEqual({ type: "log_proof" });
    first.check(await grow(dir, 3));
    expect(statSync(checkpointPath(id)).mode & 0o777).toBe(0o600);
    const size = Number(readFileSync(checkpointPath(id), "utf8").split("\n")[1]);
    const again = new LogCheck(id, HOST.publicKey);
    expect(again.request()).toEqual({ type: "log_proof", from: size });
    again.check(await grow(dir, 4, size));
    expect(again.request()).toEqual({ type: "log_proof", from: Number(readFileSync(checkpointPath(id), "utf8").split("\n")[1]) });
  });

  test("refused, keeping what was remembered: another key's checkpoint, a smaller log, a log that does not extend it", async () => {
    const id = `log-${++servers}:7447`;
    const dir = join(tempDir("logcheck"), "transcript");
    const base = await grow(dir, 3);
    const old = join(tempDir("logcheck"), "transcript");
    cpSync(dir, old, { recursive: true });
    new LogCheck(id, HOST.publicKey).check(await grow(dir, 5));
    const kept = readFileSync(checkpointPath(id), "utf8");

    const foreign = await grow(join(tempDir("logcheck"), "transcript"), 9, undefined, hostKeyPair(42));
    expect(codeOf(() => new LogCheck(id, HOST.publicKey).check(foreign))).toBe("log_unsigned");
    expect(codeOf(() => new LogCheck(id, HOST.publicKey).check(base))).toBe("log_rollback");
    // The old copy grown another way, past the remembered size: a fork.
    const size = Number(kept.split("\n")[1]);
    const fork = await grow(old, 12, size);
    expect(fork.size).toBeGreaterThan(size);
    expect(codeOf(() => new LogCheck(id, HOST.publicKey).check(fork))).toBe("log_fork");
    expect(readFileSync(checkpointPath(id), "utf8")).toBe(kept);
  });

  test("no answer: fine for a server never seen, refused (log_unproven) for one whose log is remembered", async () => {
    const fresh = new LogCheck(`log-${++servers}:7447`, HOST.publicKey);
    fresh.request();
    expect(codeOf(() => fresh.overtaken())).toBe("no error");
    const id = `log-${++servers}:7447`;
    const dir = join(tempDir("logcheck"), "transcript");
    new LogCheck(id, HOST.publicKey).check(await grow(dir, 2));
    const known = new LogCheck(id, HOST.publicKey);
    known.request();
    expect(codeOf(() => known.overtaken())).toBe("log_unproven");
    expect(codeOf(() => new LogCheck(id, HOST.publicKey).noLog())).toBe("log_unproven");
    // Answered in order, nothing is overtaken.
    const inOrder = new LogCheck(id, HOST.publicKey);
    const size = inOrder.request().from;
    inOrder.check(await grow(dir, 1, size));
    expect(codeOf(() => inOrder.overtaken())).toBe("no error");
  });
});
