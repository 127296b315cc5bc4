/** An account for a benchmark's client, made in the store before the server starts. */
import { toHex } from "../../src/bytes.ts";
import { ed25519Generate, randomBytes, sha256 } from "../../src/crypto/index.ts";
import { Store } from "../../src/store/db.ts";
import type { BenchCred } from "../load/common.ts";

/** The account "bench" with one ticket, valid for `ttlMs` (no password logins). */
export function seedAccount(dataDir: string, ttlMs = 86_400_000): BenchCred {
  const store = new Store(dataDir);
  const now = Date.now();
  const user = "bench";
  store.createAccount({ name: user, identityKey: ed25519Generate().publicKey, verifier: "bench-no-password-logins", createdAt: now });
  const key = ed25519Generate();
  const ticket = randomBytes(32);
  store.addTicket(sha256(ticket), { user, key: key.publicKey, expiresAt: now + ttlMs }, now);
  store.close();
  return { user, ticket: toHex(ticket), ticketKey: toHex(key.secretKey) };
}
