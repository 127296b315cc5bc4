/**
 * The load benchmark's machinery (bench/run.ts prints the table): the real
 * securechat server in its own process, driven through the real protocol by
 * a load generator in another process, against baselines measured in the
 * same run. Each server is a launcher in bench/load/ that prints one line
 * {"port": P, ...} on stdout and stops on SIGTERM; each generator speaks the
 * stdout event protocol documented at the top of bench/load/client.ts.
 *
 * Scenarios, each on a fresh server (and data directory):
 *   throughput  N members in room "bench"; 10% of them (at least 1) send
 *               ~100-byte messages, each keeping 32 unacknowledged (closed
 *               loop); every member counts deliveries. After a warm-up the
 *               generator marks the start and end of each sample; at each
 *               mark this process reads the server's CPU time
 *               (/proc/PID/stat utime+stime) and RSS. Medians over samples.
 *   latency     the same room, open loop at a fixed offered load (deliveries/s),
 *               send → receive latency from the scheduled send time.
 *   idle        server RSS (/proc/PID/status VmRSS, median of 3 readings)
 *               before and after C idle connections (securechat: ticket
 *               login + join; baselines: connections, TLS ones handshaken),
 *               "before" taken after W warm-up connections of the same kind.
 *   logins      ticket and password (real argon2id verifiers) logins per
 *               second from 16 concurrent workers (handshake + login +
 *               close), and TLS handshakes per second against the TLS relay.
 *   cold start  `dist/securechat --help`, and an empty `bun build --compile`
 *               binary as its baseline.
 *
 * Never fails on speed. Every child is stopped by its handle on every exit
 * path (SIGTERM, then SIGKILL after 2 s), every wait is bounded, and every
 * temporary directory is removed, also on SIGINT/SIGTERM.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { opensslPath } from "./load/tls.ts";

const HERE = import.meta.dir;
const LOAD = join(HERE, "load");
export const ROOT = join(HERE, "..");

// ---------------------------------------------------------------------------
// The implementations under test. To add one: a launcher in bench/load/ that
// prints {"port": P, ...} and stops on SIGTERM, a generator that takes
// client.ts's flags and prints its events, and an entry here.

export interface ServerContext {
  /** A fresh temporary directory, removed afterwards. */
  tmp: string;
  /** Accounts the server should create (members or connections). */
  users: number;
  /** Where a securechat-like launcher writes credentials for the generator. */
  credsPath: string;
}

export interface GeneratorContext extends ServerContext {
  port: number;
  /** The launcher's first stdout line, e.g. {"port": P, "ca": "/tmp/.../cert.pem"}. */
  hello: Record<string, unknown>;
}

export interface Impl {
  /** Column name in the table. */
  name: string;
  /** One line for the notes under the table. */
  describe: string;
  /** Why it cannot run on this machine, or null. Checked once per run. */
  unavailable(): string | null;
  /** Launcher script in bench/load/ and its arguments. */
  server(c: ServerContext): string[];
  /** Relay load generator script in bench/load/ and its impl-specific arguments. */
  generator(c: GeneratorContext): string[];
  /** Idle-connection generator (bench/load/idle.ts flags), if this impl has one. */
  idle?(c: GeneratorContext): string[];
  /** Extra time the launcher may need before printing its port (ms). */
  startTimeoutMs?: number;
  /** The server collects its garbage on SIGUSR2 (Bun servers: bench/load/common.ts gcOnSignal). */
  gc?: boolean;
  /** Run only with --full (or when named in --impls), to keep the quick bench under two minutes. */
  fullOnly?: boolean;
}

const caArgs = (c: GeneratorContext): string[] => (typeof c.hello.ca === "string" ? ["--ca", c.hello.ca] : []);

