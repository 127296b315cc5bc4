/**
 * Known-answer vectors for the securechat/1 wire protocol (docs/PROTOCOL.md
 * §11). Runs one complete handshake and seven records each way (among them a
 * short chat exchange, §7) between the project's
 * own ClientHandshake / ServerHandshake / SecureChannel, from fixed inputs,
 * and records every intermediate value as hex; adds the two other forms the
 * client's first record can take (register, and a login with a ticket), and
 * a list of negative cases with the error code each must produce.
 *
 *   bun run scripts/gen-protocol-vectors.ts   → test/vectors/protocol/handshake.json
 *
 * The output is a pure function of the inputs below (Ed25519 signatures and
 * AES-GCM are deterministic), so the file is stable; test/protocol/vectors.test.ts
 * rebuilds it in memory with `buildProtocolVectors` and compares. Any change to
 * this output is a wire-format change (docs/DESIGN.md §10).
 *
 * The secret inputs are nothing-up-my-sleeve values:
 * SHA-256("securechat/1 test vector: <name>") for each <name> below.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { concat, fromHex, toHex, utf8 } from "../src/bytes.ts";
import {
  aesGcmSeal,
  ed25519Generate,
  ed25519Sign,
  hkdfExtract,
  x25519,
  x25519Generate,
} from "../src/crypto/index.ts";
import { RecordSealer, SecureChannel, nextRecordKey, recordNonce } from "../src/protocol/channel.ts";
import { encodeFrame, frameHeader } from "../src/protocol/framing.ts";
import {
  ClientHandshake,
  ServerHandshake,
  clientAuthSignatureInput,
  hashClientHello,
  hashServerHello,
  initialHash,
  serverSignatureInput,
  signClientAuth,
  verifyClientAuth,
} from "../src/protocol/handshake.ts";
import type { SessionKeys } from "../src/protocol/session.ts";
import { ERROR_TEXT_MAX, MAX_FRAME, MAX_FRAME_PRELOGIN, MAX_REKEY_RECORDS, PROTOCOL_VERSION } from "../src/protocol/limits.ts";
import {
  type ClientHello,
  type Message,
  type ServerHello,
  decodeMessage,
  encodeMessage,
  encodeMessageBytes,
  joinRecordPayload,
} from "../src/protocol/messages.ts";

/** Where the committed vectors live, relative to the repository root. */
export const VECTORS_PATH = "test/vectors/protocol/handshake.json";

/** Fixed inputs: SHA-256("securechat/1 test vector: <name>"). */
export const FIXED = {
  client_ephemeral_secret: "defc60bd087eceaa0b71268a5b9f1fc46fdca781ced170b80d17d0953ea2040e", // "client ephemeral secret"
  client_nonce: "61be3c1f7cb52408115f614126dc7195dd244f1e7bc2a48ec221c843106de621", // "client nonce"
  server_ephemeral_secret: "f6f2171cb6ad82866e932b1822854fb2e8fa71c920577df7a6bb7c09e7d3f696", // "server ephemeral secret"
  challenge: "c15e573c5fcf44e3d8658e8d463c6e398b8ff268f06e2c867f6cb49f848b9df1", // "challenge"
  host_key_seed: "1b3fdcaf308ecb0108cc0d74dd8ef8234d9c958bec6fa51eb6adba0ee6b19485", // "host key seed"
  identity_key_seed: "f14109191524a4bf1d21917f61310c1a8962605110a205e8c5d2990534ccac81", // "identity key seed"
  ticket_key_seed: "9ad178431b24f0cbbceacd1f87913103e4cc9cfb042b3f32c9958565c226f6a9", // "ticket key seed"
  ticket: "deb9ef155703cee360c54066d3366da829081d6994b46df49aeefec3881981b9", // "ticket"
  user: "alice",
  password: "correct horse battery staple",
  // 2026-01-01T08:00:00Z in milliseconds since the Unix epoch: issued at midnight with the default 8 h lifetime.
  ticket_expires: 1_767_254_400_000,
  // Small enough that both rekey triggers show up within five records.
  rekey_records: 2,
  rekey_bytes: 4096,
} as const;

/**
 * An X25519 public key of order 8 (on the libsodium / RFC 7748 §6.1 list of
 * points whose shared secret with any clamped scalar is all zero).
 */
export const LOW_ORDER_POINT = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800";

const CODE = "test_vector";

