/**
 * Devices (PROTOCOL.md §7.11) over the raw protocol against an in-process
 * server: a new machine's key is enrolled with the password and, by default,
 * an enrolled device's signed approval; a revoked device's live sessions end
 * at once and it logs in no more; every enrollment and revocation is
 * recorded first, and refused when it cannot be; the caps hold.
 */
import { describe, expect, spyOn, test } from "bun:test";
import { type Ed25519KeyPair, ed25519Generate } from "../../src/crypto/index.ts";
import { deviceId } from "../../src/fingerprint.ts";
import { deviceCode, signEnrollment } from "../../src/protocol/devices.ts";
import { DEVICE_PENDING_MAX } from "../../src/protocol/limits.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { DEFAULT_DEVICES } from "../../src/server/devices.ts";
import { type Journal, type JournalEvent, MemoryJournal } from "../../src/store/journal.ts";
import { type RawSession, type RawUser, type TestServer, outcome, passwordLogin, rawSession, registerRaw, serversStoppedAfterAll, ticketLogin, untilMessage } from "./helpers.ts";

const NET = 30_000;
const PW = "devices test passphrase";
const server = serversStoppedAfterAll();

/** A journal whose recording can be switched off, keeping what was appended; `losing`: appends that never become durable (a write that fails). */
class Recorder extends MemoryJournal implements Journal {
  events: JournalEvent[] = [];
  on = true;
  losing = false;
  constructor(keep: number) {
    super(keep);
    Object.defineProperty(this, "recording", { get: () => this.on });
  }
  override append(e: JournalEvent) {
    this.events.push(e);
    const r = super.append(e);
    if (!this.losing) return r;
    const durable = Promise.reject(new Error("the transcript's write failed"));
    durable.catch(() => {});
    return { ...r, durable };
  }
}

async function start(devices: Partial<typeof DEFAULT_DEVICES> = {}): Promise<{ t: TestServer; journal: Recorder }> {
  const journal = new Recorder(50);
  const t = await server({ journal, devices: { ...DEFAULT_DEVICES, ...devices } });
  return { t, journal };
}

/** A logged-in session of `u`, by password, signed by `device` (the identity key unless given). */
async function session(t: TestServer, u: RawUser, device: Ed25519KeyPair = u.identity, ticketKey?: Uint8Array): Promise<RawSession> {
  const s = await rawSession(t.port);
  const o = await passwordLogin(s, u.user, u.password, device, ticketKey);
  expect(o.type).toBe("welcome");
  return s;
}

/** Sends `enroll` for a fresh key (or `key`) on a new connection: the connection, the key and the answer. */
async function enroll(t: TestServer, user: string, password: string, key = ed25519Generate(), name = "laptop b", ticketKey?: Uint8Array) {
  const s = await rawSession(t.port);
  s.send({ type: "enroll", user, device_key: key.publicKey, sig: s.sign(key), password, name, ...(ticketKey ? { ticket_key: ticketKey } : {}) });
  return { s, key, answer: outcome(await s.receive()) };
}

/** One request on a logged-in session and its answer (skipping slow_down). */
async function ask<T extends Message["type"]>(s: RawSession, req: Message, want: T): Promise<Message<T> | Message<"notice">> {
  s.send(req);
  const { match } = await untilMessage(s, (m) => m.type === want || (m.type === "notice" && m.code !== "slow_down"));
  return match as Message<T> | Message<"notice">;
}

