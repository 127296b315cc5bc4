/**
 * register / login / logout as a user runs them (docs/PROTOCOL.md §5.1).
 * Every server refusal becomes a `server_refused` error carrying the
 * server's code; the commands choose the exit code (docs/DESIGN.md §2).
 */
import { constantTimeEqual, ed25519Generate, wipe } from "../crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { checkPassword } from "../password.ts";
import { signClientAuth } from "../protocol/handshake.ts";
import { USER_NAME_RE } from "../protocol/limits.ts";
import type { AdminAction, Message, Welcome } from "../protocol/messages.ts";
import { type ClientSession, type ServerAddress, handshake } from "./connection.ts";
import type { HostTrust } from "./hosttrust.ts";
import { isAuthFailure } from "./failures.ts";
import {
  hasIdentity,
  identityPath,
  loadIdentity,
  pendingIdentityPath,
  promotePendingIdentity,
  removeIdentity,
  removePendingIdentity,
  saveIdentity,
} from "./keystore.ts";
import { deleteTicket, loadTicket, saveTicket, ticketPath } from "./tickets.ts";
import { existsSync } from "node:fs";

export function checkUserName(user: string): void {
  if (!USER_NAME_RE.test(user)) {
    throw new SecureChatError("bad_user_name", `"${user}" is not a valid user name`);
  }
}

/** A server `error` as said to the user; `detail.refusal` keeps the server's code. */
export function refusal(m: Message<"error">): SecureChatError {
  const refused = (message: string) => new SecureChatError("server_refused", message, { detail: { refusal: m.code } });
  switch (m.code) {
    case "auth_failed":
    case "account_locked":
    case "too_many_failures":
    case "password_policy":
    case "name_taken":
      return refused(m.message);
    case "rate_limited":
    case "server_busy":
    case "not_recorded":
    case "too_many_connections":
      return refused(`server refused: ${m.message}`);
    default:
      return refused(`server refused: ${m.message} (${m.code})`);
  }
}

export async function answer(session: ClientSession, user: string, timeoutMs?: number): Promise<Welcome> {
  const [m] = await session.receive(timeoutMs);
  return welcomed(session, user, m);
}

/** The server's answer `m` to an attempt: the welcome, checked; an error becomes its refusal. */
export function welcomed(session: ClientSession, user: string, m: Message | undefined): Welcome {
  if (m?.type === "welcome") {
    if (!constantTimeEqual(m.session_id, session.keys.sessionId) || m.user !== user) {
      throw new SecureChatError("protocol_violation", "protocol: welcome names another session or user");
    }
    session.loggedIn();
    return m;
  }
  if (m?.type === "error") throw refusal(m);
  throw new SecureChatError("protocol_violation", `protocol: expected welcome, got ${m?.type}`);
}

export interface AccountOptions {
  addr: ServerAddress;
  user: string;
  trust: HostTrust;
}

/**
 * Stores the ticket the server issued in `w`, bound to `key`. The ticket's
 * bytes in `w` are wiped once they are in the file: callers get `w` back
 * for its user and expiry, never to reuse the ticket.
 */
export function keepTicket(o: AccountOptions, w: Welcome, key: ReturnType<typeof ed25519Generate>): void {
  if (w.ticket !== undefined && w.ticket_expires !== undefined) {
    try {
      saveTicket(o.addr.id, o.user, { ticket: w.ticket, expiresAt: w.ticket_expires, key });
    } finally {
      wipe(w.ticket);
    }
  }
}

/**
 * Asks the server whether `o.user` is free to register (PROTOCOL.md §5.1
 * `check_name`), on a connection of its own, closed once answered: the
 * password is asked only after, which may take longer than the server's
 * handshake deadline. The host key is checked (and, if new, pinned) first,
 * like any connection's. Null if the server does not know `check_name` (an
 * older server) or refuses it as one attempt too many: then only `register`
 * can tell.
 */
