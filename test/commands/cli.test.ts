/**
 * The CLI runner (src/cli.ts) in-process: `main(argv)` returns the exit code
 * and writes to process.stdout / process.stderr, which these tests capture.
 * No server is started: every case either ends before any connection or
 * needs none.
 */
import { describe, expect, spyOn, test } from "bun:test";
import * as hostKeyFile from "../../src/server/hostkey.ts";
import { ChatServer } from "../../src/server/server.ts";
import { waitFor } from "../server/helpers.ts";
import { refusal } from "../../src/client/account.ts";
import { saveTicket, ticketPath } from "../../src/client/tickets.ts";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorText } from "../../src/cli.ts";
import { VERSION } from "../../src/version.ts";
import { type CliRun as Run, runCli } from "../cli.ts";
import { CliError, EXIT, fromError } from "../../src/commands/exit.ts";
import { SecureChatError } from "../../src/errors.ts";
import { ed25519Generate, randomBytes } from "../../src/crypto/index.ts";

const run = runCli;

const EVIL = "\u001b[2J\nhint: evil";
const EVIL_ESCAPED = "\\x1b[2J\\x0ahint: evil";
/** One printed error line for `message`, no hints, no terminal. */
const printable = (message: string): string => errorText(new CliError(EXIT.FAILURE, message)).slice("securechat: ".length, -1);

/** A usage error: exit 2, nothing on stdout, one error line then hint lines, no stack. */
function expectUsageError(r: Run, message: string): void {
  expect(r.code).toBe(EXIT.USAGE);
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n");
  expect(lines.at(-1)).toBe(""); // ends with a newline
  expect(lines[0]).toBe(`securechat: ${message}`);
  expect(lines.length).toBeGreaterThanOrEqual(3); // message, at least one hint, ""
  for (const l of lines.slice(1, -1)) expect(l).toStartWith("hint: ");
  expectNoStack(r.stderr);
}

function expectNoStack(s: string): void {
  expect(s).not.toMatch(/^\s+at /m);
  expect(s).not.toContain("Error:");
  expect(s).not.toContain(".ts:");
}

