/**
 * The chat client's engine, shared by the interactive and the scripted
 * front ends: logs in (ticket, else password), joins the first room, turns
 * input lines into requests, and reports every event to a sink.
 *
 * Nothing is lost silently: every say/dm gets an id and stays "pending"
 * until the server's ack or nack; at most WINDOW are pending at once (so a
 * fast script never outruns the server's flood queue); leaving waits for
 * every pending ack (bounded), and the exit status says whether any line
 * went unacknowledged.
 */
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { hasControl } from "../text.ts";
import { MESSAGE_TEXT_MAX } from "../protocol/limits.ts";
import type { Message } from "../protocol/messages.ts";
import { type AccountOptions, login, resumeWithTicket } from "./account.ts";
import type { ClientSession } from "./connection.ts";
import { isAuthFailure, isHostKeyFailure } from "./failures.ts";
import { DEFAULT_TRANSCRIPT_MAX, TranscriptFile } from "./transcriptfile.ts";

/** Requests in flight before the client waits for acks. */
export const WINDOW = 32;
/** How long leaving waits for outstanding acks. */
export const DRAIN_MS = 15_000;

export type LocalEvent =
  | { type: "connected"; server: string; user: string; session: string }
  | { type: "disconnected"; reason: string }
  | { type: "reconnecting"; in_ms: number; attempt: number }
  | { type: "sent"; id: number; room?: string; to?: string; text: string; action?: boolean; queued?: true }
  /** A line that will never get an ack. */
  | { type: "unsent"; id: number; reason: string }
  /** The room plain lines go to changed. */
  | { type: "current"; room: string }
  | { type: "local"; text: string };

export type ChatEvent = Message | LocalEvent;

export interface ChatSink {
  event(e: ChatEvent): void;
  /**
   * Null while the sink can take more events; otherwise a promise that
   * resolves once it can. Meanwhile the client reads nothing from the
   * server, so a slow reader of the output holds the server back instead
   * of filling this process's memory.
   */
  congested?(): Promise<void> | null;
}

export interface ChatOptions extends AccountOptions {
  room: string;
  /** Asks for the password when there is no usable ticket. */
  password: () => Promise<string>;
  /** Appends the user's own view as JSON lines (chat --transcript). */
  transcriptFile?: string;
  /** The most bytes the transcript file may hold (chat --transcript-max); DEFAULT_TRANSCRIPT_MAX by default. */
  transcriptMax?: number;
  /** Reconnect with backoff when the connection drops (interactive use). */
  reconnect: boolean;
}

interface Pending {
  id: number;
  req: Message<"say" | "dm">;
}

export class ChatClient {
  #session: ClientSession | null = null;
  #room: string;
  #rooms: string[] = [];
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #unacknowledged = 0;
  #windowWaiters: (() => void)[] = [];
  #drainWaiters: (() => void)[] = [];
  #closing = false;
  /** This client sent `bye`: the server's `bye` is then the answer, not the server ending the session. */
  #byeSent = false;
  #ended = false;
  #paused = false;
  #reader: Promise<void> | null = null;
  readonly #transcript: TranscriptFile | null;
  #done: (reason: string) => void = () => {};
  #joined: (() => void) | null = null;
  /** Why the session ended, if it was not this client's own quit. */
  failure: string | null = null;
  /** The code of the server's `error` that ended the session, if one did. */
  failureCode: string | null = null;
  readonly finished: Promise<string>;

