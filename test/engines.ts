/**
 * Real PostgreSQL and Redis for tests and benches, started from Debian's
 * packages (`postgresql`, `redis-server`) and stopped by their own handle.
 *
 * startPostgres(): `initdb` in a fresh temporary directory (data, unix socket
 * and server log all inside it), then the `postgres` binary itself on its own
 * free port on 127.0.0.1, with a random password (scram-sha-256 over TCP; the
 * password reaches initdb through a 0600 file removed at once, never argv).
 * fsync and synchronous_commit stay on unless `{ fsync: false }`.
 * startRedis(): `redis-server` on its own free port on 127.0.0.1 with no
 * persistence (`save ""`, `appendonly no`, `dir` a temporary directory), its
 * configuration and random password given on stdin, never argv.
 *
 * Each handle has `url` (with the password: keep it out of logs), `pid` (the
 * server process itself, not a wrapper), `restart()` (same port, same URL;
 * Postgres keeps its data, Redis comes back empty), `stop()` (the process is
 * gone and the temporary directory removed when it resolves) and
 * `cpuSeconds()` (user+system time of the engine's processes so far).
 *
 * Users. PostgreSQL refuses to run as root: run as root (CI, containers), the
 * temporary directory is given to the `postgres` OS user that Debian's
 * package creates and initdb/postgres run as that user (setuid in the spawn,
 * no su/runuser in between, so the handle's pid is the postmaster). Run as
 * anyone else (a developer's machine), initdb and postgres run as that user,
 * who owns the directory; nothing needs sudo. redis-server runs as the
 * caller in both cases.
 *
 * Binaries are looked up on PATH, then in /usr/lib/postgresql/<newest>/bin
 * (where Debian puts postgres, initdb and pg_ctl). `engines()` says which are
 * missing: a test file skips its engine tests with a loud console.warn naming
 * the package to install, except under CI=true, where a missing binary is a
 * failure (`requireEngines` throws).
 *
 * Any engine still running when the process exits is killed and its directory
 * removed, so a failed test leaves nothing behind. (A test process killed by
 * SIGKILL runs no exit handler: its servers keep running until killed, and a
 * postgres whose directory is later removed stops itself within a minute.)
 */
import { chownSync, closeSync, existsSync, openSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface EngineHandle {
  /** postgres://… or redis://…, with the password. */
  readonly url: string;
  readonly port: number;
  /** The server process (the postmaster, or redis-server). */
  readonly pid: number;
  /** Its temporary directory, removed by stop(). */
  readonly dir: string;
  /**
   * Stops the server and starts it again on the same port. `crash` stops it
   * as a crash would; `downMs`: it stays down that long; `whileDown` runs
   * once it is gone, and the start waits for it (an outage a test acts in).
   */
  restart(opts?: { crash?: boolean; downMs?: number; whileDown?: () => Promise<void> }): Promise<void>;
  /** Stops the server and removes its directory; idempotent. */
  stop(): Promise<void>;
  /** User+system CPU seconds used by the server's processes since they started (this run only). */
  cpuSeconds(): number;
}

export interface PostgresHandle extends EngineHandle {
  readonly database: string;
  readonly user: string;
}

export type RedisHandle = EngineHandle;

const PG_PACKAGE = "postgresql";
const REDIS_PACKAGE = "redis-server";

function onPath(name: string): string | null {
  return Bun.which(name);
}

/** The directory holding initdb and postgres: PATH first, then Debian's newest /usr/lib/postgresql/N/bin. */
function postgresBin(): string | null {
  const initdb = onPath("initdb");
  const postgres = onPath("postgres");
  if (initdb && postgres) {
    const dir = initdb.slice(0, initdb.lastIndexOf("/"));
    if (existsSync(join(dir, "postgres"))) return dir;
  }
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, "bin", "initdb")) && existsSync(join(root, v, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], "bin") : null;
}

export interface EnginesFound {
  postgres: string | null;
  redis: string | null;
}

/** Where the engines' binaries are, or null for those missing. */
export function engines(): EnginesFound {
  return { postgres: postgresBin(), redis: onPath("redis-server") ?? (existsSync("/usr/bin/redis-server") ? "/usr/bin/redis-server" : null) };
}

type Engine = "postgres" | "redis";

/**
 * What to do about the named engines given what was found: run; skip, with a
 * loud warning naming the Debian packages to install; or, under CI=true, fail.
 */
