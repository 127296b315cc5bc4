/**
 * The chat client's engine, shared by the interactive and the scripted
 * front ends: logs in (ticket, else password), joins the first room, turns
 * input lines into requests, and reports every event to a sink.
 *
 * Nothing is lost silently: every say/dm gets an id and a `sent` event, and
 * ends with exactly one of `ack`, `nack` or `unsent`. At most WINDOW are
 * pending at once (so a fast script never outruns the server's flood
 * queue); leaving waits for every pending ack (bounded), and the exit
 * status says whether any line went unacknowledged.
 *
 * Resume, not restart: the client keeps, per room it is in, the last seq
 * it has seen (live, acked, or history). When the connection drops, or the
 * server ends the session for a reason a new connection can cure
 * (server_shutdown, session_expired, idle_timeout, slow_consumer), it
 * reconnects with jittered backoff, logs in again (the ticket, else
 * `opts.password()`), rejoins every room with `since` (docs/PROTOCOL.md
 * §7.3), delivers exactly the messages it missed, says `reconnected`, and
 * then sends the lines typed meanwhile (at most QUEUE_MAX are held). A
 * server that would make a resume hold live messages without bound
 * (HELD_MAX), page without progress, or answer joins never sent breaks the
 * protocol: that connection ends, and the next waits out the backoff.
 * Lines that were pending when the connection dropped may or may not have
 * arrived: each carries a client message id (docs/PROTOCOL.md §7.15), so
 * they are sent again first, once every room is rejoined, and a server that
 * recorded one answers with its first ack instead of recording it twice.
 * Without reconnecting they are reported `unsent` with that reason.
 *
 * Read markers (docs/PROTOCOL.md §7.14): a message is read once it has been
 * handed to the sink (the screen, or stdout). The client tells the server,
 * coalesced: at most one `read` every READ_EVERY_MS, carrying every room
 * whose marker moved and the last direct message, and one more as it
 * leaves. On start it asks `unread` and joins, besides the first room, every
 * room the user keeps markers in; a room joined with messages the device has
 * not read gets one `catchup` event before its history.
 */
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { hasControl } from "../text.ts";
import { MESSAGE_TEXT_MAX, READ_LIST_MAX } from "../protocol/limits.ts";
import { type Message, newCid } from "../protocol/messages.ts";
import { type AccountOptions, login, resumeWithTicket } from "./account.ts";
import type { ClientSession } from "./connection.ts";
import { isAuthFailure, isHostKeyFailure } from "./failures.ts";
import { LogCheck, type WitnessPolicy } from "./logcheck.ts";
import { Receipts } from "./receipts.ts";
import { DEFAULT_TRANSCRIPT_MAX, TranscriptFile } from "./transcriptfile.ts";

/** Requests in flight before the client waits for acks. */
export const WINDOW = 32;
/** How long leaving waits for outstanding acks (and for lines queued while disconnected). */
export const DRAIN_MS = 15_000;
/**
 * Lines typed while disconnected that are held to be sent after the
 * reconnect. Past it an interactive line is refused (`unsent`); a piped
 * client stops reading its input until there is room. The (at most WINDOW)
 * lines unacknowledged when the connection dropped are held besides, ahead
 * of them, to be sent again.
 */
export const QUEUE_MAX = 100;
/** The longest wait between reconnect attempts, before jitter. */
export const RECONNECT_MAX_MS = 30_000;
/** The most history messages one `history` page asks for when resuming (the protocol's limit). */
const PAGE = 1000;
/**
 * Live messages held back, across all rooms, while their history is paged
 * in after a reconnect (docs/PROTOCOL.md §7.7). Held messages that the
 * history has since overtaken are dropped first, so what counts is the
 * live traffic that arrives ahead of the history: with the reference
 * server, the messages said during one page's round trip. A server that
 * sends more without ending the history breaks the protocol: the
 * connection ends and the client reconnects with backoff. At most 4 KiB of
 * text each, this holds at most about 8 MiB.
 */
export const HELD_MAX = 2000;
/** The user's own recent messages per room that `/edit N` and `/delete N` can name (PROTOCOL.md §7.12). */
export const MINE_MAX = 50;

/** Which message `/edit` or `/delete` means: the user's `back`-th last in the current room, or the room's message `seq`. */
export type MessageRef = { back: number } | { seq: number };

/** The most often the client sends its read markers (docs/PROTOCOL.md §7.14); it also sends them as it leaves. */
export const READ_EVERY_MS = 3000;
/** How long leaving waits for the rooms joined at start from `unread` to be answered (so what they bring is shown and read). */
const ROOMS_WAIT_MS = 2000;
/** Rooms one connection may be in at the reference server: the first room and at most this many less one from `unread`. */
const ROOMS_PER_CONNECTION = 32;

/**
 * The server's `error` codes after which a new connection can go on: the
 * server is restarting, the ticket expired (log in again), the cluster's
 * chat core moved to another node (core_changed), or this
 * connection was dropped for silence or slowness. Any other code ends the
 * client (session_revoked: the user logged out elsewhere).
 */
const RECONNECT_CODES = new Set(["server_shutdown", "session_expired", "idle_timeout", "slow_consumer", "core_changed"]);
/** Passwords asked mid-chat before a wrong one ends the client. */
const PASSWORD_TRIES = 3;
/** The notices that refuse a join (PROTOCOL.md §6.1): the oldest join waiting is the one refused. */
const JOIN_REFUSALS = new Set(["room_limit", "not_recorded", "banned", "invite_only"]);

export type LocalEvent =
  | { type: "connected"; server: string; user: string; session: string }
  | { type: "disconnected"; reason: string; code?: string }
  | { type: "reconnecting"; in_ms: number; attempt: number }
  | { type: "reconnected"; after_ms: number; rooms: { room: string; missed: number; gap: number }[] }
  | { type: "sent"; id: number; room?: string; to?: string; text: string; action?: boolean; queued?: true }
  | { type: "unsent"; id: number; reason: string }
  /** An edit (with `text`) or a delete (without) of the room's message `seq` was sent with this id (PROTOCOL.md §7.12). */
  | { type: "change_sent"; id: number; room?: string; to?: string; seq: number; text?: string }
  | { type: "current"; room: string }
  /**
   * Catching up (PROTOCOL.md §7.14): `unread` messages came in `room` since this
   * device last read it (at `since`, ms since the epoch); `shown` of them, the
   * newest, follow as history. Said before that history.
   */
  | { type: "catchup"; room: string; unread: number; since: number; shown: number }
  | { type: "local"; text: string };

export type ChatEvent = Message | LocalEvent;

/** The room moderation requests (PROTOCOL.md §7.9). */
type ModRequest = "topic" | "op" | "deop" | "kick" | "ban" | "unban" | "bans" | "mute" | "unmute" | "invite" | "mode" | "drop";

