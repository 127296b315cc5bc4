/**
 * Shared helpers for the protocol-layer tests: error-code assertions, a
 * seeded PRNG for test inputs, and one valid example of every message type.
 *
 * Randomized inputs come from PROTOCOL_TEST_SEED (default fixed); each test
 * file prints the seed it used, so a failure is reproduced with
 * `PROTOCOL_TEST_SEED=<seed> bun test test/protocol`.
 */
import { expect } from "bun:test";
import { isSecureChatError } from "../../src/errors.ts";
import type { Message, MessageType } from "../../src/protocol/messages.ts";
import { mulberry32 } from "../rng.ts";

export const SEED = Number(process.env.PROTOCOL_TEST_SEED ?? 0x5ec_c4a7) >>> 0;

/** The error code `fn` throws; "no error" or "not a SecureChatError: …" otherwise. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSecureChatError(e)) return e.code;
    return `not a SecureChatError: ${String(e)}`;
  }
  return "no error";
}

/** Asserts that `fn` throws a SecureChatError with `code` (and counts as an expect()). */
export function expectCode(fn: () => unknown, code: string): void {
  expect(codeOf(fn)).toBe(code);
}

/** mulberry32 — seedable and small; only for picking test inputs, never keys in real use. */
export interface Rng {
  u32(): number;
  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number;
  bytes(n: number): Uint8Array;
}

export function rng(seed: number = SEED): Rng {
  const u32 = mulberry32(seed);
  return {
    u32,
    int: (min, max) => min + (u32() % (max - min + 1)),
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = u32() & 0xff;
      return out;
    },
  };
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Flips bit `bit` (0 = least significant of byte 0) of a copy of `b`. */
export function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = b.slice();
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

/**
 * One valid example of every message type, with as many optional fields as
 * the cross-field rules allow (so the field tables see nearly the whole
 * schema): register asks for a ticket; login carries a password and asks for
 * a ticket (a login cannot carry both password and ticket, and a ticket
 * login cannot ask for a ticket); welcome carries a ticket and its expiry.
 * `login.ticket` appears only in `exampleVariants`. The chat examples carry
 * every optional member (`action`, `history`), non-empty lists and text that
 * JSON must escape (`"` and `\\`).
 */
