/**
 * The key backup file (`securechat key export` / `key import`, PROTOCOL.md
 * Appendix A.7): this machine's device key for one account, its Ed25519
 * seed sealed with XChaCha20-Poly1305 under a key derived with argon2id
 * from a passphrase of its own. Like age, the file is a text header naming
 * the format and every parameter, then the sealed bytes; the header is the
 * AEAD's associated data, so no parameter, user, server or public key can
 * be changed unnoticed.
 *
 *   securechat key backup v1
 *   kdf argon2id m=65536 t=3 p=1 salt=BASE64(16 bytes)
 *   user USER
 *   server HOST:PORT
 *   key BASE64(public key, 32 bytes)
 *   sealed BASE64(nonce(24) ‖ ciphertext(32) ‖ tag(16))
 */
import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from "node:fs";
import { fromBase64, toBase64, utf8 } from "../bytes.ts";
import {
  type Argon2Params,
  type Ed25519KeyPair,
  XCHACHA_NONCE_LENGTH,
  argon2idKey,
  ed25519Generate,
  randomBytes,
  wipe,
  xchachaOpenRandom,
  xchachaSeal,
} from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { normalizePassword } from "../password.ts";
import { USER_NAME_RE } from "../protocol/limits.ts";
import { parseServerAddress } from "./connection.ts";

export const BACKUP_MAGIC = "securechat key backup v1";
/** What `key export` writes: 64 MiB, 3 passes, 1 lane (RFC 9106 §4's second choice, with one lane). */
export const BACKUP_ARGON2: Argon2Params = { m: 65536, t: 3, p: 1 };
/** What `key import` accepts: at least OWASP's minimum (19 MiB, t = 2), at most 1 GiB and 10 passes. */
export const BACKUP_BOUNDS = { mMin: 19456, mMax: 1 << 20, tMin: 2, tMax: 10, pMin: 1, pMax: 4 } as const;
const SALT_LENGTH = 16;
/** A backup is six short lines; anything much longer is not one. */
const MAX_FILE = 4096;

export interface KeyBackup {
  user: string;
  server: string;
  key: Ed25519KeyPair;
}

function header(user: string, server: string, publicKey: Uint8Array, p: Argon2Params, salt: Uint8Array): string {
  return `${BACKUP_MAGIC}\nkdf argon2id m=${p.m} t=${p.t} p=${p.p} salt=${toBase64(salt)}\nuser ${user}\nserver ${server}\nkey ${toBase64(publicKey)}\n`;
}

async function deriveKey(passphrase: string, salt: Uint8Array, p: Argon2Params): Promise<Uint8Array> {
  const pw = utf8(normalizePassword(passphrase));
  try {
    return await argon2idKey(pw, salt, p);
  } finally {
    wipe(pw);
  }
}

/**
 * The backup file's text for `key`. `salt` and `nonce` are fresh unless
 * given (the known-answer test gives them).
 */
export async function sealKeyBackup(
  key: Ed25519KeyPair,
  user: string,
  server: string,
  passphrase: string,
  p: Argon2Params = BACKUP_ARGON2,
  salt: Uint8Array = randomBytes(SALT_LENGTH),
  nonce: Uint8Array = randomBytes(XCHACHA_NONCE_LENGTH),
): Promise<string> {
  const head = header(user, server, key.publicKey, p, salt);
  const k = await deriveKey(passphrase, salt, p);
  try {
    const sealed = xchachaSeal(k, nonce, key.secretKey, utf8(head));
    const box = new Uint8Array(nonce.length + sealed.length);
    box.set(nonce, 0);
    box.set(sealed, nonce.length);
    return `${head}sealed ${toBase64(box)}\n`;
  } finally {
    wipe(k);
  }
}

