/**
 * What one hostile logged-in client costs the server (bench/run.ts --only
 * abuse): the real `securechat serve` process with its default flags (only
 * --port 0, --data and --json are given: a free port, a scratch directory,
 * log lines the bench can read), three accounts registered over the
 * protocol, and room "big" filled with 50 messages of 4 KiB, so that every
 * answer to a `join` or a `history` of it carries ~200 KiB. Each phase runs
 * on a fresh server process over the same data directory (history comes
 * back from the transcript), so one phase's garbage or crash cannot leak
 * into the next. In every phase a bystander (its own process) pings on a
 * fixed schedule and times each pong from the ping's scheduled send time;
 * in the attack phases the attacker (another process) logs in, joins
 * "big", and on the parent's signal:
 *
 *   A   nothing: the bystander alone (the baseline the ratios are to)
 *   B1  ONE record of 2,200 `join`s of "big", then reads nothing
 *   B2  ONE record of 1,400 `history` (limit 1000) of "big", then reads nothing
 *   C1  such records, joins and histories alternating, back to back, reading nothing
 *   C2  the same, reading everything it is sent
 *   C3  records of 1,040 `join`/`leave` pairs of another room, back to back, reading
 *   C4  (with `relogin`) per session the message burst — 30 `say`s of 4 KiB —
 *       then a clean end and a new ticket login, in a loop, reading
 *
 * A and the loops last T seconds; B1 and B2 at least T, and then until the
 * server has been idle (under a quarter of a core) for a second, at most
 * maxSeconds. Meanwhile this process reads the server's CPU time
 * (/proc/PID/stat) every 250 ms and its RSS (/proc/PID/status VmRSS) every
 * 50 ms; past rssCapMiB the server is killed (SIGKILL, by its handle) and
 * the phase ends there. Transcript growth is the size of DATA/transcript
 * before and after, and the lines (entries) appended. A ping still unanswered when the bystander stops (3 s
 * after the phase) counts with its lower bound.
 *
 * `serverCmd` replaces `bun src/main.ts serve` (e.g. an older checkout's
 * src/main.ts, or dist/securechat serve); it must exec the server itself,
 * since its pid is the one measured. Never fails on speed.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Lines, cpuSeconds, rssKiB, spawnCommand, spawnScriptWithStdin, stopChild, withScratch } from "./load.ts";
import { percentile } from "./load/common.ts";

export interface AbuseConfig {
  /** T: phase A and the loops; the least the one-record phases last. */
  seconds: number;
  /** The longest a one-record phase waits for the server to go idle. */
  maxSeconds: number;
  /** The bystander's ping interval (the request rate is 5/s: stay under it). */
  intervalMs: number;
  /** Past this RSS the server is killed and the phase ends. */
  rssCapMiB: number;
  messages: number;
  textBytes: number;
  joins: number;
  histories: number;
  /** Also phase C4 (says across logins). */
  relogin: boolean;
}

export type AttackKind = "join" | "history" | "flood" | "flood-read" | "churn" | "relogin-say";

export interface AbusePhase {
  phase: string;
  describe: string;
  attack: AttackKind | null;
  /** Length of the measured window. */
  seconds: number;
  pings: number;
  /** Pings of the window never answered: counted at their lower bound. */
  missing: number;
  p50: number;
  p99: number;
  max: number;
  serverCpuS: number;
  serverCores: number;
  rssStartMiB: number;
  rssPeakMiB: number;
  transcriptBytes: number;
  transcriptBytesPerSec: number;
  transcriptEntries: number;
  /** One-record phases: from the record to the end of the server's last busy quarter-second. */
  busyS: number | null;
  /** Killed at the RSS cap. */
  capped: boolean;
  /** The server exited by itself. */
  died: boolean;
  attacker: Record<string, unknown> | null;
  /** The attacker process's CPU over the window (it shares the machine's cores with the server). */
  attackerCores: number;
  /** Server log events during the phase, by name and code if any (slow_consumer, "protocol_error flood", …). */
  serverEvents: Record<string, number>;
}

export interface AbuseResult {
  serverCmd: string[];
  setupMs: number;
  joinAnswerBytes: number;
  history: number;
  phases: AbusePhase[];
}

export const DEFAULT_SERVER_CMD = [process.execPath, "src/main.ts", "serve"];
const SERVER_FLAGS = (dataDir: string): string[] => ["--port", "0", "--data", dataDir, "--json"];

