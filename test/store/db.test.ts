/**
 * The server's database across versions: a database written by an earlier
 * securechat is migrated in place when the server starts, keeping what it
 * held.
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256 } from "../../src/crypto/index.ts";
import { SCHEMA_VERSION, Store } from "../../src/store/db.ts";

const IDENTITY = new Uint8Array(32).fill(7);
const TICKET = sha256(new Uint8Array([1, 2, 3]));

/** A database of the first schema, exactly as the first version wrote it, with alice (created at 1) and one ticket. */
function firstSchema(dir: string): void {
  const old = new Database(join(dir, "securechat.db"), { create: true, strict: true });
  old.exec(`CREATE TABLE accounts (
     name TEXT PRIMARY KEY, identity_key BLOB NOT NULL CHECK (length(identity_key) = 32), verifier TEXT NOT NULL, created_at INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE tickets (
     hash BLOB PRIMARY KEY CHECK (length(hash) = 32), user TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
     key BLOB NOT NULL CHECK (length(key) = 32), expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX tickets_expiry ON tickets(expires_at);
   PRAGMA user_version = 1;`);
  old.query("INSERT INTO accounts VALUES (?, ?, ?, ?)").run("alice", IDENTITY, "$argon2id$v=19$m=65536,t=2,p=1$x$y", 1);
  old.query("INSERT INTO tickets VALUES (?, ?, ?, ?, ?)").run(TICKET, "alice", new Uint8Array(32).fill(9), 10_000, 5);
  old.close();
}

function migrated(check: (store: Store) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "sc-db-"));
  try {
    firstSchema(dir);
    const store = new Store(dir);
    try {
      expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
      check(store);
    } finally {
      store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("securechat.db migrations", () => {
  test("tickets written before tickets had devices take the account's identity key as their device, with no address", () => {
    migrated((store) => {
      expect(store.ticket(TICKET, 0)).toEqual({ user: "alice", key: new Uint8Array(32).fill(9), expiresAt: 10_000, device: IDENTITY });
      expect(store.ticketsOf("alice", 0, 10).tickets).toEqual([{ hash: TICKET, createdAt: 5, expiresAt: 10_000, device: IDENTITY, source: "" }]);
    });
  });

  test("an account from before devices has one: its identity key, enrolled at registration, active", () => {
    migrated((store) => {
      expect(store.devices("alice")).toEqual([{ key: IDENTITY, name: "", enrolledAt: 1, enrolledBy: "register", revokedAt: null }]);
      expect(store.activeDeviceKeys("alice")).toEqual([IDENTITY]);
    });
  });
});

describe("devices in the store", () => {
  test("past `keep` rows an account's oldest revoked devices are forgotten, never an active one", () => {
    const dir = mkdtempSync(join(tmpdir(), "sc-db-"));
    const store = new Store(dir);
    try {
      const key = (n: number) => new Uint8Array(32).fill(n);
      store.createAccount({ name: "bob", identityKey: key(1), verifier: "$argon2id$v=19$m=65536,t=2,p=1$x$y", createdAt: 1 });
      for (const n of [2, 3]) {
        store.addDevice("bob", { key: key(n), name: `d${n}`, enrolledAt: n, enrolledBy: "password", revokedAt: null }, 3);
        expect(store.revokeDevice("bob", key(n), 10 + n)).toBe(true);
      }
      store.addDevice("bob", { key: key(4), name: "d4", enrolledAt: 4, enrolledBy: "password", revokedAt: null }, 3);
      // Four rows, three kept: the device revoked first (d2) is gone; the active ones stay.
      expect(store.devices("bob").map((d) => [d.name, d.revokedAt])).toEqual([
        ["", null],
        ["d3", 13],
        ["d4", null],
      ]);
      expect(store.revokeDevice("bob", key(3), 20)).toBe(false);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
