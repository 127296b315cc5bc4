/**
 * The login path's limits on cluster nodes sharing one Redis (and one
 * PostgreSQL): an attacker who spreads attempts over the nodes gets the
 * budget of one node, not one per node — the failed-login penalty, the
 * login rate per address (check_name included), the login rate per user —
 * and --max-connections-per-user counts a user's connections on every node.
 * A node killed while holding connections stops counting once its liveness
 * key expires. While Redis cannot be asked, logins are refused server_busy.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { ClusterLoginLimits } from "../../src/server/clusterlimits.ts";
import { ClusterNode } from "../../src/server/node.ts";
import type { ServerOptions } from "../../src/server/server.ts";
import { ClusterBuckets } from "../../src/store/redis/buckets.ts";
import { RedisLink } from "../../src/store/redis/link.ts";
import { NODE_TTL_MS } from "../../src/store/redis/liveness.ts";
import { ClusterPenalties } from "../../src/store/redis/penalties.ts";
import { ClusterSlots } from "../../src/store/redis/slots.ts";
import { type PostgresHandle, type RedisHandle, requireEngines, startPostgres, startRedis } from "../engines.ts";
import { type Cred, registerWithTicket } from "./chat-helpers.ts";
import { testNodeOptions } from "./cluster-helpers.ts";
import { NO_PENALTIES, NO_QUOTAS, type Outcome, type RawSession, outcome, passwordLogin, rawSession, ticketLogin, waitFor } from "./helpers.ts";

const ready = requireEngines("postgres", "redis");
setDefaultTimeout(90_000);

const HOST_KEY = { key: ed25519Generate(), created: false };
const PASSWORD = "a small falcon hangs over the grey pier";
/** Every test connection comes from here: its address's keys are cleared before each test. */
const SOURCE = "127.0.0.1";

