/**
 * A scripted run of every kind of request through a server whose edges reach
 * its core by a given link — register, password and ticket logins, chat,
 * history, direct messages, sessions, device enrollment and approval, a
 * password change that ends the other sessions, administration, logout —
 * recording what each terminal saw and every secret used (split.test.ts,
 * redislink.test.ts). `canon` keeps what is the same in every run; `forms`
 * gives the encodings a secret would take on a link.
 */
import { expect } from "bun:test";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { toBase64, toHex } from "../../src/bytes.ts";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { signEnrollment } from "../../src/protocol/devices.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import type { CorePort } from "../../src/server/link.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { type RawSession, type TestServer, freshPath, passwordLogin, rawSession, startServer, ticketLogin, untilMessage } from "./helpers.ts";

/** A key pair from a fixed seed: the same device ids in both runs. */
function key(n: number): Ed25519KeyPair {
  return ed25519Generate(new Uint8Array(32).fill(n));
}

export const ALICE = key(1);
const BOB = key(2);
export const ALICE_LAPTOP = key(3);
const TICKET_KEY = key(4);
const LAPTOP_TICKET_KEY = key(5);
export const PASSWORDS = { alice: "correct horse battery staple 1", bob: "tr0ub4dor & three", aliceNew: "a whole new passphrase here" };

/** What one run saw: each terminal's messages, in order; and every secret it used. */
export interface Run {
  seen: Record<string, Message[]>;
  secrets: Uint8Array[];
}

/**
 * A server with a transcript (so acks wait for it: places held in the edge's
 * output, filled by the core), its edges joined to its core by `link`.
 */
export async function journaledServer(dataDir: string, link: ((core: CorePort) => CorePort) | undefined, admins: string[] = []): Promise<TestServer> {
  const hostKey = loadOrCreateHostKey(dataDir).key;
  const journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey, version: "test", log: silentLogger, history: 50 });
  return await startServer({ dataDir, journal, chat: { ...DEFAULT_CHAT, admins: new Set(admins) }, ...(link ? { link } : {}) });
}

/**
 * The scripted run: `serve` starts a server on `dataDir` (the caller stops it),
 * `admins` its administrators; it is called twice, the first server stopped
 * before the second starts.
 */
