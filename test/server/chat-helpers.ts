/**
 * Helpers for the chat tests.
 *
 * Core (no sockets): `FakeMember` collects what the chat core posts to one
 * connection (decoded and validated, as a client would), `Clock` is an
 * injected `now` that moves with Bun's fake timers, `rng` a seeded PRNG.
 *
 * Net (127.0.0.1, port 0): accounts are registered once per file over the
 * raw protocol with a ticket key (one argon2id each, no scrypt), into a seed
 * data directory; each describe starts its own server on a copy of it. A
 * `Machine` is one client home ($SECURECHAT_HOME) holding the pinned host key
 * and tickets; `connectClient` starts a real ChatClient from it, resuming
 * with the ticket. `Peer` is a raw protocol client that logs in with a
 * ticket, records every record the server sends (to count coalescing), can
 * refuse to answer pings, and can stop reading (`pause`) so the kernel
 * buffers fill.
 *
 * Every wait is bounded; every server, client and socket is closed by its own
 * handle.
 */
import { cpSync } from "node:fs";
import type { Socket } from "bun";
import { jest } from "bun:test";
import { utf8 } from "../../src/bytes.ts";
import { type ChatEvent, ChatClient, type ChatSink } from "../../src/client/chat.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { addKnownHost, findKnownHost } from "../../src/client/known_hosts.ts";
import { saveTicket } from "../../src/client/tickets.ts";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { SecureChatError } from "../../src/errors.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import type { SessionKeys } from "../../src/protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { type Message, type MessageType, decodeMessage } from "../../src/protocol/messages.ts";
import type { Member } from "../../src/server/chat.ts";
import type { ServerOptions } from "../../src/server/server.ts";
import { type LogEvent, type TestServer, cleartextFrame, freshPath, rawSession, sleep, startServer } from "./helpers.ts";

// ---------------------------------------------------------------------------
// Core

/** A connection as the chat core sees it; keeps what it was posted, decoded and validated. */
export class FakeMember implements Member {
  readonly inbox: Message[] = [];
  /** Set by a test to play a connection whose output has not drained. */
  congested = false;
  /** The device it logged in from (read markers are per device); none: all of a user's fakes are one device. */
  device: Uint8Array | null = null;

  constructor(
    readonly user: string,
    readonly label: string = user,
  ) {}

  /** A session id (16 bytes, base64) made from the label, as a room change records it. */
  get session(): string {
    return Buffer.from(this.label.padEnd(16, ".").slice(0, 16)).toString("base64");
  }

  /** What postWhen holds back, as the server's Connection does: a slot per pending message, then what followed. */
  #waiting: { json: string | null }[] | null = null;

  post(json: string): void {
    if (this.#waiting) {
      this.#waiting.push({ json });
      return;
    }
    // Validating catches anything a real client would refuse (unknown field, bad value).
    this.inbox.push(decodeMessage(utf8(json)));
  }

  postWhen(ready: Promise<void>, ok: () => string, failed: () => string): void {
    const slot: { json: string | null } = { json: null };
    (this.#waiting ??= []).push(slot);
    const release = (json: string): void => {
      slot.json = json;
      const w = this.#waiting!;
      while (w.length > 0 && w[0]!.json !== null) this.inbox.push(decodeMessage(utf8(w.shift()!.json!)));
      if (w.length === 0) this.#waiting = null;
    };
    ready.then(
      () => release(ok()),
      () => release(failed()),
    );
  }

  /** Everything posted since the last take. */
  take(): Message[] {
    return this.inbox.splice(0);
  }

  of<T extends MessageType>(type: T): Message<T>[] {
    return this.inbox.filter((m): m is Message<T> => m.type === type);
  }
}

/**
 * An injected clock that moves together with Bun's fake timers, one
 * millisecond at a time, so a timer firing at t sees now() === t.
 */
export class Clock {
  t: number;

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  readonly now = (): number => this.t;

