/**
 * The transcript's entry format (src/transcript/format.ts) against
 * docs/TRANSCRIPT.md §3–§5: canonical ordering and string escaping per
 * RFC 8785 (with the RFC's own examples), the hash and the line, every
 * rule parseEntry enforces (each with its error code), the spellings
 * parseEntry lets through that the canonical-line rule (§3.5 rule 5) must
 * catch, checkpoint signature input and verification, and sealing: round
 * trip, and failure when a body is tampered with or moved to another seq.
 */
import { describe, expect, test } from "bun:test";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, fromBase64, fromHex, toBase64, toHex, u64be, utf8 } from "../../src/bytes.ts";
import { ed25519Generate, labels, x25519Generate } from "../../src/crypto/index.ts";
import { isSecureChatError } from "../../src/errors.ts";
import {
  type Entry,
  type EntryFields,
  GENESIS,
  canonical,
  canonicalLineHash,
  checkpointInput,
  entryHash,
  entryLine,
  isCanonicalLine,
  makeEntry,
  openBody,
  parseEntry,
  sealBody,
  signCheckpoint,
  unwrapFileKey,
  verifyCheckpoint,
  wrapFileKey,
} from "../../src/transcript/format.ts";

/** The SecureChatError code `fn` throws, or a description of what happened instead. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return isSecureChatError(e) ? e.code : `non-SecureChatError: ${String(e)}`;
  }
  return "no error";
}

const H1 = "1".repeat(64);
const KEY32 = toBase64(new Uint8Array(32).fill(1));

/** A valid line (without LF) of `type` with `fields`, seq 2 after H1. */
function line(type: string, fields: EntryFields, seq = 2): string {
  return entryLine(makeEntry(H1, seq, 1_000, type, fields)).slice(0, -1);
}

/** A line whose JSON object is `o` exactly as given (any order, any values), for rejection tests. */
function raw(o: Record<string, unknown>): string {
  return JSON.stringify(o);
}

const BASE = { seq: 2, ts: 1_000, prev: H1, hash: H1 };