export async function runScenario(serve: (dataDir: string, admins: string[]) => Promise<TestServer>): Promise<Run> {
  const seen: Record<string, Message[]> = {};
  const secrets: Uint8Array[] = [ALICE.secretKey, BOB.secretKey, ALICE_LAPTOP.secretKey, TICKET_KEY.secretKey, LAPTOP_TICKET_KEY.secretKey];
  for (const p of Object.values(PASSWORDS)) secrets.push(new TextEncoder().encode(p));
  const sessions: RawSession[] = [];
  const open = async (): Promise<RawSession> => {
    const s = await rawSession(t.port);
    sessions.push(s);
    secrets.push(s.keys.c2s.slice(), s.keys.s2c.slice());
    return s;
  };
  const saw = (who: string, ...ms: Message[]) => (seen[who] ??= []).push(...ms);
  /** Sends `m` on `s` and records what comes back up to the first message `until` matches. */
  const ask = async (who: string, s: RawSession, m: Message | Message[], until: (m: Message) => boolean): Promise<Message> => {
    s.send(...(Array.isArray(m) ? m : [m]));
    const { match, seen: got } = await untilMessage(s, until);
    saw(who, ...got);
    if (!match) throw new Error(`test: ${who} never saw what it waited for; saw ${JSON.stringify(got)}`);
    return match;
  };
  const welcome = (who: string, o: { type: string; msg: Message }): Message<"welcome"> => {
    saw(who, o.msg);
    if (o.msg.type !== "welcome") throw new Error(`test: ${who} was not let in: ${JSON.stringify(o.msg)}`);
    if (o.msg.ticket) secrets.push(o.msg.ticket);
    return o.msg;
  };

  // Accounts first: an administrator must have one before the server starts with --admin.
  const dataDir = freshPath("split");
  let t = await serve(dataDir, []);
  for (const [user, identity, password] of [
    ["alice", ALICE, PASSWORDS.alice],
    ["bob", BOB, PASSWORDS.bob],
  ] as const) {
    const s = await open();
    s.send({ type: "register", user, identity_key: identity.publicKey, sig: s.sign(identity), password });
    welcome(`register ${user}`, { type: "", msg: await s.receive() });
    s.close();
  }
  await t.server.stop();
  t = await serve(dataDir, ["alice"]);

  const a1 = await open();
  const alice = welcome("alice", await passwordLogin(a1, "alice", PASSWORDS.alice, ALICE, TICKET_KEY.publicKey));
  const b1 = await open();
  welcome("bob", await passwordLogin(b1, "bob", PASSWORDS.bob, BOB));
  const a2 = await open();
  welcome("alice by ticket", await ticketLogin(a2, "alice", alice.ticket!, TICKET_KEY));

  await ask("alice", a1, { type: "join", room: "lobby" }, (m) => m.type === "history_end");
  await ask("bob", b1, { type: "join", room: "lobby" }, (m) => m.type === "history_end");
  await ask("alice", a1, { type: "say", id: 1, room: "lobby", text: "hello, bob" }, (m) => m.type === "ack");
  await ask("bob", b1, { type: "dm", id: 1, to: "alice", text: "hi alice" }, (m) => m.type === "ack");
  await ask("bob", b1, { type: "history", room: "lobby", limit: 10 }, (m) => m.type === "history_end");
  await ask("alice", a1, { type: "history", with: "bob", limit: 10 }, (m) => m.type === "history_end");
  await ask("alice", a1, { type: "session_list" }, (m) => m.type === "sessions");
  await ask("alice", a1, { type: "log_proof", from: 0 }, (m) => m.type === "notice" || m.type === "log_state");

  // A new device: its enrollment waits for alice's approval, then it is in.
  const laptop = await open();
  laptop.send({ type: "enroll", user: "alice", device_key: ALICE_LAPTOP.publicKey, sig: laptop.sign(ALICE_LAPTOP), password: PASSWORDS.alice, name: "laptop", ticket_key: LAPTOP_TICKET_KEY.publicKey });
  saw("laptop", await laptop.receive());
  await ask("alice", a1, { type: "device_approve", key: ALICE_LAPTOP.publicKey, sig: signEnrollment(ALICE.secretKey, "alice", ALICE_LAPTOP.publicKey) }, (m) => m.type === "device_added");
  welcome("laptop", { type: "", msg: await laptop.receive() });
  await ask("alice", a1, { type: "device_list" }, (m) => m.type === "devices");

  // A password sent after login is refused where it arrives, and the connection closed.
  const stray = await open();
  welcome("bob again", await passwordLogin(stray, "bob", PASSWORDS.bob, BOB));
  await ask("bob again", stray, { type: "register", user: "mallory", identity_key: BOB.publicKey, sig: new Uint8Array(64), password: PASSWORDS.bob }, (m) => m.type === "error");

  // The password changes and every other session of alice ends.
  await ask("alice", a1, { type: "change_password", new_password: PASSWORDS.aliceNew, end_sessions: true }, (m) => m.type === "password_changed");
  for (const [who, s] of [
    ["alice by ticket", a2],
    ["laptop", laptop],
  ] as const) {
    const { match, seen: got } = await untilMessage(s, (m) => m.type === "error");
    saw(who, ...got);
    expect(match).toMatchObject({ code: "session_revoked" });
  }

  // An administrator locks bob out, then lets him back.
  await ask("alice", a1, { type: "admin", action: "lock", user: "bob" }, (m) => m.type === "admin_done");
  const { seen: bobSaw } = await untilMessage(b1, (m) => m.type === "error");
  saw("bob", ...bobSaw);
  await ask("alice", a1, { type: "admin", action: "unlock", user: "bob" }, (m) => m.type === "admin_done");

  // A logout: the ticket it stands on is revoked, and the sessions on it end.
  const a3 = await open();
  const again = welcome("alice again", await passwordLogin(a3, "alice", PASSWORDS.aliceNew, ALICE, TICKET_KEY.publicKey));
  const a4 = await open();
  welcome("alice again by ticket", await ticketLogin(a4, "alice", again.ticket!, TICKET_KEY));
  await ask("alice again", a3, [{ type: "say", id: 2, room: "lobby", text: "bye all" }, { type: "logout" }], (m) => m.type === "bye");
  const { seen: ticketSaw } = await untilMessage(a4, (m) => m.type === "error");
  saw("alice again by ticket", ...ticketSaw);
  await ask("alice", a1, { type: "bye", reason: "done" }, (m) => m.type === "bye");
  for (const s of sessions) s.close();
  return { seen, secrets };
}

/** What is the same in both runs: no times, session ids, tickets or transcript commitments. */
export function canon(seen: Record<string, Message[]>): Record<string, unknown[]> {
  const drop = new Set(["ts", "session_id", "ticket", "ticket_expires", "expires", "since", "enrolled", "head", "tseq", "read_at"]);
  const strip = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return toHex(v);
    if (Array.isArray(v)) return v.map(strip);
    if (typeof v !== "object" || v === null) return v;
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!drop.has(k)) o[k] = strip(x);
    return o;
  };
  const out: Record<string, unknown[]> = {};
  for (const [who, ms] of Object.entries(seen)) {
    out[who] = ms.map((m) => {
      const c = strip(m) as Record<string, unknown>;
      // A live session's id is its random session id's first bytes; a ticket's, its random ticket's hash's.
      // A tree's root, signature and origin (the host key's) differ with every run; its size does not.
      if (m.type === "log_state") return { type: m.type, size: m.size };
      if (m.type === "sessions") for (const list of ["live", "tickets"]) c[list] = (c[list] as Record<string, unknown>[]).map(({ id: _, ...rest }) => rest);
      return c;
    });
  }
  return out;
}

/** The forms a secret would take in JSON: UTF-8 text, hex, base64 and base64url (unpadded too). */
export function forms(secret: Uint8Array): string[] {
  const b64 = toBase64(secret);
  const url = b64.replaceAll("+", "-").replaceAll("/", "_");
  return [new TextDecoder().decode(secret), toHex(secret), b64, b64.replace(/=+$/, ""), url.replace(/=+$/, "")];
}

