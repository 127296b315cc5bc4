/**
 * A member catching up after a disconnect (PROTOCOL.md §7.3): a `join` or
 * `history` with `since` pages in every message the server keeps after it
 * (serve --history-keep), not only the last --history a fresh join is shown,
 * so a client away for longer than a busy room's --history messages comes
 * back with no gap. The chat core over the transcript journal, fake members.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { Chat, DEFAULT_CHAT } from "../../src/server/chat.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { hostKeyPair, tempDir } from "../transcript/helpers.ts";
import { FakeMember } from "./chat-helpers.ts";

const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };
let journal: TranscriptJournal | null = null;
afterEach(() => journal?.close("shutdown"));

test("history 5, keep 1000: a rejoin 40 messages behind pages in all 40, in order, `more` on every page but the last", async () => {
  journal = TranscriptJournal.open({ ...DEFAULT_WRITER, fsync: "off", dir: join(tempDir("catchup"), "transcript"), hostKey: hostKeyPair(3), version: "test", log: silentLogger, history: 5, historyKeep: 1000, historyFlushMs: 0 });
  const chat = new Chat({ ...DEFAULT_CHAT, history: 5, flood: NO_FLOOD, requests: NO_FLOOD }, journal);
  const alice = new FakeMember("alice");
  chat.connect(alice);
  chat.handle(alice, { type: "join", room: "busy" });
  for (let i = 1; i <= 42; i++) chat.handle(alice, { type: "say", id: i, room: "busy", text: `line ${i}` });
  await new Promise((r) => setTimeout(r, 50));

  // bob saw up to seq 2, then was away
  const bob = new FakeMember("bob");
  chat.connect(bob);
  chat.handle(bob, { type: "join", room: "busy", since: 2 });
  const shown: number[] = [];
  for (let page = 0; page < 20; page++) {
    const end = bob.of("history_end").at(-1)!;
    const got = bob.inbox.filter((m): m is Message<"message"> => m.type === "message" && m.history === true).map((m) => m.seq);
    shown.splice(0, shown.length, ...got);
    if (!end.more) break;
    chat.handle(bob, { type: "history", room: "busy", limit: 5, since: shown.at(-1)! });
  }
  expect(shown).toEqual(Array.from({ length: 40 }, (_, i) => i + 3));
  const ends = bob.of("history_end");
  expect(ends.length).toBe(8);
  expect(ends.slice(0, -1).every((e) => e.more === true && e.count === 5)).toBe(true);
  expect(ends.at(-1)).toMatchObject({ count: 5 });
  expect(ends.at(-1)!.more).toBeUndefined();

  // a fresh join (no since) is still shown the last 5
  const carol = new FakeMember("carol");
  chat.connect(carol);
  chat.handle(carol, { type: "join", room: "busy" });
  expect(carol.inbox.filter((m): m is Message<"message"> => m.type === "message").map((m) => m.seq)).toEqual([38, 39, 40, 41, 42]);
});
