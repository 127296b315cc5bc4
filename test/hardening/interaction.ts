/**
 * Interaction fuzz: seeded random sequences of connect
 * (ticket login), join, leave, say, bursts of large says, dm, who, rooms,
 * history, stop and resume reading, bye, FIN, reset, and reconnect, by
 * several users with several terminals (connections) each, in a few rooms,
 * against the real server over loopback sockets. Requests go out in bursts
 * (several terminals write before the server gets a turn), sometimes several
 * in one record, so joins, leaves and closes race with says and dms.
 *
 * The server is the real `ChatServer`, in process, on 127.0.0.1 port 0,
 * with either the in-memory journal or the transcript on disk (fsync batch),
 * as `securechat serve` always runs it: in process because the oracle below
 * needs the order in which the server processed things, and because a run
 * then takes well under a second.
 *
 * The oracle. Which of two racing requests (bob's `join` and alice's `say`
 * arriving in the same turn) the server handled first is its choice, and
 * clients cannot see it for every pair (a second terminal's `leave` is
 * announced to nobody). So a probe records the order in which the server
 * handed logins, requests and disconnects to its chat core (instance
 * wrappers of `chat.connect`, `chat.handle`, `chat.disconnect` and
 * `journal.append`, which observe and change nothing), and a model of
 * PROTOCOL.md §7.3, driven in that order, predicts the exact sequence of
 * messages each terminal must receive. Flood control is set out of reach,
 * so each request is processed when `handle` is called (a `slow_down` or
 * `flood` fails the run).
 *
 * The invariant, per terminal T:
 *
 *   what T received (every message of every record, in order) equals the
 *   model's sequence for T, ignoring `ts`, the human-readable text of
 *   notices and nacks and an ack's transcript commitment (tseq, head);
 *   allowing the `left`s caused by one disconnect to come in any order (the
 *   order a closed connection leaves its rooms is not specified); followed
 *   by `bye` for a terminal that said `bye`; a prefix of it for a terminal
 *   that closed its socket (FIN or reset) or that stopped reading and was
 *   dropped as a slow consumer (then ending with `error` `slow_consumer`).
 *   With the transcript, an `ack` may come at its place or later (it waits
 *   for the disk, TRANSCRIPT.md §6); with the in-memory journal it must be
 *   at its place, and no answer may come after the answer to a later
 *   request (PROTOCOL.md §7.4 rule 2).
 *
 * The property checked (PROTOCOL.md §7.3, §7.4): a terminal receives a room's live messages
 * exactly for seq in (s, e], where s is the `seq` of its `room` answer
 * (history before that: the room's last H messages, `history: true`) and e
 * the room's last seq when the server processed its `leave` or its
 * disconnect; its own `say`s in that window come back as `ack`s with their
 * seq, not as messages; in seq order (so in order per sender); never a
 * message of a room it is not in; a `direct` reaches exactly the
 * recipient's connections and the sender's other connections online when
 * the server processed it; nothing twice.
 *
 * Checked without the model as well (so a model sharing a bug with the
 * server is still caught): every copy of a room message (room, seq) and of a
 * direct message (seq) agrees on sender, text, action and ts with each other
 * and with the sender's ack; acks come in request order; within each
 * membership window a terminal's live seqs increase, and with its ack seqs
 * they continue its `room` answer's seq with no gap and no repeat; history
 * is the room's last messages up to that seq.
 *
 * Queues: each connection's outbox and socket queue are measured at every
 * flush (the socket queue stays within Framed's bound); only a terminal that
 * stopped reading may be dropped, with `slow_consumer`; at quiescence the
 * chat core's counts of users, connections and rooms equal the model's, and
 * once every terminal has gone the server holds no connection, user or room.
 *
 * The seed fixes the driver's script: it waits, at steps the seed chooses,
 * for logins and byes to complete, so what it sees does not depend on
 * timing. The interleaving of socket events in the event loop is the
 * runtime's, so a replay is the same script, usually the same interleaving.
 */
import { join } from "node:path";
import type { Socket } from "bun";
import { fromBase64, toHex } from "../../src/bytes.ts";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT, type Member } from "../../src/server/chat.ts";
import type { JournalEvent, Receipt } from "../../src/store/journal.ts";
import type { ChatServer } from "../../src/server/server.ts";
import { silentLogger } from "../../src/log.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { type TestServer, cleartextFrame, freshPath, startServer } from "../server/helpers.ts";
import { rng } from "../rng.ts";

// ---------------------------------------------------------------------------
// Seeds

/** SECURECHAT_FUZZ_SEED, if set: the seed to replay. */
export function envSeed(): number | null {
  const s = process.env.SECURECHAT_FUZZ_SEED;
  if (s === undefined || s === "") return null;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`SECURECHAT_FUZZ_SEED must be an integer, got ${JSON.stringify(s)}`);
  return n >>> 0;
}


// ---------------------------------------------------------------------------
// Failures

