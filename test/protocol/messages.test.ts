/**
 * Message schemas (src/protocol/messages.ts). What a peer sees: a valid
 * message of every type survives encode → decode unchanged; anything else —
 * bad UTF-8, bad JSON, not an object, unknown type or field, missing field,
 * wrong JSON type, non-canonical base64, out-of-range integer, bad user name,
 * lone surrogate, text over its byte limit, a control character, a broken
 * cross-field rule — is refused with a stable code before anyone looks at it.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { toBase64, utf8 } from "../../src/bytes.ts";
import {
  AWAY_LIST_MAX,
  AWAY_TEXT_MAX,
  ERROR_CODE_MAX,
  ERROR_TEXT_MAX,
  MAX_FRAME,
  MAX_LIST,
  MESSAGE_TEXT_MAX,
  PASSWORD_FIELD_MAX,
  REASON_TEXT_MAX,
  RECORD_TAG_LENGTH,
  ROOM_NAME_MAX,
  ROOM_NAME_RE,
  USER_NAME_MAX,
} from "../../src/protocol/limits.ts";
import {
  MESSAGE_TYPES,
  type Message,
  type MessageType,
  decodeMessage,
  encodeMessage,
  encodeMessageBytes,
  joinRecordPayload,
  newCid,
  parseJsonObject,
  splitRecordPayload,
  validateMessage,
} from "../../src/protocol/messages.ts";
import { SEED, codeOf, exampleVariants, expectCode, fullExamples, rng } from "./helpers.ts";

console.log(`messages.test.ts: PROTOCOL_TEST_SEED=${SEED}`);
const r = rng(SEED ^ 0x3e55);
const FULL = fullExamples(r);
const VARIANTS = exampleVariants(r);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** The JSON object a full example encodes to, as a mutable plain object. */
const jsonOf = (t: MessageType): JsonObject => JSON.parse(encodeMessage(FULL[t])) as JsonObject;
/** A valid JSON object of type `t` in which member `k` may be present (login.ticket needs a ticket login; history's `with` members, no `room`). */
const BASE_VARIANT: Record<string, string> = {
  "login.ticket": "login with ticket",
  "history.with": "history with + before",
  "history.before": "history with + before",
  "history_end.with": "history_end with",
  "message.deleted": "message deleted, as history",
  "direct.deleted": "direct deleted, as history",
  "edit.to": "edit of a direct message",
  "delete.to": "delete of a direct message",
  "edited.to": "edited direct message",
  "deleted.to": "deleted direct message",
};
const baseFor = (t: MessageType, k: string): JsonObject => {
  const v = BASE_VARIANT[`${t}.${k}`];
  return v ? (JSON.parse(encodeMessage(VARIANTS.find(([n]) => n === v)![1])) as JsonObject) : jsonOf(t);
};
const body = (v: unknown): Uint8Array => utf8(JSON.stringify(v));
/** JSON text of `obj` with `key`'s value replaced by raw JSON text (for numbers and escapes JSON.stringify will not write). */
function withRaw(obj: JsonObject, key: string, raw: string): Uint8Array {
  const text = JSON.stringify({ ...obj, [key]: "\u0000RAW\u0000" });
  return utf8(text.replace('"\\u0000RAW\\u0000"', raw));
}

/** What the schema says, written out independently, so a change to the schema shows up here. */
type Kind =
  | { kind: "int"; min: number; max: number }
  | { kind: "bytes"; n: number }
  | { kind: "blob"; max: number }
  | { kind: "text"; min: number; max: number }
  | { kind: "user" }
  | { kind: "bool" }
  | { kind: "room" }
  | { kind: "ref" }
  | { kind: "cid" }
  | { kind: "enum"; values: string[] }
  | { kind: "list"; item: Kind; max: number }
  | { kind: "object"; fields: Record<string, FieldSpec> };
