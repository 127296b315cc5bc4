/**
 * The chat core's half of the server (docs/CLUSTER.md §1): the sessions as
 * the chat sees them and the requests of a logged-in session. A `Session`
 * is a `Member` of the chat (chat.ts) made from the facts its edge sent at
 * login (link.ts: no secret among them, tickets as their SHA-256): what the
 * chat posts to it goes to its edge over the link, in order; an ack that
 * waits for the transcript holds a place in the edge's output, filled once
 * the transcript settles, so no promise crosses the link. `Core` keeps the
 * registry of live sessions and answers what needs it: `sessions`,
 * revocations, administration, devices, log proofs, logout.
 */
import { fromBase64, fromHex } from "../bytes.ts";
import { constantTimeEqual } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { deviceId } from "../fingerprint.ts";
import { LOG_COSIGNATURES_MAX, SESSION_LIST_MAX } from "../protocol/limits.ts";
import { type Message, encodeMessage } from "../protocol/messages.ts";
import type { Journal } from "../store/journal.ts";
import { parseCheckpoint, parseNote } from "../transcript/note.ts";
import type { Logger } from "../log.ts";
import type { Accounts } from "./accounts.ts";
import { type Chat, type ChatOptions, type Member, isChatRequest } from "./chat.ts";
import type { Devices } from "./devices.ts";
import type { CorePort, EdgePort, SessionFacts, SessionPort } from "./link.ts";
import { logProofAnswer, logProofSeqs } from "./logproof.ts";
import { type WireError, shortRef, wireError } from "./wire.ts";

/** What the core needs of the server (ChatServer is one). */
export interface CoreServer {
  readonly chat: Chat;
  readonly journal: Journal;
  readonly accounts: Accounts;
  readonly devices: Devices;
  readonly log: Logger;
  readonly opts: {
    readonly chat: ChatOptions;
    /** The newest checkpoint witnesses cosigned, for `log_proof` `cosigned`. */
    readonly cosigned?: () => { note: string; size: number } | null;
  };
}

type Notice = Message<"notice">;
const notice = (code: string, text: string): Notice => ({ type: "notice", code, text });

export class Session implements Member, SessionPort {
  readonly user: string;
  readonly session: string;
  readonly ref: string;
  readonly device: Uint8Array;
  /** SHA-256 of the ticket the session stands on, and of the one it logged in with when it was issued another. */
  readonly ticket: Uint8Array | null;
  readonly loginTicket: Uint8Array | null;
  readonly expiresAt: number;
  readonly method: SessionFacts["method"];
  readonly source: string;
  readonly since: number;
  /** Member.congested, as the edge last reported it (SessionPort.flow). */
  congested = false;
  /** False once the session is over: ended by the core, or its edge said it closed. */
  live = true;
  #slots = 0;

  constructor(
    readonly core: Core,
    facts: SessionFacts,
    /** Where its output goes (in one process, the connection itself). */
    readonly edge: EdgePort,
  ) {
    this.user = facts.user;
    this.session = facts.session;
    this.ref = facts.ref;
    this.device = fromBase64(facts.device);
    this.ticket = facts.ticket === null ? null : fromHex(facts.ticket);
    this.loginTicket = facts.loginTicket === null ? null : fromHex(facts.loginTicket);
    this.expiresAt = facts.expiresAt;
    this.method = facts.method;
    this.source = facts.source;
    this.since = facts.since;
  }

  /** Member.fail: a request that waited for a load failed inside. */
  fail(e: unknown): void {
    this.core.fail(this, e);
  }

  /** Member.post. */
  post(json: string): void {
    this.edge.post(json);
  }

  /** Member.postWhen: a place held in the edge's output, filled when `ready` settles. */
  postWhen(ready: Promise<void>, ok: () => string, failed: () => string): void {
    const slot = ++this.#slots;
    this.edge.hold(slot);
    // A failure here is this session's own: it must not become an unhandled rejection, which would stop the server.
    const settle = (json: () => string): void => {
      try {
        this.edge.fill(slot, json());
      } catch (e) {
        this.core.fail(this, e);
      }
    };
    ready.then(
      () => settle(ok),
      () => settle(failed),
    );
  }

