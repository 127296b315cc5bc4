/**
 * The securechat server: a Bun TCP listener running the handshake of
 * docs/PROTOCOL.md §4, then accounts (§5.1). Every connection is a small
 * state machine (`Connection`); nothing one connection does can block
 * another: socket work is non-blocking with bounded queues, argon2id runs in
 * a bounded gate, and a connection that breaks a rule is answered with an
 * error code and closed — its own connection, never the server. A login
 * attempt is checked by `login` (login.ts); what a connection has to send is
 * its `Outbox` (outbox.ts). `ChatServer` admits connections, schedules the
 * flushes, and shuts down.
 */
import type { Socket, TCPSocketListener } from "bun";
import { fromHex, toBase64, toHex } from "../bytes.ts";
import { type Ed25519KeyPair, constantTimeEqual, ed25519Signer, sha256, wipe } from "../crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { deviceId, fingerprint } from "../fingerprint.ts";
import { Framed, type FramedHandler } from "../net/framed.ts";
import { SecureChannel } from "../protocol/channel.ts";
import { encodeFrame } from "../protocol/framing.ts";
import { ServerHandshake, verifyClientAuth } from "../protocol/handshake.ts";
import type { RekeyPolicy, SessionKeys } from "../protocol/session.ts";
import { DEFAULT_REKEY_BYTES, DEFAULT_REKEY_RECORDS, ERROR_TEXT_MAX, LOG_COSIGNATURES_MAX, MAX_FRAME, MAX_FRAME_PRELOGIN, SESSION_LIST_MAX } from "../protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage, encodeMessageBytes } from "../protocol/messages.ts";
import { Store } from "../store/db.ts";
import { AUTH_FAILED, Accounts } from "./accounts.ts";
import { type LoggedIn, type PendingLogin, checkName, login } from "./login.ts";
import { DEFAULT_DEVICES, type DeviceOptions, Devices } from "./devices.ts";
import { Chat, type ChatOptions, DEFAULT_CHAT, type Member, isChatRequest } from "./chat.ts";
import { type Journal, MemoryJournal } from "../store/journal.ts";
import { WriteBehindMarkers } from "../store/markers.ts";
import { FlushTurn, Outbox, type OutboxOwner, type TooSlow } from "./outbox.ts";
import type { HostKey } from "./hostkey.ts";
import { logProofAnswer } from "./logproof.ts";
import { parseCheckpoint, parseNote } from "../transcript/note.ts";
import type { FloodPolicy } from "./flood.ts";
import { DEFAULT_PENALTIES, Gate, PenaltyBox, type PenaltyPolicy, RateLimiter, type StartupPolicy, shouldDropStartup, sourceKey } from "./limits.ts";
import { type Logger, silentLogger } from "../log.ts";

export interface ServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  dataDir: string;
  ticketTtlMs: number;
  handshakeTimeoutMs: number;
  startups: StartupPolicy;
  penalties: PenaltyPolicy;
  maxAuthTries: number;
  rekey: RekeyPolicy;
  /** Concurrent argon2id computations: one per core. */
  argon2Concurrency: number;
  argon2Queue: number;
  chat: ChatOptions;
  /**
   * Bytes a connection may have waiting to be sent before it is dropped as
   * too slow (its own outbox plus what the socket has not taken).
   */
  maxSendBuffer: number;
  /** An authenticated connection silent this long is pinged; twice this long, dropped. */
  idleMs: number;
  /** The longest a session lasts; one opened with a ticket also ends when the ticket expires or is revoked. */
  sessionMaxMs: number;
  /** How often expired tickets are deleted from the database (besides at start). */
  ticketPruneMs: number;
  /** Logged-in connections one user may have at once. */
  maxConnectionsPerUser: number;
  /** Connections (logged in or not) from one source (an IPv4 address, an IPv6 /64) at once. */
  maxConnectionsPerAddress: number;
  /** Login attempts per source, and sessions opened per user. */
  logins: FloodPolicy;
  /** Where events go and history comes from; in memory unless the transcript is given. */
  journal?: Journal;
  /** The newest checkpoint witnesses cosigned (serve --witness; TRANSCRIPT.md §4.5), for `log_proof` `cosigned`. */
  cosigned?: () => { note: string; size: number } | null;
  log: Logger;
  /** Device enrollment policy and caps (PROTOCOL.md §7.11). */
  devices: DeviceOptions;
}

export const DEFAULT_SERVER_OPTIONS: Omit<ServerOptions, "dataDir"> = {
  host: "127.0.0.1",
  port: 7447,
  ticketTtlMs: 8 * 3600_000,
  handshakeTimeoutMs: 10_000,
  startups: { start: 10, rate: 30, full: 100 },
  penalties: DEFAULT_PENALTIES,
  maxAuthTries: 6,
  rekey: { records: DEFAULT_REKEY_RECORDS, bytes: DEFAULT_REKEY_BYTES },
  argon2Concurrency: navigator.hardwareConcurrency || 1,
  argon2Queue: 64,
  chat: DEFAULT_CHAT,
  maxSendBuffer: 1024 * 1024,
  idleMs: 60_000,
  sessionMaxMs: 24 * 3600_000,
  ticketPruneMs: 60_000,
  maxConnectionsPerUser: 16,
  maxConnectionsPerAddress: 64,
  logins: { rate: 2, burst: 30 },
  log: silentLogger,
  devices: DEFAULT_DEVICES,
};

/** "enrolling": an `enroll` waits for an enrolled device's approval (PROTOCOL.md §7.11). */
type Phase = "hello" | "auth" | "authenticating" | "enrolling" | "ready" | "closed";

/**
 * What a peer is told about an error (PROTOCOL.md §6): the codes about its
 * own input, its login, or the server's state. Anything else (a database or
 * file error) is `internal_error` with no detail: local faults are logged,
 * not sent.
 */
const WIRE_CODE =
  /^(?:frame|json|utf8|message|record|base64|x25519)_[a-z_]+$|^(?:handshake_unexpected|handshake_version|auth_failed|auth_bad_signature|name_taken|password_policy|protocol_violation|rate_limited|server_busy|too_many_connections|not_recorded|flood|account_locked|device_revoked|too_many_devices|too_many_pending)$/;

/** How `sessions` names a session or ticket (PROTOCOL.md §7.8): the first 6 bytes, in hex. */
function shortRef(b: Uint8Array): string {
  return toHex(b.subarray(0, 6));
}

function wireError(e: unknown): { code: string; message: string } {
  if (isSecureChatError(e) && WIRE_CODE.test(e.code)) return { code: e.code, message: fitText(e.message, ERROR_TEXT_MAX) };
  return { code: "internal_error", message: "server: internal error" };
}