export async function nameAvailable(o: AccountOptions): Promise<boolean | null> {
  checkUserName(o.user);
  const session = await handshake(o.addr, o.trust);
  try {
    session.send({ type: "check_name", user: o.user });
    const [m] = await session.receive();
    if (m?.type === "name_status" && m.user === o.user) return m.available;
    // An older server, or one whose --max-auth-tries the check used up (at 1, the check is the only try): register tells.
    if (m?.type === "error" && (m.code === "message_unknown_type" || m.code === "handshake_unexpected" || m.code === "too_many_failures")) return null;
    if (m?.type === "error") throw refusal(m);
    throw new SecureChatError("protocol_violation", `protocol: expected name_status, got ${m?.type}`);
  } finally {
    session.close();
  }
}

/** An identity key for `o.user` at this server is already on this machine: register would overwrite nothing, so it refuses. */
export function refuseExistingIdentity(o: Pick<AccountOptions, "addr" | "user">): void {
  if (hasIdentity(o.addr.id, o.user)) {
    throw new SecureChatError("identity_exists", `an identity key for ${o.user} at ${o.addr.id} already exists`, {
      detail: { user: o.user, path: identityPath(o.addr.id, o.user) },
    });
  }
}

/**
 * Creates the account. The sealed identity key is written before the server
 * is asked, so an account can never exist whose key the user does not hold;
 * if the server refuses, the file is removed again.
 */
export async function register(o: AccountOptions, password: string): Promise<Welcome> {
  checkUserName(o.user);
  await checkPassword(password, o.user);
  refuseExistingIdentity(o);
  const identity = ed25519Generate();
  const ticketKey = ed25519Generate();
  // The key file goes only if the server certainly has no account for it:
  // nothing was sent, or the server answered with a refusal.
  let keep = false;
  try {
    await saveIdentity(o.addr.id, o.user, identity, password);
    const session = await handshake(o.addr, o.trust);
    try {
      session.send({ type: "register", user: o.user, identity_key: identity.publicKey, sig: signClientAuth(identity.secretKey, session.keys), password, ticket_key: ticketKey.publicKey });
      keep = true;
      const w = await answer(session, o.user);
      keepTicket(o, w, ticketKey);
      return w;
    } catch (e) {
      if (isSecureChatError(e, "server_refused")) keep = false; // an explicit refusal from the server
      throw e;
    } finally {
      session.close();
    }
  } catch (e) {
    if (keep && isSecureChatError(e)) {
      // Said by the commands as one more hint under the error itself.
      throw new SecureChatError("register_uncertain", e.message, { cause: e, detail: { user: o.user, path: identityPath(o.addr.id, o.user) } });
    }
    throw e;
  } finally {
    // Both secret keys are in their files (or no longer wanted): this process is done with them.
    wipe(identity.secretKey, ticketKey.secretKey);
    if (!keep) removeIdentity(o.addr.id, o.user);
  }
}

/**
 * Opens the identity key with `password`: `USER.key`, else the key a
 * password change left in `USER.key.new` without knowing whether the server
 * took the new password (PROTOCOL.md Appendix A.2). `pending` says which.
 */
export async function openIdentity(o: AccountOptions, password: string): Promise<{ identity: ReturnType<typeof ed25519Generate>; pending: boolean }> {
  try {
    try {
      return { identity: await loadIdentity(o.addr.id, o.user, password), pending: false };
    } catch (e) {
      const pendingPath = pendingIdentityPath(o.addr.id, o.user);
      if (!isSecureChatError(e, "identity_locked") || !existsSync(pendingPath)) throw e;
      try {
        return { identity: await loadIdentity(o.addr.id, o.user, password, pendingPath), pending: true };
      } catch {
        throw e;
      }
    }
  } catch (e) {
    if (isSecureChatError(e, "identity_locked")) throw new SecureChatError(e.code, "wrong password for this account's identity key", { cause: e });
    if (isSecureChatError(e, "identity_missing")) {
      throw new SecureChatError(e.code, `no identity key for ${o.user} at ${o.addr.id} on this machine`, { cause: e, detail: { user: o.user } });
    }
    throw e;
  }
}

/**
 * The server accepted the password that opened the key: the file it opened
 * is the one that matches the server. A pending file it opened replaces the
 * old one; a pending file it did not open is a change the server never made.
 */
