/**
 * Message schemas (docs/PROTOCOL.md §5). Every message is a JSON object with
 * a string `type`; each type has exactly the fields listed here. Validation
 * runs before anything else looks at a message: an unknown type, an unknown
 * field, a missing field or a field of the wrong type or size is rejected
 * with a stable code, and the connection is closed. Byte fields travel as
 * canonical padded base64 and come out of the validator as Uint8Array.
 */
import { fromBase64, fromUtf8, toBase64, utf8 } from "../bytes.ts";
import { SecureChatError } from "../errors.ts";
import { randomBytes } from "../crypto/index.ts";
import { hasControl } from "../text.ts";
import { CID_RE } from "./cid.ts";
import {
  LOG_COSIGNATURES_MAX,
  LOG_ENTRY_BYTES_MAX,
  LOG_LEAVES_MAX,
  LOG_ORIGIN_MAX,
  PROOF_HASHES_MAX,
  AWAY_LIST_MAX,
  AWAY_TEXT_MAX,
  DEVICE_LIST_MAX,
  DEVICE_NAME_MAX,
  DEVICE_PENDING_MAX,
  ERROR_CODE_MAX,
  ERROR_TEXT_MAX,
  MAX_LIST,
  MESSAGE_TEXT_MAX,
  PASSWORD_FIELD_MAX,
  READ_LIST_MAX,
  REASON_TEXT_MAX,
  ROOM_NAME_MAX,
  ROOM_NAME_RE,
  SESSION_LIST_MAX,
  SOURCE_TEXT_MAX,
  UNREAD_LIST_MAX,
  USER_NAME_MAX,
  USER_NAME_RE,
  ROOM_ACTION_MAX,
  ROOM_OPS_MAX,
  TOPIC_BYTES_MAX,
  TOPIC_CODE_POINTS_MAX,
} from "./limits.ts";

interface Field<T> {
  readonly optional: boolean;
  parse(v: unknown, where: string): T;
  encode(v: T): unknown;
}

function invalid(where: string, what: string): never {
  throw new SecureChatError("message_invalid", `message: ${where} ${what}`);
}

const bytes = (n: number): Field<Uint8Array> => ({
  optional: false,
  parse(v, where) {
    if (typeof v !== "string") invalid(where, "must be a base64 string");
    try {
      return fromBase64(v, n);
    } catch {
      return invalid(where, `must be canonical base64 of ${n} bytes`);
    }
  },
  encode: (v) => toBase64(v),
});

/** Canonical base64 of 1 … `max` bytes (PROTOCOL.md §1.2): bytes of a length the sender chooses, within a bound. */
const blob = (max: number): Field<Uint8Array> => ({
  optional: false,
  parse(v, where) {
    if (typeof v !== "string") invalid(where, "must be a base64 string");
    let b: Uint8Array;
    try {
      b = fromBase64(v);
    } catch {
      return invalid(where, `must be canonical base64 of 1..${max} bytes`);
    }
    if (b.length < 1 || b.length > max) invalid(where, `must be canonical base64 of 1..${max} bytes`);
    return b;
  },
  encode: (v) => toBase64(v),
});

const int = (min: number, max: number): Field<number> => ({
  optional: false,
  parse(v, where) {
    if (typeof v !== "number" || !Number.isSafeInteger(v)) invalid(where, "must be an integer");
    if (v < min || v > max) invalid(where, `must be in [${min}, ${max}]`);
    return v;
  },
  encode: (v) => v,
});

/** A string whose UTF-8 encoding is `minBytes`..`maxBytes` long, well-formed, without control characters. */
const text = (maxBytes: number, minBytes = 0): Field<string> => ({
  optional: false,
  parse(v, where) {
    if (typeof v !== "string") invalid(where, "must be a string");
    // JSON can carry lone surrogates (\ud800) that are not valid Unicode text.
    if (!v.isWellFormed()) invalid(where, "must be well-formed unicode");
    const n = Buffer.byteLength(v, "utf8");
    if (n < minBytes || n > maxBytes) invalid(where, `must be ${minBytes}..${maxBytes} bytes of UTF-8`);
    // C0, DEL and C1 (src/text.ts): never allowed, so no text is more than one line or drives a terminal.
    if (hasControl(v)) invalid(where, "must not contain control characters");
    return v;
  },
  encode: (v) => v,
});

