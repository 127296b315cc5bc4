/**
 * The server's defences, from the outside: the handshake deadline, early drop
 * of unauthenticated connections (OpenSSH MaxStartups), per-source penalties
 * after failed logins, the bounded argon2id gate, and hostile peers that can
 * only ever close their own connection. Each describe has its own server with
 * the small, deterministic limits it needs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { register } from "../../src/client/account.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { utf8 } from "../../src/bytes.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { frameHeader } from "../../src/protocol/framing.ts";
import { ClientHandshake } from "../../src/protocol/handshake.ts";
import { type Message, decodeMessage, encodeMessageBytes } from "../../src/protocol/messages.ts";
import {
  type Outcome,
  RawConn,
  type RawUser,
  type TestServer,
  cleartextFrame,
  passwordLogin,
  rawSession,
  registerRaw,
  restoreHome,
  sleep,
  startServer,
  useHome,
  waitFor,
} from "./helpers.ts";

const frame = (body: Uint8Array): Uint8Array => {
  const out = new Uint8Array(4 + body.length);
  out.set(frameHeader(body.length), 0);
  out.set(body, 4);
  return out;
};

/** The error a refused connection is sent in clear, and whether it was then closed. */
async function refusal(c: RawConn): Promise<{ code: string; closed: boolean }> {
  const m = await c.nextCleartext(5000);
  if (m.type !== "error") throw new Error(`test: expected an error, got ${m.type}`);
  return { code: m.code, closed: await c.waitClosed(3000) };
}

describe("handshake deadline and early drop", () => {
  const DEADLINE = 1000;
  let t: TestServer;
  let erin: RawUser;
  beforeAll(async () => {
    // start = full = 3 with rate 100: three unauthenticated connections are
    // admitted, every further one is refused — no randomness involved.
    t = await startServer({ handshakeTimeoutMs: DEADLINE, startups: { start: 3, rate: 100, full: 3 } });
    erin = await registerRaw(t.port, "erin", "a lantern in the fog");
  });
  afterAll(async () => {
    await t.server.stop();
    restoreHome();
  });

  test("a client that sends nothing is told handshake_timeout and closed; its slot is freed", async () => {
    const c = await RawConn.open(t.port);
    try {
      await waitFor("the server to admit the connection", () => t.server.unauthenticated === 1);
      const m = await c.nextCleartext(3000);
      const toldAfter = Date.now() - c.openedAt;
      expect(m.type === "error" && m.code).toBe("handshake_timeout");
      expect(toldAfter).toBeGreaterThanOrEqual(DEADLINE - 50);
      expect(await c.waitClosed(2500)).toBe(true);
      expect(c.closedAt! - c.openedAt).toBeLessThanOrEqual(2500);
      await waitFor("the slot to be freed", () => t.server.unauthenticated === 0 && t.server.connections === 0, 2000);
    } finally {
      c.destroy();
    }
  });

  test("a client that stops after client_hello is told handshake_timeout (sealed) and closed", async () => {
    const c = await RawConn.open(t.port);
    try {
      const hs = new ClientHandshake();
      c.write(cleartextFrame(hs.hello()));
      const keys = hs.receive(decodeMessage(await c.next(3000)));
      const channel = new SecureChannel(keys, "client");
      const [m] = channel.open(await c.next(3000));
      const toldAfter = Date.now() - c.openedAt;
      expect(m?.type === "error" && m.code).toBe("handshake_timeout");
      expect(toldAfter).toBeGreaterThanOrEqual(DEADLINE - 50);
      expect(await c.waitClosed(2500)).toBe(true);
      expect(c.closedAt! - c.openedAt).toBeLessThanOrEqual(2500);
      await waitFor("the slot to be freed", () => t.server.unauthenticated === 0 && t.server.connections === 0, 2000);
    } finally {
      c.destroy();
    }
  });

  test("past `full` idle connections, new ones get server_busy in clear; once the deadline frees the slots a client logs in", async () => {
    const idle: RawConn[] = [];
    const busy: RawConn[] = [];
    try {
      for (let i = 0; i < 3; i++) idle.push(await RawConn.open(t.port));
      await waitFor("three unauthenticated connections", () => t.server.unauthenticated === 3);
      for (let i = 0; i < 2; i++) busy.push(await RawConn.open(t.port));
      for (const c of busy) expect(await refusal(c)).toEqual({ code: "server_busy", closed: true });
      expect(t.events.filter((e) => e.event === "startup_dropped")).toHaveLength(2);
      expect(t.server.unauthenticated).toBe(3);

      // The idle ones are cut off at the deadline and their slots come back.
      for (const c of idle) expect(await refusal(c)).toEqual({ code: "handshake_timeout", closed: true });
      await waitFor("the slots to be freed", () => t.server.unauthenticated === 0, 3000);

      const s = await rawSession(t.port);
      try {
        expect((await passwordLogin(s, "erin", erin.password, erin.identity)).type).toBe("welcome");
      } finally {
        s.close();
      }
      // …and so does the real client.
      useHome("frank");
      const w = await register({ addr: parseServerAddress(t.address), user: "frank", trust: { acceptNew: true } }, "a lantern in the rain");
      expect(w.user).toBe("frank");
    } finally {
      for (const c of [...idle, ...busy]) c.destroy();
    }
  }, 30_000); // a handshake deadline, then two logins with argon2 (slow on a loaded machine): a generous wait
});

