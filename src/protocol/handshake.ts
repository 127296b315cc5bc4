/**
 * The handshake (docs/PROTOCOL.md §4) as two pure state machines: no
 * sockets, no clocks; the driver in src/net/ moves their messages.
 *
 *   1. C → S  client_hello   {version, e: E_c, nonce: N_c}
 *   2. S → C  server_hello   {version, e: E_s, challenge, host_key, rekey_records, rekey_bytes, sig}
 *   3. C → S  (first record) register | login, signed over (H ‖ challenge)
 *
 *   h0 = SHA-256("securechat/1 handshake")
 *   h1 = SHA-256(h0 ‖ u32(version) ‖ E_c ‖ N_c)
 *   H  = SHA-256(h1 ‖ u32(version) ‖ E_s ‖ challenge ‖ host_key ‖ u64(rekey_records) ‖ u64(rekey_bytes))
 *   sig = Ed25519(host_sk, "securechat/1 server handshake signature" ‖ 0x00 ‖ H)
 *   ss  = X25519(e, E_peer)                            (all-zero → abort)
 *   prk = HKDF-Extract(salt = H, ikm = ss)
 *   k_c2s = HKDF-Expand(prk, "securechat/1 key c2s", 32)
 *   k_s2c = HKDF-Expand(prk, "securechat/1 key s2c", 32)
 *   session_id = HKDF-Expand(prk, "securechat/1 session id", 16)
 *   auth_sig = Ed25519(identity_sk, "securechat/1 client auth signature" ‖ 0x00 ‖ H ‖ challenge)
 *
 * This is SIGMA's "sign the transcript" half (as in TLS 1.3 CertificateVerify):
 * the host signature covers both ephemerals, so a man in the middle who
 * substitutes E_s must forge it; the client's identity signature covers H,
 * which binds it to this session's keys, so a captured login cannot be
 * replayed into another session. Any message other than the one the state
 * expects is fatal, and a failed machine stays failed.
 */
import { concat, u32be, u64be } from "../bytes.ts";
import { SecureChatError } from "../errors.ts";
import {
  type Ed25519KeyPair,
  type X25519KeyPair,
  ed25519Sign,
  ed25519Verify,
  hkdfExpand,
  hkdfExtract,
  labels,
  randomBytes,
  sha256,
  wipe,
  x25519,
  x25519Generate,
} from "../crypto/index.ts";
import { DEFAULT_REKEY_BYTES, DEFAULT_REKEY_RECORDS, MAX_REKEY_BYTES, MAX_REKEY_RECORDS, PROTOCOL_VERSION } from "./limits.ts";
import type { CheckName, ClientHello, Enroll, Login, Message, Register, ServerHello } from "./messages.ts";
import type { RekeyPolicy, SessionKeys } from "./session.ts";

const NUL = new Uint8Array([0]);

export const CHALLENGE_LENGTH = 32;
export const NONCE_LENGTH = 32;
export const SESSION_ID_LENGTH = 16;

function fail(code: string, message: string, cause?: unknown): never {
  throw new SecureChatError(code, `handshake: ${message}`, cause === undefined ? undefined : { cause });
}

export function initialHash(): Uint8Array {
  return sha256(labels.HASH_INIT);
}

export function hashClientHello(h0: Uint8Array, m: ClientHello): Uint8Array {
  return sha256(h0, u32be(m.version), m.e, m.nonce);
}

export function hashServerHello(h1: Uint8Array, m: Omit<ServerHello, "sig">): Uint8Array {
  return sha256(h1, u32be(m.version), m.e, m.challenge, m.host_key, u64be(BigInt(m.rekey_records)), u64be(BigInt(m.rekey_bytes)));
}

export function serverSignatureInput(h: Uint8Array): Uint8Array {
  return concat(labels.SIG_SERVER_HANDSHAKE, NUL, h);
}

export function clientAuthSignatureInput(h: Uint8Array, challenge: Uint8Array): Uint8Array {
  return concat(labels.SIG_CLIENT_AUTH, NUL, h, challenge);
}

/** The key schedule; wipes the shared secret and PRK. */
export function deriveSessionKeys(shared: Uint8Array, h: Uint8Array): Pick<SessionKeys, "c2s" | "s2c" | "sessionId"> {
  const prk = hkdfExtract(h, shared);
  try {
    return {
      c2s: hkdfExpand(prk, labels.KDF_KEY_C2S, 32),
      s2c: hkdfExpand(prk, labels.KDF_KEY_S2C, 32),
      sessionId: hkdfExpand(prk, labels.KDF_SESSION_ID, SESSION_ID_LENGTH),
    };
  } finally {
    wipe(prk, shared);
  }
}

