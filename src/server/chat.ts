/**
 * The chat core (docs/PROTOCOL.md §7): rooms, membership, relay, direct
 * messages, presence, history, flood control. No sockets: a `Member` is
 * anything that can take pre-encoded messages (a Connection in server.ts,
 * a fake in tests).
 *
 * Rules:
 * - Membership is per connection; presence is per user. A user with several
 *   terminals in a room is one member to the others (one `joined`, one `left`).
 * - A room message is serialized once and posted to every connection in the
 *   room but the sender's, which gets an `ack` with the room's sequence
 *   number instead. Everything runs on one thread, so every member sees one
 *   order per room.
 * - Every request costs a token (PROTOCOL.md §7.5): `say` and `dm` from the
 *   user's message bucket, every other request from its request bucket.
 *   Flood control holds, it does not drop: past a bucket, requests wait in
 *   order (the sender is told "slow down" once); only a sender that ignores
 *   that and piles up more than `maxHeld` requests gets `nack` or `notice`
 *   code `flood` for the excess.
 * - A connection's requests also wait while its own output is congested
 *   (`Member.congested`): what a connection has queued is bounded while it
 *   is built, so no record of requests can make the server build more than
 *   one request's answer past that point. The connection calls `wake` when
 *   its output has drained.
 */
import { SecureChatError } from "../errors.ts";
import { AWAY_LIST_MAX, MAX_LIST, ROOM_OPS_MAX, UNREAD_LIST_MAX } from "../protocol/limits.ts";
import { deviceId } from "../fingerprint.ts";
import { DM_MARKER, type Marker, MemoryMarkers, type ReadMarkers } from "../store/markers.ts";
import { type Message, encodeMessage } from "../protocol/messages.ts";
import { DEFAULT_FLOOD, DEFAULT_REQUESTS, type FloodPolicy, TokenBucket } from "./flood.ts";
import { type Acked, CID_TTL_MS, CidMemory } from "./cids.ts";
import type { Journal, Need, Receipt, RoomMessage } from "../store/journal.ts";
import { type RoomChange, type RoomState, applyRoomChange, emptyRoomState } from "../store/roomstate.ts";

export interface Member {
  readonly user: string;
  /** The session id (base64), as in its `session_open` entry: room changes record it (PROTOCOL.md §7.9). */
  readonly session: string;
  /** The device it logged in from (its public key): read markers are kept per device (PROTOCOL.md §7.14). */
  readonly device?: Uint8Array | null;
  /**
   * True while the output already queued for this connection is past the
   * point where the server stops answering its requests (outbox.ts: half of
   * --max-send-buffer). Its requests wait, in order, until it drains.
   */
  readonly congested: boolean;
  /** Queues one pre-encoded message for this connection. */
  post(json: string): void;
  /**
   * Takes this connection's next place in its output for a message that
   * exists once `ready` settles (an ack waiting for the transcript, §7.4):
   * `ok()` if it fulfils, `failed()` if it rejects. Everything posted after
   * it waits behind it, so the connection's output stays in the order the
   * server produced it.
   */
  postWhen(ready: Promise<void>, ok: () => string, failed: () => string): void;
  /** A request of this connection failed inside, outside any call of it (after waiting for `Journal.prepare`): end it. */
  fail?(e: unknown): void;
}

export interface ChatOptions {
  /** Messages of recent history sent on join (serve --history). */
  history: number;
  /**
   * Bytes of JSON one answer's history may take: fewer messages are sent
   * (the newest) if the last `history` do not fit. Keeps one request's answer
   * well inside the send buffer.
   */
  historyBytes: number;
  /** `say` and `dm` per user (serve --flood-rate, --flood-burst). */
  flood: FloodPolicy;
  /** Every other request per user: join, leave, who, rooms, history, away, ping, read, unread (serve --request-rate, --request-burst). */
  requests: FloodPolicy;
  /** Requests held for one connection beyond the flood limit before `nack`. */
  maxHeld: number;
  maxRoomsPerConnection: number;
  /** Distinct rooms one user may be in across all its connections (serve --max-rooms-per-user). */
  maxRoomsPerUser: number;
  maxRooms: number;
  /** How long direct messages are kept, for late delivery and `/history @user` (serve --dm-retention). */
  dmRetentionMs: number;
  /** Stored DMs one recipient may have undelivered; past it a `dm` to them while offline gets `nack` `dm_store_full` (serve --max-stored-dms). */
  maxStoredDms: number;
  /**
   * Server administrators (serve --admin): they may lock accounts and end
   * their sessions (PROTOCOL.md §7.10), and each counts as the owner of every
   * room (§7.9).
   */
  admins: ReadonlySet<string>;
  // Room moderation (PROTOCOL.md §7.9).
  /** Persistent rooms one user may own (serve --max-rooms-owned); past it a change that would make another persistent gets `owned_limit`. */
  maxRoomsOwned: number;
  /** Persistent rooms on the server (serve --max-persistent-rooms); past it, `room_limit`. */
  maxPersistentRooms: number;
  /** Operators, bans, mutes and invites each per room; past it, `list_full`. */
  maxRoomList: number;
  /** How long after a message its author may edit or delete it; 0: not at all (serve --edit-window, PROTOCOL.md §7.12). */
  editWindowMs: number;
  /** Edits one message may have; past it `edit` gets `nack` `edit_limit` (a delete is still allowed). */
  maxEdits: number;
  /** Read markers one user may have, across its devices and rooms; past it the least recently set is forgotten (PROTOCOL.md §7.14). */
  maxReadMarkers: number;
}

export const DEFAULT_CHAT: ChatOptions = {
  history: 50,
  historyBytes: 256 * 1024,
  flood: DEFAULT_FLOOD,
  requests: DEFAULT_REQUESTS,
  maxHeld: 64,
  maxRoomsPerConnection: 32,
  maxRoomsPerUser: 64,
  maxRooms: 10_000,
  dmRetentionMs: 30 * 24 * 3600 * 1000,
  maxStoredDms: 1000,
  admins: new Set(),
  maxRoomsOwned: 10,
  maxPersistentRooms: 1000,
  maxRoomList: 1000,
  editWindowMs: 15 * 60 * 1000,
  maxEdits: 10,
  maxReadMarkers: 256,
};

class Room {
  readonly members = new Set<Member>();
  /** Connections per user in this room. */
  readonly users = new Map<string, number>();

  constructor(
    readonly name: string,
    public seq: number,
    /** The user whose join created it, or the owner of its persistent state (PROTOCOL.md §7.9). */
    readonly owner: string,
  ) {}
}

/**
 * A request the server answers outside the chat core (server.ts: the
 * account requests of PROTOCOL.md §7.8). It costs a token from the request
 * bucket and waits its turn in order, like any other request.
 */