export interface ChatSink {
  event(e: ChatEvent): void;
  /**
   * Null while the sink can take more events; otherwise a promise that
   * resolves once it can. Meanwhile the client reads nothing from the
   * server, so a slow reader of the output holds the server back instead
   * of filling this process's memory.
   */
  congested?(): Promise<void> | null;
}

export interface ChatOptions extends AccountOptions {
  room: string;
  /** Asks for the password when there is no usable ticket (at start, or to log in again after the ticket expired). */
  password: () => Promise<string>;
  /** Appends the user's own view as JSON lines (chat --transcript). */
  transcriptFile?: string;
  /** The most bytes the transcript file may hold (chat --transcript-max); DEFAULT_TRANSCRIPT_MAX by default. */
  transcriptMax?: number;
  /** Reconnect with backoff when the connection drops or the server restarts; false: the first loss ends the client. */
  reconnect: boolean;
  /** The first room's history: "all" (the server's), "none" (chat --no-history), or only the messages after a seq (chat --since-seq). */
  history?: "all" | "none" | { since: number };
  /** While disconnected with QUEUE_MAX lines queued, `say` waits for room instead of refusing the line (piped input). */
  waitWhenQueueFull?: boolean;
  /** The first reconnect delay before jitter (tests shorten it); doubles per attempt up to RECONNECT_MAX_MS. */
  reconnectBaseMs?: number;
  /** chat --witness, --witness-quorum: the log must be cosigned by a quorum of these (PROTOCOL.md §7.13). */
  witnesses?: WitnessPolicy;
}

interface Pending {
  id: number;
  /** With its client message id (PROTOCOL.md §7.15), the same each time it is sent. */
  req: Message<"say" | "dm">;
  /** Sent before, and not acknowledged when the connection was lost: queued to be sent again. */
  again?: boolean;
  /**
   * Sent again right after a reconnect, before the rooms are rejoined: the
   * server answers one it recorded with its first ack whatever the session's
   * rooms (PROTOCOL.md §7.15), so the rejoin's history does not show it a
   * second time; one it did not record is refused `not_member` and goes out
   * again once the rooms are rejoined.
   */
  early?: boolean;
}

/** A room being rejoined after a reconnect. */
interface Resume {
  /** The `room` answer's seq, once it came: history up to it is what was missed; live messages come after it. */
  target: number | null;
  /** The seq the history being paged in was asked after (the join's or the last page's `since`): a page marked `more` must bring a message after it. */
  from: number;
  /** Live messages that came while the history was still being paged in, delivered after it (at most HELD_MAX across the rooms). */
  held: Message<"message">[];
  missed: number;
  gap: number;
  /** Seqs of this client's own messages acked while rejoining (sent again early): their history copies are not shown again. */
  mine: Set<number>;
}

interface RoomState {
  /** The last seq of the room this client has seen (live, acked, or history). */
  seq: number;
  resume: Resume | null;
  /** Resume.mine of a resume the loss of its connection cut short: the next resume's history must not show them either. */
  mineCarried?: Set<number>;
  /** A join catching up (its `room` had `unread`): the history held until its end, so the summary comes first. */
  catchup?: { unread: number; since: number; held: Message<"message">[] } | null;
}

type State = "connecting" | "ready" | "down" | "resuming" | "ended";

export class ChatClient {
  #session: ClientSession | null = null;
  /** The log check of the current connection (PROTOCOL.md §7.13). */
  #log: LogCheck | null = null;
  /** What each `log_proof` sent on this connection was for, oldest first (answers come in order, PROTOCOL.md §7.4). */
  #logAsks: ("check" | "receipts")[] = [];
  /** Receipts of the user's acknowledged messages (with --transcript: TRANSCRIPT.md Appendix A). */
  readonly #receipts: Receipts | null;
  #receiptTimer: ReturnType<typeof setTimeout> | null = null;
  #state: State = "connecting";
  /** The rooms this client is in, in join order, each with the last seq it has seen. */
  readonly #rooms = new Map<string, RoomState>();
  /** Per user, the paging state of `/history @USER`: the oldest DM seq shown and whether the server keeps older ones. */
  readonly #dmPages = new Map<string, { oldest: number; more: boolean }>();
  /** Read markers not yet sent (PROTOCOL.md §7.14): per room the last seq shown, and the last direct message shown. */
  readonly #readRooms = new Map<string, number>();
  #readDm = 0;
  /** The next `read` is scheduled. */
  #readTimer: ReturnType<typeof setTimeout> | null = null;
  /** Rooms joined at start from `unread`: their answers do not change the current room. */
  readonly #background = new Set<string>();
  #current: string;
  /** Rooms whose join was sent and not yet answered, oldest first (answers come in order, PROTOCOL.md §7.4). */
  #joins: string[] = [];
  /** `recorded` notices that end a rejoin's answer: not shown again. */
  #quietNotices = 0;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  /** Early resends refused `not_member` since the last rejoin, put back at the front of the queue in order. */
  #requeued = 0;
  /** Edits and deletes sent and not yet answered, by id. */
  readonly #changes = new Map<number, Message<"edit" | "delete">>();
  /** Per room (and per `@USER` for direct messages to USER), the seqs of the user's own messages this client has seen (acked, or shown), oldest first, at most MINE_MAX. */
  readonly #mine = new Map<string, number[]>();
  /** Lines typed while disconnected, sent once every room is rejoined. */
  #queue: Pending[] = [];
  #flushing = false;
  #unacknowledged = 0;
  #windowWaiters: (() => void)[] = [];
  #drainWaiters: (() => void)[] = [];
  #queueWaiters: (() => void)[] = [];
  #closing = false;
  /** This client sent `bye`: the server's `bye` is then the answer, not the server ending the session. */
  #byeSent = false;
  #paused = false;
  #reader: Promise<void> | null = null;
  readonly #transcript: TranscriptFile | null;
  #done: (reason: string) => void = () => {};
  #joined: (() => void) | null = null;
  /** When the last working connection was lost (for `reconnected.after_ms`): a connection lost mid-resume does not restart it. */
  #lostAt = 0;
  /** Reconnect attempts since the rooms were last all resumed: a server that accepts each connection and then breaks the resume still meets a growing backoff. */
  #attempts = 0;
  /** A change of the current room to say after the event being handled. */
  #announce: string | null = null;
  /** The user name the server welcomed. */
  #me = "";
  /** Why the session ended, if it was not this client's own quit. */
  failure: string | null = null;
  /** The code of the server's `error` that ended the session, if one did (session_expired also when logging in again was impossible). */
  failureCode: string | null = null;
  /** The error that ended the session when the command must exit as for it (a host key mismatch: exit 4; a refused login: exit 3). */
  failureError: SecureChatError | null = null;
  readonly finished: Promise<string>;

