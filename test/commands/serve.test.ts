/**
 * `serve`'s own mistakes, as the operator reads them: one line saying what
 * is wrong and a `hint:` line saying what to do, exit 1 — never "internal
 * error … report it". The cases a test can cause are run through the CLI
 * in-process; permission errors (this may run as root) are given to the
 * same mapping directly.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError, EXIT } from "../../src/commands/exit.ts";
import { dataDirFailure, listenFailure } from "../../src/commands/serve.ts";
import { fingerprint } from "../../src/fingerprint.ts";
import { toBase64 } from "../../src/bytes.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { ChatServer } from "../../src/server/server.ts";
import { Store } from "../../src/store/db.ts";
import { auditorPublicLine } from "../../src/transcript/keys.ts";
import { auditorKeyPair } from "../transcript/helpers.ts";
import { waitFor } from "../server/helpers.ts";
import { runCli } from "../cli.ts";

const scratch = () => mkdtempSync(join(tmpdir(), "serve-errors-"));
const errno = (code: string, message = code) => Object.assign(new Error(message), { code });

/** exit 1, on stderr exactly `line` then the hint line: no stack, no "internal error". */
function expectOperatorError(r: { code: number; stdout: string; stderr: string }, line: string, hint: string): void {
  expect(r.code).toBe(EXIT.FAILURE);
  expect(r.stderr).toBe(`securechat: ${line}\nhint: ${hint}\n`);
}

const servers: { stop(force?: boolean): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});

describe("serve: cannot listen", () => {
  test("--host with an address of no interface here (EADDRNOTAVAIL)", async () => {
    const data = join(scratch(), "data");
    const r = await runCli("serve", "--host", "192.0.2.1", "--port", "0", "--data", data);
    expectOperatorError(r, "cannot listen on 192.0.2.1:0: no interface of this machine has that address", "pass --host with one of this machine's addresses, 0.0.0.0 (all IPv4) or :: (all)");
    // Tried before anything is written: no data directory, no host key, no transcript.
    expect(existsSync(data)).toBe(false);
    expect(r.stdout).toBe("");
  });

  test("--host with a name that does not resolve", async () => {
    const data = join(scratch(), "data");
    const r = await runCli("serve", "--host", "serve-test.invalid", "--port", "0", "--data", data);
    expectOperatorError(r, "cannot listen on serve-test.invalid:0: no such address here", "pass --host with one of this machine's addresses or a name that resolves to one");
    expect(existsSync(data)).toBe(false);
  });

  test("a port in use (EADDRINUSE) is named, with a hint that another serve may hold it", async () => {
    const other = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    servers.push(other);
    const data = join(scratch(), "data");
    const r = await runCli("serve", "--port", String(other.port), "--data", data);
    expectOperatorError(r, `cannot listen on 127.0.0.1:${other.port}: the address is in use`, "another program (perhaps another securechat serve) listens there: stop it, or pick another --port");
    // Nothing but the lock was taken (and given back): no host key, no transcript, no database.
    expect(readdirSync(data).sort()).toEqual(["serve.lock"]);
  });

  test("a low port without privileges (EACCES)", () => {
    const e = listenFailure(errno("EACCES", "Failed to listen at 127.0.0.1"), "127.0.0.1", 80) as CliError;
    expect(e).toBeInstanceOf(CliError);
    expect([e.exitCode, e.message, e.hints]).toEqual([EXIT.FAILURE, "cannot listen on 127.0.0.1:80: permission denied", ["ports below 1024 need privileges: pick --port 1024 or above"]]);
    expect((listenFailure(errno("EADDRINUSE"), "::1", 7447) as CliError).message).toBe("cannot listen on [::1]:7447: the address is in use");
  });

  test("anything else is left as it is (an internal error stays one)", () => {
    const e = new TypeError("boom");
    expect(listenFailure(e, "127.0.0.1", 1)).toBe(e);
    expect(dataDirFailure(e, "/x")).toBe(e);
  });
});

