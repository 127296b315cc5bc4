/**
 * Accounts: registration, password and ticket logins, ticket issue and
 * revocation. Password logins fail uniformly (docs/DESIGN.md §6): an
 * unknown user, a wrong password and a wrong identity key all
 * give `auth_failed` after the same argon2id work — an unknown user is
 * verified against a dummy verifier made with the same parameters.
 */
import { toHex, utf8 } from "../bytes.ts";
import { constantTimeEqual, randomBytes, sha256, wipe } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { checkPassword, normalizePassword } from "../password.ts";
import type { Account, AccountStore } from "../store/accounts.ts";
import type { Gate } from "./limits.ts";

/** OWASP Password Storage Cheat Sheet minimum is m=19 MiB, t=2, p=1; Bun's defaults exceed it. */
export const ARGON2 = { algorithm: "argon2id", memoryCost: 65536, timeCost: 2 } as const;

export const TICKET_LENGTH = 32;

export const AUTH_FAILED = "login failed: unknown user, wrong password, or a key that is not an active device of the account";

export interface IssuedTicket {
  ticket: Uint8Array;
  expiresAt: number;
}

/**
 * Runs `f` on the UTF-8 bytes of the NFKC-normalized password (what argon2id
 * hashes, exactly as Bun hashes a string) and wipes those bytes when it
 * settles. The password string from the decoded message cannot be wiped
 * (docs/SECURITY.md §5); this keeps the hash's input from being one more copy.
 */
async function withPasswordBytes<T>(password: string, f: (pw: Uint8Array) => Promise<T>): Promise<T> {
  const pw = utf8(normalizePassword(password));
  try {
    return await f(pw);
  } finally {
    wipe(pw);
  }
}

export class Accounts {
  #dummy: Promise<string> | undefined;

  constructor(
    readonly store: AccountStore,
    readonly gate: Gate,
    readonly ticketTtlMs: number,
  ) {}

  /** A verifier nobody knows the password of, made once, with the real parameters. */
  #dummyVerifier(): Promise<string> {
    this.#dummy ??= Bun.password.hash(toHex(randomBytes(32)), ARGON2);
    return this.#dummy;
  }

  #verify(password: string, verifier: string): Promise<boolean> {
    return this.gate.run(() => withPasswordBytes(password, (pw) => Bun.password.verify(pw, verifier, "argon2id")));
  }

  /** True if an account `user` exists (a `check_name`, PROTOCOL.md §5.1). */
  async isTaken(user: string): Promise<boolean> {
    return (await this.store.account(user)) !== null;
  }

  /** True if the account exists and a server administrator locked it (PROTOCOL.md §7.10). */
  async isLocked(user: string): Promise<boolean> {
    return (await this.store.lockedAt(user)) !== null;
  }

  /**
   * Creates the account. `stillWanted` is asked after the slow hash: an
   * account is only created for a client that is still there to be told,
   * so no account exists whose key its owner threw away.
   */
  async register(user: string, identityKey: Uint8Array, password: string, now: number, stillWanted: () => boolean = () => true): Promise<void> {
    await checkPassword(password, user);
    if (await this.store.account(user)) throw new SecureChatError("name_taken", `register: the name "${user}" is taken`);
    const verifier = await this.gate.run(() => withPasswordBytes(password, (pw) => Bun.password.hash(pw, ARGON2)));
    if (!stillWanted()) throw new SecureChatError("client_gone", "register: the client left before the account was created");
    if (!(await this.store.createAccount({ name: user, identityKey, verifier, createdAt: now }))) {
      throw new SecureChatError("name_taken", `register: the name "${user}" is taken`);
    }
  }

  /**
   * Checks the password and, with `checkKey`, the identity signature against
   * the account's key. Throws `auth_failed` for every kind of failure.
   * Returns the device: the public key that signed.
   */
  async loginWithPassword(user: string, password: string, checkKey: (identityKey: Uint8Array) => boolean): Promise<Uint8Array> {
    const { account, passwordOk } = await this.#checkPassword(user, password);
    // Any active device key of the account may sign (PROTOCOL.md §7.11); a revoked one never does.
    // Checked whatever the password, as before devices: the failures cost the same.
    const device = account ? (await this.store.activeDeviceKeys(user)).find((k) => checkKey(k)) : undefined;
    if (!(account && passwordOk && device)) throw new SecureChatError("auth_failed", AUTH_FAILED);
    return device;
  }

  /**
   * The password check of an `enroll` (PROTOCOL.md §7.11): the same argon2id
   * work as a password login, an unknown user included, and `auth_failed`
   * for either failure.
   */
  async checkPassword(user: string, password: string): Promise<Account> {
    const { account, passwordOk } = await this.#checkPassword(user, password);
    if (!(account && passwordOk)) throw new SecureChatError("auth_failed", AUTH_FAILED);
    return account;
  }

  async #checkPassword(user: string, password: string): Promise<{ account: Account | null; passwordOk: boolean }> {
    const account = await this.store.account(user);
    const passwordOk = await this.#verify(password, account?.verifier ?? (await this.#dummyVerifier()));
    return { account, passwordOk };
  }

  /**
   * The new password's verifier, once it passes the policy (as at register),
   * hashed in the gate like every password. Stored by `setVerifier` only
   * after the change is recorded.
   */
  async newVerifier(user: string, password: string): Promise<string> {
    await checkPassword(password, user);
    return this.gate.run(() => withPasswordBytes(password, (pw) => Bun.password.hash(pw, ARGON2)));
  }

  /**
   * A ticket login: the ticket must exist, be unexpired, belong to `user`,
   * and its key must have signed. Returns when the ticket expires (the
   * session it opens ends then) and the device it was issued to.
   */
  async loginWithTicket(user: string, ticket: Uint8Array, checkKey: (ticketKey: Uint8Array) => boolean, now: number): Promise<{ expiresAt: number; device: Uint8Array }> {
    const t = await this.store.ticket(sha256(ticket), now);
    if (!(t && t.user === user && checkKey(t.key))) throw new SecureChatError("auth_failed", AUTH_FAILED);
    const device = t.device ?? (await this.store.account(user))?.identityKey;
    // A revoked device's tickets are deleted with it; this holds even for one that was not.
    if (!device || !(await this.store.activeDeviceKeys(user)).some((k) => constantTimeEqual(k, device))) throw new SecureChatError("auth_failed", AUTH_FAILED);
    return { expiresAt: t.expiresAt, device };
  }

  /**
   * Issues a ticket bound to `ticketKey`, for the login of `device` from
   * `source`; only its SHA-256 is stored.
   */
  async issueTicket(user: string, ticketKey: Uint8Array, now: number, device: Uint8Array, source: string): Promise<IssuedTicket> {
    const ticket = randomBytes(TICKET_LENGTH);
    const expiresAt = now + this.ticketTtlMs;
    await this.store.addTicket(sha256(ticket), { user, key: ticketKey, expiresAt, device, source }, now);
    return { ticket, expiresAt };
  }

  /** The ticket's hash is taken at once: the caller may wipe the ticket as soon as this returns. */
  revokeTicket(ticket: Uint8Array): Promise<boolean> {
    const hash = sha256(ticket);
    return (async () => this.store.revokeTicket(hash))();
  }

  /** Warms the dummy verifier so the first unknown-user login costs what later ones do. */
  warm(): Promise<string> {
    return this.#dummyVerifier();
  }
}