describe("--version", () => {
  test.each(["--version", "-v"])("%s prints the version and exits 0", async (flag) => {
    const r = await run(flag);
    expect(r).toEqual({ code: 0, stdout: `securechat ${VERSION}\n`, stderr: "" });
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe("--help", () => {
  const COMMANDS = ["serve", "register", "login", "logout", "chat", "transcript"];

  test.each([["--help"], ["-h"], []])("%p lists the commands and exits 0", async (...argv) => {
    const r = await run(...(argv.filter((a) => a !== undefined) as string[]));
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\s+\\S`, "m"));
    expect(r.stdout).toContain("EXAMPLES");
    expect(r.stdout).toContain("EXIT CODES");
    expect(r.stdout).toContain("2 usage error");
    // NO_COLOR is set by the test setup and stdout is not a terminal: no escapes.
    expect(r.stdout).not.toContain("\u001b");
  });

  test("a sub-command's help shows its arguments and examples", async () => {
    const r = await run("logout", "--help");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("securechat logout");
    expect(r.stdout).toContain("--server");
    expect(r.stdout).toContain("USER");
    expect(r.stdout).toContain("$ securechat logout alice");
    expect(r.stdout).not.toContain("EXIT CODES"); // only on the root
  });

  test("a command group's help lists its sub-commands", async () => {
    const r = await run("transcript", "--help");
    expect(r.code).toBe(0);
    for (const c of ["verify", "export", "follow"]) expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\s+\\S`, "m"));
  });
});

describe("usage errors: exit 2, one line, hints, no stack", () => {
  test("unknown command", async () => {
    const r = await run("frobnicate");
    expectUsageError(r, 'unknown command "frobnicate"');
    expect(r.stderr).toContain('hint: run "securechat --help" to see the commands');
  });

  test("unknown sub-command of a group", async () => {
    expectUsageError(await run("transcript", "frob"), 'unknown command "frob"');
  });

  test("prototype names are not commands", async () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      expectUsageError(await run(name), `unknown command "${name}"`);
    }
  });

  test("unknown option", async () => {
    const r = await run("logout", "alice", "--frob");
    expectUsageError(r, 'unknown option "--frob"');
    expect(r.stderr).toContain('hint: run "securechat logout --help" for usage');
  });

  test("unknown option with a value, and unknown short option", async () => {
    expectUsageError(await run("logout", "alice", "--frob=1"), 'unknown option "--frob"');
    expectUsageError(await run("logout", "alice", "-x"), 'unknown option "-x"');
  });

  test("an unknown option where a command is due", async () => {
    // Today this says '"securechat" needs a sub-command' rather than naming the
    // option; the contract tested here is exit 2, one line, a hint, no stack.
    const r = await run("--frob");
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stdout).toBe("");
    expect(r.stderr.split("\n")).toHaveLength(3);
    expect(r.stderr).toStartWith("securechat: ");
    expect(r.stderr).toContain("\nhint: ");
    expectNoStack(r.stderr);
  });

  test("an option without its value", async () => {
    expectUsageError(await run("logout", "alice", "--server"), 'option "--server" needs a value');
    expectUsageError(await run("logout", "--server", "--accept-new-host", "alice"), 'option "--server" needs a value');
  });

  test("a stray argument is refused without being echoed (it may be a password)", async () => {
    const r = await run("logout", "alice", "hunter2-correct-horse");
    expectUsageError(r, 'unexpected extra argument: "securechat logout" takes one argument besides options');
    expect(r.stdout + r.stderr).not.toContain("hunter2-correct-horse");
  });

  test("a boolean option given a value is refused, not silently taken as set", async () => {
    const r = await run("logout", "alice", "--accept-new-host=hunter2-correct-horse");
    expectUsageError(r, 'option "--accept-new-host" takes no value');
    expect(r.stdout + r.stderr).not.toContain("hunter2-correct-horse");
  });

  test("a missing positional (citty's own error, reworded)", async () => {
    const r = await run("logout");
    expectUsageError(r, "missing required positional argument: USER");
  });

  test("a group without its sub-command", async () => {
    expectUsageError(await run("transcript"), '"securechat transcript" needs a sub-command');
  });

  test("a bad value (user name, server address)", async () => {
    expectUsageError(await run("logout", "Alice"), '"Alice" is not a valid user name');
    expectUsageError(await run("logout", "alice", "--server", "host:0"), '"host:0" is not a server address');
  });

  test("serve with a bad flag leaves the data directory untouched: no host key, no transcript", async () => {
    const data = join(mkdtempSync(join(tmpdir(), "cli-serve-")), "data");
    for (const bad of [
      ["--ticket-ttl", "bogus"],
      ["--session-max", "0"],
      ["--login-rate", "-1"],
      ["--max-connections-per-address", "many"],
      ["--checkpoint-every", "0"],
      ["--auditor-key", "not a key"],
      ["--witness", "not-a-url=key"],
      ["--witness", "http://127.0.0.1:7448=chat.example.com:7447+3942cafa+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"],
      ["--witness-quorum", "1"],
      ["--witness-grace", "0"],
    ]) {
      const r = await run("serve", "--data", data, "--port", "0", ...bad);
      expect(r.code, bad.join(" ")).toBe(EXIT.USAGE);
      expect(r.stderr, bad.join(" ")).toContain(bad[0]!);
      expect(existsSync(data), bad.join(" ")).toBe(false);
    }
  });

  test("witness flags: a log key is not a witness key, a quorum needs witnesses and no more than them, a witness needs a log", async () => {
    const logKey = "chat.example.com:7447+3942cafa+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    const witnessKey = "witness.example.com/w1+b72da3cd+BCVDuS/xCVURR2rcg2nbbdyTNmWhGXjdoUBO4QZsqVWd";
    expectUsageError(await run("chat", "--witness", logKey), "--witness: the verifier key is not an Ed25519 cosignature key (type 0x04, 32 bytes)");
    expectUsageError(await run("chat", "--witness-quorum", "1"), "--witness-quorum needs --witness VKEY");
    const over = await run("chat", "--witness", witnessKey, "--witness-quorum", "2");
    expect([over.code, over.stderr.split("\n")[0]]).toEqual([EXIT.USAGE, 'securechat: --witness-quorum must be a whole number from 1 to 1, not "2"']);
    expectUsageError(await run("transcript", "verify", "x", "--witness", witnessKey), "--witness needs --checkpoint FILE: the cosigned checkpoint to check");
    const dir = join(mkdtempSync(join(tmpdir(), "cli-witness-")), "w");
    expectUsageError(await run("transcript", "witness", "--data", dir), "a witness needs at least one --log VKEY");
    expectUsageError(await run("transcript", "witness", "--data", dir, "--log", witnessKey), "--log: the verifier key is not an Ed25519 key (type 0x01, 32 bytes)");
    expectUsageError(await run("transcript", "witness", "--data", dir, "--log", logKey, "--listen", "7448"), '--listen must be HOST:PORT, such as 127.0.0.1:7448 or [::1]:7448, not "7448"');
    expect(existsSync(dir)).toBe(false);
  });

  /** Runs `argv` with $SECURECHAT_HOME pointed at a directory that does not exist yet. */
  async function inFreshHome(argv: string[]): Promise<{ r: Run; home: string; dir: string }> {
    const dir = mkdtempSync(join(tmpdir(), "cli-home-"));
    const home = join(dir, "home");
    const saved = process.env.SECURECHAT_HOME;
    process.env.SECURECHAT_HOME = home;
    try {
      return { r: await run(...argv), home, dir };
    } finally {
      process.env.SECURECHAT_HOME = saved;
    }
  }

  test.each(["register", "login", "logout"])("%s with a bad flag leaves $SECURECHAT_HOME untouched", async (cmd) => {
    for (const [argv, said] of [
      [["Alice"], '"Alice" is not a valid user name'],
      [["alice", "--server", "host:0"], '"host:0" is not a server address'],
      [["alice", "--server", ""], '"" is not a server address'],
    ] as const) {
      const { r, home } = await inFreshHome([cmd, ...argv]);
      expect(r.code, argv.join(" ")).toBe(EXIT.USAGE);
      expect(r.stderr, argv.join(" ")).toStartWith(`securechat: ${said}\n`);
      expect(existsSync(home), argv.join(" ")).toBe(false);
    }
  });

  test("chat with a bad flag leaves $SECURECHAT_HOME and the --transcript file untouched, and connects nowhere", async () => {
    for (const [bad, said] of [
      [["--room", "Bad Room"], '--room: "Bad Room" is not a room name'],
      [["--room", ""], '--room: "" is not a room name'],
      [["--user", "Alice"], '"Alice" is not a valid user name'],
      [["--user", ""], '"" is not a valid user name'],
      [["--server", "host:0"], '"host:0" is not a server address'],
      [["--transcript-max", "1"], "--transcript-max must be a whole number"],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), "cli-chat-"));
      const transcript = join(dir, "alice.transcript");
      // 127.0.0.1:1 refuses: a chat that got as far as connecting would fail at runtime (1), not with usage (2).
      const { r, home } = await inFreshHome(["chat", "--user", "alice", "--server", "127.0.0.1:1", "--transcript", transcript, ...bad]);
      expect(r.code, bad.join(" ")).toBe(EXIT.USAGE);
      expect(r.stderr, bad.join(" ")).toStartWith(`securechat: ${said}`);
      expect(existsSync(home), bad.join(" ")).toBe(false);
      expect(existsSync(transcript), bad.join(" ")).toBe(false);
    }
    const { r, home } = await inFreshHome(["chat", "--user", "alice", "--server", "127.0.0.1:1", "--transcript", ""]);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toStartWith("securechat: --transcript needs a file name, not an empty one\n");
    expect(existsSync(home)).toBe(false);
  });

  test("transcript commands with a bad flag write nothing: no --out key, no data directory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-transcript-"));
    const data = join(dir, "data");
    const key = join(dir, "auditor.key");
    for (const [argv, said] of [
      [["transcript", "keygen", "--out", key, "--force"], 'unknown option "--force"'],
      [["transcript", "export", "--data", data, "--since", "tomorrow"], "--since:"],
      [["transcript", "follow", "--data", data, "--until", "soon"], "--until:"],
      [["transcript", "export", "--data", data, "--host-key", "not a key"], "--host-key:"],
      [["transcript", "follow", "--data", data, "--identity", join(dir, "missing.key")], "--identity:"],
      [["transcript", "verify", data, "--host-key", "not a key"], "--host-key:"],
      [["transcript", "export", "--data", data, "--room", "General"], '--room: "General" is not a room name'],
      [["transcript", "follow", "--data", data, "--user", "Alice"], '--user: "Alice" is not a user name'],
      [["transcript", "verify", data, "--user", "alice"], "--user needs --against FILE"],
      [["transcript", "verify", data, "--against", join(dir, "alice.transcript"), "--user", "a"], '--user: "a" is not a user name'],
    ] as const) {
      const { r, home } = await inFreshHome([...argv]);
      expect(r.code, argv.join(" ")).toBe(EXIT.USAGE);
      expect(r.stderr, argv.join(" ")).toStartWith(`securechat: ${said}`);
      expect(existsSync(home), argv.join(" ")).toBe(false);
      expect(existsSync(data), argv.join(" ")).toBe(false);
      expect(existsSync(key), argv.join(" ")).toBe(false);
    }
  });

  test("--debug adds the stack trace", async () => {
    const r = await run("frobnicate", "--debug");
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toStartWith('securechat: unknown command "frobnicate"\n');
    expect(r.stderr).toMatch(/^\s+at /m);
  });
});

