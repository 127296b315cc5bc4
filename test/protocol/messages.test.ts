/**
 * Message schemas (src/protocol/messages.ts). What a peer sees: a valid
 * message of every type survives encode → decode unchanged; anything else —
 * bad UTF-8, bad JSON, not an object, unknown type or field, missing field,
 * wrong JSON type, non-canonical base64, out-of-range integer, bad user name,
 * lone surrogate — is refused with a stable code before anyone looks at it.
 */
import { describe, expect, test } from "bun:test";
import { toBase64, utf8 } from "../../src/bytes.ts";
import { PASSWORD_FIELD_MAX, TEXT_FIELD_MAX } from "../../src/protocol/limits.ts";
import {
  MESSAGE_TYPES,
  type Message,
  type MessageType,
  decodeMessage,
  encodeMessage,
  encodeMessageBytes,
  joinRecordPayload,
  parseJsonObject,
  splitRecordPayload,
  validateMessage,
} from "../../src/protocol/messages.ts";
import { SEED, codeOf, expectCode, fullExamples, rng } from "./helpers.ts";

console.log(`messages.test.ts: PROTOCOL_TEST_SEED=${SEED}`);
const r = rng(SEED ^ 0x3e55);
const FULL = fullExamples(r);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** The JSON object a full example encodes to, as a mutable plain object. */
const jsonOf = (t: MessageType): JsonObject => JSON.parse(encodeMessage(FULL[t])) as JsonObject;
const body = (v: unknown): Uint8Array => utf8(JSON.stringify(v));
/** JSON text of `obj` with `key`'s value replaced by raw JSON text (for numbers and escapes JSON.stringify will not write). */
function withRaw(obj: JsonObject, key: string, raw: string): Uint8Array {
  const text = JSON.stringify({ ...obj, [key]: "\u0000RAW\u0000" });
  return utf8(text.replace('"\\u0000RAW\\u0000"', raw));
}

/** What the schema says, written out independently, so a change to the schema shows up here. */
type Kind =
  | { kind: "int"; min: number; max: number }
  | { kind: "bytes"; n: number }
  | { kind: "text"; min: number; max: number }
  | { kind: "user" };
type FieldSpec = Kind & { optional?: true };
const SAFE = Number.MAX_SAFE_INTEGER;
const FIELDS: { [T in MessageType]: Record<string, FieldSpec> } = {
  client_hello: { version: { kind: "int", min: 0, max: 0xffff }, e: { kind: "bytes", n: 32 }, nonce: { kind: "bytes", n: 32 } },
  server_hello: {
    version: { kind: "int", min: 0, max: 0xffff },
    e: { kind: "bytes", n: 32 },
    challenge: { kind: "bytes", n: 32 },
    host_key: { kind: "bytes", n: 32 },
    rekey_records: { kind: "int", min: 1, max: SAFE },
    rekey_bytes: { kind: "int", min: 1, max: SAFE },
    sig: { kind: "bytes", n: 64 },
  },
  register: {
    user: { kind: "user" },
    identity_key: { kind: "bytes", n: 32 },
    sig: { kind: "bytes", n: 64 },
    password: { kind: "text", min: 1, max: PASSWORD_FIELD_MAX },
  },
  login: {
    user: { kind: "user" },
    sig: { kind: "bytes", n: 64 },
    password: { kind: "text", min: 1, max: PASSWORD_FIELD_MAX, optional: true },
    ticket: { kind: "bytes", n: 32, optional: true },
  },
  welcome: {
    user: { kind: "user" },
    session_id: { kind: "bytes", n: 16 },
    ticket: { kind: "bytes", n: 32, optional: true },
    ticket_expires: { kind: "int", min: 0, max: SAFE, optional: true },
  },
  error: { code: { kind: "text", min: 1, max: 64 }, message: { kind: "text", min: 0, max: TEXT_FIELD_MAX } },
};

const ALL_FIELDS = MESSAGE_TYPES.flatMap((t) => Object.entries(FIELDS[t]).map(([k, spec]) => ({ t, k, spec })));
const fieldsOf = <K extends Kind["kind"]>(kind: K) =>
  ALL_FIELDS.filter((f): f is { t: MessageType; k: string; spec: Extract<FieldSpec, { kind: K }> } => f.spec.kind === kind);

