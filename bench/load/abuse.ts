/**
 * The hostile-client benchmark's children (bench/abuse.ts runs them against
 * a real `securechat serve` process), each in its own process so that none
 * shares an event loop with another:
 *
 *   bun run bench/load/abuse.ts setup --port P --creds FILE [--messages 50] [--text 4096]
 *     Registers the accounts filler, bystander and attacker (password and
 *     ticket_key, so each gets a ticket), writes their tickets to FILE
 *     (mode 0600), and fills room "big" with --messages messages of --text
 *     characters from the filler, waiting for every ack. Then
 *     {"event":"ready","setup_ms":ms} and exits.
 *
 *   bun run bench/load/abuse.ts bystander --port P --creds FILE [--interval 250] [--drain 3000] [--max-seconds 900]
 *     Ticket login, then {"event":"ready"}, then a `ping` every --interval ms
 *     on a fixed schedule whatever the answers (open loop: a stalled server is
 *     charged for every ping it delays), and for each `pong`
 *     {"event":"rtt","t":SCHEDULED,"ms":RTT} — the server answers one
 *     connection's pings in order, so the n-th pong answers the n-th ping;
 *     SCHEDULED is the ping's scheduled send time in ms since the epoch
 *     (performance.timeOrigin + performance.now()), so the parent can tell
 *     which phase it belongs to. On "stop" on stdin (or after --max-seconds)
 *     it sends no more, waits up to --drain ms for the pongs still due, and
 *     prints {"event":"done","t":NOW,"outstanding":[SCHEDULED…],"closed":bool}.
 *
 *   bun run bench/load/abuse.ts attacker --port P --creds FILE --attack KIND [--seconds 30]
 *       [--joins 2200] [--histories 1400] [--max-logins 1000] [--max-records 100000]
 *     Ticket login as attacker, joins "big" (its answer read and measured),
 *     then {"event":"ready","join_answer_bytes":N,"history":K}. On "go" on
 *     stdin, the attack, until "stop" on stdin or --seconds:
 *       join        ONE record of --joins `join`s of "big"; reads nothing more
 *       history     ONE record of --histories `history` (limit 1000) of "big"; reads nothing more
 *       flood       such records, joins and histories alternating, back to
 *                   back as fast as the socket takes them; reads nothing
 *       flood-read  the same, reading (and discarding) all it is sent
 *       churn       records of `join`/`leave` pairs of room "churn", back to
 *                   back, reading
 *       relogin-say per session: a join of room "noise" and --burst (30)
 *                   `say`s of 4 KiB, then a clean end and a new ticket
 *                   login, in a loop, reading
 *     A connection the server closes is logged in again with the ticket (at
 *     most --max-logins attempts in all, 100 ms apart after a refusal), as an
 *     attacker would. Then
 *     {"event":"done","records":N,"requests":N,"sent":BYTES,"received":BYTES,"logins":N,"closed":N,"login_failures":N}.
 *
 * Every wait is bounded; traffic goes to 127.0.0.1 only.
 */
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import type { Socket } from "bun";
import { fromHex, toHex } from "../../src/bytes.ts";
import { ed25519Generate, randomBytes } from "../../src/crypto/index.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import type { SessionKeys } from "../../src/protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN, MESSAGE_TEXT_MAX, RECORD_TAG_LENGTH } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage, encodeMessageBytes, splitRecordPayload } from "../../src/protocol/messages.ts";
import { type BenchCred, emit, intArg, parseArgs, runGenerator, strArg } from "./common.ts";

const [role, ...rest] = Bun.argv.slice(2);
const args = parseArgs(rest);
const port = intArg(args, "port");
const credsPath = strArg(args, "creds");

/** The room the attacker asks about, holding --messages messages of --text characters. */
export const BIG = "big";
const CHURN = "churn";
const NOISE = "noise";
const USERS = ["filler", "bystander", "attacker"] as const;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const epochNow = (): number => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------
// One connection: handshake and login decrypted; afterwards messages, or
// (raw) bytes counted and dropped unread.

class Conn {
  socket: Socket<undefined> | null = null;
  channel: SecureChannel | null = null;
  readonly #decoder = new FrameDecoder(MAX_FRAME);
  readonly #hs = new ClientHandshake();
  closed = false;
  /** Bytes received after the welcome. */
  received = 0;
  /** After the welcome: count bytes without opening records. */
  raw = false;
  welcome: Message<"welcome"> | null = null;
  onMessage: (m: Message) => void = () => {};
  #wake: (() => void) | null = null;
  #failure: string | null = null;

  private constructor(readonly who: string) {}

