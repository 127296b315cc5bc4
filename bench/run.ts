/**
 * The securechat benchmark: one table, every securechat figure next to
 * baselines measured in the same run (the machine is shared and noisy, so
 * the ratios are the headline). The machinery is bench/load.ts; the
 * microbenchmark (handshake, records, channel) is `bun run bench:micro`.
 *
 *   bun run bench            quick (~2 min on 2 cores): N = 10, 100;
 *                            latency at N = 100; 500 idle connections; 1 run;
 *                            abuse phases of 3 s
 *   bun run bench --full     N = 10, 100, 500; latency at N = 100 and 500;
 *                            2,000 idle connections; longer samples; medians
 *                            of 3 runs, baselines interleaved with securechat
 *   --json                   one JSON object on stdout (no progress on stderr)
 *   --only LIST              throughput,latency,idle,logins,cold,abuse,cluster
 *                            (default: all)
 *   --impls LIST             e.g. bare,securechat (default: every one available;
 *                            sc+transcript and stock ngircd only with --full)
 *   --runs K, --conns C, --rate D    override the mode's runs, idle connections,
 *                            offered deliveries/s of the latency rows
 *   --server-cmd "CMD"       the abuse section's server instead of
 *                            `bun src/main.ts serve` (e.g. an older checkout)
 *
 * Figures: delivered messages/s (closed loop); server CPU-seconds per million
 * deliveries, and deliveries per server CPU-second (the figure that cancels
 * out the load generator sharing the cores); p50/p99/p99.9 send → receive
 * latency at a fixed offered load; server RSS per idle connection; ticket
 * and password logins/s; cold start of dist/securechat --help; and (abuse,
 * bench/abuse.ts) what one hostile logged-in client costs `securechat serve`
 * with its default flags: a bystander's ping latency, server CPU and RSS,
 * transcript growth, against the bystander alone in the same run; and
 * (cluster, bench/cluster.ts) the 2-node cluster on real PostgreSQL and
 * Redis against the single node: latency, ack latency and CPU per delivery
 * of each node, Redis and PostgreSQL at the latency rows' offered load.
 *
 * Never fails on speed: exits 0 unless a securechat measurement could not be
 * made at all (a broken server), or the arguments are wrong.
 */
import os from "node:os";
import { type AbuseConfig, type AbuseResult, DEFAULT_SERVER_CMD, abuseTable, runAbuse } from "./abuse.ts";
import { type ClusterResult, clusterTable, runCluster } from "./cluster.ts";
import {
  type ColdStartResult,
  IMPLS,
  type IdleResult,
  type Impl,
  type LatencyResult,
  type LoginResult,
  SUBJECT,
  type ThroughputResult,
  median,
  runColdStart,
  runIdle,
  runLatency,
  runLogins,
  runThroughput,
  runTlsHandshakes,
} from "./load.ts";

/** For bench/channel.ts, bench/handshake.ts and bench/records.ts (the microbenchmark's sections). */
export type { Section } from "./micro.ts";

const PARTS = ["throughput", "latency", "idle", "logins", "cold", "abuse", "cluster"] as const;
type Part = (typeof PARTS)[number];
const USAGE = `usage: bun run bench [--quick | --full] [--json] [--only ${PARTS.join(",")}] [--impls ${IMPLS.map((i) => i.name).join(",")}] [--runs K] [--conns C] [--rate D] [--server-cmd "CMD"]`;

function usage(why: string): never {
  console.error(`${USAGE}\n(${why})`);
  process.exit(2);
}

// ---------------------------------------------------------------------------
// Arguments and configuration

let full = false;
let json = false;
let only: Set<Part> = new Set(PARTS);
let implFilter: Set<string> | null = null;
const overrides = new Map<string, number>();
let serverCmd: string[] = DEFAULT_SERVER_CMD;
{
  const raw = Bun.argv.slice(2);
  for (let i = 0; i < raw.length; i++) {
    const a = raw[i]!;
    if (a === "--quick") full = false;
    else if (a === "--full") full = true;
    else if (a === "--json") json = true;
    else if (a === "--only" || a === "--impls") {
      const v = raw[++i];
      if (v === undefined) usage(`${a} needs a list`);
      const list = v.split(",").filter(Boolean);
      if (a === "--only") {
        for (const p of list) if (!(PARTS as readonly string[]).includes(p)) usage(`unknown part ${p}`);
        only = new Set(list as Part[]);
      } else {
        for (const p of list) if (!IMPLS.some((impl) => impl.name === p)) usage(`unknown impl ${p}`);
        implFilter = new Set(list);
      }
    } else if (a === "--runs" || a === "--conns" || a === "--rate") {
      const v = Number(raw[++i]);
      if (!Number.isInteger(v) || v <= 0) usage(`${a} needs a positive integer`);
      overrides.set(a, v);
    } else if (a === "--server-cmd") {
      const v = raw[++i];
      if (v === undefined || v.trim() === "") usage("--server-cmd needs a command");
      serverCmd = v.trim().split(/\s+/);
    } else usage(`unknown argument ${a}`);
  }
}