const PHASES: { phase: string; attack: AttackKind | null; describe: (c: AbuseConfig) => string }[] = [
  { phase: "A", attack: null, describe: () => "bystander alone" },
  { phase: "B1", attack: "join", describe: (c) => `one record of ${c.joins.toLocaleString("en-US")} joins, not reading` },
  { phase: "B2", attack: "history", describe: (c) => `one record of ${c.histories.toLocaleString("en-US")} history, not reading` },
  { phase: "C1", attack: "flood", describe: () => "such records in a loop, not reading" },
  { phase: "C2", attack: "flood-read", describe: () => "such records in a loop, reading" },
  { phase: "C3", attack: "churn", describe: () => "join/leave records in a loop, reading" },
  { phase: "C4", attack: "relogin-say", describe: () => "30 says of 4 KiB per login, logins in a loop" },
];

const MiB = 1024;
const epochNow = (): number => performance.timeOrigin + performance.now();

/** The server's stdout log lines, counted by event as they come (never kept whole). */
class ServerLog {
  readonly events: Record<string, number> = {};
  listening: string | null = null;
  stderrTail = "";

  constructor(proc: Subprocess<"ignore", "pipe", "pipe">) {
    void (async () => {
      const decoder = new TextDecoder();
      let buf = "";
      try {
        for await (const chunk of proc.stdout) {
          buf += decoder.decode(chunk, { stream: true });
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            this.#line(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
          }
        }
      } catch {
        // the server went away
      }
    })();
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of proc.stderr) this.stderrTail = (this.stderrTail + decoder.decode(chunk, { stream: true })).slice(-2000);
      } catch {
        // the server went away
      }
    })();
  }

  #line(line: string): void {
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const e = typeof j.code === "string" ? `${String(j.event)} ${j.code}` : String(j.event);
    this.events[e] = (this.events[e] ?? 0) + 1;
    if (j.event === "listening") this.listening = String(j.address);
  }
}

interface Serve {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  log: ServerLog;
}

async function startServe(cmd: string[], dataDir: string, children: Subprocess[]): Promise<Serve> {
  const proc = spawnCommand([...cmd, ...SERVER_FLAGS(dataDir)]);
  children.push(proc);
  const log = new ServerLog(proc);
  const deadline = Date.now() + 60_000;
  while (log.listening === null) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`bench/abuse: the server exited (${proc.exitCode ?? proc.signalCode}) before listening: ${log.stderrTail.trim().slice(-500)}`);
    if (Date.now() > deadline) throw new Error("bench/abuse: the server did not log `listening` within 60 s");
    await Bun.sleep(20);
  }
  const port = Number(/:(\d+)$/.exec(log.listening)?.[1]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`bench/abuse: no port in the listening address ${log.listening}`);
  cpuSeconds(proc.pid); // throws now, not mid-phase, if it cannot be read
  return { proc, port, log };
}

/** Sizes of the files in `dir` (the transcript's), by name. */
function fileSizes(dir: string): Map<string, number> {
  try {
    return new Map(readdirSync(dir).map((name) => [name, statSync(join(dir, name)).size]));
  } catch {
    return new Map();
  }
}

/** Bytes and lines appended to the files of `dir` since `before`. */
function appended(dir: string, before: Map<string, number>): { bytes: number; lines: number } {
  let bytes = 0;
  let lines = 0;
  for (const [name, size] of fileSizes(dir)) {
    const from = before.get(name) ?? 0;
    if (size <= from) continue;
    bytes += size - from;
    const fd = openSync(join(dir, name), "r");
    try {
      const buf = Buffer.alloc(1 << 20);
      for (let at = from; at < size; ) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, size - at), at);
        if (n <= 0) break;
        for (let i = 0; i < n; i++) if (buf[i] === 0x0a) lines++;
        at += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  return { bytes, lines };
}

/** The server's RSS every 50 ms and CPU every 250 ms; kills it past the cap. */
class Sampler {
  peakKiB = 0;
  cpu: { t: number; s: number }[] = [];
  capped = false;
  died = false;
  #timer: ReturnType<typeof setInterval>;
  #ticks = 0;