/** Signs (H ‖ challenge) with the user's identity key: the proof in register and login. */
export function signClientAuth(identitySecret: Uint8Array, keys: Pick<SessionKeys, "handshakeHash" | "challenge">): Uint8Array {
  return ed25519Sign(identitySecret, clientAuthSignatureInput(keys.handshakeHash, keys.challenge));
}

export function verifyClientAuth(identityPublic: Uint8Array, keys: Pick<SessionKeys, "handshakeHash" | "challenge">, sig: Uint8Array): boolean {
  return ed25519Verify(identityPublic, clientAuthSignatureInput(keys.handshakeHash, keys.challenge), sig);
}

function checkRekeyPolicy(p: RekeyPolicy): void {
  if (p.records < 1 || p.records > MAX_REKEY_RECORDS || p.bytes < 1 || p.bytes > MAX_REKEY_BYTES) {
    fail("handshake_parameters", `rekey limits ${p.records} records / ${p.bytes} bytes are outside [1, ${MAX_REKEY_RECORDS}] / [1, ${MAX_REKEY_BYTES}]`);
  }
}

/** The machines wipe their ephemeral secret; a caller's copy is left alone. */
function copyKeyPair(k: X25519KeyPair): X25519KeyPair {
  return { secretKey: k.secretKey.slice(), publicKey: k.publicKey.slice() };
}

function unexpected(state: string, m: Message): never {
  if (m.type === "error") fail("handshake_refused", `peer refused: ${m.code}: ${m.message}`);
  fail("handshake_unexpected", `${m.type} is not allowed in state ${state}`);
}

export type ClientState = "initial" | "sent_hello" | "established" | "failed";

export class ClientHandshake {
  #state: ClientState = "initial";
  #ephemeral: X25519KeyPair | null;
  readonly #nonce: Uint8Array;
  #h1: Uint8Array | null = null;

  /** `ephemeral` and `nonce` are for known-answer tests; by default they are fresh. */
  constructor(opts: { ephemeral?: X25519KeyPair; nonce?: Uint8Array } = {}) {
    this.#ephemeral = opts.ephemeral ? copyKeyPair(opts.ephemeral) : x25519Generate();
    this.#nonce = opts.nonce ?? randomBytes(NONCE_LENGTH);
  }

  get state(): ClientState {
    return this.#state;
  }

