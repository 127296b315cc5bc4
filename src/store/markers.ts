/**
 * Read markers (docs/PROTOCOL.md §7.14): per user, device and room, the seq of
 * the last message that device has read; per user and device, the last
 * direct message (under the key DM_MARKER). Private per-user state kept by the
 * server (securechat.db, store/db.ts), not shared state: not in the
 * transcript. Bounded per user: setting a new marker past `max` forgets the
 * user's least recently set one.
 */
import { SecureChatError } from "../errors.ts";

/** The room key of a device's direct-message marker: no room name is empty. */
export const DM_MARKER = "";

export interface Marker {
  room: string;
  seq: number;
  /** When it was last moved (ms since the epoch). */
  at: number;
}

export interface ReadMarkers {
  /** This device's marker for `room`, or null. */
  get(user: string, device: string, room: string): Marker | null;
  /** The most advanced marker any device of the user has for `room`, or null. */
  best(user: string, room: string): Marker | null;
  /**
   * Moves the device's marker for `room` forward to `seq` (creating it; a
   * marker at or past `seq` is left alone). Creating one when the user has
   * `max` forgets the user's least recently set marker first.
   */
  advance(user: string, device: string, room: string, seq: number, at: number, max: number): void;
  /** Moves every marker of the user for `room` above `seq` back to it (the server's numbering went back). */
  lower(user: string, room: string, seq: number): void;
  /** Forgets every marker of the user for `room` (the user left it). */
  forget(user: string, room: string): void;
  /** The rooms (not DM_MARKER) the user has markers for, by name: this device's marker, else the most advanced other one. */
  rooms(user: string, device: string): Marker[];
  /** Runs `fn`, its changes written at once (one transaction: one `read` request is one disk write). */
  batch(fn: () => void): void;
  /** The user's last connection closed: whatever is held in memory for it may go. */
  release?(user: string): void;
  /** Brings the user's markers into memory before their first read, for a store that answers later; null when nothing needs waiting for. */
  load?(user: string): Promise<void> | null;
}

/** Markers in memory (tests, and a server without a database). */
export class MemoryMarkers implements ReadMarkers {
  /** user → "device\0room" → marker */
  readonly #users = new Map<string, Map<string, Marker & { device: string }>>();

  get(user: string, device: string, room: string): Marker | null {
    const m = this.#users.get(user)?.get(key(device, room));
    return m ? { room: m.room, seq: m.seq, at: m.at } : null;
  }