/** Cuts text to at most `max` bytes of UTF-8 without splitting a character, so what we send is valid. */
function fitText(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = "";
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > max - 3) break;
    out += ch;
  }
  return `${out}...`;
}

class Connection implements Member, FramedHandler, OutboxOwner {
  phase: Phase = "hello";
  /** What waits to be sent to the peer (outbox.ts). */
  readonly outbox: Outbox;
  /** Reading from the socket is paused until the output drains (`congested`). */
  paused = false;
  lastHeard = Date.now();
  /** When the session began (login), for the log line when it ends. */
  loggedInAt = 0;
  /** Why the server ended it, or the peer said it ends it (the log line's reason), if either did. */
  endedBy: string | null = null;
  pinged = false;
  /** A bye or logout is waiting behind held requests. */
  leaving = false;
  /** The bye is posted: nothing more is, and the connection closes once it is sent. */
  saidBye = false;
  readonly framed: Framed;
  /** Until login: the handshake and its keys. Dropped once logged in (idle memory, and no key kept longer than needed). */
  hs: ServerHandshake | null;
  keys: SessionKeys | null = null;
  channel: SecureChannel | null = null;
  /** The session id in base64, once logged in (logs and transcript). */
  session = "";
  /** The session's id as `sessions` shows it (PROTOCOL.md §7.8): its session id's first 6 bytes in hex. */
  ref = "";
  /** Set once logged in; the chat core only sees logged-in connections. */
  user: string = "";
  /** The ticket this session logged in with, or was issued (a logout revokes it). */
  ticket: Uint8Array | null = null;
  /** The ticket it logged in with, when it was then issued another: revoking either ends the session. */
  loginTicket: Uint8Array | null = null;
  /** The device it logged in from: the public key that signed the password login its ticket came from. */
  device: Uint8Array | null = null;
  /** When the session ends (--session-max, or its login ticket's expiry). */
  expiresAt = Number.POSITIVE_INFINITY;
  /** How it logged in: only a session opened with the password may change it (PROTOCOL.md §7.8). */
  method: "register" | "ticket" | "password" | null = null;
  /** A change_password is being hashed: a second one waits for nothing and is refused. */
  changingPassword = false;
  /** While enrolling: the enrollment this connection waits on, and what lets this connection in once it is approved. */
  enrollment: PendingLogin | null = null;
  waiter: (() => void) | null = null;
  failures = 0;
  deadline: ReturnType<typeof setTimeout> | null;
  readonly source: string;
  /** The source as per-address limits count it (limits.ts sourceKey). */
  readonly sourceKey: string;

  constructor(
    readonly server: ChatServer,
    socket: Socket<Connection>,
  ) {
    this.source = socket.remoteAddress;
    this.sourceKey = sourceKey(this.source);
    this.hs = new ServerHandshake({ hostKey: server.hostKey, sign: server.hostSign, rekey: server.opts.rekey });
    this.framed = new Framed(
      socket as Socket<unknown>,
      MAX_FRAME_PRELOGIN,
      this,
      // The hard bound sits above what `post` allows to be built (4 × --max-send-buffer),
      // so a slow reader is told why before it is cut off.
      4 * server.opts.maxSendBuffer + 4 * MAX_FRAME,
    );
    this.outbox = new Outbox(this, server.opts.maxSendBuffer);
    this.deadline = setTimeout(() => this.timeout(), server.opts.handshakeTimeoutMs);
  }

  get authenticated(): boolean {
    return this.phase === "ready";
  }

  get congested(): boolean {
    return this.outbox.congested;
  }

  /** Member.post: queues one message, unless the session is over or saying goodbye. */
  post(json: string): void {
    if (this.phase !== "ready" || this.saidBye) return;
    this.outbox.post(json);
  }

  /** Member.postWhen: see Outbox.postWhen. */
  postWhen(ready: Promise<void>, ok: () => string, failed: () => string): void {
    if (this.phase !== "ready" || this.saidBye) return;
    this.outbox.postWhen(ready, ok, failed);
  }

  /** OutboxOwner. */
  get open(): boolean {
    return this.phase === "ready";
  }

  /** OutboxOwner. */
  get queued(): number {
    return this.framed.queued;
  }

  /** OutboxOwner. */
  scheduleFlush(): void {
    this.server.scheduleFlush(this);
  }

  /** OutboxOwner: seals into the server's one buffer (FlushTurn.out), written borrowed. */
  writeRecord(plaintext: Uint8Array): boolean {
    const out = FlushTurn.out;
    const n = this.channel!.sealer.sealInto(plaintext, out, FlushTurn.AT);
    return this.framed.send(out.subarray(FlushTurn.AT, FlushTurn.AT + n), true);
  }

  /** OutboxOwner: reading resumes and held requests are answered. */
  outputDrained(): void {
    if (this.paused) {
      this.paused = false;
      this.framed.socket.resume();
    }
    this.server.chat.wake(this);
  }

  /** OutboxOwner: a goodbye waiting behind acks can now be sent. */
  outputReleased(): void {
    if (this.saidBye) this.finishGoodbye();
  }

  /** FramedHandler: the socket took what was queued. */
  drained(): void {
    this.outbox.unblock();
  }

  /**
   * OutboxOwner: a connection whose output passed its bound never stalls
   * others: it is told, and dropped. Behind on the transcript, it is told so
   * (the same code on the wire: the remedy, reconnecting, is the same).
   */
  tooSlow({ reason, queued, waitingForTranscript }: TooSlow): void {
    this.server.log.warn(reason, { user: this.user || undefined, source: this.source, queued, waiting_for_transcript: waitingForTranscript });
    this.closeWith({
      code: "slow_consumer",
      message:
        reason === "transcript_behind"
          ? "the server's transcript is not keeping up: too much waits for it to be recorded before it can be sent to you; disconnected"
          : "you are not reading fast enough to keep up; disconnected",
    });
    setTimeout(() => this.framed.close("slow consumer"), 2000).unref?.();
  }

