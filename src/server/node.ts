/**
 * A cluster node (docs/CLUSTER.md): `serve --database --redis`.
 *
 * Every node is an edge: it listens, runs the handshake with the cluster's
 * one host key, logs users in against the accounts in PostgreSQL, and sends
 * its sessions' requests to the chat core over Redis (`RemoteCore`). Every
 * node also stands for election: once a second it tries to take the
 * transcript's writer lease (`PgJournal.open`); the node that holds it runs
 * the chat core (`ChatCore` over the PgJournal and the accounts in
 * PostgreSQL) behind a `CoreEndpoint`, which the edges reach over the bus.
 * The core ends the sessions of an edge whose liveness key expired
 * (`edgeGone`). When the lease is lost (fenced: another node took it), the
 * core steps down — every edge's sessions end with `core_changed`, and the
 * clients reconnect and resume — and the node goes back to standing for
 * election.
 *
 * Nothing here reads securechat.db or the files of a data directory: the
 * record is PostgreSQL; Redis carries only what may be lost.
 */
import { hostname } from "node:os";
import type { SQL } from "bun";
import type { Logger } from "../log.ts";
import { PgAccountStore } from "../store/pg/accounts.ts";
import { CLUSTER_COMPONENTS } from "../store/pg/components.ts";
import { readCosigned, writeCosigned } from "../store/pg/log.ts";
import { migrate, openPg, redactUrl } from "../store/pg/pg.ts";
import { Bus } from "../store/redis/bus.ts";
import { RedisLink, parseRedisUrl } from "../store/redis/link.ts";
import { Liveness } from "../store/redis/liveness.ts";
import { ClusterBuckets } from "../store/redis/buckets.ts";
import { ClusterPenalties } from "../store/redis/penalties.ts";
import { ClusterSlots } from "../store/redis/slots.ts";
import { ClusterLoginLimits } from "./clusterlimits.ts";
import type { LoginLimits } from "./limits.ts";
import { PgJournal, type PgJournalOptions } from "../transcript/pgjournal.ts";
import { ChatCore } from "./chatcore.ts";
import { Devices } from "./devices.ts";
import type { HostKey } from "./hostkey.ts";
import { CoreEndpoint, RemoteCore } from "./redislink.ts";
import { WitnessSubmitter, type WitnessTarget } from "./witnesses.ts";
import { DEFAULT_SERVER_OPTIONS, EdgeHost, type ServerOptions } from "./server.ts";

/** How much longer than the longest session a user's connection count is kept in Redis after its last change. */
const SLOT_MARGIN_MS = 3600_000;

/** How often a node that is not the core tries to take the writer lease. */
export const ELECT_MS = 1000;

export interface NodeOptions {
  /** postgres://… (with its password: never logged; redactUrl). */
  databaseUrl: string;
  /** redis://… (likewise). */
  redisUrl: string;
  /** This node's name in the cluster: unique, and new at each start. Default: host, pid and a random part. */
  node?: string;
  /** The edge's and the core's options, as a single node takes them (dataDir and journal are not used). */
  server: Partial<Omit<ServerOptions, "journal" | "dataDir">>;
  /** The transcript's writer options and history sizes (serve's), without the lease holder and the host key. */
  journal: Omit<PgJournalOptions, "holder" | "hostKey" | "log" | "dir">;
  /** How often to stand for election (ELECT_MS). */
  electMs?: number;
  /** The writer lease (tests shorten it). */
  leaseMs?: number;
  renewMs?: number;
  /** How long an edge waits for the core's hello before ending its sessions (redislink.ts CORE_SILENCE_MS). */
  silenceMs?: number;
  /** serve --witness: the core submits each new checkpoint to these, the cosigned one kept in PostgreSQL (log_cosigned). */
  witnesses?: { targets: readonly WitnessTarget[]; quorum: number; graceMs: number };
}

/** A node's edge: the listener and connections, their sessions on the core over the bus. */
export class ClusterEdge extends EdgeHost {
  readonly link: RemoteCore;
  readonly devices: Devices;
  readonly #unwatchApprovals: () => void;
  /** Sessions are recorded by the core; a login while none is known is answered server_busy (RemoteCore.available). */
  readonly journal = { recording: true };

  private constructor(opts: ServerOptions, hostKey: HostKey, store: PgAccountStore, link: RemoteCore, limits: LoginLimits) {
    super(opts, hostKey, store, limits);
    this.link = link;
    // Waiting enrollments are shared (PostgreSQL); the core records them (approved, or by the password), and the edge lets its waiting connections in.
    this.devices = new Devices(store, null, opts.devices);
    this.#unwatchApprovals = this.devices.watch();
  }

  static async start(opts: ServerOptions, hostKey: HostKey, store: PgAccountStore, link: RemoteCore, limits: LoginLimits): Promise<ClusterEdge> {
    const edge = new ClusterEdge(opts, hostKey, store, link, limits);
    await edge.checkAdmins();
    await edge.serve(() => {});
    return edge;
  }

  protected async stopped(): Promise<void> {
    this.#unwatchApprovals();
    this.link.close();
  }

