/**
 * The relay's per-turn machinery, below the sockets: record plaintexts built
 * once per turn and shared by connections whose outboxes hold the same
 * messages (FlushTurn), and frames sealed into one reused buffer, which
 * Framed must copy whenever it keeps any of it for later (borrowed sends).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { fromUtf8 } from "../../src/bytes.ts";
import { Framed } from "../../src/net/framed.ts";
import { MAX_FRAME } from "../../src/protocol/limits.ts";
import { encodeMessage } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { FlushTurn } from "../../src/server/server.ts";
import { Peer, type Seed, cred, seedAccounts, serverFrom } from "./chat-helpers.ts";
import { type TestServer, waitFor } from "./helpers.ts";

const say = (seq: number, text = "hello"): string => encodeMessage({ type: "message", room: "r", seq, ts: 1, from: "alice", text });

describe("FlushTurn: record plaintexts per turn", () => {
  test("one record: the messages' UTF-8 joined by LF", () => {
    const outbox = [say(1), say(2, "héllo ☃"), encodeMessage({ type: "pong" })];
    const [only, ...rest] = new FlushTurn().payloads(outbox);
    expect(rest).toHaveLength(0);
    expect(fromUtf8(only!)).toBe(outbox.join("\n"));
  });

  test("a second outbox with the same messages gets the very same plaintexts; a different one gets its own", () => {
    const turn = new FlushTurn();
    const msgs = [say(1), say(2), say(3)];
    const first = turn.payloads([...msgs]);
    expect(turn.payloads([...msgs])).toBe(first);
    // Equal text is enough (the bytes are the same), even from other string objects.
    expect(turn.payloads(msgs.map((m) => `${m.slice(0, 1)}${m.slice(1)}`))).toBe(first);
    const withAck = [...msgs.slice(0, 2), encodeMessage({ type: "ack", id: 7, seq: 3, ts: 1 })];
    const other = turn.payloads(withAck);
    expect(other).not.toBe(first);
    expect(fromUtf8(other[0]!)).toBe(withAck.join("\n"));
    const shorter = turn.payloads(msgs.slice(0, 2));
    expect(fromUtf8(shorter[0]!)).toBe(msgs.slice(0, 2).join("\n"));
    // …and the one before is not kept: back to the first list, rebuilt, same bytes.
    const again = turn.payloads([...msgs]);
    expect(fromUtf8(again[0]!)).toBe(msgs.join("\n"));
  });

  test("an outbox larger than a frame is split at message boundaries, every record within the frame limit, nothing lost", () => {
    const big = "x".repeat(4000);
    const outbox = Array.from({ length: 40 }, (_, i) => say(i + 1, big));
    const payloads = new FlushTurn().payloads(outbox);
    expect(payloads.length).toBeGreaterThan(1);
    for (const p of payloads) expect(p.length + 16).toBeLessThanOrEqual(MAX_FRAME);
    expect(payloads.map((p) => fromUtf8(p)).join("\n")).toBe(outbox.join("\n"));
  });
});

/** A socket that takes at most `budget` bytes per write, like a full kernel buffer. */
function fakeSocket(budget: { n: number }) {
  const wire: number[] = [];
  const socket = {
    write(data: Uint8Array) {
      const n = Math.min(budget.n, data.length);
      for (let i = 0; i < n; i++) wire.push(data[i]!);
      budget.n -= n;
      return n;
    },
    end() {},
    terminate() {},
  };
  return { socket: socket as unknown as Socket<unknown>, wire };
}

