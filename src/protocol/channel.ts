/**
 * The secure channel (docs/PROTOCOL.md §3): after the handshake, every frame
 * body in a direction is an AES-256-GCM record
 *
 *   body  = AES-256-GCM-Seal(key_i, nonce(n), plaintext, aad = header)
 *   nonce(n) = 0x00000000 ‖ uint64be(n)
 *
 * where n counts the records sent in that direction since the handshake
 * (never sent, never reset, never wrapped) and key_i is the direction's key
 * after i one-way updates. A direction updates its key after a record brings
 * the records or plaintext bytes under the current key to the limits the
 * server announced:
 *
 *   key_{i+1} = HKDF-Expand(key_i, "securechat/1 rekey", 32)
 *
 * and wipes key_i, so a key captured later does not open earlier records.
 * Both ends apply the same rule to the same records, so no message is needed.
 * The first failure to open a record is fatal and sticky.
 */
import { SecureChatError } from "../errors.ts";
import { aesGcmOpen, aesGcmSealFrame, hkdfExpand, labels, wipe } from "../crypto/index.ts";
import { frameHeader } from "./framing.ts";
import { type Message, type MessageType, decodeMessage, encodeMessage, joinRecordPayload, splitRecordPayload } from "./messages.ts";
import { FRAME_HEADER_LENGTH, MAX_FRAME, MAX_RECORDS, MIN_RECORD_PLAINTEXT, RECORD_TAG_LENGTH } from "./limits.ts";
import type { RekeyPolicy, SessionKeys } from "./session.ts";

/** The one-way key update of PROTOCOL.md §3.3. */
export function nextRecordKey(key: Uint8Array): Uint8Array {
  return hkdfExpand(key, labels.KDF_REKEY, 32);
}

export function recordNonce(n: number): Uint8Array {
  return writeRecordNonce(n, new Uint8Array(12));
}

/** Writes nonce(n) = 0x00000000 ‖ uint64be(n) into `out` (12 bytes) and returns it. */
function writeRecordNonce(n: number, out: Uint8Array): Uint8Array {
  const hi = Math.floor(n / 2 ** 32);
  const lo = n >>> 0;
  out[0] = out[1] = out[2] = out[3] = 0;
  out[4] = hi >>> 24;
  out[5] = (hi >>> 16) & 0xff;
  out[6] = (hi >>> 8) & 0xff;
  out[7] = hi & 0xff;
  out[8] = lo >>> 24;
  out[9] = (lo >>> 16) & 0xff;
  out[10] = (lo >>> 8) & 0xff;
  out[11] = lo & 0xff;
  return out;
}

const NONCE_SCRATCH = new Uint8Array(12);

/**
 * One direction's key, counter and rekey state: the base of the sealer and
 * the opener (a base class rather than a member object: one object fewer per
 * direction for every connection the server holds).
 */
class DirectionState {
  #key: Uint8Array | null;
  #count = 0;
  #epochRecords = 0;
  #epochBytes = 0;
  #epoch = 0;

  constructor(
    key: Uint8Array,
    readonly policy: RekeyPolicy,
  ) {
    if (key.length !== 32) throw new SecureChatError("channel_key_length", "channel: key must be 32 bytes");
    if (!(policy.records >= 1 && policy.bytes >= 1)) {
      throw new SecureChatError("channel_policy", "channel: rekey limits must be at least 1");
    }
    this.#key = key.slice();
  }

  /** Records processed in this direction so far. */
  get count(): number {
    return this.#count;
  }

  /** How many times the key has been updated. */
  get epoch(): number {
    return this.#epoch;
  }

  get closed(): boolean {
    return this.#key === null;
  }