const CONFIG = full
  ? {
      mode: "full",
      runs: 3,
      throughput: { sizes: [10, 100, 500], warmupMs: 1500, sampleMs: 3000, samples: 3, window: 32 },
      latency: { sizes: [100, 500], rate: 50_000, warmupMs: 2000, seconds: 5, drainMs: 1000 },
      idle: { warm: 200, conns: 2000, rssReadings: 3, rssGapMs: 1000 },
      logins: { warmupMs: 1000, seconds: 5, concurrency: 16 },
      coldRuns: 21,
      abuse: { seconds: 10, maxSeconds: 30, intervalMs: 250, rssCapMiB: 2048, messages: 50, textBytes: 4096, joins: 2200, histories: 1400, relogin: true } satisfies AbuseConfig,
      cluster: { sizes: [100, 500], rate: 50_000, warmupMs: 2000, seconds: 5, drainMs: 1000 },
    }
  : {
      mode: "quick",
      runs: 1,
      throughput: { sizes: [10, 100], warmupMs: 500, sampleMs: 1000, samples: 3, window: 32 },
      latency: { sizes: [100], rate: 50_000, warmupMs: 1000, seconds: 3, drainMs: 500 },
      idle: { warm: 100, conns: 500, rssReadings: 3, rssGapMs: 500 },
      logins: { warmupMs: 500, seconds: 2, concurrency: 16 },
      coldRuns: 5,
      abuse: { seconds: 3, maxSeconds: 10, intervalMs: 250, rssCapMiB: 2048, messages: 50, textBytes: 4096, joins: 2200, histories: 1400, relogin: false } satisfies AbuseConfig,
      cluster: { sizes: [100], rate: 50_000, warmupMs: 1000, seconds: 3, drainMs: 500 },
    };
CONFIG.runs = overrides.get("--runs") ?? CONFIG.runs;
CONFIG.idle.conns = overrides.get("--conns") ?? CONFIG.idle.conns;
CONFIG.latency.rate = overrides.get("--rate") ?? CONFIG.latency.rate;
CONFIG.cluster.rate = overrides.get("--rate") ?? CONFIG.cluster.rate;

const machine = { cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, bun: Bun.version, platform: `${process.platform}-${process.arch}` };
const started = performance.now();
const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const progress = (s: string): void => {
  if (!json) console.error(`[${elapsed()}] ${s}`);
};

const implStatus = IMPLS.map((impl) => ({
  impl,
  reason: implFilter ? (implFilter.has(impl.name) ? impl.unavailable() : "not selected (--impls)") : impl.fullOnly && !full ? "--full only" : impl.unavailable(),
}));
const impls: Impl[] = implStatus.filter((s) => s.reason === null).map((s) => s.impl);
const subject = impls.find((i) => i.name === SUBJECT);
const baselines = impls.filter((i) => i.name !== SUBJECT);

const errors: { what: string; impl: string; error: string }[] = [];
async function attempt<T>(what: string, impl: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    errors.push({ what, impl, error });
    progress(`  ${what} ${impl}: FAILED: ${error}`);
    return null;
  }
}

// ---------------------------------------------------------------------------
// Measure: each part, `runs` rounds, implementations interleaved within a round

const notes: string[] = [];
const fmt = (x: number | null | undefined, digits = 0): string =>
  x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

const throughput = new Map<string, ThroughputResult[]>(); // key impl|n
const latency = new Map<string, LatencyResult[]>();
const idle = new Map<string, IdleResult[]>();
const logins = new Map<string, LoginResult[]>(); // ticket, password, tls
let cold: ColdStartResult | null = null;
let abuse: AbuseResult | null = null;
let cluster: ClusterResult | null = null;
const push = <T>(m: Map<string, T[]>, key: string, v: T | null): void => {
  if (v !== null) m.set(key, [...(m.get(key) ?? []), v]);
};