type FieldSpec = Kind & { optional?: true };
const SAFE = Number.MAX_SAFE_INTEGER;
const ID: FieldSpec = { kind: "int", min: 0, max: SAFE };
const SEQ: FieldSpec = { kind: "int", min: 1, max: SAFE };
const TS: FieldSpec = { kind: "int", min: 0, max: SAFE };
const ROOM: FieldSpec = { kind: "room" };
const USER: FieldSpec = { kind: "user" };
const CHAT_TEXT: FieldSpec = { kind: "text", min: 1, max: 4096 };
const ACTION: FieldSpec = { kind: "bool", optional: true };
const CID: FieldSpec = { kind: "cid", optional: true };
const CODE: FieldSpec = { kind: "text", min: 1, max: ERROR_CODE_MAX };
const USERS: FieldSpec = { kind: "list", item: { kind: "user" }, max: 1000 };
const FIELDS: { [T in MessageType]: Record<string, FieldSpec> } = {
  client_hello: { version: { kind: "int", min: 0, max: 0xffff }, e: { kind: "bytes", n: 32 }, nonce: { kind: "bytes", n: 32 } },
  server_hello: {
    version: { kind: "int", min: 0, max: 0xffff },
    e: { kind: "bytes", n: 32 },
    challenge: { kind: "bytes", n: 32 },
    host_key: { kind: "bytes", n: 32 },
    rekey_records: { kind: "int", min: 1, max: SAFE },
    rekey_bytes: { kind: "int", min: 1, max: SAFE },
    sig: { kind: "bytes", n: 64 },
  },
  register: {
    user: { kind: "user" },
    identity_key: { kind: "bytes", n: 32 },
    sig: { kind: "bytes", n: 64 },
    password: { kind: "text", min: 1, max: PASSWORD_FIELD_MAX },
    ticket_key: { kind: "bytes", n: 32, optional: true },
  },
  login: {
    user: { kind: "user" },
    sig: { kind: "bytes", n: 64 },
    password: { kind: "text", min: 1, max: PASSWORD_FIELD_MAX, optional: true },
    ticket: { kind: "bytes", n: 32, optional: true },
    ticket_key: { kind: "bytes", n: 32, optional: true },
  },
  check_name: { user: { kind: "user" } },
  name_status: { user: { kind: "user" }, available: { kind: "bool" } },
  welcome: {
    user: { kind: "user" },
    session_id: { kind: "bytes", n: 16 },
    ticket: { kind: "bytes", n: 32, optional: true },
    ticket_expires: { kind: "int", min: 0, max: SAFE, optional: true },
  },
  error: { code: { kind: "text", min: 1, max: ERROR_CODE_MAX }, message: { kind: "text", min: 0, max: ERROR_TEXT_MAX } },
  logout: {},
  bye: { reason: { kind: "text", min: 0, max: REASON_TEXT_MAX } },
  ping: {},
  pong: {},
  join: { room: ROOM, since: { kind: "int", min: 0, max: SAFE, optional: true }, limit: { kind: "int", min: 0, max: 1000, optional: true } },
  leave: { room: ROOM },
  say: { id: ID, room: ROOM, text: CHAT_TEXT, action: ACTION, cid: CID },
  dm: { id: ID, to: USER, text: CHAT_TEXT, action: ACTION, cid: CID },
  who: { room: ROOM },
  rooms: {},
  away: { text: { kind: "text", min: 1, max: 64, optional: true } },
  history: {
    room: { ...ROOM, optional: true },
    with: { kind: "user", optional: true },
    limit: { kind: "int", min: 1, max: 1000 },
    since: { kind: "int", min: 0, max: SAFE, optional: true },
    before: { kind: "int", min: 1, max: SAFE, optional: true },
  },
  ack: { id: ID, seq: SEQ, ts: TS, stored: { kind: "bool", optional: true }, away: { kind: "text", min: 1, max: 64, optional: true } },
  nack: { id: ID, code: CODE, message: { kind: "text", min: 0, max: ERROR_TEXT_MAX } },
  message: {
    room: ROOM,
    seq: SEQ,
    ts: TS,
    from: USER,
    text: { ...CHAT_TEXT, optional: true },
    action: ACTION,
    history: { kind: "bool", optional: true },
    edited: { kind: "bool", optional: true },
    deleted: { kind: "bool", optional: true },
  },
  direct: {
    seq: SEQ,
    ts: TS,
    from: USER,
    to: USER,
    text: { ...CHAT_TEXT, optional: true },
    action: ACTION,
    history: { kind: "bool", optional: true },
    late: { kind: "bool", optional: true },
    edited: { kind: "bool", optional: true },
    deleted: { kind: "bool", optional: true },
  },
  room: {
    room: ROOM,
    users: USERS,
    seq: { kind: "int", min: 0, max: SAFE },
    owner: { kind: "user", optional: true },
    ops: { kind: "list", item: { kind: "user" }, max: 100, optional: true },
    topic: { kind: "text", min: 1, max: 1024, optional: true },
    invite_only: { kind: "bool", optional: true },
    secret: { kind: "bool", optional: true },
    persistent: { kind: "bool", optional: true },
    muted: { kind: "bool", optional: true },
    unread: { kind: "int", min: 1, max: SAFE, optional: true },
    read_at: { ...TS, optional: true },
  },
  joined: { room: ROOM, user: USER, ts: TS },
  left: { room: ROOM, user: USER, ts: TS },
  members: { room: ROOM, users: USERS, away: { kind: "list", item: { kind: "object", fields: { user: USER, text: { kind: "text", min: 1, max: 64 } } }, max: 100, optional: true } },
  room_list: { rooms: { kind: "list", item: { kind: "object", fields: { name: ROOM, users: { kind: "int", min: 0, max: SAFE } } }, max: 1000 } },
  history_end: { room: { ...ROOM, optional: true }, with: { kind: "user", optional: true }, count: { kind: "int", min: 0, max: 1000 }, more: { kind: "bool", optional: true } },
  notice: { code: CODE, text: { kind: "text", min: 0, max: ERROR_TEXT_MAX } },
  session_list: {},
  revoke_session: { id: { kind: "ref" } },
  sessions: {
    live: {
      kind: "list",
      item: {
        kind: "object",
        fields: { id: { kind: "ref" }, source: { kind: "text", min: 0, max: 64 }, since: TS, expires: TS, ticket: { kind: "ref", optional: true }, current: { kind: "bool", optional: true } },
      },
      max: 100,
    },
    tickets: { kind: "list", item: { kind: "object", fields: { id: { kind: "ref" }, since: TS, expires: TS } }, max: 100 },
    more_tickets: { kind: "int", min: 1, max: SAFE, optional: true },
  },
  revoked: { id: { kind: "ref" }, ended: { kind: "int", min: 0, max: SAFE } },
  change_password: { new_password: { kind: "text", min: 1, max: 1024 }, end_sessions: { kind: "bool", optional: true } },
  password_changed: { ended: { kind: "int", min: 0, max: SAFE } },
  admin: { action: { kind: "enum", values: ["lock", "unlock", "end_sessions"] }, user: USER },
  admin_done: { action: { kind: "enum", values: ["lock", "unlock", "end_sessions"] }, user: USER, ended: { kind: "int", min: 0, max: SAFE } },
  // Room moderation (PROTOCOL.md §7.9).
  topic: { room: ROOM, text: { kind: "text", min: 1, max: 1024, optional: true } },
  op: { room: ROOM, user: USER },
  deop: { room: ROOM, user: USER },
  kick: { room: ROOM, user: USER, reason: { kind: "text", min: 1, max: 256, optional: true } },
  ban: { room: ROOM, user: USER },
  unban: { room: ROOM, user: USER },
  bans: { room: ROOM },
  mute: { room: ROOM, user: USER },
  unmute: { room: ROOM, user: USER },
  invite: { room: ROOM, user: USER },
  mode: { room: ROOM, invite_only: { kind: "bool", optional: true }, secret: { kind: "bool", optional: true } },
  drop: { room: ROOM },
  room_changed: {
    room: ROOM,
    by: USER,
    action: { kind: "text", min: 1, max: 16 },
    user: { kind: "user", optional: true },
    text: { kind: "text", min: 1, max: 1024, optional: true },
    invite_only: { kind: "bool", optional: true },
    secret: { kind: "bool", optional: true },
    ts: TS,
  },
  ban_list: { room: ROOM, bans: USERS },
  enroll: {
    user: USER,
    device_key: { kind: "bytes", n: 32 },
    sig: { kind: "bytes", n: 64 },
    password: { kind: "text", min: 1, max: 1024 },
    name: { kind: "text", min: 1, max: 64 },
    ticket_key: { kind: "bytes", n: 32, optional: true },
  },
  enroll_pending: { expires: TS },
  device_list: {},
  device_approve: { key: { kind: "bytes", n: 32 }, sig: { kind: "bytes", n: 64 } },
  device_revoke: { id: { kind: "ref" } },
  devices: {
    devices: {
      kind: "list",
      item: {
        kind: "object",
        fields: {
          id: { kind: "ref" },
          key: { kind: "bytes", n: 32 },
          name: { kind: "text", min: 0, max: 64 },
          enrolled: TS,
          by: { kind: "text", min: 1, max: 16 },
          revoked: { ...TS, optional: true },
          current: { kind: "bool", optional: true },
        },
      },
      max: 64,
    },
    pending: {
      kind: "list",
      item: { kind: "object", fields: { key: { kind: "bytes", n: 32 }, name: { kind: "text", min: 1, max: 64 }, source: { kind: "text", min: 0, max: 64 }, since: TS, expires: TS } },
      max: 3,
    },
  },
  device_added: { id: { kind: "ref" } },
  device_revoked: { id: { kind: "ref" }, ended: { kind: "int", min: 0, max: SAFE } },
  edit: { id: ID, room: { ...ROOM, optional: true }, to: { kind: "user", optional: true }, seq: SEQ, text: CHAT_TEXT, cid: CID },
  delete: { id: ID, room: { ...ROOM, optional: true }, to: { kind: "user", optional: true }, seq: SEQ, cid: CID },
  edited: { room: { ...ROOM, optional: true }, to: { kind: "user", optional: true }, seq: SEQ, ts: TS, by: USER, text: CHAT_TEXT, action: ACTION },
  deleted: { room: { ...ROOM, optional: true }, to: { kind: "user", optional: true }, seq: SEQ, ts: TS, by: USER },
  read: { rooms: { kind: "list", item: { kind: "object", fields: { room: ROOM, seq: { kind: "int", min: 0, max: SAFE } } }, max: 64, optional: true }, dm: { kind: "int", min: 0, max: SAFE, optional: true } },
  unread: {},
  unread_list: { rooms: { kind: "list", item: { kind: "object", fields: { room: ROOM, unread: { kind: "int", min: 0, max: SAFE }, read_at: TS } }, max: 256 } },
  log_proof: {
    from: { kind: "int", min: 0, max: SAFE, optional: true },
    leaves: { kind: "list", item: { kind: "int", min: 0, max: SAFE }, max: 16, optional: true },
    entries: { kind: "bool", optional: true },
    cosigned: { kind: "bool", optional: true },
  },
  log_state: {
    origin: { kind: "text", min: 1, max: 255 },
    size: { kind: "int", min: 0, max: SAFE },
    root: { kind: "bytes", n: 32 },
    sig: { kind: "bytes", n: 68 },
    consistency: { kind: "list", item: { kind: "bytes", n: 32 }, max: 128, optional: true },
    inclusion: {
      kind: "list",
      item: {
        kind: "object",
        fields: {
          leaf: { kind: "int", min: 0, max: SAFE },
          proof: { kind: "list", item: { kind: "bytes", n: 32 }, max: 128 },
          entry: { kind: "blob", max: 16384, optional: true },
          withheld: { kind: "enum", values: ["private", "later", "unreadable"], optional: true },
        },
      },
      max: 16,
      optional: true,
    },
    cosigned: {
      kind: "object",
      optional: true,
      fields: {
        size: { kind: "int", min: 0, max: SAFE },
        root: { kind: "bytes", n: 32 },
        sig: { kind: "bytes", n: 68 },
        cosignatures: { kind: "list", item: { kind: "object", fields: { name: { kind: "text", min: 1, max: 255 }, sig: { kind: "bytes", n: 76 } } }, max: 16 },
        consistency: { kind: "list", item: { kind: "bytes", n: 32 }, max: 128 },
      },
    },
  },
};

