/**
 * The cluster section of `bun run bench` (`--only cluster`): the 2-node
 * cluster against the single node, in the same run, at the latency rows'
 * offered load (open loop, N members in one room, 10% of them sending).
 *
 * Real engines from test/engines.ts, started once for the section:
 * PostgreSQL with fsync and synchronous_commit on (an ack means durable) and
 * Redis. Setups, each on fresh state (its own database, Redis flushed):
 *
 *   node (files)    the single node writing its transcript as `serve` does
 *                   (bench/load/server.ts --transcript batch: acks wait for
 *                   the group fsync), the engines idle
 *   1-node cluster  one `ClusterNode` (bench/load/node.ts) on PostgreSQL and
 *                   Redis: the core and the only edge in one process
 *   2-node cluster  two nodes; the first started is the core; members (and
 *                   so senders) alternate between the two nodes, so half of
 *                   every room's deliveries cross from the core to the other
 *                   node over Redis
 *
 * For each: p50/p99/p99.9 send → receive and p50/p99 say → ack latency
 * (bench/load/client.ts), and the CPU-seconds per million deliveries of each
 * node process, of redis-server, and of every postgres process (the
 * postmaster and its backends: test/engines.ts cpuSeconds), read from
 * /proc/PID/stat at the start and end of the window.
 *
 * Never fails on speed; throws only if a measurement could not be made.
 */
import { RedisClient, SQL } from "bun";
import os from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { requireEngines, startPostgres, startRedis, type PostgresHandle, type RedisHandle } from "../test/engines.ts";
import { IMPLS, type LatencyConfig, type LatencyResult, Lines, type Measured, cpuSeconds, latencyWindow, median, spawnScript, startServer, withScratch } from "./load.ts";

export const SETUPS = ["node (files)", "1-node cluster", "2-node cluster"] as const;
export type Setup = (typeof SETUPS)[number];

export interface ClusterConfig extends LatencyConfig {
  /** Room sizes (the latency rows'). */
  sizes: number[];
}

export interface ClusterRun {
  setup: Setup;
  n: number;
  latency: Omit<LatencyResult, "impl" | "serverCores" | "serverCpuPerMillion">;
  /** CPU-seconds per million deliveries, by process group ("node 1 (core)", "node 2", "redis", "postgres", "nodes", "all"). */
  cpuPerMillion: Record<string, number>;
  cores: Record<string, number>;
}

export interface ClusterResult {
  runs: ClusterRun[];
  postgres: string;
  redis: string;
  /** The machine's 1-minute load average when the section started and ended (other jobs share the cores). */
  load: [number, number];
}

const NODE_START_MS = 120_000;

/** Starts a cluster node launcher and waits for its {"port"} line. */
async function startNode(env: Record<string, string>, args: string[], children: Subprocess[], what: string): Promise<{ pid: number; port: number; core: boolean }> {
  const p = spawnScript(["node.ts", ...args], env);
  children.push(p);
  const hello = await new Lines(p.stdout).next(what, NODE_START_MS);
  if (typeof hello.port !== "number") throw new Error(`bench/cluster: ${what}: ${JSON.stringify(hello).slice(0, 200)}`);
  cpuSeconds(p.pid);
  return { pid: p.pid, port: hello.port, core: hello.core === true };
}

/** A fresh database on the section's PostgreSQL, and its URL. */
async function freshDatabase(pg: PostgresHandle, name: string): Promise<string> {
  const admin = new SQL(pg.url);
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  const url = new URL(pg.url);
  url.pathname = `/${name}`;
  return url.toString();
}

async function flushRedis(redis: RedisHandle): Promise<void> {
  const r = new RedisClient(redis.url);
  try {
    await r.send("FLUSHALL", []);
  } finally {
    r.close();
  }
}