/** Chat timestamps: 2026-01-01T00:00:00Z plus a few seconds, in milliseconds since the Unix epoch. */
const T0 = 1_767_225_600_000;

/**
 * The messages each direction carries after the first record (§4.6–4.7).
 * Records 1–3 exercise the record layer (coalescing, non-ASCII text, both
 * rekey triggers) and are not a meaningful conversation. Records 4 and 5 are
 * a short chat exchange (§7), as the reference server would answer it when
 * bob is already in "lobby" and has said two things: a join answered by one
 * coalesced record (room, the history, history_end, the `recorded` notice),
 * then a say and a dm sent in one record and answered by one record (their
 * acks, in request order, and events from others). The last record each way
 * is the logout and its bye (§5.3).
 */
function laterMessages(direction: "c2s" | "s2c"): Message[][] {
  const err = (message: string): Message => ({ type: "error", code: CODE, message });
  if (direction === "c2s") {
    return [
      [err("c2s record 1: one message, the last under key epoch 0")],
      [err("c2s record 2: first of two messages in one record"), err("c2s record 2: second of two")],
      [err("c2s record 3: UTF-8 text, grüße ✓ 🔐")],
      [{ type: "join", room: "lobby" }],
      [
        { type: "say", id: 1, room: "lobby", text: 'hello bob — "grüße" \\o/', cid: "c2VjdXJlY2hhdCBjaWQgMQ" },
        { type: "dm", id: 2, to: "bob", text: "psst 🔐", action: true },
      ],
      [{ type: "logout" }],
    ];
  }
  // Text is at most ERROR_TEXT_MAX bytes, so the byte trigger needs several messages in one record.
  const big = (i: number) => err(`s2c record 2: message ${i} of 8 in one record of more than rekey_bytes plaintext bytes `.padEnd(ERROR_TEXT_MAX, "."));
  return [
    [err("s2c record 1: the last record under key epoch 0")],
    Array.from({ length: 8 }, (_, i) => big(i + 1)),
    [err("s2c record 3: first of two messages in one record"), err("s2c record 3: second of two")],
    [
      { type: "room", room: "lobby", users: ["alice", "bob"], seq: 2 },
      { type: "message", room: "lobby", seq: 1, ts: T0 + 1_000, from: "bob", text: "anyone here? ✓", history: true },
      { type: "message", room: "lobby", seq: 2, ts: T0 + 2_500, from: "bob", text: "waves", action: true, history: true },
      { type: "history_end", room: "lobby", count: 2 },
      { type: "notice", code: "recorded", text: "messages in lobby are recorded in the server's auditable transcript" },
    ],
    [
      { type: "ack", id: 1, seq: 3, ts: T0 + 5_000 },
      { type: "ack", id: 2, seq: 1, ts: T0 + 5_000 },
      { type: "message", room: "lobby", seq: 4, ts: T0 + 5_200, from: "bob", text: "hi alice" },
      { type: "joined", room: "lobby", user: "carol-x", ts: T0 + 5_300 },
    ],
    [{ type: "bye", reason: "logged out" }],
  ];
}

interface RecordVector {
  n: number;
  key_epoch: number;
  key: string;
  nonce: string;
  plaintext: string;
  frame: string;
  records_under_key: number;
  bytes_under_key: number;
  rekey_after: boolean;
}

interface NegativeVector {
  name: string;
  description: string;
  step: "frame" | "client_hello" | "server_hello" | "first_record" | "record";
  receiver: "client" | "server";
  frame_limit?: number;
  direction?: "c2s" | "s2c";
  after?: number;
  bytes: string;
  error: string;
}

function fail(what: string): never {
  throw new Error(`gen-protocol-vectors: ${what}`);
}

function same(a: Uint8Array, b: Uint8Array, what: string): void {
  if (toHex(a) !== toHex(b)) fail(`${what} differs between client and server`);
}

/** Tracks a direction's key schedule the way §3.3 states it, to label each record. */
class KeyTrack {
  key: Uint8Array;
  epoch = 0;
  records = 0;
  bytes = 0;
  constructor(
    initial: Uint8Array,
    readonly rekeyRecords: number,
    readonly rekeyBytes: number,
  ) {
    this.key = initial.slice();
  }
  /** Returns the counters after this record and whether the key is updated after it. */
  advance(plaintextLength: number): { records: number; bytes: number; rekey: boolean } {
    this.records += 1;
    this.bytes += plaintextLength;
    const out = { records: this.records, bytes: this.bytes, rekey: this.records >= this.rekeyRecords || this.bytes >= this.rekeyBytes };
    if (out.rekey) {
      this.key = nextRecordKey(this.key);
      this.epoch += 1;
      this.records = 0;
      this.bytes = 0;
    }
    return out;
  }
}