/** The cross-field rules (PROTOCOL.md §5.1, §5.2), written out independently: true if `m` obeys them. */
function rulesHold(m: Record<string, unknown>): boolean {
  const has = (k: string) => m[k] !== undefined;
  if (m.type === "login") return has("password") !== has("ticket") && !(has("ticket") && has("ticket_key"));
  if (m.type === "welcome") return has("ticket") === has("ticket_expires");
  // PROTOCOL.md §7.1, §7.2: a room's history or a user's direct messages, never both
  if (m.type === "history") return has("room") !== has("with") && (!has("since") || has("room")) && (!has("before") || has("with"));
  if (m.type === "history_end") return has("room") !== has("with");
  // PROTOCOL.md §7.9: a mode changes something; a topic is at most 256 code points
  if (m.type === "mode") return has("invite_only") || has("secret");
  if (m.type === "topic" || m.type === "room") {
    const t = m.type === "topic" ? m.text : m.topic;
    // PROTOCOL.md §7.14: a caught-up room says both how many and since when
    return (typeof t !== "string" || [...t].length <= 256) && (m.type !== "room" || has("unread") === has("read_at"));
  }
  // PROTOCOL.md §7.12: text unless deleted; a deleted message says nothing more; both only as history
  if (m.type === "message" || m.type === "direct") {
    if ((m.edited === true || m.deleted === true) && m.history !== true && m.late !== true) return false;
    if (m.type === "message" && (m.edited === true || m.deleted === true) && m.history !== true) return false;
    return m.deleted === true ? !has("text") && m.edited !== true && m.action !== true : has("text");
  }
  if (m.type === "edit" || m.type === "delete" || m.type === "edited" || m.type === "deleted") return has("room") !== has("to");
  // PROTOCOL.md §7.14: a read marks something
  if (m.type === "read") return has("rooms") || has("dm");
  return true;
}

test("the limits are the spec's (PROTOCOL.md §8): bytes of UTF-8, list items, room names", () => {
  expect([PASSWORD_FIELD_MAX, ERROR_CODE_MAX, ERROR_TEXT_MAX, REASON_TEXT_MAX, MESSAGE_TEXT_MAX]).toEqual([1024, 64, 512, 256, 4096]);
  expect([MAX_LIST, ROOM_NAME_MAX, String(ROOM_NAME_RE), USER_NAME_MAX]).toEqual([1000, 32, "/^[a-z0-9][a-z0-9_-]{0,31}$/", 32]);
});

const ALL_FIELDS = MESSAGE_TYPES.flatMap((t) => Object.entries(FIELDS[t]).map(([k, spec]) => ({ t, k, spec })));
const fieldsOf = <K extends Kind["kind"]>(kind: K) =>
  ALL_FIELDS.filter((f): f is { t: MessageType; k: string; spec: Extract<FieldSpec, { kind: K }> } => f.spec.kind === kind);

describe("round trip", () => {
  test("the examples and field tables cover exactly MESSAGE_TYPES", () => {
    expect(Object.keys(FULL).sort()).toEqual([...MESSAGE_TYPES].sort());
    expect(Object.keys(FIELDS).sort()).toEqual([...MESSAGE_TYPES].sort());
  });

  test.each(MESSAGE_TYPES)("%s: encode → decode gives the same message, bytes fields equal", (t) => {
    const m = FULL[t];
    const back = decodeMessage(encodeMessageBytes(m));
    expect(back).toEqual(m);
    for (const [k, v] of Object.entries(m)) {
      if (v instanceof Uint8Array) {
        const got = (back as Record<string, unknown>)[k];
        expect(got).toBeInstanceOf(Uint8Array);
        expect(Buffer.from(got as Uint8Array).equals(Buffer.from(v))).toBe(true);
      }
    }
    // Re-encoding the decoded message gives the very same text.
    expect(encodeMessage(back)).toBe(encodeMessage(m));
  });

  test.each(VARIANTS)("variant %s: encode → decode → encode gives the same text and message", (_name, m) => {
    expect(rulesHold(m as unknown as Record<string, unknown>)).toBe(true);
    const back = decodeMessage(encodeMessageBytes(m));
    expect(back).toEqual(m);
    expect(encodeMessage(back)).toBe(encodeMessage(m));
  });

  test.each(MESSAGE_TYPES)("%s: encoded text has type first, then the schema's fields in order", (t) => {
    const present = Object.keys(FIELDS[t]).filter((k) => k in FULL[t]);
    expect(Object.keys(jsonOf(t))).toEqual(["type", ...present]);
    // Only login.ticket (the rules forbid it next to a password), history's `with` members (next to `room`) and message's edited and deleted are absent from the full examples.
    // A message as history may be edited or deleted, not both, and a deleted one has no text (PROTOCOL.md §7.12): those are in the variants.
    const absent: Record<string, string[]> = {
      login: ["ticket"],
      history: ["with", "before"],
      history_end: ["with"],
      message: ["edited", "deleted"],
      direct: ["edited", "deleted"],
      edit: ["to"],
      delete: ["to"],
      edited: ["to"],
      deleted: ["to"],
    };
    expect(Object.keys(FIELDS[t]).filter((k) => !(k in FULL[t]))).toEqual(absent[t] ?? []);
  });

  test("the variants between them use every optional field", () => {
    const used = new Set(VARIANTS.flatMap(([, m]) => Object.keys(m).map((k) => `${m.type}.${k}`)));
    const optional = ALL_FIELDS.filter((f) => f.spec.optional).map((f) => `${f.t}.${f.k}`);
    expect(optional.filter((f) => !used.has(f))).toEqual([]);
  });

  test.each(VARIANTS)("variant %s: optional fields may be left out unless a rule needs them; required ones may not", (_name, m) => {
    const t = m.type;
    for (const k of Object.keys(m)) {
      if (k === "type") continue;
      const obj = JSON.parse(encodeMessage(m)) as JsonObject;
      delete obj[k];
      const got = codeOf(() => decodeMessage(body(obj)));
      if (!FIELDS[t][k]!.optional) expect([k, got]).toEqual([k, "message_missing_field"]);
      else expect([k, got]).toEqual([k, rulesHold(obj) ? "no error" : "message_invalid"]);
    }
  });

  test("history carries exactly one of room and with; since only with room, before only with with; history_end one of room and with", () => {
    const bad = [
      { type: "history", limit: 5 },
      { type: "history", room: "lobby", with: "bob_2", limit: 5 },
      { type: "history", with: "bob_2", limit: 5, since: 3 },
      { type: "history", room: "lobby", limit: 5, before: 3 },
      { type: "history_end", count: 0 },
      { type: "history_end", room: "lobby", with: "bob_2", count: 0 },
    ];
    expect(bad.map((m) => codeOf(() => decodeMessage(body(m))))).toEqual(bad.map(() => "message_invalid"));
  });

  test("a bytes field is returned as a Uint8Array, equal to the encoded bytes", () => {
    const e = r.bytes(32);
    const m = decodeMessage(body({ type: "client_hello", version: 1, e: toBase64(e), nonce: toBase64(new Uint8Array(32)) }));
    expect(m.type).toBe("client_hello");
    if (m.type !== "client_hello") return;
    expect(Array.from(m.e)).toEqual(Array.from(e));
    expect(Array.from(m.nonce)).toEqual(new Array(32).fill(0));
  });
});

