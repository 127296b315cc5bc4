/**
 * A real-world peer for the load benchmark: Debian's ngIRCd (C, single
 * process, epoll) serving the same room workload over TLS, driven by
 * bench/load/irc.ts. Only where `ngircd` and `openssl` are installed
 * (`apt-get install ngircd`); see ngircdAvailable().
 *
 *   bun run bench/load/ngircd.ts --dir DIR [--nodelay]
 *
 * Writes into DIR (which the caller owns and removes): a self-signed P-256
 * certificate made with openssl, the RFC 7919 ffdhe2048 group (so a GnuTLS
 * build doesn't generate DH parameters at start), ngircd.conf and
 * ngircd.log. The configuration listens on 127.0.0.1 only, on ports picked
 * here (one plain, one TLS), with every limit ngIRCd has opened up:
 * MaxConnectionsIP 0, MaxJoins 0, MaxPenaltyTime 0 (penalties off),
 * Ping/PongTimeout one hour, no DNS/IDENT/PAM, a predefined #bench with no
 * limit, and an IRC operator (IRC_OPER) so that senders can set user mode
 * +F ("relaxed flood protection": 10 instead of 3 commands per read and no
 * throttling). What can't be configured away is listed in IRC_CAVEATS.
 *
 * ngIRCd runs in the foreground (-n) as a child of this process; once its
 * TLS port completes a handshake, prints one line
 *   {"port": TLS_PORT, "pid": NGIRCD_PID, "plain_port": P, "nodelay": bool}
 * (sample the CPU and RSS of `pid`, ngIRCd itself, not this wrapper).
 * --nodelay preloads a shim that sets TCP_NODELAY (see NODELAY_C); stock
 * ngIRCd is the default. SIGTERM/SIGINT/SIGHUP stop ngIRCd and exit. A
 * watchdog shell reading a pipe from this process stops ngIRCd if this
 * process dies without cleaning up (SIGKILL): ngIRCd started as root drops
 * to "nobody", which would clear a parent-death signal. Every wait is
 * bounded.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { emit, intArg, parseArgs, strArg } from "./common.ts";

/** The channel irc.ts joins; predefined (persistent, no limit) in the config. */
export const IRC_CHANNEL = "#bench";
/** An operator block so that senders may set user mode +F. Loopback only, throwaway server. */
export const IRC_OPER = { name: "bench", password: "bench" } as const;
/** ngIRCd limits that no configuration option removes (ngIRCd 26, src/ngircd/conn.c, defines.h). */
export const IRC_CAVEATS = [
  "single process, one epoll loop: one core at most",
  "a user connection handles at most 3 commands per read (10 with user mode +F, which needs OPER); the rest waits for the next loop turn",
  "a connection whose unprocessed input reaches 2,048 bytes is closed ('Receive buffer space exhausted')",
  "a connection whose output buffer would reach 32 KiB is closed ('Write buffer space exhausted'): a slow receiver is dropped, not measured",
  "no TCP_NODELAY: a small write to a client with unacknowledged data waits for that client's delayed ACK (~40 ms); --nodelay removes it",
  "GnuTLS build: reads 2,048 bytes per readiness event and doesn't drain what GnuTLS already holds, so the rest of a bigger TLS record waits for more input",
  "lines are at most 512 bytes; PRIVMSG is not echoed to its sender, so irc.ts acks a message when a designated observer member receives it",
] as const;

function findExecutable(name: string, fallbacks: string[]): string | null {
  const found = Bun.which(name) ?? Bun.which(name, { PATH: "/usr/sbin:/sbin:/usr/local/sbin:/usr/bin:/bin" });
  if (found) return found;
  for (const f of fallbacks) if (existsSync(f)) return f;
  return null;
}

export function ngircdPath(): string | null {
  return findExecutable("ngircd", ["/usr/sbin/ngircd", "/usr/local/sbin/ngircd"]);
}

export function opensslPath(): string | null {
  return findExecutable("openssl", ["/usr/bin/openssl"]);
}

let available: boolean | undefined;