const LINES = [
  /^securechat key backup v1$/,
  /^kdf argon2id m=(\d{1,8}) t=(\d{1,3}) p=(\d) salt=([A-Za-z0-9+/=]+)$/,
  /^user ([a-z][a-z0-9_-]{1,31})$/,
  /^server (\S{1,300})$/,
  /^key ([A-Za-z0-9+/=]{44})$/,
  /^sealed ([A-Za-z0-9+/=]+)$/,
] as const;

function isServerId(s: string): boolean {
  try {
    return parseServerAddress(s).id === s;
  } catch {
    return false;
  }
}

function corrupt(what: string): never {
  throw new SecureChatError("backup_corrupt", `key backup: ${what}`);
}

/** Opens a backup's text with its passphrase; a wrong passphrase and an altered file both give `backup_locked`. */
export async function openKeyBackup(text: string, passphrase: string): Promise<KeyBackup> {
  if (text.length > MAX_FILE) corrupt("too long to be a securechat key backup");
  const lines = text.split("\n");
  if (lines.length !== 7 || lines[6] !== "") corrupt("not a securechat key backup (six lines, each ending in a newline)");
  const m = LINES.map((re, i) => re.exec(lines[i]!));
  if (m.some((x) => x === null)) corrupt(`not a securechat key backup (line ${m.findIndex((x) => x === null) + 1})`);
  const [, kdf, userLine, serverLine, keyLine, sealedLine] = m as RegExpExecArray[];
  const p = { m: Number(kdf![1]), t: Number(kdf![2]), p: Number(kdf![3]) };
  const b = BACKUP_BOUNDS;
  if (p.m < b.mMin || p.m > b.mMax || p.t < b.tMin || p.t > b.tMax || p.p < b.pMin || p.p > b.pMax) {
    corrupt(`argon2id parameters m=${p.m} t=${p.t} p=${p.p} are outside what is accepted (m ${b.mMin}…${b.mMax}, t ${b.tMin}…${b.tMax}, p ${b.pMin}…${b.pMax})`);
  }
  let salt: Uint8Array;
  let publicKey: Uint8Array;
  let box: Uint8Array;
  try {
    salt = fromBase64(kdf![4]!, SALT_LENGTH);
    publicKey = fromBase64(keyLine![1]!, 32);
    box = fromBase64(sealedLine![1]!, XCHACHA_NONCE_LENGTH + 32 + 16);
  } catch {
    return corrupt("a base64 value has the wrong spelling or length");
  }
  const user = userLine![1]!;
  const server = serverLine![1]!;
  if (!USER_NAME_RE.test(user)) corrupt("the user name is not valid");
  // The server names the directory the key is written to (accounts/SERVER/): only a server address as the client writes it.
  if (!isServerId(server)) corrupt("the server is not a server address (HOST:PORT)");
  const head = lines.slice(0, 5).join("\n") + "\n";
  const k = await deriveKey(passphrase, salt, p);
  let seed: Uint8Array | undefined;
  try {
    seed = xchachaOpenRandom(k, box, utf8(head));
    const key = ed25519Generate(seed);
    if (toBase64(key.publicKey) !== toBase64(publicKey)) throw new Error("public key mismatch");
    return { user, server, key };
  } catch (cause) {
    wipe(seed);
    throw new SecureChatError("backup_locked", "key backup: wrong passphrase (or the file was altered)", { cause });
  } finally {
    wipe(k);
  }
}

/** Writes a new backup file, mode 0600 from its creation; refuses to replace an existing file. */
export function writeBackupFile(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (e) {
    if ((e as { code?: string }).code === "EEXIST") throw new SecureChatError("backup_exists", `${path} exists already; choose another name or remove it first`);
    throw e;
  }
  try {
    const bytes = Buffer.from(text, "utf8");
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Reads a backup file, refusing anything too large to be one before reading it. */
export function readBackupFile(path: string): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new SecureChatError("backup_missing", `no file ${path}`);
  }
  if (size > MAX_FILE) corrupt(`${path} is too large to be a securechat key backup`);
  return readFileSync(path, "utf8");
}