export function fullExamples(r: Rng = rng()): { [T in MessageType]: Message<T> } {
  return {
    client_hello: { type: "client_hello", version: 1, e: r.bytes(32), nonce: r.bytes(32) },
    server_hello: {
      type: "server_hello",
      version: 1,
      e: r.bytes(32),
      challenge: r.bytes(32),
      host_key: r.bytes(32),
      rekey_records: 1024,
      rekey_bytes: 2 ** 32,
      sig: r.bytes(64),
    },
    register: { type: "register", user: "alice", identity_key: r.bytes(32), sig: r.bytes(64), password: "correct horse battery staple", ticket_key: r.bytes(32) },
    login: { type: "login", user: "bob_2", sig: r.bytes(64), password: "hunter2 — ünïcödé 🔐", ticket_key: r.bytes(32) },
    check_name: { type: "check_name", user: "erin" },
    name_status: { type: "name_status", user: "erin", available: true },
    welcome: { type: "welcome", user: "carol-x", session_id: r.bytes(16), ticket: r.bytes(32), ticket_expires: 1_900_000_000_000 },
    error: { type: "error", code: "bad_request", message: "that did not parse — try again ✓" },
    logout: { type: "logout" },
    bye: { type: "bye", reason: "logged out — à bientôt" },
    ping: { type: "ping" },
    pong: { type: "pong" },
    // Chat requests (PROTOCOL.md §7.1).
    join: { type: "join", room: "lobby", since: 41, limit: 0 },
    leave: { type: "leave", room: "0-dev_ops" },
    say: { type: "say", id: 7, room: "lobby", text: "waves — 👋 \"hi\" \\o/", action: true, cid: "AAECAwQFBgcICQoLDA0ODw" },
    dm: { type: "dm", id: 8, to: "dave_9", text: "psst ✓", action: true, cid: "_-_-_-_-_-_-_-_-_-_-_w" },
    who: { type: "who", room: "lobby" },
    rooms: { type: "rooms" },
    away: { type: "away", text: "at lunch — back at 2 ✓" },
    history: { type: "history", room: "lobby", limit: 20, since: 3 },
    // Chat events and answers (PROTOCOL.md §7.2).
    ack: { type: "ack", id: 7, seq: 42, ts: 1_900_000_000_123, stored: true, away: "at lunch" },
    nack: { type: "nack", id: 8, code: "no_such_user", message: "there is no account dave_9" },
    message: { type: "message", room: "lobby", seq: 41, ts: 1_899_999_999_999, from: "alice", text: "earlier — ünïcödé", action: true, history: true },
    direct: { type: "direct", seq: 3, ts: 1_900_000_000_200, from: "bob_2", to: "alice", text: "hello 🔐", action: true, history: true, late: true },
    room: {
      type: "room",
      room: "lobby",
      users: ["alice", "bob_2", "carol-x"],
      seq: 42,
      owner: "alice",
      ops: ["bob_2"],
      topic: "ship it — ✓",
      invite_only: true,
      secret: true,
      persistent: true,
      muted: true,
      unread: 12,
      read_at: 1_899_999_000_000,
    },
    joined: { type: "joined", room: "lobby", user: "carol-x", ts: 1_900_000_000_300 },
    left: { type: "left", room: "lobby", user: "carol-x", ts: 1_900_000_000_400 },
    members: { type: "members", room: "lobby", users: ["alice", "bob_2"], away: [{ user: "bob_2", text: "at lunch" }] },
    room_list: {
      type: "room_list",
      rooms: [
        { name: "0-dev_ops", users: 1 },
        { name: "lobby", users: 3 },
      ],
    },
    history_end: { type: "history_end", room: "lobby", count: 1, more: true },
    notice: { type: "notice", code: "recorded", text: "messages in lobby are recorded in the server's auditable transcript" },
    session_list: { type: "session_list" },
    revoke_session: { type: "revoke_session", id: "0123456789ab" },
    sessions: {
      type: "sessions",
      live: [{ id: "0123456789ab", device: "5e1f00d2c3b4", source: "2001:db8::1", since: 1_900_000_000_000, expires: 1_900_086_400_000, ticket: "ba9876543210", current: true }],
      tickets: [{ id: "ba9876543210", device: "5e1f00d2c3b4", source: "2001:db8::1", since: 1_900_000_000_000, expires: 1_900_028_800_000 }],
      more_tickets: 3,
    },
    revoked: { type: "revoked", id: "0123456789ab", ended: 2 },
    change_password: { type: "change_password", new_password: "a \"new\" passphrase — ünïcödé", end_sessions: true },
    password_changed: { type: "password_changed", ended: 1 },
    admin: { type: "admin", action: "lock", user: "bob_2" },
    admin_done: { type: "admin_done", action: "lock", user: "bob_2", ended: 2 },
    // Room moderation (PROTOCOL.md §7.9).
    topic: { type: "topic", room: "lobby", text: "release \"friday\" — ünïcödé ✓" },
    op: { type: "op", room: "lobby", user: "bob_2" },
    deop: { type: "deop", room: "lobby", user: "bob_2" },
    kick: { type: "kick", room: "lobby", user: "carol-x", reason: "spam — \"again\"" },
    ban: { type: "ban", room: "lobby", user: "carol-x" },
    unban: { type: "unban", room: "lobby", user: "carol-x" },
    bans: { type: "bans", room: "lobby" },
    mute: { type: "mute", room: "lobby", user: "dave_9" },
    unmute: { type: "unmute", room: "lobby", user: "dave_9" },
    invite: { type: "invite", room: "lobby", user: "erin" },
    mode: { type: "mode", room: "lobby", invite_only: true, secret: false },
    drop: { type: "drop", room: "lobby" },
    room_changed: { type: "room_changed", room: "lobby", by: "alice", action: "kick", user: "carol-x", text: "spam ✓", invite_only: true, secret: true, ts: 1_900_000_000_500 },
    ban_list: { type: "ban_list", room: "lobby", bans: ["carol-x", "dave_9"] },
    // Devices (PROTOCOL.md §7.11).
    enroll: { type: "enroll", user: "alice", device_key: r.bytes(32), sig: r.bytes(64), password: "correct horse battery staple", name: "work laptop — ünïcödé", ticket_key: r.bytes(32) },
    enroll_pending: { type: "enroll_pending", expires: 1_900_000_600_000 },
    device_list: { type: "device_list" },
    device_approve: { type: "device_approve", key: r.bytes(32), sig: r.bytes(64) },
    device_revoke: { type: "device_revoke", id: "5e1f00d2c3b4" },
    devices: {
      type: "devices",
      devices: [
        { id: "5e1f00d2c3b4", key: r.bytes(32), name: "", enrolled: 1_800_000_000_000, by: "register", current: true },
        { id: "0a1b2c3d4e5f", key: r.bytes(32), name: "old phone", enrolled: 1_850_000_000_000, by: "5e1f00d2c3b4", revoked: 1_890_000_000_000 },
      ],
      pending: [{ key: r.bytes(32), name: "work laptop", source: "2001:db8::1", since: 1_900_000_000_000, expires: 1_900_000_600_000 }],
    },
    device_added: { type: "device_added", id: "0a1b2c3d4e5f" },
    device_revoked: { type: "device_revoked", id: "0a1b2c3d4e5f", ended: 1 },
    // Editing and deleting (PROTOCOL.md §7.12).
    edit: { type: "edit", id: 9, room: "lobby", seq: 41, text: "fixed — \"typo\" ✓", cid: "zzzzzzzzzzzzzzzzzzzzzQ" },
    delete: { type: "delete", id: 10, room: "0-dev_ops", seq: Number.MAX_SAFE_INTEGER, cid: "0123456789abcdefABCDEg" },
    edited: { type: "edited", room: "lobby", seq: 41, ts: 1_900_000_000_500, by: "alice", text: "fixed — ünïcödé", action: true },
    deleted: { type: "deleted", room: "lobby", seq: 40, ts: 1_900_000_000_600, by: "alice" },
    // Read markers (PROTOCOL.md §7.14).
    read: { type: "read", rooms: [{ room: "lobby", seq: 42 }, { room: "0-dev_ops", seq: 0 }], dm: 17 },
    unread: { type: "unread" },
    unread_list: { type: "unread_list", rooms: [{ room: "lobby", unread: 214, read_at: 1_899_999_000_000 }] },
    // The log's state and proofs (PROTOCOL.md §7.13).
    log_proof: { type: "log_proof", from: 1234, leaves: [0, 1233, 5000], entries: true, cosigned: true },
    log_state: {
      type: "log_state",
      origin: "chat.example.com/securechat",
      size: 5001,
      root: r.bytes(32),
      sig: r.bytes(68),
      consistency: [r.bytes(32), r.bytes(32)],
      inclusion: [
        { leaf: 1233, proof: [r.bytes(32)], entry: r.bytes(300) },
        { leaf: 0, proof: [r.bytes(32)], withheld: "private" },
      ],
      cosigned: { size: 4999, root: r.bytes(32), sig: r.bytes(68), cosignatures: [{ name: "witness.example.com/w1", sig: r.bytes(76) }], consistency: [r.bytes(32)] },
    },
  };
}

