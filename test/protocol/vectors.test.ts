/**
 * Known-answer tests for the securechat/1 wire protocol against
 * test/vectors/protocol/handshake.json (docs/PROTOCOL.md §11):
 *
 *   (a) the project's ClientHandshake + SecureChannel, fed the fixed inputs,
 *       produce the vector's client frames and accept its server frames;
 *   (b) the project's ServerHandshake + SecureChannel do the same from the
 *       server's side;
 *   (c) an independent re-derivation written from docs/PROTOCOL.md alone —
 *       primitives only (@noble/curves, @noble/hashes, node:crypto), nothing
 *       from src/ — agrees with every value and rejects every negative case
 *       with the code the spec names: the check that the SPEC, not just the
 *       code, matches the bytes;
 *   (d) the generator, run in memory, reproduces the committed file exactly.
 *
 * Plus doc-consistency checks: every error code thrown in src/protocol,
 * src/crypto and src/bytes.ts, every code the server can put on the wire and
 * every code the client acts on is in PROTOCOL.md §6; every message type has
 * its member table; every label in src/crypto/labels.ts is in §9 with its
 * hex; and every limit of src/protocol/limits.ts is in §8 with its value.
 */
import { describe, expect, test } from "bun:test";
import { createCipheriv, createDecipheriv } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { type ProtocolVectors, VECTORS_PATH, buildProtocolVectors } from "../../scripts/gen-protocol-vectors.ts";
import { fromHex, toHex } from "../../src/bytes.ts";
import { ed25519Generate, labels, x25519Generate } from "../../src/crypto/index.ts";
import { SecureChatError, isSecureChatError } from "../../src/errors.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, ServerHandshake, signClientAuth, verifyClientAuth } from "../../src/protocol/handshake.ts";
import type { SessionKeys } from "../../src/protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { MESSAGE_TYPES, type Message, type MessageType, decodeMessage, encodeMessage, encodeMessageBytes } from "../../src/protocol/messages.ts";

const ROOT = join(import.meta.dir, "..", "..");
const V: ProtocolVectors = JSON.parse(readFileSync(join(ROOT, VECTORS_PATH), "utf8"));
const SPEC = readFileSync(join(ROOT, "docs", "PROTOCOL.md"), "utf8");

type Direction = "c2s" | "s2c";
type Negative = ProtocolVectors["negative"][number];

/** Runs `fn` and returns the SecureChatError code it throws (or a description of what happened instead). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return isSecureChatError(e) ? e.code : `non-SecureChatError: ${String(e)}`;
  }
  return "no error";
}

// ---------------------------------------------------------------------------
// (a), (b): the project's own state machines and channel.

const I = V.inputs;
const REKEY = { records: I.rekey_records, bytes: I.rekey_bytes };

function newClient(): ClientHandshake {
  return new ClientHandshake({ ephemeral: x25519Generate(fromHex(I.client_ephemeral_secret)), nonce: fromHex(I.client_nonce) });
}

function newServer(): ServerHandshake {
  return new ServerHandshake({
    hostKey: ed25519Generate(fromHex(I.host_key_seed)),
    rekey: REKEY,
    ephemeral: x25519Generate(fromHex(I.server_ephemeral_secret)),
    challenge: fromHex(I.challenge),
  });
}

/** The body of the single frame in `hex`, through the real decoder. */
function frameBody(hex: string, limit: number): Uint8Array {
  const bodies = new FrameDecoder(limit).push(fromHex(hex));
  expect(bodies.length).toBe(1);
  return bodies[0]!;
}

/** The vector record's messages, decoded (so that re-sealing them tests the encoder too). */
function recordMessages(plaintext: string): Message[] {
  return plaintext.split("\n").map((t) => decodeMessage(new TextEncoder().encode(t)));
}

function expectKeys(keys: SessionKeys): void {
  expect(toHex(keys.handshakeHash)).toBe(V.handshake_hash.H);
  expect(toHex(keys.challenge)).toBe(I.challenge);
  expect(toHex(keys.hostKey)).toBe(I.host_key_public);
  expect(toHex(keys.c2s)).toBe(V.key_schedule.c2s);
  expect(toHex(keys.s2c)).toBe(V.key_schedule.s2c);
  expect(toHex(keys.sessionId)).toBe(V.key_schedule.session_id);
  expect(keys.rekey).toEqual(REKEY);
}

/** Client side just after server_hello: the keys and a fresh channel (nothing sent or opened yet). */
function clientSession(): { keys: SessionKeys; channel: SecureChannel } {
  const client = newClient();
  client.hello();
  const keys = client.receive(decodeMessage(frameBody(V.server_hello.frame, MAX_FRAME_PRELOGIN)));
  const channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
  return { keys, channel };
}

/** Server side up to await_auth. */
function serverSession(): { server: ServerHandshake; keys: SessionKeys; channel: SecureChannel } {
  const server = newServer();
  const { keys } = server.receiveHello(decodeMessage(frameBody(V.client_hello.frame, MAX_FRAME_PRELOGIN)));
  return { server, keys, channel: new SecureChannel(keys, "server", MAX_FRAME_PRELOGIN) };
}

describe("(a) client: ClientHandshake and SecureChannel reproduce the vectors", () => {
  test("client_hello frame and JSON text", () => {
    const hello = newClient().hello();
    expect(encodeMessage(hello)).toBe(V.client_hello.json);
    expect(toHex(encodeFrame(encodeMessageBytes(hello), MAX_FRAME_PRELOGIN))).toBe(V.client_hello.frame);
  });

  test("accepts the server_hello frame and derives the vector's keys", () => {
    expectKeys(clientSession().keys);
  });

  test("the first record (login with password and ticket_key) is byte-exact", () => {
    const { keys, channel } = clientSession();
    const sig = signClientAuth(fromHex(I.identity_key_seed), keys);
    expect(toHex(sig)).toBe(V.client_auth.sig);
    const ticketKey = ed25519Generate(fromHex(I.ticket_key_seed)).publicKey;
    expect(toHex(ticketKey)).toBe(I.ticket_key_public);
    const login: Message = { type: "login", user: I.user, sig, password: I.password, ticket_key: ticketKey };
    expect(encodeMessage(login)).toBe(V.client_auth.json);
    expect(toHex(channel.seal([login]))).toBe(V.client_auth.frame);
  });

  test("the alternative first records (register; login with the ticket, signed by the ticket key) are byte-exact", () => {
    const identity = ed25519Generate(fromHex(I.identity_key_seed));
    const ticketKey = ed25519Generate(fromHex(I.ticket_key_seed));
    {
      const { keys, channel } = clientSession();
      const register: Message = {
        type: "register",
        user: I.user,
        identity_key: identity.publicKey,
        sig: signClientAuth(identity.secretKey, keys),
        password: I.password,
        ticket_key: ticketKey.publicKey,
      };
      expect(encodeMessage(register)).toBe(V.register.json);
      expect(toHex(channel.seal([register]))).toBe(V.register.frame);
    }
    {
      const { keys, channel } = clientSession();
      const sig = signClientAuth(ticketKey.secretKey, keys);
      expect(toHex(sig)).toBe(V.ticket_login.sig);
      const login: Message = { type: "login", user: I.user, sig, ticket: fromHex(I.ticket) };
      expect(encodeMessage(login)).toBe(V.ticket_login.json);
      expect(toHex(channel.seal([login]))).toBe(V.ticket_login.frame);
    }
  });

  test("seals every c2s record and opens every s2c record, through the key updates", () => {
    const { keys, channel } = clientSession();
    // §2: from server_hello on, the client accepts server records up to the post-login limit.
    const decoder = new FrameDecoder(MAX_FRAME);
    for (let i = 0; i < V.records.c2s.length; i++) {
      const out = V.records.c2s[i]!;
      expect(channel.sealer.count).toBe(out.n);
      expect(channel.sealer.epoch).toBe(out.key_epoch);
      expect(toHex(channel.seal(recordMessages(out.plaintext)))).toBe(out.frame);

      const inbound = V.records.s2c[i]!;
      expect(channel.opener.epoch).toBe(inbound.key_epoch);
      const bodies = decoder.push(fromHex(inbound.frame));
      expect(bodies.length).toBe(1);
      const messages = channel.open(bodies[0]!);
      expect(messages.map(encodeMessage).join("\n")).toBe(inbound.plaintext);
      if (i === 0) {
        // §4.7: one welcome naming this session; from then on the client may send up to the post-login limit.
        expect(messages.length).toBe(1);
        const w = messages[0]!;
        if (w.type !== "welcome") throw new Error(`expected welcome, got ${w.type}`);
        expect(toHex(w.session_id)).toBe(toHex(keys.sessionId));
        expect([w.user, toHex(w.ticket!), w.ticket_expires]).toEqual([I.user, I.ticket, I.ticket_expires]);
        channel.sealer.maxFrame = MAX_FRAME;
      }
    }
    expect(V.records.c2s.at(-1)!.plaintext).toBe('{"type":"logout"}');
    expect(JSON.parse(V.records.s2c.at(-1)!.plaintext).type).toBe("bye");
  });
});