describe("bodies that are not a JSON object", () => {
  test.each([
    ["0xff", [0xff]],
    ["0xfe", [0xfe]],
    ["overlong '/' C0 AF", [0xc0, 0xaf]],
    ["overlong NUL C0 80", [0xc0, 0x80]],
    ["overlong 3-byte E0 80 AF", [0xe0, 0x80, 0xaf]],
    ["lone surrogate ED A0 80", [0xed, 0xa0, 0x80]],
    ["lone low surrogate ED B0 80", [0xed, 0xb0, 0x80]],
    ["beyond U+10FFFF F4 90 80 80", [0xf4, 0x90, 0x80, 0x80]],
    ["truncated 2-byte C3", [0xc3]],
    ["truncated 3-byte E2 82", [0xe2, 0x82]],
    ["truncated 4-byte F0 9F 98", [0xf0, 0x9f, 0x98]],
    ["bare continuation 80", [0x80]],
  ])("invalid UTF-8 (%s) → utf8_invalid, also inside a JSON string", (_name, bad) => {
    expectCode(() => decodeMessage(Uint8Array.from(bad)), "utf8_invalid");
    const good = utf8('{"type":"error","code":"x","message":"');
    const tail = utf8('"}');
    expectCode(() => decodeMessage(Buffer.concat([good, Uint8Array.from(bad), tail])), "utf8_invalid");
  });

  test.each([
    ["empty body", ""],
    ["unterminated object", '{"type":"error"'],
    ["single quotes", "{'type':'error'}"],
    ["trailing comma", '{"type":"error","code":"x","message":"y",}'],
    ["two objects", '{"type":"error"}{"type":"error"}'],
    ["NaN", "NaN"],
    ["bare word", "hello"],
    ["comment", '{"type":"error"} // hi'],
    ["UTF-8 BOM before the object (not stripped)", '\ufeff{"type":"error","code":"x","message":"y"}'],
  ])("invalid JSON (%s) → json_invalid", (_name, text) => {
    expectCode(() => decodeMessage(utf8(text)), "json_invalid");
  });

  // PROTOCOL.md §5.0 step 2: peers keeping the first or the last value would read different messages.
  test.each([
    ["a member twice, different values", '{"type":"say","id":1,"room":"lobby","text":"hi","room":"admin"}'],
    ["a member twice, the same value", '{"type":"say","id":1,"room":"lobby","text":"hi","room":"lobby"}'],
    ["type twice", '{"type":"bye","type":"logout"}'],
    ["the second spelled with an escape", '{"type":"say","id":1,"room":"lobby","text":"hi","\\u0074ext":"ho"}'],
    ["inside a nested object", '{"type":"room_list","rooms":[{"name":"a","users":1,"name":"b"}]}'],
    ["with colons in the strings", '{"type":"say","id":1,"room":"lobby","text":"at 15:00: see https://x","room":"admin"}'],
    ["with escaped quotes and backslashes in the strings", '{"type":"say","id":1,"room":"lobby","text":"he said \\"a\\":\\\\","id":2}'],
    ["in an unknown type (step 2 comes first)", '{"type":"nope","x":1,"x":2}'],
    ["in an array (step 2 comes before step 3)", '[{"a":1,"a":2}]'],
  ])("a repeated member name (%s) → json_invalid", (_name, text) => {
    expect(() => JSON.parse(text)).not.toThrow();
    expectCode(() => decodeMessage(utf8(text)), "json_invalid");
    expectCode(() => parseJsonObject(utf8(text)), "json_invalid");
  });

  test("member names and colons inside strings are not members: such messages decode", () => {
    const text = 'he said "room":"admin", at 15:00: {"type":"bye"} \\ \\" :';
    expect(decodeMessage(body({ type: "say", id: 1, room: "lobby", text })).type).toBe("say");
    expect(decodeMessage(utf8('{"type":"say","id":1,"room":"lobby","text":"a\\":\\"b\\u003a"}')).type).toBe("say");
  });

  test("any JSON object as JSON.stringify writes it passes step 2; the same with one member repeated does not", () => {
    const json = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: "small" }, fc.string({ unit: "binary" }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(tie("value"), { maxLength: 4 }), tie("object")),
      object: fc.dictionary(fc.string({ unit: "binary", maxLength: 6 }), tie("value"), { maxKeys: 5 }),
    }));
    fc.assert(
      fc.property(json.object, fc.nat(), (obj, pick) => {
        const text = JSON.stringify(obj);
        expect(codeOf(() => parseJsonObject(utf8(text)))).toBe("no error");
        const keys = Object.keys(obj);
        if (keys.length === 0) return;
        const key = keys[pick % keys.length]!;
        const repeated = `${text.slice(0, -1)},${JSON.stringify(key)}:0}`;
        expect(codeOf(() => parseJsonObject(utf8(repeated)))).toBe("json_invalid");
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  test.each([
    ["array", "[]"],
    ["array of a valid message", `[${encodeMessage(FULL.error)}]`],
    ["number", "1"],
    ["string", '"client_hello"'],
    ["null", "null"],
    ["true", "true"],
  ])("JSON %s → message_not_object (decodeMessage, parseJsonObject, validateMessage)", (_name, text) => {
    expectCode(() => decodeMessage(utf8(text)), "message_not_object");
    expectCode(() => parseJsonObject(utf8(text)), "message_not_object");
    expectCode(() => validateMessage(JSON.parse(text)), "message_not_object");
  });
});

describe("type", () => {
  test.each(["hello", "CLIENT_HELLO", "client_hello ", "", "__proto__", "constructor", "toString", "hasOwnProperty"])(
    "unknown type %p → message_unknown_type",
    (t) => {
      expectCode(() => decodeMessage(body({ type: t })), "message_unknown_type");
      expectCode(() => decodeMessage(body({ ...jsonOf("error"), type: t })), "message_unknown_type");
    },
  );

  test.each([
    ["missing", undefined],
    ["number", 1],
    ["null", null],
    ["true", true],
    ["array", ["error"]],
    ["object", { type: "error" }],
  ])("type %s → message_invalid", (_name, t) => {
    const obj: Record<string, unknown> = { ...jsonOf("error") };
    if (t === undefined) delete obj.type;
    else obj.type = t;
    expectCode(() => decodeMessage(body(obj)), "message_invalid");
  });
});

describe("fields", () => {
  test.each(MESSAGE_TYPES)("%s: an unknown field → message_unknown_field", (t) => {
    // Including names that exist on Object.prototype and a field of another message type.
    for (const k of ["extra", "Type", "__proto__", "constructor", "toString", t === "register" ? "ticket" : "identity_key"]) {
      const text = encodeMessage(FULL[t]).replace(/}$/, `,${JSON.stringify(k)}:"x"}`);
      expect([k, codeOf(() => decodeMessage(utf8(text)))]).toEqual([k, "message_unknown_field"]);
    }
  });

  // Each field replaced by a value of every other JSON type.
  const JSON_VALUES: Record<string, Json[]> = {
    string: ["", "AAAA", "1", "alice"],
    number: [0, 1, 1.5, -1],
    boolean: [true, false],
    null: [null],
    array: [[], ["AAAA"], [1]],
    object: [{}, { a: 1 }],
  };
  test.each(ALL_FIELDS.map((f) => [`${f.t}.${f.k}`, f] as const))("%s with a value of every wrong JSON type → message_invalid", (_name, f) => {
    const right = { int: "number", bool: "boolean", list: "array", object: "object" }[f.spec.kind as string] ?? "string";
    const results: [string, string][] = [];
    for (const [jsonType, values] of Object.entries(JSON_VALUES)) {
      if (jsonType === right) continue;
      for (const v of values) {
        const obj = baseFor(f.t, f.k);
        obj[f.k] = v;
        results.push([JSON.stringify(v), codeOf(() => decodeMessage(body(obj)))]);
      }
    }
    expect(results.length).toBeGreaterThanOrEqual(9);
    expect(results).toEqual(results.map(([v]) => [v, "message_invalid"]));
  });

  test("cid: 16 bytes as unpadded base64url, 22 characters, canonical; anything else → message_invalid", () => {
    const say = (cid: unknown) => body({ type: "say", id: 1, room: "lobby", text: "hi", cid });
    for (const cid of [newCid(), newCid(), "AAAAAAAAAAAAAAAAAAAAAA", "_-_-_-_-_-_-_-_-_-_-_w", "zzzzzzzzzzzzzzzzzzzzzg"]) {
      expect(decodeMessage(say(cid))).toMatchObject({ cid });
      expect(Buffer.from(cid, "base64url").length).toBe(16);
      expect(Buffer.from(cid, "base64url").toString("base64url")).toBe(cid);
    }
    for (const bad of [
      "",
      "AAAAAAAAAAAAAAAAAAAAA", // 21 characters
      "AAAAAAAAAAAAAAAAAAAAAAA", // 23
      "AAAAAAAAAAAAAAAAAAAAAA==", // padded
      "AAAAAAAAAAAAAAAAAAAA+A", // base64, not base64url
      "AAAAAAAAAAAAAAAAAAAA/A",
      "AAAAAAAAAAAAAAAAAAAAAB", // the last character's low bits set: another spelling of the same bytes
      "AAAAAAAAAAAAAAAAAAAAA_",
      "AAAAAAAAAAAAAAAAAAAA A",
      "AAAAAAAAAAAAAAAAAAAAAé",
    ]) {
      expect([bad, codeOf(() => decodeMessage(say(bad)))]).toEqual([bad, "message_invalid"]);
    }
    expect(newCid()).not.toBe(newCid());
  });

  test("validateMessage takes parsed values too and rejects non-JSON ones (undefined counts as missing)", () => {
    const obj: Record<string, unknown> = { ...jsonOf("error"), message: undefined };
    expectCode(() => validateMessage(obj), "message_missing_field");
    expectCode(() => validateMessage({ ...jsonOf("error"), message: 5n }), "message_invalid");
  });
});

