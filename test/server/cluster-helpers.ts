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
import { type LogEvent, NO_PENALTIES, NO_QUOTAS } from "./helpers.ts";

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