export class InteractionFailure extends Error {
  override readonly name = "InteractionFailure";
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new InteractionFailure(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

// ---------------------------------------------------------------------------
// Terminals: raw protocol clients (ticket login) that keep every message

export interface Cred {
  user: string;
  ticket: Uint8Array;
  ticketKey: Ed25519KeyPair;
}

/** An account and a ticket put straight into the server's store: no argon2id, so a run starts in milliseconds. */
export async function provision(server: ChatServer, user: string): Promise<Cred> {
  const identity = ed25519Generate();
  const ticketKey = ed25519Generate();
  const now = Date.now();
  if (!server.store.createAccount({ name: user, identityKey: identity.publicKey, verifier: "(none: this account logs in with a ticket only)", createdAt: now })) {
    throw new Error(`test: account ${user} exists`);
  }
  const { ticket } = await server.accounts.issueTicket(user, ticketKey.publicKey, now, identity.publicKey, "127.0.0.1");
  return { user, ticket, ticketKey };
}

/** How a terminal ended: it said bye, sent FIN, reset; or the server dropped it. */
type CloseMode = "bye" | "fin" | "reset" | "dropped";

/** Plaintext bytes per record the terminals send (the limit is MAX_FRAME − 16). */
const RECORD_BUDGET = 60_000;
type Obj = Record<string, unknown>;

/**
 * What the model says a terminal must receive. `group`: these may come in
 * any order among themselves. `floating`: at its place or later (an ack
 * that waits for the transcript). `req`: the index of the terminal's
 * request this answers.
 */
interface Expected {
  msg: Obj;
  group?: number;
  floating?: boolean;
  req?: number;
}

/** What a terminal sent as say or dm, by id, for the black-box checks. */
interface Sent {
  kind: "say" | "dm";
  room?: string;
  to?: string;
  text: string;
  action: boolean;
}

export class Terminal {
  state: "connecting" | "ready" | "closing" | "closed" = "connecting";
  closeMode: CloseMode | null = null;
  /** Every message received after `welcome`, in order. */
  readonly received: Message[] = [];
  readonly expected: Expected[] = [];
  /** Chat requests sent (a request of `handle`), and how many the server has handled. */
  sent = 0;
  handled = 0;
  /** The model saw the server connect and disconnect it. */
  connected = false;
  disconnected = false;
  readonly says = new Map<number, Sent>();
  /** Rooms this terminal believes it is in (from what it sent): biases the driver, nothing more. */
  readonly believed = new Set<string>();
  batch: Message[] = [];
  nextId = 1;
  error: string | null = null;
  socketClosed = false;
  paused = false;
  /** Paused at some point: the server may drop it as a slow consumer. */
  wasPaused = false;
  resumeAt = 0;
  /**
   * The step from which the driver may use this terminal (logged in), or
   * reuse its slot (said bye): it waits for that at that step, so what the
   * driver sees, and so the script, depends on the seed alone.
   */
  usableAt = 0;
  freeAt = 0;
  login: Promise<void> | null = null;
  #decoder = new FrameDecoder(MAX_FRAME);
  #socket: Socket<undefined> | null = null;
  #channel: SecureChannel | null = null;
  #hs = new ClientHandshake();
  #welcomed = false;
  #out: Uint8Array[] = [];
  #finAfterDrain = false;
  /** Retries a stalled write even if no `drain` comes (as PausableSession does in ./helpers.ts). */
  #retry: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly label: string,
    readonly user: string,
  ) {}

  /** Connects and logs in with the ticket; `onKeys` learns the session id before the login is sent. */
  async open(port: number, c: Cred, onKeys: (sessionHex: string) => void, timeoutMs = 10_000): Promise<void> {
    const cleartext: Uint8Array[] = [];
    this.#socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, chunk) => {
          try {
            for (const body of this.#decoder.push(chunk)) {
              if (!this.#channel) cleartext.push(body);
              else this.#record(body);
            }
          } catch (e) {
            this.error ??= `receive: ${String(e)}`;
          }
        },
        drain: () => this.#drain(),
        close: () => this.#gone(),
        end: (s) => {
          s.end();
          this.#gone();
        },
        error: () => this.#gone(),
        connectError: () => this.#gone(),
      },
    });
    this.#write(cleartextFrame(this.#hs.hello()));
    await until(`${this.label}: server_hello`, () => cleartext.length > 0 || this.socketClosed, timeoutMs);
    if (cleartext.length === 0) throw new InteractionFailure(`${this.label}: closed before server_hello`);
    const keys = this.#hs.receive(decodeMessage(cleartext.shift()!));
    onKeys(toHex(keys.sessionId));
    this.#channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
    this.#write(this.#channel.seal([{ type: "login", user: c.user, sig: signClientAuth(c.ticketKey.secretKey, keys), ticket: c.ticket }]));
    await until(`${this.label}: welcome`, () => this.#welcomed || this.error !== null || this.socketClosed, timeoutMs);
    if (!this.#welcomed) throw new InteractionFailure(`${this.label}: login failed: ${this.error ?? "closed"}`);
    this.#channel.sealer.maxFrame = MAX_FRAME;
    this.state = "ready";
  }

  #record(body: Uint8Array): void {
    const msgs = this.#channel!.open(body);
    if (!this.#welcomed) {
      const [first, ...rest] = msgs;
      if (first?.type !== "welcome") throw new InteractionFailure(`${this.label}: expected welcome, got ${JSON.stringify(first)}`);
      this.#welcomed = true;
      this.received.push(...rest);
      return;
    }
    this.received.push(...msgs);
  }

  #gone(): void {
    this.socketClosed = true;
    this.#out = [];
    this.#stopRetry();
    if (this.state === "ready" || this.state === "connecting") {
      this.state = "closed";
      this.closeMode = "dropped";
    }
  }

  /** Stops reading: what the server sends piles up in the kernel, then in the server's queue. */
  pause(): void {
    this.paused = true;
    this.wasPaused = true;
    this.#socket?.pause();
  }

  resume(): void {
    this.paused = false;
    this.#socket?.resume();
  }

  /** Writes everything, keeping what the kernel did not take until `drain`. */
  #write(bytes: Uint8Array): void {
    if (this.socketClosed) return;
    if (this.#out.length > 0) {
      this.#out.push(bytes);
      return;
    }
    const n = this.#socket!.write(bytes);
    if (n < bytes.length) {
      this.#out.push(bytes.subarray(Math.max(0, n)));
      this.#retry ??= setInterval(() => this.#drain(), 20);
    }
  }

  #drain(): void {
    if (this.socketClosed) return this.#stopRetry();
    while (this.#out.length > 0) {
      const head = this.#out[0]!;
      const n = this.#socket!.write(head);
      if (n < head.length) {
        this.#out[0] = head.subarray(Math.max(0, n));
        return;
      }
      this.#out.shift();
    }
    this.#stopRetry();
    if (this.#finAfterDrain) this.#socket!.end();
  }

  #stopRetry(): void {
    if (this.#retry) clearInterval(this.#retry);
    this.#retry = null;
  }

  /** Sends the batch and then `extra`: in one record, or as few as hold them. */
  flush(...extra: Message[]): void {
    const msgs = [...this.batch, ...extra];
    this.batch = [];
    let part: Message[] = [];
    let size = 0;
    for (const m of msgs) {
      const n = Buffer.byteLength(encodeMessage(m)) + 1;
      if (part.length > 0 && size + n > RECORD_BUDGET) {
        this.#write(this.#channel!.seal(part));
        part = [];
        size = 0;
      }
      part.push(m);
      size += n;
    }
    if (part.length > 0) this.#write(this.#channel!.seal(part));
  }

  /** A chat request: batched (sent with later ones in one record) or sent now. */
  request(m: Message, batch: boolean): void {
    this.sent++;
    this.batch.push(m);
    if (!batch) this.flush();
  }

  bye(): void {
    this.state = "closing";
    this.closeMode = "bye";
    this.flush({ type: "bye", reason: "fuzz" });
  }

  fin(): void {
    this.flush();
    this.state = "closed";
    this.closeMode = "fin";
    if (this.#out.length > 0) this.#finAfterDrain = true;
    else this.#socket?.end();
  }

  reset(): void {
    this.flush();
    this.state = "closed";
    this.closeMode = "reset";
    this.#stopRetry();
    this.#socket?.terminate();
  }

  /** Bytes written to this terminal's socket that the kernel has not taken yet. */
  get unsent(): number {
    return this.#out.reduce((a, b) => a + b.length, 0);
  }

  /** For cleanup only. */
  destroy(): void {
    this.#stopRetry();
    this.#socket?.terminate();
  }
}

// ---------------------------------------------------------------------------
// The model: PROTOCOL.md §7.3, in the order the server processed things

type RoomMessage = { type: "message"; room: string; seq: number; from: string; text: string; action?: true };

class Model {
  readonly conns = new Map<Terminal, string[]>();
  readonly online = new Map<string, Terminal[]>();
  /** `owner`: the user whose join created the room (PROTOCOL.md §7.9). */
  readonly rooms = new Map<string, { members: Terminal[]; users: Map<string, number>; owner: string }>();
  readonly seqs = new Map<string, number>();
  readonly past = new Map<string, RoomMessage[]>();
  dmSeq = 0;
  /** The DMs sent to users while they were offline. */
  readonly stored: { type: string; seq: number; from: string; to: string; text: string }[] = [];
  #group = 0;
  /** What the run exercised, as the server processed it. */
  readonly stats = {
    roomMessages: 0,
    directs: 0,
    directsToSelf: 0,
    nacks: 0,
    notices: 0,
    joins: 0,
    /** Joins by a user already in the room through another terminal (not announced). */
    secondTerminalJoins: 0,
    /** Joins of a room the terminal was in already (the answer again). */
    repeatedJoins: 0,
    leaves: 0,
    /** `joined` and `left` events sent to others (presence). */
    presenceEvents: 0,
    roomsEnded: 0,
    disconnects: 0,
    /** Live room messages delivered to terminals (model count). */
    deliveries: 0,
  };

