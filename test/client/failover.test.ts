/**
 * A client given several addresses (src/client/connection.ts): a cluster
 * named by its first address, each address tried in order with the connect
 * timeout, a host name standing for each of its A/AAAA records, the next
 * connection starting where the last one worked, one pin for the whole
 * cluster — and a different key on any address is exit 4 at once, never a
 * quiet skip to the next address.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Resolve, handshake, parseServerAddress, serverAddressText } from "../../src/client/connection.ts";
import { addKnownHost, findKnownHost } from "../../src/client/known_hosts.ts";
import { EXIT, fromError } from "../../src/commands/exit.ts";
import { SecureChatError } from "../../src/errors.ts";
import { type TestServer, freshPath, rejection, restoreHome, startServer, useHome, waitFor } from "../server/helpers.ts";

const ACCEPT = { acceptNew: true };

/** A port nothing listens on (it was free a moment ago). */
function deadPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** A data directory holding `from`'s host key, as the nodes of one cluster share it. */
function sameKeyAs(from: TestServer): string {
  const dir = freshPath("node");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const f of ["host_key", "host_key.pub"]) copyFileSync(join(from.dataDir, f), join(dir, f));
  return dir;
}

/** The error a command would print, with its exit code. */
async function failure(p: Promise<unknown>): Promise<{ exit: number; message: string; code: string }> {
  const e = await rejection(p);
  if (!(e instanceof SecureChatError)) throw new Error(`expected a SecureChatError, got ${String(e)}`);
  const cli = fromError(e);
  return { exit: cli.exitCode, message: cli.message, code: e.code };
}

describe("--server with several addresses", () => {
  test("is a cluster named by its first address; a repeated address counts once", () => {
    const a = parseServerAddress("Node-A.example:7447, node-b.example:7448,node-a.example:7447,[::1]");
    expect(a.id).toBe("node-a.example:7447");
    expect(a.all?.map((e) => e.id)).toEqual(["node-a.example:7447", "node-b.example:7448", "[::1]:7447"]);
    expect(serverAddressText(a)).toBe("node-a.example:7447,node-b.example:7448,[::1]:7447");
    expect(parseServerAddress(serverAddressText(a))).toEqual(a);
    expect(parseServerAddress("one.example")).toEqual({ host: "one.example", port: 7447, id: "one.example:7447" });
  });

  test("one bad address in the list is a usage error naming it", async () => {
    for (const bad of ["a.example:7447,", "a.example:7447,b example", "a.example:7447,b.example:99999"]) {
      const e = (() => {
        try {
          parseServerAddress(bad);
        } catch (err) {
          return fromError(err);
        }
        throw new Error(`${bad} was accepted`);
      })();
      expect(e.exitCode).toBe(EXIT.USAGE);
      expect(e.message).toContain("is not a server address");
    }
  });
});

describe("failover between the nodes of a cluster", () => {
  let a: TestServer;
  let b: TestServer;
  let other: TestServer;

  beforeAll(async () => {
    a = await startServer();
    b = await startServer({ dataDir: sameKeyAs(a) });
    other = await startServer();
  });
  afterAll(async () => {
    for (const t of [a, b, other]) await t.server.stop();
    restoreHome();
  });

  test("a dead first address: the next one answers, and the key is pinned once, for the cluster's name", async () => {
    useHome("dead-first");
    const dead = `127.0.0.1:${deadPort()}`;
    const addr = parseServerAddress(`${dead},${b.address}`);
    const session = await handshake(addr, ACCEPT);
    try {
      expect(session.addr.id).toBe(dead);
      await waitFor("b to hold the connection", () => b.server.connections === 1);
      expect(findKnownHost(dead)?.key).toEqual(b.server.hostKey.publicKey);
      expect(findKnownHost(b.address)).toBeNull();
    } finally {
      session.close();
    }
  });

  test("the same key on every address is the one pin; the next connection starts at the address that worked last", async () => {
    useHome("cluster");
    const addr = parseServerAddress(`${a.address},${b.address}`);
    const first = await handshake(addr, ACCEPT);
    first.close();
    // a stops: the next connection goes to b.
    const port = a.port;
    await a.server.stop();
    const second = await handshake(addr, { acceptNew: false });
    try {
      await waitFor("b to hold the connection", () => b.server.connections === 1);
    } finally {
      second.close();
    }
    await waitFor("b to see the close", () => b.server.connections === 0);
    // a is back; the client still starts at b, which worked last.
    a = await startServer({ dataDir: a.dataDir, port });
    const third = await handshake(addr, { acceptNew: false });
    try {
      await waitFor("b to hold the connection", () => b.server.connections === 1);
      expect(a.server.connections).toBe(0);
    } finally {
      third.close();
    }
  });

  test("a different key on one address is exit 4, and the addresses after it are not tried", async () => {
    useHome("impostor");
    const dead = `127.0.0.1:${deadPort()}`;
    // Pinned: the cluster's key; the second address answers with another key.
    addKnownHost(dead, a.server.hostKey.publicKey);
    const f = await failure(handshake(parseServerAddress(`${dead},${other.address},${a.address}`), { acceptNew: false }));
    expect(f.exit).toBe(EXIT.HOST_KEY);
    expect(f.code).toBe("host_key_changed");
    expect(f.message).toContain(other.server.fingerprint);
    expect(a.server.connections).toBe(0);
  });

  test("when every address fails, the error names each one and why", async () => {
    useHome("all-down");
    const p1 = deadPort();
    const p2 = deadPort();
    const f = await failure(handshake(parseServerAddress(`127.0.0.1:${p1},127.0.0.1:${p2}`), ACCEPT));
    expect(f.code).toBe("connect_failed");
    expect(f.message).toContain("cannot connect to any of the 2 addresses of 127.0.0.1:" + p1);
    expect(f.message).toContain(`127.0.0.1:${p1}: connection refused`);
    expect(f.message).toContain(`127.0.0.1:${p2}: connection refused`);
  });

  test("a host name with several records: each address is tried in turn", async () => {
    useHome("records");
    const asked: string[] = [];
    // 127.0.0.2 is loopback, but the server listens on 127.0.0.1 only.
    const resolve: Resolve = async (host) => (asked.push(host), ["127.0.0.2", "127.0.0.1"]);
    const session = await handshake(parseServerAddress(`chat.cluster.test:${b.port}`), ACCEPT, 10_000, resolve);
    try {
      expect(asked).toEqual(["chat.cluster.test"]);
      expect(session.addr.id).toBe(`chat.cluster.test:${b.port}`);
      await waitFor("b to hold the connection", () => b.server.connections === 1);
      expect(findKnownHost(`chat.cluster.test:${b.port}`)?.key).toEqual(b.server.hostKey.publicKey);
    } finally {
      session.close();
    }
    await waitFor("b to see the close", () => b.server.connections === 0);
    const port = deadPort();
    const f = await failure(handshake(parseServerAddress(`chat.cluster.test:${port}`), ACCEPT, 10_000, resolve));
    expect(f.message).toContain(`chat.cluster.test:${port} (127.0.0.2): connection refused`);
    expect(f.message).toContain(`chat.cluster.test:${port} (127.0.0.1): connection refused`);
  });
});
