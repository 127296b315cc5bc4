/**
 * `check_name` (PROTOCOL.md §5.1): a client may ask, before `register`,
 * whether a name is free. The answer is `name_status`; asking is bounded as
 * an attempt is — it takes a token from the address's login rate, waits out
 * the address's penalty, and counts toward --max-auth-tries — so asking is
 * no cheaper a way to enumerate names than registering them.
 */
import { describe, expect, test } from "bun:test";
import { ed25519Generate } from "../../src/crypto/index.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { type RawSession, outcome, rawSession, registerRaw, serversStoppedAfterAll, ticketLogin } from "./helpers.ts";

const NET = 20_000;
const PW = "check name test passphrase";

const server = serversStoppedAfterAll();

async function check(s: RawSession, user: string): Promise<Message> {
  s.send({ type: "check_name", user });
  return s.receive();
}

describe("check_name", () => {
  test("says whether a name is taken; a register may follow on the same connection", async () => {
    const t = await server();
    await registerRaw(t.port, "alice", PW);
    const s = await rawSession(t.port);
    try {
      expect(await check(s, "alice")).toEqual({ type: "name_status", user: "alice", available: false });
      expect(await check(s, "bob")).toEqual({ type: "name_status", user: "bob", available: true });
      const identity = ed25519Generate();
      s.send({ type: "register", user: "bob", identity_key: identity.publicKey, sig: s.sign(identity), password: PW });
      expect((await s.receive()).type).toBe("welcome");
    } finally {
      s.close();
    }
    expect(t.events.filter((e) => e.event === "check_name").map((e) => e.fields.available)).toEqual([false, true]);
  }, NET);

  test("takes a token from the address's login rate, shared with login and register", async () => {
    const t = await server({ logins: { rate: 0.001, burst: 3 } });
    const s = await rawSession(t.port);
    try {
      const answers = [await check(s, "carol"), await check(s, "dave")].map((m) => m.type);
      expect(answers).toEqual(["name_status", "name_status"]);
      // The third token goes to a login; the bucket is then empty for both kinds.
      expect((await ticketLogin(s, "nobody", crypto.getRandomValues(new Uint8Array(32)), ed25519Generate())).code).toBe("auth_failed");
      expect(outcome(await check(s, "erin")).code).toBe("rate_limited");
    } finally {
      s.close();
    }
  }, NET);

  test("counts toward --max-auth-tries: the sixth on one connection is too_many_failures, and the connection closes", async () => {
    const t = await server();
    const s = await rawSession(t.port);
    try {
      const got: string[] = [];
      for (let i = 0; i < 6; i++) {
        const m = await check(s, `user${i}`);
        got.push(m.type === "error" ? m.code : m.type);
      }
      expect(got).toEqual(["name_status", "name_status", "name_status", "name_status", "name_status", "too_many_failures"]);
      expect(await s.conn.waitClosed()).toBe(true);
    } finally {
      s.close();
    }
  }, NET);

  test("an address serving a failed-login penalty is answered rate_limited, not told", async () => {
    const t = await server({ penalties: { freeFailures: 1, baseMs: 60_000, maxMs: 60_000, forgetMs: 600_000, maxSources: 16 } });
    const s = await rawSession(t.port);
    try {
      for (let i = 0; i < 2; i++) expect((await ticketLogin(s, "nobody", crypto.getRandomValues(new Uint8Array(32)), ed25519Generate())).code).toBe("auth_failed");
      const m = await check(s, "frank");
      expect(outcome(m).code).toBe("rate_limited");
    } finally {
      s.close();
    }
  }, NET);
});
