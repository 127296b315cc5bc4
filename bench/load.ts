/**
 * Load benchmark: the real securechat server, in its own process, driven
 * through the real protocol by a load generator in another process, against
 * a bare relay (same framing and socket code, no crypto, no JSON) measured
 * in the same run.
 *
 *   bun run bench/load.ts            N = 10, 100, 500; 3 × 5 s samples each
 *   bun run bench/load.ts --quick    N = 10, 100; 3 × 2.5 s samples (< 60 s)
 *   bun run bench/load.ts --json     one JSON object on stdout
 *   bun run bench/load.ts --idle [--conns 2000]
 *       server RSS (/proc/PID/status VmRSS, median of 3 readings 1 s apart)
 *       before and after C idle connections (securechat: ticket login + join,
 *       via bench/load/idle.ts), in KiB per connection, vs the bare relay
 *       holding C raw TCP connections
 *   bun run bench/load.ts --logins [--seconds 5]
 *       ticket and password (real argon2id verifiers) logins per second from
 *       16 concurrent generator workers (handshake + login + close, via
 *       bench/load/logins.ts), with server CPU-seconds per login
 *
 * Workload (relay throughput): N members in room "bench"; 10% of them (at
 * least 1) send ~100-byte messages, each keeping 32 unacknowledged; every
 * member counts deliveries. After a warm-up, the generator marks the start
 * and end of each sample; at each mark this process reads the server
 * process's CPU time (/proc/PID/stat utime+stime) and RSS (/proc/PID/status).
 * Reported figures are medians over the samples.
 *
 * Never fails on speed. Every child is stopped by its handle on every exit
 * path, and every wait is bounded.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ROOM as ROOM_NAME } from "./load/common.ts";

const USAGE = "usage: bun run bench/load.ts [--quick] [--json] | --idle [--conns C] [--json] | --logins [--seconds S] [--json]";
const argv = new Set<string>();
const values = new Map<string, number>();
{
  const raw = Bun.argv.slice(2);
  for (let i = 0; i < raw.length; i++) {
    const a = raw[i]!;
    if (a === "--quick" || a === "--json" || a === "--idle" || a === "--logins") argv.add(a);
    else if (a === "--conns" || a === "--seconds") {
      const v = Number(raw[++i]);
      if (!Number.isFinite(v) || v <= 0) {
        console.error(`${USAGE} (${a} needs a positive number)`);
        process.exit(2);
      }
      values.set(a, v);
    } else {
      console.error(`${USAGE} (unknown argument ${a})`);
      process.exit(2);
    }
  }
  if (argv.has("--idle") && argv.has("--logins")) {
    console.error(`${USAGE} (--idle and --logins are separate runs)`);
    process.exit(2);
  }
}
const quick = argv.has("--quick");
const json = argv.has("--json");

const CONFIG = quick
  ? { sizes: [10, 100], warmupMs: 1000, sampleMs: 2500, samples: 3 }
  : { sizes: [10, 100, 500], warmupMs: 2000, sampleMs: 5000, samples: 3 };
const WINDOW = 32;
const HERE = import.meta.dir;

// ---------------------------------------------------------------------------
// Children

const live = new Set<Subprocess>();
/** Temporary directories to remove even when interrupted. */
const tmpDirs = new Set<string>();

async function stopChild(p: Subprocess): Promise<void> {
  if (p.exitCode === null && p.signalCode === null) {
    p.kill("SIGTERM");
    const exited = await Promise.race([p.exited.then(() => true), Bun.sleep(2000).then(() => false)]);
    if (!exited) {
      p.kill("SIGKILL");
      await Promise.race([p.exited, Bun.sleep(2000)]);
    }
  }
  live.delete(p);
}