  /** Advances the clock; with fake timers on, fires due timers at their own time. */
  advance(ms: number): void {
    for (let i = 0; i < ms; i++) {
      this.t += 1;
      if (jest.isFakeTimers()) jest.advanceTimersByTime(1);
    }
  }
}

/** mulberry32 choices (test/rng.ts), so a failing interleaving can be replayed. */
export { rng } from "../rng.ts";

// ---------------------------------------------------------------------------
// Accounts, seeded once per file

export interface Cred {
  user: string;
  identity: Ed25519KeyPair;
  ticket: Uint8Array;
  ticketKey: Ed25519KeyPair;
  expiresAt: number;
}

export interface Seed {
  dataDir: string;
  creds: Map<string, Cred>;
}

/** Registers over the raw protocol, asking for a ticket: one argon2id on the server, nothing slow on the client. */
export async function registerWithTicket(port: number, user: string, password: string): Promise<Cred> {
  const identity = ed25519Generate();
  const ticketKey = ed25519Generate();
  const s = await rawSession(port);
  try {
    s.send({ type: "register", user, identity_key: identity.publicKey, sig: s.sign(identity), password, ticket_key: ticketKey.publicKey });
    const m = await s.receive();
    if (m.type !== "welcome" || !m.ticket || m.ticket_expires === undefined) throw new Error(`test: register ${user} failed: ${JSON.stringify(m)}`);
    return { user, identity, ticket: m.ticket, ticketKey, expiresAt: m.ticket_expires };
  } finally {
    s.close();
  }
}

/** A data directory with these accounts (and a host key); the server that made it is stopped. */
export async function seedAccounts(users: readonly string[]): Promise<Seed> {
  const t = await startServer();
  try {
    const creds = await Promise.all(users.map((u) => registerWithTicket(t.port, u, `${u.length}-footed heron walks the long grey pier at dawn`)));
    return { dataDir: t.dataDir, creds: new Map(creds.map((c) => [c.user, c])) };
  } finally {
    await t.server.stop();
  }
}

/** A server on a private copy of the seed's data directory: the accounts and tickets exist already. */
export async function serverFrom(seed: Seed, overrides: Partial<ServerOptions> & { events?: LogEvent[] } = {}): Promise<TestServer> {
  const dataDir = freshPath("data");
  cpSync(seed.dataDir, dataDir, { recursive: true });
  return startServer({ ...overrides, dataDir });
}

export function cred(seed: Seed, user: string): Cred {
  const c = seed.creds.get(user);
  if (!c) throw new Error(`test: no account ${user} in the seed`);
  return c;
}

// ---------------------------------------------------------------------------
// Client machines and ChatClient

/** Collects every event a ChatClient reports. */
export class Collector implements ChatSink {
  readonly events: ChatEvent[] = [];
  /** When each event arrived (Date.now()), parallel to `events`. */
  readonly at: number[] = [];

  event(e: ChatEvent): void {
    this.events.push(e);
    this.at.push(Date.now());
  }