  /** FramedHandler: one frame from the peer. */
  frame(body: Uint8Array): void {
    this.lastHeard = Date.now();
    this.pinged = false;
    switch (this.phase) {
      case "hello": {
        const { reply, keys } = this.hs!.receiveHello(decodeMessage(body));
        this.framed.send(encodeFrame(encodeMessageBytes(reply), MAX_FRAME_PRELOGIN));
        this.keys = keys;
        this.channel = new SecureChannel(keys, "server", MAX_FRAME_PRELOGIN);
        // The channel holds its own copies, which it updates one-way and wipes
        // (PROTOCOL.md §3.3); the first keys must not outlive them here.
        wipe(keys.c2s, keys.s2c);
        this.phase = "auth";
        return;
      }
      case "auth": {
        const msgs = this.channel!.openSecret(body);
        if (msgs.length !== 1) throw new SecureChatError("protocol_violation", "protocol: the login record must hold exactly one message");
        const m = this.hs!.receiveAuth(msgs[0]!);
        if (m.type === "check_name") return this.checkName(m);
        this.phase = "authenticating";
        void this.authenticate(m);
        return;
      }
      case "authenticating":
      case "enrolling":
        throw new SecureChatError("protocol_violation", "protocol: message sent before the login was answered");
      case "ready":
        for (const m of this.channel!.open(body)) {
          // Nothing after a bye or logout in the same record is acted on.
          if (this.phase !== "ready" || this.leaving) return;
          this.message(m);
        }
        // A peer that does not read what it asked for is not read either:
        // TCP pushes back on it until its output drains (unblock).
        if (this.phase === "ready" && !this.paused && this.congested) {
          this.paused = true;
          this.framed.socket.pause();
        }
        return;
      case "closed":
        return;
    }
  }

  private async authenticate(m: Message<"register" | "login" | "enroll">): Promise<void> {
    try {
      const keys = this.keys!;
      const ok = await login(this.server, {
        message: m,
        checkKey: (key) => verifyClientAuth(key, keys, m.sig),
        sourceKey: this.sourceKey,
        source: this.source,
        now: Date.now(),
        stillThere: () => this.phase === "authenticating",
      });
      if (!ok || this.phase === "closed") return;
      if ("pending" in ok) return m.type === "enroll" ? this.awaitApproval(ok, m) : undefined;
      this.enter(ok, m);
    } catch (e) {
      if (this.phase === "closed") return;
      this.authFailed(m, e);
    }
  }

  /**
   * An `enroll` that must be approved (PROTOCOL.md §7.11): the client is
   * told, and the connection waits, reading nothing, until an enrolled
   * device approves the key (then it is let in as that device's password
   * login) or the enrollment expires (then it is closed).
   */
  private awaitApproval(p: PendingLogin, m: Message<"enroll">): void {
    this.enrollment = p;
    this.phase = "enrolling";
    // Past the password, it waits like a session: it no longer holds one of the --max-startups slots.
    this.server.leftLogin(this);
    this.send({ type: "enroll_pending", expires: p.pending.expires });
    this.clearDeadline();
    this.deadline = setTimeout(() => this.timeout(), Math.max(0, p.pending.expires - Date.now()));
    this.server.log.info("enroll_pending", { user: m.user, source: this.source, device: deviceId(m.device_key) });
    const waiter = (this.waiter = () => {
      p.pending.waiter = null;
      this.enrollment = null;
      if (this.phase !== "enrolling") return;
      p.finish(Date.now()).then(
        (ok) => {
          if (this.phase === "enrolling") return this.enter(ok, m);
          // It expired or left while the account store answered: nobody holds the ticket.
          if (ok.issued) this.server.dropTicket(ok.issued.ticket);
        },
        (e) => {
          if (this.phase !== "closed") this.fail(e);
        },
      );
    });
    p.pending.waiter = waiter;
  }

  /** The attempt succeeded: the welcome, and the connection is a session. */
  private enter(ok: LoggedIn, m: Message<"register" | "login" | "enroll">): void {
    const keys = this.keys!;
    {
      const { issued } = ok;
      this.hs!.complete();
      this.session = toBase64(keys.sessionId);
      this.ref = shortRef(keys.sessionId);
      this.clearDeadline();
      this.framed.decoder.limit = MAX_FRAME;
      this.channel!.sealer.maxFrame = MAX_FRAME;
      const welcomed = this.send({
        type: "welcome",
        user: ok.user,
        session_id: keys.sessionId,
        ...(issued ? { ticket: issued.ticket, ticket_expires: issued.expiresAt } : {}),
      });
      // The socket can fail as the welcome is written (the peer reset it):
      // then nobody holds the ticket, so it is neither kept nor left in memory,
      // and the connection was never a session (it closed before `user` was set);
      // the ticket it logged in with is wiped as a closing session's is.
      if (!welcomed) {
        if (issued) {
          this.server.dropTicket(issued.ticket);
          wipe(issued.ticket);
        }
        if (m.type === "login" && m.ticket) wipe(m.ticket);
        return;
      }
      this.ticket = ok.ticket;
      this.loginTicket = ok.loginTicket;
      this.device = ok.device;
      this.expiresAt = ok.expiresAt;
      this.method = ok.method;
      this.user = ok.user;
      this.phase = "ready";
      this.hs = null;
      this.keys = null;
      this.loggedInAt = Date.now();
      this.server.authenticated(this);
      this.server.log.info("login", { user: ok.user, source: this.source, session: this.session, method: ok.method });
    }
  }

  /**
   * A check_name (PROTOCOL.md §5.1), answered at once. It is no login, so it
   * counts toward --max-auth-tries as a refused attempt does.
   */
  private checkName(m: Message<"check_name">): void {
    // Answered once the account store has: anything sent before is a protocol violation, as during a login.
    this.phase = "authenticating";
    checkName(this.server, m, this.sourceKey, Date.now()).then(
      (available) => {
        if (this.phase !== "closed") this.nameChecked(m, available);
      },
      (e) => {
        if (this.phase !== "closed") this.authFailed(m, e);
      },
    );
  }

  private nameChecked(m: Message<"check_name">, available: boolean): void {
    this.phase = "auth";
    this.server.log.info("check_name", { source: this.source, user: m.user, available });
    if (++this.failures >= this.server.opts.maxAuthTries) {
      return this.closeWith({ code: "too_many_failures", message: `${this.failures} failed attempts on this connection` });
    }
    this.hs!.retry();
    this.send({ type: "name_status", user: m.user, available });
  }

  /**
   * Every refused attempt counts toward --max-auth-tries (so a peer cannot
   * loop forever even on cheap refusals); only wrong credentials count
   * toward the source's penalty.
   */
  private authFailed(m: Message<"register" | "login" | "check_name" | "enroll">, e: unknown): void {
    const err = wireError(e);
    this.failures++;
    if (err.code === "auth_failed") {
      this.server.penalties.failure(this.sourceKey, Date.now());
      this.server.journal.append({ kind: "login_failed", source: this.source, reason: m.type === "login" && m.ticket ? "ticket" : "password", ts: Date.now() });
      this.server.log.warn("login_failed", { source: this.source, reason: m.type === "login" && m.ticket ? "ticket" : "password", failures: this.failures });
    } else {
      this.server.log.warn("auth_refused", { source: this.source, code: err.code });
    }
    if (this.failures >= this.server.opts.maxAuthTries) {
      return this.closeWith({ code: "too_many_failures", message: `${this.failures} failed attempts on this connection` });
    }
    this.phase = "auth";
    this.hs!.retry();
    this.send({ type: "error", ...err });
  }

