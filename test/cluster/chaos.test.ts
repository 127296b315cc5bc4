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
import { rng } from "../rng.ts";
import { check } from "./checker.ts";
import { type Chat, Harness, joinAll, Sender, settle } from "./harness.ts";

/** Bounded waits: a client's reconnect backoff after 3 restarts, on a loaded machine. */
const WAIT_MS = 60_000;
/** One line per user every PACE_MS: under the server's flood rate (10/s) even when an outage's queue is flushed at once (burst 30). */
const PACE_MS = 150;

let harness: Harness | null = null;
afterEach(async () => {
  await harness?.close();
  harness = null;
});

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
  await joinAll(plan, WAIT_MS);
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
  const fail = (why: string): string => h.failure(why, log, chats);
  const codes = await settle(plan, WAIT_MS, fail);
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
