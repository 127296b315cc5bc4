/**
 * One connection to Redis for a cluster node, kept up: connects, reports a
 * loss once (a warning) and the return once (info), reconnects with
 * exponential backoff and jitter, and tells its users each time it is up
 * again so they can subscribe again or resend what they queued.
 *
 * Redis holds nothing a node cannot lose (fan-out, presence, flood buckets):
 * a link that is down makes its users queue, drop and count, or choose
 * fail-open or fail-closed; it never blocks an acknowledged message.
 *
 * Bun's own reconnection is turned off: each attempt is a fresh RedisClient,
 * so no subscription or queued command of a dead connection leaks into the
 * next. Bun's client reports a refused connection and a wrong password
 * alike ("Connection closed"), so the first failure of an outage is
 * explained by a probe (`diagnoseRedis`: a bare connection that says AUTH
 * and PING itself). The URL is only ever shown redacted, and the password
 * never reaches a log line or an error.
 */
import { RedisClient } from "bun";
import { SecureChatError } from "../../errors.ts";
import type { Logger } from "../../log.ts";

export interface LinkOptions {
  log: Logger;
  /** What this connection is for, in log lines ("bus-publish", "liveness"…). */
  role: string;
  /** First retry delay, doubled per failed attempt up to maxDelayMs; each delay is drawn in [d/2, d]. */
  minDelayMs?: number;
  maxDelayMs?: number;
  connectTimeoutMs?: number;
  /** Uniform in [0, 1): the jitter's source. */
  random?: () => number;
}

export const LINK_MIN_DELAY_MS = 100;
export const LINK_MAX_DELAY_MS = 5000;

/** A redis:// or rediss:// URL split into what is shown, what is connected to, and the credentials sent with AUTH. */
export function parseRedisUrl(url: string): { shown: string; bare: string; user: string; password: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SecureChatError("redis_url", "the Redis URL cannot be parsed (expected redis://[:PASSWORD@]HOST:PORT[/DB])");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new SecureChatError("redis_url", `the Redis URL starts with ${u.protocol}// (expected redis:// or rediss://)`);
  }
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  u.username = "";
  u.password = "";
  const bare = u.toString();
  const shown = new URL(bare);
  if (password !== "") shown.password = "***";
  if (user !== "") shown.username = user;
  return { shown: shown.toString(), bare, user, password };
}

/** An error's message with the password (if it ever appeared in it) replaced. */
function safeMessage(e: unknown, password: string): string {
  const m = e instanceof Error ? e.message : String(e);
  return password === "" ? m : m.split(password).join("***");
}

export class RedisLink {
  /** The URL as it may be shown (password replaced by ***). */
  readonly shown: string;
  private readonly url: string;
  private readonly password: string;
  private readonly opts: Required<Omit<LinkOptions, "log" | "role">> & Pick<LinkOptions, "log" | "role">;
  private current: RedisClient | null = null;
  private failures = 0;
  private downSince: number | null = null;
  private reported = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private connecting = false;
  private everUp = false;
  private readonly ups = new Set<(again: boolean) => void>();
  private readonly downs = new Set<() => void>();
  private readonly waiters: (() => void)[] = [];
  /** Connections lost and attempts failed since the start (for tests and metrics). */
  readonly counts = { lost: 0, failedAttempts: 0, connects: 0 };

  constructor(url: string, opts: LinkOptions) {
    const p = parseRedisUrl(url);
    this.shown = p.shown;
    this.url = url;
    this.password = p.password;
    this.opts = {
      minDelayMs: LINK_MIN_DELAY_MS,
      maxDelayMs: LINK_MAX_DELAY_MS,
      connectTimeoutMs: 5000,
      random: Math.random,
      ...opts,
    };
  }

  /** Starts connecting (and keeps at it until close()). */
  start(): this {
    if (!this.closed && !this.current && !this.connecting && !this.timer) void this.attempt();
    return this;
  }

  get up(): boolean {
    return this.current !== null;
  }

  /** The connected client; throws `redis_down` while the link is down. */
  get client(): RedisClient {
    if (!this.current) throw new SecureChatError("redis_down", `redis (${this.opts.role}) is not connected`);
    return this.current;
  }

