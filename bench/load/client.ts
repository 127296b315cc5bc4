/**
 * The load generator, in its own process. `--mode secure` speaks the real
 * securechat protocol: handshake, ticket login, join, then `say` requests
 * and counting of `message` events. `--mode bare` speaks raw frames to the
 * bare relay (bench/load/bare.ts), or with `--tls` to the Bun TLS relay
 * (bench/load/tls.ts): 100-byte bodies out, frames counted in.
 *
 * Command line (any other generator, e.g. an IRC one, takes the same flags
 * that apply to it and prints the same events):
 *
 *   --mode secure|bare   protocol (secure needs --creds FILE from server.ts)
 *   --port P[,P2,...]    server on 127.0.0.1:P; with several ports (the
 *                        nodes of a cluster), member i connects to the
 *                        (i mod k)-th, so members and senders are spread
 *                        evenly over them
 *   --n N                members, all in one room
 *   --senders S          members 0..S-1 send; every member counts deliveries
 *   --tls                (bare) TLS; --ca FILE pins the server certificate,
 *                        without it the certificate is not checked
 *   --warmup MS          load before the first mark (default 1000)
 *   --setup-timeout MS   bound on connecting and logging everyone in
 *
 *   Throughput (closed loop; the default):
 *   --window W           each sender keeps W requests unacknowledged (32)
 *   --sample MS, --samples K   marks every MS after the warm-up, K samples
 *
 *   Latency (open loop; chosen by --rate):
 *   --rate D             offered load in deliveries/s: the senders together
 *                        send D/(N-1) messages/s, each sender on its own
 *                        evenly spaced schedule (offset from the others),
 *                        driven by a 1 ms timer that sends every message due
 *                        so far, whatever the acks
 *   --seconds S          the measured window, after the warm-up (default 5)
 *   --drain MS           the schedule keeps running this long after the
 *                        window so late messages of the window arrive (1000)
 *   --max-outstanding M  per sender; a message due while M are unacked is
 *                        not sent and the result says capped: true (default:
 *                        2 s of that sender's schedule, at least 256)
 *
 * Events on stdout, one JSON object per line:
 *   {"event":"ready","setup_ms":ms}                          everyone joined
 *   {"event":"mark","t":ms,"deliveries":n,"acks":n,"nacks":n,"closed":n}
 *       throughput: after the warm-up, then every --sample ms (K+1 marks);
 *       latency: at the start and at the end of the window (2 marks).
 *       The parent reads the server's CPU time at each mark.
 *   {"event":"latency","p50":ms,"p99":ms,"p999":ms,"count":n,"rate":deliveries_per_s,"capped":bool}
 *       latency mode only, after the drain. Latency = arrival − *scheduled*
 *       send time (coordinated omission: a sender that falls behind its
 *       schedule is charged for it). `count` = samples: every delivery of a
 *       message scheduled inside the window (all of them are parsed, not a
 *       sample); a delivery still missing at the end of the drain counts
 *       with its lower bound (end of drain − scheduled) and in `missing`.
 *       `rate` = deliveries that arrived during the window / its length.
 *       Extra fields: missing, skipped (sends not made because capped),
 *       sent (messages sent in the window). Secure mode adds the ack
 *       latency of the window's says (ack = arrival of the say's ack −
 *       its scheduled send time, same rules): ack_p50, ack_p99, ack_p999,
 *       ack_count, ack_missing.
 *   {"event":"done","error":null|string}
 *   {"event":"error","error":string}                         failed; exits 1
 *
 * The send time travels in the message: securechat's `text` ends with
 * "@" and the scheduled time in integer µs of this process's
 * performance.now() (senders and receivers are all in this process); the
 * bare relay forwards bodies unchanged, so there it is a float64 (ms) at
 * body offset 0.
 *
 * Counting is cheap on purpose: records are decrypted and authenticated, but
 * a part starting with {"type":"message" is counted without JSON.parse (the
 * server's encoder writes `type` first); everything else is fully decoded.
 */
import type { Socket } from "bun";
import { fromHex, utf8 } from "../../src/bytes.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { decodeMessage, encodeMessageBytes, splitRecordPayload } from "../../src/protocol/messages.ts";
import { BODY_BYTES, type BenchCred, ROOM, emit, intArg, markSamples, parseArgs, percentile, runGenerator, strArg, waitUntil } from "./common.ts";

