/**
 * Devices (PROTOCOL.md §7.11) on two cluster nodes in this process, on one
 * real PostgreSQL and one real Redis: a new machine enrolls on one node and
 * waits there while an enrolled device on the other node approves it (the
 * waiting enrollment is in PostgreSQL, the approval is taken and recorded by
 * the core); the per-account bound on waiting enrollments is the cluster's;
 * a revoked device's live session ends on whichever node holds it. Under
 * `--device-enroll password` an enroll on either node is recorded by the
 * core and let in as the new device.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { deviceId } from "../../src/fingerprint.ts";
import { signEnrollment } from "../../src/protocol/devices.ts";
import { DEVICE_PENDING_MAX } from "../../src/protocol/limits.ts";
import { DEFAULT_DEVICES, Devices } from "../../src/server/devices.ts";
import { silentLogger } from "../../src/log.ts";
import { PgAccountStore } from "../../src/store/pg/accounts.ts";
import { PgJournal } from "../../src/transcript/pgjournal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { hostKeyPair } from "../transcript/helpers.ts";
import type { Message } from "../../src/protocol/messages.ts";
import type { ClusterNode } from "../../src/server/node.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { type PostgresHandle, type RedisHandle, requireEngines, startPostgres, startRedis } from "../engines.ts";
import { startClusterNode } from "./cluster-helpers.ts";
import { type LogEvent, type RawSession, type RawUser, outcome, passwordLogin, rawSession, registerRaw, ticketLogin, untilMessage, waitFor } from "./helpers.ts";

const ready = requireEngines("postgres", "redis");
setDefaultTimeout(90_000);
const PW = "cluster devices passphrase";

let pg: PostgresHandle;
let redis: RedisHandle;
const events: LogEvent[] = [];
const open: RawSession[] = [];

if (ready) {
  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPostgres({ fsync: false }), startRedis()]);
  });
  afterAll(async () => {
    for (const s of open) s.close();
    await Promise.all([pg?.stop(), redis?.stop()]);
  });
}

/** Two nodes on the engines, the first the core, both edges hearing it; stopped after the describe's tests. */
function twoNodes(server: Parameters<typeof startClusterNode>[3] = {}): { a: ClusterNode; b: ClusterNode } {
  const nodes = {} as { a: ClusterNode; b: ClusterNode };
  beforeAll(async () => {
    nodes.a = await startClusterNode({ pg, redis }, `${server.devices?.enroll ?? "approve"}-a`, events, server);
    nodes.b = await startClusterNode({ pg, redis }, `${server.devices?.enroll ?? "approve"}-b`, events, server);
    await waitFor("both edges to hear the core", () => nodes.a.edge.link.available() && nodes.b.edge.link.available(), 10_000, 20);
  });
  afterAll(async () => {
    for (const n of [nodes.b, nodes.a]) await n?.stop().catch(() => {});
  });
  return nodes;
}

async function session(port: number, u: RawUser, device: Ed25519KeyPair = u.identity, ticketKey?: Uint8Array): Promise<RawSession> {
  const s = await rawSession(port);
  open.push(s);
  const o = await passwordLogin(s, u.user, u.password, device, ticketKey);
  expect(o.msg).toMatchObject({ type: "welcome", user: u.user });
  return s;
}

async function enroll(port: number, user: string, key = ed25519Generate(), name = "laptop", ticketKey?: Uint8Array) {
  const s = await rawSession(port);
  open.push(s);
  s.send({ type: "enroll", user, device_key: key.publicKey, sig: s.sign(key), password: PW, name, ...(ticketKey ? { ticket_key: ticketKey } : {}) });
  return { s, key, answer: outcome(await s.receive()) };
}

async function ask<T extends Message["type"]>(s: RawSession, req: Message, want: T): Promise<Message<T> | Message<"notice">> {
  s.send(req);
  const { match } = await untilMessage(s, (m) => m.type === want || (m.type === "notice" && m.code !== "slow_down"), 20_000);
  return match as Message<T> | Message<"notice">;
}

/** The log's entries in PostgreSQL of `type`, parsed. */
async function logged(type: string): Promise<Record<string, unknown>[]> {
  const sql = openPg(pg.url, { max: 1 });
  try {
    const rows = await sql`SELECT bytes FROM log_lines ORDER BY seq`;
    return rows.map((r: { bytes: Uint8Array }) => JSON.parse(new TextDecoder().decode(r.bytes))).filter((l: { type?: string }) => l.type === type);
  } finally {
    await sql.close();
  }
}