  constructor(
    readonly historyLimit: number,
    /** Acks wait for the transcript: they float. */
    readonly transcript: boolean,
  ) {}

  /** Queues an answer to `t`'s current request. */
  #answer(t: Terminal, msg: Obj, floating = false): void {
    t.expected.push({ msg, req: t.handled, ...(floating ? { floating } : {}) });
  }

  connect(t: Terminal): void {
    for (const msg of this.stored) if (msg.to === t.user) t.expected.push({ msg: { ...msg, late: true } });
    this.conns.set(t, []);
    const on = this.online.get(t.user) ?? [];
    on.push(t);
    this.online.set(t.user, on);
    t.connected = true;
  }

  disconnect(t: Terminal): void {
    const rooms = this.conns.get(t);
    if (!rooms) return;
    const group = ++this.#group;
    for (const r of [...rooms]) this.#leave(t, r, false, group);
    this.conns.delete(t);
    const on = this.online.get(t.user)!.filter((x) => x !== t);
    if (on.length > 0) this.online.set(t.user, on);
    else this.online.delete(t.user);
    if (t.closeMode === "bye") t.expected.push({ msg: { type: "bye", reason: "goodbye" } });
    this.stats.disconnects++;
    t.disconnected = true;
  }

  handle(t: Terminal, req: Message): void {
    const rooms = this.conns.get(t);
    if (!rooms) throw new InteractionFailure(`model: ${t.label} sent ${req.type} while not connected`);
    switch (req.type) {
      case "join": {
        let room = this.rooms.get(req.room);
        if (room?.members.includes(t)) {
          this.stats.repeatedJoins++;
          return this.#welcome(t, req.room);
        }
        if (!room) this.rooms.set(req.room, (room = { members: [], users: new Map(), owner: t.user }));
        const count = room.users.get(t.user) ?? 0;
        if (count === 0) {
          for (const o of room.members) o.expected.push({ msg: { type: "joined", room: req.room, user: t.user } });
          this.stats.presenceEvents += room.members.length;
        } else this.stats.secondTerminalJoins++;
        room.users.set(t.user, count + 1);
        room.members.push(t);
        rooms.push(req.room);
        this.stats.joins++;
        return this.#welcome(t, req.room);
      }
      case "leave":
        if (!rooms.includes(req.room)) return this.#notice(t, "not_member");
        this.stats.leaves++;
        return this.#leave(t, req.room, true);
      case "say": {
        if (!rooms.includes(req.room)) return this.#nack(t, req.id, "not_member");
        const seq = (this.seqs.get(req.room) ?? 0) + 1;
        this.seqs.set(req.room, seq);
        const msg: RoomMessage = { type: "message", room: req.room, seq, from: t.user, text: req.text, ...(req.action ? { action: true as const } : {}) };
        const past = this.past.get(req.room) ?? [];
        past.push(msg);
        if (past.length > this.historyLimit) past.shift();
        this.past.set(req.room, past);
        for (const o of this.rooms.get(req.room)!.members) {
          if (o === t) continue;
          o.expected.push({ msg });
          this.stats.deliveries++;
        }
        this.stats.roomMessages++;
        return this.#answer(t, { type: "ack", id: req.id, seq });
      }
      case "dm": {
        if (req.to === GHOST_USER) return this.#nack(t, req.id, "no_such_user");
        const to = this.online.get(req.to);
        const seq = ++this.dmSeq;
        const msg = { type: "direct", seq, from: t.user, to: req.to, text: req.text, ...(req.action ? { action: true } : {}) };
        // kept for the recipient: shown late to each of its later logins (its terminals are one device that
        // never sends `read`: every DM to it since, stored while it was offline or delivered live)
        this.stored.push(msg);
        for (const o of new Set([...(to ?? []), ...(this.online.get(t.user) ?? [])])) if (o !== t) o.expected.push({ msg });
        this.stats.directs++;
        if (req.to === t.user) this.stats.directsToSelf++;
        return this.#answer(t, { type: "ack", id: req.id, seq, ...(to ? {} : { stored: true }) });
      }
      case "who":
        return this.#answer(t, { type: "members", room: req.room, users: this.#users(req.room) });
      case "rooms": {
        const list = [...this.rooms.entries()].map(([name, r]) => ({ name, users: r.users.size })).sort((a, b) => (a.name < b.name ? -1 : 1));
        return this.#answer(t, { type: "room_list", rooms: list });
      }
      case "history":
        if (req.room === undefined) throw new InteractionFailure("model: the terminals ask only for a room's history");
        if (!rooms.includes(req.room)) return this.#notice(t, "not_member");
        return this.#history(t, req.room, Math.min(req.limit, this.historyLimit));
      default:
        throw new InteractionFailure(`model: ${req.type} is not a chat request`);
    }
  }

  #users(room: string): string[] {
    return [...(this.rooms.get(room)?.users.keys() ?? [])].sort();
  }

  /**
   * Read markers (PROTOCOL.md §7.14), per user and room: a user's terminals log in with one key, so they are
   * one device; the terminals never send `read`, so a marker stays where the user's first join put it.
   */
  readonly markers = new Map<string, number>();

  #welcome(t: Terminal, room: string): void {
    const seq = this.seqs.get(room) ?? 0;
    const mark = this.markers.get(`${t.user}/${room}`);
    const unread = mark === undefined ? 0 : seq - mark;
    // `read_at` is a time, compared as `ts` is (not at all): the model gives 0.
    this.#answer(t, { type: "room", room, users: this.#users(room), seq, owner: this.rooms.get(room)!.owner, ...(unread > 0 ? { unread, read_at: 0 } : {}) });
    this.#history(t, room, this.historyLimit, mark);
    this.#notice(t, "recorded");
    if (mark === undefined) this.markers.set(`${t.user}/${room}`, seq);
  }

  #history(t: Terminal, room: string, limit: number, after = 0): void {
    const past = limit > 0 ? (this.past.get(room) ?? []).slice(-limit).filter((m) => m.seq > after) : [];
    for (const m of past) this.#answer(t, { ...m, history: true });
    this.#answer(t, { type: "history_end", room, count: past.length });
  }

  #notice(t: Terminal, code: string): void {
    this.stats.notices++;
    this.#answer(t, { type: "notice", code });
  }

  #nack(t: Terminal, id: number, code: string): void {
    this.stats.nacks++;
    this.#answer(t, { type: "nack", id, code });
  }

  #leave(t: Terminal, name: string, tell: boolean, group?: number): void {
    const room = this.rooms.get(name)!;
    room.members = room.members.filter((x) => x !== t);
    const rooms = this.conns.get(t)!;
    rooms.splice(rooms.indexOf(name), 1);
    const count = room.users.get(t.user)! - 1;
    if (count > 0) room.users.set(t.user, count);
    else {
      room.users.delete(t.user);
      for (const o of room.members) o.expected.push({ msg: { type: "left", room: name, user: t.user }, ...(group ? { group } : {}) });
      this.stats.presenceEvents += room.members.length;
    }
    if (tell) this.#answer(t, { type: "left", room: name, user: t.user });
    // The user left (not a terminal closing): its markers for the room are forgotten.
    if (tell && count === 0) this.markers.delete(`${t.user}/${name}`);
    if (room.members.length === 0) {
      this.rooms.delete(name);
      this.stats.roomsEnded++;
    }
  }
}

