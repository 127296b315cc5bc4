/**
 * The interactive client's ignore list (`accounts/HOST:PORT/USER.ignore`,
 * 0600, docs/PROTOCOL.md Appendix A): the users whose lines the chat
 * screen does not show. One user name a line; at most IGNORE_MAX names and
 * IGNORE_FILE_MAX bytes. A file that breaks these rules is a one-line error
 * naming the file (and the line), never silently ignored or rewritten: the
 * list decides what the user does not see.
 *
 * Every change reads the file again first, so two terminals of one account
 * add to one list rather than overwrite each other's, then writes it
 * atomically (writePrivateFile).
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { SecureChatError } from "../errors.ts";
import { othersMayWrite, writePrivateFile } from "../paths.ts";
import { USER_NAME_RE } from "../protocol/limits.ts";
import { accountDir } from "./keystore.ts";

/** The most names a list holds: far more than anyone ignores, few enough to read and check at every start. */
export const IGNORE_MAX = 1000;
/** The largest file read: IGNORE_MAX names of 32 bytes and their line ends fit with room to spare (blank lines, CRLF). */
export const IGNORE_FILE_MAX = 64 * 1024;

export function ignorePath(server: string, user: string): string {
  return join(accountDir(server), `${user}.ignore`);
}

function invalid(path: string, message: string): SecureChatError {
  return new SecureChatError("ignore_file_invalid", `${path}: ${message}`, { detail: { path } });
}

/** The file's bytes (at most IGNORE_FILE_MAX), or null if there is none. Only a regular file of this user's is read. */
function readBounded(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw invalid(path, `cannot read it: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw invalid(path, "not a regular file");
    // A list someone else can write could hide from this user whoever they chose.
    if (othersMayWrite(st)) {
      throw invalid(path, `writable by other users (mode ${(st.mode & 0o777).toString(8)}) or owned by another user; not read`);
    }
    if (st.size > IGNORE_FILE_MAX) throw invalid(path, `${st.size} bytes, more than an ignore list may hold (${IGNORE_FILE_MAX})`);
    const buf = Buffer.alloc(IGNORE_FILE_MAX + 1);
    let n = 0;
    for (;;) {
      const r = n < buf.length ? readSync(fd, buf, n, buf.length - n, n) : 0;
      if (r === 0) break;
      n += r;
    }
    if (n > IGNORE_FILE_MAX) throw invalid(path, `more than an ignore list may hold (${IGNORE_FILE_MAX} bytes)`);
    return buf.subarray(0, n).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** Parses an ignore file's text; `path` names it in errors. Blank lines are skipped; a name twice counts once. */
export function parseIgnores(text: string, path: string): Set<string> {
  const names = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const name = lines[i]!.replace(/\r$/, "");
    if (name.trim() === "") continue;
    if (!USER_NAME_RE.test(name)) throw invalid(path, `line ${i + 1} is not a user name (one name a line: a lowercase letter, then a-z, 0-9, _ or -)`);
    names.add(name);
    if (names.size > IGNORE_MAX) throw invalid(path, `more than ${IGNORE_MAX} names`);
  }
  return names;
}

export function loadIgnores(server: string, user: string): Set<string> {
  const path = ignorePath(server, user);
  const text = readBounded(path);
  return text === null ? new Set() : parseIgnores(text, path);
}

/** Writes the list (0600, atomically): the names sorted, one a line. */
export function saveIgnores(server: string, user: string, names: Iterable<string>): void {
  const sorted = [...names].sort();
  writePrivateFile(ignorePath(server, user), sorted.map((n) => `${n}\n`).join(""));
}

/** What a change did, for the screen to say. */
export type IgnoreChange = "added" | "removed" | "already" | "absent";

/** The list as the chat window uses it: kept in memory, every change written through. */
export class IgnoreList {
  #names: Set<string>;

  /** Reads the list; a bad file throws (ignore_file_invalid). */
  constructor(
    readonly server: string,
    readonly user: string,
  ) {
    this.#names = loadIgnores(server, user);
  }

  get path(): string {
    return ignorePath(this.server, this.user);
  }

  has(name: string): boolean {
    return this.#names.has(name);
  }

  list(): string[] {
    return [...this.#names].sort();
  }

  /** Adds `name` (reading the file again first); throws if the list is full or the file cannot be read or written. */
  add(name: string): IgnoreChange {
    return this.#change((names) => {
      if (names.has(name)) return "already";
      if (names.size >= IGNORE_MAX) throw new SecureChatError("ignore_full", `you ignore ${IGNORE_MAX} users already, the most a list holds: /unignore one first`);
      names.add(name);
      return "added";
    });
  }

  remove(name: string): IgnoreChange {
    return this.#change((names) => (names.delete(name) ? "removed" : "absent"));
  }

  #change(f: (names: Set<string>) => IgnoreChange): IgnoreChange {
    const names = loadIgnores(this.server, this.user);
    const result = f(names);
    if (result === "added" || result === "removed") saveIgnores(this.server, this.user, names);
    this.#names = names;
    return result;
  }
}