describe("enrolling a new device by approval (the default)", () => {
  test("the new machine waits; an enrolled device sees its key, checks the code, signs; the new machine is let in and its key logs in from then on", async () => {
    const { t, journal } = await start();
    const alice = await registerRaw(t.port, "alice", PW);
    const laptop = ed25519Generate();
    const ticketKey = ed25519Generate();
    const b = await enroll(t, "alice", PW, laptop, "laptop b", ticketKey.publicKey);
    expect(b.answer.msg).toEqual({ type: "enroll_pending", expires: expect.any(Number) });

    // Before approval the new key logs in nowhere.
    const early = await rawSession(t.port);
    expect((await passwordLogin(early, "alice", PW, laptop)).code).toBe("auth_failed");
    early.close();

    const a = await session(t, alice);
    const list = (await ask(a, { type: "device_list" }, "devices")) as Message<"devices">;
    expect(list.devices).toEqual([{ id: deviceId(alice.identity.publicKey), key: alice.identity.publicKey, name: "", enrolled: expect.any(Number), by: "register", current: true }]);
    expect(list.pending).toEqual([{ key: laptop.publicKey, name: "laptop b", source: expect.any(String), since: expect.any(Number), expires: (b.answer.msg as Message<"enroll_pending">).expires }]);
    // The approving machine recomputes the code from the key it was given: it is the one the new machine shows.
    expect(deviceCode("alice", list.pending[0]!.key)).toBe(deviceCode("alice", laptop.publicKey));

    const added = await ask(a, { type: "device_approve", key: laptop.publicKey, sig: signEnrollment(alice.identity.secretKey, "alice", laptop.publicKey) }, "device_added");
    expect(added).toEqual({ type: "device_added", id: deviceId(laptop.publicKey) });
    // The waiting connection is now a session of the new device, with its ticket.
    const welcome = await b.s.receive();
    expect(welcome).toMatchObject({ type: "welcome", user: "alice", ticket: expect.any(Uint8Array) });
    b.s.send({ type: "session_list" });
    const sessions = (await untilMessage(b.s, (m) => m.type === "sessions")).match as Message<"sessions">;
    expect(sessions.live.find((l) => l.current)?.device).toBe(deviceId(laptop.publicKey));

    // The new key's password logins work, the old key's still do.
    (await session(t, alice, laptop)).close();
    (await session(t, alice)).close();

    // Recorded with who approved it, and the signature, before the session it let in.
    const enrolled = journal.events.find((e) => e.kind === "device_enrolled");
    expect(enrolled).toMatchObject({ user: "alice", device: deviceId(laptop.publicKey), name: "laptop b", by: deviceId(alice.identity.publicKey), sig: expect.any(String) });
    expect(journal.events.indexOf(enrolled!)).toBeLessThan(journal.events.findLastIndex((e) => e.kind === "session_open"));
    a.close();
    b.s.close();
  }, NET);

  test("an approval not signed by the session's device, or for a key nobody asked to enroll, is refused and adds nothing", async () => {
    const { t, journal } = await start();
    const bob = await registerRaw(t.port, "bob", PW);
    const b = await enroll(t, "bob", PW);
    const a = await session(t, bob);
    const stranger = ed25519Generate();
    const forged = await ask(a, { type: "device_approve", key: b.key.publicKey, sig: signEnrollment(stranger.secretKey, "bob", b.key.publicKey) }, "device_added");
    expect(forged).toMatchObject({ type: "notice", code: "bad_enrollment_signature" });
    // A signature over another user's statement does not do either.
    const otherUser = await ask(a, { type: "device_approve", key: b.key.publicKey, sig: signEnrollment(bob.identity.secretKey, "bobby", b.key.publicKey) }, "device_added");
    expect(otherUser).toMatchObject({ type: "notice", code: "bad_enrollment_signature" });
    const unknown = ed25519Generate();
    const nobody = await ask(a, { type: "device_approve", key: unknown.publicKey, sig: signEnrollment(bob.identity.secretKey, "bob", unknown.publicKey) }, "device_added");
    expect(nobody).toMatchObject({ type: "notice", code: "unknown_enrollment" });
    const list = (await ask(a, { type: "device_list" }, "devices")) as Message<"devices">;
    expect(list.devices.length).toBe(1);
    expect(journal.events.some((e) => e.kind === "device_enrolled")).toBe(false);
    a.close();
    b.s.close();
  }, NET);

  test("enroll is a password login's equal: a wrong password or unknown user is auth_failed with the one message, recorded as login_failed", async () => {
    const { t, journal } = await start();
    await registerRaw(t.port, "carol", PW);
    const wrong = await enroll(t, "carol", `${PW}!`);
    const unknown = await enroll(t, "nobody", PW);
    const login = await rawSession(t.port);
    const failedLogin = await passwordLogin(login, "carol", `${PW}!`, ed25519Generate());
    expect(wrong.answer).toMatchObject({ type: "error", code: "auth_failed", message: failedLogin.message });
    expect(unknown.answer).toMatchObject({ type: "error", code: "auth_failed", message: failedLogin.message });
    expect(journal.events.filter((e) => e.kind === "login_failed").length).toBe(3);
    for (const s of [wrong.s, unknown.s, login]) s.close();
  }, NET);

  test("an enrollment not approved in time ends the waiting connection with enroll_expired", async () => {
    const { t } = await start({ pendingTtlMs: 500 });
    await registerRaw(t.port, "dave", PW);
    const b = await enroll(t, "dave", PW);
    expect(b.answer.type).toBe("enroll_pending");
    expect((await untilMessage(b.s, (m) => m.type === "error")).match).toMatchObject({ type: "error", code: "enroll_expired" });
    expect(await b.s.conn.waitClosed(3000)).toBe(true);
  }, NET);

  test("the new machine asks again while its first attempt still waits, then the first closes: the approval lets the second in", async () => {
    const { t } = await start();
    const pat = await registerRaw(t.port, "pat", PW);
    const laptop = ed25519Generate();
    const first = await enroll(t, "pat", PW, laptop);
    const second = await enroll(t, "pat", PW, laptop);
    expect([first.answer.type, second.answer.type]).toEqual(["enroll_pending", "enroll_pending"]);
    first.s.close();
    expect(await first.s.conn.waitClosed(3000)).toBe(true);
    const a = await session(t, pat);
    // The server has seen the first connection go by the time it answers this.
    await ask(a, { type: "device_list" }, "devices");
    expect(await ask(a, { type: "device_approve", key: laptop.publicKey, sig: signEnrollment(pat.identity.secretKey, "pat", laptop.publicKey) }, "device_added")).toMatchObject({ type: "device_added" });
    expect((await untilMessage(second.s, (m) => m.type === "welcome" || m.type === "error", 5000)).match).toMatchObject({ type: "welcome", user: "pat" });
    a.close();
    second.s.close();
  }, NET);

  test("a waiting enrollment holds no login slot: with --max-startups full at 1, others still connect and log in while it waits", async () => {
    const { t } = await start();
    const kim = await registerRaw(t.port, "kim", PW);
    t.server.opts.startups = { start: 1, rate: 100, full: 1 };
    const b = await enroll(t, "kim", PW);
    expect(b.answer.type).toBe("enroll_pending");
    expect(t.server.unauthenticated).toBe(0);
    const a = await session(t, kim);
    a.close();
    b.s.close();
  }, NET);

  test(`at most ${DEVICE_PENDING_MAX} enrollments wait per account: the next is refused too_many_pending`, async () => {
    const { t } = await start();
    await registerRaw(t.port, "erin", PW);
    const waiting = [];
    for (let i = 0; i < DEVICE_PENDING_MAX; i++) waiting.push(await enroll(t, "erin", PW));
    expect(waiting.map((w) => w.answer.type)).toEqual(Array(DEVICE_PENDING_MAX).fill("enroll_pending"));
    const more = await enroll(t, "erin", PW);
    expect(more.answer).toMatchObject({ type: "error", code: "too_many_pending" });
    for (const w of [...waiting, more]) w.s.close();
  }, NET);

  test("the cap of active devices holds at approval too: two waiting, one place left, the second approval is refused too_many_devices", async () => {
    const { t } = await start({ maxActive: 2 });
    const lee = await registerRaw(t.port, "lee", PW);
    const one = await enroll(t, "lee", PW);
    const two = await enroll(t, "lee", PW);
    const a = await session(t, lee);
    const approve = (k: Ed25519KeyPair) => ask(a, { type: "device_approve", key: k.publicKey, sig: signEnrollment(lee.identity.secretKey, "lee", k.publicKey) }, "device_added");
    expect(await approve(one.key)).toMatchObject({ type: "device_added" });
    expect(await approve(two.key)).toMatchObject({ type: "notice", code: "too_many_devices" });
    expect(((await ask(a, { type: "device_list" }, "devices")) as Message<"devices">).devices.length).toBe(2);
    for (const s of [a, one.s, two.s]) s.close();
  }, NET);
});

