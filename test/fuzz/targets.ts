/**
 * Fuzz targets for the protocol and transcript parsers (property-based, with
 * fast-check). Each target pairs an arbitrary with a check that enforces the
 * shared invariants:
 *
 *   - the only exception is SecureChatError, with a code matching /^[a-z0-9_]+$/;
 *   - no single input takes over 1 s;
 *   - memory stays bounded (FrameDecoder.pending ≤ 4 + limit);
 *   - valid inputs round-trip;
 *   - mutated records never open; mutated transcripts never verify as PASS
 *     unless the mutation is a no-op.
 *
 * Used by test/fuzz/*.test.ts (bounded, seeded) and scripts/fuzz.ts (timed).
 */
import fc from "fast-check";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBase64, utf8 } from "../../src/bytes.ts";
import { type Ed25519KeyPair, ed25519Generate, x25519Generate } from "../../src/crypto/index.ts";
import { SecureChatError } from "../../src/errors.ts";
import { RecordOpener, RecordSealer } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, ServerHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import type { RekeyPolicy, SessionKeys } from "../../src/protocol/session.ts";
import {
  ERROR_CODE_MAX,
  ERROR_TEXT_MAX,
  FRAME_HEADER_LENGTH,
  MAX_FRAME,
  MESSAGE_TEXT_MAX,
  PASSWORD_FIELD_MAX,
  PROTOCOL_VERSION,
  REASON_TEXT_MAX,
} from "../../src/protocol/limits.ts";
import {
  MESSAGE_TYPES,
  type Message,
  decodeMessage,
  encodeMessage,
  joinRecordPayload,
  splitRecordPayload,
  validateMessage,
} from "../../src/protocol/messages.ts";
import { type Entry, type Scalar, entryLine, makeEntry, parseEntry } from "../../src/transcript/format.ts";
import { verifyTranscript } from "../../src/transcript/verify.ts";
import { buildEntries, splitFiles } from "../transcript/helpers.ts";

// ---------------------------------------------------------------- invariants

export const CODE_RE = /^[a-z0-9_]+$/;
/** Per-input time budget (ms). */
export const MAX_INPUT_MS = 1000;

export class InvariantError extends Error {
  override readonly name = "InvariantError";
}

export function invariant(ok: unknown, what: string): asserts ok {
  if (!ok) throw new InvariantError(what);
}