  /** Connects, runs the handshake, sends what `login` builds from the keys, waits for `welcome`. */
  static async open(who: string, login: (keys: SessionKeys) => Message, timeoutMs = 20_000): Promise<Conn> {
    const c = new Conn(who);
    c.socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => c.#receive(chunk, login),
        drain: () => c.#wakeUp(),
        close: () => c.#closed(),
        end: () => c.#closed(),
        error: () => c.#closed(),
        connectError: () => c.#closed(),
      },
    });
    c.socket.write(encodeFrame(encodeMessageBytes(c.#hs.hello()), MAX_FRAME_PRELOGIN));
    await c.until(() => c.welcome !== null, `${who}'s welcome`, timeoutMs).catch((e: unknown) => {
      c.terminate();
      throw e;
    });
    return c;
  }

  /** Wakes the wait in until() or writeAll(), which sets a new one when it loops. */
  #wakeUp(): void {
    this.#wake?.();
    this.#wake = null;
  }

  #closed(): void {
    this.closed = true;
    this.#wakeUp();
  }

  #receive(chunk: Uint8Array, login: (keys: SessionKeys) => Message): void {
    if (this.raw) {
      this.received += chunk.length;
      return;
    }
    if (this.welcome) this.received += chunk.length;
    try {
      this.#decoder.feed(chunk, (body) => {
        if (!this.channel) {
          const keys = this.#hs.receive(decodeMessage(body));
          this.channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
          this.socket!.write(this.channel.seal([login(keys)]));
          return;
        }
        for (const part of splitRecordPayload(this.channel.opener.open(body))) {
          const m = decodeMessage(part);
          if (m.type === "ping") this.write(this.channel.seal([{ type: "pong" }]));
          if (this.welcome) this.onMessage(m);
          else if (m.type === "welcome") {
            this.welcome = m;
            this.channel.sealer.maxFrame = MAX_FRAME;
          } else this.#failure = m.type === "error" ? `${m.code}: ${m.message}` : `unexpected ${m.type}`;
        }
      });
    } catch (e) {
      this.#failure = String(e);
      this.terminate();
    }
    this.#wakeUp();
  }

  /** Waits for `cond`, bounded; throws if the connection failed or closed first. */
  async until(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.#failure) throw new Error(`bench/load/abuse: ${this.who}: ${this.#failure} (waiting for ${what})`);
      if (this.closed) throw new Error(`bench/load/abuse: ${this.who}: connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`bench/load/abuse: ${this.who}: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /**
   * Writes what the socket takes now; the rest is the caller's (see
   * writeAll). A paused socket hears of no close, so a failed write or a
   * socket no longer established counts as one: a client that does not read
   * still learns that its writes fail.
   */
  write(bytes: Uint8Array): number {
    if (this.closed || !this.socket) return 0;
    const n = this.socket.write(bytes);
    if (n < 0 || this.socket.readyState <= 0) this.#closed();
    return Math.max(0, n);
  }

  /** Writes all of `bytes`, waiting for drain; false if the connection closed or `deadline` (epoch ms) passed first. */
  async writeAll(bytes: Uint8Array, deadline: number, stopped: () => boolean): Promise<boolean> {
    let off = 0;
    while (off < bytes.length) {
      if (this.closed || stopped() || Date.now() > deadline) return false;
      off += this.write(bytes.subarray(off));
      if (off < bytes.length) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 50);
          this.#wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    }
    return true;
  }

  seal(messages: readonly (Message | string)[]): Uint8Array {
    return this.channel!.seal(messages);
  }

  pause(): void {
    this.socket?.pause();
  }

  /** Ends the connection cleanly (FIN after what was written), so the server reads everything first. */
  end(): void {
    this.closed = true;
    this.socket?.end();
  }

  terminate(): void {
    this.closed = true;
    this.socket?.terminate();
  }
}

function readCreds(): Map<string, BenchCred> {
  const creds = JSON.parse(readFileSync(credsPath, "utf8")) as BenchCred[];
  return new Map(creds.map((c) => [c.user, c]));
}

function ticketLogin(cred: BenchCred): (keys: SessionKeys) => Message {
  return (keys) => ({ type: "login", user: cred.user, sig: signClientAuth(fromHex(cred.ticketKey), keys), ticket: fromHex(cred.ticket) });
}

/** Lines on stdin, as a queue the roles poll ("go", "stop"). */
const commands: string[] = [];
function readCommands(): void {
  void (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of Bun.stdin.stream()) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        commands.push(buf.slice(0, nl).trim());
        buf = buf.slice(nl + 1);
      }
    }
    commands.push("stop"); // the parent went away
  })();
}

