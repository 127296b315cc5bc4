/**
 * The key backup file (docs/PROTOCOL.md Appendix A.7) against its
 * known-answer vector, test/vectors/keybackup/backup.json: the generator
 * reproduces it; an implementation written from the spec alone (primitives
 * only: @noble/hashes, @noble/ciphers, @noble/curves) opens it; the
 * reference opens it and refuses a wrong passphrase, an altered header and
 * parameters out of bounds; the spec's example is the vector's file.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { argon2id } from "@noble/hashes/argon2.js";
import { VECTOR_PATH, buildKeyBackupVector } from "../../scripts/gen-keybackup-vector.ts";
import { fromHex, toHex } from "../../src/bytes.ts";
import { BACKUP_BOUNDS, openKeyBackup, sealKeyBackup, writeBackupFile } from "../../src/client/keybackup.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";

const ROOT = join(import.meta.dir, "..", "..");
const V = JSON.parse(readFileSync(join(ROOT, VECTOR_PATH), "utf8")) as Awaited<ReturnType<typeof buildKeyBackupVector>>;
const SPEC = readFileSync(join(ROOT, "docs", "PROTOCOL.md"), "utf8");

/** The error code `p` rejects with. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return "no error";
}

/** Each of these derives argon2id keys (about a second each on a loaded 2-core machine): a generous wait, not a speed bound. */
const ARGON2_TESTS_MS = 60_000;

describe("the key backup vector", () => {
  test("the generator, run in memory, reproduces the committed file exactly", async () => {
    expect(`${JSON.stringify(await buildKeyBackupVector(), null, 2)}\n`).toBe(readFileSync(join(ROOT, VECTOR_PATH), "utf8"));
  });

  test("written from the spec alone: argon2id of NFKC(passphrase), XChaCha20-Poly1305 over the seed with the five header lines as associated data", () => {
    const lines = V.file.split("\n");
    expect(lines.length).toBe(7);
    const [magic, kdf, user, server, key, sealed] = lines;
    expect(magic).toBe("securechat key backup v1");
    const m = /^kdf argon2id m=(\d+) t=(\d+) p=(\d+) salt=(\S+)$/.exec(kdf!)!;
    const salt = Buffer.from(m[4]!, "base64");
    const k = argon2id(new TextEncoder().encode(V.inputs.passphrase.normalize("NFKC")), salt, { m: Number(m[1]), t: Number(m[2]), p: Number(m[3]), dkLen: 32 });
    expect(toHex(k)).toBe(V.key);
    const box = Buffer.from(sealed!.slice("sealed ".length), "base64");
    const ad = new TextEncoder().encode(lines.slice(0, 5).join("\n") + "\n");
    const seed = xchacha20poly1305(k, box.subarray(0, 24), ad).decrypt(box.subarray(24));
    expect(toHex(seed)).toBe(V.inputs.seed);
    expect(Buffer.from(ed25519.getPublicKey(seed)).toString("base64")).toBe(key!.slice("key ".length));
    expect([user, server]).toEqual([`user ${V.inputs.user}`, `server ${V.inputs.server}`]);
    // Any change to the header is a change to the associated data: the tag no longer verifies.
    const other = new TextEncoder().encode(V.associated_data.replace("user alice", "user bob"));
    expect(() => xchacha20poly1305(k, box.subarray(0, 24), other).decrypt(box.subarray(24))).toThrow();
  });

  test("PROTOCOL.md Appendix A.7's example is the vector's file", () => {
    const start = SPEC.indexOf("Example (the known-answer vector `test/vectors/keybackup/backup.json`");
    expect(start).toBeGreaterThan(SPEC.indexOf("### A.7 "));
    const block = /```\n(securechat key backup v1\n[^`]*)```/.exec(SPEC.slice(start));
    expect(block?.[1]).toBe(V.file);
  });
});

describe("key import's reading of a backup", () => {
  test("the right passphrase gives the key, its user and server", async () => {
    const b = await openKeyBackup(V.file, V.inputs.passphrase);
    expect([b.user, b.server, toHex(b.key.publicKey)]).toEqual([V.inputs.user, V.inputs.server, V.inputs.public_key]);
  }, ARGON2_TESTS_MS);

  test("a wrong passphrase, or a header changed to another user, server or key, is backup_locked", async () => {
    expect(await codeOf(openKeyBackup(V.file, `${V.inputs.passphrase}!`))).toBe("backup_locked");
    expect(await codeOf(openKeyBackup(V.file.replace("user alice", "user bobby"), V.inputs.passphrase))).toBe("backup_locked");
    expect(await codeOf(openKeyBackup(V.file.replace("server chat.example:7447", "server evil.example:7447"), V.inputs.passphrase))).toBe("backup_locked");
    const otherKey = Buffer.from(fromHex("00".repeat(32))).toString("base64");
    expect(await codeOf(openKeyBackup(V.file.replace(/^key .*$/m, `key ${otherKey}`), V.inputs.passphrase))).toBe("backup_locked");
  }, ARGON2_TESTS_MS);

  test("parameters below the floor or above the ceiling, and anything not in the format, are backup_corrupt (no hashing is spent on them)", async () => {
    expect(await codeOf(openKeyBackup(V.file.replace("m=19456", "m=1024"), V.inputs.passphrase))).toBe("backup_corrupt");
    expect(await codeOf(openKeyBackup(V.file.replace("t=2", "t=1"), V.inputs.passphrase))).toBe("backup_corrupt");
    expect(await codeOf(openKeyBackup(V.file.replace("m=19456", "m=4194304"), V.inputs.passphrase))).toBe("backup_corrupt");
    expect(await codeOf(openKeyBackup(V.file.replace("securechat key backup v1", "securechat key backup v2"), V.inputs.passphrase))).toBe("backup_corrupt");
    expect(await codeOf(openKeyBackup(`${V.file}extra\n`, V.inputs.passphrase))).toBe("backup_corrupt");
    expect(await codeOf(openKeyBackup(V.file.replace(/salt=\S+/, "salt=AAAA"), V.inputs.passphrase))).toBe("backup_corrupt");
  }, ARGON2_TESTS_MS);

  test("a file sealed by its maker with a server that is no server address (a path that climbs out of the client home) is backup_corrupt: import never writes outside accounts/", async () => {
    const key = ed25519Generate();
    const p = { m: BACKUP_BOUNDS.mMin, t: BACKUP_BOUNDS.tMin, p: 1 };
    for (const server of ["../../escaped", "chat.example:7447/../..", "/tmp/x:7447"]) {
      const planted = await sealKeyBackup(key, "alice", server, V.inputs.passphrase, p);
      expect(await codeOf(openKeyBackup(planted, V.inputs.passphrase))).toBe("backup_corrupt");
    }
    // A real server address still opens.
    const fine = await openKeyBackup(await sealKeyBackup(key, "alice", "[::1]:7447", V.inputs.passphrase, p), V.inputs.passphrase);
    expect(fine.server).toBe("[::1]:7447");
  }, ARGON2_TESTS_MS);
});

describe("key export's file", () => {
  test("is created with mode 0600 and never replaces an existing file", () => {
    const dir = mkdtempSync(join(tmpdir(), "sc-backup-"));
    try {
      const path = join(dir, "alice.sckey");
      writeBackupFile(path, V.file);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(readFileSync(path, "utf8")).toBe(V.file);
      writeFileSync(join(dir, "other"), "keep me\n");
      expect(() => writeBackupFile(join(dir, "other"), V.file)).toThrow(expect.objectContaining({ code: "backup_exists" }));
      expect(readFileSync(join(dir, "other"), "utf8")).toBe("keep me\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
