/**
 * The load generator for an IRC server (bench/load/ngircd.ts), in its own
 * process, with the same flags and stdout events as bench/load/client.ts so
 * the parent runs it like the other generators:
 *
 *   bun run bench/load/irc.ts --port P --n N --senders S [--window 32]
 *       [--warmup ms] [--sample ms] [--samples k]       relay throughput
 *   ... --rate D [--seconds S] [--cap 1024]            latency at D deliveries/s
 *   [--plain] (no TLS)  [--oper name:password | --oper none]  [--batch 10]
 *
 * N members connect over TLS (loopback, self-signed certificate: not
 * verified), register (NICK/USER), and JOIN #bench; senders (members
 * 0..S-1) first become IRC operators and set user mode +F, ngIRCd's relaxed
 * flood protection. Setup is done when every member has seen the end of
 * NAMES (366): {"event":"ready","setup_ms":n}.
 *
 * A sender's PRIVMSG text is `<sender> <seq> <scheduled µs> ` padded with
 * "x" to 100 bytes. IRC doesn't echo a PRIVMSG to its sender, so a message
 * counts as acknowledged when one designated observer member receives it
 * (the last member; the one before it for the last member's own messages);
 * that ack frees a slot in the sender's window, as securechat's ack does.
 * Every member counts PRIVMSG lines as deliveries.
 *
 * Throughput (no --rate): each sender keeps --window messages unacked.
 * After --warmup ms a mark, then one every --sample ms, --samples times:
 *   {"event":"mark","t":ms,"deliveries":n,"acks":n,"nacks":0,"closed":n}
 * then {"event":"done","error":null|string}.
 *
 * Latency (--rate D): open loop. Senders together send D/(N-1) messages
 * per second on a timer (evenly spaced, phases staggered), whatever the
 * acks; a send due while the sender already has --cap messages unacked is
 * skipped and reported as `capped`. Every receiver records, for each
 * delivery, now - scheduled send time (so a late generator counts against
 * the server, not in its favour). Messages scheduled in the --warmup ms are
 * not recorded; those scheduled in the next --seconds s are. Marks at the
 * start and end of that window, then, once every member has every recorded
 * message (`drained`) or --drain-timeout ms have passed:
 *   {"event":"latency","p50":ms,"p99":ms,"p999":ms,"count":n,"rate":deliveries/s,
 *    "capped":bool,"sent":n,"expected":n,"drained":bool}
 * and {"event":"done",...}. `rate` is recorded deliveries / --seconds.
 *
 * On failure {"event":"error","error":"..."} and exit 1. Every wait is bounded.
 * Lines are parsed on bytes: a line whose command starts with "PR" after
 * the prefix is a PRIVMSG; only observers (and, for latency, everyone)
 * read the numbers in its text; other lines are decoded and handled.
 */
import type { Socket } from "bun";
import { BODY_BYTES, emit, intArg, markSamples, parseArgs, percentile, runGenerator, waitUntil } from "./common.ts";
import { IRC_CHANNEL, IRC_OPER } from "./ngircd.ts";

const args = parseArgs(Bun.argv.slice(2));
const port = intArg(args, "port");
const n = intArg(args, "n");
const senders = Math.max(1, Math.min(n, intArg(args, "senders")));
const windowSize = intArg(args, "window", 32);
const warmupMs = intArg(args, "warmup", 1000);
const sampleMs = intArg(args, "sample", 3000);
const samples = intArg(args, "samples", 3);
const setupTimeoutMs = intArg(args, "setup-timeout", 60_000);
const rate = intArg(args, "rate", 0);
const seconds = intArg(args, "seconds", 5);
const cap = intArg(args, "cap", 1024);
const drainTimeoutMs = intArg(args, "drain-timeout", 5000);
const batchSize = Math.max(1, intArg(args, "batch", 10));
const useTls = args.get("plain") !== "true";
const operArg = args.get("oper") ?? `${IRC_OPER.name}:${IRC_OPER.password}`;
const oper = operArg === "none" ? null : operArg.split(":");
const latencyMode = rate > 0;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

let deliveries = 0;
let acks = 0;
let closedEarly = 0;
let running = false;
let firstError: string | null = null;

// Latency mode: the recording window, in µs of performance.now(), and the samples (ms).
let recordFromUs = Number.POSITIVE_INFINITY;
let recordToUs = Number.NEGATIVE_INFINITY;
let latencies = new Float64Array(1 << 16);
let latencyCount = 0;

