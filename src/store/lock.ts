/**
 * One server per data directory. Two servers writing one transcript would
 * interleave two hash chains in it, and it would never verify again; two on
 * one database would race on accounts and tickets. So `serve` holds
 * `DATA/serve.lock` for its whole life: a small SQLite database opened in
 * EXCLUSIVE locking mode, with a write done, so SQLite keeps its POSIX
 * advisory lock on the file until the connection closes. The kernel drops
 * that lock when the process ends, however it ends: a server killed with
 * SIGKILL, or a machine that lost power, leaves nothing that blocks the next
 * start. SQLite also refuses a second holder within one process.
 *
 * `DATA/serve.pid` beside it names the holder, for the message a second
 * server prints; it proves nothing (a crashed server leaves it behind, and the
 * next one overwrites it).
 *
 * A witness's state directory is held the same way (`witness.lock`,
 * `witness.pid`): two witnesses on one state would each cosign from its own
 * memory of the last size, so together they could cosign two branches.
 */
import { Database } from "bun:sqlite";
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { SecureChatError } from "../errors.ts";
import { createPrivateFile, ensurePrivateDir, writePrivateFile } from "../paths.ts";

/** What a writer that must only run under the lock checks before it writes. */
export interface HeldLock {
  readonly held: boolean;
  readonly path: string;
}

/** Who holds a directory: a server (`serve.lock`) or a witness (`witness.lock`). */
export type LockRole = "serve" | "witness";

const files = (role: LockRole) => ({ lock: `${role}.lock`, pid: `${role}.pid`, who: role === "serve" ? "securechat server" : "securechat witness" });

/** The pid a running server (or witness) wrote, or null when there is none that reads as one. */
export function lockHolder(dataDir: string, role: LockRole = "serve"): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, files(role).pid), "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Whether a running server (or witness) holds the lock of `dataDir`, asked
 * without taking it or writing anything: a read-only look at the lock file,
 * which the holder keeps locked EXCLUSIVE, fails busy while it runs.
 */
export function lockHeld(dataDir: string, role: LockRole = "serve"): { held: boolean; pid: number | null } {
  const path = join(dataDir, files(role).lock);
  if (!existsSync(path)) return { held: false, pid: null };
  let db: Database | null = null;
  try {
    db = new Database(path, { readonly: true });
    db.exec("PRAGMA busy_timeout = 0");
    db.query("SELECT count(*) FROM sqlite_master").get();
    return { held: false, pid: null };
  } catch (e) {
    if ((e as { code?: string }).code === "SQLITE_BUSY") return { held: true, pid: lockHolder(dataDir, role) };
    throw new SecureChatError("data_lock_failed", `cannot read ${path}: ${(e as Error).message}`, { cause: e, detail: { data: dataDir, path } });
  } finally {
    db?.close();
  }
}

export class DataLock implements HeldLock {
  #db: Database | null;
  readonly path: string;
  readonly #dataDir: string;
  readonly #pidPath: string;
  readonly #pid: number;

  readonly #role: LockRole;

  private constructor(db: Database, dataDir: string, pid: number, role: LockRole) {
    this.#db = db;
    this.#dataDir = dataDir;
    this.path = join(dataDir, files(role).lock);
    this.#pidPath = join(dataDir, files(role).pid);
    this.#pid = pid;
    this.#role = role;
  }

  /**
   * Takes the lock of `dataDir` (made 0700 if missing) at once, or throws
   * `data_locked` (detail: data, pid when known) if another server holds it.
   */
  static acquire(dataDir: string, pid = process.pid, role: LockRole = "serve"): DataLock {
    ensurePrivateDir(dataDir);
    const path = join(dataDir, files(role).lock);
    createPrivateFile(path);
    const db = new Database(path, { create: true, strict: true });
    try {
      db.exec("PRAGMA busy_timeout = 0; PRAGMA locking_mode = EXCLUSIVE;");
      // The first write takes the EXCLUSIVE lock; in this locking mode it is never given back.
      db.exec("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL); DELETE FROM holder;");
      db.run("INSERT INTO holder VALUES (?)", [pid]);
      db.exec("COMMIT");
    } catch (e) {
      db.close();
      if ((e as { code?: string }).code === "SQLITE_BUSY") {
        const holder = lockHolder(dataDir, role);
        const who = holder === null ? `another ${files(role).who}` : `another ${files(role).who} (pid ${holder})`;
        throw new SecureChatError("data_locked", `${dataDir} is in use by ${who}`, { detail: { data: dataDir, ...(holder === null ? {} : { pid: holder }) }, cause: e });
      }
      throw new SecureChatError("data_lock_failed", `cannot lock ${path}: ${(e as Error).message}`, { cause: e, detail: { data: dataDir, path } });
    }
    const lock = new DataLock(db, dataDir, pid, role);
    writePrivateFile(lock.#pidPath, `${pid}\n`);
    return lock;
  }

  get held(): boolean {
    return this.#db !== null;
  }

  /** Gives the lock back (the pid file goes first, if it is still ours). */
  release(): void {
    if (!this.#db) return;
    try {
      if (lockHolder(this.#dataDir, this.#role) === this.#pid) unlinkSync(this.#pidPath);
    } catch {
      // already gone
    }
    this.#db.close();
    this.#db = null;
  }
}
