/**
 * Known-answer tests for the securechat/1 wire protocol against
 * test/vectors/protocol/handshake.json (docs/PROTOCOL.md §10):
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
 * Plus two doc-consistency checks: every error code thrown in src/protocol,
 * src/crypto and src/bytes.ts is in PROTOCOL.md §6, and every label in
 * src/crypto/labels.ts is in §8 with its hex.
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
import { isSecureChatError } from "../../src/errors.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, ServerHandshake, type SessionKeys, signClientAuth, verifyClientAuth } from "../../src/protocol/handshake.ts";
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

/** Client side up to established: the keys and a channel that has sent record 0 and opened welcome. */
function clientSession(): { keys: SessionKeys; channel: SecureChannel } {
  const client = newClient();
  client.hello();
  const keys = client.receive(decodeMessage(frameBody(V.server_hello.frame, MAX_FRAME_PRELOGIN), ["server_hello", "error"]));
  const channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
  return { keys, channel };
}

/** Server side up to await_auth. */
function serverSession(): { server: ServerHandshake; keys: SessionKeys; channel: SecureChannel } {
  const server = newServer();
  const { keys } = server.receiveHello(decodeMessage(frameBody(V.client_hello.frame, MAX_FRAME_PRELOGIN), ["client_hello"]));
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

  test("the first record (login) is byte-exact", () => {
    const { keys, channel } = clientSession();
    const sig = signClientAuth(fromHex(I.identity_key_seed), keys);
    expect(toHex(sig)).toBe(V.client_auth.sig);
    const login: Message = { type: "login", user: I.user, sig, password: I.password };
    expect(encodeMessage(login)).toBe(V.client_auth.json);
    expect(toHex(channel.seal([login]))).toBe(V.client_auth.frame);
  });

  test("seals every c2s record and opens every s2c record, through the key updates", () => {
    const { channel } = clientSession();
    const decoder = new FrameDecoder(MAX_FRAME_PRELOGIN);
    for (let i = 0; i < V.records.c2s.length; i++) {
      const out = V.records.c2s[i]!;
      expect(channel.sealer.count).toBe(out.n);
      expect(channel.sealer.epoch).toBe(out.key_epoch);
      expect(toHex(channel.seal(recordMessages(out.plaintext)))).toBe(out.frame);

      const inbound = V.records.s2c[i]!;
      expect(channel.opener.epoch).toBe(inbound.key_epoch);
      const bodies = decoder.push(fromHex(inbound.frame));
      expect(bodies.length).toBe(1);
      const messages = channel.open(bodies[0]!, i === 0 ? ["welcome"] : ["error"]);
      expect(messages.map(encodeMessage).join("\n")).toBe(inbound.plaintext);
      if (i === 0) {
        // §4.7: after welcome both directions use the post-authentication limit.
        expect(toHex((messages[0] as Message<"welcome">).session_id)).toBe(V.key_schedule.session_id);
        decoder.limit = MAX_FRAME;
        channel.sealer.maxFrame = MAX_FRAME;
      }
    }
  });
});

describe("(b) server: ServerHandshake and SecureChannel reproduce the vectors", () => {
  test("answers the client_hello frame with the vector's server_hello frame and keys", () => {
    const server = newServer();
    const { reply, keys } = server.receiveHello(decodeMessage(frameBody(V.client_hello.frame, MAX_FRAME_PRELOGIN), ["client_hello"]));
    expect(encodeMessage(reply)).toBe(V.server_hello.json);
    expect(toHex(encodeFrame(encodeMessageBytes(reply), MAX_FRAME_PRELOGIN))).toBe(V.server_hello.frame);
    expectKeys(keys);
  });

  test("opens the client's first record and accepts the login", () => {
    const { server, keys, channel } = serverSession();
    const messages = channel.open(frameBody(V.client_auth.frame, MAX_FRAME_PRELOGIN), ["register", "login"]);
    expect(messages.length).toBe(1);
    const auth = server.receiveAuth(messages[0]!);
    expect(server.state).toBe("done");
    expect(auth.type).toBe("login");
    if (auth.type !== "login") throw new Error("unreachable");
    expect(auth.user).toBe(I.user);
    expect(auth.password).toBe(I.password);
    expect(verifyClientAuth(fromHex(I.identity_key_public), keys, auth.sig)).toBe(true);
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
      const messages = channel.open(bodies[0]!, i === 0 ? ["login"] : ["error"]);
      expect(messages.map(encodeMessage).join("\n")).toBe(inbound.plaintext);

      const out = V.records.s2c[i]!;
      expect(channel.sealer.count).toBe(out.n);
      expect(channel.sealer.epoch).toBe(out.key_epoch);
      const sealed = channel.seal(i === 0 ? [{ type: "welcome", user: I.user, session_id: keys.sessionId }] : recordMessages(out.plaintext));
      expect(toHex(sealed)).toBe(out.frame);
      if (i === 0) {
        decoder.limit = MAX_FRAME;
        channel.sealer.maxFrame = MAX_FRAME;
      }
    }
  });
});

