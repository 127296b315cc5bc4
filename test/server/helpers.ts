/**
 * Helpers for the in-process server tests: a server on 127.0.0.1 port 0
 * with a capturing logger, fresh temporary directories (client homes, data
 * dirs), and a raw protocol client that speaks the handshake itself, so tests
 * can send what the real client never would and see exactly what comes back.
 *
 * Every wait here is bounded; every socket and server is closed by its own
 * handle.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../../src/errors.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import type { SessionKeys } from "../../src/protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessageBytes } from "../../src/protocol/messages.ts";
import type { LogFields, Logger } from "../../src/log.ts";
import { ChatServer, type ServerOptions } from "../../src/server/server.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";

// ---------------------------------------------------------------------------
// Directories and environment

const ROOT = mkdtempSync(join(tmpdir(), "securechat-server-test-"));
process.on("exit", () => rmSync(ROOT, { recursive: true, force: true }));

let dirs = 0;
/** A fresh, empty directory name under this process's temporary root (not created). */
export function freshPath(name: string): string {
  return join(ROOT, `${name}-${++dirs}`);
}

const ORIGINAL_HOME = process.env.SECURECHAT_HOME;

/** Points $SECURECHAT_HOME at a fresh directory: a separate machine for the client flows. */
export function useHome(name: string): string {
  const home = freshPath(`home-${name}`);
  process.env.SECURECHAT_HOME = home;
  return home;
}

/** Puts $SECURECHAT_HOME back as the preload set it. */
export function restoreHome(): void {
  if (ORIGINAL_HOME === undefined) delete process.env.SECURECHAT_HOME;
  else process.env.SECURECHAT_HOME = ORIGINAL_HOME;
}

// ---------------------------------------------------------------------------
// Server

export interface LogEvent {
  level: "info" | "warn";
  event: string;
  fields: LogFields;
}

export interface TestServer {
  server: ChatServer;
  dataDir: string;
  events: LogEvent[];
  log: Logger;
  port: number;
  /** `127.0.0.1:PORT`, as the client writes it. */
  address: string;
}

/** No penalties unless a test asks for them: failures from 127.0.0.1 add up across tests. */
export const NO_PENALTIES = { freeFailures: 1_000_000, baseMs: 1, maxMs: 1, forgetMs: 60_000, maxSources: 16 };

/** No per-source or per-user quotas unless a test asks for them: every test client is 127.0.0.1. */
export const NO_QUOTAS = { maxConnectionsPerAddress: 1e9, maxConnectionsPerUser: 1e9, logins: { rate: 1e9, burst: 1e9 } };

export async function startServer(overrides: Partial<ServerOptions> & { dataDir?: string; events?: LogEvent[] } = {}): Promise<TestServer> {
  const { events = [], dataDir = freshPath("data"), ...rest } = overrides;
  const log: Logger = {
    info: (event, fields = {}) => void events.push({ level: "info", event, fields }),
    warn: (event, fields = {}) => void events.push({ level: "warn", event, fields }),
  };
  // Loaded here as serve loads it: the server is handed the key, never reads it.
  // port: 0 (any free one) unless a test restarts a server where it was.
  const server = await ChatServer.start({ penalties: NO_PENALTIES, ...NO_QUOTAS, ...rest, host: "127.0.0.1", port: rest.port ?? 0, dataDir, log }, loadOrCreateHostKey(dataDir));
  return { server, dataDir, events, log, port: server.port, address: `127.0.0.1:${server.port}` };
}

/**
 * For a test file that starts servers as it goes: `startServer`, each
 * stopped after the file's last test (call at the top level of the file).
 */
export function serversStoppedAfterAll(): (opts?: Partial<ServerOptions>) => Promise<TestServer> {
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const t of servers) await t.server.stop();
  });
  return async (opts = {}) => {
    const t = await startServer(opts);
    servers.push(t);
    return t;
  };
}

// ---------------------------------------------------------------------------
// Waiting

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `stepMs` until it holds; throws after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000, stepMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------------------
// Raw TCP with frames

/**
 * One TCP connection that writes whatever it is given and decodes the
 * server's frames (up to the post-login limit). `next()` yields frame
 * bodies in order and rejects with `connection_closed` once the server has
 * closed and every frame has been read.
 */
export class RawConn {
  readonly #decoder = new FrameDecoder(MAX_FRAME);
  readonly #frames: Uint8Array[] = [];
  #waiter: (() => void) | null = null;
  #socket: Socket<undefined> | null = null;
  #closedAt: number | null = null;
  #closed!: Promise<void>;
  #error: Error | null = null;
  readonly openedAt = Date.now();

