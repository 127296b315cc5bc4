/**
 * The default server and user: --server, then $SECURECHAT_SERVER, then
 * $SECURECHAT_HOME/config.toml, then 127.0.0.1:7447; config.toml's subset
 * of TOML and its one-line errors; "nobody is logged in" naming the servers
 * that do have sessions; a connection that fails saying what to check.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUILT_IN_SERVER, chooseServer, configPath, parseConfig, readConfig, writeConfigIfAbsent } from "../../src/client/config.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { saveTicket } from "../../src/client/tickets.ts";
import { ed25519Generate, randomBytes } from "../../src/crypto/index.ts";
import { runCli as run } from "../cli.ts";

let saved: { home?: string; server?: string };
beforeEach(() => {
  saved = { home: process.env.SECURECHAT_HOME, server: process.env.SECURECHAT_SERVER };
  process.env.SECURECHAT_HOME = join(mkdtempSync(join(tmpdir(), "config-test-")), "home");
  delete process.env.SECURECHAT_SERVER;
});
afterEach(() => {
  process.env.SECURECHAT_HOME = saved.home;
  if (saved.server === undefined) delete process.env.SECURECHAT_SERVER;
  else process.env.SECURECHAT_SERVER = saved.server;
});

function writeConfig(text: string): string {
  mkdirSync(process.env.SECURECHAT_HOME!, { recursive: true });
  writeFileSync(configPath(), text);
  return configPath();
}

/** Runs the CLI and expects exactly this exit code and stderr, and nothing on stdout. */
async function expectRun(argv: string[], code: number, stderr: string): Promise<void> {
  expect(await run(...argv)).toEqual({ code, stdout: "", stderr });
}

const ticket = (server: string, user: string) => saveTicket(server, user, { ticket: randomBytes(32), expiresAt: Date.now() + 3_600_000, key: ed25519Generate() });

describe("config.toml", () => {
  test("server, user, comments, blank lines, both kinds of quotes", () => {
    const c = parseConfig(`\uFEFF# my defaults\n\nserver = "Chat.Example:7447"  # the team's\nuser='alice'\n`, "/c.toml");
    expect(c.server?.id).toBe("chat.example:7447");
    expect(c.user).toBe("alice");
    expect(parseConfig("", "/c.toml")).toEqual({ path: "/c.toml" });
  });

  test.each([
    ['sever = "h:1"', 1, 'unknown key "sever" (known: server, user); did you mean "server"?'],
    ['\n\nport = 7447', 3, 'unknown key "port" (known: server, user)'],
    ["server = h:1", 1, 'server must be a string in quotes, e.g. server = "chat.example:7447"'],
    ['server = "h:1', 1, 'server must be a string in quotes, e.g. server = "chat.example:7447"'],
    ["user = 42", 1, 'user must be a string in quotes, e.g. user = "alice"'],
    ['server = "not a host:1"', 1, '"not a host:1" is not a server address (HOST:PORT, or several separated by commas)'],
    ['user = "Alice"', 1, '"Alice" is not a user name'],
    ['user = "ann"\nuser = "bob"', 2, "user is set twice"],
    ["[server]", 1, 'tables are not supported: only server = "HOST:PORT" and user = "NAME"'],
    ["server", 1, 'expected KEY = "VALUE"'],
  ])("%p: one line naming the file and line %d", (text, line, said) => {
    expect(() => parseConfig(text, "/home/a/config.toml")).toThrow(`/home/a/config.toml:${line}: ${said}`);
  });

  test("through the CLI: a bad config.toml is a usage error naming file and line, with what it may hold", async () => {
    const path = writeConfig('server = "h:1"\nsever = "h:2"\n');
    const r = await run("chat");
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `securechat: ${path}:2: unknown key "sever" (known: server, user); did you mean "server"?\n` +
        `hint: fix or remove ${path}: it may hold only server = "HOST:PORT", user = "NAME" and # comments\n`,
    );
  });

  test("writeConfigIfAbsent writes a file readConfig reads back, 0600, and never replaces one", async () => {
    const addr = parseServerAddress("chat.example:7447");
    expect(writeConfigIfAbsent(addr, "alice")).toBe(configPath());
    expect(readConfig()).toMatchObject({ server: addr, user: "alice" });
    const { statSync } = await import("node:fs");
    expect((statSync(configPath()).mode & 0o777).toString(8)).toBe("600");
    expect(writeConfigIfAbsent(parseServerAddress("other:1"), "bob")).toBeNull();
    expect(readConfig().user).toBe("alice");
  });

  test("a cluster's addresses are written as the list and read back as the list", () => {
    const addr = parseServerAddress("a.example:7447,b.example:7448");
    writeConfigIfAbsent(addr, "alice");
    expect(readFileSync(configPath(), "utf8")).toContain('server = "a.example:7447,b.example:7448"');
    expect(readConfig().server).toEqual(addr);
  });
});