describe("(b) server: ServerHandshake and SecureChannel reproduce the vectors", () => {
  test("answers the client_hello frame with the vector's server_hello frame and keys", () => {
    const server = newServer();
    const { reply, keys } = server.receiveHello(decodeMessage(frameBody(V.client_hello.frame, MAX_FRAME_PRELOGIN)));
    expect(encodeMessage(reply)).toBe(V.server_hello.json);
    expect(toHex(encodeFrame(encodeMessageBytes(reply), MAX_FRAME_PRELOGIN))).toBe(V.server_hello.frame);
    expectKeys(keys);
  });

  test("opens the client's first record and accepts the login", () => {
    const { server, keys, channel } = serverSession();
    const messages = channel.open(frameBody(V.client_auth.frame, MAX_FRAME_PRELOGIN));
    expect(messages.length).toBe(1);
    const auth = server.receiveAuth(messages[0]!);
    expect(server.state).toBe("checking");
    expect(auth.type).toBe("login");
    if (auth.type !== "login") throw new Error("unreachable");
    expect(auth.user).toBe(I.user);
    expect(auth.password).toBe(I.password);
    expect(toHex(auth.ticket_key!)).toBe(I.ticket_key_public);
    expect(auth.ticket).toBeUndefined();
    expect(verifyClientAuth(fromHex(I.identity_key_public), keys, auth.sig)).toBe(true);
    server.complete();
    expect(server.state).toBe("done");
  });

  test("accepts the alternative first records: register (proof of possession) and the ticket login (ticket key)", () => {
    {
      const { server, channel } = serverSession();
      const [m, ...rest] = channel.open(frameBody(V.register.frame, MAX_FRAME_PRELOGIN));
      expect(rest).toEqual([]);
      const auth = server.receiveAuth(m!);
      if (auth.type !== "register") throw new Error(`expected register, got ${auth.type}`);
      expect(toHex(auth.identity_key)).toBe(I.identity_key_public);
      expect(toHex(auth.ticket_key!)).toBe(I.ticket_key_public);
      expect(server.state).toBe("checking");
    }
    {
      const { server, keys, channel } = serverSession();
      const [m, ...rest] = channel.open(frameBody(V.ticket_login.frame, MAX_FRAME_PRELOGIN));
      expect(rest).toEqual([]);
      const auth = server.receiveAuth(m!);
      if (auth.type !== "login") throw new Error(`expected login, got ${auth.type}`);
      expect([auth.password, auth.ticket_key]).toEqual([undefined, undefined]);
      expect(toHex(auth.ticket!)).toBe(I.ticket);
      expect(verifyClientAuth(fromHex(I.ticket_key_public), keys, auth.sig)).toBe(true);
      expect(verifyClientAuth(fromHex(I.identity_key_public), keys, auth.sig)).toBe(false);
    }
  });

  test("seals every s2c record and opens every c2s record, through the key updates", () => {
    const { keys, channel } = serverSession();
    // Frames split into 7-byte reads and coalesced across frame boundaries (§2).
    const decoder = new FrameDecoder(MAX_FRAME_PRELOGIN);
    for (let i = 0; i < V.records.s2c.length; i++) {
      const inbound = V.records.c2s[i]!;
      const stream = fromHex(inbound.frame);
      const bodies: Uint8Array[] = [];
      for (let off = 0; off < stream.length; off += 7) bodies.push(...decoder.push(stream.subarray(off, off + 7)));
      expect(bodies.length).toBe(1);
      expect(channel.opener.epoch).toBe(inbound.key_epoch);
      const messages = channel.open(bodies[0]!);
      expect(messages.map(encodeMessage).join("\n")).toBe(inbound.plaintext);

      const out = V.records.s2c[i]!;
      expect(channel.sealer.count).toBe(out.n);
      expect(channel.sealer.epoch).toBe(out.key_epoch);
      if (i === 0) {
        // §4.7: the server raises both limits as it sends welcome.
        decoder.limit = MAX_FRAME;
        channel.sealer.maxFrame = MAX_FRAME;
        const welcome: Message = { type: "welcome", user: I.user, session_id: keys.sessionId, ticket: fromHex(I.ticket), ticket_expires: I.ticket_expires };
        expect(toHex(channel.seal([welcome]))).toBe(out.frame);
      } else {
        expect(toHex(channel.seal(recordMessages(out.plaintext)))).toBe(out.frame);
      }
    }
  });
});

/**
 * Runs one negative case through the project's code, the way the reference
 * server (src/server/server.ts) and client (src/client/connection.ts) drive
 * it: every message is validated with no `allowed` list, then the state
 * machine judges its type. Returns the error code.
 */
function runWithProject(n: Negative): string {
  const bytes = fromHex(n.bytes);
  switch (n.step) {
    case "frame":
      return codeOf(() => new FrameDecoder(n.frame_limit!).push(bytes));
    case "client_hello":
      return codeOf(() => {
        const [body] = new FrameDecoder(MAX_FRAME_PRELOGIN).push(bytes);
        newServer().receiveHello(decodeMessage(body!));
      });
    case "server_hello":
      return codeOf(() => {
        const client = newClient();
        client.hello();
        const [body] = new FrameDecoder(MAX_FRAME_PRELOGIN).push(bytes);
        client.receive(decodeMessage(body!));
      });
    case "first_record":
      return codeOf(() => {
        const { server, channel } = serverSession();
        const [body] = new FrameDecoder(MAX_FRAME_PRELOGIN).push(bytes);
        const messages = channel.open(body!);
        // As the server's login phase does (§3.4, §4.7).
        if (messages.length !== 1) throw new SecureChatError("protocol_violation", "protocol: the login record must hold exactly one message");
        server.receiveAuth(messages[0]!);
      });
    case "record":
      return codeOf(() => {
        const channel = n.direction === "c2s" ? serverSession().channel : clientSession().channel;
        const decoder = new FrameDecoder(MAX_FRAME);
        for (const r of V.records[n.direction!].slice(0, n.after!)) channel.open(decoder.push(fromHex(r.frame))[0]!);
        channel.open(decoder.push(bytes)[0]!);
      });
  }
}

describe("(a)/(b) negative vectors: the project's code rejects each with its code", () => {
  test.each(V.negative.map((n) => [n.name, n] as const))("%s", (_name, n) => {
    expect(runWithProject(n)).toBe(n.error);
  });
});

// ---------------------------------------------------------------------------
// (c) An independent implementation, written from docs/PROTOCOL.md only.
// It imports nothing from src/: primitives come straight from @noble and
// node:crypto, and every rule is cited to the spec section that states it.

namespace Spec {
  export class Fail extends Error {
    constructor(readonly code: string) {
      super(code);
    }
  }
  const fail = (code: string): never => {
    throw new Fail(code);
  };

