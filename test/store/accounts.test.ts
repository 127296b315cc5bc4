/**
 * The AccountStore contract (src/store/accounts.ts), the same tests against
 * both implementations: securechat.db (a temporary directory) and PostgreSQL
 * (a real server from test/engines.ts, a fresh database per test). Then
 * PostgreSQL alone with two pools racing, as two nodes of a cluster would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { SQL } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toHex } from "../../src/bytes.ts";
import { randomBytes, sha256 } from "../../src/crypto/index.ts";
import { Accounts } from "../../src/server/accounts.ts";
import { Gate } from "../../src/server/limits.ts";
import type { AccountStore, Device } from "../../src/store/accounts.ts";
import { Store } from "../../src/store/db.ts";
import { DM_MARKER, WriteBehindMarkers } from "../../src/store/markers.ts";
import { PgAccountStore } from "../../src/store/pg/accounts.ts";
import { openPg } from "../../src/store/pg/pg.ts";
import { type PostgresHandle, requireEngines, startPostgres } from "../engines.ts";

const hasPg = requireEngines("postgres");

/** One store under test, and every byte its tickets' rows hold (hex), to show what is kept of a ticket. */
interface Opened {
  store: AccountStore;
  ticketBytes(): Promise<string[]>;
  done(): Promise<void>;
}

let pg: PostgresHandle | null = null;
let admin: SQL | null = null;
let databases = 0;

beforeAll(async () => {
  if (!hasPg) return;
  pg = await startPostgres({ fsync: false });
  admin = openPg(pg.url, { max: 2 });
});
afterAll(async () => {
  await admin?.close();
  await pg?.stop();
});

/** A fresh, empty database on the test server; its URL. */
async function freshDatabase(): Promise<string> {
  const name = `accounts_${++databases}`;
  await admin!.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(pg!.url);
  url.pathname = `/${name}`;
  return url.toString();
}