describe("base64 fields", () => {
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  /** Bytes whose base64 is full of '+' and '/'. */
  const plusSlash = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => [0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff][i % 6]!);

  test.each(fieldsOf("bytes").map((f) => [`${f.t}.${f.k}`, f] as const))("%s", (_name, { t, k, spec }) => {
    const n = spec.n;
    const set = (v: string): Uint8Array => body({ ...baseFor(t, k), [k]: v });
    const canonical = toBase64(plusSlash(n));
    expect(canonical).toMatch(/\+/);
    expect(canonical).toMatch(/\//);
    // Positive control: the canonical encoding of these bytes is accepted.
    expect(Array.from((decodeMessage(set(canonical)) as Record<string, unknown>)[k] as Uint8Array)).toEqual(Array.from(plusSlash(n)));

    const padAt = canonical.indexOf("=");
    expect(padAt).toBeGreaterThan(0); // 16, 32 and 64 bytes all need padding
    const last = B64.indexOf(canonical[padAt - 1]!);
    const nonCanonical = canonical.slice(0, padAt - 1) + B64[last | 1] + canonical.slice(padAt);

    const bad: [string, string][] = [
      ["empty", ""],
      ["n−1 bytes", toBase64(r.bytes(n - 1))],
      ["n+1 bytes", toBase64(r.bytes(n + 1))],
      ["2n bytes", toBase64(r.bytes(2 * n))],
      ["non-zero trailing bits", nonCanonical],
      ["url-safe alphabet", canonical.replaceAll("+", "-").replaceAll("/", "_")],
      ["missing padding", canonical.replace(/=+$/, "")],
      ["extra padding", `${canonical}=`],
      ["trailing newline", `${canonical}\n`],
      ["leading space", ` ${canonical}`],
      ["embedded line break", `${canonical.slice(0, 20)}\r\n${canonical.slice(20)}`],
      ["hex instead", Buffer.from(plusSlash(n)).toString("hex")],
    ];
    expect(bad.map(([what, v]) => [what, codeOf(() => decodeMessage(set(v)))])).toEqual(bad.map(([what]) => [what, "message_invalid"]));
  });
});

describe("integer fields", () => {
  test.each(fieldsOf("int").map((f) => [`${f.t}.${f.k}`, f] as const))("%s: bounds and non-integers", (_name, { t, k, spec }) => {
    const obj = baseFor(t, k);
    const raw = (text: string): string => codeOf(() => decodeMessage(withRaw(obj, k, text)));
    for (const ok of [spec.min, spec.max, spec.min + 1]) {
      expect([ok, raw(String(ok))]).toEqual([ok, "no error"]);
    }
    const bad = ["1.5", "-1", String(spec.min - 1), String(spec.max + 1), "9007199254740992", "9007199254740993", "1e400", "-1e400", "0.5", String(spec.max) + ".5"];
    expect(bad.map((b) => [b, raw(b)])).toEqual(bad.map((b) => [b, "message_invalid"]));
  });
});

describe("user names", () => {
  const A32 = `a${"b".repeat(31)}`;
  const accepted = ["ab", "a1", "a_", "a-", "a-b_c9", A32, "zz"];
  const rejected: [string, string][] = [
    ["1 char", "a"],
    ["33 chars", `${A32}c`],
    ["empty", ""],
    ["uppercase", "Alice"],
    ["uppercase later", "aLice"],
    ["leading digit", "1alice"],
    ["leading underscore", "_alice"],
    ["leading dash", "-alice"],
    ["dot", "al.ice"],
    ["space", "al ice"],
    ["trailing newline", "alice\n"],
    ["leading space", " alice"],
    ["Cyrillic а look-alike", "\u0430lice"],
    ["fullwidth ａ", "\uff41lice"],
    ["dotless ı", "al\u0131ce"],
    ["Kelvin sign", "\u212aelvin"],
    ["ligature ﬁ", "\ufb01le"],
    ["zero-width space", "ali\u200bce"],
    ["combining accent", "alice\u0301"],
    ["NUL", "alice\u0000"],
  ];
  const USER_FIELDS = fieldsOf("user").map((f) => [`${f.t}.${f.k}`, f] as const);
  test("every user-name field is covered", () => {
    expect(USER_FIELDS.map(([n]): string => n).sort()).toEqual(
      [
        "admin.user", "admin_done.user", "check_name.user", "direct.from", "direct.to", "dm.to", "history.with", "history_end.with", "joined.user", "left.user", "login.user", "message.from", "name_status.user", "register.user", "welcome.user", "enroll.user",
        // Room moderation (PROTOCOL.md §7.9).
        // Editing and deleting (PROTOCOL.md §7.12).
        "edited.by", "deleted.by", "edit.to", "delete.to", "edited.to", "deleted.to",
        "room.owner", "op.user", "deop.user", "kick.user", "ban.user", "unban.user", "mute.user", "unmute.user", "invite.user", "room_changed.by", "room_changed.user",
      ].sort(),
    );
  });
  test.each(USER_FIELDS)("%s: boundaries of USER_NAME_RE", (_name, { t, k }) => {
    expect(accepted.map((u) => [u, codeOf(() => decodeMessage(body({ ...baseFor(t, k), [k]: u })))])).toEqual(accepted.map((u) => [u, "no error"]));
    expect(rejected.map(([w, u]) => [w, codeOf(() => decodeMessage(body({ ...baseFor(t, k), [k]: u })))])).toEqual(rejected.map(([w]) => [w, "message_invalid"]));
    expectCode(() => decodeMessage(withRaw(baseFor(t, k), k, '"a\\ud800"')), "message_invalid");
  });
  test.each([
    ["room.users", "room"],
    ["members.users", "members"],
  ] as const)("%s: every item is held to USER_NAME_RE", (_name, t) => {
    const code = (users: unknown[]): string => codeOf(() => decodeMessage(body({ ...jsonOf(t), users })));
    expect(code(accepted)).toBe("no error");
    expect(rejected.map(([w, u]) => [w, code(["alice", u, "bob_2"])])).toEqual(rejected.map(([w]) => [w, "message_invalid"]));
    // Items of the wrong JSON type.
    const wrong: Json[] = [1, null, true, [], {}, ["alice"], { name: "alice" }];
    expect(wrong.map((v) => [v, code([v])])).toEqual(wrong.map((v) => [v, "message_invalid"]));
  });
});

