/**
 * The ignore list on disk (src/client/ignores.ts): a private file per
 * account, one name a line, written atomically and read again before each
 * change; bounded in names and bytes; a file that breaks the rules is a
 * one-line error naming it (and the line), never a crash or a silent reset.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { IGNORE_FILE_MAX, IGNORE_MAX, IgnoreList, ignorePath, loadIgnores, saveIgnores } from "../../src/client/ignores.ts";
import { isSecureChatError } from "../../src/errors.ts";

let n = 0;
/** A fresh server id per test, so tests never see each other's files. */
const server = () => `ignores-${++n}.test:7447`;
const USER = "alice";

/** Writes the ignore file's raw content (mode 0600 unless said). */
function plant(srv: string, text: string | Uint8Array, mode = 0o600): string {
  const path = ignorePath(srv, USER);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

/** The error loading gives, as the user sees it: one line. */
function loadError(srv: string): string {
  try {
    loadIgnores(srv, USER);
  } catch (e) {
    expect(isSecureChatError(e, "ignore_file_invalid")).toBe(true);
    const message = (e as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("the file was accepted");
}

describe("the ignore file", () => {
  test("it lives next to the account's key and ticket", () => {
    expect(ignorePath("h:1", USER)).toBe(join(process.env.SECURECHAT_HOME!, "accounts", "h:1", `${USER}.ignore`));
  });

  test("no file: no one is ignored, and nothing is written by reading", () => {
    const srv = server();
    expect(new IgnoreList(srv, USER).list()).toEqual([]);
    expect(() => statSync(ignorePath(srv, USER))).toThrow();
  });

  test("add and remove write the file at once: 0600, names sorted one a line, no temporary file left; a new list reads it", () => {
    const srv = server();
    const list = new IgnoreList(srv, USER);
    expect(list.add("dave")).toBe("added");
    expect(list.add("bob")).toBe("added");
    expect(list.add("bob")).toBe("already");
    const path = ignorePath(srv, USER);
    expect(readFileSync(path, "utf8")).toBe("bob\ndave\n");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    expect(readdirSync(dirname(path))).toEqual([`${USER}.ignore`]);
    expect(new IgnoreList(srv, USER).has("bob")).toBe(true);
    expect(list.remove("bob")).toBe("removed");
    expect(list.remove("bob")).toBe("absent");
    expect(readFileSync(path, "utf8")).toBe("dave\n");
    expect(new IgnoreList(srv, USER).list()).toEqual(["dave"]);
  });

  test("two terminals of one account: each change reads the file first, so neither loses the other's", () => {
    const srv = server();
    const one = new IgnoreList(srv, USER);
    const two = new IgnoreList(srv, USER);
    one.add("bob");
    two.add("carol");
    expect(readFileSync(ignorePath(srv, USER), "utf8")).toBe("bob\ncarol\n");
    expect(two.has("bob")).toBe(true);
    one.remove("carol");
    expect(one.list()).toEqual(["bob"]);
  });

  test("blank lines, CRLF and a name twice are read; the next write tidies them", () => {
    const srv = server();
    plant(srv, "bob\r\n\ncarol\nbob\n\n");
    const list = new IgnoreList(srv, USER);
    expect(list.list()).toEqual(["bob", "carol"]);
    list.add("dave");
    expect(readFileSync(ignorePath(srv, USER), "utf8")).toBe("bob\ncarol\ndave\n");
  });

  test("a line that is not a user name is an error naming the file and the line", () => {
    for (const bad of ["Bob", " bob", "bob carol", "b", "x".repeat(33), "../../etc", "bob\u0000", "# a comment"]) {
      const srv = server();
      const path = plant(srv, `carol\n${bad}\n`);
      expect(loadError(srv)).toBe(`${path}: line 2 is not a user name (one name a line: a lowercase letter, then a-z, 0-9, _ or -)`);
    }
  });

  test(`at most ${IGNORE_MAX} names: a longer file is refused, and a full list refuses one more`, () => {
    const names = Array.from({ length: IGNORE_MAX }, (_, i) => `user${i}`);
    const srv = server();
    const path = plant(srv, `${[...names, "user-one-too-many"].join("\n")}\n`);
    expect(loadError(srv)).toBe(`${path}: more than ${IGNORE_MAX} names`);
    const full = server();
    saveIgnores(full, USER, names);
    const list = new IgnoreList(full, USER);
    expect(list.list().length).toBe(IGNORE_MAX);
    expect(list.add("user0")).toBe("already");
    expect(() => list.add("bob")).toThrow(`you ignore ${IGNORE_MAX} users already, the most a list holds: /unignore one first`);
    expect(loadIgnores(full, USER).has("bob")).toBe(false);
  });

  test(`a file over ${IGNORE_FILE_MAX} bytes is refused before it is read`, () => {
    const srv = server();
    const path = plant(srv, "\n".repeat(IGNORE_FILE_MAX + 1));
    expect(loadError(srv)).toBe(`${path}: ${IGNORE_FILE_MAX + 1} bytes, more than an ignore list may hold (${IGNORE_FILE_MAX})`);
  });

  test("a directory, or a file other users may write, is refused", () => {
    const dir = server();
    mkdirSync(ignorePath(dir, USER), { recursive: true });
    expect(loadError(dir)).toBe(`${ignorePath(dir, USER)}: not a regular file`);
    const srv = server();
    const path = plant(srv, "bob\n", 0o622);
    expect(loadError(srv)).toBe(`${path}: writable by other users (mode 622) or owned by another user; not read`);
  });

  test("a change over a file broken meanwhile fails with the reason and leaves the file as it was", () => {
    const srv = server();
    const list = new IgnoreList(srv, USER);
    list.add("bob");
    const path = plant(srv, "bob\nNOT A NAME\n");
    expect(() => list.add("carol")).toThrow(`${path}: line 2 is not a user name`);
    expect(readFileSync(path, "utf8")).toBe("bob\nNOT A NAME\n");
    expect(list.has("bob")).toBe(true);
  });
});
