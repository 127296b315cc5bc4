/**
 * Options for a cluster node in a test process (ClusterNode.start): the
 * engines' URLs, a short writer lease and quick elections, so a takeover
 * or a new node's start is seconds, not the production bounds.
 */
import type { NodeOptions } from "../../src/server/node.ts";
import type { ServerOptions } from "../../src/server/server.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";

export function testNodeOptions(engines: { database: string; redis: string }, node: string, server: Partial<ServerOptions>, leaseMs = 2000): NodeOptions {
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