for (let r = 1; r <= CONFIG.runs; r++) {
  const round = CONFIG.runs > 1 ? ` (run ${r}/${CONFIG.runs})` : "";
  if (only.has("throughput")) {
    for (const n of CONFIG.throughput.sizes) {
      for (const impl of impls) {
        const res = await attempt(`throughput N=${n}`, impl.name, () => runThroughput(impl, n, CONFIG.throughput));
        push(throughput, `${impl.name}|${n}`, res);
        if (res) progress(`throughput N=${n} ${impl.name}: ${fmt(res.deliveriesPerSec)} deliveries/s, ${fmt(res.deliveriesPerServerCpuSec)} per server CPU-s${round}`);
      }
    }
  }
  if (only.has("latency")) {
    for (const n of CONFIG.latency.sizes) {
      for (const impl of impls) {
        const res = await attempt(`latency N=${n}`, impl.name, () => runLatency(impl, n, CONFIG.latency));
        push(latency, `${impl.name}|${n}`, res);
        if (res) progress(`latency N=${n} @ ${fmt(CONFIG.latency.rate)}/s ${impl.name}: p50 ${fmt(res.p50, 2)} p99 ${fmt(res.p99, 2)} p99.9 ${fmt(res.p999, 2)} ms, ${fmt(res.rate)} deliveries/s${res.capped ? ", CAPPED" : ""}${round}`);
      }
    }
  }
  if (only.has("idle")) {
    for (const impl of impls) {
      if (!impl.idle) continue;
      const res = await attempt(`idle ${CONFIG.idle.conns}`, impl.name, () => runIdle(impl, CONFIG.idle));
      push(idle, impl.name, res);
      if (res) progress(`idle ${impl.name}: ${fmt(res.kibPerConnGc, 2)} KiB per connection after GC, ${fmt(res.kibPerConn, 2)} before (${res.connected}/${res.conns})${round}`);
    }
  }
  if (only.has("logins")) {
    const tls = impls.find((i) => i.name === "tls");
    if (tls) {
      const res = await attempt("TLS handshakes", tls.name, () => runTlsHandshakes(tls, CONFIG.logins));
      push(logins, "tls", res);
      if (res) progress(`TLS handshakes: ${fmt(res.loginsPerSec, 1)}/s${round}`);
    }
    if (subject) {
      const res = await attempt("logins", SUBJECT, () => runLogins(CONFIG.logins));
      for (const l of res ?? []) {
        push(logins, l.kind, l);
        progress(`${l.kind} logins: ${fmt(l.loginsPerSec, 1)}/s${round}`);
      }
    }
  }
}
if (only.has("cold")) {
  cold = await attempt("cold start", SUBJECT, () => runColdStart(CONFIG.coldRuns));
  if (cold) progress(`cold start: dist/securechat --help ${fmt(cold.securechatMs, 1)} ms, empty binary ${fmt(cold.emptyBinaryMs, 1)} ms`);
}
if (only.has("abuse")) {
  abuse = await attempt("abuse", SUBJECT, () => runAbuse(CONFIG.abuse, serverCmd, progress));
}
if (only.has("cluster")) {
  cluster = await attempt("cluster", SUBJECT, () =>
    runCluster(CONFIG.cluster, CONFIG.runs, progress, (what, e) => {
      const error = e instanceof Error ? e.message : String(e);
      errors.push({ what: `cluster ${what}`, impl: SUBJECT, error });
      progress(`  cluster ${what}: FAILED: ${error}`);
    }),
  );
  if (cluster === null && !errors.some((e) => e.what === "cluster")) notes.push("cluster: not run — PostgreSQL or Redis not installed (apt-get install postgresql redis-server)");
}

// ---------------------------------------------------------------------------
// Medians over runs

function agg<T>(runs: T[] | undefined, f: (t: T) => number): number | null {
  if (!runs || runs.length === 0) return null;
  return median(runs.map(f));
}