  /** Closes every connection at once, saying nothing (a test's crash of the node). */
  drop(): void {
    for (const c of this.open) c.framed.close("node crashed");
  }
}

interface Elected {
  journal: PgJournal;
  chat: ChatCore;
  endpoint: CoreEndpoint;
  sweep: ReturnType<typeof setInterval>;
  submitter: WitnessSubmitter | null;
}

/** How often a node whose elections keep failing says so again in the log. */
const ELECTION_LOG_MS = 30_000;

export class ClusterNode {
  readonly node: string;
  readonly edge: ClusterEdge;
  readonly #log: Logger;
  readonly #sql: SQL;
  readonly #links: RedisLink[];
  readonly #bus: Bus;
  readonly #opts: NodeOptions;
  readonly #hostKey: HostKey;
  readonly #serverOpts: ServerOptions;
  readonly #beat: { stop(): Promise<void> };
  readonly #unwatch: () => void;
  readonly #elect: ReturnType<typeof setInterval>;
  #core: Elected | null = null;
  #electing: Promise<void> | null = null;
  /** Since when elections fail (the database is out of reach), and when that was last logged: once, then every ELECTION_LOG_MS. */
  #electionFailing: { since: number; logged: number } | null = null;
  #stopping = false;

  private constructor(p: { opts: NodeOptions; node: string; hostKey: HostKey; serverOpts: ServerOptions; sql: SQL; links: RedisLink[]; bus: Bus; liveness: Liveness; edge: ClusterEdge }) {
    this.#opts = p.opts;
    this.node = p.node;
    this.#hostKey = p.hostKey;
    this.#serverOpts = p.serverOpts;
    this.#log = p.serverOpts.log;
    this.#sql = p.sql;
    this.#links = p.links;
    this.#bus = p.bus;
    this.edge = p.edge;
    this.#beat = p.liveness.beat(this.node);
    // A node that stopped beating: its sessions close on the core (they leave their rooms, recorded).
    this.#unwatch = p.liveness.watch((gone) => this.#core?.endpoint.edgeGone(gone));
    this.#elect = setInterval(() => void this.#standForElection(), p.opts.electMs ?? ELECT_MS);
  }

