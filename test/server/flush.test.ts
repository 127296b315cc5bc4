/**
 * The relay's per-turn machinery, below the sockets: record plaintexts built
 * once per turn and shared by connections whose outboxes hold the same
 * messages (FlushTurn), and frames sealed into one reused buffer, which
 * Framed must copy whenever it keeps any of it for later (borrowed sends);
 * and one connection's Outbox (ack order, bounds, slow consumers) with a fake owner.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { fromUtf8 } from "../../src/bytes.ts";
import { Framed } from "../../src/net/framed.ts";
import { MAX_FRAME } from "../../src/protocol/limits.ts";
import { encodeMessage } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { FlushTurn, Outbox, type OutboxOwner, type TooSlow } from "../../src/server/outbox.ts";
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
        const conn = this.handler as unknown as { user: string; outbox: { messages: string[] } };
        if (conn.user === "dave" && borrowed) {
          const bytes = conn.outbox.messages.reduce((n, m) => n + m.length + 1, 0);
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

/** A connection as the outbox sees it: records written are kept as text; the socket takes nothing unless told. */
class FakeOwner implements OutboxOwner {
  open = true;
  queued = 0;
  /** The socket takes every record at once (nothing stays queued). */
  takes = false;
  /** writeRecord fails (the peer is gone) from this record on. */
  failAt = Number.POSITIVE_INFINITY;
  scheduled = 0;
  records: string[] = [];
  drained = 0;
  released = 0;
  verdicts: TooSlow[] = [];
  failures: unknown[] = [];
  scheduleFlush(): void {
    this.scheduled++;
  }
  writeRecord(plaintext: Uint8Array): boolean {
    if (this.records.length >= this.failAt) {
      this.open = false;
      return false;
    }
    this.records.push(fromUtf8(plaintext));
    if (!this.takes) this.queued += plaintext.length;
    return true;
  }
  outputDrained(): void {
    this.drained++;
  }
  outputReleased(): void {
    this.released++;
  }
  tooSlow(verdict: TooSlow): void {
    this.verdicts.push(verdict);
    this.open = false;
  }
  fail(e: unknown): void {
    this.failures.push(e);
  }
  /** Every message written, in order. */
  get lines(): string[] {
    return this.records.flatMap((r) => r.split("\n"));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: () => void } {
  let resolve!: () => void;
  let reject!: () => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = () => rej(new Error("not recorded"));
  });
  return { promise, resolve, reject };
}

