/**
 * The edge/core split (server.ts, edge.ts, core.ts, link.ts): a scripted
 * run of every kind of request — register, password and ticket logins,
 * chat, direct messages, sessions, device enrollment and approval, a
 * password change that ends the other sessions, administration, logout —
 * once through a link that sends every message between the halves as JSON
 * and reads it back (what a link across processes carries), recorded, and
 * once through the in-process link. No secret used in the run appears in
 * the recording, as text, hex or base64; and every user saw the same
 * thing either way.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { toBase64, toHex } from "../../src/bytes.ts";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { signEnrollment } from "../../src/protocol/devices.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { loadOrCreateHostKey } from "../../src/server/hostkey.ts";
import { type CorePort, type EdgePort, type SessionPort, SerializingLink } from "../../src/server/link.ts";
import { TranscriptJournal } from "../../src/transcript/journal.ts";
import { DEFAULT_WRITER } from "../../src/transcript/writer.ts";
import { type RawSession, type TestServer, freshPath, passwordLogin, rawSession, startServer, ticketLogin, untilMessage } from "./helpers.ts";

/** A key pair from a fixed seed: the same device ids in both runs. */
function key(n: number): Ed25519KeyPair {
  return ed25519Generate(new Uint8Array(32).fill(n));
}

const ALICE = key(1);
const BOB = key(2);
const ALICE_LAPTOP = key(3);
const TICKET_KEY = key(4);
const LAPTOP_TICKET_KEY = key(5);
const PASSWORDS = { alice: "correct horse battery staple 1", bob: "tr0ub4dor & three", aliceNew: "a whole new passphrase here" };

/** What one run saw: each terminal's messages, in order; and every secret it used. */
interface Run {
  seen: Record<string, Message[]>;
  secrets: Uint8Array[];
}

const servers: TestServer[] = [];
afterAll(async () => {
  for (const t of servers) await t.server.stop();
});

/** A server with a transcript (so acks wait for it: places held in the edge's output, filled by the core). */
async function serve(dataDir: string, link: ((core: CorePort) => CorePort) | undefined, admins: string[] = []): Promise<TestServer> {
  const hostKey = loadOrCreateHostKey(dataDir).key;
  const journal = TranscriptJournal.open({ ...DEFAULT_WRITER, dir: join(dataDir, "transcript"), hostKey, version: "test", log: silentLogger, history: 50 });
  const t = await startServer({ dataDir, journal, chat: { ...DEFAULT_CHAT, admins: new Set(admins) }, ...(link ? { link } : {}) });
  servers.push(t);
  return t;
}