const args = parseArgs(Bun.argv.slice(2));
const mode = strArg(args, "mode");
const ports = strArg(args, "port").split(",").map((p) => {
  const v = Number(p);
  if (!Number.isInteger(v) || v <= 0 || v > 65535) throw new Error(`bench/load/client: --port ${p} is not a port`);
  return v;
});
const n = intArg(args, "n");
const senders = Math.max(1, Math.min(n, intArg(args, "senders")));
const windowSize = intArg(args, "window", 32);
const warmupMs = intArg(args, "warmup", 1000);
const sampleMs = intArg(args, "sample", 3000);
const samples = intArg(args, "samples", 3);
const setupTimeoutMs = intArg(args, "setup-timeout", 60_000);
const useTls = args.has("tls");
const caFile = args.get("ca");
/** Offered deliveries per second; 0 = throughput mode. */
const offered = intArg(args, "rate", 0);
const latencySeconds = intArg(args, "seconds", 5);
const drainMs = intArg(args, "drain", 1000);
const perSenderRate = offered > 0 && n > 1 ? offered / (n - 1) / senders : 0;
const maxOutstanding = intArg(args, "max-outstanding", Math.max(256, Math.ceil(2 * perSenderRate)));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let deliveries = 0;
let acks = 0;
let nacks = 0;
let closedEarly = 0;
let running = false;
let firstError: string | null = null;

const MESSAGE_PREFIX = utf8('{"type":"message"');
const ACK_PREFIX = utf8('{"type":"ack"');
const TEXT = "x".repeat(BODY_BYTES);
const AT = 0x40; // "@"

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Latency bookkeeping (latency mode)

/** Scheduled send times in [winStart, winEnd) are measured. */
let winStart = Number.POSITIVE_INFINITY;
let winEnd = Number.NEGATIVE_INFINITY;
/** Latencies (ms) of what was scheduled inside the window, in a buffer that grows. */
class Timings {
  #values: Float64Array;
  count = 0;

  constructor(initial: number) {
    this.#values = new Float64Array(initial);
  }

