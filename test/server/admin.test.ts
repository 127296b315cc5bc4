/**
 * Server administrators (PROTOCOL.md §7.10): `serve --admin NAME` names the
 * accounts that may lock and unlock an account and end its sessions, over
 * the secure channel, each action recorded with who did it before anything
 * changes. Raw protocol sessions against an in-process server on 127.0.0.1.
 *
 * The administrators' set is the server's (ChatOptions.admins); these tests
 * hand it a Set they fill once the account is registered, since a server
 * refuses to start naming an account that does not exist yet (tested below).
 */
import { describe, expect, spyOn, test } from "bun:test";
import { ed25519Generate } from "../../src/crypto/index.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import type { JournalEvent } from "../../src/store/journal.ts";
import {
  type RawSession,
  type RawUser,
  type TestServer,
  freshPath,
  passwordLogin,
  rawSession,
  registerRaw,
  rejection,
  serversStoppedAfterAll,
  startServer,
  ticketLogin,
  untilMessage,
} from "./helpers.ts";

const NET = 20_000;
const PW = "admin test passphrase";

const server = serversStoppedAfterAll();

interface World {
  t: TestServer;
  admins: Set<string>;
  root: RawUser;
  alice: RawUser;
  bob: RawUser;
}

/** A server with root (an administrator), alice and bob. */
async function world(opts: Parameters<typeof server>[0] = {}): Promise<World> {
  const admins = new Set<string>();
  const t = await server({ ...opts, chat: { ...DEFAULT_CHAT, ...opts.chat, admins } });
  const root = await registerRaw(t.port, "root", PW);
  const alice = await registerRaw(t.port, "alice", PW);
  const bob = await registerRaw(t.port, "bob", PW);
  admins.add("root");
  return { t, admins, root, alice, bob };
}

async function login(t: TestServer, u: RawUser, ticketKey?: Uint8Array): Promise<{ s: RawSession; welcome: Message<"welcome"> }> {
  const s = await rawSession(t.port);
  const o = await passwordLogin(s, u.user, u.password, u.identity, ticketKey);
  expect(o.type).toBe("welcome");
  return { s, welcome: o.msg as Message<"welcome"> };
}

/** Sends `admin` and returns the answer: `admin_done`, or the refusing notice. */
async function admin(s: RawSession, action: Message<"admin">["action"], user: string): Promise<Message<"admin_done"> | Message<"notice">> {
  s.send({ type: "admin", action, user });
  const got = await untilMessage(s, (m) => m.type === "admin_done" || (m.type === "notice" && m.code !== "slow_down"));
  expect(got.match).not.toBeNull();
  return got.match as Message<"admin_done"> | Message<"notice">;
}

function adminEntries(append: { mock: { calls: [JournalEvent][] } }): JournalEvent[] {
  return append.mock.calls.map(([e]) => e).filter((e) => e.kind === "admin_action");
}

describe("who may act", () => {
  test("a user who is not an administrator is refused with not_admin, alike for an account that exists and one that does not; nothing is recorded or changed", async () => {
    const { t, alice, bob } = await world();
    const a = await login(t, alice);
    const b = await login(t, bob);
    const append = spyOn(t.server.journal, "append");
    try {
      const onBob = await admin(a.s, "lock", "bob");
      const onNobody = await admin(a.s, "lock", "nobody");
      expect(onBob).toEqual({ type: "notice", code: "not_admin", text: "only a server administrator (serve --admin) may lock an account" });
      // The same words whether or not the target exists: the refusal says nothing about it.
      expect(onNobody).toEqual(onBob);
      expect(await admin(a.s, "end_sessions", "bob")).toEqual(expect.objectContaining({ code: "not_admin" }));
      expect(adminEntries(append)).toEqual([]);
    } finally {
      append.mockRestore();
    }
    // Bob was not touched: his session goes on, his account logs in.
    b.s.send({ type: "ping" });
    expect((await untilMessage(b.s, (m) => m.type === "pong")).match).toEqual({ type: "pong" });
    expect(await t.server.accounts.isLocked("bob")).toBe(false);
    for (const s of [a.s, b.s]) s.close();
  }, NET);
});