  private message(m: Message): void {
    if (isChatRequest(m)) return this.server.chat.handle(this, m);
    switch (m.type) {
      case "error":
        throw new SecureChatError("peer_error", `peer: ${m.code}`);
      case "pong":
        return;
      case "session_list":
        return this.server.chat.handle(this, { type: m.type, run: () => this.server.answer(this, () => this.server.sessionsOf(this)) });
      case "revoke_session":
        return this.server.chat.handle(this, { type: m.type, run: () => this.server.answer(this, () => this.server.revokeSession(this, m.id)) });
      case "change_password":
        return this.server.chat.handle(this, { type: m.type, run: () => void this.server.changePassword(this, m) });
      case "admin":
        return this.server.chat.handle(this, { type: m.type, run: () => this.server.answer(this, () => this.server.administer(this, m)) });
      // Devices (PROTOCOL.md §7.11).
      case "device_list":
        return this.server.chat.handle(this, { type: m.type, run: () => this.server.answer(this, () => this.server.devices.list(this, Date.now())) });
      case "device_approve":
        return this.server.chat.handle(this, { type: m.type, run: () => this.server.answer(this, () => this.server.devices.approve(this, m.key, m.sig, Date.now())) });
      case "device_revoke":
        return this.server.chat.handle(this, { type: m.type, run: () => this.server.answer(this, () => this.server.revokeDevice(this, m.id)) });
      case "log_proof":
        return this.server.chat.handle(this, { type: m.type, run: () => this.post(encodeMessage(this.server.logProof(this, m))) });
      case "logout":
        this.leaving = true;
        return this.server.chat.afterHeld(this, () => {
          if (!this.ticket) return this.loggedOut();
          // Its own copy: closing the connection wipes the session's.
          const ticket = this.ticket.slice();
          // The bye waits for the revocation: a client told "logged out" finds its ticket refused.
          this.server.accounts.revokeTicket(ticket).then(
            () => {
              this.server.endSessions(ticket, this, { code: "session_revoked", message: "this session's ticket was revoked (logout); log in again" });
              wipe(ticket);
              if (this.phase === "ready") this.loggedOut();
            },
            (e) => {
              wipe(ticket);
              this.fail(e);
            },
          );
        });
      case "bye":
        this.leaving = true;
        return this.server.chat.afterHeld(this, () => this.goodbye("goodbye"));
      default:
        throw new SecureChatError("message_unexpected", `message: ${m.type} is not allowed here`);
    }
  }

  private loggedOut(): void {
    this.server.log.info("logout", { user: this.user, source: this.source });
    this.goodbye("logged out");
  }

  /** Answers bye after everything already queued, then closes. */
  private goodbye(reason: string): void {
    this.endedBy ??= reason;
    // Leaves the chat at once (no more deliveries; the others see it go), but
    // the bye goes behind any ack still waiting for the transcript, and the
    // connection closes once it is sent.
    this.server.chat.disconnect(this);
    this.post(encodeMessage({ type: "bye", reason }));
    this.saidBye = true;
    if (!this.outbox.holding) this.finishGoodbye();
  }

  private finishGoodbye(): void {
    this.outbox.flush();
    this.phase = "closed";
    this.framed.end();
  }

  /**
   * Sends one message now, outside the outbox (login phase; the welcome
   * carries a ticket, so its plaintext is wiped). False if the connection is
   * closed (now).
   */
  send(m: Message): boolean {
    return this.framed.send(this.channel!.sealSecret([m]));
  }

  /** Tells the peer why, then closes: cleartext before the keys exist, sealed after. */
  closeWith(err: { code: string; message: string }): void {
    if (this.phase === "closed") return;
    this.endedBy ??= err.code;
    try {
      const msg: Message = { type: "error", code: err.code, message: fitText(err.message, ERROR_TEXT_MAX) };
      if (this.phase === "ready") this.outbox.flush();
      if (this.channel && !this.channel.sealer.closed) this.framed.send(this.channel.seal([msg]));
      else if (!this.channel) this.framed.send(encodeFrame(encodeMessageBytes(msg), MAX_FRAME_PRELOGIN));
    } catch {
      // Nothing more to say to this peer.
    }
    this.framed.end();
    this.phase = "closed";
  }

  /**
   * Ends a logged-in session from the server's side: it leaves the chat at
   * once (nothing more is delivered to it), is told why, and its socket is
   * closed a second later even if the peer does not read.
   */
  end(err: { code: string; message: string }): void {
    this.server.chat.disconnect(this);
    this.closeWith(err);
    setTimeout(() => this.framed.close(err.code), 1000).unref?.();
  }

  /** The hashes of the tickets this session stands on (what the store keeps of them). */
  ticketHashes(): Uint8Array[] {
    return [this.ticket, this.loginTicket].filter((t) => t !== null).map((t) => sha256(t));
  }

  /** True if this session logged in with `ticket` or was issued it. */
  standsOn(ticket: Uint8Array): boolean {
    return (this.ticket !== null && constantTimeEqual(this.ticket, ticket)) || (this.loginTicket !== null && constantTimeEqual(this.loginTicket, ticket));
  }

  /** FramedHandler: a bad frame, or handling one threw. */
  error(e: unknown): void {
    this.fail(e);
  }

  fail(e: unknown): void {
    // A peer's own `error` (PROTOCOL.md §4.10) is never answered with one: we just close.
    if (isSecureChatError(e, "handshake_refused") || isSecureChatError(e, "peer_error")) {
      this.server.log.info("peer_error", { source: this.source, user: this.user || undefined });
      this.endedBy ??= "peer_error";
      this.phase = "closed";
      this.framed.end();
      return;
    }
    const err = wireError(e);
    if (err.code === "internal_error") this.server.log.warn("internal_error", { source: this.source, error: String(e) });
    else this.server.log.info("protocol_error", { source: this.source, code: err.code, user: this.user || undefined });
    this.closeWith(err);
  }

