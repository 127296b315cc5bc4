/**
 * Hostile peers against the real `securechat serve` process
 * (--handshake-timeout 1s, everything else default: max-startups
 * 10:30:100, max-send-buffer 1 MiB, flood 10/s burst 30, 64 held):
 *
 * - 500 idle TCP connections that never speak: each is refused with a
 *   cleartext `server_busy` or closed at the handshake deadline with
 *   `handshake_timeout`; a legitimate user still gets in, during and after;
 *   server RSS stays bounded.
 * - A half frame that stalls is closed by the handshake deadline.
 * - Records with an empty or 1-byte plaintext, correctly sealed: the first
 *   closes the connection with `record_empty`.
 * - A client that floods 10,000 says and reads nothing is held, nacked and
 *   kept bounded (or dropped as a slow consumer), while another user's
 *   messages are all acknowledged (their latency is reported, not bounded).
 * - 200 logged-in clients join a busy room and stop reading while one
 *   sender floods it within the limits (a separate server, --max-send-buffer
 *   64 KiB, accounts and tickets put in its store beforehand so no argon2id
 *   runs): each is dropped with `slow_consumer`, a client that reads gets
 *   every message, and the server's RSS stays below 200 × (max-send-buffer +
 *   Framed's 4-frame slack) + 64 MiB; the figures are printed.
 */
import { concat } from "../../src/bytes.ts";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes, sha256, ed25519Generate } from "../../src/crypto/index.ts";
import { MAX_FRAME } from "../../src/protocol/limits.ts";
import { decodeMessage } from "../../src/protocol/messages.ts";
import { Store } from "../../src/store/db.ts";
import { RawConn, type RawSession, freshPath, sleep } from "../server/helpers.ts";
import { type Cred, Terminal } from "./interaction.ts";
import { MiB, PausableSession, type Proc, type ServerProc, killProc, receiveAll, registerSession, shortRecord, spawnServer, vmRss } from "./helpers.ts";

const HANDSHAKE_MS = 1000;
const procs: Proc[] = [];
const conns: RawConn[] = [];
const sessions: RawSession[] = [];
const pausable: PausableSession[] = [];
let srv: ServerProc;
let baseline = 0;
const figures: string[] = [];

beforeAll(async () => {
  srv = await spawnServer(freshPath("hostile-data"), ["--handshake-timeout", "1s", "--max-connections-per-address", "100000"], procs);
  // One registration first, so argon2id's working memory is in the baseline.
  const { s } = await registerSession(srv.port, "warmup");
  s.close();
  await sleep(200);
  baseline = vmRss(srv.proc.pid);
}, 20_000);

afterAll(async () => {
  for (const c of conns) c.destroy();
  for (const s of sessions) s.conn.destroy();
  for (const p of pausable) p.destroy();
  for (const p of procs) await killProc(p, "SIGTERM");
  console.log(`hostile: server RSS figures:\n  ${figures.join("\n  ")}`);
});

function rss(label: string): number {
  const now = vmRss(srv.proc.pid);
  figures.push(`${label}: ${(now / MiB).toFixed(1)} MiB (${((now - baseline) / MiB).toFixed(1)} MiB over the baseline of ${(baseline / MiB).toFixed(1)} MiB)`);
  return now;
}

/** Logs in `user` (registering on first use), retrying while the server is busy; joins lobby. */
async function legitimate(user: string, deadlineMs: number): Promise<{ s: RawSession; attempts: number }> {
  const deadline = Date.now() + deadlineMs;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const { s } = await registerSession(srv.port, user);
      sessions.push(s);
      s.send({ type: "join", room: "lobby" });
      return { s, attempts };
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`test: ${user} could not get in after ${attempts} attempts: ${String(e)}`);
      await sleep(100);
    }
  }
}