const settled = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe("Outbox: one connection's output, without sockets", () => {
  test("what follows an ack waiting for the transcript waits behind it; acks released out of order still go out in order", async () => {
    const owner = new FakeOwner();
    owner.takes = true;
    const box = new Outbox(owner, 1 << 20);
    const first = deferred();
    const second = deferred();
    box.post("a");
    box.postWhen(first.promise, () => "ack1", () => "nack1");
    box.post("b");
    box.postWhen(second.promise, () => "ack2", () => "nack2");
    box.post("c");
    box.flush();
    expect(owner.lines).toEqual(["a"]);
    second.resolve();
    await settled();
    box.flush();
    expect(owner.lines).toEqual(["a"]);
    expect(owner.released).toBe(0);
    first.reject();
    await settled();
    box.flush();
    expect(owner.lines).toEqual(["a", "nack1", "b", "ack2", "c"]);
    expect(owner.released).toBe(1);
    expect(box.holding).toBe(false);
  });

  test("what waits is counted exactly: once every ack is sent and the socket has taken it all, nothing is pending", async () => {
    const owner = new FakeOwner();
    owner.takes = true;
    const box = new Outbox(owner, 1000);
    // A long session of acks: each one's bytes once left uncounted would loosen the bound for good.
    for (let i = 0; i < 100; i++) {
      const ack = deferred();
      box.postWhen(ack.promise, () => `{"type":"ack","id":${i}}`, () => "nack");
      box.post("m");
      ack.resolve();
      await settled();
      expect(box.pending).toBe(1 + `{"type":"ack","id":${i}}`.length);
      box.flush();
      expect(box.pending).toBe(0);
    }
    // The bound is still the bound: 4 × the buffer of held output is dropped.
    box.postWhen(deferred().promise, () => "ack", () => "nack");
    for (let i = 0; i < 4; i++) box.post("m".repeat(1000));
    expect(owner.verdicts).toEqual([]);
    box.post("m");
    expect(owner.verdicts).toHaveLength(1);
  });

  test("one flush is scheduled per turn, however many messages it carries; they go out in one record", () => {
    const owner = new FakeOwner();
    owner.takes = true;
    const box = new Outbox(owner, 1 << 20);
    for (const m of ["x", "y", "z"]) box.post(m);
    expect(owner.scheduled).toBe(1);
    box.flush();
    expect(owner.records).toEqual(["x\ny\nz"]);
    box.post("w");
    expect(owner.scheduled).toBe(2);
  });

  test("bounded while built: past 4 × the send buffer before any flush, the output is dropped as a slow consumer", () => {
    const owner = new FakeOwner();
    const box = new Outbox(owner, 1000);
    const m = "m".repeat(1200);
    for (let i = 0; i < 3; i++) box.post(m);
    // 3600 waiting: more than the buffer, but one turn's burst is not held against a reader.
    expect(owner.verdicts).toEqual([]);
    box.post(m);
    expect(owner.verdicts).toEqual([{ reason: "slow_consumer", queued: 4800, waitingForTranscript: 0 }]);
    expect(box.messages).toHaveLength(0);
    expect(box.pending).toBe(0);
    expect(owner.records).toEqual([]);
  });

  test("at the end of a turn: a socket that has not taken the send buffer is a slow consumer; one that has is unblocked", () => {
    const slow = new FakeOwner();
    const slowBox = new Outbox(slow, 1000);
    slowBox.post("m".repeat(1200));
    slowBox.flush();
    expect(slow.records).toHaveLength(1);
    expect(slow.verdicts).toEqual([{ reason: "slow_consumer", queued: 1200, waitingForTranscript: 0 }]);
    expect(slow.drained).toBe(0);

    const reader = new FakeOwner();
    reader.takes = true;
    const readerBox = new Outbox(reader, 1000);
    readerBox.post("m".repeat(1200));
    readerBox.flush();
    expect(reader.verdicts).toEqual([]);
    expect(reader.drained).toBe(1);
  });

  test("output held behind acks is what passed the bound: the transcript is behind, not the reader", () => {
    const owner = new FakeOwner();
    const box = new Outbox(owner, 1000);
    box.postWhen(deferred().promise, () => "ack", () => "nack");
    for (let i = 0; i < 5; i++) box.post("m".repeat(1000));
    expect(owner.verdicts).toEqual([{ reason: "transcript_behind", queued: 5000, waitingForTranscript: 5000 }]);
    expect(box.holding).toBe(false);

    // Held output too, but the socket alone has not taken more than the bound: the reader is slow.
    const stuck = new FakeOwner();
    stuck.queued = 4100;
    const stuckBox = new Outbox(stuck, 1000);
    stuckBox.postWhen(deferred().promise, () => "ack", () => "nack");
    stuckBox.post("m".repeat(100));
    expect(stuck.verdicts).toEqual([{ reason: "slow_consumer", queued: 4200, waitingForTranscript: 100 }]);
  });

  test("congested past half the send buffer; unblocked (reading resumes) only once below a quarter", () => {
    const owner = new FakeOwner();
    const box = new Outbox(owner, 1000);
    owner.queued = 600;
    expect(box.congested).toBe(true);
    box.unblock();
    expect(owner.drained).toBe(0);
    owner.queued = 400;
    expect(box.congested).toBe(false);
    box.unblock();
    expect(owner.drained).toBe(0);
    owner.queued = 250;
    box.unblock();
    expect(owner.drained).toBe(1);
    owner.open = false;
    owner.queued = 0;
    box.unblock();
    expect(owner.drained).toBe(1);
  });

  test("a failed write stops the flush: nothing more is sealed, the queue is emptied, no verdict", () => {
    const owner = new FakeOwner();
    owner.failAt = 1;
    const box = new Outbox(owner, 1 << 20);
    const big = "b".repeat(30_000);
    for (let i = 0; i < 6; i++) box.post(big);
    box.flush();
    expect(owner.records).toHaveLength(1);
    expect(box.messages).toHaveLength(0);
    expect(owner.verdicts).toEqual([]);
  });

  test("an answer that throws as it is made is the connection's failure, not an unhandled rejection; a closed connection gets nothing", async () => {
    const owner = new FakeOwner();
    const box = new Outbox(owner, 1 << 20);
    const boom = new Error("encode failed");
    box.postWhen(Promise.resolve(), () => {
      throw boom;
    }, () => "nack");
    await settled();
    expect(owner.failures).toEqual([boom]);

    const gone = new FakeOwner();
    const goneBox = new Outbox(gone, 1 << 20);
    const ack = deferred();
    goneBox.postWhen(ack.promise, () => "ack", () => "nack");
    gone.open = false;
    ack.resolve();
    await settled();
    expect(goneBox.messages).toHaveLength(0);
    expect(gone.scheduled).toBe(0);
  });
});