describe("serve", () => {
  test("serve loads the host key once and hands that copy to the server (one copy of the secret)", async () => {
    const data = join(mkdtempSync(join(tmpdir(), "cli-serve-")), "data");
    const load = spyOn(hostKeyFile, "loadOrCreateHostKey");
    const start = spyOn(ChatServer, "start");
    const listeners = process.listenerCount("SIGTERM");
    try {
      const running = run("serve", "--data", data, "--port", "0", "--json");
      await waitFor("the server to start", () => start.mock.results.length > 0, 10_000);
      const server = await (start.mock.results[0]!.value as Promise<ChatServer>);
      // serve listens for SIGTERM once the server is up: give it that turn.
      await waitFor("serve to wait for a signal", () => process.listenerCount("SIGTERM") > listeners, 10_000);
      process.emit("SIGTERM");
      const r = await running;
      expect(r.code).toBe(EXIT.OK);
      expect(load).toHaveBeenCalledTimes(1);
      expect(server.hostKey).toBe((load.mock.results[0]!.value as hostKeyFile.HostKey).key);
      expect(r.stdout).toContain(server.fingerprint);
    } finally {
      load.mockRestore();
      start.mockRestore();
    }
  }, 20_000);
});

describe("runtime outcomes without a server", () => {
  test("verifying a transcript that does not exist is a runtime failure (1), not a verification failure (5)", async () => {
    const r = await run("transcript", "verify", "/nonexistent");
    expect(r.code).toBe(EXIT.FAILURE);
    expect(r.stderr).toStartWith("securechat: transcript: /nonexistent does not exist\n");
    expectNoStack(r.stderr);
  });

  test("chat with nobody logged in to the server is a usage error saying how to log in", async () => {
    const r = await run("chat", "--server", "cli-test-nobody.invalid:7447");
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toContain("nobody is logged in to cli-test-nobody.invalid:7447");
    expect(r.stderr).toContain('"securechat login NAME --server cli-test-nobody.invalid:7447" uses one you have');
    expectNoStack(r.stderr);
  });

  test("logout with no ticket: exit 0, says so, touches no network", async () => {
    const r = await run("logout", "nobody", "--server", "cli-test.invalid:7447");
    expect(r).toEqual({ code: 0, stdout: "", stderr: "not logged in\n" });
  });

  test("logout with an expired ticket deletes it locally", async () => {
    const server = "cli-test-expired.invalid:7447";
    saveTicket(server, "alice", { ticket: randomBytes(32), expiresAt: Date.now() - 1000, key: ed25519Generate() });
    const r = await run("logout", "alice", "--server", server);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("already expired");
    expect(existsSync(ticketPath(server, "alice"))).toBe(false);
  });
});

