/**
 * The relay's per-turn machinery, below the sockets: record plaintexts built
 * once per turn and shared by connections whose outboxes hold the same
 * messages (FlushTurn), and frames sealed into one reused buffer, which
 * Framed must copy whenever it keeps any of it for later (borrowed sends).
 */
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { fromUtf8 } from "../../src/bytes.ts";
import { Framed } from "../../src/net/framed.ts";
import { MAX_FRAME } from "../../src/protocol/limits.ts";
import { encodeMessage } from "../../src/protocol/messages.ts";
import { FlushTurn } from "../../src/server/server.ts";

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
