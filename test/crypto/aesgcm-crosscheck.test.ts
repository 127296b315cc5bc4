/**
 * Cross-checks the native AES-256-GCM wrapper (node:crypto underneath)
 * against @noble/ciphers' pure-JS GCM as the reference, on inputs from a
 * seeded PRNG: ours seals → noble opens, noble seals → ours opens, both must
 * agree byte for byte, and a single flipped bit in the ciphertext, the tag or
 * the AAD must make ours throw `aead_auth_failed`.
 *
 * Here noble is the reference (as @noble/curves is in curves-crosscheck.test.ts).
 * To reproduce a failure, rerun with AESGCM_CROSSCHECK_SEED=<seed>.
 */
import { gcm } from "@noble/ciphers/aes.js";
import { expect, test } from "bun:test";
import { toHex } from "../../src/bytes.ts";
import { mulberry32 } from "../rng.ts";
import { AES_GCM_TAG_LENGTH, aesGcmOpen, aesGcmSeal } from "../../src/crypto/index.ts";
import { isSecureChatError } from "../../src/errors.ts";

const SEED = Number(process.env.AESGCM_CROSSCHECK_SEED ?? 0x5ec0_c4a7) >>> 0;
const RANDOM_CASES = 520;
/** Always covered, whatever the seed: empty, sub-block, block edges, multi-block, large. */
const FIXED_PT_LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 100, 1024, 2000, 16384];
const MAX_RANDOM_PT = 2000;
const MAX_AAD = 64;


const next = mulberry32(SEED);
const int = (maxInclusive: number): number => next() % (maxInclusive + 1);
function bytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const r = next();
    for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (r >>> (8 * j)) & 0xff;
  }
  return out;
}

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = b.slice();
  const i = bit >>> 3;
  out[i] = out[i]! ^ (1 << (bit & 7));
  return out;
}

/** Returns a description unless `fn` throws SecureChatError `aead_auth_failed`. */
function authFailure(what: string, fn: () => unknown): string | undefined {
  try {
    fn();
    return `${what}: opened`;
  } catch (e) {
    return isSecureChatError(e, "aead_auth_failed") ? undefined : `${what}: threw ${String(e)}`;
  }
}

function crossCheck(key: Uint8Array, nonce: Uint8Array, pt: Uint8Array, aad: Uint8Array): string[] {
  const problems: (string | undefined)[] = [];
  const ours = aesGcmSeal(key, nonce, pt, aad);
  const theirs = gcm(key, nonce, aad).encrypt(pt);
  if (toHex(ours) !== toHex(theirs)) problems.push("seal differs from noble");
  if (ours.length !== pt.length + AES_GCM_TAG_LENGTH) problems.push(`sealed length ${ours.length}`);

  try {
    if (toHex(gcm(key, nonce, aad).decrypt(ours)) !== toHex(pt)) problems.push("noble opened ours to a different plaintext");
  } catch (e) {
    problems.push(`noble failed to open ours: ${String(e)}`);
  }
  try {
    if (toHex(aesGcmOpen(key, nonce, theirs, aad)) !== toHex(pt)) problems.push("ours opened noble's to a different plaintext");
  } catch (e) {
    problems.push(`ours failed to open noble's: ${String(e)}`);
  }

  // One flipped bit anywhere must be caught.
  const ctBits = pt.length * 8;
  if (ctBits > 0) {
    const bit = int(ctBits - 1);
    problems.push(authFailure(`ct bit ${bit} flipped`, () => aesGcmOpen(key, nonce, flipBit(ours, bit), aad)));
  }
  const tagBit = ctBits + int(AES_GCM_TAG_LENGTH * 8 - 1);
  problems.push(authFailure(`tag bit ${tagBit - ctBits} flipped`, () => aesGcmOpen(key, nonce, flipBit(ours, tagBit), aad)));
  if (aad.length > 0) {
    const bit = int(aad.length * 8 - 1);
    problems.push(authFailure(`aad bit ${bit} flipped`, () => aesGcmOpen(key, nonce, ours, flipBit(aad, bit))));
  } else {
    problems.push(authFailure("aad added", () => aesGcmOpen(key, nonce, ours, new Uint8Array(1))));
  }
  return problems.filter((p): p is string => p !== undefined);
}

test(`aes-gcm: native wrapper agrees with @noble/ciphers gcm (seed 0x${SEED.toString(16)})`, () => {
  const ptLengths = [...FIXED_PT_LENGTHS, ...Array.from({ length: RANDOM_CASES }, () => int(MAX_RANDOM_PT))];
  const failures: string[] = [];
  let cases = 0;
  let seenAad0 = false;
  let seenAadMax = false;
  for (const [i, ptLen] of ptLengths.entries()) {
    // The first few cases pin the AAD extremes; the rest are random.
    const aadLen = i === 0 ? 0 : i === 1 ? MAX_AAD : int(MAX_AAD);
    seenAad0 ||= aadLen === 0;
    seenAadMax ||= aadLen === MAX_AAD;
    const key = bytes(32);
    const nonce = bytes(12);
    const pt = bytes(ptLen);
    const aad = bytes(aadLen);
    for (const p of crossCheck(key, nonce, pt, aad)) {
      failures.push(`seed 0x${SEED.toString(16)} case ${i} (pt ${ptLen} B, aad ${aadLen} B, key ${toHex(key)}, nonce ${toHex(nonce)}): ${p}`);
    }
    cases++;
  }
  expect(failures).toEqual([]);
  expect(cases).toBe(FIXED_PT_LENGTHS.length + RANDOM_CASES);
  expect(cases).toBeGreaterThanOrEqual(500);
  expect(seenAad0 && seenAadMax).toBe(true);
});