describe("serve: the data directory", () => {
  test("--data naming a file (EEXIST), or a path through a file (ENOTDIR)", async () => {
    const file = join(scratch(), "passwd");
    writeFileSync(file, "root:x:0:0\n");
    const hint = "pass --data DIR: a directory this user owns, or one that does not exist yet";
    expectOperatorError(await runCli("serve", "--port", "0", "--data", file), `cannot use ${file} as the data directory: it is not a directory`, hint);
    expectOperatorError(await runCli("serve", "--port", "0", "--data", join(file, "data")), `cannot use ${join(file, "data")} as the data directory: a part of that path is not a directory`, hint);
  });

  test("a data directory this user may not write (EACCES, EPERM, EROFS)", () => {
    for (const [code, why] of [
      ["EACCES", "permission denied"],
      ["EPERM", "permission denied"],
      ["EROFS", "it is on a read-only file system"],
    ]) {
      const e = dataDirFailure(errno(code!), "/var/lib/securechat") as CliError;
      expect([e.exitCode, e.message, e.hints.length]).toEqual([EXIT.FAILURE, `cannot use /var/lib/securechat as the data directory: ${why}`, 1]);
    }
  });

  test("a refused start leaves no lock behind: the next serve on the directory gets past it", async () => {
    const other = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    servers.push(other);
    const data = join(scratch(), "data");
    await runCli("serve", "--port", String(other.port), "--data", data);
    expect(existsSync(join(data, "serve.pid"))).toBe(false);
    const r = await runCli("serve", "--port", String(other.port), "--data", data);
    expect(r.stderr).toStartWith(`securechat: cannot listen on 127.0.0.1:${other.port}: the address is in use`);
  });
});

/** `serve ARGS… --json` in-process until it listens, then SIGTERM: its log lines, parsed. */
async function startLog(...args: string[]): Promise<Record<string, unknown>[]> {
  const start = spyOn(ChatServer, "start");
  const listeners = process.listenerCount("SIGTERM");
  try {
    const running = runCli("serve", "--port", "0", "--data", join(scratch(), "data"), "--json", ...args);
    await waitFor("the server to start", () => start.mock.results.length > 0, 10_000);
    await waitFor("serve to wait for a signal", () => process.listenerCount("SIGTERM") > listeners, 10_000);
    process.emit("SIGTERM");
    const r = await running;
    expect(r.code).toBe(EXIT.OK);
    return r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  } finally {
    start.mockRestore();
  }
}

describe("serve: the start log", () => {
  test("says whether sealing is on (and to which auditor key), the fsync policy and the checkpoint policy", async () => {
    const auditor = auditorKeyPair();
    const sealed = (await startLog("--auditor-key", auditorPublicLine(auditor.publicKey), "--fsync", "always", "--checkpoint-every", "500", "--checkpoint-interval", "30s")).find((j) => j.event === "transcript");
    expect(sealed).toMatchObject({ level: "info", sealing: "on", auditor_key: fingerprint(auditor.publicKey), fsync: "always", checkpoint_every: 500, checkpoint_interval_s: 30 });
    const plain = await startLog();
    expect(plain.find((j) => j.event === "transcript")).toMatchObject({ sealing: "off", fsync: "batch", checkpoint_every: 1000, checkpoint_interval_s: 60 });
    expect(plain.find((j) => j.event === "transcript")).not.toHaveProperty("auditor_key");
    expect(plain.find((j) => j.event === "listening")).toMatchObject({ pid: process.pid });
    for (const j of plain) expect(j.ts).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  }, 30_000);

  test("names the server administrators (--admin, given once per account), or says there are none", async () => {
    const data = join(scratch(), "data");
    const store = new Store(data);
    for (const name of ["root", "ops"]) store.createAccount({ name, identityKey: new Uint8Array(32), verifier: "x", createdAt: 0 });
    store.close();
    // A later --data wins over startLog's own.
    expect((await startLog("--data", data, "--admin", "root", "--admin", "ops")).find((j) => j.event === "admins")).toMatchObject({ level: "info", users: "ops,root", count: 2 });
    const none = (await startLog()).find((j) => j.event === "admins");
    expect(none).toMatchObject({ count: 0 });
    expect(none).not.toHaveProperty("users");
  }, 30_000);
});

