/**
 * Active attacks on the wire (docs/PROTOCOL.md §3.2, §3.5, §4.3, §4.4), through
 * a frame-aware proxy (./proxy.ts) between a real ChatClient and an in-process
 * server on 127.0.0.1:
 *
 * 1. records tampered with after login — a bit flipped (header, ciphertext,
 *    tag), dropped, replayed, swapped with the next — in each direction: the
 *    receiver fails closed, nothing forged, repeated or reordered is
 *    delivered, and the server goes on serving others;
 * 2. key substitution in the handshake: a pinned client refuses (exit 4)
 *    before it sends anything secret;
 * 3. a tampered client_hello: no session, no login.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChatClient, ChatClient as Client } from "../../src/client/chat.ts";
import { register } from "../../src/client/account.ts";
import { parseServerAddress } from "../../src/client/connection.ts";
import { addKnownHost, findKnownHost } from "../../src/client/known_hosts.ts";
import { saveTicket } from "../../src/client/tickets.ts";
import { CliError, EXIT, fromError } from "../../src/commands/exit.ts";
import { ed25519Generate, x25519, x25519Generate } from "../../src/crypto/index.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, ServerHandshake, deriveSessionKeys, hashClientHello, hashServerHello, initialHash } from "../../src/protocol/handshake.ts";
import { MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessageBytes } from "../../src/protocol/messages.ts";
import { DEFAULT_CHAT } from "../../src/server/chat.ts";
import { type Cred, type Machine, type Seed, Collector, connectClient, cred, machine, onMachine, quitAll, seedAccounts, serverFrom } from "../server/chat-helpers.ts";
import { type TestServer, RawConn, cleartextFrame, sleep, waitFor } from "../server/helpers.ts";
import { type Action, type Dir, type FlipWhere, FrameProxy, PASS } from "./proxy.ts";

const NET = 20_000;
const FAST = { ...DEFAULT_CHAT, flood: { rate: 100_000, burst: 100_000 }, requests: { rate: 100_000, burst: 100_000 } };

let seed: Seed;
beforeAll(async () => {
  seed = await seedAccounts(["alice", "bob", "carol"]);
}, NET);

let machines = 0;
const fresh = (name: string): Machine => machine(`${name}-${++machines}`);

/** Pins the REAL server's host key for the proxy's address and stores the ticket there: the client believes the proxy is the server. */
function installVia(t: TestServer, proxy: FrameProxy, c: Cred): void {
  const id = parseServerAddress(proxy.address).id;
  if (!findKnownHost(id)) addKnownHost(id, t.server.hostKey.publicKey);
  saveTicket(id, c.user, { ticket: c.ticket, expiresAt: c.expiresAt, key: c.ticketKey });
}

/** A ChatClient through the proxy; not started. */
function clientVia(proxy: FrameProxy, c: Cred, room: string, sink: Collector): ChatClient {
  return new Client(
    {
      addr: parseServerAddress(proxy.address),
      user: c.user,
      trust: { acceptNew: false },
      room,
      password: () => Promise.reject(new Error("test: the ticket should have been enough")),
      reconnect: false,
      // Only the room asked for (no `unread`, so none of the rooms alice was in in earlier tests): the frames are counted.
      history: "none",
    },
    sink,
  );
}

async function settled<T>(p: Promise<T>, ms: number): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
  try {
    return await Promise.race([p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })), late]);
  } finally {
    clearTimeout(timer);
  }
}

type Kind = { name: string; action: Action };
const KINDS: Kind[] = [
  ...(["header", "ciphertext", "tag"] as FlipWhere[]).map((where) => ({ name: `flip a ${where} bit`, action: { kind: "flip", where } as Action })),
  { name: "drop", action: { kind: "drop" } },
  { name: "replay", action: { kind: "replay" } },
  { name: "swap with the next", action: { kind: "swap" } },
];

/** What the receiver may still get of the sender's lines when record k carried line `k` (0-based) of them. */
function expectedPrefix(kind: Action, lines: string[], k: number): string[] {
  return lines.slice(0, kind.kind === "replay" ? k + 1 : k);
}

let rooms = 0;