describe("lock and unlock", () => {
  test("lock ends every live session of the account at once (account_locked), revokes its tickets, and is recorded first with who did it and from which session", async () => {
    const { t, root, bob } = await world();
    const r = await login(t, root);
    const ticketKey = ed25519Generate();
    const laptop = await login(t, bob, ticketKey.publicKey);
    const ticket = laptop.welcome.ticket!;
    const phone = await login(t, bob);
    phone.s.send({ type: "join", room: "lobby" });
    await untilMessage(phone.s, (m) => m.type === "history_end");
    const append = spyOn(t.server.journal, "append");
    const whenRecorded: { locked?: boolean } = {};
    append.mockImplementation((e: JournalEvent) => {
      if (e.kind === "admin_action") whenRecorded.locked = t.server.store.lockedAt("bob") !== null;
      return {};
    });
    try {
      expect(await admin(r.s, "lock", "bob")).toEqual({ type: "admin_done", action: "lock", user: "bob", ended: 2 });
      for (const s of [laptop.s, phone.s]) {
        const ended = await untilMessage(s, (m) => m.type === "error");
        expect(ended.match).toEqual({ type: "error", code: "account_locked", message: "the account bob was locked by server administrator root; ask an administrator to unlock it" });
        expect(await s.conn.waitClosed(3000)).toBe(true);
      }
      expect(adminEntries(append)).toEqual([{ kind: "admin_action", user: "root", session: Buffer.from(r.welcome.session_id).toString("base64"), action: "lock", target: "bob", ts: expect.any(Number) }]);
      // Recorded before the change: the account was not yet locked when the entry was appended.
      expect(whenRecorded.locked).toBe(false);
    } finally {
      append.mockRestore();
    }
    // The ticket no longer logs in; the right password is told the account is locked, a wrong one only auth_failed.
    const again = await rawSession(t.port);
    expect((await ticketLogin(again, "bob", ticket, ticketKey)).code).toBe("auth_failed");
    const right = await passwordLogin(again, "bob", PW, bob.identity);
    expect([right.code, right.message]).toEqual(["account_locked", "the account bob is locked by a server administrator; ask one to unlock it"]);
    expect((await passwordLogin(again, "bob", "not bob's passphrase", bob.identity)).code).toBe("auth_failed");
    expect((await passwordLogin(again, "bob", PW, ed25519Generate())).code).toBe("auth_failed");
    again.close();
    // Unlock: recorded, and bob logs in again.
    expect(await admin(r.s, "unlock", "bob")).toEqual({ type: "admin_done", action: "unlock", user: "bob", ended: 0 });
    const back = await login(t, bob);
    back.s.close();
    r.s.close();
  }, NET);

  test("a password login still being checked when the account is locked is refused once the check is done: account_locked, and no ticket is issued", async () => {
    const { t, root, bob } = await world();
    const r = await login(t, root);
    const gate = t.server.accounts.gate;
    const original = gate.run.bind(gate);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const checking = new Promise<void>((resolve) => (started = resolve));
    // bob's password check (argon2id in the gate) waits until the lock is done.
    const run = spyOn(gate, "run").mockImplementation(async <T>(task: () => Promise<T>): Promise<T> => {
      started();
      await held;
      return original(task);
    });
    try {
      const s = await rawSession(t.port);
      const attempt = passwordLogin(s, "bob", PW, bob.identity, ed25519Generate().publicKey);
      await checking;
      expect(await admin(r.s, "lock", "bob")).toEqual({ type: "admin_done", action: "lock", user: "bob", ended: 0 });
      release();
      expect((await attempt).code).toBe("account_locked");
      expect(t.server.store.ticketsOf("bob", Date.now(), 10).total).toBe(0);
      s.close();
    } finally {
      run.mockRestore();
    }
    r.s.close();
  }, NET);

  test("the lock is kept in securechat.db: it holds across a restart, and the unlock too", async () => {
    const dataDir = freshPath("admin-restart");
    const admins = new Set<string>();
    let t = await startServer({ dataDir, chat: { ...DEFAULT_CHAT, admins } });
    const root = await registerRaw(t.port, "root", PW);
    const bob = await registerRaw(t.port, "bob", PW);
    admins.add("root");
    const r = await login(t, root);
    expect(await admin(r.s, "lock", "bob")).toEqual(expect.objectContaining({ type: "admin_done" }));
    r.s.close();
    await t.server.stop();
    t = await startServer({ dataDir, chat: { ...DEFAULT_CHAT, admins } });
    try {
      const s = await rawSession(t.port);
      expect((await passwordLogin(s, "bob", PW, bob.identity)).code).toBe("account_locked");
      s.close();
      const r2 = await login(t, root);
      expect(await admin(r2.s, "unlock", "bob")).toEqual(expect.objectContaining({ type: "admin_done" }));
      r2.s.close();
    } finally {
      await t.server.stop();
    }
    t = await startServer({ dataDir, chat: { ...DEFAULT_CHAT, admins } });
    try {
      (await login(t, bob)).s.close();
    } finally {
      await t.server.stop();
    }
  }, NET);
});

describe("end_sessions", () => {
  test("ends every live session of the account (session_revoked) and revokes its tickets, without locking it: the password logs in again", async () => {
    const { t, root, alice } = await world();
    const r = await login(t, root);
    const ticketKey = ed25519Generate();
    const a = await login(t, alice, ticketKey.publicKey);
    const append = spyOn(t.server.journal, "append");
    try {
      expect(await admin(r.s, "end_sessions", "alice")).toEqual({ type: "admin_done", action: "end_sessions", user: "alice", ended: 1 });
      const ended = await untilMessage(a.s, (m) => m.type === "error");
      expect(ended.match).toEqual({ type: "error", code: "session_revoked", message: "this session was ended by server administrator root; log in again" });
      expect(adminEntries(append)).toEqual([expect.objectContaining({ user: "root", action: "end_sessions", target: "alice" })]);
    } finally {
      append.mockRestore();
    }
    const s = await rawSession(t.port);
    expect((await ticketLogin(s, "alice", a.welcome.ticket!, ticketKey)).code).toBe("auth_failed");
    expect((await passwordLogin(s, "alice", PW, alice.identity)).type).toBe("welcome");
    s.close();
    r.s.close();
  }, NET);
});