  constructor(
    readonly opts: ChatOptions,
    readonly sink: ChatSink,
  ) {
    this.#room = opts.room;
    this.finished = new Promise((resolve) => (this.#done = resolve));
    this.#transcript = opts.transcriptFile
      ? new TranscriptFile(opts.transcriptFile, opts.transcriptMax ?? DEFAULT_TRANSCRIPT_MAX, (text) => this.emit({ type: "local", text }))
      : null;
  }

  get room(): string {
    return this.#room;
  }

  /** The rooms this client is in, in the order joined. */
  get rooms(): readonly string[] {
    return this.#rooms;
  }

  /** Makes a joined room current; false if this client is not in it. */
  switchTo(room: string): boolean {
    if (!this.#rooms.includes(room)) return false;
    if (room !== this.#room) {
      this.#room = room;
      this.emit({ type: "current", room });
    }
    return true;
  }

  /** The session is over (left, or ended by the server); no more lines can be sent. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Reading from the server is paused because the sink is congested. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Why the --transcript file is incomplete, or null. */
  get transcriptProblem(): string | null {
    return this.#transcript?.problem ?? null;
  }

  /** Messages that were never acknowledged (nacked, or lost with a dropped connection). */
  get unacknowledged(): number {
    return this.#unacknowledged;
  }

  /** Logs in and joins the first room; resolves once the server has confirmed the join. */
  async start(): Promise<void> {
    const joined = new Promise<void>((r) => (this.#joined = r));
    await this.#connect();
    if (!(await within(Promise.race([joined, this.finished]), 10_000))) {
      throw new SecureChatError("join_unconfirmed", `the server did not confirm joining ${this.#room}`);
    }
    if (this.failure) throw new SecureChatError("chat_failed", this.failure);
  }

  async #connect(): Promise<void> {
    let resumed = await resumeWithTicket(this.opts);
    if (!resumed) {
      await login(this.opts, await this.opts.password());
      resumed = await resumeWithTicket(this.opts);
      if (!resumed) throw new SecureChatError("ticket_refused", "logged in, but the new ticket was refused");
    }
    this.#session = resumed.session;
    this.emit({ type: "connected", server: this.opts.addr.id, user: resumed.welcome.user, session: Buffer.from(resumed.welcome.session_id).toString("base64") });
    this.#send({ type: "join", room: this.#room });
    this.#reader = this.#readLoop(resumed.session);
  }

  emit(e: ChatEvent): void {
    this.#record(e);
    this.sink.event(e);
  }

  /** Only what the user sent and received goes to the transcript: no list, notice or error a server could inflate. */
  #record(e: ChatEvent): void {
    if (!this.#transcript) return;
    if (e.type === "sent") this.#transcript.append({ kind: "sent", at: Date.now(), ...e, type: undefined });
    else if (e.type === "message" || e.type === "direct") this.#transcript.append({ kind: "recv", ...e, type: e.type });
  }

  #recordAck(p: Pending, ack: Message<"ack">): void {
    if (!this.#transcript) return;
    const r = p.req;
    const where = r.type === "say" ? { room: r.room } : { to: r.to };
    const line = {
      kind: "ack",
      id: p.id,
      ...where,
      seq: ack.seq,
      ts: ack.ts,
      text: r.text,
      ...(r.action ? { action: true } : {}),
      ...(ack.tseq !== undefined ? { tseq: ack.tseq, head: ack.head } : {}),
    };
    this.#transcript.append(line);
  }

  #send(m: Message): void {
    if (!this.#session) throw new SecureChatError("not_connected", "chat: not connected");
    this.#session.send(m);
  }

  async #readLoop(session: ClientSession): Promise<void> {
    try {
      for (;;) {
        const msgs = await session.receive(Number.POSITIVE_INFINITY);
        for (const m of msgs) this.#onMessage(m);
        if (session !== this.#session) return;
        const drained = this.sink.congested?.();
        if (drained) {
          // Output waits for a slow reader: stop reading (the server sees TCP backpressure) until it drains.
          this.#paused = true;
          session.stream.pauseReading();
          await Promise.race([drained, this.finished]);
          this.#paused = false;
          if (session !== this.#session) return;
          session.stream.resumeReading();
        }
      }
    } catch (e) {
      if (session !== this.#session) return;
      this.#session = null;
      session.close();
      const reason = isSecureChatError(e) ? e.message : String(e);
      this.#lost(reason);
    }
  }

  #onMessage(m: Message): void {
    switch (m.type) {
      case "ack":
      case "nack": {
        const p = this.#pending.get(m.id);
        if (p) {
          this.#pending.delete(m.id);
          if (m.type === "ack") this.#recordAck(p, m);
          else this.#unacknowledged++;
          this.#wake();
        }
        break;
      }
      case "ping":
        this.#send({ type: "pong" });
        return;
      case "room":
        if (!this.#rooms.includes(m.room)) this.#rooms.push(m.room);
        this.#joined?.();
        this.#joined = null;
        this.emit(m);
        this.switchTo(m.room);
        return;
      case "left": {
        const i = this.#rooms.indexOf(m.room);
        if (m.user !== this.opts.user || i < 0) break;
        this.#rooms.splice(i, 1);
        this.emit(m);
        // Leaving the current room makes the one joined before it current.
        const next = this.#rooms[Math.max(0, i - 1)];
        if (m.room === this.#room && next !== undefined) this.switchTo(next);
        return;
      }
      case "bye":
        this.emit(m);
        // The answer to this client's own bye is the normal end; any other bye is the server ending the session.
        if (!this.#byeSent) this.failure = `the server ended the session${m.reason ? `: ${m.reason}` : ""}`;
        this.#finish("server said bye");
        return;
    }
    this.emit(m);
    if (m.type === "error") {
      this.failure = `the server closed the session: ${m.message}`;
      this.failureCode = m.code;
      this.#finish(this.failure);
    }
  }

  #wake(): void {
    if (this.#pending.size < WINDOW) for (const w of this.#windowWaiters.splice(0)) w();
    if (this.#pending.size === 0) for (const w of this.#drainWaiters.splice(0)) w();
  }

  #lost(reason: string): void {
    const lost = this.#pending.size;
    this.#unsent("the connection was lost before the server acknowledged it");
    this.#pending.clear();
    this.#unacknowledged += lost;
    this.#wake();
    this.emit({ type: "disconnected", reason: lost > 0 ? `${reason}; ${lost} message(s) were not acknowledged and may not have arrived` : reason });
    if (this.#closing) return this.#finish(reason);
    if (!this.opts.reconnect) {
      this.failure = `connection lost: ${reason}`;
      return this.#finish(reason);
    }
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    for (let attempt = 1; !this.#closing; attempt++) {
      const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempt - 1, 5)) * (0.8 + Math.random() * 0.4);
      this.emit({ type: "reconnecting", in_ms: Math.round(delay), attempt });
      await Bun.sleep(delay);
      if (this.#closing) return;
      try {
        await this.#connect();
        return;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        if (isAuthFailure(e) || isHostKeyFailure(e)) {
          this.emit({ type: "local", text: message });
          this.failure = message;
          return this.#finish(message);
        }
        // Anything else (the server is down, busy, or broke the protocol): say so, and try again.
        this.emit({ type: "local", text: `reconnecting failed (attempt ${attempt}): ${message}` });
      }
    }
  }

  #unsent(reason: string): void {
    for (const id of this.#pending.keys()) this.emit({ type: "unsent", id, reason });
  }

  #finish(reason: string): void {
    this.#closing = true;
    this.#ended = true;
    this.#session?.close();
    this.#session = null;
    // No ack can come any more: what is pending is lost, and whoever waits for it is told now.
    this.#unsent("the session ended before the server acknowledged it");
    this.#unacknowledged += this.#pending.size;
    this.#pending.clear();
    this.#wake();
    this.#done(reason);
  }

  /** Waits until another request may be sent (the window has room). */
  async #window(): Promise<void> {
    while (this.#pending.size >= WINDOW && !this.#closing) await new Promise<void>((r) => this.#windowWaiters.push(r));
  }

  async say(text: string, action = false): Promise<void> {
    const t = this.#checkText(text);
    if (t === null) return;
    await this.#window();
    this.#request({ type: "say", id: this.#nextId++, room: this.#room, text: t, ...(action ? { action: true } : {}) });
  }

  async dm(to: string, text: string, action = false): Promise<void> {
    const t = this.#checkText(text);
    if (t === null) return;
    await this.#window();
    this.#request({ type: "dm", id: this.#nextId++, to, text: t, ...(action ? { action: true } : {}) });
  }

  /**
   * The server closes a session over a malformed message, so lines are
   * checked here first: tabs become spaces; other control characters or
   * more than MESSAGE_TEXT_MAX bytes refuse the line, which counts as not sent.
   */
  #checkText(text: string): string | null {
    const t = text.replace(/\t/g, "    ");
    const problem = hasControl(t)
      ? "it contains control characters"
      : !t.isWellFormed()
        ? "it is not valid text"
        : Buffer.byteLength(t) > MESSAGE_TEXT_MAX
          ? `it is longer than ${MESSAGE_TEXT_MAX} bytes`
          : null;
    if (problem === null) return t;
    this.#unacknowledged++;
    this.emit({ type: "local", text: `not sent: ${problem}` });
    return null;
  }

  #request(req: Message<"say" | "dm">): void {
    if (!this.#session) {
      this.#unacknowledged++;
      this.emit({ type: "local", text: "not connected: message not sent" });
      return;
    }
    this.#pending.set(req.id, { id: req.id, req });
    this.#send(req);
    this.emit(req.type === "say" ? { type: "sent", id: req.id, room: req.room, text: req.text, ...(req.action ? { action: true } : {}) } : { type: "sent", id: req.id, to: req.to, text: req.text, ...(req.action ? { action: true } : {}) });
  }

  /** Other requests (join, leave, who, rooms, history). */
  request(m: Message<"join" | "leave" | "who" | "rooms" | "history">): void {
    if (!this.#session) return this.emit({ type: "local", text: "not connected" });
    this.#send(m);
  }

  /** Leaves cleanly: waits (bounded) for every pending ack, says bye, closes. */
  async quit(): Promise<void> {
    if (this.#closing) return;
    if (this.#pending.size > 0 && this.#session) {
      const drained = new Promise<boolean>((r) => this.#drainWaiters.push(() => r(true)));
      if (!(await within(drained, DRAIN_MS))) {
        this.#unacknowledged += this.#pending.size;
        this.#unsent(`not acknowledged within ${DRAIN_MS / 1000} s`);
        this.emit({ type: "local", text: `${this.#pending.size} message(s) not acknowledged within ${DRAIN_MS / 1000} s` });
        this.#pending.clear();
      }
    }
    const session = this.#session;
    this.#closing = true;
    if (session) {
      try {
        this.#byeSent = true;
        session.send({ type: "bye", reason: "leaving" });
        await within(this.finished, 3000);
      } catch {
        // the connection is gone already; nothing more to say
      }
    }
    this.#finish("left");
    await this.#reader;
  }
}

/** Resolves true if `p` settles within `ms`, false otherwise; leaves no timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
