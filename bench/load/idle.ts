/**
 * Idle-connection generator (bench/load.ts --idle), in its own process.
 *
 *   bun run bench/load/idle.ts --mode secure|bare --port P --n C [--creds FILE] [--batch 50]
 *
 * `secure`: C connections to bench/load/server.ts, each a real handshake,
 * ticket login and join of room "bench", then idle (pings are answered).
 * `bare`: C raw TCP connections to bench/load/bare.ts, idle.
 * Connections are opened --batch at a time; one that fails or is refused is
 * retried, at most --tries times in all. Then one line
 *   {"event":"ready","connected":n,"failed":n,"retries":n,"setup_ms":ms}
 * and the connections are held until SIGTERM, each wait bounded.
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
    Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: () => {},
        close: () => fail("closed"),
        end: () => fail("ended"),
        error: (_s, e) => fail(String(e)),
        connectError: (_s, e) => fail(String(e)),
      },
    }).then(
      (s) => {
        sock = s;
        clearTimeout(timer);
        if (done) {
          s.terminate();
          return;
        }
        done = true;
        resolve({ close: () => s.terminate() });
      },
      (e) => {
        clearTimeout(timer);
        fail(String(e));
      },
    );
  });
}

async function main(): Promise<void> {
  const start = performance.now();
  const creds = mode === "secure" ? (JSON.parse(await Bun.file(strArg(args, "creds")).text()) as BenchCred[]) : [];
  if (mode === "secure" && creds.length < n) throw new Error(`bench/load/idle: ${creds.length} accounts, ${n} wanted`);
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
  for (let i = 0; i < n; i += batchSize) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(n, i + batchSize); j++) batch.push(openOne(j));
    await Promise.all(batch);
  }
  readyNow = true;
  emit({ event: "ready", connected: held.length, failed, retries, setup_ms: Math.round(performance.now() - start), error: failed > 0 ? firstError : null });
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
