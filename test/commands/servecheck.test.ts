/**
 * `serve --check`, through the CLI in-process: each check's failure as the
 * operator reads it (one line: FAIL, the check, what is wrong and what to
 * do), the exit code, and the data directory left byte for byte as it was.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { appendFileSync, chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256 } from "../../src/crypto/index.ts";
import { toHex } from "../../src/bytes.ts";
import { EXIT } from "../../src/commands/exit.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { DataLock } from "../../src/store/lock.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER, TranscriptWriter } from "../../src/transcript/writer.ts";
import { runCli } from "../cli.ts";

const scratch: string[] = [];
const held: { stop(closeActive?: boolean): void }[] = [];
afterEach(() => {
  for (const s of held.splice(0)) s.stop(true);
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "serve-check-"));
  scratch.push(d);
  return d;
};
const silent = { info() {}, warn() {} };

/** A data directory as a server that ran and stopped cleanly leaves it: host key, a transcript of `n` messages with tree.hashes. */
function stoppedServerData(n = 3): string {
  const data = join(tmp(), "data");
  const lock = DataLock.acquire(data);
  const { key } = loadOrCreateHostKey(data);
  const w = TranscriptWriter.open({ ...DEFAULT_WRITER, fsync: "off", dir: join(data, "transcript"), hostKey: key, version: "test", log: silent, lock });
  for (let i = 1; i <= n; i++) w.append("message", { room: "lobby", room_seq: i, from: "alice", text: `message ${i}` });
  w.close("bye");
  // the journal's start makes history.db from the transcript, as serve's does
  TranscriptJournal.open({ ...DEFAULT_WRITER, fsync: "off", dir: join(data, "transcript"), hostKey: key, version: "test", log: silent, lock, history: 50 }).close("bye");
  lock.release();
  return data;
}

/** Every file's path, mode and bytes, hashed: what "left as it was" means. */
function digest(dir: string): string {
  const parts: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      parts.push(`${p} ${st.mode.toString(8)} ${st.size}`);
      if (st.isDirectory()) walk(p);
      else parts.push(toHex(sha256(readFileSync(p))));
    }
  };
  walk(dir);
  return toHex(sha256(new TextEncoder().encode(parts.join("\n"))));
}

const check = (data: string, ...flags: string[]) => runCli("serve", "--check", "--port", "0", "--data", data, ...flags);
const line = (out: string, name: string) => out.split("\n").find((l) => l.slice(5).startsWith(`${name}:`));