describe("round trip", () => {
  test("the examples and field tables cover exactly MESSAGE_TYPES", () => {
    expect(Object.keys(FULL).sort()).toEqual([...MESSAGE_TYPES].sort());
    expect(Object.keys(FIELDS).sort()).toEqual([...MESSAGE_TYPES].sort());
  });

  test.each(MESSAGE_TYPES)("%s: encode → decode gives the same message, bytes fields equal", (t) => {
    const m = FULL[t];
    const back = decodeMessage(encodeMessageBytes(m));
    expect(back).toEqual(m);
    for (const [k, v] of Object.entries(m)) {
      if (v instanceof Uint8Array) {
        const got = (back as Record<string, unknown>)[k];
        expect(got).toBeInstanceOf(Uint8Array);
        expect(Buffer.from(got as Uint8Array).equals(Buffer.from(v))).toBe(true);
      }
    }
    // Re-encoding the decoded message gives the very same text.
    expect(encodeMessage(back)).toBe(encodeMessage(m));
  });

  test.each(MESSAGE_TYPES)("%s: encoded text has type first, then exactly the schema's fields in order", (t) => {
    expect(Object.keys(jsonOf(t))).toEqual(["type", ...Object.keys(FIELDS[t])]);
  });

  test.each(MESSAGE_TYPES)("%s: optional fields may be left out, required ones may not", (t) => {
    for (const [k, spec] of Object.entries(FIELDS[t])) {
      const obj = jsonOf(t);
      delete obj[k];
      if (spec.optional) {
        const m = decodeMessage(body(obj));
        expect(k in m).toBe(false);
        expect(decodeMessage(encodeMessageBytes(m))).toEqual(m);
      } else {
        expectCode(() => decodeMessage(body(obj)), "message_missing_field");
      }
    }
  });

  test("a bytes field is returned as a Uint8Array, equal to the encoded bytes", () => {
    const e = r.bytes(32);
    const m = decodeMessage(body({ type: "client_hello", version: 1, e: toBase64(e), nonce: toBase64(new Uint8Array(32)) }));
    expect(m.type).toBe("client_hello");
    if (m.type !== "client_hello") return;
    expect(Array.from(m.e)).toEqual(Array.from(e));
    expect(Array.from(m.nonce)).toEqual(new Array(32).fill(0));
  });
});

describe("bodies that are not a JSON object", () => {
  test.each([
    ["0xff", [0xff]],
    ["0xfe", [0xfe]],
    ["overlong '/' C0 AF", [0xc0, 0xaf]],
    ["overlong NUL C0 80", [0xc0, 0x80]],
    ["overlong 3-byte E0 80 AF", [0xe0, 0x80, 0xaf]],
    ["lone surrogate ED A0 80", [0xed, 0xa0, 0x80]],
    ["lone low surrogate ED B0 80", [0xed, 0xb0, 0x80]],
    ["beyond U+10FFFF F4 90 80 80", [0xf4, 0x90, 0x80, 0x80]],
    ["truncated 2-byte C3", [0xc3]],
    ["truncated 3-byte E2 82", [0xe2, 0x82]],
    ["truncated 4-byte F0 9F 98", [0xf0, 0x9f, 0x98]],
    ["bare continuation 80", [0x80]],
  ])("invalid UTF-8 (%s) → utf8_invalid, also inside a JSON string", (_name, bad) => {
    expectCode(() => decodeMessage(Uint8Array.from(bad)), "utf8_invalid");
    const good = utf8('{"type":"error","code":"x","message":"');
    const tail = utf8('"}');
    expectCode(() => decodeMessage(Buffer.concat([good, Uint8Array.from(bad), tail])), "utf8_invalid");
  });

  test.each([
    ["empty body", ""],
    ["unterminated object", '{"type":"error"'],
    ["single quotes", "{'type':'error'}"],
    ["trailing comma", '{"type":"error","code":"x","message":"y",}'],
    ["two objects", '{"type":"error"}{"type":"error"}'],
    ["NaN", "NaN"],
    ["bare word", "hello"],
    ["comment", '{"type":"error"} // hi'],
    ["UTF-8 BOM before the object (not stripped)", '\ufeff{"type":"error","code":"x","message":"y"}'],
  ])("invalid JSON (%s) → json_invalid", (_name, text) => {
    expectCode(() => decodeMessage(utf8(text)), "json_invalid");
  });

  test.each([
    ["array", "[]"],
    ["array of a valid message", `[${encodeMessage(FULL.error)}]`],
    ["number", "1"],
    ["string", '"client_hello"'],
    ["null", "null"],
    ["true", "true"],
  ])("JSON %s → message_not_object (decodeMessage, parseJsonObject, validateMessage)", (_name, text) => {
    expectCode(() => decodeMessage(utf8(text)), "message_not_object");
    expectCode(() => parseJsonObject(utf8(text)), "message_not_object");
    expectCode(() => validateMessage(JSON.parse(text)), "message_not_object");
  });
});

