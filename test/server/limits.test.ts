/**
 * The server's abuse limits (src/server/limits.ts): MaxStartups parsing and
 * random early drop, per-source failure penalties in bounded memory, and the
 * bounded gate around argon2id work. Randomness and time are injected, so
 * every case is deterministic.
 */
import { describe, expect, test } from "bun:test";
import { isSecureChatError } from "../../src/errors.ts";
import { Gate, PenaltyBox, type PenaltyPolicy, parseStartups, shouldDropStartup } from "../../src/server/limits.ts";

function expectCode(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  if (!isSecureChatError(thrown, code)) throw new Error(`expected SecureChatError ${code}, got ${String(thrown)}`);
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  let thrown: unknown;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  if (!isSecureChatError(thrown, code)) throw new Error(`expected SecureChatError ${code}, got ${String(thrown)}`);
}

/** A promise plus its resolve/reject, to hold a task open. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets queued promise callbacks run. */
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

describe("parseStartups", () => {
  test.each([
    ["10:30:100", { start: 10, rate: 30, full: 100 }],
    ["0:0:1", { start: 0, rate: 0, full: 1 }],
    ["5:100:5", { start: 5, rate: 100, full: 5 }],
    ["1:50:2", { start: 1, rate: 50, full: 2 }],
  ])("accepts %p", (s, want) => {
    expect(parseStartups(s)).toEqual(want);
  });

  test.each([
    "",
    "10",
    "10:30",
    "10:30:100:5",
    "10:30:",
    ":30:100",
    "a:b:c",
    "10:30:100 ",
    " 10:30:100",
    "-1:30:100",
    "10:-30:100",
    "1.5:30:100",
    "10,30,100",
    "10:101:100", // rate > 100
    "10:1000:100",
    "101:30:100", // start > full
    "11:30:10",
    "0:0:0", // full < 1
  ])("rejects %p with config_invalid", (s) => {
    expectCode(() => parseStartups(s), "config_invalid");
  });

  test("the message names the option and the value", () => {
    try {
      parseStartups("10:101:100");
      throw new Error("no throw");
    } catch (e) {
      expect(isSecureChatError(e, "config_invalid")).toBe(true);
      expect((e as Error).message).toContain("max-startups");
      expect((e as Error).message).toContain("10:101:100");
    }
  });
});