describe("serve --check", () => {
  test("a stopped server's directory: every check ok, exit 0, the directory byte for byte as it was", async () => {
    const data = stoppedServerData();
    const before = digest(data);
    const r = await check(data);
    expect(r.code).toBe(EXIT.OK);
    for (const name of ["data", "lock", "listen", "host-key", "transcript", "tree", "history", "disk"]) expect(line(r.stdout, name)?.slice(0, 4)).toBe("ok  ");
    expect(line(r.stdout, "transcript")).toContain("the tail verifies from the last checkpoint");
    expect(digest(data)).toBe(before);
    // the host key's secret is never shown
    expect(r.stdout + r.stderr).not.toContain(readFileSync(join(data, "host_key"), "utf8").split(" ")[1]!.trim());
  });

  test("--json: one object per check, with check, status and message", async () => {
    const r = await check(stoppedServerData(), "--json");
    const objects = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(objects.map((o) => o.check)).toContain("transcript");
    for (const o of objects) expect(o.status).toBe("ok");
  });

  test("a group-writable data directory fails, saying what to do", async () => {
    const data = stoppedServerData();
    chmodSync(data, 0o770);
    const r = await check(data);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "data")).toBe(`FAIL data: ${data} has mode 0770: other users may write in it (check that no one else changed its files, then chmod 700 ${data})`);
    expect(r.stderr).toContain("serve --check: 1 of");
    expect(statSync(data).mode & 0o777).toBe(0o770);
  });

  test("a host key 0644 fails, naming the file and never its content", async () => {
    const data = stoppedServerData();
    chmodSync(join(data, "host_key"), 0o644);
    const r = await check(data);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "host-key")).toBe(`FAIL host-key: ${join(data, "host_key")} has mode 0644, open to other users; it must be 0600 (chmod 600 ${join(data, "host_key")}, and replace the key if others may have read it)`);
  });

  test("--host-key FILE: a new node's empty data directory and the cluster's key file are checked, the key's secret never shown", async () => {
    const keys = stoppedServerData(0);
    const data = join(tmp(), "node-b");
    const r = await check(data, "--host-key", join(keys, "host_key"));
    expect(r.code).toBe(EXIT.OK);
    expect(line(r.stdout, "host-key")).toBe(`ok   host-key: ${join(keys, "host_key")} is a host key, mode 0600`);
    expect(r.stdout + r.stderr).not.toContain(readFileSync(join(keys, "host_key"), "utf8").split(" ")[1]!.trim());
    expect(existsSync(data)).toBe(false);
  });

  test("--host-key FILE that does not exist fails: a node must not invent a key of its own", async () => {
    const data = stoppedServerData();
    const missing = join(tmp(), "cluster_host_key");
    const before = digest(data);
    const r = await check(data, "--host-key", missing);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "host-key")).toBe(
      `FAIL host-key: ${missing} does not exist; a key given with --host-key is never made (every node of a cluster must use the same one) (copy the cluster's host key file there (mode 0600), or leave out --host-key to use ${join(data, "host_key")})`,
    );
    expect(line(r.stdout, "transcript")).toBe("FAIL transcript: not checked: the host key cannot be read (fix the host key first)");
    expect(digest(data)).toBe(before);
    expect(existsSync(missing)).toBe(false);
  });

  test("--host-key FILE holding another key than the one the transcript is signed with fails", async () => {
    const data = stoppedServerData();
    const other = stoppedServerData(0);
    const r = await check(data, "--host-key", join(other, "host_key"));
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "transcript")).toStartWith("FAIL transcript: ");
  });

  /** The check of a stopped server's data whose transcript ends in `bytes`; the data directory is left as it was. */
  async function checkWithTail(bytes: string) {
    const data = stoppedServerData();
    const dir = join(data, "transcript");
    appendFileSync(join(dir, readdirSync(dir).find((n) => n.endsWith(".jsonl"))!), bytes);
    const before = digest(data);
    const r = await check(data);
    expect(digest(data)).toBe(before);
    return r;
  }

  test("a transcript whose tail does not verify fails, as the server's start would refuse it", async () => {
    // a whole line after the last checkpoint that is no entry of this chain
    const r = await checkWithTail('{"seq":999}\n');
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "transcript")).toMatch(/^FAIL transcript: .*\.jsonl:\d+: .*; the server will not start on it \(run "securechat transcript verify /);
  });

  test("a torn last line is a warning (the start cuts it), and is left in place by the check", async () => {
    const r = await checkWithTail('{"half a line');
    expect(r.code).toBe(EXIT.OK);
    expect(line(r.stdout, "transcript")).toMatch(/^warn transcript: .* ends in a torn line \(13 bytes\)/);
  });

  test("a transcript without its host key fails: a new key could not continue it", async () => {
    const data = stoppedServerData();
    rmSync(join(data, "host_key"));
    const r = await check(data);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "host-key")).toBe(`ok   host-key: ${join(data, "host_key")} does not exist; the server will make it (0600)`);
    expect(line(r.stdout, "transcript")).toBe(`FAIL transcript: ${join(data, "transcript")} holds a transcript but host_key is missing: a new key could not continue it (restore ${join(data, "host_key")} from a backup)`);
  });

  test("tree.hashes missing: a warning saying the start rebuilds it and from how many lines", async () => {
    const data = stoppedServerData(5);
    rmSync(join(data, "tree.hashes"));
    const r = await check(data);
    expect(r.code).toBe(EXIT.OK);
    expect(line(r.stdout, "tree")).toMatch(/^warn tree: no tree\.hashes file: the start rebuilds tree\.hashes .*reading and hashing up to \d+ lines/);
  });

  test("a directory held by a running server: its pid reported, not an error; its address not a failure", async () => {
    const data = stoppedServerData();
    const lock = DataLock.acquire(data, 4242);
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    held.push(server);
    try {
      const r = await runCli("serve", "--check", "--port", String(server.port), "--data", data);
      expect(line(r.stdout, "lock")).toBe("ok   lock: a server (pid 4242) is running on this directory");
      expect(line(r.stdout, "listen")).toBe(`ok   listen: 127.0.0.1:${server.port} is in use, presumably by the server running on this directory`);
      expect(r.code).toBe(EXIT.OK);
    } finally {
      lock.release();
    }
  });

  test("a port another program holds fails with serve's own message", async () => {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    held.push(server);
    const r = await runCli("serve", "--check", "--port", String(server.port), "--data", stoppedServerData());
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "listen")).toBe(`FAIL listen: cannot listen on 127.0.0.1:${server.port}: the address is in use (another program (perhaps another securechat serve) listens there: stop it, or pick another --port)`);
  });

  test("an unreachable witness fails, naming its URL", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const { formatCosignerKey } = await import("../../src/transcript/cosignature.ts");
    const { ed25519Generate } = await import("../../src/crypto/index.ts");
    const vkey = formatCosignerKey("witness.example", ed25519Generate().publicKey);
    const r = await check(stoppedServerData(), "--witness", `http://127.0.0.1:${port}=${vkey}`);
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "witness witness.example")).toMatch(new RegExp(`^FAIL witness witness\\.example: http://127\\.0\\.0\\.1:${port} cannot be reached: .* \\(start the witness, or fix its URL in --witness`));
  });

  test("an --admin with no account fails; the account database left as it was", async () => {
    const data = stoppedServerData();
    const { Store } = await import("../../src/store/db.ts");
    const store = new Store(data);
    store.db.close();
    const before = digest(data);
    const r = await check(data, "--admin", "root");
    expect(r.code).toBe(EXIT.FAILURE);
    expect(line(r.stdout, "admin root")).toBe('FAIL admin root: no such account (register root first ("securechat register"), or drop --admin root)');
    expect(digest(data)).toBe(before);
  });

  test("a bad flag is a usage error, exit 2, as for serve, before any check", async () => {
    const r = await runCli("serve", "--check", "--port", "70000", "--data", join(tmp(), "d"));
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stdout).toBe("");
  });

  test("a data directory that does not exist yet: ok, and nothing is made", async () => {
    const data = join(tmp(), "new");
    const r = await check(data);
    expect(r.code).toBe(EXIT.OK);
    expect(line(r.stdout, "data")).toBe(`ok   data: ${data} does not exist; the server will make it (0700)`);
    expect(() => statSync(data)).toThrow();
  });
});