describe("tampering with records after login fails closed", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: FAST });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  for (const dir of ["c2s", "s2c"] as Dir[]) {
    for (const when of ["first", "chat"] as const) {
      for (const kind of KINDS) {
        const label = `${dir}, ${when === "first" ? "the first record after login" : "a later chat record"}: ${kind.name}`;
        test(
          label,
          async () => {
            const room = `mitm-${++rooms}`;
            const alice = cred(seed, "alice");
            const proxy = FrameProxy.start(t.port);
            const aPC = fresh("alice");
            const sink = new Collector();
            let a: ChatClient | undefined;
            let b: ChatClient | undefined;
            let c: ChatClient | undefined;
            const eventsBefore = t.events.length;
            try {
              // The listener, directly connected.
              const bob = await connectClient(t, fresh("bob"), cred(seed, "bob"), room);
              b = bob.client;
              a = await onMachine(aPC, async () => {
                installVia(t, proxy, alice);
                return clientVia(proxy, alice, room, sink);
              });
              const aliceLines = ["m1", "m2", "m3", "m4", "m5"];
              const bobLines = ["b1", "b2", "b3", "b4"];
              let tamperedAt = -1;
              const arm = (index: number) => {
                tamperedAt = index;
                proxy.hooks[dir] = (f) => (f.index === index ? kind.action : PASS);
              };

              /** Alice says her lines, one record each, spaced so each is its own record. */
              const aliceSays = async (lines: string[]) => {
                for (const line of lines) {
                  try {
                    await a!.say(line);
                  } catch {
                    // the connection is gone: nothing more can be sent
                  }
                  await sleep(30);
                }
              };
              /** Bob says his lines, each acknowledged before the next, so each reaches alice in its own record. */
              const bobSays = async (lines: string[]) => {
                for (const line of lines) {
                  const acks = bob.sink.of("ack").length;
                  await b!.say(line);
                  await bob.sink.until(`bob's ack for ${line}`, () => bob.sink.of("ack").length > acks);
                  await sleep(20);
                }
              };

              let starting: Promise<unknown>;
              if (when === "first") {
                // Frames 0 and 1 are the hello and the login; frame 2 is the first record after welcome
                // (c2s: the log_proof, PROTOCOL.md §7.13; s2c: the answer to it).
                arm(2);
                starting = onMachine(aPC, () => a!.start()).catch((e: unknown) => e);
                await sink.until("connected", () => sink.of("connected").length === 1, 5000);
                if (dir === "c2s") await aliceSays(aliceLines.slice(0, 3));
                else {
                  await waitFor("the join answer to pass the proxy", () => proxy.last.frames.s2c.length >= 3);
                  await bobSays(bobLines);
                }
              } else {
                await onMachine(aPC, () => a!.start());
                await sink.inRoom(room);
                await bob.sink.until("alice's arrival", () => bob.sink.of("joined").some((j) => j.user === "alice" && j.room === room));
                await sleep(50); // let the join's trailing notice pass
                if (dir === "c2s") {
                  // c2s frames so far: hello, login, log_proof, join; m1 is frame 4, so m3 is frame 6.
                  expect(proxy.last.frames.c2s.length).toBe(4);
                  arm(6);
                  await aliceSays(aliceLines);
                } else {
                  arm(proxy.last.frames.s2c.length); // the record that carries b1
                  await bobSays(bobLines);
                }
                starting = Promise.resolve();
              }

              // The receiving side fails closed.
              const finished = await settled(a.finished, 8000);
              expect(finished).not.toBeNull();
              expect(a.failure).not.toBeNull();
              await settled(starting, 11_000);
              await waitFor("both sides of the proxied connection to close", () => proxy.last.clientClosedAt !== null && proxy.last.serverClosedAt !== null, 5000);
              expect(proxy.last.frames[dir].length).toBeGreaterThan(tamperedAt);
              if (dir === "c2s") {
                expect(proxy.last.firstClosed).toBe("server");
                const errs = t.events.slice(eventsBefore).filter((e) => e.event === "protocol_error");
                expect(errs.map((e) => e.fields.code)).toEqual(["record_auth_failed"]);
                expect(errs[0]!.fields.user).toBe("alice");
                // The server said why, in a record of its own (s2c is untouched).
                expect(sink.of("error").map((e) => e.code)).toEqual(["record_auth_failed"]);
              } else {
                expect(proxy.last.firstClosed).toBe("client");
                expect(sink.of("disconnected").length).toBe(1);
                expect(t.events.slice(eventsBefore).filter((e) => e.event === "protocol_error")).toEqual([]);
              }

              // The server goes on serving others: a fresh client logs in and chats with the listener.
              const carol = await connectClient(t, fresh("carol"), cred(seed, "carol"), room);
              c = carol.client;
              await c.say("after the attack");
              await bob.sink.until("carol's line", () => bob.sink.said(room).includes("carol: after the attack"));
              await b.say("still here");
              await carol.sink.until("bob's line", () => carol.sink.said(room).includes("bob: still here"));

              // Nothing forged, repeated or reordered was delivered.
              const fromAlice = bob.sink.said(room).filter((l) => l.startsWith("alice: "));
              const toAlice = sink.said(room).filter((l) => l.startsWith("bob: "));
              const history = t.server.journal
                .recent(room, 100)
                .filter((m) => m.from === "alice")
                .map((m) => `alice: ${m.text}`);
              if (dir === "c2s") {
                const expected = when === "first" ? [] : expectedPrefix(kind.action, aliceLines, 2).map((l) => `alice: ${l}`);
                expect(fromAlice).toEqual(expected);
                expect(history).toEqual(expected);
              } else {
                expect(fromAlice).toEqual([]);
                const expected = when === "first" ? [] : expectedPrefix(kind.action, bobLines, 0).map((l) => `bob: ${l}`);
                expect(toAlice).toEqual(expected);
                // The victim saw the room at most once, and nothing after the bad record.
                expect(sink.of("room").length).toBeLessThanOrEqual(when === "first" && kind.action.kind !== "replay" ? 0 : 1);
              }
              // Alice was in the room unless her join never reached the server: the first record after login is her
              // log_proof (PROTOCOL.md §7.13), and the join behind it never passes the failed one. Else she leaves it.
              const joinedRoom = !(dir === "c2s" && when === "first");
              if (joinedRoom) await bob.sink.until("alice's departure", () => bob.sink.of("left").some((l) => l.user === "alice" && l.room === room));
              else expect(bob.sink.of("joined").some((j) => j.user === "alice")).toBe(false);
            } finally {
              await quitAll(a, b, c);
              proxy.close();
            }
          },
          NET,
        );
      }
    }
  }
});