const userName: Field<string> = {
  optional: false,
  parse(v, where) {
    if (typeof v !== "string" || v.length > USER_NAME_MAX || !USER_NAME_RE.test(v)) {
      invalid(where, "must be a user name (a-z, then 1-31 of a-z 0-9 _ -)");
    }
    return v;
  },
  encode: (v) => v,
};

const bool: Field<boolean> = {
  optional: false,
  parse(v, where) {
    if (typeof v !== "boolean") invalid(where, "must be true or false");
    return v;
  },
  encode: (v) => v,
};

/** A string of `n` lowercase hex digits. */
const hex = (n: number, what: string): Field<string> => {
  const re = new RegExp(`^[0-9a-f]{${n}}$`);
  return {
    optional: false,
    parse(v, where) {
      if (typeof v !== "string" || !re.test(v)) invalid(where, `must be ${what} (${n} lowercase hex digits)`);
      return v;
    },
    encode: (v) => v,
  };
};

/** A session's or ticket's reference in `sessions` and `revoke_session` (PROTOCOL.md §7.8). */
const sessionRef = hex(12, "a session id");

/** A client message id (PROTOCOL.md §7.15 `cid`, cid.ts CID_RE). */
const cid: Field<string> = {
  optional: false,
  parse(v, where) {
    if (typeof v !== "string" || !CID_RE.test(v)) invalid(where, "must be a client message id (16 bytes, unpadded base64url: 22 characters)");
    return v;
  },
  encode: (v) => v,
};

/** A device's id in `sessions` (PROTOCOL.md §7.8): 6 bytes of the SHA-256 of its key. */
const deviceRef = hex(12, "a device id");

/** One of a fixed set of strings. */
const oneOf = <const T extends string>(values: readonly T[]): Field<T> => ({
  optional: false,
  parse(v, where) {
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) invalid(where, `must be one of ${values.join(", ")}`);
    return v as T;
  },
  encode: (v) => v,
});

/**
 * Why a `log_state` inclusion item carries no `entry` though one was asked
 * for (PROTOCOL.md §7.13): not the asking user's to see, past the answer's
 * LOG_ENTRY_BYTES_MAX (ask again), or not readable from the log right now.
 */
export const LOG_WITHHELD = ["private", "later", "unreadable"] as const;
export type LogWithheld = (typeof LOG_WITHHELD)[number];

/** What a server administrator does to an account (PROTOCOL.md §7.10). */
export const ADMIN_ACTIONS = ["lock", "unlock", "end_sessions"] as const;
export type AdminAction = (typeof ADMIN_ACTIONS)[number];
const adminAction = oneOf(ADMIN_ACTIONS);

/** A SHA-256 value (transcript hashes, TRANSCRIPT.md §3). */
const hex32 = hex(64, "a SHA-256 value");

const roomName: Field<string> = {
  optional: false,
  parse(v, where) {
    if (typeof v !== "string" || v.length > ROOM_NAME_MAX || !ROOM_NAME_RE.test(v)) {
      invalid(where, "must be a room name (1-32 of a-z 0-9 _ -, starting with a letter or digit)");
    }
    return v;
  },
  encode: (v) => v,
};

/** A JSON array of at most `max` items, each valid for `item`. */
const list = <T>(item: Field<T>, max: number): Field<T[]> => ({
  optional: false,
  parse(v, where) {
    if (!Array.isArray(v)) invalid(where, "must be an array");
    if (v.length > max) invalid(where, `must have at most ${max} items`);
    return v.map((x, i) => item.parse(x, `${where}[${i}]`));
  },
  encode: (v) => v.map((x) => item.encode(x)),
});

/** A nested JSON object with exactly these fields. */
const object = <F extends Fields>(fields: F): Field<Infer<F>> => {
  const entries = Object.entries(fields);
  return {
  optional: false,
  parse(v, where) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) invalid(where, "must be an object");
    const o = v as Record<string, unknown>;
    for (const key of Object.keys(o)) if (!Object.hasOwn(fields, key)) invalid(where, `has unknown field ${JSON.stringify(key.slice(0, 32))}`);
    const out: Record<string, unknown> = {};
    for (const [key, f] of entries) {
      if (o[key] === undefined && !f.optional) invalid(`${where}.${key}`, "is missing");
      const parsed = f.parse(o[key], `${where}.${key}`);
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as Infer<F>;
  },
  encode: (v) => {
    const out: Record<string, unknown> = {};
    for (const [key, f] of entries) {
      const e = f.encode((v as Record<string, unknown>)[key]);
      if (e !== undefined) out[key] = e;
    }
    return out;
  },
  };
};