async function run(link?: (core: CorePort) => CorePort): Promise<Run> {
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
  let t = await serve(dataDir, link);
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
  t = await serve(dataDir, link, ["alice"]);

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
function canon(seen: Record<string, Message[]>): Record<string, unknown[]> {
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
function forms(secret: Uint8Array): string[] {
  const b64 = toBase64(secret);
  const url = b64.replaceAll("+", "-").replaceAll("/", "_");
  return [new TextDecoder().decode(secret), toHex(secret), b64, b64.replace(/=+$/, ""), url.replace(/=+$/, "")];
}

describe("the edge and the core joined by a link that serializes every message", () => {
  const recorded: string[] = [];
  let serialized: Run;
  let direct: Run;

  test("the run completes through the serializing link, and the link carried every kind of message", async () => {
    serialized = await run((core) => new SerializingLink(core, (_direction, text) => void recorded.push(text)));
    const kinds = new Set(recorded.map((r) => (JSON.parse(r) as { kind: string }).kind));
    // (flow and close need a congested or misbehaving session: the round trip of every kind is the next describe's.)
    for (const k of ["open", "request", "change_password", "password_hashed", "password_set", "password_recorded", "drained", "post", "hold", "fill", "goodbye", "end", "closed"]) {
      expect(kinds).toContain(k);
    }
  }, 60_000);

  test("no password, ticket, session key or identity secret crosses the link, in any encoding", () => {
    expect(serialized.secrets.length).toBeGreaterThan(10);
    const all = recorded.join("\n");
    const found = serialized.secrets.flatMap((s) => forms(s).filter((f) => f.length >= 8 && all.includes(f)));
    expect(found).toEqual([]);
    // The check can see one: the public identity key does cross (the device the session stands on).
    expect(forms(ALICE.publicKey).some((f) => all.includes(f))).toBe(true);
  });

  test("every user saw exactly what the in-process link gives", async () => {
    direct = await run();
    expect(canon(serialized.seen)).toEqual(canon(direct.seen));
    expect(canon(direct.seen)["bob again"]?.at(-1)).toMatchObject({ type: "error", code: "message_unexpected" });
  }, 60_000);
});

describe("every link message survives its JSON round trip as the same call", () => {
  test("core to edge and edge to core, each kind", () => {
    const calls: unknown[][] = [];
    const rec =
      (name: string) =>
      (...args: unknown[]) =>
        void calls.push([name, ...args]);
    const edge: EdgePort = {
      post: rec("post"),
      hold: rec("hold"),
      fill: rec("fill"),
      goodbye: rec("goodbye"),
      end: rec("end"),
      closeWith: rec("closeWith"),
      changePassword: rec("changePassword"),
      passwordRecorded: rec("passwordRecorded"),
    };
    const session: SessionPort = {
      request: rec("request"),
      changePassword: rec("changePassword"),
      passwordHashed: rec("passwordHashed"),
      passwordSet: rec("passwordSet"),
      flow: rec("flow"),
      drained: rec("drained"),
      closed: rec("closed"),
    };
    let toEdge: EdgePort | null = null;
    const core: CorePort = {
      open: (facts, e) => {
        calls.push(["open", facts]);
        toEdge = e;
        return session;
      },
      loginFailed: rec("loginFailed"),
    };
    const texts: string[] = [];
    const link = new SerializingLink(core, (_d, text) => void texts.push(text));
    const facts = { user: "alice", session: "c2Vzc2lvbg==", ref: "0102030405ff", device: toBase64(ALICE.publicKey), ticket: "ab".repeat(32), loginTicket: null, expiresAt: 1234, method: "ticket" as const, source: "::1", since: 1000 };
    const toCore = link.open(facts, edge);
    link.loginFailed("10.0.0.1", "ticket", 5);
    const dm: Message = { type: "device_approve", key: ALICE_LAPTOP.publicKey, sig: new Uint8Array(64).fill(7) };
    toCore.request(dm);
    toCore.changePassword(3);
    toCore.passwordHashed(true);
    toCore.passwordSet(false);
    toCore.flow(true);
    toCore.drained();
    toCore.closed();
    const e = toEdge!;
    e.post('{"type":"pong"}');
    e.hold(9);
    e.fill(9, '{"type":"ack"}');
    e.goodbye("logged out");
    e.end({ code: "session_revoked", message: "ended" });
    e.closeWith({ code: "flood", message: "too much" });
    e.changePassword(3);
    e.passwordRecorded(false);
    expect(calls).toEqual([
      ["open", facts],
      ["loginFailed", "10.0.0.1", "ticket", 5],
      ["request", dm],
      ["changePassword", 3],
      ["passwordHashed", true],
      ["passwordSet", false],
      ["flow", true],
      ["drained"],
      ["closed"],
      ["post", '{"type":"pong"}'],
      ["hold", 9],
      ["fill", 9, '{"type":"ack"}'],
      ["goodbye", "logged out"],
      ["end", { code: "session_revoked", message: "ended" }],
      ["closeWith", { code: "flood", message: "too much" }],
      ["changePassword", 3],
      ["passwordRecorded", false],
    ]);
    // Each crossed as one JSON text.
    expect(texts.length).toBe(calls.length);
  });
});
