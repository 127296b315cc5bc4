/**
 * The securechat server: a Bun TCP listener running the handshake of
 * docs/PROTOCOL.md §4, then accounts (§5.1), then the chat. Each connection
 * is two halves joined by a link (link.ts): its edge (`Connection`, edge.ts:
 * the socket, the channel, the output, the login and every secret of it)
 * and, once logged in, its session in the chat core (`Session`, core.ts:
 * what the chat sees, and the requests that need every session). In one
 * process the link is direct calls; docs/CLUSTER.md is where it goes next.
 * Nothing one connection does can block another: socket work is
 * non-blocking with bounded queues, argon2id runs in a bounded gate, and a
 * connection that breaks a rule is answered with an error code and closed —
 * its own connection, never the server. `ChatServer` admits connections,
 * schedules the flushes, sweeps idle sessions, and shuts down.
 */
import type { Socket, TCPSocketListener } from "bun";
import { type Ed25519KeyPair, ed25519Signer } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { encodeFrame } from "../protocol/framing.ts";
import type { RekeyPolicy } from "../protocol/session.ts";
import { DEFAULT_REKEY_BYTES, DEFAULT_REKEY_RECORDS, MAX_FRAME_PRELOGIN } from "../protocol/limits.ts";
import { encodeMessageBytes } from "../protocol/messages.ts";
import type { AccountStore } from "../store/accounts.ts";
import { Store } from "../store/db.ts";
import { AUTH_FAILED, Accounts } from "./accounts.ts";
import { DEFAULT_DEVICES, type DeviceOptions, type Devices } from "./devices.ts";
import { type Chat, type ChatOptions, DEFAULT_CHAT } from "./chat.ts";
import { ChatCore } from "./chatcore.ts";
import type { Core } from "./core.ts";
import { Connection, type EdgeServer } from "./edge.ts";
import type { CorePort } from "./link.ts";
import { type Journal, MemoryJournal } from "../store/journal.ts";
import type { WriteBehindMarkers } from "../store/markers.ts";
import { FlushTurn } from "./outbox.ts";
import type { HostKey } from "./hostkey.ts";
import type { FloodPolicy } from "./flood.ts";
import { DEFAULT_PENALTIES, Gate, LocalLoginLimits, type LoginLimits, PenaltyBox, type PenaltyPolicy, RateLimiter, type StartupPolicy, shouldDropStartup, sourceKey } from "./limits.ts";
import { type Logger, silentLogger } from "../log.ts";

export interface ServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  dataDir: string;
  ticketTtlMs: number;
  handshakeTimeoutMs: number;
  startups: StartupPolicy;
  penalties: PenaltyPolicy;
  maxAuthTries: number;
  rekey: RekeyPolicy;
  /** Concurrent argon2id computations: one per core. */
  argon2Concurrency: number;
  argon2Queue: number;
  chat: ChatOptions;
  /**
   * Bytes a connection may have waiting to be sent before it is dropped as
   * too slow (its own outbox plus what the socket has not taken).
   */
  maxSendBuffer: number;
  /** An authenticated connection silent this long is pinged; twice this long, dropped. */
  idleMs: number;
  /** The longest a session lasts; one opened with a ticket also ends when the ticket expires or is revoked. */
  sessionMaxMs: number;
  /** How often expired tickets are deleted from the database (besides at start). */
  ticketPruneMs: number;
  /** Logged-in connections one user may have at once. */
  maxConnectionsPerUser: number;
  /** Connections (logged in or not) from one source (an IPv4 address, an IPv6 /64) at once. */
  maxConnectionsPerAddress: number;
  /** Login attempts per source, and sessions opened per user. */
  logins: FloodPolicy;
  /** Where events go and history comes from; in memory unless the transcript is given. */
  journal?: Journal;
  /** The newest checkpoint witnesses cosigned (serve --witness; TRANSCRIPT.md §4.5), for `log_proof` `cosigned`. */
  cosigned?: () => { note: string; size: number } | null;
  log: Logger;
  /** Device enrollment policy and caps (PROTOCOL.md §7.11). */
  devices: DeviceOptions;
  /**
   * What joins the edges to the chat core, made from the core: the core
   * itself (direct calls) unless given (tests: link.ts SerializingLink).
   */
  link?: (core: CorePort) => CorePort;
}