describe("per-source penalties", () => {
  let t: TestServer;
  let gina: RawUser;
  beforeAll(async () => {
    t = await startServer({ penalties: { freeFailures: 1, baseMs: 300, maxMs: 1000, forgetMs: 60_000, maxSources: 100 } });
    gina = await registerRaw(t.port, "gina", "seven swans a-swimming");
  });
  afterAll(() => t.server.stop());

  test("after failed logins a new connection is rate_limited at once; after the penalty, login works", async () => {
    const s = await rawSession(t.port);
    try {
      expect((await passwordLogin(s, "gina", "not the passphrase at all", gina.identity)).code).toBe("auth_failed");
      // The first failure is free.
      const free = await RawConn.open(t.port);
      const hello = new ClientHandshake().hello();
      free.write(cleartextFrame(hello));
      expect((await free.nextCleartext(3000)).type).toBe("server_hello");
      free.destroy();

      expect((await passwordLogin(s, "gina", "still not the passphrase", gina.identity)).code).toBe("auth_failed");
    } finally {
      s.close();
    }
    const penalized = Date.now();
    const c = await RawConn.open(t.port);
    try {
      const m = await c.nextCleartext(3000);
      expect(m.type === "error" && m.code).toBe("rate_limited");
      expect(m.type === "error" && m.message).toContain("retry in");
      expect(await c.waitClosed(3000)).toBe(true);
    } finally {
      c.destroy();
    }
    expect(t.events.filter((e) => e.event === "penalized")).toHaveLength(1);

    await sleep(Math.max(0, penalized + 400 - Date.now()));
    const after = await rawSession(t.port);
    try {
      expect((await passwordLogin(after, "gina", gina.password, gina.identity)).type).toBe("welcome");
    } finally {
      after.close();
    }
  });
});

describe("the argon2id gate", () => {
  let t: TestServer;
  let hal: RawUser;
  beforeAll(async () => {
    t = await startServer({ argon2Concurrency: 1, argon2Queue: 0 });
    hal = await registerRaw(t.port, "hal", "open the pod bay doors please");
  });
  afterAll(() => t.server.stop());

  test("with one slot and no queue, a second concurrent password login gets server_busy and may retry", async () => {
    const [s1, s2] = [await rawSession(t.port), await rawSession(t.port)];
    try {
      // Both logins leave in the same tick; whichever the server reads second finds the gate full.
      const pending = [s1, s2].map((s) => {
        s.send({ type: "login", user: "hal", sig: s.sign(hal.identity), password: hal.password });
        return s.receive();
      });
      const answers = await Promise.all(pending);
      const kinds = answers.map((m) => (m.type === "error" ? m.code : m.type));
      expect([...kinds].sort()).toEqual(["server_busy", "welcome"]);
      // Busy is not a failed login: no penalty, and the same connection may try again.
      expect(t.events.filter((e) => e.event === "login_failed")).toHaveLength(0);
      const loser = kinds[0] === "server_busy" ? s1 : s2;
      expect((await passwordLogin(loser, "hal", hal.password, hal.identity)).type).toBe("welcome");
    } finally {
      s1.close();
      s2.close();
    }
  });
});

