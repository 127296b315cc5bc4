/**
 * Cluster nodes in the test's process on the real engines (test/engines.ts),
 * with short leases and election periods, no penalties, quotas or flood
 * limits, and their log events collected tagged with the node's name.
 */
import { ed25519Generate } from "../../src/crypto/index.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { ClusterNode, type NodeOptions } from "../../src/server/node.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import type { PostgresHandle, RedisHandle } from "../engines.ts";
import type { Cred } from "./chat-helpers.ts";
import { type LogEvent, NO_PENALTIES, NO_QUOTAS, type RawSession, rawSession, ticketLogin } from "./helpers.ts";

export const HOST_KEY = { key: ed25519Generate(), created: false };
export const LEASE_MS = 2000;
const NO_FLOOD = { rate: 1_000_000, burst: 1_000_000 };

export async function startClusterNode(
  engines: { pg: PostgresHandle; redis: RedisHandle },
  name: string,
  events: LogEvent[],
  server: NodeOptions["server"] = {},
  more: Partial<Pick<NodeOptions, "witnesses" | "journal">> = {},
): Promise<ClusterNode> {
  return ClusterNode.start(
    {
      databaseUrl: engines.pg.url,
      redisUrl: engines.redis.url,
      node: name,
      server: {
        port: 0,
        penalties: NO_PENALTIES,
        ...NO_QUOTAS,
        chat: { ...DEFAULT_CHAT, flood: NO_FLOOD, requests: NO_FLOOD },
        log: {
          info: (event, fields) => void events.push({ level: "info", event, fields: { node: name, ...fields } }),
          warn: (event, fields) => void events.push({ level: "warn", event, fields: { node: name, ...fields } }),
        },
        ...server,
      },
      journal: { ...DEFAULT_WRITER, fsync: "always", version: "test", history: 50 },
      leaseMs: LEASE_MS,
      renewMs: 400,
      electMs: 250,
      silenceMs: 3000,
      ...more,
    },
    HOST_KEY,
  );
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