describe("room names", () => {
  const A32 = `a${"b".repeat(31)}`;
  const accepted = ["a", "0", "9", "z", "lobby", "0-dev_ops", "1", "a-", "a_", "9lives", "a--b__c", A32, `0${"_".repeat(31)}`];
  const rejected: [string, string][] = [
    ["empty", ""],
    ["33 chars", `${A32}c`],
    ["uppercase", "Lobby"],
    ["uppercase later", "lobBy"],
    ["leading underscore", "_lobby"],
    ["leading dash", "-lobby"],
    ["leading #", "#lobby"],
    ["dot", "lo.bby"],
    ["space", "lo bby"],
    ["slash", "a/b"],
    ["trailing newline", "lobby\n"],
    ["leading space", " lobby"],
    ["Cyrillic о look-alike", "l\u043ebby"],
    ["fullwidth ｌ", "\uff4cobby"],
    ["Kelvin sign", "\u212a"],
    ["zero-width space", "lob\u200bby"],
    ["combining accent", "lobby\u0301"],
    ["NUL", "lobby\u0000"],
  ];
  const ROOM_FIELDS = fieldsOf("room").map((f) => [`${f.t}.${f.k}`, f] as const);
  test("every room-name field is covered", () => {
    expect(ROOM_FIELDS.map(([n]): string => n).sort()).toEqual(
      [
        "history.room", "history_end.room", "join.room", "joined.room", "leave.room", "left.room", "members.room", "message.room", "room.room", "say.room", "who.room",
        // Room moderation (PROTOCOL.md §7.9).
        // Editing and deleting (PROTOCOL.md §7.12).
        "edit.room", "delete.room", "edited.room", "deleted.room",
        "topic.room", "op.room", "deop.room", "kick.room", "ban.room", "unban.room", "bans.room", "mute.room", "unmute.room", "invite.room", "mode.room", "drop.room", "room_changed.room", "ban_list.room",
      ].sort(),
    );
  });
  test.each(ROOM_FIELDS)("%s: boundaries of ROOM_NAME_RE", (_name, { t, k }) => {
    expect(accepted.map((v) => [v, codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })))])).toEqual(accepted.map((v) => [v, "no error"]));
    expect(rejected.map(([w, v]) => [w, codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })))])).toEqual(rejected.map(([w]) => [w, "message_invalid"]));
    expectCode(() => decodeMessage(withRaw(jsonOf(t), k, '"a\\ud800"')), "message_invalid");
  });
  test("room_list.rooms[].name: boundaries of ROOM_NAME_RE", () => {
    const code = (name: string): string => codeOf(() => decodeMessage(body({ type: "room_list", rooms: [{ name: "lobby", users: 1 }, { name, users: 2 }] })));
    expect(accepted.map((v) => [v, code(v)])).toEqual(accepted.map((v) => [v, "no error"]));
    expect(rejected.map(([w, v]) => [w, code(v)])).toEqual(rejected.map(([w]) => [w, "message_invalid"]));
  });
  test("a room name may start with a digit and be one character; a user name may not", () => {
    expectCode(() => decodeMessage(body({ type: "join", room: "7" })), "no error");
    expectCode(() => decodeMessage(body({ type: "dm", id: 1, to: "7", text: "x" })), "message_invalid");
    expectCode(() => decodeMessage(body({ type: "dm", id: 1, to: "a", text: "x" })), "message_invalid");
  });
});

describe("boolean fields", () => {
  const BOOL = fieldsOf("bool").map((f) => [`${f.t}.${f.k}`, f] as const);
  test("every boolean field is covered, and all but name_status.available are optional", () => {
    expect(BOOL.map(([n]): string => n).sort()).toEqual(
      [
        "ack.stored", "change_password.end_sessions", "direct.action", "direct.history", "direct.late", "dm.action", "history_end.more", "message.action", "message.history", "name_status.available", "say.action",
        // Room moderation (PROTOCOL.md §7.9).
        // Editing and deleting (PROTOCOL.md §7.12).
        "direct.deleted", "direct.edited", "edited.action", "message.deleted", "message.edited",
        "room.invite_only", "room.secret", "room.persistent", "room.muted", "mode.invite_only", "mode.secret", "room_changed.invite_only", "room_changed.secret",
        // Witnesses (PROTOCOL.md §7.13).
        "log_proof.cosigned",
        // The log's entries with their proofs (PROTOCOL.md §7.13).
        "log_proof.entries",
      ].sort(),
    );
    expect(BOOL.filter(([, f]) => !f.spec.optional).map(([n]) => n)).toEqual(["name_status.available"]);
  });
  test.each(BOOL)("%s: true and false are accepted and kept as they are; nothing else is", (_name, { t, k }) => {
    for (const v of [true, false]) {
      // deleted: false is a message like any other, which has a text (PROTOCOL.md §7.12)
      const base = (t === "message" || t === "direct") && k === "deleted" && !v ? jsonOf(t) : baseFor(t, k);
      const m = decodeMessage(body({ ...base, [k]: v })) as Record<string, unknown>;
      expect(m[k]).toBe(v);
      expect(JSON.parse(encodeMessage(m as Message))[k]).toBe(v);
    }
    const bad: Json[] = [0, 1, "true", "false", "", null, [], {}, [true]];
    expect(bad.map((v) => [v, codeOf(() => decodeMessage(body({ ...baseFor(t, k), [k]: v })))])).toEqual(bad.map((v) => [v, "message_invalid"]));
  });
});

describe("fields with a fixed set of values", () => {
  const ENUMS = fieldsOf("enum").map((f) => [`${f.t}.${f.k}`, f] as const);
  test.each(ENUMS)("%s: each listed value is accepted and kept; any other string, case or type is not", (_name, { t, k, spec }) => {
    for (const v of spec.values) expect((decodeMessage(body({ ...jsonOf(t), [k]: v })) as Record<string, unknown>)[k]).toBe(v);
    const bad: Json[] = ["", "LOCK", " lock", "lock ", "takeover", 0, true, null, ["lock"]];
    expect(bad.map((v) => [v, codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })))])).toEqual(bad.map((v) => [v, "message_invalid"]));
  });
});

describe("list fields", () => {
  const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `u${i}`);
  const roomsOf = (n: number): JsonObject[] => Array.from({ length: n }, (_, i) => ({ name: `r${i}`, users: i }));
  test.each([
    ["room.users", "room", "users", names],
    ["members.users", "members", "users", names],
    ["room_list.rooms", "room_list", "rooms", roomsOf],
  ] as const)("%s: 0 and MAX_LIST (1000) items are accepted, 1001 are not", (_name, t, k, make) => {
    const code = (n: number): string => codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: make(n) })));
    expect([0, 1, 999, MAX_LIST].map((n) => [n, code(n)])).toEqual([0, 1, 999, MAX_LIST].map((n) => [n, "no error"]));
    expect([MAX_LIST + 1, 5000].map((n) => [n, code(n)])).toEqual([MAX_LIST + 1, 5000].map((n) => [n, "message_invalid"]));
    // The full list survives a round trip, in order.
    const full = decodeMessage(body({ ...jsonOf(t), [k]: make(MAX_LIST) })) as Record<string, unknown>;
    expect(full[k]).toEqual(make(MAX_LIST));
    expect(decodeMessage(encodeMessageBytes(full as Message))).toEqual(full as Message);
  });

  test("MAX_LIST items of the longest names fit in one record: members (~35 KB), room_list with 5-digit user counts (~57 KB)", () => {
    const longUsers = Array.from({ length: MAX_LIST }, (_, i) => `u${String(i).padStart(31, "0")}`);
    expect(utf8(encodeMessage({ type: "members", room: "a".repeat(32), users: longUsers })).length).toBeLessThan(65536 - 16);
    const longRooms = Array.from({ length: MAX_LIST }, (_, i) => ({ name: `r${String(i).padStart(31, "0")}`, users: 99_999 }));
    expect(utf8(encodeMessage({ type: "room_list", rooms: longRooms })).length).toBeLessThan(65536 - 16);
  });

  test("duplicates are not the validator's business (the server never sends them)", () => {
    expectCode(() => decodeMessage(body({ type: "members", room: "lobby", users: ["alice", "alice"] })), "no error");
  });
});