async function openSqlite(): Promise<Opened> {
  const dir = mkdtempSync(join(tmpdir(), "sc-accounts-"));
  const store = new Store(dir);
  return {
    store,
    ticketBytes: async () =>
      store.db
        .query<{ h: string }, []>("SELECT hex(hash) || hex(key) || coalesce(hex(device), '') AS h FROM tickets")
        .all()
        .map((r) => r.h.toLowerCase()),
    done: async () => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function openPostgres(): Promise<Opened> {
  const sql = openPg(await freshDatabase(), { max: 4 });
  const store = await PgAccountStore.open(sql);
  return {
    store,
    ticketBytes: async () =>
      (await sql`SELECT encode(hash, 'hex') || encode(key, 'hex') || coalesce(encode(device, 'hex'), '') AS h FROM accounts_tickets`).map((r: { h: string }) => r.h),
    done: () => sql.close(),
  };
}

const kinds: [string, boolean, () => Promise<Opened>][] = [
  ["securechat.db", true, openSqlite],
  ["PostgreSQL", hasPg, openPostgres],
];

const key = (n: number): Uint8Array => new Uint8Array(32).fill(n);
const hex = (bs: Uint8Array[]): string[] => bs.map(toHex);
const device = (n: number, enrolledAt: number, revokedAt: number | null = null): Device => ({ key: key(n), name: `d${n}`, enrolledAt, enrolledBy: "password", revokedAt });

for (const [kind, available, open] of kinds) {
  describe.skipIf(!available)(`AccountStore contract: ${kind}`, () => {
    async function using(fn: (s: AccountStore, o: Opened) => Promise<void>): Promise<void> {
      const o = await open();
      try {
        await fn(o.store, o);
      } finally {
        await o.done();
      }
    }

    test("a name is created once: the second createAccount is false and the first account stays as it was", () =>
      using(async (s) => {
        expect(await s.createAccount({ name: "alice", identityKey: key(1), verifier: "v1", createdAt: 1000 })).toBe(true);
        expect(await s.createAccount({ name: "alice", identityKey: key(2), verifier: "v2", createdAt: 2000 })).toBe(false);
        expect(await s.account("alice")).toEqual({ name: "alice", identityKey: key(1), verifier: "v1", createdAt: 1000 });
        expect(await s.account("nobody")).toBeNull();
        // The identity key is the account's first device.
        expect(await s.devices("alice")).toEqual([{ key: key(1), name: "", enrolledAt: 1000, enrolledBy: "register", revokedAt: null }]);
      }));

    test("verifier and lock: changed on an account, false for a name nobody holds", () =>
      using(async (s) => {
        await s.createAccount({ name: "bob", identityKey: key(1), verifier: "old", createdAt: 1 });
        expect(await s.setVerifier("bob", "new")).toBe(true);
        expect((await s.account("bob"))!.verifier).toBe("new");
        expect(await s.setVerifier("nobody", "x")).toBe(false);
        expect(await s.lockedAt("bob")).toBeNull();
        expect(await s.setLocked("bob", 1_800_000_000_000)).toBe(true);
        expect(await s.lockedAt("bob")).toBe(1_800_000_000_000);
        expect(await s.setLocked("bob", null)).toBe(true);
        expect(await s.lockedAt("bob")).toBeNull();
        expect(await s.setLocked("nobody", 5)).toBe(false);
        expect(await s.lockedAt("nobody")).toBeNull();
      }));

    test("devices: oldest first, revoked ones not active, a revocation deletes only that device's tickets, once", () =>
      using(async (s) => {
        await s.createAccount({ name: "carol", identityKey: key(1), verifier: "v", createdAt: 10 });
        await s.addDevice("carol", device(3, 30));
        await s.addDevice("carol", device(2, 20));
        expect(hex((await s.devices("carol")).map((d) => d.key))).toEqual(hex([key(1), key(2), key(3)]));
        await s.addTicket(key(100), { user: "carol", key: key(50), expiresAt: 1e13, device: key(2), source: "10.0.0.2" }, 40);
        await s.addTicket(key(101), { user: "carol", key: key(51), expiresAt: 1e13, device: key(3), source: "10.0.0.3" }, 41);
        expect(await s.revokeDevice("carol", key(2), 50)).toBe(true);
        expect(await s.revokeDevice("carol", key(2), 60)).toBe(false);
        expect(await s.revokeDevice("carol", key(9), 60)).toBe(false);
        expect(hex(await s.activeDeviceKeys("carol"))).toEqual(hex([key(1), key(3)]));
        expect((await s.devices("carol")).find((d) => d.key[0] === 2)).toMatchObject({ name: "d2", enrolledBy: "password", revokedAt: 50 });
        expect(await s.ticket(key(100), 45)).toBeNull();
        expect(await s.ticket(key(101), 45)).toMatchObject({ user: "carol", device: key(3) });
      }));

    test("devices kept: past `keep` rows the oldest revoked ones are forgotten, never an active one", () =>
      using(async (s) => {
        await s.createAccount({ name: "dave", identityKey: key(1), verifier: "v", createdAt: 1 });
        await s.addDevice("dave", device(2, 2, 200));
        await s.addDevice("dave", device(3, 3, 100));
        await s.addDevice("dave", device(4, 4), 3);
        await s.addDevice("dave", device(5, 5), 3);
        // Two past the bound: both revoked ones go, the one revoked first (3) before the other.
        expect(hex((await s.devices("dave")).map((d) => d.key))).toEqual(hex([key(1), key(4), key(5)]));
        await s.addDevice("dave", device(6, 6), 3);
        expect(await s.devices("dave")).toHaveLength(4);
      }));

    test("tickets: found by hash until they expire, listed newest first with the total, by prefix, revoked, pruned", () =>
      using(async (s) => {
        await s.createAccount({ name: "erin", identityKey: key(1), verifier: "v", createdAt: 1 });
        await s.createAccount({ name: "fay", identityKey: key(2), verifier: "v", createdAt: 1 });
        const h = (n: number) => sha256(new Uint8Array([n]));
        for (let i = 1; i <= 5; i++) await s.addTicket(h(i), { user: "erin", key: key(40 + i), expiresAt: 1000 + i * 100, device: i === 1 ? null : key(1), source: i === 5 ? "" : `10.0.0.${i}` }, 500 + i);
        await s.addTicket(h(9), { user: "fay", key: key(49), expiresAt: 5000, device: key(2) }, 600);
        expect(await s.ticket(h(1), 1099)).toEqual({ user: "erin", key: key(41), expiresAt: 1100, device: null });
        expect(await s.ticket(h(1), 1100)).toBeNull();
        const listed = await s.ticketsOf("erin", 1100, 2);
        expect(listed.total).toBe(4);
        expect(listed.tickets).toEqual([
          { hash: h(5), createdAt: 505, expiresAt: 1500, device: key(1), source: "" },
          { hash: h(4), createdAt: 504, expiresAt: 1400, device: key(1), source: "10.0.0.4" },
        ]);
        expect(await s.ticketsOf("erin", 1100, 0)).toEqual({ tickets: [], total: 4 });
        expect(await s.ticketsOf("nobody", 0, 10)).toEqual({ tickets: [], total: 0 });
        expect(hex(await s.ticketsByPrefix("erin", h(3).subarray(0, 3), 1100))).toEqual(hex([h(3)]));
        expect(await s.ticketsByPrefix("fay", h(3).subarray(0, 3), 0)).toEqual([]);
        expect(await s.revokeTicket(h(3))).toBe(true);
        expect(await s.revokeTicket(h(3))).toBe(false);
        expect(await s.pruneTickets(1200)).toBe(2);
        expect((await s.ticketsOf("erin", 0, 10)).total).toBe(2);
        expect(await s.revokeTicketsOf("erin")).toBe(2);
        expect(await s.ticket(h(9), 0)).toMatchObject({ user: "fay" });
      }));

    test("a ticket issued through Accounts is kept as its SHA-256 only, and logs in; revoked, it no longer does", () =>
      using(async (s, o) => {
        const accounts = new Accounts(s, new Gate(1, 4), 3600_000);
        await s.createAccount({ name: "gus", identityKey: key(7), verifier: "v", createdAt: 1 });
        const now = Date.now();
        const ticketKey = key(8);
        const issued = await accounts.issueTicket("gus", ticketKey, now, key(7), "10.1.1.1");
        const rows = await o.ticketBytes();
        expect(rows).toHaveLength(1);
        expect(rows[0]).toContain(toHex(sha256(issued.ticket)));
        expect(rows[0]).not.toContain(toHex(issued.ticket));
        const ok = await accounts.loginWithTicket("gus", issued.ticket, (k) => toHex(k) === toHex(ticketKey), now + 1);
        expect(toHex(ok.device)).toBe(toHex(key(7)));
        expect(await accounts.revokeTicket(issued.ticket)).toBe(true);
        await expect(accounts.loginWithTicket("gus", issued.ticket, () => true, now + 2)).rejects.toMatchObject({ code: "auth_failed" });
      }));

    test("read markers: advanced, lowered, forgotten; a user's least recently set marker goes past the bound", () =>
      using(async (s) => {
        await s.createAccount({ name: "hal", identityKey: key(1), verifier: "v", createdAt: 1 });
        const m = s.markerStore;
        await m.write([
          { op: "advance", user: "hal", device: "laptop", room: "general", seq: 5, at: 10, max: 3 },
          { op: "advance", user: "hal", device: "laptop", room: "general", seq: 4, at: 11, max: 3 },
          { op: "advance", user: "hal", device: "phone", room: "general", seq: 7, at: 12, max: 3 },
          { op: "advance", user: "hal", device: "laptop", room: DM_MARKER, seq: 2, at: 13, max: 3 },
        ]);
        expect(await m.all("hal")).toEqual([
          { device: "laptop", room: "general", seq: 5, at: 10 },
          { device: "phone", room: "general", seq: 7, at: 12 },
          { device: "laptop", room: DM_MARKER, seq: 2, at: 13 },
        ]);
        await m.write([
          { op: "lower", user: "hal", room: "general", seq: 6 },
          { op: "advance", user: "hal", device: "laptop", room: "random", seq: 1, at: 14, max: 3 },
        ]);
        expect(await m.all("hal")).toEqual([
          { device: "phone", room: "general", seq: 6, at: 12 },
          { device: "laptop", room: DM_MARKER, seq: 2, at: 13 },
          { device: "laptop", room: "random", seq: 1, at: 14 },
        ]);
        await m.write([{ op: "forget", user: "hal", room: "general" }]);
        expect((await m.all("hal")).map((r) => r.room)).toEqual([DM_MARKER, "random"]);
        expect(await m.all("nobody")).toEqual([]);
      }));

    test("markers written behind: read from memory once loaded, flushed in one write, and read back by a fresh server", () =>
      using(async (s) => {
        await s.createAccount({ name: "ida", identityKey: key(1), verifier: "v", createdAt: 1 });
        await s.markerStore.write([{ op: "advance", user: "ida", device: "laptop", room: "general", seq: 3, at: 1, max: 10 }]);
        const w = new WriteBehindMarkers(s.markerStore);
        await w.load("ida");
        expect(w.get("ida", "laptop", "general")).toEqual({ room: "general", seq: 3, at: 1 });
        w.advance("ida", "laptop", "general", 9, 2, 10);
        w.advance("ida", "phone", "random", 4, 3, 10);
        w.release("ida");
        await w.flush();
        expect(w.pending).toBe(0);
        const again = new WriteBehindMarkers(s.markerStore);
        await again.load("ida");
        expect(again.rooms("ida", "laptop")).toEqual([
          { room: "general", seq: 9, at: 2 },
          { room: "random", seq: 4, at: 3 },
        ]);
      }));
  });
}

describe.skipIf(!hasPg)("PostgreSQL: two nodes racing on one database", () => {
  let url: string;
  let a: SQL;
  let b: SQL;
  let A: PgAccountStore;
  let B: PgAccountStore;
  beforeAll(async () => {
    url = await freshDatabase();
    a = openPg(url, { max: 4 });
    b = openPg(url, { max: 4 });
    // Both nodes start at once: the migration runs once.
    [A, B] = await Promise.all([PgAccountStore.open(a), PgAccountStore.open(b)]);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  test("two nodes registering the same 20 names at once: each name is created exactly once, with one node's key", async () => {
    const names = Array.from({ length: 20 }, (_, i) => `race${i}`);
    const results = await Promise.all(
      names.flatMap((name) => [
        A.createAccount({ name, identityKey: key(1), verifier: "a", createdAt: 1 }),
        B.createAccount({ name, identityKey: key(2), verifier: "b", createdAt: 1 }),
      ]),
    );
    for (let i = 0; i < names.length; i++) expect([results[2 * i], results[2 * i + 1]].sort()).toEqual([false, true]);
    for (const name of names) {
      const acc = (await A.account(name))!;
      // The winner's account and first device agree: nothing of the loser's was kept.
      expect(hex(await B.activeDeviceKeys(name))).toEqual(hex([acc.identityKey]));
      expect(acc.verifier).toBe(acc.identityKey[0] === 1 ? "a" : "b");
    }
  });

  test("register through Accounts on two nodes at once: one account, the other attempt is refused name_taken as on one node", async () => {
    const gate = () => new Gate(1, 4);
    const attempts = [new Accounts(A, gate(), 3600_000), new Accounts(B, gate(), 3600_000)].map((acc, i) =>
      acc.register("petrel", key(10 + i), "a heron walks the long grey pier at dawn", Date.now()).then(
        () => "created",
        (e: { code: string; message: string }) => `${e.code}: ${e.message}`,
      ),
    );
    expect((await Promise.all(attempts)).sort()).toEqual(["created", 'name_taken: register: the name "petrel" is taken']);
  });

  test("devices kept under a race: two nodes adding devices at once never leave more than `keep` rows", async () => {
    await A.createAccount({ name: "jan", identityKey: key(1), verifier: "v", createdAt: 1 });
    // At the bound already: each new device must forget exactly one revoked device, the oldest.
    for (let i = 0; i < 30; i++) await A.addDevice("jan", { key: randomBytes(32), name: "old", enrolledAt: 2 + i, enrolledBy: "password", revokedAt: 100 + i });
    const keep = 31;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? A : B).addDevice("jan", { key: randomBytes(32), name: `new${i}`, enrolledAt: 200 + i, enrolledBy: "password", revokedAt: null }, keep)),
    );
    const kept = await B.devices("jan");
    expect(kept).toHaveLength(keep);
    // The 21 active devices stay; of the revoked ones, the 10 revoked last.
    expect(kept.filter((d) => d.revokedAt === null)).toHaveLength(21);
    expect(kept.flatMap((d) => (d.revokedAt === null ? [] : [d.revokedAt])).sort()).toEqual(Array.from({ length: 10 }, (_, i) => 120 + i));
  });

  test("read markers under a race: two nodes flushing new markers of one user at once keep exactly `max`, the most recently set", async () => {
    await A.createAccount({ name: "kim", identityKey: key(1), verifier: "v", createdAt: 1 });
    const max = 30;
    // At the bound already: each new marker must forget exactly one, the least recently set.
    await A.markerStore.write(Array.from({ length: max }, (_, i) => ({ op: "advance" as const, user: "kim", device: "old", room: `room${i}`, seq: 1, at: 100 + i, max })));
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? A : B).markerStore.write([{ op: "advance", user: "kim", device: `dev${i}`, room: "general", seq: i, at: 1000 + i, max }]),
      ),
    );
    const kept = await A.markerStore.all("kim");
    expect(kept).toHaveLength(max);
    expect(kept.filter((m) => m.device === "old").map((m) => m.at)).toEqual(Array.from({ length: 10 }, (_, i) => 120 + i));
  });

  test("one ticket revoked from two nodes at once: exactly one revocation counts", async () => {
    await A.createAccount({ name: "lou", identityKey: key(1), verifier: "v", createdAt: 1 });
    const hashes = Array.from({ length: 10 }, () => sha256(randomBytes(32)));
    for (const h of hashes) await A.addTicket(h, { user: "lou", key: key(2), expiresAt: 1e13, device: key(1) }, 1);
    const results = await Promise.all(hashes.flatMap((h) => [A.revokeTicket(h), B.revokeTicket(h)]));
    expect(results.filter(Boolean)).toHaveLength(10);
    expect((await B.ticketsOf("lou", 0, 10)).total).toBe(0);
  });
});
