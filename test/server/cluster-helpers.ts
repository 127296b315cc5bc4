/**
 * Cluster nodes in the test's process on the real engines (test/engines.ts),
 * with a short writer lease and quick elections (a takeover or a new node's
 * start is seconds, not the production bounds), no penalties, quotas or
 * flood limits, and their log events collected tagged with the node's name.
 */
import { ed25519Generate } from "../../src/crypto/index.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { ClusterNode, type NodeOptions } from "../../src/server/node.ts";
import type { ServerOptions } from "../../src/server/server.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import type { PostgresHandle, RedisHandle } from "../engines.ts";
import type { Cred } from "./chat-helpers.ts";
import { type LogEvent, NO_PENALTIES, NO_QUOTAS, type RawSession, rawSession, ticketLogin } from "./helpers.ts";

export const HOST_KEY = { key: ed25519Generate(), created: false };
export const LEASE_MS = 2000;
const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };

/** Options for a cluster node: the engines' URLs, the short lease and quick elections, `server` as given. */
export function testNodeOptions(engines: { database: string; redis: string }, node: string, server: Partial<ServerOptions>, leaseMs = LEASE_MS): NodeOptions {
  return {
    databaseUrl: engines.database,
    redisUrl: engines.redis,
    node,
    server,
    journal: { ...DEFAULT_WRITER, fsync: "always", version: "test", history: 50 },
    leaseMs,
    renewMs: 400,
    electMs: 250,
    silenceMs: 3000,
  };
}

/** A node with no penalties, quotas or flood limits, its log events pushed to `events`. */
export async function startClusterNode(
  engines: { pg: PostgresHandle; redis: RedisHandle },
  name: string,
  events: LogEvent[],
  server: NodeOptions["server"] = {},
  more: Partial<Pick<NodeOptions, "witnesses" | "journal">> = {},
): Promise<ClusterNode> {
  const options = testNodeOptions({ database: engines.pg.url, redis: engines.redis.url }, name, {
    port: 0,
    penalties: NO_PENALTIES,
    ...NO_QUOTAS,
    chat: { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD },
    log: {
      info: (event, fields) => void events.push({ level: "info", event, fields: { node: name, ...fields } }),
      warn: (event, fields) => void events.push({ level: "warn", event, fields: { node: name, ...fields } }),
    },
    ...server,
  });
  return ClusterNode.start({ ...options, ...more }, HOST_KEY);
}

/** A ticket login to `port`, retried while the node knows no core (server_busy); the session is added to `open`. */
export async function clusterLogin(port: number, c: Cred, open: RawSession[]): Promise<RawSession> {
  for (const deadline = Date.now() + 30_000; ; ) {
    const s = await rawSession(port);
    const o = await ticketLogin(s, c.user, c.ticket, c.ticketKey);
    if (o.type === "welcome") {
      open.push(s);
      return s;
    }
    s.close();
    if (o.code !== "server_busy" || Date.now() > deadline) throw new Error(`test: login ${c.user}: ${o.code} ${o.message}`);
    await Bun.sleep(200);
  }
}
