/**
 * The securechat server as the load benchmark runs it, in its own process:
 * a fresh data directory, flood control effectively off, and N accounts with
 * one ticket each created directly in the store (no argon2id: only ticket
 * logins are used, so the password verifier is never read). The tickets are
 * written to --creds for the load generator; then one line {"port": P} on
 * stdout. SIGTERM/SIGINT stop the server.
 *
 *   bun run bench/load/server.ts --data DIR --users N --creds FILE [--transcript always|batch|off]
 *
 * --transcript writes the transcript as `serve` does, with that --fsync
 * policy (acks wait for it); without it, history is kept in memory only.
 */
import { writeFileSync } from "node:fs";
import { toHex } from "../../src/bytes.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { type TranscriptMode, startBenchServer } from "./benchserver.ts";
import { type BenchCred, emit, intArg, parseArgs, strArg } from "./common.ts";

const args = parseArgs(Bun.argv.slice(2));
const dataDir = strArg(args, "data");
const users = intArg(args, "users");
const credsPath = strArg(args, "creds");
const transcript = args.get("transcript") ?? "none";
if (!["none", "always", "batch", "off"].includes(transcript)) throw new Error(`bench/load/server: --transcript must be always, batch or off, not ${transcript}`);

const server = await startBenchServer(dataDir, transcript as TranscriptMode);

const now = Date.now();
const creds: BenchCred[] = [];
const issued: Promise<void>[] = [];
server.store.db.transaction(() => {
  for (let i = 0; i < users; i++) {
    const user = `bench${String(i).padStart(4, "0")}`;
    const identity = ed25519Generate();
    if (!server.store.createAccount({ name: user, identityKey: identity.publicKey, verifier: "bench-no-password-logins", createdAt: now })) {
      throw new Error(`bench/load/server: account ${user} exists`);
    }
    const ticketKey = ed25519Generate();
    // securechat.db stores the ticket at the call, inside this transaction; the promise only hands it over.
    issued.push(server.accounts.issueTicket(user, ticketKey.publicKey, now, identity.publicKey, "127.0.0.1").then(({ ticket }) => void creds.push({ user, ticket: toHex(ticket), ticketKey: toHex(ticketKey.secretKey) })));
  }
})();
await Promise.all(issued);
writeFileSync(credsPath, JSON.stringify(creds));
emit({ port: server.port });