  constructor(
    readonly opts: ChatOptions,
    readonly sink: ChatSink,
  ) {
    this.#current = opts.room;
    this.finished = new Promise((resolve) => (this.#done = resolve));
    this.#transcript = opts.transcriptFile
      ? new TranscriptFile(opts.transcriptFile, opts.transcriptMax ?? DEFAULT_TRANSCRIPT_MAX, (text) => this.emit({ type: "local", text }))
      : null;
    this.#receipts = this.#transcript
      ? new Receipts(
          () => this.#me,
          () => this.#session?.keys.hostKey ?? null,
          (line) => this.#transcript?.append(line),
          (text) => this.emit({ type: "local", text }),
        )
      : null;
  }

  /** Receipt checks that failed (each was said when it failed): the client exits 6 for them (TRANSCRIPT.md Appendix A). */
  get receiptFailures(): readonly string[] {
    return this.#receipts?.failures ?? [];
  }

  /** Acknowledged messages left without a receipt: not fetched before the end, or past the bound of those waiting. */
  get receiptsMissing(): number {
    return (this.#receipts?.outstanding ?? 0) + (this.#receipts?.dropped ?? 0);
  }

  /** The current room: where plain lines go. */
  get room(): string {
    return this.#current;
  }

  /** The rooms this client is in, in join order. */
  get rooms(): readonly string[] {
    return [...this.#rooms.keys()];
  }

  /** The last seq seen in `room` (undefined if not in it). */
  lastSeq(room: string): number | undefined {
    return this.#rooms.get(room)?.seq;
  }

  /** Makes a joined room current; false if this client is not in it. */
  switchTo(room: string): boolean {
    if (!this.#rooms.has(room)) return false;
    this.#setCurrent(room);
    return true;
  }

  /** The session is over (left, or ended by the server); no more lines can be sent. */
  get ended(): boolean {
    return this.#state === "ended";
  }

  /** Connected, every room joined: lines go out at once (otherwise they are queued). */
  get connected(): boolean {
    return this.#state === "ready";
  }

  /** Reading from the server is paused because the sink is congested. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Why the --transcript file is incomplete, or null. */
  get transcriptProblem(): string | null {
    return this.#transcript?.problem ?? null;
  }

  /** Live messages held back until their rooms' history is in (at most HELD_MAX). */
  get held(): number {
    let n = 0;
    for (const st of this.#rooms.values()) n += st.resume?.held.length ?? 0;
    return n;
  }

  /** Messages that were never acknowledged (nacked, refused, or lost with a dropped connection). */
  get unacknowledged(): number {
    return this.#unacknowledged;
  }

  /** Logs in and joins the first room; resolves once the server has confirmed the join. */
  async start(): Promise<void> {
    const joined = new Promise<void>((r) => (this.#joined = r));
    await this.#connect();
    const h = this.opts.history ?? "all";
    if (typeof h === "object") this.#rooms.set(this.opts.room, { seq: h.since, resume: newResume() });
    this.#sendJoin(this.opts.room, h === "none" ? { limit: 0 } : typeof h === "object" ? { since: h.since } : {});
    // The user's other rooms (PROTOCOL.md §7.14), unless the first room's position was given (a bot resuming on its own).
    if (h === "all") {
      this.#unreadAsked = true;
      this.#send({ type: "unread" });
    }
    if (!(await within(Promise.race([joined, this.finished]), 10_000))) {
      throw new SecureChatError("join_unconfirmed", `the server did not confirm joining ${this.opts.room}`);
    }
    if (this.failureError) throw this.failureError;
    if (this.failure) throw new SecureChatError("chat_failed", this.failure);
  }

  /** A new connection, logged in with the ticket, else the password (asked through `opts.password`). */
  async #connect(): Promise<void> {
    let resumed = await resumeWithTicket(this.opts);
    if (!resumed) {
      await this.#login();
      resumed = await resumeWithTicket(this.opts);
      if (!resumed) throw new SecureChatError("ticket_refused", "logged in, but the new ticket was refused");
    }
    this.#session = resumed.session;
    this.#me = resumed.welcome.user;
    if (this.#state === "connecting") {
      this.emit({ type: "connected", server: this.opts.addr.id, user: resumed.welcome.user, session: Buffer.from(resumed.welcome.session_id).toString("base64") });
    }
    this.#reader = this.#readLoop(resumed.session);
    // Before anything else: is the server's log still the one it showed this client (PROTOCOL.md §7.13)?
    this.#log = new LogCheck(this.opts.addr.id, resumed.session.keys.hostKey, this.opts.witnesses ?? null);
    this.#logAsks = ["check"];
    this.#receipts?.lost();
    this.#send(this.#log.request());
  }

  /** Asks for the receipts waiting, batched and paced (receipts.ts), while connected. */
  #pumpReceipts(): void {
    const r = this.#receipts;
    if (!r || !this.#log || !this.#session || this.#state !== "ready" || this.#byeSent) return;
    const wait = r.due();
    if (wait === null || this.#receiptTimer) return;
    if (wait > 0) {
      this.#receiptTimer = setTimeout(() => {
        this.#receiptTimer = null;
        this.#pumpReceipts();
      }, wait);
      return;
    }
    this.#logAsks.push("receipts");
    this.#send(r.request(this.#log.ask()));
  }

  /** A log check's verdict: a failure ends the client for good (a rollback or fork is no reason to reconnect). */
  #checkLog(step: () => void): void {
    try {
      step();
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.failure = message;
      this.failureError = isSecureChatError(e) ? e : null;
      this.emit({ type: "local", text: message });
      this.#finish(message);
    }
  }

  /**
   * Logs in with the password. Mid-chat (the ticket expired), a password
   * that does not open the identity key is asked again, PASSWORD_TRIES
   * times in all: a line of chat typed just as the prompt appeared must not
   * end the client. The key is opened on this machine, so a wrong try costs
   * the server nothing.
   */
  async #login(): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        await login(this.opts, await this.#password());
        return;
      } catch (e) {
        if (this.#state === "connecting" || !isSecureChatError(e, "identity_locked") || tries >= PASSWORD_TRIES) throw e;
        const left = PASSWORD_TRIES - tries;
        this.emit({ type: "local", text: `${e.message}; ${left} ${left === 1 ? "try" : "tries"} left` });
      }
    }
  }

  /**
   * The password, from the front end. Mid-chat (the ticket expired), a front
   * end that cannot or will not give one (a pipe; Ctrl-C at the prompt) ends
   * the client instead of being asked again and again.
   */
  async #password(): Promise<string> {
    if (this.#state === "connecting") return this.opts.password();
    try {
      return await this.opts.password();
    } catch (e) {
      throw new NoPassword(e);
    }
  }

  emit(e: ChatEvent): void {
    this.#record(e);
    this.sink.event(e);
    // Shown: read (PROTOCOL.md §7.14).
    if (e.type === "message") this.#markRead(e.room, e.seq);
    else if (e.type === "direct") this.#markRead(null, e.seq);
  }

  // ---- Read markers (PROTOCOL.md §7.14) ----

  /** `room` (null: direct messages) is read up to `seq`: sent with the next `read`, at most every READ_EVERY_MS. */
  #markRead(room: string | null, seq: number): void {
    if (room === null) {
      if (seq <= this.#readDm) return;
      this.#readDm = seq;
      this.#dmDirty = true;
    } else {
      if (seq <= (this.#readRooms.get(room) ?? 0)) return;
      this.#readRooms.set(room, seq);
      this.#dirtyRooms.add(room);
    }
    this.#scheduleRead();
  }

  #scheduleRead(): void {
    if (this.#state === "ended") return;
    this.#readTimer ??= setTimeout(() => {
      this.#readTimer = null;
      this.#sendRead();
    }, READ_EVERY_MS);
  }

  #dirtyRooms = new Set<string>();
  #dmDirty = false;

  /** Sends the markers that moved, for the rooms this client is in, if connected (else they wait for the next send). */
  #sendRead(): void {
    if (this.#state === "ended") return;
    // Disconnected: they wait for the connection to come back.
    if (!this.#session) return this.#scheduleRead();
    const rooms = [...this.#dirtyRooms].filter((r) => this.#rooms.has(r)).map((room) => ({ room, seq: this.#readRooms.get(room)! }));
    if (rooms.length === 0 && !this.#dmDirty) return;
    this.#send({ type: "read", ...(rooms.length > 0 ? { rooms: rooms.slice(0, READ_LIST_MAX) } : {}), ...(this.#dmDirty ? { dm: this.#readDm } : {}) });
    for (const r of rooms.slice(0, READ_LIST_MAX)) this.#dirtyRooms.delete(r.room);
    for (const r of [...this.#dirtyRooms]) if (!this.#rooms.has(r)) this.#dirtyRooms.delete(r);
    this.#dmDirty = false;
    if (this.#dirtyRooms.size > 0) this.#scheduleRead(); // the rest in the next one
  }

  /** `unread` was sent and not yet answered: only its answer is taken (a server does not pick rooms unasked). */
  #unreadAsked = false;

  /** The user's rooms from `unread`: joins those this client is not in, up to what a connection may be in. */
  #onUnreadList(m: Message<"unread_list">): void {
    if (!this.#unreadAsked) return;
    this.#unreadAsked = false;
    for (const r of m.rooms) {
      if (this.#rooms.size + this.#joins.length >= ROOMS_PER_CONNECTION) break;
      if (this.#rooms.has(r.room) || this.#joins.includes(r.room)) continue;
      this.#background.add(r.room);
      this.#sendJoin(r.room, {});
    }
  }

  /** Only what the user sent and received goes to the transcript: no list, notice or error a server could inflate. */
  #record(e: ChatEvent): void {
    if (!this.#transcript) return;
    // A queued line is recorded when it is really sent (#transmit).
    if (e.type === "sent") {
      if (!e.queued) this.#transcript.append({ kind: "sent", at: Date.now(), ...e, type: undefined });
    } else if (e.type === "message" || e.type === "direct") this.#transcript.append({ kind: "recv", ...e, type: e.type });
  }

  #recordAck(p: Pending, ack: Message<"ack">): void {
    if (!this.#transcript) return;
    const r = p.req;
    const where = r.type === "say" ? { room: r.room } : { to: r.to };
    const line = {
      kind: "ack",
      id: p.id,
      ...where,
      seq: ack.seq,
      ts: ack.ts,
      text: r.text,
      ...(r.action ? { action: true } : {}),
      ...(ack.tseq !== undefined ? { tseq: ack.tseq, head: ack.head } : {}),
    };
    this.#transcript.append(line);
  }

  #send(m: Message): void {
    if (!this.#session) throw new SecureChatError("not_connected", "chat: not connected");
    this.#session.send(m);
  }

  #sendJoin(room: string, extra: { since?: number; limit?: number }): void {
    this.#joins.push(room);
    this.#send({ type: "join", room, ...extra });
  }

  async #readLoop(session: ClientSession): Promise<void> {
    try {
      for (;;) {
        const msgs = await session.receive(Number.POSITIVE_INFINITY);
        for (const m of msgs) {
          if (session !== this.#session) return;
          this.#onMessage(m);
        }
        if (session !== this.#session) return;
        const drained = this.sink.congested?.();
        if (drained) {
          // Output waits for a slow reader: stop reading (the server sees TCP backpressure) until it drains.
          this.#paused = true;
          session.stream.pauseReading();
          await Promise.race([drained, this.finished]);
          this.#paused = false;
          if (session !== this.#session) return;
          session.stream.resumeReading();
        }
      }
    } catch (e) {
      if (session !== this.#session) return;
      this.#lost(isSecureChatError(e) ? e.message : String(e));
    }
  }

  #onMessage(m: Message): void {
    /** A line shown right after `m`. */
    let then: LocalEvent | null = null;
    // Answers to requests sent after a log_proof: its answer must have come first (PROTOCOL.md §7.13).
    if ((m.type === "room" || m.type === "unread_list") && this.#log) {
      this.#checkLog(() => this.#log?.overtaken());
      if (this.#state === "ended") return;
    }
    switch (m.type) {
      case "ack":
      case "nack": {
        const p = this.#pending.get(m.id);
        const change = p ? undefined : this.#changes.get(m.id);
        if (change) {
          this.#changes.delete(m.id);
          if (m.type === "ack") then = this.#changed(change);
        }
        if (p) {
          this.#pending.delete(m.id);
          // Not recorded before (the new session is not in the room yet): sent again once it is.
          if (m.type === "nack" && p.early && m.code === "not_member") {
            this.#queue.splice(this.#requeued++, 0, { id: p.id, req: p.req, again: true });
            this.#wake();
            return;
          }
          const resume = p.early && p.req.type === "say" ? this.#rooms.get(p.req.room)?.resume : undefined;
          if (m.type === "ack" && resume) resume.mine.add(m.seq);
          if (m.type === "ack") {
            this.#recordAck(p, m);
            if (m.tseq !== undefined && this.#receipts) {
              this.#receipts.acked({ id: p.id, req: p.req, tseq: m.tseq, ...(m.head !== undefined ? { head: m.head } : {}) });
              this.#pumpReceipts();
            }
            // The recipient of a dm is marked away (PROTOCOL.md §7.3): delivered, but maybe not read soon.
            if (m.away !== undefined && p.req.type === "dm") then = { type: "local", text: `${p.req.to} is away: ${m.away}` };
            const st = p.req.type === "say" ? this.#rooms.get(p.req.room) : undefined;
            if (st && !st.resume) st.seq = Math.max(st.seq, m.seq);
            this.#remember(mineKey(p.req), m.seq);
            // One's own message is read (PROTOCOL.md §7.14).
            this.#markRead(p.req.type === "say" ? p.req.room : null, m.seq);
          } else this.#unacknowledged++;
          this.#wake();
        }
        break;
      }
      case "ping":
        this.#send({ type: "pong" });
        return;
      case "room":
        if (this.#onRoom(m)) return;
        break;
      case "message":
        if (this.#onRoomMessage(m)) return;
        if (m.from === this.#me && !m.deleted) this.#remember(m.room, m.seq);
        break;
      case "deleted":
        if (m.by === this.#me) this.#forget(mineKey(m), m.seq);
        break;
      case "history_end":
        if (this.#onCatchupEnd(m)) return;
        if (this.#onHistoryEnd(m)) return;
        if (m.with !== undefined && m.more) {
          const page = this.#dmPages.get(m.with);
          if (page) page.more = true;
          this.emit({ type: "local", text: `older direct messages with ${m.with}: /history @${m.with} more` });
        }
        break;
      case "unread_list":
        this.#onUnreadList(m);
        return;
      case "direct":
        if (m.from === this.#me && !m.deleted) this.#remember(mineKey(m), m.seq);
        // A late DM this run has shown already (its `read` may not have reached the server before a reconnect).
        if (m.late && m.seq <= this.#readDm) return;
        if (m.history) {
          const page = this.#dmPages.get(m.from === this.#me ? m.to : m.from);
          if (page) page.oldest = Math.min(page.oldest, m.seq);
        }
        break;
      case "left":
        if (m.user === this.#me) this.#gone(m.room);
        break;
      case "room_changed":
        // Kicked or banned (PROTOCOL.md §7.9): every connection of this user left the room.
        if ((m.action === "kick" || m.action === "ban") && m.user === this.#me) this.#gone(m.room);
        break;
      case "log_state": {
        // Only answers are checked: each costs signature checks and a rewritten, fsynced checkpoint file.
        if (this.#logAsks.length === 0) throw violation("the server sent the state of its log unasked");
        const receipts = this.#logAsks.shift() === "receipts";
        this.#checkLog(() => this.#log?.check(m));
        if (receipts && this.#state !== "ended") {
          this.#receipts?.answer(m);
          this.#pumpReceipts();
        }
        return;
      }
      case "notice":
        if (m.code === "no_log") {
          if (this.#logAsks.shift() === "receipts") this.#receipts?.noLog();
          return this.#checkLog(() => this.#log?.noLog());
        }
        if (m.code === "recorded" && this.#quietNotices > 0) {
          this.#quietNotices--;
          return;
        }
        if (JOIN_REFUSALS.has(m.code) && this.#joins.length > 0) this.#joinRefused(this.#joins.shift()!, m.text);
        break;
      case "error":
        // Closed with a code the client comes back from: one event, `disconnected` with the code (not an `error` too).
        if (this.opts.reconnect && !this.#closing && RECONNECT_CODES.has(m.code)) return this.#lost(`the server closed the session: ${m.message}`, m.code);
        break;
      case "bye":
        this.emit(m);
        // The answer to this client's own bye is the normal end; any other bye is the server ending the session.
        if (!this.#byeSent) this.failure = `the server ended the session${m.reason ? `: ${m.reason}` : ""}`;
        this.#finish("server said bye");
        return;
    }
    this.emit(m);
    if (then) this.emit(then);
    if (this.#announce !== null) {
      this.emit({ type: "current", room: this.#announce });
      this.#announce = null;
    }
    if (m.type === "error") {
      this.failure = `the server closed the session: ${m.message}`;
      this.failureCode = m.code;
      this.#finish(this.failure);
    }
  }

  /** This user is no longer in `room` (it left, or was kicked or banned). */
  #gone(room: string): void {
    if (!this.#rooms.has(room)) return;
    const order = this.rooms;
    const i = order.indexOf(room);
    this.#rooms.delete(room);
    // Leaving the current room makes the one joined before it current (else the next).
    const next = order[i - 1] ?? order[i + 1];
    if (this.#current === room && next !== undefined) this.#setCurrent(next, true);
  }

  /** The answer to a join. True if it is not to be shown (a rejoin: `reconnected` says it). */
  #onRoom(m: Message<"room">): boolean {
    const i = this.#joins.indexOf(m.room);
    // Only a join is answered with `room`: an answer to none would make this client rejoin rooms it never asked for.
    if (i < 0) throw violation(`the server answered a join of ${m.room} that this client did not send`);
    this.#joins.splice(i, 1);
    const st = this.#rooms.get(m.room);
    this.#joined?.();
    this.#joined = null;
    if (st?.resume && st.resume.target === null) {
      st.resume.target = m.seq;
      if (m.seq < st.seq) {
        this.emit({
          type: "local",
          text: `the server's numbering of ${m.room} went back from ${st.seq} to ${m.seq}: it lost messages, or is not the server it was; what it shows now cannot be matched with what you saw`,
        });
        st.seq = m.seq;
      }
      st.resume.from = st.seq;
      if (this.#state === "resuming") {
        this.#quietNotices++;
        return true;
      }
      this.#setCurrent(m.room, true);
      return false;
    }
    if (!st) this.#rooms.set(m.room, { seq: m.seq, resume: null, catchup: m.unread !== undefined ? { unread: m.unread, since: m.read_at!, held: [] } : null });
    else if (!st.resume) st.seq = Math.max(st.seq, m.seq);
    // A room joined from `unread` at start is there, but the first room stays current.
    if (!this.#background.delete(m.room)) this.#setCurrent(m.room, true);
    return false;
  }

  /** The end of a catching-up join's history: the summary, then the history held for it. True if done here. */
  #onCatchupEnd(m: Message<"history_end">): boolean {
    const st = m.room === undefined ? undefined : this.#rooms.get(m.room);
    const c = st?.catchup;
    if (!st || !c) return false;
    st.catchup = null;
    this.emit({ type: "catchup", room: m.room!, unread: c.unread, since: c.since, shown: c.held.length });
    for (const h of c.held) this.emit(h);
    this.emit(m);
    return true;
  }

  /** A room message. True if it is not to be delivered now (already seen, or held until the room's history is in). */
  #onRoomMessage(m: Message<"message">): boolean {
    const st = this.#rooms.get(m.room);
    if (!st) return false;
    const r = st.resume;
    if (r && !m.history) {
      if (this.held >= HELD_MAX) this.#dropOvertaken();
      if (this.held >= HELD_MAX) throw violation(`the server sent more than ${HELD_MAX} live messages while the history of ${m.room} was still being paged in`);
      r.held.push(m);
      return true;
    }
    if (!r && m.history && st.catchup) {
      st.catchup.held.push(m); // after the summary line (#onCatchupEnd)
      return true;
    }
    if (!r && m.history) return false; // history asked for by the user (join, /history): shown as it is
    if (m.seq <= st.seq) return true; // seen already
    const mine = r?.mine.has(m.seq) === true;
    if (r) {
      if (m.seq > st.seq + 1) r.gap += m.seq - st.seq - 1;
      if (!mine) r.missed++;
    }
    st.seq = m.seq;
    // One's own message sent again early: its ack came first and stands for it.
    return mine;
  }

  /** The end of a run of history. True if it is not to be shown (part of a rejoin). */
  #onHistoryEnd(m: Message<"history_end">): boolean {
    const room = m.room;
    if (room === undefined) return false;
    const st = this.#rooms.get(room);
    const r = st?.resume;
    if (!st || !r || r.target === null) return false;
    if (m.more) {
      // Asking again after the same seq would bring the same page, forever.
      if (st.seq <= r.from) throw violation(`the server said more history of ${room} follows, but sent none after seq ${r.from}`);
      r.from = st.seq;
      this.#send({ type: "history", room, limit: PAGE, since: st.seq });
      return this.#state === "resuming";
    }
    if (st.seq < r.target) {
      r.gap += r.target - st.seq;
      st.seq = r.target;
    }
    st.resume = null;
    for (const h of r.held) {
      if (h.seq <= st.seq) continue;
      st.seq = h.seq;
      this.emit(h);
    }
    if (this.#state === "resuming") {
      this.#finishResume(room, r);
      return true;
    }
    // The first room, joined with --since-seq: said here, since no `reconnected` will.
    if (r.gap > 0) this.emit({ type: "local", text: `${r.gap} message(s) of ${m.room} that you asked for are no longer kept by the server` });
    return false;
  }

  /** Held live messages that history has since brought (seq ≤ the room's last seen) are not needed any more. */
  #dropOvertaken(): void {
    for (const st of this.#rooms.values()) {
      const r = st.resume;
      if (r) r.held = r.held.filter((h) => h.seq > st.seq);
    }
  }

  #resumed: { room: string; missed: number; gap: number }[] = [];

  #finishResume(room: string, r: Resume): void {
    this.#resumed.push({ room, missed: r.missed, gap: r.gap });
    this.#checkResumed();
  }

  /** Every room rejoined (or refused): say so, then send what was typed meanwhile. */
  #checkResumed(): void {
    if (this.#state !== "resuming") return;
    for (const st of this.#rooms.values()) if (st.resume) return;
    this.#state = "ready";
    this.#attempts = 0;
    const order = this.rooms;
    const rooms = this.#resumed.sort((a, b) => order.indexOf(a.room) - order.indexOf(b.room));
    this.#resumed = [];
    this.emit({ type: "reconnected", after_ms: Date.now() - this.#lostAt, rooms });
    void this.#flush();
    this.#pumpReceipts();
  }

  #joinRefused(room: string, why: string): void {
    const st = this.#rooms.get(room);
    if (st?.resume) {
      this.#rooms.delete(room);
      this.emit({ type: "local", text: `could not rejoin ${room}: ${why}` });
      if (this.#current === room && this.#rooms.size > 0) this.#setCurrent(this.rooms[0]!, true);
      this.#checkResumed();
    }
    if (room === this.opts.room && this.#state === "connecting") {
      this.failure = `could not join ${room}: ${why}`;
      this.#finish(this.failure);
    }
  }

  /** Makes `room` current; `later`: said after the server's event that caused it (room, left, notice). */
  #setCurrent(room: string, later = false): void {
    if (room === this.#current && this.#state !== "connecting") return;
    this.#current = room;
    if (this.#state === "connecting") this.#state = "ready";
    if (later) this.#announce = room;
    else this.emit({ type: "current", room });
  }

  #wake(): void {
    if (this.#pending.size < WINDOW) for (const w of this.#windowWaiters.splice(0)) w();
    if (this.#queue.length < QUEUE_MAX) for (const w of this.#queueWaiters.splice(0)) w();
    if (this.#pending.size === 0 && this.#queue.length === 0) for (const w of this.#drainWaiters.splice(0)) w();
  }

  /** The connection is gone: pending lines are reported, and (if allowed) the client reconnects. */
  #lost(reason: string, code?: string): void {
    const session = this.#session;
    this.#session = null;
    session?.close();
    const lost = [...this.#pending.values()].sort((a, b) => a.id - b.id);
    this.#pending.clear();
    this.#joins = [];
    this.#unreadAsked = false;
    this.#quietNotices = 0;
    this.#resumed = [];
    for (const st of this.#rooms.values()) {
      if (st.resume && st.resume.mine.size > 0) st.mineCarried = st.resume.mine;
      st.resume = null;
    }
    // Sent again after the reconnect, with the same client message ids: the server
    // answers one it recorded already with its first ack, so none arrives twice (PROTOCOL.md §7.15).
    const again = this.opts.reconnect && !this.#closing && this.#state !== "ended" && this.#state !== "connecting";
    if (again) this.#queue.unshift(...lost.map((p) => ({ ...p, again: true })));
    this.emit({
      type: "disconnected",
      reason:
        lost.length === 0 ? reason
        : again ? `${reason}; ${lost.length} message(s) not yet acknowledged will be sent again once reconnected (the server keeps each only once)`
        : `${reason}; ${lost.length} message(s) were not acknowledged and may not have arrived`,
      ...(code !== undefined ? { code } : {}),
    });
    if (!again) for (const p of lost) this.#unsent(p.id, `not acknowledged: the connection was lost after it was sent; it may or may not have reached ${where(p.req)}`);
    this.#wake();
    if (this.#closing || this.#state === "ended") return this.#finish(reason);
    if (!this.opts.reconnect || this.#state === "connecting") {
      this.failure = `connection lost: ${reason}`;
      return this.#finish(reason);
    }
    if (this.#state !== "resuming") this.#lostAt = Date.now();
    this.#state = "down";
    void this.#reconnect();
  }

  #unsent(id: number, reason: string): void {
    this.#unacknowledged++;
    this.emit({ type: "unsent", id, reason });
  }

  /** Delay before attempt n: RECONNECT_MAX_MS ∧ base·2^(n−1), times a uniform factor in [0.5, 1.5). */
  #delay(attempt: number): number {
    const base = this.opts.reconnectBaseMs ?? 1000;
    return Math.min(RECONNECT_MAX_MS, base * 2 ** Math.min(attempt - 1, 20)) * (0.5 + Math.random());
  }

  async #reconnect(): Promise<void> {
    while (!this.#closing) {
      const attempt = ++this.#attempts;
      const delay = this.#delay(attempt);
      this.emit({ type: "reconnecting", in_ms: Math.round(delay), attempt });
      await Bun.sleep(delay);
      if (this.#closing) return;
      try {
        await this.#connect();
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        if (e instanceof NoPassword || isHostKeyFailure(e) || isAuthFailure(e)) {
          this.emit({ type: "local", text: message });
          // No password to log in again with (a pipe, or the prompt cancelled): the session expired, as the server said.
          if (e instanceof NoPassword) {
            this.failure = `your session expired and could not be renewed: ${message}`;
            this.failureCode = "session_expired";
          } else {
            this.failure = message;
            this.failureError = isSecureChatError(e) ? e : null;
          }
          return this.#finish(message);
        }
        // Anything else (the server is down, busy, or broke the protocol): say so, and try again.
        this.emit({ type: "local", text: `reconnecting failed (attempt ${attempt}): ${message}` });
        continue;
      }
      if (this.#closing) return;
      this.#rejoin();
      return;
    }
  }

  /** Joins every room again with the last seq seen; `reconnected` follows once each has its missed messages. */
  #rejoin(): void {
    this.#state = "resuming";
    for (const st of this.#rooms.values()) {
      st.resume = newResume(st.mineCarried);
      st.mineCarried = undefined;
    }
    // What was unacknowledged goes first: answered before the history that would show it again.
    let n = 0;
    while (this.#queue[0]?.again) {
      const p = this.#queue.shift()!;
      this.#transmit({ ...p, early: true });
      n++;
    }
    this.#requeued = 0;
    if (n > 0) this.#wake();
    for (const [room, st] of this.#rooms) this.#sendJoin(room, { since: st.seq });
    this.#checkResumed();
  }

  #finish(reason: string): void {
    if (this.#readTimer) clearTimeout(this.#readTimer);
    this.#readTimer = null;
    if (this.#receiptTimer) clearTimeout(this.#receiptTimer);
    this.#receiptTimer = null;
    this.#closing = true;
    this.#state = "ended";
    const session = this.#session;
    this.#session = null;
    session?.close();
    // No ack can come any more: what is pending or queued is lost, and whoever waits for it is told now.
    for (const p of this.#pending.values()) this.#unsent(p.id, `not acknowledged: the session ended (${reason}); it may or may not have reached ${where(p.req)}`);
    this.#pending.clear();
    for (const p of this.#queue.splice(0)) this.#unsent(p.id, `not sent: the session ended before the connection came back (${reason})`);
    this.#wake();
    for (const w of this.#windowWaiters.splice(0)) w();
    for (const w of this.#queueWaiters.splice(0)) w();
    this.#done(reason);
  }

  /** Waits until another request may be sent (the window has room). */
  async #window(): Promise<void> {
    while (this.#pending.size >= WINDOW && !this.#closing) await new Promise<void>((r) => this.#windowWaiters.push(r));
  }

  async say(text: string, action = false): Promise<void> {
    await this.#line({ type: "say", id: 0, room: this.#current, text, ...(action ? { action: true } : {}) });
  }

  async dm(to: string, text: string, action = false): Promise<void> {
    await this.#line({ type: "dm", id: 0, to, text, ...(action ? { action: true } : {}) });
  }

  /** A line of the user's: sent now, queued while disconnected, or refused (`unsent`). */
  async #line(req: Message<"say" | "dm">): Promise<void> {
    const id = this.#nextId++;
    const problem = textProblem(req.text);
    if (problem !== null) return this.#unsent(id, `not sent: ${problem}`);
    const r = { ...req, id, text: req.text.replace(/\t/g, "    "), cid: newCid() };
    if (this.#state === "ended") return this.#unsent(id, "not sent: the session has ended");
    // Before the first join is answered the session is there: lines go out (the server answers them in order).
    const open = this.#state === "ready" || (this.#state === "connecting" && this.#session !== null);
    if (!open || this.#queue.length > 0) {
      if (this.#queue.length >= QUEUE_MAX && this.opts.waitWhenQueueFull) {
        while (this.#queue.length >= QUEUE_MAX && !this.#closing) await new Promise<void>((w) => this.#queueWaiters.push(w));
        if (this.ended) return this.#unsent(id, "not sent: the session has ended");
      }
      if (this.#queue.length >= QUEUE_MAX) return this.#unsent(id, `not sent: ${QUEUE_MAX} lines are already waiting for the connection to come back`);
      this.#queue.push({ id, req: r });
      this.emit({ ...sentEvent(r), queued: true });
      if (this.#state === "ready") void this.#flush();
      return;
    }
    await this.#window();
    if (this.ended) return this.#unsent(id, "not sent: the session has ended");
    if (this.#state !== "ready" && !(this.#state === "connecting" && this.#session !== null)) {
      // The connection went while this line waited for the window: it waits for the next one.
      this.#queue.push({ id, req: r });
      return this.emit({ ...sentEvent(r), queued: true });
    }
    this.#transmit({ id, req: r });
    this.emit(sentEvent(r));
  }

  #transmit(p: Pending): void {
    this.#pending.set(p.id, p);
    this.#send(p.req);
  }

  /** Sends the queued lines in order, through the window, while connected. */
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#queue.length > 0 && this.#state === "ready") {
        await this.#window();
        if (this.#state !== "ready") return;
        const p = this.#queue.shift()!;
        this.#wake();
        if (p.req.type === "say" && !this.#rooms.has(p.req.room)) {
          this.#unsent(p.id, `not sent: you are no longer in ${p.req.room}`);
          continue;
        }
        this.#transmit(p);
        if (!p.again) this.#transcript?.append({ kind: "sent", at: Date.now(), ...sentEvent(p.req), type: undefined });
      }
    } finally {
      this.#flushing = false;
    }
  }

  /**
   * `/history @USER`: the last `limit` DMs with `user`, or with `more` the
   * `limit` before the oldest the last answer showed (PROTOCOL.md §7.1 `before`).
   */
  directHistory(user: string, limit: number, more: boolean): void {
    const page = this.#dmPages.get(user);
    if (more && page?.more !== true) return this.emit({ type: "local", text: `no older direct messages with ${user} to show: /history @${user} first` });
    this.#dmPages.set(user, { oldest: Number.MAX_SAFE_INTEGER, more: false });
    this.request({ type: "history", with: user, limit, ...(more ? { before: page!.oldest } : {}) });
  }

  /**
   * `/edit` (with `text`) and `/delete` (without) of one of the user's own
   * messages in the current room (PROTOCOL.md §7.12): the `back`-th last this
   * client has seen acked or shown, or the room's message `seq`. Waits first
   * for the acks of lines still pending, so "/edit" right after a line means
   * that line. Not queued while disconnected: said to be impossible then.
   */
  async change(which: MessageRef, text?: string, to?: string): Promise<void> {
    const at = to !== undefined ? { to } : { room: this.#current };
    const where = to !== undefined ? `your direct messages to ${to}` : this.#current;
    const what = text === undefined ? "delete" : "edit";
    if ("back" in which && this.#pending.size > 0) {
      const drained = new Promise<boolean>((r) => this.#drainWaiters.push(() => r(true)));
      await within(Promise.race([drained, this.finished]), DRAIN_MS);
    }
    if (this.#state !== "ready" || !this.#session) return this.emit({ type: "local", text: `not connected: /${what} again once reconnected` });
    const mine = this.#mine.get(mineKey(at)) ?? [];
    const seq = "seq" in which ? which.seq : mine[mine.length - which.back];
    if (seq === undefined) {
      const nth = "back" in which && which.back > 1 ? `${which.back} messages` : "a message";
      const hint = to !== undefined ? `/${what} @${to} #SEQ` : `/${what} #SEQ`;
      return this.emit({ type: "local", text: `nothing to ${what}: this client has not seen ${nth} of yours in ${where} (${hint} names any)` });
    }
    const problem = text === undefined ? null : textProblem(text);
    if (problem !== null) return this.emit({ type: "local", text: `not edited: ${problem}` });
    const id = this.#nextId++;
    const cid = newCid();
    const req: Message<"edit" | "delete"> = text === undefined ? { type: "delete", id, ...at, seq, cid } : { type: "edit", id, ...at, seq, text: text.replace(/\t/g, "    "), cid };
    this.#changes.set(id, req);
    this.emit({ type: "change_sent", id, ...at, seq, ...(req.type === "edit" ? { text: req.text } : {}) });
    this.#send(req);
  }

  /** What the user is told once an edit or delete of theirs is done. */
  #changed(req: Message<"edit" | "delete">): LocalEvent {
    const where = req.room !== undefined ? `in ${req.room}` : `to ${req.to}`;
    if (req.type === "delete") {
      this.#forget(mineKey(req), req.seq);
      return { type: "local", text: `you deleted your message ${req.seq} ${where} [deleted]` };
    }
    return { type: "local", text: `you edited your message ${req.seq} ${where}: ${req.text} (edited)` };
  }

  #remember(room: string, seq: number): void {
    let mine = this.#mine.get(room);
    if (!mine) this.#mine.set(room, (mine = []));
    if (mine.includes(seq)) return;
    mine.push(seq);
    mine.sort((a, b) => a - b);
    if (mine.length > MINE_MAX) mine.shift();
  }

  #forget(room: string, seq: number): void {
    const mine = this.#mine.get(room);
    const i = mine?.indexOf(seq) ?? -1;
    if (i >= 0) mine!.splice(i, 1);
  }

  /** Other requests (join, leave, who, rooms, history, away, and room moderation, PROTOCOL.md §7.9). */
  request(m: Message<"join" | "leave" | "who" | "rooms" | "history" | "away" | ModRequest>): void {
    if (this.#state !== "ready" || !this.#session) return this.emit({ type: "local", text: "not connected: try again once reconnected" });
    if (m.type === "join") this.#joins.push(m.room);
    this.#send(m);
  }

  /** Leaves cleanly: waits (bounded) for every pending ack and queued line, says bye, closes. */
  async quit(): Promise<void> {
    if (this.#closing) return;
    // Before the first connection nothing can come; after it, the reconnect may still bring the queued lines through.
    if ((this.#pending.size > 0 || this.#queue.length > 0) && this.#state !== "connecting") {
      const drained = new Promise<boolean>((r) => this.#drainWaiters.push(() => r(true)));
      if (!(await within(Promise.race([drained, this.finished]), DRAIN_MS))) {
        const n = this.#pending.size + this.#queue.length;
        this.emit({ type: "local", text: `${n} message(s) not acknowledged within ${DRAIN_MS / 1000} s` });
        for (const p of this.#pending.values()) this.#unsent(p.id, `not acknowledged within ${DRAIN_MS / 1000} s of quitting; it may or may not have reached ${where(p.req)}`);
        this.#pending.clear();
        for (const p of this.#queue.splice(0)) this.#unsent(p.id, `not sent: you quit before the connection came back`);
      }
    }
    // The receipts of this session's messages, before bye (bounded as the acks are).
    if (this.#receipts && this.#receipts.outstanding > 0 && this.#state === "ready") {
      const deadline = Date.now() + DRAIN_MS;
      while (this.#receipts.outstanding > 0 && this.#state === "ready" && Date.now() < deadline) {
        this.#pumpReceipts();
        await Bun.sleep(20);
      }
      if (this.#receipts.outstanding > 0) this.emit({ type: "local", text: `receipts: ${this.#receipts.outstanding} message(s) left without a receipt: the server did not prove them within ${DRAIN_MS / 1000} s` });
    }
    // The rooms joined at start from `unread` are shown before leaving, so what they caught up on is read (PROTOCOL.md §7.14).
    for (let i = 0; i < ROOMS_WAIT_MS / 10 && this.#state === "ready" && (this.#unreadAsked || this.#joins.length > 0); i++) await Bun.sleep(10);
    if (this.#closing) return;
    const session = this.#state === "ready" ? this.#session : null;
    this.#closing = true;
    if (session) {
      try {
        // What was shown is read: the markers go before the bye (PROTOCOL.md §7.14).
        this.#sendRead();
        this.#byeSent = true;
        // The log as it is now, covering this session's acknowledged messages, is what the next connect is checked against.
        if (this.#log) {
          this.#logAsks.push("check");
          session.send(this.#log.request(), { type: "bye", reason: "leaving" });
        }
        else session.send({ type: "bye", reason: "leaving" });
        await within(this.finished, 3000);
      } catch {
        // the connection is gone already; nothing more to say
      }
    }
    this.#finish("left");
    await this.#reader;
  }
}

/** Where `#mine` keeps a message's seq: its room, or `@` and the recipient of a direct message (no room name starts with `@`). */
function mineKey(m: { room?: string; to?: string }): string {
  return m.room ?? `@${m.to}`;
}

/** The front end gave no password when one was needed mid-chat. */
class NoPassword extends Error {
  constructor(readonly reason: unknown) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
}

function newResume(mine = new Set<number>()): Resume {
  return { target: null, from: 0, held: [], missed: 0, gap: 0, mine };
}

/** The server broke the protocol: thrown while reading, it ends the connection (the client reconnects with backoff). */
function violation(what: string): SecureChatError {
  return new SecureChatError("protocol_violation", `protocol: ${what}`);
}

function where(req: Message<"say" | "dm">): string {
  return req.type === "say" ? req.room : req.to;
}

function sentEvent(r: Message<"say" | "dm">): LocalEvent & { type: "sent" } {
  const how = r.action ? { action: true } : {};
  return r.type === "say" ? { type: "sent", id: r.id, room: r.room, text: r.text, ...how } : { type: "sent", id: r.id, to: r.to, text: r.text, ...how };
}

/**
 * The server closes a session over a malformed message, so lines are
 * checked here first: tabs become spaces; other control characters or
 * more than MESSAGE_TEXT_MAX bytes refuse the line, which counts as not sent.
 */
function textProblem(text: string): string | null {
  const t = text.replace(/\t/g, "    ");
  if (hasControl(t)) return "it contains control characters";
  if (!t.isWellFormed()) return "it is not valid text";
  const bytes = Buffer.byteLength(t);
  return bytes > MESSAGE_TEXT_MAX ? `it is longer than ${MESSAGE_TEXT_MAX} bytes (${bytes}): split it` : null;
}

/** Resolves true if `p` settles within `ms`, false otherwise; leaves no timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