interface Row {
  metric: string;
  /** By impl name. */
  values: Record<string, number | null>;
  digits: number;
  /** Words instead of a missing figure, by impl name. */
  text?: Record<string, string>;
}
const rows: Row[] = [];
const row = (metric: string, digits: number, value: (impl: Impl) => number | null): void => {
  rows.push({ metric, digits, values: Object.fromEntries(impls.map((i) => [i.name, value(i)])) });
};

for (const n of only.has("throughput") ? CONFIG.throughput.sizes : []) {
  const get = (i: Impl) => throughput.get(`${i.name}|${n}`);
  row(`N=${n}: delivered messages/s`, 0, (i) => agg(get(i), (r) => r.deliveriesPerSec));
  row(`N=${n}: server CPU-s per 1M deliveries`, 2, (i) => agg(get(i), (r) => r.serverCpuPerMillion));
  row(`N=${n}: deliveries per server CPU-s`, 0, (i) => agg(get(i), (r) => r.deliveriesPerServerCpuSec));
}
const rateLabel = `${fmt(CONFIG.latency.rate / 1000)}k/s`;
for (const n of only.has("latency") ? CONFIG.latency.sizes : []) {
  const get = (i: Impl) => latency.get(`${i.name}|${n}`);
  row(`N=${n} @ ${rateLabel}: p50 latency ms`, 2, (i) => agg(get(i), (r) => r.p50));
  row(`N=${n} @ ${rateLabel}: p99 latency ms`, 2, (i) => agg(get(i), (r) => r.p99));
  row(`N=${n} @ ${rateLabel}: p99.9 latency ms`, 2, (i) => agg(get(i), (r) => r.p999));
  row(`N=${n} @ ${rateLabel}: achieved deliveries/s`, 0, (i) => agg(get(i), (r) => r.rate));
  row(`N=${n} @ ${rateLabel}: server cores busy`, 2, (i) => agg(get(i), (r) => r.serverCores));
}
if (only.has("idle")) {
  row(`idle: server RSS KiB per connection, after GC (${fmt(CONFIG.idle.conns)} conns after ${CONFIG.idle.warm})`, 2, (i) => agg(idle.get(i.name), (r) => r.kibPerConnGc));
  row(`idle: server RSS KiB per connection, garbage included`, 2, (i) => agg(idle.get(i.name), (r) => r.kibPerConn));
}
if (only.has("logins")) {
  const pick = (i: Impl, kind: string): LoginResult[] | undefined => (i.name === SUBJECT ? logins.get(kind) : i.name === "tls" && kind === "ticket" ? logins.get("tls") : undefined);
  row("ticket logins/s (tls: TLS handshakes/s)", 0, (i) => agg(pick(i, "ticket"), (r) => r.loginsPerSec));
  row("ticket logins per server CPU-s (tls: handshakes)", 0, (i) => agg(pick(i, "ticket"), (r) => r.loginsPerServerCpuSec));
  row("password logins/s (argon2id)", 1, (i) => agg(pick(i, "password"), (r) => r.loginsPerSec));
}
if (only.has("cold")) {
  row("cold start ms: dist/securechat --help (bare: empty compiled binary)", 1, (i) =>
    i.name === SUBJECT ? (cold?.securechatMs ?? null) : i.name === "bare" ? (cold?.emptyBinaryMs ?? null) : null,
  );
  if (cold && cold.securechatMs === null) rows[rows.length - 1]!.text = { [SUBJECT]: "not built" };
}

const ratioCols = subject ? baselines : [];
const ratio = (r: Row, base: Impl): number | null => {
  const s = r.values[SUBJECT];
  const b = r.values[base.name];
  return s === null || s === undefined || b === null || b === undefined || b === 0 ? null : s / b;
};

// ---------------------------------------------------------------------------
// Output

const elapsedS = (performance.now() - started) / 1000;
const subjectFailed = errors.some((e) => e.impl === SUBJECT);
const cappedRuns = [...latency.values()].flat().filter((r) => r.capped || r.missing > 0);
const busyGenerators = [...latency.values()].flat().filter((r) => r.generatorCores > 0.85);
if (cold?.note) notes.push(`cold start: ${cold.note}`);
if (cappedRuns.length > 0) {
  notes.push(
    `latency: could not keep up in ${cappedRuns.map((r) => `${r.impl} N=${r.n} (${r.capped ? "outstanding cap hit" : ""}${r.capped && r.missing ? ", " : ""}${r.missing ? `${r.missing} deliveries missing, counted at their lower bound` : ""})`).join("; ")}`,
  );
}
if (busyGenerators.length > 0) {
  notes.push(`latency: the load generator used ≥ 0.85 cores in ${busyGenerators.map((r) => `${r.impl} N=${r.n} (${fmt(r.generatorCores, 2)})`).join(", ")}: it may be part of the latency measured`);
}