describe("Framed.send with a borrowed buffer", () => {
  const handler = { frame() {}, error() {}, closed() {} };

  test("what the socket did not take is copied: reusing the buffer afterwards changes nothing on the wire", () => {
    const budget = { n: 3 };
    const { socket, wire } = fakeSocket(budget);
    const f = new Framed(socket, MAX_FRAME, handler);
    const scratch = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(f.send(scratch, true)).toBe(true);
    expect(f.queued).toBe(5);
    scratch.fill(0xff); // the caller seals the next record into it
    expect(f.send(scratch.subarray(0, 2), true)).toBe(true); // queued behind: copied too
    scratch.fill(0xaa);
    budget.n = 100;
    f.drain();
    expect(wire).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff]);
    expect(f.queued).toBe(0);
  });

  test("control: without `borrowed`, the queued part is the caller's buffer (so the caller must not reuse it)", () => {
    const budget = { n: 3 };
    const { socket, wire } = fakeSocket(budget);
    const f = new Framed(socket, MAX_FRAME, handler);
    const frame = new Uint8Array([1, 2, 3, 4, 5]);
    f.send(frame);
    frame.fill(9);
    budget.n = 100;
    f.drain();
    expect(wire).toEqual([1, 2, 3, 9, 9]);
  });
});

describe("a connection that fails in the middle of its flush", () => {
  let seed: Seed;
  let t: TestServer;
  beforeAll(async () => {
    seed = await seedAccounts(["alice", "bob", "dave"]);
    t = await serverFrom(seed, { chat: { ...DEFAULT_CHAT, flood: { rate: 100_000, burst: 100_000 } } });
  }, 15_000);
  afterAll(async () => {
    await t.server.stop();
  }, 15_000);

  // A write that fails (the peer is gone) or a queue that overflows closes the
  // connection, and its channel, inside Framed.send. If the turn's outbox
  // held more records for it, sealing the next one used to throw out of the
  // flush callback and stop the whole server.
  test("is closed alone: no further record is sealed for it, the server and the others go on", async () => {
    const original = Framed.prototype.send;
    let failedFlushBytes = 0;
    const peers: Peer[] = [];
    try {
      const alice = await Peer.login(t.port, cred(seed, "alice"));
      const bob = await Peer.login(t.port, cred(seed, "bob"));
      const dave = await Peer.login(t.port, cred(seed, "dave"));
      peers.push(alice, bob, dave);
      for (const p of peers) await p.join("big");
      // dave's socket "fails" on the first record of a turn whose outbox spans several records.
      Framed.prototype.send = function (this: Framed, frame: Uint8Array, borrowed?: boolean): boolean {
        const conn = this.handler as unknown as { user: string; outbox: string[] };
        if (conn.user === "dave" && borrowed) {
          const bytes = conn.outbox.reduce((n, m) => n + m.length + 1, 0);
          if (bytes > MAX_FRAME) {
            failedFlushBytes = bytes;
            this.close("write failed");
            return false;
          }
        }
        return original.call(this, frame, borrowed);
      };
      const text = "y".repeat(4000);
      let id = 0;
      // Three records of 15 lines each in one burst: ~180 KB for dave in one turn (retried until one turn holds > 64 KiB).
      for (let round = 0; round < 20 && failedFlushBytes === 0 && !dave.isClosed; round++) {
        for (let r = 0; r < 3; r++) alice.send(...Array.from({ length: 15 }, () => ({ type: "say" as const, id: ++id, room: "big", text })));
        await alice.until(`acks for ${id} lines`, () => alice.of("ack").length + alice.of("nack").length === id, 10_000);
      }
      expect(failedFlushBytes).toBeGreaterThan(MAX_FRAME);
      expect(await dave.waitClosed(5000)).toBe(true);
      // The server is still there for the others: every line reached bob, in order, and new ones still do.
      alice.send({ type: "say", id: ++id, room: "big", text: "still here" });
      await bob.until("every line", () => bob.of("message").length === id, 10_000);
      expect(bob.of("message").map((m) => m.seq)).toEqual(Array.from({ length: id }, (_, i) => i + 1));
      expect(bob.of("message").at(-1)?.text).toBe("still here");
      expect(alice.error ?? bob.error).toBeNull();
      await waitFor("dave to be forgotten", () => t.server.chat.stats.users === 2, 5000);
    } finally {
      Framed.prototype.send = original;
      for (const p of peers) p.destroy();
    }
  }, 30_000);
});
