/**
 * Secrets (docs/SECURITY.md §5): keys, passwords and tickets never in logs,
 * errors, argv, or files readable by others; secret buffers wiped after use
 * where the runtime allows.
 *
 * End to end, with `bun src/main.ts` subprocesses (as a user runs them): a
 * --json server and then a text-logging one on the same data directory;
 * register, login (right and wrong password), chat (ticket and
 * --password-stdin), logout, transcript keygen / verify / export; and the
 * error paths (changed host key, corrupt or exposed key files, a secret
 * given where a public key is due). Every secret is collected as it comes
 * to exist — the password, the identity seed (unsealed here), every ticket
 * and ticket key, the host key, the auditor key, every transcript file key
 * (unwrapped here), the argon2id verifier — and then searched for, as raw
 * bytes, hex and base64, in every command's stdout and stderr, both server
 * logs, and every file under the data directory, the client homes and the
 * work directory, except the one file meant to hold it. Every file there
 * must be 0600 and every directory 0700.
 *
 * In process: no flag takes a secret value, no secret comes from the
 * environment, and the client and server wipe the buffers they are done
 * with (spies capture them; afterwards they must be all zero).
 *
 * Every wait is bounded; every process is stopped by its own handle.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { Database } from "bun:sqlite";
import * as nodeCrypto from "node:crypto";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import { fromBase64, toBase64, toHex } from "../../src/bytes.ts";
import { login, register, resumeWithTicket } from "../../src/client/account.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { loadIdentity } from "../../src/client/keystore.ts";
import * as tickets from "../../src/client/tickets.ts";
import type { ArgsDef, CommandDef } from "citty";
import { root } from "../../src/cli.ts";
import * as crypto from "../../src/crypto/index.ts";
import { type Entry, unwrapFileKey } from "../../src/transcript/format.ts";
import { Store } from "../../src/store/db.ts";
import { runCli } from "../cli.ts";
import { freshPath, restoreHome, startServer, useHome } from "../server/helpers.ts";

const REPO = join(import.meta.dir, "..", "..");
const WORK = mkdtempSync(join(tmpdir(), "securechat-secrets-"));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

const PASSWORD = "Qx7 violet harbour lantern 9Zk";
const WRONG_PASSWORD = "Mb4 amber orchard compass 2Wd";
const MARKER = "C0NTENT-0F-A-K3Y-F1LE";

const DATA = join(WORK, "data");
const HOME = join(WORK, "alice-home");
const AUDITOR_KEY = join(WORK, "auditor.key");
const CHAT_TRANSCRIPT = join(WORK, "alice.transcript");
const BAD_AUDITOR_KEY = join(WORK, "bad-auditor.key");

// ---------------------------------------------------------------------------
// Processes

interface Output {
  what: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Everything any process printed: searched for secrets at the end. */
const outputs: Output[] = [];

/**
 * The environment of every child: the test runner's, without NODE_ENV and
 * TEST, so each child runs as a user's would.
 */
function childEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  const { NODE_ENV: _n, TEST: _t, ...env } = process.env;
  return { ...env, ...extra };
}