  constructor(
    readonly proc: Subprocess,
    capKiB: number,
  ) {
    const read = (): void => {
      if (this.capped || this.died) return;
      try {
        const rss = rssKiB(proc.pid);
        this.peakKiB = Math.max(this.peakKiB, rss);
        if (rss > capKiB) {
          proc.kill("SIGKILL");
          this.capped = true;
        } else if (this.#ticks++ % 5 === 0) this.cpu.push({ t: performance.now(), s: cpuSeconds(proc.pid) });
      } catch {
        this.died = true;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) this.died ||= !this.capped;
    };
    read();
    this.#timer = setInterval(read, 50);
  }

  /** Cores used over the last `ms` (from the CPU readings). */
  coresOver(ms: number): number {
    const last = this.cpu[this.cpu.length - 1];
    const first = this.cpu.findLast((c) => last !== undefined && last.t - c.t >= ms);
    return last && first ? (last.s - first.s) / ((last.t - first.t) / 1000) : Number.POSITIVE_INFINITY;
  }

  /** Seconds from `t0` (performance.now()) to the end of the last quarter-second the server used more than `cores`. */
  busyUntil(t0: number, cores: number): number {
    let end = 0;
    for (let i = 1; i < this.cpu.length; i++) {
      const a = this.cpu[i - 1]!;
      const b = this.cpu[i]!;
      if (b.t > t0 && (b.s - a.s) / ((b.t - a.t) / 1000) > cores) end = (b.t - t0) / 1000;
    }
    return end;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

const IDLE_CORES = 0.25;

/** A child's CPU seconds, or NaN once it has exited (an attacker that failed says why in its last line). */
function cpuIfAlive(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return Number.NaN;
  }
}

async function runPhase(
  spec: (typeof PHASES)[number],
  cfg: AbuseConfig,
  ctx: { cmd: string[]; dataDir: string; creds: string; children: Subprocess[] },
  progress: (s: string) => void,
): Promise<{ phase: AbusePhase; ready: Record<string, unknown> | null }> {
  const srv = await startServe(ctx.cmd, ctx.dataDir, ctx.children);
  const common = ["--port", String(srv.port), "--creds", ctx.creds];
  const bystander = spawnScriptWithStdin(["abuse.ts", "bystander", ...common, "--interval", String(cfg.intervalMs)]);
  ctx.children.push(bystander);
  const byLines = new Lines(bystander.stdout);
  let attacker: Subprocess<"pipe", "pipe", "inherit"> | null = null;
  let atLines: Lines | null = null;
  let ready: Record<string, unknown> | null = null;
  try {
    await byLines.expect("ready", "the bystander's login", 30_000);
    if (spec.attack) {
      attacker = spawnScriptWithStdin([
        "abuse.ts", "attacker", ...common,
        "--attack", spec.attack,
        "--seconds", String(cfg.maxSeconds + 5),
        "--joins", String(cfg.joins),
        "--histories", String(cfg.histories),
      ]);
      ctx.children.push(attacker);
      atLines = new Lines(attacker.stdout);
      ready = await atLines.expect("ready", "the attacker's login and join", 30_000);
    }
    await Bun.sleep(500); // logins' garbage and the bystander's first pings out of the window
    const events0 = { ...srv.log.events };
    const transcriptDir = join(ctx.dataDir, "transcript");
    const tr0 = fileSizes(transcriptDir);
    const cpu0 = cpuSeconds(srv.proc.pid);
    const attackerCpu0 = attacker ? cpuIfAlive(attacker.pid) : 0;
    const rss0 = rssKiB(srv.proc.pid);
    const sampler = new Sampler(srv.proc, cfg.rssCapMiB * MiB);
    const t0 = performance.now();
    const e0 = epochNow();
    if (attacker) {
      attacker.stdin.write("go\n");
      await attacker.stdin.flush();
    }
    const oneRecord = spec.attack === "join" || spec.attack === "history";
    for (;;) {
      await Bun.sleep(50);
      const s = (performance.now() - t0) / 1000;
      if (sampler.capped || sampler.died) break;
      if (s >= cfg.seconds && (!oneRecord || sampler.coresOver(1000) < IDLE_CORES || s >= cfg.maxSeconds)) break;
    }
    sampler.stop();
    const t1 = performance.now();
    const e1 = epochNow();
    const alive = !sampler.capped && !sampler.died;
    const cpu1 = alive ? cpuSeconds(srv.proc.pid) : (sampler.cpu[sampler.cpu.length - 1]?.s ?? cpu0);
    const tr = appended(transcriptDir, tr0);
    const attackerCpu = attacker ? cpuIfAlive(attacker.pid) - attackerCpu0 : 0;
    const events: Record<string, number> = {};
    for (const [k, v] of Object.entries(srv.log.events)) if (v - (events0[k] ?? 0) > 0) events[k] = v - (events0[k] ?? 0);
    const seconds = (t1 - t0) / 1000;
    if (sampler.capped) progress(`  abuse ${spec.phase}: server RSS past ${cfg.rssCapMiB} MiB after ${seconds.toFixed(1)} s: killed`);

    // The attacker stops first, then the bystander collects the pongs still due.
    let atDone: Record<string, unknown> | null = null;
    if (attacker && atLines) {
      attacker.stdin.write("stop\n");
      await attacker.stdin.flush();
      atDone = await atLines.expect("done", "the attacker's figures", 15_000).catch((e: Error) => ({ error: e.message }));
    }
    bystander.stdin.write("stop\n");
    await bystander.stdin.flush();
    const rtts: number[] = [];
    let missing = 0;
    for (;;) {
      const e = await byLines.next("the bystander's figures", 15_000);
      if (e.event === "rtt") {
        if ((e.t as number) >= e0 && (e.t as number) < e1) rtts.push(e.ms as number);
      } else if (e.event === "done") {
        for (const t of e.outstanding as number[]) {
          if (t >= e0 && t < e1) {
            rtts.push((e.t as number) - t);
            missing++;
          }
        }
        break;
      } else throw new Error(`bench/abuse: bystander: ${JSON.stringify(e).slice(0, 200)}`);
    }
    const sorted = Float64Array.from(rtts).sort();
    const cpu = cpu1 - cpu0;
    const busyS = oneRecord ? sampler.busyUntil(t0, IDLE_CORES) : null;
    return {
      ready,
      phase: {
        phase: spec.phase,
        describe: spec.describe(cfg),
        attack: spec.attack,
        seconds,
        pings: sorted.length,
        missing,
        p50: percentile(sorted, 0.5),
        p99: percentile(sorted, 0.99),
        max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
        serverCpuS: cpu,
        serverCores: cpu / seconds,
        rssStartMiB: rss0 / MiB,
        rssPeakMiB: Math.max(rss0, sampler.peakKiB) / MiB,
        transcriptBytes: tr.bytes,
        transcriptBytesPerSec: tr.bytes / seconds,
        transcriptEntries: tr.lines,
        busyS,
        capped: sampler.capped,
        died: sampler.died,
        attacker: atDone,
        attackerCores: attackerCpu / seconds,
        serverEvents: events,
      },
    };
  } finally {
    if (attacker) await stopChild(attacker);
    await stopChild(bystander);
    await stopChild(srv.proc);
  }
}

export async function runAbuse(cfg: AbuseConfig, serverCmd: string[], progress: (s: string) => void): Promise<AbuseResult> {
  return withScratch("abuse", async (tmp, children) => {
    const dataDir = join(tmp, "data");
    const creds = join(tmp, "creds.json");
    // Setup: three accounts and the room, on a server of its own.
    const srv = await startServe(serverCmd, dataDir, children);
    const setup = spawnScriptWithStdin(["abuse.ts", "setup", "--port", String(srv.port), "--creds", creds, "--messages", String(cfg.messages), "--text", String(cfg.textBytes)]);
    children.push(setup);
    let setupMs: number;
    try {
      setupMs = (await new Lines(setup.stdout).expect("ready", "the accounts and the room", 120_000)).setup_ms as number;
    } finally {
      await stopChild(setup);
      await stopChild(srv.proc);
    }
    const result: AbuseResult = { serverCmd, setupMs, joinAnswerBytes: Number.NaN, history: Number.NaN, phases: [] };
    for (const spec of PHASES.filter((p) => p.attack !== "relogin-say" || cfg.relogin)) {
      const { phase, ready } = await runPhase(spec, cfg, { cmd: serverCmd, dataDir, creds, children }, progress);
      if (ready && Number.isNaN(result.joinAnswerBytes)) {
        result.joinAnswerBytes = ready.join_answer_bytes as number;
        result.history = ready.history as number;
        if (result.history < cfg.messages) throw new Error(`bench/abuse: the attacker's join of big showed ${result.history} of ${cfg.messages} messages of history`);
      }
      result.phases.push(phase);
      progress(
        `abuse ${phase.phase} (${phase.describe}): ${phase.seconds.toFixed(1)} s, bystander p50 ${fmtMs(phase.p50)} p99 ${fmtMs(phase.p99)} ms (${phase.pings} pings, ${phase.missing} unanswered), ` +
          `server ${phase.serverCpuS.toFixed(2)} CPU-s, RSS ${phase.rssStartMiB.toFixed(0)} → ${phase.rssPeakMiB.toFixed(0)} MiB${phase.capped ? " (killed at the cap)" : ""}, transcript +${(phase.transcriptBytes / 1024).toFixed(1)} KiB`,
      );
    }
    return result;
  });
}

const fmtMs = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 0) : "-");