export const DEFAULT_SERVER_OPTIONS: Omit<ServerOptions, "dataDir"> = {
  host: "127.0.0.1",
  port: 7447,
  ticketTtlMs: 8 * 3600_000,
  handshakeTimeoutMs: 10_000,
  startups: { start: 10, rate: 30, full: 100 },
  penalties: DEFAULT_PENALTIES,
  maxAuthTries: 6,
  rekey: { records: DEFAULT_REKEY_RECORDS, bytes: DEFAULT_REKEY_BYTES },
  argon2Concurrency: navigator.hardwareConcurrency || 1,
  argon2Queue: 64,
  chat: DEFAULT_CHAT,
  maxSendBuffer: 1024 * 1024,
  idleMs: 60_000,
  sessionMaxMs: 24 * 3600_000,
  ticketPruneMs: 60_000,
  maxConnectionsPerUser: 16,
  maxConnectionsPerAddress: 64,
  logins: { rate: 2, burst: 30 },
  log: silentLogger,
  devices: DEFAULT_DEVICES,
};

/**
 * The edge of a server: the listener, admission (penalties, per-address
 * and startup limits), every connection's edge half, the turn's flushes,
 * idle sweeps and the shutdown of connections. Where their sessions go is
 * the subclass's: a core in this process (ChatServer), or one reached over
 * the bus (a cluster node's edge, node.ts).
 */
export abstract class EdgeHost implements EdgeServer {
  readonly opts: ServerOptions;
  readonly accounts: Accounts;
  readonly hostKey: Ed25519KeyPair;
  /** Signs with the host key, imported once for every handshake. */
  readonly hostSign: (message: Uint8Array) => Uint8Array;
  readonly hostKeyCreated: boolean;
  /** Penalties, login rates and connections per user: the node's own, or the cluster's (the subclass's choice). */
  readonly limits: LoginLimits;
  readonly log: Logger;
  /** The edges' way to the core (link.ts). */
  abstract readonly link: CorePort;
  /** Devices: the edge enrolls (PROTOCOL.md §7.11). */
  abstract readonly devices: Devices;
  /** Whether sessions can be recorded now (a login is refused while not). */
  abstract readonly journal: { readonly recording: boolean };
  #listener: TCPSocketListener<Connection> | null = null;
  readonly #dirty = new Set<Connection>();
  #flushScheduled = false;
  #sweep: ReturnType<typeof setInterval> | null = null;
  readonly #connections = new Set<Connection>();
  /** Open connections per source key. */
  readonly #bySource = new Map<string, number>();
  #unauthenticated = 0;
  /** Connections counted out of #unauthenticated (leftLogin). */
  readonly #outOfLogin = new WeakSet<Connection>();
  #stopping: Promise<void> | null = null;

  /**
   * `limits` defaults to the node's own, in memory, with the logged-in
   * connections per user that `connectionsOf` counts.
   */
  protected constructor(opts: ServerOptions, { key, created }: HostKey, store: AccountStore, limits: LoginLimits | ((user: string) => number)) {
    this.opts = opts;
    this.log = opts.log;
    this.hostKey = key;
    this.hostSign = ed25519Signer(key.secretKey);
    this.hostKeyCreated = created;
    this.accounts = new Accounts(store, new Gate(opts.argon2Concurrency, opts.argon2Queue), opts.ticketTtlMs);
    this.limits =
      typeof limits === "function"
        ? new LocalLoginLimits(new PenaltyBox(opts.penalties), new RateLimiter(opts.logins), new RateLimiter(opts.logins), { connectionsOf: limits, maxConnectionsPerUser: opts.maxConnectionsPerUser })
        : limits;
  }

  /** Deletes a ticket nobody holds (its client left before the welcome); a failure is logged, and the ticket expires. */
  dropTicket(ticket: Uint8Array): void {
    this.accounts.revokeTicket(ticket).catch((e) => this.log.warn("ticket_not_dropped", { error: e instanceof Error ? e.message : String(e) }));
  }