const optional = <T>(f: Field<T>): Field<T | undefined> => ({
  optional: true,
  parse: (v, where) => (v === undefined ? undefined : f.parse(v, where)),
  encode: (v) => (v === undefined ? undefined : f.encode(v)),
});

type Fields = Record<string, Field<unknown>>;
type Infer<F extends Fields> = {
  [K in keyof F as F[K] extends Field<infer T> ? (undefined extends T ? never : K) : never]: F[K] extends Field<infer T> ? T : never;
} & {
  [K in keyof F as F[K] extends Field<infer T> ? (undefined extends T ? K : never) : never]?: F[K] extends Field<infer T> ? T : never;
};

/** The schema of each message type. Order of fields is the order they are encoded in. */
const SCHEMAS = {
  // Cleartext handshake (PROTOCOL.md §4).
  client_hello: {
    version: int(0, 0xffff),
    e: bytes(32),
    nonce: bytes(32),
  },
  server_hello: {
    version: int(0, 0xffff),
    e: bytes(32),
    challenge: bytes(32),
    host_key: bytes(32),
    rekey_records: int(1, Number.MAX_SAFE_INTEGER),
    rekey_bytes: int(1, Number.MAX_SAFE_INTEGER),
    sig: bytes(64),
  },
  // The client's login-phase records (PROTOCOL.md §5.1).
  register: {
    user: userName,
    identity_key: bytes(32),
    sig: bytes(64),
    password: text(PASSWORD_FIELD_MAX, 1),
    ticket_key: optional(bytes(32)),
  },
  login: {
    user: userName,
    sig: bytes(64),
    password: optional(text(PASSWORD_FIELD_MAX, 1)),
    ticket: optional(bytes(32)),
    ticket_key: optional(bytes(32)),
  },
  // Before register: is the name free? (PROTOCOL.md §5.1.)
  check_name: {
    user: userName,
  },
  // Server answers (PROTOCOL.md §5.2).
  name_status: {
    user: userName,
    available: bool,
  },
  welcome: {
    user: userName,
    session_id: bytes(16),
    ticket: optional(bytes(32)),
    ticket_expires: optional(int(0, Number.MAX_SAFE_INTEGER)),
  },
  error: {
    code: text(ERROR_CODE_MAX, 1),
    message: text(ERROR_TEXT_MAX),
  },
  // After login (PROTOCOL.md §5.3).
  logout: {},
  bye: {
    reason: text(REASON_TEXT_MAX),
  },
  ping: {},
  pong: {},
  // Chat requests, client to server (PROTOCOL.md §7.1). `id` is the client's
  // number for a say or dm; the server answers it with ack or nack.
  join: { room: roomName, since: optional(int(0, Number.MAX_SAFE_INTEGER)), limit: optional(int(0, 1000)) },
  leave: { room: roomName },
  say: { id: int(0, Number.MAX_SAFE_INTEGER), room: roomName, text: text(MESSAGE_TEXT_MAX, 1), action: optional(bool), cid: optional(cid) },
  dm: { id: int(0, Number.MAX_SAFE_INTEGER), to: userName, text: text(MESSAGE_TEXT_MAX, 1), action: optional(bool), cid: optional(cid) },
  who: { room: roomName },
  rooms: {},
  // Without text: back (PROTOCOL.md §7.1).
  away: { text: optional(text(AWAY_TEXT_MAX, 1)) },
  history: {
    room: optional(roomName),
    with: optional(userName),
    limit: int(1, 1000),
    since: optional(int(0, Number.MAX_SAFE_INTEGER)),
    before: optional(int(1, Number.MAX_SAFE_INTEGER)),
  },
  // Room moderation requests (PROTOCOL.md §7.9).
  topic: { room: roomName, text: optional(text(TOPIC_BYTES_MAX, 1)) },
  op: { room: roomName, user: userName },
  deop: { room: roomName, user: userName },
  kick: { room: roomName, user: userName, reason: optional(text(REASON_TEXT_MAX, 1)) },
  ban: { room: roomName, user: userName },
  unban: { room: roomName, user: userName },
  bans: { room: roomName },
  mute: { room: roomName, user: userName },
  unmute: { room: roomName, user: userName },
  invite: { room: roomName, user: userName },
  mode: { room: roomName, invite_only: optional(bool), secret: optional(bool) },
  drop: { room: roomName },
  // The user's own sessions and tickets (PROTOCOL.md §7.8).
  session_list: {},
  revoke_session: { id: sessionRef },
  // A new password, on a session opened with the password (PROTOCOL.md §7.8).
  change_password: { new_password: text(PASSWORD_FIELD_MAX, 1), end_sessions: optional(bool) },
  // Chat events and answers, server to client (PROTOCOL.md §7.2).
  ack: {
    id: int(0, Number.MAX_SAFE_INTEGER),
    seq: int(1, Number.MAX_SAFE_INTEGER),
    ts: int(0, Number.MAX_SAFE_INTEGER),
    tseq: optional(int(1, Number.MAX_SAFE_INTEGER)),
    head: optional(hex32),
    stored: optional(bool),
    away: optional(text(AWAY_TEXT_MAX, 1)),
  },
  nack: { id: int(0, Number.MAX_SAFE_INTEGER), code: text(ERROR_CODE_MAX, 1), message: text(ERROR_TEXT_MAX) },
  message: {
    room: roomName,
    seq: int(1, Number.MAX_SAFE_INTEGER),
    ts: int(0, Number.MAX_SAFE_INTEGER),
    from: userName,
    // absent only when `deleted` (PROTOCOL.md §7.12; RULES below)
    text: optional(text(MESSAGE_TEXT_MAX, 1)),
    action: optional(bool),
    history: optional(bool),
    edited: optional(bool),
    deleted: optional(bool),
  },
  direct: {
    seq: int(1, Number.MAX_SAFE_INTEGER),
    ts: int(0, Number.MAX_SAFE_INTEGER),
    from: userName,
    to: userName,
    // absent only when `deleted` (PROTOCOL.md §7.12; RULES below)
    text: optional(text(MESSAGE_TEXT_MAX, 1)),
    action: optional(bool),
    history: optional(bool),
    late: optional(bool),
    edited: optional(bool),
    deleted: optional(bool),
  },
  room: {
    room: roomName,
    users: list(userName, MAX_LIST),
    seq: int(0, Number.MAX_SAFE_INTEGER),
    // Room moderation (PROTOCOL.md §7.9).
    owner: optional(userName),
    ops: optional(list(userName, ROOM_OPS_MAX)),
    topic: optional(text(TOPIC_BYTES_MAX, 1)),
    invite_only: optional(bool),
    secret: optional(bool),
    persistent: optional(bool),
    muted: optional(bool),
    // Catching up (PROTOCOL.md §7.14): messages after this device's read marker, and when it was set.
    unread: optional(int(1, Number.MAX_SAFE_INTEGER)),
    read_at: optional(int(0, Number.MAX_SAFE_INTEGER)),
  },
  joined: { room: roomName, user: userName, ts: int(0, Number.MAX_SAFE_INTEGER) },
  left: { room: roomName, user: userName, ts: int(0, Number.MAX_SAFE_INTEGER) },
  members: {
    room: roomName,
    users: list(userName, MAX_LIST),
    away: optional(list(object({ user: userName, text: text(AWAY_TEXT_MAX, 1) }), AWAY_LIST_MAX)),
  },
  room_list: { rooms: list(object({ name: roomName, users: int(0, Number.MAX_SAFE_INTEGER) }), MAX_LIST) },
  history_end: { room: optional(roomName), with: optional(userName), count: int(0, 1000), more: optional(bool) },
  notice: { code: text(ERROR_CODE_MAX, 1), text: text(ERROR_TEXT_MAX) },
  sessions: {
    live: list(
      object({
        id: sessionRef,
        device: deviceRef,
        source: text(SOURCE_TEXT_MAX),
        since: int(0, Number.MAX_SAFE_INTEGER),
        expires: int(0, Number.MAX_SAFE_INTEGER),
        ticket: optional(sessionRef),
        current: optional(bool),
      }),
      SESSION_LIST_MAX,
    ),
    tickets: list(
      object({
        id: sessionRef,
        device: optional(deviceRef),
        source: text(SOURCE_TEXT_MAX),
        since: int(0, Number.MAX_SAFE_INTEGER),
        expires: int(0, Number.MAX_SAFE_INTEGER),
      }),
      SESSION_LIST_MAX,
    ),
    more_tickets: optional(int(1, Number.MAX_SAFE_INTEGER)),
  },
  revoked: { id: sessionRef, ended: int(0, Number.MAX_SAFE_INTEGER) },
  // Room moderation events and answers (PROTOCOL.md §7.9).
  room_changed: {
    room: roomName,
    by: userName,
    action: text(ROOM_ACTION_MAX, 1),
    user: optional(userName),
    text: optional(text(TOPIC_BYTES_MAX, 1)),
    invite_only: optional(bool),
    secret: optional(bool),
    ts: int(0, Number.MAX_SAFE_INTEGER),
  },
  ban_list: { room: roomName, bans: list(userName, MAX_LIST) },
  // Read markers (PROTOCOL.md §7.14): this device has read up to these seqs; the rooms the user has markers in.
  read: {
    rooms: optional(list(object({ room: roomName, seq: int(0, Number.MAX_SAFE_INTEGER) }), READ_LIST_MAX)),
    dm: optional(int(0, Number.MAX_SAFE_INTEGER)),
  },
  unread: {},
  unread_list: {
    rooms: list(object({ room: roomName, unread: int(0, Number.MAX_SAFE_INTEGER), read_at: int(0, Number.MAX_SAFE_INTEGER) }), UNREAD_LIST_MAX),
  },
  password_changed: { ended: int(0, Number.MAX_SAFE_INTEGER) },
  // Server administrators (PROTOCOL.md §7.10): a request, and its answer.
  admin: { action: adminAction, user: userName },
  admin_done: { action: adminAction, user: userName, ended: int(0, Number.MAX_SAFE_INTEGER) },
  // Devices (PROTOCOL.md §7.11). `enroll` is a login-phase attempt (§5.1): a new
  // device's key, enrolled with the password; `enroll_pending` its answer
  // while it waits for an enrolled device's approval.
  enroll: {
    user: userName,
    device_key: bytes(32),
    sig: bytes(64),
    password: text(PASSWORD_FIELD_MAX, 1),
    name: text(DEVICE_NAME_MAX, 1),
    ticket_key: optional(bytes(32)),
  },
  enroll_pending: { expires: int(0, Number.MAX_SAFE_INTEGER) },
  device_list: {},
  device_approve: { key: bytes(32), sig: bytes(64) },
  device_revoke: { id: deviceRef },
  devices: {
    devices: list(
      object({
        id: deviceRef,
        key: bytes(32),
        name: text(DEVICE_NAME_MAX),
        enrolled: int(0, Number.MAX_SAFE_INTEGER),
        by: text(16, 1),
        revoked: optional(int(0, Number.MAX_SAFE_INTEGER)),
        current: optional(bool),
      }),
      DEVICE_LIST_MAX,
    ),
    pending: list(
      object({
        key: bytes(32),
        name: text(DEVICE_NAME_MAX, 1),
        source: text(SOURCE_TEXT_MAX),
        since: int(0, Number.MAX_SAFE_INTEGER),
        expires: int(0, Number.MAX_SAFE_INTEGER),
      }),
      DEVICE_PENDING_MAX,
    ),
  },
  device_added: { id: deviceRef },
  device_revoked: { id: deviceRef, ended: int(0, Number.MAX_SAFE_INTEGER) },
  // Editing and deleting one's own room messages (PROTOCOL.md §7.12): requests
  // answered by ack/nack like say, and the events the room's members get.
  // A room message (`room`) or a direct message (`to`: its recipient), exactly one.
  edit: { id: int(0, Number.MAX_SAFE_INTEGER), room: optional(roomName), to: optional(userName), seq: int(1, Number.MAX_SAFE_INTEGER), text: text(MESSAGE_TEXT_MAX, 1), cid: optional(cid) },
  delete: { id: int(0, Number.MAX_SAFE_INTEGER), room: optional(roomName), to: optional(userName), seq: int(1, Number.MAX_SAFE_INTEGER), cid: optional(cid) },
  edited: {
    room: optional(roomName),
    to: optional(userName),
    seq: int(1, Number.MAX_SAFE_INTEGER),
    ts: int(0, Number.MAX_SAFE_INTEGER),
    by: userName,
    text: text(MESSAGE_TEXT_MAX, 1),
    action: optional(bool),
  },
  deleted: { room: optional(roomName), to: optional(userName), seq: int(1, Number.MAX_SAFE_INTEGER), ts: int(0, Number.MAX_SAFE_INTEGER), by: userName },
  // The log's state and proofs (PROTOCOL.md §7.13): a request, and its answer.
  log_proof: { from: optional(int(0, Number.MAX_SAFE_INTEGER)), leaves: optional(list(int(0, Number.MAX_SAFE_INTEGER), LOG_LEAVES_MAX)), entries: optional(bool), cosigned: optional(bool) },
  log_state: {
    origin: text(LOG_ORIGIN_MAX, 1),
    size: int(0, Number.MAX_SAFE_INTEGER),
    root: bytes(32),
    sig: bytes(68),
    consistency: optional(list(bytes(32), PROOF_HASHES_MAX)),
    inclusion: optional(
      list(
        object({
          leaf: int(0, Number.MAX_SAFE_INTEGER),
          proof: list(bytes(32), PROOF_HASHES_MAX),
          entry: optional(blob(LOG_ENTRY_BYTES_MAX)),
          withheld: optional(oneOf(LOG_WITHHELD)),
        }),
        LOG_LEAVES_MAX,
      ),
    ),
    // The newest checkpoint witnesses cosigned (TRANSCRIPT.md §4.5), when asked for.
    cosigned: optional(
      object({
        size: int(0, Number.MAX_SAFE_INTEGER),
        root: bytes(32),
        sig: bytes(68),
        cosignatures: list(object({ name: text(LOG_ORIGIN_MAX, 1), sig: bytes(76) }), LOG_COSIGNATURES_MAX),
        consistency: list(bytes(32), PROOF_HASHES_MAX),
      }),
    ),
  },
} as const satisfies Record<string, Fields>;