function flipBit(b: Uint8Array, index: number, bit = 0): Uint8Array {
  const out = b.slice();
  out[index] = out[index]! ^ (1 << bit);
  return out;
}

/** A frame of a cleartext JSON text, bypassing the encoder so malformed bodies can be written. */
function rawFrame(body: Uint8Array): string {
  return toHex(concat(frameHeader(body.length), body));
}

/** Builds the whole vector file as a plain JSON value, in a stable order. */
export function buildProtocolVectors() {
  const h = (s: string) => fromHex(s);
  const clientEphemeral = x25519Generate(h(FIXED.client_ephemeral_secret));
  const serverEphemeral = x25519Generate(h(FIXED.server_ephemeral_secret));
  const hostKey = ed25519Generate(h(FIXED.host_key_seed));
  const identity = ed25519Generate(h(FIXED.identity_key_seed));
  const ticketKey = ed25519Generate(h(FIXED.ticket_key_seed));
  const ticket = h(FIXED.ticket);
  const nonce = h(FIXED.client_nonce);
  const challenge = h(FIXED.challenge);
  const rekey = { records: FIXED.rekey_records, bytes: FIXED.rekey_bytes };

  // §4.2 client_hello.
  const client = new ClientHandshake({ ephemeral: clientEphemeral, nonce });
  const hello = client.hello();
  const helloJson = encodeMessage(hello);
  const helloFrame = encodeFrame(utf8(helloJson), MAX_FRAME_PRELOGIN);

  // §4.3 server_hello, from the client_hello as the server decodes it off the wire.
  const server = new ServerHandshake({ hostKey, rekey, ephemeral: serverEphemeral, challenge });
  const { reply, keys: serverKeys } = server.receiveHello(decodeMessage(utf8(helloJson), ["client_hello"]));
  const replyJson = encodeMessage(reply);
  const replyFrame = encodeFrame(utf8(replyJson), MAX_FRAME_PRELOGIN);

  // §4.4–4.5 on the client.
  const clientKeys = client.receive(decodeMessage(utf8(replyJson), ["server_hello", "error"]));
  same(clientKeys.handshakeHash, serverKeys.handshakeHash, "H");
  same(clientKeys.c2s, serverKeys.c2s, "c2s");
  same(clientKeys.s2c, serverKeys.s2c, "s2c");
  same(clientKeys.sessionId, serverKeys.sessionId, "session_id");

  // Intermediate values, recomputed with the same exported steps the machines use.
  const h0 = initialHash();
  const h1 = hashClientHello(h0, hello);
  const H = hashServerHello(h1, reply);
  same(H, clientKeys.handshakeHash, "H (recomputed)");
  const shared = x25519(clientEphemeral.secretKey, serverEphemeral.publicKey);
  same(shared, x25519(serverEphemeral.secretKey, clientEphemeral.publicKey), "shared secret");
  const prk = hkdfExtract(H, shared);

  // §4.6 the client's first record: login with the password, asking for a ticket bound to the ticket key.
  const authSig = signClientAuth(identity.secretKey, clientKeys);
  const login: Message = { type: "login", user: FIXED.user, sig: authSig, password: FIXED.password, ticket_key: ticketKey.publicKey };
  const loginJson = encodeMessage(login);

  // The other two forms c2s record 0 can take in this same handshake (§5.1): they are alternatives to
  // the login above, never sent with it (they use the same key and nonce).
  const register: Message = {
    type: "register",
    user: FIXED.user,
    identity_key: identity.publicKey,
    sig: authSig,
    password: FIXED.password,
    ticket_key: ticketKey.publicKey,
  };
  const ticketSig = signClientAuth(ticketKey.secretKey, clientKeys);
  const ticketLogin: Message = { type: "login", user: FIXED.user, sig: ticketSig, ticket };
  const alternative = (m: Message): { json: string; frame: string } => {
    const sealer = new RecordSealer(clientKeys.c2s, rekey, MAX_FRAME_PRELOGIN);
    const frame = sealer.seal(encodeMessageBytes(m));
    // A server in await_auth of this handshake accepts it (register: proof of possession checked here).
    const alt = new ServerHandshake({ hostKey, rekey, ephemeral: serverEphemeral, challenge });
    const altKeys = alt.receiveHello(decodeMessage(utf8(helloJson))).keys;
    const opened = new SecureChannel(altKeys, "server", MAX_FRAME_PRELOGIN).open(frame.subarray(4));
    if (opened.length !== 1) fail("alternative first record must hold one message");
    const auth = alt.receiveAuth(opened[0]!);
    if (auth.type === "login" && !verifyClientAuth(ticketKey.publicKey, altKeys, auth.sig)) fail("ticket login signature");
    alt.complete();
    return { json: encodeMessage(m), frame: toHex(frame) };
  };

  const clientChannel = new SecureChannel(clientKeys, "client", MAX_FRAME_PRELOGIN);
  const serverChannel = new SecureChannel(serverKeys, "server", MAX_FRAME_PRELOGIN);
  const welcome: Message = { type: "welcome", user: FIXED.user, session_id: serverKeys.sessionId, ticket, ticket_expires: FIXED.ticket_expires };

  const tracks = {
    c2s: new KeyTrack(clientKeys.c2s, rekey.records, rekey.bytes),
    s2c: new KeyTrack(clientKeys.s2c, rekey.records, rekey.bytes),
  };
  const records: { c2s: RecordVector[]; s2c: RecordVector[] } = { c2s: [], s2c: [] };

  const send = (direction: "c2s" | "s2c", messages: Message[]): void => {
    const [from, to] = direction === "c2s" ? [clientChannel, serverChannel] : [serverChannel, clientChannel];
    const track = tracks[direction];
    const n = from.sealer.count;
    if (from.sealer.epoch !== track.epoch) fail(`${direction} record ${n}: key epoch disagrees`);
    const plaintext = messages.map(encodeMessage).join("\n");
    const key = track.key.slice();
    const frame = from.seal(messages);
    // The frame must be exactly what §3.1 says, under the key §3.3 says.
    const pt = utf8(plaintext);
    const header = frameHeader(pt.length + 16);
    if (toHex(frame) !== toHex(concat(header, aesGcmSeal(key, recordNonce(n), pt, header)))) {
      fail(`${direction} record ${n} does not match its key and nonce`);
    }
    const opened = to.open(frame.subarray(4));
    if (opened.map((m) => encodeMessage(m)).join("\n") !== plaintext) fail(`${direction} record ${n} does not round-trip`);
    if (n === 0 && direction === "c2s") {
      if (opened.length !== 1) fail("the first record must hold one message");
      server.receiveAuth(opened[0]!);
      server.complete();
    }
    const after = track.advance(pt.length);
    records[direction].push({
      n,
      key_epoch: track.epoch - (after.rekey ? 1 : 0),
      key: toHex(key),
      nonce: toHex(recordNonce(n)),
      plaintext,
      frame: toHex(frame),
      records_under_key: after.records,
      bytes_under_key: after.bytes,
      rekey_after: after.rekey,
    });
  };

  // §2, §4.7: the client sends at most MAX_FRAME_PRELOGIN until welcome; then MAX_FRAME both ways.
  send("c2s", [login]);
  send("s2c", [welcome]);
  clientChannel.sealer.maxFrame = MAX_FRAME;
  serverChannel.sealer.maxFrame = MAX_FRAME;
  const c2sLater = laterMessages("c2s");
  const s2cLater = laterMessages("s2c");
  if (c2sLater.length !== s2cLater.length) fail("both directions must carry the same number of records");
  for (let i = 0; i < c2sLater.length; i++) {
    send("c2s", c2sLater[i]!);
    send("s2c", s2cLater[i]!);
  }

  const negative = buildNegatives({
    hello,
    helloJson,
    reply,
    c2s: clientKeys.c2s,
    s2c: clientKeys.s2c,
    records,
    hostSecret: hostKey.secretKey,
    identity,
    keys: clientKeys,
  });
  const registerVector = alternative(register);
  const ticketLoginVector = alternative(ticketLogin);

  return {
    about:
      "securechat/1 known-answer vectors (docs/PROTOCOL.md §11). Generated by scripts/gen-protocol-vectors.ts; do not edit by hand. Byte strings are lowercase hex; *_json and plaintext fields hold the exact UTF-8 text carried on the wire.",
    protocol_version: PROTOCOL_VERSION,
    inputs: {
      client_ephemeral_secret: FIXED.client_ephemeral_secret,
      client_ephemeral_public: toHex(clientEphemeral.publicKey),
      client_nonce: FIXED.client_nonce,
      server_ephemeral_secret: FIXED.server_ephemeral_secret,
      server_ephemeral_public: toHex(serverEphemeral.publicKey),
      challenge: FIXED.challenge,
      host_key_seed: FIXED.host_key_seed,
      host_key_public: toHex(hostKey.publicKey),
      identity_key_seed: FIXED.identity_key_seed,
      identity_key_public: toHex(identity.publicKey),
      ticket_key_seed: FIXED.ticket_key_seed,
      ticket_key_public: toHex(ticketKey.publicKey),
      ticket: FIXED.ticket,
      ticket_expires: FIXED.ticket_expires,
      user: FIXED.user,
      password: FIXED.password,
      rekey_records: FIXED.rekey_records,
      rekey_bytes: FIXED.rekey_bytes,
    },
    client_hello: {
      json: helloJson,
      frame: toHex(helloFrame),
    },
    handshake_hash: {
      h0: toHex(h0),
      h1: toHex(h1),
      H: toHex(H),
    },
    server_hello: {
      signature_input: toHex(serverSignatureInput(H)),
      sig: toHex(reply.sig),
      json: replyJson,
      frame: toHex(replyFrame),
    },
    key_schedule: {
      shared_secret: toHex(shared),
      prk: toHex(prk),
      c2s: toHex(clientKeys.c2s),
      s2c: toHex(clientKeys.s2c),
      session_id: toHex(clientKeys.sessionId),
    },
    client_auth: {
      signature_input: toHex(clientAuthSignatureInput(H, challenge)),
      sig: toHex(authSig),
      json: loginJson,
      frame: records.c2s[0]!.frame,
    },
    register: registerVector,
    ticket_login: {
      sig: toHex(ticketSig),
      ...ticketLoginVector,
    },
    records,
    negative,
  };
}