async function runSetup(setup: Setup, n: number, round: number, cfg: ClusterConfig, pg: PostgresHandle, redis: RedisHandle): Promise<ClusterRun> {
  const engines: Measured[] = [
    { name: "redis", cpuSeconds: () => redis.cpuSeconds() },
    { name: "postgres", cpuSeconds: () => pg.cpuSeconds() },
  ];
  return withScratch("cluster", async (tmp, children) => {
    const credsPath = join(tmp, "creds.json");
    let nodes: Measured[];
    let ports: number[];
    let generator: string[];
    if (setup === "node (files)") {
      const impl = IMPLS.find((i) => i.name === "sc+transcript")!;
      const { server, gen } = await startServer(impl, { tmp, users: n, credsPath }, children);
      nodes = [{ name: "node 1", cpuSeconds: () => cpuSeconds(server.pid) }];
      ports = [gen.port];
      generator = impl.generator(gen);
    } else {
      await flushRedis(redis);
      const env = { SECURECHAT_DATABASE_URL: await freshDatabase(pg, `bench_${setup === "1-node cluster" ? 1 : 2}_${n}_${round}`), SECURECHAT_REDIS_URL: redis.url };
      const hostKey = ["--host-key", join(tmp, "host_key")];
      const first = await startNode(env, [...hostKey, "--users", String(n), "--creds", credsPath], children, "the first node's port");
      if (!first.core) throw new Error("bench/cluster: the first node did not become the core");
      const started = [first];
      if (setup === "2-node cluster") started.push(await startNode(env, hostKey, children, "the second node's port"));
      nodes = started.map((s, i) => ({ name: `node ${i + 1}${s.core ? " (core)" : ""}`, cpuSeconds: () => cpuSeconds(s.pid) }));
      ports = started.map((s) => s.port);
      generator = ["client.ts", "--mode", "secure", "--creds", credsPath];
    }
    const w = await latencyWindow(setup, generator, ports, n, cfg, [...nodes, ...engines], children);
    // The sums from the same readings (a second reading would differ by a clock tick).
    const sum = (fig: Record<string, number>, names: string[]): number => names.reduce((t, k) => t + fig[k]!, 0);
    const nodeNames = nodes.map((m) => m.name);
    const allNames = [...nodeNames, ...engines.map((m) => m.name)];
    return {
      setup,
      n,
      latency: w.result,
      cpuPerMillion: { ...w.cpuPerMillion, nodes: sum(w.cpuPerMillion, nodeNames), all: sum(w.cpuPerMillion, allNames) },
      cores: { ...w.cores, nodes: sum(w.cores, nodeNames), all: sum(w.cores, allNames) },
    };
  });
}

/** Runs every setup `runs` times, interleaved (one of each per round). */
export async function runCluster(cfg: ClusterConfig, runs: number, progress: (s: string) => void, onError: (what: string, e: unknown) => void): Promise<ClusterResult | null> {
  if (!requireEngines("postgres", "redis")) return null;
  const loadBefore = os.loadavg()[0]!;
  const pg = await startPostgres({ fsync: true });
  let redis: RedisHandle | null = null;
  try {
    redis = await startRedis();
    const versions = await engineVersions(pg, redis);
    const out: ClusterRun[] = [];
    for (let r = 1; r <= runs; r++) {
      for (const n of cfg.sizes) for (const setup of SETUPS) {
        try {
          const run = await runSetup(setup, n, r, cfg, pg, redis);
          out.push(run);
          const l = run.latency;
          progress(
            `cluster ${setup} N=${n} @ ${cfg.rate}/s: p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} ms, ack p50 ${l.ackP50.toFixed(2)} p99 ${l.ackP99.toFixed(2)} ms, ${Math.round(l.rate)} deliveries/s, all CPU-s/1M ${run.cpuPerMillion.all!.toFixed(2)}${l.capped || l.missing ? ", CAPPED" : ""}${runs > 1 ? ` (run ${r}/${runs})` : ""}`,
          );
        } catch (e) {
          onError(`${setup} N=${n}`, e);
        }
      }
    }
    return { runs: out, ...versions, load: [loadBefore, os.loadavg()[0]!] };
  } finally {
    await redis?.stop();
    await pg.stop();
  }
}

async function engineVersions(pg: PostgresHandle, redis: RedisHandle): Promise<{ postgres: string; redis: string }> {
  const sql = new SQL(pg.url);
  const r = new RedisClient(redis.url);
  try {
    const [row] = await sql`SHOW server_version`;
    const info = String(await r.send("INFO", ["server"]));
    return { postgres: String(row.server_version), redis: /redis_version:(\S+)/.exec(info)?.[1] ?? "?" };
  } finally {
    await sql.close();
    r.close();
  }
}

