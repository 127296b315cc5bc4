/**
 * The securechat server as the load benchmark runs it, in its own process:
 * a fresh data directory, flood control effectively off, and N accounts with
 * one ticket each created directly in the store (no argon2id: only ticket
 * logins are used, so the password verifier is never read). The tickets are
 * written to --creds for the load generator; then one line {"port": P} on
 * stdout. SIGTERM/SIGINT stop the server.
 *
 *   bun run bench/load/server.ts --data DIR --users N --creds FILE
 */
import { writeFileSync } from "node:fs";
import { toHex } from "../../src/bytes.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { ChatServer } from "../../src/server/server.ts";
import { type BenchCred, emit, intArg, parseArgs, strArg } from "./common.ts";

const args = parseArgs(Bun.argv.slice(2));
const dataDir = strArg(args, "data");
const users = intArg(args, "users");
const credsPath = strArg(args, "creds");

const server = await ChatServer.start({
  dataDir,
  host: "127.0.0.1",
  port: 0,
  chat: { ...DEFAULT_CHAT, flood: { rate: 1e6, burst: 1e6 } },
  // Generous: a receiver that falls behind the relay is measured, not dropped.
  maxSendBuffer: 64 * 1024 * 1024,
  // Every member logs in from 127.0.0.1, many at once.
  startups: { start: 1e9, rate: 0, full: 1e9 },
  penalties: { freeFailures: 1_000_000, baseMs: 1, maxMs: 1, forgetMs: 60_000, maxSources: 16 },
  idleMs: 600_000,
});

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  void server.stop(500).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref?.();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const now = Date.now();
const creds: BenchCred[] = [];
server.store.db.transaction(() => {
  for (let i = 0; i < users; i++) {
    const user = `bench${String(i).padStart(4, "0")}`;
    const identity = ed25519Generate();
    if (!server.store.createAccount({ name: user, identityKey: identity.publicKey, verifier: "bench-no-password-logins", createdAt: now })) {
      throw new Error(`bench/load/server: account ${user} exists`);
    }
    const ticketKey = ed25519Generate();
    const { ticket } = server.accounts.issueTicket(user, ticketKey.publicKey, now);
    creds.push({ user, ticket: toHex(ticket), ticketKey: toHex(ticketKey.secretKey) });
  }
})();
writeFileSync(credsPath, JSON.stringify(creds));
emit({ port: server.port });