  static async open(port: number): Promise<RawConn> {
    const c = new RawConn();
    let closed!: () => void;
    c.#closed = new Promise<void>((r) => (closed = r));
    const onClose = () => {
      if (c.#closedAt === null) c.#closedAt = Date.now();
      closed();
      c.#wake();
    };
    c.#socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, chunk) {
          try {
            for (const body of c.#decoder.push(chunk)) c.#frames.push(body);
          } catch (e) {
            c.#error = e as Error;
          }
          c.#wake();
        },
        close: onClose,
        end: (s) => {
          s.end();
          onClose();
        },
        error: onClose,
        connectError: onClose,
      },
    });
    return c;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  get isClosed(): boolean {
    return this.#closedAt !== null;
  }

  /** When the server's close (FIN or reset) arrived. */
  get closedAt(): number | null {
    return this.#closedAt;
  }

  write(bytes: Uint8Array): void {
    this.#socket?.write(bytes);
  }

  /** The next frame body from the server. */
  async next(timeoutMs = 10_000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#error) throw this.#error;
      const f = this.#frames.shift();
      if (f) return f;
      if (this.isClosed) throw new SecureChatError("connection_closed", "test: server closed the connection");
      const left = deadline - Date.now();
      if (left <= 0) throw new SecureChatError("test_timeout", `test: no frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** The next frame as a cleartext message (before the keys exist). */
  async nextCleartext(timeoutMs?: number): Promise<Message> {
    return decodeMessage(await this.next(timeoutMs));
  }

  /** Resolves true once the server has closed, false after `timeoutMs`. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    let t: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((r) => (t = setTimeout(() => r(false), timeoutMs)));
    try {
      return await Promise.race([this.#closed.then(() => true), timedOut]);
    } finally {
      clearTimeout(t);
    }
  }

  close(): void {
    this.#socket?.end();
  }

  destroy(): void {
    this.#socket?.terminate();
  }
}

/** Sends a cleartext message as one frame. */
export function cleartextFrame(m: Message): Uint8Array {
  return encodeFrame(encodeMessageBytes(m), MAX_FRAME_PRELOGIN);
}

// ---------------------------------------------------------------------------
// Raw protocol sessions

/** An established session driven by hand: the client side of PROTOCOL.md §4 without the host-key pinning. */
export class RawSession {
  constructor(
    readonly conn: RawConn,
    readonly keys: SessionKeys,
    readonly channel: SecureChannel,
  ) {}

  send(...messages: Message[]): void {
    this.conn.write(this.channel.seal(messages));
  }

  /** The next message from the server (one per record, as the server sends them). */
  async receive(timeoutMs = 10_000): Promise<Message> {
    const msgs = this.channel.open(await this.conn.next(timeoutMs));
    if (msgs.length !== 1) throw new Error(`test: expected one message per record, got ${msgs.length}`);
    return msgs[0]!;
  }

  /** Signs this session's handshake hash and challenge, as register and login must. */
  sign(identity: Ed25519KeyPair): Uint8Array {
    return signClientAuth(identity.secretKey, this.keys);
  }

  close(): void {
    this.channel.close();
    this.conn.close();
  }
}

/** Connects and runs the handshake up to the point where the client may send register or login. */
export async function rawSession(port: number): Promise<RawSession> {
  const conn = await RawConn.open(port);
  try {
    const hs = new ClientHandshake();
    conn.write(cleartextFrame(hs.hello()));
    const keys = hs.receive(decodeMessage(await conn.next()));
    return new RawSession(conn, keys, new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN));
  } catch (e) {
    conn.destroy();
    throw e;
  }
}

/** Every message the server sends on `s` until `pred` matches one (returned with all seen), or the connection closes or time runs out (match null). */
export async function untilMessage(s: RawSession, pred: (m: Message) => boolean, timeoutMs = 8000): Promise<{ match: Message | null; seen: Message[] }> {
  const seen: Message[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let msgs: Message[];
    try {
      msgs = s.channel.open(await s.conn.next(Math.max(1, deadline - Date.now())));
    } catch {
      return { match: null, seen };
    }
    for (const m of msgs) {
      seen.push(m);
      if (pred(m)) return { match: m, seen };
    }
  }
}

/** What a login attempt came to: `welcome`, or the error code and message. */
export interface Outcome {
  type: string;
  code?: string;
  message?: string;
  msg: Message;
}

export function outcome(m: Message): Outcome {
  return m.type === "error" ? { type: "error", code: m.code, message: m.message, msg: m } : { type: m.type, msg: m };
}

export interface RawUser {
  user: string;
  password: string;
  identity: Ed25519KeyPair;
}

/** Registers over the raw protocol (one argon2id hash on the server, no scrypt on the client). */
export async function registerRaw(port: number, user: string, password: string): Promise<RawUser> {
  const identity = ed25519Generate();
  const s = await rawSession(port);
  try {
    s.send({ type: "register", user, identity_key: identity.publicKey, sig: s.sign(identity), password });
    const m = await s.receive();
    if (m.type !== "welcome") throw new Error(`test: register ${user} failed: ${JSON.stringify(outcome(m).code)} ${outcome(m).message}`);
  } finally {
    s.close();
  }
  return { user, password, identity };
}

/** One password login attempt on `s`; `signer` defaults to the user's identity key. */
export async function passwordLogin(s: RawSession, user: string, password: string, signer: Ed25519KeyPair, ticketKey?: Uint8Array): Promise<Outcome> {
  s.send({ type: "login", user, sig: s.sign(signer), password, ...(ticketKey ? { ticket_key: ticketKey } : {}) });
  return outcome(await s.receive());
}

/** One ticket login attempt on `s`, signed by `signer` (the ticket key, if honest). */
export async function ticketLogin(s: RawSession, user: string, ticket: Uint8Array, signer: Ed25519KeyPair): Promise<Outcome> {
  s.send({ type: "login", user, sig: s.sign(signer), ticket });
  return outcome(await s.receive());
}

/** What a client flow was refused with: the server's code when it refused, else the local error's code; "no error" if it was not. */
export async function refusedCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isSecureChatError(e) ? String(e.detail?.refusal ?? e.code) : String(e);
  }
  return "no error";
}

/** Expects `p` to reject and returns what it rejected with. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("test: expected a rejection");
}

/** File mode bits as an octal string, e.g. "600". */
export function modeOf(path: string): string {
  return (statSync(path).mode & 0o777).toString(8);
}