type Schemas = typeof SCHEMAS;
export type MessageType = keyof Schemas;
export type Message<T extends MessageType = MessageType> = T extends MessageType ? { type: T } & Infer<Schemas[T]> : never;
export type ClientHello = Message<"client_hello">;
export type ServerHello = Message<"server_hello">;
export type Register = Message<"register">;
export type Login = Message<"login">;
export type CheckName = Message<"check_name">;
export type Enroll = Message<"enroll">;
export type Welcome = Message<"welcome">;
export type ErrorMessage = Message<"error">;

/** Rules across fields, checked after each field is valid (PROTOCOL.md §5). */
const RULES: { [T in MessageType]?: (m: Message<T>) => string | null } = {
  login: (m) =>
    (m.password === undefined) === (m.ticket === undefined)
      ? "login must carry exactly one of password and ticket"
      : m.ticket !== undefined && m.ticket_key !== undefined
        ? "a ticket login must not ask for a ticket"
        : null,
  history: (m) =>
    (m.room === undefined) === (m.with === undefined)
      ? "history must carry exactly one of room and with"
      : m.since !== undefined && m.room === undefined
        ? "since is for a room's history"
        : m.before !== undefined && m.with === undefined
          ? "before is for direct messages' history"
          : null,
  history_end: (m) => ((m.room === undefined) === (m.with === undefined) ? "history_end must carry exactly one of room and with" : null),
  // Room moderation (PROTOCOL.md §7.9).
  topic: (m) => topicRule(m.text),
  mode: (m) => (m.invite_only === undefined && m.secret === undefined ? "mode must carry invite_only, secret or both" : null),
  // A deleted message (history only) has no text, and nothing of what it said; any other has text (PROTOCOL.md §7.12).
  message: (m) => ((m.edited || m.deleted) && !m.history ? "edited and deleted are for history" : changedRule(m)),
  // …and a direct message as history or delivered late.
  direct: (m) => ((m.edited || m.deleted) && !m.history && !m.late ? "edited and deleted are for history and late delivery" : changedRule(m)),
  edit: oneOfRoomAndTo,
  // An inclusion item carries its entry or says why not, never both; the entries of one answer are bounded together (PROTOCOL.md §7.13).
  log_state: (m) =>
    (m.inclusion ?? []).some((i) => i.entry !== undefined && i.withheld !== undefined)
      ? "an inclusion item carries entry or withheld, not both"
      : (m.inclusion ?? []).reduce((n, i) => n + (i.entry?.length ?? 0), 0) > LOG_ENTRY_BYTES_MAX
        ? `the entries of one log_state are at most ${LOG_ENTRY_BYTES_MAX} bytes together`
        : null,
  delete: oneOfRoomAndTo,
  edited: oneOfRoomAndTo,
  deleted: oneOfRoomAndTo,
  read: (m) => (m.rooms === undefined && m.dm === undefined ? "read must carry rooms or dm" : null),
  room: (m) => topicRule(m.topic) ?? ((m.unread === undefined) !== (m.read_at === undefined) ? "room must carry both unread and read_at, or neither" : null),
  welcome: (m) => ((m.ticket === undefined) !== (m.ticket_expires === undefined) ? "welcome must carry both ticket and ticket_expires, or neither" : null),
};

