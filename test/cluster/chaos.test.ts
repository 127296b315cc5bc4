/**
 * Chaos: users chat at a steady pace while the server is killed (SIGKILL)
 * and restarted at random moments; afterwards every acknowledged message is
 * in every member's view exactly once, in room order, with no gap, and the
 * transcript verifies and holds each exactly once (test/cluster/checker.ts
 * says precisely what is checked).
 *
 * The moments are drawn from a seed: CHAOS_SEED=N replays a run; the seed is
 * in every failure's message. Only generous bounded waits, no timing asserted.
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { rng } from "../rng.ts";
import { check } from "./checker.ts";
import { type Chat, Harness, Sender, waitUntil } from "./harness.ts";

/** Bounded waits: a client's reconnect backoff after 3 restarts, on a loaded machine. */
const WAIT_MS = 60_000;
/** One line per user every PACE_MS: under the server's flood rate (10/s) even when an outage's queue is flushed at once (burst 30). */
const PACE_MS = 150;

let harness: Harness | null = null;
/** Set when a run fails: its work directory stays, for the events and logs it names. */
let keep = false;
afterEach(async () => {
  await harness?.close(keep);
  harness = null;
  keep = false;
});

/** The highest seq a chat knows of in `room` (messages shown, acks of its own lines). */
function lastSeen(c: Chat, room: string): number {
  const sent = new Map<number, string>();
  let n = 0;
  for (const e of c.events) {
    if (e.type === "sent" && typeof e.room === "string") sent.set(e.id as number, e.room);
    if (e.type === "message" && e.room === room) n = Math.max(n, e.seq as number);
    if (e.type === "ack" && sent.get(e.id as number) === room) n = Math.max(n, e.seq as number);
  }
  return n;
}

/** Lines sent that got neither an ack nor an `unsent`: still waiting. */
function waiting(c: Chat): number {
  const open = new Set<number>();
  for (const e of c.events) {
    if (e.type === "sent") open.add(e.id as number);
    if (e.type === "ack" || e.type === "nack" || e.type === "unsent") open.delete(e.id as number);
  }
  return open.size;
}

test("one node: kill -9 and restart three times under chat load; every acked message shown once, in order, no gap; the transcript verifies", async () => {
  const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const pick = rng(seed);
  const log: string[] = [`seed ${seed} (CHAOS_SEED=${seed} replays it)`];
  const h = await Harness.open();
  harness = h;
  // Default settings: a client away for seconds (its backoff after two kills in a row) misses more
  // than a join shows (--history 50); its rejoin pages in everything after its `since` from what the
  // server keeps (--history-keep 1000), so any message missing here is lost by the crash or the resume.
  const node = await h.node([]);
  const [alice, bob, carol] = await Promise.all([h.user("alice"), h.user("bob"), h.user("carol")]);

  // alice in r1; bob and carol in r1 and r2, each speaking in turn in both.
  const plan: { chat: Chat; rooms: string[] }[] = [
    { chat: alice!.chat("r1"), rooms: ["r1"] },
    { chat: bob!.chat("r1"), rooms: ["r1", "r2"] },
    { chat: carol!.chat("r2"), rooms: ["r2", "r1"] },
  ];
  for (const { chat, rooms } of plan) {
    await chat.waitFor((e) => e.type === "room" && e.room === rooms[0], WAIT_MS, `joined ${rooms[0]}`);
    for (const r of rooms.slice(1)) {
      chat.line(`/join ${r}`);
      await chat.waitFor((e) => e.type === "room" && e.room === r, WAIT_MS, `joined ${r}`);
    }
  }
  const senders = plan.map(({ chat, rooms }) => new Sender(chat, rooms, PACE_MS));

  for (let i = 1; i <= 3; i++) {
    const before = 500 + pick.int(2500);
    const down = pick.int(1000);
    await Bun.sleep(before);
    await node.kill9();
    log.push(`kill -9 #${i} after ${before} ms; restarted after ${down} ms`);
    await Bun.sleep(down);
    await node.restart();
  }
  await Bun.sleep(2000);
  for (const s of senders) s.stop();

  const chats = plan.map((p) => p.chat);
  /** The failure's text; every client's output and the node's log are kept in the work directory, which is then left in place. */
  const fail = (why: string): string => {
    for (const c of chats) writeFileSync(join(h.work, `${c.user}.events.jsonl`), c.events.map((e) => JSON.stringify(e)).join("\n"));
    writeFileSync(join(h.work, "node.log"), node.log.join("\n"));
    keep = true;
    return [why, ...log, `each client's output, the node's log and data: ${h.work}`, ...chats.map((c) => `${c.user}:\n${c.describe()}`), `server:\n${node.tail()}`].join("\n");
  };
  // Every line answered (ack, or given up after a loss), then every member up to each room's last seq.
  await waitUntil(() => chats.every((c) => waiting(c) === 0), WAIT_MS, () => fail("lines still waiting for an answer"));
  const last = new Map(["r1", "r2"].map((r) => [r, Math.max(...chats.map((c) => lastSeen(c, r)))]));
  await waitUntil(
    () => plan.every(({ chat, rooms }) => rooms.every((r) => lastSeen(chat, r) >= last.get(r)!)),
    WAIT_MS,
    () => fail(`members not caught up with ${JSON.stringify([...last])}`),
  );
  await Promise.all(chats.map((c) => c.end()));
  const codes = await Promise.all(chats.map((c) => c.done));
  log.push(`clients exited ${codes.join(", ")}`);
  expect(await node.term()).toBe(0);

  const t = await node.transcript();
  const result = check({ members: chats.map((c) => ({ user: c.user, events: c.events })), verify: t.verify, entries: t.entries });
  log.push(`stats ${JSON.stringify(result.stats)}; verify exit ${t.verifyCode}`);
  console.log(log.join("\n"));
  if (result.problems.length > 0) throw new Error(fail(`${result.problems.length} problem(s):\n${result.problems.slice(0, 40).join("\n")}`));
  expect(result.stats.acked).toBeGreaterThan(0);
  expect(t.verifyCode).toBe(0);
}, 240_000);
