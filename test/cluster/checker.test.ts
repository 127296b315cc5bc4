/**
 * The chaos checker on made-up runs: a clean one passes, and each kind of
 * defect a server could commit under chaos — a duplicate shown, a gap, a
 * reordering, a phantom, an acked message lost or recorded twice, a
 * transcript that does not verify — is named.
 */
import { describe, expect, test } from "bun:test";
import { type ChatEvent, type Entry, type VerifyLine, check } from "./checker.ts";

const PASS: VerifyLine[] = [{ kind: "summary", result: "pass", text: "PASS" }];

/**
 * A clean run in one room: alice says a1, a2, a3 (acked as seq 1–3,
 * entries 10–12); bob sees them live. Each test spoils one thing.
 */
function run() {
  const entries: Entry[] = [1, 2, 3].map((n) => ({ seq: 9 + n, hash: `h${n}`, type: "message", room: "r", room_seq: n, from: "alice", text: `a${n}` }));
  const alice: ChatEvent[] = [{ type: "room", room: "r", seq: 0 }];
  for (const n of [1, 2, 3]) alice.push({ type: "sent", id: n, room: "r", text: `a${n}` });
  for (const n of [1, 2, 3]) alice.push({ type: "ack", id: n, seq: n, tseq: 9 + n, head: `h${n}` });
  const bob: ChatEvent[] = [{ type: "room", room: "r", seq: 0 }];
  for (const n of [1, 2, 3]) bob.push({ type: "message", room: "r", seq: n, from: "alice", text: `a${n}` });
  return { entries, alice, bob, verify: [...PASS] };
}

function problems(r: ReturnType<typeof run>): string[] {
  return check({ members: [{ user: "alice", events: r.alice }, { user: "bob", events: r.bob }], verify: r.verify, entries: r.entries }).problems;
}

describe("the chaos checker", () => {
  test("a clean run passes, with its figures", () => {
    const r = run();
    const res = check({ members: [{ user: "alice", events: r.alice }, { user: "bob", events: r.bob }], verify: r.verify, entries: r.entries });
    expect(res.problems).toEqual([]);
    expect(res.stats).toEqual({ acked: 3, unacked: 0, recorded: 3, shown: 6, neverSigned: 0 });
  });

  test("history after a reconnect that repeats a live message is a duplicate shown", () => {
    const r = run();
    r.bob.push({ type: "message", room: "r", seq: 2, from: "alice", text: "a2", history: true });
    expect(problems(r)).toEqual([expect.stringContaining("shown twice: bob in r: seq 2 (history)")]);
  });

  test("a message a member never got is a gap, said acknowledged", () => {
    const r = run();
    r.bob.splice(2, 1); // seq 2
    expect(problems(r)).toEqual(['gap: bob in r (joined after seq 0) was never shown seq 2 (acknowledged): alice: "a2"']);
  });

  test("messages shown out of room order are named", () => {
    const r = run();
    [r.bob[2], r.bob[3]] = [r.bob[3]!, r.bob[2]!];
    expect(problems(r)).toEqual([expect.stringContaining("out of order (after seq 3): bob in r: seq 2")]);
  });

  test("a message shown that the transcript does not hold, or holds with other words, is a phantom", () => {
    const r = run();
    r.bob.push({ type: "message", room: "r", seq: 4, from: "alice", text: "lost in the crash" });
    r.bob[1] = { ...r.bob[1]!, text: "a1 reworded" };
    expect(problems(r)).toEqual([
      expect.stringContaining('shown, but the transcript has alice: "a1" at that seq: bob in r: seq 1'),
      expect.stringContaining("shown but not in the transcript: bob in r: seq 4"),
    ]);
  });

  test("a resent message recorded and shown at two seqs is caught in the transcript and in the view", () => {
    const r = run();
    r.entries.push({ seq: 13, hash: "h4", type: "message", room: "r", room_seq: 4, from: "alice", text: "a3" });
    r.bob.push({ type: "message", room: "r", seq: 4, from: "alice", text: "a3" });
    const p = problems(r);
    expect(p).toContain('transcript: "a3" recorded twice (r seq 3 and 4)');
    expect(p).toContain('the same text shown twice (seq 3 and 4): bob in r: seq 4 (live) "a3"');
  });

  test("an acked message missing from the transcript, or at another entry, is lost", () => {
    const r = run();
    r.entries.splice(1, 1); // a2's entry
    const p = problems(r);
    expect(p).toContain('acked but not in the transcript: alice\'s "a2" (acked as r seq 2, tseq 11)');
    expect(p).toContain("transcript: r has no message 2 (its numbers go to 3)");
  });

  test("an acked message in a crashed run's never-signed tail is named; an unacked one there may be missing from a view", () => {
    const r = run();
    r.verify.push({ kind: "warning", warning: "never_signed", from: 12, to: 12 });
    r.bob.pop(); // seq 3, entry 12
    expect(problems(r)).toEqual([
      expect.stringContaining("acked, but among the entries a crashed run never signed"),
      expect.stringContaining("gap: bob in r (joined after seq 0) was never shown seq 3 (acknowledged)"),
    ]);
    // The same tail, unacked (the sender lost its connection before the ack): bob may not see it.
    r.alice.pop();
    r.alice.push({ type: "unsent", id: 3, reason: "not acknowledged" });
    r.alice.splice(r.alice.findIndex((e) => e.type === "ack" && e.id === 3), 1);
    expect(problems(r)).toEqual([]);
  });

  test("an ack of a line sent again while resuming stands at its seq among the history the rejoin brings; after the resume it is a place in the order", () => {
    // bob, reconnecting after seq 1, sends b4 again early: it was recorded as seq 4, after a2 and a3 he has not been shown.
    const resumed = () => {
      const r = run();
      r.entries.push({ seq: 13, hash: "h4", type: "message", room: "r", room_seq: 4, from: "bob", text: "b4" });
      r.alice.push({ type: "message", room: "r", seq: 4, from: "bob", text: "b4" });
      r.bob.splice(2);
      r.bob.push({ type: "sent", id: 1, room: "r", text: "b4" }, { type: "disconnected", reason: "lost" });
      return r;
    };
    const history = [2, 3].map((n) => ({ type: "message", room: "r", seq: n, from: "alice", text: `a${n}`, history: true }));
    const ack = { type: "ack", id: 1, seq: 4, tseq: 13, head: "h4" };
    const back = { type: "reconnected", after_ms: 1, rooms: [] };
    const early = resumed();
    early.bob.push(ack, ...history, back);
    expect(problems(early)).toEqual([]);
    // The same ack after the resume is over, then history before it: out of order.
    const late = resumed();
    late.bob.push(back, ack, ...history);
    expect(problems(late)).toEqual([expect.stringContaining("out of order (after seq 4): bob in r: seq 2 (history)"), expect.stringContaining("out of order (after seq 4): bob in r: seq 3 (history)")]);
  });

  test("a transcript that does not verify fails the run", () => {
    const r = run();
    r.verify = [{ kind: "summary", result: "fail", text: "entry 11 edited" }];
    expect(problems(r)).toEqual(["transcript: verify failed: entry 11 edited"]);
  });
});