export const IMPLS: Impl[] = [
  {
    name: "bare",
    describe: "bare relay: securechat's framing and socket code, writes coalesced per event-loop turn, no crypto, no JSON (the floor)",
    unavailable: () => null,
    server: () => ["bare.ts"],
    generator: () => ["client.ts", "--mode", "bare"],
    idle: () => ["idle.ts", "--mode", "bare"],
    gc: true,
  },
  {
    name: "tls",
    describe: "Bun TLS relay: the bare relay behind Bun.listen({tls}), self-signed P-256 certificate pinned by the generator",
    unavailable: () => (opensslPath() ? null : "openssl not found (the Bun TLS relay needs a certificate)"),
    server: (c) => ["tls.ts", "--dir", c.tmp],
    generator: (c) => ["client.ts", "--mode", "bare", "--tls", ...caArgs(c)],
    idle: (c) => ["idle.ts", "--mode", "bare", "--tls", ...caArgs(c)],
    gc: true,
  },
  {
    name: "securechat",
    describe: "securechat: the real server (bench/load/benchserver.ts configuration), ticket logins, the real protocol",
    unavailable: () => null,
    server: (c) => ["server.ts", "--data", join(c.tmp, "data"), "--users", String(c.users), "--creds", c.credsPath],
    generator: (c) => ["client.ts", "--mode", "secure", "--creds", c.credsPath],
    idle: (c) => ["idle.ts", "--mode", "secure", "--creds", c.credsPath],
    gc: true,
    startTimeoutMs: 120_000,
  },
  {
    name: "sc+transcript",
    describe:
      "sc+transcript: securechat writing its transcript as `serve` does (--fsync batch: group commit, acks wait for the fsync and for a checkpoint signed before it; checkpoints also every 1000 entries), so its rows show what the transcript costs",
    unavailable: () => null,
    server: (c) => ["server.ts", "--data", join(c.tmp, "data"), "--users", String(c.users), "--creds", c.credsPath, "--transcript", "batch"],
    generator: (c) => ["client.ts", "--mode", "secure", "--creds", c.credsPath],
    gc: true,
    startTimeoutMs: 120_000,
    fullOnly: true,
  },
  // ngIRCd over TLS, the real-world peer, where Debian's ngircd is
  // installed: bench/load/ngircd.ts configures and runs it (loopback, flood
  // penalties off; prints {"port": TLS_PORT, "pid": NGIRCD_PID}, and the
  // figures are ngIRCd's own process), bench/load/irc.ts is the IRC load
  // generator (client.ts's flags and events; TLS by default, certificate
  // not verified). No idle generator for it (yet).
  {
    name: "ngircd",
    describe:
      "ngIRCd (C) over TLS, stock: a real-world IRC server, the same room workload through an IRC generator (bench/load/irc.ts). It does not set TCP_NODELAY, so small writes wait for delayed ACKs (~40 ms): fewer, larger writes per CPU-second, and a high latency floor",
    unavailable: ngircdUnavailable,
    server: (c) => ["ngircd.ts", "--dir", c.tmp],
    generator: () => ["irc.ts"],
    fullOnly: true,
  },
  {
    name: "ngircd-nd",
    describe: "ngIRCd (C) over TLS with TCP_NODELAY set by an LD_PRELOAD shim (bench/load/ngircd.ts --nodelay), as securechat and the Bun relays have it: the like-for-like peer",
    unavailable: () => ngircdUnavailable() ?? (Bun.which("cc") || Bun.which("gcc") ? null : "no C compiler for the TCP_NODELAY shim"),
    server: (c) => ["ngircd.ts", "--dir", c.tmp, "--nodelay"],
    generator: () => ["irc.ts"],
  },
];

function ngircdUnavailable(): string | null {
  if (!Bun.which("ngircd") && !Bun.which("ngircd", { PATH: "/usr/sbin:/usr/local/sbin:/sbin" })) return "ngircd not installed (apt-get install ngircd)";
  if (!opensslPath()) return "openssl not found (ngIRCd's TLS needs a certificate)";
  if (!existsSync(join(LOAD, "ngircd.ts")) || !existsSync(join(LOAD, "irc.ts"))) return "bench/load/ngircd.ts or bench/load/irc.ts not present";
  return null;
}

/** The implementation every other one is compared with. */
export const SUBJECT = "securechat";

// ---------------------------------------------------------------------------
// Children and temporary directories

const live = new Set<Subprocess>();
const tmpDirs = new Set<string>();

