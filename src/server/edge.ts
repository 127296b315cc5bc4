/**
 * The edge's half of a connection (docs/CLUSTER.md §1): the socket and its
 * framing, the handshake and the channel, the output queue and its flow
 * control, idle pings and timeouts, and the whole login — passwords,
 * argon2id, tickets in clear, the welcome — plus `change_password`, which
 * carries a password. Once logged in, the connection is a session of the
 * chat core: the facts of it go over the link (link.ts: no secret among
 * them), its requests go to the core in order, and what the core posts
 * comes back into this connection's outbox. Nothing one connection does can
 * block another: a connection that breaks a rule is answered with an error
 * code and closed — its own connection, never the server.
 */
import type { Socket } from "bun";
import { toBase64, toHex } from "../bytes.ts";
import { type Ed25519KeyPair, sha256, wipe } from "../crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { deviceId } from "../fingerprint.ts";
import { Framed, type FramedHandler } from "../net/framed.ts";
import { SecureChannel } from "../protocol/channel.ts";
import { encodeFrame } from "../protocol/framing.ts";
import { ServerHandshake, verifyClientAuth } from "../protocol/handshake.ts";
import type { RekeyPolicy, SessionKeys } from "../protocol/session.ts";
import { ERROR_TEXT_MAX, MAX_FRAME, MAX_FRAME_PRELOGIN } from "../protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage, encodeMessageBytes } from "../protocol/messages.ts";
import { type CorePort, type EdgePort, type SessionPort, isCoreRequest } from "./link.ts";
import { type LoggedIn, type LoginServer, type PendingLogin, checkName, login } from "./login.ts";
import { FlushTurn, Outbox, type OutboxOwner, type TooSlow, type Waiting } from "./outbox.ts";
import { sourceKey } from "./limits.ts";
import { type WireError, fitText, shortRef, wireError } from "./wire.ts";

/** What a connection's edge needs of the server (ChatServer is one). */
export interface EdgeServer extends LoginServer {
  readonly hostKey: Ed25519KeyPair;
  /** Signs with the host key. */
  readonly hostSign: (message: Uint8Array) => Uint8Array;
  /** The way to the chat core. */
  readonly link: CorePort;
  readonly opts: LoginServer["opts"] & {
    readonly rekey: RekeyPolicy;
    readonly maxSendBuffer: number;
    readonly handshakeTimeoutMs: number;
    readonly maxAuthTries: number;
    readonly idleMs: number;
  };
  /** Deletes a ticket nobody holds (its client left before the welcome). */
  dropTicket(ticket: Uint8Array): void;
  /** Flushes this connection's outbox at the end of the turn, with the others'. */
  scheduleFlush(c: Connection): void;
  /** The connection no longer holds a login slot (logged in, or waiting for an enrollment's approval). */
  leftLogin(c: Connection): void;
  /** The connection is gone. */
  forget(c: Connection, wasAuthenticated: boolean): void;
}

/** "enrolling": an `enroll` waits for an enrolled device's approval (PROTOCOL.md §7.11). */
type Phase = "hello" | "auth" | "authenticating" | "enrolling" | "ready" | "closed";

export class Connection implements EdgePort, FramedHandler, OutboxOwner {
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
  /** Set once logged in. */
  user: string = "";
  /** The session in the chat core, while this connection is one (the link's edge → core side). */
  core: SessionPort | null = null;
  /** What the core was last told of `congested` (SessionPort.flow). */
  toldCongested = false;
  /** The places held in the output for the core's acks that wait for the transcript, by slot. */
  slots: Map<number, Waiting> | null = null;
  /** The ticket this session logged in with, or was issued (a logout revokes it). */
  ticket: Uint8Array | null = null;
  /** The ticket it logged in with, when it was then issued another: revoking either ends the session. */
  loginTicket: Uint8Array | null = null;
  /** When the session ends (--session-max, or its login ticket's expiry). */
  expiresAt = Number.POSITIVE_INFINITY;
  /** How it logged in: only a session opened with the password may change it (PROTOCOL.md §7.8). */
  method: "register" | "ticket" | "password" | null = null;
  /** A change_password is being hashed or recorded: a second one waits for nothing and is refused. */
  changingPassword = false;
  /** change_password messages sent to the core, waiting for their turn there, by number. */
  passwordChanges: Map<number, Message<"change_password">> | null = null;
  passwordChangesSent = 0;
  /** The verifier of the change being recorded, and whether it ends the other sessions. */
  newVerifier: { verifier: string; endSessions: boolean } | null = null;
  /** While enrolling: the enrollment this connection waits on, and what lets this connection in once it is approved. */
  enrollment: PendingLogin | null = null;
  waiter: (() => void) | null = null;
  failures = 0;
  deadline: ReturnType<typeof setTimeout> | null;
  readonly source: string;
  /** The source as per-address limits count it (limits.ts sourceKey). */
  readonly sourceKey: string;

