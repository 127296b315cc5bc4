/**
 * The link between edges and the chat core across processes, over the Redis
 * bus (docs/CLUSTER.md §5): link.ts's messages, published.
 *
 * - Every node runs a `RemoteCore`: the CorePort of its connections. It
 *   names each session `id` (a counter of the node; the node's name makes it
 *   unique in the cluster), publishes what its sessions tell the core on
 *   CORE_CHANNEL tagged with the node and the core's epoch, and hands what
 *   the core sends on `edgeChannel(node)` to the session's EdgePort.
 * - The node holding the writer lease runs a `CoreEndpoint` in front of its
 *   local `Core`: it opens a session on the core for each `open`, delivers
 *   the rest to it, ignores what was meant for another epoch, and says HELLO
 *   ({node, epoch}) every second.
 *
 * An edge knows the core from its HELLO. A HELLO of a newer epoch (the lease
 * moved) or none for 6 s ends every session of the edge with `core_changed`
 * (the client reconnects and resumes from the last seq it saw), and until a
 * core is known again a login is answered `server_busy`. A loss on the bus
 * (Redis pub/sub is at most once) cannot be repaired here: the sessions it
 * may concern end the same way, on both sides.
 *
 * One payload per channel and turn: an edge's requests of one turn go as
 * one `{node, epoch, ms}`; what the core sends one edge in one turn goes as
 * one `{epoch, ms}`, in which each distinct `post` text appears once with
 * the ids of every session it is for (a room message to 100 members on one
 * edge is one text and 100 ids). The bus adds its own batching on top.
 */
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
import type { Bus, BusLoss } from "../store/redis/bus.ts";
import { type CorePort, type CoreToEdge, type EdgePort, type EdgeToCore, type SessionFacts, type SessionPort, deliverToEdge, deliverToSession, edgeProxy, sessionProxy } from "./link.ts";
import { type WireError, wireError } from "./wire.ts";

/** Edges → the core. */
export const CORE_CHANNEL = "securechat:core";
/** The core announces itself: a Hello every HELLO_MS. */
export const HELLO_CHANNEL = "securechat:hello";
/** The core → the edge of `node`. */
export function edgeChannel(node: string): string {
  return `securechat:edge:${node}`;
}

/** An edge that knows no core asks for one here (`{node}`), every ASK_MS, and the core says hello at once. */
export const ASK_CHANNEL = "securechat:ask";
/** How often the core says hello. */
export const HELLO_MS = 1000;
/** How often an edge that knows no core asks for one: an edge starting, or one whose subscription came back, need not wait for the next hello (a hello published before its subscription was active is never heard). */
export const ASK_MS = 250;
/** An edge that hears no hello for this long takes the core for gone. */
export const CORE_SILENCE_MS = 6000;
/**
 * What the core holds for the edges while its journal has not settled, at
 * most (bytes). A COMMIT's wait holds little (a room of 100 at 30 k
 * messages/s is about 17 MB/s of output: 85 KB per 5 ms commit), so 64 MiB
 * rides out a database stall of seconds at that rate, of minutes at
 * ordinary ones. Past it (the database down for long, users asking for big
 * answers meanwhile) the sessions a turn was for are ended at once instead
 * of held: without it the core's memory grew for as long as the outage.
 */
export const CORE_HELD_MAX = 64 * 1024 * 1024;

export interface Hello {
  node: string;
  epoch: number;
}

/** What an edge publishes on CORE_CHANNEL in one turn. */
export interface ToCore {
  node: string;
  /** The epoch of the core the sessions were opened with. */
  epoch: number;
  ms: EdgeToCore[];
}

/** A CoreToEdge message as the core publishes it: a `post` names every session it is for. */
export type CoreToEdgeItem = Exclude<CoreToEdge, { kind: "post" }> | { kind: "post"; ids: number[]; json: string };

/** What the core publishes on edgeChannel(node) in one turn. */
export interface ToEdge {
  epoch: number;
  ms: CoreToEdgeItem[];
}

