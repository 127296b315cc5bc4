/**
 * The account store's contract: accounts and their argon2id verifiers,
 * locks, session tickets (kept by their SHA-256 only), devices and read
 * markers. Two implementations: securechat.db (store/db.ts `Store`, the
 * single node, answering at once) and PostgreSQL (store/pg/accounts.ts,
 * shared by the nodes of a cluster, answering with promises). Callers
 * always `await` what it returns, so either fits.
 */
import type { MarkerStore } from "./markers.ts";

/** A value now, or once a promise settles: the SQLite store answers at once, PostgreSQL later. */
export type Awaitable<T> = T | Promise<T>;

export interface Account {
  name: string;
  identityKey: Uint8Array;
  verifier: string;
  createdAt: number;
}

export interface Ticket {
  user: string;
  key: Uint8Array;
  expiresAt: number;
  /** The public key of the device whose login was issued the ticket; null for tickets stored before devices were. */
  device?: Uint8Array | null;
  /** The address it was issued to, as the transcript records sources. */
  source?: string;
}

/** One of an account's device keys (PROTOCOL.md §7.11). */
export interface Device {
  key: Uint8Array;
  name: string;
  enrolledAt: number;
  /** "register", "password", or the device id of the device that approved it. */
  enrolledBy: string;
  revokedAt: number | null;
}

/** A new machine's key waiting for an enrolled device's approval (PROTOCOL.md §7.11). */
export interface PendingDevice {
  user: string;
  key: Uint8Array;
  name: string;
  /** The address it asked from, as the transcript records sources. */
  source: string;
  since: number;
  expires: number;
}

/**
 * Waiting enrollments shared by the nodes of a cluster (PostgreSQL): the
 * new machine may wait on one node while the approval reaches the core on
 * another. A single node keeps them in its memory instead (server/devices.ts).
 */
export interface PendingDevices {
  /** The user's unexpired waiting enrollments, oldest first. */
  pending(user: string, now: number): Awaitable<PendingDevice[]>;
  /**
   * Adds `p`, or renames the one waiting for the same key (then its times
   * stay); false if the user already has `max` others waiting.
   */
  putPending(p: PendingDevice, max: number, now: number): Awaitable<boolean>;
  /** Every account's unexpired waiting enrollments, oldest first, at most `limit`. */
  pendingAll(now: number, limit: number): Awaitable<PendingDevice[]>;
  /** Removes the waiting enrollment of `key`; false if none was (another approval took it, or it expired). */
  takePending(user: string, key: Uint8Array, now: number): Awaitable<boolean>;
  /** Deletes the expired ones. */
  prunePending(now: number): Awaitable<void>;
}

/** A ticket as `sessions` lists it. */
export interface ListedTicket {
  hash: Uint8Array;
  createdAt: number;
  expiresAt: number;
  device: Uint8Array | null;
  source: string;
}

export interface AccountStore {
  /** Creates the account and its first device (the identity key), at once; false if the name is taken (also when another node took it first). */
  createAccount(a: Account): Awaitable<boolean>;
  account(name: string): Awaitable<Account | null>;
  /** Replaces the account's argon2id verifier; false if there is no such account. */
  setVerifier(name: string, verifier: string): Awaitable<boolean>;
  /** Locks the account (`at`: when) or unlocks it (null); false if there is no such account. */
  setLocked(name: string, at: number | null): Awaitable<boolean>;
  /** When the account was locked, or null if it is not locked (or does not exist). */
  lockedAt(name: string): Awaitable<number | null>;

  /** The account's devices, active and revoked, oldest first (by enrollment time, then key bytes). */
  devices(user: string): Awaitable<Device[]>;
  /** The public keys of the account's active devices, in the same order. */
  activeDeviceKeys(user: string): Awaitable<Uint8Array[]>;
  /** Adds a device; when the account then keeps more than `keep` rows, its oldest revoked ones are forgotten. */
  addDevice(user: string, d: Device, keep?: number): Awaitable<void>;
  /** Marks the device revoked and deletes every ticket issued to its logins; false if it was not an active device. */
  revokeDevice(user: string, key: Uint8Array, now: number): Awaitable<boolean>;

  /** Stores a ticket under its SHA-256 (`hash`): the ticket itself is never stored. */
  addTicket(hash: Uint8Array, t: Ticket, now: number): Awaitable<void>;
  /** The unexpired ticket with this hash, if any. */
  ticket(hash: Uint8Array, now: number): Awaitable<Ticket | null>;
  revokeTicket(hash: Uint8Array): Awaitable<boolean>;
  /** Deletes every ticket of the user; how many there were. */
  revokeTicketsOf(user: string): Awaitable<number>;
  /** The user's unexpired tickets, newest first, at most `limit`; and how many there are in all. */
  ticketsOf(user: string, now: number, limit: number): Awaitable<{ tickets: ListedTicket[]; total: number }>;
  /** The hashes of the user's unexpired tickets whose hash starts with `prefix`. */
  ticketsByPrefix(user: string, prefix: Uint8Array, now: number): Awaitable<Uint8Array[]>;
  /** Deletes the expired tickets; how many. */
  pruneTickets(now: number): Awaitable<number>;

  /** Where waiting enrollments are kept when several nodes share the store; absent: in the server's memory. */
  readonly pendingDevices?: PendingDevices;
  /** Where the read markers are kept (the server reads them from memory: WriteBehindMarkers). */
  readonly markerStore: MarkerStore;
  close(): Awaitable<void>;
}
