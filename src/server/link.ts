/**
 * The link between the edge of a connection and the chat core (docs/CLUSTER.md
 * §1, §5). The edge holds the socket, the handshake, the channel, the output
 * queue and every secret of a login; the core holds the session as the chat
 * sees it (`Session`, core.ts) and answers its requests. What crosses is a
 * small set of messages, each plain JSON: a protocol message travels as its
 * JSON text, bytes as base64 or hex, and nothing that crosses is a secret (no
 * password, no ticket in clear, no session key, no identity secret: tickets
 * go as their SHA-256, as the store keeps them).
 *
 * In one process the two halves call each other directly (`CorePort`,
 * `SessionPort`, `EdgePort`: one method per message, no copies). Across
 * processes each call becomes one `EdgeToCore` or `CoreToEdge` message:
 * `edgeProxy`/`sessionProxy` turn calls into messages and `deliverToEdge`/
 * `deliverToSession` turn messages back into calls; `SerializingLink` joins
 * them with a JSON round trip in between, in one process.
 */
import { type Message, encodeMessage, validateMessage } from "../protocol/messages.ts";
import { isChatRequest } from "./chat.ts";
import type { WireError } from "./wire.ts";

/** What the core knows of a session, sent once when it opens. */
export interface SessionFacts {
  user: string;
  /** The session id in base64, as the transcript records it. */
  session: string;
  /** The session's id as `sessions` shows it: the session id's first 6 bytes in hex. */
  ref: string;
  /** The device it logged in from: its public key, base64. */
  device: string;
  /** SHA-256 (hex) of the ticket the session stands on (a logout revokes it), if any. */
  ticket: string | null;
  /** SHA-256 (hex) of the ticket it logged in with, when it was then issued another. */
  loginTicket: string | null;
  /** When the session ends (--session-max, or its login ticket's expiry). */
  expiresAt: number;
  /** How it logged in. */
  method: "register" | "ticket" | "password";
  source: string;
  /** When it logged in. */
  since: number;
}

/** What the core asks of the edge of one session (core → edge). */
export interface EdgePort {
  /** Queue one pre-encoded message. */
  post(json: string): void;
  /** Take the next place in the output for the message `slot` (an ack waiting for the transcript): what follows waits behind it. */
  hold(slot: number): void;
  /** The message of `slot` exists: it and whatever is no longer waiting behind it goes out. */
  fill(slot: number, json: string): void;
  /** Answer `bye` after everything queued, then close (the session has left the chat). */
  goodbye(reason: string): void;
  /** The server ended the session (revoked, locked, …): tell the peer why and close, even if it does not read. */
  end(err: WireError): void;
  /** A request of the session broke a rule (or failed inside): tell the peer and close. */
  closeWith(err: WireError): void;
  /** Its `change_password` number `ref` has its turn (the edge holds the new password). */
  changePassword(ref: number): void;
  /** The change is recorded (`ok`): store the verifier; or it could not be (the peer was told). */
  passwordRecorded(ok: boolean): void;
}

/** What the edge tells the core about one session (edge → core). */
export interface SessionPort {
  /** A request of the session (isCoreRequest), in the order the peer sent them. */
  request(m: Message): void;
  /** A `change_password`, numbered by the edge, which keeps the password: it waits its turn as a request does. */
  changePassword(ref: number): void;
  /** The new password is hashed: record the change (or refuse it) and say so (EdgePort.passwordRecorded). */
  passwordHashed(endSessions: boolean): void;
  /** The new verifier is stored: revoke the other tickets and end the other sessions if asked, and answer. */
  passwordSet(endSessions: boolean): void;
  /** The connection's output passed (true) or fell back under (false) the point where its requests wait. */
  flow(congested: boolean): void;
  /** The output drained: held requests may be answered. */
  drained(): void;
  /** The connection is no longer a session (closing or closed). */
  closed(): void;
}

/** The edge's way to the core. */
export interface CorePort {
  /** A login succeeded: the session joins the chat (and is recorded). */
  open(facts: SessionFacts, edge: EdgePort): SessionPort;
  /** A login failed on wrong credentials: recorded (TRANSCRIPT.md `login_failed`). */
  loginFailed(source: string, reason: "ticket" | "password", ts: number): void;
  /** False while the core cannot be reached (a cluster's edge between two cores): logins are answered `server_busy`. Absent: always true. */
  available?(): boolean;
}

/** Requests after login that are not chat requests and go to the core (change_password stays on the edge: it carries a password). */
const SESSION_REQUESTS = new Set(["session_list", "revoke_session", "admin", "device_list", "device_approve", "device_revoke", "log_proof", "logout", "bye"]);

/**
 * True if `m` is a request the core answers. Nothing else a logged-in peer
 * sends crosses the link: a `register`, `login` or `enroll` after login
 * (a password or ticket) is refused on the edge.
 */
export function isCoreRequest(m: Message): boolean {
  return isChatRequest(m) || SESSION_REQUESTS.has(m.type);
}