  #answer(m: Message): void {
    this.edge.post(encodeMessage(m));
  }

  /** The hashes of the tickets this session stands on (what the store keeps of them). */
  ticketHashes(): Uint8Array[] {
    return [this.ticket, this.loginTicket].filter((t) => t !== null);
  }

  /** True if this session logged in with the ticket of hash `hash`, or was issued it. */
  standsOn(hash: Uint8Array): boolean {
    return (this.ticket !== null && constantTimeEqual(this.ticket, hash)) || (this.loginTicket !== null && constantTimeEqual(this.loginTicket, hash));
  }

  /** SessionPort. */
  request(m: Message): void {
    try {
      this.#request(m);
    } catch (e) {
      this.core.fail(this, e);
    }
  }

  #request(m: Message): void {
    const core = this.core;
    const chat = core.server.chat;
    if (isChatRequest(m)) return chat.handle(this, m);
    switch (m.type) {
      case "session_list":
        return chat.handle(this, { type: m.type, run: () => core.answer(this, () => core.sessionsOf(this)) });
      case "revoke_session":
        return chat.handle(this, { type: m.type, run: () => core.answer(this, () => core.revokeSession(this, m.id)) });
      case "admin":
        return chat.handle(this, { type: m.type, run: () => core.answer(this, () => core.administer(this, m)) });
      // Devices (PROTOCOL.md §7.11).
      case "device_list":
        return chat.handle(this, { type: m.type, run: () => core.answer(this, () => core.server.devices.list(this, Date.now())) });
      case "device_approve":
        return chat.handle(this, { type: m.type, run: () => core.answer(this, () => core.server.devices.approve(this, m.key, m.sig, Date.now())) });
      case "device_revoke":
        return chat.handle(this, { type: m.type, run: () => core.answer(this, () => core.revokeDevice(this, m.id)) });
      case "log_proof": {
        // A journal in PostgreSQL reads the entries' lines before the request's turn (Journal.readEntryLines).
        const journal = core.server.journal;
        const seqs = logProofSeqs(m);
        let read: Map<number, Uint8Array> | undefined;
        const prepare = journal.readEntryLines && seqs.length > 0 ? () => journal.readEntryLines!(seqs).then((r) => void (read = r), () => void (read = new Map())) : undefined;
        return chat.handle(this, { type: m.type, ...(prepare ? { prepare } : {}), run: () => this.#answer(core.logProof(this, m, read)) });
      }
      case "logout":
        return chat.afterHeld(this, () => core.logout(this));
      case "bye":
        return chat.afterHeld(this, () => core.goodbye(this, "goodbye"));
      default:
        throw new SecureChatError("message_unexpected", `message: ${m.type} is not allowed here`);
    }
  }

  /** SessionPort: a change_password waits its turn among the requests; the edge runs it. */
  changePassword(ref: number): void {
    try {
      this.core.server.chat.handle(this, { type: "change_password", run: () => this.edge.changePassword(ref) });
    } catch (e) {
      this.core.fail(this, e);
    }
  }

  /** SessionPort. */
  passwordHashed(endSessions: boolean): void {
    try {
      this.core.recordPasswordChange(this, endSessions);
    } catch (e) {
      this.core.fail(this, e);
    }
  }

  /** SessionPort. */
  passwordSet(endSessions: boolean): void {
    this.core.passwordChanged(this, endSessions).catch((e: unknown) => this.core.fail(this, e));
  }

  /** SessionPort. */
  flow(congested: boolean): void {
    this.congested = congested;
  }

  /** SessionPort: held requests are answered. */
  drained(): void {
    try {
      this.core.server.chat.wake(this);
    } catch (e) {
      this.core.fail(this, e);
    }
  }

  /** SessionPort. */
  closed(): void {
    this.core.close(this);
  }
}

export class Core implements CorePort {
  readonly #sessions = new Set<Session>();
  /** Set once the server stops: sessions closing after that are not recorded. */
  journalClosed = false;
  /** Account requests of all sessions, one after another in the order the chat core releases them. */
  #accountTurn: Promise<unknown> = Promise.resolve();

  constructor(readonly server: CoreServer) {}

