/**
 * The server's long-term Ed25519 host key, `host_key` in the data directory
 * (mode 0600), created on first start; `host_key.pub` beside it holds the
 * public key for clients and auditors (`transcript verify --host-key`).
 *
 * Like sshd, the server refuses a host key that other users may read or
 * write: a key that has been readable by others must be presumed copied.
 * Errors name the file, never its content.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import { type Ed25519KeyPair, ed25519Generate, wipe } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { writePrivateFile } from "../paths.ts";

const HEADER = "securechat-host-key-v1";

/** The host key as loaded once at start: serve signs the transcript with it and hands it to the server. */
export interface HostKey {
  key: Ed25519KeyPair;
  /** Made on this start (the operator is told so). */
  created: boolean;
}

export function loadOrCreateHostKey(dataDir: string): HostKey {
  const path = join(dataDir, "host_key");
  if (existsSync(path)) {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new SecureChatError(
        "host_key_permissions",
        `host key: ${path} has mode ${mode.toString(8).padStart(4, "0")}, open to other users; it must be 0600 (chmod 600 it, and replace the key if others may have read it)`,
      );
    }
    const text = readFileSync(path, "utf8");
    const [header, secret] = text.trim().split(/\s+/);
    if (header !== HEADER || secret === undefined) {
      throw new SecureChatError("host_key_invalid", `host key: ${path} is not a securechat host key`);
    }
    let key: Ed25519KeyPair;
    try {
      key = ed25519Generate(fromBase64(secret, 32));
    } catch (cause) {
      throw new SecureChatError("host_key_invalid", `host key: ${path} is corrupt`, { cause });
    }
    return { key, created: false };
  }
  const key = ed25519Generate();
  const bytes = utf8(`${HEADER} ${toBase64(key.secretKey)}\n`);
  try {
    writePrivateFile(path, bytes);
  } finally {
    wipe(bytes);
  }
  writePrivateFile(join(dataDir, "host_key.pub"), `ed25519 ${toBase64(key.publicKey)}\n`);
  return { key, created: true };
}
