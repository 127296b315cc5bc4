/**
 * A user's devices as the client runs them (PROTOCOL.md §7.11): enrolling
 * this machine's own key (`securechat device add`), approving another
 * machine's from this one (`device approve CODE`), listing and revoking.
 * Private keys never leave the machine: the new key is sealed here under
 * the password, as `register` seals the first, and an approval is a
 * signature made here.
 */
import { type Ed25519KeyPair, ed25519Generate, wipe } from "../crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { deviceId } from "../fingerprint.ts";
import { deviceCode, normalizeDeviceCode, signEnrollment } from "../protocol/devices.ts";
import { signClientAuth } from "../protocol/handshake.ts";
import type { Message, Welcome } from "../protocol/messages.ts";
import {
  type AccountOptions,
  answer,
  answerOf,
  checkUserName,
  keepTicket,
  openIdentity,
  refuseExistingIdentity,
  sessionRequest,
  settleIdentity,
  welcomed,
} from "./account.ts";
import { type ClientSession, handshake } from "./connection.ts";
import { identityPath, removeIdentity, saveIdentity } from "./keystore.ts";

/** How long past an enrollment's expiry the new machine waits for the server to say so. */
const EXPIRY_GRACE_MS = 15_000;

export interface Enrolled {
  /** The new device's id. */
  id: string;
  /** The welcome of its first session (its ticket is stored); null if the wait ended without one. */
  welcome: Welcome | null;
}

/**
 * `securechat device add`: makes this machine's key, seals it here under
 * the password (`USER.key`), and enrolls it. With the server's `approve`
 * policy, `pending` is told the code to read out and the expiry, and this
 * waits for an enrolled device's approval. The key file stays unless the
 * server refused the enrollment or let it expire: a key whose enrollment
 * may still be approved is kept for a later `securechat login`.
 */
export async function addDevice(o: AccountOptions, password: string, name: string, pending: (code: string, expires: number) => void): Promise<Enrolled> {
  checkUserName(o.user);
  refuseExistingIdentity(o);
  const key = ed25519Generate();
  const ticketKey = ed25519Generate();
  const id = deviceId(key.publicKey);
  let keep = false;
  try {
    await saveIdentity(o.addr.id, o.user, key, password);
    const session = await handshake(o.addr, o.trust);
    try {
      session.send({ type: "enroll", user: o.user, device_key: key.publicKey, sig: signClientAuth(key.secretKey, session.keys), password, name, ticket_key: ticketKey.publicKey });
      const [first] = await session.receive();
      let w: Welcome;
      if (first?.type === "enroll_pending") {
        keep = true;
        pending(deviceCode(o.user, key.publicKey), first.expires);
        w = await answer(session, o.user, Math.max(1000, first.expires - Date.now()) + EXPIRY_GRACE_MS);
      } else {
        w = welcomed(session, o.user, first);
      }
      keep = true;
      keepTicket(o, w, ticketKey);
      session.send({ type: "bye", reason: "done" });
      return { id, welcome: w };
    } finally {
      session.close();
    }
  } catch (e) {
    // Refused, or expired unapproved: the key can never log in, so it goes.
    if (isSecureChatError(e, "server_refused")) keep = false;
    if (keep && isSecureChatError(e)) {
      throw new SecureChatError("enroll_uncertain", e.message, { cause: e, detail: { user: o.user, server: o.addr.id, id, path: identityPath(o.addr.id, o.user) } });
    }
    throw e;
  } finally {
    wipe(key.secretKey, ticketKey.secretKey);
    if (!keep) removeIdentity(o.addr.id, o.user);
  }
}

/** An enrollment as `device approve` shows it before signing. */
export type PendingDevice = Message<"devices">["pending"][number] & { id: string; code: string };

/**
 * Runs `f` on a session opened by a password login with this machine's key
 * (no ticket is asked for): what only the password and a device may do.
 */
async function withPasswordSession<T>(o: AccountOptions, password: string, f: (session: ClientSession, identity: Ed25519KeyPair) => Promise<T>): Promise<T> {
  checkUserName(o.user);
  const { identity, pending } = await openIdentity(o, password);
  try {
    const session = await handshake(o.addr, o.trust);
    try {
      session.send({ type: "login", user: o.user, sig: signClientAuth(identity.secretKey, session.keys), password });
      await answer(session, o.user);
      settleIdentity(o, pending);
      const r = await f(session, identity);
      session.send({ type: "bye", reason: "done" });
      return r;
    } finally {
      session.close();
    }
  } finally {
    wipe(identity.secretKey);
  }
}

/**
 * `securechat device approve CODE`: a password login with this machine's
 * key, then the waiting enrollment whose key has that code — computed here
 * from the key the server lists, so the server cannot put another key in
 * its place — is shown to `confirm`, and approved with this device's
 * signature.
 */
export async function approveDevice(o: AccountOptions, password: string, code: string, confirm: (p: PendingDevice) => Promise<boolean>): Promise<Message<"device_added">> {
  const want = normalizeDeviceCode(code);
  return withPasswordSession(o, password, async (session, identity) => {
    session.send({ type: "device_list" });
    const list = await answerOf(session, "devices");
    const match = list.pending.find((p) => deviceCode(o.user, p.key) === want);
    if (!match) {
      throw new SecureChatError("no_enrollment", `no enrollment waiting for ${o.user} at ${o.addr.id} has the code ${want}`, {
        detail: { waiting: list.pending.length },
      });
    }
    if (!(await confirm({ ...match, id: deviceId(match.key), code: want }))) {
      throw new SecureChatError("approval_declined", `the device ${deviceId(match.key)} was not approved`);
    }
    session.send({ type: "device_approve", key: match.key, sig: signEnrollment(identity.secretKey, o.user, match.key) });
    return answerOf(session, "device_added");
  });
}

/** The user's devices and waiting enrollments (`securechat device list`). */
export function listDevices(o: AccountOptions): Promise<Message<"devices">> {
  return sessionRequest(o, { type: "device_list" }, "devices");
}

/**
 * Revokes the device `id` (`securechat device revoke ID`), on a password
 * login: the server refuses it on a ticket session, so a stolen ticket
 * cannot revoke the owner's devices (PROTOCOL.md §7.11).
 */
export function revokeDevice(o: AccountOptions, password: string, id: string): Promise<Message<"device_revoked">> {
  return withPasswordSession(o, password, (session) => {
    session.send({ type: "device_revoke", id });
    return answerOf(session, "device_revoked");
  });
}