  record(scheduled: number, now: number): void {
    if (scheduled < winStart || scheduled >= winEnd) return;
    if (this.count === this.#values.length) {
      const bigger = new Float64Array(Math.max(1024, this.#values.length * 2));
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.count++] = now - scheduled;
  }

  /** Sorted, with `missing` more at `lowerBound` (what never arrived, counted at its least). */
  sorted(missing: number, lowerBound: number): Float64Array {
    const all = new Float64Array(this.count + missing);
    all.set(this.#values.subarray(0, this.count));
    all.fill(lowerBound, this.count);
    return all.sort();
  }
}

/** Send → receive of every delivery; say → ack (secure mode) of every say. */
const deliveryTimes = new Timings(offered > 0 ? Math.ceil(offered * (latencySeconds + 1) * 1.2) + 1024 : 0);
const ackTimes = new Timings(offered > 0 ? 1024 : 0);

const ID_FIELD = utf8('"id":');

/** The request id of an ack part ({"type":"ack","id":N,…}); NaN if absent. */
function idOfAck(part: Uint8Array): number {
  let i = ACK_PREFIX.length;
  outer: for (; i + ID_FIELD.length <= part.length; i++) {
    for (let j = 0; j < ID_FIELD.length; j++) if (part[i + j] !== ID_FIELD[j]) continue outer;
    break;
  }
  i += ID_FIELD.length;
  if (i >= part.length) return Number.NaN;
  let v = 0;
  let digits = 0;
  for (; i < part.length; i++, digits++) {
    const d = part[i]! - 0x30;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  return digits > 0 ? v : Number.NaN;
}

/** The scheduled time (ms) at the end of a securechat message part: …@<µs>"…; NaN if absent. */
function sentTimeOfPart(part: Uint8Array): number {
  let i = part.length - 1;
  while (i >= 0 && part[i] !== AT) i--;
  if (i < 0) return Number.NaN;
  let v = 0;
  for (let j = i + 1; j < part.length; j++) {
    const d = part[j]! - 0x30;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  return v / 1000;
}

/** The text of a timed say: padding, "@", the scheduled time in integer µs; BODY_BYTES long. */
function timedText(scheduled: number): string {
  const stamp = `@${Math.round(scheduled * 1000)}`;
  return TEXT.slice(0, Math.max(1, BODY_BYTES - stamp.length)) + stamp;
}

// ---------------------------------------------------------------------------
// Members

/** Writes that the kernel (or TLS layer) does not take at once wait for `drain`. */
class Out {
  queue: Uint8Array[] = [];
  socket: Socket<undefined> | null = null;

  write(b: Uint8Array): void {
    if (!this.socket) return;
    if (this.queue.length > 0) {
      this.queue.push(b);
      return;
    }
    const n = this.socket.write(b);
    if (n < b.length) this.queue.push(b.subarray(Math.max(0, n)));
  }

  drain(): void {
    while (this.socket && this.queue.length > 0) {
      const b = this.queue[0]!;
      const n = this.socket.write(b);
      if (n < b.length) {
        this.queue[0] = b.subarray(Math.max(0, n));
        return;
      }
      this.queue.shift();
    }
  }
}

interface Member {
  /** Requests sent and not yet answered. */
  inflight: number;
  sender: boolean;
  closed: boolean;
  /** Tops the window up (throughput mode, senders only). */
  pump(): void;
  /** Sends one message per scheduled time (latency mode). */
  sendTimed(times: number[]): void;
  close(): void;
}

class SecureMember implements Member {
  inflight = 0;
  sender = false;
  nextId = 1;
  readonly out = new Out();
  channel: SecureChannel | null = null;
  readonly decoder = new FrameDecoder(MAX_FRAME);
  readonly hs = new ClientHandshake();
  joined = false;
  closed = false;
  /** Latency mode: the scheduled send time of each say not yet acked, by request id. */
  readonly scheduled = new Map<number, number>();

  constructor(readonly cred: BenchCred, readonly port: number) {}

  async connect(): Promise<void> {
    this.out.socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port: this.port,
      socket: {
        data: (_s, chunk) => this.receive(chunk),
        drain: () => this.out.drain(),
        close: () => this.onClose(),
        end: () => this.onClose(),
        error: () => this.onClose(),
        connectError: () => this.onClose(),
      },
    });
    this.out.write(encodeFrame(encodeMessageBytes(this.hs.hello()), MAX_FRAME_PRELOGIN));
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (running) closedEarly++;
  }

  receive(chunk: Uint8Array): void {
    try {
      this.decoder.feed(chunk, (body) => this.frame(body));
    } catch (e) {
      firstError ??= `${this.cred.user}: ${String(e)}`;
      this.out.socket?.terminate();
    }
    if (this.sender && running && offered === 0) this.pump();
  }

  frame(body: Uint8Array): void {
    if (!this.channel) {
      const keys = this.hs.receive(decodeMessage(body));
      this.channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
      const sig = signClientAuth(fromHex(this.cred.ticketKey), keys);
      this.out.write(this.channel.seal([{ type: "login", user: this.cred.user, sig, ticket: fromHex(this.cred.ticket) }]));
      return;
    }
    const plaintext = this.channel.opener.open(body);
    const now = offered > 0 ? performance.now() : 0;
    for (const part of splitRecordPayload(plaintext)) {
      if (startsWith(part, MESSAGE_PREFIX)) {
        if (running) {
          deliveries++;
          if (offered > 0) deliveryTimes.record(sentTimeOfPart(part), now);
        }
        continue;
      }
      if (startsWith(part, ACK_PREFIX)) {
        this.inflight--;
        if (running) acks++;
        if (offered > 0) this.acked(idOfAck(part), now);
        continue;
      }
      const m = decodeMessage(part);
      switch (m.type) {
        case "welcome":
          this.channel.sealer.maxFrame = MAX_FRAME;
          this.out.write(this.channel.seal([{ type: "join", room: ROOM }]));
          break;
        case "history_end":
          if (m.room === ROOM) this.joined = true;
          break;
        case "nack":
          this.inflight--;
          nacks++;
          this.scheduled.delete(m.id);
          break;
        case "ping":
          this.out.write(this.channel.seal([{ type: "pong" }]));
          break;
        case "error":
          firstError ??= `${this.cred.user}: server error ${m.code}: ${m.message}`;
          break;
        default:
          break;
      }
    }
  }

  pump(): void {
    if (this.closed || !this.joined || this.inflight >= windowSize) return;
    const batch: string[] = [];
    while (this.inflight < windowSize) {
      batch.push(`{"type":"say","id":${this.nextId++},"room":"${ROOM}","text":"${TEXT}"}`);
      this.inflight++;
    }
    this.out.write(this.channel!.seal(batch));
  }

  acked(id: number, now: number): void {
    const t = this.scheduled.get(id);
    if (t === undefined) return;
    this.scheduled.delete(id);
    ackTimes.record(t, now);
  }

  sendTimed(times: number[]): void {
    if (this.closed || !this.joined) return;
    const batch: string[] = [];
    for (const t of times) {
      const id = this.nextId++;
      if (t >= winStart && t < winEnd) this.scheduled.set(id, t);
      batch.push(`{"type":"say","id":${id},"room":"${ROOM}","text":"${timedText(t)}"}`);
    }
    this.inflight += times.length;
    this.out.write(this.channel!.seal(batch));
  }

  close(): void {
    this.closed = true;
    this.out.socket?.terminate();
  }
}

const BARE_MESSAGE = encodeFrame(new Uint8Array(BODY_BYTES).fill(0x78));

class BareMember implements Member {
  inflight = 0;
  sender = false;
  readonly out = new Out();
  readonly decoder = new FrameDecoder(MAX_FRAME);
  closed = false;

  constructor(readonly port: number) {}

  async connect(ca: string | undefined): Promise<void> {
    let handshake: ((err: string | null) => void) | null = null;
    const shaken = new Promise<string | null>((resolve) => (handshake = resolve));
    this.out.socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port: this.port,
      ...(useTls ? { tls: ca !== undefined ? { ca } : { rejectUnauthorized: false } } : {}),
      socket: {
        data: (_s, chunk) => this.receive(chunk),
        drain: () => this.out.drain(),
        handshake: (_s, ok, err) => handshake?.(ok || ca === undefined ? null : `TLS handshake: ${String(err?.message ?? err)}`),
        close: () => (this.onClose(), handshake?.("closed during the TLS handshake")),
        end: () => this.onClose(),
        error: () => this.onClose(),
        connectError: () => this.onClose(),
      },
    });
    // Over TLS, a write before the handshake completes is dropped: wait for it.
    if (useTls) {
      const err = await shaken;
      if (err) throw new Error(`bench/load/client: ${err}`);
    }
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (running) closedEarly++;
  }