/** Says something and returns how long the ack took (for the report), reading past anything else; throws if it is nacked or never comes. */
async function sayAcked(s: RawSession, id: number, text: string): Promise<number> {
  const t0 = performance.now();
  s.send({ type: "say", id, room: "lobby", text });
  for (;;) {
    const left = 10_000 - (performance.now() - t0);
    if (left <= 0) throw new Error(`test: no ack for ${id} within 10 s`);
    for (const m of await receiveAll(s, left)) {
      if (m.type === "ack" && m.id === id) return performance.now() - t0;
      if (m.type === "nack" && m.id === id) throw new Error(`test: ${id} nacked: ${m.code}`);
    }
  }
}

test("500 idle connections: refused with server_busy or closed at the handshake deadline; a legitimate user gets in; RSS bounded", async () => {
  const N = 500;
  const opened: RawConn[] = [];
  const t0 = Date.now();
  for (let i = 0; i < N; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => RawConn.open(srv.port)));
    opened.push(...batch);
    conns.push(...batch);
  }
  const openMs = Date.now() - t0;
  await sleep(100);
  rss("500 idle connections open, before any login");
  // Meanwhile: a legitimate user.
  const during = await legitimate("alice", 10_000);
  const duringAck = await sayAcked(during.s, 1, "hello during the storm");
  rss("500 idle connections open, after a registration (argon2id m=64 MiB)");

  const outcomes = await Promise.all(
    opened.map(async (c) => {
      try {
        const m = decodeMessage(await c.next(HANDSHAKE_MS + 4000));
        const closed = await c.waitClosed(3000);
        return { code: m.type === "error" ? m.code : m.type, closed, ms: (c.closedAt ?? Date.now()) - c.openedAt };
      } catch (e) {
        return { code: `no frame: ${(e as { code?: string }).code}`, closed: c.isClosed, ms: (c.closedAt ?? Date.now()) - c.openedAt };
      }
    }),
  );
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o.code] = (counts[o.code] ?? 0) + 1;
  const timedOut = outcomes.filter((o) => o.code === "handshake_timeout");
  const slowest = Math.max(...timedOut.map((o) => o.ms));
  console.log(`hostile: 500 idle connections opened in ${openMs} ms: ${JSON.stringify(counts)}; handshake_timeout closes after at most ${slowest} ms; alice got in after ${during.attempts} attempt(s), ack in ${duringAck.toFixed(1)} ms`);
  expect(Object.keys(counts).filter((k) => k !== "server_busy" && k !== "handshake_timeout")).toEqual([]);
  expect(counts.server_busy ?? 0).toBeGreaterThan(N / 2);
  expect(outcomes.filter((o) => !o.closed)).toEqual([]);
  // Closed by the deadline, not before it (timers fire late on a loaded machine, never early; how late is reported above).
  expect(Math.min(...timedOut.map((o) => o.ms))).toBeGreaterThanOrEqual(HANDSHAKE_MS - 100);
  // alice's say was acknowledged (sayAcked throws otherwise): the storm did not shut her out.

  // Afterwards: a user logs in at once and chats.
  for (const c of opened) c.destroy();
  await sleep(300);
  const after = await legitimate("bob", 3000);
  expect(after.attempts).toBe(1);
  await sayAcked(after.s, 1, "hello after the storm");
  const now = rss("after the 500 idle connections are gone");
  expect(now - baseline).toBeLessThan(100 * MiB);
}, 20_000);

test("a half frame that stalls (header promises 1000 bytes, 10 arrive) is closed by the handshake deadline", async () => {
  const c = await RawConn.open(srv.port);
  conns.push(c);
  const header = new Uint8Array([0, 0, 0x03, 0xe8]);
  c.write(header);
  c.write(new Uint8Array(10).fill(0x7b));
  expect(await c.waitClosed(HANDSHAKE_MS + 8000)).toBe(true);
  const ms = c.closedAt! - c.openedAt;
  // What it was told, if anything arrived before the close.
  let said = "nothing";
  try {
    const m = decodeMessage(await c.next(10));
    said = m.type === "error" ? m.code : m.type;
  } catch {
    // closed without a frame
  }
  console.log(`hostile: stalled half frame closed after ${ms} ms (told: ${said})`);
  expect(said).toBe("handshake_timeout");
  // The deadline closed it: not before it (how long after is reported above, not bounded).
  expect(ms).toBeGreaterThanOrEqual(HANDSHAKE_MS - 100);
}, 15_000);