  private timeout(): void {
    this.deadline = null;
    if (this.phase === "ready" || this.phase === "closed") return;
    if (this.phase === "enrolling") {
      this.server.log.info("enroll_expired", { source: this.source });
      this.closeWith({ code: "enroll_expired", message: "no enrolled device approved this one in time; run \"securechat device add\" again" });
      setTimeout(() => this.framed.close("enrollment expired"), 1000).unref?.();
      return;
    }
    this.server.log.info("handshake_timeout", { source: this.source });
    this.closeWith({ code: "handshake_timeout", message: `handshake and login must finish within ${this.server.opts.handshakeTimeoutMs} ms` });
    // A peer that does not read must not keep the slot: force it after a grace period.
    setTimeout(() => this.framed.close("handshake timeout"), 1000).unref?.();
  }

  private clearDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
  }

  /** Called by the server's sweep: end the expired, ping the silent, drop the dead. */
  idle(now: number): void {
    if (this.phase !== "ready") return;
    if (now >= this.expiresAt) {
      this.server.log.info("session_expired", { user: this.user, source: this.source });
      this.end({ code: "session_expired", message: "this session has expired; log in again" });
      return;
    }
    const silent = now - this.lastHeard;
    if (silent >= 2 * this.server.opts.idleMs) {
      this.server.log.info("idle_timeout", { user: this.user, source: this.source });
      this.end({ code: "idle_timeout", message: "no answer to ping; disconnected" });
    } else if (silent >= this.server.opts.idleMs && !this.pinged) {
      this.pinged = true;
      this.post(encodeMessage({ type: "ping" }));
    }
  }

  /** FramedHandler: the connection is gone. */
  closed(reason: string): void {
    const wasAuthenticated = this.user !== "";
    if (wasAuthenticated) {
      const durationS = Math.round((Date.now() - this.loggedInAt) / 100) / 10;
      this.server.log.info("session_closed", { user: this.user, source: this.source, reason: this.endedBy ?? reason, duration_s: durationS });
    }
    this.server.chat.disconnect(this);
    // Another connection enrolling the same key may have taken the wait over: its waiter stays.
    if (this.enrollment && this.enrollment.pending.waiter === this.waiter) this.enrollment.pending.waiter = null;
    this.enrollment = null;
    this.phase = "closed";
    this.outbox.clear();
    this.clearDeadline();
    this.channel?.close();
    this.ticket?.fill(0);
    this.ticket = null;
    this.loginTicket?.fill(0);
    this.loginTicket = null;
    this.server.forget(this, wasAuthenticated);
  }
}

export class ChatServer {
  readonly opts: ServerOptions;
  readonly store: Store;
  readonly accounts: Accounts;
  readonly hostKey: Ed25519KeyPair;
  /** Signs with the host key, imported once for every handshake. */
  readonly hostSign: (message: Uint8Array) => Uint8Array;
  readonly hostKeyCreated: boolean;
  readonly penalties: PenaltyBox;
  readonly log: Logger;
  readonly chat: Chat;
  /** The read markers (PROTOCOL.md §7.14): in memory for online users, written to securechat.db once a second. */
  readonly markers: WriteBehindMarkers;
  readonly journal: Journal;
  readonly devices: Devices;
  #journalClosed = false;
  #listener: TCPSocketListener<Connection> | null = null;
  readonly #dirty = new Set<Connection>();
  #flushScheduled = false;
  #sweep: ReturnType<typeof setInterval> | null = null;
  readonly #connections = new Set<Connection>();
  /** Open connections per source key. */
  readonly #bySource = new Map<string, number>();
  readonly loginsBySource: RateLimiter;
  readonly loginsByUser: RateLimiter;
  #unauthenticated = 0;
  /** Connections counted out of #unauthenticated (leftLogin). */
  readonly #outOfLogin = new WeakSet<Connection>();
  #stopping: Promise<void> | null = null;

  protected constructor(opts: ServerOptions, { key, created }: HostKey) {
    this.opts = opts;
    this.log = opts.log;
    this.hostKey = key;
    this.hostSign = ed25519Signer(key.secretKey);
    this.hostKeyCreated = created;
    this.store = new Store(opts.dataDir);
    this.accounts = new Accounts(this.store, new Gate(opts.argon2Concurrency, opts.argon2Queue), opts.ticketTtlMs);
    this.penalties = new PenaltyBox(opts.penalties);
    this.loginsBySource = new RateLimiter(opts.logins);
    this.loginsByUser = new RateLimiter(opts.logins);
    this.journal = opts.journal ?? new MemoryJournal(opts.chat.history);
    this.journal.watch?.((recording) => this.#recordingChanged(recording));
    this.devices = new Devices(this.store, this.journal, opts.devices);
    this.markers = new WriteBehindMarkers(this.store.markers);
    // The chat core asks synchronously (a `dm` to a name): securechat.db answers at once.
    this.chat = new Chat(opts.chat, this.journal, Date.now, (user) => this.store.account(user) !== null, this.markers);
  }

  /** Account requests of all connections, one after another in the order the chat core releases them. */
  #accountTurn: Promise<unknown> = Promise.resolve();

  /**
   * Answers an account request (PROTOCOL.md §7.8–§7.11) from the account
   * store, which may answer later: its work waits for the account requests
   * before it (so each sees what the one before changed, as when every
   * answer was immediate), and its answer keeps the request's place in the
   * connection's output. A failure is the connection's, as it was.
   */
  answer(me: Connection, work: () => Message | Promise<Message>): void {
    let answer: Message | null = null;
    let error: unknown = null;
    // Settles either way, so nothing is left unhandled when the connection is gone and takes no answer.
    const done = this.#accountTurn.then(work).then(
      (m) => {
        answer = m;
      },
      (e: unknown) => {
        error = e ?? new Error("account request failed");
      },
    );
    this.#accountTurn = done;
    // Throwing here is the connection's failure (Outbox.postWhen), as a store error was when it threw at once.
    const json = (): string => {
      if (answer === null) throw error;
      return encodeMessage(answer);
    };
    me.postWhen(done, json, json);
  }

  /** Deletes a ticket nobody holds (its client left before the welcome); a failure is logged, and the ticket expires. */
  dropTicket(ticket: Uint8Array): void {
    this.accounts.revokeTicket(ticket).catch((e) => this.log.warn("ticket_not_dropped", { error: e instanceof Error ? e.message : String(e) }));
  }