  of<T extends ChatEvent["type"]>(type: T): Extract<ChatEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<ChatEvent, { type: T }> => e.type === type);
  }

  /** Live room messages (not history) as "from: text", optionally of one room. */
  said(room?: string): string[] {
    return this.of("message")
      .filter((m) => !m.history && (room === undefined || m.room === room))
      .map((m) => `${m.from}: ${m.text}`);
  }

  async until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-5), bigSafe)}`);
      }
      await sleep(5);
    }
  }

  /** Waits for the end of the welcome into `room` (the `recorded` notice follows history_end). */
  async inRoom(room: string, timeoutMs = 5000): Promise<void> {
    await this.until(`the welcome into ${room}`, () => this.of("history_end").some((h) => h.room === room), timeoutMs);
  }
}

function bigSafe(_k: string, v: unknown): unknown {
  return v instanceof Uint8Array ? `<${v.length} bytes>` : v;
}

/** One simulated client machine: its own $SECURECHAT_HOME. */
export interface Machine {
  name: string;
  home: string;
}

export function machine(name: string): Machine {
  return { name, home: freshPath(`home-${name}`) };
}

/** Runs `fn` with $SECURECHAT_HOME pointing at the machine, then puts it back. */
export async function onMachine<T>(m: Machine, fn: () => Promise<T>): Promise<T> {
  const before = process.env.SECURECHAT_HOME;
  process.env.SECURECHAT_HOME = m.home;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.SECURECHAT_HOME;
    else process.env.SECURECHAT_HOME = before;
  }
}

/** Pins the server's host key and stores the user's ticket on the machine, as `login` would have. */
export function install(t: TestServer, c: Cred): void {
  const id = parseServerAddress(t.address).id;
  if (!findKnownHost(id)) addKnownHost(id, t.server.hostKey.publicKey);
  saveTicket(id, c.user, { ticket: c.ticket, expiresAt: c.expiresAt, key: c.ticketKey });
}

/** A ChatClient of `c` on machine `m`, started (ticket login, join sent) and in `room`. */
export async function connectClient(t: TestServer, m: Machine, c: Cred, room: string, sink = new Collector()): Promise<{ client: ChatClient; sink: Collector }> {
  const client = await onMachine(m, async () => {
    install(t, c);
    const client = new ChatClient(
      {
        addr: parseServerAddress(t.address),
        user: c.user,
        trust: { acceptNew: false },
        room,
        password: () => Promise.reject(new Error("test: the ticket should have been enough")),
        reconnect: false,
      },
      sink,
    );
    await client.start();
    return client;
  });
  await sink.inRoom(room);
  return { client, sink };
}

/** quit() with a bound, for finally blocks. */
export async function quitAll(...clients: (ChatClient | undefined)[]): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      if (!c) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([c.quit(), new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
    }),
  );
}

// ---------------------------------------------------------------------------
// Raw peers

/**
 * A raw protocol client after a ticket login. Every record the server sends
 * is kept as the array of messages it carried, so tests can count records.
 */
export class Peer {
  /** Records received after `welcome`, each the messages it carried. */
  readonly records: Message[][] = [];
  /** Answer the server's pings (a live client) or not (a dead one). */
  answerPings = true;
  readonly #decoder = new FrameDecoder(MAX_FRAME);
  readonly #cleartext: Uint8Array[] = [];
  #socket: Socket<undefined> | null = null;
  #channel: SecureChannel | null = null;
  #keys: SessionKeys | null = null;
  #error: Error | null = null;
  #closedAt: number | null = null;
  #closed!: Promise<void>;

  private constructor() {}

  /** Connects, runs the handshake and logs in with the user's ticket. */
  static async login(port: number, c: Cred, timeoutMs = 5000): Promise<Peer> {
    const p = new Peer();
    let closed!: () => void;
    p.#closed = new Promise<void>((r) => (closed = r));
    const onClose = () => {
      if (p.#closedAt === null) p.#closedAt = Date.now();
      closed();
    };
    p.#socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => p.#receive(chunk),
        close: onClose,
        end: (s) => {
          s.end();
          onClose();
        },
        error: onClose,
        connectError: onClose,
      },
    });
    try {
      const hs = new ClientHandshake();
      p.#socket.write(cleartextFrame(hs.hello()));
      await p.#until("server_hello", () => p.#cleartext.length > 0, timeoutMs);
      const keys = hs.receive(decodeMessage(p.#cleartext.shift()!));
      p.#keys = keys;
      p.#channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
      p.send({ type: "login", user: c.user, sig: signClientAuth(c.ticketKey.secretKey, keys), ticket: c.ticket });
      await p.#until("welcome", () => p.records.length > 0, timeoutMs);
      const [answer] = p.records.splice(0, 1)[0]!;
      if (answer?.type !== "welcome") throw new Error(`test: ticket login of ${c.user} failed: ${JSON.stringify(answer)}`);
      p.#channel.sealer.maxFrame = MAX_FRAME;
      return p;
    } catch (e) {
      p.destroy();
      throw e;
    }
  }

  #receive(chunk: Uint8Array): void {
    try {
      for (const body of this.#decoder.push(chunk)) {
        if (!this.#channel) {
          this.#cleartext.push(body);
          continue;
        }
        const msgs = this.#channel.open(body);
        this.records.push(msgs);
        if (this.answerPings && msgs.some((m) => m.type === "ping") && !this.#channel.sealer.closed) this.send({ type: "pong" });
      }
    } catch (e) {
      this.#error ??= e as Error;
    }
  }

  async #until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.#error) throw this.#error;
      if (this.#closedAt !== null) throw new SecureChatError("connection_closed", `test: closed while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`test: timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(5);
    }
  }

  /** Every message received after welcome, in order. */
  get messages(): Message[] {
    return this.records.flat();
  }

  of<T extends MessageType>(type: T): Message<T>[] {
    return this.messages.filter((m): m is Message<T> => m.type === type);
  }

  /** Any error opening a record (a bad record would be a server bug). */
  get error(): Error | null {
    return this.#error;
  }

  get isClosed(): boolean {
    return this.#closedAt !== null;
  }

  get closedAt(): number | null {
    return this.#closedAt;
  }

  send(...messages: Message[]): void {
    this.#socket?.write(this.#channel!.seal(messages));
  }

  /** Waits until `cond` holds over what has arrived; throws after `timeoutMs`. */
  async until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.#error) throw this.#error;
      if (Date.now() > deadline) throw new Error(`test: timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(5);
    }
  }

  /** Joins and waits for the welcome into the room. */
  async join(room: string): Promise<void> {
    this.send({ type: "join", room });
    await this.until(`the welcome into ${room}`, () => this.of("history_end").some((h) => h.room === room));
  }

  /** Stops reading from the socket: what the server sends piles up in the kernel, then in the server. */
  pause(): void {
    this.#socket?.pause();
  }

  resume(): void {
    this.#socket?.resume();
  }

  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    let t: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => (t = setTimeout(() => r(false), timeoutMs)));
    try {
      return await Promise.race([this.#closed.then(() => true), late]);
    } finally {
      clearTimeout(t);
    }
  }

  get keys(): SessionKeys | null {
    return this.#keys;
  }

  close(): void {
    this.#socket?.end();
  }

  destroy(): void {
    this.#socket?.terminate();
  }
}
