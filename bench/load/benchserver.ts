/**
 * The one configuration the load benchmarks run the real server with, in
 * its own process: flood control effectively off, every member allowed to
 * connect from 127.0.0.1 at once, a send buffer generous enough that a
 * receiver that falls behind is measured, not dropped. SIGTERM/SIGINT stop it.
 */
import { join } from "node:path";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import type { Journal } from "../../src/store/journal.ts";
import { silentLogger } from "../../src/log.ts";
import { ChatServer, type ServerOptions } from "../../src/server/server.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { gcOnSignal } from "./common.ts";

export type TranscriptMode = "none" | "always" | "batch" | "off";

/** The server options every load benchmark runs with, a single node's or a cluster node's (bench/load/node.ts). */
export const BENCH_SERVER_OPTIONS = {
  host: "127.0.0.1",
  port: 0,
  chat: { ...DEFAULT_CHAT, flood: { rate: 1e6, burst: 1e6 }, requests: { rate: 1e6, burst: 1e6 } },
  maxSendBuffer: 64 * 1024 * 1024,
  startups: { start: 1e9, rate: 0, full: 1e9 },
  penalties: { freeFailures: 1_000_000, baseMs: 1, maxMs: 1, forgetMs: 60_000, maxSources: 16 },
  // Every bench client is one address, often one user: no per-source or per-user quota.
  maxConnectionsPerAddress: 1e9,
  maxConnectionsPerUser: 1e9,
  logins: { rate: 1e9, burst: 1e9 },
  idleMs: 600_000,
} satisfies Partial<ServerOptions>;

/** SIGTERM/SIGINT run `stop` once, then exit (at the latest 2 s later). */
export function exitOnSignal(stop: () => Promise<unknown>): void {
  let stopping = false;
  const onSignal = (): void => {
    if (stopping) return;
    stopping = true;
    void stop().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref?.();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/**
 * `transcript`: "none" keeps history in memory only (the default, and what
 * the relay rows measure); otherwise the transcript is written as `serve`
 * writes it (DEFAULT_WRITER: checkpoints, rotation), with that --fsync.
 */
export async function startBenchServer(dataDir: string, transcript: TranscriptMode = "none"): Promise<ChatServer> {
  let journal: Journal | undefined;
  const hostKey = loadOrCreateHostKey(dataDir);
  if (transcript !== "none") {
    journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey: hostKey.key, fsync: transcript, version: "bench", history: DEFAULT_CHAT.history, log: silentLogger });
  }
  const server = await ChatServer.start({ ...BENCH_SERVER_OPTIONS, ...(journal ? { journal } : {}), dataDir }, hostKey);
  exitOnSignal(() => server.stop(500));
  // SIGUSR2: a full garbage collection, so a bench can tell memory held from
  // garbage not yet collected; with BENCH_HEAP_TYPES=1, object counts by type
  // and memory figures on stderr (for finding what a connection holds).
  gcOnSignal(() => {
    if (!process.env.BENCH_HEAP_TYPES) return;
    const m = process.memoryUsage();
    console.error(JSON.stringify(require("bun:jsc").heapStats().objectTypeCounts));
    console.error(JSON.stringify({ event: "gc", rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, connections: server.connections }));
  });
  return server;
}