describe("serve --host-key FILE: one key for the nodes of a cluster", () => {
  /** A host key file as an operator copies it to each node (mode 0600), and its public key. */
  function sharedKey(): { file: string; publicKey: Uint8Array } {
    const dir = join(scratch(), "keys");
    const { key } = loadOrCreateHostKey(dir);
    return { file: join(dir, "host_key"), publicKey: key.publicKey };
  }

  test("two nodes given the same FILE present the same key; neither makes a key of its own", async () => {
    const shared = sharedKey();
    const fingerprints: unknown[] = [];
    for (const node of ["node-a", "node-b"]) {
      const data = join(scratch(), node);
      const log = await startLog("--data", data, "--host-key", shared.file);
      fingerprints.push(log.find((j) => j.event === "host_key_loaded")?.fingerprint);
      expect(log.some((j) => j.event === "host_key_created")).toBe(false);
      expect(existsSync(join(data, "host_key"))).toBe(false);
      // host_key.pub stays beside the data, for clients and auditors.
      expect(readFileSync(join(data, "host_key.pub"), "utf8")).toBe(`ed25519 ${toBase64(shared.publicKey)}\n`);
    }
    expect(fingerprints).toEqual([fingerprint(shared.publicKey), fingerprint(shared.publicKey)]);
  }, 30_000);

  test("a FILE that does not exist is an error naming it, and nothing is made", async () => {
    const data = join(scratch(), "data");
    const missing = join(scratch(), "cluster_host_key");
    const r = await runCli("serve", "--port", "0", "--data", data, "--host-key", missing);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(r.stderr).toStartWith(`securechat: host key: ${missing} does not exist; a key given with --host-key is never made (every node of a cluster must use the same one)\n`);
    expect(existsSync(missing)).toBe(false);
    expect(existsSync(data)).toBe(false);
  });

  test("a FILE others may read is refused, naming the file and never its content", async () => {
    const shared = sharedKey();
    chmodSync(shared.file, 0o640);
    const data = join(scratch(), "data");
    const r = await runCli("serve", "--port", "0", "--data", data, "--host-key", shared.file);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(r.stderr).toContain(`${shared.file} has mode 0640, open to other users; it must be 0600`);
    expect(r.stderr + r.stdout).not.toContain(readFileSync(shared.file, "utf8").split(" ")[1]!.trim());
    expect(existsSync(join(data, "host_key"))).toBe(false);
  });

  test("--host-key naming the default path behaves as the default: made on first start", async () => {
    const data = join(scratch(), "data");
    const log = await startLog("--data", data, "--host-key", join(data, "host_key"));
    expect(log.some((j) => j.event === "host_key_created")).toBe(true);
    expect(existsSync(join(data, "host_key"))).toBe(true);
  }, 30_000);
});

describe("serve --admin: mistakes", () => {
  test("a name that is no user name is a usage error, before anything is touched", async () => {
    const data = join(scratch(), "data");
    const r = await runCli("serve", "--port", "0", "--data", data, "--admin", "Root!");
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr.split("\n")[0]).toBe('securechat: --admin "Root!" is not a user name');
    expect(existsSync(data)).toBe(false);
  });

  test("an administrator with no account on this server: refused, since whoever registered the name first would be one", async () => {
    const r = await runCli("serve", "--port", "0", "--data", join(scratch(), "data"), "--admin", "root");
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toBe(
      'securechat: --admin root: no such account on this server\nhint: an administrator must have an account first: start the server without that --admin, "securechat register NAME", then restart it with --admin NAME\n',
    );
  });
});