describe("refusals change nothing and record nothing", () => {
  test("own account, unknown account, locking an administrator, locking a locked account, unlocking an unlocked one", async () => {
    const { t, admins, root, bob } = await world();
    const ops = await registerRaw(t.port, "ops", PW);
    admins.add(ops.user);
    const r = await login(t, root);
    const b = await login(t, bob);
    const append = spyOn(t.server.journal, "append");
    try {
      expect(await admin(r.s, "lock", "root")).toEqual(expect.objectContaining({ code: "own_account" }));
      expect(await admin(r.s, "end_sessions", "root")).toEqual(expect.objectContaining({ code: "own_account" }));
      expect(await admin(r.s, "lock", "nobody")).toEqual({ type: "notice", code: "no_such_user", text: "there is no account nobody" });
      expect(await admin(r.s, "lock", "ops")).toEqual(expect.objectContaining({ code: "target_admin" }));
      expect(await admin(r.s, "unlock", "bob")).toEqual(expect.objectContaining({ code: "not_locked" }));
      expect(adminEntries(append)).toEqual([]);
      expect(await admin(r.s, "lock", "bob")).toEqual(expect.objectContaining({ type: "admin_done" }));
      expect(await admin(r.s, "lock", "bob")).toEqual(expect.objectContaining({ code: "already_locked" }));
      expect(adminEntries(append).map((e) => e.kind === "admin_action" && e.action)).toEqual(["lock"]);
    } finally {
      append.mockRestore();
    }
    // root's own session went on through all of it.
    r.s.send({ type: "ping" });
    expect((await untilMessage(r.s, (m) => m.type === "pong")).match).toEqual({ type: "pong" });
    for (const s of [r.s, b.s]) s.close();
  }, NET);

  test("while the transcript cannot record, lock is refused with not_recorded: the account is not locked and its session goes on", async () => {
    const { t, root, bob } = await world();
    const r = await login(t, root);
    const b = await login(t, bob);
    // As a full disk leaves it (test/server/recording.test.ts makes one).
    Object.defineProperty(t.server.journal, "recording", { value: false, configurable: true });
    try {
      expect(await admin(r.s, "lock", "bob")).toEqual(expect.objectContaining({ type: "notice", code: "not_recorded" }));
      expect(await admin(r.s, "end_sessions", "bob")).toEqual(expect.objectContaining({ type: "notice", code: "not_recorded" }));
    } finally {
      Object.defineProperty(t.server.journal, "recording", { value: true, configurable: true });
    }
    expect(await t.server.accounts.isLocked("bob")).toBe(false);
    b.s.send({ type: "ping" });
    expect((await untilMessage(b.s, (m) => m.type === "pong")).match).toEqual({ type: "pong" });
    for (const s of [r.s, b.s]) s.close();
  }, NET);
});

describe("limits", () => {
  test("an admin request costs a request token and waits its turn: past the bucket it is held (slow_down), then answered in order", async () => {
    const { t, root } = await world({ chat: { ...DEFAULT_CHAT, requests: { rate: 5, burst: 1 } } });
    const r = await login(t, root);
    r.s.send({ type: "ping" });
    r.s.send({ type: "admin", action: "end_sessions", user: "alice" });
    r.s.send({ type: "admin", action: "end_sessions", user: "bob" });
    const got = await untilMessage(r.s, (m) => m.type === "admin_done" && m.user === "bob");
    const order = got.seen.map((m) => (m.type === "notice" ? m.code : m.type === "admin_done" ? `${m.type} ${m.user}` : m.type));
    expect(order).toEqual(["pong", "slow_down", "admin_done alice", "admin_done bob"]);
    r.s.close();
  }, NET);
});

describe("serve --admin", () => {
  test("a server refuses to start naming an administrator with no account (whoever registered the name first would be one); with the account it starts", async () => {
    const dataDir = freshPath("admin-start");
    const e = await rejection(startServer({ dataDir, chat: { ...DEFAULT_CHAT, admins: new Set(["root", "ops"]) } }));
    expect(e).toEqual(expect.objectContaining({ code: "admin_unknown", message: "--admin root, ops: no such account on this server" }));
    let t = await startServer({ dataDir });
    await registerRaw(t.port, "root", PW);
    await t.server.stop();
    t = await startServer({ dataDir, chat: { ...DEFAULT_CHAT, admins: new Set(["root"]) } });
    await t.server.stop();
  }, NET);
});
