/**
 * Fail closed: while the transcript cannot write (a full disk), nothing that
 * must be recorded is relayed. Users are told, the operator is told, logins
 * and joins are refused, and everything resumes — recorded — once the disk
 * has space again. The disk is made full by making the transcript's writes
 * fail with ENOSPC (a spy on node:fs), then letting them through again; the
 * same on a real small tmpfs is in test/e2e/transcript.sh.
 */
import { afterEach, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import type { Message } from "../../src/protocol/messages.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import type { Logger } from "../../src/log.ts";
import type { ServerOptions } from "../../src/server/server.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { type LogEvent, type RawSession, freshPath, passwordLogin, rawSession, registerRaw, startServer, untilMessage } from "./helpers.ts";

const PW = "recording test passphrase";
const restore: { mockRestore(): void }[] = [];
afterEach(() => {
  for (const s of restore.splice(0)) s.mockRestore();
});


/** A server recording to a real transcript in a fresh data directory, its log in `events`. */
async function recordingServer(name: string, options: Partial<ServerOptions> = {}) {
  const dataDir = freshPath(name);
  const events: LogEvent[] = [];
  const log: Logger = {
    info: (event, fields = {}) => void events.push({ level: "info", event, fields }),
    warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }),
  };
  const hostKey = loadOrCreateHostKey(dataDir).key;
  const journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey, version: "test", log, history: 50, retryMs: 50 });
  const t = await startServer({ ...options, dataDir, journal, events });
  return { t, dataDir, events, hostKey };
}

test("a full disk: says and DMs are refused, not relayed; joins and logins refused; everyone told; all resumes and is recorded when space returns", async () => {
  const { t, dataDir, events, hostKey } = await recordingServer("recording");
  try {
    const alice = await registerRaw(t.port, "alice", PW);
    const bob = await registerRaw(t.port, "bob", PW);
    const carol = await registerRaw(t.port, "carol", PW);
    const login = async (u: typeof alice): Promise<RawSession> => {
      const s = await rawSession(t.port);
      expect((await passwordLogin(s, u.user, u.password, u.identity)).type).toBe("welcome");
      return s;
    };
    const a = await login(alice);
    const b = await login(bob);
    for (const s of [a, b]) {
      s.send({ type: "join", room: "lobby" });
      await untilMessage(s, (m) => m.type === "notice" && m.code === "recorded");
    }

    // The disk fills up.
    let full = true;
    const real = fs.writeSync;
    restore.push(
      spyOn(fs, "writeSync").mockImplementation(((fd: number, buf: Uint8Array, off?: number, len?: number) => {
        if (full) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        return real(fd, buf, off, len);
      }) as typeof fs.writeSync),
    );
    // The first message after the disk filled is the one whose write fails: it
    // was relayed in the same turn (relay does not wait for the disk), and
    // its ack waits until it is written.
    a.send({ type: "say", id: 1, room: "lobby", text: "the last one in flight" });
    const told = await untilMessage(b, (m) => m.type === "notice" && m.code === "not_recorded");
    expect(told.match).not.toBeNull();
    expect(told.seen.filter((m) => m.type === "message").map((m) => (m as Message<"message">).text)).toEqual(["the last one in flight"]);
    expect(events.some((e) => e.level === "warn" && e.event === "transcript_blocked")).toBe(true);
    expect(events.some((e) => e.level === "warn" && e.event === "not_recording")).toBe(true);

    // Now nothing that must be recorded goes through.
    b.send({ type: "say", id: 7, room: "lobby", text: "100,000 EUR to mallory" });
    expect((await untilMessage(b, (m) => m.type === "nack" || m.type === "ack")).match).toEqual(expect.objectContaining({ type: "nack", id: 7, code: "not_recorded" }));
    b.send({ type: "dm", id: 8, to: "alice", text: "psst" });
    expect((await untilMessage(b, (m) => m.type === "nack" || m.type === "ack")).match).toEqual(expect.objectContaining({ type: "nack", id: 8, code: "not_recorded" }));
    b.send({ type: "join", room: "elsewhere" });
    expect((await untilMessage(b, (m) => m.type === "notice" || m.type === "room")).match).toEqual(expect.objectContaining({ type: "notice", code: "not_recorded" }));
    const c = await rawSession(t.port);
    const refused = await passwordLogin(c, carol.user, carol.password, carol.identity);
    expect(refused).toEqual(expect.objectContaining({ type: "error", code: "not_recorded" }));
    c.close();
    a.send({ type: "ping" });

    // Space returns.
    full = false;
    // Alice's output waited behind the ack of her message in flight (PROTOCOL.md §7.4): it comes once
    // that message is written, then what followed — the notices — and never anything bob was refused.
    const back = await untilMessage(a, (m) => m.type === "notice" && m.code === "recorded");
    const after = back.seen.filter((m) => m.type !== "joined"); // bob's join, before the disk filled
    expect(after.map((m) => (m.type === "notice" ? `notice ${m.code}` : m.type))).toEqual(["ack", "notice not_recorded", "pong", "notice recorded"]);
    expect(events.some((e) => e.event === "transcript_recovered")).toBe(true);
    const c2 = await rawSession(t.port);
    expect((await passwordLogin(c2, carol.user, carol.password, carol.identity)).type).toBe("welcome");
    b.send({ type: "say", id: 9, room: "lobby", text: "back" });
    expect((await untilMessage(b, (m) => m.type === "ack" || m.type === "nack")).match).toEqual(expect.objectContaining({ type: "ack", id: 9 }));
    expect((await untilMessage(a, (m) => m.type === "message")).match).toEqual(expect.objectContaining({ text: "back" }));
    for (const s of [a, b, c2]) s.close();
  } finally {
    await t.server.stop();
  }
  const r = await verifyTranscript(join(dataDir, "transcript"), { hostKey: hostKey.publicKey });
  expect(r.problem).toBeNull();
  expect(r.ok).toBe(true);
  // The refused ones are nowhere in the record; the one in flight is.
  const all = fs.readFileSync(join(dataDir, "transcript", fs.readdirSync(join(dataDir, "transcript")).filter((f) => f.endsWith(".jsonl"))[0]!), "utf8");
  expect(all).toContain("the last one in flight");
  expect(all).not.toContain("100,000 EUR");
  expect(all).toContain("the disk refused writes");
}, 30_000);

