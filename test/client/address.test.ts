/**
 * parseServerAddress (src/client/connection.ts): HOST, HOST:PORT and
 * [IPv6]:PORT, default port 7447, and a normalized `id` (the known_hosts key
 * and account directory name). Anything else is a usage error (exit 2).
 */
import { describe, expect, test } from "bun:test";
import { DEFAULT_PORT, parseServerAddress } from "../../src/client/connection.ts";
import { CliError, EXIT, fromError } from "../../src/commands/exit.ts";
import { SecureChatError } from "../../src/errors.ts";

function usageError(s: string): CliError {
  try {
    parseServerAddress(s);
  } catch (e) {
    if (!(e instanceof SecureChatError)) throw new Error(`expected SecureChatError, got ${String(e)}`);
    return fromError(e);
  }
  throw new Error(`${JSON.stringify(s)} was accepted`);
}

describe("parseServerAddress", () => {
  test("the default port is 7447", () => {
    expect(DEFAULT_PORT).toBe(7447);
  });

  test.each([
    ["127.0.0.1", { host: "127.0.0.1", port: 7447, id: "127.0.0.1:7447" }],
    ["127.0.0.1:7447", { host: "127.0.0.1", port: 7447, id: "127.0.0.1:7447" }],
    ["127.0.0.1:1", { host: "127.0.0.1", port: 1, id: "127.0.0.1:1" }],
    ["127.0.0.1:65535", { host: "127.0.0.1", port: 65535, id: "127.0.0.1:65535" }],
    ["localhost", { host: "localhost", port: 7447, id: "localhost:7447" }],
    ["chat.example.org:8000", { host: "chat.example.org", port: 8000, id: "chat.example.org:8000" }],
    ["[::1]:7447", { host: "::1", port: 7447, id: "[::1]:7447" }],
    ["[::1]", { host: "::1", port: 7447, id: "[::1]:7447" }],
    ["[2001:db8::42]:443", { host: "2001:db8::42", port: 443, id: "[2001:db8::42]:443" }],
    ["[::ffff:127.0.0.1]:9", { host: "::ffff:127.0.0.1", port: 9, id: "[::ffff:127.0.0.1]:9" }],
  ])("%p", (s, want) => {
    expect(parseServerAddress(s)).toEqual(want);
  });

  describe("id normalization", () => {
    test("host names are lowercased", () => {
      expect(parseServerAddress("Chat.Example.ORG:7447")).toEqual({ host: "chat.example.org", port: 7447, id: "chat.example.org:7447" });
      expect(parseServerAddress("LOCALHOST").id).toBe("localhost:7447");
    });

    test("IPv6 hex digits are lowercased, the brackets kept in the id", () => {
      expect(parseServerAddress("[FE80::ABCD]:7447")).toEqual({ host: "fe80::abcd", port: 7447, id: "[fe80::abcd]:7447" });
    });

    test("the same server spelled differently gets the same id", () => {
      const ids = ["example.com", "EXAMPLE.com:7447", "example.COM:07447"].map((s) => parseServerAddress(s).id);
      expect(new Set(ids)).toEqual(new Set(["example.com:7447"]));
    });

    test("an explicit port is part of the id", () => {
      expect(parseServerAddress("example.com:7448").id).not.toBe(parseServerAddress("example.com").id);
    });
  });

  describe("invalid → CliError, exit 2", () => {
    test.each([
      "",
      "   ",
      "host:0",
      "host:00000",
      "host:65536",
      "host:99999",
      "host:123456",
      "host:",
      ":7447",
      "host:port",
      "host:-1",
      "host:+80",
      "host:80.5",
      "a:b:c",
      "::1",
      "::1:7447",
      "[::1",
      "::1]",
      "[::1]:",
      "[::1]:0",
      "[::1]:65536",
      "[]",
      "[]:7447",
      "[not-ipv6]:7447",
      "[::1]x",
      "host name",
      "host :7447",
      "host: 7447",
      "host\t:7447",
      "ho\nst",
      "tcp://host:7447",
      "host/path",
      "user @host:7447",
    ])("%p", (s) => {
      const e = usageError(s);
      expect(e.exitCode).toBe(EXIT.USAGE);
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe(`"${s}" is not a server address`);
      expect(e.hints.join("\n")).toContain("HOST:PORT");
    });
  });
});
