/** Host key fingerprints as OpenSSH prints them: "SHA256:" + unpadded base64 of SHA-256(key). */
import { toBase64, toHex } from "./bytes.ts";
import { sha256 } from "./crypto/index.ts";

export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${toBase64(sha256(publicKey)).replace(/=+$/, "")}`;
}

/**
 * A device's id (PROTOCOL.md §7.8): the first 6 bytes of SHA-256 of the
 * Ed25519 public key the device logs in with, as 12 lowercase hex digits.
 */
export function deviceId(publicKey: Uint8Array): string {
  return toHex(sha256(publicKey).subarray(0, 6));
}