export interface AccountRequest {
  readonly type: string;
  /** What must be loaded before its turn is taken (as Journal.prepare); null or absent when nothing is. */
  prepare?(): Promise<void> | null;
  run(): void;
}

/** A held request, or an action that must wait its turn behind them (bye, logout). */
type Held = Request | AccountRequest | (() => void);

interface MemberState {
  readonly rooms: Set<Room>;
  /**
   * What this connection's next request waits for before it is answered:
   * the journal loading what it reads (Journal.prepare), or the account
   * store saying whether a name is an account. Its later requests wait
   * behind it, in order, as held ones do.
   */
  waiting: Promise<void> | null;
  /** Its device's id (fingerprint.ts deviceId; "" for a member without one): the key of its read markers. */
  readonly device: string;
  readonly held: Held[];
  timer: ReturnType<typeof setTimeout> | null;
  /** Requests refused since the queue was last empty. */
  refused: number;
}

type Request = Message<"join" | "leave" | "say" | "dm" | "who" | "rooms" | "history" | "away" | "ping" | "read" | "unread"> | ModRequest | ChangeRequest;
const REQUESTS = new Set([
  "join", "leave", "say", "dm", "who", "rooms", "history", "away", "ping",
  // Read markers (PROTOCOL.md §7.14).
  "read", "unread",
  // Room moderation (PROTOCOL.md §7.9).
  "topic", "op", "deop", "kick", "ban", "unban", "bans", "mute", "unmute", "invite", "mode", "drop",
  // Editing and deleting one's own messages (PROTOCOL.md §7.12).
  "edit", "delete",
]);

// Editing and deleting one's own messages (PROTOCOL.md §7.12).
type ChangeRequest = Message<"edit" | "delete">;

// Room moderation (PROTOCOL.md §7.9).
type ModRequest = Message<"topic" | "op" | "deop" | "kick" | "ban" | "unban" | "bans" | "mute" | "unmute" | "invite" | "mode" | "drop">;
/**
 * What a user may do in a room: 3 a server administrator (all the owner may,
 * and also act on the owner), 2 the owner, 1 an operator, 0 anyone else. A
 * user acts only on users of a lower rank.
 */
type Rank = 0 | 1 | 2 | 3;

/** A user's two buckets: messages (say, dm) and every other request. */
interface Buckets {
  readonly messages: TokenBucket;
  readonly requests: TokenBucket;
}

export function isChatRequest(m: Message): m is Request {
  return REQUESTS.has(m.type);
}

export class Chat {
  readonly #rooms = new Map<string, Room>();
  readonly #online = new Map<string, Set<Member>>();
  readonly #state = new Map<Member, MemberState>();
  readonly #buckets = new Map<string, Buckets>();
  /** Distinct rooms each online user is in, across its connections. */
  readonly #userRooms = new Map<string, number>();
  /**
   * Away texts of online users (§7.3 `away`): presence, like being online,
   * so kept in memory only and forgotten with the user's last connection.
   */
  readonly #away = new Map<string, string>();
  #directSeq: number;
  /** The persistent rooms' state (PROTOCOL.md §7.9): changed only through applyRoomChange, as the journal is. */
  readonly #states: Map<string, RoomState>;
  /** When DMs past the retention were last forgotten (prune). */
  #expired = Number.NEGATIVE_INFINITY;
  /** The client message ids acknowledged recently, per user (PROTOCOL.md §7.15). */
  readonly #cids: CidMemory;

