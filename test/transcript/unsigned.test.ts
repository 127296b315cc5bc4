/**
 * neverSigned (src/transcript/unsigned.ts), the helper a server rebuilding
 * history at start uses to leave out what a crashed run never signed
 * (docs/TRANSCRIPT.md §2.5, §7): the stretches before each crash, and the
 * previous run's tail at the end when it crashed.
 */
import { describe, expect, test } from "bun:test";
import { toBase64 } from "../../src/bytes.ts";
import { neverSigned } from "../../src/transcript/unsigned.ts";
import { Chain, hostKeyPair } from "./helpers.ts";

const host = hostKeyPair(11);

function chain(): Chain {
  const c = new Chain(host);
  c.add("server_start", { host_key: toBase64(host.publicKey), version: "t" });
  return c;
}
const say = (c: Chain, room_seq: number) => c.add("message", { room: "lobby", room_seq, from: "alice", text: `m${room_seq}` });
const restart = (c: Chain) => {
  c.add("recovery", { file: "x.jsonl", torn_bytes: 0, torn_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", reason: "unclean" });
  c.add("server_start", { host_key: toBase64(host.publicKey), version: "t" });
};

describe("neverSigned: what a history loader leaves out", () => {
  test("a transcript whose last run stopped cleanly: nothing", () => {
    const c = chain();
    say(c, 1);
    c.checkpoint();
    c.add("server_stop", { reason: "shutdown" });
    c.checkpoint();
    expect(neverSigned(c.entries)).toEqual([]);
  });

  test("read at start after a crash, before the restart's own entries are written: the crashed run's tail, at the end", () => {
    const c = chain(); // 1
    say(c, 1); // 2: acknowledged
    c.checkpoint(); // 3
    say(c, 2); // 4: written, never acknowledged
    c.add("leave", { room: "lobby", user: "alice" }); // 5
    expect(neverSigned(c.entries)).toEqual([{ from: 4, to: 5, messages: 1, crash: null }]);
  });

  test("older crashes are found too, though a later run's checkpoints cover them", () => {
    const c = chain(); // 1
    say(c, 1); // 2
    say(c, 2); // 3: never acknowledged
    restart(c); // 4, 5
    say(c, 3); // 6
    c.checkpoint(); // 7
    c.add("server_stop", { reason: "shutdown" });
    c.checkpoint();
    expect(neverSigned(c.entries)).toEqual([{ from: 1, to: 3, messages: 2, crash: 4 }]);
  });

  test("a message followed by its checkpoint is never in a range", () => {
    const c = chain();
    for (let i = 1; i <= 5; i++) {
      say(c, i);
      c.checkpoint();
      restart(c);
    }
    const ranges = neverSigned(c.entries);
    const messages = c.entries.filter((e) => e.type === "message").map((e) => e.seq);
    for (const seq of messages) expect(ranges.some((r) => r.from <= seq && seq <= r.to)).toBe(false);
    // each run's recovery and server_start: not signed by that run, no message among them
    expect(ranges.every((r) => r.messages === 0)).toBe(true);
  });
});