describe("shouldDropStartup", () => {
  const p = parseStartups("10:30:100");

  test("below start: never dropped, whatever the dice say", () => {
    for (const n of [0, 1, 9]) {
      for (const r of [0, 0.001, 0.5, 0.999999]) expect(shouldDropStartup(p, n, r)).toBe(false);
    }
  });

  test("at or above full: always dropped", () => {
    for (const n of [100, 101, 10_000]) {
      for (const r of [0, 0.5, 0.999999]) expect(shouldDropStartup(p, n, r)).toBe(true);
    }
  });

  test("at start: probability rate/100", () => {
    expect(shouldDropStartup(p, 10, 0)).toBe(true);
    expect(shouldDropStartup(p, 10, 0.29)).toBe(true);
    expect(shouldDropStartup(p, 10, 0.31)).toBe(false);
    expect(shouldDropStartup(p, 10, 0.99)).toBe(false);
  });

  test("linear between start and full: at 55, p = 0.3 + 0.7 * 45/90 = 0.65", () => {
    expect(shouldDropStartup(p, 55, 0.64)).toBe(true);
    expect(shouldDropStartup(p, 55, 0.649)).toBe(true);
    expect(shouldDropStartup(p, 55, 0.651)).toBe(false);
    expect(shouldDropStartup(p, 55, 0.66)).toBe(false);
  });

  test("just below full: p close to 1", () => {
    // 0.3 + 0.7 * 89/90 ≈ 0.99222
    expect(shouldDropStartup(p, 99, 0.99)).toBe(true);
    expect(shouldDropStartup(p, 99, 0.995)).toBe(false);
  });

  test("probability grows monotonically with the count", () => {
    const threshold = (n: number) => {
      // the smallest random value (in 1/1000 steps) that keeps the connection
      for (let i = 0; i <= 1000; i++) if (!shouldDropStartup(p, n, i / 1000)) return i;
      return 1001;
    };
    let last = -1;
    for (let n = 10; n <= 100; n++) {
      const t = threshold(n);
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
    expect(threshold(10)).toBe(300);
    expect(threshold(100)).toBe(1001);
  });

  test("rate 0 at start keeps everyone; rate 100 drops everyone", () => {
    expect(shouldDropStartup(parseStartups("10:0:100"), 10, 0)).toBe(false);
    expect(shouldDropStartup(parseStartups("10:100:100"), 10, 0.999999)).toBe(true);
  });

  test("start == full: a hard limit, no division by zero", () => {
    const hard = parseStartups("5:30:5");
    expect(shouldDropStartup(hard, 4, 0)).toBe(false);
    expect(shouldDropStartup(hard, 5, 0.999999)).toBe(true);
  });

  test("defaults to Math.random", () => {
    // Below start and at full, the answer does not depend on the dice.
    expect(shouldDropStartup(p, 0)).toBe(false);
    expect(shouldDropStartup(p, 100)).toBe(true);
  });
});

describe("PenaltyBox", () => {
  const policy: PenaltyPolicy = { freeFailures: 3, baseMs: 1000, maxMs: 8000, forgetMs: 60_000, maxSources: 100 };

  test("an unknown source is not blocked", () => {
    const box = new PenaltyBox(policy);
    expect(box.blockedFor("10.0.0.1", 0)).toBe(0);
    expect(box.size).toBe(0);
  });

  test("free failures, then a doubling penalty capped at maxMs", () => {
    const box = new PenaltyBox(policy);
    const penalties: number[] = [];
    let now = 1_000_000;
    for (let i = 0; i < 9; i++) {
      box.failure("10.0.0.1", now);
      penalties.push(box.blockedFor("10.0.0.1", now));
      now += 10; // well inside forgetMs: one run of failures
    }
    expect(penalties).toEqual([0, 0, 0, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  test("blockedFor counts down with the clock and stops at 0", () => {
    const box = new PenaltyBox({ ...policy, freeFailures: 0 });
    box.failure("s", 5000);
    expect(box.blockedFor("s", 5000)).toBe(1000);
    expect(box.blockedFor("s", 5001)).toBe(999);
    expect(box.blockedFor("s", 5500)).toBe(500);
    expect(box.blockedFor("s", 5999)).toBe(1);
    expect(box.blockedFor("s", 6000)).toBe(0);
    expect(box.blockedFor("s", 9000)).toBe(0);
    // The record is still remembered: the next failure doubles.
    box.failure("s", 9000);
    expect(box.blockedFor("s", 9000)).toBe(2000);
  });

  test("sources are independent", () => {
    const box = new PenaltyBox({ ...policy, freeFailures: 0 });
    box.failure("a", 0);
    box.failure("a", 0);
    box.failure("b", 0);
    expect(box.blockedFor("a", 0)).toBe(2000);
    expect(box.blockedFor("b", 0)).toBe(1000);
    expect(box.blockedFor("c", 0)).toBe(0);
  });

  test("a source with no failure for longer than forgetMs starts over", () => {
    const box = new PenaltyBox(policy);
    let now = 0;
    for (let i = 0; i < 5; i++) box.failure("s", now++);
    expect(box.blockedFor("s", now)).toBeGreaterThan(0);

    // Still inside forgetMs: the next failure continues the run.
    const inside = new PenaltyBox(policy);
    for (let i = 0; i < 4; i++) inside.failure("s", 0);
    inside.failure("s", policy.forgetMs - 1);
    expect(inside.blockedFor("s", policy.forgetMs - 1)).toBe(2000);

    // Past forgetMs: forgotten; the next failure is the first free one again.
    const later = now + policy.forgetMs + 1;
    box.failure("s", later);
    expect(box.blockedFor("s", later)).toBe(0);
    box.failure("s", later);
    box.failure("s", later);
    expect(box.blockedFor("s", later)).toBe(0);
    box.failure("s", later);
    expect(box.blockedFor("s", later)).toBe(1000);
  });

  test("blockedFor drops a forgotten record", () => {
    const box = new PenaltyBox(policy);
    box.failure("s", 0);
    expect(box.size).toBe(1);
    expect(box.blockedFor("s", policy.forgetMs + 1)).toBe(0);
    expect(box.size).toBe(0);
  });

  test("the penalty never overflows for a long run of failures", () => {
    const box = new PenaltyBox({ ...policy, freeFailures: 0, maxMs: 60_000 });
    for (let i = 0; i < 5000; i++) box.failure("s", i);
    expect(box.blockedFor("s", 4999)).toBe(60_000);
  });

  test("bounded memory: 10,000 sources, at most maxSources kept, the most recently failed ones", () => {
    const box = new PenaltyBox({ ...policy, freeFailures: 0, maxSources: 100 });
    let maxSize = 0;
    for (let i = 0; i < 10_000; i++) {
      box.failure(`10.0.${i >> 8}.${i & 255}`, i);
      maxSize = Math.max(maxSize, box.size);
    }
    expect(maxSize).toBeLessThanOrEqual(100);
    expect(box.size).toBe(100);
    const now = 10_000;
    // The last 100 are remembered (still blocked)…
    for (let i = 9_900; i < 10_000; i++) expect(box.blockedFor(`10.0.${i >> 8}.${i & 255}`, now)).toBeGreaterThan(0);
    // …the earlier ones were forgotten.
    for (const i of [0, 1, 5000, 9_899]) expect(box.blockedFor(`10.0.${i >> 8}.${i & 255}`, now)).toBe(0);
  });

  test("bounded memory evicts the least recently failed, not the first seen", () => {
    const box = new PenaltyBox({ ...policy, freeFailures: 0, maxSources: 100, maxMs: 1e9 });
    let now = 0;
    box.failure("early-but-active", now++);
    for (let i = 0; i < 5000; i++) box.failure(`a${i}`, now++);
    box.failure("early-but-active", now++); // a fresh run: the first was evicted
    for (let i = 0; i < 99; i++) box.failure(`b${i}`, now++);
    expect(box.size).toBe(100);
    expect(box.blockedFor("early-but-active", now)).toBeGreaterThan(0);
    expect(box.blockedFor("a4999", now)).toBe(0);

    // A source that fails again moves to the back of the line.
    const box2 = new PenaltyBox({ ...policy, freeFailures: 0, maxSources: 3, maxMs: 1e9 });
    box2.failure("x", 0);
    box2.failure("y", 1);
    box2.failure("z", 2);
    box2.failure("x", 3); // x is now the most recent
    box2.failure("w", 4); // evicts y, the least recently failed
    expect(box2.size).toBe(3);
    expect(box2.blockedFor("x", 4)).toBeGreaterThan(0);
    expect(box2.blockedFor("y", 4)).toBe(0);
    expect(box2.blockedFor("z", 4)).toBeGreaterThan(0);
    expect(box2.blockedFor("w", 4)).toBeGreaterThan(0);
  });
});

describe("Gate", () => {
  test("runs at most `concurrency` tasks at once and finishes them all", async () => {
    const gate = new Gate(2, 10);
    let active = 0;
    let peak = 0;
    const holds = Array.from({ length: 6 }, () => deferred<void>());
    const results = holds.map((h, i) =>
      gate.run(async () => {
        active++;
        peak = Math.max(peak, active);
        await h.promise;
        active--;
        return i;
      }),
    );
    await tick();
    expect(active).toBe(2);
    for (const h of holds) {
      h.resolve();
      await tick();
      expect(active).toBeLessThanOrEqual(2);
    }
    expect(await Promise.all(results)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(peak).toBe(2);
    expect(active).toBe(0);
  });

  test("a full queue refuses with server_busy, and frees up again", async () => {
    const gate = new Gate(1, 2);
    const hold = deferred<void>();
    const first = gate.run(() => hold.promise);
    const queued = [gate.run(async () => "q1"), gate.run(async () => "q2")];
    await rejectsWithCode(gate.run(async () => "overflow"), "server_busy");
    await rejectsWithCode(gate.run(async () => "overflow"), "server_busy");
    hold.resolve();
    await first;
    expect(await Promise.all(queued)).toEqual(["q1", "q2"]);
    // Everything drained: the gate accepts work again.
    expect(await gate.run(async () => "again")).toBe("again");
  });

  test("queue 0: only the running slots, no waiting", async () => {
    const gate = new Gate(1, 0);
    const hold = deferred<void>();
    const first = gate.run(() => hold.promise);
    await rejectsWithCode(gate.run(async () => 1), "server_busy");
    hold.resolve();
    await first;
    expect(await gate.run(async () => 2)).toBe(2);
  });

  test("a rejected task releases its slot (and the error reaches the caller)", async () => {
    const gate = new Gate(1, 5);
    const hold = deferred<void>();
    const failing = gate.run(async () => {
      await hold.promise;
      throw new Error("argon2 exploded");
    });
    const next = gate.run(async () => "next ran");
    hold.resolve();
    await expect(failing).rejects.toThrow("argon2 exploded");
    expect(await next).toBe("next ran");

    // A failure with nobody waiting also gives the slot back.
    await expect(gate.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(
      gate.run(() => {
        throw new Error("sync boom");
      }),
    ).rejects.toThrow("sync boom");
    let concurrent = 0;
    let peak = 0;
    await Promise.all(
      [1, 2, 3].map(() =>
        gate.run(async () => {
          concurrent++;
          peak = Math.max(peak, concurrent);
          await tick();
          concurrent--;
        }),
      ),
    );
    expect(peak).toBe(1);
  });

  test("a rejected task leaves no slot leaked under load", async () => {
    const gate = new Gate(2, 100);
    const runs = Array.from({ length: 40 }, (_, i) =>
      gate.run(async () => {
        await tick();
        if (i % 3 === 0) throw new Error(`fail ${i}`);
        return i;
      }),
    );
    const settled = await Promise.allSettled(runs);
    expect(settled.filter((s) => s.status === "rejected")).toHaveLength(14);
    // Both slots are free again: two held tasks run at once, a third is queued.
    const a = deferred<void>();
    const b = deferred<void>();
    let started = 0;
    const pa = gate.run(async () => {
      started++;
      await a.promise;
    });
    const pb = gate.run(async () => {
      started++;
      await b.promise;
    });
    const pc = gate.run(async () => {
      started++;
    });
    await tick();
    expect(started).toBe(2);
    a.resolve();
    b.resolve();
    await Promise.all([pa, pb, pc]);
    expect(started).toBe(3);
  });

  test("waiting tasks start in FIFO order", async () => {
    const gate = new Gate(1, 10);
    const order: string[] = [];
    const hold = deferred<void>();
    const first = gate.run(async () => {
      order.push("first");
      await hold.promise;
    });
    const rest = ["a", "b", "c", "d", "e"].map((name) =>
      gate.run(async () => {
        order.push(name);
        await tick();
      }),
    );
    await tick();
    expect(order).toEqual(["first"]);
    hold.resolve();
    await Promise.all([first, ...rest]);
    expect(order).toEqual(["first", "a", "b", "c", "d", "e"]);
  });
});
