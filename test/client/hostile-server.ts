/**
 * A hostile chat server for the client's tests, in process on 127.0.0.1
 * port 0. It speaks the real protocol with the real code (ServerHandshake,
 * SecureChannel, framing) and a host key of its own, takes any login with a
 * `welcome`, and then does with each connection whatever the test says:
 * answer politely, flood, end the session, close. Its own output goes to the
 * socket as fast as the socket takes it and waits for `drain` otherwise, so
 * a client that stops reading holds it back (`blocked`).
 *
 * `install` puts what `login` would have left on a client machine (the pinned
 * host key and a ticket) into a $SECURECHAT_HOME, so the real client — a
 * ChatClient, or `securechat chat` as a subprocess — connects without asking.
 *
 * Every wait is bounded; every socket is closed by its own handle.
 */
import type { Socket, TCPSocketListener } from "bun";
import { parseServerAddress } from "../../src/client/connection.ts";
import { addKnownHost } from "../../src/client/known_hosts.ts";
import { saveTicket } from "../../src/client/tickets.ts";
import { type Ed25519KeyPair, ed25519Generate, randomBytes } from "../../src/crypto/index.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder } from "../../src/protocol/framing.ts";
import { ServerHandshake } from "../../src/protocol/handshake.ts";
import { MAX_FRAME, MESSAGE_TEXT_MAX } from "../../src/protocol/limits.ts";
import { type Message, type MessageType, decodeMessage, encodeMessage } from "../../src/protocol/messages.ts";
import { cleartextFrame, sleep } from "../server/helpers.ts";

/** One logged-in connection, from the server's side. */
export class HostileConn {
  /** Every message the client sent after its login, in order. */
  readonly received: Message[] = [];
  /** Called for each message as it arrives (after it is in `received`). */
  onMessage: (m: Message) => void = () => {};
  /** Bytes written to the socket (taken by the kernel). */
  written = 0;
  /** Says and dms `polite` has acknowledged (the seq of its last ack). */
  acked = 0;
  closedAt: number | null = null;
  #queue: Uint8Array[] = [];
  #drained: (() => void) | null = null;

  constructor(
    readonly socket: Socket<ConnState>,
    readonly channel: SecureChannel,
    readonly user: string,
  ) {}

  /** The socket has not taken everything yet: the client is not reading. */
  get blocked(): boolean {
    return this.#queue.length > 0;
  }

  of<T extends MessageType>(type: T): Message<T>[] {
    return this.received.filter((m): m is Message<T> => m.type === type);
  }

  /** Seals `messages` (or pre-encoded JSON texts) into one record and writes it, queueing what the socket does not take. */
  send(...messages: (Message | string)[]): void {
    if (this.closedAt !== null) return;
    const frame = this.channel.seal(messages);
    if (this.#queue.length > 0) {
      this.#queue.push(frame);
      return;
    }
    const n = Math.max(0, this.socket.write(frame));
    this.written += n;
    if (n < frame.length) this.#queue.push(frame.subarray(n));
  }

