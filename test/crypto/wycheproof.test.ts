/**
 * Every Project Wycheproof vector in test/vectors/wycheproof/, run through
 * securechat's own wrappers (src/crypto) — never through @noble or
 * node:crypto directly, since the wrappers are what the protocol uses.
 *
 * Each file is one test that loops over all of its vectors, collects every
 * failure (tcId, comment, flags, what went wrong) and asserts the list is
 * empty. Each test also asserts how many vectors it processed, per class,
 * against both the file's numberOfTests and the counts pinned below, so a
 * loop that silently skips vectors (or a truncated file) cannot pass.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fromHex, toHex } from "../../src/bytes.ts";
import {
  aesGcmOpen,
  aesGcmSeal,
  ed25519Verify,
  hkdf,
  x25519,
  xchachaOpen,
  xchachaSeal,
} from "../../src/crypto/index.ts";
import { isSecureChatError } from "../../src/errors.ts";

const VECTOR_DIR = join(import.meta.dir, "..", "vectors", "wycheproof");

// ---------------------------------------------------------------------------
// Shared helpers

type Result = "valid" | "acceptable" | "invalid";

interface Vector {
  tcId: number;
  comment: string;
  flags: string[];
  result: Result;
}

interface WycheproofFile<G> {
  algorithm: string;
  numberOfTests: number;
  testGroups: G[];
}

function load<G>(name: string): WycheproofFile<G> {
  const file = JSON.parse(readFileSync(join(VECTOR_DIR, name), "utf8")) as WycheproofFile<G>;
  if (!Array.isArray(file.testGroups) || typeof file.numberOfTests !== "number") {
    throw new Error(`${name}: not a Wycheproof vector file`);
  }
  return file;
}

/** What a wrapper call did: returned a value, or threw (with its code). */
type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

function attempt<T>(fn: () => T): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    return { ok: false, code: isSecureChatError(e) ? e.code : `not a SecureChatError: ${String(e)}` };
  }
}

/** Describes how `got` differs from the expected bytes, or undefined if equal. */
function mismatchBytes(what: string, got: Outcome<Uint8Array>, want: string): string | undefined {
  if (!got.ok) return `${what}: threw ${got.code}, expected ${want || "(empty)"}`;
  const hex = toHex(got.value);
  return hex === want ? undefined : `${what}: got ${hex || "(empty)"}, expected ${want || "(empty)"}`;
}

/** Describes how `got` differs from throwing one of `codes`, or undefined if it did. */
function mismatchThrow(what: string, got: Outcome<unknown>, ...codes: string[]): string | undefined {
  if (got.ok) return `${what}: returned, expected to throw ${codes.join(" or ")}`;
  return codes.includes(got.code) ? undefined : `${what}: threw ${got.code}, expected ${codes.join(" or ")}`;
}

/** Failure collector and per-class counter for one vector file. */
class Run {
  readonly failures: string[] = [];
  readonly counts = new Map<string, number>();
  processed = 0;

  constructor(readonly name: string) {}

  /** Counts a vector as processed under `bucket`. */
  count(bucket: string): void {
    this.processed++;
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
  }

  /** Records each defined problem against the vector. */
  check(v: Vector, ...problems: (string | undefined)[]): void {
    for (const p of problems) {
      if (p !== undefined) this.failures.push(`tcId ${v.tcId} (${v.comment || "no comment"}) [${v.flags.join(",")}]: ${p}`);
    }
  }

  summary(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }

  /** The assertions every file ends with. */
  finish(file: WycheproofFile<unknown>, expectedTotal: number, expectedCounts: Record<string, number>): void {
    console.log(`${this.name}: ${this.processed} vectors ${JSON.stringify(this.summary())}`);
    expect(this.failures).toEqual([]);
    expect(this.processed).toBe(file.numberOfTests);
    expect(this.processed).toBe(expectedTotal);
    expect(this.summary()).toEqual(expectedCounts);
  }
}

// ---------------------------------------------------------------------------
// X25519 (xdh_comp_schema_v1)

interface XdhVector extends Vector {
  public: string;
  private: string;
  shared: string;
}

const ZERO_32 = "00".repeat(32);

