/**
 * Sessions end with what they stand on, and one user or one address cannot
 * take the server: a revoked or expired ticket ends the live sessions opened
 * with it, sessions have a maximum lifetime, and connections and logins are
 * capped per user and per address. Raw protocol sessions against an
 * in-process server on 127.0.0.1.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { Framed } from "../../src/net/framed.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { RateLimiter, sourceKey } from "../../src/server/limits.ts";
import { RawConn, type RawSession, type RawUser, type TestServer, passwordLogin, rawSession, registerRaw, serversStoppedAfterAll, untilMessage, ticketLogin, waitFor } from "./helpers.ts";

const NET = 20_000;
const PW = "sessions test passphrase";

const server = serversStoppedAfterAll();


/** A password login that asks for a ticket: the session, and the ticket with its key. */
async function withTicket(t: TestServer, u: RawUser): Promise<{ s: RawSession; ticket: Uint8Array; key: Ed25519KeyPair }> {
  const key = ed25519Generate();
  const s = await rawSession(t.port);
  const o = await passwordLogin(s, u.user, u.password, u.identity, key.publicKey);
  expect(o.type).toBe("welcome");
  return { s, ticket: (o.msg as { ticket: Uint8Array }).ticket, key };
}

async function ticketSession(t: TestServer, user: string, ticket: Uint8Array, key: Ed25519KeyPair): Promise<RawSession> {
  const s = await rawSession(t.port);
  const o = await ticketLogin(s, user, ticket, key);
  expect(o.type).toBe("welcome");
  return s;
}

describe("a stolen ticket's session ends with the ticket", () => {
  test("logout with the ticket ends the thief's live session at once: it is told session_revoked, leaves its rooms and gets no more DMs", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const bob = await registerRaw(t.port, "bob", PW);
    const { s: login, ticket, key } = await withTicket(t, alice);
    login.close();
    const thief = await ticketSession(t, "alice", ticket, key);
    thief.send({ type: "join", room: "lobby" });
    await untilMessage(thief, (m) => m.type === "history_end");
    const b = await rawSession(t.port);
    expect((await passwordLogin(b, "bob", PW, bob.identity)).type).toBe("welcome");
    b.send({ type: "join", room: "lobby" });
    await untilMessage(b, (m) => m.type === "history_end");

    // Alice logs out with her ticket (as `securechat logout` does).
    const owner = await ticketSession(t, "alice", ticket, key);
    owner.send({ type: "logout" });
    expect((await untilMessage(owner, (m) => m.type === "bye")).match).toEqual({ type: "bye", reason: "logged out" });

    const ended = await untilMessage(thief, (m) => m.type === "error");
    expect(ended.match).toEqual(expect.objectContaining({ type: "error", code: "session_revoked" }));
    expect(await thief.conn.waitClosed(3000)).toBe(true);
    // Bob sees alice leave, and a DM to her now finds no live session: it is stored for her next login.
    expect((await untilMessage(b, (m) => m.type === "left")).match).toEqual(expect.objectContaining({ type: "left", room: "lobby", user: "alice" }));
    b.send({ type: "dm", id: 1, to: "alice", text: "the money?" });
    expect((await untilMessage(b, (m) => m.type === "nack" || m.type === "ack")).match).toEqual(expect.objectContaining({ type: "ack", stored: true }));
    // And the ticket logs in no more.
    const again = await rawSession(t.port);
    expect((await ticketLogin(again, "alice", ticket, key)).code).toBe("auth_failed");
    again.close();
    b.close();
  }, NET);

  test("a session opened with a ticket ends when the ticket expires (session_expired), though it keeps talking", async () => {
    const t = await server({ ticketTtlMs: 1500 });
    const carol = await registerRaw(t.port, "carol", PW);
    const { s: login, ticket, key } = await withTicket(t, carol);
    login.close();
    const thief = await ticketSession(t, "carol", ticket, key);
    const opened = Date.now();
    // Activity does not extend it.
    const pinger = setInterval(() => thief.send({ type: "ping" }), 200);
    try {
      const ended = await untilMessage(thief, (m) => m.type === "error", 10_000);
      expect(ended.match).toEqual(expect.objectContaining({ type: "error", code: "session_expired" }));
      expect(Date.now() - opened).toBeGreaterThanOrEqual(1000);
    } finally {
      clearInterval(pinger);
    }
    expect(await thief.conn.waitClosed(3000)).toBe(true);
    expect(t.events.some((e) => e.event === "session_expired" && e.fields.user === "carol")).toBe(true);
  }, NET);

  test("every session ends at --session-max, a password session too", async () => {
    const t = await server({ sessionMaxMs: 1000 });
    const dave = await registerRaw(t.port, "dave", PW);
    const s = await rawSession(t.port);
    expect((await passwordLogin(s, "dave", PW, dave.identity)).type).toBe("welcome");
    expect((await untilMessage(s, (m) => m.type === "error", 10_000)).match).toEqual(expect.objectContaining({ type: "error", code: "session_expired" }));
    expect(await s.conn.waitClosed(3000)).toBe(true);
  }, NET);
});