describe("nested objects (room_list.rooms[])", () => {
  const code = (item: unknown): string => codeOf(() => decodeMessage(body({ type: "room_list", rooms: [{ name: "lobby", users: 1 }, item] })));
  test("a valid item; the nested fields come back in schema order", () => {
    expect(code({ users: 0, name: "a" })).toBe("no error");
    expect(encodeMessage(decodeMessage(body({ type: "room_list", rooms: [{ users: 2, name: "a" }] })))).toBe('{"type":"room_list","rooms":[{"name":"a","users":2}]}');
  });
  test.each([
    ["an unknown nested field", { name: "a", users: 1, topic: "x" }],
    ["an unknown nested field only", { bogus: 1 }],
    ["__proto__ as a nested field", JSON.parse('{"name":"a","users":1,"__proto__":{}}') as Json],
    ["missing name", { users: 1 }],
    ["missing users", { name: "a" }],
    ["empty object", {}],
    ["users negative", { name: "a", users: -1 }],
    ["users fractional", { name: "a", users: 1.5 }],
    ["users as a string", { name: "a", users: "1" }],
    ["users beyond 2^53 − 1", { name: "a", users: 2 ** 53 }],
    ["name null", { name: null, users: 1 }],
    ["name a bad room", { name: "A", users: 1 }],
    ["an array instead", ["a", 1]],
    ["a string instead", "a"],
    ["a number instead", 1],
    ["null instead", null],
    ["true instead", true],
  ])("%s → message_invalid (not message_unknown_field / message_missing_field: those are top-level codes)", (_name, item) => {
    expect(code(item)).toBe("message_invalid");
  });
});

describe("members with away", () => {
  test("the largest members answer (MAX_LIST longest names, AWAY_LIST_MAX longest away texts, all escaped) fits one record", () => {
    const users = Array.from({ length: MAX_LIST }, (_, i) => `u${String(i).padStart(USER_NAME_MAX - 1, "0")}`);
    const away = users.slice(0, AWAY_LIST_MAX).map((user) => ({ user, text: '"'.repeat(AWAY_TEXT_MAX) }));
    const m: Message = { type: "members", room: "a".repeat(ROOM_NAME_MAX), users, away };
    const bytes = encodeMessageBytes(m);
    expect(decodeMessage(bytes)).toEqual(m);
    expect(bytes.length).toBeLessThanOrEqual(MAX_FRAME - RECORD_TAG_LENGTH);
  });
  test(`more than AWAY_LIST_MAX away entries, or a text over AWAY_TEXT_MAX bytes, is message_invalid`, () => {
    const entry = { user: "bob_2", text: "at lunch" };
    expectCode(() => decodeMessage(body({ type: "members", room: "lobby", users: ["bob_2"], away: Array.from({ length: AWAY_LIST_MAX + 1 }, () => entry) })), "message_invalid");
    expectCode(() => decodeMessage(body({ type: "members", room: "lobby", users: ["bob_2"], away: [{ user: "bob_2", text: "é".repeat(AWAY_TEXT_MAX / 2 + 1) }] })), "message_invalid");
    expectCode(() => decodeMessage(body({ type: "members", room: "lobby", users: ["bob_2"], away: [{ user: "bob_2", text: "" }] })), "message_invalid");
  });
});

describe("text fields", () => {
  const TEXT = fieldsOf("text").map((f) => [`${f.t}.${f.k}`, f] as const);

  test("every text field is covered: error, bye, the passwords and the chat texts and codes", () => {
    expect(TEXT.map(([n]): string => n).sort()).toEqual(
      [
        "ack.away",
        "away.text",
        "bye.reason",
        "change_password.new_password",
        "error.code",
        "error.message",
        "login.password",
        "register.password",
        "enroll.password",
        "enroll.name",
        "say.text",
        "dm.text",
        "message.text",
        "direct.text",
        "edit.text",
        "edited.text",
        "nack.code",
        "nack.message",
        "notice.code",
        "notice.text",
        // Room moderation (PROTOCOL.md §7.9).
        "topic.text",
        "kick.reason",
        "log_state.origin",
        "room.topic",
        "room_changed.action",
        "room_changed.text",
      ].sort(),
    );
  });

  // A topic is also bounded in code points (PROTOCOL.md §7.9): its bounds are tested on their own below.
  const TOPICS = new Set(["topic.text", "room.topic"]);
  test.each([...TOPICS])("%s: at most TOPIC_BYTES_MAX bytes and TOPIC_CODE_POINTS_MAX code points", (name) => {
    const [t, k] = name.split(".") as [MessageType, string];
    const code = (v: string): string => codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })));
    expect(code("x".repeat(256))).toBe("no error");
    expect(code("x".repeat(257))).toBe("message_invalid");
    expect(code("é".repeat(256))).toBe("no error");
    expect(code("é".repeat(257))).toBe("message_invalid");
    // 256 four-byte characters are exactly 1024 bytes; one more byte is over both bounds.
    expect(code("🔐".repeat(256))).toBe("no error");
    expect(code(`${"🔐".repeat(255)}xxxxx`)).toBe("message_invalid");
    expect(code("")).toBe("message_invalid");
  });

  test.each(TEXT.filter(([n]) => !TOPICS.has(n)))("%s: length bounds count bytes of UTF-8, not characters or UTF-16 units", (_name, { t, k, spec }) => {
    const code = (v: string): string => codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })));
    const bytes = (v: string): number => utf8(v).length;
    const max = spec.max;
    // ASCII: one byte each.
    expect(code("x".repeat(max))).toBe("no error");
    expect(code("x".repeat(max + 1))).toBe("message_invalid");
    expect(code("x".repeat(spec.min))).toBe("no error");
    if (spec.min > 0) expect(code("")).toBe("message_invalid");
    // 2-, 3- and 4-byte characters: exactly max bytes is fine; one more byte is not, though far fewer
    // characters (and UTF-16 units) than max.
    for (const ch of ["é", "€", "🔐"]) {
      const w = bytes(ch);
      const fit = ch.repeat(Math.floor(max / w)) + "x".repeat(max % w);
      expect([ch, bytes(fit), code(fit)]).toEqual([ch, max, "no error"]);
      const over = `${fit}x`;
      expect([ch, bytes(over), code(over)]).toEqual([ch, max + 1, "message_invalid"]);
      expect(over.length).toBeLessThanOrEqual(max + 1);
    }
    // A string of max/2 two-byte characters and one more: under the old UTF-16 count it was fine.
    const twoByte = "é".repeat(Math.floor(max / 2) + 1);
    expect(twoByte.length).toBeLessThanOrEqual(max);
    expect(code(twoByte)).toBe("message_invalid");
  });

  test.each(TEXT)("%s: well-formed unicode only", (_name, { t, k }) => {
    const raw = (text: string): string => codeOf(() => decodeMessage(withRaw(jsonOf(t), k, text)));
    // A surrogate pair is well-formed (4 bytes of UTF-8); lone surrogates are not.
    expect(raw('"\\ud83d\\ude00"')).toBe("no error");
    const lone = ['"\\ud800"', '"\\udc00"', '"a\\ud800b"', '"\\ude00\\ud83d"', '"\\udbff"'];
    expect(lone.map((l) => [l, raw(l)])).toEqual(lone.map((l) => [l, "message_invalid"]));
  });

  // Every C0 control, DEL and every C1 control; escaped in JSON or raw in the UTF-8.
  const CONTROLS = [...Array.from({ length: 0x20 }, (_, i) => i), ...Array.from({ length: 0x21 }, (_, i) => 0x7f + i)];
  test.each(TEXT)("%s: every C0 and C1 control character and DEL is refused, at any position", (_name, { t, k }) => {
    const code = (v: string): string => codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })));
    const bad: string[] = [];
    for (const c of CONTROLS) {
      const ch = String.fromCodePoint(c);
      for (const v of [ch, `a${ch}`, `${ch}b`, `abc${ch}def`]) {
        const got = code(v);
        if (got !== "message_invalid") bad.push(`U+${c.toString(16).padStart(4, "0")} in ${JSON.stringify(v)}: ${got}`);
      }
    }
    expect(bad).toEqual([]);
    // The same characters written as JSON escapes (\n, \t, \u001b, …) are the same strings.
    for (const esc of ['"a\\nb"', '"a\\tb"', '"a\\rb"', '"a\\bb"', '"a\\fb"', '"\\u001b[31m"', '"\\u0000"', '"\\u007f"', '"\\u0085"', '"\\u009b"']) {
      expect([esc, codeOf(() => decodeMessage(withRaw(jsonOf(t), k, esc)))]).toEqual([esc, "message_invalid"]);
    }
  });

  test.each(TEXT)("%s: the neighbours of the control ranges and other format characters are allowed", (_name, { t, k }) => {
    const code = (v: string): string => codeOf(() => decodeMessage(body({ ...jsonOf(t), [k]: v })));
    // Space, '~', NBSP, '¡'; and characters outside C0/C1 that the rule does not cover (see PROTOCOL.md §10).
    const ok = [0x20, 0x7e, 0xa0, 0xa1, 0x200b, 0x200e, 0x202e, 0x2028, 0xfeff].map((c) => `a${String.fromCodePoint(c)}b`);
    expect(ok.map((v) => [v, code(v)])).toEqual(ok.map((v) => [v, "no error"]));
  });
});

