/**
 * Shared helpers for the protocol-layer tests: error-code assertions, a
 * seeded PRNG for test inputs, and one valid example of every message type.
 *
 * Randomized inputs come from PROTOCOL_TEST_SEED (default fixed); each test
 * file prints the seed it used, so a failure is reproduced with
 * `PROTOCOL_TEST_SEED=<seed> bun test test/protocol`.
 */
import { expect } from "bun:test";
import { isSecureChatError } from "../../src/errors.ts";
import type { Message, MessageType } from "../../src/protocol/messages.ts";

export const SEED = Number(process.env.PROTOCOL_TEST_SEED ?? 0x5ec_c4a7) >>> 0;

/** The error code `fn` throws; "no error" or "not a SecureChatError: …" otherwise. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSecureChatError(e)) return e.code;
    return `not a SecureChatError: ${String(e)}`;
  }
  return "no error";
}

/** Asserts that `fn` throws a SecureChatError with `code` (and counts as an expect()). */
export function expectCode(fn: () => unknown, code: string): void {
  expect(codeOf(fn)).toBe(code);
}

/** mulberry32 — seedable and small; only for picking test inputs, never keys in real use. */
export interface Rng {
  u32(): number;
  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number;
  bytes(n: number): Uint8Array;
}

export function rng(seed: number = SEED): Rng {
  let a = seed >>> 0;
  const u32 = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return {
    u32,
    int: (min, max) => min + (u32() % (max - min + 1)),
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = u32() & 0xff;
      return out;
    },
  };
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Flips bit `bit` (0 = least significant of byte 0) of a copy of `b`. */
export function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = b.slice();
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

/**
 * One schema-valid example of every message type, with every optional field
 * present (so the field tables below see the whole schema). Login carrying
 * both password and ticket is valid at the message layer; the handshake is
 * what rejects that combination.
 */
export function fullExamples(r: Rng = rng()): { [T in MessageType]: Message<T> } {
  return {
    client_hello: { type: "client_hello", version: 1, e: r.bytes(32), nonce: r.bytes(32) },
    server_hello: {
      type: "server_hello",
      version: 1,
      e: r.bytes(32),
      challenge: r.bytes(32),
      host_key: r.bytes(32),
      rekey_records: 1024,
      rekey_bytes: 2 ** 32,
      sig: r.bytes(64),
    },
    register: { type: "register", user: "alice", identity_key: r.bytes(32), sig: r.bytes(64), password: "correct horse battery staple" },
    login: { type: "login", user: "bob_2", sig: r.bytes(64), password: "hunter2", ticket: r.bytes(32) },
    welcome: { type: "welcome", user: "carol-x", session_id: r.bytes(16), ticket: r.bytes(32), ticket_expires: 1_900_000_000 },
    error: { type: "error", code: "bad_request", message: "that did not parse — try again ✓" },
  };
}