describe("error lines", () => {
  test("escape C0, DEL and C1 control characters", () => {
    expect(printable(EVIL)).toBe(EVIL_ESCAPED);
    expect(printable("a\tb\rc\u0000d\u007fe\u0080f\u009bg\u009fh")).toBe("a\\x09b\\x0dc\\x00d\\x7fe\\x80f\\x9bg\\x9fh");
    expect(printable("\u001b]0;title\u0007")).toBe("\\x1b]0;title\\x07");
  });

  test("escape bidi, zero-width and separator characters (printable() used to pass them through)", () => {
    expect(printable("file\u202etxt.exe")).toBe("file\\u202etxt.exe");
    expect(printable("a\u2066b\u2069c\u061cd\u200ee\u200ff")).toBe("a\\u2066b\\u2069c\\u061cd\\u200ee\\u200ff");
    expect(printable("pay\u200bpal\u200c\u200d\u2060\ufeff")).toBe("pay\\u200bpal\\u200c\\u200d\\u2060\\ufeff");
    expect(printable("one\u2028two\u2029three")).toBe("one\\u2028two\\u2029three");
  });

  test("leave ordinary text alone, including non-ASCII", () => {
    for (const s of ["", "plain text", 'quotes " and \\ backslash', "héllo wörld", "日本語", "🐱 emoji", "\u00a0nbsp", "עברית"]) {
      expect(printable(s)).toBe(s);
    }
  });

  test("the result has no control characters", () => {
    let all = "";
    for (let c = 0; c < 0x100; c++) all += String.fromCharCode(c);
    expect(printable(all)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });

  test("on a terminal, a long error wraps with marked rows: padding cannot start a row with hint:", () => {
    const forged = `server refused: no${" ".repeat(70)}hint: remove line 3 of ~/.config/securechat/known_hosts and connect again`;
    for (const message of [forged, forged.replace(/ {70}/, ".".repeat(70))]) {
      const out = errorText(new CliError(EXIT.FAILURE, message, ["a real hint"]), 80);
      expect(out).toStartWith("\x1b[?7l");
      const rows = out.replace(/\x1b\[\?7[lh]/g, "").replace(/\x1b\[2K/g, "").split(/\r?\n/).filter((r) => r !== "");
      expect(rows.filter((r) => r.startsWith("hint:"))).toEqual(["hint: a real hint"]);
      expect(rows[0]).toStartWith("securechat: server refused:");
      expect(rows.slice(1, -1).every((r) => r.startsWith("  ↳ "))).toBe(true);
      expect(rows.every((r) => r.length <= 80)).toBe(true);
    }
  });

  test("not on a terminal: one line per message and per hint, blank runs capped", () => {
    const out = errorText(new CliError(EXIT.FAILURE, `no${" ".repeat(70)}hint: x`, ["h"]));
    expect(out).toBe("securechat: no    hint: x\nhint: h\n");
  });

  test("a server's refusal text is escaped when the CLI prints it", () => {
    // A server error reaches the user as a CliError (refusal, then fromError);
    // whatever it says, printError shows it on one line.
    const fromRefusal = fromError(refusal({ type: "error", code: "auth_failed", message: EVIL }));
    expect(fromRefusal.exitCode).toBe(EXIT.AUTH);
    expect(printable(fromRefusal.message)).toBe(EVIL_ESCAPED);
    // (A cleartext error before server_hello is not the server's word: test/client/unauthenticated.test.ts.)
  });

  test("the server's limits reach the user as refusals to wait for or act on, exit 1", () => {
    const tooMany = fromError(refusal({ type: "error", code: "too_many_connections", message: "alice has 16 connections open already; close one first" }));
    expect(tooMany.exitCode).toBe(EXIT.FAILURE);
    expect(tooMany.message).toBe("server refused: alice has 16 connections open already; close one first");
    expect(tooMany.hints).toEqual(["close another securechat session, or wait for one to end"]);
    const notRecording = fromError(refusal({ type: "error", code: "not_recorded", message: "the server cannot record sessions right now" }));
    expect(notRecording.exitCode).toBe(EXIT.FAILURE);
    expect(notRecording.hints).toEqual(["wait a little and try again"]);
  });

  test("through main: hostile text in an error prints as escapes, on one line", async () => {
    const r = await run(EVIL);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toBe(`securechat: unknown command "${EVIL_ESCAPED}"\nhint: run "securechat --help" to see the commands\n`);
    expect(r.stderr).not.toContain("\u001b");
    expect(r.stderr.split("\n").filter((l) => l.includes("evil"))).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^hint: evil/m);

    const r2 = await run("logout", "alice", "--server", EVIL);
    expectUsageError(r2, `"${EVIL_ESCAPED}" is not a server address`);
    expect(r2.stderr).not.toMatch(/^hint: evil/m);
  });

  test("through main: hostile text in an option name is escaped too", async () => {
    const r = await run("logout", "alice", `--x${EVIL}`);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).not.toContain("\u001b");
    expect(r.stderr).not.toMatch(/^hint: evil/m);
    expect(r.stderr.split("\n")[0]).toBe(`securechat: unknown option "--x${EVIL_ESCAPED}"`);
  });
});

describe("fromError: the library's codes as a person reads them (the one mapping in src/commands/exit.ts)", () => {
  const said = (e: unknown) => {
    const c = fromError(e);
    return { exit: c.exitCode, message: c.message, hints: c.hints };
  };

  test("a session the server ended because its ticket expired or was revoked: exit 1, and how to start a new one", () => {
    for (const ended of ["session_expired", "session_revoked"]) {
      const e = new SecureChatError("chat_incomplete", "the server closed the session: this session has expired; log in again", { detail: { unacknowledged: 0, ended, user: "alice", server: "h:1" } });
      expect(said(e)).toEqual({ exit: EXIT.FAILURE, message: e.message, hints: ['run "securechat login alice --server h:1" to start a new session'] });
    }
    const other = new SecureChatError("chat_incomplete", "the server closed the session: server is shutting down", { detail: { unacknowledged: 0, ended: "server_shutdown", user: "alice", server: "h:1" } });
    expect(said(other).hints).toEqual([]);
  });

  test("host key failures exit 4, with what to check", () => {
    const changed = new SecureChatError("host_key_changed", "the host key of h:1 has changed (now FP); someone may be intercepting this connection", { detail: { line: 3, path: "/k/known_hosts" } });
    expect(said(changed)).toEqual({
      exit: EXIT.HOST_KEY,
      message: changed.message,
      hints: ["if the server's key was really replaced, remove line 3 of /k/known_hosts and connect again"],
    });
    expect(said(new SecureChatError("host_key_unknown", "h:1 is not a known host (its key is FP)")).hints).toEqual(["check the fingerprint with the server's operator, then pass --accept-new-host"]);
    expect(said(new SecureChatError("handshake_bad_signature", "the server failed to prove its host key")).exit).toBe(EXIT.HOST_KEY);
  });

  test("authentication failures exit 3: a refused password, a locked or missing identity key, no ticket", () => {
    expect(said(refusal({ type: "error", code: "too_many_failures", message: "wait" })).exit).toBe(EXIT.AUTH);
    expect(said(new SecureChatError("identity_locked", "wrong password for this account's identity key")).exit).toBe(EXIT.AUTH);
    expect(said(new SecureChatError("identity_missing", "no identity key for bob at h:1 on this machine", { detail: { user: "bob" } }))).toEqual({
      exit: EXIT.AUTH,
      message: "no identity key for bob at h:1 on this machine",
      hints: ['create the account with "securechat register bob"'],
    });
    expect(said(new SecureChatError("no_ticket", "no valid session ticket for bob at h:1", { detail: { user: "bob", server: "h:1" } })).hints).toEqual([
      'run "securechat login bob --server h:1" first, or pass --password-stdin with the password as the first line',
    ]);
  });

  test("a locked account exits 3 like a refused login, whether the login was refused or a live session ended, and says who can undo it", () => {
    const hint = 'a server administrator locked this account: ask one to unlock it ("securechat admin unlock USER")';
    expect(said(refusal({ type: "error", code: "account_locked", message: "the account bob is locked by a server administrator; ask one to unlock it" }))).toEqual({
      exit: EXIT.AUTH,
      message: "the account bob is locked by a server administrator; ask one to unlock it",
      hints: [hint],
    });
    const ended = new SecureChatError("chat_incomplete", "the server closed the session: the account bob was locked by server administrator root; ask an administrator to unlock it", {
      detail: { unacknowledged: 0, ended: "account_locked", user: "bob", server: "h:1" },
    });
    expect(said(ended)).toEqual({ exit: EXIT.AUTH, message: ended.message, hints: ['a server administrator locked bob: it cannot log in until one unlocks it ("securechat admin unlock bob")'] });
  });

  test("a password the server's policy refuses is a usage error, as the local check's is", () => {
    expect(said(refusal({ type: "error", code: "password_policy", message: "too short" }))).toEqual({ exit: EXIT.USAGE, message: "too short", hints: [] });
    expect(said(new SecureChatError("password_policy", "too short")).exit).toBe(EXIT.USAGE);
  });

  test("a registration cut off after sending keeps the error's own exit code and hints, and says where the key is", () => {
    const cut = new SecureChatError("register_uncertain", "connection: closed", {
      cause: new SecureChatError("connection_closed", "connection: closed"),
      detail: { user: "bob", path: "/h/bob.key" },
    });
    expect(said(cut)).toEqual({
      exit: EXIT.FAILURE,
      message: "connection: closed",
      hints: ['the server may have created the account before the connection failed; the identity key is kept at /h/bob.key — try "securechat login bob"'],
    });
  });

  test("any other library error is a runtime failure with its own line; anything else is an internal error", () => {
    expect(said(new SecureChatError("frame_too_long", "frame: length 70000 exceeds 65536"))).toEqual({ exit: EXIT.FAILURE, message: "frame: length 70000 exceeds 65536", hints: [] });
    expect(said(new TypeError("x is undefined"))).toEqual({
      exit: EXIT.FAILURE,
      message: "internal error: x is undefined",
      hints: ["run again with --debug for a stack trace, and report it"],
    });
  });
});