  receive(chunk: Uint8Array): void {
    const now = offered > 0 ? performance.now() : 0;
    try {
      this.decoder.feed(chunk, (body) => {
        if (body.length === 1) {
          this.inflight--;
          if (running) acks++;
        } else if (running) {
          deliveries++;
          if (offered > 0 && body.length >= 8) deliveryTimes.record(new DataView(body.buffer, body.byteOffset, 8).getFloat64(0, true), now);
        }
      });
    } catch (e) {
      firstError ??= String(e);
      this.out.socket?.terminate();
    }
    if (this.sender && running && offered === 0) this.pump();
  }

  pump(): void {
    if (this.closed || this.inflight >= windowSize) return;
    const k = windowSize - this.inflight;
    const out = new Uint8Array(k * BARE_MESSAGE.length);
    for (let i = 0; i < k; i++) out.set(BARE_MESSAGE, i * BARE_MESSAGE.length);
    this.inflight += k;
    this.out.write(out);
  }

  sendTimed(times: number[]): void {
    if (this.closed) return;
    const len = BARE_MESSAGE.length;
    const out = new Uint8Array(times.length * len);
    const view = new DataView(out.buffer);
    for (let i = 0; i < times.length; i++) {
      out.set(BARE_MESSAGE, i * len);
      view.setFloat64(i * len + 4, times[i]!, true); // after the 4-byte frame header
    }
    this.inflight += times.length;
    this.out.write(out);
  }