async function waitCommand(want: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!commands.includes(want)) {
    if (Date.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

// ---------------------------------------------------------------------------
// setup

async function setup(): Promise<void> {
  const messages = intArg(args, "messages", 50);
  const textChars = intArg(args, "text", 4096);
  const t0 = performance.now();
  const creds: BenchCred[] = [];
  let filler: Conn | null = null;
  for (const user of USERS) {
    const identity = ed25519Generate();
    const ticketKey = ed25519Generate();
    const password = toHex(randomBytes(24));
    const c = await Conn.open(user, (keys) => ({ type: "register", user, identity_key: identity.publicKey, sig: signClientAuth(identity.secretKey, keys), password, ticket_key: ticketKey.publicKey }), 60_000);
    if (!c.welcome?.ticket) throw new Error(`bench/load/abuse: ${user}: no ticket in welcome`);
    creds.push({ user, ticket: toHex(c.welcome.ticket), ticketKey: toHex(ticketKey.secretKey) });
    if (user === "filler") filler = c;
    else c.terminate();
  }
  writeFileSync(credsPath, JSON.stringify(creds), { mode: 0o600 });
  chmodSync(credsPath, 0o600);

  // The filler joins and says --messages messages, at most 30 unacknowledged (under the flood burst).
  const f = filler!;
  let joined = false;
  let acked = 0;
  f.onMessage = (m) => {
    if (m.type === "history_end" && m.room === BIG) joined = true;
    else if (m.type === "ack") acked++;
    else if (m.type === "nack") throw new Error(`bench/load/abuse: filler: nack ${m.code}: ${m.message}`);
  };
  f.write(f.seal([{ type: "join", room: BIG }]));
  await f.until(() => joined, `the filler's join of ${BIG}`, 20_000);
  const text = (i: number): string => `${i} `.padEnd(textChars, "y");
  let said = 0;
  while (said < messages) {
    const batch: Message[] = [];
    while (said < messages && said - acked < 30 && batch.length < 10) batch.push({ type: "say", id: ++said, room: BIG, text: text(said) });
    if (batch.length > 0 && !(await f.writeAll(f.seal(batch), Date.now() + 30_000, () => false))) throw new Error("bench/load/abuse: filler: could not write its messages");
    await f.until(() => said - acked < 20, "the filler's acks", 30_000);
  }
  await f.until(() => acked >= messages, "the filler's last acks", 30_000);
  f.terminate();
  emit({ event: "ready", setup_ms: Math.round(performance.now() - t0) });
}

// ---------------------------------------------------------------------------
// bystander

async function bystander(): Promise<void> {
  const intervalMs = intArg(args, "interval", 250);
  const drainMs = intArg(args, "drain", 3000);
  const maxMs = intArg(args, "max-seconds", 900) * 1000;
  const c = await Conn.open("bystander", ticketLogin(readCreds().get("bystander")!));
  const due: number[] = []; // scheduled epoch times of pings not yet answered, in order
  c.onMessage = (m) => {
    if (m.type !== "pong") return;
    const t = due.shift();
    if (t !== undefined) emit({ event: "rtt", t, ms: epochNow() - t });
  };
  readCommands();
  emit({ event: "ready" });
  const start = epochNow();
  let next = start;
  const ping = encodeMessage({ type: "ping" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Each ping goes out when due (a timer per ping, not a coarse tick, so the
  // baseline is not the tick's slack); any that a late timer missed go with it.
  const tick = (): void => {
    const batch: string[] = [];
    while (next <= epochNow()) {
      due.push(next);
      batch.push(ping);
      next += intervalMs;
    }
    if (batch.length > 0 && !c.closed) c.write(c.seal(batch));
    timer = setTimeout(tick, Math.max(0, next - epochNow()));
  };
  tick();
  while (!commands.includes("stop") && epochNow() - start < maxMs && !c.closed) await sleep(10);
  clearTimeout(timer);
  const drainEnd = Date.now() + drainMs;
  while (due.length > 0 && !c.closed && Date.now() < drainEnd) await sleep(10);
  emit({ event: "done", t: epochNow(), outstanding: due, closed: c.closed });
  c.terminate();
}

// ---------------------------------------------------------------------------
// attacker

type Attack = "join" | "history" | "flood" | "flood-read" | "churn" | "relogin-say";
const ATTACKS: readonly Attack[] = ["join", "history", "flood", "flood-read", "churn", "relogin-say"];

/** A record's largest plaintext (PROTOCOL.md §3.4). */
const MAX_PLAINTEXT = MAX_FRAME - RECORD_TAG_LENGTH;

/** Messages packed in order into as few records' plaintexts as hold them. */
function pack(messages: Message[]): string[][] {
  const out: string[][] = [];
  let bytes = MAX_PLAINTEXT + 1;
  for (const m of messages) {
    const t = encodeMessage(m);
    if (bytes + 1 + t.length > MAX_PLAINTEXT) {
      out.push([]);
      bytes = -1;
    }
    out[out.length - 1]!.push(t);
    bytes += 1 + t.length;
  }
  return out;
}

/** `want` repetitions of the messages of `unit`, or as many as fit one record's plaintext (messages joined by LF). */
function fill(unit: Message[], want: number): string[] {
  const texts = unit.map(encodeMessage);
  const bytes = texts.reduce((a, t) => a + t.length + 1, 0);
  const n = Math.min(want, Math.floor((MAX_PLAINTEXT + 1) / bytes));
  return Array.from({ length: n }, () => texts).flat();
}

async function attacker(): Promise<void> {
  const attack = strArg(args, "attack") as Attack;
  if (!ATTACKS.includes(attack)) throw new Error(`bench/load/abuse: --attack must be one of ${ATTACKS.join(", ")}`);
  const seconds = intArg(args, "seconds", 30);
  const maxLogins = intArg(args, "max-logins", 1000);
  const maxRecords = intArg(args, "max-records", 100_000);
  const cred = readCreds().get("attacker")!;
  const joins = fill([{ type: "join", room: BIG }], intArg(args, "joins", 2200));
  const histories = fill([{ type: "history", room: BIG, limit: 1000 }], intArg(args, "histories", 1400));
  const churn = fill([{ type: "join", room: CHURN }, { type: "leave", room: CHURN }], Number.POSITIVE_INFINITY);
  const burst = pack([{ type: "join", room: NOISE }, ...Array.from({ length: intArg(args, "burst", 30) }, (_, i): Message => ({ type: "say", id: i + 1, room: NOISE, text: "x".repeat(MESSAGE_TEXT_MAX) }))]);
  const reading = attack === "flood-read" || attack === "churn" || attack === "relogin-say";

  let logins = 0;
  let loginFailures = 0;
  let closed = 0;
  let records = 0;
  let sent = 0;
  const conns: Conn[] = [];

  // First login: join "big" and measure the answer (the room's history).
  let c = await Conn.open("attacker", ticketLogin(cred));
  conns.push(c);
  logins++;
  let joined = false;
  let history = 0;
  c.onMessage = (m) => {
    if (m.type === "message" && m.room === BIG && m.history) history++;
    if (m.type === "history_end" && m.room === BIG) joined = true;
  };
  c.write(c.seal([{ type: "join", room: BIG }]));
  await c.until(() => joined, `the attacker's join of ${BIG}`, 20_000);
  const joinAnswer = c.received;
  c.received = 0;
  c.onMessage = () => {};
  readCommands();
  emit({ event: "ready", join_answer_bytes: joinAnswer, history });
  if (!(await waitCommand("go", 600_000))) throw new Error("bench/load/abuse: no go from the parent");

  const deadline = Date.now() + seconds * 1000;
  const stopped = (): boolean => commands.includes("stop") || Date.now() > deadline;
  const arm = (conn: Conn): void => {
    if (reading) conn.raw = true;
    else conn.pause();
  };
  arm(c);

  let requests = 0;
  const send = async (plaintext: string[]): Promise<boolean> => {
    const record = c.seal(plaintext);
    const ok = await c.writeAll(record, deadline, stopped);
    if (ok) {
      records++;
      requests += plaintext.length;
      sent += record.length;
    }
    return ok;
  };

  /** After the connection ended: logs in again while attempts are left; false if it could not. */
  const relogin = async (): Promise<boolean> => {
    c.terminate();
    while (!stopped() && logins + loginFailures < maxLogins) {
      try {
        c = await Conn.open("attacker", ticketLogin(cred), Math.max(1, deadline - Date.now()));
        logins++;
        conns.push(c);
        arm(c);
        return true;
      } catch {
        loginFailures++;
        await sleep(100);
      }
    }
    return false;
  };

  if (attack === "join" || attack === "history") {
    await send(attack === "join" ? joins : histories);
    while (!stopped()) await sleep(10);
  } else if (attack === "relogin-say") {
    // Each session: the message burst, then a clean end (so the server reads it all) and a new login.
    while (!stopped() && records < maxRecords) {
      for (const plaintext of burst) if (!(await send(plaintext))) break;
      c.end();
      if (!(await relogin())) break;
    }
  } else {
    while (!stopped() && records < maxRecords) {
      const plaintext = attack === "churn" ? churn : records % 2 === 0 ? joins : histories;
      if (await send(plaintext)) {
        await sleep(0); // let the socket's reads (and the parent's "stop") in
        continue;
      }
      if (stopped() || !c.closed) break;
      // The server closed the connection: log in again, as an attacker would.
      closed++;
      if (!(await relogin())) break;
    }
  }
  const received = conns.reduce((a, k) => a + k.received, 0);
  emit({ event: "done", records, requests, sent, received, logins, closed, login_failures: loginFailures });
  c.terminate();
}

await runGenerator(async () => {
  if (role === "setup") await setup();
  else if (role === "bystander") await bystander();
  else if (role === "attacker") await attacker();
  else throw new Error(`bench/load/abuse: unknown role ${role ?? "(none)"}: setup, bystander or attacker`);
});
