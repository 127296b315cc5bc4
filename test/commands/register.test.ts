/**
 * `securechat register` in the order people expect: the host key first,
 * then whether the name is free, and only then the password. These runs
 * have no terminal and no --password-stdin, so a command that got as far as
 * the password would fail with "no terminal"; each case must end before.
 * (The prompts themselves, with a terminal, are driven in test/e2e/tmux.sh.)
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { identityPath } from "../../src/client/keystore.ts";
import { runCli as run } from "../cli.ts";
import { type TestServer, registerRaw, startServer } from "../server/helpers.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startServer();
  await registerRaw(t.port, "alice", "register test passphrase");
});
afterAll(async () => {
  await t.server.stop();
});
beforeEach(() => {
  process.env.SECURECHAT_HOME = join(mkdtempSync(join(tmpdir(), "register-test-")), "home");
});

describe("register: host key, then the name, then the password", () => {
  test("an unknown host key stops it first (exit 4): the server is not asked about the name", async () => {
    const r = await run("register", "bob", "--server", t.address);
    expect(r.code).toBe(4);
    expect(r.stderr).toStartWith(`securechat: ${t.address} is not a known host`);
    expect(t.events.some((e) => e.event === "check_name")).toBe(false);
  });

  test("a taken name is said before any password is asked, and leaves no key behind", async () => {
    const r = await run("register", "alice", "--server", t.address, "--accept-new-host");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`securechat: the name "alice" is taken at ${t.address}\nhint: choose another user name\n`);
    expect(r.stderr).not.toContain("password");
    expect(existsSync(identityPath(t.address, "alice"))).toBe(false);
    expect(t.events.filter((e) => e.event === "check_name").at(-1)?.fields).toMatchObject({ user: "alice", available: false });
  });

  test("a free name is said, then the password is asked (here: no terminal to ask on)", async () => {
    const r = await run("register", "bob", "--server", t.address, "--accept-new-host");
    expect(r.stderr).toContain(`the name "bob" is free at ${t.address}\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("securechat: no terminal to ask for the password\n");
  });
});