describe("enrolling by password alone (serve --device-enroll password)", () => {
  test("the enroll is let in at once as the new device, recorded as enrolled by the password; past the cap of active devices, too_many_devices", async () => {
    const { t, journal } = await start({ enroll: "password", maxActive: 2 });
    const frank = await registerRaw(t.port, "frank", PW);
    const b = await enroll(t, "frank", PW);
    expect(b.answer.type).toBe("welcome");
    expect(journal.events.find((e) => e.kind === "device_enrolled")).toMatchObject({ user: "frank", device: deviceId(b.key.publicKey), by: "password" });
    (await session(t, frank, b.key)).close();
    const third = await enroll(t, "frank", PW);
    expect(third.answer).toMatchObject({ type: "error", code: "too_many_devices" });
    b.s.close();
    third.s.close();
  }, NET);

  test("a locked account (PROTOCOL.md §7.10) enrolls no device: the right password is answered account_locked, nothing is recorded, the new key logs in nowhere", async () => {
    const { t, journal } = await start({ enroll: "password" });
    await registerRaw(t.port, "gina", PW);
    t.server.store.setLocked("gina", Date.now());
    const b = await enroll(t, "gina", PW);
    expect(b.answer).toMatchObject({ type: "error", code: "account_locked" });
    expect(journal.events.filter((e) => e.kind === "device_enrolled")).toEqual([]);
    t.server.store.setLocked("gina", null);
    const late = await rawSession(t.port);
    expect((await passwordLogin(late, "gina", PW, b.key)).code).toBe("auth_failed");
    late.close();
    b.s.close();
  }, NET);

  for (const [what, user, fail] of [
    ["nothing is enrolled that cannot be recorded: not_recorded", "gina", (j: Recorder, on: boolean) => void (j.on = !on)],
    ["an enrollment whose line is never written is not stored: not_recorded, and the key logs in nowhere", "hana", (j: Recorder, on: boolean) => void (j.losing = on)],
  ] as const) {
    test(what, async () => {
      const { t, journal } = await start({ enroll: "password" });
      const u = await registerRaw(t.port, user, PW);
      fail(journal, true);
      const b = await enroll(t, user, PW);
      expect(b.answer).toMatchObject({ type: "error", code: "not_recorded" });
      fail(journal, false);
      const a = await session(t, u);
      expect(((await ask(a, { type: "device_list" }, "devices")) as Message<"devices">).devices.length).toBe(1);
      a.close();
      b.s.close();
    }, NET);
  }
});