function checkX25519(run: Run, v: XdhVector): void {
  const got = attempt(() => x25519(fromHex(v.private), fromHex(v.public)));
  switch (v.result) {
    case "valid":
      run.count("valid");
      // A valid vector with an all-zero secret would contradict our policy.
      run.check(v, v.shared === ZERO_32 ? "valid vector with all-zero shared secret" : undefined);
      run.check(v, mismatchBytes("x25519", got, v.shared));
      break;
    case "acceptable":
      if (v.shared === ZERO_32) {
        // Low-order public key: our policy (PROTOCOL.md §4) is to refuse.
        run.count("acceptable, all-zero shared → x25519_low_order");
        run.check(v, mismatchThrow("x25519", got, "x25519_low_order"));
      } else {
        // Non-canonical / twist points: RFC 7748 computes them; so do we.
        run.count("acceptable, computed");
        run.check(v, mismatchBytes("x25519", got, v.shared));
      }
      break;
    case "invalid":
      run.count("invalid");
      run.check(v, got.ok && toHex(got.value) === v.shared ? "x25519: invalid vector produced its shared secret" : undefined);
      break;
  }
}

// ---------------------------------------------------------------------------
// Ed25519 (eddsa_verify_schema_v1)

interface EddsaVector extends Vector {
  msg: string;
  sig: string;
}

interface EddsaGroup {
  publicKey?: { pk: string };
  /** Older Wycheproof releases call the key `key`. */
  key?: { pk: string };
  tests: EddsaVector[];
}

function checkEd25519(run: Run, pk: string, v: EddsaVector): void {
  const got = attempt(() => ed25519Verify(fromHex(pk), fromHex(v.msg), fromHex(v.sig)));
  run.count(v.result);
  if (!got.ok) {
    run.check(v, `ed25519Verify threw ${got.code}; it must never throw`);
    return;
  }
  if (v.result === "valid") run.check(v, got.value ? undefined : "valid signature rejected");
  if (v.result === "invalid") run.check(v, got.value ? "invalid signature accepted" : undefined);
  // "acceptable": either answer is fine.
}

// ---------------------------------------------------------------------------
// HKDF-SHA256 (hkdf_test_schema_v1)

interface HkdfVector extends Vector {
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
}

function checkHkdf(run: Run, v: HkdfVector): void {
  // fromHex("") is an empty Uint8Array: the EmptySalt vectors pass salt = "".
  const got = attempt(() => hkdf(fromHex(v.ikm), fromHex(v.salt), fromHex(v.info), v.size));
  run.count(v.result);
  if (v.result === "valid") run.check(v, mismatchBytes("hkdf", got, v.okm));
  else if (v.result === "invalid") run.check(v, mismatchThrow("hkdf", got, "hkdf_length"));
  else run.check(v, "hkdf: unexpected acceptable vector");
}

// ---------------------------------------------------------------------------
// AEADs (aead_test_schema_v1): AES-256-GCM and XChaCha20-Poly1305

interface AeadVector extends Vector {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}

interface AeadGroup {
  keySize: number;
  ivSize: number;
  tagSize: number;
  tests: AeadVector[];
}

interface Aead {
  seal(key: Uint8Array, nonce: Uint8Array, pt: Uint8Array, aad: Uint8Array): Uint8Array;
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array;
  keySize: number;
  ivSize: number;
  tagSize: number;
}

const AES_GCM: Aead = { seal: aesGcmSeal, open: aesGcmOpen, keySize: 256, ivSize: 96, tagSize: 128 };
const XCHACHA: Aead = { seal: xchachaSeal, open: xchachaOpen, keySize: 256, ivSize: 192, tagSize: 128 };

/**
 * Vectors whose sizes the wrapper supports are checked for the exact
 * ciphertext (valid) or for `aead_auth_failed` on open (invalid). Vectors with
 * any other key, nonce or tag size do not apply to a fixed-size wrapper: the
 * wrapper must refuse them outright (with the size error for the key or
 * nonce; a short tag fails authentication), whatever their result is.
 */
