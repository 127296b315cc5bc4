/**
 * The load generator, in its own process. `--mode secure` speaks the real
 * securechat protocol: handshake, ticket login, join, then `say` requests
 * and counting of `message` events. `--mode bare` speaks raw frames to the
 * bare relay (bench/load/bare.ts): 100-byte bodies out, frames counted in.
 *
 * Members 0..senders-1 send, each keeping up to --window requests unacked;
 * every member counts deliveries. After --warmup ms it prints a mark, then
 * one more every --sample ms, --samples times:
 *   {"event":"mark","t":ms,"deliveries":n,"acks":n}
 * The parent samples the server's CPU at each mark. Every wait is bounded.
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
import { BODY_BYTES, type BenchCred, ROOM, emit, intArg, parseArgs, strArg } from "./common.ts";

const args = parseArgs(Bun.argv.slice(2));
const mode = strArg(args, "mode");
const port = intArg(args, "port");
const n = intArg(args, "n");
const senders = Math.max(1, Math.min(n, intArg(args, "senders")));
const windowSize = intArg(args, "window", 32);
const warmupMs = intArg(args, "warmup", 1000);
const sampleMs = intArg(args, "sample", 3000);
const samples = intArg(args, "samples", 3);
const setupTimeoutMs = intArg(args, "setup-timeout", 60_000);

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

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

interface Member {
  /** Requests sent and not yet answered. */
  inflight: number;
  /** Tops the window up (senders only). */
  pump(): void;
  close(): void;
}

// ---------------------------------------------------------------------------
// securechat

class SecureMember implements Member {
  inflight = 0;
  sender = false;
  nextId = 1;
  socket: Socket<undefined> | null = null;
  channel: SecureChannel | null = null;
  readonly decoder = new FrameDecoder(MAX_FRAME);
  readonly hs = new ClientHandshake();
  welcome = false;
  joined = false;
  closed = false;

  constructor(readonly cred: BenchCred) {}

  async connect(): Promise<void> {
    this.socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => this.receive(chunk),
        close: () => this.onClose(),
        end: () => this.onClose(),
        error: () => this.onClose(),
        connectError: () => this.onClose(),
      },
    });
    this.socket.write(encodeFrame(encodeMessageBytes(this.hs.hello()), MAX_FRAME_PRELOGIN));
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
      this.socket?.terminate();
    }
    if (this.sender && running) this.pump();
  }

  frame(body: Uint8Array): void {
    if (!this.channel) {
      const keys = this.hs.receive(decodeMessage(body));
      this.channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
      const sig = signClientAuth(fromHex(this.cred.ticketKey), keys);
      this.socket!.write(this.channel.seal([{ type: "login", user: this.cred.user, sig, ticket: fromHex(this.cred.ticket) }]));
      return;
    }
    const plaintext = this.channel.opener.open(body);
    for (const part of splitRecordPayload(plaintext)) {
      if (startsWith(part, MESSAGE_PREFIX)) {
        if (running) deliveries++;
        continue;
      }
      if (startsWith(part, ACK_PREFIX)) {
        this.inflight--;
        if (running) acks++;
        continue;
      }
      const m = decodeMessage(part);
      switch (m.type) {
        case "welcome":
          this.welcome = true;
          this.channel.sealer.maxFrame = MAX_FRAME;
          this.socket!.write(this.channel.seal([{ type: "join", room: ROOM }]));
          break;
        case "history_end":
          if (m.room === ROOM) this.joined = true;
          break;
        case "nack":
          this.inflight--;
          nacks++;
          break;
        case "ping":
          this.socket!.write(this.channel.seal([{ type: "pong" }]));
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
    this.socket!.write(this.channel!.seal(batch));
  }

  close(): void {
    this.closed = true;
    this.socket?.terminate();
  }
}

// ---------------------------------------------------------------------------
// bare

const BARE_MESSAGE = encodeFrame(new Uint8Array(BODY_BYTES).fill(0x78));

class BareMember implements Member {
  inflight = 0;
  sender = false;
  socket: Socket<undefined> | null = null;
  readonly decoder = new FrameDecoder(MAX_FRAME);
  closed = false;

  async connect(): Promise<void> {
    this.socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => this.receive(chunk),
        close: () => this.onClose(),
        end: () => this.onClose(),
        error: () => this.onClose(),
        connectError: () => this.onClose(),
      },
    });
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (running) closedEarly++;
  }

  receive(chunk: Uint8Array): void {
    try {
      this.decoder.feed(chunk, (body) => {
        if (body.length === 1) {
          this.inflight--;
          if (running) acks++;
        } else if (running) deliveries++;
      });
    } catch (e) {
      firstError ??= String(e);
      this.socket?.terminate();
    }
    if (this.sender && running) this.pump();
  }

  pump(): void {
    if (this.closed || this.inflight >= windowSize) return;
    const k = windowSize - this.inflight;
    const out = new Uint8Array(k * BARE_MESSAGE.length);
    for (let i = 0; i < k; i++) out.set(BARE_MESSAGE, i * BARE_MESSAGE.length);
    this.inflight += k;
    this.socket!.write(out);
  }

  close(): void {
    this.closed = true;
    this.socket?.terminate();
  }
}

// ---------------------------------------------------------------------------

async function waitUntil(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (firstError) throw new Error(`bench/load/client: ${firstError} (while waiting for ${what})`);
    if (Date.now() > deadline) throw new Error(`bench/load/client: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
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
        const batch = creds.slice(i, Math.min(n, i + BATCH)).map((c) => new SecureMember(c));
        members.push(...batch);
        await Promise.all(batch.map((m) => m.connect()));
        await waitUntil(`members ${i}..${i + batch.length - 1} in ${ROOM}`, () => batch.every((m) => m.joined || m.closed), setupTimeoutMs);
        if (batch.some((m) => m.closed)) throw new Error(`bench/load/client: a member was disconnected during setup`);
      }
    } else if (mode === "bare") {
      for (let i = 0; i < n; i++) members.push(new BareMember());
      await Promise.all(members.map((m) => m.connect()));
      await sleep(100);
    } else throw new Error(`bench/load/client: unknown --mode ${mode}`);
    emit({ event: "ready", setup_ms: Math.round(performance.now() - setupStart) });

    for (let i = 0; i < senders; i++) members[i]!.sender = true;
    running = true;
    for (let i = 0; i < senders; i++) members[i]!.pump();

    await sleep(warmupMs);
    const mark = (): void => emit({ event: "mark", t: performance.now(), deliveries, acks, nacks, closed: closedEarly });
    mark();
    for (let s = 0; s < samples; s++) {
      await sleep(sampleMs);
      mark();
    }
    running = false;
    emit({ event: "done", error: firstError });
  } finally {
    running = false;
    for (const m of members) m.close();
  }
}

try {
  await main();
  process.exit(0);
} catch (e) {
  emit({ event: "error", error: String(e instanceof Error ? e.message : e) });
  process.exit(1);
}