/** How many tickets the server's store holds. */
function storedTickets(t: TestServer): number {
  return t.server.store.db.query<{ n: number }, []>("SELECT count(*) AS n FROM tickets").get()!.n;
}

describe("a ticket nobody received is not kept", () => {
  test("a client that asks for a ticket and closes at once leaves no ticket in the store and no session", async () => {
    const t = await server();
    const gina = await registerRaw(t.port, "gina", PW);
    const check = spyOn(t.server.accounts, "loginWithPassword");
    try {
      for (const end of ["close", "destroy"] as const) {
        const s = await rawSession(t.port);
        s.send({ type: "login", user: "gina", sig: s.sign(gina.identity), password: PW, ticket_key: ed25519Generate().publicKey });
        s.conn[end]();
        await waitFor("the server to drop the connection", () => t.server.connections === 0);
      }
      // The password checks (argon2id) run on after the close: let both finish.
      await waitFor("both password checks", () => check.mock.results.length === 2);
      await Promise.allSettled(check.mock.results.map((r) => r.value));
      await Bun.sleep(0);
    } finally {
      check.mockRestore();
    }
    expect(storedTickets(t)).toBe(0);
    expect(t.server.chat.connectionsOf("gina")).toBe(0);
    expect(t.events.filter((e) => e.event === "login" && e.fields.method === "password")).toEqual([]);
  }, NET);

  test("when the welcome cannot be written (the peer reset the connection), the ticket it carried is removed from the store and wiped, and no session opens", async () => {
    const t = await server();
    const hank = await registerRaw(t.port, "hank", PW);
    await waitFor("the registration's connection to close", () => t.server.connections === 0);
    const before = t.events.length;
    const issue = spyOn(t.server.accounts, "issueTicket");
    // The server's next write is the welcome: it fails as a write on a reset socket does.
    const send = spyOn(Framed.prototype, "send");
    try {
      const s = await rawSession(t.port);
      send.mockImplementationOnce(function (this: Framed) {
        this.close("write failed");
        return false;
      });
      s.send({ type: "login", user: "hank", sig: s.sign(hank.identity), password: PW, ticket_key: ed25519Generate().publicKey });
      expect(await s.conn.waitClosed(10_000)).toBe(true);
      await waitFor("the login attempt to finish", () => issue.mock.results.length === 1);
    } finally {
      send.mockRestore();
    }
    const issued = issue.mock.results[0]!.value as { ticket: Uint8Array };
    issue.mockRestore();
    expect(storedTickets(t)).toBe(0);
    expect(issued.ticket.every((b) => b === 0)).toBe(true);
    expect(t.server.chat.connectionsOf("hank")).toBe(0);
    expect(t.server.connections).toBe(0);
    expect(t.server.unauthenticated).toBe(0);
    expect(t.events.slice(before).filter((e) => e.event === "login" || e.event === "session_closed")).toEqual([]);
    // The account is unharmed: the next login gets its welcome and a ticket.
    const s = await rawSession(t.port);
    expect((await passwordLogin(s, "hank", PW, hank.identity, ed25519Generate().publicKey)).type).toBe("welcome");
    expect(storedTickets(t)).toBe(1);
    s.close();
  }, NET);
});