  /** A command on the current connection; rejects with `redis_down` while the link is down. */
  send(command: string, args: string[]): Promise<any> {
    try {
      return this.client.send(command, args);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Called at each connect, `again` false the first time; returns a remover. */
  onUp(fn: (again: boolean) => void): () => void {
    this.ups.add(fn);
    return () => this.ups.delete(fn);
  }

  /** Called when an established connection is lost. */
  onDown(fn: () => void): () => void {
    this.downs.add(fn);
    return () => this.downs.delete(fn);
  }

  /** Resolves once the link is up (at once if it is). */
  ready(): Promise<void> {
    if (this.current) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The delay before retry number `n` (0-based): min·2ⁿ capped at max, drawn in [d/2, d]. */
  delayMs(n: number): number {
    const d = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** Math.min(n, 30));
    return Math.round(d / 2 + (d / 2) * this.opts.random());
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const c = this.current;
    this.current = null;
    if (c) {
      c.onclose = null;
      c.close();
    }
  }

  private async attempt(): Promise<void> {
    this.timer = null;
    this.connecting = true;
    const client = new RedisClient(this.url, {
      autoReconnect: false,
      enableOfflineQueue: false,
      connectionTimeout: this.opts.connectTimeoutMs,
    });
    try {
      await client.connect();
      await client.send("PING", []);
    } catch (e) {
      client.onclose = null;
      client.close();
      this.counts.failedAttempts++;
      // Only the first failure of an outage is reported, so only it is explained.
      const why = this.reported ? e : await diagnoseRedis(this.url, this.opts.connectTimeoutMs).then((d) => (d.ok ? e : new Error(d.why)));
      this.connecting = false;
      this.failed(why);
      return;
    }
    this.connecting = false;
    if (this.closed) {
      client.close();
      return;
    }
    client.onclose = (e) => {
      if (this.current === client) this.lost(e);
    };
    this.current = client;
    this.counts.connects++;
    this.failures = 0;
    if (this.reported) {
      this.opts.log.info("redis_up", { role: this.opts.role, redis: this.shown, down_ms: this.downSince === null ? undefined : Date.now() - this.downSince });
    }
    this.reported = false;
    this.downSince = null;
    const again = this.everUp;
    this.everUp = true;
    for (const w of this.waiters.splice(0)) w();
    for (const fn of [...this.ups]) fn(again);
  }

  private failed(e: unknown): void {
    if (this.closed) return;
    this.report(e);
    this.retry();
  }

  private lost(e: unknown): void {
    this.current = null;
    this.counts.lost++;
    if (this.closed) return;
    this.report(e);
    for (const fn of [...this.downs]) fn();
    this.retry();
  }

  /** One warning per outage, on its first failure. */
  private report(e: unknown): void {
    this.downSince ??= Date.now();
    if (this.reported) return;
    this.reported = true;
    this.opts.log.warn("redis_down", { role: this.opts.role, redis: this.shown, error: safeMessage(e, this.password), retry: "with backoff" });
  }

  private retry(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => void this.attempt(), this.delayMs(this.failures++));
  }
}

/** One RESP command, as bytes. */
function resp(args: string[]): Uint8Array {
  const enc = new TextEncoder();
  const parts = args.map((a) => enc.encode(a));
  let head = `*${parts.length}\r\n`;
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    chunks.push(enc.encode(`${head}$${p.length}\r\n`), p, enc.encode("\r\n"));
    head = "";
  }
  return Buffer.concat(chunks);
}

/**
 * Why Redis at `url` cannot be used, found over a bare connection: it is
 * refused or silent, or AUTH or PING is answered with an error (WRONGPASS,
 * NOAUTH…); `ok` when PING answers PONG. The password goes only to the
 * server, in AUTH; the reasons never hold it.
 */
export async function diagnoseRedis(url: string, timeoutMs = 5000): Promise<{ ok: true } | { ok: false; why: string }> {
  const u = new URL(url);
  const p = parseRedisUrl(url);
  const commands: string[][] = [];
  if (p.password !== "") commands.push(p.user !== "" ? ["AUTH", p.user, p.password] : ["AUTH", p.password]);
  commands.push(["PING"]);
  const scrub = (m: string) => (p.password === "" ? m : m.split(p.password).join("***"));
  return await new Promise((resolve) => {
    let got = "";
    let done = false;
    const finish = (r: { ok: true } | { ok: false; why: string }, s?: { end(): void }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s?.end();
      resolve(r.ok ? r : { ok: false, why: scrub(r.why) });
    };
    const timer = setTimeout(() => finish({ ok: false, why: `no answer within ${timeoutMs / 1000} s` }), timeoutMs);
    Bun.connect({
      hostname: u.hostname.replace(/^\[|\]$/g, ""),
      port: Number(u.port || 6379),
      tls: u.protocol === "rediss:",
      socket: {
        open(s) {
          s.write(Buffer.concat(commands.map(resp)));
        },
        data(s, d) {
          got += d.toString();
          const lines = got.split("\r\n").filter((l) => l !== "");
          const err = lines.find((l) => l.startsWith("-"));
          if (err) return finish({ ok: false, why: err.slice(1) }, s);
          if (lines.length >= commands.length) finish(lines.at(-1) === "+PONG" ? { ok: true } : { ok: false, why: `unexpected answer to PING: ${lines.at(-1)!.slice(0, 80)}` }, s);
        },
        close() {
          finish({ ok: false, why: "the server closed the connection" });
        },
        connectError(_s, e) {
          finish({ ok: false, why: `cannot connect: ${(e as { code?: string }).code ?? e.message}` });
        },
      },
    }).catch((e: Error) => finish({ ok: false, why: `cannot connect: ${(e as { code?: string }).code ?? e.message}` }));
  });
}
