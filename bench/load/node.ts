/**
 * A cluster node as the load benchmark runs it (bench/cluster.ts), in its
 * own process: `ClusterNode` (what `serve --database --redis` runs) with the
 * load benchmarks' server options (benchserver.ts BENCH_SERVER_OPTIONS:
 * flood control effectively off) and the transcript writer's defaults, on
 * the engines named by SECURECHAT_DATABASE_URL and SECURECHAT_REDIS_URL
 * (the environment, as `serve` prefers: the passwords stay out of argv).
 *
 *   bun run bench/load/node.ts --host-key FILE [--users N --creds FILE]
 *
 * Every node of one cluster is given the same --host-key (made by the first).
 * With --users, once the node is up, N accounts with one ticket each are
 * created in PostgreSQL (no argon2id: only ticket logins are used) and the
 * tickets written to --creds for the load generator. The node prints one
 * line {"port": P, "core": bool} once it knows the cluster's core (before
 * that a login is answered server_busy). SIGTERM/SIGINT stop it.
 */
import { writeFileSync } from "node:fs";
import { toHex } from "../../src/bytes.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { dirname } from "node:path";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { ClusterNode } from "../../src/server/node.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { BENCH_SERVER_OPTIONS, exitOnSignal } from "./benchserver.ts";
import { type BenchCred, emit, intArg, parseArgs, strArg } from "./common.ts";

const args = parseArgs(Bun.argv.slice(2));
const hostKeyFile = strArg(args, "host-key");
const users = intArg(args, "users", 0);
const databaseUrl = process.env.SECURECHAT_DATABASE_URL;
const redisUrl = process.env.SECURECHAT_REDIS_URL;
if (!databaseUrl || !redisUrl) throw new Error("bench/load/node: SECURECHAT_DATABASE_URL and SECURECHAT_REDIS_URL must be set");

const hostKey = loadOrCreateHostKey(dirname(hostKeyFile), hostKeyFile);
const node = await ClusterNode.start({ databaseUrl, redisUrl, server: BENCH_SERVER_OPTIONS, journal: { ...DEFAULT_WRITER, version: "bench", history: DEFAULT_CHAT.history } }, hostKey);
exitOnSignal(() => node.stop());

if (users > 0) {
  const accounts = node.edge.accounts;
  const now = Date.now();
  const creds = await Promise.all(
    Array.from({ length: users }, async (_, i): Promise<BenchCred> => {
      const user = `bench${String(i).padStart(4, "0")}`;
      const identity = ed25519Generate();
      if (!(await accounts.store.createAccount({ name: user, identityKey: identity.publicKey, verifier: "bench-no-password-logins", createdAt: now }))) {
        throw new Error(`bench/load/node: account ${user} exists`);
      }
      const ticketKey = ed25519Generate();
      const { ticket } = await accounts.issueTicket(user, ticketKey.publicKey, now, identity.publicKey, "127.0.0.1");
      return { user, ticket: toHex(ticket), ticketKey: toHex(ticketKey.secretKey) };
    }),
  );
  writeFileSync(strArg(args, "creds"), JSON.stringify(creds));
}
await node.edge.link.whenAvailable();
emit({ port: node.port, core: node.isCore });
