/**
 * The log's side of witnessing (src/server/witnesses.ts) against real
 * witnesses (src/transcript/witness.ts) on loopback ports: the cosigned
 * checkpoint kept in DATA/cosigned.checkpoint, a witness whose state is
 * ahead taught by its 409, a rolled-back or forked log reported at error
 * level, a witness that is down retried and the missing quorum reported.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { LogFields, Logger } from "../../src/log.ts";
import { WitnessSubmitter, cosignedPath } from "../../src/server/witnesses.ts";
import { noteCosignatures, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { parseVerifierKey } from "../../src/transcript/note.ts";
import { serveWitness } from "../../src/server/witnesshttp.ts";
import { Witness } from "../../src/transcript/witness.ts";
import { tempDir } from "../transcript/helpers.ts";
import { TestLog } from "../transcript/testlog.ts";

let stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

function events(): { log: Logger; seen: { level: string; event: string; fields: LogFields }[]; until: (event: string) => Promise<LogFields> } {
  const seen: { level: string; event: string; fields: LogFields }[] = [];
  const waiters: { event: string; resolve: (f: LogFields) => void }[] = [];
  const push = (level: string) => (event: string, fields: LogFields = {}) => {
    seen.push({ level, event, fields });
    for (const w of waiters.filter((w) => w.event === event)) w.resolve(fields);
  };
  return {
    log: { info: push("info"), warn: push("warn"), error: push("error") },
    seen,
    until: (event) => {
      const had = seen.find((e) => e.event === event);
      return had ? Promise.resolve(had.fields) : new Promise((resolve) => waiters.push({ event, resolve }));
    },
  };
}

function witness(log: TestLog, dir = tempDir("witness")): { w: Witness; url: string; vkey: string; dir: string } {
  const w = new Witness({ dir, logs: [parseVerifierKey(log.vkey)] });
  const s = serveWitness(w, { hostname: "127.0.0.1", port: 0 });
  stops.push(() => s.stop(true));
  return { w, url: `http://127.0.0.1:${s.port}`, vkey: w.vkey, dir };
}

/** A journal over a TestLog: its newest checkpoint is the whole log; `grow` makes a newer one durable. */
function journal(log: TestLog) {
  const listeners: (() => void)[] = [];
  return {
    logState: () => ({ note: log.note(), size: log.leaves.length, consistency: null, inclusion: [] }),
    consistency: (m: number, n: number) => log.proof(m, n),
    onSignedTree: (fn: () => void) => void listeners.push(fn),
    grow(n: number, tag = "") {
      log.append(n, tag);
      for (const fn of listeners) fn();
    },
  };
}

function submitter(dataDir: string, log: TestLog, j: ReturnType<typeof journal>, ws: { url: string; vkey: string }[], logger: Logger, quorum = ws.length, graceMs = 60_000, now: () => number = Date.now) {
  const s = new WitnessSubmitter({
    dataDir,
    witnesses: ws.map((w) => ({ url: w.url, vkey: w.vkey, verifier: parseCosignerKey(w.vkey) })),
    quorum,
    graceMs,
    log: logger,
    journal: j,
    backoffMinMs: 20,
    backoffMaxMs: 100,
    now,
  });
  stops.push(() => s.close());
  return s;
}

async function cosignedBy(dataDir: string, size: number, vkeys: string[]): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const path = cosignedPath(dataDir);
    if (existsSync(path)) {
      const note = readFileSync(path, "utf8");
      if (note.split("\n")[1] === String(size) && noteCosignatures(note, vkeys.map(parseCosignerKey)).length === vkeys.length) return;
    }
    await Bun.sleep(5);
  }
  throw new Error(`no checkpoint of size ${size} cosigned by all of ${vkeys.length}`);
}

describe("submitting", () => {
  test("each new checkpoint goes to every witness; DATA/cosigned.checkpoint holds the newest with all their cosignatures", async () => {
    const log = new TestLog();
    log.append(3);
    const j = journal(log);
    const a = witness(log);
    const b = witness(log);
    const data = tempDir("data");
    const e = events();
    submitter(data, log, j, [a, b], e.log);
    await cosignedBy(data, 3, [a.vkey, b.vkey]);
    j.grow(5);
    await cosignedBy(data, 8, [a.vkey, b.vkey]);
    expect(e.seen.filter((x) => x.level !== "info")).toEqual([]);
  });

  test("a witness ahead of what the server kept (its file lost) answers 409 with its size; the server retries from it and gets the cosignature", async () => {
    const log = new TestLog();
    log.append(4);
    const j = journal(log);
    const a = witness(log);
    const data = tempDir("data");
    const first = submitter(data, log, j, [a], events().log);
    await cosignedBy(data, 4, [a.vkey]);
    first.close();
    rmSync(cosignedPath(data));
    j.grow(6);
    const e = events();
    submitter(data, log, j, [a], e.log);
    await cosignedBy(data, 10, [a.vkey]);
    expect(e.seen.filter((x) => x.level !== "info")).toEqual([]);
  });
});

/** A log of `n` entries that a witness cosigned through a submitter, since closed. */
async function cosignedOnce(n: number) {
  const log = new TestLog();
  log.append(n);
  const a = witness(log);
  const data = tempDir("data");
  const first = submitter(data, log, journal(log), [a], events().log);
  await cosignedBy(data, n, [a.vkey]);
  first.close();
  return { log, a, data };
}