  constructor(
    readonly opts: ChatOptions,
    readonly journal: Journal,
    readonly now: () => number = Date.now,
    /**
     * Whether an account exists: a `dm` to a name that is not one is refused
     * (`no_such_user`). An account store that answers later (PostgreSQL)
     * gives a promise, which the request waits for in its turn.
     */
    readonly isAccount: (user: string) => boolean | Promise<boolean> = () => true,
    /** Where each device's read markers are kept (securechat.db in the server; PROTOCOL.md §7.14). */
    readonly markers: ReadMarkers = new MemoryMarkers(),
  ) {
    this.#directSeq = journal.lastDirectSeq();
    this.#states = journal.roomStates();
    // Persistent rooms exist with no members, as the transcript left them.
    for (const [name, st] of this.#states) this.#rooms.set(name, new Room(name, journal.lastSeq(name), st.owner));
    // A resend after a restart is known by the ids the log recorded (oldest first, as they were acknowledged).
    this.#cids = new CidMemory(now);
    for (const a of journal.ackedCids?.(now() - CID_TTL_MS) ?? []) {
      this.#cids.remember(a.user, a.cid, { seq: a.seq, ts: a.ts, receipt: { seq: a.tseq, hash: a.head }, ...(a.stored ? { stored: true } : {}) }, a.ts);
    }
  }

  /** Users online and the rooms that have members. */
  get stats(): { users: number; connections: number; rooms: number } {
    return { users: this.#online.size, connections: this.#state.size, rooms: this.#rooms.size };
  }

  /** The user's logged-in connections. */
  connectionsOf(user: string): number {
    return this.#online.get(user)?.size ?? 0;
  }

  /** Distinct rooms the user is in, across its connections. */
  roomsOf(user: string): number {
    return this.#userRooms.get(user) ?? 0;
  }

  /**
   * The connection is logged in: its user is online, and it is shown the
   * DMs stored for it. Over a journal or markers whose record is elsewhere
   * (PostgreSQL) those are loaded first: the stored DMs are shown, and its
   * requests answered, once they are; the promise rejects if they cannot
   * be (the connection is to end). Otherwise everything is done on return.
   */
  connect(m: Member): Promise<void> | void {
    const st: MemberState = { rooms: new Set(), device: m.device ? deviceId(m.device) : "", waiting: null, held: [], timer: null, refused: 0 };
    this.#state.set(m, st);
    let set = this.#online.get(m.user);
    if (!set) this.#online.set(m.user, (set = new Set()));
    set.add(m);
    const loads = [this.markers.load?.(m.user), this.journal.prepare?.({ missed: this.#missedFor(m.user) })].filter((p) => p instanceof Promise);
    if (loads.length === 0) return this.#deliverMissed(m);
    const ready = Promise.all(loads).then(() => {
      if (this.#state.get(m) !== st) return;
      st.waiting = null;
      this.#deliverMissed(m);
      this.#release(m, st);
    });
    st.waiting = ready.catch(() => {});
    return ready;
  }

  /**
   * A login is shown the DMs to its user that its device missed (§7.3):
   * stored while the user was offline, or delivered live while this device
   * was not connected — or to a connection that was already gone (a node
   * that died, a silent NAT) — marked `late`: the newest within the
   * retention that fit the history budget, oldest first.
   */
  #deliverMissed(m: Member): void {
    // Only those after this device's direct-message marker (PROTOCOL.md §7.14): each device is shown each once.
    // A device's first login makes its marker (where the user's most advanced device is), so from then on it gets what it missed.
    const device = this.#state.get(m)!.device;
    const start = this.#startMarker(m.user, device, DM_MARKER);
    const read = start?.seq ?? 0;
    if (!this.markers.get(m.user, device, DM_MARKER)) this.markers.advance(m.user, device, DM_MARKER, read, start?.at ?? this.now(), this.opts.maxReadMarkers);
    const { user, since, limit } = this.#missedFor(m.user);
    const stored = this.journal.missedDirects(user, since, read, limit);
    const json: string[] = [];
    let bytes = 0;
    for (let i = stored.length - 1; i >= 0; i--) {
      const j = encodeMessage({ ...stored[i]!, late: true });
      bytes += j.length;
      if (bytes > this.opts.historyBytes) break;
      json.push(j);
    }
    if (json.length < stored.length) {
      post(m, { type: "notice", code: "dm_more", text: `${stored.length - json.length} older direct messages you missed did not fit; /history @USER to read them` });
    }
    for (let i = json.length - 1; i >= 0; i--) m.post(json[i]!);
  }

  disconnect(m: Member): void {
    const st = this.#state.get(m);
    if (!st) return;
    if (st.timer) clearTimeout(st.timer);
    for (const room of [...st.rooms]) this.#leave(m, st, room, false);
    this.#state.delete(m);
    const set = this.#online.get(m.user);
    set?.delete(m);
    // The user's buckets stay until they have refilled (prune): logging out
    // and in again must not buy a fresh burst.
    if (set?.size === 0) {
      this.#online.delete(m.user);
      this.#away.delete(m.user);
      this.markers.release?.(m.user);
    }
  }

  /**
   * Forgets the buckets that have refilled: a full bucket is no different
   * from a new one, online or not, so an idle user holds none.
   */
  prune(): void {
    const now = this.now();
    for (const [user, b] of this.#buckets) if (b.messages.full(now) && b.requests.full(now)) this.#buckets.delete(user);
    if (now - this.#expired >= EXPIRE_EVERY_MS) {
      this.#expired = now;
      this.journal.expireDirects(now - this.opts.dmRetentionMs);
    }
  }

  /**
   * Runs `fn` once every request held for `m` has been answered (at once if
   * none is), so a bye or logout never overtakes the sender's own messages.
   */
  afterHeld(m: Member, fn: () => void): void {
    const st = this.#state.get(m);
    if (!st || (st.held.length === 0 && !st.waiting)) return fn();
    st.held.push(fn);
  }

  /** Handles one request, now or (past the flood limit) later, in order. */
  handle(m: Member, req: Request | AccountRequest): void {
    const st = this.#state.get(m);
    if (!st) throw new SecureChatError("chat_state", "chat: request from a connection that is not logged in or has left");
    if (st.held.length > 0 || st.waiting || m.congested) return this.#hold(m, st, req);
    if (!this.#take(m.user, req)) {
      const text = isMessage(req)
        ? `slow down: more than ${this.opts.flood.rate} messages per second; yours are queued`
        : `slow down: more than ${this.opts.requests.rate} requests per second; yours are queued`;
      post(m, { type: "notice", code: "slow_down", text });
      return this.#hold(m, st, req);
    }
    this.#dispatch(m, st, req);
  }

  /**
   * The connection's output has drained below the point where its requests
   * wait: answers what is held, as far as the buckets and its output allow.
   */
  wake(m: Member): void {
    const st = this.#state.get(m);
    if (st && st.held.length > 0 && !st.timer && !st.waiting) this.#release(m, st);
  }

  /** Takes the request's token from the right bucket; an action held behind requests (bye, logout) costs nothing. */
  #take(user: string, req: Held): boolean {
    if (typeof req === "function") return true;
    const b = this.#bucketsOf(user);
    return (isMessage(req) ? b.messages : b.requests).take(this.now());
  }

  /** Milliseconds until the bucket that `req` draws from has a token. */
  #wait(user: string, req: Held): number {
    if (typeof req === "function") return 0;
    const b = this.#bucketsOf(user);
    return (isMessage(req) ? b.messages : b.requests).wait(this.now());
  }

  #bucketsOf(user: string): Buckets {
    let b = this.#buckets.get(user);
    if (!b) {
      const now = this.now();
      this.#buckets.set(user, (b = { messages: new TokenBucket(this.opts.flood, now), requests: new TokenBucket(this.opts.requests, now) }));
    }
    return b;
  }

  /**
   * Queues a request behind the held ones. Past `maxHeld` it is refused; a
   * connection that goes on sending while it is refused (another `maxHeld`
   * requests before its queue empties) is flooding on purpose — no client
   * that waits for its answers gets there — and is closed (`flood`).
   */
  #hold(m: Member, st: MemberState, req: Request | AccountRequest): void {
    if (st.held.length >= this.opts.maxHeld) {
      if (++st.refused > this.opts.maxHeld) {
        throw new SecureChatError("flood", `flood: ${st.refused} requests refused while ${st.held.length} were waiting; disconnected`);
      }
      if (!("run" in req) && isMessage(req)) {
        post(m, { type: "nack", id: req.id, code: "flood", message: "dropped: too many messages waiting; wait for acks before sending more" });
      } else {
        post(m, { type: "notice", code: "flood", text: `dropped a ${req.type} request: too many requests waiting` });
      }
      return;
    }
    st.held.push(req);
    this.#schedule(m, st);
  }

  #schedule(m: Member, st: MemberState): void {
    // A congested connection is woken by its drain, not by a timer; one waiting for a load, when it is done.
    if (st.timer || st.held.length === 0 || m.congested || st.waiting) return;
    const wait = Math.max(1, this.#wait(m.user, st.held[0]!));
    st.timer = setTimeout(() => {
      st.timer = null;
      this.#release(m, st);
    }, wait);
  }

  #release(m: Member, st: MemberState): void {
    if (!this.#state.has(m)) return;
    while (st.held.length > 0 && !st.waiting) {
      const req = st.held[0]!;
      if (m.congested || !this.#take(m.user, req)) break;
      st.held.shift();
      if (typeof req === "function") {
        req();
        if (!this.#state.has(m)) return;
      } else this.#dispatch(m, st, req);
    }
    if (st.held.length === 0) st.refused = 0;
    this.#schedule(m, st);
  }

  /**
   * Answers a request whose token is taken: at once, or, when the journal
   * must load what it reads (Journal.prepare) or the account store must
   * say whether a name is an account, once that is done — the connection's
   * later requests wait behind it.
   */
  #dispatch(m: Member, st: MemberState, req: Request | AccountRequest): void {
    if ("run" in req) {
      const loading = req.prepare?.() ?? null;
      if (!loading) return req.run();
      // A load that failed leaves the answer to say what it lacks (run reads what was loaded).
      return this.#after(m, st, loading.catch(() => {}), () => req.run());
    }
    const ready = this.#prepare(m, req);
    if (!ready) return this.#answer(m, st, req, NOTHING_LOOKED_UP);
    const waiting = ready.then(
      (known) => known,
      (): LookedUp => ({ accounts: new Map(), failed: true }),
    );
    this.#after(m, st, waiting, (known) => this.#answer(m, st, req, known));
  }

  /** Answers with `answer` once `ready` is done, the connection's later requests waiting behind it (`st.waiting`). */
  #after<T>(m: Member, st: MemberState, ready: Promise<T>, answer: (v: T) => void): void {
    st.waiting = ready.then(() => {});
    void ready.then((v) => {
      if (this.#state.get(m) !== st) return;
      st.waiting = null;
      try {
        answer(v);
        this.#release(m, st);
      } catch (e) {
        if (!m.fail) throw e;
        m.fail(e);
      }
    });
  }

  /**
   * What `req` needs loaded before it is answered, for a journal whose
   * record is not in this process and an account store that answers later;
   * null when nothing is (always, over securechat.db and the files).
   */
  #prepare(m: Member, req: Request): Promise<LookedUp> | null {
    const need = this.#needs(m, req);
    const loading = need ? this.journal.prepare?.(need) : null;
    const name = accountNamed(req);
    const known = new Map<string, boolean>();
    let checking: Promise<void> | null = null;
    if (name !== undefined) {
      if (this.#online.has(name)) known.set(name, true);
      else {
        const is = this.isAccount(name);
        if (is instanceof Promise) checking = is.then((v) => void known.set(name, v));
      }
    }
    if (!loading && !checking) return null;
    return Promise.all([loading, checking]).then(() => ({ accounts: known, failed: false }));
  }

  /** What the journal must have loaded to answer `req` (Journal.prepare), if anything: each read with the arguments it will be made with. */
  #needs(m: Member, req: Request): Need | null {
    switch (req.type) {
      case "join":
        return { room: req.room, ...(req.since !== undefined ? { since: req.since } : {}) };
      case "history": {
        if (req.with !== undefined) return { between: this.#directHistoryRead(m.user, req.with, req.limit, req.before) };
        // A room the connection is not in is answered not_member: nothing is loaded that no read would take.
        const room = this.#rooms.get(req.room!);
        if (!room || !this.#state.get(m)?.rooms.has(room)) return null;
        return { room: req.room!, ...(req.since !== undefined ? { since: req.since } : {}) };
      }
      case "edit":
      case "delete":
        return req.room !== undefined ? { room: req.room } : { direct: req.seq };
      case "dm":
        // An offline recipient's undelivered DMs are counted (dm_store_full).
        return this.#online.has(req.to) ? null : { undelivered: { user: req.to, since: this.now() - this.opts.dmRetentionMs } };
      default:
        return null;
    }
  }

  /** The read of the DMs a login's device missed that it makes (missedDirects, before its marker is known). */
  #missedFor(user: string): { user: string; since: number; limit: number } {
    return { user, since: this.now() - this.opts.dmRetentionMs, limit: this.opts.maxStoredDms };
  }

  /** The read `/history @other` makes (directsBetween): one more than shown tells whether older ones remain. */
  #directHistoryRead(user: string, other: string, limit: number, before = Number.MAX_SAFE_INTEGER): { a: string; b: string; since: number; before: number; limit: number } {
    return { a: user, b: other, since: this.now() - this.opts.dmRetentionMs, before, limit: Math.min(limit, this.opts.history) + 1 };
  }

  /** Whether `user` is an account: as looked up before the request's turn, else asked now of a store that answers at once. */
  #isAccount(user: string, known: LookedUp): boolean {
    if (this.#online.has(user)) return true;
    const k = known.accounts.get(user);
    if (k !== undefined) return k;
    const is = this.isAccount(user);
    if (is instanceof Promise) throw new SecureChatError("chat_state", `chat: whether ${user} is an account was not looked up before the request's turn`);
    return is;
  }

  #answer(m: Member, st: MemberState, req: Request, known: LookedUp): void {
    const ts = this.now();
    switch (req.type) {
      case "join":
        return this.#join(m, st, req, ts);
      case "leave": {
        const room = this.#rooms.get(req.room);
        if (!room || !st.rooms.has(room)) return post(m, { type: "notice", code: "not_member", text: `you are not in ${req.room}` });
        return this.#leave(m, st, room, true);
      }
      case "say": {
        if (this.#repeated(m, req)) return;
        const room = this.#rooms.get(req.room);
        if (!room || !st.rooms.has(room)) return post(m, { type: "nack", id: req.id, code: "not_member", message: `you are not in ${req.room}; /join it first` });
        if (this.#states.get(room.name)?.mutes.has(m.user)) return post(m, { type: "nack", id: req.id, code: "muted", message: `you are muted in ${room.name}: you may read but not speak` });
        if (!this.journal.recording) return post(m, { type: "nack", id: req.id, code: "not_recorded", message: NOT_RECORDING });
        room.seq += 1;
        const msg: RoomMessage = { type: "message", room: room.name, seq: room.seq, ts, from: m.user, text: req.text, ...(req.action ? { action: true } : {}) };
        const receipt = this.journal.append({ kind: "message", message: msg, ...(req.cid ? { cid: req.cid } : {}) });
        const at = receipt.ts ?? ts;
        this.#remember(m, req, { seq: msg.seq, ts: at, receipt });
        const json = encodeMessage({ ...msg, ts: at });
        for (const other of room.members) if (other !== m) other.post(json);
        return this.#ack(m, req.id, msg.seq, at, receipt);
      }
      case "dm": {
        if (this.#repeated(m, req)) return;
        if (!this.journal.recording) return post(m, { type: "nack", id: req.id, code: "not_recorded", message: NOT_RECORDING });
        const to = this.#online.get(req.to);
        // The account store could not be asked: it is unreachable, and so is the record (TRANSCRIPT.md §6).
        if (!to && known.failed) return post(m, { type: "nack", id: req.id, code: "not_recorded", message: NOT_RECORDING });
        if (!to && !this.#isAccount(req.to, known)) return post(m, { type: "nack", id: req.id, code: "no_such_user", message: `there is no account ${req.to}` });
        if (!to && this.journal.undelivered(req.to, ts - this.opts.dmRetentionMs) >= this.opts.maxStoredDms) {
          return post(m, { type: "nack", id: req.id, code: "dm_store_full", message: `${req.to} is offline and has ${this.opts.maxStoredDms} direct messages waiting already; try again once they have logged in` });
        }
        this.#directSeq += 1;
        const msg: Message<"direct"> = { type: "direct", seq: this.#directSeq, ts, from: m.user, to: req.to, text: req.text, ...(req.action ? { action: true } : {}) };
        const receipt = this.journal.append({ kind: "direct", message: msg, ...(to ? {} : { stored: true }), ...(req.cid ? { cid: req.cid } : {}) });
        const at = receipt.ts ?? ts;
        this.#remember(m, req, { seq: msg.seq, ts: at, receipt, ...(to ? {} : { stored: true }) });
        const targets = new Set([...(to ?? []), ...(this.#online.get(m.user) ?? [])]);
        const json = encodeMessage({ ...msg, ts: at });
        for (const t of targets) if (t !== m) t.post(json);
        return this.#ack(m, req.id, msg.seq, at, receipt, !to, this.#away.get(req.to));
      }
      case "who": {
        const room = this.#visible(m.user, req.room);
        const users = room ? firstUsers(room) : [];
        const away = users.flatMap((user) => {
          const text = this.#away.get(user);
          return text === undefined ? [] : [{ user, text }];
        });
        return post(m, { type: "members", room: req.room, users, ...(away.length > 0 ? { away: away.slice(0, AWAY_LIST_MAX) } : {}) });
      }
      case "away": {
        if (req.text === undefined) this.#away.delete(m.user);
        else this.#away.set(m.user, req.text);
        // Every connection of the user is told: away is per user.
        const json = encodeMessage(
          req.text === undefined
            ? { type: "notice", code: "back", text: "you are no longer marked away" }
            : { type: "notice", code: "away", text: `you are marked away: ${req.text}` },
        );
        for (const c of this.#online.get(m.user) ?? []) c.post(json);
        return;
      }
      case "rooms":
        return post(m, {
          type: "room_list",
          rooms: [...this.#rooms.values()]
            .filter((r) => this.#visible(m.user, r.name))
            .map((r) => ({ name: r.name, users: r.users.size }))
            .sort((a, b) => (a.name < b.name ? -1 : 1))
            .slice(0, MAX_LIST),
        });
      case "history": {
        if (req.with !== undefined) return this.#sendDirectHistory(m, req.with, req.limit, req.before);
        const room = this.#rooms.get(req.room!);
        if (!room || !st.rooms.has(room)) return post(m, { type: "notice", code: "not_member", text: `you are not in ${req.room}` });
        return this.#sendHistory(m, room.name, Math.min(req.limit, this.opts.history), req.since);
      }
      case "ping":
        return post(m, { type: "pong" });
      case "edit":
      case "delete":
        return this.#change(m, st, req, ts);
      case "read":
        return this.#read(m, st, req, ts);
      case "unread":
        return this.#unread(m, st);
      default:
        return this.#moderate(m, req, ts, known);
    }
  }

  /**
   * An edit or delete of one of the user's own messages (PROTOCOL.md §7.12):
   * a room message (`room`) or a direct message (`to`: its recipient).
   * Refused unless the connection is in the room, the message is kept,
   * still there, the user's, inside the edit window and (an edit) under the
   * edit limit; a direct message is known only to its two users, so to
   * anyone else it does not exist. Recorded first, as a new entry that names
   * the original (never a change to it); then whoever was shown the message
   * (the room's other connections, or the recipient's and the sender's
   * other connections) is told, and the sender acked, as for a say or dm.
   */
  #change(m: Member, st: MemberState, req: Message<"edit" | "delete">, ts: number): void {
    if (this.#repeated(m, req)) return;
    let kept: { from: string; ts: number; deleted?: boolean; action?: boolean; tseq?: number; edits?: number } | undefined;
    let told: Iterable<Member>;
    const where = req.room ?? `your direct messages with ${req.to}`;
    if (req.room !== undefined) {
      const room = this.#rooms.get(req.room);
      if (!room || !st.rooms.has(room)) return post(m, { type: "nack", id: req.id, code: "not_member", message: `you are not in ${req.room}; /join it first` });
      kept = this.journal.editable(req.room, req.seq);
      told = room.members;
    } else {
      const d = this.journal.editableDirect(req.seq);
      const known = d !== undefined && d.message.to === req.to && (d.message.from === m.user || d.message.to === m.user) && d.message.ts >= ts - this.opts.dmRetentionMs;
      kept = known ? { ...d.message, tseq: d.tseq, edits: d.edits } : undefined;
      told = new Set([...(this.#online.get(req.to!) ?? []), ...(this.#online.get(m.user) ?? [])]);
    }
    const window = this.opts.editWindowMs;
    if (window <= 0) return post(m, { type: "nack", id: req.id, code: "edit_window_closed", message: "this server does not allow editing or deleting messages" });
    if (!kept || kept.deleted) {
      const message = `${where}: no message ${req.seq} that can still be changed (deleted, or no longer among the messages the server keeps)`;
      return post(m, { type: "nack", id: req.id, code: "no_such_message", message });
    }
    if (kept.from !== m.user) {
      return post(m, { type: "nack", id: req.id, code: "not_yours", message: `message ${req.seq} (${where}) is ${kept.from}'s: you can edit and delete only your own` });
    }
    if (ts - kept.ts > window) {
      return post(m, { type: "nack", id: req.id, code: "edit_window_closed", message: `message ${req.seq} is older than ${minutes(window)}, the server's edit window` });
    }
    // A muted user may not speak, so may not reword what it said either; it may still take it back.
    if (req.type === "edit" && req.room !== undefined && this.#states.get(req.room)?.mutes.has(m.user)) {
      return post(m, { type: "nack", id: req.id, code: "muted", message: `you are muted in ${req.room}: you may delete your messages but not edit them` });
    }
    if (req.type === "edit" && (kept.edits ?? 0) >= this.opts.maxEdits) {
      const message = `message ${req.seq} was edited ${this.opts.maxEdits} times already, the most the server allows; /delete it and say it again`;
      return post(m, { type: "nack", id: req.id, code: "edit_limit", message });
    }
    if (!this.journal.recording) return post(m, { type: "nack", id: req.id, code: "not_recorded", message: NOT_RECORDING });
    const at = req.room !== undefined ? { room: req.room } : { to: req.to! };
    const who = { ...at, seq: req.seq, user: m.user, session: m.session, ...(kept.tseq !== undefined ? { ref: kept.tseq } : {}), ts, ...(req.cid ? { cid: req.cid } : {}) };
    const receipt = this.journal.append(req.type === "edit" ? { kind: "edit", ...who, text: req.text } : { kind: "delete", ...who });
    const when = receipt.ts ?? ts;
    this.#remember(m, req, { seq: req.seq, ts: when, receipt });
    const json = encodeMessage(
      req.type === "edit"
        ? { type: "edited", ...at, seq: req.seq, ts: when, by: m.user, text: req.text, ...(kept.action ? { action: true } : {}) }
        : { type: "deleted", ...at, seq: req.seq, ts: when, by: m.user },
    );
    for (const other of told) if (other !== m) other.post(json);
    return this.#ack(m, req.id, req.seq, when, receipt);
  }

  /**
   * A message sent again with a client message id already acknowledged
   * (PROTOCOL.md §7.15): answered with the first ack (waiting, as it did, for
   * the transcript), and neither recorded nor relayed again. True if it was one.
   */
  #repeated(m: Member, req: Message<"say" | "dm" | "edit" | "delete">): boolean {
    const first = req.cid === undefined ? undefined : this.#cids.get(m.user, req.cid);
    if (!first) return false;
    this.#ack(m, req.id, first.seq, first.ts, first.receipt, first.stored === true);
    return true;
  }

  /** Remembers the ack of a message with a client message id; forgotten if the transcript fails to record it. */
  #remember(m: Member, req: Message<"say" | "dm" | "edit" | "delete">, acked: Acked): void {
    const cid = req.cid;
    if (cid === undefined) return;
    this.#cids.remember(m.user, cid, acked);
    acked.receipt.durable?.catch(() => this.#cids.forget(m.user, cid));
  }

  /**
   * The sender's ack waits until the message is where the transcript's
   * durability policy puts acknowledged entries (TRANSCRIPT.md §6), and
   * carries the entry's seq and hash: a commitment the client can later
   * check the server's log against. Others see the message at once; what
   * the sender's connection is sent after the ack waits behind it (§7.4).
   */
  #ack(m: Member, id: number, seq: number, ts: number, r: Receipt, stored = false, away?: string): void {
    const ack = (): string =>
      encodeMessage({
        type: "ack",
        id,
        seq,
        ts,
        ...(r.seq !== undefined && r.hash !== undefined ? { tseq: r.seq, head: r.hash } : {}),
        ...(stored ? { stored: true } : {}),
        ...(away !== undefined ? { away } : {}),
      });
    if (!r.durable) return m.post(ack());
    m.postWhen(r.durable, ack, () => encodeMessage({ type: "nack", id, code: "not_recorded", message: "the server could not record this message in its transcript" }));
  }


  #join(m: Member, st: MemberState, req: Message<"join">, ts: number): void {
    const name = req.room;
    let room = this.#rooms.get(name);
    if (room && st.rooms.has(room)) return this.#welcomeToRoom(m, room, req);
    const refused = room && this.#mayNotJoin(m.user, room);
    if (refused) return post(m, refused);
    if (st.rooms.size >= this.opts.maxRoomsPerConnection) {
      return post(m, { type: "notice", code: "room_limit", text: `you are in ${st.rooms.size} rooms already; /leave one first` });
    }
    const count = room?.users.get(m.user) ?? 0;
    if (count === 0 && this.roomsOf(m.user) >= this.opts.maxRoomsPerUser) {
      return post(m, { type: "notice", code: "room_limit", text: `${m.user} is in ${this.roomsOf(m.user)} rooms across its connections already; /leave one first` });
    }
    if (!this.journal.recording) return post(m, { type: "notice", code: "not_recorded", text: `not joined ${name}: ${NOT_RECORDING}` });
    if (!room) {
      if (this.#rooms.size >= this.opts.maxRooms) return post(m, { type: "notice", code: "room_limit", text: "the server has too many rooms" });
      room = new Room(name, this.journal.lastSeq(name), m.user);
      this.#rooms.set(name, room);
    }
    if (count === 0) {
      this.#userRooms.set(m.user, this.roomsOf(m.user) + 1);
      this.journal.append({ kind: "join", room: name, user: m.user, ts });
      const json = encodeMessage({ type: "joined", room: name, user: m.user, ts });
      for (const other of room.members) other.post(json);
    }
    room.users.set(m.user, count + 1);
    room.members.add(m);
    st.rooms.add(room);
    this.#welcomeToRoom(m, room, req);
  }

  /** The answer to a join (§7.3): the room, its history (all of it, `limit` of it, or what came after `since`), the recorded notice. */
  #welcomeToRoom(m: Member, room: Room, req: Message<"join">): void {
    const mark = this.#roomMarker(m, room);
    // A fresh start (no `since`) where this device, or another of the user's, has read the room before: what came after (PROTOCOL.md §7.14).
    const after = req.since === undefined && mark !== null ? mark.seq : undefined;
    const unread = after === undefined ? 0 : room.seq - after;
    post(m, { type: "room", room: room.name, users: firstUsers(room), seq: room.seq, ...this.#roomInfo(m.user, room), ...(unread > 0 ? { unread, read_at: mark!.at } : {}) });
    this.#sendHistory(m, room.name, Math.min(req.limit ?? this.opts.history, this.opts.history), req.since, after);
    post(m, { type: "notice", code: "recorded", text: `messages in ${room.name} are recorded in the server's auditable transcript` });
  }

  /**
   * Without `since`: the newest of the room's last `limit` messages that fit
   * `historyBytes` (with `after`, a device catching up: only those after it). With `since`: the oldest `limit` of the kept messages
   * after `since` that fit, and `more` if kept messages after those remain
   * (the client asks again from the last one it got). Oldest first either way.
   */
  #sendHistory(m: Member, room: string, limit: number, since?: number, after?: number): void {
    const kept =
      since === undefined
        ? this.journal.recent(room, limit).filter((x) => after === undefined || x.seq > after)
        : this.journal.after(room, since, limit + 1);
    const order = since === undefined ? kept.toReversed() : kept;
    const json: string[] = [];
    let bytes = 0;
    for (const x of order) {
      if (json.length >= limit) break;
      const j = encodeMessage({ ...x, history: true });
      bytes += j.length;
      if (bytes > this.opts.historyBytes) break;
      json.push(j);
    }
    if (since === undefined) json.reverse();
    for (const j of json) m.post(j);
    const more = since !== undefined && json.length < kept.length;
    post(m, { type: "history_end", room, count: json.length, ...(more ? { more: true } : {}) });
  }

  /**
   * The DMs between the user and `other` (either way) before `before`: the
   * newest min(`limit`, history setting) that fit the history budget,
   * oldest first, then `history_end` {with, count, more?}; `more` if older
   * ones are kept (the client asks again with `before` = the oldest seq it got).
   */
  #sendDirectHistory(m: Member, other: string, limit: number, before?: number): void {
    const read = this.#directHistoryRead(m.user, other, limit, before);
    const n = read.limit - 1;
    const kept = this.journal.directsBetween(read.a, read.b, read.since, read.before, read.limit);
    const json: string[] = [];
    let bytes = 0;
    for (let i = kept.length - 1; i >= 0 && json.length < n; i--) {
      const j = encodeMessage({ ...kept[i]!, history: true });
      bytes += j.length;
      if (bytes > this.opts.historyBytes) break;
      json.push(j);
    }
    for (let i = json.length - 1; i >= 0; i--) m.post(json[i]!);
    post(m, { type: "history_end", with: other, count: json.length, ...(json.length < kept.length ? { more: true } : {}) });
  }

  // ---- Read markers (PROTOCOL.md §7.14) ----

  /** Where a device starts in `room` (or DM_MARKER): its own marker, else the user's most advanced device's, else none. */
  #startMarker(user: string, device: string, room: string): Marker | null {
    return this.markers.get(user, device, room) ?? this.markers.best(user, room);
  }

  /**
   * This device's marker for a room it is joining, made if it has none (at
   * the user's most advanced device's, else at the room's last seq: what
   * came before the first join was never missed). A marker past the room's
   * last seq (the server lost its numbering) comes back to it. Null when
   * the user had none before this join: a fresh join, nothing to catch up.
   */
  #roomMarker(m: Member, room: Room): Marker | null {
    const device = this.#state.get(m)!.device;
    let mark = this.#startMarker(m.user, device, room.name);
    if (mark && mark.seq > room.seq) {
      this.markers.lower(m.user, room.name, room.seq);
      mark = { ...mark, seq: room.seq };
    }
    this.markers.advance(m.user, device, room.name, mark?.seq ?? room.seq, mark?.at ?? this.now(), this.opts.maxReadMarkers);
    return mark;
  }

  /**
   * `read`: moves this device's markers forward, never back and never past
   * what exists (a room's last seq, the last direct message). Only rooms
   * this connection is in are marked; others are ignored. No answer.
   */
  #read(m: Member, st: MemberState, req: Message<"read">, ts: number): void {
    this.markers.batch(() => {
      for (const r of req.rooms ?? []) {
        const room = this.#rooms.get(r.room);
        if (room && st.rooms.has(room)) this.markers.advance(m.user, st.device, room.name, Math.min(r.seq, room.seq), ts, this.opts.maxReadMarkers);
      }
      if (req.dm !== undefined) this.markers.advance(m.user, st.device, DM_MARKER, Math.min(req.dm, this.#directSeq), ts, this.opts.maxReadMarkers);
    });
  }

  /** `unread`: the rooms the user keeps markers for, by name, each with what this device has not read of it (PROTOCOL.md §7.14). */
  #unread(m: Member, st: MemberState): void {
    const rooms = this.markers
      .rooms(m.user, st.device)
      .slice(0, UNREAD_LIST_MAX)
      .map((mk) => {
        const last = this.#rooms.get(mk.room)?.seq ?? this.journal.lastSeq(mk.room);
        return { room: mk.room, unread: Math.max(0, last - mk.seq), read_at: mk.at };
      });
    post(m, { type: "unread_list", rooms });
  }

  /** `announce`: false when the others were told already (a kick or ban, §7.9). */
  #leave(m: Member, st: MemberState, room: Room, tell: boolean, announce = true): void {
    const ts = this.now();
    room.members.delete(m);
    st.rooms.delete(room);
    const count = (room.users.get(m.user) ?? 1) - 1;
    if (count > 0) room.users.set(m.user, count);
    else {
      room.users.delete(m.user);
      const rooms = this.roomsOf(m.user) - 1;
      if (rooms > 0) this.#userRooms.set(m.user, rooms);
      else this.#userRooms.delete(m.user);
      this.journal.append({ kind: "leave", room: room.name, user: m.user, ts });
      // The user left the room (not a connection closing): its devices no longer keep their place in it (PROTOCOL.md §7.14).
      if (tell) this.markers.forget(m.user, room.name);
      const json = encodeMessage({ type: "left", room: room.name, user: m.user, ts });
      if (announce) for (const other of room.members) other.post(json);
    }
    if (tell) post(m, { type: "left", room: room.name, user: m.user, ts });
    // A persistent room stays, listed with 0 users (§7.9).
    if (room.members.size === 0 && !this.#states.has(room.name)) this.#rooms.delete(room.name);
  }

  // -------------------------------------------------------------------------
  // Room moderation (PROTOCOL.md §7.9)

  #rank(user: string, room: Room): Rank {
    if (this.opts.admins.has(user)) return 3;
    const s = this.#states.get(room.name);
    if (user === (s?.owner ?? room.owner)) return 2;
    return s?.ops.has(user) ? 1 : 0;
  }

  #stateOf(room: Room): RoomState {
    return this.#states.get(room.name) ?? emptyRoomState(room.owner);
  }

  /** The room, unless it is secret (+s) and `user` is neither in it nor one of its operators: then, as if it did not exist. */
  #visible(user: string, name: string): Room | undefined {
    const room = this.#rooms.get(name);
    if (!room || !this.#states.get(name)?.secret || room.users.has(user) || this.#rank(user, room) > 0) return room;
    return undefined;
  }

  /** Why `user` may not join `room` (a ban, or +i without an invite), or null. */
  #mayNotJoin(user: string, room: Room): Message<"notice"> | null {
    const s = this.#states.get(room.name);
    if (!s || this.#rank(user, room) > 0 || room.users.has(user)) return null;
    if (s.bans.has(user)) return { type: "notice", code: "banned", text: `you are banned from ${room.name}` };
    if (s.inviteOnly && !s.invites.has(user)) return { type: "notice", code: "invite_only", text: `${room.name} is invite-only; ask an operator for an /invite` };
    return null;
  }

  /** What the `room` answer says about the room's state, for `user`. */
  #roomInfo(user: string, room: Room): Partial<Message<"room">> {
    const s = this.#stateOf(room);
    return {
      owner: s.owner,
      ...(s.ops.size > 0 ? { ops: [...s.ops].sort().slice(0, ROOM_OPS_MAX) } : {}),
      ...(s.topic !== undefined ? { topic: s.topic } : {}),
      ...(s.inviteOnly ? { invite_only: true } : {}),
      ...(s.secret ? { secret: true } : {}),
      ...(this.#states.has(room.name) ? { persistent: true } : {}),
      ...(s.mutes.has(user) ? { muted: true } : {}),
    };
  }

  /**
   * A moderation request: checked (the room, the asker's rank, the target,
   * the caps), recorded (a `room_change` entry, before it takes effect),
   * applied, and announced with `room_changed` to the room, the asker and
   * the user acted on. Every refusal is a `notice` and changes nothing.
   */
  #moderate(m: Member, req: ModRequest, ts: number, known: LookedUp): void {
    const room = this.#visible(m.user, req.room);
    if (!room) return post(m, { type: "notice", code: "no_such_room", text: `there is no room ${req.room}` });
    const rank = this.#rank(m.user, room);
    const s = this.#stateOf(room);
    if (req.type === "bans") {
      if (rank === 0 && !room.users.has(m.user)) return post(m, { type: "notice", code: "not_member", text: `you are not in ${room.name}` });
      return post(m, { type: "ban_list", room: room.name, bans: [...s.bans].sort().slice(0, MAX_LIST) });
    }
    const ownerOnly = req.type === "op" || req.type === "deop" || req.type === "drop";
    if (rank < (ownerOnly ? 2 : 1)) {
      return post(m, { type: "notice", code: "not_operator", text: ownerOnly ? `only the owner of ${room.name} (${s.owner}) may ${req.type}` : `you are not an operator of ${room.name}` });
    }
    const target = "user" in req ? req.user : undefined;
    if (target !== undefined) {
      // Undoing a ban or a mute is acting on the user too: a muted operator does not unmute itself.
      const acts = ["op", "deop", "kick", "ban", "unban", "mute", "unmute"].includes(req.type);
      if (acts && this.#rank(target, room) >= rank) {
        const what = ["", "an operator of", "the owner of", "a server administrator, above"][this.#rank(target, room)];
        return post(m, { type: "notice", code: "protected_user", text: `${target} is ${what} ${room.name}: you may not ${req.type} them` });
      }
      if (req.type !== "kick" && known.failed) return post(m, { type: "notice", code: "not_recorded", text: `${room.name} not changed: ${NOT_RECORDING}` });
      if (req.type === "kick" ? !room.users.has(target) : !this.#isAccount(target, known)) {
        if (req.type === "kick") return post(m, { type: "notice", code: "not_member", text: `${target} is not in ${room.name}` });
        return post(m, { type: "notice", code: "no_such_user", text: `there is no account ${target}` });
      }
      const list = { op: s.ops, ban: s.bans, mute: s.mutes, invite: s.invites }[req.type as "op" | "ban" | "mute" | "invite"];
      // Operators are capped lower still: the `room` answer must fit one record (ROOM_OPS_MAX).
      const cap = req.type === "op" ? Math.min(this.opts.maxRoomList, ROOM_OPS_MAX) : this.opts.maxRoomList;
      if (list && !list.has(target) && list.size >= cap) {
        return post(m, { type: "notice", code: "list_full", text: `${room.name} has ${list.size} entries in that list already (the most allowed); remove one first` });
      }
    }
    const persistent = this.#states.has(room.name);
    if (req.type === "drop" && !persistent) return post(m, { type: "notice", code: "not_persistent", text: `${room.name} has no settings to drop` });
    if (!persistent && req.type !== "kick" && req.type !== "drop") {
      if (this.#states.size >= this.opts.maxPersistentRooms) return post(m, { type: "notice", code: "persistent_limit", text: `the server has ${this.#states.size} persistent rooms (the most it keeps)` });
      let owned = 0;
      for (const o of this.#states.values()) if (o.owner === s.owner) owned++;
      if (owned >= this.opts.maxRoomsOwned) {
        return post(m, { type: "notice", code: "owned_limit", text: `${s.owner} owns ${owned} persistent rooms already (the most allowed); /drop one first` });
      }
    }
    if (!this.journal.recording) return post(m, { type: "notice", code: "not_recorded", text: `${room.name} not changed: ${NOT_RECORDING}` });
    const change: RoomChange = {
      kind: "room_change",
      room: room.name,
      user: m.user,
      session: m.session,
      owner: s.owner,
      action: req.type,
      ...(target !== undefined ? { target } : {}),
      ...(req.type === "topic" && req.text !== undefined ? { text: req.text } : {}),
      ...(req.type === "kick" && req.reason !== undefined ? { text: req.reason } : {}),
      ...(req.type === "mode" && req.invite_only !== undefined ? { inviteOnly: req.invite_only } : {}),
      ...(req.type === "mode" && req.secret !== undefined ? { secret: req.secret } : {}),
      ts,
    };
    this.journal.append(change);
    applyRoomChange(this.#states, change);
    const json = encodeMessage({
      type: "room_changed",
      room: room.name,
      by: m.user,
      action: change.action,
      ...(target !== undefined ? { user: target } : {}),
      ...(change.text !== undefined ? { text: change.text } : {}),
      ...(change.inviteOnly !== undefined ? { invite_only: change.inviteOnly } : {}),
      ...(change.secret !== undefined ? { secret: change.secret } : {}),
      ts,
    });
    const told = new Set<Member>([...room.members, m, ...(target !== undefined ? (this.#online.get(target) ?? []) : [])]);
    for (const c of told) c.post(json);
    if (target !== undefined && (req.type === "kick" || req.type === "ban")) {
      for (const c of [...room.members]) {
        const cst = c.user === target ? this.#state.get(c) : undefined;
        if (cst) this.#leave(c, cst, room, false, false);
      }
      // Put out of the room: the target's devices no longer keep their place in it (PROTOCOL.md §7.14), so its next start does not join it again.
      this.markers.forget(target, room.name);
    }
    if (req.type === "drop" && room.members.size === 0) this.#rooms.delete(room.name);
  }
}

/** Lists on the wire hold at most MAX_LIST names (PROTOCOL.md): the first, sorted. */
function firstUsers(room: Room): string[] {
  return [...room.users.keys()].sort().slice(0, MAX_LIST);
}

/**
 * Why a request that would be recorded is refused while the transcript
 * cannot record: nothing that must be recorded is relayed unrecorded.
 */
const NOT_RECORDING = "the server cannot write its transcript right now, so nothing is relayed; try again later";

/** How often `prune` forgets DMs past the retention; until then they are kept but never shown. */
const EXPIRE_EVERY_MS = 60_000;

/** What was looked up before a request's turn: whether names are accounts; `failed` if the store or journal could not be read. */
interface LookedUp {
  accounts: Map<string, boolean>;
  failed: boolean;
}

const NOTHING_LOOKED_UP: LookedUp = { accounts: new Map(), failed: false };

/** The name a request needs to know is an account: a `dm`'s recipient, a moderation request's target (not a kick's: it must be in the room). */
function accountNamed(req: Request): string | undefined {
  if (req.type === "dm") return req.to;
  if (req.type !== "kick" && "user" in req && typeof req.user === "string") return req.user;
  return undefined;
}

/** `say`, `dm`, `edit` and `delete` draw on the message bucket (PROTOCOL.md §7.5, §7.12). */
function isMessage(req: Request | AccountRequest): req is Message<"say" | "dm" | "edit" | "delete"> {
  return req.type === "say" || req.type === "dm" || req.type === "edit" || req.type === "delete";
}

/** `15 minutes`, `2 s`: an edit window for people. */
function minutes(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? "" : "s"}` : `${ms / 1000} s`;
}

function post(m: Member, msg: Message): void {
  m.post(encodeMessage(msg));
}
