/**
 * Small table-driven tests for the byte helpers (strict base64, strict
 * UTF-8) and the crypto wrappers' edges that the Wycheproof files do not
 * cover: constant-time helpers, the random-nonce XChaCha box, Ed25519
 * signing and malleability, X25519 lengths.
 */
import { describe, expect, test } from "bun:test";
import { fromBase64, fromHex, fromUtf8, toBase64, toHex, utf8 } from "../../src/bytes.ts";
import {
  constantTimeEqual,
  ed25519Generate,
  ed25519Sign,
  ed25519Verify,
  isAllZero,
  x25519,
  x25519Generate,
  xchachaOpenRandom,
  xchachaSealRandom,
} from "../../src/crypto/index.ts";
import { isSecureChatError } from "../../src/errors.ts";

/** Asserts that `fn` throws a SecureChatError with `code`. */
function expectCode(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  if (!isSecureChatError(thrown, code)) {
    throw new Error(`expected SecureChatError ${code}, got ${thrown === undefined ? "no error" : String(thrown)}`);
  }
}

describe("bytes: strict base64", () => {
  test.each([
    ["", ""],
    ["AA==", "00"],
    ["AAA=", "0000"],
    ["AAAA", "000000"],
    ["/w==", "ff"],
    ["+/8=", "fbff"],
    ["AQIDBA==", "01020304"],
    ["3q2+7w==", "deadbeef"],
  ])("accepts canonical %p", (b64, hex) => {
    expect(toHex(fromBase64(b64))).toBe(hex);
    expect(toBase64(fromHex(hex))).toBe(b64);
  });

  test("round-trips every length 0..64", () => {
    for (let n = 0; n <= 64; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
      expect(toHex(fromBase64(toBase64(b), n))).toBe(toHex(b));
    }
  });

  test.each([
    ["AA", "missing padding"],
    ["AAA", "missing padding"],
    ["AA=", "short padding"],
    ["A===", "too much padding"],
    ["=", "padding only"],
    ["AAAAA", "not a multiple of 4"],
    ["-_8=", "URL-safe alphabet"],
    ["_w==", "URL-safe alphabet"],
    [" AA==", "leading space"],
    ["AA==\n", "trailing newline"],
    ["AA\n==", "embedded newline"],
    ["AAAA AAAA", "embedded space"],
    ["AB==", "non-zero trailing bits (AA== is canonical)"],
    ["AAB=", "non-zero trailing bits (AAA= is canonical)"],
    ["/x==", "non-zero trailing bits (/w== is canonical)"],
    ["AA==AA==", "padding in the middle"],
    ["AA*=", "non-alphabet character"],
  ])("rejects %p (%s) with base64_invalid", (b64) => {
    expectCode(() => fromBase64(b64), "base64_invalid");
  });

  test("a wrong decoded length is base64_length", () => {
    expect(fromBase64("AAA=", 2).length).toBe(2);
    expectCode(() => fromBase64("AAAA", 2), "base64_length");
    expectCode(() => fromBase64("AA==", 2), "base64_length");
    expectCode(() => fromBase64("", 32), "base64_length");
    expectCode(() => fromBase64(toBase64(new Uint8Array(33)), 32), "base64_length");
  });
});

describe("bytes: strict UTF-8", () => {
  test("decodes well-formed UTF-8, including 4-byte sequences and a BOM", () => {
    const s = "héllo € 😀 \u{10ffff}";
    expect(fromUtf8(utf8(s))).toBe(s);
    expect(fromUtf8(fromHex("efbbbf41"))).toBe("\ufeffA");
    expect(fromUtf8(new Uint8Array(0))).toBe("");
  });

  test.each([
    ["c0af", "overlong '/' (2 bytes)"],
    ["e080af", "overlong '/' (3 bytes)"],
    ["f08080af", "overlong '/' (4 bytes)"],
    ["eda080", "lone high surrogate U+D800"],
    ["edbfbf", "lone low surrogate U+DFFF"],
    ["eda0bdedb880", "surrogate pair encoded as CESU-8"],
    ["e282", "truncated 3-byte sequence"],
    ["f09f98", "truncated 4-byte sequence"],
    ["41c3", "truncated at end of input"],
    ["80", "stray continuation byte"],
    ["f4908080", "above U+10FFFF"],
    ["ff", "byte 0xFF"],
  ])("rejects %s (%s) with utf8_invalid", (hex) => {
    expectCode(() => fromUtf8(fromHex(hex)), "utf8_invalid");
  });
});