for (const length of [0, 1] as const) {
  test(`40 records with a ${length}-byte plaintext after login: the first closes the connection with record_empty`, async () => {
    const { s } = await registerSession(srv.port, `empty${length}`);
    sessions.push(s);
    const n = s.channel.sealer.count;
    const records = Array.from({ length: 40 }, (_, i) => shortRecord(s, length, n + i));
    const all = new Uint8Array(records.reduce((a, r) => a + r.length, 0));
    let off = 0;
    for (const r of records) {
      all.set(r, off);
      off += r.length;
    }
    s.conn.write(all);
    const msgs = await receiveAll(s, 5000);
    expect(msgs.map((m) => (m.type === "error" ? m.code : m.type))).toEqual(["record_empty"]);
    expect(await s.conn.waitClosed(3000)).toBe(true);
    // The server is fine, and said it once.
    const other = await legitimate(`after-empty${length}`, 3000);
    await sayAcked(other.s, 1, "still here");
    // (and the session's close line gives it as the reason)
    const logged = srv.lines.filter((l) => l.includes('"record_empty"') && !l.includes('"event":"session_closed"'));
    expect(logged.length).toBe(1 + length);
    expect(srv.lines.filter((l) => l.includes('"event":"session_closed"') && l.includes(`"user":"empty${length}"`) && l.includes('"reason":"record_empty"'))).toHaveLength(1);
  }, 10_000);
}

test("a client that floods 10,000 says and reads nothing is held and bounded; another user chatting meanwhile has every message acked", async () => {
  const SAYS = 10_000;
  const flooder = await PausableSession.register(srv.port, "flooder");
  pausable.push(flooder);
  const join = flooder.channel.seal([{ type: "join", room: "lobby" }]);
  await flooder.writeAll(join);
  const { s: carol } = await legitimate("carol", 3000);
  // Let both joins settle before carol starts timing her acks.
  await sayAcked(carol, 0, "ready");
  flooder.pause();
  const before = rss("before the 10,000-say flood");

  const records = Array.from({ length: SAYS }, (_, i) => flooder.channel.seal([{ type: "say", id: i + 1, room: "lobby", text: `flood ${i + 1} ${"x".repeat(64)}` }]));
  const flood = new Uint8Array(records.reduce((a, r) => a + r.length, 0));
  let off = 0;
  for (const r of records) {
    flood.set(r, off);
    off += r.length;
  }
  const written = flooder.writeAll(flood, 20_000);

  // Carol chats throughout; every one of her messages is acknowledged (sayAcked throws otherwise), in turn.
  const latencies: number[] = [];
  for (let i = 1; i <= 15; i++) {
    latencies.push(await sayAcked(carol, i, `carol ${i}`));
    await sleep(150);
  }
  const sent = await written;
  const peak = rss("during the flood (flooder not reading)");

  // Now read what the flooder was sent.
  flooder.resume();
  const counts: Record<string, number> = {};
  const deadline = Date.now() + 4000;
  for (;;) {
    let msgs;
    try {
      msgs = flooder.channel.open(await flooder.next(Math.max(1, Math.min(1000, deadline - Date.now()))));
    } catch {
      break;
    }
    for (const m of msgs) {
      const k = m.type === "nack" || m.type === "error" || m.type === "notice" ? `${m.type}:${m.code}` : m.type;
      counts[k] = (counts[k] ?? 0) + 1;
    }
    if (Date.now() > deadline) break;
  }
  const slow = srv.lines.filter((l) => l.includes('"slow_consumer"')).length;
  console.log(
    `hostile: flood of ${SAYS} says (${(flood.length / MiB).toFixed(2)} MiB, written whole: ${sent}); flooder received ${JSON.stringify(counts)}; ` +
      `flooder closed: ${flooder.closedAt !== null}; slow_consumer log lines: ${slow}; carol's ack latencies ms: max ${Math.max(...latencies).toFixed(1)}, ` +
      `median ${[...latencies].sort((a, b) => a - b)[7]!.toFixed(1)}; RSS ${(before / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`,
  );
  expect(latencies.length).toBe(15);
  // Flood control: no more than burst + held were accepted before nacks began.
  expect(counts.ack ?? 0).toBeLessThanOrEqual(30 + 64 + 60);
  // Held, then refused, then — still sending while refused — disconnected (or dropped as a slow consumer).
  expect((counts["error:flood"] ?? 0) > 0 || slow > 0).toBe(true);
  expect(flooder.closedAt).not.toBeNull();
  expect(peak - baseline).toBeLessThan(100 * MiB);
  // The server is still serving.
  await sayAcked(carol, 99, "after the flood");
}, 30_000);