/** A message as history shows it (PROTOCOL.md §7.12): a text unless deleted; nothing of what it said if deleted. */
function changedRule(m: { text?: string; edited?: boolean; deleted?: boolean; action?: boolean }): string | null {
  if (m.deleted) return m.text !== undefined || m.edited || m.action ? "a deleted message carries no text, edited or action" : null;
  return m.text === undefined ? "text is missing" : null;
}

/** An edit, delete, edited or deleted names a room message or a direct message, never both. */
function oneOfRoomAndTo(m: { room?: string; to?: string }): string | null {
  return (m.room === undefined) === (m.to === undefined) ? "must carry exactly one of room and to" : null;
}

/** A topic is also at most TOPIC_CODE_POINTS_MAX code points (PROTOCOL.md §7.9). */
function topicRule(topic: string | undefined): string | null {
  return topic !== undefined && codePoints(topic) > TOPIC_CODE_POINTS_MAX ? `a topic must be at most ${TOPIC_CODE_POINTS_MAX} code points` : null;
}

/** A fresh client message id (PROTOCOL.md §7.15 `cid`). */
export function newCid(): string {
  return Buffer.from(randomBytes(16)).toString("base64url");
}

export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export const MESSAGE_TYPES = Object.keys(SCHEMAS) as MessageType[];