describe("type", () => {
  test.each(["hello", "CLIENT_HELLO", "client_hello ", "", "__proto__", "constructor", "toString", "hasOwnProperty"])(
    "unknown type %p → message_unknown_type",
    (t) => {
      expectCode(() => decodeMessage(body({ type: t })), "message_unknown_type");
      expectCode(() => decodeMessage(body({ ...jsonOf("error"), type: t })), "message_unknown_type");
    },
  );

  test.each([
    ["missing", undefined],
    ["number", 1],
    ["null", null],
    ["true", true],
    ["array", ["error"]],
    ["object", { type: "error" }],
  ])("type %s → message_invalid", (_name, t) => {
    const obj: Record<string, unknown> = { ...jsonOf("error") };
    if (t === undefined) delete obj.type;
    else obj.type = t;
    expectCode(() => decodeMessage(body(obj)), "message_invalid");
  });
});

describe("fields", () => {
  test.each(MESSAGE_TYPES)("%s: an unknown field → message_unknown_field", (t) => {
    // Including names that exist on Object.prototype and a field of another message type.
    for (const k of ["extra", "Type", "__proto__", "constructor", "toString", t === "register" ? "ticket" : "identity_key"]) {
      const text = encodeMessage(FULL[t]).replace(/}$/, `,${JSON.stringify(k)}:"x"}`);
      expect([k, codeOf(() => decodeMessage(utf8(text)))]).toEqual([k, "message_unknown_field"]);
    }
  });

  // Each field replaced by a value of every other JSON type.
  const JSON_VALUES: Record<string, Json[]> = {
    string: ["", "AAAA", "1", "alice"],
    number: [0, 1, 1.5, -1],
    boolean: [true, false],
    null: [null],
    array: [[], ["AAAA"], [1]],
    object: [{}, { a: 1 }],
  };
  test.each(ALL_FIELDS.map((f) => [`${f.t}.${f.k}`, f] as const))("%s with a value of every wrong JSON type → message_invalid", (_name, f) => {
    const right = f.spec.kind === "int" ? "number" : "string";
    const results: [string, string][] = [];
    for (const [jsonType, values] of Object.entries(JSON_VALUES)) {
      if (jsonType === right) continue;
      for (const v of values) {
        const obj = jsonOf(f.t);
        obj[f.k] = v;
        results.push([JSON.stringify(v), codeOf(() => decodeMessage(body(obj)))]);
      }
    }
    expect(results.length).toBeGreaterThanOrEqual(9);
    expect(results).toEqual(results.map(([v]) => [v, "message_invalid"]));
  });

  test("validateMessage takes parsed values too and rejects non-JSON ones (undefined counts as missing)", () => {
    const obj: Record<string, unknown> = { ...jsonOf("error"), message: undefined };
    expectCode(() => validateMessage(obj), "message_missing_field");
    expectCode(() => validateMessage({ ...jsonOf("error"), message: 5n }), "message_invalid");
  });
});