test("one record of 2,200 joins (or 1,400 history requests) of a room with 50 × 4 KiB of history: the server's memory stays bounded and it stops reading that client", async () => {
  // The room: 50 messages of 4 KiB, so every answer to a join or a history
  // request carries ~200 KiB of history (the outside review's setup).
  const { s: filler } = await legitimate("filler", 3000);
  filler.channel.sealer.maxFrame = MAX_FRAME;
  filler.send({ type: "join", room: "big" });
  for (let i = 1; i <= 50; i++) {
    filler.send({ type: "say", id: i, room: "big", text: `${i} ${"y".repeat(4090)}` });
  }
  const acked = new Set<number>();
  const deadline = Date.now() + 15_000;
  while (acked.size < 50 && Date.now() < deadline) for (const m of await receiveAll(filler, 15_000)) if (m.type === "ack") acked.add(m.id);
  expect(acked.size).toBe(50);
  const { s: carol } = await legitimate("carol2", 3000);
  await sayAcked(carol, 0, "ready");

  const attacker = await PausableSession.register(srv.port, "amplifier");
  attacker.channel.sealer.maxFrame = MAX_FRAME;
  pausable.push(attacker);
  await attacker.writeAll(attacker.channel.seal([{ type: "join", room: "big" }]));
  attacker.pause();
  const before = rss("before the join/history records");
  const joins = Array.from({ length: 2200 }, () => ({ type: "join" as const, room: "big" }));
  const histories = Array.from({ length: 1400 }, () => ({ type: "history" as const, room: "big", limit: 1000 }));
  // Ten records of each, back to back, while the attacker reads nothing.
  const records = [...Array.from({ length: 10 }, () => attacker.channel.seal(joins)), ...Array.from({ length: 10 }, () => attacker.channel.seal(histories))];
  expect(records[0]!.length).toBeGreaterThan(60_000);
  // Without backpressure every record would be read and answered; with it, the writes stall.
  void attacker.writeAll(concat(...records), 8000).catch(() => {});
  // A bystander is answered throughout.
  for (let i = 1; i <= 10; i++) {
    await sayAcked(carol, i, `carol ${i}`);
    await sleep(100);
  }
  const peak = rss("with 10 records of 2,200 joins and 10 of 1,400 history requests sent (attacker not reading)");
  attacker.resume();
  const counts: Record<string, number> = {};
  for (;;) {
    let msgs;
    try {
      msgs = attacker.channel.open(await attacker.next(1500));
    } catch {
      break;
    }
    for (const m of msgs) {
      const k = m.type === "nack" || m.type === "error" || m.type === "notice" ? `${m.type}:${m.code}` : m.type;
      counts[k] = (counts[k] ?? 0) + 1;
    }
  }
  console.log(`hostile: amplification records; attacker received ${JSON.stringify(counts)}; RSS ${(before / MiB).toFixed(1)} → ${(peak / MiB).toFixed(1)} MiB`);
  // The outside review saw +1,519 MiB from one record of joins. Held and
  // answered at the request rate, with its output bounded while built, the
  // attacker costs the server at most a few send buffers.
  expect(peak - before).toBeLessThan(64 * MiB);
  // At most the request burst, the held requests and what the bucket refilled
  // in the test's few seconds were answered with a room's state; a client
  // that goes on sending while refused closes its own connection.
  expect(counts.room ?? 0).toBeLessThan(40 + 64 + 60);
  expect(attacker.closedAt).not.toBeNull();
  expect(srv.lines.some((l) => l.includes('"user":"amplifier"') && (l.includes('"code":"flood"') || l.includes('"slow_consumer"')))).toBe(true);
  expect(await sayAcked(carol, 99, "after")).toBeGreaterThan(0);
}, 60_000);