/** The section's table: one column per setup, medians over runs. */
export function clusterTable(res: ClusterResult, cfg: ClusterConfig, fmt: (x: number | null | undefined, digits?: number) => string): string[] {
  const out: string[] = [];
  for (const n of cfg.sizes) out.push(...sizeTable(res, n, cfg, fmt), "");
  const capped = res.runs.filter((r) => r.latency.capped || r.latency.missing > 0 || r.latency.ackMissing > 0);
  const coreName = Object.keys(res.runs.find((r) => r.setup === "2-node cluster")?.cpuPerMillion ?? {}).find((k) => k.includes("(core)")) ?? "node 1";
  return [
    `The cluster (--only cluster): N members in one room, open loop at ${fmt(cfg.rate)} deliveries/s, ${cfg.seconds} s window after ${cfg.warmupMs / 1000} s, PostgreSQL ${res.postgres} (fsync and synchronous_commit on), Redis ${res.redis}; load average ${fmt(res.load[0], 1)} at the start, ${fmt(res.load[1], 1)} at the end`,
    "",
    ...out,
    "node (files): the single node writing its transcript as serve does (--fsync batch: an ack waits for the group fsync); the engines run idle beside it.",
    `1-node cluster: one cluster node (core and edge) on PostgreSQL and Redis. 2-node cluster: the core is ${coreName}; members alternate between the nodes.`,
    "say → ack: from a say's scheduled send to its ack (on a cluster the ack waits for the entry's PostgreSQL commit).",
    ...(capped.length > 0 ? [`cluster: could not keep up in ${capped.map((r) => `${r.setup} N=${r.n} (${r.latency.capped ? "outstanding cap hit, " : ""}${r.latency.missing} deliveries and ${r.latency.ackMissing} acks missing, counted at their lower bound)`).join("; ")}`] : []),
  ];
}

function sizeTable(res: ClusterResult, n: number, cfg: ClusterConfig, fmt: (x: number | null | undefined, digits?: number) => string): string[] {
  const by = (s: Setup) => res.runs.filter((r) => r.setup === s && r.n === n);
  const med = (s: Setup, f: (r: ClusterRun) => number | undefined): number | null => {
    const xs = by(s).map(f).filter((x): x is number => typeof x === "number" && Number.isFinite(x));
    return xs.length > 0 ? median(xs) : null;
  };
  const cpuKeys = (s: Setup): string[] => Object.keys(by(s)[0]?.cpuPerMillion ?? {});
  const nodeName = (s: Setup, i: number): string | undefined => cpuKeys(s).filter((k) => k.startsWith("node "))[i];
  const rows: [string, number, (s: Setup) => number | null][] = [
    ["p50 send → receive ms", 2, (s) => med(s, (r) => r.latency.p50)],
    ["p99 send → receive ms", 2, (s) => med(s, (r) => r.latency.p99)],
    ["p99.9 send → receive ms", 2, (s) => med(s, (r) => r.latency.p999)],
    ["p50 say → ack ms", 2, (s) => med(s, (r) => r.latency.ackP50)],
    ["p99 say → ack ms", 2, (s) => med(s, (r) => r.latency.ackP99)],
    ["achieved deliveries/s", 0, (s) => med(s, (r) => r.latency.rate)],
    ["CPU-s per 1M deliveries: node 1", 2, (s) => med(s, (r) => r.cpuPerMillion[nodeName(s, 0) ?? ""])],
    ["CPU-s per 1M deliveries: node 2", 2, (s) => med(s, (r) => r.cpuPerMillion[nodeName(s, 1) ?? ""])],
    ["CPU-s per 1M deliveries: all nodes", 2, (s) => med(s, (r) => r.cpuPerMillion.nodes)],
    ["CPU-s per 1M deliveries: redis-server", 2, (s) => med(s, (r) => r.cpuPerMillion.redis)],
    ["CPU-s per 1M deliveries: postgres (all processes)", 2, (s) => med(s, (r) => r.cpuPerMillion.postgres)],
    ["CPU-s per 1M deliveries: total", 2, (s) => med(s, (r) => r.cpuPerMillion.all)],
    ["cores busy: total", 2, (s) => med(s, (r) => r.cores.all)],
    ["load generator cores", 2, (s) => med(s, (r) => r.latency.generatorCores)],
  ];
  const runs = Math.max(...SETUPS.map((s) => by(s).length));
  const header = [`N=${n}, ${runs === 1 ? "one run" : `medians of ${runs} runs`}`, ...SETUPS, "2-node/files", "2-node/1-node"];
  const body = rows.map(([metric, digits, f]) => {
    const v = SETUPS.map(f);
    const ratio = (a: number | null, b: number | null): string => (a === null || b === null || b === 0 ? "-" : `${fmt(a / b, 2)}×`);
    return [metric, ...v.map((x) => fmt(x, digits)), ratio(v[2]!, v[0]!), ratio(v[2]!, v[1]!)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)];
}