  /** Step 1: the client_hello to send. */
  hello(): ClientHello {
    this.#expect("initial");
    const msg: ClientHello = { type: "client_hello", version: PROTOCOL_VERSION, e: this.#ephemeral!.publicKey, nonce: this.#nonce };
    this.#h1 = hashClientHello(initialHash(), msg);
    this.#state = "sent_hello";
    return msg;
  }

  /**
   * Step 2: checks server_hello and derives the keys. The caller MUST then
   * check `hostKey` against its pinned key before it sends anything that
   * reveals a secret (PROTOCOL.md §4.4 step 7).
   */
  receive(m: Message): SessionKeys {
    this.#expect("sent_hello");
    try {
      if (m.type !== "server_hello") unexpected(this.#state, m);
      if (m.version !== PROTOCOL_VERSION) fail("handshake_version", `server chose version ${m.version}, expected ${PROTOCOL_VERSION}`);
      const rekey = { records: m.rekey_records, bytes: m.rekey_bytes };
      checkRekeyPolicy(rekey);
      const h = hashServerHello(this.#h1!, m);
      if (!ed25519Verify(m.host_key, serverSignatureInput(h), m.sig)) {
        fail("handshake_bad_signature", "server's host-key signature does not verify");
      }
      const shared = x25519(this.#ephemeral!.secretKey, m.e);
      const derived = deriveSessionKeys(shared, h);
      this.#state = "established";
      return { handshakeHash: h, challenge: m.challenge, hostKey: m.host_key, rekey, ...derived };
    } catch (e) {
      this.#state = "failed";
      throw e;
    } finally {
      this.#forget();
    }
  }

  #forget(): void {
    wipe(this.#ephemeral?.secretKey);
    this.#ephemeral = null;
  }

  #expect(state: ClientState): void {
    if (this.#state !== state) {
      const was = this.#state;
      this.#state = "failed";
      this.#forget();
      fail("handshake_state", `client is in state ${was}, not ${state}`);
    }
  }
}

export type ServerState = "await_hello" | "await_auth" | "checking" | "done" | "failed";

export interface ServerHandshakeOptions {
  hostKey: Ed25519KeyPair;
  /** Signs with the host key (a server passes one ed25519Signer for all its handshakes); by default ed25519Sign. */
  sign?: (message: Uint8Array) => Uint8Array;
  rekey?: RekeyPolicy;
  /** For known-answer tests; fresh by default. */
  ephemeral?: X25519KeyPair;
  challenge?: Uint8Array;
}

export class ServerHandshake {
  #state: ServerState = "await_hello";
  readonly #hostKey: Ed25519KeyPair;
  readonly #sign: (message: Uint8Array) => Uint8Array;
  readonly #rekey: RekeyPolicy;
  #ephemeral: X25519KeyPair | null;
  readonly #challenge: Uint8Array;
  #keys: SessionKeys | null = null;

  constructor(opts: ServerHandshakeOptions) {
    this.#hostKey = opts.hostKey;
    this.#sign = opts.sign ?? ((message) => ed25519Sign(opts.hostKey.secretKey, message));
    this.#rekey = opts.rekey ?? { records: DEFAULT_REKEY_RECORDS, bytes: DEFAULT_REKEY_BYTES };
    checkRekeyPolicy(this.#rekey);
    this.#ephemeral = opts.ephemeral ? copyKeyPair(opts.ephemeral) : x25519Generate();
    this.#challenge = opts.challenge ?? randomBytes(CHALLENGE_LENGTH);
  }

  get state(): ServerState {
    return this.#state;
  }

  /** Step 2: answers client_hello; the keys exist from here on. */
  receiveHello(m: Message): { reply: ServerHello; keys: SessionKeys } {
    this.#expect("await_hello");
    try {
      if (m.type !== "client_hello") unexpected(this.#state, m);
      if (m.version !== PROTOCOL_VERSION) fail("handshake_version", `client offered version ${m.version}, this server speaks ${PROTOCOL_VERSION}`);
      // Validate before spending: the DH (and its low-order check) precedes the host signature.
      const shared = x25519(this.#ephemeral!.secretKey, m.e);
      const h1 = hashClientHello(initialHash(), m);
      const unsigned = {
        type: "server_hello" as const,
        version: PROTOCOL_VERSION,
        e: this.#ephemeral!.publicKey,
        challenge: this.#challenge,
        host_key: this.#hostKey.publicKey,
        rekey_records: this.#rekey.records,
        rekey_bytes: this.#rekey.bytes,
      };
      const h = hashServerHello(h1, unsigned);
      const sig = this.#sign(serverSignatureInput(h));
      const keys: SessionKeys = {
        handshakeHash: h,
        challenge: this.#challenge,
        hostKey: this.#hostKey.publicKey,
        rekey: this.#rekey,
        ...deriveSessionKeys(shared, h),
      };
      this.#keys = keys;
      this.#state = "await_auth";
      return { reply: { ...unsigned, sig }, keys };
    } catch (e) {
      this.#state = "failed";
      throw e;
    } finally {
      this.#forget();
    }
  }

  /**
   * Step 3: accepts a login-phase record, which must be register, login,
   * enroll or check_name (answered like a refused attempt: `retry()` follows).
   * For register the signature is checked here against the key the message
   * carries (proof of possession); for login the caller looks up the
   * account's (or ticket's) key and calls `verifyClientAuth` — the account
   * store is not the handshake's business. The caller then calls
   * `complete()` on success, or `retry()` to accept another attempt under
   * the same handshake hash and challenge (PROTOCOL.md §5.1).
   */
  receiveAuth(m: Message): Register | Login | CheckName | Enroll {
    this.#expect("await_auth");
    try {
      if (m.type !== "register" && m.type !== "login" && m.type !== "check_name" && m.type !== "enroll") unexpected(this.#state, m);
      if (m.type === "register" && !verifyClientAuth(m.identity_key, this.#keys!, m.sig)) {
        fail("auth_bad_signature", "identity signature does not verify");
      }
      // An enroll proves possession of the new device key as a register does of its identity key (PROTOCOL.md §7.11).
      if (m.type === "enroll" && !verifyClientAuth(m.device_key, this.#keys!, m.sig)) {
        fail("auth_bad_signature", "device key signature does not verify");
      }
      this.#state = "checking";
      return m;
    } catch (e) {
      this.#state = "failed";
      throw e;
    }
  }

  /** The attempt succeeded: the session is authenticated. */
  complete(): void {
    this.#expect("checking");
    this.#state = "done";
  }

  /** The attempt failed and the server allows another. */
  retry(): void {
    this.#expect("checking");
    this.#state = "await_auth";
  }

  #forget(): void {
    wipe(this.#ephemeral?.secretKey);
    this.#ephemeral = null;
  }

  #expect(state: ServerState): void {
    if (this.#state !== state) {
      const was = this.#state;
      this.#state = "failed";
      this.#forget();
      fail("handshake_state", `server is in state ${was}, not ${state}`);
    }
  }
}
