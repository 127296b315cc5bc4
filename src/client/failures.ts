/**
 * Which of the client's errors mean "retrying cannot help": the server did
 * not prove the host key we expect, or the user could not be authenticated.
 * The chat client stops reconnecting on these; the commands give them exit
 * codes 4 and 3 (docs/DESIGN.md §2).
 */
import { isSecureChatError } from "../errors.ts";

/** The server's key differs from the pin, was not accepted, or was not proven (PROTOCOL.md §4.4). */
const HOST_KEY_CODES = new Set(["host_key_changed", "host_key_unknown", "host_key_rejected", "handshake_bad_signature", "x25519_low_order"]);

/** Local reasons: the identity key does not open or is absent, no ticket and no password, a fresh ticket refused. */
const AUTH_CODES = new Set(["identity_locked", "identity_missing", "no_ticket", "ticket_refused"]);

/** The server's refusals (its `error` codes, PROTOCOL.md §6) that mean the credentials were wrong, or the account may not log in (locked). */
const AUTH_REFUSALS = new Set(["auth_failed", "too_many_failures", "account_locked"]);

export function isHostKeyFailure(e: unknown): boolean {
  return isSecureChatError(e) && HOST_KEY_CODES.has(e.code);
}

export function isAuthFailure(e: unknown): boolean {
  return isSecureChatError(e) && (AUTH_CODES.has(e.code) || (e.code === "server_refused" && AUTH_REFUSALS.has(String(e.detail.refusal))));
}
