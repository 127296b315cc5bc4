/**
 * The user's identity key at rest (`accounts/HOST:PORT/USER.key`, mode 0600):
 * the Ed25519 seed sealed with XChaCha20-Poly1305 under a key derived from
 * the password with scrypt (N = 2^17, r = 8, p = 1: OWASP's recommendation).
 * The file's other fields are the AEAD's associated data, so a sealed key
 * cannot be moved to another user or server unnoticed.
 */
import { scrypt } from "node:crypto";
import { existsSync, readFileSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import { type Ed25519KeyPair, ed25519Generate, randomBytes, wipe, xchachaOpenRandom, xchachaSealRandom } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { normalizePassword } from "../password.ts";
import { clientHome, writePrivateFile } from "../paths.ts";

export const SCRYPT = { N: 2 ** 17, r: 8, p: 1, maxmem: 256 * 1024 * 1024 } as const;

interface KeyFile {
  version: 1;
  user: string;
  server: string;
  public_key: string;
  kdf: { name: "scrypt"; N: number; r: number; p: number; salt: string };
  sealed: string;
}

export function accountDir(server: string): string {
  return join(clientHome(), "accounts", server);
}

export function identityPath(server: string, user: string): string {
  return join(accountDir(server), `${user}.key`);
}

/**
 * scrypt over the NFKC-normalized password's UTF-8 bytes. The byte copy and
 * node's output buffer are ours: the first is wiped when scrypt is done, the
 * second is returned as is (no copy left behind) for the caller to wipe.
 * The password string itself cannot be wiped (docs/SECURITY.md §5).
 */
function deriveKey(password: string, salt: Uint8Array, p: { N: number; r: number; p: number }): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const pw = utf8(normalizePassword(password));
    const failed = (cause: unknown) => {
      wipe(pw);
      reject(new SecureChatError("kdf_failed", "keystore: scrypt failed", { cause }));
    };
    try {
      scrypt(pw, salt, 32, { N: p.N, r: p.r, p: p.p, maxmem: SCRYPT.maxmem }, (err, key) => {
        if (err) return failed(err);
        wipe(pw);
        resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
      });
    } catch (e) {
      failed(e); // node:crypto throws synchronously on invalid parameters
    }
  });
}

function associatedData(f: Omit<KeyFile, "sealed">): Uint8Array {
  return utf8(JSON.stringify([f.version, f.user, f.server, f.public_key, f.kdf.name, f.kdf.N, f.kdf.r, f.kdf.p, f.kdf.salt]));
}

/**
 * The key re-sealed under a new password while the server has not yet
 * confirmed the change (`securechat passwd`, PROTOCOL.md Appendix A.2).
 */
export function pendingIdentityPath(server: string, user: string): string {
  return `${identityPath(server, user)}.new`;
}

/** The server confirmed the new password: its key file replaces the old one (one atomic rename). */
export function promotePendingIdentity(server: string, user: string): void {
  renameSync(pendingIdentityPath(server, user), identityPath(server, user));
}

export function removePendingIdentity(server: string, user: string): void {
  const p = pendingIdentityPath(server, user);
  if (existsSync(p)) unlinkSync(p);
}

export function hasIdentity(server: string, user: string): boolean {
  return existsSync(identityPath(server, user));
}

export async function saveIdentity(server: string, user: string, key: Ed25519KeyPair, password: string, path = identityPath(server, user)): Promise<void> {
  const salt = randomBytes(16);
  const header: Omit<KeyFile, "sealed"> = {
    version: 1,
    user,
    server,
    public_key: toBase64(key.publicKey),
    kdf: { name: "scrypt", N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, salt: toBase64(salt) },
  };
  const k = await deriveKey(password, salt, SCRYPT);
  try {
    const sealed = xchachaSealRandom(k, key.secretKey, associatedData(header));
    writePrivateFile(path, `${JSON.stringify({ ...header, sealed: toBase64(sealed) }, null, 2)}\n`);
  } finally {
    wipe(k);
  }
}

/** Opens the identity key; a wrong password and a tampered file both give `identity_locked`. */
export async function loadIdentity(server: string, user: string, password: string, path = identityPath(server, user)): Promise<Ed25519KeyPair> {
  if (!existsSync(path)) {
    throw new SecureChatError("identity_missing", `keystore: no identity key for ${user} at ${server} (${path})`);
  }
  let f: KeyFile;
  try {
    f = JSON.parse(readFileSync(path, "utf8")) as KeyFile;
    if (f.version !== 1 || f.kdf?.name !== "scrypt" || f.user !== user || f.server !== server) throw new Error("fields");
  } catch {
    // No cause: a JSON parser's message quotes the file's text, and errors never carry a key file's content.
    throw new SecureChatError("identity_corrupt", `keystore: ${path} is not a securechat identity key`);
  }
  const { N, r, p } = f.kdf;
  // Bounds that admit what we write (and stronger) but refuse a file that would make us
  // spin for minutes or exhaust memory: N a power of two in [2^14, 2^20], N·r·128 ≤ maxmem.
  const sane =
    Number.isSafeInteger(N) && Number.isSafeInteger(r) && Number.isSafeInteger(p) && N >= 2 ** 14 && N <= 2 ** 20 && (N & (N - 1)) === 0 &&
    r >= 1 && r <= 16 && p >= 1 && p <= 4 && 128 * N * r * 2 <= SCRYPT.maxmem;
  let salt: Uint8Array;
  try {
    if (!sane) throw new Error("scrypt parameters out of bounds");
    salt = fromBase64(f.kdf.salt);
    if (salt.length < 16) throw new Error("salt too short");
  } catch (cause) {
    throw new SecureChatError("identity_corrupt", `keystore: ${path} has unusable key-derivation parameters`, { cause });
  }
  const k = await deriveKey(password, salt, f.kdf);
  let seed: Uint8Array | undefined;
  try {
    seed = xchachaOpenRandom(k, fromBase64(f.sealed), associatedData(f));
    const pair = ed25519Generate(seed);
    if (toBase64(pair.publicKey) !== f.public_key) throw new Error("public key mismatch");
    return pair; // the caller owns the seed now, and wipes it after signing
  } catch (cause) {
    wipe(seed);
    throw new SecureChatError("identity_locked", "keystore: wrong password for the identity key (or the key file was altered)", { cause });
  } finally {
    wipe(k);
  }
}

export function removeIdentity(server: string, user: string): void {
  const p = identityPath(server, user);
  if (existsSync(p)) unlinkSync(p);
}