describe("base64 fields", () => {
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  /** Bytes whose base64 is full of '+' and '/'. */
  const plusSlash = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => [0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff][i % 6]!);

  test.each(fieldsOf("bytes").map((f) => [`${f.t}.${f.k}`, f] as const))("%s", (_name, { t, k, spec }) => {
    const n = spec.n;
    const set = (v: string): Uint8Array => body({ ...jsonOf(t), [k]: v });
    const canonical = toBase64(plusSlash(n));
    expect(canonical).toMatch(/\+/);
    expect(canonical).toMatch(/\//);
    // Positive control: the canonical encoding of these bytes is accepted.
    expect(Array.from((decodeMessage(set(canonical)) as Record<string, unknown>)[k] as Uint8Array)).toEqual(Array.from(plusSlash(n)));

    const padAt = canonical.indexOf("=");
    expect(padAt).toBeGreaterThan(0); // 16, 32 and 64 bytes all need padding
    const last = B64.indexOf(canonical[padAt - 1]!);
    const nonCanonical = canonical.slice(0, padAt - 1) + B64[last | 1] + canonical.slice(padAt);

    const bad: [string, string][] = [
      ["empty", ""],
      ["n−1 bytes", toBase64(r.bytes(n - 1))],
      ["n+1 bytes", toBase64(r.bytes(n + 1))],
      ["2n bytes", toBase64(r.bytes(2 * n))],
      ["non-zero trailing bits", nonCanonical],
      ["url-safe alphabet", canonical.replaceAll("+", "-").replaceAll("/", "_")],
      ["missing padding", canonical.replace(/=+$/, "")],
      ["extra padding", `${canonical}=`],
      ["trailing newline", `${canonical}\n`],
      ["leading space", ` ${canonical}`],
      ["embedded line break", `${canonical.slice(0, 20)}\r\n${canonical.slice(20)}`],
      ["hex instead", Buffer.from(plusSlash(n)).toString("hex")],
    ];
    expect(bad.map(([what, v]) => [what, codeOf(() => decodeMessage(set(v)))])).toEqual(bad.map(([what]) => [what, "message_invalid"]));
  });
});

describe("integer fields", () => {
  test.each(fieldsOf("int").map((f) => [`${f.t}.${f.k}`, f] as const))("%s: bounds and non-integers", (_name, { t, k, spec }) => {
    const obj = jsonOf(t);
    const raw = (text: string): string => codeOf(() => decodeMessage(withRaw(obj, k, text)));
    for (const ok of [spec.min, spec.max, spec.min + 1]) {
      expect([ok, raw(String(ok))]).toEqual([ok, "no error"]);
    }
    const bad = ["1.5", "-1", String(spec.min - 1), String(spec.max + 1), "9007199254740992", "9007199254740993", "1e400", "-1e400", "0.5", String(spec.max) + ".5"];
    expect(bad.map((b) => [b, raw(b)])).toEqual(bad.map((b) => [b, "message_invalid"]));
  });
});

describe("user names", () => {
  const A32 = `a${"b".repeat(31)}`;
  const accepted = ["ab", "a1", "a_", "a-", "a-b_c9", A32, "zz"];
  const rejected: [string, string][] = [
    ["1 char", "a"],
    ["33 chars", `${A32}c`],
    ["empty", ""],
    ["uppercase", "Alice"],
    ["uppercase later", "aLice"],
    ["leading digit", "1alice"],
    ["leading underscore", "_alice"],
    ["leading dash", "-alice"],
    ["dot", "al.ice"],
    ["space", "al ice"],
    ["trailing newline", "alice\n"],
    ["leading space", " alice"],
    ["Cyrillic а look-alike", "\u0430lice"],
    ["fullwidth ａ", "\uff41lice"],
    ["dotless ı", "al\u0131ce"],
    ["Kelvin sign", "\u212aelvin"],
    ["ligature ﬁ", "\ufb01le"],
    ["zero-width space", "ali\u200bce"],
    ["combining accent", "alice\u0301"],
    ["NUL", "alice\u0000"],
  ];
  for (const t of ["register", "login", "welcome"] as const) {
    test(`${t}.user: boundaries of USER_NAME_RE`, () => {
      expect(accepted.map((u) => [u, codeOf(() => decodeMessage(body({ ...jsonOf(t), user: u })))])).toEqual(accepted.map((u) => [u, "no error"]));
      expect(rejected.map(([w, u]) => [w, codeOf(() => decodeMessage(body({ ...jsonOf(t), user: u })))])).toEqual(
        rejected.map(([w]) => [w, "message_invalid"]),
      );
      expectCode(() => decodeMessage(withRaw(jsonOf(t), "user", '"a\\ud800"')), "message_invalid");
    });
  }
});

