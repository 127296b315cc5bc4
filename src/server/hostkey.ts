/**
 * The server's long-term Ed25519 host key, `host_key` in the data directory
 * (mode 0600), created on first start; `host_key.pub` beside it holds the
 * public key for clients and auditors (`transcript verify --host-key`).
 *
 * Like sshd, the server refuses a host key that other users may read or
 * write: a key that has been readable by others must be presumed copied.
 * Errors name the file, never its content. `serve --host-key FILE` reads
 * the key from FILE instead (a cluster's nodes share one), and never makes it.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { SecureChatError } from "../errors.ts";
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

/**
 * Where a start finds its host key: `--host-key FILE`, else `host_key` in
 * the data directory. Only the default is ever made: the nodes of a cluster
 * share one key file, and a node that invented its own would be a different
 * server to every client that pinned the cluster.
 */
export interface HostKeySource {
  path: string;
  /** The default path, `DATA/host_key` (given or not): the one a start may create. */
  isDefault: boolean;
}

export function hostKeySource(dataDir: string, file?: string): HostKeySource {
  const path = resolve(file ?? hostKeyPath(dataDir));
  return { path, isDefault: path === resolve(hostKeyPath(dataDir)) };
}

/** A key file given with --host-key must be there: it is never made. Throws `host_key_missing`, naming the file. */
export function requireGivenHostKey(src: HostKeySource): void {
  if (src.isDefault || existsSync(src.path)) return;
  throw new SecureChatError("host_key_missing", `host key: ${src.path} does not exist; a key given with --host-key is never made (every node of a cluster must use the same one)`, {
    detail: { path: src.path },
  });
}

export function loadOrCreateHostKey(dataDir: string, file?: string): HostKey {
  const src = hostKeySource(dataDir, file);
  requireGivenHostKey(src);
  const loaded = loadOrCreateKeyFile(src.path, HEADER, "host_key", "host key");
  // host_key.pub stays beside the data for clients and auditors, whichever file holds the key.
  const pub = join(dataDir, "host_key.pub");
  const text = `ed25519 ${toBase64(loaded.key.publicKey)}\n`;
  if (loaded.created || (!src.isDefault && (!existsSync(pub) || readFileSync(pub, "utf8") !== text))) writePrivateFile(pub, text);
  return loaded;
}

export const hostKeyPath = (dataDir: string): string => join(dataDir, "host_key");

/** The host key as a start would load it, or null when a start would make one (or, for a given file, refuse); nothing is written. */
export function loadHostKey(dataDir: string, file?: string): Ed25519KeyPair | null {
  return loadKeyFile(hostKeySource(dataDir, file).path, HEADER, "host_key", "host key");
}