  export const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
  export const toHexS = (b: Uint8Array): string => Buffer.from(b).toString("hex");
  export const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
  export const utf8 = ascii;
  export function cat(...parts: Uint8Array[]): Uint8Array {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
  // §1.2
  export function u32be(x: number): Uint8Array {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, x);
    return b;
  }
  export function u64be(x: number): Uint8Array {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(x));
    return b;
  }
  const NUL = new Uint8Array([0]);

  // §9 labels, copied from the spec's table as ASCII.
  const L = {
    hashInit: ascii("securechat/1 handshake"),
    sigServer: ascii("securechat/1 server handshake signature"),
    sigClient: ascii("securechat/1 client auth signature"),
    c2s: ascii("securechat/1 key c2s"),
    s2c: ascii("securechat/1 key s2c"),
    sessionId: ascii("securechat/1 session id"),
    rekey: ascii("securechat/1 rekey"),
  };

  // §8
  export const LIMIT_PRELOGIN = 4096;
  export const LIMIT = 65536;

  /** §2: one frame from the front of `stream`; the header is checked before the body is looked at. */
  export function readFrame(stream: Uint8Array, limit: number): { header: Uint8Array; body: Uint8Array } {
    if (stream.length < 4) fail("incomplete");
    const header = stream.subarray(0, 4);
    const n = new DataView(header.buffer, header.byteOffset, 4).getUint32(0);
    if (n === 0) fail("frame_empty");
    if (n > limit) fail("frame_too_large");
    if (stream.length !== 4 + n) fail("not exactly one frame");
    return { header, body: stream.subarray(4) };
  }

  // §1.2 canonical base64: decode, re-encode, compare; and the fixed length.
  function b64(v: unknown, n: number): Uint8Array {
    if (typeof v !== "string" || !/^[A-Za-z0-9+/=]*$/.test(v)) return fail("message_invalid");
    const b = Buffer.from(v, "base64");
    if (b.toString("base64") !== v || b.length !== n) fail("message_invalid");
    return new Uint8Array(b);
  }

  // §5.0 member types; text bounds are in bytes of UTF-8.
  type Kind =
    | { bytes: number }
    | { blob: number }
    | { int: [number, number] }
    | { text: [number, number] }
    | "user"
    | "room"
    | "bool"
    | "ref"
    | "cid"
    | { oneOf: string[] }
    | { list: Kind; max: number }
    | { object: [name: string, kind: Kind, optional?: true][] };
  type Table = [name: string, kind: Kind, optional?: true][];
  const MAX_SAFE = 2 ** 53 - 1;
  // §4.2, §4.3, §5.1, §5.2 tables.
  const TABLES: Record<string, Table> = {
    client_hello: [
      ["version", { int: [0, 65535] }],
      ["e", { bytes: 32 }],
      ["nonce", { bytes: 32 }],
    ],
    server_hello: [
      ["version", { int: [0, 65535] }],
      ["e", { bytes: 32 }],
      ["challenge", { bytes: 32 }],
      ["host_key", { bytes: 32 }],
      ["rekey_records", { int: [1, MAX_SAFE] }],
      ["rekey_bytes", { int: [1, MAX_SAFE] }],
      ["sig", { bytes: 64 }],
    ],
    register: [
      ["user", "user"],
      ["identity_key", { bytes: 32 }],
      ["sig", { bytes: 64 }],
      ["password", { text: [1, 1024] }],
      ["ticket_key", { bytes: 32 }, true],
    ],
    login: [
      ["user", "user"],
      ["sig", { bytes: 64 }],
      ["password", { text: [1, 1024] }, true],
      ["ticket", { bytes: 32 }, true],
      ["ticket_key", { bytes: 32 }, true],
    ],
    welcome: [
      ["user", "user"],
      ["session_id", { bytes: 16 }],
      ["ticket", { bytes: 32 }, true],
      ["ticket_expires", { int: [0, MAX_SAFE] }, true],
    ],
    error: [
      ["code", { text: [1, 64] }],
      ["message", { text: [0, 512] }],
    ],
    // §5.1 the name check.
    check_name: [["user", "user"]],
    name_status: [
      ["user", "user"],
      ["available", "bool"],
    ],
    // §5.3
    logout: [],
    bye: [["reason", { text: [0, 256] }]],
    ping: [],
    pong: [],
    // §7.1 requests.
    join: [
      ["room", "room"],
      ["since", { int: [0, MAX_SAFE] }, true],
      ["limit", { int: [0, 1000] }, true],
    ],
    leave: [["room", "room"]],
    say: [
      ["id", { int: [0, MAX_SAFE] }],
      ["room", "room"],
      ["text", { text: [1, 4096] }],
      ["action", "bool", true],
      ["cid", "cid", true],
    ],
    dm: [
      ["id", { int: [0, MAX_SAFE] }],
      ["to", "user"],
      ["text", { text: [1, 4096] }],
      ["action", "bool", true],
      ["cid", "cid", true],
    ],
    who: [["room", "room"]],
    rooms: [],
    away: [["text", { text: [1, 64] }, true]],
    history: [
      ["room", "room"],
      ["limit", { int: [1, 1000] }],
      ["since", { int: [0, MAX_SAFE] }, true],
    ],
    // §7.2 events and answers.
    ack: [
      ["id", { int: [0, MAX_SAFE] }],
      ["seq", { int: [1, MAX_SAFE] }],
      ["ts", { int: [0, MAX_SAFE] }],
    ],
    nack: [
      ["id", { int: [0, MAX_SAFE] }],
      ["code", { text: [1, 64] }],
      ["message", { text: [0, 512] }],
    ],
    message: [
      ["room", "room"],
      ["seq", { int: [1, MAX_SAFE] }],
      ["ts", { int: [0, MAX_SAFE] }],
      ["from", "user"],
      ["text", { text: [1, 4096] }, true],
      ["action", "bool", true],
      ["history", "bool", true],
      ["edited", "bool", true],
      ["deleted", "bool", true],
    ],
    direct: [
      ["seq", { int: [1, MAX_SAFE] }],
      ["ts", { int: [0, MAX_SAFE] }],
      ["from", "user"],
      ["to", "user"],
      ["text", { text: [1, 4096] }, true],
      ["action", "bool", true],
    ],
    room: [
      ["room", "room"],
      ["users", { list: "user", max: 1000 }],
      ["seq", { int: [0, MAX_SAFE] }],
      ["owner", "user", true],
      ["ops", { list: "user", max: 100 }, true],
      ["topic", { text: [1, 1024] }, true],
      ["invite_only", "bool", true],
      ["secret", "bool", true],
      ["persistent", "bool", true],
      ["muted", "bool", true],
    ],
    joined: [
      ["room", "room"],
      ["user", "user"],
      ["ts", { int: [0, MAX_SAFE] }],
    ],
    left: [
      ["room", "room"],
      ["user", "user"],
      ["ts", { int: [0, MAX_SAFE] }],
    ],
    members: [
      ["room", "room"],
      ["users", { list: "user", max: 1000 }],
      [
        "away",
        {
          list: {
            object: [
              ["user", "user"],
              ["text", { text: [1, 64] }],
            ],
          },
          max: 100,
        },
        true,
      ],
    ],
    room_list: [
      [
        "rooms",
        {
          list: {
            object: [
              ["name", "room"],
              ["users", { int: [0, MAX_SAFE] }],
            ],
          },
          max: 1000,
        },
      ],
    ],
    history_end: [
      ["room", "room"],
      ["count", { int: [0, 1000] }],
      ["more", "bool", true],
    ],
    notice: [
      ["code", { text: [1, 64] }],
      ["text", { text: [0, 512] }],
    ],
    // §7.8.
    session_list: [],
    revoke_session: [["id", "ref"]],
    sessions: [
      [
        "live",
        {
          list: {
            object: [
              ["id", "ref"],
              ["source", { text: [0, 64] }],
              ["since", { int: [0, MAX_SAFE] }],
              ["expires", { int: [0, MAX_SAFE] }],
              ["ticket", "ref", true],
              ["current", "bool", true],
            ],
          },
          max: 100,
        },
      ],
      [
        "tickets",
        {
          list: {
            object: [
              ["id", "ref"],
              ["since", { int: [0, MAX_SAFE] }],
              ["expires", { int: [0, MAX_SAFE] }],
            ],
          },
          max: 100,
        },
      ],
      ["more_tickets", { int: [1, MAX_SAFE] }, true],
    ],
    revoked: [
      ["id", "ref"],
      ["ended", { int: [0, MAX_SAFE] }],
    ],
    change_password: [
      ["new_password", { text: [1, 1024] }],
      ["end_sessions", "bool", true],
    ],
    password_changed: [["ended", { int: [0, MAX_SAFE] }]],
    // §7.9–§7.11.
    admin: [
      ["action", { oneOf: ["lock", "unlock", "end_sessions"] }],
      ["user", "user"],
    ],
    admin_done: [
      ["action", { oneOf: ["lock", "unlock", "end_sessions"] }],
      ["user", "user"],
      ["ended", { int: [0, MAX_SAFE] }],
    ],
    topic: [
      ["room", "room"],
      ["text", { text: [1, 1024] }, true],
    ],
    op: [
      ["room", "room"],
      ["user", "user"],
    ],
    deop: [
      ["room", "room"],
      ["user", "user"],
    ],
    kick: [
      ["room", "room"],
      ["user", "user"],
      ["reason", { text: [1, 256] }, true],
    ],
    ban: [
      ["room", "room"],
      ["user", "user"],
    ],
    unban: [
      ["room", "room"],
      ["user", "user"],
    ],
    bans: [["room", "room"]],
    mute: [
      ["room", "room"],
      ["user", "user"],
    ],
    unmute: [
      ["room", "room"],
      ["user", "user"],
    ],
    invite: [
      ["room", "room"],
      ["user", "user"],
    ],
    mode: [
      ["room", "room"],
      ["invite_only", "bool", true],
      ["secret", "bool", true],
    ],
    drop: [["room", "room"]],
    room_changed: [
      ["room", "room"],
      ["by", "user"],
      ["action", { text: [1, 16] }],
      ["user", "user", true],
      ["text", { text: [1, 1024] }, true],
      ["invite_only", "bool", true],
      ["secret", "bool", true],
      ["ts", { int: [0, MAX_SAFE] }],
    ],
    ban_list: [
      ["room", "room"],
      ["bans", { list: "user", max: 1000 }],
    ],
    enroll: [
      ["user", "user"],
      ["device_key", { bytes: 32 }],
      ["sig", { bytes: 64 }],
      ["password", { text: [1, 1024] }],
      ["name", { text: [1, 64] }],
      ["ticket_key", { bytes: 32 }, true],
    ],
    enroll_pending: [["expires", { int: [0, MAX_SAFE] }]],
    device_list: [],
    device_approve: [
      ["key", { bytes: 32 }],
      ["sig", { bytes: 64 }],
    ],
    device_revoke: [["id", "ref"]],
    devices: [
      [
        "devices",
        {
          list: {
            object: [
              ["id", "ref"],
              ["key", { bytes: 32 }],
              ["name", { text: [0, 64] }],
              ["enrolled", { int: [0, MAX_SAFE] }],
              ["by", { text: [1, 16] }],
              ["revoked", { int: [0, MAX_SAFE] }, true],
              ["current", "bool", true],
            ],
          },
          max: 64,
        },
      ],
      [
        "pending",
        {
          list: {
            object: [
              ["key", { bytes: 32 }],
              ["name", { text: [1, 64] }],
              ["source", { text: [0, 64] }],
              ["since", { int: [0, MAX_SAFE] }],
              ["expires", { int: [0, MAX_SAFE] }],
            ],
          },
          max: 3,
        },
      ],
    ],
    device_added: [["id", "ref"]],
    device_revoked: [
      ["id", "ref"],
      ["ended", { int: [0, MAX_SAFE] }],
    ],
    // §7.12.
    edit: [
      ["id", { int: [0, MAX_SAFE] }],
      ["room", "room", true],
      ["to", "user", true],
      ["seq", { int: [1, MAX_SAFE] }],
      ["text", { text: [1, 4096] }],
      ["cid", "cid", true],
    ],
    delete: [
      ["id", { int: [0, MAX_SAFE] }],
      ["room", "room", true],
      ["to", "user", true],
      ["seq", { int: [1, MAX_SAFE] }],
      ["cid", "cid", true],
    ],
    edited: [
      ["room", "room", true],
      ["to", "user", true],
      ["seq", { int: [1, MAX_SAFE] }],
      ["ts", { int: [0, MAX_SAFE] }],
      ["by", "user"],
      ["text", { text: [1, 4096] }],
      ["action", "bool", true],
    ],
    deleted: [
      ["room", "room", true],
      ["to", "user", true],
      ["seq", { int: [1, MAX_SAFE] }],
      ["ts", { int: [0, MAX_SAFE] }],
      ["by", "user"],
    ],
    // §7.14.
    read: [
      [
        "rooms",
        {
          list: {
            object: [
              ["room", "room"],
              ["seq", { int: [0, MAX_SAFE] }],
            ],
          },
          max: 64,
        },
        true,
      ],
      ["dm", { int: [0, MAX_SAFE] }, true],
    ],
    unread: [],
    unread_list: [
      [
        "rooms",
        {
          list: {
            object: [
              ["room", "room"],
              ["unread", { int: [0, MAX_SAFE] }],
              ["read_at", { int: [0, MAX_SAFE] }],
            ],
          },
          max: 256,
        },
      ],
    ],
    // §7.13.
    log_proof: [
      ["from", { int: [0, MAX_SAFE] }, true],
      ["leaves", { list: { int: [0, MAX_SAFE] }, max: 16 }, true],
      ["entries", "bool", true],
      ["cosigned", "bool", true],
    ],
    log_state: [
      ["origin", { text: [1, 255] }],
      ["size", { int: [0, MAX_SAFE] }],
      ["root", { bytes: 32 }],
      ["sig", { bytes: 68 }],
      ["consistency", { list: { bytes: 32 }, max: 128 }, true],
      [
        "inclusion",
        {
          list: {
            object: [
              ["leaf", { int: [0, MAX_SAFE] }],
              ["proof", { list: { bytes: 32 }, max: 128 }],
              ["entry", { blob: 16384 }, true],
              ["withheld", { oneOf: ["private", "later", "unreadable"] }, true],
            ],
          },
          max: 16,
        },
        true,
      ],
      [
        "cosigned",
        {
          object: [
            ["size", { int: [0, MAX_SAFE] }],
            ["root", { bytes: 32 }],
            ["sig", { bytes: 68 }],
            ["cosignatures", { list: { object: [["name", { text: [1, 255] }], ["sig", { bytes: 76 }]] }, max: 16 }],
            ["consistency", { list: { bytes: 32 }, max: 128 }],
          ],
        },
        true,
      ],
    ],
  };
  export const TYPES = Object.keys(TABLES);

  /** §5.0 step 7: the rules across members (§5.1, §5.2), after every member is valid. */
  function rulesHold(m: Msg): boolean {
    const has = (k: string) => Object.hasOwn(m, k);
    if (m.type === "login") return has("password") !== has("ticket") && !(has("ticket") && has("ticket_key"));
    if (m.type === "welcome") return has("ticket") === has("ticket_expires");
    // §7.2 `message`, §7.12: text unless deleted; a deleted one carries no text, edited or action; both only as history
    if (m.type === "message" || m.type === "direct") {
      const shownLater = m.history === true || (m.type === "direct" && m.late === true);
      if ((m.edited === true || m.deleted === true) && !shownLater) return false;
      return m.deleted === true ? !has("text") && m.edited !== true && m.action !== true : has("text");
    }
    if (m.type === "edit" || m.type === "delete" || m.type === "edited" || m.type === "deleted") return has("room") !== has("to");
    return true;
  }

  export type Msg = { type: string } & Record<string, unknown>;

  function member(v: unknown, kind: Kind): unknown {
    if (kind === "user") {
      if (typeof v !== "string" || !/^[a-z][a-z0-9_-]{1,31}$/.test(v)) fail("message_invalid");
      return v;
    }
    if (kind === "room") {
      if (typeof v !== "string" || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(v)) fail("message_invalid");
      return v;
    }
    if (kind === "bool") {
      if (v !== true && v !== false) fail("message_invalid");
      return v;
    }
    if (kind === "ref") {
      if (typeof v !== "string" || !/^[0-9a-f]{12}$/.test(v)) fail("message_invalid");
      return v;
    }
    // §7.15: 16 bytes, unpadded base64url, canonical (encoding the bytes again gives the same text).
    if (kind === "cid") {
      if (typeof v !== "string" || !/^[A-Za-z0-9_-]{22}$/.test(v) || Buffer.from(v, "base64url").toString("base64url") !== v) fail("message_invalid");
      return v;
    }
    if ("oneOf" in kind) {
      if (typeof v !== "string" || !kind.oneOf.includes(v)) fail("message_invalid");
      return v;
    }
    if ("list" in kind) {
      // §5.0: at most `max` items, each valid; any failure inside is message_invalid.
      if (!Array.isArray(v) || v.length > kind.max) return fail("message_invalid");
      return v.map((item) => member(item, kind.list));
    }
    if ("object" in kind) {
      // §5.0: exactly the listed members, each required unless marked optional; an unlisted or missing one is message_invalid here.
      if (typeof v !== "object" || v === null || Array.isArray(v)) return fail("message_invalid");
      const o = v as Record<string, unknown>;
      if (Object.keys(o).some((k) => !kind.object.some(([name]) => name === k))) fail("message_invalid");
      const out: Record<string, unknown> = {};
      for (const [name, k, optional] of kind.object) {
        if (!Object.hasOwn(o, name)) {
          if (optional) continue;
          fail("message_invalid");
        }
        out[name] = member(o[name], k);
      }
      return out;
    }
    if ("bytes" in kind) return b64(v, kind.bytes);
    // §7.13: canonical base64 of 1 … max bytes.
    if ("blob" in kind) {
      if (typeof v !== "string" || !/^[A-Za-z0-9+/=]*$/.test(v)) return fail("message_invalid");
      const b = Buffer.from(v, "base64");
      if (b.toString("base64") !== v || b.length < 1 || b.length > kind.blob) fail("message_invalid");
      return new Uint8Array(b);
    }
    if ("int" in kind) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < kind.int[0] || v > kind.int[1] || v > MAX_SAFE) fail("message_invalid");
      return v;
    }
    // text: well-formed (no lone surrogate), a..b bytes of UTF-8, no C0 or C1 control character and no DEL.
    if (typeof v !== "string" || !v.isWellFormed()) return fail("message_invalid");
    const n = new TextEncoder().encode(v).length;
    if (n < kind.text[0] || n > kind.text[1]) fail("message_invalid");
    for (const ch of v) {
      const c = ch.codePointAt(0)!;
      if (c <= 0x1f || (c >= 0x7f && c <= 0x9f)) fail("message_invalid");
    }
    return v;
  }

  /** §5.0 step 2: some object of the (valid) JSON text has two members of the same name, compared as decoded. */
  function repeatsName(text: string): boolean {
    const open: (Set<string> | null)[] = [];
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "{") open.push(new Set());
      else if (c === "[") open.push(null);
      else if (c === "}" || c === "]") open.pop();
      else if (c === '"') {
        let end = i + 1;
        while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
        const colon = /[ \t\n\r]*:/y;
        colon.lastIndex = end + 1;
        if (colon.test(text)) {
          const name = JSON.parse(text.slice(i, end + 1)) as string;
          const names = open.at(-1)!;
          if (names.has(name)) return true;
          names.add(name);
        }
        i = end;
      }
    }
    return false;
  }

  /** §5.0 steps 1–7, in order. Byte members come back decoded. Whether the type is wanted is the caller's (§4.9). */
  export function parse(bytes: Uint8Array): Msg {
    let text: string;
    try {
      // fatal: reject malformed UTF-8; ignoreBOM: true means "do not strip a BOM" (§5.0 step 2).
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      return fail("utf8_invalid");
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return fail("json_invalid");
    }
    if (repeatsName(text)) return fail("json_invalid");
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail("message_not_object");
    const o = v as Record<string, unknown>;
    if (typeof o.type !== "string") return fail("message_invalid");
    if (!Object.hasOwn(TABLES, o.type)) return fail("message_unknown_type");
    const table = TABLES[o.type]!;
    for (const k of Object.keys(o)) if (k !== "type" && !table.some(([name]) => name === k)) fail("message_unknown_field");
    const out: Msg = { type: o.type };
    for (const [name, kind, optional] of table) {
      if (!Object.hasOwn(o, name)) {
        if (!optional) fail("message_missing_field");
        continue;
      }
      out[name] = member(o[name], kind);
    }
    if (!rulesHold(out)) fail("message_invalid");
    return out;
  }

  /** §3.4: split at every LF; an empty segment is fatal; validate all before returning any. */
  export function splitPayload(p: Uint8Array): Msg[] {
    const segments: Uint8Array[] = [];
    let start = 0;
    for (let i = 0; i <= p.length; i++) {
      if (i === p.length || p[i] === 0x0a) {
        if (i === start) fail("record_empty_message");
        segments.push(p.subarray(start, i));
        start = i + 1;
      }
    }
    return segments.map((s) => parse(s));
  }

  // §1.2 primitives.
  export const SHA256 = (...parts: Uint8Array[]): Uint8Array => sha256(cat(...parts));
  const hkdfExpand = (prk: Uint8Array, info: Uint8Array, n: number): Uint8Array => expand(sha256, prk, info, n);
  function X25519(k: Uint8Array, u: Uint8Array): Uint8Array {
    // §4.3 step 5 / §4.4 step 5: an all-zero result is fatal. @noble refuses the
    // low-order inputs that produce it by throwing, which is the same outcome.
    let ss: Uint8Array;
    try {
      ss = x25519.getSharedSecret(k, u);
    } catch {
      return fail("x25519_low_order");
    }
    if (ss.every((x) => x === 0)) fail("x25519_low_order");
    return ss;
  }
  const verify = (a: Uint8Array, m: Uint8Array, sig: Uint8Array): boolean => ed25519.verify(sig, m, a, { zip215: false });

  // §4.3
  export const h0 = (): Uint8Array => SHA256(L.hashInit);
  export const h1 = (ch: Msg): Uint8Array => SHA256(h0(), u32be(ch.version as number), ch.e as Uint8Array, ch.nonce as Uint8Array);
  export const H = (hh1: Uint8Array, sh: Msg): Uint8Array =>
    SHA256(
      hh1,
      u32be(sh.version as number),
      sh.e as Uint8Array,
      sh.challenge as Uint8Array,
      sh.host_key as Uint8Array,
      u64be(sh.rekey_records as number),
      u64be(sh.rekey_bytes as number),
    );
  export const serverSigInput = (h: Uint8Array): Uint8Array => cat(L.sigServer, NUL, h);
  // §4.6
  export const clientSigInput = (h: Uint8Array, challenge: Uint8Array): Uint8Array => cat(L.sigClient, NUL, h, challenge);

  // §4.5
  export function keySchedule(ss: Uint8Array, h: Uint8Array) {
    const prk = extract(sha256, ss, h);
    return { prk, c2s: hkdfExpand(prk, L.c2s, 32), s2c: hkdfExpand(prk, L.s2c, 32), session_id: hkdfExpand(prk, L.sessionId, 16) };
  }

  /** §4.4 steps 1–6 (step 7, the pin, is the caller's). */
  export function clientReceiveServerHello(sent: Msg, ephemeralSecret: Uint8Array, frame: Uint8Array) {
    const sh = parse(readFrame(frame, LIMIT_PRELOGIN).body);
    if (sh.type === "error") fail("handshake_refused");
    if (sh.type !== "server_hello") fail("handshake_unexpected");
    if (sh.version !== 1) fail("handshake_version");
    const rr = sh.rekey_records as number;
    const rb = sh.rekey_bytes as number;
    if (rr < 1 || rr > 2 ** 24 || rb < 1 || rb > 2 ** 36) fail("handshake_parameters");
    const hh1 = h1(sent);
    const h = H(hh1, sh);
    if (!verify(sh.host_key as Uint8Array, serverSigInput(h), sh.sig as Uint8Array)) fail("handshake_bad_signature");
    const ss = X25519(ephemeralSecret, sh.e as Uint8Array);
    return { sh, h1: hh1, H: h, ss, ...keySchedule(ss, h) };
  }

  /** §4.3 steps 1–3 on the server (the checks that can fail on client input), before it signs anything. */
  export function serverReceiveClientHello(ephemeralSecret: Uint8Array, frame: Uint8Array): Msg {
    const ch = parse(readFrame(frame, LIMIT_PRELOGIN).body);
    if (ch.type !== "client_hello") fail("handshake_unexpected");
    if (ch.version !== 1) fail("handshake_version");
    X25519(ephemeralSecret, ch.e as Uint8Array);
    return ch;
  }

  /** §3.1–3.3: one direction of the record layer. */
  export class Direction {
    n = 0;
    r = 0;
    b = 0;
    epoch = 0;
    constructor(
      public k: Uint8Array,
      readonly rekeyRecords: number,
      readonly rekeyBytes: number,
    ) {}
    nonce(): Uint8Array {
      return cat(new Uint8Array(4), u64be(this.n));
    }
    seal(p: Uint8Array, limit: number): Uint8Array {
      if (p.length < 2 || p.length > limit - 16) fail("record size");
      const header = u32be(p.length + 16);
      const c = createCipheriv("aes-256-gcm", this.k, this.nonce(), { authTagLength: 16 });
      c.setAAD(header);
      const body = cat(c.update(p), c.final(), c.getAuthTag());
      this.count(p.length);
      return cat(header, body);
    }
    open(frame: Uint8Array, limit: number): Uint8Array {
      const { header, body } = readFrame(frame, limit);
      if (body.length < 16) fail("record_auth_failed");
      let p: Uint8Array;
      try {
        const d = createDecipheriv("aes-256-gcm", this.k, this.nonce(), { authTagLength: 16 });
        d.setAAD(header);
        d.setAuthTag(body.subarray(body.length - 16));
        p = cat(d.update(body.subarray(0, body.length - 16)), d.final());
      } catch {
        return fail("record_auth_failed");
      }
      if (p.length < 2) fail("record_empty");
      this.count(p.length);
      return p;
    }
    /** §3.3, run after each record; `lastCounters` shows r, b and the decision for that record. */
    private count(len: number): void {
      this.n += 1;
      this.r += 1;
      this.b += len;
      this.lastCounters = { r: this.r, b: this.b, rekey: false };
      if (this.r >= this.rekeyRecords || this.b >= this.rekeyBytes) {
        this.k = hkdfExpand(this.k, L.rekey, 32);
        this.epoch += 1;
        this.r = 0;
        this.b = 0;
        this.lastCounters.rekey = true;
      }
    }
    lastCounters = { r: 0, b: 0, rekey: false };
  }

  /**
   * §4.7: the server's judgement of a login-phase record, whose messages have
   * passed §5.0 (checks that need the account store excepted).
   */
  export function judgeLoginRecord(messages: Msg[], h: Uint8Array, challenge: Uint8Array): Msg {
    if (messages.length !== 1) fail("protocol_violation");
    const m = messages[0]!;
    if (m.type !== "register" && m.type !== "login") fail("handshake_unexpected");
    if (m.type === "register" && !verify(m.identity_key as Uint8Array, clientSigInput(h, challenge), m.sig as Uint8Array)) {
      fail("auth_bad_signature");
    }
    return m;
  }

  /** §5.1: whether a ticket login's sig is by the ticket key it was issued to. */
  export function ticketLoginSigned(m: Msg, ticketKey: Uint8Array, h: Uint8Array, challenge: Uint8Array): boolean {
    return verify(ticketKey, clientSigInput(h, challenge), m.sig as Uint8Array);
  }
}

