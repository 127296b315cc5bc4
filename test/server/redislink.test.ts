/**
 * The edge/core link over the Redis bus (src/server/redislink.ts) against a
 * real redis-server: a ChatServer whose edges reach its core only through
 * Redis (RemoteCore → CORE_CHANNEL → CoreEndpoint → Core, and back on the
 * edge's channel) gives every user exactly what the in-process link gives,
 * and a spy subscribed to every channel sees no secret; a new core epoch, a
 * silent core and a Redis restart end the edge's sessions with
 * `core_changed`, logins are answered `server_busy` while no core is known,
 * and work again once one is; a room message to 100 members on one edge
 * crosses as one text and 100 ids.
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ChatClient } from "../../src/client/chat.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { addKnownHost } from "../../src/client/known_hosts.ts";
import { saveTicket } from "../../src/client/tickets.ts";
import { silentLogger } from "../../src/log.ts";
import type { Ed25519KeyPair } from "../../src/crypto/index.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import type { Message } from "../../src/protocol/messages.ts";
import type { CorePort } from "../../src/server/link.ts";
import { CORE_CHANGED, CORE_HELD_MAX, CoreEndpoint, type CoreToEdgeItem, EdgeBatch, HELLO_CHANNEL, RemoteCore, type ToEdge, edgeChannel } from "../../src/server/redislink.ts";
import { Bus, type BusLoss } from "../../src/store/redis/bus.ts";
import { RedisLink, parseRedisUrl } from "../../src/store/redis/link.ts";
import { type RedisHandle, requireEngines, startRedis } from "../engines.ts";
import { Collector, Peer, cred, machine, quitAll, seedAccounts, serverFrom } from "./chat-helpers.ts";
import { type RawSession, type TestServer, freshPath, passwordLogin, rawSession, registerRaw, startServer, ticketLogin, untilMessage } from "./helpers.ts";
import { ALICE, type Run, canon, forms, journaledServer, runScenario } from "./linkrun.ts";

const hasRedis = requireEngines("redis");
// Tests wait for events (a hello, a reconnect) with generous timeouts, never for a speed.
setDefaultTimeout(90_000);

describe("what the core sends one edge in a turn", () => {
  const post = (id: number, json: string) => ({ kind: "post" as const, id, json });
  const batch = (...ms: Parameters<EdgeBatch["add"]>[0][]): CoreToEdgeItem[] => {
    const b = new EdgeBatch();
    for (const m of ms) b.add(m);
    return b.ms;
  };

  test("one text for every session it is posted to, each session's messages still in the order sent", () => {
    expect(batch(post(1, "A"), post(2, "A"), { kind: "hold", id: 1, slot: 1 }, post(1, "B"), post(2, "B"), post(1, "A"))).toEqual([
      { kind: "post", ids: [1, 2], json: "A" },
      { kind: "hold", id: 1, slot: 1 },
      { kind: "post", ids: [1, 2], json: "B" },
      { kind: "post", ids: [1], json: "A" },
    ]);
    // Session 2 got B before A: its A cannot join the first A, which comes before its B.
    expect(batch(post(1, "A"), post(1, "B"), post(2, "B"), post(2, "A"))).toEqual([
      { kind: "post", ids: [1], json: "A" },
      { kind: "post", ids: [1, 2], json: "B" },
      { kind: "post", ids: [2], json: "A" },
    ]);
  });
});

describe("what the core sends waits for the journal", () => {
  /** A bus in memory (what CoreEndpoint uses of one): what is published on the edge channels, in order. */
  function memoryBus() {
    const subs = new Map<string, (payload: string) => void>();
    const published: string[] = [];
    const bus = {
      subscribe: (channel: string, fn: (payload: string) => void) => {
        subs.set(channel, fn);
        return () => subs.delete(channel);
      },
      watchLoss: () => () => {},
      publish: (channel: string, payload: string) => {
        if (channel.startsWith("securechat:edge:")) published.push(...(JSON.parse(payload) as ToEdge).ms.map((m) => (m.kind === "post" ? m.json : m.kind)));
      },
    };
    return { bus: bus as unknown as Bus, published, toCore: (ms: unknown[]) => subs.get("securechat:core")!(JSON.stringify({ node: "e1", epoch: 1, ms })) };
  }
  /** A core whose sessions' edges the test posts to directly (`post`: to the first; `open` another). */
  function endpoint(settled: () => Promise<void> | null) {
    const { bus, published, toCore } = memoryBus();
    const edges: { post(json: string): void }[] = [];
    const core = { open: (_f: unknown, e: { post(json: string): void }) => (edges.push(e), { closed() {} }), loginFailed() {} } as unknown as CorePort;
    const ep = new CoreEndpoint(core, bus, { node: "core", epoch: 1, settled });
    toCore([{ kind: "open", id: 1, facts: {} }]);
    return { ep, published, post: (json: string) => edges[0]!.post(json), open: (id: number) => (toCore([{ kind: "open", id, facts: {} }]), edges.at(-1)!) };
  }
  const turn = () => new Promise((r) => setImmediate(r));

  test("a message is published to the edges only once the journal says every entry so far is durable, in the order sent", async () => {
    let commit!: () => void;
    let pending: Promise<void> | null = new Promise<void>((r) => (commit = r));
    const t = endpoint(() => pending);
    t.post("M1");
    await turn();
    await turn();
    expect(t.published).toEqual([]);
    // A later turn with nothing waiting still goes after the one that waits.
    pending = null;
    t.post("M2");
    await turn();
    await turn();
    expect(t.published).toEqual([]);
    commit();
    await turn();
    expect(t.published).toEqual(["M1", "M2"]);
    t.ep.close();
  });

  test("what was sent in a turn whose entries are never recorded (the core fenced) is never published", async () => {
    let fail!: (e: Error) => void;
    const lost = new Promise<void>((_r, j) => (fail = j));
    let pending: Promise<void> | null = lost;
    const t = endpoint(() => pending);
    t.post("not recorded");
    await turn();
    pending = null;
    fail(new Error("fenced"));
    await turn();
    await turn();
    expect(t.published).toEqual([]);
    expect(t.ep.stats.dropped).toBe(1);
    t.post("later");
    await turn();
    expect(t.published).toEqual(["later"]);
    t.ep.close();
  });

  test("while the journal never settles (the database down), what waits is bounded: past CORE_HELD_MAX bytes the sessions it was for are ended at once, and nothing more is held for them", async () => {
    const t = endpoint(() => new Promise<void>(() => {}));
    const other = t.open(2);
    other.post("a quiet member's notice");
    // A user asking for big answers (a room's history, the room list) as fast as the requests bucket lets them.
    const big = "x".repeat(1024 * 1024);
    for (let i = 0; i * big.length <= CORE_HELD_MAX; i++) {
      t.post(`${i}${big}`);
      await turn();
    }
    // That session is ended at once (its client reconnects once the database is back); nothing it was sent is shown.
    expect(t.published).toEqual(["end"]);
    expect(t.ep.heldBytes).toBeLessThanOrEqual(CORE_HELD_MAX);
    // The other, sent nothing in that turn, goes on.
    expect(t.ep.sessions).toBe(1);
    t.ep.close();
  });
});