describe.skipIf(!ready)("login limits shared by cluster nodes through Redis", () => {
  let pg: PostgresHandle;
  let redis: RedisHandle;
  let admin: RedisLink;
  let nodes: ClusterNode[] = [];
  let sessions: RawSession[] = [];
  let count = 0;

  async function startNode(server: Partial<ServerOptions>): Promise<ClusterNode> {
    const n = await ClusterNode.start(
      testNodeOptions({ database: pg.url, redis: redis.url }, `limits-${++count}`, { port: 0, penalties: NO_PENALTIES, ...NO_QUOTAS, chat: DEFAULT_CHAT, log: silentLogger, ...server }),
      HOST_KEY,
    );
    nodes.push(n);
    return n;
  }

  /** Nodes on the same options, each edge hearing the core (a login is refused server_busy until it does). */
  async function cluster(k: number, server: Partial<ServerOptions>): Promise<ClusterNode[]> {
    const started: ClusterNode[] = [];
    for (let i = 0; i < k; i++) started.push(await startNode(server));
    await waitFor("every edge to hear the core", () => started.every((n) => n.edge.link.available()), 20_000, 20);
    return started;
  }

  async function session(n: ClusterNode): Promise<RawSession> {
    const s = await rawSession(n.port);
    sessions.push(s);
    return s;
  }

  /** A ticket login on a new connection to `n`, closed if refused (a refused one would hold a --max-startups slot). */
  async function ticketTo(n: ClusterNode, c: Cred): Promise<Outcome> {
    const s = await session(n);
    const o = await ticketLogin(s, c.user, c.ticket, c.ticketKey);
    if (o.type !== "welcome") s.close();
    return o;
  }

  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPostgres({ fsync: false }), startRedis()]);
    admin = new RedisLink(redis.url, { log: silentLogger, role: "test" }).start();
    await admin.ready();
  });

  beforeEach(async () => {
    await admin.send("DEL", [`securechat:penalty:${SOURCE}`, `securechat:bucket:login:source:${SOURCE}`]);
  });

  afterEach(async () => {
    for (const s of sessions) s.close();
    sessions = [];
    for (const n of nodes.reverse()) await n.stop().catch(() => {});
    nodes = [];
  });

  afterAll(async () => {
    admin?.close();
    await Promise.all([pg?.stop(), redis?.stop()]);
  });

  test("failed-login penalty: wrong passwords alternated over two nodes earn the penalty one node gives, and the right password is then refused on both", async () => {
    const [a, b] = (await cluster(2, { penalties: { freeFailures: 1, baseMs: 60_000, maxMs: 60_000, forgetMs: 600_000, maxSources: 16 } })) as [ClusterNode, ClusterNode];
    const victim = await registerWithTicket(a.port, "kestrel", PASSWORD);
    const [sa, sb] = [await session(a), await session(b)];
    // One failure is free, the second earns the penalty: one on each node is both.
    expect((await passwordLogin(sa, "kestrel", "not the password, guess one", victim.identity)).code).toBe("auth_failed");
    expect((await passwordLogin(sb, "kestrel", "not the password, guess two", victim.identity)).code).toBe("auth_failed");
    // The third guess, on either node, is refused before it is checked; so is the right password.
    const third = await passwordLogin(sa, "kestrel", "not the password, guess three", victim.identity);
    expect(third).toMatchObject({ code: "rate_limited", message: expect.stringContaining("too many failed logins") });
    expect((await passwordLogin(sb, "kestrel", PASSWORD, victim.identity)).code).toBe("rate_limited");
    // A node that learnt of the penalty refuses the address's new connections at once.
    const c = await startNode({ penalties: { freeFailures: 1, baseMs: 60_000, maxMs: 60_000, forgetMs: 600_000, maxSources: 16 } });
    await waitFor("c to hear the core", () => c.edge.link.available(), 20_000, 20);
    expect((await ticketTo(c, victim)).code).toBe("rate_limited");
    const refusedAtAccept = await rawSession(c.port).then(
      (s) => (s.close(), "accepted"),
      () => "refused",
    );
    expect(refusedAtAccept).toBe("refused");
  });

  test("login rate per address: check_name alternated over two nodes gets one burst between them", async () => {
    const [a, b] = (await cluster(2, { logins: { rate: 0.001, burst: 4 } })) as [ClusterNode, ClusterNode];
    const [sa, sb] = [await session(a), await session(b)];
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) {
      const s = i % 2 === 0 ? sa : sb;
      s.send({ type: "check_name", user: `heron${i}` });
      const o = outcome(await s.receive());
      answers.push(o.type === "error" ? o.code! : o.type);
    }
    expect(answers).toEqual(["name_status", "name_status", "name_status", "name_status", "rate_limited", "rate_limited"]);
  });

  test("login rate per user: ticket logins as one user alternated over two nodes get one burst between them", async () => {
    const [c, d] = (await cluster(2, { logins: { rate: 0.001, burst: 3 } })) as [ClusterNode, ClusterNode];
    // The address's bucket is as small: it is emptied before each attempt, so only the user's counts.
    const clearSource = () => admin.send("DEL", [`securechat:bucket:login:source:${SOURCE}`]);
    const grebe = await registerWithTicket(c.port, "grebe", PASSWORD);
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) {
      await clearSource();
      const o = await ticketTo(i % 2 === 0 ? d : c, grebe);
      codes.push(o.type === "error" ? o.code! : o.type);
    }
    // The registration took the user's first token of three.
    expect(codes).toEqual(["welcome", "welcome", "rate_limited", "rate_limited"]);
  });

  test("a connection that closes while its slot is being claimed does not keep it: logins cut short do not lock the user out", async () => {
    const l = new RedisLink(redis.url, { log: silentLogger, role: "test" }).start();
    await l.ready();
    const slots = new ClusterSlots(l, "cut-short", 60_000);
    const limits = new ClusterLoginLimits(new ClusterBuckets(l), new ClusterPenalties(l, NO_PENALTIES), slots, { logins: { rate: 1e9, burst: 1e9 }, maxConnectionsPerUser: 2, log: silentLogger });
    // A client on a bad network (or one doing it on purpose) gone while Redis is asked for its slot, five times.
    for (let i = 0; i < 5; i++) {
      const conn = {};
      const admitting = limits.admitUser("finch", Date.now(), conn);
      limits.release(conn);
      await admitting.catch(() => {});
    }
    expect(slots.held("finch")).toBe(0);
    // Its next login gets in (before, the cap of 2 was held by connections long gone, for the node's life).
    const conn = {};
    await limits.admitUser("finch", Date.now(), conn);
    expect(slots.held("finch")).toBe(1);
    limits.release(conn);
    expect(slots.held("finch")).toBe(0);
    slots.close();
    l.close();
  });

  test("connections per user count every node's; a node killed holding one frees it once its liveness key expires", async () => {
    const [a, b, c] = (await cluster(3, { maxConnectionsPerUser: 2 })) as [ClusterNode, ClusterNode, ClusterNode];
    const wren = await registerWithTicket(a.port, "wren", PASSWORD);
    const onC = [await session(c), await session(c)];
    for (const s of onC) expect((await ticketLogin(s, "wren", wren.ticket, wren.ticketKey)).type).toBe("welcome");
    // c holds both: a and b refuse a third.
    expect(await ticketTo(a, wren)).toMatchObject({ code: "too_many_connections", message: expect.stringContaining("wren has 2 connections open") });
    expect((await ticketTo(b, wren)).code).toBe("too_many_connections");

    // One closed on c frees its slot, which b then takes; then none is left.
    onC[0]!.close();
    const untilWelcome = async (n: ClusterNode, what: string, timeoutMs: number): Promise<void> => {
      for (const deadline = Date.now() + timeoutMs; ; await Bun.sleep(100)) {
        const o = await ticketTo(n, wren);
        if (o.type === "welcome") return;
        expect(o.code).toBe("too_many_connections");
        if (Date.now() > deadline) throw new Error(`test: no login on ${n.node} within ${timeoutMs} ms: ${what}`);
      }
    };
    await untilWelcome(b, "the slot of the connection closed on c", 20_000);
    expect((await ticketTo(a, wren)).code).toBe("too_many_connections");

    // c dies unannounced holding one of wren's connections (b holds the other): a lets wren in once c's key has expired.
    const killed = Date.now();
    await c.crash();
    await untilWelcome(a, "c's slot, after its liveness key expired", NODE_TTL_MS + 30_000);
    console.log(`nodelimits: a killed node's connection slot was free ${Date.now() - killed} ms after it died (liveness TTL ${NODE_TTL_MS} ms)`);
    expect((await ticketTo(b, wren)).code).toBe("too_many_connections");
  });
});

describe("login limits while Redis cannot be asked", () => {
  test("fail closed: every login-phase check is refused server_busy, and nothing is held", async () => {
    const nowhere = new RedisLink("redis://127.0.0.1:1", { log: silentLogger, role: "test" });
    const limits = new ClusterLoginLimits(new ClusterBuckets(nowhere), new ClusterPenalties(nowhere, NO_PENALTIES), new ClusterSlots(nowhere, "n", 60_000), {
      logins: { rate: 1e9, burst: 1e9 },
      maxConnectionsPerUser: 1e9,
      log: silentLogger,
    });
    const code = (p: Promise<unknown>) => p.then(() => "admitted", (e: { code: string }) => e.code);
    expect(await code(limits.admitSource(SOURCE, Date.now()))).toBe("server_busy");
    const holder = {};
    expect(await code(limits.admitUser("wren", Date.now(), holder))).toBe("server_busy");
    limits.release(holder);
    nowhere.close();
  });
});