/** The independent client and server, run through the whole vector (lazily, so a failure fails a test). */
function specSession() {
  const hex = Spec.hex;
  const e_c = hex(I.client_ephemeral_secret);
  const e_s = hex(I.server_ephemeral_secret);
  let sent: Spec.Msg | undefined;
  let client: ReturnType<typeof Spec.clientReceiveServerHello> | undefined;
  return {
    hex,
    e_c,
    e_s,
    get sent(): Spec.Msg {
      return (sent ??= Spec.parse(Spec.readFrame(hex(V.client_hello.frame), Spec.LIMIT_PRELOGIN).body));
    },
    get client(): ReturnType<typeof Spec.clientReceiveServerHello> {
      return (client ??= Spec.clientReceiveServerHello(this.sent, e_c, hex(V.server_hello.frame)));
    },
  };
}

describe("(c) independent re-derivation from docs/PROTOCOL.md", () => {
  const session = specSession();
  const { hex, e_c, e_s } = session;
  const S = Spec.toHexS;

  test("§4.2 client_hello: values, JSON text and frame", () => {
    expect(S(x25519.getPublicKey(e_c))).toBe(I.client_ephemeral_public);
    expect(session.sent.version).toBe(1);
    expect(S(session.sent.e as Uint8Array)).toBe(I.client_ephemeral_public);
    expect(S(session.sent.nonce as Uint8Array)).toBe(I.client_nonce);
    const body = Spec.utf8(V.client_hello.json);
    expect(S(Spec.cat(Spec.u32be(body.length), body))).toBe(V.client_hello.frame);
  });

  test("§4.3 handshake hash h0, h1, H and the host signature", () => {
    expect(S(Spec.h0())).toBe(V.handshake_hash.h0);
    expect(S(session.client.h1)).toBe(V.handshake_hash.h1);
    expect(S(session.client.H)).toBe(V.handshake_hash.H);
    const sh = session.client.sh;
    expect(S(sh.e as Uint8Array)).toBe(I.server_ephemeral_public);
    expect(S(x25519.getPublicKey(e_s))).toBe(I.server_ephemeral_public);
    expect(S(sh.challenge as Uint8Array)).toBe(I.challenge);
    expect(S(sh.host_key as Uint8Array)).toBe(I.host_key_public);
    expect(S(ed25519.getPublicKey(hex(I.host_key_seed)))).toBe(I.host_key_public);
    expect([sh.rekey_records, sh.rekey_bytes]).toEqual([I.rekey_records, I.rekey_bytes]);
    const input = Spec.serverSigInput(session.client.H);
    expect(S(input)).toBe(V.server_hello.signature_input);
    // Ed25519 is deterministic (RFC 8032), so the server's signature is reproducible.
    expect(S(ed25519.sign(input, hex(I.host_key_seed)))).toBe(V.server_hello.sig);
    const body = Spec.utf8(V.server_hello.json);
    expect(S(Spec.cat(Spec.u32be(body.length), body))).toBe(V.server_hello.frame);
  });

  test("§4.3 the server side of the exchange accepts the client_hello", () => {
    const ch = Spec.serverReceiveClientHello(e_s, hex(V.client_hello.frame));
    expect(S(Spec.h1(ch))).toBe(V.handshake_hash.h1);
  });

  test("§4.5 shared secret and key schedule, from both ends", () => {
    expect(S(session.client.ss)).toBe(V.key_schedule.shared_secret);
    expect(S(x25519.getSharedSecret(e_s, hex(I.client_ephemeral_public)))).toBe(V.key_schedule.shared_secret);
    expect(S(session.client.prk)).toBe(V.key_schedule.prk);
    expect(S(session.client.c2s)).toBe(V.key_schedule.c2s);
    expect(S(session.client.s2c)).toBe(V.key_schedule.s2c);
    expect(S(session.client.session_id)).toBe(V.key_schedule.session_id);
  });

  test("§4.6 the client's auth signature and its login message", () => {
    const input = Spec.clientSigInput(session.client.H, session.client.sh.challenge as Uint8Array);
    expect(S(input)).toBe(V.client_auth.signature_input);
    expect(S(ed25519.getPublicKey(hex(I.identity_key_seed)))).toBe(I.identity_key_public);
    expect(S(ed25519.sign(input, hex(I.identity_key_seed)))).toBe(V.client_auth.sig);
    const login = Spec.parse(Spec.utf8(V.client_auth.json));
    expect(login.type).toBe("login");
    expect(login.user).toBe(I.user);
    expect(login.password).toBe(I.password);
    expect(S(ed25519.getPublicKey(hex(I.ticket_key_seed)))).toBe(I.ticket_key_public);
    expect(S(login.ticket_key as Uint8Array)).toBe(I.ticket_key_public);
    expect(S(login.sig as Uint8Array)).toBe(V.client_auth.sig);
    expect(ed25519.verify(login.sig as Uint8Array, input, hex(I.identity_key_public), { zip215: false })).toBe(true);
    expect(V.client_auth.frame).toBe(V.records.c2s[0]!.frame);
  });

  test("§4.6, §5.1 the alternative first records: register, and a ticket login signed by the ticket key", () => {
    const h = session.client.H;
    const challenge = session.client.sh.challenge as Uint8Array;
    const input = Spec.clientSigInput(h, challenge);
    const open = (v: { frame: string; json: string }): Spec.Msg => {
      // Each is c2s record n = 0 under k_c2s, in place of the vector's login.
      const d = new Spec.Direction(session.client.c2s, I.rekey_records, I.rekey_bytes);
      const p = d.open(hex(v.frame), Spec.LIMIT_PRELOGIN);
      expect(new TextDecoder().decode(p)).toBe(v.json);
      return Spec.judgeLoginRecord(Spec.splitPayload(p), h, challenge);
    };
    const reg = open(V.register);
    expect([reg.type, reg.user, reg.password]).toEqual(["register", I.user, I.password]);
    expect(S(reg.identity_key as Uint8Array)).toBe(I.identity_key_public);
    expect(S(reg.ticket_key as Uint8Array)).toBe(I.ticket_key_public);
    // The same handshake, so the same auth_sig as the login.
    expect(S(reg.sig as Uint8Array)).toBe(V.client_auth.sig);

    const tl = open(V.ticket_login);
    expect([tl.type, tl.user, "password" in tl, "ticket_key" in tl]).toEqual(["login", I.user, false, false]);
    expect(S(tl.ticket as Uint8Array)).toBe(I.ticket);
    expect(S(ed25519.sign(input, hex(I.ticket_key_seed)))).toBe(V.ticket_login.sig);
    expect(S(tl.sig as Uint8Array)).toBe(V.ticket_login.sig);
    expect(Spec.ticketLoginSigned(tl, hex(I.ticket_key_public), h, challenge)).toBe(true);
    expect(Spec.ticketLoginSigned(tl, hex(I.identity_key_public), h, challenge)).toBe(false);
  });

  for (const dir of ["c2s", "s2c"] as const) {
    test(`§3 every ${dir} record: key, nonce, ciphertext, payload and key updates`, () => {
      const key = dir === "c2s" ? session.client.c2s : session.client.s2c;
      const sender = new Spec.Direction(key, I.rekey_records, I.rekey_bytes);
      const receiver = new Spec.Direction(key, I.rekey_records, I.rekey_bytes);
      V.records[dir].forEach((rec, i) => {
        // §2 / §4.6–4.7: the first record each way is limited to 4096, later ones to 65536.
        const limit = i === 0 ? Spec.LIMIT_PRELOGIN : Spec.LIMIT;
        expect(sender.n).toBe(rec.n);
        expect(sender.epoch).toBe(rec.key_epoch);
        expect(S(sender.k)).toBe(rec.key);
        expect(S(sender.nonce())).toBe(rec.nonce);
        expect(S(sender.seal(Spec.utf8(rec.plaintext), limit))).toBe(rec.frame);
        expect(sender.lastCounters).toEqual({ r: rec.records_under_key, b: rec.bytes_under_key, rekey: rec.rekey_after });

        // §2: the server accepts at most 4096 until it has sent welcome; the client accepts 65536 from server_hello on.
        const p = receiver.open(hex(rec.frame), dir === "s2c" ? Spec.LIMIT : limit);
        expect(new TextDecoder().decode(p)).toBe(rec.plaintext);
        const messages = Spec.splitPayload(p);
        if (i === 0) {
          if (dir === "s2c") {
            // §4.7: one welcome; the client checks the echoed session id and the user.
            expect(messages.length).toBe(1);
            expect(messages[0]!.type).toBe("welcome");
            expect(S(messages[0]!.session_id as Uint8Array)).toBe(V.key_schedule.session_id);
            expect(messages[0]!.user).toBe(I.user);
            expect(S(messages[0]!.ticket as Uint8Array)).toBe(I.ticket);
            expect(messages[0]!.ticket_expires).toBe(I.ticket_expires);
          } else {
            expect(Spec.judgeLoginRecord(messages, session.client.H, session.client.sh.challenge as Uint8Array).type).toBe("login");
          }
        }
        if (i === V.records[dir].length - 1) {
          // §5.3: the client logs out; the server answers bye.
          expect(messages.map((m) => m.type)).toEqual([dir === "c2s" ? "logout" : "bye"]);
        }
      });
      expect(receiver.epoch).toBe(sender.epoch);
    });
  }

  /** Runs one negative case through the independent implementation; returns the code. */
  function runWithSpec(n: Negative): string {
    const bytes = hex(n.bytes);
    try {
      switch (n.step) {
        case "frame": {
          // Only the header is present: the check must not need the body (§2).
          Spec.readFrame(bytes, n.frame_limit!);
          return "no error";
        }
        case "client_hello":
          Spec.serverReceiveClientHello(e_s, bytes);
          return "no error";
        case "server_hello":
          Spec.clientReceiveServerHello(session.sent, e_c, bytes);
          return "no error";
        case "first_record": {
          const d = new Spec.Direction(session.client.c2s, I.rekey_records, I.rekey_bytes);
          Spec.judgeLoginRecord(Spec.splitPayload(d.open(bytes, Spec.LIMIT_PRELOGIN)), session.client.H, session.client.sh.challenge as Uint8Array);
          return "no error";
        }
        case "record": {
          const dir = n.direction as Direction;
          const d = new Spec.Direction(dir === "c2s" ? session.client.c2s : session.client.s2c, I.rekey_records, I.rekey_bytes);
          for (const r of V.records[dir].slice(0, n.after!)) d.open(hex(r.frame), Spec.LIMIT);
          Spec.splitPayload(d.open(bytes, Spec.LIMIT));
          return "no error";
        }
      }
    } catch (e) {
      return e instanceof Spec.Fail ? e.code : `unexpected: ${String(e)}`;
    }
  }

  test("§7 the chat records: a join answered by one coalesced record, then a say and a dm answered in request order", () => {
    // Open every record of both directions, keeping each record's messages.
    const opened = (dir: Direction): Spec.Msg[][] => {
      const d = new Spec.Direction(dir === "c2s" ? session.client.c2s : session.client.s2c, I.rekey_records, I.rekey_bytes);
      return V.records[dir].map((rec) => Spec.splitPayload(d.open(hex(rec.frame), Spec.LIMIT)));
    };
    const up = opened("c2s");
    const down = opened("s2c");
    const types = (ms: Spec.Msg[]) => ms.map((m) => m.type);
    // Records 4 and 5 each way carry the chat; the last pair is logout and bye.
    expect(types(up[4]!)).toEqual(["join"]);
    expect(types(up[5]!)).toEqual(["say", "dm"]);
    // §7.3 join: room, the history (history: true, oldest first), history_end, notice recorded — one record (§7.6).
    const [room, ...rest] = down[4]!;
    expect(types(down[4]!)).toEqual(["room", "message", "message", "history_end", "notice"]);
    expect([room!.room, room!.users]).toEqual([up[4]![0]!.room, ["alice", "bob"]]);
    const history = rest.filter((m) => m.type === "message");
    expect(history.every((m) => m.history === true && m.room === room!.room && (m.seq as number) <= (room!.seq as number))).toBe(true);
    expect(history.map((m) => m.seq)).toEqual([1, 2]);
    const end = rest.find((m) => m.type === "history_end")!;
    expect([end.room, end.count]).toEqual([room!.room, history.length]);
    expect([rest.at(-1)!.code]).toEqual(["recorded"]);
    // §7.4: answers in request order; the say's seq continues the room's sequence after room.seq.
    const [say, dm] = up[5]!;
    const acks = down[5]!.filter((m) => m.type === "ack");
    expect(acks.map((a) => a.id)).toEqual([say!.id, dm!.id]);
    expect(acks[0]!.seq).toBe((room!.seq as number) + 1);
    const live = down[5]!.filter((m) => m.type === "message");
    expect(live.map((m) => [m.seq, "history" in m])).toEqual([[(room!.seq as number) + 2, false]]);
    expect(say!.text).toBe('hello bob — "grüße" \\o/');
    // JSON escapes only what it must (§5.0): the quote and the backslash, not the non-ASCII text.
    expect(V.records.c2s[5]!.plaintext).toContain('"text":"hello bob — \\"grüße\\" \\\\o/"');
  });

  test.each(V.negative.map((n) => [n.name, n] as const))("negative %s", (_name, n) => {
    expect(runWithSpec(n)).toBe(n.error);
  });
});