/** Every valid shape of the messages with optional fields (name → message), for round trips and channel tests. */
export function exampleVariants(r: Rng = rng()): [string, Message][] {
  const ex = fullExamples(r);
  const { ticket_key: _rk, ...registerPlain } = ex.register;
  const { ticket_key: _lk, ...loginPassword } = ex.login;
  const { ticket: _t, ticket_expires: _te, ...welcomePlain } = ex.welcome;
  return [
    ["register", registerPlain],
    ["register + ticket_key", ex.register],
    ["login with password", loginPassword],
    ["login with password + ticket_key", ex.login],
    ["login with ticket", { type: "login", user: "bob_2", sig: r.bytes(64), ticket: r.bytes(32) }],
    ["enroll", { type: "enroll", user: "bob_2", device_key: r.bytes(32), sig: r.bytes(64), password: "a long enough passphrase", name: "phone" }],
    ["enroll + ticket_key", ex.enroll],
    ["welcome", welcomePlain],
    ["welcome + ticket", ex.welcome],
    ["logout", ex.logout],
    ["bye", ex.bye],
    ["bye with empty reason", { type: "bye", reason: "" }],
    ["ping", ex.ping],
    ["pong", ex.pong],
    ["say", { type: "say", id: 0, room: "lobby", text: "x" }],
    ["say + action", ex.say],
    ["say with action false", { type: "say", id: 1, room: "lobby", text: "plain", action: false }],
    ["dm", { type: "dm", id: Number.MAX_SAFE_INTEGER, to: "dave_9", text: "x" }],
    ["dm + action", ex.dm],
    ["message", { type: "message", room: "lobby", seq: 1, ts: 0, from: "alice", text: "live" }],
    ["message + action", { type: "message", room: "lobby", seq: 2, ts: 1, from: "alice", text: "waves", action: true }],
    ["message + history", { type: "message", room: "lobby", seq: 3, ts: 2, from: "alice", text: "old", history: true }],
    ["message + action + history", ex.message],
    ["direct", { type: "direct", seq: 1, ts: 0, from: "bob_2", to: "alice", text: "x" }],
    ["direct + action", ex.direct],
    ["room with no one else", { type: "room", room: "z", users: ["alice"], seq: 0 }],
    ["members of an unknown room", { type: "members", room: "nowhere", users: [] }],
    ["members, one away", ex.members],
    ["away (back)", { type: "away" }],
    ["away with a text", ex.away],
    ["empty room_list", { type: "room_list", rooms: [] }],
    ["history_end with count 0", { type: "history_end", room: "lobby", count: 0 }],
    ["join", { type: "join", room: "lobby" }],
    ["join since", { type: "join", room: "lobby", since: 7 }],
    ["history since", { type: "history", room: "lobby", limit: 1000, since: Number.MAX_SAFE_INTEGER }],
    ["join + since + limit", ex.join],
    ["history + since", ex.history],
    ["history_end + more", ex.history_end],
    ["sessions", { type: "sessions", live: [{ id: "0123456789ab", device: "000000000000", source: "127.0.0.1", since: 0, expires: 1 }], tickets: [{ id: "ba9876543210", source: "", since: 0, expires: 1 }] }],
    ["sessions + more_tickets", ex.sessions],
    ["change_password", { type: "change_password", new_password: "another long passphrase" }],
    ["change_password + end_sessions", ex.change_password],
    ["ack", { type: "ack", id: 1, seq: 1, ts: 0 }],
    ["ack of a stored dm", ex.ack],
    ["direct late", { type: "direct", seq: 2, ts: 0, from: "bob_2", to: "alice", text: "x", late: true }],
    ["direct as history", { type: "direct", seq: 2, ts: 0, from: "bob_2", to: "alice", text: "x", history: true }],
    ["direct + action + history + late", ex.direct],
    ["history with", { type: "history", with: "bob_2", limit: 20 }],
    ["history with + before", { type: "history", with: "bob_2", limit: 20, before: 9 }],
    ["history_end with", { type: "history_end", with: "bob_2", count: 0 }],
    ["history_end with + more", { type: "history_end", with: "bob_2", count: 2, more: true }],
    // Room moderation (PROTOCOL.md §7.9).
    ["topic cleared", { type: "topic", room: "lobby" }],
    ["topic", ex.topic],
    ["kick", { type: "kick", room: "lobby", user: "carol-x" }],
    ["kick + reason", ex.kick],
    ["mode +i", { type: "mode", room: "lobby", invite_only: true }],
    ["mode -s", { type: "mode", room: "lobby", secret: false }],
    ["mode +i-s", ex.mode],
    ["room with its settings", ex.room],
    ["room_changed op", { type: "room_changed", room: "lobby", by: "alice", action: "op", user: "bob_2", ts: 1 }],
    ["room_changed", ex.room_changed],
    ["message edited, as history", { type: "message", room: "lobby", seq: 4, ts: 3, from: "alice", text: "new", history: true, edited: true }],
    ["message deleted, as history", { type: "message", room: "lobby", seq: 5, ts: 4, from: "alice", history: true, deleted: true }],
    ["edited", { type: "edited", room: "lobby", seq: 4, ts: 5, by: "alice", text: "new" }],
    ["edited + action", ex.edited],
    ["direct edited, as history", { type: "direct", seq: 6, ts: 5, from: "bob_2", to: "alice", text: "new", history: true, edited: true }],
    ["direct deleted, as history", { type: "direct", seq: 7, ts: 6, from: "bob_2", to: "alice", history: true, deleted: true }],
    ["direct edited, late", { type: "direct", seq: 8, ts: 7, from: "bob_2", to: "alice", text: "new", late: true, edited: true }],
    ["edit of a direct message", { type: "edit", id: 11, to: "bob_2", seq: 6, text: "new" }],
    ["delete of a direct message", { type: "delete", id: 12, to: "bob_2", seq: 6 }],
    ["edited direct message", { type: "edited", to: "bob_2", seq: 6, ts: 8, by: "alice", text: "new" }],
    ["deleted direct message", { type: "deleted", to: "bob_2", seq: 6, ts: 9, by: "alice" }],
    ["edit", ex.edit],
    ["delete", ex.delete],
    ["deleted", ex.deleted],
    ["room caught up", ex.room],
    ["read rooms", { type: "read", rooms: [{ room: "lobby", seq: 1 }] }],
    ["read dm", { type: "read", dm: 3 }],
    ["read rooms + dm", ex.read],
    ["unread", ex.unread],
    ["unread_list empty", { type: "unread_list", rooms: [] }],
    ["unread_list", ex.unread_list],
    // The log's state (PROTOCOL.md §7.13).
    ["log_proof, first connect", { type: "log_proof" }],
    ["log_proof + from + leaves", ex.log_proof],
    ["log_proof + cosigned", { type: "log_proof", from: 7, cosigned: true }],
    ["log_state alone", { type: "log_state", origin: "securechat/0123456789abcdef", size: 0, root: r.bytes(32), sig: r.bytes(68) }],
    ["log_state + proofs + cosigned", ex.log_state],
    ["log_state, cosigned without cosignatures", { type: "log_state", origin: "o", size: 3, root: r.bytes(32), sig: r.bytes(68), cosigned: { size: 3, root: r.bytes(32), sig: r.bytes(68), cosignatures: [], consistency: [] } }],
  ];
}