function recordLatency(ms: number): void {
  if (latencyCount === latencies.length) {
    const grown = new Float64Array(latencies.length * 2);
    grown.set(latencies);
    latencies = grown;
  }
  latencies[latencyCount++] = ms;
}

const NL = 10;
const SP = 32;
const COLON = 58;
const CHAR_P = 0x50;
const CHAR_R = 0x52;
const PAD = "x".repeat(BODY_BYTES);
const PRIVMSG = `PRIVMSG ${IRC_CHANNEL} :`;

/** Reads a non-negative decimal at buf[at..], stopping at a space or `end`; [value, index after it]. */
function readNumber(buf: Uint8Array, at: number, end: number): [number, number] {
  let v = 0;
  while (at < end) {
    const c = buf[at]!;
    if (c < 48 || c > 57) break;
    v = v * 10 + (c - 48);
    at++;
  }
  return [v, at + 1];
}

const members: IrcMember[] = [];
/** Per-run nick prefix: a run right after another on the same server can't collide with nicks still closing. */
const RUN_TAG = (process.pid % 46656).toString(36).padStart(3, "0");
/** The member that acknowledges sender s's messages. */
const observerOf = (s: number): number => (s === n - 1 ? n - 2 : n - 1);
/** Senders freed by the observer's last chunk; topped up after it (closed loop). */
const toPump = new Set<IrcMember>();

class IrcMember {
  readonly nick: string;
  socket: Socket<undefined> | null = null;
  carry: Uint8Array | null = null;
  pending = "";
  registered = false;
  opered = false;
  flood = false;
  joined = false;
  closed = false;
  sender = false;
  /** Reads the numbers in every PRIVMSG text (observers; everyone for latency). */
  parses = false;
  inflight = 0;
  seq = 0;

  constructor(readonly index: number) {
    this.nick = `b${RUN_TAG}${index}`;
  }

  get ready(): boolean {
    return this.joined && (!this.sender || oper === null || this.flood);
  }

