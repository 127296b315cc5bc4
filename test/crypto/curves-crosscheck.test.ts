/**
 * Cross-checks the native X25519 and Ed25519 wrappers (node:crypto, i.e.
 * BoringSSL, underneath) against @noble/curves as the reference, on inputs
 * from a seeded PRNG, beside the Wycheproof vectors of wycheproof.test.ts:
 *
 * - X25519: same shared secret (or the same refusal) for random scalars and
 *   random u-coordinates, including non-canonical ones (u ≥ p, bit 255 set).
 * - Ed25519: same public key and the same (deterministic) signature from
 *   every seed; the same verdict from `verify` (noble with zip215: false,
 *   RFC 8032 strict) on honest signatures, every single-bit flip of a
 *   signature, key or message, and random junk.
 * - Keys of small order: every encoding of a point of order ≤ 8, with each
 *   sign bit, is refused, with the "universal" signature (R = identity,
 *   S = 0) that BoringSSL alone would accept; noble refuses them too.
 *
 * To reproduce a failure, rerun with CURVES_CROSSCHECK_SEED=<seed>.
 */
import { ed25519 as nobleEd25519, x25519 as nobleX25519 } from "@noble/curves/ed25519.js";
import { describe, expect, test } from "bun:test";
import { toHex } from "../../src/bytes.ts";
import { mulberry32 } from "../rng.ts";
import { ed25519Generate, ed25519IsNonCanonical, ed25519IsSmallOrder, ed25519Sign, ed25519Signer, ed25519Verify, x25519, x25519Generate } from "../../src/crypto/index.ts";
import { isSecureChatError } from "../../src/errors.ts";

const SEED = Number(process.env.CURVES_CROSSCHECK_SEED ?? 0x25519) >>> 0;
console.log(`curves-crosscheck: CURVES_CROSSCHECK_SEED=${SEED}`);

const next = mulberry32(SEED);
function bytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = next() & 0xff;
  return out;
}
function flip(b: Uint8Array, bit: number): Uint8Array {
  const out = b.slice();
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

function nobleShared(sk: Uint8Array, pk: Uint8Array): string {
  try {
    return toHex(nobleX25519.scalarMult(sk, pk));
  } catch {
    return "refused";
  }
}
function oursShared(sk: Uint8Array, pk: Uint8Array): string {
  try {
    return toHex(x25519(sk, pk));
  } catch (e) {
    if (isSecureChatError(e, "x25519_low_order")) return "refused";
    throw e;
  }
}
function nobleVerify(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return nobleEd25519.verify(sig, msg, pk, { zip215: false });
  } catch {
    return false;
  }
}