async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`test: ${what} did not finish within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** `securechat ARGV…` with `stdin` and $SECURECHAT_HOME = `home`; output recorded. */
async function cli(home: string, argv: string[], stdin = "", timeoutMs = 30_000): Promise<Output> {
  const proc = Bun.spawn([process.execPath, "src/main.ts", ...argv], {
    cwd: REPO,
    env: childEnv({ SECURECHAT_HOME: home }),
    stdin: new Blob([stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const [stdout, stderr] = await bounded(Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]), timeoutMs, argv.join(" "));
    const out = { what: `securechat ${argv.join(" ")}`, code: proc.exitCode, stdout, stderr };
    outputs.push(out);
    return out;
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  }
}

function expectExit(o: Output, code: number): void {
  if (o.code !== code) throw new Error(`test: ${o.what}: exit ${o.code}, want ${code}\nstdout: ${o.stdout}\nstderr: ${o.stderr}`);
}

interface Server {
  proc: ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>;
  port: number;
  address: string;
  text: () => string;
  done: Promise<void>;
}

/** `securechat serve --port PORT --data DATA ARGS…` (PORT 0: any free one), resolved once it says `listening` (text or JSON). */
async function serve(args: string[], what: string, port = 0): Promise<Server> {
  const proc = Bun.spawn([process.execPath, "src/main.ts", "serve", "--port", String(port), "--data", DATA, ...args], {
    cwd: REPO,
    env: childEnv(),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const chunks: string[] = [];
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const c of s) chunks.push(d.decode(c, { stream: true }));
  };
  const out: Output = { what, code: null, stdout: "", stderr: "" };
  const done = Promise.all([pump(proc.stdout), pump(proc.stderr)]).then(() => {
    out.stdout = chunks.join("");
  });
  outputs.push(out);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = /listening[^\n]*127\.0\.0\.1:(\d+)/.exec(chunks.join(""));
    if (m) {
      const port = Number(m[1]);
      return { proc, port, address: `127.0.0.1:${port}`, text: () => chunks.join(""), done };
    }
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`test: ${what} did not start:\n${chunks.join("")}`);
    }
    await Bun.sleep(20);
  }
}

async function stop(s: Server): Promise<void> {
  s.proc.kill("SIGTERM");
  const ended = await Promise.race([s.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
  if (!ended) s.proc.kill("SIGKILL");
  await bounded(s.done, 5_000, "server output");
}

// ---------------------------------------------------------------------------
// Secrets and where each may be

interface Secret {
  name: string;
  bytes: Uint8Array;
  /** The one file allowed to hold it (as written), if any. */
  home?: (path: string) => boolean;
}

const secrets: Secret[] = [];
const seen = new Set<string>();

function addSecret(name: string, bytes: Uint8Array, home?: (path: string) => boolean): void {
  const key = toHex(bytes);
  if (seen.has(key)) return;
  seen.add(key);
  secrets.push({ name, bytes: bytes.slice(), home });
}

/** The forms a secret might leak in: raw bytes, hex, and base64 (standard and URL-safe, whole 3-byte groups so it is found inside longer base64 too). */
function forms(b: Uint8Array): { form: string; needle: Buffer }[] {
  const whole = Math.floor(b.length / 3) * 3;
  const b64 = Buffer.from(b.subarray(0, whole)).toString("base64");
  return [
    { form: "raw", needle: Buffer.from(b) },
    { form: "hex", needle: Buffer.from(toHex(b)) },
    { form: "HEX", needle: Buffer.from(toHex(b).toUpperCase()) },
    { form: "base64", needle: Buffer.from(b64) },
    { form: "base64url", needle: Buffer.from(b64.replace(/\+/g, "-").replace(/\//g, "_")) },
  ];
}

function leaks(haystack: Buffer, where: string, path?: string): string[] {
  const found: string[] = [];
  for (const s of secrets) {
    if (path !== undefined && s.home?.(path)) continue;
    for (const f of forms(s.bytes)) if (haystack.includes(f.needle)) found.push(`${s.name} (${f.form}) in ${where}`);
  }
  return found;
}

function walk(dir: string, out: { files: string[]; dirs: string[] } = { files: [], dirs: [] }) {
  out.dirs.push(dir);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) walk(p, out);
    else out.files.push(p);
  }
  return out;
}

/** The current ticket file's ticket and key, recorded as secrets whose home is that file. */
function collectTicket(home: string, server: string): void {
  const path = join(home, "accounts", server, "alice.ticket");
  if (!existsSync(path)) return;
  const f = JSON.parse(readFileSync(path, "utf8"));
  const isTicketFile = (p: string) => p.endsWith("alice.ticket");
  addSecret("ticket", fromBase64(f.ticket), isTicketFile);
  addSecret("ticket key", fromBase64(f.ticket_key), isTicketFile);
}

/** The identity seed, unsealed here with the password (the client wipes its copies). */
async function collectIdentity(home: string, server: string): Promise<void> {
  const before = process.env.SECURECHAT_HOME;
  process.env.SECURECHAT_HOME = home;
  try {
    const pair = await loadIdentity(server, "alice", PASSWORD);
    addSecret("identity key", pair.secretKey);
  } finally {
    process.env.SECURECHAT_HOME = before;
  }
}

function collectServerSecrets(): void {
  const [, b64] = readFileSync(join(DATA, "host_key"), "utf8").trim().split(/\s+/);
  // Its home, and the copies the error-path test makes of it under other data directories.
  addSecret("host key", fromBase64(b64!), (p) => basename(p) === "host_key");
  const store = new Store(DATA);
  try {
    const row = store.db.query<{ verifier: string }, []>("SELECT verifier FROM accounts WHERE name = 'alice'").get();
    const hash = row!.verifier.split("$").at(-1)!;
    addSecret("argon2id verifier", Buffer.from(hash, "base64"), (p) => /securechat\.db(-wal)?$/.test(p));
  } finally {
    store.close();
  }
  const auditor = fromBase64(readFileSync(AUDITOR_KEY, "utf8").trim().split(/\s+/)[1]!);
  let fileKeys = 0;
  for (const name of readdirSync(join(DATA, "transcript")).filter((n) => n.endsWith(".jsonl"))) {
    for (const line of readFileSync(join(DATA, "transcript", name), "utf8").split("\n")) {
      if (!line.includes('"seal_key"')) continue;
      const e = JSON.parse(line) as Entry;
      if (e.type !== "seal_key") continue;
      addSecret(`transcript file key (seq ${e.seq})`, unwrapFileKey(auditor, e));
      fileKeys++;
    }
  }
  expect(fileKeys).toBeGreaterThan(0);
}

// ---------------------------------------------------------------------------

describe("secrets, end to end", () => {
  let server: Server;
  let address = "";

  beforeAll(async () => {
    addSecret("password", Buffer.from(PASSWORD));
    addSecret("wrong password", Buffer.from(WRONG_PASSWORD));
    mkdirSync(HOME, { mode: 0o700 });
    const keygen = await cli(HOME, ["transcript", "keygen", "--out", AUDITOR_KEY]);
    expectExit(keygen, 0);
    // Its home, and the mislabelled copy the error-path test writes.
    addSecret("auditor key", fromBase64(readFileSync(AUDITOR_KEY, "utf8").trim().split(/\s+/)[1]!), (p) => p === AUDITOR_KEY || p === BAD_AUDITOR_KEY);
    writeFileSync(join(WORK, "auditor.pub"), keygen.stdout);
    server = await serve(["--json", "--auditor-key", join(WORK, "auditor.pub")], "serve --json");
    address = server.address;
  }, 30_000);

  afterAll(async () => {
    if (server && server.proc.exitCode === null) await stop(server);
  });

  test("register, login, chat, logout, transcript against a --json server", async () => {
    expectExit(await cli(HOME, ["register", "alice", "--server", address, "--password-stdin", "--accept-new-host"], `${PASSWORD}\n`), 0);
    await collectIdentity(HOME, address);
    collectTicket(HOME, address);

    expectExit(await cli(HOME, ["login", "alice", "--server", address, "--password-stdin"], `${PASSWORD}\n`), 0);
    collectTicket(HOME, address);
    const wrong = await cli(HOME, ["login", "alice", "--server", address, "--password-stdin"], `${WRONG_PASSWORD}\n`);
    expectExit(wrong, 3);
    expect(wrong.stderr).toContain("wrong password");

    expectExit(await cli(HOME, ["chat", "--user", "alice", "--server", address, "--json", "--transcript", CHAT_TRANSCRIPT], "plain talk about the weather\n"), 0);
    expectExit(await cli(HOME, ["logout", "alice", "--server", address]), 0);
    // No ticket now: chat logs in with the password from stdin's first line.
    const chat = await cli(HOME, ["chat", "--user", "alice", "--server", address, "--json", "--password-stdin"], `${PASSWORD}\nmore plain talk\n`);
    expectExit(chat, 0);
    expect(chat.stdout).toContain("more plain talk");
    collectTicket(HOME, address);
    expectExit(await cli(HOME, ["logout", "alice", "--server", address]), 0);

    // A changed host key: refused (exit 4) before the password is sent; the server hears no login.
    const mitmHome = join(WORK, "changed-key-home");
    cpSync(HOME, mitmHome, { recursive: true });
    writeFileSync(join(mitmHome, "known_hosts"), `${address} ed25519 ${toBase64(crypto.ed25519Generate().publicKey)}\n`, { mode: 0o600 });
    const logins = () => server.text().split("\n").filter((l) => /"event":"(login|login_failed|auth_refused)"/.test(l)).length;
    const before = logins();
    const changed = await cli(mitmHome, ["login", "alice", "--server", address, "--password-stdin"], `${PASSWORD}\n`);
    expectExit(changed, 4);
    expect(changed.stderr).toContain(join(mitmHome, "known_hosts"));
    await Bun.sleep(200);
    expect(logins()).toBe(before);

    const tr = join(DATA, "transcript");
    expectExit(await cli(HOME, ["transcript", "verify", tr, "--host-key", join(DATA, "host_key.pub"), "--identity", AUDITOR_KEY, "--against", CHAT_TRANSCRIPT]), 0);
    const exported = await cli(HOME, ["transcript", "export", "--data", DATA, "--identity", AUDITOR_KEY]);
    expectExit(exported, 0);
    expect(exported.stdout).toContain("plain talk about the weather");
  }, 90_000);

  test("the same account against a text-logging server", async () => {
    await stop(server);
    // The same port: the client's account directory and pin are per HOST:PORT.
    server = await serve([], "serve (text log)", server.port);
    address = server.address;
    // Text lines, not JSON ("2026-11-22T09:15:02.250Z INFO host_key_loaded …")
    expect(server.text()).toMatch(/host_key_(loaded|created)/);
    expect(server.text().trimStart().startsWith("{")).toBe(false);
    expectExit(await cli(HOME, ["login", "alice", "--server", address, "--password-stdin"], `${PASSWORD}\n`), 0);
    collectTicket(HOME, address);
    // The server holds only SHA-256 of the ticket, and an argon2id verifier of the password.
    const db = new Database(join(DATA, "securechat.db"), { readonly: true });
    try {
      const f = JSON.parse(readFileSync(join(HOME, "accounts", address, "alice.ticket"), "utf8"));
      const hashes = db.query<{ hash: Uint8Array }, []>("SELECT hash FROM tickets WHERE user = 'alice'").all().map((r) => toHex(r.hash));
      expect(hashes).toContain(toHex(crypto.sha256(fromBase64(f.ticket))));
      const { verifier } = db.query<{ verifier: string }, []>("SELECT verifier FROM accounts WHERE name = 'alice'").get()!;
      expect(verifier).toStartWith("$argon2id$v=19$m=65536,t=2,p=1$");
    } finally {
      db.close();
    }
    expectExit(await cli(HOME, ["login", "alice", "--server", address, "--password-stdin"], `${WRONG_PASSWORD}\n`), 3);
    expectExit(await cli(HOME, ["chat", "--user", "alice", "--server", address], "text-mode chatter\n"), 0);
    expectExit(await cli(HOME, ["logout", "alice", "--server", address]), 0);
    await stop(server);
    collectServerSecrets();
  }, 90_000);

  test("error paths name the file, never its content", async () => {
    const keyPath = (home: string) => join(home, "accounts", address, "alice.key");

    // A corrupt identity key file (with and without --debug).
    const corrupt = join(WORK, "corrupt-identity-home");
    cpSync(HOME, corrupt, { recursive: true });
    writeFileSync(keyPath(corrupt), `{"version":1,"sealed":"${MARKER}"`, { mode: 0o600 });
    for (const debug of [[], ["--debug"]]) {
      const r = await cli(corrupt, ["login", "alice", "--server", address, "--password-stdin", ...debug], `${PASSWORD}\n`);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(keyPath(corrupt));
      expect(r.stdout + r.stderr).not.toContain(MARKER);
    }
    // A well-formed key file whose sealed box was altered: "wrong password", nothing of the file.
    const altered = JSON.parse(readFileSync(keyPath(HOME), "utf8"));
    altered.sealed = toBase64(crypto.randomBytes(72));
    writeFileSync(keyPath(corrupt), JSON.stringify(altered), { mode: 0o600 });
    const locked = await cli(corrupt, ["login", "alice", "--server", address, "--password-stdin"], `${PASSWORD}\n`);
    expectExit(locked, 3);
    expect(locked.stdout + locked.stderr).not.toContain(altered.sealed);

    // A corrupt ticket file: ignored (asks for a password), its content never shown.
    const badTicket = join(WORK, "corrupt-ticket-home");
    cpSync(HOME, badTicket, { recursive: true });
    writeFileSync(join(badTicket, "accounts", address, "alice.ticket"), `{"version":1,"ticket":"${MARKER}"}\n`, { mode: 0o600 });
    const noTicket = await cli(badTicket, ["chat", "--user", "alice", "--server", address, "--debug"], "hello\n");
    expectExit(noTicket, 3);
    expect(noTicket.stdout + noTicket.stderr).not.toContain(MARKER);

    // The server's host key: corrupt, wrong header around the real key, or readable by others.
    const realHostKey = readFileSync(join(DATA, "host_key"), "utf8");
    const [, realB64] = realHostKey.trim().split(/\s+/);
    const cases: [string, string, number][] = [
      ["marker", `securechat-host-key-v1 ${MARKER}\n`, 0o600],
      ["wrong header", `not-a-host-key ${realB64}\n`, 0o600],
      ["non-canonical base64", `securechat-host-key-v1 ${realB64}AAAA\n`, 0o600],
      ["mode 0644", realHostKey, 0o644],
      ["mode 0640", realHostKey, 0o640],
    ];
    for (const [name, content, mode] of cases) {
      const data = join(WORK, `hostkey-${name.replace(/\W+/g, "-")}`);
      mkdirSync(data, { mode: 0o700 });
      writeFileSync(join(data, "host_key"), content, { mode });
      chmodSync(join(data, "host_key"), mode);
      const r = await cli(HOME, ["serve", "--port", "0", "--data", data, "--debug"], "", 15_000);
      expect(r.code, name).toBe(1);
      expect(r.stderr, name).toContain(join(data, "host_key"));
      expect(r.stdout + r.stderr, name).not.toContain(MARKER);
      expect(r.stdout + r.stderr, name).not.toContain(realB64!.slice(0, 40));
      if (mode !== 0o600) expect(r.stderr, name).toContain(`mode 0${mode.toString(8)}`);
    }

    // The auditor's secret key where a public key is due, or corrupt: refused without echo.
    const auditorLine = readFileSync(AUDITOR_KEY, "utf8").trim();
    const auditorB64 = auditorLine.split(/\s+/)[1]!;
    for (const value of [AUDITOR_KEY, auditorLine]) {
      const r = await cli(HOME, ["serve", "--port", "0", "--data", join(WORK, "unused-data"), "--auditor-key", value]);
      expectExit(r, 2);
      expect(r.stderr).toContain("secret key");
      expect(r.stdout + r.stderr).not.toContain(auditorB64.slice(0, 40));
    }
    const badAuditor = BAD_AUDITOR_KEY;
    for (const content of [`securechat-auditor-key-v1 ${MARKER}\n`, `not-an-auditor-key ${auditorB64}\n`]) {
      writeFileSync(badAuditor, content, { mode: 0o600 });
      const r = await cli(HOME, ["transcript", "export", "--data", DATA, "--identity", badAuditor, "--debug"]);
      expectExit(r, 2);
      expect(r.stderr).toContain(badAuditor);
      expect(r.stdout + r.stderr).not.toContain(MARKER);
      expect(r.stdout + r.stderr).not.toContain(auditorB64.slice(0, 40));
    }
    // The server's secret host key where its public key is due.
    const pinned = await cli(HOME, ["transcript", "verify", join(DATA, "transcript"), "--host-key", join(DATA, "host_key")]);
    expectExit(pinned, 2);
    expect(pinned.stdout + pinned.stderr).not.toContain(realB64!.slice(0, 40));
  }, 120_000);

  test("no secret in any output, log, or file other than its own", () => {
    expect(secrets.map((s) => s.name)).toEqual(
      expect.arrayContaining(["password", "wrong password", "identity key", "ticket", "ticket key", "host key", "auditor key", "argon2id verifier"]),
    );
    expect(secrets.filter((s) => s.name === "ticket").length).toBeGreaterThanOrEqual(3);
    const found: string[] = [];
    expect(outputs.length).toBeGreaterThan(20);
    for (const o of outputs) {
      found.push(...leaks(Buffer.from(o.stdout), `stdout of ${o.what}`), ...leaks(Buffer.from(o.stderr), `stderr of ${o.what}`));
    }
    const { files } = walk(WORK);
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) found.push(...leaks(readFileSync(f), relative(WORK, f), f));
    expect(found).toEqual([]);
  });

  test("every file 0600, every directory 0700", () => {
    const loose: string[] = [];
    for (const root of [DATA, HOME]) {
      const { files, dirs } = walk(root);
      for (const d of dirs) if ((lstatSync(d).mode & 0o777) !== 0o700) loose.push(`${relative(WORK, d)}/ ${(lstatSync(d).mode & 0o777).toString(8)}`);
      for (const f of files) if ((lstatSync(f).mode & 0o777) !== 0o600) loose.push(`${relative(WORK, f)} ${(lstatSync(f).mode & 0o777).toString(8)}`);
    }
    for (const f of [AUDITOR_KEY, CHAT_TRANSCRIPT]) if ((lstatSync(f).mode & 0o777) !== 0o600) loose.push(`${relative(WORK, f)} ${(lstatSync(f).mode & 0o777).toString(8)}`);
    expect(loose).toEqual([]);
    // The data directory holds only what docs/SECURITY.md §2.4 lists: the walk above saw all of it.
    const listed = ["host_key", "host_key.pub", "securechat.db", "securechat.db-wal", "securechat.db-shm", "history.db", "history.db-wal", "history.db-shm", "transcript", "tree.hashes", "serve.lock", "serve.lock-journal", "serve.pid"];
    for (const name of readdirSync(DATA)) expect(listed).toContain(name);
  });
});

// ---------------------------------------------------------------------------

type AnyCommand = CommandDef<ArgsDef>;

async function allCommands(): Promise<{ path: string; args: ArgsDef }[]> {
  const out: { path: string; args: ArgsDef }[] = [];
  const visit = async (cmd: AnyCommand, path: string) => {
    const resolve = async <T>(v: unknown): Promise<T> => (typeof v === "function" ? await (v as () => Promise<T>)() : await (v as Promise<T>));
    out.push({ path, args: ((await resolve<ArgsDef | undefined>(cmd.args)) ?? {}) as ArgsDef });
    const subs = (await resolve<Record<string, unknown> | undefined>(cmd.subCommands)) ?? {};
    for (const [name, sub] of Object.entries(subs)) await visit(await resolve<AnyCommand>(sub), `${path} ${name}`);
  };
  await visit(root as unknown as AnyCommand, "securechat");
  return out;
}

/**
 * Every flag that takes a value, and why that value is not a secret. A new
 * flag fails this test until it is added here — after checking it is not a
 * way to put a secret in argv (visible in `ps`, /proc, shell history).
 */
const VALUE_FLAGS: Record<string, string> = {
  server: "an address",
  host: "an address",
  port: "a number",
  data: "a directory",
  room: "a room name",
  user: "a user name",
  admin: "a user name (serve: a server administrator)",
  transcript: "a file name (the client's own view of the chat)",
  "transcript-max": "a number",
  "ticket-ttl": "a duration",
  "handshake-timeout": "a duration",
  "max-startups": "numbers",
  "max-auth-tries": "a number",
  "rekey-after": "a number",
  history: "a number",
  "since-seq": "a number (a room sequence number)",
  "flood-rate": "a number",
  "flood-burst": "a number",
  "request-rate": "a number",
  "request-burst": "a number",
  "login-rate": "a number",
  "login-burst": "a number",
  "max-connections-per-address": "a number",
  "max-connections-per-user": "a number",
  "max-rooms-per-user": "a number",
  "dm-retention": "a duration",
  "edit-window": "a duration",
  "max-stored-dms": "a number",
  "max-rooms-owned": "a number",
  "max-persistent-rooms": "a number",
  "session-max": "a duration",
  "idle-timeout": "a duration",
  "max-send-buffer": "a number",
  fsync: "a mode",
  "checkpoint-every": "a number",
  "checkpoint-interval": "a duration",
  "rotate-size": "a number",
  "history-keep": "a number",
  "history-memory": "a number",
  "auditor-key": "the auditor's PUBLIC key (a secret key line or file is refused)",
  "log-origin": "a public name the transcript's checkpoints are signed under",
  "host-key": "the server's PUBLIC key or fingerprint (the secret host_key is refused); for serve, the path of the host key file, never its content",
  identity: "a FILE name: the auditor secret key is read from the file, never argv",
  against: "a file name",
  since: "a time",
  until: "a time",
  "from-end": "boolean",
  out: "a file name to write the new secret key to",
  seq: "a transcript entry's number",
  vkey: "the log's PUBLIC verifier key, or a file holding it",
  entry: "a file holding a transcript line",
  checkpoint: "a file holding a signed checkpoint (public)",
  database: "a PostgreSQL URL: a password in it is warned about (prefer SECURECHAT_DATABASE_URL) and never shown",
  directory: "a directory",
  // Witnesses (TRANSCRIPT.md §4.5).
  listen: "an address",
  log: "a log's PUBLIC verifier key, or a file holding it",
  witness: "a witness's URL and PUBLIC verifier key, or the key alone",
  "witness-quorum": "a number",
  "witness-grace": "a duration",
  // Devices (PROTOCOL.md §7.11).
  name: "a device's name, shown to the user's other devices",
  "device-enroll": "a policy: approve or password",
  "max-devices": "a number",
  // A cluster node's engines: a URL may hold a password, so serve warns when one is in argv and points to the environment variables.
  redis: "a Redis URL (a password in it belongs in SECURECHAT_REDIS_URL: serve warns)",
};

describe("argv and environment carry no secret", () => {
  test("no flag takes a secret value; the password comes only from the terminal or stdin", async () => {
    const unreviewed: string[] = [];
    let passwordFlags = 0;
    for (const { path, args } of await allCommands()) {
      for (const [name, def] of Object.entries(args)) {
        if (def.type === "positional") {
          // `sessions revoke ID`: the ID names a session or ticket by a hash prefix, not the ticket (PROTOCOL.md §7.8);
          // `admin ACTION ACCOUNT`: a user name (§7.10); `device approve CODE`: the code is a hash of the new device's PUBLIC key (§7.11); `key export FILE`: a path.
          expect(["user", "path", "action", "id", "account", "code", "file"], `${path} <${name}>`).toContain(name);
          continue;
        }
        if (/pass|secret|token|private|credential/i.test(name)) {
          expect(`${path} --${name}: ${def.type}`).toBe(`${path} --password-stdin: boolean`);
          passwordFlags++;
          continue;
        }
        if (def.type !== "boolean" && !(name in VALUE_FLAGS)) unreviewed.push(`${path} --${name}`);
      }
    }
    expect(unreviewed).toEqual([]);
    expect(passwordFlags).toBe(9); // register, login, chat, passwd, device add, device approve, device revoke, key export, key import
  });

  test("a password given as a flag is refused without being echoed", async () => {
    for (const argv of [
      ["login", "alice", `--password=${PASSWORD}`],
      ["login", "alice", "--password", PASSWORD],
      ["register", "alice", `--pass=${PASSWORD}`],
    ]) {
      const r = await runCli(...argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stdout + r.stderr, argv.join(" ")).not.toContain(PASSWORD);
    }
  });

  test("no secret is read from the environment", () => {
    const names = new Set<string>();
    const { files } = walk(join(REPO, "src"));
    for (const f of files.filter((p) => p.endsWith(".ts"))) {
      const text = readFileSync(f, "utf8");
      for (const m of text.matchAll(/\benv\??\.([A-Z_][A-Z0-9_]*)/g)) names.add(m[1]!);
      expect(text, relative(REPO, f)).not.toMatch(/\benv\[|Bun\.env/);
    }
    // The one deliberate exception: a cluster node's engine URLs, whose passwords belong in the
    // environment rather than in argv (ps shows argv to every user; a process's environment only to its owner).
    expect([...names].sort()).toEqual(["NO_COLOR", "SECURECHAT_DATA", "SECURECHAT_DATABASE_URL", "SECURECHAT_HOME", "SECURECHAT_REDIS_URL", "SECURECHAT_SERVER", "XDG_CONFIG_HOME", "XDG_DATA_HOME"]);
  });
});

// ---------------------------------------------------------------------------

const allZero = (b: Uint8Array) => b.length > 0 && crypto.isAllZero(b);

describe("buffers are wiped after use", () => {
  test("register, login and a ticket login wipe keys, tickets, password bytes and record keys", async () => {
    const t = await startServer({ dataDir: freshPath("wipe-data") });
    useHome("wipe");
    const o = { addr: parseServerAddress(t.address), user: "walt", trust: { acceptNew: true } };
    const realScrypt = nodeCrypto.scrypt;
    const scryptKeys: Uint8Array[] = [];
    const scrypt = spyOn(nodeCrypto, "scrypt").mockImplementation(((pw: Uint8Array, salt: Uint8Array, n: number, opts: object, cb: (e: Error | null, k: Buffer) => void) =>
      realScrypt(pw, salt, n, opts, (err, key) => {
        scryptKeys.push(key);
        cb(err, key);
      })) as unknown as typeof nodeCrypto.scrypt);
    const generate = spyOn(crypto, "ed25519Generate");
    const hash = spyOn(Bun.password, "hash");
    const verify = spyOn(Bun.password, "verify");
    const load = spyOn(tickets, "loadTicket");
    try {
      const pairs = () => generate.mock.results.filter((r) => r.type === "return").map((r) => r.value as crypto.Ed25519KeyPair);

      const w = await register(o, PASSWORD);
      expect(pairs().length).toBe(2); // identity, ticket key
      for (const p of pairs()) expect(allZero(p.secretKey)).toBe(true);
      expect(allZero(w.ticket!)).toBe(true); // in the file now, and only there
      expect(tickets.loadTicket(o.addr.id, "walt")).not.toBeNull();

      generate.mockClear();
      await login(o, PASSWORD);
      expect(pairs().length).toBe(2); // identity (unsealed), ticket key
      for (const p of pairs()) expect(allZero(p.secretKey)).toBe(true);

      // The password's bytes given to scrypt and argon2id, and scrypt's output.
      expect(scrypt.mock.calls.length).toBe(2);
      for (const c of scrypt.mock.calls) expect(allZero(c[0] as Uint8Array)).toBe(true);
      expect(scryptKeys.length).toBe(2);
      for (const k of scryptKeys) expect(allZero(k)).toBe(true);
      const argon = [...hash.mock.calls, ...verify.mock.calls].map((c) => c[0]).filter((a) => a instanceof Uint8Array) as Uint8Array[];
      expect(argon.length).toBe(2); // register's hash, login's verify
      for (const a of argon) expect(allZero(a)).toBe(true);

      load.mockClear();
      const ephemeral = spyOn(crypto, "x25519Generate");
      const dh = spyOn(crypto, "x25519");
      let resumed: Awaited<ReturnType<typeof resumeWithTicket>>;
      let generated: crypto.X25519KeyPair[];
      let shared: Uint8Array[];
      try {
        resumed = await resumeWithTicket(o);
        generated = ephemeral.mock.results.filter((r) => r.type === "return").map((r) => r.value as crypto.X25519KeyPair);
        shared = dh.mock.results.filter((r) => r.type === "return").map((r) => r.value as Uint8Array);
      } finally {
        ephemeral.mockRestore(); // (restoring also forgets the calls)
        dh.mockRestore();
      }
      expect(resumed).not.toBeNull();
      try {
        // Both ends' X25519 ephemeral secrets and the shared secret, erased once the keys exist.
        expect(generated.length).toBe(2); // the client's and the (in-process) server's
        for (const p of generated) expect(allZero(p.secretKey)).toBe(true);
        expect(shared.length).toBe(2);
        for (const k of shared) expect(allZero(k)).toBe(true);
        const stored = load.mock.results[0]!.value as tickets.StoredTicket;
        expect(allZero(stored.ticket)).toBe(true);
        expect(allZero(stored.key.secretKey)).toBe(true);
        // The initial record keys: the channel has its own copies.
        const { c2s, s2c } = resumed!.session.keys;
        expect(allZero(c2s) && allZero(s2c)).toBe(true);
        // …and works: bye is answered.
        resumed!.session.send({ type: "bye", reason: "done" });
        const m = await resumed!.session.receive();
        expect(m.map((x) => x.type)).toContain("bye");
      } finally {
        resumed!.session.close();
      }
    } finally {
      for (const s of [scrypt, generate, hash, verify, load]) s.mockRestore();
      restoreHome();
      await t.server.stop();
    }
  }, 60_000);
});