if (json) {
  const flat = <T>(m: Map<string, T[]>): T[] => [...m.values()].flat();
  console.log(
    JSON.stringify(
      {
        machine,
        mode: CONFIG.mode,
        config: CONFIG,
        elapsed_s: elapsedS,
        impls: implStatus.map((s) => ({ name: s.impl.name, describe: s.impl.describe, available: s.reason === null, reason: s.reason })),
        table: {
          header: ["metric", ...impls.map((i) => i.name), ...ratioCols.map((b) => `${SUBJECT}/${b.name}`)],
          rows: rows.map((r) => ({ metric: r.metric, values: r.values, ...(r.text ? { text: r.text } : {}), ratios: Object.fromEntries(ratioCols.map((b) => [b.name, ratio(r, b)])) })),
        },
        results: { throughput: flat(throughput), latency: flat(latency), idle: flat(idle), logins: flat(logins), cold, abuse, cluster },
        notes: notes.filter(Boolean),
        errors,
      },
      (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
      2,
    ),
  );
} else {
  const short = (name: string): string => (name === SUBJECT ? "sc" : name);
  const header = ["", ...impls.map((i) => i.name), ...ratioCols.map((b) => `sc/${short(b.name)}`)];
  const body = rows.map((r) => [r.metric, ...impls.map((i) => r.text?.[i.name] ?? fmt(r.values[i.name], r.digits)), ...ratioCols.map((b) => {
    const x = ratio(r, b);
    return x === null ? "-" : `${fmt(x, x < 10 ? 2 : 1)}×`;
  })]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const out: string[] = [];
  out.push(`securechat bench (${CONFIG.mode}) — ${machine.cpu} × ${machine.cores} cores, Bun ${machine.bun}, ${machine.platform}`);
  const t = CONFIG.throughput;
  const l = CONFIG.latency;
  if (rows.length > 0) {
    out.push(
      `${CONFIG.runs === 1 ? "one run" : `medians of ${CONFIG.runs} runs`}; throughput: 10% of members send ~100-byte messages, window ${t.window}, median of ${t.samples} × ${t.sampleMs / 1000} s after ${t.warmupMs / 1000} s; ` +
        `latency: open loop at ${fmt(l.rate)} deliveries/s, ${l.seconds} s window after ${l.warmupMs / 1000} s, every delivery timed from its scheduled send`,
    );
    out.push("");
    out.push(line(header));
    out.push(line(widths.map((w) => "-".repeat(w))));
    for (const b of body) out.push(line(b));
    out.push("");
    if (ratioCols.length > 0) out.push(`sc/x = securechat's figure ÷ x's, same run (higher is better for rates, lower for CPU-s, latency, memory, start time).`);
    for (const impl of impls) out.push(`${impl.name}: ${impl.describe}.`);
    for (const s of implStatus) if (s.reason !== null) out.push(`${s.impl.name}: not run — ${s.reason}.`);
  }
  if (only.has("idle")) {
    out.push(
      `idle: server RSS delta over ${fmt(CONFIG.idle.conns)} idle connections, measured after ${CONFIG.idle.warm} warm-up ones${full ? "" : " (quick mode: fewer than --full's 2,000)"}; securechat's are logged in and joined. "After GC": each reading follows a full garbage collection in the server (SIGUSR2 → Bun.gc(true)), so it counts memory held, not garbage not yet collected.`,
    );
  }
  for (const n of notes.filter(Boolean)) out.push(n);
  if (abuse) out.push(...(rows.length > 0 ? [""] : []), ...abuseTable(abuse, CONFIG.abuse));
  if (cluster) out.push(...(rows.length > 0 || abuse ? [""] : []), ...clusterTable(cluster, CONFIG.cluster, fmt));
  for (const e of errors) out.push(`FAILED ${e.what} (${e.impl}): ${e.error}`);
  out.push(`elapsed ${elapsedS.toFixed(1)} s`);
  console.log(out.join("\n"));
}
process.exit(subjectFailed ? 1 : 0);