/** Rethrows anything but a SecureChatError with a stable code; returns the code (or null when fn returned). */
export function rejection(e: unknown): string {
  if (!(e instanceof SecureChatError)) {
    throw new InvariantError(`non-SecureChatError thrown: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
  }
  if (typeof e.code !== "string" || !CODE_RE.test(e.code)) throw new InvariantError(`unstable error code ${JSON.stringify(e.code)}`, { cause: e });
  return e.code;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

/** Runs fn: a value, or a SecureChatError's code; anything else breaks an invariant. */
export function attempt<T>(fn: () => T): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    return { ok: false, code: rejection(e) };
  }
}

export async function attemptAsync<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, code: rejection(e) };
  }
}

function timed<A>(name: string, check: (a: A) => void): (a: A) => void {
  return (a) => {
    const t0 = performance.now();
    check(a);
    const ms = performance.now() - t0;
    invariant(ms <= MAX_INPUT_MS, `${name}: one input took ${ms.toFixed(0)} ms (> ${MAX_INPUT_MS} ms)`);
  };
}

function timedAsync<A>(name: string, check: (a: A) => Promise<void>): (a: A) => Promise<void> {
  return async (a) => {
    const t0 = performance.now();
    await check(a);
    const ms = performance.now() - t0;
    invariant(ms <= MAX_INPUT_MS, `${name}: one input took ${ms.toFixed(0)} ms (> ${MAX_INPUT_MS} ms)`);
  };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Splits bytes at the given cut points (any numbers; normalized into range). */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let start = 0;
  for (const p of points) {
    out.push(bytes.subarray(start, p));
    start = p;
  }
  out.push(bytes.subarray(start));
  return out;
}

// ---------------------------------------------------------------- targets

export interface Target<T = unknown> {
  name: string;
  /** Runs per `bun test`. */
  runs: number;
  /** Builds the property (sync or async) from its arbitrary. */
  property(): fc.IRawProperty<[T]>;
}

function syncTarget<T>(name: string, runs: number, arb: () => fc.Arbitrary<T>, check: (input: T) => void): Target<T> {
  return { name, runs, property: () => fc.property(arb(), timed(name, check)) };
}

function asyncTarget<T>(name: string, runs: number, arb: () => fc.Arbitrary<T>, check: (input: T) => Promise<void>): Target<T> {
  return { name, runs, property: () => fc.asyncProperty(arb(), timedAsync(name, check)) };
}

// ---- framing ------------------------------------------------------------

/** A frame header with any 32-bit length (huge ones included). */
const header = (length: fc.Arbitrary<number>) =>
  length.map((n) => new Uint8Array([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]));

const frameChunk = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 96 }) },
  { weight: 2, arbitrary: header(fc.nat({ max: 0xffffffff })) },
  { weight: 2, arbitrary: header(fc.oneof(fc.integer({ min: 0, max: 80 }), fc.constantFrom(0, 1, 4096, 4097, 65536, 65537, 0x7fffffff, 0x80000000, 0xffffffff))) },
  { weight: 1, arbitrary: fc.tuple(header(fc.integer({ min: 0, max: 40 })), fc.uint8Array({ maxLength: 48 })).map(([h, b]) => concatAll([h, b])) },
);

/** Arbitrary byte chunks: pending stays ≤ 4 + limit, failures are sticky and coded. */
export const frameDecoderChunks = syncTarget(
  "frame_decoder_chunks",
  400,
  () => fc.record({ limit: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(4096, MAX_FRAME)), chunks: fc.array(frameChunk, { maxLength: 24 }) }),
  ({ limit, chunks }) => {
    const d = new FrameDecoder(limit);
    let failed: string | null = null;
    for (const chunk of chunks) {
      const r = attempt(() => d.push(chunk));
      if (failed !== null) {
        invariant(!r.ok && r.code === failed, `decoder: failure not sticky (${failed} then ${r.ok ? "ok" : r.code})`);
        continue;
      }
      if (!r.ok) {
        invariant(r.code === "frame_empty" || r.code === "frame_too_large", `decoder: unexpected code ${r.code}`);
        failed = r.code;
      } else {
        for (const body of r.value) invariant(body.length >= 1 && body.length <= limit, `decoder: body of ${body.length} bytes with limit ${limit}`);
      }
      invariant(d.pending <= FRAME_HEADER_LENGTH + limit, `decoder: pending ${d.pending} > 4 + ${limit}`);
    }
  },
);

/** Valid frames split at arbitrary points come out exactly as sent. */
export const frameDecoderRoundTrip = syncTarget(
  "frame_decoder_roundtrip",
  300,
  () =>
    fc
      .integer({ min: 1, max: 300 })
      .chain((limit) =>
        fc.record({
          limit: fc.constant(limit),
          bodies: fc.array(fc.uint8Array({ minLength: 1, maxLength: limit }), { maxLength: 8 }),
          cuts: fc.array(fc.nat(), { maxLength: 16 }),
        }),
      ),
  ({ limit, bodies, cuts }) => {
    const wire = concatAll(bodies.map((b) => encodeFrame(b, limit)));
    const d = new FrameDecoder(limit);
    const got: Uint8Array[] = [];
    for (const chunk of cut(wire, cuts)) {
      got.push(...d.push(chunk));
      invariant(d.pending <= FRAME_HEADER_LENGTH + limit, `decoder: pending ${d.pending} > 4 + ${limit}`);
    }
    invariant(d.pending === 0, `decoder: ${d.pending} bytes pending after whole frames`);
    invariant(got.length === bodies.length, `decoder: ${got.length} frames out, ${bodies.length} in`);
    got.forEach((g, i) => invariant(bytesEqual(g, bodies[i]!), `decoder: frame ${i} differs`));
  },
);

// ---- messages -----------------------------------------------------------

const b64 = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const userName = fc.stringMatching(/^[a-z][a-z0-9_-]{1,31}$/);
const roomName = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/);
/** Text without control characters, well-formed: `min`..`max` graphemes and at most `maxBytes` bytes of UTF-8. */
const safeText = (min: number, max: number, maxBytes: number) =>
  fc
    .string({ unit: "grapheme", minLength: min, maxLength: max })
    .filter((s) => Buffer.byteLength(s) >= min && Buffer.byteLength(s) <= maxBytes && !/[\u0000-\u001f\u007f-\u009f]/.test(s));
const uint = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const pos = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const hex32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString("hex"));

/** Valid messages (as Message values, byte fields as Uint8Array) for a spread of types. */
export const validMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant("client_hello" as const), version: fc.nat({ max: 0xffff }), e: b64(32), nonce: b64(32) }),
  fc.record({
    type: fc.constant("server_hello" as const),
    version: fc.nat({ max: 0xffff }),
    e: b64(32),
    challenge: b64(32),
    host_key: b64(32),
    rekey_records: pos,
    rekey_bytes: pos,
    sig: b64(64),
  }),
  fc.record(
    { type: fc.constant("register" as const), user: userName, identity_key: b64(32), sig: b64(64), password: safeText(1, 32, PASSWORD_FIELD_MAX), ticket_key: b64(32) },
    { requiredKeys: ["type", "user", "identity_key", "sig", "password"] },
  ),
  fc.oneof(
    fc.record({ type: fc.constant("login" as const), user: userName, sig: b64(64), password: safeText(1, 32, PASSWORD_FIELD_MAX) }),
    fc.record({ type: fc.constant("login" as const), user: userName, sig: b64(64), password: safeText(1, 32, PASSWORD_FIELD_MAX), ticket_key: b64(32) }),
    fc.record({ type: fc.constant("login" as const), user: userName, sig: b64(64), ticket: b64(32) }),
  ),
  fc.oneof(
    fc.record({ type: fc.constant("welcome" as const), user: userName, session_id: b64(16) }),
    fc.record({ type: fc.constant("welcome" as const), user: userName, session_id: b64(16), ticket: b64(32), ticket_expires: uint }),
  ),
  fc.record({ type: fc.constant("error" as const), code: safeText(1, 16, ERROR_CODE_MAX), message: safeText(0, 40, ERROR_TEXT_MAX) }),
  fc.constantFrom({ type: "logout" as const }, { type: "ping" as const }, { type: "pong" as const }, { type: "rooms" as const }),
  fc.record({ type: fc.constant("bye" as const), reason: safeText(0, 40, REASON_TEXT_MAX) }),
  fc.record({ type: fc.constantFrom("join" as const, "leave" as const, "who" as const), room: roomName }),
  fc.record({ type: fc.constant("say" as const), id: uint, room: roomName, text: safeText(1, 64, MESSAGE_TEXT_MAX), action: fc.boolean() }, { requiredKeys: ["type", "id", "room", "text"] }),
  fc.record({ type: fc.constant("dm" as const), id: uint, to: userName, text: safeText(1, 64, MESSAGE_TEXT_MAX), action: fc.boolean() }, { requiredKeys: ["type", "id", "to", "text"] }),
  fc.record({ type: fc.constant("history" as const), room: roomName, limit: fc.integer({ min: 1, max: 1000 }) }),
  fc.record({ type: fc.constant("ack" as const), id: uint, seq: pos, ts: uint, tseq: pos, head: hex32 }, { requiredKeys: ["type", "id", "seq", "ts"] }),
  fc.record({ type: fc.constant("nack" as const), id: uint, code: safeText(1, 16, ERROR_CODE_MAX), message: safeText(0, 40, ERROR_TEXT_MAX) }),
  fc.record(
    { type: fc.constant("message" as const), room: roomName, seq: pos, ts: uint, from: userName, text: safeText(1, 64, MESSAGE_TEXT_MAX), action: fc.boolean(), history: fc.boolean() },
    { requiredKeys: ["type", "room", "seq", "ts", "from", "text"] },
  ),
  fc.record({ type: fc.constant("room" as const), room: roomName, users: fc.array(userName, { maxLength: 5 }), seq: uint }),
  fc.record({ type: fc.constant("room_list" as const), rooms: fc.array(fc.record({ name: roomName, users: uint }), { maxLength: 4 }) }),
  fc.record({ type: fc.constant("history_end" as const), room: roomName, count: fc.nat({ max: 1000 }) }),
  fc.record({ type: fc.constant("notice" as const), code: safeText(1, 16, ERROR_CODE_MAX), text: safeText(0, 40, ERROR_TEXT_MAX) }),
) as fc.Arbitrary<Message>;

/** The JSON object a valid message travels as (byte fields in base64). */
const wireObject = (m: Message): Record<string, unknown> => JSON.parse(encodeMessage(m)) as Record<string, unknown>;

/** A wire object with one field removed, replaced, or added (with any JSON value). */
const mutatedWireObject = fc
  .record({
    m: validMessage,
    op: fc.constantFrom("delete", "replace", "add", "retype"),
    pick: fc.nat(),
    value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.string(), fc.integer(), fc.double(), fc.constantFrom(-0, 2 ** 53, -1, 1.5, "", "AAAA", null, true)),
    key: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("type", "__proto__", "constructor", "toString", "hasOwnProperty")),
    type: fc.constantFrom(...MESSAGE_TYPES),
  })
  .map(({ m, op, pick, value, key, type }) => {
    const o = wireObject(m);
    const keys = Object.keys(o);
    const k = keys[pick % keys.length]!;
    if (op === "delete") delete o[k];
    else if (op === "replace") o[k] = value;
    else if (op === "retype") o.type = type;
    else Object.defineProperty(o, key, { value, enumerable: true, configurable: true, writable: true });
    return o;
  });

const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.anything({ maxDepth: 2, withObjectString: true, withNullPrototype: true }),
  fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 })).chain((d) => fc.constantFrom(...MESSAGE_TYPES).map((type) => ({ ...d, type }))),
  mutatedWireObject,
  validMessage.map(wireObject),
);

/** If a value is accepted, the accepted message re-encodes to a fixed point and decodes back to itself. */
function checkAccepted(m: Message): void {
  const text = encodeMessage(m);
  const again = attempt(() => decodeMessage(utf8(text)));
  invariant(again.ok, `messages: accepted message does not decode after encoding (${again.ok ? "" : again.code}): ${text}`);
  invariant(encodeMessage(again.value) === text, `messages: encoding is not a fixed point: ${text} → ${encodeMessage(again.value)}`);
}

export const validateMessageJson = syncTarget("validate_message_json", 500, () => anyJson, (value) => {
  const r = attempt(() => validateMessage(value));
  if (r.ok) checkAccepted(r.value);
  // With an allow-list, a message is accepted only if its type is allowed.
  const allowed = ["ping", "say"] as const;
  const ra = attempt(() => validateMessage(value, allowed));
  if (ra.ok) invariant((allowed as readonly string[]).includes(ra.value.type), `messages: ${ra.value.type} accepted outside the allow-list`);
  invariant(ra.ok === (r.ok && (allowed as readonly string[]).includes(r.value.type)), "messages: allow-list changed acceptance of an allowed type");
});

export const validMessageRoundTrip = syncTarget("valid_message_roundtrip", 400, () => validMessage, (m) => {
  const r = attempt(() => decodeMessage(utf8(encodeMessage(m))));
  invariant(r.ok, `messages: valid ${m.type} rejected (${r.ok ? "" : r.code}): ${encodeMessage(m)}`);
  invariant(encodeMessage(r.value) === encodeMessage(m), "messages: round trip changed the message");
  checkAccepted(r.value);
});

const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 256 }),
  fc.string({ unit: "binary", maxLength: 128 }).map(utf8),
  fc.json({ maxDepth: 3 }).map(utf8),
  validMessage.map((m) => utf8(encodeMessage(m))),
  fc.tuple(validMessage, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([m, i, b]) => {
    const x = utf8(encodeMessage(m));
    x[i % x.length] = b;
    return x;
  }),
  fc.nat({ max: 5000 }).map((n) => utf8("[".repeat(n) + "]".repeat(n))),
  fc.nat({ max: 5000 }).map((n) => utf8(`{"type":"say","x":${"[".repeat(n)}${"]".repeat(n)}}`)),
);

export const decodeMessageBytes = syncTarget("decode_message_bytes", 500, () => anyBytes, (bytes) => {
  const r = attempt(() => decodeMessage(bytes));
  if (r.ok) checkAccepted(r.value);
});

// ---- record payloads ----------------------------------------------------

export const splitPayload = syncTarget(
  "split_record_payload",
  400,
  () =>
    fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.array(fc.constantFrom(0x0a, 0x7b, 0x7d, 0x41), { maxLength: 32 }).map((a) => new Uint8Array(a)),
      fc.array(fc.string({ minLength: 1, maxLength: 16 }).filter((s) => !s.includes("\n")), { minLength: 1, maxLength: 6 }).map((parts) => joinRecordPayload(parts)),
    ),
  (plaintext) => {
    const r = attempt(() => splitRecordPayload(plaintext));
    const wellFormed = plaintext.length > 0 && plaintext[0] !== 0x0a && plaintext[plaintext.length - 1] !== 0x0a && !/\n\n/.test(Buffer.from(plaintext).toString("latin1"));
    invariant(r.ok === wellFormed, `split: ${r.ok ? "accepted" : "rejected"} ${Buffer.from(plaintext).toString("hex")}`);
    if (!r.ok) {
      invariant(r.code === "record_empty_message", `split: code ${r.code}`);
      return;
    }
    for (const p of r.value) invariant(p.length > 0 && !p.includes(0x0a), "split: empty part or part with LF");
    const joined = concatAll(r.value.flatMap((p, i) => (i === 0 ? [p] : [new Uint8Array([0x0a]), p])));
    invariant(bytesEqual(joined, plaintext), "split: parts do not join back to the payload");
  },
);

// ---- records ------------------------------------------------------------

const KEY = new Uint8Array(32).map((_, i) => i * 7 + 1);
const policyArb = fc.record({ records: fc.integer({ min: 1, max: 4 }), bytes: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(2 ** 32)) });

export const recordOpenArbitrary = syncTarget(
  "record_open_arbitrary",
  400,
  () => fc.record({ policy: policyArb, bodies: fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 4 }) }),
  ({ policy, bodies }) => {
    const o = new RecordOpener(KEY, policy);
    let failed = false;
    for (const body of bodies) {
      const r = attempt(() => o.open(body));
      if (failed) invariant(!r.ok && r.code === "channel_closed", "opener: not sticky after a failure");
      else {
        invariant(!r.ok, `opener: opened ${body.length} arbitrary bytes`);
        invariant(r.code === "record_auth_failed", `opener: code ${r.code}`);
        invariant(o.closed, "opener: not closed after a failure");
      }
      failed = true;
    }
  },
);

const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant("splice" as const), at: fc.nat(), extra: fc.uint8Array({ minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 4 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(b: Uint8Array, m: Mutation): Uint8Array {
  const x = b.slice();
  const raw = "at" in m ? m.at : 0;
  const at = b.length === 0 ? 0 : m.kind === "truncate" || m.kind === "splice" ? raw % (b.length + 1) : raw % b.length;
  switch (m.kind) {
    case "flip":
      if (x.length) x[at] = x[at]! ^ (1 << m.bit);
      return x;
    case "set":
      if (x.length) x[at] = m.value;
      return x;
    case "truncate":
      return x.subarray(0, at);
    case "extend":
      return concatAll([x, m.extra]);
    case "splice":
      return concatAll([x.subarray(0, at), m.extra, x.subarray(at)]);
    case "delete":
      return concatAll([x.subarray(0, at), x.subarray(at + m.n)]);
  }
}

/** Seals records; opens them in order with one of them mutated: the mutated one never opens, the others round-trip. */
export const recordOpenMutated = syncTarget(
  "record_open_mutated",
  300,
  () =>
    fc.record({
      policy: policyArb,
      plaintexts: fc.array(fc.uint8Array({ minLength: 2, maxLength: 64 }), { minLength: 1, maxLength: 5 }),
      victim: fc.nat(),
      mutation,
      swap: fc.boolean(),
    }),
  ({ policy, plaintexts, victim, mutation: mu, swap }) => {
    const s = new RecordSealer(KEY, policy);
    const bodies = plaintexts.map((p) => s.seal(p).subarray(FRAME_HEADER_LENGTH));
    const v = victim % bodies.length;
    const o = new RecordOpener(KEY, policy);
    // Either mutate the victim's bytes, or (swap) deliver it out of order.
    const sent: Uint8Array[] = bodies.map((b) => b.slice());
    if (swap && bodies.length > 1) {
      const w = (v + 1) % bodies.length;
      [sent[v], sent[w]] = [sent[w]!, sent[v]!];
    } else sent[v] = mutate(bodies[v]!, mu);
    // Records before the first changed one open; the first changed one never does.
    const first = sent.findIndex((b, i) => !bytesEqual(b, bodies[i]!));
    const upto = first === -1 ? sent.length : first;
    for (let i = 0; i < upto; i++) {
      const r = attempt(() => o.open(sent[i]!));
      invariant(r.ok && bytesEqual(r.value, plaintexts[i]!), `opener: genuine record ${i} did not round-trip`);
    }
    if (first === -1) return;
    const r = attempt(() => o.open(sent[first]!));
    invariant(!r.ok, `opener: mutated record ${first} opened (${swap ? "reordered" : mu.kind})`);
    invariant(r.code === "record_auth_failed", `opener: code ${r.code}`);
    invariant(o.closed, "opener: not closed after a failure");
  },
);

// ---- handshakes ---------------------------------------------------------

const HOST: Ed25519KeyPair = ed25519Generate(new Uint8Array(32).fill(9));
const IDENTITY: Ed25519KeyPair = ed25519Generate(new Uint8Array(32).fill(11));
const LOW_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => new Uint8Array(Buffer.from(h, "hex")));

type ServerStep =
  | { kind: "hello"; version: number; low: number | null }
  | { kind: "garbage"; m: Message }
  | { kind: "register"; good: boolean }
  | { kind: "login" }
  | { kind: "complete" }
  | { kind: "retry" };

const serverStep: fc.Arbitrary<ServerStep> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("hello" as const), version: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.nat({ max: 0xffff })), low: fc.option(fc.nat({ max: LOW_ORDER.length - 1 }), { freq: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("garbage" as const), m: validMessage }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("register" as const), good: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "login" as const }) },
  { weight: 2, arbitrary: fc.constantFrom({ kind: "complete" as const }, { kind: "retry" as const }) },
);

/** Server machine fed arbitrary steps: coded failures only, failure is sticky, states follow the protocol. */
export const serverHandshake = syncTarget(
  "server_handshake",
  200,
  () => fc.array(serverStep, { minLength: 1, maxLength: 6 }),
  (steps) => {
    const server = new ServerHandshake({ hostKey: HOST, ephemeral: x25519Generate(new Uint8Array(32).fill(3)), challenge: new Uint8Array(32).fill(4) });
    let keys: SessionKeys | null = null;
    let failed = false;
    for (const step of steps) {
      const before = server.state;
      const r = attempt(() => {
        switch (step.kind) {
          case "hello": {
            const hello = new ClientHandshake({ ephemeral: x25519Generate(new Uint8Array(32).fill(5)), nonce: new Uint8Array(32).fill(6) }).hello();
            const m = { ...hello, version: step.version, ...(step.low !== null ? { e: LOW_ORDER[step.low]! } : {}) };
            const out = server.receiveHello(validateMessage(wireObject(m)));
            keys = out.keys;
            return "hello";
          }
          case "garbage":
            return before === "await_hello" ? server.receiveHello(step.m) : server.receiveAuth(step.m);
          case "register": {
            const sig = keys && step.good ? signClientAuth(IDENTITY.secretKey, keys) : new Uint8Array(64).fill(1);
            const m = validateMessage(wireObject({ type: "register", user: "alice", identity_key: IDENTITY.publicKey, sig, password: "pw" } as Message));
            return before === "await_hello" ? server.receiveHello(m) : server.receiveAuth(m);
          }
          case "login": {
            const m = validateMessage(wireObject({ type: "login", user: "alice", sig: new Uint8Array(64), password: "pw" } as Message));
            return before === "await_hello" ? server.receiveHello(m) : server.receiveAuth(m);
          }
          case "complete":
            return server.complete();
          case "retry":
            return server.retry();
        }
      });
      if (failed) {
        invariant(!r.ok && r.code === "handshake_state", `server: used after failure without handshake_state (${r.ok ? "ok" : r.code})`);
      }
      if (!r.ok) {
        failed = true;
        invariant(server.state === "failed", `server: threw ${r.code} but state is ${server.state}`);
        continue;
      }
      const after = server.state;
      const legal: Record<string, string[]> = { await_hello: ["await_auth"], await_auth: ["checking"], checking: ["done", "await_auth"] };
      invariant(legal[before]?.includes(after), `server: ${before} → ${after} on ${step.kind}`);
      if (step.kind === "hello") invariant(step.version === PROTOCOL_VERSION && step.low === null, "server: accepted a bad hello");
      if (step.kind === "register") invariant(step.good && before === "await_auth", "server: accepted a register with a bad signature or out of turn");
      if (step.kind === "login") invariant(before === "await_auth", "server: accepted a login out of turn");
      if (step.kind === "garbage") invariant(step.m.type === (before === "await_hello" ? "client_hello" : "login"), `server: accepted ${step.m.type} in ${before}`);
    }
  },
);

type ClientStep =
  | { kind: "hello" }
  | { kind: "reply"; mutateField: string | null; pick: number; bit: number; low: number | null }
  | { kind: "garbage"; m: Message };

const SERVER_HELLO_FIELDS = ["version", "e", "challenge", "host_key", "rekey_records", "rekey_bytes", "sig"];
const clientStep: fc.Arbitrary<ClientStep> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ kind: "hello" as const }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("reply" as const),
      mutateField: fc.option(fc.constantFrom(...SERVER_HELLO_FIELDS), { freq: 2 }),
      pick: fc.nat(),
      bit: fc.integer({ min: 0, max: 7 }),
      low: fc.option(fc.nat({ max: LOW_ORDER.length - 1 }), { freq: 6 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("garbage" as const), m: validMessage }) },
);

/** Client machine fed genuine, tampered and garbage replies: only a genuine server_hello establishes, with the server's keys. */
export const clientHandshake = syncTarget(
  "client_handshake",
  200,
  () => fc.array(clientStep, { minLength: 1, maxLength: 5 }),
  (steps) => {
    const client = new ClientHandshake({ ephemeral: x25519Generate(new Uint8Array(32).fill(5)), nonce: new Uint8Array(32).fill(6) });
    let hello: Message | null = null;
    let failed = false;
    for (const step of steps) {
      const before = client.state;
      let genuine: SessionKeys | null = null;
      let tampered = false;
      const r = attempt((): unknown => {
        switch (step.kind) {
          case "hello":
            hello = client.hello();
            return hello;
          case "garbage":
            return client.receive(step.m);
          case "reply": {
            const server = new ServerHandshake({ hostKey: HOST, rekey: { records: 16, bytes: 4096 }, ephemeral: x25519Generate(new Uint8Array(32).fill(3)), challenge: new Uint8Array(32).fill(4) });
            const base = hello ?? new ClientHandshake({ ephemeral: x25519Generate(new Uint8Array(32).fill(8)), nonce: new Uint8Array(32).fill(8) }).hello();
            const { reply, keys } = server.receiveHello(base);
            genuine = keys;
            const o = wireObject(reply);
            if (step.low !== null) {
              o.e = toBase64(LOW_ORDER[step.low]!);
              tampered = true;
            } else if (step.mutateField !== null) {
              const f = step.mutateField;
              if (typeof o[f] === "number") o[f] = (o[f] as number) ^ (1 << step.bit) || 2;
              else {
                const b = new Uint8Array(Buffer.from(o[f] as string, "base64"));
                const j = step.pick % b.length;
                b[j] = b[j]! ^ (1 << step.bit);
                o[f] = toBase64(b);
              }
              tampered = JSON.stringify(o) !== encodeMessage(reply);
            }
            const m = attempt(() => validateMessage(o));
            if (!m.ok) return "invalid";
            return client.receive(m.value);
          }
        }
      });
      if (failed) invariant(!r.ok && r.code === "handshake_state", `client: used after failure without handshake_state (${r.ok ? "ok" : r.code})`);
      if (!r.ok) {
        failed = true;
        invariant(client.state === "failed", `client: threw ${r.code} but state is ${client.state}`);
        continue;
      }
      if (r.value === "invalid") continue;
      if (step.kind === "garbage") invariant(false, `client: accepted ${step.m.type} in ${before}`);
      if (step.kind === "reply") {
        invariant(!tampered, `client: established with a tampered server_hello (${step.mutateField ?? "low-order e"})`);
        invariant(hello !== null && before === "sent_hello", "client: established without sending hello");
        const k = r.value as SessionKeys;
        const g = genuine as SessionKeys | null;
        invariant(g !== null && bytesEqual(k.c2s, g.c2s) && bytesEqual(k.s2c, g.s2c) && bytesEqual(k.sessionId, g.sessionId), "client: keys differ from the server's");
        invariant(client.state === "established", `client: state ${client.state} after receive`);
      }
    }
  },
);

// ---- transcript ---------------------------------------------------------

const BASE = buildEntries({
  entries: 16,
  files: 2,
  checkpointEvery: 4,
  host: ed25519Generate(new Uint8Array(32).fill(1)),
  seal: x25519Generate(new Uint8Array(32).fill(2)).publicKey,
});
const BASE_FILES = splitFiles(BASE.entries, BASE.starts);
const BASE_LINES = BASE.entries.map((e) => entryLine(e).slice(0, -1));

const lineMutation = fc.record({
  line: fc.nat(),
  at: fc.nat(),
  op: fc.constantFrom("replace", "insert", "delete"),
  char: fc.oneof(fc.constantFrom('"', "\\", ",", ":", "{", "}", "0", "1", "a", "f", " ", "\n", "é", "\u2028", "\ud800"), fc.string({ minLength: 1, maxLength: 3, unit: "binary" })),
});

function mutateLine(line: string, at: number, op: string, char: string): string {
  const i = at % (line.length + (op === "insert" ? 1 : 0));
  if (op === "insert") return line.slice(0, i) + char + line.slice(i);
  if (op === "delete") return line.slice(0, i) + line.slice(i + 1);
  return line.slice(0, i) + char + line.slice(i + 1);
}

/** parseEntry on arbitrary strings and mutated valid lines: coded failures only; accepted lines are entries. */
export const parseEntryStrings = syncTarget(
  "parse_entry",
  500,
  () =>
    fc.oneof(
      fc.string({ maxLength: 128 }),
      fc.string({ unit: "binary", maxLength: 64 }),
      fc.json({ maxDepth: 2 }),
      fc.constantFrom(...BASE_LINES),
      fc.tuple(fc.constantFrom(...BASE_LINES), lineMutation).map(([l, m]) => mutateLine(l, m.at, m.op, m.char)),
      fc.tuple(fc.constantFrom(...BASE_LINES), fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 1 })).map(([l, k, v]) => {
        const o = JSON.parse(l) as Record<string, unknown>;
        const keys = Object.keys(o);
        o[keys[k.length % keys.length]!] = v;
        if (k.length % 3 === 0) o[k] = v;
        return JSON.stringify(o);
      }),
    ),
  (line) => {
    const r = attempt(() => parseEntry(line));
    if (!r.ok) return;
    const e = r.value as Entry;
    invariant(Number.isSafeInteger(e.seq) && e.seq >= 1 && Number.isSafeInteger(e.ts) && e.ts >= 0, "parse_entry: bad seq/ts accepted");
    // An accepted entry serializes (the writer's form) and that form parses to the same line again.
    const canon = entryLine(e).slice(0, -1);
    const again = attempt(() => parseEntry(canon));
    invariant(again.ok, `parse_entry: canonical form of an accepted entry is rejected (${again.ok ? "" : again.code}): ${canon}`);
    invariant(entryLine(again.value).slice(0, -1) === canon, "parse_entry: canonical form is not a fixed point");
  },
);

type FileOp =
  | { kind: "char"; line: number; at: number; op: string; char: string }
  | { kind: "delete_line"; line: number }
  | { kind: "duplicate_line"; line: number }
  | { kind: "swap_lines"; line: number }
  | { kind: "move_line"; line: number; to: number }
  | { kind: "replace_line"; line: number; text: string }
  | { kind: "rehash"; line: number; field: number; value: Scalar; alike: number; all: boolean }
  | { kind: "none" };

const fileOp: fc.Arbitrary<FileOp> = fc.oneof(
  { weight: 6, arbitrary: lineMutation.map((m) => ({ kind: "char" as const, ...m })) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("delete_line" as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("duplicate_line" as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("swap_lines" as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("move_line" as const), line: fc.nat(), to: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("replace_line" as const), line: fc.nat(), text: fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom(...BASE_LINES)) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("rehash" as const),
      line: fc.nat(),
      field: fc.nat(),
      value: fc.oneof(
        fc.string({ maxLength: 8 }),
        fc.nat({ max: 2 ** 40 }),
        fc.boolean(),
        fc.constantFrom(0, 1, 2, 3, 7, "AAAA", "alice", "message", "checkpoint", "0".repeat(64), toBase64(new Uint8Array(32).fill(7)), toBase64(new Uint8Array(64))),
        fc.constantFrom(...BASE.entries.map((e) => e.hash)),
        fc.integer({ min: 1, max: 16 }),
      ),
      alike: fc.nat(),
      all: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
);

/**
 * An attacker who can recompute hashes (but not sign): edits one field of an
 * entry that is not the last, recomputes its hash and (with `all`) re-chains
 * every entry after it, checkpoints' `head` included. The final checkpoint's
 * signature (or the chain) must still catch it.
 */
/** A value of the same kind as `v` (so the edited entry still parses): hex, base64 of the same length, a nearby number, … */
function alike(v: Scalar, n: number): Scalar {
  if (typeof v === "boolean") return !v;
  if (typeof v === "number") return Math.max(0, v + ((n % 5) - 2) || 1);
  if (/^[0-9a-f]{64}$/.test(v)) return BASE.entries[n % BASE.entries.length]!.hash;
  if (/^[A-Za-z0-9+/]+=*$/.test(v) && v.length % 4 === 0) {
    const b = new Uint8Array(Buffer.from(v, "base64"));
    b[n % b.length] = b[n % b.length]! ^ (1 + (n % 255));
    return toBase64(b);
  }
  return `${v}${String.fromCharCode(97 + (n % 26))}`;
}

function rehash(lines: string[], op: Extract<FileOp, { kind: "rehash" }>): string[] {
  const n = lines.length;
  const i = op.line % (n - 1);
  const parsed = attempt(() => lines.map((l) => parseEntry(l)));
  if (!parsed.ok) return lines; // an earlier op broke a line: nothing to re-chain
  const entries = parsed.value;
  const victim = { ...entries[i]! } as Record<string, Scalar>;
  const keys = Object.keys(victim).filter((k) => k !== "hash");
  const key = keys[op.field % keys.length]!;
  victim[key] = op.alike % 3 === 0 ? op.value : alike(victim[key]!, op.alike);
  const out = [...lines];
  let prev: string | null = null;
  for (let j = i; j < (op.all ? n : i + 1); j++) {
    const src = (j === i ? victim : { ...entries[j]! }) as Record<string, Scalar>;
    const { seq, ts, type, prev: p, hash: _hash, ...fields } = src;
    if (prev !== null && type === "checkpoint" && src.head_seq === entries[j - 1]!.seq) fields.head = prev;
    const r = attempt(() => makeEntry(prev ?? (p as string), seq as number, ts as number, type as string, fields));
    if (!r.ok) return lines; // outside the format's domain: no edit
    out[j] = entryLine(r.value).slice(0, -1);
    prev = r.value.hash;
  }
  return out;
}

let fuzzRoot: string | null = null;
function scratchDir(): string {
  if (fuzzRoot === null) {
    const root = process.env.SECURECHAT_DATA ?? tmpdir();
    mkdirSync(root, { recursive: true });
    fuzzRoot = mkdtempSync(join(root, "securechat-fuzz-"));
  }
  const d = join(fuzzRoot, "t");
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

export function cleanupScratch(): void {
  if (fuzzRoot) rmSync(fuzzRoot, { recursive: true, force: true });
  fuzzRoot = null;
}

/**
 * Applies an op to the flattened lines. Never deletes the last line by
 * itself: a shorter chain is still a chain (see the truncation rule below).
 */
function applyFileOp(lines: string[], op: FileOp): string[] {
  const n = lines.length;
  const out = [...lines];
  switch (op.kind) {
    case "none":
      return out;
    case "char": {
      const i = op.line % n;
      out[i] = mutateLine(out[i]!, op.at, op.op, op.char);
      return out;
    }
    case "delete_line": {
      const i = op.line % (n - 1); // never the last line: a shorter chain is still a chain
      out.splice(i, 1);
      return out;
    }
    case "duplicate_line": {
      const i = op.line % n;
      out.splice(i, 0, out[i]!);
      return out;
    }
    case "swap_lines": {
      const i = op.line % (n - 1);
      [out[i], out[i + 1]] = [out[i + 1]!, out[i]!];
      return out;
    }
    case "move_line": {
      const i = op.line % n;
      const [l] = out.splice(i, 1);
      out.splice(op.to % n, 0, l!);
      return out;
    }
    case "replace_line": {
      out[op.line % n] = op.text;
      return out;
    }
    case "rehash":
      return rehash(lines, op);
  }
}

type ByteOp = { file: number; at: number; op: "truncate" | "set" | "insert"; value: number };
const byteOp: fc.Arbitrary<ByteOp> = fc.record({
  file: fc.nat(),
  at: fc.nat(),
  op: fc.constantFrom("truncate" as const, "set" as const, "insert" as const),
  value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0a, 0x0d, 0x00, 0x80, 0xc3, 0xff, 0x20)),
});

function applyByteOp(files: Buffer[], b: ByteOp): Buffer[] {
  const out = [...files];
  const f = b.file % out.length;
  const x = out[f]!;
  const at = b.at % (x.length + 1);
  if (b.op === "truncate") out[f] = x.subarray(0, at);
  else if (b.op === "insert") out[f] = Buffer.concat([x.subarray(0, at), Buffer.from([b.value]), x.subarray(at)]);
  else if (at < x.length) {
    const y = Buffer.from(x);
    y[at] = b.value;
    out[f] = y;
  }
  return out;
}

/**
 * verifyTranscript on a small generated transcript (two files, checkpoints,
 * sealed bodies) after 1–3 line-level edits and maybe one byte-level edit:
 * PASS iff the files are unchanged, except a plain tail truncation (each
 * file a prefix of itself cut at a line end, nothing after the cut), which
 * the format cannot tell from a shorter honest transcript.
 */
export const verifyMutatedTranscript = asyncTarget(
  "verify_transcript",
  300,
  () => fc.record({ ops: fc.array(fileOp, { minLength: 1, maxLength: 3 }), bytes: fc.option(byteOp, { freq: 3 }), pin: fc.boolean() }),
  async ({ ops, bytes, pin }) => {
    const counts = BASE_FILES.files.map((f) => f.length);
    let mutated = BASE_FILES.files.flat();
    for (const op of ops) mutated = applyFileOp(mutated, op);
    // Same file boundaries (by line count; the last file takes the rest).
    const files: string[][] = [];
    let k = 0;
    counts.forEach((c, i) => {
      files.push(i === counts.length - 1 ? mutated.slice(k) : mutated.slice(k, k + c));
      k += c;
    });
    const original = BASE_FILES.files.map((f) => Buffer.from(f.map((l) => `${l}\n`).join("")));
    let texts: Buffer[] = files.map((f) => Buffer.from(f.map((l) => `${l}\n`).join("")));
    if (bytes !== null) texts = applyByteOp(texts, bytes);
    const noop = texts.every((t, i) => t.equals(original[i]!));
    const whole = Buffer.concat(texts);
    const truncation =
      texts.every((t, i) => original[i]!.subarray(0, t.length).equals(t) && (t.length === 0 || t[t.length - 1] === 0x0a)) &&
      Buffer.concat(original).subarray(0, whole.length).equals(whole);
    const dir = scratchDir();
    BASE_FILES.names.forEach((name, i) => writeFileSync(join(dir, name), texts[i]!));
    const r = await attemptAsync(() => verifyTranscript(dir, pin ? { hostKey: BASE.host.publicKey } : {}));
    invariant(r.ok, `verify: threw ${r.ok ? "" : r.code} instead of reporting`);
    const report = r.value;
    if (report.problem) invariant(CODE_RE.test(report.problem.code), `verify: unstable problem code ${report.problem.code}`);
    invariant(report.ok === (report.problem === null), "verify: ok and problem disagree");
    if (noop) invariant(report.ok, `verify: unchanged transcript failed: ${report.problem?.reason}`);
    else if (!truncation) invariant(!report.ok, `verify: mutated transcript verified as PASS (${JSON.stringify({ ops, bytes })})`);
  },
);

export const TARGETS: Target<any>[] = [
  frameDecoderChunks,
  frameDecoderRoundTrip,
  validateMessageJson,
  validMessageRoundTrip,
  decodeMessageBytes,
  splitPayload,
  recordOpenArbitrary,
  recordOpenMutated,
  serverHandshake,
  clientHandshake,
  parseEntryStrings,
  verifyMutatedTranscript,
];

/** Default seed; FUZZ_SEED overrides it. */
export function fuzzSeed(): number {
  const s = process.env.FUZZ_SEED;
  if (s === undefined || s === "") return 20261122;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(s)}`);
  return n | 0;
}
