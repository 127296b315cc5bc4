/**
 * Idle-connection generator (bench/load.ts --idle), in its own process.
 *
 *   bun run bench/load/idle.ts --mode secure|bare --port P --n C [--creds FILE] [--batch 50]
 *       [--tls [--ca FILE]]
 *
 * `secure`: C connections to bench/load/server.ts, each a real handshake,
 * ticket login and join of room "bench", then idle (pings are answered).
 * `bare`: C raw TCP connections to bench/load/bare.ts, idle; with --tls,
 * C TLS connections to bench/load/tls.ts, each counted once its handshake
 * is done (--ca pins the certificate; without it, it is not checked).
 * Connections are opened --batch at a time; one that fails or is refused is
 * retried, at most --tries times in all. Then one line
 *   {"event":"ready","connected":n,"failed":n,"retries":n,"setup_ms":ms}
 * and the connections are held until SIGTERM, each wait bounded.
 *
 * With --warm K, K connections of the same kind are opened first, then
 *   {"event":"warm","connected":k,"failed":n}
 * and the generator waits for a line on stdin before opening the C measured
 * ones: the parent reads the server's RSS in between, so one-time costs
 * (code first run, JIT, heap growth) stay out of the per-connection figure.
 */
import type { Socket } from "bun";
import { type BenchCred, emit, intArg, parseArgs, strArg } from "./common.ts";
import { BenchConn } from "./logins.ts";

const args = parseArgs(Bun.argv.slice(2));
const mode = strArg(args, "mode");
const port = intArg(args, "port");
const n = intArg(args, "n");
const batchSize = intArg(args, "batch", 50);
const tries = intArg(args, "tries", 5);
const timeoutMs = intArg(args, "timeout", 30_000);
const warm = intArg(args, "warm", 0);
const useTls = args.has("tls");
const caFile = args.get("ca");
const ca = caFile !== undefined ? await Bun.file(caFile).text() : undefined;

const held: { close(): void }[] = [];
let lostAfterReady = 0;
let readyNow = false;

/** Opens one connection; resolves to a handle, or rejects. Bounded by timeoutMs. */
async function openSecure(cred: BenchCred): Promise<{ close(): void }> {
  const c = new BenchConn(port, cred, true).start();
  const timer = setTimeout(() => c.close(), timeoutMs);
  try {
    await c.ready;
  } catch (e) {
    c.close();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  void c.ready; // settled; later closes are counted below
  const check = setInterval(() => {
    if (c.closed && readyNow) {
      lostAfterReady++;
      clearInterval(check);
    }
  }, 1000);
  return { close: () => (clearInterval(check), c.close()) };
}

function openBare(): Promise<{ close(): void }> {
  return new Promise((resolve, reject) => {
    let done = false;
    let sock: Socket<undefined> | null = null;
    const fail = (why: string): void => {
      if (!done) {
        done = true;
        reject(new Error(why));
      } else if (readyNow) lostAfterReady++;
    };
    const timer = setTimeout(() => {
      sock?.terminate();
      fail("timeout");
    }, timeoutMs);
    let opened: Socket<undefined> | null = null;
    let shaken = !useTls;
    const succeed = (): void => {
      const s = opened!;
      if (done) {
        s.terminate();
        return;
      }
      clearTimeout(timer);
      done = true;
      resolve({ close: () => s.terminate() });
    };
    Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      ...(useTls ? { tls: ca !== undefined ? { ca } : { rejectUnauthorized: false } } : {}),
      socket: {
        data: () => {},
        handshake: (_s, ok, err) => {
          if (!ok && ca !== undefined) {
            sock?.terminate();
            fail(`TLS handshake: ${String(err?.message ?? err)}`);
            return;
          }
          shaken = true;
          if (opened) succeed();
        },
        close: () => fail("closed"),
        end: () => fail("ended"),
        error: (_s, e) => fail(String(e)),
        connectError: (_s, e) => fail(String(e)),
      },
    }).then(
      (s) => {
        sock = s;
        opened = s;
        if (done) {
          s.terminate();
          return;
        }
        // Over TLS the connection counts once its handshake is done.
        if (shaken) succeed();
      },
      (e) => {
        clearTimeout(timer);
        fail(String(e));
      },
    );
  });
}

/** Waits for a line on stdin (the parent has read the RSS); bounded, and the end of stdin means stop. */
async function waitForGo(): Promise<void> {
  const reader = Bun.stdin.stream().getReader();
  const timer = setTimeout(() => {
    emit({ event: "error", error: "bench/load/idle: no go from the parent within 300 s" });
    process.exit(1);
  }, 300_000);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) process.exit(0);
      if (value.includes(0x0a)) return;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

async function main(): Promise<void> {
  const creds = mode === "secure" ? (JSON.parse(await Bun.file(strArg(args, "creds")).text()) as BenchCred[]) : [];
  if (mode === "secure" && creds.length < warm + n) throw new Error(`bench/load/idle: ${creds.length} accounts, ${warm + n} wanted`);
  if (mode !== "secure" && mode !== "bare") throw new Error(`bench/load/idle: unknown --mode ${mode}`);
  let failed = 0;
  let retries = 0;
  let firstError: string | null = null;
  const openOne = async (i: number): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        held.push(await (mode === "secure" ? openSecure(creds[i]!) : openBare()));
        return;
      } catch (e) {
        firstError ??= String(e instanceof Error ? e.message : e);
        if (attempt >= tries) {
          failed++;
          return;
        }
        retries++;
        await Bun.sleep(50 * attempt);
      }
    }
  };
  const openRange = async (from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i += batchSize) {
      const batch: Promise<void>[] = [];
      for (let j = i; j < Math.min(to, i + batchSize); j++) batch.push(openOne(j));
      await Promise.all(batch);
    }
  };
  let start = performance.now();
  if (warm > 0) {
    await openRange(0, warm);
    emit({ event: "warm", connected: held.length, failed });
    await waitForGo();
    start = performance.now();
  }
  const before = held.length;
  const failedBefore = failed;
  await openRange(warm, warm + n);
  readyNow = true;
  emit({ event: "ready", connected: held.length - before, failed: failed - failedBefore, retries, setup_ms: Math.round(performance.now() - start), error: failed > 0 ? firstError : null });
}

const stop = (): void => {
  for (const h of held) h.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

try {
  await main();
  // Held until the parent stops this process; connections lost while idle are reported.
  let reported = 0;
  setInterval(() => {
    if (lostAfterReady !== reported) emit({ event: "lost", lost: (reported = lostAfterReady) });
  }, 250);
} catch (e) {
  emit({ event: "error", error: String(e instanceof Error ? e.message : e) });
  process.exit(1);
}