  close(): void {
    this.closed = true;
    this.out.socket?.terminate();
  }
}

// ---------------------------------------------------------------------------

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`bench/load/client: timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const mark = (): void => emit({ event: "mark", t: performance.now(), deliveries, acks, nacks, closed: closedEarly });

/** Closed loop: every sender keeps its window full. */
async function throughput(members: Member[]): Promise<void> {
  running = true;
  for (let i = 0; i < senders; i++) members[i]!.pump();
  await markSamples(warmupMs, sampleMs, samples, mark);
}

/** Open loop at `offered` deliveries/s; see the top of the file. */
async function latency(members: Member[]): Promise<void> {
  if (n < 2) throw new Error("bench/load/client: latency mode needs --n ≥ 2");
  const interval = 1000 / perSenderRate;
  const start = performance.now() + 5;
  winStart = start + warmupMs;
  winEnd = winStart + latencySeconds * 1000;
  const stopAt = winEnd + drainMs;
  const next = Array.from({ length: senders }, (_, i) => start + (i / senders) * interval);
  let skipped = 0;
  let sentInWindow = 0;
  let skippedInWindow = 0;
  let capped = false;
  let markA = { t: 0, d: 0 };
  let markB = { t: 0, d: 0 };
  const tick = (): void => {
    const now = performance.now();
    for (let i = 0; i < senders; i++) {
      const m = members[i]!;
      let due: number[] | null = null;
      while (next[i]! <= now && next[i]! < stopAt) {
        const t = next[i]!;
        next[i] = t + interval;
        const inWindow = t >= winStart && t < winEnd;
        if (m.inflight >= maxOutstanding || m.closed) {
          if (!m.closed) capped = true; // a closed sender is counted in `closed`
          skipped++;
          if (inWindow) skippedInWindow++;
          continue;
        }
        if (inWindow) sentInWindow++;
        (due ??= []).push(t);
      }
      if (due) m.sendTimed(due);
    }
  };
  running = true;
  const timer = setInterval(tick, 1);
  try {
    await sleep(Math.max(0, winStart - performance.now()));
    markA = { t: performance.now(), d: deliveries };
    mark();
    await sleep(Math.max(0, winEnd - performance.now()));
    markB = { t: performance.now(), d: deliveries };
    mark();
    await sleep(Math.max(0, stopAt - performance.now()));
  } finally {
    clearInterval(timer);
  }
  const end = performance.now();
  // Deliveries of window messages that never arrived: counted at their lower bound
  // (the drain ran at least drainMs past the window's last scheduled send).
  const missing = Math.max(0, sentInWindow * (n - 1) - deliveryTimes.count);
  const all = deliveryTimes.sorted(missing, end - winEnd);
  const windowS = (winEnd - winStart) / 1000;
  // Acks of window says that never came (secure mode): at their lower bound too.
  const ackMissing = mode === "secure" ? Math.max(0, sentInWindow - ackTimes.count) : 0;
  const acksAll = ackTimes.sorted(ackMissing, end - winEnd);
  const ackFigures =
    mode === "secure" ? { ack_p50: percentile(acksAll, 0.5), ack_p99: percentile(acksAll, 0.99), ack_p999: percentile(acksAll, 0.999), ack_count: acksAll.length, ack_missing: ackMissing } : {};
  emit({
    event: "latency",
    p50: percentile(all, 0.5),
    p99: percentile(all, 0.99),
    p999: percentile(all, 0.999),
    count: all.length,
    rate: markB.t > markA.t ? (markB.d - markA.d) / ((markB.t - markA.t) / 1000) : Number.NaN,
    capped,
    missing,
    skipped: skippedInWindow,
    skipped_total: skipped,
    sent: sentInWindow,
    window_s: windowS,
    ...ackFigures,
  });
}

async function main(): Promise<void> {
  const members: (SecureMember | BareMember)[] = [];
  const setupStart = performance.now();
  try {
    if (mode === "secure") {
      const creds = JSON.parse(await Bun.file(strArg(args, "creds")).text()) as BenchCred[];
      if (creds.length < n) throw new Error(`bench/load/client: ${creds.length} accounts, ${n} wanted`);
      // Log in a few at a time: every login is a handshake (X25519 + Ed25519) on both sides.
      const BATCH = 16;
      for (let i = 0; i < n; i += BATCH) {
        const batch = creds.slice(i, Math.min(n, i + BATCH)).map((c, j) => new SecureMember(c, ports[(i + j) % ports.length]!));
        members.push(...batch);
        await withTimeout(Promise.all(batch.map((m) => m.connect())), setupTimeoutMs, "connections");
        await waitUntil("bench/load/client", `members ${i}..${i + batch.length - 1} in ${ROOM}`, () => batch.every((m) => m.joined || m.closed), setupTimeoutMs, () => firstError);
        if (batch.some((m) => m.closed)) throw new Error(`bench/load/client: a member was disconnected during setup`);
      }
    } else if (mode === "bare") {
      const ca = caFile !== undefined ? await Bun.file(caFile).text() : undefined;
      for (let i = 0; i < n; i++) members.push(new BareMember(ports[i % ports.length]!));
      await withTimeout(Promise.all(members.map((m) => m.connect(ca))), setupTimeoutMs, useTls ? "TLS connections" : "connections");
      await sleep(100);
      if (members.some((m) => m.closed)) throw new Error(`bench/load/client: a member was disconnected during setup`);
    } else throw new Error(`bench/load/client: unknown --mode ${mode}`);
    emit({ event: "ready", setup_ms: Math.round(performance.now() - setupStart) });

    for (let i = 0; i < senders; i++) members[i]!.sender = true;
    if (offered > 0) await latency(members);
    else await throughput(members);
    running = false;
    emit({ event: "done", error: firstError });
  } finally {
    running = false;
    for (const m of members) m.close();
  }
}

await runGenerator(main);