  async connect(): Promise<void> {
    const handlers = {
      data: (_s: Socket<undefined>, chunk: Uint8Array) => this.receive(chunk),
      drain: () => this.flush(),
      close: () => this.onClose(),
      end: () => this.onClose(),
      error: (_s: Socket<undefined>, e: Error) => {
        if (!running && !this.closed) firstError ??= `${this.nick}: ${String(e)}`;
        this.onClose();
      },
      connectError: (_s: Socket<undefined>, e: Error) => {
        firstError ??= `${this.nick}: connect: ${String(e)}`;
        this.onClose();
      },
    };
    const connect = useTls
      ? Bun.connect<undefined>({
          hostname: "127.0.0.1",
          port,
          tls: { rejectUnauthorized: false },
          // Called when the handshake is done; the self-signed certificate is not verified.
          socket: { ...handlers, handshake: (s) => this.register(s) },
        })
      : Bun.connect<undefined>({ hostname: "127.0.0.1", port, socket: { ...handlers, open: (s) => this.register(s) } });
    try {
      this.socket = await connect;
    } catch (e) {
      throw new Error(`bench/load/irc: ${this.nick}: connecting to 127.0.0.1:${port}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** From open/handshake, which may run before Bun.connect resolves. */
  register(socket: Socket<undefined>): void {
    this.socket = socket;
    this.send(`NICK ${this.nick}\r\nUSER ${this.nick} 0 * :bench\r\n`);
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (running) closedEarly++;
  }

  send(text: string): void {
    if (this.closed || this.socket === null) return;
    if (this.pending.length > 0) {
      this.pending += text;
      return;
    }
    const written = this.socket.write(text);
    if (written < text.length) this.pending = text.slice(Math.max(0, written));
  }

  flush(): void {
    if (this.pending.length === 0 || this.closed || this.socket === null) return;
    const text = this.pending;
    const written = this.socket.write(text);
    this.pending = written < text.length ? text.slice(Math.max(0, written)) : "";
  }

  receive(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.carry !== null) {
      buf = new Uint8Array(this.carry.length + chunk.length);
      buf.set(this.carry);
      buf.set(chunk, this.carry.length);
      this.carry = null;
    }
    const nowUs = this.parses && latencyMode ? performance.now() * 1000 : 0;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(NL, start);
      if (nl < 0) break;
      this.line(buf, start, nl, nowUs);
      start = nl + 1;
    }
    if (start < buf.length) {
      if (buf.length - start > 4096) {
        firstError ??= `${this.nick}: a line of more than 4096 bytes`;
        this.close();
        return;
      }
      this.carry = new Uint8Array(buf.subarray(start));
    }
    if (toPump.size > 0) {
      for (const m of toPump) m.pump();
      toPump.clear();
    }
  }

  /** One line, buf[s..nl) (nl is the \n). */
  line(buf: Uint8Array, s: number, nl: number, nowUs: number): void {
    if (buf[s] === COLON) {
      const sp = buf.indexOf(SP, s);
      if (sp > 0 && sp + 2 < nl && buf[sp + 1] === CHAR_P && buf[sp + 2] === CHAR_R) {
        if (running) deliveries++;
        if (this.parses) this.privmsg(buf, sp, nl, nowUs);
        return;
      }
    }
    let end = nl;
    if (end > s && buf[end - 1] === 13) end--;
    this.control(Buffer.from(buf.buffer, buf.byteOffset + s, end - s).toString("latin1"));
  }

  privmsg(buf: Uint8Array, sp: number, nl: number, nowUs: number): void {
    // ":prefix PRIVMSG #bench :<sender> <seq> <µs> xxx"
    const afterCommand = buf.indexOf(SP, sp + 1);
    const afterTarget = afterCommand < 0 ? -1 : buf.indexOf(SP, afterCommand + 1);
    if (afterTarget < 0 || afterTarget + 2 >= nl) return;
    const [sender, afterSender] = readNumber(buf, afterTarget + 2, nl);
    const [, afterSeq] = readNumber(buf, afterSender, nl);
    if (latencyMode) {
      const [scheduledUs] = readNumber(buf, afterSeq, nl);
      if (scheduledUs >= recordFromUs && scheduledUs < recordToUs) recordLatency((nowUs - scheduledUs) / 1000);
    }
    if (sender < senders && observerOf(sender) === this.index) {
      const m = members[sender]!;
      m.inflight--;
      if (running) acks++;
      if (!latencyMode) toPump.add(m);
    }
  }

  control(line: string): void {
    let rest = line;
    if (rest.startsWith(":")) {
      const sp = rest.indexOf(" ");
      rest = sp < 0 ? "" : rest.slice(sp + 1);
    }
    const sp = rest.indexOf(" ");
    const command = sp < 0 ? rest : rest.slice(0, sp);
    const params = sp < 0 ? "" : rest.slice(sp + 1);
    switch (command) {
      case "PING":
        this.send(`PONG ${params}\r\n`);
        return;
      case "ERROR":
        if (!this.closed) firstError ??= `${this.nick}: server said ${line}`;
        return;
      case "001":
        this.registered = true;
        if (this.sender && oper !== null) this.send(`OPER ${oper[0]} ${oper[1] ?? ""}\r\n`);
        else this.send(`JOIN ${IRC_CHANNEL}\r\n`);
        return;
      case "381": // RPL_YOUREOPER
        this.opered = true;
        this.send(`MODE ${this.nick} +F\r\nJOIN ${IRC_CHANNEL}\r\n`);
        return;
      case "MODE":
        if (params.startsWith(`${this.nick} `) && /\+[A-Za-z]*F/.test(params)) this.flood = true;
        return;
      case "366": // RPL_ENDOFNAMES
        if (params.split(" ")[1] === IRC_CHANNEL) this.joined = true;
        return;
      default:
        // 4xx/5xx: errors (ERR_NICKNAMEINUSE, ERR_PASSWDMISMATCH, ERR_NOOPERHOST, ...).
        if (/^[45]\d\d$/.test(command)) firstError ??= `${this.nick}: ${line}`;
        return;
    }
  }

  message(): string {
    const head = `${this.index} ${this.seq++} `;
    return `${PRIVMSG}${head}0 ${PAD.slice(head.length + 2)}\r\n`;
  }

  /**
   * Closed loop: tops the window up in one write (as client.ts does), so one
   * TLS record of up to ~3.8 KB. ngIRCd's GnuTLS build reads 2,048 bytes per
   * readiness event and never asks GnuTLS what it still holds, so the rest
   * of such a record waits until the socket receives more. Measured, that
   * costs nothing at N = 100, and at N = 10 one write is ~15x faster than
   * 16-line writes: ngIRCd relays the second record's lines in a second
   * small write per receiver, which Nagle (ngIRCd sets no TCP_NODELAY)
   * holds until the receiver's delayed ACK, ~40 ms.
   */
  pump(): void {
    if (this.closed || !this.joined || !running || this.inflight >= windowSize) return;
    let out = "";
    while (this.inflight < windowSize) {
      out += this.message();
      this.inflight++;
    }
    this.send(out);
  }

  close(): void {
    this.closed = true;
    this.socket?.terminate();
  }
}

const mark = (): void => emit({ event: "mark", t: performance.now(), deliveries, acks, nacks: 0, closed: closedEarly });

async function throughput(): Promise<void> {
  running = true;
  for (let i = 0; i < senders; i++) members[i]!.pump();
  await markSamples(warmupMs, sampleMs, samples, mark);
  running = false;
}

async function latency(): Promise<void> {
  // Senders together send rate/(n-1) messages per second; each delivers to n-1 members.
  const intervalMs = (1000 * senders * (n - 1)) / rate;
  const t0 = performance.now() + 5;
  const from = t0 + warmupMs;
  const to = from + seconds * 1000;
  recordFromUs = Math.round(from * 1000);
  recordToUs = Math.round(to * 1000);
  const next = new Float64Array(senders);
  for (let s = 0; s < senders; s++) next[s] = t0 + (intervalMs * s) / senders;
  let sent = 0;
  let capped = false;
  let sending = true;
  running = true;

  const tick = (): void => {
    if (!sending) return;
    const now = performance.now();
    for (let s = 0; s < senders; s++) {
      const m = members[s]!;
      let out = "";
      while (next[s]! <= now && next[s]! < to) {
        const at = next[s]!;
        next[s] = at + intervalMs;
        if (m.closed) continue;
        if (m.inflight >= cap) {
          if (at >= from) capped = true;
          continue;
        }
        const head = `${m.index} ${m.seq++} ${Math.round(at * 1000)} `;
        out += `${PRIVMSG}${head}${PAD.slice(head.length)}\r\n`;
        m.inflight++;
        if (at >= from) sent++;
      }
      if (out.length > 0) m.send(out);
    }
    if (now >= to) sending = false;
    else setTimeout(tick, 1);
  };
  tick();

  await sleep(from - performance.now());
  mark();
  await sleep(to - performance.now());
  mark();
  sending = false;
  // Wait for every recorded delivery, not only the observer's: the slowest are the tail.
  const drainDeadline = Date.now() + drainTimeoutMs;
  const drained = (): boolean => latencyCount >= sent * (n - 1);
  while (!drained() && Date.now() < drainDeadline && !firstError) await sleep(5);
  running = false;

  const xs = latencies.slice(0, latencyCount).sort();
  emit({
    event: "latency",
    p50: percentile(xs, 0.5),
    p99: percentile(xs, 0.99),
    p999: percentile(xs, 0.999),
    count: latencyCount,
    rate: Math.round(latencyCount / seconds),
    capped,
    sent,
    expected: sent * (n - 1),
    drained: drained(),
  });
}

async function main(): Promise<void> {
  if (n < 2) throw new Error("bench/load/irc: --n must be at least 2 (a sender's messages are acknowledged by another member)");
  const setupStart = performance.now();
  try {
    for (let i = 0; i < n; i++) {
      const m = new IrcMember(i);
      m.sender = i < senders;
      m.parses = latencyMode || i === observerOf(0) || (senders >= n && i === n - 2);
      members.push(m);
    }
    // A few at a time: ngIRCd listens with a backlog of 10.
    for (let i = 0; i < n; i += batchSize) {
      const batch = members.slice(i, Math.min(n, i + batchSize));
      await Promise.all(batch.map((m) => m.connect()));
      await waitUntil("bench/load/irc", `members ${i}..${i + batch.length - 1} in ${IRC_CHANNEL}`, () => batch.every((m) => m.ready || m.closed), setupTimeoutMs, () => firstError);
      if (batch.some((m) => m.closed)) throw new Error(`bench/load/irc: a member was disconnected during setup`);
    }
    emit({ event: "ready", setup_ms: Math.round(performance.now() - setupStart) });
    if (latencyMode) await latency();
    else await throughput();
    emit({ event: "done", error: firstError });
  } finally {
    running = false;
    for (const m of members) m.close();
  }
}

await runGenerator(main);
