/**
 * Are failed logins uniform in time? docs/DESIGN.md §6: an unknown user, a
 * wrong password and a wrong key give the same error, in the same time (a
 * dummy verify for unknown users). The tests check the error; this measures the time.
 *
 *   bun run bench/login-timing.ts [--n 15] [--json]
 *
 * An in-process server on 127.0.0.1 (port 0, temporary data directory) and
 * one registered user. Each attempt is a fresh connection whose handshake is
 * not timed: the clock runs from sending the login record to receiving the
 * answer, as an attacker probing names would see it. The kinds take turns,
 * one attempt each per round, so load from elsewhere on the machine hits
 * them alike. Prints median and p90 per kind and their ratios to the
 * wrong-password case; never fails on the numbers.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadOrCreateHostKey } from "../src/server/hostkey.ts";
import os from "node:os";
import { join } from "node:path";
import { parseServerAddress } from "../src/client/connection.ts";
import { FrameStream } from "../src/net/framestream.ts";
import { type Ed25519KeyPair, ed25519Generate } from "../src/crypto/index.ts";
import { SecureChannel } from "../src/protocol/channel.ts";
import { encodeFrame } from "../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../src/protocol/handshake.ts";
import { MAX_FRAME_PRELOGIN } from "../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessageBytes } from "../src/protocol/messages.ts";
import { ChatServer } from "../src/server/server.ts";
import { ratio, table } from "./lib/table.ts";

const argv = Bun.argv.slice(2);
const json = argv.includes("--json");
const nAt = argv.indexOf("--n");
const N = nAt >= 0 ? Number(argv[nAt + 1]) : 15;
if (!Number.isInteger(N) || N < 1 || N > 1000 || argv.some((a, i) => a !== "--json" && a !== "--n" && argv[i - 1] !== "--n")) {
  console.error("usage: bun run bench/login-timing.ts [--n 1..1000] [--json]");
  process.exit(2);
}

const USER = "timing";
const PASSWORD = "a passphrase only the benchmark knows";

/** One login attempt on a fresh connection; returns the answer and the milliseconds it took. */
async function attempt(port: number, login: (keys: Parameters<typeof signClientAuth>[1]) => Message): Promise<{ answer: string; ms: number }> {
  const stream = await FrameStream.connect(parseServerAddress(`127.0.0.1:${port}`), MAX_FRAME_PRELOGIN, 10_000);
  try {
    const hs = new ClientHandshake();
    stream.send(encodeFrame(encodeMessageBytes(hs.hello()), MAX_FRAME_PRELOGIN));
    const keys = hs.receive(decodeMessage(await stream.next(10_000)));
    const channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
    const record = channel.seal([login(keys)]);
    const t0 = Bun.nanoseconds();
    stream.send(record);
    const body = await stream.next(10_000);
    const ms = (Bun.nanoseconds() - t0) / 1e6;
    const [m] = channel.open(body);
    channel.close();
    return { answer: m?.type === "error" ? m.code : String(m?.type), ms };
  } finally {
    stream.close();
  }
}

function quantile(sorted: number[], q: number): number {
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (i - lo);
}

const dataDir = mkdtempSync(join(os.tmpdir(), "securechat-bench-login-"));
const server = await ChatServer.start({
  dataDir,
  host: "127.0.0.1",
  port: 0,
  // Nothing but the login itself: no penalties, no per-connection cap.
  penalties: { freeFailures: 1_000_000, baseMs: 1, maxMs: 1, forgetMs: 60_000, maxSources: 16 },
  logins: { rate: 1e9, burst: 1e9 },
  maxAuthTries: 1000,
}, loadOrCreateHostKey(dataDir));
try {
  const identity: Ed25519KeyPair = ed25519Generate();
  const reg = await attempt(server.port, (keys) => ({ type: "register", user: USER, identity_key: identity.publicKey, sig: signClientAuth(identity.secretKey, keys), password: PASSWORD }));
  if (reg.answer !== "welcome") throw new Error(`register failed: ${reg.answer}`);

  const kinds: { name: string; expect: string; login: (keys: Parameters<typeof signClientAuth>[1]) => Message }[] = [
    { name: "wrong password", expect: "auth_failed", login: (k) => ({ type: "login", user: USER, sig: signClientAuth(identity.secretKey, k), password: `${PASSWORD}!` }) },
    { name: "unknown user", expect: "auth_failed", login: (k) => ({ type: "login", user: "nobody", sig: signClientAuth(identity.secretKey, k), password: PASSWORD }) },
    { name: "wrong identity key", expect: "auth_failed", login: (k) => ({ type: "login", user: USER, sig: signClientAuth(ed25519Generate().secretKey, k), password: PASSWORD }) },
    { name: "correct (reference)", expect: "welcome", login: (k) => ({ type: "login", user: USER, sig: signClientAuth(identity.secretKey, k), password: PASSWORD }) },
  ];
  // One untimed round warms every path.
  for (const k of kinds) await attempt(server.port, k.login);
  const samples = kinds.map(() => [] as number[]);
  for (let round = 0; round < N; round++) {
    for (const [i, k] of kinds.entries()) {
      const r = await attempt(server.port, k.login);
      if (r.answer !== k.expect) throw new Error(`${k.name}: expected ${k.expect}, got ${r.answer}`);
      samples[i]!.push(r.ms);
    }
  }
  const stats = kinds.map((k, i) => {
    const s = samples[i]!.sort((a, b) => a - b);
    return { kind: k.name, median: quantile(s, 0.5), p90: quantile(s, 0.9), min: s[0]!, max: s[s.length - 1]! };
  });
  const base = stats[0]!;
  const rows = stats.map((s) => ({ ...s, medianRatio: s.median / base.median, p90Ratio: s.p90 / base.p90 }));
  if (json) {
    console.log(JSON.stringify({ n: N, cores: os.cpus().length, unit: "ms", rows }));
  } else {
    const f = (ms: number) => `${ms.toFixed(1)} ms`;
    console.log(
      table(
        `login answer time, ${N} attempts per kind (${os.cpus().length} cores; ratios to "wrong password")`,
        ["kind", "median", "p90", "min", "max", "median ratio", "p90 ratio"],
        rows.map((r) => [r.kind, f(r.median), f(r.p90), f(r.min), f(r.max), ratio(r.medianRatio), ratio(r.p90Ratio)]),
      ),
    );
  }
} finally {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