  constructor(
    readonly server: EdgeServer,
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

  /** EdgePort: queues one message, unless the session is over or saying goodbye. */
  post(json: string): void {
    if (this.phase !== "ready" || this.saidBye) return;
    this.outbox.post(json);
    this.flow();
  }

  /** EdgePort: see Outbox.hold. */
  hold(slot: number): void {
    if (this.phase !== "ready" || this.saidBye) return;
    (this.slots ??= new Map()).set(slot, this.outbox.hold());
  }

  /** EdgePort: see Outbox.fill. */
  fill(slot: number, json: string): void {
    const w = this.slots?.get(slot);
    if (!w) return;
    this.slots!.delete(slot);
    this.outbox.fill(w, json);
    this.flow();
  }

  /** Tells the core when the output passes or falls back under the point where its requests wait (Member.congested). */
  flow(): void {
    const congested = this.outbox.congested;
    if (congested === this.toldCongested || !this.core) return;
    this.toldCongested = congested;
    this.core.flow(congested);
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
    this.flow();
    this.core?.drained();
  }

  /** OutboxOwner: a goodbye waiting behind acks can now be sent. */
  outputReleased(): void {
    if (this.saidBye) this.finishGoodbye();
  }

  /** FramedHandler: the socket took what was queued. */
  drained(): void {
    this.outbox.unblock();
    this.flow();
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
        if (this.phase === "ready" && !this.paused && this.outbox.congested) {
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
        holder: this,
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

  /** The attempt succeeded: the welcome, and the connection is a session of the chat core. */
  private enter(ok: LoggedIn, m: Message<"register" | "login" | "enroll">): void {
    const keys = this.keys!;
    const { issued } = ok;
    this.hs!.complete();
    this.session = toBase64(keys.sessionId);
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
    this.expiresAt = ok.expiresAt;
    this.method = ok.method;
    this.user = ok.user;
    this.phase = "ready";
    this.hs = null;
    this.keys = null;
    this.loggedInAt = Date.now();
    this.server.leftLogin(this);
    // What the core is told: tickets as their SHA-256, as the store keeps them.
    this.core = this.server.link.open(
      {
        user: ok.user,
        session: this.session,
        ref: shortRef(keys.sessionId),
        device: toBase64(ok.device),
        ticket: ok.ticket ? toHex(sha256(ok.ticket)) : null,
        loginTicket: ok.loginTicket ? toHex(sha256(ok.loginTicket)) : null,
        expiresAt: ok.expiresAt,
        method: ok.method,
        source: this.source,
        since: this.loggedInAt,
      },
      this,
    );
    this.flow();
    this.server.log.info("login", { user: ok.user, source: this.source, session: this.session, method: ok.method });
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
      this.server.limits.failed(this.sourceKey, Date.now());
      this.server.link.loginFailed(this.source, m.type === "login" && m.ticket ? "ticket" : "password", Date.now());
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

  /** A message after login: a request goes to the core; a password never does. */
  private message(m: Message): void {
    switch (m.type) {
      case "error":
        throw new SecureChatError("peer_error", `peer: ${m.code}`);
      case "pong":
        return;
      case "change_password": {
        const ref = ++this.passwordChangesSent;
        (this.passwordChanges ??= new Map()).set(ref, m);
        this.flow();
        return this.core!.changePassword(ref);
      }
      case "logout":
      case "bye":
        this.leaving = true;
        break;
    }
    if (!isCoreRequest(m)) throw new SecureChatError("message_unexpected", `message: ${m.type} is not allowed here`);
    this.flow();
    this.core!.request(m);
  }

  /**
   * EdgePort: the `change_password` numbered `ref` has its turn in the core
   * (PROTOCOL.md §7.8): only on a session opened with the password and the
   * identity key (a login's full proof, with its limits and penalties), one
   * at a time. The new password passes the register policy and is hashed in
   * the argon2id gate; the core records the change (`password_changed`,
   * never the password), then the verifier is replaced here
   * (passwordRecorded), then the core ends the other sessions if asked and
   * answers.
   */
  changePassword(ref: number): void {
    const changes = this.passwordChanges;
    const m = changes?.get(ref);
    // The core runs them in order, and drops some when it floods: those before this one never will be.
    if (changes) for (const k of changes.keys()) if (k <= ref) changes.delete(k);
    if (m) void this.passwordChange(m);
  }

  /** Checks, hashes and hands the change to the core (see changePassword). */
  async passwordChange(m: Message<"change_password">): Promise<void> {
    const refuse = (code: string, text: string) => this.post(encodeMessage({ type: "notice", code, text }));
    if (this.method !== "password") return refuse("password_login_needed", "log in with your password (not a ticket) to change it");
    if (this.changingPassword) return refuse("password_busy", "a password change is already under way on this session");
    this.changingPassword = true;
    try {
      let verifier: string;
      try {
        verifier = await this.server.accounts.newVerifier(this.user, m.new_password);
      } catch (e) {
        if (isSecureChatError(e, "password_policy") || isSecureChatError(e, "server_busy")) {
          this.changingPassword = false;
          return refuse(e.code, e.message);
        }
        throw e;
      }
      if (!this.authenticated) {
        this.changingPassword = false;
        return;
      }
      const endSessions = Boolean(m.end_sessions);
      this.newVerifier = { verifier, endSessions };
      this.core!.passwordHashed(endSessions);
    } catch (e) {
      this.changingPassword = false;
      this.fail(e);
    }
  }

  /** EdgePort: the change is recorded (or refused, and the peer told): the verifier is stored, then the core finishes it. */
  passwordRecorded(ok: boolean): void {
    const change = this.newVerifier;
    this.newVerifier = null;
    if (!ok || !change || !this.authenticated) {
      this.changingPassword = false;
      return;
    }
    void this.storeVerifier(change);
  }

  private async storeVerifier(change: { verifier: string; endSessions: boolean }): Promise<void> {
    try {
      await this.server.accounts.store.setVerifier(this.user, change.verifier);
      this.core?.passwordSet(change.endSessions);
    } catch (e) {
      this.fail(e);
    } finally {
      this.changingPassword = false;
    }
  }

  /** EdgePort: answers bye after everything already queued, then closes (the core has let the session leave the chat). */
  goodbye(reason: string): void {
    this.endedBy ??= reason;
    // The bye goes behind any ack still waiting for the transcript, and the
    // connection closes once it is sent.
    this.post(encodeMessage({ type: "bye", reason }));
    this.saidBye = true;
    if (!this.outbox.holding) this.finishGoodbye();
  }

  private finishGoodbye(): void {
    this.outbox.flush();
    this.setClosed();
    this.framed.end();
  }

  /** The connection is closed, or closing: it is no longer a session of the core. */
  private setClosed(): void {
    this.phase = "closed";
    const core = this.core;
    if (!core) return;
    this.core = null;
    core.closed();
  }

  /**
   * Sends one message now, outside the outbox (login phase; the welcome
   * carries a ticket, so its plaintext is wiped). False if the connection is
   * closed (now).
   */
  send(m: Message): boolean {
    return this.framed.send(this.channel!.sealSecret([m]));
  }

  /** EdgePort: tells the peer why, then closes: cleartext before the keys exist, sealed after. */
  closeWith(err: WireError): void {
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
    this.setClosed();
  }

  /**
   * EdgePort: ends a logged-in session from the server's side: it has left
   * the chat (nothing more is delivered to it), it is told why, and its
   * socket is closed a second later even if the peer does not read.
   */
  end(err: WireError): void {
    this.closeWith(err);
    setTimeout(() => this.framed.close(err.code), 1000).unref?.();
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
      this.setClosed();
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
    this.setClosed();
    // Another connection enrolling the same key may have taken the wait over: its waiter stays.
    if (this.enrollment && this.enrollment.pending.waiter === this.waiter) this.enrollment.pending.waiter = null;
    this.enrollment = null;
    this.outbox.clear();
    this.slots = null;
    this.passwordChanges = null;
    this.newVerifier = null;
    this.clearDeadline();
    this.channel?.close();
    this.ticket?.fill(0);
    this.ticket = null;
    this.loginTicket?.fill(0);
    this.loginTicket = null;
    this.server.forget(this, wasAuthenticated);
  }
}
