/**
 * The server's long-term Ed25519 host key, `host_key` in the data directory
 * (mode 0600), created on first start; `host_key.pub` beside it holds the
 * public key for clients and auditors (`transcript verify --host-key`).
 *
 * Like sshd, the server refuses a host key that other users may read or
 * write: a key that has been readable by others must be presumed copied.
 * Errors name the file, never its content.
 */
import { join } from "node:path";
import { toBase64 } from "../bytes.ts";
import type { Ed25519KeyPair } from "../crypto/index.ts";
import { loadKeyFile, loadOrCreateKeyFile, writePrivateFile } from "../paths.ts";

const HEADER = "securechat-host-key-v1";

/** The host key as loaded once at start: serve signs the transcript with it and hands it to the server. */
export interface HostKey {
  key: Ed25519KeyPair;
  /** Made on this start (the operator is told so). */
  created: boolean;
}

export function loadOrCreateHostKey(dataDir: string): HostKey {
  const loaded = loadOrCreateKeyFile(hostKeyPath(dataDir), HEADER, "host_key", "host key");
  if (loaded.created) writePrivateFile(join(dataDir, "host_key.pub"), `ed25519 ${toBase64(loaded.key.publicKey)}\n`);
  return loaded;
}

export const hostKeyPath = (dataDir: string): string => join(dataDir, "host_key");

/** The host key as a start would load it, or null when a start would make one; nothing is written. */
export function loadHostKey(dataDir: string): Ed25519KeyPair | null {
  return loadKeyFile(hostKeyPath(dataDir), HEADER, "host_key", "host key");
}