describe.skipIf(!ready)("devices on a cluster of two nodes, enrolled by approval", () => {
  const n = twoNodes();

  test("a new machine waits on one node, an enrolled device on the other sees it and approves it, and it is let in; both ways round; recorded in the log", async () => {
    expect(n.a.isCore).toBe(true);
    const alice = await registerRaw(n.b.port, "alice", PW);
    const approver = await session(n.a.port, alice);
    const approverOnB = await session(n.b.port, alice);

    for (const [where, from, name] of [
      [n.b, approver, "laptop on the edge"],
      [n.a, approverOnB, "phone on the core's node"],
    ] as const) {
      const ticketKey = ed25519Generate();
      const w = await enroll(where.port, "alice", ed25519Generate(), name, ticketKey.publicKey);
      expect(w.answer.msg).toEqual({ type: "enroll_pending", expires: expect.any(Number) });
      const list = (await ask(from, { type: "device_list" }, "devices")) as Message<"devices">;
      expect(list.pending).toEqual([{ key: w.key.publicKey, name, source: expect.any(String), since: expect.any(Number), expires: (w.answer.msg as Message<"enroll_pending">).expires }]);
      const sig = signEnrollment(alice.identity.secretKey, "alice", w.key.publicKey);
      expect(await ask(from, { type: "device_approve", key: w.key.publicKey, sig }, "device_added")).toEqual({ type: "device_added", id: deviceId(w.key.publicKey) });
      // The waiting connection, on the other node, is now a session of the new device, with its ticket.
      const welcome = await untilMessage(w.s, (m) => m.type === "welcome" || m.type === "error", 20_000);
      expect(welcome.match).toMatchObject({ type: "welcome", user: "alice", ticket: expect.any(Uint8Array) });
      // Approved once: nothing waits any more, on either node.
      expect(((await ask(from, { type: "device_list" }, "devices")) as Message<"devices">).pending).toEqual([]);
      // Its key logs in by password on both nodes from then on.
      for (const node of [n.a, n.b]) await session(node.port, alice, w.key);
    }
    const enrolled = await logged("device_enrolled");
    expect(enrolled.map((l) => l.name)).toEqual(["laptop on the edge", "phone on the core's node"]);
    expect(enrolled[0]).toMatchObject({ user: "alice", by: deviceId(alice.identity.publicKey), sig: expect.any(String) });
  });

  test(`at most ${DEVICE_PENDING_MAX} enrollments wait per account across the nodes: the next, on either node, is refused too_many_pending`, async () => {
    await registerRaw(n.a.port, "carol", PW);
    for (let i = 0; i < DEVICE_PENDING_MAX; i++) {
      const w = await enroll((i % 2 === 0 ? n.a : n.b).port, "carol", ed25519Generate(), `machine ${i}`);
      expect(w.answer.msg.type).toBe("enroll_pending");
    }
    for (const node of [n.a, n.b]) {
      const over = await enroll(node.port, "carol");
      expect(over.answer).toMatchObject({ type: "error", code: "too_many_pending" });
    }
  });

  test("a revoked device's live session on one node ends at once when it is revoked from the other; its ticket is refused on both", async () => {
    const hank = await registerRaw(n.a.port, "hank", PW);
    const owner = await session(n.a.port, hank);
    const laptopTicketKey = ed25519Generate();
    const w = await enroll(n.b.port, "hank", ed25519Generate(), "stolen laptop", laptopTicketKey.publicKey);
    expect(await ask(owner, { type: "device_approve", key: w.key.publicKey, sig: signEnrollment(hank.identity.secretKey, "hank", w.key.publicKey) }, "device_added")).toMatchObject({ type: "device_added" });
    const welcome = (await untilMessage(w.s, (m) => m.type === "welcome", 20_000)).match as Message<"welcome">;
    w.s.send({ type: "join", room: "ops" });
    await untilMessage(w.s, (m) => m.type === "history_end", 20_000);

    const r = await ask(owner, { type: "device_revoke", id: deviceId(w.key.publicKey) }, "device_revoked");
    expect(r).toEqual({ type: "device_revoked", id: deviceId(w.key.publicKey), ended: 1 });
    expect((await untilMessage(w.s, (m) => m.type === "error", 20_000)).match).toMatchObject({ type: "error", code: "device_revoked" });
    expect(await w.s.conn.waitClosed(10_000)).toBe(true);
    for (const node of [n.a, n.b]) {
      const t = await rawSession(node.port);
      open.push(t);
      expect((await ticketLogin(t, "hank", welcome.ticket!, laptopTicketKey)).code).toBe("auth_failed");
    }
    expect((await logged("device_revoked")).map((l) => l.device)).toEqual([deviceId(w.key.publicKey)]);
  });
});

