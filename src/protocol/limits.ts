/**
 * Every fixed size and limit of the wire protocol (docs/PROTOCOL.md §2, §8).
 * Changing one is a protocol change: update the spec and vectors with it.
 */

export const PROTOCOL_VERSION = 1;

/** Frame header: a 4-byte big-endian body length. */
export const FRAME_HEADER_LENGTH = 4;
/** Largest frame body before the client is authenticated (handshake, auth record). */
export const MAX_FRAME_PRELOGIN = 4 * 1024;
/** Largest frame body after authentication. */
export const MAX_FRAME = 64 * 1024;

/** AES-256-GCM tag appended to every record. */
export const RECORD_TAG_LENGTH = 16;
/** The smallest record plaintext: one JSON object, `{}`. Shorter records are empty or no-progress. */
export const MIN_RECORD_PLAINTEXT = 2;

/**
 * Rekey defaults, far inside RFC 8446 §5.5 (AES-GCM: 2^24.5 full-size
 * records per key; about 2^38 bytes). A direction rekeys after whichever
 * limit it reaches first; the server announces both in `server_hello`.
 */
export const DEFAULT_REKEY_RECORDS = 2 ** 20;
export const DEFAULT_REKEY_BYTES = 2 ** 32;
/** Bounds a client accepts for the announced rekey limits. */
export const MAX_REKEY_RECORDS = 2 ** 24;
export const MAX_REKEY_BYTES = 2 ** 36;

/**
 * Records per direction per connection. The nonce is a 64-bit counter; we
 * stop at 2^53 − 1 (exact in a JavaScript number) and fail closed, so the
 * counter can never wrap.
 */
export const MAX_RECORDS = Number.MAX_SAFE_INTEGER;

/** User names: ASCII lowercase letter, then 1–31 of [a-z0-9_-]. */
export const USER_NAME_RE = /^[a-z][a-z0-9_-]{1,31}$/;
export const USER_NAME_MAX = 32;
/**
 * Text bounds in bytes of UTF-8. They keep every login-phase record inside
 * MAX_FRAME_PRELOGIN: text has no control characters, so JSON escaping at
 * most doubles it (only `"` and `\\` are escaped).
 */
export const PASSWORD_FIELD_MAX = 1024;
export const ERROR_CODE_MAX = 64;
export const ERROR_TEXT_MAX = 512;
export const REASON_TEXT_MAX = 256;

/** Room names: 1–32 of [a-z0-9_-], starting with a letter or digit. */
export const ROOM_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
export const ROOM_NAME_MAX = 32;
/** The text of one chat message, in bytes of UTF-8 (docs/DESIGN.md §7: at most 4 KiB). */
export const MESSAGE_TEXT_MAX = 4096;
/** Items in a list field (members of a room, rooms on a server). */
export const MAX_LIST = 1000;
/**
 * An away text (`away`, PROTOCOL.md §7.1), in bytes of UTF-8: a status line
 * ("at lunch, back at 2"), not a message.
 */
export const AWAY_TEXT_MAX = 64;
/**
 * Away entries in one `members` answer. With 1000 user names (about 35 KiB
 * of JSON) and 100 entries of at most 32 + 2 × 64 bytes plus their keys
 * (about 19 KiB), the answer stays inside MAX_FRAME.
 */
export const AWAY_LIST_MAX = 100;
/**
 * Rows of each list in a `sessions` answer (PROTOCOL.md §7.8): live sessions
 * and tickets, newest first. A user's live sessions are already capped
 * (serve --max-connections-per-user, 16); tickets are not (one per password
 * login until it expires), so the answer names how many more there are.
 * 100 rows of each keep one answer near 25 KiB, far inside MAX_FRAME.
 */
export const SESSION_LIST_MAX = 100;
/** A peer's address as the server shows it (an IPv6 address is at most 45 characters). */
export const SOURCE_TEXT_MAX = 64;

// Room moderation (PROTOCOL.md §7.9).
/** A room's topic: at most this many bytes of UTF-8 (`topic.text`, `room.topic`, `room_changed.text`)… */
export const TOPIC_BYTES_MAX = 1024;
/** …and at most this many code points, so it fits a line on screen. */
export const TOPIC_CODE_POINTS_MAX = 256;
/**
 * A room's operators: at most this many, so that the largest `room` answer —
 * MAX_LIST users, this many ops and the longest topic — fits one record of
 * MAX_FRAME (1000 ops beside 1000 users would not).
 */
export const ROOM_OPS_MAX = 100;
/** The longest `room_changed.action` name. */
export const ROOM_ACTION_MAX = 16;
/**
 * Devices (PROTOCOL.md §7.11): a device's name in bytes of UTF-8 (a label
 * such as "work laptop"), and the rows of a `devices` answer: every device
 * the server keeps for the account, active or revoked (the server keeps at
 * most this many), and the enrollments waiting for approval (the server
 * keeps at most this many per account).
 */
export const DEVICE_NAME_MAX = 64;
export const DEVICE_LIST_MAX = 64;
export const DEVICE_PENDING_MAX = 3;
/**
 * Read markers (PROTOCOL.md §7.14): rooms in one `read` request (more than
 * the 32 rooms a connection may be in, so one request carries them all),
 * and rooms in one `unread_list` answer (a user's markers are capped by the
 * server; 256 rows of at most 32 + 3 × 16 bytes and their keys stay near
 * 25 KiB, far inside MAX_FRAME).
 */
export const READ_LIST_MAX = 64;
export const UNREAD_LIST_MAX = 256;

/**
 * The log's state and proofs (PROTOCOL.md §7.13): a log origin is a
 * signed-note key name of at most this many bytes; a `log_proof` asks for
 * at most LOG_LEAVES_MAX inclusion proofs; a proof has at most
 * PROOF_HASHES_MAX hashes (a tree of 2^53 lines needs 53 for an inclusion
 * proof and fewer than twice that for a consistency proof).
 */
export const LOG_ORIGIN_MAX = 255;
export const LOG_LEAVES_MAX = 16;
export const PROOF_HASHES_MAX = 128;
/** Witness cosignatures one `log_state.cosigned` carries (PROTOCOL.md §7.13): a server submits to at most this many witnesses. */
export const LOG_COSIGNATURES_MAX = 16;
/**
 * The most bytes of transcript lines one `log_state` carries as `entry`
 * (PROTOCOL.md §7.13), and so the longest line it can carry: 16 KiB, which
 * holds the longest line a message entry can have (a 4096-byte text that
 * JSON at worst doubles, and under 512 bytes of other members: 8704 bytes)
 * and 16 lines of a typical message's size. In base64 that is at most 21848
 * bytes, beside at most 16 inclusion proofs of 53 hashes (about 40 KiB), so
 * the answer stays inside MAX_FRAME.
 */
export const LOG_ENTRY_BYTES_MAX = 16384;