export function engineVerdict(which: Engine[], found: EnginesFound, ci: boolean): { run: true } | { run: false; warning: string } {
  const missing = which.filter((w) => found[w] === null);
  if (missing.length === 0) return { run: true };
  const packages = missing.map((m) => (m === "postgres" ? PG_PACKAGE : REDIS_PACKAGE)).join(" ");
  const what = `${missing.join(" and ")} not found (looked on PATH and in /usr/lib/postgresql/*/bin)`;
  if (ci) throw new Error(`${what}: CI must install them (apt-get install -y ${packages})`);
  return {
    run: false,
    warning: `\n!!! SKIPPING tests that need ${missing.join(" and ")}: ${what}.\n!!! Install them to run these tests: sudo apt-get install -y ${packages}\n`,
  };
}

/**
 * True when every named engine is installed. When one is missing: under
 * CI=true it throws (CI must install it); elsewhere it warns loudly, naming
 * the Debian package, and returns false so the caller skips.
 */
export function requireEngines(...which: Engine[]): boolean {
  const v = engineVerdict(which, engines(), process.env.CI === "true");
  if (!v.run) console.warn(v.warning);
  return v.run;
}

/** A port free on 127.0.0.1 right now (the caller retries if another process takes it first). */
function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

function secret(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url");
}

function runAsPostgres(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const id = (flag: string): number => {
    const r = Bun.spawnSync(["id", flag, "postgres"], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error("running as root, PostgreSQL needs the `postgres` OS user (Debian's postgresql package creates it)");
    return Number(r.stdout.toString().trim());
  };
  return { uid: id("-u"), gid: id("-g") };
}

const CLK_TCK = (() => {
  const r = Bun.spawnSync(["getconf", "CLK_TCK"], { stdout: "pipe" });
  const n = Number(r.stdout.toString().trim());
  return n > 0 ? n : 100;
})();

/** utime+stime (fields 14, 15) and cutime+cstime (16, 17) of a process, in ticks; null if gone. */
function stat(pid: number): { ppid: number; self: number; children: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): field n is f[n - 3].
  return { ppid: Number(f[1]), self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
}

/** CPU seconds of a process, its live children and its reaped children. */
export function treeCpuSeconds(pid: number): number {
  const top = stat(pid);
  if (!top) return 0;
  let ticks = top.self + top.children;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(Number(d));
    if (s && s.ppid === pid) ticks += s.self;
  }
  return ticks / CLK_TCK;
}

/** True while a process with this pid exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Waits until `ready()` or the process exits; throws with the log's tail on exit or timeout. */
async function waitReady(proc: Bun.Subprocess, ready: () => boolean, log: string, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await proc.exited;
      const tail = existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-15).join("\n") : "(no log)";
      throw new Error(`${what} did not start (${proc.exitCode !== null ? `exit ${proc.exitCode}` : proc.signalCode ?? "timeout"}):\n${tail}`);
    }
    await Bun.sleep(20);
  }
}

