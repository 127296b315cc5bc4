/**
 * The account store in PostgreSQL (component `accounts`), shared by the
 * nodes of a cluster: the same contract as securechat.db (store/accounts.ts),
 * the same limits, and the same answers when nodes race. A name is taken
 * once: the primary key decides, and the loser's `createAccount` is false,
 * as a taken name is on one node. Changes to one account's devices and
 * markers (count, then forget the oldest) lock the account's row first, so
 * two nodes cannot both pass a bound. Tickets are kept by their SHA-256,
 * as in securechat.db. Enrollments waiting for approval are kept here too
 * (`PendingDevices`), bounded per account under the same lock. Times are
 * milliseconds since the epoch (bigint).
 */
import type { SQL } from "bun";
import type { Account, AccountStore, Device, ListedTicket, PendingDevice, PendingDevices, Ticket } from "../accounts.ts";
import type { DeviceMarker, MarkerOp, MarkerStore } from "../markers.ts";
import { type Component, migrate } from "./pg.ts";

export const ACCOUNTS: Component = {
  name: "accounts",
  steps: [
    `CREATE TABLE accounts (
       name         text PRIMARY KEY,
       identity_key bytea NOT NULL CHECK (length(identity_key) = 32),
       verifier     text NOT NULL,
       created_at   bigint NOT NULL,
       locked_at    bigint
     );
     CREATE TABLE accounts_tickets (
       hash       bytea PRIMARY KEY CHECK (length(hash) = 32),
       username   text NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
       key        bytea NOT NULL CHECK (length(key) = 32),
       expires_at bigint NOT NULL,
       created_at bigint NOT NULL,
       device     bytea CHECK (device IS NULL OR length(device) = 32),
       source     text
     );
     CREATE INDEX accounts_tickets_user ON accounts_tickets (username, expires_at);
     CREATE INDEX accounts_tickets_expiry ON accounts_tickets (expires_at);
     CREATE TABLE accounts_devices (
       username    text NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
       key         bytea NOT NULL CHECK (length(key) = 32),
       name        text NOT NULL,
       enrolled_at bigint NOT NULL,
       enrolled_by text NOT NULL,
       revoked_at  bigint,
       added       bigserial,
       PRIMARY KEY (username, key)
     );
     CREATE TABLE accounts_read_markers (
       username text NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
       device   text NOT NULL,
       room     text NOT NULL,
       seq      bigint NOT NULL CHECK (seq >= 0),
       at       bigint NOT NULL,
       added    bigserial,
       PRIMARY KEY (username, device, room)
     );
     CREATE INDEX accounts_read_markers_room ON accounts_read_markers (username, room);`,
    // Enrollments waiting for approval (PROTOCOL.md §7.11): the new machine waits on one node, the approval reaches the core on another.
    `CREATE TABLE accounts_pending_devices (
       username   text NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
       key        bytea NOT NULL CHECK (length(key) = 32),
       name       text NOT NULL,
       source     text NOT NULL,
       since      bigint NOT NULL,
       expires_at bigint NOT NULL,
       PRIMARY KEY (username, key)
     );
     CREATE INDEX accounts_pending_devices_expiry ON accounts_pending_devices (expires_at);`,
  ],
};