describe("key substitution in the handshake", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: FAST });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  /** Plays the server toward the client with its own ephemeral key and its own host key; forwards nothing. */
  function impostor(proxy: FrameProxy): ServerHandshake[] {
    const fakeHost = ed25519Generate();
    const made: ServerHandshake[] = [];
    proxy.hooks.c2s = (f, ctx) => {
      if (f.index !== 0) return { kind: "drop" };
      const hs = new ServerHandshake({ hostKey: fakeHost });
      made.push(hs);
      const { reply } = hs.receiveHello(decodeMessage(f.body));
      ctx.reply(encodeFrame(encodeMessageBytes(reply), MAX_FRAME_PRELOGIN));
      return { kind: "drop" };
    };
    return made;
  }

  test(
    "a proxy with its own host key: ChatClient.start refuses with exit 4 and sends nothing after client_hello",
    async () => {
      const proxy = FrameProxy.start(t.port);
      const aPC = fresh("alice");
      const made = impostor(proxy);
      let a: ChatClient | undefined;
      try {
        const err = await onMachine(aPC, async () => {
          installVia(t, proxy, cred(seed, "alice"));
          a = clientVia(proxy, cred(seed, "alice"), "lobby", new Collector());
          return a.start().then(
            () => null,
            (e: unknown) => fromError(e),
          );
        });
        expect(err).toBeInstanceOf(CliError);
        expect((err as CliError).exitCode).toBe(EXIT.HOST_KEY);
        expect((err as CliError).message).toContain("host key");
        expect(made.length).toBe(1);
        // Give a misbehaving client time to send its ticket login, then check it did not.
        await sleep(200);
        expect(proxy.connections.length).toBe(1);
        expect(proxy.last.frames.c2s.length).toBe(1);
        expect(t.events.some((e) => e.event === "login")).toBe(false);
      } finally {
        await quitAll(a);
        proxy.close();
      }
    },
    NET,
  );

  test(
    "a proxy with its own host key: register (account functions) refuses with exit 4; the password is never sent",
    async () => {
      const proxy = FrameProxy.start(t.port);
      const dPC = fresh("dora");
      impostor(proxy);
      try {
        const err = await onMachine(dPC, async () => {
          addKnownHost(parseServerAddress(proxy.address).id, t.server.hostKey.publicKey);
          return register({ addr: parseServerAddress(proxy.address), user: "dora", trust: { acceptNew: false } }, "correct horse battery staple at dawn 42").then(
            () => null,
            (e: unknown) => fromError(e),
          );
        });
        expect(err).toBeInstanceOf(CliError);
        expect((err as CliError).exitCode).toBe(EXIT.HOST_KEY);
        await sleep(200);
        expect(proxy.connections.length).toBe(1);
        expect(proxy.last.frames.c2s.length).toBe(1);
        const sent = new TextDecoder().decode(proxy.last.frames.c2s[0]!.subarray(4));
        expect(decodeMessage(proxy.last.frames.c2s[0]!.subarray(4)).type).toBe("client_hello");
        expect(sent).not.toContain("horse");
      } finally {
        proxy.close();
      }
    },
    NET,
  );

  test(
    "a proxy that swaps only the ephemeral key in server_hello (keeping the real host key): handshake_bad_signature, exit 4",
    async () => {
      const proxy = FrameProxy.start(t.port);
      const aPC = fresh("alice");
      proxy.hooks.s2c = (f) => {
        if (f.index !== 0) return PASS;
        const m = decodeMessage(f.body) as Message<"server_hello">;
        const forged = { ...m, e: x25519Generate().publicKey };
        return { kind: "replace", frames: [encodeFrame(encodeMessageBytes(forged), MAX_FRAME_PRELOGIN)] };
      };
      let a: ChatClient | undefined;
      try {
        const err = await onMachine(aPC, async () => {
          installVia(t, proxy, cred(seed, "alice"));
          a = clientVia(proxy, cred(seed, "alice"), "lobby", new Collector());
          return a.start().then(
            () => null,
            (e: unknown) => fromError(e),
          );
        });
        expect(err).toBeInstanceOf(CliError);
        expect((err as CliError).exitCode).toBe(EXIT.HOST_KEY);
        expect(((err as CliError).cause as { code?: string } | undefined)?.code).toBe("handshake_bad_signature");
        await sleep(200);
        expect(proxy.last.frames.c2s.length).toBe(1);
        expect(t.events.some((e) => e.event === "login")).toBe(false);
      } finally {
        await quitAll(a);
        proxy.close();
      }
    },
    NET,
  );
});