describe(`X25519: native agrees with @noble/curves (seed ${SEED})`, () => {
  test("public keys from 200 random scalars", () => {
    for (let i = 0; i < 200; i++) {
      const sk = bytes(32);
      expect(toHex(x25519Generate(sk).publicKey), `scalar ${toHex(sk)}`).toBe(toHex(nobleX25519.getPublicKey(sk)));
    }
  });

  test("shared secrets for 300 random (scalar, u) pairs, a third of them with u ≥ p or bit 255 set", () => {
    for (let i = 0; i < 300; i++) {
      const sk = bytes(32);
      const pk = i % 3 === 0 ? x25519Generate(bytes(32)).publicKey : bytes(32);
      if (i % 3 === 1) pk[31]! |= 0x80;
      if (i % 3 === 2) pk.set([0xed + (i % 18), ...new Array(30).fill(0xff), 0xff].slice(0, 32));
      expect(oursShared(sk, pk), `scalar ${toHex(sk)} u ${toHex(pk)}`).toBe(nobleShared(sk, pk));
    }
  });

  test("low-order u-coordinates are refused by both", () => {
    const lowOrder = [
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    for (const hex of lowOrder) {
      const pk = Uint8Array.from(hex.match(/../g)!, (b) => Number.parseInt(b, 16));
      const sk = bytes(32);
      expect(oursShared(sk, pk), hex).toBe("refused");
      expect(nobleShared(sk, pk), hex).toBe("refused");
    }
  });
});

describe(`Ed25519: native agrees with @noble/curves, zip215: false (seed ${SEED})`, () => {
  test("public keys and signatures from 100 random seeds, byte for byte", () => {
    for (let i = 0; i < 100; i++) {
      const seed = bytes(32);
      const msg = bytes(next() % 200);
      const kp = ed25519Generate(seed);
      expect(toHex(kp.publicKey), `seed ${toHex(seed)}`).toBe(toHex(nobleEd25519.getPublicKey(seed)));
      expect(toHex(ed25519Sign(seed, msg)), `seed ${toHex(seed)}`).toBe(toHex(nobleEd25519.sign(msg, seed)));
      // The signer that imports the key once (the server's host key) signs the same.
      expect(toHex(ed25519Signer(seed)(msg)), `seed ${toHex(seed)}`).toBe(toHex(nobleEd25519.sign(msg, seed)));
    }
  });

  test("the same verdict on honest signatures and on every single-bit flip of signature, key and message", () => {
    for (let i = 0; i < 4; i++) {
      const kp = ed25519Generate(bytes(32));
      const msg = bytes(32);
      const sig = ed25519Sign(kp.secretKey, msg);
      const cases: [Uint8Array, Uint8Array, Uint8Array][] = [[kp.publicKey, msg, sig]];
      for (let bit = 0; bit < 512; bit++) cases.push([kp.publicKey, msg, flip(sig, bit)]);
      for (let bit = 0; bit < 256; bit++) cases.push([flip(kp.publicKey, bit), msg, sig]);
      for (let bit = 0; bit < 256; bit += 7) cases.push([kp.publicKey, flip(msg, bit), sig]);
      let accepted = 0;
      for (const [pk, m, s] of cases) {
        const ours = ed25519Verify(pk, m, s);
        expect(ours, `key ${toHex(pk)} msg ${toHex(m)} sig ${toHex(s)}`).toBe(nobleVerify(pk, m, s));
        if (ours) accepted++;
      }
      // Only the honest triple verifies; a flip of bit 255 of S (S ≥ L) or of the key is refused.
      expect(accepted).toBe(1);
    }
  }, 60_000); // thousands of verifications in pure JS (noble): seconds on a loaded machine, a generous wait

  test("random junk: 300 (key, message, signature) triples get the same verdict", () => {
    for (let i = 0; i < 300; i++) {
      const pk = i % 2 ? ed25519Generate(bytes(32)).publicKey : bytes(32);
      const msg = bytes(16);
      const sig = bytes(64);
      if (i % 3 === 0) sig[63]! &= 0x0f; // S < L more often, so the equation itself is tested
      expect(ed25519Verify(pk, msg, sig), `key ${toHex(pk)} sig ${toHex(sig)}`).toBe(nobleVerify(pk, msg, sig));
    }
  });

  test("keys of small order, both signs of x, with the universal signature (R = identity, S = 0): refused", () => {
    const universal = new Uint8Array(64);
    universal[0] = 1; // R = the identity point (y = 1), S = 0
    const bases = [
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
      "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    for (const hex of bases) {
      for (const sign of [0, 0x80]) {
        const pk = Uint8Array.from(hex.match(/../g)!, (b) => Number.parseInt(b, 16));
        pk[31]! |= sign;
        expect(ed25519IsSmallOrder(pk), toHex(pk)).toBe(true);
        for (const msg of [new Uint8Array(0), bytes(32)]) {
          expect(ed25519Verify(pk, msg, universal), toHex(pk)).toBe(false);
          expect(nobleVerify(pk, msg, universal), toHex(pk)).toBe(false);
        }
      }
    }
  });

  test("non-canonical keys (y ≥ p, either sign) are refused; y = p − 1 (canonical) is not called non-canonical", () => {
    const universal = new Uint8Array(64);
    universal[0] = 1;
    for (let low = 0xed; low <= 0xff; low++) {
      for (const top of [0x7f, 0xff]) {
        const pk = new Uint8Array(32).fill(0xff);
        pk[0] = low;
        pk[31] = top;
        expect(ed25519IsNonCanonical(pk), toHex(pk)).toBe(true);
        expect(ed25519Verify(pk, new Uint8Array(8), universal), toHex(pk)).toBe(false);
        expect(nobleVerify(pk, new Uint8Array(8), universal), toHex(pk)).toBe(false);
      }
    }
    const pMinus1 = new Uint8Array(32).fill(0xff);
    pMinus1[0] = 0xec;
    pMinus1[31] = 0x7f;
    expect(ed25519IsNonCanonical(pMinus1)).toBe(false);
    for (let i = 0; i < 100; i++) expect(ed25519IsNonCanonical(ed25519Generate(bytes(32)).publicKey)).toBe(false);
  });

  test("ed25519IsSmallOrder agrees with noble's point arithmetic on 200 random keys", () => {
    for (let i = 0; i < 200; i++) {
      const pk = i % 2 ? ed25519Generate(bytes(32)).publicKey : bytes(32);
      let small = false;
      try {
        small = nobleEd25519.Point.fromBytes(pk).isSmallOrder();
      } catch {
        small = false; // not a point at all
      }
      expect(ed25519IsSmallOrder(pk), toHex(pk)).toBe(small);
    }
  });
});