// ---------------------------------------------------------------------------
// (d) and doc consistency.

describe("(d) the committed vectors are what the generator produces", () => {
  test("buildProtocolVectors() deep-equals test/vectors/protocol/handshake.json", () => {
    expect(JSON.parse(JSON.stringify(buildProtocolVectors()))).toEqual(V);
  });

  test("the negative list covers every step and names unique cases", () => {
    const steps = new Set(V.negative.map((n) => n.step));
    expect([...steps].sort()).toEqual(["client_hello", "first_record", "frame", "record", "server_hello"]);
    expect(new Set(V.negative.map((n) => n.name)).size).toBe(V.negative.length);
  });
});

describe("PROTOCOL.md agrees with the code it specifies", () => {
  /** The rows of the table in section `heading` (first cell of each row, backticks kept). */
  function tableCells(heading: string): string {
    const start = SPEC.indexOf(`\n## ${heading}`);
    expect(start).toBeGreaterThan(0);
    const end = SPEC.indexOf("\n## ", start + 1);
    return SPEC.slice(start, end);
  }

  test("§6 lists every error code thrown in src/protocol, src/crypto and src/bytes.ts", () => {
    const files = [
      ...readdirSync(join(ROOT, "src/protocol")).map((f) => join(ROOT, "src/protocol", f)),
      ...readdirSync(join(ROOT, "src/crypto")).map((f) => join(ROOT, "src/crypto", f)),
      join(ROOT, "src/bytes.ts"),
    ].filter((f) => f.endsWith(".ts"));
    const codes = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, "utf8").matchAll(/(?:new SecureChatError|\bfail)\(\s*"([a-z0-9_]+)"/g)) codes.add(m[1]!);
    }
    expect(codes.size).toBeGreaterThan(20);
    const section = tableCells("6. Error codes");
    const missing = [...codes].filter((c) => !section.includes(`\`${c}\``)).sort();
    expect(missing).toEqual([]);
    for (const n of V.negative) expect(section).toContain(`\`${n.error}\``);
  });

  /** Every .ts file under `dir` (relative to the repository root). */
  const tsFiles = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .map((f) => join(ROOT, dir, f));
  const thrownCodes = (files: string[]): Set<string> => {
    const codes = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, "utf8").matchAll(/(?:new SecureChatError|\bfail)\(\s*"([a-z0-9_]+)"/g)) codes.add(m[1]!);
    }
    return codes;
  };

  test("§6 lists every code the reference server can put on the wire", () => {
    // The server's allowlist (WIRE_CODE): thrown codes that match it are sent as they are; others become internal_error.
    const literal = /const WIRE_CODE =\s*\/(.+)\/;\n/.exec(readFileSync(join(ROOT, "src/server/wire.ts"), "utf8"));
    expect(literal, "WIRE_CODE in src/server/wire.ts").not.toBeNull();
    const wire = new RegExp(literal![1]!);
    const thrown = thrownCodes([
      ...tsFiles("src/protocol"),
      ...tsFiles("src/crypto"),
      ...tsFiles("src/server"),
      ...tsFiles("src/store"),
      ...tsFiles("src/net"),
      join(ROOT, "src/bytes.ts"),
      join(ROOT, "src/password.ts"),
    ]);
    const sent = new Set([...thrown].filter((c) => wire.test(c)));
    // Codes the server sends directly: closeWith({ code: … }) and the refusals before the handshake; and the
    // chat core's nack and notice codes (§7).
    const sources = ["server", "edge", "core", "chat"].map((f) => readFileSync(join(ROOT, `src/server/${f}.ts`), "utf8"));
    for (const src of sources) for (const m of src.matchAll(/(?:\bcode: |refuse\()"([a-z0-9_]+)"/g)) sent.add(m[1]!);
    sent.add("internal_error");
    for (const c of ["auth_failed", "too_many_failures", "rate_limited", "server_busy", "server_shutdown", "handshake_timeout", "protocol_violation", "idle_timeout", "slow_consumer", "not_member", "no_such_user", "dm_store_full"]) {
      expect([c, sent.has(c)]).toEqual([c, true]);
    }
    const section = tableCells("6. Error codes");
    const missing = [...sent].filter((c) => !section.includes(`\`${c}\``)).sort();
    expect(missing).toEqual([]);
  });

  test("§6 lists every server code the reference client acts on (refusal() in src/client/account.ts)", () => {
    const source = readFileSync(join(ROOT, "src/client/account.ts"), "utf8");
    const body = /export function refusal\([^]*?\n}\n/.exec(source);
    expect(body, "refusal() in src/client/account.ts").not.toBeNull();
    const acted = new Set([...body![0].matchAll(/case "([a-z0-9_]+)":/g)].map((m) => m[1]!));
    expect(acted.has("auth_failed")).toBe(true);
    const section = tableCells("6. Error codes");
    expect([...acted].filter((c) => !section.includes(`\`${c}\``)).sort()).toEqual([]);
  });

  test("the independent tables of (c), written from the spec, cover exactly the message types of messages.ts", () => {
    expect([...Spec.TYPES].sort()).toEqual([...MESSAGE_TYPES].sort());
  });

  test("§7.1 lists exactly the chat requests the chat core handles (REQUESTS in src/server/chat.ts)", () => {
    const source = readFileSync(join(ROOT, "src/server/chat.ts"), "utf8");
    const set = /const REQUESTS = new Set\(\[([^\]]*)\]\)/.exec(source);
    expect(set, "REQUESTS in src/server/chat.ts").not.toBeNull();
    const handled = [...set![1]!.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]!).sort();
    const start = SPEC.indexOf("\n### 7.1 ");
    const table = SPEC.slice(start, SPEC.indexOf("\n\n", SPEC.indexOf("| type |", start)));
    const listed = [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!).sort();
    expect(listed).toEqual(handled);
  });

  test("§6 has a row for every nack and notice code of the chat core (src/server/chat.ts), and no other", () => {
    const source = readFileSync(join(ROOT, "src/server/chat.ts"), "utf8");
    const used = new Set([...source.matchAll(/type: "(?:nack|notice)",[^}]*?code: "([a-z0-9_]+)"/g)].map((m) => m[1]!));
    expect([...used].sort()).toEqual(expect.arrayContaining(["dm_more", "dm_store_full", "flood", "no_such_user", "not_member", "recorded", "room_limit", "slow_down"]));
    const start = SPEC.indexOf("Codes in `nack` and `notice`");
    expect(start).toBeGreaterThan(0);
    const tableStart = SPEC.indexOf("| code |", start);
    const table = SPEC.slice(tableStart, SPEC.indexOf("\n\n", tableStart));
    const rows = [...table.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1]!).sort();
    expect(rows).toEqual([...used].sort());
  });

  test("§8 lists every limit of src/protocol/limits.ts with its value", async () => {
    const limits = (await import("../../src/protocol/limits.ts")) as Record<string, unknown>;
    const section = tableCells("8. Limits");
    const rows = section.split("\n").filter((l) => l.startsWith("|"));
    const names = Object.keys(limits);
    expect(names.length).toBeGreaterThan(20);
    for (const name of names) {
      const row = rows.find((l) => l.includes(`\`${name}\``));
      expect(row, name).toBeDefined();
      const v = limits[name];
      const want = v instanceof RegExp ? v.source.replace(/^\^/, "").replace(/\$$/, "") : String(v);
      expect([name, row!.includes(want)]).toEqual([name, true]);
    }
  });

  test("§4, §5 and §7 have a table per message type whose members match messages.ts, in order", () => {
    // encodeMessage reads each schema member once, in schema order: a Proxy lists them.
    // A member's value is empty bytes that also answer any nested member (an object member's fields) with the same.
    const empty = (): unknown => {
      const bytes = new Uint8Array(0);
      return new Proxy(bytes, {
        get: (t, k) => {
          if (!(k in t)) return empty();
          const v = Reflect.get(t, k);
          return typeof v === "function" ? v.bind(t) : v;
        },
      });
    };
    const schemaMembers = (type: MessageType): string[] => {
      const seen: string[] = [];
      const probe = new Proxy({ type } as Record<string, unknown>, {
        get: (target, key) => {
          if (key === "type") return target.type;
          if (typeof key === "string") seen.push(key);
          return empty();
        },
      });
      encodeMessage(probe as unknown as Message);
      return seen;
    };
    for (const type of MESSAGE_TYPES) {
      const lines = SPEC.split("\n");
      const at = lines.findIndex((l) => l.startsWith(`| \`type\` | string | \`"${type}"\``));
      expect(at, `no table for ${type}`).toBeGreaterThan(0);
      const members: string[] = [];
      for (let i = at + 1; i < lines.length && lines[i]!.startsWith("| `"); i++) members.push(lines[i]!.split("`")[1]!);
      expect(members, type).toEqual(schemaMembers(type));
    }
  });

  test("§9 lists every label of src/crypto/labels.ts with its exact ASCII and hex", () => {
    const section = tableCells("9. Labels");
    const all = Object.entries(labels).filter((e): e is [string, Uint8Array] => e[1] instanceof Uint8Array);
    expect(all.length).toBe(12);
    for (const [name, bytes] of all) {
      const row = section.split("\n").find((l) => l.startsWith(`| \`${name}\``));
      expect(row, name).toBeDefined();
      expect(row).toContain(`| \`${new TextDecoder().decode(bytes)}\` |`);
      expect(row).toContain(`| \`${toHex(bytes)}\` |`);
    }
  });
});