describe("revoking a device (the stolen laptop)", () => {
  /** `name` registers, then enrolls a laptop by the password (policy `password`) that is let in with a ticket. */
  async function withLaptop(t: TestServer, name: string) {
    const user = await registerRaw(t.port, name, PW);
    const laptopTicketKey = ed25519Generate();
    const b = await enroll(t, name, PW, ed25519Generate(), "stolen laptop", laptopTicketKey.publicKey);
    return { user, b, ticket: (b.answer.msg as Message<"welcome">).ticket!, laptopTicketKey };
  }

  test("its live session ends at once with device_revoked; its tickets and password logins are refused; its key cannot be enrolled again", async () => {
    const { t, journal } = await start({ enroll: "password" });
    const { user: hank, b, ticket, laptopTicketKey } = await withLaptop(t, "hank");
    b.s.send({ type: "join", room: "ops" });
    await untilMessage(b.s, (m) => m.type === "history_end");

    const a = await session(t, hank);
    const spy = spyOn(t.server.store, "revokeDevice");
    const r = await ask(a, { type: "device_revoke", id: deviceId(b.key.publicKey) }, "device_revoked");
    expect(r).toEqual({ type: "device_revoked", id: deviceId(b.key.publicKey), ended: 1 });
    const ended = await untilMessage(b.s, (m) => m.type === "error");
    expect(ended.match).toMatchObject({ type: "error", code: "device_revoked" });
    expect(await b.s.conn.waitClosed(3000)).toBe(true);
    // Recorded before the store changed.
    const rec = journal.events.find((e) => e.kind === "device_revoked");
    expect(rec).toMatchObject({ user: "hank", device: deviceId(b.key.publicKey) });
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();

    const byTicket = await rawSession(t.port);
    expect((await ticketLogin(byTicket, "hank", ticket, laptopTicketKey)).code).toBe("auth_failed");
    const byPassword = await rawSession(t.port);
    expect((await passwordLogin(byPassword, "hank", PW, b.key)).code).toBe("auth_failed");
    const again = await enroll(t, "hank", PW, b.key);
    expect(again.answer).toMatchObject({ type: "error", code: "device_revoked" });
    const list = (await ask(a, { type: "device_list" }, "devices")) as Message<"devices">;
    expect(list.devices.find((d) => d.id === deviceId(b.key.publicKey))).toMatchObject({ name: "stolen laptop", revoked: expect.any(Number) });
    for (const s of [a, byTicket, byPassword, again.s]) s.close();
  }, NET);

  test("a stolen ticket cannot revoke the owner's other devices: a ticket session is refused password_login_needed, and the owner's device still logs in", async () => {
    const { t, journal } = await start({ enroll: "password" });
    // The laptop's ticket file (unsealed, a bearer credential) is what a thief of the laptop holds.
    const { user: olga, b, ticket, laptopTicketKey } = await withLaptop(t, "olga");
    b.s.close();
    const thief = await rawSession(t.port);
    expect((await ticketLogin(thief, "olga", ticket, laptopTicketKey)).type).toBe("welcome");
    const refused = await ask(thief, { type: "device_revoke", id: deviceId(olga.identity.publicKey) }, "device_revoked");
    expect(refused).toMatchObject({ type: "notice", code: "password_login_needed" });
    expect(journal.events.some((e) => e.kind === "device_revoked")).toBe(false);
    // The owner's desktop still logs in, and revokes the laptop (its session, the thief's, ends).
    const a = await session(t, olga);
    expect(await ask(a, { type: "device_revoke", id: deviceId(b.key.publicKey) }, "device_revoked")).toEqual({ type: "device_revoked", id: deviceId(b.key.publicKey), ended: 1 });
    expect((await untilMessage(thief, (m) => m.type === "error")).match).toMatchObject({ type: "error", code: "device_revoked" });
    a.close();
    thief.close();
  }, NET);

  test("the session's own device, or an id that is no active device, is refused and nothing changes; so is one that cannot be recorded", async () => {
    const { t, journal } = await start({ enroll: "password" });
    const ivy = await registerRaw(t.port, "ivy", PW);
    const b = await enroll(t, "ivy", PW);
    const a = await session(t, ivy);
    expect(await ask(a, { type: "device_revoke", id: deviceId(ivy.identity.publicKey) }, "device_revoked")).toMatchObject({ type: "notice", code: "current_device" });
    expect(await ask(a, { type: "device_revoke", id: "000000000000" }, "device_revoked")).toMatchObject({ type: "notice", code: "unknown_device" });
    journal.on = false;
    expect(await ask(a, { type: "device_revoke", id: deviceId(b.key.publicKey) }, "device_revoked")).toMatchObject({ type: "notice", code: "not_recorded" });
    journal.on = true;
    // B is still a session and still a device.
    b.s.send({ type: "session_list" });
    expect((await untilMessage(b.s, (m) => m.type === "sessions")).match?.type).toBe("sessions");
    expect(journal.events.some((e) => e.kind === "device_revoked")).toBe(false);
    a.close();
    b.s.close();
  }, NET);
});