  /** Called from the socket's drain handler. */
  drain(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const n = Math.max(0, this.socket.write(head));
      this.written += n;
      if (n < head.length) {
        this.#queue[0] = head.subarray(n);
        return;
      }
      this.#queue.shift();
    }
    const d = this.#drained;
    this.#drained = null;
    d?.();
  }

  /** Resolves once the socket has taken everything (or the connection is gone). */
  flushed(): Promise<void> {
    if (this.#queue.length === 0 || this.closedAt !== null) return Promise.resolve();
    return new Promise<void>((resolve) => (this.#drained = resolve));
  }

  closed(): void {
    this.closedAt ??= Date.now();
    const d = this.#drained;
    this.#drained = null;
    d?.();
  }

  /** Waits (bounded) until a message matching `pred` has arrived. */
  async until(what: string, pred: (m: Message) => boolean, timeoutMs = 10_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.received.find(pred);
      if (m) return m;
      if (this.closedAt !== null) throw new Error(`test: the client closed before ${what}`);
      if (Date.now() > deadline) throw new Error(`test: no ${what} within ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  /**
   * Sends records made by `next` (null: done) as fast as the client takes
   * them, waiting for drain whenever the socket is full; stops early if the
   * connection closes or `stop()` returns true.
   */
  async flood(next: (i: number) => (Message | string)[] | null, stop: () => boolean = () => false): Promise<number> {
    let i = 0;
    for (;;) {
      if (this.closedAt !== null || stop()) return i;
      const msgs = next(i);
      if (!msgs) return i;
      this.send(...msgs);
      i++;
      if (this.blocked) await this.flushed();
      else if (i % 16 === 0) await sleep(0); // let the event loop (and an in-process client) run
    }
  }

  /** Ends the connection (FIN); what is still queued is dropped. */
  close(): void {
    this.socket.end();
  }
}

/** Records for `flood`: each as many room messages of MESSAGE_TEXT_MAX bytes as fit in a frame, numbered 1, 2, 3, … */
export class MessageFlood {
  /** The last message number made. */
  seq = 0;
  readonly #text = "x".repeat(MESSAGE_TEXT_MAX);

  constructor(readonly room = "lobby") {}

  readonly next = (): string[] => {
    const msgs: string[] = [];
    let size = 0;
    for (;;) {
      const m = encodeMessage({ type: "message", room: this.room, seq: this.seq + 1, ts: Date.now(), from: "mallory", text: this.#text });
      if (size + m.length + 1 > MAX_FRAME - 1024) return msgs;
      this.seq++;
      msgs.push(m);
      size += m.length + 1;
    }
  };
}

interface ConnState {
  decoder: FrameDecoder;
  hs: ServerHandshake;
  channel: SecureChannel | null;
  sessionId: Uint8Array | null;
  conn: HostileConn | null;
}

/** The polite part of a server: join → room (the user alone) and history_end; unread → no rooms; say/dm → ack; bye → bye and close. */
export function polite(c: HostileConn, m: Message): void {
  switch (m.type) {
    case "join":
      c.send({ type: "room", room: m.room, users: [c.user], seq: 0 }, { type: "history_end", room: m.room, count: 0 });
      break;
    case "unread":
      c.send({ type: "unread_list", rooms: [] });
      break;
    case "say":
    case "dm":
      c.send({ type: "ack", id: m.id, seq: ++c.acked, ts: Date.now() });
      break;
    case "bye":
      c.send({ type: "bye", reason: "goodbye" });
      c.close();
      break;
    case "ping":
      c.send({ type: "pong" });
      break;
  }
}

export interface HostileOptions {
  /** What to do with each message of the n-th connection (1-based, counting logins); by default `polite`. */
  message?: (c: HostileConn, m: Message, n: number) => void;
  /** Refuse the n-th connection before the handshake with this cleartext error code (e.g. server_busy). */
  refuse?: (n: number) => string | null;
}

export class HostileServer {
  readonly hostKey: Ed25519KeyPair = ed25519Generate();
  readonly conns: HostileConn[] = [];
  /** TCP connections accepted, refused ones included. */
  accepted = 0;
  /** What went wrong while handling a client's frames (each such connection is reset). */
  readonly errors: unknown[] = [];
  #listener!: TCPSocketListener<ConnState>;

  private constructor(readonly opts: HostileOptions) {}

  static start(opts: HostileOptions = {}): HostileServer {
    const s = new HostileServer(opts);
    s.#listener = Bun.listen<ConnState>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (socket) => s.#open(socket),
        data: (socket, chunk) => s.#data(socket, chunk),
        drain: (socket) => socket.data.conn?.drain(),
        close: (socket) => socket.data?.conn?.closed(),
        error: (socket) => socket.data?.conn?.closed(),
      },
    });
    return s;
  }

  get port(): number {
    return this.#listener.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Pins this server's host key and stores a ticket for `user` in $SECURECHAT_HOME (as it is now). */
  install(user: string): void {
    const id = parseServerAddress(this.address).id;
    addKnownHost(id, this.hostKey.publicKey);
    saveTicket(id, user, { ticket: randomBytes(32), expiresAt: Date.now() + 3_600_000, key: ed25519Generate() });
  }

  #open(socket: Socket<ConnState>): void {
    const n = ++this.accepted;
    socket.data = { decoder: new FrameDecoder(MAX_FRAME), hs: new ServerHandshake({ hostKey: this.hostKey }), channel: null, sessionId: null, conn: null };
    const code = this.opts.refuse?.(n) ?? null;
    if (code) {
      socket.write(cleartextFrame({ type: "error", code, message: "hostile server: go away" }));
      socket.end();
    }
  }

  #data(socket: Socket<ConnState>, chunk: Uint8Array): void {
    try {
      this.#frames(socket, chunk);
    } catch (e) {
      // A bug in the test's script (or a client that broke the protocol): kept for the test to see.
      this.errors.push(e);
      socket.terminate();
    }
  }

  #frames(socket: Socket<ConnState>, chunk: Uint8Array): void {
    const st = socket.data;
    for (const body of st.decoder.push(chunk)) {
      if (!st.channel) {
        const { reply, keys } = st.hs.receiveHello(decodeMessage(body));
        socket.write(cleartextFrame(reply));
        st.channel = new SecureChannel(keys, "server", MAX_FRAME);
        st.sessionId = keys.sessionId;
        continue;
      }
      const msgs = st.channel.open(body);
      if (!st.conn) {
        // Any login will do: this server checks nothing.
        const login = msgs[0];
        if (login?.type !== "login" && login?.type !== "register") throw new Error(`test: expected a login, got ${login?.type}`);
        st.conn = new HostileConn(socket, st.channel, login.user);
        this.conns.push(st.conn);
        st.conn.send({ type: "welcome", user: login.user, session_id: st.sessionId! });
        const conn = st.conn;
        const n = this.conns.length;
        const message = this.opts.message ?? polite;
        conn.onMessage = (m) => message(conn, m, n);
        continue;
      }
      for (const m of msgs) {
        st.conn.received.push(m);
        st.conn.onMessage(m);
      }
    }
  }

  /** Waits (bounded) for the n-th logged-in connection (1-based). */
  async conn(n = 1, timeoutMs = 10_000): Promise<HostileConn> {
    const deadline = Date.now() + timeoutMs;
    while (this.conns.length < n) {
      if (Date.now() > deadline) throw new Error(`test: no connection ${n} within ${timeoutMs} ms`);
      await sleep(5);
    }
    return this.conns[n - 1]!;
  }

  stop(): void {
    for (const c of this.conns) c.socket.terminate();
    this.#listener.stop(true);
  }
}
