/**
 * One server per data directory (src/store/lock.ts): the lock is held for
 * the process's life, a second holder is refused naming the first one's
 * pid, and the writer of the transcript writes nothing without it. Two
 * `serve` processes on one directory are tested in
 * test/server/datalock.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { isSecureChatError } from "../../src/errors.ts";
import { DataLock, lockHolder } from "../../src/store/lock.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { silentLogger } from "../../src/log.ts";
import { hostKeyPair, tempDir } from "../transcript/helpers.ts";

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("test: expected a throw");
}

describe("DataLock", () => {
  test("a second holder is refused while the first holds it, naming its pid; after release it is free again", () => {
    const dir = join(tempDir("lock"), "data");
    const first = DataLock.acquire(dir, 4242);
    expect(first.held).toBe(true);
    expect(lockHolder(dir)).toBe(4242);
    const e = thrown(() => DataLock.acquire(dir, 5151));
    expect(isSecureChatError(e, "data_locked")).toBe(true);
    expect((e as Error).message).toBe(`${dir} is in use by another securechat server (pid 4242)`);
    expect(lockHolder(dir)).toBe(4242);
    first.release();
    expect(first.held).toBe(false);
    expect(existsSync(join(dir, "serve.pid"))).toBe(false);
    const second = DataLock.acquire(dir, 5151);
    expect(lockHolder(dir)).toBe(5151);
    second.release();
  });

  test("a witness's state directory has its own lock: a second witness on it is refused, a server beside it is not", () => {
    const dir = join(tempDir("lock"), "witness");
    const first = DataLock.acquire(dir, 4242, "witness");
    expect(lockHolder(dir, "witness")).toBe(4242);
    const e = thrown(() => DataLock.acquire(dir, 5151, "witness"));
    expect(isSecureChatError(e, "data_locked")).toBe(true);
    expect((e as Error).message).toBe(`${dir} is in use by another securechat witness (pid 4242)`);
    const server = DataLock.acquire(dir, 6161); // serve.lock: another file
    server.release();
    first.release();
    expect(existsSync(join(dir, "witness.pid"))).toBe(false);
    DataLock.acquire(dir, 5151, "witness").release();
  });

  test("a stale pid file (a server that crashed) does not block: the next holder overwrites it", async () => {
    const dir = join(tempDir("lock"), "data");
    const first = DataLock.acquire(dir, 4242);
    // What a crash leaves: the pid file, with the lock itself gone with the process.
    const pid = readFileSync(join(dir, "serve.pid"), "utf8");
    first.release();
    await Bun.write(join(dir, "serve.pid"), pid);
    const next = DataLock.acquire(dir, 6161);
    expect(lockHolder(dir)).toBe(6161);
    next.release();
  });

  test("the transcript writer refuses to open, or to append, without the lock it was given", () => {
    const dir = join(tempDir("lock"), "data");
    const lock = DataLock.acquire(dir);
    const opts = { ...DEFAULT_WRITER, fsync: "off" as const, dir: join(dir, "transcript"), hostKey: hostKeyPair(), version: "test", log: silentLogger, lock };
    const w = TranscriptWriter.open(opts);
    w.append("join", { room: "lobby", user: "alice" });
    lock.release();
    const e = thrown(() => w.append("join", { room: "lobby", user: "bob" }));
    expect(isSecureChatError(e, "transcript_unlocked")).toBe(true);
    w.close("test");
    const text = readdirSync(opts.dir).map((f) => readFileSync(join(opts.dir, f), "utf8")).join("");
    expect(text).toContain('"user":"alice"');
    expect(text).not.toContain('"user":"bob"');
    const e2 = thrown(() => TranscriptWriter.open(opts));
    expect(isSecureChatError(e2, "transcript_unlocked")).toBe(true);
  });
});