/** Each schema's fields in order, listed once: these loops run for every message sent and received. */
const SCHEMA_ENTRIES = Object.fromEntries(MESSAGE_TYPES.map((t) => [t, Object.entries(SCHEMAS[t] as Fields)])) as Record<MessageType, [string, Field<unknown>][]>;

function isMessageType(t: string): t is MessageType {
  return Object.hasOwn(SCHEMAS, t);
}

/**
 * Validates a parsed JSON value as a message. With `allowed`, a valid message
 * of any other type is rejected as `message_unexpected`.
 */
export function validateMessage<T extends MessageType = MessageType>(value: unknown, allowed?: readonly T[]): Message<T> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SecureChatError("message_not_object", "message: not a JSON object");
  }
  const obj = value as Record<string, unknown>;
  const type = obj.type;
  if (typeof type !== "string") throw new SecureChatError("message_invalid", "message: type must be a string");
  if (!isMessageType(type)) throw new SecureChatError("message_unknown_type", `message: unknown type ${JSON.stringify(type.slice(0, 32))}`);
  if (allowed && !(allowed as readonly string[]).includes(type)) {
    throw new SecureChatError("message_unexpected", `message: ${type} is not allowed here`);
  }
  const schema: Fields = SCHEMAS[type];
  for (const key of Object.keys(obj)) {
    if (key !== "type" && !Object.hasOwn(schema, key)) {
      throw new SecureChatError("message_unknown_field", `message: ${type} has unknown field ${JSON.stringify(key.slice(0, 32))}`);
    }
  }
  const out: Record<string, unknown> = { type };
  for (const [key, field] of SCHEMA_ENTRIES[type]) {
    const v = obj[key];
    if (v === undefined && !field.optional) {
      throw new SecureChatError("message_missing_field", `message: ${type}.${key} is missing`);
    }
    const parsed = field.parse(v, `${type}.${key}`);
    if (parsed !== undefined) out[key] = parsed;
  }
  const rule = RULES[type] as ((m: Message) => string | null) | undefined;
  const broken = rule?.(out as Message);
  if (broken) throw new SecureChatError("message_invalid", `message: ${broken}`);
  return out as Message<T>;
}

