/**
 * Cosignatures (src/transcript/cosignature.ts) against a vector made by an
 * independent implementation written from c2sp.org/tlog-cosignature's byte
 * layout with Go's crypto/ed25519 (test/vectors/cosignature.json,
 * scripts/crosscheck/cosignature.go): the same witness vkey, byte for byte
 * the same cosignature line, and every kind of tampering refused.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { fromBase64, fromUtf8 } from "../../src/bytes.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import { cosignatureLine, cosignedMessage, formatCosignerKey, noteCosignatures, parseCosignerKey } from "../../src/transcript/cosignature.ts";
import { openCheckpoint, parseVerifierKey } from "../../src/transcript/note.ts";
import { codeOf } from "../protocol/helpers.ts";

const v = JSON.parse(readFileSync(new URL("../vectors/cosignature.json", import.meta.url), "utf8")) as {
  [k in "log_vkey" | "witness_seed" | "witness_name" | "witness_vkey" | "text" | "signed_message" | "note" | "cosignature" | "cosigned_note"]: string;
} & { timestamp: number };
const witness = ed25519Generate(fromBase64(v.witness_seed));
const sign = (m: Uint8Array) => ed25519Sign(witness.secretKey, m);

describe("against the independent implementation", () => {
  test("the same witness vkey (type 0x04), the same signed message and byte for byte the same cosignature line", () => {
    expect(formatCosignerKey(v.witness_name, witness.publicKey)).toBe(v.witness_vkey);
    expect(fromUtf8(cosignedMessage(v.text, BigInt(v.timestamp)))).toBe(v.signed_message);
    expect(cosignatureLine(v.text, v.witness_name, witness.publicKey, sign, BigInt(v.timestamp))).toBe(v.cosignature);
  });

  test("its cosigned note: the log's signature opens it, and the witness's cosignature counts with its timestamp", () => {
    expect(openCheckpoint(v.cosigned_note, parseVerifierKey(v.log_vkey)).size).toBe(12345);
    const found = noteCosignatures(v.cosigned_note, [parseCosignerKey(v.witness_vkey)]);
    expect(found.map((c) => [c.name, c.timestamp])).toEqual([[v.witness_name, BigInt(v.timestamp)]]);
  });
});

describe("what is refused", () => {
  const w = parseCosignerKey(v.witness_vkey);

  test("a log key is not a cosigner key and the reverse (the type byte and the key ID differ)", () => {
    expect(codeOf(() => parseCosignerKey(v.log_vkey))).toBe("note_invalid");
    expect(codeOf(() => parseVerifierKey(v.witness_vkey))).toBe("note_invalid");
  });

  test("a cosignature over another size, with a changed timestamp, or a flipped signature bit does not verify", () => {
    expect(codeOf(() => noteCosignatures(v.cosigned_note.replace("12345", "12346"), [w]))).toBe("cosignature_bad");
    const raw = fromBase64(v.cosignature.trim().split(" ")[2]!);
    for (const at of [11, 20]) {
      const bad = Uint8Array.from(raw);
      bad[at]! ^= 1; // 11: the timestamp's last byte; 20: the signature
      const line = `\u2014 ${v.witness_name} ${Buffer.from(bad).toString("base64")}\n`;
      expect(codeOf(() => noteCosignatures(v.note + line, [w]))).toBe("cosignature_bad");
    }
  });

  test("another key under the witness's name is ignored (no cosignature), not counted", () => {
    const other = ed25519Generate();
    const line = cosignatureLine(v.text, v.witness_name, other.publicKey, (m) => ed25519Sign(other.secretKey, m), BigInt(v.timestamp));
    expect(noteCosignatures(v.note + line, [w])).toEqual([]);
  });

  test("the same witness twice counts once; a timestamp of 0 is not made", () => {
    expect(noteCosignatures(v.cosigned_note + v.cosignature, [w, w]).length).toBe(1);
    expect(codeOf(() => cosignatureLine(v.text, v.witness_name, witness.publicKey, sign, 0n))).toBe("cosignature_invalid");
  });
});