const bytes = (b: Uint8Array): Uint8Array => new Uint8Array(b);
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export class PgAccountStore implements AccountStore, PendingDevices {
  readonly markerStore: MarkerStore;
  readonly pendingDevices: PendingDevices = this;

  private constructor(readonly sql: SQL) {
    this.markerStore = new PgMarkers(sql);
  }

  /** The store over `sql`, its tables migrated to this binary's version first. */
  static async open(sql: SQL): Promise<PgAccountStore> {
    await migrate(sql, ACCOUNTS);
    return new PgAccountStore(sql);
  }

  async createAccount(a: Account): Promise<boolean> {
    return this.sql.begin(async (tx) => {
      const r = await tx`INSERT INTO accounts (name, identity_key, verifier, created_at) VALUES (${a.name}, ${a.identityKey}, ${a.verifier}, ${a.createdAt})
                         ON CONFLICT (name) DO NOTHING`;
      if (r.count !== 1) return false;
      await tx`INSERT INTO accounts_devices (username, key, name, enrolled_at, enrolled_by) VALUES (${a.name}, ${a.identityKey}, '', ${a.createdAt}, 'register')`;
      return true;
    });
  }

  async account(name: string): Promise<Account | null> {
    const [r] = await this.sql`SELECT name, identity_key, verifier, created_at FROM accounts WHERE name = ${name}`;
    return r ? { name: r.name, identityKey: bytes(r.identity_key), verifier: r.verifier, createdAt: num(r.created_at) } : null;
  }

  async setVerifier(name: string, verifier: string): Promise<boolean> {
    return (await this.sql`UPDATE accounts SET verifier = ${verifier} WHERE name = ${name}`).count === 1;
  }

  async setLocked(name: string, at: number | null): Promise<boolean> {
    return (await this.sql`UPDATE accounts SET locked_at = ${at} WHERE name = ${name}`).count === 1;
  }

  async lockedAt(name: string): Promise<number | null> {
    const [r] = await this.sql`SELECT locked_at FROM accounts WHERE name = ${name}`;
    return numOrNull(r?.locked_at);
  }

  async devices(user: string): Promise<Device[]> {
    const rows = await this.sql`SELECT key, name, enrolled_at, enrolled_by, revoked_at FROM accounts_devices WHERE username = ${user} ORDER BY enrolled_at, key`;
    return rows.map((r: Record<string, unknown>) => ({
      key: bytes(r.key as Uint8Array),
      name: r.name as string,
      enrolledAt: num(r.enrolled_at),
      enrolledBy: r.enrolled_by as string,
      revokedAt: numOrNull(r.revoked_at),
    }));
  }

  async activeDeviceKeys(user: string): Promise<Uint8Array[]> {
    const rows = await this.sql`SELECT key FROM accounts_devices WHERE username = ${user} AND revoked_at IS NULL ORDER BY enrolled_at, key`;
    return rows.map((r: { key: Uint8Array }) => bytes(r.key));
  }

  async addDevice(user: string, d: Device, keep = Number.MAX_SAFE_INTEGER): Promise<void> {
    await this.sql.begin(async (tx) => {
      await lockAccount(tx, user);
      await tx`INSERT INTO accounts_devices (username, key, name, enrolled_at, enrolled_by, revoked_at) VALUES (${user}, ${d.key}, ${d.name}, ${d.enrolledAt}, ${d.enrolledBy}, ${d.revokedAt})`;
      const [{ n }] = await tx`SELECT count(*)::int AS n FROM accounts_devices WHERE username = ${user}`;
      if (n > keep) {
        await tx`DELETE FROM accounts_devices WHERE (username, key) IN (
                   SELECT username, key FROM accounts_devices WHERE username = ${user} AND revoked_at IS NOT NULL ORDER BY revoked_at, added LIMIT ${n - keep})`;
      }
    });
  }

  async revokeDevice(user: string, key: Uint8Array, now: number): Promise<boolean> {
    return this.sql.begin(async (tx) => {
      const r = await tx`UPDATE accounts_devices SET revoked_at = ${now} WHERE username = ${user} AND key = ${key} AND revoked_at IS NULL`;
      if (r.count !== 1) return false;
      await tx`DELETE FROM accounts_tickets WHERE username = ${user} AND device = ${key}`;
      return true;
    });
  }

  async pending(user: string, now: number): Promise<PendingDevice[]> {
    const rows = await this.sql`SELECT key, name, source, since, expires_at FROM accounts_pending_devices
                                WHERE username = ${user} AND expires_at > ${now} ORDER BY since, key`;
    return rows.map((r: Record<string, unknown>) => pendingRow({ ...r, username: user }));
  }

  async pendingAll(now: number, limit: number): Promise<PendingDevice[]> {
    const rows = await this.sql`SELECT username, key, name, source, since, expires_at FROM accounts_pending_devices
                                WHERE expires_at > ${now} ORDER BY since, username, key LIMIT ${limit}`;
    return rows.map(pendingRow);
  }

  async putPending(p: PendingDevice, max: number, now: number): Promise<boolean> {
    return this.sql.begin(async (tx) => {
      await lockAccount(tx, p.user);
      const renamed = await tx`UPDATE accounts_pending_devices SET name = ${p.name} WHERE username = ${p.user} AND key = ${p.key} AND expires_at > ${now}`;
      if (renamed.count === 1) return true;
      await tx`DELETE FROM accounts_pending_devices WHERE username = ${p.user} AND expires_at <= ${now}`;
      const [{ n }] = await tx`SELECT count(*)::int AS n FROM accounts_pending_devices WHERE username = ${p.user}`;
      if (n >= max) return false;
      await tx`INSERT INTO accounts_pending_devices (username, key, name, source, since, expires_at)
               VALUES (${p.user}, ${p.key}, ${p.name}, ${p.source}, ${p.since}, ${p.expires})`;
      return true;
    });
  }

  async takePending(user: string, key: Uint8Array, now: number): Promise<boolean> {
    return (await this.sql`DELETE FROM accounts_pending_devices WHERE username = ${user} AND key = ${key} AND expires_at > ${now}`).count === 1;
  }

  async prunePending(now: number): Promise<void> {
    await this.sql`DELETE FROM accounts_pending_devices WHERE expires_at <= ${now}`;
  }

  async addTicket(hash: Uint8Array, t: Ticket, now: number): Promise<void> {
    await this.sql`INSERT INTO accounts_tickets (hash, username, key, expires_at, created_at, device, source)
                   VALUES (${hash}, ${t.user}, ${t.key}, ${t.expiresAt}, ${now}, ${t.device ?? null}, ${t.source ?? null})`;
  }

  async ticket(hash: Uint8Array, now: number): Promise<Ticket | null> {
    const [r] = await this.sql`SELECT username, key, expires_at, device FROM accounts_tickets WHERE hash = ${hash} AND expires_at > ${now}`;
    return r ? { user: r.username, key: bytes(r.key), expiresAt: num(r.expires_at), device: r.device ? bytes(r.device) : null } : null;
  }

  async revokeTicket(hash: Uint8Array): Promise<boolean> {
    return (await this.sql`DELETE FROM accounts_tickets WHERE hash = ${hash}`).count === 1;
  }

  async revokeTicketsOf(user: string): Promise<number> {
    return (await this.sql`DELETE FROM accounts_tickets WHERE username = ${user}`).count;
  }

  async ticketsOf(user: string, now: number, limit: number): Promise<{ tickets: ListedTicket[]; total: number }> {
    const rows = await this.sql`SELECT hash, created_at, expires_at, device, source, count(*) OVER () AS total FROM accounts_tickets
                                WHERE username = ${user} AND expires_at > ${now} ORDER BY created_at DESC, hash LIMIT ${limit}`;
    const tickets = rows.map((r: Record<string, unknown>) => ({
      hash: bytes(r.hash as Uint8Array),
      createdAt: num(r.created_at),
      expiresAt: num(r.expires_at),
      device: r.device ? bytes(r.device as Uint8Array) : null,
      source: (r.source as string | null) ?? "",
    }));
    // Past the limit the window still counts every row; with none listed, count them apart.
    if (rows.length > 0) return { tickets, total: num(rows[0].total) };
    if (limit > 0) return { tickets, total: 0 };
    const [{ n }] = await this.sql`SELECT count(*)::int AS n FROM accounts_tickets WHERE username = ${user} AND expires_at > ${now}`;
    return { tickets, total: n };
  }

  async ticketsByPrefix(user: string, prefix: Uint8Array, now: number): Promise<Uint8Array[]> {
    const rows = await this.sql`SELECT hash FROM accounts_tickets WHERE username = ${user} AND expires_at > ${now}
                                AND substring(hash from 1 for ${prefix.length}) = ${prefix}`;
    return rows.map((r: { hash: Uint8Array }) => bytes(r.hash));
  }

  async pruneTickets(now: number): Promise<number> {
    return (await this.sql`DELETE FROM accounts_tickets WHERE expires_at <= ${now}`).count;
  }

  /** The pool is the caller's (several stores share one): closing the store leaves it open. */
  close(): void {}
}