/** The section's table (the bench's style: first column left, figures right) and its notes. */
export function abuseTable(r: AbuseResult, cfg: AbuseConfig): string[] {
  const base = r.phases.find((p) => p.phase === "A");
  const num = (x: number | null | undefined, digits: number): string =>
    x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const times = (x: number, b: number | undefined): string => (b === undefined || !Number.isFinite(x) || !Number.isFinite(b) || b <= 0 ? "-" : `${num(x / b, x / b < 10 ? 1 : 0)}×`);
  const header = ["", "s", "pings", "p50 ms", "p99 ms", "p50 ×A", "p99 ×A", "CPU-s", "cores", "cores ×A", "RSS MiB", "peak MiB", "transcript KiB/s"];
  const body = r.phases.map((p) => [
    `${p.phase} ${p.describe}${p.capped ? " (killed at the RSS cap)" : p.died ? " (server died)" : ""}`,
    num(p.seconds, 1),
    p.missing > 0 ? `${p.pings} (${p.missing} lost)` : String(p.pings),
    num(p.p50, p.p50 < 10 ? 2 : 0),
    num(p.p99, p.p99 < 10 ? 2 : 0),
    p === base ? "" : times(p.p50, base?.p50),
    p === base ? "" : times(p.p99, base?.p99),
    num(p.serverCpuS, 2),
    num(p.serverCores, 2),
    p === base ? "" : times(p.serverCores, base?.serverCores),
    num(p.rssStartMiB, 0),
    num(p.rssPeakMiB, 0),
    num(p.transcriptBytesPerSec / 1024, 1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const out = [
    `abuse: one hostile logged-in client against \`${r.serverCmd.map((a) => (a === process.execPath ? "bun" : a)).join(" ")}\` (default flags; only --port 0 --data DIR --json given), a fresh server per phase; ` +
      `room "big" holds ${cfg.messages} × ${cfg.textBytes} B (a join's answer: ${num(r.joinAnswerBytes / 1024, 0)} KiB); a bystander pings every ${cfg.intervalMs} ms, open loop`,
    "",
    line(header),
    line(widths.map((w) => "-".repeat(w))),
    ...body.map(line),
    "",
  ];
  for (const p of r.phases) {
    const a = p.attacker;
    if (!a) continue;
    const ev = Object.entries(p.serverEvents)
      .filter(([k]) => k !== "listening" && k !== "host_key_loaded")
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    const parts =
      "error" in a
        ? [`attacker: ${String(a.error)}`]
        : [
            `${num(a.records as number, 0)} record(s), ${num(a.requests as number, 0)} requests sent (${num((a.sent as number) / 1024 / 1024, 1)} MiB)`,
            `${num((a.received as number) / 1024 / 1024, 1)} MiB read`,
            `attacker ${num(p.attackerCores, 2)} cores`,
            `${a.logins} login(s)${(a.closed as number) > 0 ? `, closed by the server ${a.closed} time(s)` : ""}${(a.login_failures as number) > 0 ? `, ${a.login_failures} failed` : ""}`,
          ];
    if (p.busyS !== null) parts.push(`server busy ${num(p.busyS, 1)} s after the record`);
    if (p.transcriptEntries > 0) {
      parts.push(
        `transcript +${num(p.transcriptEntries, 0)} entries, ${num(p.transcriptBytes / 1024, 1)} KiB: ${num(p.transcriptEntries / p.seconds, 0)} entries/s, ${num(p.transcriptBytesPerSec / 1024, 1)} KiB/s` +
          (p.attack === "churn" ? " (the outside review: 4.6 MiB/s)" : ""),
      );
    }
    out.push(`${p.phase}: ${parts.join("; ")}${ev ? `; server log: ${ev}` : ""}.`);
  }
  out.push(
    `p50/p99: the bystander's ping → pong, from each ping's scheduled send time, pings scheduled in the window (a nearest-rank p99 of fewer than 100 pings is the slowest); "lost": unanswered 3 s after the phase, counted at that lower bound. ` +
      `CPU-s: the server's user + system time in the window; RSS: at the start and the peak (VmRSS every 50 ms; killed past ${cfg.rssCapMiB} MiB). ×A: the ratio to phase A in the same run (A's CPU is a few 10 ms clock ticks, so "cores ×A" is coarse: read "cores").`,
  );
  return out;
}