describe("hostile peers close only their own connection", () => {
  let t: TestServer;
  let ida: RawUser;
  beforeAll(async () => {
    // More hostile connections at once than MaxStartups' default `start`: no random early drop here.
    t = await startServer({ startups: { start: 50, rate: 30, full: 100 } });
    ida = await registerRaw(t.port, "ida", "nine ladders to the moon");
  });
  afterAll(() => t.server.stop());

  const json = (text: string) => frame(utf8(text));
  const msg = (m: Record<string, unknown>) => json(JSON.stringify(m));
  const B64_32 = Buffer.alloc(32, 7).toString("base64");
  const CASES: { name: string; bytes: Uint8Array; code: string }[] = [
    { name: "an HTTP request (garbage)", bytes: utf8("GET / HTTP/1.1\r\nHost: chat\r\n\r\n"), code: "frame_too_large" },
    { name: "a zero-length frame", bytes: new Uint8Array(4), code: "frame_empty" },
    { name: "a length header past the pre-login limit", bytes: frameHeader(4097), code: "frame_too_large" },
    { name: "a length header of 4 GiB", bytes: new Uint8Array([0xff, 0xff, 0xff, 0xff]), code: "frame_too_large" },
    { name: "invalid JSON", bytes: json('{"type": "client_hello",'), code: "json_invalid" },
    { name: "invalid UTF-8", bytes: frame(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), code: "utf8_invalid" },
    { name: "a JSON array", bytes: json("[1, 2, 3]"), code: "message_not_object" },
    { name: "an unknown type", bytes: msg({ type: "hello" }), code: "message_unknown_type" },
    { name: "an unknown field", bytes: msg({ type: "client_hello", version: 1, e: B64_32, nonce: B64_32, x: 1 }), code: "message_unknown_field" },
    { name: "a login in clear", bytes: frame(encodeMessageBytes({ type: "login", user: "ida", sig: new Uint8Array(64), password: "nine ladders to the moon" })), code: "handshake_unexpected" },
    { name: "a low-order ephemeral key", bytes: msg({ type: "client_hello", version: 1, e: Buffer.alloc(32).toString("base64"), nonce: B64_32 }), code: "x25519_low_order" },
    { name: "a foreign protocol version", bytes: msg({ type: "client_hello", version: 2, e: B64_32, nonce: B64_32 }), code: "handshake_version" },
  ];

  test("each bad input gets its error code in clear and is closed, while another client logs in", async () => {
    const conns = await Promise.all(CASES.map(() => RawConn.open(t.port)));
    try {
      const legit = (async (): Promise<Outcome> => {
        const s = await rawSession(t.port);
        try {
          return await passwordLogin(s, "ida", ida.password, ida.identity);
        } finally {
          s.close();
        }
      })();
      conns.forEach((c, i) => c.write(CASES[i]!.bytes));
      const got = await Promise.all(conns.map((c) => refusal(c)));
      expect(Object.fromEntries(CASES.map((k, i) => [k.name, got[i]]))).toEqual(Object.fromEntries(CASES.map((k) => [k.name, { code: k.code, closed: true }])));
      expect((await legit).type).toBe("welcome");
    } finally {
      for (const c of conns) c.destroy();
    }
    await waitFor("every connection to be gone", () => t.server.connections === 0 && t.server.unauthenticated === 0, 3000);
  });

  test("after the handshake, a forged record or an oversize frame gets a sealed error and a close", async () => {
    const forged = await rawSession(t.port);
    const oversize = await rawSession(t.port);
    const twoLogins = await rawSession(t.port);
    try {
      forged.conn.write(frame(crypto.getRandomValues(new Uint8Array(48))));
      oversize.conn.write(frameHeader(4097));
      const id = ed25519Generate();
      const login: Message = { type: "login", user: "ida", sig: twoLogins.sign(id), password: "x".repeat(12) };
      twoLogins.send(login, login);
      const codes = await Promise.all([forged, oversize, twoLogins].map(async (s) => {
        const m = await s.receive(5000);
        return { code: m.type === "error" ? m.code : m.type, closed: await s.conn.waitClosed(3000) };
      }));
      expect(codes).toEqual([
        { code: "record_auth_failed", closed: true },
        { code: "frame_too_large", closed: true },
        { code: "protocol_violation", closed: true },
      ]);
    } finally {
      for (const s of [forged, oversize, twoLogins]) s.close();
    }
    await waitFor("every connection to be gone", () => t.server.connections === 0, 3000);
  });
});