/** The JSON text of a message: `type` first, then fields in schema order. */
export function encodeMessage(msg: Message): string {
  const out: Record<string, unknown> = { type: msg.type };
  const m = msg as unknown as Record<string, unknown>;
  for (const [key, field] of SCHEMA_ENTRIES[msg.type]) {
    const v = field.encode(m[key]);
    if (v !== undefined) out[key] = v;
  }
  return JSON.stringify(out);
}

/** Members of every object in a parsed JSON value, at any depth. */
function parsedMembers(v: object): number {
  let n = 0;
  if (Array.isArray(v)) {
    for (const item of v) if (typeof item === "object" && item !== null) n += parsedMembers(item);
    return n;
  }
  for (const key in v) {
    n++;
    const item = (v as Record<string, unknown>)[key];
    if (typeof item === "object" && item !== null) n += parsedMembers(item);
  }
  return n;
}

/** The colons in a JSON text outside its strings: one per member written. `s` is valid JSON. */
function writtenMembers(s: string): number {
  let n = 0;
  let at = 0;
  for (;;) {
    const open = s.indexOf('"', at);
    for (let i = at; i < (open === -1 ? s.length : open); i++) if (s.charCodeAt(i) === 0x3a) n++;
    if (open === -1) return n;
    // The closing quote is the next one not escaped (preceded by an even run of backslashes).
    let close = open;
    for (;;) {
      close = s.indexOf('"', close + 1);
      let backslashes = 0;
      while (s.charCodeAt(close - 1 - backslashes) === 0x5c) backslashes++;
      if (backslashes % 2 === 0) break;
    }
    at = close + 1;
  }
}