describe.skipIf(!ready)("devices on a cluster of two nodes, enrolled by the password alone (serve --device-enroll password)", () => {
  const n = twoNodes({ devices: { ...DEFAULT_DEVICES, enroll: "password", maxActive: 3 } });

  test("an enroll on either node is let in as the new device, recorded by the core as enrolled by the password; past the cap, too_many_devices", async () => {
    const dave = await registerRaw(n.a.port, "dave", PW);
    const keys: Ed25519KeyPair[] = [];
    for (const [node, name] of [
      [n.b, "laptop on the edge"],
      [n.a, "phone on the core's node"],
    ] as const) {
      const w = await enroll(node.port, "dave", ed25519Generate(), name, ed25519Generate().publicKey);
      expect(w.answer.msg).toMatchObject({ type: "welcome", user: "dave", ticket: expect.any(Uint8Array) });
      keys.push(w.key);
    }
    for (const node of [n.a, n.b]) for (const k of keys) await session(node.port, dave, k);
    const enrolled = (await logged("device_enrolled")).filter((l) => l.user === "dave");
    expect(enrolled).toEqual([
      expect.objectContaining({ device: deviceId(keys[0]!.publicKey), name: "laptop on the edge", by: "password", source: expect.any(String) }),
      expect.objectContaining({ device: deviceId(keys[1]!.publicKey), name: "phone on the core's node", by: "password" }),
    ]);
    const over = await enroll(n.b.port, "dave");
    expect(over.answer).toMatchObject({ type: "error", code: "too_many_devices" });
    const list = (await ask(await session(n.b.port, dave), { type: "device_list" }, "devices")) as Message<"devices">;
    expect(list.devices.map((d) => d.by)).toEqual(["register", "password", "password"]);
    expect(list.pending).toEqual([]);
  });
});

describe.skipIf(!ready)("a core fenced while it records an enrollment", () => {
  /** gina's account, and a core whose lease another node took (it was paused): what it appends is never committed. */
  async function fencedCore(db: string, enroll: "password" | "approve") {
    // A database of its own on the same server: the nodes of the other tests never see this lease.
    const admin = openPg(pg.url, { max: 1 });
    await admin.unsafe(`DROP DATABASE IF EXISTS ${db}`);
    await admin.unsafe(`CREATE DATABASE ${db}`);
    await admin.close();
    const sql = openPg(pg.url.replace(/\/[^/]*$/, `/${db}`), { max: 4 });
    const writer = { ...DEFAULT_WRITER, fsync: "always" as const, dir: "(database)", hostKey: hostKeyPair(5), version: "test", log: silentLogger, history: 50 };
    const core = (await PgJournal.open(sql, { ...writer, holder: "core-a", leaseMs: 1000, renewMs: 1e9 }))!;
    const store = await PgAccountStore.open(sql);
    const gina = ed25519Generate();
    await store.createAccount({ name: "gina", identityKey: gina.publicKey, verifier: "x", createdAt: Date.now() });
    const opts = { ...DEFAULT_DEVICES, enroll };
    const onCore = new Devices(store, core, opts);
    const onEdge = new Devices(store, null, opts);
    await sql`UPDATE log_lease SET expires_at = now() - interval '1 millisecond'`;
    const next = (await PgJournal.open(sql, { ...writer, holder: "core-b" }))!;
    const active = async (key: Uint8Array) => (await store.activeDeviceKeys("gina")).some((k) => Buffer.from(k).equals(Buffer.from(key)));
    const stop = async () => {
      for (const j of [core, next]) {
        j.close("test end");
        await j.closed().catch(() => {});
      }
      await sql.close();
    };
    return { gina, onCore, onEdge, active, stop };
  }

  test("by the password: the key is stored only once its device_enrolled line is committed; the waiting machine is refused not_recorded", async () => {
    const f = await fencedCore("fenced_password", "password");
    const laptop = ed25519Generate().publicKey;
    const sweep = setInterval(() => f.onCore.prune(Date.now()), 100); // the old core's sweep, as node.ts runs it
    try {
      const answer = await f.onEdge.enroll("gina", laptop, "laptop", "198.51.100.7", Date.now()).then(
        (r) => r.kind,
        (e: { code?: string }) => e.code,
      );
      expect(answer).toBe("not_recorded");
    } finally {
      clearInterval(sweep);
    }
    expect(await f.active(laptop)).toBe(false);
    await f.stop();
  });

  test("by approval: the approver is told not_recorded and the key is not stored, so no node lets the new machine in", async () => {
    const f = await fencedCore("fenced_approve", "approve");
    const laptop = ed25519Generate().publicKey;
    expect((await f.onEdge.enroll("gina", laptop, "laptop", "198.51.100.7", Date.now())).kind).toBe("pending");
    const me = { user: "gina", session: Buffer.alloc(16, 1).toString("base64"), device: f.gina.publicKey };
    const answer = await f.onCore.approve(me, laptop, signEnrollment(f.gina.secretKey, "gina", laptop), Date.now());
    expect(answer).toMatchObject({ type: "notice", code: "not_recorded" });
    expect(await f.active(laptop)).toBe(false);
    await f.stop();
  });
});