describe("crypto/util", () => {
  test("constantTimeEqual", () => {
    expect(constantTimeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
    expect(constantTimeEqual(fromHex("00112233"), fromHex("00112233"))).toBe(true);
    expect(constantTimeEqual(fromHex("00112233"), fromHex("00112232"))).toBe(false);
    expect(constantTimeEqual(fromHex("00112233"), fromHex("80112233"))).toBe(false);
    expect(constantTimeEqual(fromHex("001122"), fromHex("00112233"))).toBe(false);
    expect(constantTimeEqual(new Uint8Array(0), fromHex("00"))).toBe(false);
    // Views into a larger buffer compare by content, not by backing store.
    const big = fromHex("ff0011ff");
    expect(constantTimeEqual(big.subarray(1, 3), fromHex("0011"))).toBe(true);
  });

  test("isAllZero", () => {
    expect(isAllZero(new Uint8Array(0))).toBe(true);
    expect(isAllZero(new Uint8Array(32))).toBe(true);
    for (const i of [0, 15, 31]) {
      const b = new Uint8Array(32);
      b[i] = 0x80;
      expect(isAllZero(b)).toBe(false);
    }
  });
});

describe("crypto/xchacha: random-nonce boxes", () => {
  const key = fromHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  const aad = utf8("securechat test aad");
  const pt = utf8("a secret at rest");

  test("round trip, with a fresh nonce each time", () => {
    const a = xchachaSealRandom(key, pt, aad);
    const b = xchachaSealRandom(key, pt, aad);
    expect(a.length).toBe(24 + pt.length + 16);
    expect(toHex(a.subarray(0, 24))).not.toBe(toHex(b.subarray(0, 24)));
    expect(toHex(xchachaOpenRandom(key, a, aad))).toBe(toHex(pt));
    expect(toHex(xchachaOpenRandom(key, b, aad))).toBe(toHex(pt));
    const empty = xchachaSealRandom(key, new Uint8Array(0), new Uint8Array(0));
    expect(xchachaOpenRandom(key, empty, new Uint8Array(0)).length).toBe(0);
  });

  test("any flipped bit in nonce, ciphertext or tag is aead_auth_failed", () => {
    const box = xchachaSealRandom(key, pt, aad);
    for (let i = 0; i < box.length; i++) {
      const bad = box.slice();
      bad[i] = bad[i]! ^ 0x01;
      expectCode(() => xchachaOpenRandom(key, bad, aad), "aead_auth_failed");
    }
  });

  test("wrong key, wrong aad, truncation and wrong key length are refused", () => {
    const box = xchachaSealRandom(key, pt, aad);
    const otherKey = key.slice();
    otherKey[0] = otherKey[0]! ^ 0x80;
    expectCode(() => xchachaOpenRandom(otherKey, box, aad), "aead_auth_failed");
    expectCode(() => xchachaOpenRandom(key, box, utf8("other aad")), "aead_auth_failed");
    expectCode(() => xchachaOpenRandom(key, box, new Uint8Array(0)), "aead_auth_failed");
    expectCode(() => xchachaOpenRandom(key, box.subarray(0, box.length - 1), aad), "aead_auth_failed");
    expectCode(() => xchachaOpenRandom(key, box.subarray(0, 39), aad), "aead_auth_failed");
    expectCode(() => xchachaOpenRandom(key, new Uint8Array(0), aad), "aead_auth_failed");
    expectCode(() => xchachaSealRandom(key.subarray(0, 31), pt, aad), "aead_key_length");
    expectCode(() => xchachaOpenRandom(new Uint8Array(33), box, aad), "aead_key_length");
  });
});

describe("crypto/ed25519", () => {
  /** Group order L = 2^252 + 27742317777372353535851937790883648493 (RFC 8032 §5.1). */
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  const leToBigint = (b: Uint8Array): bigint => BigInt(`0x${toHex(b.slice().reverse()) || "0"}`);
  const bigintToLe32 = (n: bigint): Uint8Array => fromHex(n.toString(16).padStart(64, "0")).reverse();

  test("RFC 8032 §7.1 TEST 1 (empty message)", () => {
    const kp = ed25519Generate(fromHex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
    expect(toHex(kp.publicKey)).toBe("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const sig = ed25519Sign(kp.secretKey, new Uint8Array(0));
    expect(toHex(sig)).toBe(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    expect(ed25519Verify(kp.publicKey, new Uint8Array(0), sig)).toBe(true);
  });

  test("sign/verify round trip; wrong message, key or signature is false", () => {
    const kp = ed25519Generate();
    const other = ed25519Generate();
    const msg = utf8("hello, securechat");
    const sig = ed25519Sign(kp.secretKey, msg);
    expect(sig.length).toBe(64);
    expect(ed25519Verify(kp.publicKey, msg, sig)).toBe(true);
    expect(ed25519Verify(kp.publicKey, utf8("hello, securechaT"), sig)).toBe(false);
    expect(ed25519Verify(other.publicKey, msg, sig)).toBe(false);
    for (const i of [0, 31, 32, 63]) {
      const bad = sig.slice();
      bad[i] = bad[i]! ^ 0x01;
      expect(ed25519Verify(kp.publicKey, msg, bad)).toBe(false);
    }
  });

  test("verifying under one key, then another, then a small-order key, then the first again: each is judged under its own key", () => {
    const a = ed25519Generate(new Uint8Array(32).fill(3));
    const b = ed25519Generate(new Uint8Array(32).fill(4));
    const m = utf8("checkpoint");
    const sa = ed25519Sign(a.secretKey, m);
    const sb = ed25519Sign(b.secretKey, m);
    // The identity point (small order): its "universal" signature (R = identity, S = 0) verifies under BoringSSL unless refused.
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const universal = new Uint8Array(64);
    universal[0] = 1;
    for (let round = 0; round < 2; round++) {
      expect(ed25519Verify(a.publicKey, m, sa)).toBe(true);
      expect(ed25519Verify(a.publicKey, m, sb)).toBe(false);
      expect(ed25519Verify(b.publicKey, m, sa)).toBe(false);
      expect(ed25519Verify(b.publicKey, m, sb)).toBe(true);
      expect(ed25519Verify(identity, m, universal)).toBe(false);
      expect(ed25519Verify(identity, m, universal)).toBe(false);
    }
    // A key changed in place after use is not mistaken for the one verified before.
    const k = new Uint8Array(a.publicKey);
    expect(ed25519Verify(k, m, sa)).toBe(true);
    k.set(b.publicKey);
    expect(ed25519Verify(k, m, sa)).toBe(false);
    expect(ed25519Verify(k, m, sb)).toBe(true);
  });

  test("a malleated signature (S + L) is rejected", () => {
    const kp = ed25519Generate();
    const msg = utf8("malleability");
    const sig = ed25519Sign(kp.secretKey, msg);
    const s = leToBigint(sig.subarray(32));
    expect(s < L).toBe(true);
    const malleated = sig.slice();
    malleated.set(bigintToLe32(s + L), 32); // s + L < 2^253: still 32 bytes
    expect(toHex(malleated)).not.toBe(toHex(sig));
    expect(ed25519Verify(kp.publicKey, msg, malleated)).toBe(false);
  });

  test("wrong lengths: verify returns false (never throws), sign and generate throw ed25519_length", () => {
    const kp = ed25519Generate();
    const msg = utf8("m");
    const sig = ed25519Sign(kp.secretKey, msg);
    expect(ed25519Verify(kp.publicKey.subarray(0, 31), msg, sig)).toBe(false);
    expect(ed25519Verify(new Uint8Array(0), msg, sig)).toBe(false);
    expect(ed25519Verify(kp.publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(ed25519Verify(kp.publicKey, msg, new Uint8Array([...sig, 0]))).toBe(false);
    expect(ed25519Verify(new Uint8Array(32).fill(0xff), msg, sig)).toBe(false);
    expectCode(() => ed25519Sign(kp.secretKey.subarray(0, 31), msg), "ed25519_length");
    expectCode(() => ed25519Generate(new Uint8Array(64)), "ed25519_length");
  });
});

describe("crypto/x25519", () => {
  test("RFC 7748 §6.1 Diffie-Hellman", () => {
    const alice = x25519Generate(fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
    const bob = x25519Generate(fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
    expect(toHex(alice.publicKey)).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(toHex(bob.publicKey)).toBe("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(toHex(x25519(alice.secretKey, bob.publicKey))).toBe(shared);
    expect(toHex(x25519(bob.secretKey, alice.publicKey))).toBe(shared);
  });

  test("random key pairs agree", () => {
    const a = x25519Generate();
    const b = x25519Generate();
    expect(toHex(x25519(a.secretKey, b.publicKey))).toBe(toHex(x25519(b.secretKey, a.publicKey)));
  });

  test("wrong-length inputs are x25519_length", () => {
    const kp = x25519Generate();
    for (const n of [0, 31, 33, 64]) {
      expectCode(() => x25519(new Uint8Array(n), kp.publicKey), "x25519_length");
      expectCode(() => x25519(kp.secretKey, new Uint8Array(n).fill(9)), "x25519_length");
      expectCode(() => x25519Generate(new Uint8Array(n)), "x25519_length");
    }
  });

  test("low-order public keys are x25519_low_order", () => {
    const kp = x25519Generate();
    for (const pub of ["00".repeat(32), `01${"00".repeat(31)}`, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"]) {
      expectCode(() => x25519(kp.secretKey, fromHex(pub)), "x25519_low_order");
    }
  });
});