  /** The current key; throws once the direction is closed or its counter is used up. */
  protected key(): Uint8Array {
    if (this.#key === null) throw new SecureChatError("channel_closed", "channel: closed after an earlier failure");
    if (this.#count >= MAX_RECORDS) throw new SecureChatError("channel_exhausted", "channel: record counter exhausted");
    return this.#key;
  }

  /**
   * The next record's nonce, written into one buffer shared by every
   * channel: the cipher copies it before anything else can run, and one
   * buffer per direction would cost every idle connection two more arrays.
   */
  protected nonce(): Uint8Array {
    return writeRecordNonce(this.#count, NONCE_SCRATCH);
  }

  /** Called once per record sealed or opened. */
  protected advance(plaintextLength: number): void {
    this.#count += 1;
    this.#epochRecords += 1;
    this.#epochBytes += plaintextLength;
    if (this.#epochRecords >= this.policy.records || this.#epochBytes >= this.policy.bytes) {
      const old = this.#key!;
      this.#key = nextRecordKey(old);
      wipe(old);
      this.#epoch += 1;
      this.#epochRecords = 0;
      this.#epochBytes = 0;
    }
  }

  /** Wipes the key; the direction stays closed. */
  close(): void {
    wipe(this.#key ?? undefined);
    this.#key = null;
  }
}

/** Seals plaintexts into complete frames (header ‖ ciphertext ‖ tag). */
export class RecordSealer extends DirectionState {
  constructor(
    key: Uint8Array,
    policy: RekeyPolicy,
    public maxFrame: number = MAX_FRAME,
  ) {
    super(key, policy);
  }

  seal(plaintext: Uint8Array): Uint8Array {
    const frame = new Uint8Array(FRAME_HEADER_LENGTH + plaintext.length + RECORD_TAG_LENGTH);
    this.sealInto(plaintext, frame);
    return frame;
  }

  /**
   * Seals into `out` at `offset` and returns the frame's length. For a
   * caller that reuses one buffer for many records: it must copy whatever of
   * the frame it keeps beyond its next use of `out`.
   */
  sealInto(plaintext: Uint8Array, out: Uint8Array, offset = 0): number {
    if (plaintext.length < MIN_RECORD_PLAINTEXT) {
      throw new SecureChatError("record_empty", `record: plaintext of ${plaintext.length} bytes is too short`);
    }
    const length = plaintext.length + RECORD_TAG_LENGTH;
    if (length > this.maxFrame) {
      throw new SecureChatError("frame_too_large", `frame: length ${length} exceeds ${this.maxFrame}`);
    }
    const n = aesGcmSealFrame(this.key(), this.nonce(), plaintext, frameHeader(length), out, offset);
    this.advance(plaintext.length);
    return n;
  }
}

/** Opens frame bodies from the peer, in order. Fails closed and stays closed. */
export class RecordOpener extends DirectionState {
  constructor(key: Uint8Array, policy: RekeyPolicy) {
    super(key, policy);
  }

  /** `body` is a frame body as the decoder returns it; the header is rebuilt as AAD. */
  open(body: Uint8Array): Uint8Array {
    const key = this.key();
    let plaintext: Uint8Array;
    try {
      plaintext = aesGcmOpen(key, this.nonce(), body, frameHeader(body.length));
    } catch (cause) {
      this.close();
      throw new SecureChatError("record_auth_failed", `record: record ${this.count} failed to authenticate`, { cause });
    }
    if (plaintext.length < MIN_RECORD_PLAINTEXT) {
      this.close();
      throw new SecureChatError("record_empty", `record: plaintext of ${plaintext.length} bytes is too short`);
    }
    this.advance(plaintext.length);
    return plaintext;
  }
}

/**
 * Both directions of an established session, speaking messages: a record's
 * plaintext is one or more JSON messages joined by LF (PROTOCOL.md §3.4).
 */
export class SecureChannel {
  readonly sealer: RecordSealer;
  readonly opener: RecordOpener;

  constructor(keys: Pick<SessionKeys, "c2s" | "s2c" | "rekey">, role: "client" | "server", maxFrame: number = MAX_FRAME) {
    const [send, recv] = role === "client" ? [keys.c2s, keys.s2c] : [keys.s2c, keys.c2s];
    this.sealer = new RecordSealer(send, keys.rekey, maxFrame);
    this.opener = new RecordOpener(recv, keys.rekey);
  }

  /** Seals messages, or their pre-encoded JSON texts, into one frame. */
  seal(messages: readonly (Message | string)[]): Uint8Array {
    return this.sealer.seal(joinRecordPayload(messages.map((m) => (typeof m === "string" ? m : encodeMessage(m)))));
  }

  /** Opens one frame body and validates every message in it. */
  open<T extends MessageType>(body: Uint8Array, allowed?: readonly T[]): Message<T>[] {
    const plaintext = this.opener.open(body);
    return splitRecordPayload(plaintext).map((part) => decodeMessage(part, allowed));
  }

  /**
   * open() for a record that may carry a secret (a login with its password
   * or ticket): the plaintext is wiped once decoded, whether or not it
   * decodes. decodeMessage copies everything it keeps.
   */
  openSecret<T extends MessageType>(body: Uint8Array, allowed?: readonly T[]): Message<T>[] {
    const plaintext = this.opener.open(body);
    try {
      return splitRecordPayload(plaintext).map((part) => decodeMessage(part, allowed));
    } finally {
      wipe(plaintext);
    }
  }

  /** seal() for messages that carry a secret (a welcome with its ticket): the plaintext is wiped once sealed. */
  sealSecret(messages: readonly (Message | string)[]): Uint8Array {
    const plaintext = joinRecordPayload(messages.map((m) => (typeof m === "string" ? m : encodeMessage(m))));
    try {
      return this.sealer.seal(plaintext);
    } finally {
      wipe(plaintext);
    }
  }

  close(): void {
    this.sealer.close();
    this.opener.close();
  }
}
