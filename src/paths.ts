/**
 * Where state lives (docs/DESIGN.md §4) and how secret files are written:
 * directories 0700, files 0600, written to a temporary name, fsynced and
 * renamed, so a crash leaves either the old file or the new one, never a
 * torn one, and no other user can read them at any moment.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { type Ed25519KeyPair, ed25519Generate, randomBytes, wipe } from "./crypto/index.ts";
import { fromBase64, toBase64, toHex, utf8 } from "./bytes.ts";
import { SecureChatError } from "./errors.ts";

export function clientHome(): string {
  const env = process.env.SECURECHAT_HOME;
  if (env) return env;
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), ".config"), "securechat");
}

export function serverData(flag?: string): string {
  if (flag) return flag;
  const env = process.env.SECURECHAT_DATA;
  if (env) return env;
  return join(process.env.XDG_DATA_HOME || join(homedir(), ".local", "share"), "securechat");
}

/**
 * A file of this user's that someone else could have written: writable by
 * group or others, or owned by another user. Such a file is not trusted for
 * what it decides (which server gets the password, whom the user hears, which
 * messages are hidden), as ssh refuses such a config.
 */
export function othersMayWrite(st: { mode: number; uid: number }): boolean {
  return (st.mode & 0o022) !== 0 || (process.getuid !== undefined && st.uid !== process.getuid());
}

/** Creates `dir` (and parents) 0700; tightens an existing one we own. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) chmodSync(dir, 0o700);
}

/** Atomically replaces `path` with `data`, mode 0600. */
export function writePrivateFile(path: string, data: string | Uint8Array): void {
  ensurePrivateDir(dirname(path));
  const tmp = `${path}.${toHex(randomBytes(6))}.tmp`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(tmp);
    } catch {
      // never created or already renamed
    }
    throw e;
  }
  syncDir(dirname(path));
}

/**
 * Creates an empty `path` with mode 0600 in one step unless it exists, so a
 * database opened on it next is never readable by others (SQLite creates
 * files under the umask, and gives -wal and -shm the database file's mode).
 */
export function createPrivateFile(path: string): void {
  if (existsSync(path)) return;
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (e) {
    if ((e as { code?: string }).code !== "EEXIST") throw e;
  }
}

/** Makes a rename durable (POSIX: the directory entry lives in the directory). */
export function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Not every filesystem lets a directory be opened for fsync; the rename still happened.
  }
}

/**
 * A long-term Ed25519 key in a 0600 file of one line, `HEADER base64(seed)`,
 * made on first use. Like sshd, a key file other users may read or write is
 * refused: a key that has been readable by others must be presumed copied.
 * Errors (codes `CODE_permissions`, `CODE_invalid`) name the file, never its
 * content.
 */
export function loadOrCreateKeyFile(path: string, header: string, code: string, what: string): { key: Ed25519KeyPair; created: boolean } {
  const loaded = loadKeyFile(path, header, code, what);
  if (loaded) return { key: loaded, created: false };
  const key = ed25519Generate();
  const bytes = utf8(`${header} ${toBase64(key.secretKey)}\n`);
  try {
    writePrivateFile(path, bytes);
  } finally {
    wipe(bytes);
  }
  return { key, created: true };
}

/** The key of a key file as loadOrCreateKeyFile reads it, or null when there is none (nothing is made). */
export function loadKeyFile(path: string, header: string, code: string, what: string): Ed25519KeyPair | null {
  if (!existsSync(path)) return null;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new SecureChatError(
      `${code}_permissions`,
      `${what}: ${path} has mode ${mode.toString(8).padStart(4, "0")}, open to other users; it must be 0600 (chmod 600 it, and replace the key if others may have read it)`,
    );
  }
  const [h, secret] = readFileSync(path, "utf8").trim().split(/\s+/);
  if (h !== header || secret === undefined) throw new SecureChatError(`${code}_invalid`, `${what}: ${path} is not a securechat ${what}`);
  try {
    return ed25519Generate(fromBase64(secret, 32));
  } catch (cause) {
    throw new SecureChatError(`${code}_invalid`, `${what}: ${path} is corrupt`, { cause });
  }
}
