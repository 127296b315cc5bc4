/**
 * What the handshake hands the secure channel (docs/PROTOCOL.md §2, §3):
 * the session's keys and the rekey limits the server announced. Both
 * src/protocol/handshake.ts and src/protocol/channel.ts import these, and
 * neither imports the other.
 */

/** When a direction updates its record key (PROTOCOL.md §3.3). */
export interface RekeyPolicy {
  /** Update the key after this many records under it. */
  records: number;
  /** …or after this many plaintext bytes under it, whichever comes first. */
  bytes: number;
}

/** What both ends hold once the handshake hash and keys exist. */
export interface SessionKeys {
  /** H, the handshake hash. */
  handshakeHash: Uint8Array;
  challenge: Uint8Array;
  hostKey: Uint8Array;
  sessionId: Uint8Array;
  /** Client-to-server record key. */
  c2s: Uint8Array;
  /** Server-to-client record key. */
  s2c: Uint8Array;
  rekey: RekeyPolicy;
}
