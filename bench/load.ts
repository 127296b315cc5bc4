/**
 * Load benchmark: the real securechat server, in its own process, driven
 * through the real protocol by a load generator in another process, against
 * a bare relay (same framing and socket code, no crypto, no JSON) measured
 * in the same run.
 *
 *   bun run bench/load.ts            N = 10, 100, 500; 3 × 5 s samples each
 *   bun run bench/load.ts --quick    N = 10, 100; 3 × 2.5 s samples (< 60 s)
 *   bun run bench/load.ts --json     one JSON object on stdout
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

const USAGE = "usage: bun run bench/load.ts [--quick] [--json]";
const argv = new Set(Bun.argv.slice(2));
for (const a of argv) {
  if (a !== "--quick" && a !== "--json") {
    console.error(`${USAGE} (unknown argument ${a})`);
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
// Main

const machine = { cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, bun: Bun.version, platform: `${process.platform}-${process.arch}` };
const started = performance.now();
const results: Result[] = [];
const progress = (s: string): void => {
  if (!json) console.error(s);
};

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