describe("what is reported loudly", () => {
  test("a log rolled back below what a witness cosigned: witness_conflict at error level, naming both sizes", async () => {
    const { log, a } = await cosignedOnce(9);
    // The data directory restored from an older copy: 5 entries.
    log.leaves = log.leaves.slice(0, 5);
    const e = events();
    submitter(tempDir("restored"), log, journal(log), [a], e.log);
    const f = await e.until("witness_conflict");
    expect(e.seen.find((x) => x.event === "witness_conflict")!.level).toBe("error");
    expect(f).toMatchObject({ size: 5, witness_size: 9 });
    expect(String(f.meaning)).toContain("rolled back");
  });

  test("a forked log (the same first entries rewritten, then grown): 422, witness_conflict at error level", async () => {
    const { log, a, data } = await cosignedOnce(6);
    const fork = new TestLog(log.origin);
    Object.assign(fork, { key: log.key });
    fork.append(10, " forked");
    const e = events();
    submitter(data, fork, journal(fork), [a], e.log);
    const f = await e.until("witness_conflict");
    expect(f).toMatchObject({ status: 422, size: 10, old: 6 });
    expect(String(f.meaning)).toContain("forked");
    expect(e.seen.find((x) => x.event === "witness_conflict")!.level).toBe("error");
  });

  test("a witness that is down: witness_unreachable (retried), and past the grace witness_quorum_missing at error level; the other witness still cosigns", async () => {
    const log = new TestLog();
    log.append(2);
    const up = witness(log);
    const down = witness(log);
    for (const s of stops.splice(0)) s(); // both stopped...
    const up2 = witness(log, up.dir); // ...one back on a new port, same key and state
    const data = tempDir("data");
    const e = events();
    submitter(data, log, journal(log), [up2, down], e.log, 2, 50);
    await e.until("witness_unreachable");
    const missing = await e.until("witness_quorum_missing");
    expect(e.seen.find((x) => x.event === "witness_quorum_missing")!.level).toBe("error");
    expect(missing).toMatchObject({ size: 2, quorum: 2, cosigned_size: 0 });
    await cosignedBy(data, 2, [up2.vkey]);
    // Retried with backoff: more than one attempt at the witness that is down.
    for (let i = 0; i < 2000 && e.seen.filter((x) => x.event === "witness_unreachable").length < 2; i++) await Bun.sleep(5);
    expect(e.seen.filter((x) => x.event === "witness_unreachable").length).toBeGreaterThanOrEqual(2);
  });

  test("with a quorum of 1 of 2, one witness down is no missing quorum", async () => {
    const log = new TestLog();
    log.append(2);
    const up = witness(log);
    const data = tempDir("data");
    const e = events();
    // The submitter's clock stands still until the quorum is reached, however slow the machine; then it jumps past the grace.
    let clock = 1_000_000;
    submitter(data, log, journal(log), [up, { url: "http://127.0.0.1:1", vkey: witness(log).vkey }], e.log, 1, 50, () => clock);
    await cosignedBy(data, 2, [up.vkey]);
    await e.until("witness_unreachable");
    await Bun.sleep(200); // several checks (every 50 ms) at the old time: a lag, were there one, would start here
    clock += 60_000;
    await Bun.sleep(200); // and several past the grace
    expect(e.seen.map((x) => x.event)).not.toContain("witness_quorum_missing");
  });
});

describe("what is kept", () => {
  test("retries at a witness that is down keep one cosignature per witness in DATA/cosigned.checkpoint, not one per round, so the witness that comes back is among the 16 a log_state carries", async () => {
    const log = new TestLog();
    log.append(3);
    // Witnesses whose clocks move a second a call: each resubmission of the same checkpoint gets a new cosignature line.
    const stepping = (dir: string) => {
      let t = 1_700_000_000_000;
      const w = new Witness({ dir, logs: [parseVerifierKey(log.vkey)], now: () => (t += 1000) });
      return w;
    };
    const serve = (w: Witness, port = 0) => {
      const s = serveWitness(w, { hostname: "127.0.0.1", port });
      stops.push(() => s.stop(true));
      return s;
    };
    const ups = [stepping(tempDir("witness")), stepping(tempDir("witness"))].map((w) => ({ url: `http://127.0.0.1:${serve(w).port}`, vkey: w.vkey }));
    const laterDir = tempDir("witness");
    const later = stepping(laterDir);
    const probe = serve(later);
    const port = probe.port;
    probe.stop(true);
    const data = tempDir("data");
    const e = events();
    submitter(data, log, journal(log), [...ups, { url: `http://127.0.0.1:${port}`, vkey: later.vkey }], e.log, 3);
    // Many rounds while it is down (each retry resubmits to the two that are up).
    for (let i = 0; i < 4000 && e.seen.filter((x) => x.event === "witness_unreachable").length < 12; i++) await Bun.sleep(5);
    expect(e.seen.filter((x) => x.event === "witness_unreachable").length).toBeGreaterThanOrEqual(12);
    serve(stepping(laterDir), port);
    await cosignedBy(data, 3, [...ups.map((u) => u.vkey), later.vkey]);
    const lines = readFileSync(cosignedPath(data), "utf8").split("\n\n")[1]!.split("\n").filter((l) => l !== "");
    // The log's signature and one cosignature from each of the three witnesses.
    expect(lines.length).toBe(4);
    // What a log_state's `cosigned` carries: the first LOG_COSIGNATURES_MAX cosignatures after the log's own.
    const carried = lines.slice(1, 1 + 16).map((l) => `${l}\n`);
    expect(noteCosignatures(`${readFileSync(cosignedPath(data), "utf8").split("\n\n")[0]}\n\n${lines[0]}\n${carried.join("")}`, [parseCosignerKey(later.vkey)]).length).toBe(1);
  });
});