/** ngircd (built with TLS: `ngircd -V` shows +SSL) and openssl are installed. */
export function ngircdAvailable(): boolean {
  if (available !== undefined) return available;
  available = false;
  const ngircd = ngircdPath();
  if (ngircd === null || opensslPath() === null) return available;
  try {
    const r = Bun.spawnSync([ngircd, "-V"], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 5000 });
    available = /\+SSL\b/.test(`${r.stdout.toString()}${r.stderr.toString()}`);
  } catch {
    available = false;
  }
  return available;
}

// ---------------------------------------------------------------------------

/** A free loopback port: bind port 0, read it, close. (Another process could take it in between; unlikely on a bench host.) */
function freePorts(count: number): number[] {
  const listeners = [];
  try {
    for (let i = 0; i < count; i++) listeners.push(Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
    return listeners.map((l) => l.port);
  } finally {
    for (const l of listeners) l.stop(true);
  }
}

function run(cmd: string[], what: string): void {
  const r = Bun.spawnSync(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  if (r.exitCode !== 0) throw new Error(`bench/load/ngircd: ${what} failed (${r.exitCode ?? r.signalCode}): ${r.stderr.toString().trim()}`);
}

function config(dir: string, plainPort: number, tlsPort: number): string {
  // Section and key names are from ngircd.conf(5), ngIRCd 26.
  return `# Written by bench/load/ngircd.ts for the load benchmark: loopback only, limits open.
[Global]
Name = bench.invalid
Info = securechat load benchmark peer
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@bench.invalid
Listen = 127.0.0.1
Ports = ${plainPort}
MotdPhrase = bench
HelpFile = ${join(dir, "no-help")}

[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 9
MaxPenaltyTime = 0
PingTimeout = 3600
PongTimeout = 3600
IdleTimeout = 0

[Options]
DNS = no
Ident = no
PAM = no
RequireAuthPing = no
NoticeBeforeRegistration = no
IncludeDir = ${join(dir, "conf.d")}

[SSL]
CertFile = ${join(dir, "cert.pem")}
KeyFile = ${join(dir, "key.pem")}
DHFile = ${join(dir, "dh.pem")}
Ports = ${tlsPort}

[Operator]
Name = ${IRC_OPER.name}
Password = ${IRC_OPER.password}

[Channel]
Name = ${IRC_CHANNEL}
Topic = bench
MaxUsers = 0
`;
}

/** Resolves when a TLS handshake with 127.0.0.1:port completes; rejects after timeoutMs. */
async function tlsReady(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (!alive()) throw new Error("bench/load/ngircd: ngircd exited during start-up");
    const ok = await new Promise<boolean>((resolveAttempt) => {
      let settled = false;
      const settle = (v: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolveAttempt(v);
      };
      const timer = setTimeout(() => settle(false), 1000);
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        tls: { rejectUnauthorized: false },
        socket: {
          data() {},
          // Called once the handshake is done; `success` is false for the self-signed certificate.
          handshake(socket) {
            socket.end();
            settle(true);
          },
          close: () => settle(false),
          error: (_s, e) => {
            last = String(e);
            settle(false);
          },
          connectError: (_s, e) => {
            last = String(e);
            settle(false);
          },
        },
      }).catch((e: unknown) => {
        last = String(e);
        settle(false);
      });
    });
    if (ok) return;
    await Bun.sleep(50);
  }
  throw new Error(`bench/load/ngircd: TLS port ${port} not ready after ${timeoutMs} ms (${last})`);
}

/**
 * --nodelay: an LD_PRELOAD shim that sets TCP_NODELAY on every socket ngIRCd
 * accepts. Stock ngIRCd leaves Nagle on, so a small write to a client that
 * has unacknowledged data waits for that client's delayed ACK (~40 ms on
 * Linux); that dominates its latency and, in a closed loop, its idle time.
 * The shim shows what ngIRCd's code costs without that; stock is the default.
 */
