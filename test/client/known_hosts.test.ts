/**
 * Host key pinning (src/client/known_hosts.ts): new / known / changed with
 * the 1-based line number to remove (comments and blank lines count),
 * malformed lines skipped, and appends that keep the file private.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { addKnownHost, checkHost, findKnownHost, knownHostsPath } from "../../src/client/known_hosts.ts";

const home = process.env.SECURECHAT_HOME!;

function tempDir(): string {
  return mkdtempSync(join(home, "..", "known-hosts-"));
}

function key(fill: number): Uint8Array {
  return new Uint8Array(32).fill(fill);
}

const KEY_A = key(0xa1);
const KEY_B = key(0xb2);
const KEY_C = key(0xc3);
const mode = (p: string) => statSync(p).mode & 0o777;

describe("known_hosts", () => {
  test("the default path is under SECURECHAT_HOME", () => {
    expect(knownHostsPath()).toBe(join(home, "known_hosts"));
  });

  test("a missing file: every host is new", () => {
    const path = join(tempDir(), "known_hosts");
    expect(checkHost("127.0.0.1:7447", KEY_A, path)).toEqual({ status: "new" });
    expect(findKnownHost("127.0.0.1:7447", path)).toBeNull();
    expect(existsSync(path)).toBe(false);
  });

  test("known, changed (with the line number) and new", () => {
    const path = join(tempDir(), "known_hosts");
    const lines = [
      "# securechat known hosts", // 1
      "", // 2
      "   ", // 3
      "127.0.0.1:7447 ed25519 not-base64!", // 4: malformed key
      `127.0.0.1:7447 ed25519 ${toBase64(new Uint8Array(31))}`, // 5: wrong length
      `127.0.0.1:7447 ssh-rsa ${toBase64(KEY_C)}`, // 6: other key type
      "127.0.0.1:7447 ed25519", // 7: no key
      `# 127.0.0.1:7447 ed25519 ${toBase64(KEY_C)}`, // 8: commented out
      `#127.0.0.1:7447 ed25519 ${toBase64(KEY_C)}`, // 9: commented out
      `chat.example.org:7447 ed25519 ${toBase64(KEY_A)}`, // 10
      `127.0.0.1:74470 ed25519 ${toBase64(KEY_C)}`, // 11: another port, not a prefix match
      `  127.0.0.1:7447\ted25519   ${toBase64(KEY_B)}  `, // 12: the real entry (odd spacing)
      `[::1]:7447 ed25519 ${toBase64(KEY_C)}`, // 13
      "",
    ];
    writeFileSync(path, lines.join("\n"));

    expect(checkHost("127.0.0.1:7447", KEY_B, path)).toEqual({ status: "known" });
    expect(checkHost("127.0.0.1:7447", KEY_A, path)).toEqual({ status: "changed", line: 12, path });
    expect(checkHost("chat.example.org:7447", KEY_A, path)).toEqual({ status: "known" });
    expect(checkHost("chat.example.org:7447", KEY_B, path)).toEqual({ status: "changed", line: 10, path });
    expect(checkHost("[::1]:7447", KEY_C, path)).toEqual({ status: "known" });
    expect(checkHost("127.0.0.2:7447", KEY_B, path)).toEqual({ status: "new" });
    expect(checkHost("127.0.0.1:744", KEY_B, path)).toEqual({ status: "new" });

    const found = findKnownHost("127.0.0.1:7447", path);
    expect(found?.line).toBe(12);
    expect(found?.address).toBe("127.0.0.1:7447");
    expect(found?.key).toEqual(KEY_B);
  });

  test("only malformed lines for a host: it is new", () => {
    const path = join(tempDir(), "known_hosts");
    writeFileSync(path, ["127.0.0.1:7447 ed25519 AAAA", "127.0.0.1:7447 ed25519 !!!!", "garbage"].join("\n"));
    expect(checkHost("127.0.0.1:7447", KEY_A, path)).toEqual({ status: "new" });
  });

  test("the first valid line for a host wins", () => {
    const path = join(tempDir(), "known_hosts");
    writeFileSync(path, [`h:1 ed25519 ${toBase64(KEY_A)}`, `h:1 ed25519 ${toBase64(KEY_B)}`].join("\n"));
    expect(checkHost("h:1", KEY_A, path)).toEqual({ status: "known" });
    expect(checkHost("h:1", KEY_B, path)).toEqual({ status: "changed", line: 1, path });
  });

  test("CRLF line endings still parse", () => {
    const path = join(tempDir(), "known_hosts");
    writeFileSync(path, `# windows\r\n\r\nh:1 ed25519 ${toBase64(KEY_A)}\r\n`);
    expect(checkHost("h:1", KEY_A, path)).toEqual({ status: "known" });
    expect(checkHost("h:1", KEY_B, path)).toEqual({ status: "changed", line: 3, path });
  });

  test("addKnownHost creates the file (and its directory) private", () => {
    const dir = join(tempDir(), "sub", "dir");
    const path = join(dir, "known_hosts");
    addKnownHost("127.0.0.1:7447", KEY_A, path);
    expect(readFileSync(path, "utf8")).toBe(`127.0.0.1:7447 ed25519 ${toBase64(KEY_A)}\n`);
    expect(mode(path)).toBe(0o600);
    expect(mode(dir)).toBe(0o700);
    expect(checkHost("127.0.0.1:7447", KEY_A, path)).toEqual({ status: "known" });
  });

  test("addKnownHost appends, keeping earlier lines and their numbers", () => {
    const path = join(tempDir(), "known_hosts");
    writeFileSync(path, `# mine\n\nh:1 ed25519 ${toBase64(KEY_A)}\n`);
    addKnownHost("h:2", KEY_B, path);
    addKnownHost("h:3", KEY_C, path);
    expect(readFileSync(path, "utf8")).toBe(
      `# mine\n\nh:1 ed25519 ${toBase64(KEY_A)}\nh:2 ed25519 ${toBase64(KEY_B)}\nh:3 ed25519 ${toBase64(KEY_C)}\n`,
    );
    expect(findKnownHost("h:1", path)?.line).toBe(3);
    expect(findKnownHost("h:2", path)?.line).toBe(4);
    expect(findKnownHost("h:3", path)?.line).toBe(5);
    expect(checkHost("h:3", KEY_A, path)).toEqual({ status: "changed", line: 5, path });
  });

  test("addKnownHost after a file without a trailing newline starts a new line", () => {
    const path = join(tempDir(), "known_hosts");
    writeFileSync(path, `h:1 ed25519 ${toBase64(KEY_A)}`);
    addKnownHost("h:2", KEY_B, path);
    expect(readFileSync(path, "utf8")).toBe(`h:1 ed25519 ${toBase64(KEY_A)}\nh:2 ed25519 ${toBase64(KEY_B)}\n`);
    expect(checkHost("h:1", KEY_A, path)).toEqual({ status: "known" });
    expect(checkHost("h:2", KEY_B, path)).toEqual({ status: "known" });
    expect(findKnownHost("h:2", path)?.line).toBe(2);
  });

  test("addKnownHost keeps (and restores) mode 0600 and leaves no temporary files", () => {
    const dir = tempDir();
    const path = join(dir, "known_hosts");
    writeFileSync(path, `h:1 ed25519 ${toBase64(KEY_A)}\n`);
    chmodSync(path, 0o644);
    addKnownHost("h:2", KEY_B, path);
    expect(mode(path)).toBe(0o600);
    addKnownHost("h:3", KEY_C, path);
    expect(mode(path)).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["known_hosts"]);
  });

  test("the default path works end to end", () => {
    addKnownHost("default.test:7447", KEY_A);
    expect(checkHost("default.test:7447", KEY_A)).toEqual({ status: "known" });
    const changed = checkHost("default.test:7447", KEY_B);
    expect(changed.status).toBe("changed");
    if (changed.status === "changed") expect(changed.path).toBe(knownHostsPath());
    expect(mode(knownHostsPath())).toBe(0o600);
  });
});
