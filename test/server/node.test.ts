/**
 * Two cluster nodes in this process on one real PostgreSQL and one real
 * Redis (test/engines.ts): each node is an edge, the first holds the writer
 * lease and runs the chat core, the other reaches it over the bus. Users on
 * different nodes see one room order, DMs and `who` across nodes; when the
 * core node dies unannounced the other takes the lease, the sessions on it
 * end with `core_changed`, and clients that log in again (with their
 * tickets, to the node that is left) resume from the last seq they saw
 * with nothing acknowledged lost. A third node's edge that dies is found
 * gone by its liveness key, and its users leave their rooms.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Message } from "../../src/protocol/messages.ts";
import { ClusterNode } from "../../src/server/node.ts";
import { readHead } from "../../src/store/pg/log.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { type PostgresHandle, type RedisHandle, requireEngines, startPostgres, startRedis } from "../engines.ts";
import { type Cred, registerWithTicket } from "./chat-helpers.ts";
import { LEASE_MS, clusterLogin, startClusterNode } from "./cluster-helpers.ts";
import { type LogEvent, type RawSession, untilMessage, waitFor } from "./helpers.ts";

const ready = requireEngines("postgres", "redis");
setDefaultTimeout(90_000);

describe.skipIf(!ready)("two cluster nodes on one PostgreSQL and one Redis", () => {
  let pg: PostgresHandle;
  let redis: RedisHandle;
  const nodes: ClusterNode[] = [];
  const sessions: RawSession[] = [];
  const events: LogEvent[] = [];

  async function startNode(name: string): Promise<ClusterNode> {
    const n = await startClusterNode({ pg, redis }, name, events);
    nodes.push(n);
    return n;
  }

  const login = (port: number, c: Cred): Promise<RawSession> => clusterLogin(port, c, sessions);

  /** Every message each session was sent, in order. */
  const stream = new Map<RawSession, Message[]>();
  const until = async (s: RawSession, what: string, pred: (m: Message) => boolean): Promise<{ match: Message; seen: Message[] }> => {
    const r = await untilMessage(s, pred, 20_000);
    stream.set(s, [...(stream.get(s) ?? []), ...r.seen]);
    if (!r.match) throw new Error(`test: no ${what}; seen ${JSON.stringify(r.seen)}`);
    return { match: r.match, seen: r.seen };
  };

  async function join(s: RawSession, room: string, since?: number): Promise<Message[]> {
    s.send({ type: "join", room, ...(since !== undefined ? { since } : {}) });
    return (await until(s, "history_end", (m) => m.type === "history_end")).seen.filter((m) => m.type === "message");
  }

  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPostgres({ fsync: false }), startRedis()]);
  });

  afterAll(async () => {
    for (const s of sessions) s.close();
    for (const n of nodes) await n.stop().catch(() => {});
    await Promise.all([pg?.stop(), redis?.stop()]);
  });

  test("room order, DMs and who across nodes; the core node dies, the other takes over, clients resume with nothing acknowledged lost; a dead edge's users leave their rooms", async () => {
    const a = await startNode("node-a");
    const b = await startNode("node-b");
    expect(a.isCore).toBe(true);
    expect(b.isCore).toBe(false);
    expect(events.find((e) => e.event === "core_elected")?.fields).toMatchObject({ node: "node-a", epoch: a.epoch });
    await waitFor("both edges to hear the core", () => a.edge.link.available() && b.edge.link.available(), 10_000, 20);
    const logged = JSON.stringify(events);
    expect(logged).not.toContain(pg.url.split("@")[0]!.split(":").at(-1)!);

    // alice registers on a, bob on b: one account table
    const [alice, bob] = await Promise.all([registerWithTicket(a.port, "alice", "five grey herons over the pier"), registerWithTicket(b.port, "bob", "seven quiet otters by the weir")]);
    const sa = await login(a.port, alice);
    const sb = await login(b.port, bob);
    await join(sa, "ops");
    await join(sb, "ops");

    // each says two lines, interleaved; both see one order
    let id = 0;
    const acked = new Map<number, number>();
    for (const [s, who] of [[sa, "alice"], [sb, "bob"], [sa, "alice"], [sb, "bob"]] as const) {
      const n = ++id;
      s.send({ type: "say", id: n, room: "ops", text: `${who} ${n}` });
      const ack = (await until(s, `ack ${n}`, (m) => m.type === "ack" && m.id === n)).match as Message<"ack">;
      acked.set(ack.seq, n);
    }
    expect([...acked.keys()]).toEqual([1, 2, 3, 4]);
    const seenBy = async (s: RawSession, me: string) => {
      s.send({ type: "history", room: "ops", limit: 50 });
      const h = (await until(s, "history_end", (m) => m.type === "history_end")).seen.filter((m) => m.type === "message" && m.history) as Message<"message">[];
      // what it was sent live: the others' lines and its own acks, in the room's order
      const live = stream.get(s)!.flatMap((m) => (m.type === "message" && !m.history && m.from !== me) || m.type === "ack" ? [m.seq] : []);
      return { history: h.map((m) => `${m.seq} ${m.text}`), live };
    };
    const order = ["1 alice 1", "2 bob 2", "3 alice 3", "4 bob 4"];
    expect(await seenBy(sa, "alice")).toEqual({ history: order, live: [1, 2, 3, 4] });
    expect(await seenBy(sb, "bob")).toEqual({ history: order, live: [1, 2, 3, 4] });

    // a DM from alice (on a) reaches bob (on b)
    sa.send({ type: "dm", id: ++id, to: "bob", text: "across the cluster" });
    const dm = (await until(sb, "direct", (m) => m.type === "direct")).match as Message<"direct">;
    expect(dm).toMatchObject({ from: "alice", to: "bob", text: "across the cluster" });
    // who is cluster-wide
    sb.send({ type: "who", room: "ops" });
    expect((await until(sb, "members", (m) => m.type === "members")).match).toMatchObject({ users: ["alice", "bob"] });

    // alice says one more, acknowledged; then the core node dies unannounced
    const last = ++id;
    sa.send({ type: "say", id: last, room: "ops", text: "acked before the crash" });
    const lastAck = (await until(sa, "ack", (m) => m.type === "ack" && m.id === last)).match as Message<"ack">;
    await until(sb, "the message", (m) => m.type === "message" && m.seq === lastAck.seq);
    await a.crash();

    // b takes the lease once a's expires, and bob's session on b ends with core_changed
    await waitFor("b to become the core", () => b.isCore, 4 * LEASE_MS + 10_000, 50);
    expect(b.epoch!).toBeGreaterThan(events.find((e) => e.event === "core_elected")!.fields.epoch as number);
    const ended = await until(sb, "core_changed", (m) => m.type === "error");
    expect(ended.match).toMatchObject({ type: "error", code: "core_changed" });

    // both log in again to b with their tickets and resume from the last seq they saw
    const sa2 = await login(b.port, alice);
    const sb2 = await login(b.port, bob);
    const resumedA = (await join(sa2, "ops", 2)) as Message<"message">[];
    expect(resumedA.map((m) => m.seq)).toEqual([3, 4, lastAck.seq]);
    expect(resumedA.at(-1)!.text).toBe("acked before the crash");
    await join(sb2, "ops", lastAck.seq);
    // numbering goes on after the takeover; bob sees alice's next line
    sa2.send({ type: "say", id: ++id, room: "ops", text: "after the takeover" });
    const next = (await until(sb2, "the next message", (m) => m.type === "message")).match as Message<"message">;
    expect(next).toMatchObject({ seq: lastAck.seq + 1, text: "after the takeover", from: "alice" });
    // the DM stored before the crash is still there for bob
    sb2.send({ type: "history", with: "alice", limit: 10 });
    const dms = (await until(sb2, "history_end", (m) => m.type === "history_end")).seen.filter((m) => m.type === "direct");
    expect(dms.map((m) => (m as Message<"direct">).text)).toEqual(["across the cluster"]);

    // a third node's edge dies: the core (b) finds its liveness key gone and its sessions leave their rooms
    sb2.close();
    await until(sa2, "bob's session on b closing", (m) => m.type === "left" && m.user === "bob");
    const c = await startNode("node-c");
    const sb3 = await login(c.port, bob);
    await join(sb3, "ops");
    await until(sa2, "bob joining from c", (m) => m.type === "joined" && m.user === "bob");
    await c.crash();
    const left = await until(sa2, "bob to leave", (m) => m.type === "left" && m.user === "bob");
    expect(left.match).toMatchObject({ type: "left", room: "ops", user: "bob" });
    expect(events.some((e) => e.event === "edge_gone" && e.fields.node === "node-c")).toBe(true);

    // the log in PostgreSQL went on under the new epoch
    const sql = openPg(pg.url, { max: 1 });
    try {
      expect((await readHead(sql)).epoch).toBe(b.epoch!);
    } finally {
      await sql.close();
    }
  });

  test("PostgreSQL restarts under the nodes: a node that is not the core says its elections fail once (not four times a second) and when they work again; the core stays", async () => {
    // (run alone, this test starts its own core)
    const core = nodes.find((n) => n.epoch !== null) ?? (await startNode("node-core"));
    await waitFor("a core", () => core.epoch !== null, 30_000);
    const epoch = core.epoch;
    const d = await startNode("node-d");
    const mark = events.length;
    // down for longer than the lease: without the lease kept for its holder from the database's start, node-d could take over
    await pg.restart({ crash: true, downMs: LEASE_MS * 2 });
    await waitFor("node-d's elections to work again", () => events.slice(mark).some((e) => e.event === "election_ok" && e.fields.node === "node-d"), 60_000);
    const failed = events.slice(mark).filter((e) => e.event === "election_failed" && e.fields.node === "node-d");
    expect(failed).toHaveLength(1);
    expect(failed[0]!.level).toBe("warn");
    expect(d.epoch).toBeNull();
    expect(core.epoch).toBe(epoch);
  });
});
