/**
 * One login or registration attempt (PROTOCOL.md §5.1), from the checked
 * handshake to an outcome, without a socket: the source's penalty and login
 * rate, whether sessions can be recorded, the credentials (register, ticket
 * or password), the per-user limits, and the ticket issued. The connection
 * sends the welcome or the error.
 */
import { SecureChatError } from "../errors.ts";
import type { Message } from "../protocol/messages.ts";
import type { Logger } from "../log.ts";
import type { Accounts, IssuedTicket } from "./accounts.ts";
import type { Devices, PendingEnrollment } from "./devices.ts";
import type { LoginLimits } from "./limits.ts";

/** What a login needs of the server (ChatServer is one). */
export interface LoginServer {
  readonly accounts: Accounts;
  /** Device keys and enrollments (PROTOCOL.md §7.11). */
  readonly devices: Devices;
  /** Penalties, login rates per source and per user (--login-rate, --login-burst), connections per user. */
  readonly limits: LoginLimits;
  readonly journal: { readonly recording: boolean };
  /** The way to the chat core, when it may be out of reach (link.ts CorePort.available). */
  readonly link?: { available?(): boolean };
  readonly opts: { readonly sessionMaxMs: number };
  readonly log: Logger;
}

export interface LoginAttempt {
  readonly message: Message<"register" | "login" | "enroll">;
  /** True if `key` signed this connection's handshake (verifyClientAuth). */
  checkKey(key: Uint8Array): boolean;
  /** The source as per-address limits count it (limits.ts sourceKey), and as logged. */
  readonly sourceKey: string;
  readonly source: string;
  readonly now: number;
  /** What holds the session's connection slot (the connection): released by the server when it is gone. */
  readonly holder: object;
  /** False once the client has gone: nothing is created, counted or issued for it after the slow part. */
  stillThere(): boolean;
}

/** A login that succeeded; the client left while it was checked is `null`. */
export interface LoggedIn {
  user: string;
  /** The ticket the session stands on now: the one issued, else the one it logged in with (a logout revokes it). */
  ticket: Uint8Array | null;
  /** The ticket it logged in with, when it was then issued another: revoking either ends the session. */
  loginTicket: Uint8Array | null;
  /** The ticket issued to go in the welcome (ticket_key was given). */
  issued: IssuedTicket | null;
  /** When the session ends (--session-max, or its login ticket's expiry). */
  expiresAt: number;
  /** The device: the public key that signed the password login (or registration) the session stands on. */
  device: Uint8Array;
  method: "register" | "ticket" | "password";
}

/**
 * An `enroll` waiting for an enrolled device's approval (PROTOCOL.md §7.11):
 * once approved, `finish` lets the attempt in as a password login by the
 * new device (the per-user limits are checked then).
 */
export interface PendingLogin {
  pending: PendingEnrollment;
  finish(now: number): Promise<LoggedIn>;
}

/**
 * Runs one attempt. Resolves to the session's terms, or null if the client
 * left while it was checked, or, for an `enroll` that must be approved,
 * to what waits for the approval; a refusal rejects with its SecureChatError
 * (`auth_failed` for wrong credentials, whatever the cause).
 */
export async function login(server: LoginServer, a: LoginAttempt): Promise<LoggedIn | PendingLogin | null> {
  const { message: m, now, sourceKey } = a;
  const accounts = server.accounts;
  await server.limits.admitSource(sourceKey, now);
  // A session is an entry in the transcript: none is opened that cannot be recorded.
  if (!server.journal.recording) throw new SecureChatError("not_recorded", "the server cannot record sessions right now (its transcript is failing); retry later");
  // A cluster's edge between two cores has no chat to let the session into: like a full server, it asks for a retry.
  if (server.link?.available?.() === false) throw new SecureChatError("server_busy", "the server's chat core is out of reach right now (it is moving to another node); retry in a moment");
  let expiresAt = now + server.opts.sessionMaxMs;
  let ticket: Uint8Array | null = null;
  let device: Uint8Array;
  if (m.type === "register") {
    await accounts.register(m.user, m.identity_key, m.password, now, a.stillThere);
    server.log.info("register", { user: m.user, source: a.source });
    device = m.identity_key;
  } else if (m.type === "enroll") {
    // The password, with a password login's cost and penalties; the key was proved by the handshake (receiveAuth).
    await accounts.checkPassword(m.user, m.password);
    if (!a.stillThere()) return null;
    // Before anything is enrolled: a locked account gets no new device, by approval or by password.
    await refuseLocked(m.user);
    device = m.device_key;
    const r = await server.devices.enroll(m.user, device, m.name, a.source, now);
    if (r.kind === "pending") return { pending: r.pending, finish: (at) => admit(at, m.user, device, null) };
  } else if (m.ticket !== undefined) {
    const t = await accounts.loginWithTicket(m.user, m.ticket, a.checkKey, now);
    expiresAt = Math.min(expiresAt, t.expiresAt);
    device = t.device;
    ticket = m.ticket;
  } else {
    device = await accounts.loginWithPassword(m.user, m.password!, a.checkKey);
  }
  if (!a.stillThere()) return null;
  const ok = await admit(now, m.user, device, ticket);
  // The client left while the ticket was stored: nobody holds it, so it is not kept.
  if (a.stillThere()) return ok;
  if (ok.issued) await accounts.revokeTicket(ok.issued.ticket);
  return null;

  /**
   * A locked account (PROTOCOL.md §7.10) is named only to whoever proved its
   * credentials: to anyone else the refusal was auth_failed, as for any account.
   */
  async function refuseLocked(user: string): Promise<void> {
    if (await accounts.isLocked(user)) throw new SecureChatError("account_locked", `the account ${user} is locked by a server administrator; ask one to unlock it`);
  }

  async function admit(at: number, user: string, device: Uint8Array, ticket: Uint8Array | null): Promise<LoggedIn> {
    // Also when an enrollment is approved later: the account may have been locked meanwhile.
    await refuseLocked(user);
    // Checked once the credentials are: nobody can use up a name's quota without them.
    await server.limits.admitUser(user, at, a.holder);
    const issued = m.ticket_key !== undefined ? await accounts.issueTicket(user, m.ticket_key, at, device, a.source) : null;
    return {
      user,
      ticket: issued ? issued.ticket : ticket,
      loginTicket: issued ? ticket : null,
      issued,
      expiresAt: Math.min(expiresAt, at + server.opts.sessionMaxMs),
      device,
      method: m.type === "register" ? "register" : ticket ? "ticket" : "password",
    };
  }
}

/**
 * A `check_name` (PROTOCOL.md §5.1): true if no account `user` exists, so a
 * `register` for it would not be refused as `name_taken`. It passes the same
 * per-address limits as an attempt (the penalty, then the login rate) and
 * the connection counts it toward --max-auth-tries, so asking is no cheaper
 * a way to learn which names exist than trying to register them.
 */
export async function checkName(server: Pick<LoginServer, "accounts" | "limits">, m: Message<"check_name">, sourceKey: string, now: number): Promise<boolean> {
  await server.limits.admitSource(sourceKey, now);
  return !(await server.accounts.isTaken(m.user));
}
