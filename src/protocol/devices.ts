/**
 * Device enrollment (PROTOCOL.md §7.11): the short code a new device shows
 * and an enrolled device checks, and the statement an enrolled device signs
 * to approve a new key.
 *
 *   code  = Crockford-base32(SHA-256("securechat/1 device code" ‖ 0x00 ‖ u8(len(user)) ‖ user ‖ key))[first 60 bits]
 *           shown as XXXX-XXXX-XXXX
 *   stmt  = "securechat/1 device enrollment signature" ‖ 0x00 ‖ u8(len(user)) ‖ user ‖ key
 *   sig   = Ed25519(approving device's key, stmt)
 *
 * The code is computed from the key itself, on both machines: a server
 * that offered the approving device another key than the new device made
 * would have to find one whose code is the same (a 60-bit second preimage).
 */
import { concat, utf8 } from "../bytes.ts";
import { ed25519Sign, ed25519Verify, labels, sha256 } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";

const NUL = new Uint8Array([0]);
/** Crockford's base32: no I, L, O or U, so nothing reads as another symbol. */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const DEVICE_CODE_CHARS = 12;

function userAndKey(user: string, key: Uint8Array): Uint8Array {
  const u = utf8(user);
  return concat(new Uint8Array([u.length]), u, key);
}

/** The enrollment code of `key` for `user`: 12 base32 digits (60 bits), in groups of four. */
export function deviceCode(user: string, key: Uint8Array): string {
  const h = sha256(labels.DEVICE_CODE, NUL, userAndKey(user, key));
  let bits = 0n;
  for (const b of h.subarray(0, 8)) bits = (bits << 8n) | BigInt(b);
  let out = "";
  for (let i = 0; i < DEVICE_CODE_CHARS; i++) out += ALPHABET[Number((bits >> BigInt(64 - 5 * (i + 1))) & 31n)];
  return `${out.slice(0, 4)}-${out.slice(4, 8)}-${out.slice(8)}`;
}

/**
 * A code as a user typed it, in the form deviceCode gives: case, spaces and
 * dashes do not matter, and O, I and L read as 0, 1 and 1 (Crockford).
 */
export function normalizeDeviceCode(typed: string): string {
  const s = typed.toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  if (s.length !== DEVICE_CODE_CHARS || [...s].some((c) => !ALPHABET.includes(c))) {
    throw new SecureChatError("device_code_invalid", `"${typed}" is not a device code (12 letters and digits, as "securechat device add" shows it)`);
  }
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

export function enrollmentStatement(user: string, key: Uint8Array): Uint8Array {
  return concat(labels.SIG_DEVICE_ENROLL, NUL, userAndKey(user, key));
}

export function signEnrollment(approverSecret: Uint8Array, user: string, key: Uint8Array): Uint8Array {
  return ed25519Sign(approverSecret, enrollmentStatement(user, key));
}

export function verifyEnrollment(approverPublic: Uint8Array, user: string, key: Uint8Array, sig: Uint8Array): boolean {
  return ed25519Verify(approverPublic, enrollmentStatement(user, key), sig);
}