describe("rules across fields (checked after every field is valid)", () => {
  const sig = toBase64(r.bytes(64));
  const ticket = toBase64(r.bytes(32));
  const ticketKey = toBase64(r.bytes(32));
  const login = (extra: JsonObject): Uint8Array => body({ type: "login", user: "alice", sig, ...extra });
  test.each([
    ["password", { password: "pw" }, "no error"],
    ["password + ticket_key", { password: "pw", ticket_key: ticketKey }, "no error"],
    ["ticket", { ticket }, "no error"],
    ["password + ticket", { password: "pw", ticket }, "message_invalid"],
    ["password + ticket + ticket_key", { password: "pw", ticket, ticket_key: ticketKey }, "message_invalid"],
    ["neither", {}, "message_invalid"],
    ["ticket_key alone", { ticket_key: ticketKey }, "message_invalid"],
    ["ticket + ticket_key", { ticket, ticket_key: ticketKey }, "message_invalid"],
  ] as const)("login with %s → %s", (_name, extra, want) => {
    expect(codeOf(() => decodeMessage(login(extra)))).toBe(want);
  });

  test.each([
    ["neither", {}, "no error"],
    ["both", { ticket, ticket_expires: 1_900_000_000_000 }, "no error"],
    ["ticket_expires 0 with a ticket", { ticket, ticket_expires: 0 }, "no error"],
    ["ticket only", { ticket }, "message_invalid"],
    ["ticket_expires only", { ticket_expires: 1_900_000_000_000 }, "message_invalid"],
  ] as const)("welcome with %s → %s", (_name, extra, want) => {
    const session_id = toBase64(r.bytes(16));
    expect(codeOf(() => decodeMessage(body({ type: "welcome", user: "alice", session_id, ...extra })))).toBe(want);
  });

  test("register may ask for a ticket or not", () => {
    const reg = { type: "register", user: "alice", identity_key: ticketKey, sig, password: "pw" };
    expectCode(() => decodeMessage(body(reg)), "no error");
    expectCode(() => decodeMessage(body({ ...reg, ticket_key: ticketKey })), "no error");
  });

  test("rules run only after every field is valid: a rule-breaking login without sig is message_missing_field, with an extra member message_unknown_field", () => {
    expectCode(() => decodeMessage(body({ type: "login", user: "alice", password: "pw", ticket })), "message_missing_field");
    expectCode(() => decodeMessage(body({ type: "login", user: "alice", sig, password: "pw", ticket, extra: 1 })), "message_unknown_field");
  });

  test("the rules apply to validateMessage and inside records too", () => {
    expectCode(() => validateMessage({ type: "login", user: "alice", sig, password: "pw", ticket }), "message_invalid");
    const payload = joinRecordPayload([encodeMessage(FULL.error), `{"type":"welcome","user":"alice","session_id":"${toBase64(r.bytes(16))}","ticket":"${ticket}"}`]);
    const parts = splitRecordPayload(payload);
    expect(codeOf(() => parts.map((p) => decodeMessage(p)))).toBe("message_invalid");
  });
});

describe("logout and bye", () => {
  test("logout has no members; any member is unknown", () => {
    expect(encodeMessage({ type: "logout" })).toBe('{"type":"logout"}');
    expect(decodeMessage(utf8('{"type":"logout"}'))).toEqual({ type: "logout" });
    expectCode(() => decodeMessage(utf8('{"type":"logout","reason":"x"}')), "message_unknown_field");
  });

  test("bye needs its reason (which may be empty)", () => {
    expectCode(() => decodeMessage(utf8('{"type":"bye"}')), "message_missing_field");
    expect(decodeMessage(utf8('{"type":"bye","reason":""}'))).toEqual({ type: "bye", reason: "" });
  });
});

describe("allowed", () => {
  test.each(MESSAGE_TYPES)("%s outside `allowed` → message_unexpected; inside → accepted", (t) => {
    const b = encodeMessageBytes(FULL[t]);
    const others = MESSAGE_TYPES.filter((x) => x !== t);
    expectCode(() => decodeMessage(b, others), "message_unexpected");
    expectCode(() => decodeMessage(b, []), "message_unexpected");
    expect(decodeMessage(b, [t]).type).toBe(t);
    expect(decodeMessage(b, MESSAGE_TYPES).type).toBe(t);
  });

  test("`allowed` is checked before the fields: a malformed message of the wrong type is message_unexpected", () => {
    expectCode(() => decodeMessage(body({ type: "login", bogus: 1 }), ["register"]), "message_unexpected");
    // …while an unknown type is still unknown.
    expectCode(() => decodeMessage(body({ type: "nope" }), ["register"]), "message_unknown_type");
  });
});

describe("record payload", () => {
  const texts = MESSAGE_TYPES.map((t) => encodeMessage(FULL[t]));
  test.each([1, 2, 3, 4, 5])("split(join(%p messages)) gives them back", (n) => {
    const msgs = texts.slice(0, n);
    const payload = joinRecordPayload(msgs);
    expect(payload.filter((b) => b === 0x0a).length).toBe(n - 1);
    const parts = splitRecordPayload(payload);
    expect(parts.map((p) => new TextDecoder().decode(p))).toEqual(msgs);
    expect(parts.map((p) => decodeMessage(p))).toEqual(msgs.map((_, i) => FULL[MESSAGE_TYPES[i]!] as Message));
  });

  test("a JSON text with an escaped newline is not split (the message is then refused for its control character)", () => {
    const text = '{"type":"error","code":"x","message":"two\\nlines"}';
    expect(text).not.toContain("\n");
    const parts = splitRecordPayload(joinRecordPayload([text, text]));
    expect(parts.map((p) => new TextDecoder().decode(p))).toEqual([text, text]);
    expectCode(() => decodeMessage(parts[1]!), "message_invalid");
  });

  test.each([
    ["empty payload", ""],
    ["only LF", "\n"],
    ["leading LF", "\n{}"],
    ["trailing LF", "{}\n"],
    ["empty segment", "{}\n\n{}"],
    ["two LFs only", "\n\n"],
  ])("%s → record_empty_message", (_name, text) => {
    expectCode(() => splitRecordPayload(utf8(text)), "record_empty_message");
  });
});