  /**
   * Coalescing (PROTOCOL.md §7.6, PERFORMANCE.md §5): what is posted to connections
   * while handling this turn's input is sealed once per connection at the
   * end of the turn, several messages per record.
   */
  scheduleFlush(c: Connection): void {
    this.#dirty.add(c);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const dirty = [...this.#dirty];
      this.#dirty.clear();
      const turn = new FlushTurn();
      for (const d of dirty) {
        // One connection's failure is its own: it must never end the turn for
        // the others, or escape the callback and stop the server.
        try {
          d.outbox.flush(turn);
        } catch (e) {
          d.fail(e);
        }
      }
    });
  }

  /**
   * Starts serving with `hostKey`, loaded once by the caller (serve signs the
   * transcript with the same key): the server never reads the key file, so
   * the process holds one copy of the secret.
   */
  static async start(options: Partial<ServerOptions> & { dataDir: string }, hostKey: HostKey): Promise<ChatServer> {
    const server = new ChatServer({ ...DEFAULT_SERVER_OPTIONS, ...options }, hostKey);
    try {
      await server.#checkAdmins();
    } catch (e) {
      server.store.close();
      throw e;
    }
    await server.accounts.warm();
    server.store.pruneTickets(Date.now());
    server.listen();
    // Sessions end within a second of expiring; idle pings need no finer grain.
    const sweepMs = Math.max(250, Math.min(1000, server.opts.idleMs / 4));
    let lastPrune = Date.now();
    server.#sweep = setInterval(() => {
      const now = Date.now();
      for (const c of server.#connections) c.idle(now);
      // Buckets that have refilled are no different from new ones: an idle
      // user, address or connection holds none a second later.
      server.loginsBySource.prune(now);
      server.loginsByUser.prune(now);
      server.chat.prune();
      server.devices.prune(now);
      server.saveMarkers();
      if (now - lastPrune >= server.opts.ticketPruneMs) {
        lastPrune = now;
        server.store.pruneTickets(now);
      }
    }, sweepMs);
    return server;
  }

  /** Writes the read markers that moved; a failure is logged, not fatal (they are a convenience: messages are shown again). */
  saveMarkers(): Promise<void> | void {
    const failed = (e: unknown) => this.log.warn("markers_not_saved", { error: e instanceof Error ? e.message : String(e) });
    try {
      const writing = this.markers.flush();
      if (writing) return writing.catch(failed);
    } catch (e) {
      failed(e);
    }
  }

  get port(): number {
    return this.#listener!.port;
  }

  get fingerprint(): string {
    return fingerprint(this.hostKey.publicKey);
  }

  /**
   * The transcript stopped or resumed recording: every logged-in user is
   * told the truth, and the operator is told loudly (the writer logs why).
   */
  #recordingChanged(recording: boolean): void {
    if (recording) this.log.warn("recording_resumed", { sessions: this.#connections.size - this.#unauthenticated });
    else this.log.warn("not_recording", { sessions: this.#connections.size - this.#unauthenticated, effect: "messages, joins and logins are refused until the transcript can write" });
    const notice = encodeMessage(
      recording
        ? { type: "notice", code: "recorded", text: "the server's transcript is writing again: messages are relayed and recorded" }
        : { type: "notice", code: "not_recorded", text: "the server cannot write its transcript: nothing is relayed until it can, and what you send is refused" },
    );
    for (const c of this.#connections) c.post(notice);
  }

  /** Connections that have not yet logged in. */
  get unauthenticated(): number {
    return this.#unauthenticated;
  }

  get connections(): number {
    return this.#connections.size;
  }

  private listen(): void {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const server = this;
    this.#listener = Bun.listen<Connection>({
      hostname: this.opts.host,
      port: this.opts.port,
      socket: {
        open(socket) {
          server.admit(socket);
        },
        data(socket, chunk) {
          socket.data?.framed.receive(chunk);
        },
        drain(socket) {
          socket.data?.framed.drain();
        },
        close(socket) {
          socket.data?.framed.socketClosed();
        },
        error(socket) {
          socket.data?.framed.socketClosed("socket error");
        },
      },
    });
  }

  /**
   * Ends every session but `except` that stands on `ticket` (it was revoked).
   * A revocation is rare; a scan of the connections keeps nothing per
   * connection for it.
   */
  endSessions(ticket: Uint8Array, except: Connection | null, err: { code: string; message: string }): void {
    for (const c of this.#connections) {
      if (c === except || c.phase !== "ready" || !c.standsOn(ticket)) continue;
      this.log.info("session_ended", { user: c.user, source: c.source, code: err.code });
      c.end(err);
    }
  }

  /** The user's logged-in connections. */
  #liveOf(user: string): Connection[] {
    return [...this.#connections].filter((c) => c.phase === "ready" && c.user === user);
  }

  /**
   * `session_list` (PROTOCOL.md §7.8): the user's live sessions, then its
   * unexpired tickets, newest first, each list at most SESSION_LIST_MAX.
   */
  async sessionsOf(me: Connection): Promise<Message<"sessions">> {
    const live = this.#liveOf(me.user)
      .sort((a, b) => b.loggedInAt - a.loggedInAt)
      .slice(0, SESSION_LIST_MAX)
      .map((c) => {
        const [hash] = c.ticketHashes();
        return {
          id: c.ref,
          device: deviceId(c.device!),
          source: c.source,
          since: c.loggedInAt,
          expires: c.expiresAt,
          ...(hash ? { ticket: shortRef(hash) } : {}),
          ...(c === me ? { current: true } : {}),
        };
      });
    const { tickets, total } = await this.accounts.store.ticketsOf(me.user, Date.now(), SESSION_LIST_MAX);
    return {
      type: "sessions",
      live,
      tickets: tickets.map((t) => ({
        id: shortRef(t.hash),
        ...(t.device ? { device: deviceId(t.device) } : {}),
        source: t.source,
        since: t.createdAt,
        expires: t.expiresAt,
      })),
      ...(total > tickets.length ? { more_tickets: total - tickets.length } : {}),
    };
  }

  /**
   * `revoke_session` (PROTOCOL.md §7.8): `id` names one of the user's live
   * sessions or tickets. Every ticket it stands on is revoked and every
   * session standing on them ends at once (`session_revoked`); a live
   * session without a ticket ends too. Refused, as a notice, when it is
   * this session or shares its ticket (that is a logout), names nothing,
   * or cannot be recorded.
   */
  async revokeSession(me: Connection, id: string): Promise<Message<"revoked" | "notice">> {
    const notice = (code: string, text: string): Message<"notice"> => ({ type: "notice", code, text });
    const now = Date.now();
    const target = this.#liveOf(me.user).find((c) => c.ref === id);
    const hashes = target ? target.ticketHashes() : await this.accounts.store.ticketsByPrefix(me.user, fromHex(id), now);
    if (!target && hashes.length === 0) return notice("unknown_session", `no session or ticket ${id} of yours; see "securechat sessions"`);
    const mine = me.ticketHashes();
    if (target === me || hashes.some((h) => mine.some((m) => constantTimeEqual(h, m)))) {
      return notice("current_session", `${id} is this session or shares its ticket; use "securechat logout" to end it`);
    }
    if (!this.journal.recording) return notice("not_recorded", "the server cannot record the revocation right now (its transcript is failing); retry later");
    this.journal.append({ kind: "session_revoked", user: me.user, session: me.session, target: id, ...(target ? { targetSession: target.session } : {}), ts: now });
    const err = { code: "session_revoked", message: `this session was ended by ${me.user} from ${me.source} ("securechat sessions revoke"); log in again` };
    const before = this.#liveOf(me.user).length;
    for (const h of hashes) await this.accounts.store.revokeTicket(h);
    for (const c of this.#liveOf(me.user)) {
      if (c === target || c.ticketHashes().some((t) => hashes.some((h) => constantTimeEqual(h, t)))) {
        this.log.info("session_ended", { user: c.user, source: c.source, code: err.code, by: me.ref });
        c.end(err);
      }
    }
    const ended = before - this.#liveOf(me.user).length;
    this.log.info("session_revoked", { user: me.user, source: me.source, target: id, ended });
    return { type: "revoked", id, ended };
  }

  /**
   * `change_password` (PROTOCOL.md §7.8): only on a session opened with the
   * password and the identity key (a login's full proof, with its limits and
   * penalties), one at a time. The new password passes the register policy
   * and is hashed in the argon2id gate; the change is recorded
   * (`password_changed`, never the password) before the verifier is
   * replaced. With `end_sessions`, every other ticket of the user is revoked
   * and every other live session ends (`session_revoked`).
   */
  async changePassword(me: Connection, m: Message<"change_password">): Promise<void> {
    const answer = (msg: Message) => me.post(encodeMessage(msg));
    const refuse = (code: string, text: string) => answer({ type: "notice", code, text });
    if (me.method !== "password") return refuse("password_login_needed", "log in with your password (not a ticket) to change it");
    if (me.changingPassword) return refuse("password_busy", "a password change is already under way on this session");
    me.changingPassword = true;
    try {
      let verifier: string;
      try {
        verifier = await this.accounts.newVerifier(me.user, m.new_password);
      } catch (e) {
        if (isSecureChatError(e, "password_policy") || isSecureChatError(e, "server_busy")) return refuse(e.code, e.message);
        throw e;
      }
      if (!me.authenticated) return;
      if (!this.journal.recording) return refuse("not_recorded", "the server cannot record the change right now (its transcript is failing); retry later");
      this.journal.append({ kind: "password_changed", user: me.user, session: me.session, ended: Boolean(m.end_sessions), ts: Date.now() });
      await this.accounts.store.setVerifier(me.user, verifier);
      let ended = 0;
      if (m.end_sessions) {
        const keep = me.ticketHashes();
        const { tickets } = await this.accounts.store.ticketsOf(me.user, Date.now(), Number.MAX_SAFE_INTEGER);
        for (const t of tickets) if (!keep.some((k) => constantTimeEqual(k, t.hash))) await this.accounts.store.revokeTicket(t.hash);
        const err = { code: "session_revoked", message: `the password of ${me.user} was changed from ${me.source}; log in again` };
        for (const c of this.#liveOf(me.user)) {
          if (c === me) continue;
          this.log.info("session_ended", { user: c.user, source: c.source, code: err.code, by: me.ref });
          c.end(err);
          ended++;
        }
      }
      this.log.info("password_changed", { user: me.user, source: me.source, ended });
      answer({ type: "password_changed", ended });
    } catch (e) {
      me.fail(e);
    } finally {
      me.changingPassword = false;
    }
  }

  /** `log_proof` (PROTOCOL.md §7.13), asked by `me`: logproof.ts. */
  logProof(me: Connection, m: Message<"log_proof">): Message<"log_state" | "notice"> {
    const answer = logProofAnswer(this.journal, m, me.user, this.log);
    return m.cosigned && answer.type === "log_state" ? { ...answer, ...this.#cosigned(answer.origin, answer.size) } : answer;
  }

  /**
   * The kept cosigned checkpoint (TRANSCRIPT.md §4.5) as `log_state`'s
   * `cosigned`, with the consistency proof from it to the checkpoint of
   * `size`; nothing if there is none under this origin, or no proof.
   */
  #cosigned(origin: string, size: number): { cosigned?: NonNullable<Message<"log_state">["cosigned"]> } {
    const kept = this.opts.cosigned?.() ?? null;
    if (!kept || kept.size > size) return {};
    const parsed = parseNote(kept.note);
    const body = parseCheckpoint(parsed.text);
    const own = parsed.signatures.find((s) => s.name === origin && s.signature.length === 64);
    const consistency = this.journal.consistency?.(kept.size, size) ?? null;
    if (body.origin !== origin || !own || consistency === null) return {};
    const cosignatures = parsed.signatures
      .filter((s) => s !== own && s.signature.length === 72)
      .slice(0, LOG_COSIGNATURES_MAX)
      .map((s) => ({ name: s.name, sig: new Uint8Array([...s.keyId, ...s.signature]) }));
    return { cosigned: { size: body.size, root: body.root, sig: new Uint8Array([...own.keyId, ...own.signature]), cosignatures, consistency } };
  }

  /**
   * `device_revoke` (PROTOCOL.md §7.11): only on a session opened with the
   * password (as `change_password`); once the device is revoked (recorded,
   * its tickets deleted: Devices.revoke), every live session standing on it
   * ends at once with `device_revoked`.
   */
  async revokeDevice(me: Connection, id: string): Promise<Message<"device_revoked" | "notice">> {
    // A ticket is a bearer credential a thief of the disk holds (an unsealed file): it must not
    // revoke the owner's other devices and so lock the owner out. The password and a device key must.
    if (me.method === "ticket") {
      return { type: "notice", code: "password_login_needed", text: 'log in with your password (not a ticket) to revoke a device ("securechat device revoke" asks for it)' };
    }
    const r = await this.devices.revoke(me, id, Date.now());
    if ("type" in r) return r;
    const err = { code: "device_revoked", message: `this device (${id}) was revoked by ${me.user} from ${me.source} ("securechat device revoke"); it can no longer log in` };
    let ended = 0;
    for (const c of this.#liveOf(me.user)) {
      if (c.device && constantTimeEqual(c.device, r.key)) {
        this.log.info("session_ended", { user: c.user, source: c.source, code: err.code, by: me.ref });
        c.end(err);
        ended++;
      }
    }
    this.log.info("device_revoked", { user: me.user, source: me.source, device: id, ended });
    return { type: "device_revoked", id, ended };
  }

  // --- Server administrators (PROTOCOL.md §7.10) ---

  /**
   * `admin` (PROTOCOL.md §7.10): a server administrator (serve --admin) locks
   * or unlocks an account, or ends its sessions. Anyone else is refused
   * with `not_admin` before the target is looked at, so the refusal says
   * nothing about it. The action is recorded (`admin_action`: who, from
   * which session, what, on whom) before anything changes. Locking and
   * ending sessions revoke every ticket of the account and end each of its
   * live sessions at once: `account_locked` or `session_revoked`.
   */
  async administer(me: Connection, m: Message<"admin">): Promise<Message<"admin_done" | "notice">> {
    const notice = (code: string, text: string): Message<"notice"> => ({ type: "notice", code, text });
    const admins = this.opts.chat.admins;
    const target = m.user;
    if (!admins.has(me.user)) return notice("not_admin", `only a server administrator (serve --admin) may ${m.action.replace("_", " ")} an account`);
    if (target === me.user) return notice("own_account", `not on your own account: use "securechat sessions revoke" or "securechat logout" to end your sessions`);
    if (!(await this.accounts.isTaken(target))) return notice("no_such_user", `there is no account ${target}`);
    if (m.action === "lock" && admins.has(target)) return notice("target_admin", `${target} is a server administrator: take --admin ${target} off the server's command line first`);
    const locked = await this.accounts.isLocked(target);
    if (m.action === "lock" && locked) return notice("already_locked", `${target} is locked already`);
    if (m.action === "unlock" && !locked) return notice("not_locked", `${target} is not locked`);
    if (!this.journal.recording) return notice("not_recorded", "the server cannot record the action right now (its transcript is failing); retry later");
    const now = Date.now();
    this.journal.append({ kind: "admin_action", user: me.user, session: me.session, action: m.action, target, ts: now });
    let ended = 0;
    if (m.action === "unlock") await this.accounts.store.setLocked(target, null);
    else {
      if (m.action === "lock") await this.accounts.store.setLocked(target, now);
      await this.accounts.store.revokeTicketsOf(target);
      const err =
        m.action === "lock"
          ? { code: "account_locked", message: `the account ${target} was locked by server administrator ${me.user}; ask an administrator to unlock it` }
          : { code: "session_revoked", message: `this session was ended by server administrator ${me.user}; log in again` };
      for (const c of this.#liveOf(target)) {
        this.log.info("session_ended", { user: c.user, source: c.source, code: err.code, by: me.ref });
        c.end(err);
        ended++;
      }
    }
    this.log.info("admin_action", { user: me.user, source: me.source, action: m.action, target, ended });
    return { type: "admin_done", action: m.action, user: target, ended };
  }

  /**
   * The configured administrators must have accounts: a name nobody holds
   * yet would make whoever registers it first an administrator.
   */
  async #checkAdmins(): Promise<void> {
    const admins = [...this.opts.chat.admins];
    const taken = await Promise.all(admins.map((u) => this.accounts.isTaken(u)));
    const missing = admins.filter((_, i) => !taken[i]);
    if (missing.length > 0) {
      throw new SecureChatError("admin_unknown", `--admin ${missing.join(", ")}: no such account on this server`, { detail: { users: missing.join(",") } });
    }
    for (const u of admins) if (await this.accounts.isLocked(u)) this.log.warn("admin_locked", { user: u, effect: "cannot log in until another administrator unlocks it" });
  }

  // --- end of server administrators ---

  private admit(socket: Socket<Connection>): void {
    const refuse = (code: string, message: string) => {
      socket.write(encodeFrame(encodeMessageBytes({ type: "error", code, message }), MAX_FRAME_PRELOGIN));
      socket.end();
    };
    if (this.#stopping) return refuse("server_shutdown", "server is shutting down");
    const source = sourceKey(socket.remoteAddress);
    const wait = this.penalties.blockedFor(source, Date.now());
    if (wait > 0) {
      this.log.info("penalized", { source: socket.remoteAddress, wait_ms: wait });
      return refuse("rate_limited", `too many failed logins from your address; retry in ${Math.ceil(wait / 1000)} s`);
    }
    const open = this.#bySource.get(source) ?? 0;
    if (open >= this.opts.maxConnectionsPerAddress) {
      this.log.info("source_limit", { source: socket.remoteAddress, connections: open });
      return refuse("too_many_connections", `your address has ${open} connections open already; close one first`);
    }
    if (shouldDropStartup(this.opts.startups, this.#unauthenticated)) {
      this.log.info("startup_dropped", { source: socket.remoteAddress, unauthenticated: this.#unauthenticated });
      return refuse("server_busy", "too many connections are logging in; retry in a moment");
    }
    const conn = new Connection(this, socket);
    socket.data = conn;
    this.#connections.add(conn);
    this.#bySource.set(source, open + 1);
    this.#unauthenticated++;
  }

  /**
   * The connection is no longer logging in: logged in, or an enrollment
   * waiting for approval (PROTOCOL.md §7.11), which must not hold a slot of
   * --max-startups for minutes. Counted once per connection.
   */
  leftLogin(conn: Connection): void {
    if (this.#outOfLogin.has(conn)) return;
    this.#outOfLogin.add(conn);
    this.#unauthenticated--;
  }

  authenticated(conn: Connection): void {
    this.leftLogin(conn);
    this.chat.connect(conn);
    this.journal.append({ kind: "session_open", user: conn.user, session: conn.session, source: conn.source, ts: Date.now() });
  }

  forget(conn: Connection, wasAuthenticated: boolean): void {
    if (!this.#connections.delete(conn)) return;
    const open = (this.#bySource.get(conn.sourceKey) ?? 1) - 1;
    if (open > 0) this.#bySource.set(conn.sourceKey, open);
    else this.#bySource.delete(conn.sourceKey);
    if (!wasAuthenticated) this.leftLogin(conn);
    else if (!this.#journalClosed) this.journal.append({ kind: "session_close", user: conn.user, session: conn.session, ts: Date.now() });
    this.#maybeStopped?.();
  }

  #maybeStopped: (() => void) | null = null;

  /** SIGINT/SIGTERM: stop accepting, tell every client, wait briefly for them to go, close the database. */
  stop(graceMs = 2000): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.#sweep) clearInterval(this.#sweep);
      this.#listener?.stop(false);
      for (const c of this.#connections) c.closeWith({ code: "server_shutdown", message: "server is shutting down" });
      if (this.#connections.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          this.#maybeStopped = () => {
            if (this.#connections.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
        });
      }
      for (const c of this.#connections) c.framed.close("server stopped");
      this.#listener?.stop(true);
      this.#journalClosed = true;
      this.journal.close?.("shutdown");
      await this.saveMarkers();
      this.store.close();
      this.log.info("stopped");
    })();
    return this.#stopping;
  }
}

export { AUTH_FAILED };