/** Signals a process and waits for it; escalates to SIGKILL after `graceMs`. */
async function halt(proc: Bun.Subprocess, signal: NodeJS.Signals, graceMs = 30_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

/** Engines still running, killed if the process exits without stopping them. */
const live = new Map<number, { proc: Bun.Subprocess; dir: string }>();
process.on("exit", () => {
  for (const { proc, dir } of live.values()) {
    try {
      proc.kill("SIGKILL");
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  }
});

export interface PostgresOptions {
  /** fsync on (default) or off (faster; for tests that do not measure durability). */
  fsync?: boolean;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresHandle> {
  const bin = postgresBin();
  if (!bin) throw new Error(`postgres not found: apt-get install -y ${PG_PACKAGE}`);
  const owner = runAsPostgres();
  const dir = mkdtempSync(join(tmpdir(), "securechat-pg-"));
  const data = join(dir, "data");
  const log = join(dir, "postgres.log");
  const user = "postgres";
  const database = "postgres";
  const password = secret();
  const as = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C", TZ: "UTC" };
  try {
    if (owner) chownSync(dir, owner.uid, owner.gid);
    const pwfile = join(dir, "pw");
    writeFileSync(pwfile, password, { mode: 0o600 });
    if (owner) chownSync(pwfile, owner.uid, owner.gid);
    const init = Bun.spawnSync(
      [join(bin, "initdb"), "-D", data, "-U", user, "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
        "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
      { ...as, env, stdout: "pipe", stderr: "pipe" },
    );
    rmSync(pwfile, { force: true });
    if (init.exitCode !== 0) throw new Error(`initdb failed (exit ${init.exitCode}):\n${init.stderr.toString()}${init.stdout.toString()}`);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const fsync = opts.fsync ?? true;
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: dir,
    fsync: fsync ? "on" : "off",
    synchronous_commit: fsync ? "on" : "off",
    full_page_writes: fsync ? "on" : "off",
    max_connections: "200",
    shared_buffers: "64MB",
    ...opts.settings,
  };
  const args = (port: number): string[] =>
    [join(bin, "postgres"), "-D", data, "-p", String(port), ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
  const server = await supervise({
    what: "postgres",
    dir,
    log,
    ready: "ready to accept connections",
    busy: /could not (create|bind)|Address already in use/i,
    spawn: (port, out) => Bun.spawn(args(port), { ...as, env, cwd: dir, stdin: "ignore", stdout: out, stderr: out }),
    // SIGINT: fast shutdown (what `pg_ctl stop -m fast` sends); SIGQUIT: immediate, recovered from the WAL at the next start.
    stopSignal: "SIGINT",
    crashSignal: "SIGQUIT",
  });
  return Object.assign(server, { url: `postgres://${user}:${password}@127.0.0.1:${server.port}/${database}`, user, database });
}

export async function startRedis(): Promise<RedisHandle> {
  const bin = engines().redis;
  if (!bin) throw new Error(`redis-server not found: apt-get install -y ${REDIS_PACKAGE}`);
  const dir = mkdtempSync(join(tmpdir(), "securechat-redis-"));
  const log = join(dir, "redis.log");
  const password = secret();
  // The configuration (with the password) goes on stdin, so no secret is in argv.
  const config = (port: number): string =>
    [
      `port ${port}`, "bind 127.0.0.1", "protected-mode yes", `requirepass ${password}`,
      'save ""', "appendonly no", `dir ${dir}`, "daemonize no", `logfile ""`, "loglevel notice",
    ].join("\n") + "\n";
  const server = await supervise({
    what: "redis-server",
    dir,
    log,
    ready: "Ready to accept connections",
    busy: /Address already in use|Could not create server TCP/i,
    spawn: (port, out) => Bun.spawn([bin, "-"], { cwd: dir, stdin: new Blob([config(port)]), stdout: out, stderr: out }),
    // SIGTERM: redis shuts down, and with no save points writes no dump; SIGKILL: a crash.
    stopSignal: "SIGTERM",
    crashSignal: "SIGKILL",
  });
  return Object.assign(server, { url: `redis://:${password}@127.0.0.1:${server.port}` });
}

interface Supervised {
  what: string;
  dir: string;
  log: string;
  /** The log line that says this start is ready. */
  ready: string;
  /** A failed start that another process's taking the port explains (then a new port is tried). */
  busy: RegExp;
  spawn(port: number, logFd: number): Bun.Subprocess;
  stopSignal: NodeJS.Signals;
  crashSignal: NodeJS.Signals;
}

/** Starts a server on a free port and returns its handle (without `url`, which the caller adds). */
async function supervise(s: Supervised): Promise<Omit<EngineHandle, "url">> {
  let port = 0;
  let proc: Bun.Subprocess;
  let startedAt = 0;
  const launch = async (): Promise<void> => {
    // The ready line appears once per start: look for it after this start's beginning of the log.
    const from = existsSync(s.log) ? readFileSync(s.log, "utf8").length : 0;
    const out = openSync(s.log, "a");
    proc = s.spawn(port, out);
    closeSync(out);
    live.set(proc.pid, { proc, dir: s.dir });
    try {
      await waitReady(proc, () => readFileSync(s.log, "utf8").slice(from).includes(s.ready), s.log, s.what);
    } finally {
      if (proc.exitCode !== null || proc.signalCode !== null) live.delete(proc.pid);
    }
    startedAt = treeCpuSeconds(proc.pid);
  };
  for (let attempt = 0; ; attempt++) {
    port = freePort();
    try {
      await launch();
      break;
    } catch (e) {
      if (!s.busy.test(String(e)) || attempt >= 4) {
        rmSync(s.dir, { recursive: true, force: true });
        throw e;
      }
    }
  }
  let cpuBefore = 0;
  let stopped = false;
  const down = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    cpuBefore += Math.max(0, treeCpuSeconds(p.pid) - startedAt);
    await halt(p, signal);
    live.delete(p.pid);
  };
  return {
    get port() {
      return port;
    },
    get pid() {
      return proc.pid;
    },
    dir: s.dir,
    async restart(o = {}) {
      if (stopped) throw new Error(`${s.what} was stopped`);
      await down(o.crash ? s.crashSignal : s.stopSignal);
      if (o.downMs) await Bun.sleep(o.downMs);
      await o.whileDown?.();
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await down(s.stopSignal);
      rmSync(s.dir, { recursive: true, force: true });
    },
    cpuSeconds() {
      return cpuBefore + (stopped ? 0 : Math.max(0, treeCpuSeconds(proc.pid) - startedAt));
    },
  };
}
