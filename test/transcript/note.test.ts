/**
 * Signed notes and checkpoints (src/transcript/note.ts) against a note
 * signed by Go's golang.org/x/mod/sumdb/note (test/vectors/note.json,
 * scripts/crosscheck/note.go): the same verifier key, the same bytes when
 * we sign, and every kind of tampering refused.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { fromBase64 } from "../../src/bytes.ts";
import { ed25519Generate, ed25519Sign } from "../../src/crypto/index.ts";
import {
  checkpointText,
  formatNote,
  formatVerifierKey,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signatureLine,
} from "../../src/transcript/note.ts";
import { codeOf } from "../protocol/helpers.ts";

const v = JSON.parse(readFileSync(new URL("../vectors/note.json", import.meta.url), "utf8")) as { seed: string; name: string; vkey: string; text: string; note: string };
const key = ed25519Generate(fromBase64(v.seed));
const sign = (m: Uint8Array) => ed25519Sign(key.secretKey, m);


describe("against Go's sumdb/note", () => {
  test("the same verifier key, and byte for byte the same signed checkpoint", () => {
    expect(formatVerifierKey(v.name, key.publicKey)).toBe(v.vkey);
    expect(formatNote(v.text, [signatureLine(v.text, v.name, key.publicKey, sign)])).toBe(v.note);
  });

  test("Go's note opens with the parsed verifier key, and its checkpoint reads back", () => {
    const c = openCheckpoint(v.note, parseVerifierKey(v.vkey));
    expect(c.origin).toBe(v.name);
    expect(c.size).toBe(12345);
    expect(Buffer.from(c.root).toString("hex")).toBe(Buffer.from(Array.from({ length: 32 }, (_, i) => 0xa0 + i)).toString("hex"));
    expect(c.extensions).toEqual([]);
    expect(checkpointText(c)).toBe(v.text);
  });
});

describe("what is refused", () => {
  const verifier = parseVerifierKey(v.vkey);

  test("a changed text, a changed signature, another key with the same name, or no signature of this key", () => {
    expect(codeOf(() => openNote(v.note.replace("12345", "12346"), verifier))).toBe("note_bad_signature");
    const sigAt = v.note.lastIndexOf(" ") + 20; // past the key ID
    const flipped = v.note.slice(0, sigAt) + (v.note[sigAt] === "A" ? "B" : "A") + v.note.slice(sigAt + 1);
    expect(codeOf(() => openNote(flipped, verifier))).toBe("note_bad_signature");
    const other = ed25519Generate();
    const forged = formatNote(v.text, [signatureLine(v.text, v.name, other.publicKey, (m) => ed25519Sign(other.secretKey, m))]);
    expect(codeOf(() => openNote(forged, verifier))).toBe("note_unsigned");
    // Another key's signature next to ours is ignored; ours still decides.
    const both = formatNote(v.text, [signatureLine(v.text, "witness.example", other.publicKey, (m) => ed25519Sign(other.secretKey, m)), signatureLine(v.text, v.name, key.publicKey, sign)]);
    expect(openNote(both, verifier).text).toBe(v.text);
  });

  test("malformed notes and keys: no blank line, no dash, control characters, a verifier key whose ID does not match", () => {
    expect(codeOf(() => openNote(v.text, verifier))).toBe("note_invalid");
    expect(codeOf(() => openNote(v.note.replace("\u2014", "--"), verifier))).toBe("note_invalid");
    expect(codeOf(() => openNote(v.note.replace("12345", "123\t45"), verifier))).toBe("note_invalid");
    expect(codeOf(() => parseVerifierKey(v.vkey.replace(/\+[0-9a-f]{8}\+/, "+00000000+")))).toBe("note_invalid");
    expect(codeOf(() => parseVerifierKey("a b+3942cafa+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"))).toBe("note_invalid");
    expect(codeOf(() => formatVerifierKey("has space", key.publicKey))).toBe("note_invalid");
  });

  test("checkpoint bodies: a size that is not a plain decimal count, a root that is not 32 bytes of base64, a missing line", () => {
    for (const bad of ["o\n-1\nAAAA\n", "o\n01\n" + "A".repeat(43) + "=\n", "o\n1\nAAAA\n", "o\n1\n", "\n1\n" + "A".repeat(43) + "=\n", "o\n1e3\n" + "A".repeat(43) + "=\n"]) {
      expect(codeOf(() => parseCheckpoint(bad))).toBe("note_invalid");
    }
    expect(parseCheckpoint(`o\n7\n${"A".repeat(43)}=\next one\n`).extensions).toEqual(["ext one"]);
  });
});
