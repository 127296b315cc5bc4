/**
 * login() (src/server/login.ts) without a socket: each check of an attempt
 * and the session terms it yields, against a real account store.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes, sha256 } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { Accounts } from "../../src/server/accounts.ts";
import { Gate, LocalLoginLimits, PenaltyBox, RateLimiter } from "../../src/server/limits.ts";
import { DEFAULT_DEVICES, Devices } from "../../src/server/devices.ts";
import { type LoggedIn, type LoginAttempt, type LoginServer, login as loginOrPending } from "../../src/server/login.ts";
import { MemoryJournal } from "../../src/store/journal.ts";
import { Store } from "../../src/store/db.ts";
import { freshPath } from "./helpers.ts";

const PASSWORD = "a heron walks the long grey pier at dawn";
const HOUR = 3600_000;
const NOW = Date.UTC(2026, 11, 3, 12);
const IDENTITY = randomBytes(32);
const SIG = new Uint8Array(64);

let store: Store;
let accounts: Accounts;

beforeAll(() => {
  store = new Store(freshPath("login"));
  accounts = new Accounts(store, new Gate(2, 16), 8 * HOUR);
});
afterAll(() => store.close());

/** No attempt here is an `enroll`: each ends logged in, refused, or with the client gone. */
const login = (s: LoginServer, a: LoginAttempt) => loginOrPending(s, a) as Promise<LoggedIn | null>;

interface Fake extends LoginServer {
  recording: boolean;
  connections: number;
}

function server(over: { logins?: { rate: number; burst: number }; penalties?: PenaltyBox } = {}): Fake {
  const logins = over.logins ?? { rate: 1e9, burst: 1e9 };
  const s: Fake = {
    accounts,
    devices: new Devices(store, new MemoryJournal(10), DEFAULT_DEVICES),
    limits: new LocalLoginLimits(
      over.penalties ?? new PenaltyBox({ freeFailures: 1, baseMs: 60_000, maxMs: 60_000, forgetMs: 600_000, maxSources: 16 }),
      new RateLimiter(logins),
      new RateLimiter(logins),
      { connectionsOf: () => s.connections, maxConnectionsPerUser: 2 },
    ),
    recording: true,
    connections: 0,
    journal: { get recording() { return s.recording; } },
    opts: { sessionMaxMs: 24 * HOUR },
    log: silentLogger,
  };
  return s;
}

/** Signed by the account's identity key unless `signedBy` says otherwise. */
function attempt(message: Message<"register" | "login">, over: Partial<LoginAttempt> & { signedBy?: Uint8Array } = {}): LoginAttempt {
  const signer = over.signedBy ?? IDENTITY;
  return { message, checkKey: (key) => Buffer.from(key).equals(Buffer.from(signer)), sourceKey: "10.0.0.1", source: "10.0.0.1", holder: {}, now: NOW, stillThere: () => true, ...over };
}

const register = (user: string, ticketKey?: Uint8Array): Message<"register"> => ({ type: "register", user, identity_key: IDENTITY, sig: SIG, password: PASSWORD, ...(ticketKey ? { ticket_key: ticketKey } : {}) });
const byPassword = (user: string, password = PASSWORD): Message<"login"> => ({ type: "login", user, sig: SIG, password });

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code: string }).code;
  }
  throw new Error("expected a refusal");
}