  /**
   * Answers an account request (PROTOCOL.md §7.8–§7.11) from the account
   * store, which may answer later: its work waits for the account requests
   * before it (so each sees what the one before changed, as when every
   * answer was immediate), and its answer keeps the request's place in the
   * session's output. A failure is the session's, as it was.
   */
  answer(me: Session, work: () => Message | Promise<Message>): void {
    let answer: Message | null = null;
    let error: unknown = null;
    // Settles either way, so nothing is left unhandled when the session is gone and takes no answer.
    const done = this.#accountTurn.then(work).then(
      (m) => {
        answer = m;
      },
      (e: unknown) => {
        error = e ?? new Error("account request failed");
      },
    );
    this.#accountTurn = done;
    // Throwing here is the session's failure (Session.postWhen), as a store error was when it threw at once.
    const json = (): string => {
      if (answer === null) throw error;
      return encodeMessage(answer);
    };
    me.postWhen(done, json, json);
  }

  get log(): Logger {
    return this.server.log;
  }

  /** CorePort: the session joins the chat and is recorded. */
  open(facts: SessionFacts, edge: EdgePort): Session {
    const s = new Session(this, facts, edge);
    this.#sessions.add(s);
    // Over a record kept elsewhere (PostgreSQL) its DMs and markers load first; a session that cannot have them ends.
    this.server.chat.connect(s)?.catch((e: unknown) => this.fail(s, e));
    this.server.journal.append({ kind: "session_open", user: s.user, session: s.session, source: s.source, ts: Date.now() });
    return s;
  }

  /** CorePort. */
  loginFailed(source: string, reason: "ticket" | "password", ts: number): void {
    this.server.journal.append({ kind: "login_failed", source, reason, ts });
  }

  /** The session is over (its edge closed it, or is closing it): it leaves the chat, once, and is recorded. */
  close(s: Session): void {
    s.live = false;
    this.server.chat.disconnect(s);
    if (!this.#sessions.delete(s)) return;
    if (!this.journalClosed) this.server.journal.append({ kind: "session_close", user: s.user, session: s.session, ts: Date.now() });
  }

  /** A request of `s` broke a rule, or failed inside: logged, and its edge tells the peer and closes. */
  fail(s: Session, e: unknown): void {
    const err = wireError(e);
    if (err.code === "internal_error") this.log.warn("internal_error", { source: s.source, error: String(e) });
    else this.log.info("protocol_error", { source: s.source, code: err.code, user: s.user });
    s.edge.closeWith(err);
  }

  /** Ends `s` from the server's side: it leaves the chat at once, and its edge tells the peer why and closes. */
  end(s: Session, err: WireError): void {
    s.live = false;
    this.server.chat.disconnect(s);
    s.edge.end(err);
  }

  /** Answers bye after everything already queued, then the edge closes: the session leaves the chat at once. */
  goodbye(s: Session, reason: string): void {
    this.server.chat.disconnect(s);
    s.edge.goodbye(reason);
  }

  /**
   * `logout` (PROTOCOL.md §7.8): the session's ticket is revoked and every
   * other session standing on it ends; the bye waits for the revocation, so
   * a client told "logged out" finds its ticket refused.
   */
  logout(s: Session): void {
    const ticket = s.ticket;
    if (!ticket) return this.#loggedOut(s);
    Promise.resolve(this.server.accounts.store.revokeTicket(ticket)).then(
      () => {
        this.endSessions(ticket, s, { code: "session_revoked", message: "this session's ticket was revoked (logout); log in again" });
        if (s.live) this.#loggedOut(s);
      },
      (e: unknown) => this.fail(s, e),
    );
  }

  #loggedOut(s: Session): void {
    this.log.info("logout", { user: s.user, source: s.source });
    this.goodbye(s, "logged out");
  }

  /**
   * The transcript stopped or resumed recording: every logged-in user is
   * told the truth, and the operator is told loudly (the writer logs why).
   */
  recordingChanged(recording: boolean): void {
    const sessions = this.#sessions.size;
    if (recording) this.log.warn("recording_resumed", { sessions });
    else this.log.warn("not_recording", { sessions, effect: "messages, joins and logins are refused until the transcript can write" });
    const n = encodeMessage(
      recording
        ? { type: "notice", code: "recorded", text: "the server's transcript is writing again: messages are relayed and recorded" }
        : { type: "notice", code: "not_recorded", text: "the server cannot write its transcript: nothing is relayed until it can, and what you send is refused" },
    );
    for (const s of this.#sessions) s.post(n);
  }

  /**
   * Ends every session but `except` that stands on the ticket of hash `hash`
   * (it was revoked). A revocation is rare; a scan of the sessions keeps
   * nothing per session for it.
   */
  endSessions(hash: Uint8Array, except: Session | null, err: WireError): void {
    for (const s of [...this.#sessions]) {
      if (s === except || !s.live || !s.standsOn(hash)) continue;
      this.log.info("session_ended", { user: s.user, source: s.source, code: err.code });
      this.end(s, err);
    }
  }

  /** The user's live sessions. */
  #liveOf(user: string): Session[] {
    return [...this.#sessions].filter((s) => s.live && s.user === user);
  }

  /**
   * `session_list` (PROTOCOL.md §7.8): the user's live sessions, then its
   * unexpired tickets, newest first, each list at most SESSION_LIST_MAX.
   */
  async sessionsOf(me: Session): Promise<Message<"sessions">> {
    const live = this.#liveOf(me.user)
      .sort((a, b) => b.since - a.since)
      .slice(0, SESSION_LIST_MAX)
      .map((s) => {
        const [hash] = s.ticketHashes();
        return {
          id: s.ref,
          device: deviceId(s.device),
          source: s.source,
          since: s.since,
          expires: s.expiresAt,
          ...(hash ? { ticket: shortRef(hash) } : {}),
          ...(s === me ? { current: true } : {}),
        };
      });
    const { tickets, total } = await this.server.accounts.store.ticketsOf(me.user, Date.now(), SESSION_LIST_MAX);
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
  async revokeSession(me: Session, id: string): Promise<Message<"revoked" | "notice">> {
    const now = Date.now();
    const { journal } = this.server;
    const store = this.server.accounts.store;
    const target = this.#liveOf(me.user).find((s) => s.ref === id);
    const hashes = target ? target.ticketHashes() : await store.ticketsByPrefix(me.user, fromHex(id), now);
    if (!target && hashes.length === 0) return notice("unknown_session", `no session or ticket ${id} of yours; see "securechat sessions"`);
    const mine = me.ticketHashes();
    if (target === me || hashes.some((h) => mine.some((m) => constantTimeEqual(h, m)))) {
      return notice("current_session", `${id} is this session or shares its ticket; use "securechat logout" to end it`);
    }
    if (!journal.recording) return notice("not_recorded", "the server cannot record the revocation right now (its transcript is failing); retry later");
    journal.append({ kind: "session_revoked", user: me.user, session: me.session, target: id, ...(target ? { targetSession: target.session } : {}), ts: now });
    const err = { code: "session_revoked", message: `this session was ended by ${me.user} from ${me.source} ("securechat sessions revoke"); log in again` };
    const before = this.#liveOf(me.user).length;
    for (const h of hashes) await store.revokeTicket(h);
    for (const s of this.#liveOf(me.user)) {
      if (s === target || s.ticketHashes().some((t) => hashes.some((h) => constantTimeEqual(h, t)))) {
        this.log.info("session_ended", { user: s.user, source: s.source, code: err.code, by: me.ref });
        this.end(s, err);
      }
    }
    const ended = before - this.#liveOf(me.user).length;
    this.log.info("session_revoked", { user: me.user, source: me.source, target: id, ended });
    return { type: "revoked", id, ended };
  }

  /**
   * `change_password` (PROTOCOL.md §7.8), the core's part: the edge checked
   * the session may change it and hashed the new password (the password
   * never leaves the edge). The change is recorded (`password_changed`,
   * never the password) before the edge stores the verifier; refused as a
   * notice when it cannot be.
   */
  recordPasswordChange(me: Session, endSessions: boolean): void {
    const journal = this.server.journal;
    if (!journal.recording) {
      me.post(encodeMessage(notice("not_recorded", "the server cannot record the change right now (its transcript is failing); retry later")));
      return me.edge.passwordRecorded(false);
    }
    journal.append({ kind: "password_changed", user: me.user, session: me.session, ended: endSessions, ts: Date.now() });
    me.edge.passwordRecorded(true);
  }

  /**
   * The new verifier is stored. With `end_sessions`, every other ticket of
   * the user is revoked and every other live session ends (`session_revoked`).
   */
  async passwordChanged(me: Session, endSessions: boolean): Promise<void> {
    let ended = 0;
    if (endSessions) {
      const store = this.server.accounts.store;
      const keep = me.ticketHashes();
      const { tickets } = await store.ticketsOf(me.user, Date.now(), Number.MAX_SAFE_INTEGER);
      for (const t of tickets) if (!keep.some((k) => constantTimeEqual(k, t.hash))) await store.revokeTicket(t.hash);
      const err = { code: "session_revoked", message: `the password of ${me.user} was changed from ${me.source}; log in again` };
      for (const s of this.#liveOf(me.user)) {
        if (s === me) continue;
        this.log.info("session_ended", { user: s.user, source: s.source, code: err.code, by: me.ref });
        this.end(s, err);
        ended++;
      }
    }
    this.log.info("password_changed", { user: me.user, source: me.source, ended });
    me.post(encodeMessage({ type: "password_changed", ended }));
  }

  /** `log_proof` (PROTOCOL.md §7.13), asked by `me`: logproof.ts. */
  logProof(me: Session, m: Message<"log_proof">, read?: Map<number, Uint8Array>): Message<"log_state" | "notice"> {
    const answer = logProofAnswer(this.server.journal, m, me.user, this.log, read);
    return m.cosigned && answer.type === "log_state" ? { ...answer, ...this.#cosigned(answer.origin, answer.size) } : answer;
  }

  /**
   * The kept cosigned checkpoint (TRANSCRIPT.md §4.5) as `log_state`'s
   * `cosigned`, with the consistency proof from it to the checkpoint of
   * `size`; nothing if there is none under this origin, or no proof.
   */
  #cosigned(origin: string, size: number): { cosigned?: NonNullable<Message<"log_state">["cosigned"]> } {
    const kept = this.server.opts.cosigned?.() ?? null;
    if (!kept || kept.size > size) return {};
    const parsed = parseNote(kept.note);
    const body = parseCheckpoint(parsed.text);
    const own = parsed.signatures.find((s) => s.name === origin && s.signature.length === 64);
    const consistency = this.server.journal.consistency?.(kept.size, size) ?? null;
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
  async revokeDevice(me: Session, id: string): Promise<Message<"device_revoked" | "notice">> {
    // A ticket is a bearer credential a thief of the disk holds (an unsealed file): it must not
    // revoke the owner's other devices and so lock the owner out. The password and a device key must.
    if (me.method === "ticket") {
      return notice("password_login_needed", 'log in with your password (not a ticket) to revoke a device ("securechat device revoke" asks for it)');
    }
    const r = await this.server.devices.revoke(me, id, Date.now());
    if ("type" in r) return r;
    const err = { code: "device_revoked", message: `this device (${id}) was revoked by ${me.user} from ${me.source} ("securechat device revoke"); it can no longer log in` };
    let ended = 0;
    for (const s of this.#liveOf(me.user)) {
      if (constantTimeEqual(s.device, r.key)) {
        this.log.info("session_ended", { user: s.user, source: s.source, code: err.code, by: me.ref });
        this.end(s, err);
        ended++;
      }
    }
    this.log.info("device_revoked", { user: me.user, source: me.source, device: id, ended });
    return { type: "device_revoked", id, ended };
  }

  /**
   * `admin` (PROTOCOL.md §7.10): a server administrator (serve --admin) locks
   * or unlocks an account, or ends its sessions. Anyone else is refused
   * with `not_admin` before the target is looked at, so the refusal says
   * nothing about it. The action is recorded (`admin_action`: who, from
   * which session, what, on whom) before anything changes. Locking and
   * ending sessions revoke every ticket of the account and end each of its
   * live sessions at once: `account_locked` or `session_revoked`.
   */
  async administer(me: Session, m: Message<"admin">): Promise<Message<"admin_done" | "notice">> {
    const { accounts, journal } = this.server;
    const store = accounts.store;
    const admins = this.server.opts.chat.admins;
    const target = m.user;
    if (!admins.has(me.user)) return notice("not_admin", `only a server administrator (serve --admin) may ${m.action.replace("_", " ")} an account`);
    if (target === me.user) return notice("own_account", `not on your own account: use "securechat sessions revoke" or "securechat logout" to end your sessions`);
    if (!(await accounts.isTaken(target))) return notice("no_such_user", `there is no account ${target}`);
    if (m.action === "lock" && admins.has(target)) return notice("target_admin", `${target} is a server administrator: take --admin ${target} off the server's command line first`);
    const locked = await accounts.isLocked(target);
    if (m.action === "lock" && locked) return notice("already_locked", `${target} is locked already`);
    if (m.action === "unlock" && !locked) return notice("not_locked", `${target} is not locked`);
    if (!journal.recording) return notice("not_recorded", "the server cannot record the action right now (its transcript is failing); retry later");
    const now = Date.now();
    journal.append({ kind: "admin_action", user: me.user, session: me.session, action: m.action, target, ts: now });
    let ended = 0;
    if (m.action === "unlock") await store.setLocked(target, null);
    else {
      if (m.action === "lock") await store.setLocked(target, now);
      await store.revokeTicketsOf(target);
      const err =
        m.action === "lock"
          ? { code: "account_locked", message: `the account ${target} was locked by server administrator ${me.user}; ask an administrator to unlock it` }
          : { code: "session_revoked", message: `this session was ended by server administrator ${me.user}; log in again` };
      for (const s of this.#liveOf(target)) {
        this.log.info("session_ended", { user: s.user, source: s.source, code: err.code, by: me.ref });
        this.end(s, err);
        ended++;
      }
    }
    this.log.info("admin_action", { user: me.user, source: me.source, action: m.action, target, ended });
    return { type: "admin_done", action: m.action, user: target, ended };
  }
}