export function settleIdentity(o: AccountOptions, pending: boolean): void {
  if (pending) promotePendingIdentity(o.addr.id, o.user);
  else removePendingIdentity(o.addr.id, o.user);
}

/** Password login: opens the identity key, proves it and the password, stores a fresh ticket. */
export async function login(o: AccountOptions, password: string): Promise<Welcome> {
  checkUserName(o.user);
  const { identity, pending } = await openIdentity(o, password);
  const ticketKey = ed25519Generate();
  try {
    const session = await handshake(o.addr, o.trust);
    try {
      session.send({ type: "login", user: o.user, sig: signClientAuth(identity.secretKey, session.keys), password, ticket_key: ticketKey.publicKey });
      const w = await answer(session, o.user);
      settleIdentity(o, pending);
      keepTicket(o, w, ticketKey);
      return w;
    } finally {
      session.close();
    }
  } finally {
    wipe(identity.secretKey, ticketKey.secretKey);
  }
}

/**
 * `securechat passwd` (PROTOCOL.md §7.8): a password login (the old password
 * and the identity key, proved as any login), then `change_password`. The
 * identity key is re-sealed under the new password into `USER.key.new`
 * before the server is asked, and replaces `USER.key` only once the server
 * confirms; a refusal deletes it. If the answer is lost, both files stay and
 * the next login settles which one the server's password opens, so the user
 * is never left with a key file the server's password cannot open.
 */
export async function changePassword(o: AccountOptions, oldPassword: string, newPassword: string, endSessions: boolean): Promise<Message<"password_changed">> {
  checkUserName(o.user);
  await checkPassword(newPassword, o.user);
  const { identity, pending } = await openIdentity(o, oldPassword);
  const ticketKey = ed25519Generate();
  let wrote = false;
  let sent = false;
  let settled = false;
  try {
    const session = await handshake(o.addr, o.trust);
    try {
      session.send({ type: "login", user: o.user, sig: signClientAuth(identity.secretKey, session.keys), password: oldPassword, ticket_key: ticketKey.publicKey });
      const w = await answer(session, o.user);
      settleIdentity(o, pending);
      keepTicket(o, w, ticketKey);
      await saveIdentity(o.addr.id, o.user, identity, newPassword, pendingIdentityPath(o.addr.id, o.user));
      wrote = true;
      session.send({ type: "change_password", new_password: newPassword, ...(endSessions ? { end_sessions: true } : {}) });
      sent = true;
      for (;;) {
        for (const m of await session.receive()) {
          if (m.type === "password_changed") {
            promotePendingIdentity(o.addr.id, o.user);
            settled = true;
            session.send({ type: "bye", reason: "done" });
            return m;
          }
          if (m.type === "ping") session.send({ type: "pong" });
          if (m.type === "error") throw refusal(m);
          if (m.type === "notice" && m.code !== "slow_down") {
            settled = true; // refused: the server keeps the old password
            removePendingIdentity(o.addr.id, o.user);
            if (m.code === "password_policy") throw new SecureChatError("password_policy", m.text);
            throw new SecureChatError("session_refused", m.text, { detail: { refusal: m.code } });
          }
        }
      }
    } finally {
      session.close();
    }
  } catch (e) {
    if (sent && !settled) {
      throw new SecureChatError("passwd_uncertain", `no answer from the server to the password change: ${isSecureChatError(e) ? e.message : String(e)}`, {
        cause: e,
        detail: { user: o.user, server: o.addr.id, path: pendingIdentityPath(o.addr.id, o.user) },
      });
    }
    if (wrote && !settled) removePendingIdentity(o.addr.id, o.user);
    throw e;
  } finally {
    wipe(identity.secretKey, ticketKey.secretKey);
  }
}