/** The messages from the edge to the core; `id` names the session on this link. */
export type EdgeToCore =
  | { kind: "open"; id: number; facts: SessionFacts }
  | { kind: "login_failed"; source: string; reason: "ticket" | "password"; ts: number }
  | { kind: "request"; id: number; message: string }
  | { kind: "change_password"; id: number; ref: number }
  | { kind: "password_hashed"; id: number; end_sessions: boolean }
  | { kind: "password_set"; id: number; end_sessions: boolean }
  | { kind: "flow"; id: number; congested: boolean }
  | { kind: "drained"; id: number }
  | { kind: "closed"; id: number };

/** The messages from the core to the edge of session `id`. */
export type CoreToEdge =
  | { kind: "post"; id: number; json: string }
  | { kind: "hold"; id: number; slot: number }
  | { kind: "fill"; id: number; slot: number; json: string }
  | { kind: "goodbye"; id: number; reason: string }
  | { kind: "end"; id: number; error: WireError }
  | { kind: "close"; id: number; error: WireError }
  | { kind: "change_password"; id: number; ref: number }
  | { kind: "password_recorded"; id: number; ok: boolean };

/** An EdgePort whose every call is sent as a message. */
export function edgeProxy(id: number, send: (m: CoreToEdge) => void): EdgePort {
  return {
    post: (json) => send({ kind: "post", id, json }),
    hold: (slot) => send({ kind: "hold", id, slot }),
    fill: (slot, json) => send({ kind: "fill", id, slot, json }),
    goodbye: (reason) => send({ kind: "goodbye", id, reason }),
    end: (error) => send({ kind: "end", id, error }),
    closeWith: (error) => send({ kind: "close", id, error }),
    changePassword: (ref) => send({ kind: "change_password", id, ref }),
    passwordRecorded: (ok) => send({ kind: "password_recorded", id, ok }),
  };
}

/** A SessionPort whose every call is sent as a message. */
export function sessionProxy(id: number, send: (m: EdgeToCore) => void): SessionPort {
  return {
    request: (m) => send({ kind: "request", id, message: encodeMessage(m) }),
    changePassword: (ref) => send({ kind: "change_password", id, ref }),
    passwordHashed: (end) => send({ kind: "password_hashed", id, end_sessions: end }),
    passwordSet: (end) => send({ kind: "password_set", id, end_sessions: end }),
    flow: (congested) => send({ kind: "flow", id, congested }),
    drained: () => send({ kind: "drained", id }),
    closed: () => send({ kind: "closed", id }),
  };
}

/** Makes the call a CoreToEdge message stands for. */
export function deliverToEdge(m: CoreToEdge, edge: EdgePort): void {
  switch (m.kind) {
    case "post":
      return edge.post(m.json);
    case "hold":
      return edge.hold(m.slot);
    case "fill":
      return edge.fill(m.slot, m.json);
    case "goodbye":
      return edge.goodbye(m.reason);
    case "end":
      return edge.end(m.error);
    case "close":
      return edge.closeWith(m.error);
    case "change_password":
      return edge.changePassword(m.ref);
    case "password_recorded":
      return edge.passwordRecorded(m.ok);
  }
}

/** Makes the call a per-session EdgeToCore message stands for (`open` and `login_failed` go to the CorePort). */
export function deliverToSession(m: Exclude<EdgeToCore, { kind: "open" | "login_failed" }>, session: SessionPort): void {
  switch (m.kind) {
    case "request":
      // Checked on the edge already; checked again, as anything read from outside the process.
      return session.request(validateMessage(JSON.parse(m.message)));
    case "change_password":
      return session.changePassword(m.ref);
    case "password_hashed":
      return session.passwordHashed(m.end_sessions);
    case "password_set":
      return session.passwordSet(m.end_sessions);
    case "flow":
      return session.flow(m.congested);
    case "drained":
      return session.drained();
    case "closed":
      return session.closed();
  }
}

/**
 * A link that sends every message as JSON text and reads it back before
 * delivering it, in one process: what a link across processes carries,
 * with `carry` seeing every text (tests record them).
 */
export class SerializingLink implements CorePort {
  #next = 0;

  constructor(
    readonly core: CorePort,
    readonly carry: (direction: "to_core" | "to_edge", text: string) => void = () => {},
  ) {}

  #roundTrip<T>(direction: "to_core" | "to_edge", m: T): T {
    const text = JSON.stringify(m);
    this.carry(direction, text);
    return JSON.parse(text) as T;
  }

  open(facts: SessionFacts, edge: EdgePort): SessionPort {
    const id = ++this.#next;
    const opened = this.#roundTrip("to_core", { kind: "open", id, facts } satisfies EdgeToCore);
    const toEdge = edgeProxy(id, (m) => deliverToEdge(this.#roundTrip("to_edge", m), edge));
    const session = this.core.open(opened.facts, toEdge);
    return sessionProxy(id, (m) => deliverToSession(this.#roundTrip("to_core", m) as Exclude<EdgeToCore, { kind: "open" | "login_failed" }>, session));
  }

  loginFailed(source: string, reason: "ticket" | "password", ts: number): void {
    const m = this.#roundTrip("to_core", { kind: "login_failed", source, reason, ts } satisfies EdgeToCore);
    this.core.loginFailed(m.source, m.reason, m.ts);
  }
}