export async function stopChild(p: Subprocess): Promise<void> {
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
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** Runs a script of bench/load/ in its own process; `env` is added to this process's environment (secrets go there, never in argv). */
export function spawnScript(argv: string[], env?: Record<string, string>): Subprocess<"ignore", "pipe", "inherit"> {
  const [script, ...rest] = argv;
  const p = Bun.spawn([process.execPath, "run", join(LOAD, script!), ...rest], { stdin: "ignore", stdout: "pipe", stderr: "inherit", ...(env ? { env: { ...process.env, ...env } } : {}) });
  live.add(p);
  return p;
}

/** As spawnScript, with a pipe to the child's stdin. */
export function spawnScriptWithStdin(argv: string[]): Subprocess<"pipe", "pipe", "inherit"> {
  const [script, ...rest] = argv;
  const p = Bun.spawn([process.execPath, "run", join(LOAD, script!), ...rest], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  live.add(p);
  return p;
}

/** Spawns `cmd` in the repository (stdout and stderr piped), stopped like the scripts on every exit path. */
export function spawnCommand(cmd: string[]): Subprocess<"ignore", "pipe", "pipe"> {
  const p = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  live.add(p);
  return p;
}

/** Runs `fn` with a fresh temporary directory and a list of children, all cleaned up afterwards. */
export async function withScratch<T>(prefix: string, fn: (tmp: string, children: Subprocess[]) => Promise<T>): Promise<T> {
  const tmp = mkdtempSync(join(os.tmpdir(), `securechat-${prefix}-`));
  tmpDirs.add(tmp);
  const children: Subprocess[] = [];
  try {
    return await fn(tmp, children);
  } finally {
    await Promise.all(children.reverse().map(stopChild));
    rmSync(tmp, { recursive: true, force: true });
    tmpDirs.delete(tmp);
  }
}

/** Reads a child's stdout one JSON line at a time, each read bounded. */
export class Lines {
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
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          throw new Error(`bench/load: not a JSON line while waiting for ${what}: ${line.slice(0, 200)}`);
        }
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

  /** The next event, which must be `want`; an "error" event (or any other) throws. */
  async expect(want: string, what: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const e = await this.next(what, timeoutMs);
    if (e.event !== want) throw new Error(`bench/load: ${what}: got ${e.event === "error" ? `error: ${String(e.error)}` : JSON.stringify(e).slice(0, 200)}`);
    return e;
  }
}

/**
 * Starts an impl's launcher and waits for its {"port": P} line. The process
 * measured is the launcher itself, or the one it names with "pid" (a
 * launcher that runs the real server as its child, as ngircd.ts does).
 */
export async function startServer(impl: Impl, ctx: ServerContext, children: Subprocess[]): Promise<{ server: { pid: number }; gen: GeneratorContext }> {
  const launcher = spawnScript(impl.server(ctx));
  children.push(launcher);
  const hello = await new Lines(launcher.stdout).next(`the ${impl.name} server's port`, impl.startTimeoutMs ?? 30_000);
  if (typeof hello.port !== "number") throw new Error(`bench/load: ${impl.name} server: ${JSON.stringify(hello).slice(0, 200)}`);
  const pid = typeof hello.pid === "number" ? hello.pid : launcher.pid;
  cpuSeconds(pid); // throws now, not mid-run, if it cannot be read
  return { server: { pid }, gen: { ...ctx, port: hello.port, hello } };
}

// ---------------------------------------------------------------------------
// /proc sampling

const CLK_TCK = (() => {
  try {
    const r = Bun.spawnSync(["getconf", "CLK_TCK"], { timeout: 5000 });
    const n = Number(r.stdout.toString().trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system, all threads) of a process so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

/** `count` RSS readings of `pid`, `gapMs` apart, after waiting `gapMs` first. */
async function rssSamples(pid: number, count: number, gapMs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    await Bun.sleep(gapMs);
    out.push(rssKiB(pid));
  }
  return out;
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const sendersFor = (n: number): number => Math.max(1, Math.round(n / 10));

// ---------------------------------------------------------------------------
// Relay throughput (closed loop)

export interface ThroughputConfig {
  warmupMs: number;
  sampleMs: number;
  samples: number;
  window: number;
}

export interface ThroughputResult {
  impl: string;
  n: number;
  senders: number;
  setupMs: number;
  deliveriesPerSec: number;
  serverCpuPerMillion: number;
  deliveriesPerServerCpuSec: number;
  serverCores: number;
  generatorCores: number;
  serverRssMiB: number;
  nacks: number;
  disconnected: number;
  samples: { seconds: number; deliveries: number; serverCpu: number; generatorCpu: number }[];
}

interface Mark {
  t: number;
  deliveries: number;
  nacks: number;
  closed: number;
  serverCpu: number;
  generatorCpu: number;
  rssKiB: number;
}

function readMark(e: Record<string, unknown>, server: { pid: number }, gen: Subprocess): Mark {
  return {
    t: e.t as number,
    deliveries: e.deliveries as number,
    nacks: (e.nacks as number) ?? 0,
    closed: (e.closed as number) ?? 0,
    serverCpu: cpuSeconds(server.pid),
    generatorCpu: cpuSeconds(gen.pid),
    rssKiB: rssKiB(server.pid),
  };
}

/** Starts a room generator (its script and impl flags, then `mode`'s) for N members on `ports`; resolves once all have joined. */
async function startGenerator(label: string, generator: string[], ports: number[], n: number, mode: string[], children: Subprocess[]) {
  const client = spawnScript([...generator, "--port", ports.join(","), "--n", String(n), "--senders", String(sendersFor(n)), ...mode]);
  children.push(client);
  const lines = new Lines(client.stdout);
  const ready = await lines.expect("ready", `the ${label} generator to connect ${n} members`, 120_000);
  return { client, lines, ready };
}

export async function runThroughput(impl: Impl, n: number, cfg: ThroughputConfig): Promise<ThroughputResult> {
  const senders = sendersFor(n);
  return withScratch("load", async (tmp, children) => {
    const { server, gen } = await startServer(impl, { tmp, users: n, credsPath: join(tmp, "creds.json") }, children);
    const { client, lines, ready } = await startGenerator(impl.name, impl.generator(gen), [gen.port], n, ["--window", String(cfg.window), "--warmup", String(cfg.warmupMs), "--sample", String(cfg.sampleMs), "--samples", String(cfg.samples)], children);
    const marks: Mark[] = [];
    for (let i = 0; i <= cfg.samples; i++) {
      marks.push(readMark(await lines.expect("mark", "a sample mark", cfg.warmupMs + cfg.sampleMs + 15_000), server, client));
    }
    const done = await lines.expect("done", "the generator to finish", 15_000);
    if (done.error) console.error(`bench/load: ${impl.name} N=${n}: ${String(done.error)}`);
    const samples = marks.slice(1).map((b, i) => {
      const a = marks[i]!;
      return { seconds: (b.t - a.t) / 1000, deliveries: b.deliveries - a.deliveries, serverCpu: b.serverCpu - a.serverCpu, generatorCpu: b.generatorCpu - a.generatorCpu };
    });
    const last = marks[marks.length - 1]!;
    return {
      impl: impl.name,
      n,
      senders,
      setupMs: ready.setup_ms as number,
      deliveriesPerSec: median(samples.map((s) => s.deliveries / s.seconds)),
      serverCpuPerMillion: median(samples.map((s) => (s.deliveries > 0 ? (s.serverCpu / s.deliveries) * 1e6 : Number.NaN))),
      deliveriesPerServerCpuSec: median(samples.map((s) => (s.serverCpu > 0 ? s.deliveries / s.serverCpu : Number.NaN))),
      serverCores: median(samples.map((s) => s.serverCpu / s.seconds)),
      generatorCores: median(samples.map((s) => s.generatorCpu / s.seconds)),
      serverRssMiB: Math.max(...marks.map((m) => m.rssKiB)) / 1024,
      nacks: last.nacks,
      disconnected: last.closed,
      samples,
    };
  });
}

// ---------------------------------------------------------------------------
// Latency at a fixed offered load (open loop)

export interface LatencyConfig {
  /** Offered deliveries per second. */
  rate: number;
  warmupMs: number;
  seconds: number;
  drainMs: number;
}

export interface LatencyResult {
  impl: string;
  n: number;
  senders: number;
  offered: number;
  p50: number;
  p99: number;
  p999: number;
  count: number;
  /** Achieved deliveries per second during the window. */
  rate: number;
  capped: boolean;
  missing: number;
  serverCores: number;
  generatorCores: number;
  serverCpuPerMillion: number;
  /** Say → ack latency of the window's says (ms), where the generator reports it (securechat's). */
  ackP50: number;
  ackP99: number;
  ackP999: number;
  ackMissing: number;
}

/** A process (or a group of them) whose CPU time a latency window charges per delivery. */
export interface Measured {
  name: string;
  cpuSeconds(): number;
}

export interface LatencyWindow {
  result: Omit<LatencyResult, "impl" | "serverCores" | "serverCpuPerMillion">;
  /** By Measured name: CPU-seconds per million deliveries, and cores busy, over the window. */
  cpuPerMillion: Record<string, number>;
  cores: Record<string, number>;
}

/**
 * Runs the open-loop generator (`generator`: its script and impl-specific
 * flags) against `ports` at cfg.rate with N members, and charges the CPU
 * time of each of `measured` over the window to the deliveries in it.
 */
export async function latencyWindow(label: string, generator: string[], ports: number[], n: number, cfg: LatencyConfig, measured: Measured[], children: Subprocess[]): Promise<LatencyWindow> {
  const senders = sendersFor(n);
  const { client, lines } = await startGenerator(label, generator, ports, n, ["--rate", String(cfg.rate), "--warmup", String(cfg.warmupMs), "--seconds", String(cfg.seconds), "--drain", String(cfg.drainMs)], children);
  const read = (e: Record<string, unknown>) => ({ t: e.t as number, deliveries: e.deliveries as number, cpu: measured.map((m) => m.cpuSeconds()), generatorCpu: cpuSeconds(client.pid) });
  const a = read(await lines.expect("mark", "the start of the latency window", cfg.warmupMs + 15_000));
  const b = read(await lines.expect("mark", "the end of the latency window", cfg.seconds * 1000 + 15_000));
  const lat = await lines.expect("latency", "the latency figures", cfg.drainMs + 30_000);
  const done = await lines.expect("done", "the generator to finish", 15_000);
  if (done.error) console.error(`bench/load: ${label} latency N=${n}: ${String(done.error)}`);
  const secs = (b.t - a.t) / 1000;
  const deliveries = b.deliveries - a.deliveries;
  const num = (x: unknown): number => (typeof x === "number" ? x : Number.NaN);
  const cpuPerMillion: Record<string, number> = {};
  const cores: Record<string, number> = {};
  measured.forEach((m, i) => {
    const used = b.cpu[i]! - a.cpu[i]!;
    cpuPerMillion[m.name] = deliveries > 0 ? (used / deliveries) * 1e6 : Number.NaN;
    cores[m.name] = used / secs;
  });
  return {
    result: {
      n,
      senders,
      offered: cfg.rate,
      p50: num(lat.p50),
      p99: num(lat.p99),
      p999: num(lat.p999),
      count: num(lat.count),
      rate: typeof lat.rate === "number" ? lat.rate : deliveries / secs,
      capped: lat.capped === true,
      missing: typeof lat.missing === "number" ? lat.missing : 0,
      generatorCores: (b.generatorCpu - a.generatorCpu) / secs,
      ackP50: num(lat.ack_p50),
      ackP99: num(lat.ack_p99),
      ackP999: num(lat.ack_p999),
      ackMissing: typeof lat.ack_missing === "number" ? lat.ack_missing : 0,
    },
    cpuPerMillion,
    cores,
  };
}

export async function runLatency(impl: Impl, n: number, cfg: LatencyConfig): Promise<LatencyResult> {
  return withScratch("latency", async (tmp, children) => {
    const { server, gen } = await startServer(impl, { tmp, users: n, credsPath: join(tmp, "creds.json") }, children);
    const w = await latencyWindow(impl.name, impl.generator(gen), [gen.port], n, cfg, [{ name: "server", cpuSeconds: () => cpuSeconds(server.pid) }], children);
    return { ...w.result, impl: impl.name, serverCores: w.cores.server!, serverCpuPerMillion: w.cpuPerMillion.server! };
  });
}

// ---------------------------------------------------------------------------
// Idle connections

export interface IdleConfig {
  /** Connections opened before the "before" reading (one-time costs out of the figure). */
  warm: number;
  conns: number;
  rssReadings: number;
  rssGapMs: number;
}

export interface IdleResult {
  impl: string;
  warm: number;
  conns: number;
  connected: number;
  failed: number;
  retries: number;
  setupMs: number;
  /** Readings as the server is (garbage included). */
  rssBeforeKiB: number[];
  rssAfterKiB: number[];
  kibPerConn: number;
  /** Readings after a forced full GC (impls with `gc`; else the same as above). */
  rssBeforeGcKiB: number[];
  rssAfterGcKiB: number[];
  /** Memory held per connection: the delta after a forced GC. */
  kibPerConnGc: number;
}

/** RSS readings as is, then (if the server can) after a forced GC: SIGUSR2, then the same readings. */
async function rssReadings(impl: Impl, pid: number, cfg: IdleConfig): Promise<{ raw: number[]; gc: number[] }> {
  const raw = await rssSamples(pid, cfg.rssReadings, cfg.rssGapMs);
  if (!impl.gc) return { raw, gc: raw };
  process.kill(pid, "SIGUSR2");
  return { raw, gc: await rssSamples(pid, cfg.rssReadings, cfg.rssGapMs) };
}

export async function runIdle(impl: Impl, cfg: IdleConfig): Promise<IdleResult> {
  if (!impl.idle) throw new Error(`bench/load: ${impl.name} has no idle generator`);
  const idle = impl.idle;
  return withScratch("idle", async (tmp, children) => {
    const { server, gen } = await startServer(impl, { tmp, users: cfg.warm + cfg.conns, credsPath: join(tmp, "creds.json") }, children);
    const client = spawnScriptWithStdin([...idle(gen), "--port", String(gen.port), "--n", String(cfg.conns), "--warm", String(cfg.warm)]);
    children.push(client);
    const lines = new Lines(client.stdout);
    if (cfg.warm > 0) {
      const w = await lines.expect("warm", `the ${impl.name} idle generator to open ${cfg.warm} warm-up connections`, 300_000);
      if (w.failed) console.error(`bench/load: idle ${impl.name}: ${String(w.failed)} warm-up connections failed`);
    }
    const before = await rssReadings(impl, server.pid, cfg);
    if (cfg.warm > 0) {
      client.stdin.write("go\n");
      await client.stdin.flush();
    }
    const ready = await lines.expect("ready", `the ${impl.name} idle generator to connect everyone`, 300_000);
    if (ready.error) console.error(`bench/load: idle ${impl.name}: ${String(ready.failed)} connections failed: ${String(ready.error)}`);
    const after = await rssReadings(impl, server.pid, cfg);
    const connected = ready.connected as number;
    const perConn = (a: number[], b: number[]): number => (connected > 0 ? (median(b) - median(a)) / connected : Number.NaN);
    return {
      impl: impl.name,
      warm: cfg.warm,
      conns: cfg.conns,
      connected,
      failed: ready.failed as number,
      retries: ready.retries as number,
      setupMs: ready.setup_ms as number,
      rssBeforeKiB: before.raw,
      rssAfterKiB: after.raw,
      kibPerConn: perConn(before.raw, after.raw),
      rssBeforeGcKiB: before.gc,
      rssAfterGcKiB: after.gc,
      kibPerConnGc: perConn(before.gc, after.gc),
    };
  });
}

// ---------------------------------------------------------------------------
// Logins (securechat), and TLS handshakes (the Bun TLS relay) as their baseline

export interface LoginConfig {
  warmupMs: number;
  seconds: number;
  concurrency: number;
}

export type LoginKind = "ticket" | "password" | "tls";

export interface LoginResult {
  kind: LoginKind;
  impl: string;
  accounts: number;
  concurrency: number;
  seconds: number;
  logins: number;
  failures: number;
  loginsPerSec: number;
  serverCpuPerLogin: number;
  loginsPerServerCpuSec: number;
  serverCores: number;
  generatorCores: number;
}

async function loginRun(kind: LoginKind, impl: string, accounts: number, server: { pid: number }, genArgs: string[], cfg: LoginConfig, children: Subprocess[]): Promise<LoginResult> {
  const gen = spawnScript(["logins.ts", "client", ...genArgs, "--kind", kind, "--concurrency", String(cfg.concurrency), "--warmup", String(cfg.warmupMs), "--seconds", String(cfg.seconds)]);
  children.push(gen);
  try {
    const lines = new Lines(gen.stdout);
    const marks: { t: number; logins: number; failures: number; serverCpu: number; generatorCpu: number }[] = [];
    for (let i = 0; i < 2; i++) {
      const e = await lines.expect("mark", `a ${kind} login mark`, cfg.warmupMs + cfg.seconds * 1000 + 30_000);
      marks.push({ t: e.t as number, logins: e.logins as number, failures: e.failures as number, serverCpu: cpuSeconds(server.pid), generatorCpu: cpuSeconds(gen.pid) });
    }
    const done = await lines.expect("done", "the login generator to finish", 40_000);
    if (done.error) console.error(`bench/load: ${kind} logins: ${String(done.error)}`);
    const [a, b] = [marks[0]!, marks[1]!];
    const secs = (b.t - a.t) / 1000;
    const logins = b.logins - a.logins;
    const cpu = b.serverCpu - a.serverCpu;
    return {
      kind,
      impl,
      accounts,
      concurrency: cfg.concurrency,
      seconds: secs,
      logins,
      failures: b.failures - a.failures,
      loginsPerSec: logins / secs,
      serverCpuPerLogin: logins > 0 ? cpu / logins : Number.NaN,
      loginsPerServerCpuSec: cpu > 0 ? logins / cpu : Number.NaN,
      serverCores: cpu / secs,
      generatorCores: (b.generatorCpu - a.generatorCpu) / secs,
    };
  } finally {
    await stopChild(gen);
  }
}

/** Ticket and password logins against securechat (one server for both). */
export async function runLogins(cfg: LoginConfig): Promise<LoginResult[]> {
  const TICKET_USERS = 64;
  const PW_USERS = 8;
  return withScratch("logins", async (tmp, children) => {
    const credsPath = join(tmp, "creds.json");
    const server = spawnScript(["logins.ts", "server", "--data", join(tmp, "data"), "--users", String(TICKET_USERS), "--pw-users", String(PW_USERS), "--creds", credsPath]);
    children.push(server);
    const hello = await new Lines(server.stdout).next("the login server's port", 120_000);
    if (typeof hello.port !== "number") throw new Error(`bench/load: login server: ${JSON.stringify(hello).slice(0, 200)}`);
    const args = ["--port", String(hello.port), "--creds", credsPath];
    return [
      await loginRun("ticket", SUBJECT, TICKET_USERS, server, args, cfg, children),
      await loginRun("password", SUBJECT, PW_USERS, server, args, cfg, children),
    ];
  });
}

/** TLS handshakes (connect, handshake, close) against an impl's TLS launcher. */
export async function runTlsHandshakes(impl: Impl, cfg: LoginConfig): Promise<LoginResult> {
  return withScratch("handshakes", async (tmp, children) => {
    const { server, gen } = await startServer(impl, { tmp, users: 0, credsPath: join(tmp, "creds.json") }, children);
    return loginRun("tls", impl.name, 0, server, ["--port", String(gen.port), ...caArgs(gen)], cfg, children);
  });
}

// ---------------------------------------------------------------------------
// Cold start

export interface ColdStartResult {
  /** dist/securechat --help, ms (median), or null if not built. */
  securechatMs: number | null;
  securechatRuns: number[];
  /** An empty `bun build --compile` binary, ms (median), or null if it could not be built. */
  emptyBinaryMs: number | null;
  emptyBinaryRuns: number[];
  note: string | null;
}

function timeRuns(argv: string[], runs: number): number[] {
  const out: number[] = [];
  // One untimed run first: "cold" is a fresh process, not a cold page cache.
  for (let i = 0; i <= runs; i++) {
    const t0 = performance.now();
    const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "ignore", stderr: "ignore", timeout: 10_000 });
    const ms = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode ?? r.signalCode}`);
    if (i > 0) out.push(ms);
  }
  return out;
}

export async function runColdStart(runs: number): Promise<ColdStartResult> {
  const binary = join(ROOT, "dist", "securechat");
  const result: ColdStartResult = { securechatMs: null, securechatRuns: [], emptyBinaryMs: null, emptyBinaryRuns: [], note: null };
  if (existsSync(binary)) {
    result.securechatRuns = timeRuns([binary, "--help"], runs);
    result.securechatMs = median(result.securechatRuns);
  } else result.note = "dist/securechat not built (bun run build)";
  await withScratch("cold", async (tmp) => {
    const src = join(tmp, "empty.ts");
    const exe = join(tmp, "empty");
    writeFileSync(src, "export {};\n");
    const built = Bun.spawnSync([process.execPath, "build", "--compile", src, "--outfile", exe], { stdin: "ignore", stdout: "ignore", stderr: "pipe", timeout: 60_000 });
    if (built.exitCode === 0 && existsSync(exe)) {
      try {
        result.emptyBinaryRuns = timeRuns([exe], runs);
        result.emptyBinaryMs = median(result.emptyBinaryRuns);
      } catch (e) {
        result.note = [result.note, `empty binary: ${e instanceof Error ? e.message : String(e)}`].filter(Boolean).join("; ");
      }
    } else result.note = [result.note, `empty binary not built: ${built.stderr.toString().trim().slice(0, 200)}`].filter(Boolean).join("; ");
  });
  return result;
}
