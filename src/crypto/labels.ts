/**
 * Domain-separation labels: every HKDF info string, hash prefix and signature
 * context in securechat, in one place. docs/PROTOCOL.md §3 lists them; a label
 * never changes within a protocol version. All are ASCII; where a label
 * prefixes variable data it is followed by one 0x00 byte (see PROTOCOL.md).
 */
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

export const PROTOCOL_NAME = "securechat/1";

/** Initial value of the handshake hash: h0 = SHA-256(HASH_INIT). */
export const HASH_INIT = enc("securechat/1 handshake");
/** Context of the server's host-key signature over the handshake hash. */
export const SIG_SERVER_HANDSHAKE = enc("securechat/1 server handshake signature");
/** Context of the client's identity-key signature over (hash ‖ challenge). */
export const SIG_CLIENT_AUTH = enc("securechat/1 client auth signature");

/** HKDF-Expand info for the client-to-server record key. */
export const KDF_KEY_C2S = enc("securechat/1 key c2s");
/** HKDF-Expand info for the server-to-client record key. */
export const KDF_KEY_S2C = enc("securechat/1 key s2c");
/** HKDF-Expand info for the public session id. */
export const KDF_SESSION_ID = enc("securechat/1 session id");
/** HKDF-Expand info for the one-way record-key update (Noise Rekey()-style). */
export const KDF_REKEY = enc("securechat/1 rekey");

/** Transcript entry hash prefix (docs/TRANSCRIPT.md §3). */
export const TRANSCRIPT_ENTRY = enc("securechat/1 transcript entry");
/** Context of the host-key signature in transcript checkpoints (docs/TRANSCRIPT.md §4). */
export const TRANSCRIPT_CHECKPOINT = enc("securechat/1 transcript checkpoint");
/** HKDF info wrapping a transcript file key to an auditor's X25519 key (docs/TRANSCRIPT.md §5). */
export const TRANSCRIPT_SEAL_KEY = enc("securechat/1 transcript seal key");

/** Hash prefix of a device enrollment code (PROTOCOL.md §7.11). */
export const DEVICE_CODE = enc("securechat/1 device code");
/** Context of an enrolled device's signature approving a new device key (PROTOCOL.md §7.11). */
export const SIG_DEVICE_ENROLL = enc("securechat/1 device enrollment signature");