  best(user: string, room: string): Marker | null {
    let best: Marker | null = null;
    for (const m of this.#users.get(user)?.values() ?? []) if (m.room === room && (!best || m.seq > best.seq)) best = { room, seq: m.seq, at: m.at };
    return best;
  }

  advance(user: string, device: string, room: string, seq: number, at: number, max: number): void {
    let mine = this.#users.get(user);
    if (!mine) this.#users.set(user, (mine = new Map()));
    const k = key(device, room);
    const m = mine.get(k);
    if (m) {
      if (seq > m.seq) Object.assign(m, { seq, at });
      return;
    }
    while (mine.size >= max && mine.size > 0) {
      let oldest: string | null = null;
      let when = Number.POSITIVE_INFINITY;
      for (const [k2, m2] of mine) if (m2.at < when) [oldest, when] = [k2, m2.at];
      mine.delete(oldest!);
    }
    mine.set(k, { device, room, seq, at });
  }

  batch(fn: () => void): void {
    fn();
  }

  lower(user: string, room: string, seq: number): void {
    for (const m of this.#users.get(user)?.values() ?? []) if (m.room === room && m.seq > seq) m.seq = seq;
  }

  forget(user: string, room: string): void {
    const mine = this.#users.get(user);
    for (const [k, m] of mine ?? []) if (m.room === room) mine!.delete(k);
  }

  rooms(user: string, device: string): Marker[] {
    const own = new Map<string, Marker>();
    const others = new Map<string, Marker>();
    for (const m of this.#users.get(user)?.values() ?? []) {
      if (m.room === DM_MARKER) continue;
      const into = m.device === device ? own : others;
      const had = into.get(m.room);
      if (!had || m.seq > had.seq) into.set(m.room, { room: m.room, seq: m.seq, at: m.at });
    }
    for (const [room, m] of others) if (!own.has(room)) own.set(room, m);
    return [...own.values()].sort((a, b) => (a.room < b.room ? -1 : 1));
  }
}

function key(device: string, room: string): string {
  return `${device}\0${room}`;
}

/** One stored marker with its device: a user's markers as the database holds them. */
export interface DeviceMarker extends Marker {
  device: string;
}

/** A store that can hand over all of one user's markers (securechat.db). */
export interface LoadableMarkers extends ReadMarkers {
  all(user: string): DeviceMarker[];
}

/** One change to a user's markers, as WriteBehindMarkers queues it for the store. */
export type MarkerOp =
  | { op: "advance"; user: string; device: string; room: string; seq: number; at: number; max: number }
  | { op: "lower"; user: string; room: string; seq: number }
  | { op: "forget"; user: string; room: string };

/** Applies one queued change to markers that answer at once. */
export function applyMarkerOp(m: ReadMarkers, o: MarkerOp): void {
  if (o.op === "advance") m.advance(o.user, o.device, o.room, o.seq, o.at, o.max);
  else if (o.op === "lower") m.lower(o.user, o.room, o.seq);
  else m.forget(o.user, o.room);
}

/**
 * Where WriteBehindMarkers keeps markers: one user's markers read at once,
 * and changes written in one transaction. securechat.db answers at once,
 * PostgreSQL with promises.
 */
export interface MarkerStore {
  all(user: string): DeviceMarker[] | Promise<DeviceMarker[]>;
  /** Writes the changes, in order, in one transaction; all or none. */
  write(ops: readonly MarkerOp[]): void | Promise<void>;
}

/**
 * The server's markers: each online user's markers in memory, loaded from
 * the database at first use, and every change written behind, all pending
 * ones in one transaction (`flush`, once a second and at shutdown). A
 * marker moves at every `read` and a room is joined at every start: none of
 * that waits for a disk write in the event loop. A crash loses at most the
 * changes since the last flush — some messages are then shown again, none
 * is lost. A user's markers leave memory when its last connection does
 * (`release`), once written.
 *
 * Reads are synchronous. Over a store that answers with promises
 * (PostgreSQL), `load(user)` must have settled before the user's first
 * read; over securechat.db the first read loads them itself.
 */
export class WriteBehindMarkers implements ReadMarkers {
  readonly #users = new Map<string, MemoryMarkers>();
  #ops: MarkerOp[] = [];
  /** Users released while changes of theirs were pending: dropped after the next flush. */
  readonly #released = new Set<string>();
  /** The write under way, over a store that answers with promises. */
  #writing: Promise<void> | null = null;

  constructor(readonly db: MarkerStore) {}

  #fill(user: string, rows: DeviceMarker[]): MemoryMarkers {
    const m = new MemoryMarkers();
    for (const r of rows) m.advance(user, r.device, r.room, r.seq, r.at, Number.MAX_SAFE_INTEGER);
    // A change made while the user was not in memory (forget) may not be in the rows yet.
    for (const o of this.#ops) if (o.user === user) applyMarkerOp(m, o);
    this.#users.set(user, m);
    return m;
  }

  #of(user: string): MemoryMarkers {
    let m = this.#users.get(user);
    if (!m) {
      const rows = this.db.all(user);
      if (rows instanceof Promise) {
        void rows.catch(() => {});
        throw new SecureChatError("markers_not_loaded", `markers: ${user}'s read markers were read before load() settled`);
      }
      m = this.#fill(user, rows);
    }
    this.#released.delete(user);
    return m;
  }

  /**
   * Brings the user's markers into memory, for a store that answers with
   * promises; null when nothing needs waiting for (they are in memory, or
   * the store answers at once and the first read loads them).
   */
  load(user: string): Promise<void> | null {
    if (this.#users.has(user)) return null;
    const rows = this.db.all(user);
    if (!(rows instanceof Promise)) {
      this.#fill(user, rows);
      return null;
    }
    return rows.then((r) => {
      // Loaded meanwhile by another connection of the user: memory may already be ahead of the store.
      if (!this.#users.has(user)) this.#fill(user, r);
    });
  }

  get(user: string, device: string, room: string): Marker | null {
    return this.#of(user).get(user, device, room);
  }

  best(user: string, room: string): Marker | null {
    return this.#of(user).best(user, room);
  }

  rooms(user: string, device: string): Marker[] {
    return this.#of(user).rooms(user, device);
  }

  advance(user: string, device: string, room: string, seq: number, at: number, max: number): void {
    const m = this.#of(user);
    const had = m.get(user, device, room);
    if (had && seq <= had.seq) return;
    m.advance(user, device, room, seq, at, max);
    this.#ops.push({ op: "advance", user, device, room, seq, at, max });
  }

  lower(user: string, room: string, seq: number): void {
    this.#of(user).lower(user, room, seq);
    this.#ops.push({ op: "lower", user, room, seq });
  }

  /** Needs no read: a user who is offline, markers not loaded (put out of a room by a ban), is forgotten in the store at the next flush. */
  forget(user: string, room: string): void {
    this.#users.get(user)?.forget(user, room);
    this.#ops.push({ op: "forget", user, room });
  }

  batch(fn: () => void): void {
    fn();
  }

  /** Changes not yet written. */
  get pending(): number {
    return this.#ops.length;
  }

  /**
   * Writes every pending change in one transaction. If that fails they are
   * dropped (and the error thrown, or the promise rejected): markers are a
   * convenience. Over securechat.db it is done when it returns; over
   * PostgreSQL when the promise settles (a flush asked for while one is
   * under way runs after it, so changes are written in order).
   */
  flush(): void | Promise<void> {
    if (this.#writing) return this.#writing.then(() => this.flush());
    const ops = this.#ops;
    this.#ops = [];
    let wrote: void | Promise<void>;
    try {
      wrote = ops.length > 0 ? this.db.write(ops) : undefined;
    } catch (e) {
      this.#dropReleased();
      throw e;
    }
    if (!(wrote instanceof Promise)) return this.#dropReleased();
    const writing = wrote.finally(() => {
      this.#writing = null;
      this.#dropReleased();
    });
    this.#writing = writing.catch(() => {});
    return writing;
  }

  #dropReleased(): void {
    // Changes made while a write was under way are not in the store yet: their users stay until they are.
    if (this.#ops.length > 0) return;
    for (const u of this.#released) this.#users.delete(u);
    this.#released.clear();
  }

  /** The user has no connection left: its markers leave memory once written. */
  release(user: string): void {
    if (this.#ops.length === 0 && !this.#writing) this.#users.delete(user);
    else if (this.#users.has(user)) this.#released.add(user);
  }
}
