/**
 * The late-DM marker (`accounts/HOST:PORT/USER.dmseen`, 0600,
 * docs/PROTOCOL.md Appendix A.5): the highest `seq` of a late direct
 * message (§7.3) this account has shown on this machine. The server shows
 * every login the DMs stored while the user was away, for the whole
 * retention; the client shows a late DM only if its seq is above the
 * marker, so each device sees a stored DM once, across runs and reconnects.
 *
 * The file only ever hides messages, so a file that cannot be trusted is
 * not an error that stops the client: one that is missing, unreadable, not a
 * regular file, writable by others, too long or not one decimal integer
 * counts as 0 — the late DMs are shown once more, as before the marker
 * existed — and is replaced by a good one at the next advance. Never the
 * other way round: nothing but this account's own file can hide a message.
 */
import { lstatSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { othersMayWrite, writePrivateFile } from "../paths.ts";
import { accountDir } from "./keystore.ts";

/** The largest file read: a safe integer has 16 digits; the rest is room for a CRLF. */
export const DMSEEN_FILE_MAX = 32;
const MARKER_RE = /^(0|[1-9][0-9]{0,15})\r?\n$/;

export function dmSeenPath(server: string, user: string): string {
  return join(accountDir(server), `${user}.dmseen`);
}

/** The marker in `path` (0 if there is none), or why the file was not trusted (it then counts as 0). */
export function readDmSeen(path: string): { seq: number; problem: string | null } {
  const bad = (why: string) => ({ seq: 0, problem: `${path}: ${why}; late direct messages already shown may be shown again` });
  try {
    const st = lstatSync(path);
    if (!st.isFile()) return bad("not a regular file");
    // A marker someone else can write could hide this user's messages.
    if (othersMayWrite(st)) return bad("writable by other users or owned by another user; not read");
    if (st.size > DMSEEN_FILE_MAX) return bad(`${st.size} bytes, more than a marker holds (${DMSEEN_FILE_MAX})`);
    const text = readFileSync(path, "utf8");
    const m = MARKER_RE.exec(text);
    const seq = m ? Number(m[1]) : NaN;
    if (!Number.isSafeInteger(seq)) return bad("not one decimal integer and a newline");
    return { seq, problem: null };
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return { seq: 0, problem: null };
    return bad(`cannot read it: ${(e as Error).message}`);
  }
}

/** The marker of one account as a chat run uses it: read once, advanced in memory, written (atomically, 0600) by flush. */
export class DmSeen {
  readonly path: string;
  #seq: number;
  #written: number;
  /** Why the file read at start was not trusted, if it was not. */
  readonly problem: string | null;

  constructor(server: string, user: string) {
    this.path = dmSeenPath(server, user);
    const r = readDmSeen(this.path);
    this.#seq = this.#written = r.seq;
    this.problem = r.problem;
  }

  get seq(): number {
    return this.#seq;
  }

  /** True if the late DM `seq` was shown on this device already (at or below the marker). */
  shown(seq: number): boolean {
    return seq <= this.#seq;
  }

  /** Records that the late DM `seq` was shown; flush writes it. */
  advance(seq: number): void {
    if (seq > this.#seq) this.#seq = seq;
  }

  get dirty(): boolean {
    return this.#seq !== this.#written;
  }

  /**
   * Writes the marker if it moved: the higher of this run's and the file's
   * (read again, so two runs of one account on this machine never move it
   * back). Throws if the file cannot be written.
   */
  flush(): void {
    if (!this.dirty) return;
    const seq = Math.max(this.#seq, readDmSeen(this.path).seq);
    writePrivateFile(this.path, `${seq}\n`);
    this.#seq = this.#written = seq;
  }
}

/**
 * Forgets the marker of `user` at `server`: `register` calls it once the
 * server made the account. A name that could be registered had no account
 * there, so a marker left from an earlier one belongs to a server that has
 * since lost its accounts and started its DM numbers again: kept, it would
 * hide the new account's first DMs.
 */
export function forgetDmSeen(server: string, user: string): void {
  try {
    unlinkSync(dmSeenPath(server, user));
  } catch (e) {
    if ((e as { code?: string }).code !== "ENOENT") throw e;
  }
}