const NODELAY_C = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static int nodelay(int fd) { if (fd >= 0) { int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); } return fd; }
int accept(int s, struct sockaddr *a, socklen_t *l) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  return nodelay(real(s, a, l));
}
int accept4(int s, struct sockaddr *a, socklen_t *l, int f) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  return nodelay(real(s, a, l, f));
}
`;

function buildNodelayShim(dir: string): string {
  const cc = findExecutable("cc", ["/usr/bin/cc", "/usr/bin/gcc"]);
  if (cc === null) throw new Error("bench/load/ngircd: --nodelay needs a C compiler (cc)");
  const src = join(dir, "nodelay.c");
  const lib = join(dir, "nodelay.so");
  writeFileSync(src, NODELAY_C);
  run([cc, "-shared", "-fPIC", "-O2", "-o", lib, src, "-ldl"], "cc (TCP_NODELAY shim)");
  return lib;
}

async function main(): Promise<void> {
  const args = parseArgs(Bun.argv.slice(2));
  const dir = resolve(strArg(args, "dir"));
  const startTimeoutMs = intArg(args, "start-timeout", 15_000);
  const nodelay = args.get("nodelay") === "true";
  const ngircd = ngircdPath();
  const openssl = opensslPath();
  if (ngircd === null || openssl === null) throw new Error("bench/load/ngircd: ngircd or openssl not installed (apt-get install ngircd)");

  mkdirSync(join(dir, "conf.d"), { recursive: true });
  run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1"], "openssl req");
  run([openssl, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", join(dir, "dh.pem")], "openssl genpkey (DH group)");
  const [plainPort, tlsPort] = freePorts(2) as [number, number];
  const confPath = join(dir, "ngircd.conf");
  const logPath = join(dir, "ngircd.log");
  writeFileSync(confPath, config(dir, plainPort, tlsPort));
  const env: Record<string, string | undefined> = { ...process.env };
  if (nodelay) env.LD_PRELOAD = buildNodelayShim(dir);

  let child: Subprocess | null = null;
  let watchdog: Subprocess | null = null;
  let stopping = false;
  const childAlive = (): boolean => child !== null && child.exitCode === null && child.signalCode === null;

  const killAll = (): void => {
    if (childAlive()) child!.kill("SIGKILL");
    if (watchdog && watchdog.exitCode === null && watchdog.signalCode === null) watchdog.kill("SIGKILL");
  };
  process.on("exit", killAll);

  const stop = async (code: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      if (childAlive()) {
        child!.kill("SIGTERM");
        const exited = await Promise.race([child!.exited.then(() => true), Bun.sleep(2000).then(() => false)]);
        if (!exited) {
          child!.kill("SIGKILL");
          await Promise.race([child!.exited, Bun.sleep(2000)]);
        }
      }
      killAll();
    }
    process.exit(code);
  };
  process.on("SIGTERM", () => void stop(0));
  process.on("SIGINT", () => void stop(0));
  process.on("SIGHUP", () => void stop(0));

  // ngIRCd logs to stdout/stderr with -n: both go to one file (a pipe nobody read would block it).
  const logFd = openSync(logPath, "w");
  const c = Bun.spawn([ngircd, "-n", "-f", confPath], { stdin: "ignore", stdout: logFd, stderr: logFd, env });
  closeSync(logFd);
  child = c;
  // If this process dies without running its handlers (SIGKILL), the watchdog's stdin
  // reaches EOF and it stops ngircd. On every normal path it is killed first.
  watchdog = Bun.spawn(
    ["sh", "-c", 'read _ ; kill -TERM "$1" 2>/dev/null; sleep 2; kill -0 "$1" 2>/dev/null && kill -KILL "$1" 2>/dev/null', "watchdog", String(c.pid)],
    { stdin: "pipe", stdout: "ignore", stderr: "ignore" },
  );
  void c.exited.then(async () => {
    if (stopping) return;
    let log = "";
    try {
      log = readFileSync(logPath, "utf8").split("\n").slice(-15).join("\n");
    } catch {
      // no log
    }
    process.stderr.write(`bench/load/ngircd: ngircd exited (${c.exitCode ?? c.signalCode}); end of ${logPath}:\n${log}\n`);
    await stop(1);
  });

  await tlsReady(tlsPort, startTimeoutMs, childAlive);
  emit({ port: tlsPort, pid: c.pid, plain_port: plainPort, nodelay });
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