  /**
   * Coalescing (PROTOCOL.md §7.6, PERFORMANCE.md §5): what is posted to connections
   * while handling this turn's input is sealed once per connection at the
   * end of the turn, several messages per record.
   */
  scheduleFlush(c: Connection): void {
    this.#dirty.add(c);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const dirty = [...this.#dirty];
      this.#dirty.clear();
      const turn = new FlushTurn();
      for (const d of dirty) {
        // One connection's failure is its own: it must never end the turn for
        // the others, or escape the callback and stop the server.
        try {
          d.outbox.flush(turn);
          d.flow();
        } catch (e) {
          d.fail(e);
        }
      }
    });
  }

  /**
   * Warms the dummy verifier, deletes expired tickets, listens, and sweeps:
   * idle connections, refilled login buckets, `sweep(now)` (the subclass's),
   * and expired tickets every --ticket-prune.
   */
  protected async serve(sweep: (now: number) => void): Promise<void> {
    await this.accounts.warm();
    await this.#pruneTickets(Date.now());
    this.listen();
    // Sessions end within a second of expiring; idle pings need no finer grain.
    const sweepMs = Math.max(250, Math.min(1000, this.opts.idleMs / 4));
    let lastPrune = Date.now();
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const c of this.#connections) c.idle(now);
      // Buckets that have refilled are no different from new ones: an idle
      // user, address or connection holds none a second later.
      this.limits.prune(now);
      sweep(now);
      if (now - lastPrune >= this.opts.ticketPruneMs) {
        lastPrune = now;
        void this.#pruneTickets(now);
      }
    }, sweepMs);
  }

  async #pruneTickets(now: number): Promise<void> {
    try {
      await this.accounts.store.pruneTickets(now);
    } catch (e) {
      this.log.warn("tickets_not_pruned", { error: e instanceof Error ? e.message : String(e) });
    }
  }

  get port(): number {
    return this.#listener!.port;
  }

  get fingerprint(): string {
    return fingerprint(this.hostKey.publicKey);
  }

  /** Connections that have not yet logged in. */
  get unauthenticated(): number {
    return this.#unauthenticated;
  }

  get connections(): number {
    return this.#connections.size;
  }

  private listen(): void {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const server = this;
    this.#listener = Bun.listen<Connection>({
      hostname: this.opts.host,
      port: this.opts.port,
      socket: {
        open(socket) {
          server.admit(socket);
        },
        data(socket, chunk) {
          socket.data?.framed.receive(chunk);
        },
        drain(socket) {
          socket.data?.framed.drain();
        },
        close(socket) {
          socket.data?.framed.socketClosed();
        },
        error(socket) {
          socket.data?.framed.socketClosed("socket error");
        },
      },
    });
  }

  /**
   * The configured administrators must have accounts: a name nobody holds
   * yet would make whoever registers it first an administrator.
   */
  protected async checkAdmins(): Promise<void> {
    const admins = [...this.opts.chat.admins];
    const taken = await Promise.all(admins.map((u) => this.accounts.isTaken(u)));
    const missing = admins.filter((_, i) => !taken[i]);
    if (missing.length > 0) {
      throw new SecureChatError("admin_unknown", `--admin ${missing.join(", ")}: no such account on this server`, { detail: { users: missing.join(",") } });
    }
    for (const u of admins) if (await this.accounts.isLocked(u)) this.log.warn("admin_locked", { user: u, effect: "cannot log in until another administrator unlocks it" });
  }

  private admit(socket: Socket<Connection>): void {
    const refuse = (code: string, message: string) => {
      socket.write(encodeFrame(encodeMessageBytes({ type: "error", code, message }), MAX_FRAME_PRELOGIN));
      socket.end();
    };
    if (this.#stopping) return refuse("server_shutdown", "server is shutting down");
    const source = sourceKey(socket.remoteAddress);
    const wait = this.limits.penalized(source, Date.now());
    if (wait > 0) {
      this.log.info("penalized", { source: socket.remoteAddress, wait_ms: wait });
      return refuse("rate_limited", `too many failed logins from your address; retry in ${Math.ceil(wait / 1000)} s`);
    }
    const open = this.#bySource.get(source) ?? 0;
    if (open >= this.opts.maxConnectionsPerAddress) {
      this.log.info("source_limit", { source: socket.remoteAddress, connections: open });
      return refuse("too_many_connections", `your address has ${open} connections open already; close one first`);
    }
    if (shouldDropStartup(this.opts.startups, this.#unauthenticated)) {
      this.log.info("startup_dropped", { source: socket.remoteAddress, unauthenticated: this.#unauthenticated });
      return refuse("server_busy", "too many connections are logging in; retry in a moment");
    }
    const conn = new Connection(this, socket);
    socket.data = conn;
    this.#connections.add(conn);
    this.#bySource.set(source, open + 1);
    this.#unauthenticated++;
  }

  /**
   * The connection is no longer logging in: logged in, or an enrollment
   * waiting for approval (PROTOCOL.md §7.11), which must not hold a slot of
   * --max-startups for minutes. Counted once per connection.
   */
  leftLogin(conn: Connection): void {
    if (this.#outOfLogin.has(conn)) return;
    this.#outOfLogin.add(conn);
    this.#unauthenticated--;
  }

  forget(conn: Connection, wasAuthenticated: boolean): void {
    if (!this.#connections.delete(conn)) return;
    this.limits.release(conn);
    const open = (this.#bySource.get(conn.sourceKey) ?? 1) - 1;
    if (open > 0) this.#bySource.set(conn.sourceKey, open);
    else this.#bySource.delete(conn.sourceKey);
    if (!wasAuthenticated) this.leftLogin(conn);
    this.#maybeStopped?.();
  }

  #maybeStopped: (() => void) | null = null;

  /** What stops once the connections are closed: the core, the databases. */
  protected abstract stopped(): Promise<void>;

  /** The connections of this edge. */
  protected get open(): ReadonlySet<Connection> {
    return this.#connections;
  }

  /** SIGINT/SIGTERM: stop accepting, tell every client, wait briefly for them to go, close the database. */
  stop(graceMs = 2000): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.#sweep) clearInterval(this.#sweep);
      this.#listener?.stop(false);
      for (const c of this.#connections) c.closeWith({ code: "server_shutdown", message: "server is shutting down" });
      if (this.#connections.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          this.#maybeStopped = () => {
            if (this.#connections.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
        });
      }
      for (const c of this.#connections) c.framed.close("server stopped");
      this.#listener?.stop(true);
      await this.stopped();
      this.log.info("stopped");
    })();
    return this.#stopping;
  }
}

/**
 * The single-node server: its edge, and the chat core in this process over
 * securechat.db and the journal (the transcript, or memory).
 */
export class ChatServer extends EdgeHost {
  readonly store: Store;
  /** The chat core with its devices and markers (chatcore.ts). */
  readonly local: ChatCore;
  readonly chat: Chat;
  /** The read markers (PROTOCOL.md §7.14): in memory for online users, written to securechat.db once a second. */
  readonly markers: WriteBehindMarkers;
  readonly journal: Journal;
  readonly devices: Devices;
  /** The chat core's half: the sessions and their requests (core.ts). */
  readonly core: Core;
  readonly link: CorePort;

  protected constructor(opts: ServerOptions, hostKey: HostKey, store: Store) {
    super(opts, hostKey, store, (user) => this.chat.connectionsOf(user));
    this.store = store;
    this.journal = opts.journal ?? new MemoryJournal(opts.chat.history);
    this.local = new ChatCore(opts, this.journal, this.accounts, store.markers);
    this.chat = this.local.chat;
    this.markers = this.local.markers;
    this.devices = this.local.devices;
    this.core = this.local.core;
    this.link = opts.link ? opts.link(this.core) : this.core;
  }

  /**
   * Starts serving with `hostKey`, loaded once by the caller (serve signs the
   * transcript with the same key): the server never reads the key file, so
   * the process holds one copy of the secret.
   */
  static async start(options: Partial<ServerOptions> & { dataDir: string }, hostKey: HostKey): Promise<ChatServer> {
    const opts = { ...DEFAULT_SERVER_OPTIONS, ...options };
    const server = new ChatServer(opts, hostKey, new Store(opts.dataDir));
    try {
      await server.checkAdmins();
    } catch (e) {
      server.store.close();
      throw e;
    }
    await server.serve((now) => server.local.sweep(now));
    return server;
  }

  /** Writes the read markers that moved (chatcore.ts). */
  saveMarkers(): Promise<void> | void {
    return this.local.saveMarkers();
  }

  protected async stopped(): Promise<void> {
    await this.local.stop();
    this.store.close();
  }
}

export { AUTH_FAILED };