  /**
   * Starts a node: the PostgreSQL pool and every schema step, the accounts,
   * the Redis links and the bus, the liveness beat, the edge's listener; then
   * stands for election at once and every second after.
   */
  static async start(opts: NodeOptions, hostKey: HostKey): Promise<ClusterNode> {
    const serverOpts: ServerOptions = { ...DEFAULT_SERVER_OPTIONS, ...opts.server, dataDir: "" };
    const log = serverOpts.log;
    const node = opts.node ?? `${hostname()}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
    log.info("cluster_node", { node, database: redactUrl(opts.databaseUrl), redis: parseRedisUrl(opts.redisUrl).shown });
    const sql = openPg(opts.databaseUrl);
    const links: RedisLink[] = [];
    try {
      for (const c of CLUSTER_COMPONENTS) await migrate(sql, c);
      const store = await PgAccountStore.open(sql);
      for (const role of ["publish", "subscribe", "liveness"]) links.push(new RedisLink(opts.redisUrl, { log, role }).start());
      await Promise.all(links.map((l) => l.ready()));
      const bus = new Bus(links[0]!, links[1]!, { onLoss: (loss) => log.warn("bus_loss", { side: loss.side, ...("channel" in loss ? { channel: loss.channel, dropped: loss.dropped, why: loss.why } : { channels: loss.channels.length }) }) });
      const liveness = new Liveness(links[2]!, { log });
      const remote = new RemoteCore(bus, { node, log, silenceMs: opts.silenceMs });
      // Penalties, login rates and connections per user: one budget for the cluster (clusterlimits.ts).
      const slots = new ClusterSlots(links[2]!, node, serverOpts.sessionMaxMs + SLOT_MARGIN_MS);
      const limits = new ClusterLoginLimits(new ClusterBuckets(links[2]!), new ClusterPenalties(links[2]!, serverOpts.penalties), slots, { logins: serverOpts.logins, maxConnectionsPerUser: serverOpts.maxConnectionsPerUser, log });
      let edge: ClusterEdge;
      try {
        edge = await ClusterEdge.start(serverOpts, hostKey, store, remote, limits);
      } catch (e) {
        slots.close();
        remote.close();
        bus.close();
        throw e;
      }
      const n = new ClusterNode({ opts, node, hostKey, serverOpts, sql, links, bus, liveness, edge });
      await n.#standForElection();
      return n;
    } catch (e) {
      for (const l of links) l.close();
      await sql.close({ timeout: 0 }).catch(() => {});
      throw e;
    }
  }

  /** True while this node is the cluster's core. */
  get isCore(): boolean {
    return this.#core !== null;
  }

  /** The writer lease's epoch while this node is the core. */
  get epoch(): number | null {
    return this.#core?.journal.epoch ?? null;
  }

  /** The chat core while this node runs it. */
  get core(): ChatCore | null {
    return this.#core?.chat ?? null;
  }

  get port(): number {
    return this.edge.port;
  }

  /** Tries to take the writer lease; on success, runs the core. */
  #standForElection(): Promise<void> {
    if (this.#core || this.#stopping) return Promise.resolve();
    this.#electing ??= this.#elect1().finally(() => {
      this.#electing = null;
    });
    return this.#electing;
  }

  async #elect1(): Promise<void> {
    let journal: PgJournal | null;
    try {
      journal = await PgJournal.open(this.#sql, {
        ...this.#opts.journal,
        dir: "(database)",
        hostKey: this.#hostKey.key,
        log: this.#log,
        holder: this.node,
        leaseMs: this.#opts.leaseMs,
        renewMs: this.#opts.renewMs,
      });
    } catch (e) {
      const now = Date.now();
      const f = this.#electionFailing;
      if (!f || now - f.logged >= ELECTION_LOG_MS) {
        this.#electionFailing = { since: f?.since ?? now, logged: now };
        const fields = { node: this.node, error: e instanceof Error ? e.message : String(e), effect: "tried again every second", ...(f ? { for_s: Math.round((now - f.since) / 1000) } : {}) };
        this.#log.warn("election_failed", fields);
      }
      return;
    }
    if (this.#electionFailing) {
      this.#log.info("election_ok", { node: this.node, after_s: Math.round((Date.now() - this.#electionFailing.since) / 1000) });
      this.#electionFailing = null;
    }
    if (!journal) return;
    if (this.#stopping) {
      journal.close("shutdown");
      await journal.closed();
      return;
    }
    const submitter = await this.#witnessing(journal);
    const opts = submitter ? { ...this.#serverOpts, cosigned: () => submitter.kept } : this.#serverOpts;
    const chat = new ChatCore(opts, journal, this.edge.accounts, (this.edge.accounts.store as PgAccountStore).markerStore);
    const endpoint = new CoreEndpoint(chat.core, this.#bus, { node: this.node, epoch: journal.epoch, log: this.#log, settled: () => journal.settled() });
    const sweep = setInterval(() => chat.sweep(Date.now()), 1000);
    const elected: Elected = { journal, chat, endpoint, sweep, submitter };
    this.#core = elected;
    this.#log.info("core_elected", { node: this.node, epoch: journal.epoch });
    journal.onLost((cause) => void this.#stepDown(elected, "fenced", cause.message));
  }

  /**
   * serve --witness: the core's witness rounds (only the core runs them),
   * continuing from the cosigned checkpoint the previous core kept in
   * PostgreSQL; one that cannot be read is said, and the rounds start afresh.
   */
  async #witnessing(journal: PgJournal): Promise<WitnessSubmitter | null> {
    const w = this.#opts.witnesses;
    if (!w || w.targets.length === 0) return null;
    let kept: string | null = null;
    try {
      kept = await readCosigned(this.#sql);
    } catch (e) {
      this.#log.warn("witness_cosigned_unreadable", { path: "log_cosigned", error: e instanceof Error ? e.message : String(e) });
    }
    const sql = this.#sql;
    return new WitnessSubmitter({
      store: { where: "log_cosigned", load: () => kept, save: (note, size) => writeCosigned(sql, note, size) },
      witnesses: w.targets,
      quorum: w.quorum,
      graceMs: w.graceMs,
      log: this.#log,
      journal,
    });
  }

  /** The core stops here: its edges' sessions end (core_changed), the journal closes, and the node stands for election again. */
  async #stepDown(c: Elected, reason: string, why?: string): Promise<void> {
    if (this.#core !== c) return;
    this.#core = null;
    clearInterval(c.sweep);
    c.submitter?.close();
    c.endpoint.close();
    this.#log.warn("core_lost", { node: this.node, epoch: c.journal.epoch, reason, ...(why ? { error: why } : {}) });
    await c.chat.stop(reason);
    await c.journal.closed();
  }

  /** SIGINT/SIGTERM: the edge stops (its clients told), the core steps down and gives the lease back, the engines are let go. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#elect);
    await this.#electing;
    await this.edge.stop();
    if (this.#core) await this.#stepDown(this.#core, "shutdown");
    this.#unwatch();
    await this.#beat.stop();
    this.#bus.close();
    for (const l of this.#links) l.close();
    await this.#sql.close({ timeout: 5 });
  }

  /**
   * Tests: the node dies as `kill -9` would have it, as far as one process
   * can play it — the engines are cut first (nothing more reaches
   * PostgreSQL or Redis: no lease given back, no goodbye on the bus, the
   * liveness key left to expire), then every socket is closed unannounced.
   */
  async crash(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#elect);
    this.#unwatch();
    await this.#sql.close({ timeout: 0 }).catch(() => {});
    for (const l of this.#links) l.close();
    this.edge.drop();
    const c = this.#core;
    this.#core = null;
    if (c) {
      clearInterval(c.sweep);
      c.submitter?.close();
      c.endpoint.close();
      c.journal.close("crash");
    }
    await this.edge.stop(0);
    await this.#beat.stop();
    this.#bus.close();
  }
}