/** Accounts with a ticket each, written straight into a fresh data directory's store: no argon2id. */
function provisionStore(dataDir: string, users: string[]): Map<string, Cred> {
  const store = new Store(dataDir);
  const creds = new Map<string, Cred>();
  try {
    const now = Date.now();
    for (const user of users) {
      const ticketKey = ed25519Generate();
      const ticket = randomBytes(32);
      if (!store.createAccount({ name: user, identityKey: ed25519Generate().publicKey, verifier: "(none: ticket logins only)", createdAt: now })) throw new Error(`test: ${user} exists`);
      store.addTicket(sha256(ticket), { user, key: ticketKey.publicKey, expiresAt: now + 3600_000 }, now);
      creds.set(user, { user, ticket, ticketKey });
    }
  } finally {
    store.close();
  }
  return creds;
}

test("200 logged-in clients stop reading a busy room: each dropped as a slow consumer, a reader gets everything, server memory bounded (measured)", async () => {
  const N = 200;
  const MAX_SEND_BUFFER = 64 * 1024;
  const TEXT = 4000;
  const dataDir = freshPath("stall-data");
  const stalledNames = Array.from({ length: N }, (_, k) => `stall${String(k).padStart(3, "0")}`);
  const creds = provisionStore(dataDir, [...stalledNames, "sender", "watcher"]);
  // Flood control generous enough that one sender can push megabytes (it stays within it: 32 unacked at most).
  const server = await spawnServer(dataDir, ["--max-send-buffer", String(MAX_SEND_BUFFER), "--flood-rate", "5000", "--flood-burst", "5000", "--max-startups", "1000:30:1000", "--max-connections-per-address", "100000", "--login-rate", "100000", "--login-burst", "100000"], procs);
  const pid = server.proc.pid;
  const terminals: Terminal[] = [];
  const login = async (user: string): Promise<Terminal> => {
    const t = new Terminal(user, user);
    terminals.push(t);
    await t.open(server.port, creds.get(user)!, () => {}, 15_000);
    return t;
  };
  const inRoom = async (t: Terminal, timeoutMs = 10_000): Promise<void> => {
    t.request({ type: "join", room: "busy" }, false);
    const deadline = Date.now() + timeoutMs;
    while (!t.received.some((m) => m.type === "history_end" && m.room === "busy")) {
      if (Date.now() > deadline) throw new Error(`test: ${t.user} got no welcome into busy`);
      await sleep(5);
    }
  };
  const slowLines = (): number => server.lines.filter((l) => l.includes('"slow_consumer"')).length;
  try {
    await sleep(200);
    const base = vmRss(pid);
    const watcher = await login("watcher");
    await inRoom(watcher);
    const sender = await login("sender");
    await inRoom(sender);
    const t0 = Date.now();
    for (let i = 0; i < N; i += 25) {
      const batch = await Promise.all(stalledNames.slice(i, i + 25).map(login));
      await Promise.all(batch.map((t) => inRoom(t, 15_000)));
      for (const t of batch) t.pause();
    }
    const loginMs = Date.now() - t0;
    await sleep(200);
    const loggedIn = vmRss(pid);

    // The sender floods within the limits: 32 unacked at most, as the reference client.
    let peak = loggedIn;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, vmRss(pid));
      } catch {
        // the process is gone; the test will say so
      }
    }, 50);
    let said = 0;
    const acked = (): number => sender.received.filter((m) => m.type === "ack").length;
    const f0 = Date.now();
    const floodDeadline = f0 + 40_000;
    try {
      while (slowLines() < N && Date.now() < floodDeadline) {
        for (let k = 0; k < 32; k++) sender.request({ type: "say", id: ++said, room: "busy", text: `${said} ${"y".repeat(TEXT)}` }, true);
        sender.flush();
        while (acked() < said) {
          if (Date.now() > floodDeadline) {
            throw new Error(
              `test: ${said - acked()} of ${said} says unacked at the deadline; slow_consumer ${slowLines()}/${N}; server ${server.proc.exitCode === null ? "running" : `exited ${server.proc.exitCode}`}; ` +
                `sender socket closed: ${sender.socketClosed}, bytes it has not written yet: ${sender.unsent}; last server lines: ${server.lines.slice(-3).join(" | ")}`,
            );
          }
          if (sender.received.some((m) => m.type === "nack" || m.type === "error")) throw new Error(`test: sender refused: ${JSON.stringify(sender.received.find((m) => m.type === "nack" || m.type === "error"))}`);
          await sleep(2);
        }
      }
    } finally {
      clearInterval(sampler);
    }
    const floodMs = Date.now() - f0;
    const dropped = slowLines();
    // The reader got every message, in order, live.
    const deadline = Date.now() + 10_000;
    const live = (): number[] => watcher.received.filter((m) => m.type === "message" && m.room === "busy" && !m.history).map((m) => (m as { seq: number }).seq);
    while (live().length < said && Date.now() < deadline) await sleep(10);
    const seqs = live();
    // The stalled sockets are closed by the server (after its 2 s grace for the error to be read).
    const stalled = terminals.filter((t) => t.user.startsWith("stall"));
    const closeDeadline = Date.now() + 10_000;
    while (stalled.some((t) => !t.socketClosed) && Date.now() < closeDeadline) await sleep(20);
    const closed = stalled.filter((t) => t.socketClosed).length;
    await sleep(300);
    const after = vmRss(pid);
    const bound = N * (MAX_SEND_BUFFER + 4 * MAX_FRAME) + 64 * MiB;
    const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
    const figure =
      `${N} stalled clients, max-send-buffer ${MAX_SEND_BUFFER / 1024} KiB: RSS ${mib(base)} before logins, ${mib(loggedIn)} with ${N + 2} logged in (${loginMs} ms), ` +
      `peak ${mib(peak)} during a flood of ${said} × ${TEXT} B says (${(said * TEXT / MiB).toFixed(1)} MiB said, ${((said * TEXT * (N + 1)) / MiB).toFixed(0)} MiB fanned out, ${floodMs} ms), ` +
      `${mib(after)} after; peak over the logged-in figure ${mib(peak - loggedIn)}, bound ${mib(bound)} (N × (max-send-buffer + 4 × MAX_FRAME) + 64 MiB); ` +
      `slow_consumer drops ${dropped}/${N}, stalled sockets closed ${closed}/${N}; the reader got ${seqs.length}/${said} live messages`;
    figures.push(figure);
    console.log(`hostile: ${figure}`);
    expect(dropped).toBe(N);
    expect(closed).toBe(N);
    expect(seqs).toEqual(Array.from({ length: said }, (_, k) => k + 1));
    expect(peak - loggedIn).toBeLessThan(bound);
    // The server still serves: the watcher is answered.
    watcher.request({ type: "who", room: "busy" }, false);
    const whoDeadline = Date.now() + 3000;
    while (!watcher.received.some((m) => m.type === "members")) {
      if (Date.now() > whoDeadline) throw new Error("test: no answer to who after the stall");
      await sleep(5);
    }
    expect(watcher.received.find((m) => m.type === "members")).toEqual({ type: "members", room: "busy", users: ["sender", "watcher"] });
  } finally {
    for (const t of terminals) t.destroy();
    await killProc(server.proc, "SIGTERM");
  }
}, 90_000);