describe("a tampered client_hello", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await serverFrom(seed, { chat: FAST });
  }, NET);
  afterAll(async () => {
    await t.server.stop();
  }, NET);

  const flipE = (f: { index: number; body: Uint8Array }): Action => {
    if (f.index !== 0) return PASS;
    const m = decodeMessage(f.body) as Message<"client_hello">;
    const e = m.e.slice();
    e[0]! ^= 0x01;
    return { kind: "replace", frames: [cleartextFrame({ ...m, e })] };
  };

  test(
    "the real client notices first: the server signed H over the altered key, so the signature fails (exit 4); no record, no login",
    async () => {
      const proxy = FrameProxy.start(t.port, { c2s: flipE });
      const aPC = fresh("alice");
      let a: ChatClient | undefined;
      const before = t.events.length;
      try {
        const err = await onMachine(aPC, async () => {
          installVia(t, proxy, cred(seed, "alice"));
          a = clientVia(proxy, cred(seed, "alice"), "lobby", new Collector());
          return a.start().then(
            () => null,
            (e: unknown) => fromError(e),
          );
        });
        expect(err).toBeInstanceOf(CliError);
        expect((err as CliError).exitCode).toBe(EXIT.HOST_KEY);
        expect(((err as CliError).cause as { code?: string } | undefined)?.code).toBe("handshake_bad_signature");
        await waitFor("the connection to close", () => proxy.last.serverClosedAt !== null, 5000);
        expect(proxy.last.frames.c2s.length).toBe(1);
        expect(t.events.slice(before).some((e) => e.event === "login")).toBe(false);
      } finally {
        await quitAll(a);
        proxy.close();
      }
    },
    NET,
  );

  test(
    "a client that skipped the signature check: its first record does not open at the server (record_auth_failed), no login",
    async () => {
      const proxy = FrameProxy.start(t.port, { c2s: flipE });
      const conn = await RawConn.open(proxy.port);
      const before = t.events.length;
      try {
        // The client's side of §4.3–§4.5 by hand, with the key it really sent.
        const hs = new ClientHandshake();
        const ephemeral = x25519Generate();
        const hello: Message<"client_hello"> = { ...(hs.hello() as Message<"client_hello">), e: ephemeral.publicKey };
        conn.write(cleartextFrame(hello));
        const sh = decodeMessage(await conn.next(5000)) as Message<"server_hello">;
        expect(sh.type).toBe("server_hello");
        const h = hashServerHello(hashClientHello(initialHash(), hello), sh);
        const derived = deriveSessionKeys(x25519(ephemeral.secretKey, sh.e), h);
        const keys = { handshakeHash: h, challenge: sh.challenge, hostKey: sh.host_key, rekey: { records: sh.rekey_records, bytes: sh.rekey_bytes }, ...derived };
        const channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
        const alice = cred(seed, "alice");
        // The server's keys differ, so it cannot open this; the signature would be wrong anyway.
        conn.write(channel.seal([{ type: "login", user: "alice", sig: new Uint8Array(64), ticket: alice.ticket }]));
        expect(await conn.waitClosed(5000)).toBe(true);
        expect(proxy.last.firstClosed).toBe("server");
        const errs = t.events.slice(before).filter((e) => e.event === "protocol_error");
        expect(errs.map((e) => e.fields.code)).toEqual(["record_auth_failed"]);
        expect(t.events.slice(before).some((e) => e.event === "login")).toBe(false);
        // The server's answer is a record under keys this client does not have.
        const answer = await conn.next(1000).catch(() => null);
        if (answer) expect(() => channel.open(answer)).toThrow();
      } finally {
        conn.destroy();
        proxy.close();
      }
    },
    NET,
  );
});