/** Runs one negative case through the project's code; returns the error code. */
function runWithProject(n: Negative): string {
  const bytes = fromHex(n.bytes);
  switch (n.step) {
    case "frame":
      return codeOf(() => new FrameDecoder(n.frame_limit!).push(bytes));
    case "client_hello":
      return codeOf(() => {
        const [body] = new FrameDecoder(MAX_FRAME_PRELOGIN).push(bytes);
        newServer().receiveHello(decodeMessage(body!, ["client_hello"]));
      });
    case "server_hello":
      return codeOf(() => {
        const client = newClient();
        client.hello();
        const [body] = new FrameDecoder(MAX_FRAME_PRELOGIN).push(bytes);
        client.receive(decodeMessage(body!, ["server_hello", "error"]));
      });
    case "first_record":
      return codeOf(() => {
        const { server, channel } = serverSession();
        const [body] = new FrameDecoder(MAX_FRAME_PRELOGIN).push(bytes);
        const messages = channel.open(body!, ["register", "login"]);
        if (messages.length !== 1) throw new Error("first record must carry one message");
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

  // §8 labels, copied from the spec's table as ASCII.
  const L = {
    hashInit: ascii("securechat/1 handshake"),
    sigServer: ascii("securechat/1 server handshake signature"),
    sigClient: ascii("securechat/1 client auth signature"),
    c2s: ascii("securechat/1 key c2s"),
    s2c: ascii("securechat/1 key s2c"),
    sessionId: ascii("securechat/1 session id"),
    rekey: ascii("securechat/1 rekey"),
  };

  // §7
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

  // §5.0 member types.
  type Kind = { bytes: number } | { int: [number, number] } | { text: [number, number] } | "user";
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
    ],
    login: [
      ["user", "user"],
      ["sig", { bytes: 64 }],
      ["password", { text: [1, 1024] }, true],
      ["ticket", { bytes: 32 }, true],
    ],
    welcome: [
      ["user", "user"],
      ["session_id", { bytes: 16 }],
      ["ticket", { bytes: 32 }, true],
      ["ticket_expires", { int: [0, MAX_SAFE] }, true],
    ],
    error: [
      ["code", { text: [1, 64] }],
      ["message", { text: [0, 4096] }],
    ],
  };

  export type Msg = { type: string } & Record<string, unknown>;

  function member(v: unknown, kind: Kind): unknown {
    if (kind === "user") {
      if (typeof v !== "string" || !/^[a-z][a-z0-9_-]{1,31}$/.test(v)) fail("message_invalid");
      return v;
    }
    if ("bytes" in kind) return b64(v, kind.bytes);
    if ("int" in kind) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < kind.int[0] || v > kind.int[1] || v > MAX_SAFE) fail("message_invalid");
      return v;
    }
    // text: len16 is JavaScript's string length; well-formed means no lone surrogate.
    if (typeof v !== "string" || v.length < kind.text[0] || v.length > kind.text[1] || !v.isWellFormed()) fail("message_invalid");
    return v;
  }

  /** §5.0 steps 1–6, in order. Byte members come back decoded. */
  export function parse(bytes: Uint8Array, allowed: readonly string[]): Msg {
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
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail("message_not_object");
    const o = v as Record<string, unknown>;
    if (typeof o.type !== "string") return fail("message_invalid");
    if (!Object.hasOwn(TABLES, o.type)) return fail("message_unknown_type");
    if (!allowed.includes(o.type)) return fail("message_unexpected");
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
    return out;
  }

  /** §3.4: split at every LF; an empty segment is fatal; validate all before returning any. */
  export function splitPayload(p: Uint8Array, allowed: readonly string[]): Msg[] {
    const segments: Uint8Array[] = [];
    let start = 0;
    for (let i = 0; i <= p.length; i++) {
      if (i === p.length || p[i] === 0x0a) {
        if (i === start) fail("record_empty_message");
        segments.push(p.subarray(start, i));
        start = i + 1;
      }
    }
    return segments.map((s) => parse(s, allowed));
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
    const sh = parse(readFrame(frame, LIMIT_PRELOGIN).body, ["server_hello", "error"]);
    if (sh.type === "error") fail("handshake_refused");
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

  /** §4.3 steps 1, 2 and 5 on the server (the checks that can fail on client input). */
  export function serverReceiveClientHello(ephemeralSecret: Uint8Array, frame: Uint8Array): Msg {
    const ch = parse(readFrame(frame, LIMIT_PRELOGIN).body, ["client_hello"]);
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

  /** §4.6: the server's judgement of the first record (signature checks that need an account store excepted). */
  export function judgeFirstRecord(m: Msg, h: Uint8Array, challenge: Uint8Array): void {
    if (m.type === "register" && !verify(m.identity_key as Uint8Array, clientSigInput(h, challenge), m.sig as Uint8Array)) {
      fail("auth_bad_signature");
    }
    if (m.type === "login" && ("password" in m) === ("ticket" in m)) fail("handshake_unexpected");
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
      return (sent ??= Spec.parse(Spec.readFrame(hex(V.client_hello.frame), Spec.LIMIT_PRELOGIN).body, ["client_hello"]));
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
    const login = Spec.parse(Spec.utf8(V.client_auth.json), ["register", "login"]);
    expect(login.user).toBe(I.user);
    expect(login.password).toBe(I.password);
    expect(S(login.sig as Uint8Array)).toBe(V.client_auth.sig);
    expect(ed25519.verify(login.sig as Uint8Array, input, hex(I.identity_key_public), { zip215: false })).toBe(true);
    expect(V.client_auth.frame).toBe(V.records.c2s[0]!.frame);
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

        const p = receiver.open(hex(rec.frame), limit);
        expect(new TextDecoder().decode(p)).toBe(rec.plaintext);
        const allowed = i === 0 ? (dir === "c2s" ? ["register", "login"] : ["welcome"]) : ["error"];
        const messages = Spec.splitPayload(p, allowed);
        if (i === 0) {
          // §3.4: the first record each way carries exactly one message.
          expect(messages.length).toBe(1);
          if (dir === "s2c") {
            // §4.7: the client checks the echoed session id.
            expect(S(messages[0]!.session_id as Uint8Array)).toBe(V.key_schedule.session_id);
            expect(messages[0]!.user).toBe(I.user);
          } else {
            Spec.judgeFirstRecord(messages[0]!, session.client.H, session.client.sh.challenge as Uint8Array);
          }
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
          const messages = Spec.splitPayload(d.open(bytes, Spec.LIMIT_PRELOGIN), ["register", "login"]);
          if (messages.length !== 1) return "more than one message";
          Spec.judgeFirstRecord(messages[0]!, session.client.H, session.client.sh.challenge as Uint8Array);
          return "no error";
        }
        case "record": {
          const dir = n.direction as Direction;
          const d = new Spec.Direction(dir === "c2s" ? session.client.c2s : session.client.s2c, I.rekey_records, I.rekey_bytes);
          for (const r of V.records[dir].slice(0, n.after!)) d.open(hex(r.frame), Spec.LIMIT);
          Spec.splitPayload(d.open(bytes, Spec.LIMIT), ["error", "register", "login", "welcome"]);
          return "no error";
        }
      }
    } catch (e) {
      return e instanceof Spec.Fail ? e.code : `unexpected: ${String(e)}`;
    }
  }

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

  test("§4–§5 have a table per message type whose members match messages.ts, in order", () => {
    // encodeMessage reads each schema member once, in schema order: a Proxy lists them.
    const schemaMembers = (type: MessageType): string[] => {
      const seen: string[] = [];
      const probe = new Proxy({ type } as Record<string, unknown>, {
        get: (target, key) => {
          if (key === "type") return target.type;
          if (typeof key === "string") seen.push(key);
          return new Uint8Array(0);
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

  test("§8 lists every label of src/crypto/labels.ts with its exact ASCII and hex", () => {
    const section = tableCells("8. Labels");
    const all = Object.entries(labels).filter((e): e is [string, Uint8Array] => e[1] instanceof Uint8Array);
    expect(all.length).toBe(7);
    for (const [name, bytes] of all) {
      const row = section.split("\n").find((l) => l.startsWith(`| \`${name}\``));
      expect(row, name).toBeDefined();
      expect(row).toContain(`| \`${new TextDecoder().decode(bytes)}\` |`);
      expect(row).toContain(`| \`${toHex(bytes)}\` |`);
    }
  });
});