/** Ticket login; null when there is no usable ticket (the caller asks for the password). */
export async function resumeWithTicket(o: AccountOptions): Promise<{ session: ClientSession; welcome: Welcome } | null> {
  const t = loadTicket(o.addr.id, o.user);
  if (!t) return null;
  let session: ClientSession;
  try {
    session = await handshake(o.addr, o.trust);
  } catch (e) {
    wipe(t.ticket, t.key.secretKey);
    throw e;
  }
  try {
    try {
      session.send({ type: "login", user: o.user, sig: signClientAuth(t.key.secretKey, session.keys), ticket: t.ticket });
    } finally {
      // One login per load: the server remembers the ticket for logout, this process needs neither again.
      wipe(t.ticket, t.key.secretKey);
    }
    return { session, welcome: await answer(session, o.user) };
  } catch (e) {
    session.close();
    if (isAuthFailure(e)) {
      deleteTicket(o.addr.id, o.user);
      return null;
    }
    throw e;
  }
}

/** Revokes the ticket on the server and deletes it here. Returns what happened, for the command to say. */
export async function logout(o: AccountOptions): Promise<"revoked" | "expired" | "none"> {
  checkUserName(o.user);
  const had = existsSync(ticketPath(o.addr.id, o.user));
  const resumed = await resumeWithTicket(o);
  // No usable ticket: an expired or revoked one is deleted (here or by resumeWithTicket).
  if (!resumed) {
    deleteTicket(o.addr.id, o.user);
    return had ? "expired" : "none";
  }
  const { session } = resumed;
  try {
    session.send({ type: "logout" });
    const [m] = await session.receive();
    if (m?.type !== "bye") throw new SecureChatError("protocol_violation", `protocol: expected bye, got ${m?.type}`);
  } finally {
    session.close();
    deleteTicket(o.addr.id, o.user);
  }
  return "revoked";
}

/**
 * One session, administrator or device request (PROTOCOL.md §7.8, §7.10,
 * §7.11) on a ticket session of its own: the answer of type `want`. A
 * `notice` refusing it (`unknown_session`, `current_session`, `not_admin`,
 * `not_recorded`, `flood`, …) becomes `session_refused`; `slow_down` only
 * means the answer comes later.
 */
export async function sessionRequest<T extends "sessions" | "revoked" | "admin_done" | "devices" | "device_revoked">(
  o: AccountOptions,
  req: Message<"session_list" | "revoke_session" | "admin" | "device_list" | "device_revoke">,
  want: T,
): Promise<Message<T>> {
  checkUserName(o.user);
  const resumed = await resumeWithTicket(o);
  if (!resumed) throw new SecureChatError("no_ticket", `no valid session ticket for ${o.user} at ${o.addr.id}`, { detail: { user: o.user, server: o.addr.id } });
  const { session } = resumed;
  try {
    session.send(req);
    const m = await answerOf(session, want);
    session.send({ type: "bye", reason: "done" });
    return m;
  } finally {
    session.close();
  }
}

/**
 * The answer of type `want` to a request just sent on a logged-in session,
 * answering pings meanwhile. A refusing `notice` becomes `session_refused`
 * (its code in `detail.refusal`); `slow_down` only means it comes later.
 */
export async function answerOf<T extends Message["type"]>(session: ClientSession, want: T): Promise<Message<T>> {
  for (;;) {
    for (const m of await session.receive()) {
      if (m.type === want) return m as Message<T>;
      if (m.type === "ping") session.send({ type: "pong" });
      if (m.type === "error") throw refusal(m);
      if (m.type === "notice" && m.code !== "slow_down") throw new SecureChatError("session_refused", m.text, { detail: { refusal: m.code } });
    }
  }
}

/** The user's live sessions and tickets at the server (`securechat sessions`). */
export function listSessions(o: AccountOptions): Promise<Message<"sessions">> {
  return sessionRequest(o, { type: "session_list" }, "sessions");
}

/** Ends the session, or revokes the ticket, named `id` (`securechat sessions revoke ID`). */
export function revokeSession(o: AccountOptions, id: string): Promise<Message<"revoked">> {
  return sessionRequest(o, { type: "revoke_session", id }, "revoked");
}

/** A server administrator's action on the account `target` (`securechat admin`, PROTOCOL.md §7.10). */
export function administer(o: AccountOptions, action: AdminAction, target: string): Promise<Message<"admin_done">> {
  checkUserName(target);
  return sessionRequest(o, { type: "admin", action, user: target }, "admin_done");
}