class LossyBus extends Bus {
  /** Set: the hellos published on this bus go nowhere (a core that stalls stops saying hello, and answering asks). */
  muted = false;
  lose(loss: BusLoss): void {
    this.onLoss(loss);
  }
  override publish(channel: string, payload: string): void {
    if (this.muted && channel === HELLO_CHANNEL) return;
    super.publish(channel, payload);
  }
}

/** Resolves when `cond()` holds; fails after a generous time (a wait for an event, not a speed bound). */
async function until(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`test: timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** Every message Redis sends a client subscribed to every channel (PSUBSCRIBE *), as raw text. */
async function spy(url: string): Promise<{ text(): string; close(): void }> {
  const u = new URL(url);
  const { password } = parseRedisUrl(url);
  const chunks: Buffer[] = [];
  const resp = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
  let subscribed: () => void;
  const ready = new Promise<void>((r) => (subscribed = r));
  const socket = await Bun.connect({
    hostname: u.hostname,
    port: Number(u.port),
    socket: {
      data(_s, d) {
        chunks.push(Buffer.from(d));
        if (Buffer.concat(chunks).includes("psubscribe")) subscribed();
      },
    },
  });
  socket.write(resp("AUTH", password) + resp("PSUBSCRIBE", "*"));
  await ready;
  return { text: () => Buffer.concat(chunks).toString("utf8"), close: () => socket.end() };
}

describe.skipIf(!hasRedis)("edges and core joined over Redis", () => {
  let redis: RedisHandle;
  const links: RedisLink[] = [];
  const servers: TestServer[] = [];
  const open: { close(): void }[] = [];
  let nodes = 0;
  let epochs = 0;

  beforeAll(async () => {
    redis = await startRedis();
  });
  // Every test's cores and edges go with it: they all share the hello channel.
  afterEach(async () => {
    for (const t of servers.splice(0)) await t.server.stop();
    for (const o of open.splice(0)) o.close();
  });
  afterAll(async () => {
    for (const l of links) l.close();
    await redis?.stop();
  });

  /** A bus on its own two connections, as each node has; `lose` reports a loss as the bus does when a PUBLISH fails. */
  function bus(): LossyBus {
    const pub = new RedisLink(redis.url, { log: silentLogger, role: "bus-publish" }).start();
    const sub = new RedisLink(redis.url, { log: silentLogger, role: "bus-subscribe" }).start();
    links.push(pub, sub);
    return new LossyBus(pub, sub);
  }

  interface Wired {
    remote: RemoteCore;
    endpoint: CoreEndpoint;
    core: CorePort;
    coreBus: LossyBus;
    /** Ends this wiring: the endpoint steps down and the edge stops listening. */
    close(): void;
  }

  /** The `link` option of a ChatServer whose edges reach its core over Redis only: two buses, as two nodes would have. */
  function overRedis(opts: { silenceMs?: number; helloMs?: number } = {}): { link: (core: CorePort) => CorePort; wired: Promise<Wired> } {
    let made: (w: Wired) => void;
    const wired = new Promise<Wired>((r) => (made = r));
    const link = (core: CorePort): CorePort => {
      const n = ++nodes;
      const coreBus = bus();
      const endpoint = new CoreEndpoint(core, coreBus, { node: `core-${n}`, epoch: ++epochs, ...(opts.helloMs ? { helloMs: opts.helloMs } : {}) });
      const remote = new RemoteCore(bus(), { node: `edge-${n}`, ...(opts.silenceMs ? { silenceMs: opts.silenceMs } : {}) });
      const w = {
        remote,
        endpoint,
        core,
        coreBus,
        close: () => {
          endpoint.close();
          remote.close();
        },
      };
      open.push(w);
      made(w);
      return remote;
    };
    return { link, wired };
  }

  /** A server linked over Redis, once its edge knows the core. */
  async function linkedServer(opts: { silenceMs?: number; helloMs?: number } = {}): Promise<{ t: TestServer; w: Wired }> {
    const { link, wired } = overRedis(opts);
    const t = await startServer({ link });
    servers.push(t);
    const w = await wired;
    await w.remote.whenAvailable();
    return { t, w };
  }

  async function loggedIn(port: number, u: { user: string; password: string; identity: Ed25519KeyPair }, room = "lobby"): Promise<RawSession> {
    const s = await rawSession(port);
    const o = await passwordLogin(s, u.user, u.password, u.identity);
    if (o.type !== "welcome") throw new Error(`test: ${u.user} not let in: ${o.code}`);
    s.send({ type: "join", room });
    const { match } = await untilMessage(s, (m) => m.type === "history_end");
    if (!match) throw new Error(`test: ${u.user} did not join ${room}`);
    return s;
  }

  /** The error the server ended `s` with. */
  async function endedWith(s: RawSession): Promise<Message | null> {
    return (await untilMessage(s, (m) => m.type === "error", 30_000)).match;
  }

  /** `from` says `text` in `room` and `to` sees it. */
  async function chatWorks(from: RawSession, to: RawSession, text: string, room = "lobby"): Promise<void> {
    from.send({ type: "say", id: 7, room, text });
    expect((await untilMessage(from, (m) => m.type === "ack" || m.type === "error")).match?.type).toBe("ack");
    expect((await untilMessage(to, (m) => m.type === "message")).match).toMatchObject({ type: "message", room, from: expect.any(String), text });
  }

  /** A server linked over Redis with two users registered, logged in, in the lobby, and chatting. */
  async function twoChatting(...names: [string, string]) {
    const { t, w } = await linkedServer();
    const users = [await registerRaw(t.port, names[0], "a long enough passphrase 1"), await registerRaw(t.port, names[1], "a long enough passphrase 2")] as const;
    const sessions = [await loggedIn(t.port, users[0]), await loggedIn(t.port, users[1])] as const;
    await chatWorks(sessions[0], sessions[1], "before");
    return { t, w, users, sessions };
  }

  test("the scripted run over Redis: every user saw exactly what the in-process link gives, and a spy on every channel saw no secret", async () => {
    const watcher = await spy(redis.url);
    open.push(watcher);
    let previous: Wired | null = null;
    const overBus: Run = await runScenario(async (dataDir, admins) => {
      previous?.close();
      const { link, wired } = overRedis();
      const t = await journaledServer(dataDir, link, admins);
      servers.push(t);
      const w = (previous = await wired);
      await w.remote.whenAvailable();
      // Edge and core stop together here, which no cluster does (its core outlives an edge, or steps down
      // and another takes over): what is on its way between them arrives first, as in one process.
      const stop = t.server.stop.bind(t.server);
      t.server.stop = async (graceMs?: number) => {
        await until(() => w.endpoint.stats.opened === w.remote.stats.opened && w.endpoint.sessions === w.remote.sessions, "the bus to settle");
        w.close();
        return stop(graceMs);
      };
      return t;
    });
    const direct = await runScenario(async (dataDir, admins) => {
      const t = await journaledServer(dataDir, undefined, admins);
      servers.push(t);
      return t;
    });
    expect(canon(overBus.seen)).toEqual(canon(direct.seen));

    const seen = watcher.text();
    // The spy saw the run: requests on the core's channel, posts on the edges', the session's device key.
    expect(seen).toContain("securechat:core");
    expect(seen).toContain("hello, bob");
    expect(forms(ALICE.publicKey).some((f) => seen.includes(f))).toBe(true);
    expect(overBus.secrets.length).toBeGreaterThan(10);
    const found = overBus.secrets.flatMap((s) => forms(s).filter((f) => f.length >= 8 && seen.includes(f)));
    expect(found).toEqual([]);
    expect(seen).not.toContain(parseRedisUrl(redis.url).password);
  });

  test("a core of a newer epoch ends every session of the edge with core_changed; new logins reach the new core", async () => {
    const { t, w, users: [carol, dave], sessions: [c1, d1] } = await twoChatting("carol", "dave");

    // Another node takes the lease: its endpoint says hello with the next epoch (the old one still runs, unaware).
    const next = new CoreEndpoint(w.core, bus(), { node: "core-next", epoch: ++epochs });
    open.push(next);
    for (const s of [c1, d1]) expect(await endedWith(s)).toMatchObject({ type: "error", code: CORE_CHANGED, message: expect.stringContaining("moved to another node") });
    expect(w.remote.core?.epoch).toBe(next.epoch);

    const c2 = await loggedIn(t.port, carol);
    const d2 = await loggedIn(t.port, dave);
    await chatWorks(d2, c2, "after the move");
    expect(next.sessions).toBe(2);
    // The old core is told nothing more: what the edge sends is tagged with the new epoch.
    expect(w.endpoint.sessions).toBe(0);
  });

  test("an edge that starts after the core's last hello asks, and knows the core at once (not at the next hello)", async () => {
    const core: CorePort = { open: () => { throw new Error("test: no session opens here"); }, loginFailed: () => {} };
    const endpoint = new CoreEndpoint(core, bus(), { node: "core-quiet", epoch: ++epochs, helloMs: 600_000 });
    open.push(endpoint);
    await Bun.sleep(200); // its first hello is gone before the edge exists
    const remote = new RemoteCore(bus(), { node: "edge-late" });
    open.push(remote);
    await remote.whenAvailable();
    expect(remote.core).toEqual({ node: "core-quiet", epoch: epochs });
  });

  test("a core that goes silent: sessions end with core_changed, and a login is answered server_busy until a core says hello", async () => {
    // The edge gives up on a core after 1.5 s of silence; this one stops saying hello once erin is in.
    const { t, w } = await linkedServer({ silenceMs: 1500 });
    const erin = await registerRaw(t.port, "erin", "a long enough passphrase 3");
    const e1 = await loggedIn(t.port, erin);
    w.coreBus.muted = true;
    expect(await endedWith(e1)).toMatchObject({ code: CORE_CHANGED, message: expect.stringContaining("lost contact") });
    expect(w.remote.available()).toBe(false);

    const s = await rawSession(t.port);
    expect(await passwordLogin(s, erin.user, erin.password, erin.identity)).toMatchObject({ type: "error", code: "server_busy" });
    // The attempt may be retried on the same connection: once a core says hello, it is let in.
    const back = new CoreEndpoint(w.core, bus(), { node: "core-back", epoch: ++epochs });
    open.push(back);
    await w.remote.whenAvailable();
    expect(await passwordLogin(s, erin.user, erin.password, erin.identity)).toMatchObject({ type: "welcome" });
    s.close();
  });

  test("a room message to 100 members on one edge crosses as one text and 100 ids", async () => {
    const { t, w } = await linkedServer();
    const frank = await registerRaw(t.port, "frank", "a long enough passphrase 4");
    const ticketKey = ed25519Generate();
    const first = await rawSession(t.port);
    const o = await passwordLogin(first, frank.user, frank.password, frank.identity, ticketKey.publicKey);
    const ticket = (o as unknown as { msg: Message<"welcome"> }).msg.ticket!;
    const members: RawSession[] = [first];
    // The sender and the 100 members it posts to.
    while (members.length < 101) {
      const s = await rawSession(t.port);
      expect((await ticketLogin(s, frank.user, ticket, ticketKey)).type).toBe("welcome");
      members.push(s);
    }
    for (const s of members) {
      s.send({ type: "join", room: "big" });
      expect((await untilMessage(s, (m) => m.type === "history_end")).match).not.toBeNull();
    }
    const watcher = await spy(redis.url);
    open.push(watcher);
    const before = { ...w.endpoint.stats };
    members[0]!.send({ type: "say", id: 1, room: "big", text: "one text for a hundred" });
    expect((await untilMessage(members[0]!, (m) => m.type === "ack")).match).toMatchObject({ type: "ack", id: 1 });
    for (const s of members.slice(1)) expect((await untilMessage(s, (m) => m.type === "message")).match).toMatchObject({ text: "one text for a hundred" });

    // The payload on the edge's channel that carried the message, as Redis sent it.
    const payloads = watcher
      .text()
      .split("\r\n")
      .filter((l) => l.startsWith("["))
      .flatMap((l) => JSON.parse(l) as string[])
      .map((p) => JSON.parse(p) as ToEdge)
      .filter((p) => Array.isArray(p.ms) && p.ms.some((m) => m.kind === "post" && m.json.includes("one text for a hundred")));
    expect(payloads).toHaveLength(1);
    const carried = payloads[0]!;
    const item = carried.ms.find((m) => m.kind === "post" && m.json.includes("one text for a hundred")) as Extract<CoreToEdgeItem, { kind: "post" }>;
    expect(item.ids).toHaveLength(100);
    const bytes = Buffer.byteLength(JSON.stringify(carried));
    const expanded: ToEdge = { epoch: carried.epoch, ms: carried.ms.flatMap((m) => (m.kind === "post" ? m.ids.map((id) => ({ kind: "post", id, json: m.json }) as never) : [m])) };
    const without = Buffer.byteLength(JSON.stringify(expanded));
    console.log(`100-member room, one message: ${bytes} bytes on the edge's channel with one text per post, ${without} with a copy per member (${(without / bytes).toFixed(1)}x)`);
    expect(bytes * 10).toBeLessThan(without);
    expect(w.endpoint.stats.posts - before.posts).toBeGreaterThanOrEqual(100);
    expect(w.endpoint.stats.postTexts - before.postTexts).toBeLessThan(10);
    for (const s of members) s.close();
    expect(edgeChannel(w.remote.node)).toBe(`securechat:edge:${w.remote.node}`);
  });

  describe("two edges, one core", () => {
    /** Server A: the core and an edge; server B: only an edge (its own core unused), reaching A's core over the bus. */
    async function twoEdges(): Promise<{ w: Wired; edgeB: RemoteCore; lena: RawSession; kim: RawSession }> {
      const { t: a, w } = await linkedServer();
      const edgeB = new RemoteCore(bus(), { node: `edge-b-${++nodes}` });
      open.push(edgeB);
      const b = await startServer({ link: () => edgeB });
      servers.push(b);
      await edgeB.whenAvailable();
      const lena = await loggedIn(a.port, await registerRaw(a.port, "lena", "a long enough passphrase 7"));
      const kim = await loggedIn(b.port, await registerRaw(b.port, "kim", "a long enough passphrase 8"));
      await chatWorks(kim, lena, "from edge b");
      await chatWorks(lena, kim, "from edge a");
      return { w, edgeB, lena, kim };
    }

    test("an edge that goes: its members leave their rooms on the core, a request it still sends is answered core_changed, the other edge goes on", async () => {
      const { w, edgeB, lena, kim } = await twoEdges();
      w.endpoint.edgeGone(edgeB.node);
      expect((await untilMessage(lena, (m) => m.type === "left")).match).toMatchObject({ type: "left", room: "lobby", user: "kim" });
      kim.send({ type: "say", id: 9, room: "lobby", text: "am I still here?" });
      expect(await endedWith(kim)).toMatchObject({ code: CORE_CHANGED });
      expect(w.endpoint.sessions).toBe(1);
      lena.send({ type: "say", id: 10, room: "lobby", text: "still here" });
      expect((await untilMessage(lena, (m) => m.type === "ack" || m.type === "error")).match?.type).toBe("ack");
    });

    test("a post to an edge lost on the bus: that edge's sessions end with core_changed and leave their rooms; the other edge goes on", async () => {
      const { w, edgeB, lena, kim } = await twoEdges();
      // As the bus reports a PUBLISH that failed with its connection.
      w.coreBus.lose({ side: "publish", channel: edgeChannel(edgeB.node), dropped: 1, why: "connection_lost" });
      expect(await endedWith(kim)).toMatchObject({ code: CORE_CHANGED, message: expect.stringContaining("was lost") });
      expect((await untilMessage(lena, (m) => m.type === "left")).match).toMatchObject({ user: "kim" });
      expect(edgeB.sessions).toBe(0);
      expect(w.endpoint.sessions).toBe(1);
      lena.send({ type: "say", id: 10, room: "lobby", text: "still here" });
      expect((await untilMessage(lena, (m) => m.type === "ack" || m.type === "error")).match?.type).toBe("ack");
    });
  });

  test("a client whose session ends with core_changed reconnects and resumes: every message once, in order", async () => {
    const seed = await seedAccounts(["ivy", "jack"]);
    const { link, wired } = overRedis();
    const t = await serverFrom(seed, { link });
    servers.push(t);
    const w = await wired;
    await w.remote.whenAvailable();
    const home = machine("ivy");
    const before = process.env.SECURECHAT_HOME;
    process.env.SECURECHAT_HOME = home.home;
    const sink = new Collector();
    let ivy: ChatClient | undefined;
    try {
      const id = parseServerAddress(t.address).id;
      addKnownHost(id, t.server.hostKey.publicKey);
      const c = cred(seed, "ivy");
      saveTicket(id, c.user, { ticket: c.ticket, expiresAt: c.expiresAt, key: c.ticketKey });
      ivy = new ChatClient(
        { addr: parseServerAddress(t.address), user: "ivy", trust: { acceptNew: false }, room: "lobby", password: () => Promise.reject(new Error("test: the ticket is enough")), reconnect: true, reconnectBaseMs: 20 },
        sink,
      );
      await ivy.start();
      await sink.inRoom("lobby");
      const jack = await Peer.login(t.port, cred(seed, "jack"));
      await jack.join("lobby");
      jack.send({ type: "say", id: 1, room: "lobby", text: "before the move" });
      await sink.until("the first line", () => sink.said("lobby").length === 1, 30_000);

      const next = new CoreEndpoint(w.core, bus(), { node: "core-next", epoch: ++epochs });
      open.push(next);
      await jack.until("jack's session to end", () => jack.of("error").length === 1, 30_000);
      expect(jack.of("error")[0]).toMatchObject({ code: CORE_CHANGED });
      jack.close();
      const jack2 = await Peer.login(t.port, cred(seed, "jack"));
      await jack2.join("lobby");
      jack2.send({ type: "say", id: 2, room: "lobby", text: "while ivy reconnects" });
      await sink.until("ivy back and the second line", () => sink.of("reconnected").length === 1 && sink.of("message").length === 2, 30_000);
      jack2.close();
      expect(sink.of("message").map((m) => `${m.seq} ${m.text}`)).toEqual(["1 before the move", "2 while ivy reconnects"]);
      // the client says it once: disconnected, with the server's code (not an error as well)
      expect(sink.of("disconnected").map((e) => e.code)).toEqual([CORE_CHANGED]);
      expect(sink.of("error")).toEqual([]);
      expect(ivy.failure).toBeNull();
    } finally {
      await quitAll(ivy);
      if (before === undefined) delete process.env.SECURECHAT_HOME;
      else process.env.SECURECHAT_HOME = before;
    }
  });

  // Last: it restarts the Redis every test above shares.
  test("a Redis restart ends the edge's sessions with core_changed; once it is back new logins work", async () => {
    const { t, w, users: [gina, hal], sessions: [g1, h1] } = await twoChatting("gina", "hal");

    await redis.restart({ crash: true });
    for (const s of [g1, h1]) expect(await endedWith(s)).toMatchObject({ code: CORE_CHANGED });
    await w.remote.whenAvailable();
    // The core's own subscription may come back a moment after the edge hears its hello: a client retries, as this does.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const g2 = await loggedIn(t.port, gina).catch(() => null);
      const h2 = g2 && (await loggedIn(t.port, hal).catch(() => null));
      if (g2 && h2) {
        await chatWorks(g2, h2, "after the restart");
        break;
      }
      g2?.close();
      if (Date.now() > deadline) throw new Error("test: no login worked after Redis came back");
      await Bun.sleep(200);
    }
    expect(w.endpoint.sessions).toBe(2);
  });
});