describe("expired tickets leave the database while the server runs", () => {
  test("a ticket past its expiry is deleted by the server's sweep, not only at the next start", async () => {
    const t = await server({ ticketTtlMs: 500, ticketPruneMs: 200 });
    const ivan = await registerRaw(t.port, "ivan", PW);
    const { s } = await withTicket(t, ivan);
    s.close();
    const tickets = () => t.server.store.db.query<{ n: number }, []>("SELECT count(*) AS n FROM tickets").get()!.n;
    expect(tickets()).toBe(1);
    const deadline = Date.now() + 10_000;
    while (tickets() > 0 && Date.now() < deadline) await Bun.sleep(100);
    expect(tickets()).toBe(0);
  }, NET);
});

describe("per-user and per-address limits", () => {
  test("one user has at most --max-connections-per-user logged-in connections; others still get in; closing one frees a place", async () => {
    const t = await server({ maxConnectionsPerUser: 2 });
    const erin = await registerRaw(t.port, "erin", PW);
    const frank = await registerRaw(t.port, "frank", PW);
    const { s: first, ticket, key } = await withTicket(t, erin);
    const second = await ticketSession(t, "erin", ticket, key);
    const third = await rawSession(t.port);
    const refused = await ticketLogin(third, "erin", ticket, key);
    expect(refused).toEqual(expect.objectContaining({ type: "error", code: "too_many_connections" }));
    expect(refused.message).toContain("erin has 2 connections open");
    const f = await rawSession(t.port);
    expect((await passwordLogin(f, "frank", PW, frank.identity)).type).toBe("welcome");
    second.close();
    await second.conn.waitClosed(3000);
    // The refusal was an answer to the attempt: the same connection may try again.
    let o = await ticketLogin(third, "erin", ticket, key);
    for (let i = 0; o.type !== "welcome" && i < 20; i++) {
      await Bun.sleep(50);
      o = await ticketLogin(third, "erin", ticket, key);
    }
    expect(o.type).toBe("welcome");
    for (const s of [first, third, f]) s.close();
  }, NET);

  test("one address has at most --max-connections-per-address connections; the next is refused in clear with too_many_connections", async () => {
    const t = await server({ maxConnectionsPerAddress: 3 });
    const open: RawConn[] = [];
    for (let i = 0; i < 3; i++) open.push(await RawConn.open(t.port));
    const fourth = await RawConn.open(t.port);
    expect(await fourth.nextCleartext(3000)).toEqual(expect.objectContaining({ type: "error", code: "too_many_connections" }));
    expect(await fourth.waitClosed(3000)).toBe(true);
    open.pop()!.destroy();
    await Bun.sleep(100);
    const s = await rawSession(t.port); // a handshake completes again
    expect(s.keys.sessionId.length).toBe(16);
    s.close();
    for (const c of open) c.destroy();
  }, NET);

  test("login attempts per address are rate-limited (--login-rate, --login-burst): past the burst, rate_limited with the wait", async () => {
    const t = await server({ logins: { rate: 1, burst: 3 } });
    const s = await rawSession(t.port);
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 5; i++) codes.push((await ticketLogin(s, "nobody", crypto.getRandomValues(new Uint8Array(32)), ed25519Generate())).code);
    expect(codes.slice(0, 3)).toEqual(["auth_failed", "auth_failed", "auth_failed"]);
    expect(codes[3]).toBe("rate_limited");
    s.close();
  }, NET);
});

describe("sourceKey and RateLimiter", () => {
  test("IPv4 addresses are themselves; IPv4-mapped IPv6 is IPv4; IPv6 counts by its /64", () => {
    expect(sourceKey("192.0.2.7")).toBe("192.0.2.7");
    expect(sourceKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(sourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:DB8:0001:0002:0:0:0:ffff")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(sourceKey("::1")).toBe("0:0:0:0::/64");
    expect(sourceKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(sourceKey("2001:db8:1:3::1")).not.toBe(sourceKey("2001:db8:1:2::1"));
  });

  test("a bucket per key; full buckets are forgotten; the key count is bounded", () => {
    const r = new RateLimiter({ rate: 1, burst: 2 }, 3);
    expect(r.take("a", 0)).toBe(0);
    expect(r.take("a", 0)).toBe(0);
    expect(r.take("a", 0)).toBe(1000);
    expect(r.take("b", 0)).toBe(0);
    r.prune(500);
    expect(r.size).toBe(2);
    r.prune(2000);
    expect(r.size).toBe(0);
    for (const k of ["a", "b", "c", "d", "e"]) r.take(k, 3000);
    expect(r.size).toBe(3);
  });
});