describe("text fields", () => {
  test.each(fieldsOf("text").map((f) => [`${f.t}.${f.k}`, f] as const))("%s: length bounds in UTF-16 units, well-formed unicode only", (_name, { t, k, spec }) => {
    const code = (obj: JsonObject): string => codeOf(() => decodeMessage(body(obj)));
    const raw = (text: string): string => codeOf(() => decodeMessage(withRaw(jsonOf(t), k, text)));
    expect(code({ ...jsonOf(t), [k]: "x".repeat(spec.max) })).toBe("no error");
    expect(code({ ...jsonOf(t), [k]: "x".repeat(spec.max + 1) })).toBe("message_invalid");
    expect(code({ ...jsonOf(t), [k]: "x".repeat(spec.min) })).toBe("no error");
    if (spec.min > 0) expect(code({ ...jsonOf(t), [k]: "" })).toBe("message_invalid");
    // A surrogate pair is well-formed (and counts as 2 units); lone surrogates are not.
    expect(raw('"\\ud83d\\ude00"')).toBe("no error");
    const lone = ['"\\ud800"', '"\\udc00"', '"a\\ud800b"', '"\\ude00\\ud83d"', '"\\udbff"'];
    expect(lone.map((l) => [l, raw(l)])).toEqual(lone.map((l) => [l, "message_invalid"]));
  });
});

describe("allowed", () => {
  test.each(MESSAGE_TYPES)("%s outside `allowed` → message_unexpected; inside → accepted", (t) => {
    const b = encodeMessageBytes(FULL[t]);
    const others = MESSAGE_TYPES.filter((x) => x !== t);
    expectCode(() => decodeMessage(b, others), "message_unexpected");
    expectCode(() => decodeMessage(b, []), "message_unexpected");
    expect(decodeMessage(b, [t]).type).toBe(t);
    expect(decodeMessage(b, MESSAGE_TYPES).type).toBe(t);
  });

  test("`allowed` is checked before the fields: a malformed message of the wrong type is message_unexpected", () => {
    expectCode(() => decodeMessage(body({ type: "login", bogus: 1 }), ["register"]), "message_unexpected");
    // …while an unknown type is still unknown.
    expectCode(() => decodeMessage(body({ type: "nope" }), ["register"]), "message_unknown_type");
  });
});

describe("record payload", () => {
  const texts = MESSAGE_TYPES.map((t) => encodeMessage(FULL[t]));
  test.each([1, 2, 3, 4, 5])("split(join(%p messages)) gives them back", (n) => {
    const msgs = texts.slice(0, n);
    const payload = joinRecordPayload(msgs);
    expect(payload.filter((b) => b === 0x0a).length).toBe(n - 1);
    const parts = splitRecordPayload(payload);
    expect(parts.map((p) => new TextDecoder().decode(p))).toEqual(msgs);
    expect(parts.map((p) => decodeMessage(p))).toEqual(msgs.map((_, i) => FULL[MESSAGE_TYPES[i]!] as Message));
  });

  test("a message containing an escaped newline is not split", () => {
    const m: Message = { type: "error", code: "x", message: "two\nlines" };
    const parts = splitRecordPayload(joinRecordPayload([encodeMessage(m), encodeMessage(m)]));
    expect(parts.length).toBe(2);
    expect(decodeMessage(parts[1]!)).toEqual(m);
  });

  test.each([
    ["empty payload", ""],
    ["only LF", "\n"],
    ["leading LF", "\n{}"],
    ["trailing LF", "{}\n"],
    ["empty segment", "{}\n\n{}"],
    ["two LFs only", "\n\n"],
  ])("%s → record_empty_message", (_name, text) => {
    expectCode(() => splitRecordPayload(utf8(text)), "record_empty_message");
  });
});