/** The error that ends an edge's sessions when its core moved, went silent, or the bus lost a message. */
export const CORE_CHANGED = "core_changed";
const MOVED: WireError = { code: CORE_CHANGED, message: "the server's chat core moved to another node; reconnecting resumes where you were" };
const SILENT: WireError = { code: CORE_CHANGED, message: "the server lost contact with its chat core; reconnecting resumes where you were" };
const LOST: WireError = { code: CORE_CHANGED, message: "a message between the server's nodes was lost; reconnecting resumes where you were" };

/** Calls `flush` once after the current turn, however often `schedule` is called in it. */
class AfterTurn {
  #scheduled = false;
  constructor(private readonly flush: () => void) {}
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.flush();
    });
  }
}

/**
 * What the core sends one edge in one turn, in order, with each `post` text
 * once: a post joins the earlier item with the same text when that item is
 * after everything else already sent to its session, so every session still
 * gets its messages in the order they were sent.
 */
export class EdgeBatch {
  readonly ms: CoreToEdgeItem[] = [];
  /** The latest post item of each text. */
  readonly #byText = new Map<string, Extract<CoreToEdgeItem, { kind: "post" }>>();
  readonly #postAt = new Map<CoreToEdgeItem, number>();
  /** The index of each session's last item. */
  readonly #last = new Map<number, number>();

  add(m: CoreToEdge): void {
    if (m.kind === "post") {
      const same = this.#byText.get(m.json);
      if (same !== undefined) {
        const at = this.#postAt.get(same)!;
        if ((this.#last.get(m.id) ?? -1) < at) {
          same.ids.push(m.id);
          this.#last.set(m.id, at);
          return;
        }
      }
      const item = { kind: "post" as const, ids: [m.id], json: m.json };
      this.#byText.set(m.json, item);
      this.#postAt.set(item, this.ms.length);
      this.#last.set(m.id, this.ms.length);
      this.ms.push(item);
      return;
    }
    this.#last.set(m.id, this.ms.length);
    this.ms.push(m);
  }
}

/** Parses a bus payload; null (and counted) if it is not an object. */
function parse<T>(payload: string): T | null {
  try {
    const v = JSON.parse(payload) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as T) : null;
  } catch {
    return null;
  }
}

/** A SessionPort that does nothing: a session opened when no core was known, ended at once. */
const NOWHERE: SessionPort = {
  request() {},
  changePassword() {},
  passwordHashed() {},
  passwordSet() {},
  flow() {},
  drained() {},
  closed() {},
};

export interface RemoteCoreOptions {
  /** This node's name in the cluster: unique, and new at each start (session ids restart at 1). */
  node: string;
  log?: Logger;
  /** No hello for this long: the core is taken for gone (CORE_SILENCE_MS). */
  silenceMs?: number;
}

interface EdgeSession {
  edge: EdgePort;
  epoch: number;
}

/** The chat core as an edge reaches it over the bus (every node runs one). */
export class RemoteCore implements CorePort {
  readonly node: string;
  readonly #bus: Bus;
  readonly #log: Logger;
  readonly #silenceMs: number;
  #next = 0;
  readonly #sessions = new Map<number, EdgeSession>();
  /** The core in use, if one is known. */
  #core: Hello | null = null;
  /** The newest epoch heard: an older one's hello is a core that has not yet learnt it was replaced. */
  #newest = -1;
  #silence: ReturnType<typeof setTimeout> | null = null;
  /** What this turn publishes, grouped by epoch, in order. */
  #out: ToCore[] = [];
  readonly #turn = new AfterTurn(() => this.#flush());
  readonly #waiters: (() => void)[] = [];
  readonly #off: (() => void)[] = [];
  #closed = false;
  /** Counters since the start. */
  readonly stats = { opened: 0, payloads: 0, malformed: 0, ended: 0 };