/**
 * True if some object in the text names a member twice (PROTOCOL.md §5.0):
 * JSON.parse keeps one of them, so the parsed value has fewer members than
 * the text writes. Each member written has one colon. When the text holds
 * no more colons than the value has members (no colon inside a string, the
 * usual case), nothing was dropped; only otherwise are the colons outside
 * strings counted.
 */
function repeatsMember(s: string, v: unknown): boolean {
  const members = typeof v === "object" && v !== null ? parsedMembers(v) : 0;
  let colons = 0;
  for (let i = s.indexOf(":"); i !== -1; i = s.indexOf(":", i + 1)) if (++colons > members) return writtenMembers(s) > members;
  return false;
}

/** Strict UTF-8, then JSON (no repeated member names), then an object: the checks every frame body gets. */
export function parseJsonObject(body: Uint8Array): unknown {
  const s = fromUtf8(body);
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch (cause) {
    throw new SecureChatError("json_invalid", "json: body is not valid JSON", { cause });
  }
  if (repeatsMember(s, v)) throw new SecureChatError("json_invalid", "json: an object names the same member twice");
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new SecureChatError("message_not_object", "message: not a JSON object");
  }
  return v;
}

/** Cleartext frame body → validated message. */
export function decodeMessage<T extends MessageType = MessageType>(body: Uint8Array, allowed?: readonly T[]): Message<T> {
  return validateMessage(parseJsonObject(body), allowed);
}

export function encodeMessageBytes(msg: Message): Uint8Array {
  return utf8(encodeMessage(msg));
}

const LF = 0x0a;

/**
 * A record's plaintext carries one or more messages as JSON texts separated
 * by a single LF (PROTOCOL.md §3.4): no empty segment, no trailing LF.
 * JSON.stringify never emits a raw LF, so senders can join pre-encoded
 * messages without re-serializing them.
 */
export function splitRecordPayload(plaintext: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= plaintext.length; i++) {
    if (i === plaintext.length || plaintext[i] === LF) {
      if (i === start) throw new SecureChatError("record_empty_message", "record: empty message in payload");
      parts.push(plaintext.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

export function joinRecordPayload(messages: readonly string[]): Uint8Array {
  return utf8(messages.join("\n"));
}