describe("login(): an attempt's outcome", () => {
  test("register: the account is created; with a ticket key, the ticket issued is the session's, in the store as its hash only", async () => {
    const ticketKey = randomBytes(32);
    const ok = await login(server(), attempt(register("kestrel", ticketKey)));
    expect(ok).toMatchObject({ user: "kestrel", method: "register", loginTicket: null, expiresAt: NOW + 24 * HOUR });
    expect(ok!.issued).not.toBeNull();
    expect(ok!.ticket).toBe(ok!.issued!.ticket);
    expect(ok!.issued!.expiresAt).toBe(NOW + 8 * HOUR);
    expect(store.ticket(sha256(ok!.ticket!), NOW)).toMatchObject({ user: "kestrel", device: IDENTITY });
    expect(ok!.device).toEqual(IDENTITY);
    expect(await refusal(login(server(), attempt(register("kestrel"))))).toBe("name_taken");
  });

  test("password: right → a session with no ticket; wrong password or wrong key → auth_failed", async () => {
    const ok = await login(server(), attempt(byPassword("kestrel")));
    expect(ok).toEqual({ user: "kestrel", method: "password", ticket: null, loginTicket: null, issued: null, expiresAt: NOW + 24 * HOUR, device: IDENTITY });
    expect(await refusal(login(server(), attempt(byPassword("kestrel", `${PASSWORD}!`))))).toBe("auth_failed");
    expect(await refusal(login(server(), attempt(byPassword("kestrel"), { signedBy: randomBytes(32) })))).toBe("auth_failed");
    expect(await refusal(login(server(), attempt(byPassword("nobody"))))).toBe("auth_failed");
  });

  test("ticket: the session ends when the ticket does; asked for another, it stands on both", async () => {
    const ticketKey = randomBytes(32);
    const device = randomBytes(32);
    store.addDevice("kestrel", { key: device, name: "second", enrolledAt: NOW, enrolledBy: "password", revokedAt: null });
    const { ticket, expiresAt } = await accounts.issueTicket("kestrel", ticketKey, NOW, device, "10.0.0.9");
    const m: Message<"login"> = { type: "login", user: "kestrel", sig: SIG, ticket };
    const ok = await login(server(), attempt(m, { signedBy: ticketKey }));
    expect(ok).toEqual({ user: "kestrel", method: "ticket", ticket, loginTicket: null, issued: null, expiresAt, device });
    const again = await login(server(), attempt({ ...m, ticket_key: randomBytes(32) }, { signedBy: ticketKey }));
    expect(again!.loginTicket).toBe(ticket);
    // The ticket issued on a ticket login is the same device's, from where it was asked for.
    expect(store.ticket(sha256(again!.ticket!), NOW)?.device).toEqual(device);
    expect(store.ticketsOf("kestrel", NOW, 10).tickets.find((t) => t.device && Buffer.from(t.device).equals(Buffer.from(device)) && t.source === "10.0.0.1")).toBeDefined();
    expect(again!.ticket).toBe(again!.issued!.ticket);
    expect(await refusal(login(server(), attempt(m, { signedBy: IDENTITY })))).toBe("auth_failed");
    expect(await refusal(login(server(), attempt({ ...m, user: "other" }, { signedBy: ticketKey })))).toBe("auth_failed");
  });

  test("a ticket stored before tickets had devices stands for the account's identity key", async () => {
    const ticketKey = randomBytes(32);
    const ticket = randomBytes(32);
    store.addTicket(sha256(ticket), { user: "kestrel", key: ticketKey, expiresAt: NOW + HOUR }, NOW);
    const ok = await login(server(), attempt({ type: "login", user: "kestrel", sig: SIG, ticket }, { signedBy: ticketKey }));
    expect(ok!.device).toEqual(IDENTITY);
  });

  test("a penalized source is refused before its credentials are looked at, right ones included", async () => {
    const penalties = new PenaltyBox({ freeFailures: 1, baseMs: 60_000, maxMs: 60_000, forgetMs: 600_000, maxSources: 16 });
    penalties.failure("10.0.0.1", NOW);
    penalties.failure("10.0.0.1", NOW);
    expect(await refusal(login(server({ penalties }), attempt(byPassword("kestrel"))))).toBe("rate_limited");
    expect(await login(server({ penalties }), attempt(byPassword("kestrel"), { sourceKey: "10.0.0.2" }))).not.toBeNull();
  });

  test("per-source login rate: past the burst, refused; another source is not", async () => {
    const s = server({ logins: { rate: 1, burst: 1 } });
    expect(await login(s, attempt(byPassword("kestrel", "wrong password here"))).catch(() => "refused")).toBe("refused");
    expect(await refusal(login(s, attempt(byPassword("kestrel"))))).toBe("rate_limited");
    expect(await login(s, attempt(byPassword("kestrel"), { sourceKey: "10.0.0.2" }))).not.toBeNull();
  });

  test("no session is opened that cannot be recorded: not_recorded, and nothing registered", async () => {
    const s = server();
    s.recording = false;
    expect(await refusal(login(s, attempt(register("egret"))))).toBe("not_recorded");
    expect(store.account("egret")).toBeNull();
  });

  test("per-user limits come after the credentials: too many connections, too many logins", async () => {
    const s = server();
    s.connections = 2;
    const ticketKey = randomBytes(32);
    expect(await refusal(login(s, attempt({ ...byPassword("kestrel"), ticket_key: ticketKey })))).toBe("too_many_connections");
    // Wrong credentials are refused as such, not as the user's quota (nobody can use a name's quota without them).
    expect(await refusal(login(s, attempt(byPassword("kestrel", "not the password at all"))))).toBe("auth_failed");
    const limited = server({ logins: { rate: 1, burst: 1 } });
    expect(await login(limited, attempt(byPassword("kestrel")))).not.toBeNull();
    expect(await refusal(login(limited, attempt(byPassword("kestrel"), { sourceKey: "10.0.0.3" })))).toBe("rate_limited");
  });

  test("a client that left while it was checked gets no session and uses no per-user token", async () => {
    const s = server({ logins: { rate: 1, burst: 1 } });
    const gone = await login(s, attempt({ ...byPassword("kestrel"), ticket_key: randomBytes(32) }, { stillThere: () => false }));
    expect(gone).toBeNull();
    // The user's one login token is still there for the next attempt (from another source: the first took this one's).
    expect(await login(s, attempt(byPassword("kestrel"), { sourceKey: "10.0.0.4" }))).not.toBeNull();
  });
});