describe("which server: --server, then $SECURECHAT_SERVER, then config.toml, then 127.0.0.1:7447", () => {
  test("precedence", () => {
    const config = parseConfig('server = "from-config:1"', "/c.toml");
    expect(chooseServer(undefined, { path: "/c.toml" })).toMatchObject({ addr: { id: BUILT_IN_SERVER }, from: "built-in" });
    expect(chooseServer(undefined, config)).toMatchObject({ addr: { id: "from-config:1" }, from: "config" });
    process.env.SECURECHAT_SERVER = "from-env:2";
    expect(chooseServer(undefined, config)).toMatchObject({ addr: { id: "from-env:2" }, from: "env" });
    expect(chooseServer("from-flag:3", config)).toMatchObject({ addr: { id: "from-flag:3" }, from: "flag" });
    process.env.SECURECHAT_SERVER = "";
    expect(chooseServer(undefined, config).from).toBe("config");
    process.env.SECURECHAT_SERVER = "bad host";
    expect(() => chooseServer(undefined, config)).toThrow('$SECURECHAT_SERVER: "bad host" is not a server address');
  });

  test("chat with no flags uses config.toml's server and user; $SECURECHAT_SERVER wins over the file", async () => {
    writeConfig('server = "cli-config.invalid:7447"\n');
    const r = await run("chat");
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith("securechat: nobody is logged in to cli-config.invalid:7447\n");
    process.env.SECURECHAT_SERVER = "cli-env.invalid:7447";
    expect((await run("chat")).stderr).toStartWith("securechat: nobody is logged in to cli-env.invalid:7447\n");
    expect((await run("chat", "-s", "cli-flag.invalid:7447")).stderr).toStartWith("securechat: nobody is logged in to cli-flag.invalid:7447\n");
  });

  test("login and logout take their USER from config.toml when none is given", async () => {
    writeConfig('server = "cli-config.invalid:7447"\nuser = "carol"\n');
    // No ticket for carol: logout says so without touching the network.
    expect(await run("logout")).toEqual({ code: 0, stdout: "", stderr: "not logged in\n" });
    writeConfig("# nothing set\n");
    const r = await run("logout");
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith("securechat: missing required positional argument: USER\nhint: pass the user name, or set user = \"NAME\" in ");
  });
});

