/**
 * The known-answer vector of the key backup file (docs/PROTOCOL.md Appendix
 * A.7): one device key sealed by `sealKeyBackup` from fixed inputs, with
 * every intermediate value.
 *
 *   bun run scripts/gen-keybackup-vector.ts   → test/vectors/keybackup/backup.json
 *
 * The secret inputs are nothing-up-my-sleeve values:
 * SHA-256("securechat/1 test vector: key backup <name>"), truncated. The
 * argon2id cost is the least `key import` accepts (m = 19456 KiB, t = 2),
 * so the test stays quick; the format is the same at any cost.
 * test/client/keybackup.test.ts rebuilds it in memory and compares.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toHex, utf8 } from "../src/bytes.ts";
import { argon2idKey, ed25519Generate, sha256 } from "../src/crypto/index.ts";
import { sealKeyBackup } from "../src/client/keybackup.ts";

export const VECTOR_PATH = join("test", "vectors", "keybackup", "backup.json");

const fixed = (name: string, n = 32): Uint8Array => sha256(utf8(`securechat/1 test vector: key backup ${name}`)).slice(0, n);

export async function buildKeyBackupVector() {
  const seed = fixed("device seed");
  const key = ed25519Generate(seed.slice());
  const salt = fixed("salt", 16);
  const nonce = fixed("nonce", 24);
  const params = { m: 19456, t: 2, p: 1 };
  const passphrase = "a backup passphrase — ünïcödé";
  const user = "alice";
  const server = "chat.example:7447";
  const file = await sealKeyBackup(key, user, server, passphrase, params, salt, nonce);
  const header = file.slice(0, file.indexOf("sealed "));
  const k = await argon2idKey(utf8(passphrase.normalize("NFKC")), salt, params);
  return {
    inputs: { seed: toHex(seed), public_key: toHex(key.publicKey), salt: toHex(salt), nonce: toHex(nonce), argon2id: params, passphrase, user, server },
    key: toHex(k),
    associated_data: header,
    file,
  };
}

if (import.meta.main) {
  const v = await buildKeyBackupVector();
  mkdirSync(join("test", "vectors", "keybackup"), { recursive: true });
  writeFileSync(VECTOR_PATH, `${JSON.stringify(v, null, 2)}\n`);
  console.log(`wrote ${VECTOR_PATH}`);
}