  constructor(bus: Bus, opts: RemoteCoreOptions) {
    this.#bus = bus;
    this.node = opts.node;
    this.#log = opts.log ?? silentLogger;
    this.#silenceMs = opts.silenceMs ?? CORE_SILENCE_MS;
    this.#off.push(bus.subscribe(HELLO_CHANNEL, (p) => this.#hello(p)));
    this.#off.push(bus.subscribe(edgeChannel(this.node), (p) => this.#receive(p)));
    this.#off.push(bus.watchLoss((loss) => this.#loss(loss)));
    const ask = JSON.stringify({ node: this.node });
    const asking = setInterval(() => {
      if (!this.#core) bus.publish(ASK_CHANNEL, ask);
    }, ASK_MS);
    this.#off.push(() => clearInterval(asking));
  }

  /** The core this edge uses now, or null while none is known. */
  get core(): Hello | null {
    return this.#core;
  }

  /** Sessions of this edge open on the core. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** CorePort: false while no core is known (a login is then answered server_busy). */
  available(): boolean {
    return this.#core !== null;
  }

  /** Resolves once a core is known (at once if one is). */
  whenAvailable(): Promise<void> {
    if (this.#core) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** CorePort. */
  open(facts: SessionFacts, edge: EdgePort): SessionPort {
    const id = ++this.#next;
    const core = this.#core;
    if (!core || this.#closed) {
      // The core went between the login's check and now: the welcome is out, so the session ends as one whose core went.
      queueMicrotask(() => edge.end(SILENT));
      return NOWHERE;
    }
    const s: EdgeSession = { edge, epoch: core.epoch };
    this.#sessions.set(id, s);
    this.stats.opened++;
    this.#send(s.epoch, { kind: "open", id, facts });
    return sessionProxy(id, (m) => {
      if (this.#sessions.get(id) !== s) return;
      if (m.kind === "closed") this.#sessions.delete(id);
      this.#send(s.epoch, m);
    });
  }

  /** CorePort: recorded by the core, if one is known. */
  loginFailed(source: string, reason: "ticket" | "password", ts: number): void {
    if (this.#core) this.#send(this.#core.epoch, { kind: "login_failed", source, reason, ts });
  }

  /** Stops listening; the sessions are the server's to close (it closes its connections as it stops). */
  close(): void {
    this.#closed = true;
    if (this.#silence) clearTimeout(this.#silence);
    for (const off of this.#off.splice(0)) off();
  }

  #send(epoch: number, m: EdgeToCore): void {
    let last = this.#out.at(-1);
    if (!last || last.epoch !== epoch) this.#out.push((last = { node: this.node, epoch, ms: [] }));
    last.ms.push(m);
    this.#turn.schedule();
  }

  #flush(): void {
    for (const p of this.#out.splice(0)) this.#bus.publish(CORE_CHANNEL, JSON.stringify(p));
  }

  #hello(payload: string): void {
    const h = parse<Hello>(payload);
    if (!h || typeof h.epoch !== "number" || typeof h.node !== "string") {
      this.stats.malformed++;
      return;
    }
    if (h.epoch < this.#newest || this.#closed) return;
    if (h.epoch > this.#newest) {
      if (this.#sessions.size > 0) this.#endAll(MOVED, "core_changed");
      this.#newest = h.epoch;
    }
    if (!this.#core || this.#core.epoch !== h.epoch || this.#core.node !== h.node) this.#log.info("core_known", { node: this.node, core: h.node, epoch: h.epoch });
    this.#core = { node: h.node, epoch: h.epoch };
    if (this.#silence) clearTimeout(this.#silence);
    this.#silence = setTimeout(() => this.#lost(SILENT, "core_silent"), this.#silenceMs);
    for (const w of this.#waiters.splice(0)) w();
  }

  /** No core now: every session ends with `err`, and logins wait for a hello. */
  #lost(err: WireError, why: string): void {
    if (this.#silence) clearTimeout(this.#silence);
    this.#silence = null;
    if (this.#core) this.#log.warn("core_unknown", { node: this.node, core: this.#core.node, epoch: this.#core.epoch, why, sessions: this.#sessions.size });
    this.#core = null;
    this.#endAll(err, why);
  }

  #endAll(err: WireError, why: string): void {
    const ended = [...this.#sessions.values()];
    if (ended.length === 0) return;
    this.#log.warn("sessions_ended", { node: this.node, why, sessions: ended.length });
    this.stats.ended += ended.length;
    // Each end closes its connection, which tells the (old) core it closed: it leaves its rooms there if that core still runs.
    for (const s of ended) s.edge.end(err);
    this.#sessions.clear();
  }

  #loss(loss: BusLoss): void {
    if (this.#closed) return;
    if (loss.side === "publish") {
      if (loss.channel === CORE_CHANNEL) this.#endAll(LOST, "bus_publish_lost");
    } else if (loss.channels.includes(edgeChannel(this.node))) {
      // Redis came back: what the core sent meanwhile is gone, and the core is known again at its next hello.
      this.#lost(LOST, "bus_subscription_lost");
    }
  }

  #receive(payload: string): void {
    const p = parse<ToEdge>(payload);
    if (!p || typeof p.epoch !== "number" || !Array.isArray(p.ms)) {
      this.stats.malformed++;
      return;
    }
    this.stats.payloads++;
    for (const m of p.ms) {
      if (m.kind === "post") {
        for (const id of m.ids) this.#deliver(id, p.epoch, (edge) => edge.post(m.json));
      } else {
        this.#deliver(m.id, p.epoch, (edge) => deliverToEdge(m, edge));
      }
    }
  }

  /** A message for session `id` from the core of `epoch`: only the core it was opened with speaks to it. */
  #deliver(id: number, epoch: number, call: (edge: EdgePort) => void): void {
    const s = this.#sessions.get(id);
    if (!s || s.epoch !== epoch) return;
    try {
      call(s.edge);
    } catch (e) {
      this.#log.warn("internal_error", { node: this.node, error: String(e) });
      s.edge.closeWith(wireError(e));
    }
  }
}

export interface CoreEndpointOptions {
  /** The node the core runs on. */
  node: string;
  /** The writer lease's epoch: what is tagged with another is for another core. */
  epoch: number;
  log?: Logger;
  /** HELLO_MS. */
  helloMs?: number;
  /**
   * The journal's `settled()`: resolves once every entry appended so far is
   * durable, rejects if one never will be; null when none is waiting. What
   * the core sends in a turn is published only after it (see `#flush`).
   */
  settled?: () => Promise<void> | null;
}

/** The chat core as the edges reach it over the bus (the node holding the lease runs one). */
export class CoreEndpoint {
  readonly node: string;
  readonly epoch: number;
  readonly #core: CorePort;
  readonly #bus: Bus;
  readonly #log: Logger;
  /** The sessions of each edge, by their id there. */
  readonly #edges = new Map<string, Map<number, SessionPort>>();
  readonly #out = new Map<string, EdgeBatch>();
  readonly #turn = new AfterTurn(() => this.#flush());
  readonly #hello: ReturnType<typeof setInterval>;
  readonly #off: (() => void)[] = [];
  readonly #settled: () => Promise<void> | null;
  /** The last turn's payloads still waiting for the journal (`#flush`), or null. */
  #waiting: Promise<void> | null = null;
  /** The bytes of the payloads waiting for the journal, at most CORE_HELD_MAX. */
  #held = 0;
  #closed = false;
  /** Counters since the start: payloads published to edges and their bytes; posts asked of the core and the texts they went as. */
  readonly stats = { opened: 0, payloads: 0, bytes: 0, posts: 0, postTexts: 0, ignored: 0, malformed: 0, dropped: 0 };

  constructor(core: CorePort, bus: Bus, opts: CoreEndpointOptions) {
    this.#core = core;
    this.#bus = bus;
    this.node = opts.node;
    this.epoch = opts.epoch;
    this.#log = opts.log ?? silentLogger;
    this.#settled = opts.settled ?? (() => null);
    this.#off.push(bus.subscribe(CORE_CHANNEL, (p) => this.#receive(p)));
    this.#off.push(bus.watchLoss((loss) => this.#loss(loss)));
    const hello = JSON.stringify({ node: this.node, epoch: this.epoch } satisfies Hello);
    const say = () => bus.publish(HELLO_CHANNEL, hello);
    // Edges asking for a core are answered within the turn, once per turn however many ask.
    const answer = new AfterTurn(() => {
      if (!this.#closed) say();
    });
    this.#off.push(bus.subscribe(ASK_CHANNEL, () => answer.schedule()));
    say();
    this.#hello = setInterval(say, opts.helloMs ?? HELLO_MS);
  }

  /** The bytes of what waits for the journal to settle. */
  get heldBytes(): number {
    return this.#held;
  }

  /** Sessions open on the core, all edges together. */
  get sessions(): number {
    let n = 0;
    for (const m of this.#edges.values()) n += m.size;
    return n;
  }

  /** The edge of `node` is gone (its liveness key expired): its sessions close on the core, leaving their rooms. */
  edgeGone(node: string): void {
    const sessions = this.#edges.get(node);
    this.#edges.delete(node);
    this.#out.delete(node);
    if (!sessions || sessions.size === 0) return;
    this.#log.warn("edge_gone", { node, sessions: sessions.size });
    // Removed first: what closing them posts goes to the edges still there, not to this one.
    for (const s of sessions.values()) s.closed();
  }

  /** Steps down: every session's edge is told, and every session closes on the core. */
  close(): void {
    if (this.#closed) return;
    clearInterval(this.#hello);
    for (const off of this.#off.splice(0)) off();
    this.#endAll(MOVED);
    this.#closed = true;
  }

  #receive(payload: string): void {
    if (this.#closed) return;
    const p = parse<ToCore>(payload);
    if (!p || typeof p.node !== "string" || typeof p.epoch !== "number" || !Array.isArray(p.ms)) {
      this.stats.malformed++;
      return;
    }
    if (p.epoch !== this.epoch) {
      this.stats.ignored += p.ms.length;
      return;
    }
    let sessions = this.#edges.get(p.node);
    if (!sessions) this.#edges.set(p.node, (sessions = new Map()));
    for (const m of p.ms) {
      try {
        this.#one(p.node, sessions, m);
      } catch (e) {
        // A message that does not check out is its session's fault, as in one process.
        if (typeof m === "object" && m !== null && typeof (m as { id?: unknown }).id === "number") {
          this.#send(p.node, { kind: "close", id: (m as { id: number }).id, error: wireError(e) });
        }
      }
    }
  }

  #one(node: string, sessions: Map<number, SessionPort>, m: EdgeToCore): void {
    switch (m.kind) {
      case "open":
        if (sessions.has(m.id)) return;
        this.stats.opened++;
        // Known while it opens: what the core sends it during open (DMs its device missed, when nothing
        // had to be loaded first) goes out, not dropped as if for a session already gone.
        sessions.set(m.id, NOWHERE);
        sessions.set(m.id, this.#core.open(m.facts, this.#proxy(node, sessions, m.id)));
        return;
      case "login_failed":
        return this.#core.loginFailed(m.source, m.reason, m.ts);
      default: {
        const s = sessions.get(m.id);
        if (!s) {
          // Its open was lost, or the core ended it meanwhile: the edge is told (a closed one needs nothing).
          if (m.kind !== "closed") this.#send(node, { kind: "end", id: m.id, error: LOST });
          return;
        }
        if (m.kind === "closed") sessions.delete(m.id);
        deliverToSession(m, s);
      }
    }
  }

  /** The EdgePort of a session: what the core sends it once it is no longer open here is dropped. */
  #proxy(node: string, sessions: Map<number, SessionPort>, id: number): EdgePort {
    return edgeProxy(id, (m) => {
      if (sessions.has(id) && this.#edges.get(node) === sessions) this.#send(node, m);
    });
  }

  #send(node: string, m: CoreToEdge): void {
    if (this.#closed) return;
    let batch = this.#out.get(node);
    if (!batch) this.#out.set(node, (batch = new EdgeBatch()));
    batch.add(m);
    if (m.kind === "post") this.stats.posts++;
    this.#turn.schedule();
  }

  /**
   * Publishes what the turn sent each edge, once everything the core
   * recorded up to now is durable (`settled`), and after the turns before
   * it. A member is shown a room message only once its line is committed:
   * a core that dies (or is fenced) with lines not yet committed must not
   * have shown them, for the next core numbers its messages from what the
   * log holds and would give their seqs to other messages. Acks already
   * wait for their own line; this holds everything else in the same order.
   * If the journal fails instead (the core is fenced or closing), the
   * payloads are dropped: the edges end those sessions when the core
   * changes or falls silent, and the clients resume from what they saw.
   */
  #flush(): void {
    const payloads: [string, string][] = [];
    let bytes = 0;
    for (const [node, batch] of this.#out) {
      const text = JSON.stringify({ epoch: this.epoch, ms: batch.ms } satisfies ToEdge);
      this.stats.payloads++;
      bytes += Buffer.byteLength(text);
      for (const m of batch.ms) if (m.kind === "post") this.stats.postTexts++;
      payloads.push([edgeChannel(node), text]);
    }
    this.stats.bytes += bytes;
    const batches = [...this.#out];
    this.#out.clear();
    const publish = () => {
      for (const [channel, text] of payloads) this.#bus.publish(channel, text);
    };
    const settled = this.#settled();
    if (settled === null && this.#waiting === null) return publish();
    if (this.#held + bytes > CORE_HELD_MAX) {
      // Not held: the sessions it was for are ended now (their clients resume once the journal is back).
      this.stats.dropped += payloads.length;
      this.#log.warn("core_output_dropped", { payloads: payloads.length, held_bytes: this.#held, effect: "the journal has not settled for long: the sessions this output was for are ended" });
      for (const [node, batch] of batches) this.#endNow(node, batch);
      return;
    }
    this.#held += bytes;
    const before = this.#waiting;
    const mine: Promise<void> = (async () => {
      await before;
      try {
        await settled;
      } catch (e) {
        this.#held -= bytes;
        this.stats.dropped += payloads.length;
        this.#log.warn("core_output_dropped", { payloads: payloads.length, error: e instanceof Error ? e.message : String(e), effect: "what was not recorded is not shown; the edges end those sessions" });
        return;
      }
      this.#held -= bytes;
      publish();
    })().finally(() => {
      if (this.#waiting === mine) this.#waiting = null;
    });
    this.#waiting = mine;
  }

  /**
   * The sessions `batch` was for are told LOST at once (published without
   * waiting for the journal: an end shows nothing) and close on the core:
   * what they were sent is dropped, so they must not go on with a hole.
   */
  #endNow(node: string, batch: EdgeBatch): void {
    const sessions = this.#edges.get(node);
    if (!sessions) return;
    const ended: SessionPort[] = [];
    const ms: CoreToEdgeItem[] = [];
    for (const id of new Set(batch.ms.flatMap((m) => (m.kind === "post" ? m.ids : [m.id])))) {
      const s = sessions.get(id);
      if (!s) continue;
      sessions.delete(id);
      ended.push(s);
      ms.push({ kind: "end", id, error: LOST });
    }
    if (ms.length > 0) this.#bus.publish(edgeChannel(node), JSON.stringify({ epoch: this.epoch, ms } satisfies ToEdge));
    // Removed first, so what their closing posts to the others is sent (and held) as usual, not to them.
    for (const s of ended) s.closed();
  }

  /** Every session of the edges in `nodes` (all when null) is told `err` and closes on the core. */
  #endAll(err: WireError, nodes: string[] | null = null): void {
    const ended: SessionPort[] = [];
    for (const node of nodes ?? [...this.#edges.keys()]) {
      const sessions = this.#edges.get(node);
      if (!sessions) continue;
      for (const [id, s] of sessions) {
        this.#send(node, { kind: "end", id, error: err });
        ended.push(s);
      }
      this.#edges.delete(node);
    }
    if (ended.length > 0) this.#log.warn("sessions_ended", { node: this.node, why: err === MOVED ? "core_stepped_down" : "bus_lost", sessions: ended.length });
    // Removed first, so what their closing posts to each other is dropped.
    for (const s of ended) s.closed();
  }

  #loss(loss: BusLoss): void {
    if (this.#closed) return;
    if (loss.side === "publish") {
      const prefix = edgeChannel("");
      if (loss.channel.startsWith(prefix)) this.#endAll(LOST, [loss.channel.slice(prefix.length)]);
    } else if (loss.channels.includes(CORE_CHANNEL)) {
      this.#endAll(LOST);
    }
  }
}