function onSignal(sig: NodeJS.Signals): void {
  for (const p of live) p.kill("SIGKILL");
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  process.exit(sig === "SIGINT" ? 130 : 143);
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

function spawnBun(script: string, args: string[]): Subprocess<"ignore", "pipe", "inherit"> {
  const p = Bun.spawn([process.execPath, "run", join(HERE, "load", script), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  live.add(p);
  return p;
}

/** Reads a child's stdout one JSON line at a time, each read bounded. */
class Lines {
  #buffer = "";
  #ended = false;
  #wake: (() => void) | null = null;

  constructor(stream: ReadableStream<Uint8Array>) {
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of stream) {
          this.#buffer += decoder.decode(chunk, { stream: true });
          this.#notify();
        }
      } catch {
        // the child went away; treated as the end of its output
      }
      this.#ended = true;
      this.#notify();
    })();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async next(what: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line.trim() === "") continue;
        return JSON.parse(line) as Record<string, unknown>;
      }
      if (this.#ended) throw new Error(`bench/load: child exited while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`bench/load: timed out after ${timeoutMs} ms waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, left);
        this.#wake = resolve;
      });
      clearTimeout(timer);
    }
  }
}

// ---------------------------------------------------------------------------
// /proc sampling

const CLK_TCK = (() => {
  try {
    const r = Bun.spawnSync(["getconf", "CLK_TCK"]);
    const n = Number(r.stdout.toString().trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

// ---------------------------------------------------------------------------
// One scenario

type Impl = "bare" | "securechat";

interface Sample {
  seconds: number;
  deliveries: number;
  serverCpu: number;
  clientCpu: number;
}

interface Result {
  n: number;
  impl: Impl;
  senders: number;
  setupMs: number;
  samples: Sample[];
  deliveriesPerSec: number;
  serverCpuPerMillion: number;
  deliveriesPerServerCpuSec: number;
  serverCores: number;
  clientCores: number;
  serverRssMiB: number;
  nacks: number;
  disconnected: number;
  ratioVsBare?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function runScenario(impl: Impl, n: number): Promise<Result> {
  const senders = Math.max(1, Math.round(n / 10));
  const tmp = mkdtempSync(join(os.tmpdir(), "securechat-load-"));
  tmpDirs.add(tmp);
  const children: Subprocess[] = [];
  try {
    const credsPath = join(tmp, "creds.json");
    const server =
      impl === "bare" ? spawnBun("bare.ts", []) : spawnBun("server.ts", ["--data", join(tmp, "data"), "--users", String(n), "--creds", credsPath]);
    children.push(server);
    const serverLines = new Lines(server.stdout);
    const { port } = (await serverLines.next("the server's port", 30_000)) as { port: number };

    const client = spawnBun("client.ts", [
      "--mode", impl === "bare" ? "bare" : "secure",
      "--port", String(port),
      "--creds", credsPath,
      "--n", String(n),
      "--senders", String(senders),
      "--window", String(WINDOW),
      "--warmup", String(CONFIG.warmupMs),
      "--sample", String(CONFIG.sampleMs),
      "--samples", String(CONFIG.samples),
    ]);
    children.push(client);
    const clientLines = new Lines(client.stdout);

    const ready = await clientLines.next("the load generator to log everyone in", 120_000);
    if (ready.event !== "ready") throw new Error(`bench/load: generator failed: ${String(ready.error)}`);

    interface Mark {
      t: number;
      deliveries: number;
      nacks: number;
      closed: number;
      serverCpu: number;
      clientCpu: number;
      rss: number;
    }
    const marks: Mark[] = [];
    const markTimeout = CONFIG.warmupMs + CONFIG.sampleMs + 15_000;
    for (let i = 0; i <= CONFIG.samples; i++) {
      const e = await clientLines.next("a sample mark", markTimeout);
      if (e.event !== "mark") throw new Error(`bench/load: generator failed: ${String(e.error)}`);
      marks.push({
        t: e.t as number,
        deliveries: e.deliveries as number,
        nacks: e.nacks as number,
        closed: e.closed as number,
        serverCpu: cpuSeconds(server.pid),
        clientCpu: cpuSeconds(client.pid),
        rss: rssMiB(server.pid),
      });
    }
    const done = await clientLines.next("the generator to finish", 15_000);
    if (done.event === "done" && done.error) console.error(`bench/load: ${impl} N=${n}: ${String(done.error)}`);

    const samples: Sample[] = [];
    for (let i = 1; i < marks.length; i++) {
      const a = marks[i - 1]!;
      const b = marks[i]!;
      samples.push({ seconds: (b.t - a.t) / 1000, deliveries: b.deliveries - a.deliveries, serverCpu: b.serverCpu - a.serverCpu, clientCpu: b.clientCpu - a.clientCpu });
    }
    const last = marks[marks.length - 1]!;
    return {
      n,
      impl,
      senders,
      setupMs: ready.setup_ms as number,
      samples,
      deliveriesPerSec: median(samples.map((s) => s.deliveries / s.seconds)),
      serverCpuPerMillion: median(samples.map((s) => (s.deliveries > 0 ? (s.serverCpu / s.deliveries) * 1e6 : Number.NaN))),
      deliveriesPerServerCpuSec: median(samples.map((s) => (s.serverCpu > 0 ? s.deliveries / s.serverCpu : Number.NaN))),
      serverCores: median(samples.map((s) => s.serverCpu / s.seconds)),
      clientCores: median(samples.map((s) => s.clientCpu / s.seconds)),
      serverRssMiB: Math.max(...marks.map((m) => m.rss)),
      nacks: last.nacks,
      disconnected: last.closed,
    };
  } finally {
    await Promise.all(children.reverse().map(stopChild));
    rmSync(tmp, { recursive: true, force: true });
    tmpDirs.delete(tmp);
  }
}

// ---------------------------------------------------------------------------
// Modes other than relay throughput (bench/load/idle.ts, bench/load/logins.ts)

const fmtNum = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "-");

function printTable(header: string[], rows: string[][], leftCols: number): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < leftCols ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(line(header));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) console.log(line(r));
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

/** `count` RSS readings of `pid`, `gapMs` apart, after waiting `gapMs` first. */
async function rssSamples(pid: number, count = 3, gapMs = 1000): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    await Bun.sleep(gapMs);
    out.push(rssKiB(pid));
  }
  return out;
}

interface IdleResult {
  impl: Impl;
  conns: number;
  connected: number;
  failed: number;
  retries: number;
  setupMs: number;
  rssBeforeKiB: number[];
  rssAfterKiB: number[];
  kibPerConn: number;
  ratioVsBare?: number;
}

async function runIdle(impl: Impl, conns: number): Promise<IdleResult> {
  const tmp = mkdtempSync(join(os.tmpdir(), "securechat-idle-"));
  tmpDirs.add(tmp);
  const children: Subprocess[] = [];
  try {
    const credsPath = join(tmp, "creds.json");
    const server = impl === "bare" ? spawnBun("bare.ts", []) : spawnBun("server.ts", ["--data", join(tmp, "data"), "--users", String(conns), "--creds", credsPath]);
    children.push(server);
    const { port } = (await new Lines(server.stdout).next("the server's port", 120_000)) as { port: number };
    const rssBeforeKiB = await rssSamples(server.pid);
    const gen = spawnBun("idle.ts", ["--mode", impl === "bare" ? "bare" : "secure", "--port", String(port), "--creds", credsPath, "--n", String(conns)]);
    children.push(gen);
    const genLines = new Lines(gen.stdout);
    const ready = await genLines.next("the idle generator to connect everyone", 300_000);
    if (ready.event !== "ready") throw new Error(`bench/load: idle generator failed: ${String(ready.error)}`);
    if (ready.error) console.error(`bench/load: idle ${impl}: ${ready.failed} connections failed: ${String(ready.error)}`);
    const rssAfterKiB = await rssSamples(server.pid);
    const connected = ready.connected as number;
    return {
      impl,
      conns,
      connected,
      failed: ready.failed as number,
      retries: ready.retries as number,
      setupMs: ready.setup_ms as number,
      rssBeforeKiB,
      rssAfterKiB,
      kibPerConn: connected > 0 ? (median(rssAfterKiB) - median(rssBeforeKiB)) / connected : Number.NaN,
    };
  } finally {
    await Promise.all(children.reverse().map(stopChild));
    rmSync(tmp, { recursive: true, force: true });
    tmpDirs.delete(tmp);
  }
}

interface LoginResult {
  kind: "ticket" | "password";
  accounts: number;
  concurrency: number;
  seconds: number;
  logins: number;
  failures: number;
  loginsPerSec: number;
  serverCpu: number;
  serverCpuPerLogin: number;
  loginsPerServerCpuSec: number;
  serverCores: number;
  clientCores: number;
}

async function runLogins(seconds: number): Promise<LoginResult[]> {
  const tmp = mkdtempSync(join(os.tmpdir(), "securechat-logins-"));
  tmpDirs.add(tmp);
  const TICKET_USERS = 64;
  const PW_USERS = 8;
  const CONCURRENCY = 16;
  const children: Subprocess[] = [];
  try {
    const credsPath = join(tmp, "creds.json");
    const server = spawnBun("logins.ts", ["server", "--data", join(tmp, "data"), "--users", String(TICKET_USERS), "--pw-users", String(PW_USERS), "--creds", credsPath]);
    children.push(server);
    const { port } = (await new Lines(server.stdout).next("the server's port", 120_000)) as { port: number };
    const results: LoginResult[] = [];
    for (const kind of ["ticket", "password"] as const) {
      const gen = spawnBun("logins.ts", ["client", "--port", String(port), "--creds", credsPath, "--kind", kind, "--concurrency", String(CONCURRENCY), "--warmup", "1000", "--seconds", String(seconds)]);
      children.push(gen);
      const lines = new Lines(gen.stdout);
      const marks: { t: number; logins: number; failures: number; serverCpu: number; clientCpu: number }[] = [];
      for (let i = 0; i < 2; i++) {
        const e = await lines.next(`a ${kind} login mark`, seconds * 1000 + 30_000);
        if (e.event !== "mark") throw new Error(`bench/load: login generator failed: ${String(e.error)}`);
        marks.push({ t: e.t as number, logins: e.logins as number, failures: e.failures as number, serverCpu: cpuSeconds(server.pid), clientCpu: cpuSeconds(gen.pid) });
      }
      const done = await lines.next("the login generator to finish", 40_000);
      if (done.error) console.error(`bench/load: ${kind} logins: ${String(done.error)}`);
      await stopChild(gen);
      const [a, b] = [marks[0]!, marks[1]!];
      const secs = (b.t - a.t) / 1000;
      const logins = b.logins - a.logins;
      const cpu = b.serverCpu - a.serverCpu;
      results.push({
        kind,
        accounts: kind === "ticket" ? TICKET_USERS : PW_USERS,
        concurrency: CONCURRENCY,
        seconds: secs,
        logins,
        failures: b.failures - a.failures,
        loginsPerSec: logins / secs,
        serverCpu: cpu,
        serverCpuPerLogin: logins > 0 ? cpu / logins : Number.NaN,
        loginsPerServerCpuSec: cpu > 0 ? logins / cpu : Number.NaN,
        serverCores: cpu / secs,
        clientCores: (b.clientCpu - a.clientCpu) / secs,
      });
      progress(`  ${kind} logins: ${fmtNum(logins / secs, 1)}/s`);
    }
    return results;
  } finally {
    await Promise.all(children.reverse().map(stopChild));
    rmSync(tmp, { recursive: true, force: true });
    tmpDirs.delete(tmp);
  }
}

// ---------------------------------------------------------------------------
// Main

const machine = { cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, bun: Bun.version, platform: `${process.platform}-${process.arch}` };
const started = performance.now();
const results: Result[] = [];
function progress(s: string): void {
  if (!json) console.error(s);
}

if (argv.has("--idle")) {
  const conns = Math.round(values.get("--conns") ?? 2000);
  const bare = await runIdle("bare", conns);
  progress(`  idle bare: ${fmtNum(bare.kibPerConn, 2)} KiB/conn`);
  const secure = await runIdle("securechat", conns);
  secure.ratioVsBare = secure.kibPerConn / bare.kibPerConn;
  progress(`  idle securechat: ${fmtNum(secure.kibPerConn, 2)} KiB/conn`);
  const elapsed = (performance.now() - started) / 1000;
  if (json) console.log(JSON.stringify({ machine, mode: "idle", config: { conns, rssSamples: 3, rssGapMs: 1000 }, elapsed_s: elapsed, results: [bare, secure] }, null, 2));
  else {
    console.log(`securechat load: server RSS per idle connection (${conns} connections; securechat: ticket login + join "${ROOM_NAME}")`);
    console.log(`${machine.cpu} × ${machine.cores}, Bun ${machine.bun}; RSS = median of 3 readings 1 s apart, before and after`);
    console.log("");
    printTable(
      ["impl", "connected", "failed", "retries", "setup s", "RSS before MiB", "RSS after MiB", "KiB/conn", "vs bare"],
      [bare, secure].map((r) => [
        r.impl,
        String(r.connected),
        String(r.failed),
        String(r.retries),
        fmtNum(r.setupMs / 1000, 1),
        fmtNum(median(r.rssBeforeKiB) / 1024, 1),
        fmtNum(median(r.rssAfterKiB) / 1024, 1),
        fmtNum(r.kibPerConn, 2),
        r.ratioVsBare === undefined ? "1" : fmtNum(r.ratioVsBare, 2),
      ]),
      1,
    );
    console.log("");
    console.log(`elapsed ${elapsed.toFixed(1)} s`);
  }
  process.exit(0);
}

if (argv.has("--logins")) {
  const seconds = values.get("--seconds") ?? 5;
  const results = await runLogins(seconds);
  const elapsed = (performance.now() - started) / 1000;
  if (json) console.log(JSON.stringify({ machine, mode: "logins", config: { seconds, warmupMs: 1000 }, elapsed_s: elapsed, results }, null, 2));
  else {
    console.log("securechat load: logins (handshake + login + close, from a generator process)");
    console.log(`${machine.cpu} × ${machine.cores}, Bun ${machine.bun}; one ${seconds} s sample after 1 s warm-up`);
    console.log("");
    printTable(
      ["kind", "accounts", "conc", "logins", "fail", "logins/s", "srv CPU ms/login", "logins/srv CPU-s", "srv cores", "gen cores"],
      results.map((r) => [
        r.kind,
        String(r.accounts),
        String(r.concurrency),
        String(r.logins),
        String(r.failures),
        fmtNum(r.loginsPerSec, 1),
        fmtNum(r.serverCpuPerLogin * 1000, 2),
        fmtNum(r.loginsPerServerCpuSec, 1),
        fmtNum(r.serverCores, 2),
        fmtNum(r.clientCores, 2),
      ]),
      1,
    );
    console.log("");
    console.log("password verifiers: argon2id, the server's ARGON2 parameters (64 MiB, t=2); srv CPU counts all server threads.");
    console.log(`elapsed ${elapsed.toFixed(1)} s`);
  }
  process.exit(0);
}

for (const n of CONFIG.sizes) {
  const bare = await runScenario("bare", n);
  progress(`  N=${n} bare: ${Math.round(bare.deliveriesPerSec)} deliveries/s`);
  const secure = await runScenario("securechat", n);
  secure.ratioVsBare = secure.deliveriesPerServerCpuSec / bare.deliveriesPerServerCpuSec;
  progress(`  N=${n} securechat: ${Math.round(secure.deliveriesPerSec)} deliveries/s`);
  results.push(bare, secure);
}
const elapsedS = (performance.now() - started) / 1000;

if (json) {
  console.log(JSON.stringify({ machine, config: { ...CONFIG, window: WINDOW, quick, clkTck: CLK_TCK }, elapsed_s: elapsedS, results }, null, 2));
} else {
  const fmt = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "-");
  const header = ["N", "impl", "senders", "deliveries/s", "srv CPU-s/1M", "deliv/srv CPU-s", "vs bare", "srv cores", "gen cores", "srv RSS MiB", "nacks", "drops"];
  const rows = results.map((r) => [
    String(r.n),
    r.impl,
    String(r.senders),
    fmt(r.deliveriesPerSec),
    fmt(r.serverCpuPerMillion, 2),
    fmt(r.deliveriesPerServerCpuSec),
    r.ratioVsBare === undefined ? "1" : fmt(r.ratioVsBare, 3),
    fmt(r.serverCores, 2),
    fmt(r.clientCores, 2),
    fmt(r.serverRssMiB, 0),
    String(r.nacks),
    String(r.disconnected),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`securechat load: relay throughput, room "bench", 10% senders × window ${WINDOW}, ~100-byte messages`);
  console.log(`${machine.cpu} × ${machine.cores}, Bun ${machine.bun}; medians of ${CONFIG.samples} × ${CONFIG.sampleMs / 1000} s after ${CONFIG.warmupMs / 1000} s warm-up${quick ? " (--quick)" : ""}`);
  console.log("");
  console.log(line(header));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) console.log(line(r));
  console.log("");
  console.log("vs bare = securechat deliveries per server CPU-second / the bare relay's (same N, same run).");
  console.log("srv/gen cores = CPU-seconds per second of the server / load generator; both share this machine.");
  console.log(`elapsed ${elapsedS.toFixed(1)} s`);
}
process.exit(0);