function checkAead(run: Run, aead: Aead, g: AeadGroup, v: AeadVector): void {
  const key = fromHex(v.key);
  const iv = fromHex(v.iv);
  const aad = fromHex(v.aad);
  const msg = fromHex(v.msg);
  const sealed = fromHex(v.ct + v.tag);
  const seal = attempt(() => aead.seal(key, iv, msg, aad));
  const open = attempt(() => aead.open(key, iv, sealed, aad));

  // The group's declared sizes must match the vector's bytes, or the
  // applicable/rejected split below would be wrong. (Invalid vectors may
  // carry a truncated or empty tag, e.g. the InvalidNonceSize ones.)
  run.check(
    v,
    key.length * 8 !== g.keySize ? `key is ${key.length * 8} bits, group says ${g.keySize}` : undefined,
    iv.length * 8 !== g.ivSize ? `iv is ${iv.length * 8} bits, group says ${g.ivSize}` : undefined,
    v.result !== "invalid" && v.tag.length * 4 !== g.tagSize
      ? `tag is ${v.tag.length * 4} bits, group says ${g.tagSize}`
      : undefined,
  );

  if (g.keySize !== aead.keySize || g.ivSize !== aead.ivSize) {
    run.count(`rejected by size (${v.result})`);
    const code = g.keySize !== aead.keySize ? "aead_key_length" : "aead_nonce_length";
    run.check(v, mismatchThrow("seal", seal, code), mismatchThrow("open", open, code));
    return;
  }
  if (g.tagSize !== aead.tagSize) {
    // Our tag is always 128 bits: a shorter ct‖tag must not open, and seal
    // cannot produce it.
    run.count(`rejected by size (${v.result})`);
    run.check(
      v,
      open.ok ? "open: accepted a truncated tag" : undefined,
      seal.ok && toHex(seal.value) === v.ct + v.tag ? "seal: produced a truncated tag" : undefined,
    );
    return;
  }

  run.count(`applicable ${v.result}`);
  switch (v.result) {
    case "valid":
      run.check(v, mismatchBytes("seal", seal, v.ct + v.tag), mismatchBytes("open", open, v.msg));
      break;
    case "invalid":
      run.check(v, mismatchThrow("open", open, "aead_auth_failed"));
      break;
    case "acceptable":
      // Either outcome is allowed, but a successful open must be correct.
      run.check(v, open.ok ? mismatchBytes("open", open, v.msg) : undefined);
      break;
  }
}

// ---------------------------------------------------------------------------
// The tests

describe("wycheproof", () => {
  test("x25519_test.json: every vector through x25519()", () => {
    const file = load<{ tests: XdhVector[] }>("x25519_test.json");
    const run = new Run("x25519_test.json");
    for (const g of file.testGroups) for (const v of g.tests) checkX25519(run, v);
    run.finish(file, 518, {
      valid: 264,
      "acceptable, all-zero shared → x25519_low_order": 31,
      "acceptable, computed": 223,
    });
  });

  test("ed25519_test.json: every vector through ed25519Verify()", () => {
    const file = load<EddsaGroup>("ed25519_test.json");
    const run = new Run("ed25519_test.json");
    for (const g of file.testGroups) {
      const pk = g.publicKey?.pk ?? g.key?.pk;
      for (const v of g.tests) {
        if (pk === undefined) {
          run.count("no public key in group");
          run.check(v, "group has no public key");
        } else {
          checkEd25519(run, pk, v);
        }
      }
    }
    run.finish(file, 151, { valid: 88, invalid: 63 });
  });

  test("hkdf_sha256_test.json: every vector through hkdf()", () => {
    const file = load<{ tests: HkdfVector[] }>("hkdf_sha256_test.json");
    const run = new Run("hkdf_sha256_test.json");
    for (const g of file.testGroups) for (const v of g.tests) checkHkdf(run, v);
    run.finish(file, 86, { valid: 83, invalid: 3 });
  });

  test("aes_gcm_test.json: every vector through aesGcmSeal()/aesGcmOpen()", () => {
    const file = load<AeadGroup>("aes_gcm_test.json");
    const run = new Run("aes_gcm_test.json");
    for (const g of file.testGroups) for (const v of g.tests) checkAead(run, AES_GCM, g, v);
    run.finish(file, 316, {
      "applicable valid": 39,
      "applicable invalid": 27,
      "rejected by size (valid)": 190,
      "rejected by size (invalid)": 60,
    });
    const applicable = (run.counts.get("applicable valid") ?? 0) + (run.counts.get("applicable invalid") ?? 0);
    expect(applicable).toBeGreaterThan(0);
  });

  test("xchacha20_poly1305_test.json: every vector through xchachaSeal()/xchachaOpen()", () => {
    const file = load<AeadGroup>("xchacha20_poly1305_test.json");
    const run = new Run("xchacha20_poly1305_test.json");
    for (const g of file.testGroups) for (const v of g.tests) checkAead(run, XCHACHA, g, v);
    run.finish(file, 315, {
      "applicable valid": 246,
      "applicable invalid": 60,
      // The InvalidNonceSize vectors: aead_nonce_length on both seal and open.
      "rejected by size (invalid)": 9,
    });
  });
});