// ---------------------------------------------------------------------------
// The probe: the order the server processed things in, and its queues

/** What the probe reads of a server connection (edge.ts's Connection: a session's edge; its Outbox, outbox.ts), if it is there. */
interface ProbedConnection {
  outbox?: { messages?: unknown; flush?: unknown };
  framed?: { queued?: unknown };
}

export interface QueueFigures {
  /** Most messages in one connection's outbox at a flush. */
  maxOutboxMessages: number;
  /** Most UTF-16 code units of JSON in one outbox at a flush. */
  maxOutboxChars: number;
  /** Most bytes a connection's socket had not taken, right after a flush. */
  maxSocketQueued: number;
  flushes: number;
}

/**
 * Wraps, on this server instance only, `chat.connect`, `chat.handle`,
 * `chat.disconnect` and `journal.append`; each wrapper tells the model and
 * then calls the original. A connection is matched to its terminal by the
 * journal's `session_open` event, which the server appends right after
 * `chat.connect`, with the session id the terminal derived too.
 */
function installProbe(server: ChatServer, model: Model, bySession: Map<string, Terminal>, queues: QueueFigures, problems: string[]): void {
  const chat = server.chat;
  const journal = server.journal;
  const terminals = new WeakMap<Member, Terminal>();
  let connecting: Member | null = null;
  const connect = chat.connect.bind(chat);
  const handle = chat.handle.bind(chat);
  const disconnect = chat.disconnect.bind(chat);
  const append = journal.append.bind(journal);
  const guard = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      problems.push(`probe: ${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  chat.connect = (m: Member): void => {
    connect(m);
    guard("connect", () => {
      if (connecting) throw new Error(`${connecting.user} connected without a session_open in the journal`);
      connecting = m;
    });
  };
  journal.append = (e: JournalEvent): Receipt => {
    if (e.kind === "session_open") {
      guard("session_open", () => {
        const m = connecting;
        connecting = null;
        if (!m || m.user !== e.user) throw new Error(`session_open of ${e.user} without a chat.connect just before`);
        const t = bySession.get(toHex(fromBase64(e.session)));
        if (!t) throw new Error(`a connection of ${e.user} that no terminal opened`);
        terminals.set(m, t);
        model.connect(t);
        measureFlushes((m as Member & { edge?: ProbedConnection }).edge ?? (m as ProbedConnection), t, queues, problems);
      });
    }
    return append(e);
  };
  chat.handle = (m, req): void => {
    guard("handle", () => {
      const t = terminals.get(m);
      if (!t) throw new Error(`a ${req.type} from a connection the probe did not see log in`);
      t.handled++;
      if (!("run" in req)) model.handle(t, req);
    });
    handle(m, req);
  };
  chat.disconnect = (m: Member): void => {
    guard("disconnect", () => {
      const t = terminals.get(m);
      if (t && model.conns.has(t)) model.disconnect(t);
    });
    disconnect(m);
  };
}

/** Wraps one connection's flush to measure its outbox before and its socket queue after. */
function measureFlushes(c: ProbedConnection, t: Terminal, queues: QueueFigures, problems: string[]): void {
  const box = c.outbox;
  if (typeof box?.flush !== "function" || !Array.isArray(box.messages) || typeof c.framed?.queued !== "number") {
    throw new Error("the server's connection no longer has outbox.messages, outbox.flush and framed.queued: update the queue probe");
  }
  const flush = (box.flush as (...args: unknown[]) => void).bind(box);
  box.flush = (...args: unknown[]): void => {
    const outbox = box.messages as string[];
    queues.flushes++;
    queues.maxOutboxMessages = Math.max(queues.maxOutboxMessages, outbox.length);
    let chars = 0;
    for (const j of outbox) chars += j.length;
    queues.maxOutboxChars = Math.max(queues.maxOutboxChars, chars);
    const before = c.framed!.queued as number;
    try {
      flush(...args);
    } catch (e) {
      // Recorded (the run fails on it, naming the seed), then rethrown to the server's own
      // handling. Found by this fuzz and by a bench run: a connection whose first write of a
      // several-record flush failed (its peer had reset) had its channel closed, the next
      // seal threw, and the exception escaped the server's flush turn (fixed in df56620).
      problems.push(
        `server: flushing ${t.label}'s ${outbox.length} messages (${chars} chars; socket queue ${before} B before; terminal ${t.state}` +
          `${t.closeMode ? `/${t.closeMode}` : ""}${t.paused ? ", paused" : ""}) threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
      );
      throw e;
    }
    queues.maxSocketQueued = Math.max(queues.maxSocketQueued, c.framed!.queued as number);
  };
}

// ---------------------------------------------------------------------------
// Checking

/** A message as compared: without `ts` (and a `room`'s `read_at`, a time too), the human-readable text of notices and nacks, and an ack's transcript commitment. */
function canon(m: Obj): string {
  const o: Obj = { ...m };
  delete o.ts;
  if (o.type === "room" && o.read_at !== undefined) o.read_at = 0;
  if (o.type === "notice") delete o.text;
  if (o.type === "nack") delete o.message;
  if (o.type === "ack") {
    delete o.tseq;
    delete o.head;
  }
  return JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
}

interface Comparison {
  /** The first mismatch, described, or null. */
  mismatch: string | null;
  /** Floating acks (transcript mode) never received. */
  missingAcks: number;
  /** Answers received after an answer to a later request of the same terminal (PROTOCOL.md §7.4 rule 2). */
  answersOutOfOrder: number;
  /** The first such, described. */
  firstOutOfOrder: string | null;
}

/**
 * Matches what `t` received against what the model expects: equal, or (a
 * terminal that closed its socket) a prefix. Floating items (an ack that
 * waits for the transcript) may arrive at or after their place; `complete`
 * still requires them, except that `missingAcks` counts those a `bye`
 * overtook (reported, not a mismatch, when `lostAcksOk`).
 */
function compare(t: Terminal, complete: boolean, lostAcksOk: boolean): Comparison {
  const got = t.received.map((m) => canon(m as unknown as Obj));
  const exp = t.expected.map((e) => ({ c: canon(e.msg), group: e.group, floating: e.floating === true, req: e.req }));
  const out: Comparison = { mismatch: null, missingAcks: 0, answersOutOfOrder: 0, firstOutOfOrder: null };
  const floating: { c: string; req?: number }[] = [];
  let maxReq = -1;
  const answered = (req: number | undefined, j: number): void => {
    if (req === undefined) return;
    if (req < maxReq) {
      out.answersOutOfOrder++;
      out.firstOutOfOrder ??= `message ${j}: ${got[j]} answers request ${req} but came after the answer to request ${maxReq}`;
    }
    maxReq = Math.max(maxReq, req);
  };
  const takeFloating = (j: number): boolean => {
    const k = floating.findIndex((f) => f.c === got[j]);
    if (k < 0) return false;
    answered(floating[k]!.req, j);
    floating.splice(k, 1);
    return true;
  };
  let i = 0;
  let j = 0;
  const passFloating = (): void => {
    while (i < exp.length && exp[i]!.floating) floating.push(exp[i++]!);
  };
  const show = (k: number): string => (k < exp.length ? exp[k]!.c : "(nothing)");
  while (j < got.length && out.mismatch === null) {
    passFloating();
    if (takeFloating(j)) {
      j++;
      continue;
    }
    if (i >= exp.length) {
      out.mismatch = `message ${j}: got ${got[j]} where nothing more was expected`;
      break;
    }
    const g = exp[i]!.group;
    if (g === undefined) {
      if (got[j] !== exp[i]!.c) out.mismatch = `message ${j}: got ${got[j]}, expected ${show(i)}`;
      else answered(exp[i]!.req, j);
      i++;
      j++;
      continue;
    }
    // The lefts of one disconnect, in any order (floating acks may come among them).
    let end = i;
    while (end < exp.length && exp[end]!.group === g) end++;
    const pool = exp.slice(i, end).map((e) => e.c);
    i = end;
    for (; j < got.length && pool.length > 0; j++) {
      if (takeFloating(j)) continue;
      const k = pool.indexOf(got[j]!);
      if (k < 0) {
        out.mismatch = `message ${j}: got ${got[j]}, expected one of ${JSON.stringify(pool)} (the lefts of one disconnect, any order)`;
        break;
      }
      pool.splice(k, 1);
    }
    if (pool.length > 0 && complete && out.mismatch === null) out.mismatch = `received ${got.length} messages; missing ${JSON.stringify(pool)}`;
  }
  if (out.mismatch === null && complete) {
    passFloating();
    if (i < exp.length) {
      out.mismatch = `received ${got.length} messages; missing from message ${j} on: expected ${show(i)}${exp.length - i > 1 ? ` and ${exp.length - i - 1} more` : ""}`;
    } else if (floating.length > 0) {
      out.missingAcks = floating.length;
      if (!lostAcksOk) out.mismatch = `received ${got.length} messages; never got ${floating.map((f) => f.c).join(", ")}`;
    }
  }
  return out;
}

/**
 * Checks that need no model: every copy of a message agrees with the others
 * and with the sender's ack; each membership window (from a `room` answer to
 * the terminal's own `left`) has live messages in increasing seq order, and
 * its live seqs with its acks' seqs (an ack belongs to the window its seq
 * falls in) are s+1, s+2, … with no gap or repeat; history is the room's
 * last messages up to s.
 */
function blackBox(terminals: readonly Terminal[], historyLimit: number, transcript: boolean): string[] {
  const problems: string[] = [];
  const roomCopies = new Map<string, string>();
  const dmCopies = new Map<number, string>();
  const dmTimes = new Map<number, string>();
  const agree = (map: Map<string | number, string>, key: string | number, value: string, where: string): void => {
    const prev = map.get(key);
    if (prev === undefined) map.set(key, value);
    else if (prev !== value) problems.push(`${where}: ${JSON.stringify(key)} is ${value} here but ${prev} elsewhere`);
  };
  for (const t of terminals) {
    interface Window {
      s: number;
      open: boolean;
      seqs: number[];
      lastLive: number;
    }
    const windows = new Map<string, Window[]>();
    const current = (room: string): Window | undefined => {
      const w = windows.get(room)?.at(-1);
      return w?.open ? w : undefined;
    };
    let lastRoom: Message<"room"> | null = null;
    let historySeqs: number[] = [];
    let lastAckId = 0;
    for (const [n, m] of t.received.entries()) {
      const where = `${t.label} message ${n}`;
      switch (m.type) {
        case "room": {
          const w = current(m.room);
          if (!w) {
            const list = windows.get(m.room) ?? [];
            const prev = list.at(-1);
            if (prev && m.seq < prev.s) problems.push(`${where}: ${m.room} joined again at seq ${m.seq}, below the earlier join's ${prev.s}`);
            list.push({ s: m.seq, open: true, seqs: [], lastLive: m.seq });
            windows.set(m.room, list);
          } else if (m.seq < w.lastLive) problems.push(`${where}: repeated room answer for ${m.room} says seq ${m.seq}, but #${w.lastLive} came already`);
          lastRoom = m;
          historySeqs = [];
          break;
        }
        case "message": {
          agree(roomCopies, `${m.room}#${m.seq}`, JSON.stringify([m.from, m.text, m.action === true, m.ts]), where);
          if (m.history) {
            historySeqs.push(m.seq);
            break;
          }
          const w = current(m.room);
          if (!w) problems.push(`${where}: live message ${m.room}#${m.seq} while not a member of ${m.room}`);
          else {
            if (m.seq <= w.lastLive) problems.push(`${where}: live ${m.room}#${m.seq} after #${w.lastLive}`);
            w.lastLive = m.seq;
            w.seqs.push(m.seq);
          }
          break;
        }
        case "history_end":
          if (lastRoom?.room === m.room && historySeqs.length !== m.count) problems.push(`${where}: history_end count ${m.count} after ${historySeqs.length} history messages`);
          if (m.count > historyLimit) problems.push(`${where}: ${m.count} history messages, more than the ${historyLimit} configured`);
          if (lastRoom !== null && lastRoom.room === m.room && historySeqs.length > 0) {
            const want = historySeqs.map((_, k) => lastRoom!.seq - historySeqs.length + 1 + k);
            if (JSON.stringify(historySeqs) !== JSON.stringify(want)) problems.push(`${where}: history of ${m.room} at join is ${historySeqs.join(",")}, not the last messages up to #${lastRoom.seq}`);
          }
          lastRoom = null;
          historySeqs = [];
          break;
        case "left": {
          const w = m.user === t.user ? current(m.room) : undefined;
          if (w) w.open = false;
          break;
        }
        case "direct":
          // a late copy's ts is its transcript entry's (what a restart reads back), which may be a ms after the live one's
          agree(dmCopies, m.seq, JSON.stringify([m.from, m.to, m.text, m.action === true]), where);
          if (!m.late) agree(dmTimes, m.seq, String(m.ts), where);
          break;
        case "ack": {
          const s = t.says.get(m.id);
          if (!s) {
            problems.push(`${where}: ack for id ${m.id}, which was never sent`);
            break;
          }
          if (m.id <= lastAckId) problems.push(`${where}: ack ${m.id} after ack ${lastAckId}: acks out of request order`);
          lastAckId = m.id;
          if (transcript && (m.tseq === undefined || m.head === undefined)) problems.push(`${where}: an ack without tseq and head from a server that keeps a transcript`);
          if (s.kind === "say") {
            agree(roomCopies, `${s.room}#${m.seq}`, JSON.stringify([t.user, s.text, s.action, m.ts]), where);
            const w = (windows.get(s.room!) ?? []).filter((x) => x.s < m.seq).at(-1);
            if (!w) problems.push(`${where}: ack ${s.room}#${m.seq} of a say in no membership window`);
            else w.seqs.push(m.seq);
          } else {
            agree(dmCopies, m.seq, JSON.stringify([t.user, s.to, s.text, s.action]), where);
            agree(dmTimes, m.seq, String(m.ts), where);
          }
          break;
        }
        case "notice":
          if (m.code === "slow_down" || m.code === "flood") problems.push(`${where}: ${m.code}: flood control held or dropped requests, which this fuzz keeps out of reach`);
          break;
        case "error":
          if (m.code === "slow_consumer" && t.wasPaused && n === t.received.length - 1) break;
          problems.push(`${where}: the server ended the connection with ${m.code}: ${m.message}`);
          break;
        default:
          break;
      }
    }
    for (const [room, list] of windows) {
      for (const w of list) {
        const sorted = [...w.seqs].sort((a, b) => a - b);
        const bad = sorted.findIndex((x, k) => x !== w.s + 1 + k);
        // With a transcript an ack may never come (a bye or a close overtook it): a gap there is one of the terminal's own says.
        const unacked = [...t.says.entries()].filter(([id, x]) => x.kind === "say" && x.room === room && !t.received.some((m) => m.type === "ack" && m.id === id)).length;
        const gaps = sorted.length === 0 ? 0 : sorted.at(-1)! - w.s - sorted.length;
        const repeats = new Set(sorted).size !== sorted.length;
        if (transcript && !repeats && gaps <= unacked) continue;
        if (bad >= 0) problems.push(`${t.label}: in ${room} from seq ${w.s}, live and acked seqs are ${sorted.join(",")}: a gap or a repeat at #${w.s + 1 + bad}`);
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------
// The run

export interface InteractionOptions {
  seed: number;
  /** Driver steps (default 300). */
  steps?: number;
  users?: number;
  terminalsPerUser?: number;
  rooms?: number;
  /** serve --history (default 4: small, so the ring wraps). */
  history?: number;
  /**
   * The journal: "memory" (the in-memory journal: acks at once), or the
   * transcript on disk with this --fsync policy, as `securechat serve`
   * always runs (acks wait until the entry is durable).
   */
  journal?: "memory" | "batch" | "always" | "off";
  /** serve --max-send-buffer (default the server's, 1 MiB). */
  maxSendBuffer?: number;
}

export interface InteractionReport {
  seed: number;
  steps: number;
  ms: number;
  /** Driver actions by kind. */
  actions: Record<string, number>;
  terminals: number;
  /** Terminals that stopped reading and were dropped as slow consumers. */
  dropped: number;
  journal: NonNullable<InteractionOptions["journal"]>;
  /**
   * Departures from PROTOCOL.md, which fail the run: answers that came
   * after the answer to a later request (§7.4 rule 2), and acks a `bye`
   * overtook for good (§7.7: the bye follows the answers to earlier
   * requests). Counted for the report; always zero in a passing run.
   */
  findings: { answersOutOfOrder: number; acksLostAtBye: number; examples: string[] };
  /** Messages the terminals received in all, and what the server processed. */
  received: number;
  model: Model["stats"];
  queues: QueueFigures;
  maxSendBuffer: number;
}

const ROOM_NAMES = ["lobby", "dev", "ops", "random", "music"];
/** Sometimes a room nobody is in, and a user nobody is. */
const GHOST_ROOM = "ghost";
const GHOST_USER = "nobody";
const CHARS = [..."abcdefghijklmnopqrstuvwxyz     0123456789.,!?éüßжλ中文🙂🎉"];

function text(r: ReturnType<typeof rng>, tag: string, bytes?: number): string {
  const budget = Math.min(4096, Buffer.byteLength(tag) + (bytes ?? (r.chance(0.08) ? 1000 + r.int(3000) : 1 + r.int(60))));
  const parts = [tag];
  let size = Buffer.byteLength(tag);
  for (;;) {
    const ch = r.pick(CHARS);
    const n = Buffer.byteLength(ch);
    if (size + n > budget) break;
    parts.push(ch);
    size += n;
  }
  return parts.join("");
}

/**
 * The in-process server of a run: flood control and random early drop out
 * of reach, the given journal (the transcript as `serve` sets it up, or in
 * memory) and history setting.
 */
export async function startFuzzServer(journalMode: NonNullable<InteractionOptions["journal"]>, history: number, maxSendBuffer?: number): Promise<TestServer> {
  const dataDir = freshPath("interaction-data");
  const journal =
    journalMode === "memory"
      ? undefined
      : TranscriptJournal.open({
          ...DEFAULT_WRITER,
          dir: join(dataDir, "transcript"),
          hostKey: loadOrCreateHostKey(dataDir).key,
          fsync: journalMode,
          version: "interaction-fuzz",
          log: silentLogger,
          history,
        });
  try {
    return await startServer({
      dataDir,
      ...(journal ? { journal } : {}),
      chat: { ...DEFAULT_CHAT, history, flood: { rate: 1e9, burst: 1e9 }, requests: { rate: 1e9, burst: 1e9 } },
      startups: { start: 100_000, rate: 100, full: 100_000 },
      ...(maxSendBuffer ? { maxSendBuffer } : {}),
    });
  } catch (e) {
    journal?.close("failed to start");
    throw e;
  }
}

/** One seeded run. Resolves with a report, or rejects with an InteractionFailure naming the seed. */
export async function runInteraction(opts: InteractionOptions): Promise<InteractionReport> {
  const seed = opts.seed >>> 0;
  const steps = opts.steps ?? 300;
  const nUsers = opts.users ?? 5;
  const perUser = opts.terminalsPerUser ?? 3;
  const roomNames = ROOM_NAMES.slice(0, opts.rooms ?? 3);
  const historyLimit = opts.history ?? 4;
  const r = rng(seed);
  const t0 = performance.now();
  const trace: string[] = [];
  const problems: string[] = [];
  const terminals: Terminal[] = [];
  const actions: Record<string, number> = {};
  const queues: QueueFigures = { maxOutboxMessages: 0, maxOutboxChars: 0, maxSocketQueued: 0, flushes: 0 };
  const journalMode = opts.journal ?? "memory";
  const transcript = journalMode !== "memory";
  const model = new Model(historyLimit, transcript);
  const findings = { answersOutOfOrder: 0, acksLostAtBye: 0, examples: [] as string[] };
  const bySession = new Map<string, Terminal>();
  const pending = new Set<Promise<void>>();

  const ts = await startFuzzServer(journalMode, historyLimit, opts.maxSendBuffer);
  const maxSendBuffer = ts.server.opts.maxSendBuffer;
  const fail = (what: string): never => {
    const labels = [...what.matchAll(/\b(u\d+\.\d+#\d+)/g)].map((m) => m[1]!);
    const related = labels.length > 0 ? trace.filter((l) => labels.some((x) => l.includes(x)) || l.includes(" yield ")) : trace;
    throw new InteractionFailure(
      `interaction fuzz, seed ${seed}: ${what}\n` +
        `replay: SECURECHAT_FUZZ_SEED=${seed} bun test test/hardening/interaction.test.ts  (or: bun run fuzz --target interaction --seed ${seed})\n` +
        `trace (${labels.length > 0 ? `steps of ${[...new Set(labels)].join(", ")}` : "all steps"}, last 40):\n  ${related.slice(-40).join("\n  ")}`,
    );
  };

  try {
    installProbe(ts.server, model, bySession, queues, problems);
    const creds = await Promise.all(Array.from({ length: nUsers }, (_, k) => provision(ts.server, `u${k}`)));
    const users = creds.map((c) => c.user);
    const slots = creds.flatMap((c, u) => Array.from({ length: perUser }, (_, k) => ({ cred: c, name: `u${u}.${k}`, gen: 0, term: null as Terminal | null })));
    const log = (step: number, t: Terminal | null, what: string): void => void trace.push(`#${step} ${t ? `${t.label} ` : ""}${what}`);

    const connect = (step: number, slot: (typeof slots)[number]): Promise<void> => {
      const t = new Terminal(`${slot.name}#${++slot.gen}`, slot.cred.user);
      slot.term = t;
      terminals.push(t);
      log(step, t, slot.gen > 1 ? "reconnect" : "connect");
      const p = t
        .open(ts.port, slot.cred, (hex) => bySession.set(hex, t))
        .catch((e: unknown) => void problems.push(`${t.label}: ${e instanceof Error ? e.message : String(e)}`))
        .finally(() => pending.delete(p));
      pending.add(p);
      t.login = p;
      return p;
    };
    /**
     * Waits for `cond`; a problem the probe reports fails the run at once,
     * and so does the timeout (described by `detail`, if given).
     */
    const wait = async (what: string, cond: () => boolean, detail?: (message: string) => string): Promise<void> => {
      try {
        await until(what, () => problems.length > 0 || cond(), 10_000);
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        fail(problems.length > 0 ? problems.join("\n") : detail ? detail(message) : message);
      }
      if (problems.length > 0) fail(problems.join("\n"));
    };
    const flushAll = (): void => {
      for (const t of terminals) if (t.state === "ready") t.flush();
    };

    for (let step = 0; step < steps; step++) {
      if (problems.length > 0) break;
      for (const x of terminals) {
        if (x.paused && step >= x.resumeAt) {
          log(step, x, "resume");
          x.resume();
        }
        if (x.state === "connecting" && step >= x.usableAt) await x.login;
        if (x.state === "closing" && step >= x.freeAt) {
          // A terminal that stopped reading would not see the server's bye and FIN.
          if (x.paused) x.resume();
          await wait(`${x.label}: the server's bye and close`, () => x.socketClosed);
        }
      }
      const ready = slots.filter((s) => s.term?.state === "ready" && step >= s.term.usableAt).map((s) => s.term!);
      const free = slots.filter((s) => s.term === null || s.term.state === "closed" || (s.term.state === "closing" && step >= s.term.freeAt));
      const weights: [string, number][] = [
        ["connect", free.length === 0 ? 0 : ready.length < 8 ? 12 : 1],
        ["close", ready.length > 2 ? 1 : 0],
        ["join", ready.length ? 3 : 0],
        ["leave", ready.length ? 1.5 : 0],
        ["say", ready.length ? 9 : 0],
        ["burst", ready.length ? 0.3 : 0],
        ["dm", ready.length ? 3 : 0],
        ["who", ready.length ? 0.6 : 0],
        ["rooms", ready.length ? 0.4 : 0],
        ["history", ready.length ? 0.6 : 0],
        ["pause", ready.length ? 0.5 : 0],
        ["yield", 3],
      ];
      let x = r.next() * weights.reduce((a, [, w]) => a + w, 0);
      const action = weights.find(([, w]) => (x -= w) < 0)?.[0] ?? "yield";
      actions[action] = (actions[action] ?? 0) + 1;
      // Say, leave and history mostly from terminals that are in a room.
      // Join mostly from terminals in few rooms.
      const inRooms = ready.filter((x) => x.believed.size > 0);
      const fewRooms = ready.filter((x) => x.believed.size < 3);
      const pool = action === "join" ? fewRooms : action === "say" || action === "burst" || action === "leave" || action === "history" ? inRooms : ready;
      const t = ready.length === 0 ? null : pool.length > 0 && r.chance(0.85) ? r.pick(pool) : r.pick(ready);
      const batch = r.chance(0.3);
      switch (action) {
        case "connect": {
          const p = connect(step, r.pick(free));
          // Logged in before the next step, or a few steps later (others go on meanwhile).
          const later = r.chance(0.5) ? 0 : r.int(4);
          slots.find((x) => x.term?.login === p)!.term!.usableAt = step + 1 + later;
          if (later === 0) await p;
          break;
        }
        case "close": {
          const mode: CloseMode = r.pick(["bye", "bye", "fin", "reset"] as const);
          log(step, t, mode);
          actions[`close:${mode}`] = (actions[`close:${mode}`] ?? 0) + 1;
          if (mode === "bye") {
            t!.bye();
            t!.freeAt = step + 1 + r.int(4);
          }
          else if (mode === "fin") t!.fin();
          else t!.reset();
          break;
        }
        case "join": {
          const room = r.pick(roomNames);
          log(step, t, `join ${room}`);
          t!.believed.add(room);
          t!.request({ type: "join", room }, batch);
          break;
        }
        case "leave": {
          const mine = [...t!.believed];
          const room = mine.length > 0 && r.chance(0.85) ? r.pick(mine) : r.pick(roomNames);
          log(step, t, `leave ${room}`);
          t!.believed.delete(room);
          t!.request({ type: "leave", room }, batch);
          break;
        }
        case "say": {
          const mine = [...t!.believed];
          const room = mine.length > 0 && r.chance(0.9) ? r.pick(mine) : r.pick(roomNames);
          const id = t!.nextId++;
          const body = text(r, `${t!.label}:${id} `);
          const action = r.chance(0.1);
          t!.says.set(id, { kind: "say", room, text: body, action });
          log(step, t, `say ${room} id=${id} (${Buffer.byteLength(body)} B)`);
          t!.request({ type: "say", id, room, text: body, ...(action ? { action: true } : {}) }, batch);
          break;
        }
        case "burst": {
          // Many large says at once: the server's output to each member spans several records.
          const mine = [...t!.believed];
          const room = mine.length > 0 ? r.pick(mine) : r.pick(roomNames);
          const n = 10 + r.int(20);
          log(step, t, `burst of ${n} says in ${room}, ids ${t!.nextId}..${t!.nextId + n - 1}`);
          for (let k = 0; k < n; k++) {
            const id = t!.nextId++;
            const body = text(r, `${t!.label}:${id} `, 2000 + r.int(2000));
            t!.says.set(id, { kind: "say", room, text: body, action: false });
            t!.request({ type: "say", id, room, text: body }, true);
          }
          t!.flush();
          break;
        }
        case "pause": {
          if (t!.paused) break;
          t!.resumeAt = step + 5 + r.int(60);
          log(step, t, `pause until step ${t!.resumeAt}`);
          t!.pause();
          break;
        }
        case "dm": {
          const to = r.chance(0.1) ? GHOST_USER : r.pick(users);
          const id = t!.nextId++;
          const body = text(r, `${t!.label}:${id} `);
          const action = r.chance(0.1);
          t!.says.set(id, { kind: "dm", to, text: body, action });
          log(step, t, `dm ${to} id=${id}`);
          t!.request({ type: "dm", id, to, text: body, ...(action ? { action: true } : {}) }, batch);
          break;
        }
        case "who": {
          const room = r.chance(0.2) ? GHOST_ROOM : r.pick(roomNames);
          log(step, t, `who ${room}`);
          t!.request({ type: "who", room }, batch);
          break;
        }
        case "rooms":
          log(step, t, "rooms");
          t!.request({ type: "rooms" }, batch);
          break;
        case "history": {
          const room = r.pick(roomNames);
          const limit = 1 + r.int(historyLimit + 3);
          log(step, t, `history ${room} ${limit}`);
          t!.request({ type: "history", room, limit }, batch);
          break;
        }
        case "yield": {
          flushAll();
          const how = r.int(10);
          if (how < 5) {
            log(step, null, "yield a turn");
            await turn();
          } else if (how < 8) {
            const ms = r.int(3);
            log(step, null, `yield ${ms} ms`);
            await sleep(ms);
          }
          else if (ready.length > 0) {
            // Settle one terminal: every request it sent has been handled.
            const s = r.pick(ready);
            log(step, s, "settle");
            await wait(`${s.label} to be answered`, () => s.handled >= s.sent || s.socketClosed);
          }
          break;
        }
      }
    }

    // Quiesce: every terminal reading and logged in, every request handled, every close seen by the server.
    for (const x of terminals) if (x.paused) x.resume();
    flushAll();
    if (problems.length > 0) fail(problems.join("\n"));
    await wait("the logins in flight", () => pending.size === 0);
    flushAll();
    const quiet = (): boolean =>
      terminals.every((t) =>
        t.state === "ready" ? t.handled >= t.sent : t.state === "closing" ? t.disconnected && t.socketClosed : t.disconnected,
      );
    await wait("every request handled and every close seen by the server", quiet, (message) => {
      const stuck = terminals.filter((t) => (t.state === "ready" ? t.handled < t.sent : !t.disconnected));
      return `${message}: ${stuck.map((t) => `${t.label} (${t.state}${t.closeMode ? `/${t.closeMode}` : ""}, handled ${t.handled}/${t.sent}, disconnected ${t.disconnected})`).join(", ")}`;
    });
    const open = terminals.filter((t) => t.state === "ready");
    await wait(
      "every live terminal to receive what the model expects",
      () => open.every((t) => t.received.length >= t.expected.length),
      (message) => `${message}: ${open.filter((t) => t.received.length < t.expected.length).map((t) => `${t.label} ${t.received.length}/${t.expected.length}: ${compare(t, true, false).mismatch}`).join("; ")}`,
    );
    const stats = ts.server.chat.stats;
    const want = { users: model.online.size, connections: model.conns.size, rooms: model.rooms.size };
    if (JSON.stringify(stats) !== JSON.stringify(want)) fail(`at quiescence the chat core counts ${JSON.stringify(stats)}, the model ${JSON.stringify(want)}`);

    // Everyone says bye; then everything each terminal received must be exactly what the model expects.
    for (const t of open) t.bye();
    await wait(
      "every terminal's bye answered and closed",
      () => open.every((t) => t.disconnected && t.socketClosed),
      (message) => `${message}: ${open.filter((t) => !t.socketClosed).map((t) => t.label).join(", ")}`,
    );
    await wait("the server to forget every connection", () => ts.server.connections === 0, (message) => `${message} (${ts.server.connections} left)`);
    const end = ts.server.chat.stats;
    if (end.users !== 0 || end.connections !== 0 || end.rooms !== 0) fail(`after everyone left the chat core still counts ${JSON.stringify(end)}`);

    if (problems.length > 0) fail(problems.join("\n"));
    let dropped = 0;
    for (const t of terminals) {
      if (t.error) fail(`${t.label}: ${t.error}`);
      if (t.closeMode === "dropped") {
        // Only a terminal that stopped reading may be dropped, only as a slow consumer, told so last.
        const last = t.received.at(-1);
        if (!t.wasPaused || last?.type !== "error" || last.code !== "slow_consumer") {
          fail(`${t.label} was closed by the server${t.wasPaused ? "" : " though it never stopped reading"}; last message ${JSON.stringify(last)}`);
        }
        t.received.pop();
        dropped++;
      }
      const c = compare(t, t.closeMode === "bye", false);
      if (c.mismatch) fail(`${t.label} (closed by ${t.closeMode}): ${c.mismatch}`);
      findings.acksLostAtBye += c.missingAcks;
      findings.answersOutOfOrder += c.answersOutOfOrder;
      if (c.firstOutOfOrder) findings.examples.push(`${t.label} ${c.firstOutOfOrder}`);
      if (c.missingAcks > 0) findings.examples.push(`${t.label} said bye with ${c.missingAcks} ack(s) outstanding; the server's bye came and they never did`);
    }
    // Every answer comes in request order (PROTOCOL.md §7.4 rule 2) and none is lost, with a transcript too:
    // an ack waiting for the disk holds back what follows it (the fuzz found both broken before).
    if (findings.answersOutOfOrder > 0 || findings.acksLostAtBye > 0) fail(`answers out of request order: ${findings.examples.join("; ")}`);
    const bb = blackBox(terminals, historyLimit, transcript);
    if (bb.length > 0) fail(bb.slice(0, 10).join("\n"));
    // Framed's hard bound: past this the server cuts a connection without a word.
    const hard = maxSendBuffer + 4 * MAX_FRAME;
    if (queues.maxSocketQueued > hard) fail(`a connection's socket queue reached ${queues.maxSocketQueued} bytes, over ${hard}`);
    const slow = ts.events.filter((e) => e.event === "slow_consumer");
    if (slow.length !== dropped) fail(`server logged ${slow.length} slow_consumer, ${dropped} terminals were dropped`);
    const bad = ts.events.filter((e) => e.event === "internal_error" || e.event === "protocol_error");
    if (bad.length > 0) fail(`server logged ${JSON.stringify(bad.slice(0, 3))}`);

    return {
      seed,
      steps,
      ms: Math.round(performance.now() - t0),
      actions,
      terminals: terminals.length,
      dropped,
      received: terminals.reduce((a, t) => a + t.received.length, 0),
      model: model.stats,
      queues,
      maxSendBuffer,
      journal: journalMode,
      findings: { ...findings, examples: findings.examples.slice(0, 3) },
    };
  } finally {
    for (const t of terminals) t.destroy();
    await ts.server.stop(500);
  }
}

/** One line about a run, for logs. */
export function summary(r: InteractionReport): string {
  const a = r.actions;
  const m = r.model;
  return (
    `seed ${r.seed} (${r.journal} journal): ${r.steps} steps in ${r.ms} ms; ${r.terminals} terminals ` +
    `(closed: ${a["close:bye"] ?? 0} bye, ${a["close:fin"] ?? 0} FIN, ${a["close:reset"] ?? 0} reset; ${r.dropped} dropped as slow); ` +
    `${m.joins} joins (${m.secondTerminalJoins} second-terminal, ${m.repeatedJoins} repeated), ${m.leaves} leaves, ${m.roomsEnded} rooms ended; ` +
    `${m.roomMessages} room messages → ${m.deliveries} live deliveries, ${m.directs} directs (${m.directsToSelf} to self), ${m.nacks} nacks, ${m.presenceEvents} presence events; ` +
    `${r.received} messages received in all; queues: outbox ≤ ${r.queues.maxOutboxMessages} messages / ${r.queues.maxOutboxChars} chars, ` +
    `socket queue ≤ ${r.queues.maxSocketQueued} B (max-send-buffer ${r.maxSendBuffer})`
  );
}
