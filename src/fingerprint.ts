/** Host key fingerprints as OpenSSH prints them: "SHA256:" + unpadded base64 of SHA-256(key). */
import { toBase64 } from "./bytes.ts";
import { sha256 } from "./crypto/index.ts";

export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${toBase64(sha256(publicKey)).replace(/=+$/, "")}`;
}