describe("host names are not aliases, but the error says where you do have sessions", () => {
  test("nobody logged in at localhost:7447 names 127.0.0.1:7447 and its users, and how to use it", async () => {
    ticket("127.0.0.1:7447", "alice");
    ticket("127.0.0.1:7447", "bob");
    ticket("chat.example:7447", "alice");
    await expectRun(
      ["chat", "--server", "localhost:7447"],
      2,
      "securechat: nobody is logged in to localhost:7447; you have sessions on 127.0.0.1:7447 (alice, bob), chat.example:7447 (alice)\n" +
        "hint: to use your session there, pass --server 127.0.0.1:7447 (or set it as the default: SECURECHAT_SERVER or server = in config.toml)\n" +
        'hint: host names are not aliases here: to chat at localhost:7447, log in there with "securechat login NAME --server localhost:7447"\n',
    );
  });

  test("with no session anywhere, the hint is how to start: register, or login to an account you have", async () => {
    const r = await run("chat", "--server", "localhost:7447");
    expect(r.stderr).toBe(
      "securechat: nobody is logged in to localhost:7447\n" +
        'hint: nobody has logged in to localhost:7447 from this machine: "securechat register NAME --server localhost:7447" makes an account, "securechat login NAME --server localhost:7447" uses one you have\n',
    );
  });
});

describe("a connection that fails says what to check, not 'internal error'", () => {
  test("refused: names the address and hints at serve --host/--port", async () => {
    ticket("127.0.0.1:1", "alice");
    await expectRun(
      ["logout", "alice", "--server", "127.0.0.1:1"],
      1,
      "securechat: cannot connect to 127.0.0.1:1: connection refused (nothing is listening on that port)\n" +
        'hint: is the server running? start one with "securechat serve --host 127.0.0.1 --port 1", or check --server\n',
    );
  });

  test("a host name that does not resolve: says so and hints at the name", async () => {
    ticket("no-such-host.invalid:7447", "alice");
    const r = await run("logout", "alice", "--server", "no-such-host.invalid:7447");
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith("securechat: cannot connect to no-such-host.invalid:7447: ");
    expect(r.stderr).not.toContain("internal error");
    expect(r.stderr).toMatch(/\nhint: (check the host name "no-such-host\.invalid"|is the server running\?)/);
  });
});

describe("a user with no session at this address but one elsewhere", () => {
  test("chat as config.toml's user at localhost says where that user does have a session", async () => {
    ticket("127.0.0.1:7447", "alice");
    writeConfig('user = "alice"\n');
    await expectRun(
      ["chat", "--server", "localhost:7447"],
      3,
      "securechat: no valid session ticket for alice at localhost:7447\n" +
        "hint: alice has a session on 127.0.0.1:7447: pass --server 127.0.0.1:7447 (host names are not aliases: each HOST:PORT has its own sessions)\n" +
        'hint: run "securechat login alice --server localhost:7447" first, or pass --password-stdin with the password as the first line\n',
    );
  });
});

describe("a file-system mistake is one line naming the path, not an internal error", () => {
  test("$SECURECHAT_HOME inside a file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "config-test-file-"));
    writeFileSync(join(dir, "afile"), "");
    process.env.SECURECHAT_HOME = join(dir, "afile", "home");
    const { fromError } = await import("../../src/commands/exit.ts");
    let thrown: unknown;
    try {
      saveTicket("h:1", "alice", { ticket: randomBytes(32), expiresAt: Date.now() + 1000, key: ed25519Generate() });
    } catch (e) {
      thrown = e;
    }
    const said = fromError(thrown);
    expect(said.exitCode).toBe(1);
    expect(said.message).toBe(`cannot create the directory ${join(dir, "afile", "home", "accounts", "h:1")}: a part of the path is not a directory (ENOTDIR)`);
    expect(said.hints).toEqual(["check the path and its permissions"]);
  });
});

describe("a config.toml others can write is not read", () => {
  test("group- or world-writable: refused with the chmod to run", async () => {
    const { chmodSync } = await import("node:fs");
    const path = writeConfig('server = "evil.example:7447"\n');
    for (const mode of [0o666, 0o620]) {
      chmodSync(path, mode);
      await expectRun(
        ["chat"],
        2,
        `securechat: ${path}: writable by other users (mode ${mode.toString(8)}) or owned by another user; not read\nhint: if its contents are yours, run "chmod 600 ${path}"\n`,
      );
    }
    chmodSync(path, 0o644);
    expect(readConfig().server?.id).toBe("evil.example:7447");
  });
});
