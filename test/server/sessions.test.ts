/**
 * Sessions end with what they stand on, and one user or one address cannot
 * take the server: a revoked or expired ticket ends the live sessions opened
 * with it, sessions have a maximum lifetime, and connections and logins are
 * capped per user and per address. Raw protocol sessions against an
 * in-process server on 127.0.0.1.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { type Ed25519KeyPair, ed25519Generate, sha256 } from "../../src/crypto/index.ts";
import { deviceId } from "../../src/fingerprint.ts";
import { Framed } from "../../src/net/framed.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
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
    const issued = (await issue.mock.results[0]!.value) as { ticket: Uint8Array };
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

describe("sessions: a user sees where it is logged in and ends any other session at once (PROTOCOL.md §7.8)", () => {
  type Sessions = Message<"sessions">;
  async function ask(s: RawSession, m: Message, type: Message["type"]): Promise<Message> {
    s.send(m);
    const got = await untilMessage(s, (x) => x.type === type || (x.type === "notice" && type === "notice"));
    expect(got.match?.type).toBe(type);
    return got.match!;
  }

  test("an account store that answers late (PostgreSQL) keeps the answer in its place: a ping sent after session_list is answered after it", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const { s } = await withTicket(t, alice);
    const store = t.server.store;
    const ticketsOf = store.ticketsOf.bind(store);
    const late = spyOn(store, "ticketsOf").mockImplementation(((...a: Parameters<typeof ticketsOf>) => Bun.sleep(300).then(() => ticketsOf(...a))) as never);
    try {
      s.send({ type: "session_list" });
      s.send({ type: "ping" });
      const { match, seen } = await untilMessage(s, (m) => m.type === "pong");
      expect(match).toEqual({ type: "pong" });
      expect(seen.map((m) => m.type)).toEqual(["sessions", "pong"]);
      expect(late).toHaveBeenCalledTimes(1);
    } finally {
      late.mockRestore();
    }
  }, NET);

  test("logout over an account store that answers late: bye comes once the ticket is revoked, and the ticket no longer logs in", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const { s, ticket, key } = await withTicket(t, alice);
    const store = t.server.store;
    const revokeTicket = store.revokeTicket.bind(store);
    const late = spyOn(store, "revokeTicket").mockImplementation(((hash: Uint8Array) => Bun.sleep(300).then(() => revokeTicket(hash))) as never);
    try {
      s.send({ type: "logout" });
      expect((await untilMessage(s, (m) => m.type === "bye")).match).toEqual({ type: "bye", reason: "logged out" });
      expect(store.ticket(sha256(ticket), Date.now())).toBeNull();
    } finally {
      late.mockRestore();
    }
    const again = await rawSession(t.port);
    expect((await ticketLogin(again, "alice", ticket, key)).code).toBe("auth_failed");
  }, NET);

  test("session_list names each live session of the user with its source, start, expiry and ticket, the current one marked, then its tickets; nobody else's", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const bob = await registerRaw(t.port, "bob", PW);
    const laptop = await withTicket(t, alice);
    const phone = await withTicket(t, alice);
    const b = await withTicket(t, bob);
    const list = (await ask(phone.s, { type: "session_list" }, "sessions")) as Sessions;
    expect(list.live).toHaveLength(2);
    expect(list.tickets).toHaveLength(2);
    const [mine, other] = [list.live.find((l) => l.current), list.live.find((l) => !l.current)];
    expect(mine && other && mine.id !== other.id).toBe(true);
    for (const l of list.live) {
      expect(l.source).toBe("127.0.0.1");
      expect(l.device).toBe(deviceId(alice.identity.publicKey));
      expect(l.expires).toBeGreaterThan(l.since);
      expect(list.tickets.map((x) => x.id)).toContain(l.ticket!);
    }
    // A ticket names the device and address it was issued to, live session or not.
    for (const x of list.tickets) expect(x).toMatchObject({ device: deviceId(alice.identity.publicKey), source: "127.0.0.1" });
    expect(mine!.ticket).not.toBe(other!.ticket);
    // Bob's session and ticket are not alice's to see.
    const bobs = (await ask(b.s, { type: "session_list" }, "sessions")) as Sessions;
    expect(bobs.live.map((l) => l.id)).not.toContain(other!.id);
    expect(bobs.live).toHaveLength(1);
    laptop.s.close();
    b.s.close();
    phone.s.close();
  }, NET);

  test("revoke_session ends that session at once (session_revoked) and revokes its ticket; the revoker goes on, and the transcript names who did it", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const laptop = await withTicket(t, alice);
    laptop.s.close();
    const stolen = await ticketSession(t, "alice", laptop.ticket, laptop.key);
    stolen.send({ type: "join", room: "lobby" });
    await untilMessage(stolen, (m) => m.type === "history_end");
    const phone = await withTicket(t, alice);
    const append = spyOn(t.server.journal, "append");
    try {
      const list = (await ask(phone.s, { type: "session_list" }, "sessions")) as Sessions;
      const target = list.live.find((l) => !l.current)!;
      const revoked = await ask(phone.s, { type: "revoke_session", id: target.id }, "revoked");
      expect(revoked).toEqual({ type: "revoked", id: target.id, ended: 1 });
      const ended = await untilMessage(stolen, (m) => m.type === "error");
      expect(ended.match).toEqual(expect.objectContaining({ type: "error", code: "session_revoked" }));
      expect(await stolen.conn.waitClosed(3000)).toBe(true);
      const entry = append.mock.calls.map(([e]) => e).find((e) => e.kind === "session_revoked");
      expect(entry).toEqual(expect.objectContaining({ kind: "session_revoked", user: "alice", target: target.id }));
      expect(JSON.stringify(entry)).not.toContain(Buffer.from(laptop.ticket).toString("base64"));
    } finally {
      append.mockRestore();
    }
    // Its ticket logs in no more; the revoker's session goes on, and lists only itself now.
    const again = await rawSession(t.port);
    expect((await ticketLogin(again, "alice", laptop.ticket, laptop.key)).code).toBe("auth_failed");
    again.close();
    const after = (await ask(phone.s, { type: "session_list" }, "sessions")) as Sessions;
    expect(after.live.map((l) => !!l.current)).toEqual([true]);
    expect(after.tickets).toHaveLength(1);
    phone.s.close();
  }, NET);

  test("a ticket with no live session is revoked by its id; this session, a shared ticket, another user's session and an unknown id are refused with a notice", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const bob = await registerRaw(t.port, "bob", PW);
    const idle = await withTicket(t, alice);
    idle.s.close();
    const phone = await withTicket(t, alice);
    const twin = await ticketSession(t, "alice", phone.ticket, phone.key);
    const b = await withTicket(t, bob);
    const list = (await ask(phone.s, { type: "session_list" }, "sessions")) as Sessions;
    const me = list.live.find((l) => l.current)!;
    const twinRow = list.live.find((l) => !l.current)!;
    expect(twinRow.ticket).toBe(me.ticket);
    const idleTicket = list.tickets.find((x) => x.id !== me.ticket)!;

    const refused = async (s: RawSession, id: string) => ((await ask(s, { type: "revoke_session", id }, "notice")) as Message<"notice">).code;
    expect(await refused(phone.s, me.id)).toBe("current_session");
    expect(await refused(phone.s, me.ticket!)).toBe("current_session");
    expect(await refused(phone.s, twinRow.id)).toBe("current_session");
    expect(await refused(phone.s, "000000000000")).toBe("unknown_session");
    expect(await refused(b.s, twinRow.id)).toBe("unknown_session");
    expect(await refused(b.s, idleTicket.id)).toBe("unknown_session");
    expect((await ticketSession(t, "alice", idle.ticket, idle.key)).close()).toBeUndefined();

    expect(await ask(phone.s, { type: "revoke_session", id: idleTicket.id }, "revoked")).toEqual({ type: "revoked", id: idleTicket.id, ended: 0 });
    const again = await rawSession(t.port);
    expect((await ticketLogin(again, "alice", idle.ticket, idle.key)).code).toBe("auth_failed");
    again.close();
    // The twin on this session's ticket was never touched.
    twin.send({ type: "ping" });
    expect((await untilMessage(twin, (m) => m.type === "pong")).match).toEqual({ type: "pong" });
    for (const s of [phone.s, twin, b.s]) s.close();
  }, NET);

  test("the answer is bounded: at most 100 tickets, newest first, and how many more there are", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const now = Date.now();
    for (let i = 0; i < 105; i++) t.server.store.addTicket(new Uint8Array(32).fill(i + 1), { user: "alice", key: new Uint8Array(32), expiresAt: now + 3600_000 }, now - 1000 + i);
    const phone = await withTicket(t, alice);
    const list = (await ask(phone.s, { type: "session_list" }, "sessions")) as Sessions;
    expect(list.tickets).toHaveLength(100);
    expect(list.more_tickets).toBe(6);
    expect(list.tickets[0]!.id).toBe(list.live[0]!.ticket!);
    expect(list.tickets[1]!.id).toBe("696969696969"); // the 105th stored, 0x69
    phone.s.close();
  }, NET);

  test("each costs a request token: past the request bucket the answer waits behind a slow_down notice", async () => {
    const t = await server({ chat: { ...DEFAULT_CHAT, requests: { rate: 1, burst: 1 } } });
    const alice = await registerRaw(t.port, "alice", PW);
    const phone = await withTicket(t, alice);
    phone.s.send({ type: "session_list" });
    phone.s.send({ type: "revoke_session", id: "000000000000" });
    const seen = (await untilMessage(phone.s, (m) => m.type === "notice" && m.code === "unknown_session")).seen.map((m) => (m.type === "notice" ? m.code : m.type));
    expect(seen).toEqual(["sessions", "slow_down", "unknown_session"]);
    phone.s.close();
  }, NET);
});

describe("change_password: a new password, only after proving the old one and the identity key (PROTOCOL.md §7.8)", () => {
  const NEW = "a brand new passphrase for her";
  async function passwordWorks(t: TestServer, u: RawUser, password: string): Promise<string> {
    const s = await rawSession(t.port);
    try {
      const o = await passwordLogin(s, u.user, password, u.identity);
      return o.type === "welcome" ? "welcome" : String(o.code);
    } finally {
      s.close();
    }
  }

  test("on a password session it replaces the verifier: the old password fails from then on, the new one logs in; the transcript records who, never the password", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const s = await rawSession(t.port);
    expect((await passwordLogin(s, "alice", PW, alice.identity)).type).toBe("welcome");
    const append = spyOn(t.server.journal, "append");
    try {
      s.send({ type: "change_password", new_password: NEW });
      expect((await untilMessage(s, (m) => m.type === "password_changed" || m.type === "notice")).match).toEqual({ type: "password_changed", ended: 0 });
      const entry = append.mock.calls.map(([e]) => e).find((e) => e.kind === "password_changed");
      expect(entry).toEqual(expect.objectContaining({ kind: "password_changed", user: "alice", ended: false }));
      expect(JSON.stringify(append.mock.calls)).not.toContain(NEW);
    } finally {
      append.mockRestore();
    }
    expect(JSON.stringify(t.events)).not.toContain(NEW);
    expect(await passwordWorks(t, alice, PW)).toBe("auth_failed");
    expect(await passwordWorks(t, alice, NEW)).toBe("welcome");
    s.close();
  }, NET);

  test("refused on a ticket session (password_login_needed) and against the policy (password_policy); the old password still works", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const { s: first, ticket, key } = await withTicket(t, alice);
    first.close();
    const bearer = await ticketSession(t, "alice", ticket, key);
    bearer.send({ type: "change_password", new_password: NEW });
    expect((await untilMessage(bearer, (m) => m.type === "notice" || m.type === "password_changed")).match).toEqual(expect.objectContaining({ type: "notice", code: "password_login_needed" }));
    const s = await rawSession(t.port);
    expect((await passwordLogin(s, "alice", PW, alice.identity)).type).toBe("welcome");
    for (const weak of ["short", "alice's own passphrase", "abababababababab"]) {
      s.send({ type: "change_password", new_password: weak });
      expect((await untilMessage(s, (m) => m.type === "notice" || m.type === "password_changed")).match).toEqual(expect.objectContaining({ type: "notice", code: "password_policy" }));
    }
    expect(await passwordWorks(t, alice, PW)).toBe("welcome");
    for (const c of [bearer, s]) c.close();
  }, NET);

  test("with end_sessions, every other live session ends at once and every other ticket is revoked; this session's ticket stays", async () => {
    const t = await server();
    const alice = await registerRaw(t.port, "alice", PW);
    const laptop = await withTicket(t, alice);
    const phone = await withTicket(t, alice);
    phone.s.send({ type: "change_password", new_password: NEW, end_sessions: true });
    expect((await untilMessage(phone.s, (m) => m.type === "password_changed" || m.type === "notice")).match).toEqual({ type: "password_changed", ended: 1 });
    expect((await untilMessage(laptop.s, (m) => m.type === "error")).match).toEqual(expect.objectContaining({ type: "error", code: "session_revoked" }));
    expect(await laptop.s.conn.waitClosed(3000)).toBe(true);
    const stale = await rawSession(t.port);
    expect((await ticketLogin(stale, "alice", laptop.ticket, laptop.key)).code).toBe("auth_failed");
    stale.close();
    const kept = await ticketSession(t, "alice", phone.ticket, phone.key);
    kept.close();
    phone.s.close();
  }, NET);
});
