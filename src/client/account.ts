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
import type { Message, Welcome } from "../protocol/messages.ts";
import { type ClientSession, type ServerAddress, handshake } from "./connection.ts";
import type { HostTrust } from "./hosttrust.ts";
import { isAuthFailure } from "./failures.ts";
import { forgetDmSeen } from "./dmseen.ts";
import { hasIdentity, identityPath, loadIdentity, removeIdentity, saveIdentity } from "./keystore.ts";
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

async function answer(session: ClientSession, user: string): Promise<Welcome> {
  const [m] = await session.receive();
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
function keepTicket(o: AccountOptions, w: Welcome, key: ReturnType<typeof ed25519Generate>): void {
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
 * older server): then only `register` can tell.
 */
export async function nameAvailable(o: AccountOptions): Promise<boolean | null> {
  checkUserName(o.user);
  const session = await handshake(o.addr, o.trust);
  try {
    session.send({ type: "check_name", user: o.user });
    const [m] = await session.receive();
    if (m?.type === "name_status" && m.user === o.user) return m.available;
    if (m?.type === "error" && (m.code === "message_unknown_type" || m.code === "handshake_unexpected")) return null;
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
      forgetDmSeen(o.addr.id, o.user);
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

/** Password login: opens the identity key, proves it and the password, stores a fresh ticket. */
export async function login(o: AccountOptions, password: string): Promise<Welcome> {
  checkUserName(o.user);
  let identity: ReturnType<typeof ed25519Generate>;
  try {
    identity = await loadIdentity(o.addr.id, o.user, password);
  } catch (e) {
    if (isSecureChatError(e, "identity_locked")) throw new SecureChatError(e.code, "wrong password for this account's identity key", { cause: e });
    if (isSecureChatError(e, "identity_missing")) {
      throw new SecureChatError(e.code, `no identity key for ${o.user} at ${o.addr.id} on this machine`, { cause: e, detail: { user: o.user } });
    }
    throw e;
  }
  const ticketKey = ed25519Generate();
  try {
    const session = await handshake(o.addr, o.trust);
    try {
      session.send({ type: "login", user: o.user, sig: signClientAuth(identity.secretKey, session.keys), password, ticket_key: ticketKey.publicKey });
      const w = await answer(session, o.user);
      keepTicket(o, w, ticketKey);
      forgetDmSeen(o.addr.id, o.user);
      return w;
    } finally {
      session.close();
    }
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
