/**
 * The server's database (bun:sqlite, WAL): accounts and session tickets
 * (each with the device it was issued to).
 * `synchronous = FULL` so a commit the server has acknowledged survives a
 * crash or power loss; the schema version lives in `PRAGMA user_version` and
 * each migration runs in its own transaction.
 */
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { SecureChatError } from "../errors.ts";
import { createPrivateFile, ensurePrivateDir } from "../paths.ts";
import type { Account, AccountStore, Device, ListedTicket, Ticket } from "./accounts.ts";
import { DM_MARKER, applyMarkerOp, type DeviceMarker, type LoadableMarkers, type Marker, type MarkerOp, type MarkerStore } from "./markers.ts";

const MIGRATIONS: string[] = [
  // 1: accounts and tickets.
  `CREATE TABLE accounts (
     name         TEXT PRIMARY KEY,
     identity_key BLOB NOT NULL CHECK (length(identity_key) = 32),
     verifier     TEXT NOT NULL,
     created_at   INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE tickets (
     hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
     user       TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
     key        BLOB NOT NULL CHECK (length(key) = 32),
     expires_at INTEGER NOT NULL,
     created_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX tickets_expiry ON tickets(expires_at);`,
  // 2: the device (identity key) whose password login a ticket was issued to, and its address.
  `ALTER TABLE tickets ADD COLUMN device BLOB CHECK (device IS NULL OR length(device) = 32);
   ALTER TABLE tickets ADD COLUMN source TEXT;
   UPDATE tickets SET device = (SELECT identity_key FROM accounts WHERE accounts.name = tickets.user);`,
  // 3: server administrators: a locked account (its lock time; NULL: not locked).
  `ALTER TABLE accounts ADD COLUMN locked_at INTEGER;`,
  // 4: devices: an account's device keys; the key an account was registered with is its first device.
  `CREATE TABLE devices (
     user        TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
     key         BLOB NOT NULL CHECK (length(key) = 32),
     name        TEXT NOT NULL,
     enrolled_at INTEGER NOT NULL,
     enrolled_by TEXT NOT NULL,
     revoked_at  INTEGER,
     PRIMARY KEY (user, key)
   ) STRICT;
   INSERT INTO devices (user, key, name, enrolled_at, enrolled_by) SELECT name, identity_key, '', created_at, 'register' FROM accounts;`,
  // read markers: per user, device (its 12-hex id) and room ('' for direct messages), the last seq read (PROTOCOL.md §7.14).
  `CREATE TABLE read_markers (
     user   TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
     device TEXT NOT NULL,
     room   TEXT NOT NULL,
     seq    INTEGER NOT NULL CHECK (seq >= 0),
     at     INTEGER NOT NULL,
     PRIMARY KEY (user, device, room)
   ) STRICT;
   CREATE INDEX read_markers_room ON read_markers(user, room);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export type { Account, Device, ListedTicket, Ticket } from "./accounts.ts";

/** The single node's AccountStore: every answer at once, each change one transaction. */
export class Store implements AccountStore {
  readonly db: Database;

  constructor(dataDir: string) {
    ensurePrivateDir(dataDir);
    const path = join(dataDir, "securechat.db");
    createPrivateFile(path);
    this.db = new Database(path, { create: true, strict: true });
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;");
    this.migrate();
  }

  private migrate(): void {
    const row = this.db.query<{ user_version: number }, []>("PRAGMA user_version").get();
    const current = row?.user_version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new SecureChatError("store_version", `store: database schema ${current} is newer than this securechat (${SCHEMA_VERSION})`);
    }
    for (let v = current; v < SCHEMA_VERSION; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.exec(`PRAGMA user_version = ${v + 1}`);
      })();
    }
  }

  schemaVersion(): number {
    return this.db.query<{ user_version: number }, []>("PRAGMA user_version").get()!.user_version;
  }

  /** Returns false if the name is taken. The identity key is the account's first device. */
  createAccount(a: Account): boolean {
    return this.db.transaction(() => {
      const r = this.db
        .query("INSERT INTO accounts (name, identity_key, verifier, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING")
        .run(a.name, a.identityKey, a.verifier, a.createdAt);
      if (r.changes === 1) this.addDevice(a.name, { key: a.identityKey, name: "", enrolledAt: a.createdAt, enrolledBy: "register", revokedAt: null });
      return r.changes === 1;
    })();
  }

  // --- devices (PROTOCOL.md §7.11) ---

  /** The account's devices, active and revoked, oldest first. */
  devices(user: string): Device[] {
    return this.db
      .query<{ key: Uint8Array; name: string; enrolled_at: number; enrolled_by: string; revoked_at: number | null }, [string]>(
        "SELECT key, name, enrolled_at, enrolled_by, revoked_at FROM devices WHERE user = ? ORDER BY enrolled_at, key",
      )
      .all(user)
      .map((r) => ({ key: new Uint8Array(r.key), name: r.name, enrolledAt: r.enrolled_at, enrolledBy: r.enrolled_by, revokedAt: r.revoked_at }));
  }

  /** The public keys of the account's active devices. */
  activeDeviceKeys(user: string): Uint8Array[] {
    return this.db
      .query<{ key: Uint8Array }, [string]>("SELECT key FROM devices WHERE user = ? AND revoked_at IS NULL ORDER BY enrolled_at, key")
      .all(user)
      .map((r) => new Uint8Array(r.key));
  }

  /**
   * Adds a device; when the account then keeps more than `keep` rows, its
   * oldest revoked ones are forgotten (the transcript still names them).
   */
  addDevice(user: string, d: Device, keep = Number.MAX_SAFE_INTEGER): void {
    this.db.transaction(() => {
      this.db.query("INSERT INTO devices (user, key, name, enrolled_at, enrolled_by, revoked_at) VALUES (?, ?, ?, ?, ?, ?)").run(user, d.key, d.name, d.enrolledAt, d.enrolledBy, d.revokedAt);
      const n = this.db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM devices WHERE user = ?").get(user)!.n;
      if (n > keep) {
        this.db
          .query("DELETE FROM devices WHERE rowid IN (SELECT rowid FROM devices WHERE user = ? AND revoked_at IS NOT NULL ORDER BY revoked_at LIMIT ?)")
          .run(user, n - keep);
      }
    })();
  }

  /** Marks the device revoked and deletes every ticket issued to its logins; false if it was not an active device. */
  revokeDevice(user: string, key: Uint8Array, now: number): boolean {
    return this.db.transaction(() => {
      const r = this.db.query("UPDATE devices SET revoked_at = ? WHERE user = ? AND key = ? AND revoked_at IS NULL").run(now, user, key);
      if (r.changes !== 1) return false;
      this.db.query("DELETE FROM tickets WHERE user = ? AND device = ?").run(user, key);
      return true;
    })();
  }

  account(name: string): Account | null {
    const row = this.db
      .query<{ name: string; identity_key: Uint8Array; verifier: string; created_at: number }, [string]>(
        "SELECT name, identity_key, verifier, created_at FROM accounts WHERE name = ?",
      )
      .get(name);
    return row ? { name: row.name, identityKey: new Uint8Array(row.identity_key), verifier: row.verifier, createdAt: row.created_at } : null;
  }

  /** Replaces the account's argon2id verifier; false if there is no such account. */
  setVerifier(name: string, verifier: string): boolean {
    return this.db.query("UPDATE accounts SET verifier = ? WHERE name = ?").run(verifier, name).changes === 1;
  }

  // --- Server administrators (PROTOCOL.md §7.10) ---

  /** Locks the account (`at`: when) or unlocks it (null); false if there is no such account. */
  setLocked(name: string, at: number | null): boolean {
    return this.db.query("UPDATE accounts SET locked_at = ? WHERE name = ?").run(at, name).changes === 1;
  }

  /** When the account was locked, or null if it is not locked (or does not exist). */
  lockedAt(name: string): number | null {
    return this.db.query<{ locked_at: number | null }, [string]>("SELECT locked_at FROM accounts WHERE name = ?").get(name)?.locked_at ?? null;
  }

  /** Deletes every ticket of the user; how many there were. */
  revokeTicketsOf(user: string): number {
    return this.db.query("DELETE FROM tickets WHERE user = ?").run(user).changes;
  }

  // --- end of server administrators ---

  addTicket(hash: Uint8Array, t: Ticket, now: number): void {
    this.db
      .query("INSERT INTO tickets (hash, user, key, expires_at, created_at, device, source) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .run(hash, t.user, t.key, t.expiresAt, now, t.device ?? null, t.source ?? null);
  }

  /** The unexpired ticket with this hash, if any. */
  ticket(hash: Uint8Array, now: number): Ticket | null {
    const row = this.db
      .query<{ user: string; key: Uint8Array; expires_at: number; device: Uint8Array | null }, [Uint8Array, number]>(
        "SELECT user, key, expires_at, device FROM tickets WHERE hash = ? AND expires_at > ?",
      )
      .get(hash, now);
    return row ? { user: row.user, key: new Uint8Array(row.key), expiresAt: row.expires_at, device: row.device ? new Uint8Array(row.device) : null } : null;
  }

  revokeTicket(hash: Uint8Array): boolean {
    return this.db.query("DELETE FROM tickets WHERE hash = ?").run(hash).changes === 1;
  }

  /** The user's unexpired tickets, newest first, at most `limit`; and how many there are in all. */
  ticketsOf(user: string, now: number, limit: number): { tickets: ListedTicket[]; total: number } {
    const rows = this.db
      .query<{ hash: Uint8Array; created_at: number; expires_at: number; device: Uint8Array | null; source: string | null }, [string, number, number]>(
        "SELECT hash, created_at, expires_at, device, source FROM tickets WHERE user = ? AND expires_at > ? ORDER BY created_at DESC, hash LIMIT ?",
      )
      .all(user, now, limit);
    const total = this.db.query<{ n: number }, [string, number]>("SELECT count(*) AS n FROM tickets WHERE user = ? AND expires_at > ?").get(user, now)!.n;
    const tickets = rows.map((r) => ({
      hash: new Uint8Array(r.hash),
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      device: r.device ? new Uint8Array(r.device) : null,
      source: r.source ?? "",
    }));
    return { tickets, total };
  }

  /** The hashes of the user's unexpired tickets whose hash starts with `prefix`. */
  ticketsByPrefix(user: string, prefix: Uint8Array, now: number): Uint8Array[] {
    return this.db
      .query<{ hash: Uint8Array }, [string, number, number, Uint8Array]>("SELECT hash FROM tickets WHERE user = ? AND expires_at > ? AND substr(hash, 1, ?) = ?")
      .all(user, now, prefix.length, prefix)
      .map((r) => new Uint8Array(r.hash));
  }

  pruneTickets(now: number): number {
    return this.db.query("DELETE FROM tickets WHERE expires_at <= ?").run(now).changes;
  }

  // ---- Read markers (PROTOCOL.md §7.14; the ReadMarkers contract in markers.ts) ----

  /** The read markers, kept in this database (each change one transaction; the server writes through WriteBehindMarkers). */
  get markers(): DbMarkers {
    return (this.#markers ??= new DbMarkers(this.db));
  }

  get markerStore(): MarkerStore {
    return this.markers;
  }

  #markers: DbMarkers | null = null;

  integrityCheck(): string {
    return this.db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()!.integrity_check;
  }

  close(): void {
    this.db.close(false);
  }
}

/** ReadMarkers in securechat.db: one row per (user, device, room). */
class DbMarkers implements LoadableMarkers, MarkerStore {
  constructor(readonly db: Database) {}

  all(user: string): DeviceMarker[] {
    return this.db.query<DeviceMarker, [string]>("SELECT device, room, seq, at FROM read_markers WHERE user = ? ORDER BY at").all(user);
  }

  get(user: string, device: string, room: string): Marker | null {
    return this.db.query<Marker, [string, string, string]>("SELECT room, seq, at FROM read_markers WHERE user = ? AND device = ? AND room = ?").get(user, device, room);
  }

  best(user: string, room: string): Marker | null {
    return this.db.query<Marker, [string, string]>("SELECT room, seq, at FROM read_markers WHERE user = ? AND room = ? ORDER BY seq DESC LIMIT 1").get(user, room);
  }

  advance(user: string, device: string, room: string, seq: number, at: number, max: number): void {
    this.db.transaction(() => {
      const had = this.get(user, device, room);
      if (had) {
        if (seq > had.seq) this.db.query("UPDATE read_markers SET seq = ?, at = ? WHERE user = ? AND device = ? AND room = ?").run(seq, at, user, device, room);
        return;
      }
      const n = this.db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM read_markers WHERE user = ?").get(user)!.n;
      if (n >= max) {
        this.db
          .query("DELETE FROM read_markers WHERE rowid IN (SELECT rowid FROM read_markers WHERE user = ? ORDER BY at LIMIT ?)")
          .run(user, n - max + 1);
      }
      this.db.query("INSERT INTO read_markers (user, device, room, seq, at) VALUES (?, ?, ?, ?, ?)").run(user, device, room, seq, at);
    })();
  }

  batch(fn: () => void): void {
    this.db.transaction(fn)();
  }

  write(ops: readonly MarkerOp[]): void {
    this.batch(() => ops.forEach((o) => applyMarkerOp(this, o)));
  }

  lower(user: string, room: string, seq: number): void {
    this.db.query("UPDATE read_markers SET seq = ? WHERE user = ? AND room = ? AND seq > ?").run(seq, user, room, seq);
  }

  forget(user: string, room: string): void {
    this.db.query("DELETE FROM read_markers WHERE user = ? AND room = ?").run(user, room);
  }

  rooms(user: string, device: string): Marker[] {
    // This device's marker where it has one, else the most advanced of the others.
    return this.db
      .query<Marker, [string, string, string]>(
        `SELECT room, seq, at FROM read_markers AS r WHERE user = ?1 AND room != ?3 AND (device = ?2 OR (
           NOT EXISTS (SELECT 1 FROM read_markers WHERE user = ?1 AND device = ?2 AND room = r.room)
           AND rowid = (SELECT rowid FROM read_markers WHERE user = ?1 AND room = r.room ORDER BY seq DESC LIMIT 1)))
         ORDER BY room`,
      )
      .all(user, device, DM_MARKER);
  }
}