describe("canonical (RFC 8785 over the transcript's value domain, §3.2)", () => {
  test("members whose names an object would treat specially (array indexes, __proto__) are still serialized in canonical order", () => {
    const fields = JSON.parse('{"b":1,"10":"x","2":true,"__proto__":"p","a":"é"}') as EntryFields;
    expect(canonical(fields)).toBe('{"10":"x","2":true,"__proto__":"p","a":"é","b":1}');
    // Twice: the second time the shape's order is remembered.
    expect(canonical(fields)).toBe('{"10":"x","2":true,"__proto__":"p","a":"é","b":1}');
    const proto = JSON.parse('{"b":1,"__proto__":"p","a":"é"}') as EntryFields;
    expect(canonical(proto)).toBe('{"__proto__":"p","a":"é","b":1}');
    expect(canonical(proto)).toBe('{"__proto__":"p","a":"é","b":1}');
    expect(canonical({ z: 1, y: "2", hash: "h" })).toBe('{"y":"2","z":1}');
    expect(canonical({ z: 1, y: "2", hash: "h" })).toBe('{"y":"2","z":1}');
  });

  test("leaves out hash, sorts members, writes no whitespace", () => {
    expect(canonical({ type: "join", seq: 3, hash: H1, user: "u", prev: GENESIS, ts: 0, room: "r" })).toBe(
      `{"prev":"${GENESIS}","room":"r","seq":3,"ts":0,"type":"join","user":"u"}`,
    );
  });

  test("orders names by UTF-16 code units: z < é < 😀 (U+1F600 = D83D DE00) < ｚ (U+FF5A), unlike code point order", () => {
    expect(canonical({ "\uff5a": 4, "😀": 3, "é": 2, z: 1 })).toBe('{"z":1,"é":2,"😀":3,"ｚ":4}');
    // By code point, U+FF5A would come before U+1F600: the difference is real.
    expect(["\uff5a", "😀"].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!)).toEqual(["\uff5a", "😀"]);
  });

  test("RFC 8785 §3.2.3's sorting example", () => {
    const input = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis",
    };
    expect(canonical(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign","😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  test("RFC 8785 §3.2.2.2's string example", () => {
    const s = JSON.parse(String.raw`"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/"`) as string;
    // (Built in two parts: Bun's transpiler rewrites a raw "€" in a template as "\u20ac".)
    expect(canonical({ s })).toBe(`{"s":"\u20ac${String.raw`$\u000f\nA'B\"\\\\\"/"}`}`);
  });

  test("escapes exactly the C0 controls, quote and backslash: short forms where JSON has them, else \\u00xx in lowercase", () => {
    const short: Record<number, string> = { 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0c: "\\f", 0x0d: "\\r" };
    for (let c = 0; c < 0x20; c++) {
      const want = short[c] ?? `\\u00${c.toString(16).padStart(2, "0")}`;
      expect(canonical({ s: String.fromCharCode(c) })).toBe(`{"s":"${want}"}`);
    }
    expect(canonical({ s: '"' })).toBe('{"s":"\\""}');
    expect(canonical({ s: "\\" })).toBe('{"s":"\\\\"}');
    // Not escaped: solidus, DEL, C1 controls, the Unicode line separators, non-ASCII.
    for (const ch of ["/", "\u007f", "\u0080", "\u0085", "\u009f", "\u2028", "\u2029", "é", "😀", "\ufeff"]) {
      expect(canonical({ s: ch })).toBe(`{"s":"${ch}"}`);
    }
  });

  test("integers in shortest decimal form up to 2^53 − 1, booleans as literals", () => {
    expect(canonical({ a: 0, b: Number.MAX_SAFE_INTEGER, c: true, d: false })).toBe('{"a":0,"b":9007199254740991,"c":true,"d":false}');
  });
});

describe("hash and line (§3.3, §3.4)", () => {
  const e = makeEntry(GENESIS, 1, 1_795_165_200_000, "message", { room: "lobby", room_seq: 1, from: "alice", text: 'a\nb "c" \u2028 é' });

  test("hash = hex(SHA-256(label ‖ 0x00 ‖ UTF-8(canonical)))", () => {
    const want = toHex(sha256(concat(utf8("securechat/1 transcript entry"), new Uint8Array([0]), utf8(canonical(e)))));
    expect(e.hash).toBe(want);
    expect(entryHash(e)).toBe(want);
    expect(entryHash({ ...e, hash: "ignored" })).toBe(want);
  });

  test("the line is the canonical form with hash appended last, and exactly one LF, at its end", () => {
    const l = entryLine(e);
    expect(l).toBe(`${canonical(e).slice(0, -1)},"hash":"${e.hash}"}\n`);
    expect(l.indexOf("\n")).toBe(l.length - 1);
    // U+2028 stays raw (§3.2): readers must split at LF only.
    expect(l).toContain("\u2028");
    expect(parseEntry(l.slice(0, -1))).toEqual(e);
  });

  test("a line is recognized as line(e) without rebuilding it, and its entry's hash is taken from its bytes", () => {
    const line = entryLine(e).slice(0, -1);
    expect(isCanonicalLine(parseEntry(line), line)).toBe(true);
    expect(canonicalLineHash(utf8(line))).toBe(e.hash);
    const other = makeEntry(e.hash, 2, e.ts, "checkpoint", { head_seq: 1, head: e.hash, sig: toBase64(new Uint8Array(64)) });
    const otherLine = entryLine(other).slice(0, -1);
    expect(canonicalLineHash(utf8(otherLine))).toBe(other.hash);
    // Every other spelling of the same entry is not its line.
    const spellings = [
      line.replace(',"room":"lobby"', "").replace("{", '{"room":"lobby",'), // a member moved first
      line.replace(',"hash":', ', "hash":'), // a space
      line.replace('"alice"', '"\\u0061lice"'), // an escape JSON.stringify does not write
      line.replace('"from":"alice"', '"from":"mallory","from":"alice"'), // a duplicate member
      `{"hash":"${e.hash}",${line.slice(1).replace(`,"hash":"${e.hash}"`, "")}`, // hash first
    ];
    for (const s of spellings) {
      expect(s).not.toBe(line);
      expect(parseEntry(s)).toEqual(e);
      expect(isCanonicalLine(parseEntry(s), s)).toBe(false);
    }
  });

  test("makeEntry chains: any change to an entry changes its hash", () => {
    const next = makeEntry(e.hash, 2, e.ts, "leave", { room: "lobby", user: "alice" });
    expect(next.prev).toBe(e.hash);
    for (const change of [{ seq: 2 }, { ts: e.ts + 1 }, { text: "other" }, { prev: H1 }, { action: true }] as EntryFields[]) {
      expect(entryHash({ ...e, ...change })).not.toBe(e.hash);
    }
  });
});

describe("parseEntry", () => {
  test("accepts a valid line of every type, with and without optional members; action false is accepted", () => {
    const valid: [string, EntryFields][] = [
      ["server_start", { host_key: KEY32, version: "0.1.0" }],
      ["server_stop", { reason: "shutdown" }],
      ["seal_key", { recipient: KEY32, epk: KEY32, wrapped: toBase64(new Uint8Array(72)) }],
      ["session_open", { user: "alice", session: toBase64(new Uint8Array(16)), source: "::1" }],
      ["session_close", { user: "alice", session: toBase64(new Uint8Array(16)) }],
      ["login_failed", { source: "192.0.2.1", reason: "ticket" }],
      ["join", { room: "lobby", user: "alice" }],
      ["leave", { room: "lobby", user: "alice" }],
      ["message", { room: "lobby", room_seq: 1, from: "alice", text: "hi" }],
      ["message", { room: "lobby", room_seq: 1, from: "alice", text: "hi", action: true }],
      ["message", { room: "lobby", room_seq: 1, from: "alice", text: "hi", action: false }],
      ["message", { room: "lobby", room_seq: 1, from: "alice", text: "hi", cid: "AAECAwQFBgcICQoLDA0ODw" }],
      ["direct", { dm_seq: 1, from: "alice", to: "bob", text: "hi", cid: "_-_-_-_-_-_-_-_-_-_-_w" }],
      ["message", { room: "lobby", room_seq: 1, from: "alice", sealed: toBase64(new Uint8Array(42)), key_seq: 1 }],
      ["direct", { dm_seq: 1, from: "alice", to: "bob", text: "" }],
      ["direct", { dm_seq: 1, from: "alice", to: "bob", sealed: toBase64(new Uint8Array(40)), key_seq: 1, action: true }],
      ["recovery", { file: "2026-11-20.000000000001.jsonl", torn_bytes: 0, torn_sha256: toHex(sha256(new Uint8Array(0))), reason: "x" }],
      ["checkpoint", { head_seq: 1, head: H1, sig: toBase64(new Uint8Array(64)) }],
    ];
    for (const [type, fields] of valid) {
      const l = line(type, fields);
      expect(parseEntry(l)).toEqual(JSON.parse(l));
    }
  });

  const join = { ...BASE, type: "join", room: "lobby", user: "alice" };
  const msg = { ...BASE, type: "message", room: "lobby", room_seq: 1, from: "alice", text: "hi" };
  const cp = { ...BASE, type: "checkpoint", head_seq: 1, head: H1, sig: toBase64(new Uint8Array(64)) };
  const start = { ...BASE, type: "server_start", host_key: KEY32, version: "1" };
  const without = (o: Record<string, unknown>, k: string): Record<string, unknown> => Object.fromEntries(Object.entries(o).filter(([n]) => n !== k));

  // Each rule of parseEntry, with the code it must fail with.
  const rejections: [string, string, string][] = [
    ["not JSON", "{", "entry_json"],
    ["an empty line", "", "entry_json"],
    ["a JSON array", "[]", "entry_json"],
    ["JSON null", "null", "entry_json"],
    ["a JSON number", "1", "entry_json"],
    ["a JSON string", '"join"', "entry_json"],
    ["a byte-order mark before the object", `\ufeff${raw(join)}`, "entry_json"],
    ["seq missing", raw(without(join, "seq")), "entry_field"],
    ["seq 0", raw({ ...join, seq: 0 }), "entry_field"],
    ["seq negative", raw({ ...join, seq: -1 }), "entry_field"],
    ["seq a fraction", raw({ ...join, seq: 1.5 }), "entry_field"],
    ["seq a string", raw({ ...join, seq: "2" }), "entry_field"],
    ["seq 2^53 (not a safe integer)", raw({ ...join, seq: 2 ** 53 }), "entry_field"],
    ["ts missing", raw(without(join, "ts")), "entry_field"],
    ["ts negative", raw({ ...join, ts: -1 }), "entry_field"],
    ["ts a fraction", raw({ ...join, ts: 0.5 }), "entry_field"],
    ["ts null", raw({ ...join, ts: null }), "entry_field"],
    ["type missing", raw(without(join, "type")), "entry_type"],
    ["type unknown", raw({ ...join, type: "kick" }), "entry_type"],
    ["type an inherited property name (toString)", raw({ ...join, type: "toString" }), "entry_type"],
    ["type __proto__", raw({ ...join, type: "__proto__" }), "entry_type"],
    ["type not a string", raw({ ...join, type: 1 }), "entry_type"],
    ["prev missing", raw(without(join, "prev")), "entry_field"],
    ["prev in uppercase hex", raw({ ...join, prev: "A".repeat(64) }), "entry_field"],
    ["prev 63 digits", raw({ ...join, prev: "1".repeat(63) }), "entry_field"],
    ["hash missing", raw(without(join, "hash")), "entry_field"],
    ["hash in uppercase hex", raw({ ...join, hash: "F".repeat(64) }), "entry_field"],
    ["hash 65 digits", raw({ ...join, hash: "1".repeat(65) }), "entry_field"],
    ["a member no type has", raw({ ...join, extra: "x" }), "entry_field"],
    ["a member of another type (join with text)", raw({ ...join, text: "hi" }), "entry_field"],
    ["a required member missing (join without room)", raw(without(join, "room")), "entry_field"],
    ["a string member given a number", raw({ ...join, room: 1 }), "entry_field"],
    ["an int member given a string", raw({ ...msg, room_seq: "1" }), "entry_field"],
    ["an int member negative", raw({ ...msg, room_seq: -1 }), "entry_field"],
    ["an int member a fraction", raw({ ...msg, room_seq: 1.5 }), "entry_field"],
    ["a bool member given 1", raw({ ...msg, action: 1 }), "entry_field"],
    ["a bool member given a string", raw({ ...msg, action: "true" }), "entry_field"],
    ["a hex32 member in uppercase", raw({ ...cp, head: "A".repeat(64) }), "entry_field"],
    ["a hex32 member too short", raw({ ...cp, head: "a".repeat(62) }), "entry_field"],
    ["a b64 member without padding", raw({ ...start, host_key: KEY32.replace(/=$/, "") }), "entry_field"],
    ["a b64 member in the URL-safe alphabet", raw({ ...start, host_key: toBase64(new Uint8Array(32).fill(0xfb)).replace(/\+/g, "-").replace(/\//g, "_") }), "entry_field"],
    ["a b64 member with non-zero pad bits", raw({ ...start, host_key: `${KEY32.slice(0, -2)}F=` }), "entry_field"],
    ["a b64 member with a line break", raw({ ...start, host_key: `${KEY32.slice(0, 20)}\n${KEY32.slice(20)}` }), "entry_field"],
    ["a message with both text and sealed", raw({ ...msg, sealed: toBase64(new Uint8Array(40)), key_seq: 1 }), "entry_field"],
    ["a message with neither text nor sealed", raw(without(msg, "text")), "entry_field"],
    ["a message with sealed but no key_seq", raw({ ...without(msg, "text"), sealed: toBase64(new Uint8Array(40)) }), "entry_field"],
    ["a message with text and key_seq", raw({ ...msg, key_seq: 1 }), "entry_field"],
    ["a direct with neither text nor sealed", raw({ ...BASE, type: "direct", dm_seq: 1, from: "a", to: "b" }), "entry_field"],
    ["a cid of 15 bytes", raw({ ...msg, cid: "AAECAwQFBgcICQoLDA0O" }), "entry_field"],
    ["a cid in the standard base64 alphabet", raw({ ...msg, cid: "AAECAwQFBgcICQoLDA0+/w" }), "entry_field"],
    ["a cid padded", raw({ ...msg, cid: "AAECAwQFBgcICQoLDA0ODw==" }), "entry_field"],
    ["a cid whose last character has pad bits set", raw({ ...msg, cid: "AAECAwQFBgcICQoLDA0ODx" }), "entry_field"],
    ["a cid given a number", raw({ ...msg, cid: 16 }), "entry_field"],
    ["a direct with sealed but no key_seq", raw({ ...BASE, type: "direct", dm_seq: 1, from: "a", to: "b", sealed: toBase64(new Uint8Array(40)) }), "entry_field"],
  ];
  for (const [what, l, code] of rejections) {
    test(`rejects ${what}: ${code}`, () => {
      expect(codeOf(() => parseEntry(l))).toBe(code);
    });
  }

  test("error messages name the layer and the member", () => {
    expect(() => parseEntry(raw({ ...msg, room_seq: "1" }))).toThrow("transcript: message.room_seq must be int");
    expect(() => parseEntry(raw({ ...join, extra: 1 }))).toThrow('transcript: join has unknown field "extra"');
  });

  test("other spellings of a valid entry parse, so the canonical-line rule (§3.5 rule 5) is what rejects them", () => {
    const l = line("message", { room: "lobby", room_seq: 1, from: "alice", text: "hello" });
    const e = parseEntry(l);
    const spellings = [
      JSON.stringify({ ...JSON.parse(l) }, ["seq", "ts", "type", "prev", "room", "room_seq", "from", "text", "hash"]),
      l.replace('"seq":2', '"seq": 2'),
      ` ${l}`,
      `${l}\r`,
      l.replace('"seq":2', '"seq":2.0'),
      l.replace('"seq":2', '"seq":2e0'),
      l.replace('"ts":1000', '"ts":1e3'),
      l.replace('"room_seq":1', '"room_seq":1.00'),
      l.replace('"text":"hello"', '"text":"\\u0068ello"'),
      l.replace('"room":"lobby"', '"room":"\\u006cobby"'),
      l.replace('"text":"hello"', '"text":"hel\\u006co"'),
      l.replace('"text":"hello"', '"text":"I never said that","text":"hello"'),
      l.replace('{"from"', '{"seq":99,"from"'),
    ];
    for (const s of spellings) {
      expect(s).not.toBe(l);
      const p = parseEntry(s);
      expect(entryHash(p)).toBe(e.hash);
      expect(entryLine(p)).not.toBe(`${s}\n`);
      expect(entryLine(p)).toBe(`${l}\n`);
    }
    // ts -0 parses to 0: a different spelling of the same value.
    const zero = line("join", { room: "r", user: "u" }).replace('"ts":1000', '"ts":0');
    expect(entryLine(parseEntry(zero.replace('"ts":0', '"ts":-0')))).not.toBe(`${zero.replace('"ts":0', '"ts":-0')}\n`);
  });
});

describe("checkpoints (§4)", () => {
  const host = ed25519Generate(fromHex("945605cc9c1e5eb786932ca18ffe0c51c875fc10be65a049e429cb17b3b670b8"));
  const head = toHex(sha256(utf8("some entry")));

  test("the signature input is label ‖ 0x00 ‖ u64be(head_seq) ‖ the 32 bytes of head: 75 bytes", () => {
    for (const seq of [1, 256, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const input = checkpointInput(seq, head);
      expect(input.length).toBe(75);
      expect(toHex(input)).toBe(toHex(concat(labels.TRANSCRIPT_CHECKPOINT, new Uint8Array([0]), u64be(BigInt(seq)), fromHex(head))));
    }
    expect(toHex(checkpointInput(Number.MAX_SAFE_INTEGER, head)).slice(70, 86)).toBe("001fffffffffffff");
  });

  const cp = (headSeq: number, h: string, sig: string): Entry => makeEntry(h, headSeq + 1, 0, "checkpoint", { head_seq: headSeq, head: h, sig });

  test("signCheckpoint is Ed25519 over that input; verifyCheckpoint accepts it", () => {
    const sig = signCheckpoint(host.secretKey, 7, head);
    expect(ed25519.verify(fromBase64(sig), checkpointInput(7, head), host.publicKey, { zip215: false })).toBe(true);
    expect(verifyCheckpoint(host.publicKey, cp(7, head, sig))).toBe(true);
  });

  test("verifyCheckpoint refuses another key, another head_seq, another head, another type, a short or malleable signature", () => {
    const sig = signCheckpoint(host.secretKey, 7, head);
    const other = ed25519Generate(new Uint8Array(32).fill(9));
    expect(verifyCheckpoint(other.publicKey, cp(7, head, sig))).toBe(false);
    expect(verifyCheckpoint(host.publicKey, cp(8, head, sig))).toBe(false);
    expect(verifyCheckpoint(host.publicKey, cp(7, H1, sig))).toBe(false);
    expect(verifyCheckpoint(host.publicKey, { ...cp(7, head, sig), type: "server_stop" })).toBe(false);
    expect(verifyCheckpoint(host.publicKey, cp(7, head, toBase64(fromBase64(sig).slice(0, 63))))).toBe(false);
    // S + L is the same signature to a lax verifier; strict verification (PROTOCOL.md §1.2) refuses it.
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    const b = fromBase64(sig);
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(b[32 + i]!);
    s += L;
    for (let i = 0; i < 32; i++) b[32 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
    expect(verifyCheckpoint(host.publicKey, cp(7, head, toBase64(b)))).toBe(false);
  });
});

describe("sealing (§5)", () => {
  const auditor = x25519Generate(new Uint8Array(32).fill(3));
  const sealEntry = (fields: EntryFields, seq = 9): Entry => makeEntry(H1, seq, 0, "seal_key", fields);

  test("wrapFileKey: recipient is the auditor's key, epk 32 bytes, wrapped 72; unwrapFileKey recovers the file key", () => {
    const { fileKey, fields } = wrapFileKey(auditor.publicKey);
    expect(fileKey.length).toBe(32);
    expect(fields.recipient).toBe(toBase64(auditor.publicKey));
    expect(fromBase64(fields.epk as string).length).toBe(32);
    expect(fromBase64(fields.wrapped as string).length).toBe(72);
    const e = sealEntry(fields);
    expect(parseEntry(entryLine(e).slice(0, -1))).toEqual(e);
    expect(toHex(unwrapFileKey(auditor.secretKey, e))).toBe(toHex(fileKey));
  });

  test("each wrap draws a fresh file key, ephemeral key and nonce", () => {
    const a = wrapFileKey(auditor.publicKey);
    const b = wrapFileKey(auditor.publicKey);
    expect(toHex(a.fileKey)).not.toBe(toHex(b.fileKey));
    expect(a.fields.epk).not.toBe(b.fields.epk);
    expect((a.fields.wrapped as string).slice(0, 32)).not.toBe((b.fields.wrapped as string).slice(0, 32));
  });

  test("unwrap fails with another identity, a changed wrap, or another recipient in the salt", () => {
    const { fields } = wrapFileKey(auditor.publicKey);
    const other = x25519Generate(new Uint8Array(32).fill(4));
    expect(codeOf(() => unwrapFileKey(other.secretKey, sealEntry(fields)))).toBe("aead_auth_failed");
    const w = fromBase64(fields.wrapped as string);
    w[30]! ^= 1;
    expect(codeOf(() => unwrapFileKey(auditor.secretKey, sealEntry({ ...fields, wrapped: toBase64(w) })))).toBe("aead_auth_failed");
    expect(codeOf(() => unwrapFileKey(auditor.secretKey, sealEntry({ ...fields, recipient: toBase64(other.publicKey) })))).toBe("aead_auth_failed");
  });

  test("unwrap refuses a low-order epk (all-zero shared secret)", () => {
    const { fields } = wrapFileKey(auditor.publicKey);
    expect(codeOf(() => unwrapFileKey(auditor.secretKey, sealEntry({ ...fields, epk: toBase64(new Uint8Array(32)) })))).toBe("x25519_low_order");
  });

  test("sealBody / openBody round trip; the box is nonce(24) ‖ ciphertext ‖ tag(16) with u64be(seq) as associated data", () => {
    const key = new Uint8Array(32).fill(5);
    for (const text of ["hello", "ünïcødé ✓ 😀", "a\nb", "x".repeat(4096)]) {
      const sealed = sealBody(key, 13, text);
      const box = fromBase64(sealed);
      expect(box.length).toBe(24 + utf8(text).length + 16);
      expect(openBody(key, 13, sealed)).toBe(text);
      const p = xchacha20poly1305(key, box.subarray(0, 24), u64be(13n)).decrypt(box.subarray(24));
      expect(new TextDecoder().decode(p)).toBe(text);
    }
  });

  test("sealing the same text twice gives different boxes (random nonces)", () => {
    const key = new Uint8Array(32).fill(5);
    expect(sealBody(key, 1, "same")).not.toBe(sealBody(key, 1, "same"));
  });

  test("a body moved to another seq does not open", () => {
    const key = new Uint8Array(32).fill(5);
    const sealed = sealBody(key, 13, "secret");
    for (const seq of [12, 14, 13 + 2 ** 32, 0]) expect(codeOf(() => openBody(key, seq, sealed))).toBe("aead_auth_failed");
  });

  test("a body moved to another entry of a chain does not open there, though the moved entry's hash is recomputed", () => {
    const { fileKey, fields } = wrapFileKey(auditor.publicKey);
    const k = makeEntry(GENESIS, 1, 0, "seal_key", fields);
    const m2 = makeEntry(k.hash, 2, 1, "message", { room: "r", room_seq: 1, from: "a", sealed: sealBody(fileKey, 2, "first"), key_seq: 1 });
    const m3 = makeEntry(m2.hash, 3, 2, "message", { room: "r", room_seq: 2, from: "a", sealed: sealBody(fileKey, 3, "second"), key_seq: 1 });
    const key = unwrapFileKey(auditor.secretKey, k);
    expect(openBody(key, m2.seq, m2.sealed as string)).toBe("first");
    expect(openBody(key, m3.seq, m3.sealed as string)).toBe("second");
    const { hash: _, ...rest } = m3;
    const moved = makeEntry(rest.prev, rest.seq, rest.ts, rest.type, { room: "r", room_seq: 2, from: "a", sealed: m2.sealed as string, key_seq: 1 });
    expect(codeOf(() => openBody(key, moved.seq, moved.sealed as string))).toBe("aead_auth_failed");
  });

  test("a changed byte, a truncated box, or another file key does not open", () => {
    const key = new Uint8Array(32).fill(5);
    const box = fromBase64(sealBody(key, 13, "secret"));
    for (const i of [0, 23, 24, box.length - 1]) {
      const b = new Uint8Array(box);
      b[i]! ^= 0x80;
      expect(codeOf(() => openBody(key, 13, toBase64(b)))).toBe("aead_auth_failed");
    }
    expect(codeOf(() => openBody(key, 13, toBase64(box.subarray(0, 39))))).toBe("aead_auth_failed");
    expect(codeOf(() => openBody(new Uint8Array(32).fill(6), 13, toBase64(box)))).toBe("aead_auth_failed");
  });

  test("a body that opens to bytes that are not UTF-8 is refused", () => {
    const key = new Uint8Array(32).fill(5);
    const nonce = new Uint8Array(24);
    const sealed = toBase64(concat(nonce, xchacha20poly1305(key, nonce, u64be(1n)).encrypt(new Uint8Array([0xc3, 0x28]))));
    expect(() => openBody(key, 1, sealed)).toThrow();
  });

  // docs/TRANSCRIPT.md §5.4: a leading U+FEFF is part of the text; openBody
  // decodes with the strict, BOM-keeping decoder of src/bytes.ts.
  test("a text that starts with U+FEFF opens with it", () => {
    const key = new Uint8Array(32).fill(5);
    expect(openBody(key, 1, sealBody(key, 1, "\ufeffhi"))).toBe("\ufeffhi");
  });
});