test("a stalled disk: a user who reads, dropped because output piles up behind acks the transcript has not confirmed, is told the transcript is not keeping up, not that they do not read", async () => {
  const maxSendBuffer = 64 * 1024;
  const fast = { rate: 100_000, burst: 100_000 };
  const { t, events } = await recordingServer("stalled", { maxSendBuffer, chat: { ...DEFAULT_CHAT, flood: fast, requests: fast } });
  const realFsync = fs.fsync;
  const held: (() => void)[] = [];
  try {
    const alice = await registerRaw(t.port, "alice", PW);
    const bob = await registerRaw(t.port, "bob", PW);
    const a = await rawSession(t.port);
    expect((await passwordLogin(a, alice.user, alice.password, alice.identity)).type).toBe("welcome");
    const b = await rawSession(t.port);
    expect((await passwordLogin(b, bob.user, bob.password, bob.identity)).type).toBe("welcome");
    a.send({ type: "join", room: "lobby" });
    await untilMessage(a, (m) => m.type === "history_end");

    // The disk stalls: no fsync returns, so no ack can be sent.
    restore.push(spyOn(fs, "fsync").mockImplementation(((fd: number, cb: fs.NoParamCallback) => void held.push(() => realFsync(fd, cb))) as typeof fs.fsync));
    a.send({ type: "say", id: 1, room: "lobby", text: "this one's ack waits for the disk" });
    // Bob's DMs to alice are relayed at once, but wait behind her ack (PROTOCOL.md §7.4)
    // until they pass what the server holds for one connection (4 × --max-send-buffer).
    const text = "d".repeat(4000);
    const dms = Math.ceil((4 * maxSendBuffer) / text.length) + 10;
    for (let i = 1; i <= dms; i++) b.send({ type: "dm", id: i, to: "alice", text });
    // Alice reads all the while: the connection ends with the reason.
    const end = await untilMessage(a, (m) => m.type === "error", 15_000);
    expect(end.match).toEqual(expect.objectContaining({ type: "error", code: "slow_consumer" }));
    const said = (end.match as Message<"error">).message;
    expect(said).toContain("transcript is not keeping up");
    expect(said).not.toContain("not reading");
    expect(end.seen.filter((m) => m.type === "direct")).toEqual([]); // nothing behind the ack went out
    expect(await a.conn.waitClosed(5000)).toBe(true);
    const warned = events.filter((e) => e.event === "transcript_behind" || e.event === "slow_consumer");
    expect(warned).toEqual([expect.objectContaining({ level: "warn", event: "transcript_behind", fields: expect.objectContaining({ user: "alice" }) })]);
    expect(warned[0]!.fields.waiting_for_transcript as number).toBeGreaterThan(4 * maxSendBuffer - 2 * text.length);
    b.close();
  } finally {
    for (const s of restore.splice(0)) s.mockRestore();
    for (const release of held.splice(0)) release();
    await t.server.stop();
  }
}, 30_000);