function pendingRow(r: Record<string, unknown>): PendingDevice {
  return { user: r.username as string, key: bytes(r.key as Uint8Array), name: r.name as string, source: r.source as string, since: num(r.since), expires: num(r.expires_at) };
}

/** Serializes changes to one account's rows across nodes until the transaction ends. */
async function lockAccount(tx: SQL, user: string): Promise<void> {
  await tx`SELECT 1 FROM accounts WHERE name = ${user} FOR UPDATE`;
}

/** The read markers' table: loaded per user, written in one transaction per flush. */
class PgMarkers implements MarkerStore {
  constructor(readonly sql: SQL) {}

  async all(user: string): Promise<DeviceMarker[]> {
    const rows = await this.sql`SELECT device, room, seq, at FROM accounts_read_markers WHERE username = ${user} ORDER BY at, added`;
    return rows.map((r: Record<string, unknown>) => ({ device: r.device as string, room: r.room as string, seq: num(r.seq), at: num(r.at) }));
  }

  async write(ops: readonly MarkerOp[]): Promise<void> {
    await this.sql.begin(async (tx) => {
      const locked = new Set<string>();
      for (const o of ops) {
        if (!locked.has(o.user)) {
          await lockAccount(tx, o.user);
          locked.add(o.user);
        }
        if (o.op === "lower") await tx`UPDATE accounts_read_markers SET seq = ${o.seq} WHERE username = ${o.user} AND room = ${o.room} AND seq > ${o.seq}`;
        else if (o.op === "forget") await tx`DELETE FROM accounts_read_markers WHERE username = ${o.user} AND room = ${o.room}`;
        else await advance(tx, o);
      }
    });
  }
}

/** A marker moves forward, or is created, the user's least recently set ones forgotten past `max`. */
async function advance(tx: SQL, o: Extract<MarkerOp, { op: "advance" }>): Promise<void> {
  const [had] = await tx`SELECT seq FROM accounts_read_markers WHERE username = ${o.user} AND device = ${o.device} AND room = ${o.room}`;
  if (had) {
    if (o.seq > num(had.seq)) await tx`UPDATE accounts_read_markers SET seq = ${o.seq}, at = ${o.at} WHERE username = ${o.user} AND device = ${o.device} AND room = ${o.room}`;
    return;
  }
  const [{ n }] = await tx`SELECT count(*)::int AS n FROM accounts_read_markers WHERE username = ${o.user}`;
  if (n >= o.max) {
    await tx`DELETE FROM accounts_read_markers WHERE (username, device, room) IN (
               SELECT username, device, room FROM accounts_read_markers WHERE username = ${o.user} ORDER BY at, added LIMIT ${n - o.max + 1})`;
  }
  await tx`INSERT INTO accounts_read_markers (username, device, room, seq, at) VALUES (${o.user}, ${o.device}, ${o.room}, ${o.seq}, ${o.at})`;
}