export type ProtocolVectors = ReturnType<typeof buildProtocolVectors>;

function buildNegatives(ctx: {
  hello: ClientHello;
  helloJson: string;
  reply: ServerHello;
  c2s: Uint8Array;
  s2c: Uint8Array;
  records: { c2s: RecordVector[]; s2c: RecordVector[] };
  hostSecret: Uint8Array;
  identity: ReturnType<typeof ed25519Generate>;
  keys: SessionKeys;
}): NegativeVector[] {
  const out: NegativeVector[] = [];
  const jsonFrame = (m: Message) => rawFrame(encodeMessageBytes(m));
  const { hello, helloJson, reply } = ctx;

  // §2 framing.
  const frame = (name: string, description: string, limit: number, bytes: string, error: string) =>
    out.push({ name, description, step: "frame", receiver: "server", frame_limit: limit, bytes, error });
  frame("frame_zero_length", "a header announcing a zero-length body", MAX_FRAME_PRELOGIN, "00000000", "frame_empty");
  frame("frame_prelogin_limit_plus_one", "a header announcing 4097 bytes before authentication, rejected before any body byte arrives", MAX_FRAME_PRELOGIN, "00001001", "frame_too_large");
  frame("frame_limit_plus_one", "a header announcing 65537 bytes after authentication", MAX_FRAME, "00010001", "frame_too_large");

  // §4.2 / §5 client_hello, as the server receives it.
  const toServer = (name: string, description: string, bytes: string, error: string) =>
    out.push({ name, description, step: "client_hello", receiver: "server", bytes, error });
  toServer("client_hello_version_2", "client_hello offering an unsupported version", jsonFrame({ ...hello, version: 2 }), "handshake_version");
  toServer("client_hello_unknown_field", "client_hello with an extra member", rawFrame(utf8(`${helloJson.slice(0, -1)},"extra":true}`)), "message_unknown_field");
  const eB64 = Buffer.from(hello.e).toString("base64");
  const ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  // The 43rd character of 32 bytes in base64 carries 4 data bits and 2 zero pad bits; set a pad bit.
  const lastChar = eB64[42]!;
  const badE = `${eB64.slice(0, 42)}${ALPHA[ALPHA.indexOf(lastChar) ^ 1]}=`;
  toServer(
    "client_hello_noncanonical_base64",
    "client_hello whose e has a non-zero pad bit in its base64 (decodes to the same bytes)",
    rawFrame(utf8(helloJson.replace(eB64, badE))),
    "message_invalid",
  );
  toServer("client_hello_missing_nonce", "client_hello without its nonce", rawFrame(utf8(helloJson.replace(/,"nonce":"[^"]*"/, ""))), "message_missing_field");
  toServer("client_hello_bom", "client_hello preceded by a UTF-8 byte order mark", rawFrame(concat(new Uint8Array([0xef, 0xbb, 0xbf]), utf8(helloJson))), "json_invalid");
  toServer("client_hello_invalid_utf8", "client_hello followed by a lone 0xff byte", rawFrame(concat(utf8(helloJson), new Uint8Array([0xff]))), "utf8_invalid");
  toServer("client_hello_array", "a JSON array instead of an object", rawFrame(utf8(`[${helloJson}]`)), "message_not_object");
  toServer(
    "client_hello_repeated_member",
    "client_hello whose nonce is written twice, with the same value (a repeated member name is refused whatever the values)",
    rawFrame(utf8(`${helloJson.slice(0, -1)},"nonce":"${Buffer.from(hello.nonce).toString("base64")}"}`)),
    "json_invalid",
  );
  toServer("client_hello_low_order", "client_hello whose ephemeral key has order 8: the shared secret would be all zero", jsonFrame({ ...hello, e: fromHex(LOW_ORDER_POINT) }), "x25519_low_order");

  // §4.3–4.4 server_hello, as the client (having sent the vector's client_hello) receives it.
  const toClient = (name: string, description: string, bytes: string, error: string) =>
    out.push({ name, description, step: "server_hello", receiver: "client", bytes, error });
  const h1 = hashClientHello(initialHash(), hello);
  const signed = (m: Omit<ServerHello, "sig">): ServerHello => ({ ...m, sig: ed25519Sign(ctx.hostSecret, serverSignatureInput(hashServerHello(h1, m))) });
  toClient("server_hello_sig_bit_flipped", "the vector's server_hello with bit 0 of sig[0] flipped", jsonFrame({ ...reply, sig: flipBit(reply.sig, 0) }), "handshake_bad_signature");
  toClient("server_hello_challenge_changed", "the vector's server_hello with bit 0 of challenge[0] flipped, sig unchanged", jsonFrame({ ...reply, challenge: flipBit(reply.challenge, 0) }), "handshake_bad_signature");
  toClient("server_hello_rekey_changed", "the vector's server_hello with rekey_records 3, sig unchanged", jsonFrame({ ...reply, rekey_records: 3 }), "handshake_bad_signature");
  toClient("server_hello_rekey_out_of_range", "a correctly signed server_hello announcing rekey_records 2^24 + 1", jsonFrame(signed({ ...reply, rekey_records: MAX_REKEY_RECORDS + 1 })), "handshake_parameters");
  toClient("server_hello_version_2", "a correctly signed server_hello choosing version 2", jsonFrame(signed({ ...reply, version: 2 })), "handshake_version");
  toClient("server_hello_low_order", "a correctly signed server_hello whose ephemeral key has order 8", jsonFrame(signed({ ...reply, e: fromHex(LOW_ORDER_POINT) })), "x25519_low_order");
  toClient("server_hello_error", "a cleartext error in place of server_hello", jsonFrame({ type: "error", code: "handshake_version", message: "this server speaks version 1" }), "handshake_refused");

  // §3 records: `after` records of that direction from `records` have been opened first.
  const record = (name: string, description: string, direction: "c2s" | "s2c", after: number, bytes: string, error: string) =>
    out.push({ name, description, step: "record", receiver: direction === "c2s" ? "server" : "client", direction, after, bytes, error });
  const c2s = ctx.records.c2s;
  const first = fromHex(c2s[0]!.frame);
  record("record_bit_flipped", "the client's first record with bit 0 of its first ciphertext byte flipped", "c2s", 0, toHex(flipBit(first, 4)), "record_auth_failed");
  record("record_reordered", "c2s record 2 delivered where record 1 is due", "c2s", 1, c2s[2]!.frame, "record_auth_failed");
  record("record_replayed", "c2s record 1 delivered again where record 2 is due", "c2s", 2, c2s[1]!.frame, "record_auth_failed");
  record("record_reflected", "c2s record 1 sent back to the client where s2c record 1 is due", "s2c", 1, c2s[1]!.frame, "record_auth_failed");
  record("record_shorter_than_tag", "a 15-byte body where c2s record 1 is due", "c2s", 1, rawFrame(new Uint8Array(15)), "record_auth_failed");
  // Correctly sealed records whose plaintext breaks §3.4 or §5, under the direction's initial key
  // (both directions are still in key epoch 0 for records 0 and 1).
  const sealAt = (direction: "c2s" | "s2c", n: number, plaintext: Uint8Array): string => {
    const header = frameHeader(plaintext.length + 16);
    return toHex(concat(header, aesGcmSeal(direction === "c2s" ? ctx.c2s : ctx.s2c, recordNonce(n), plaintext, header)));
  };
  const m1 = c2s[1]!.plaintext;
  record("record_trailing_lf", "c2s record 1's plaintext followed by LF", "c2s", 1, sealAt("c2s", 1, utf8(`${m1}\n`)), "record_empty_message");
  record("record_empty_segment", "two messages separated by two LFs", "c2s", 1, sealAt("c2s", 1, utf8(`${m1}\n\n${m1}`)), "record_empty_message");
  record("record_one_byte", "a correctly sealed 1-byte plaintext", "c2s", 1, sealAt("c2s", 1, utf8("{")), "record_empty");
  const err = (message: string): Uint8Array => encodeMessageBytes({ type: "error", code: CODE, message });
  record(
    "error_control_character",
    "s2c record 1: an error whose message contains U+0007 (BEL), written by JSON as \\u0007",
    "s2c",
    1,
    sealAt("s2c", 1, err("ring the bell \u0007")),
    "message_invalid",
  );
  record("error_c1_control_character", "c2s record 1: an error whose message contains U+009B (CSI)", "c2s", 1, sealAt("c2s", 1, err("csi \u009b31m")), "message_invalid");
  record(
    "error_message_over_byte_limit",
    "s2c record 1: an error whose message is 257 × U+00E9 (514 bytes of UTF-8, 257 UTF-16 code units; the limit is 512 bytes)",
    "s2c",
    1,
    sealAt("s2c", 1, err("\u00e9".repeat(257))),
    "message_invalid",
  );
  record(
    "welcome_ticket_without_expiry",
    "s2c record 0: a welcome carrying ticket but not ticket_expires",
    "s2c",
    0,
    sealAt("s2c", 0, encodeMessageBytes({ type: "welcome", user: FIXED.user, session_id: ctx.keys.sessionId, ticket: fromHex(FIXED.ticket) })),
    "message_invalid",
  );
  record("logout_with_member", "c2s record 1: a logout with a member", "c2s", 1, sealAt("c2s", 1, utf8(`{"type":"logout","user":"${FIXED.user}"}`)), "message_unknown_field");
  // §5.0, §7: chat messages, including a coalesced record with one bad message in it.
  record("say_room_uppercase", 'c2s record 1: a say to room "Lobby" (room names are lowercase)', "c2s", 1, sealAt("c2s", 1, utf8('{"type":"say","id":1,"room":"Lobby","text":"hi"}')), "message_invalid");
  record("say_empty_text", "c2s record 1: a say with empty text (at least 1 byte)", "c2s", 1, sealAt("c2s", 1, utf8('{"type":"say","id":1,"room":"lobby","text":""}')), "message_invalid");
  record(
    "room_list_nested_unknown_field",
    "s2c record 1: a room_list whose item has a member not listed (message_invalid, not message_unknown_field: the member is nested)",
    "s2c",
    1,
    sealAt("s2c", 1, utf8('{"type":"room_list","rooms":[{"name":"lobby","users":2,"topic":"x"}]}')),
    "message_invalid",
  );
  record(
    "say_repeated_member",
    'c2s record 1: a say naming room twice, "lobby" then "admin" (a receiver keeping the first and one keeping the last would disagree)',
    "c2s",
    1,
    sealAt("c2s", 1, utf8('{"type":"say","id":1,"room":"lobby","text":"hi","room":"admin"}')),
    "json_invalid",
  );
  record(
    "say_repeated_member_escaped",
    'c2s record 1: a say whose second room is spelled "\\u0072oom" (names are compared as decoded)',
    "c2s",
    1,
    sealAt("c2s", 1, utf8('{"type":"say","id":1,"room":"lobby","text":"a: b","\\u0072oom":"admin"}')),
    "json_invalid",
  );
  record(
    "room_list_nested_repeated_member",
    "s2c record 1: a room_list whose item names users twice",
    "s2c",
    1,
    sealAt("s2c", 1, utf8('{"type":"room_list","rooms":[{"name":"lobby","users":2,"users":3}]}')),
    "json_invalid",
  );
  record(
    "members_over_max_list",
    "s2c record 1: members with 1001 users (MAX_LIST is 1000)",
    "s2c",
    1,
    sealAt("s2c", 1, utf8(JSON.stringify({ type: "members", room: "lobby", users: Array.from({ length: 1001 }, (_, i) => `u${i}`) }))),
    "message_invalid",
  );
  record(
    "message_history_not_boolean",
    "s2c record 1: a message whose history member is 1 instead of true",
    "s2c",
    1,
    sealAt("s2c", 1, utf8('{"type":"message","room":"lobby","seq":1,"ts":0,"from":"bob","text":"x","history":1}')),
    "message_invalid",
  );
  record(
    "coalesced_record_last_message_invalid",
    "s2c record 1: a valid room and history_end with count 1001 in one record: the whole record is rejected before any message is acted on",
    "s2c",
    1,
    sealAt("s2c", 1, utf8('{"type":"room","room":"lobby","users":["alice"],"seq":0}\n{"type":"history_end","room":"lobby","count":1001}')),
    "message_invalid",
  );

  // §4.6–4.7 / §5.1 the first record, as the server judges it in the login phase.
  const firstRecord = (name: string, description: string, messages: Message[], error: string) => {
    // A fresh sealer at n = 0 under the initial c2s key, as the client would use.
    const sealer = new RecordSealer(ctx.c2s, { records: FIXED.rekey_records, bytes: FIXED.rekey_bytes }, MAX_FRAME_PRELOGIN);
    const bytes = toHex(sealer.seal(joinRecordPayload(messages.map(encodeMessage))));
    out.push({ name, description, step: "first_record", receiver: "server", bytes, error });
  };
  const sig = signClientAuth(ctx.identity.secretKey, ctx.keys);
  const ticket = fromHex(FIXED.ticket);
  const ticketKey = ed25519Generate(fromHex(FIXED.ticket_key_seed)).publicKey;
  const login: Message = { type: "login", user: FIXED.user, sig, password: FIXED.password };
  firstRecord("login_password_and_ticket", "login carrying both password and ticket", [{ ...login, ticket }], "message_invalid");
  firstRecord("login_neither_password_nor_ticket", "login carrying neither password nor ticket", [{ type: "login", user: FIXED.user, sig }], "message_invalid");
  firstRecord("ticket_login_with_ticket_key", "a ticket login that also asks for a ticket (ticket_key)", [{ type: "login", user: FIXED.user, sig, ticket, ticket_key: ticketKey }], "message_invalid");
  firstRecord(
    "login_password_over_byte_limit",
    "login whose password is 513 × U+00E9 (1026 bytes of UTF-8, 513 UTF-16 code units; the limit is 1024 bytes)",
    [{ ...login, password: "\u00e9".repeat(513) }],
    "message_invalid",
  );
  firstRecord("login_password_control_character", "login whose password contains a TAB (U+0009)", [{ ...login, password: "correct\thorse battery staple" }], "message_invalid");
  const wrongH = { handshakeHash: new Uint8Array(32), challenge: ctx.keys.challenge };
  firstRecord(
    "register_bad_signature",
    "register whose sig is over an all-zero H instead of this session's H",
    [{ type: "register", user: FIXED.user, identity_key: ctx.identity.publicKey, sig: signClientAuth(ctx.identity.secretKey, wrongH), password: FIXED.password }],
    "auth_bad_signature",
  );
  firstRecord("first_record_welcome", "a welcome where register or login is due", [{ type: "welcome", user: FIXED.user, session_id: ctx.keys.sessionId }], "handshake_unexpected");
  firstRecord("first_record_logout", "a logout where register or login is due", [{ type: "logout" }], "handshake_unexpected");
  firstRecord("first_record_two_logins", "one record holding the valid login twice", [login, login], "protocol_violation");
  firstRecord("user_name_uppercase", "login with user name \"Alice\"", [{ ...login, user: "Alice" } as Message], "message_invalid");
  return out;
}

if (import.meta.main) {
  const path = join(import.meta.dir, "..", VECTORS_PATH);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(buildProtocolVectors(), null, 2)}\n`);
  console.log(`wrote ${VECTORS_PATH}`);
}
