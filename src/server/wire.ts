/**
 * What a peer is told about an error (PROTOCOL.md §6), shared by the edge
 * (login, the connection's own faults) and the chat core (the requests of a
 * session): the codes about its own input, its login, or the server's
 * state. Anything else (a database or file error) is `internal_error` with
 * no detail: local faults are logged, not sent.
 */
import { toHex } from "../bytes.ts";
import { isSecureChatError } from "../errors.ts";
import { ERROR_TEXT_MAX } from "../protocol/limits.ts";

const WIRE_CODE =
  /^(?:frame|json|utf8|message|record|base64|x25519)_[a-z_]+$|^(?:handshake_unexpected|handshake_version|auth_failed|auth_bad_signature|name_taken|password_policy|protocol_violation|rate_limited|server_busy|too_many_connections|not_recorded|flood|account_locked|device_revoked|too_many_devices|too_many_pending)$/;

/** An error as the peer is told it: a code and a text that fits an `error` message. */
export interface WireError {
  code: string;
  message: string;
}

export function wireError(e: unknown): WireError {
  if (isSecureChatError(e) && WIRE_CODE.test(e.code)) return { code: e.code, message: fitText(e.message, ERROR_TEXT_MAX) };
  return { code: "internal_error", message: "server: internal error" };
}

/** Cuts text to at most `max` bytes of UTF-8 without splitting a character, so what we send is valid. */
export function fitText(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = "";
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > max - 3) break;
    out += ch;
  }
  return `${out}...`;
}

/** How `sessions` names a session or ticket (PROTOCOL.md §7.8): the first 6 bytes, in hex. */
export function shortRef(b: Uint8Array): string {
  return toHex(b.subarray(0, 6));
}
