/**
 * The handshake (src/protocol/handshake.ts). What each side sees: a correct
 * exchange gives both the same keys and the client the server's host key;
 * any message out of turn fails the machine for good; the server's login
 * phase goes await_auth → checking → done (complete) or back to await_auth
 * (retry) under the same hash and challenge; a tampered or re-signed
 * server_hello, a low-order ephemeral (refused before the server signs), a
 * foreign version, out of bounds rekey limits, or a login signature lifted
 * from another session are refused with stable codes.
 */
import { describe, expect, test } from "bun:test";
import { ed25519 as nobleEd25519, x25519 as nobleX25519 } from "@noble/curves/ed25519.js";
import { createHash, createHmac } from "node:crypto";
import { type Ed25519KeyPair, type X25519KeyPair, ed25519Generate, ed25519Sign, x25519Generate } from "../../src/crypto/index.ts";
import {
  ClientHandshake,
  type ClientState,
  ServerHandshake,
  type ServerState,
  deriveSessionKeys,
  hashClientHello,
  hashServerHello,
  initialHash,
  serverSignatureInput,
  signClientAuth,
  verifyClientAuth,
} from "../../src/protocol/handshake.ts";
import type { SessionKeys } from "../../src/protocol/session.ts";
import { DEFAULT_REKEY_BYTES, DEFAULT_REKEY_RECORDS, MAX_REKEY_BYTES, MAX_REKEY_RECORDS, PROTOCOL_VERSION } from "../../src/protocol/limits.ts";
import {
  type ClientHello,
  type Login,
  MESSAGE_TYPES,
  type Message,
  type MessageType,
  type Register,
  type ServerHello,
  decodeMessage,
  encodeMessageBytes,
} from "../../src/protocol/messages.ts";
import { SEED, codeOf, expectCode, flipBit, fullExamples, hex, rng, unhex } from "./helpers.ts";

console.log(`handshake.test.ts: PROTOCOL_TEST_SEED=${SEED}`);
const r = rng(SEED ^ 0x4a5d);

const HOST: Ed25519KeyPair = ed25519Generate(r.bytes(32));
const IDENTITY: Ed25519KeyPair = ed25519Generate(r.bytes(32));
const EX = fullExamples(r);

interface Run {
  client: ClientHandshake;
  server: ServerHandshake;
  hello: ClientHello;
  reply: ServerHello;
  sk: SessionKeys;
  ck: SessionKeys;
}

/** A complete, honest exchange (steps 1 and 2). */
function handshake(server: ServerHandshake = new ServerHandshake({ hostKey: HOST }), client: ClientHandshake = new ClientHandshake()): Run {
  const hello = client.hello();
  const { reply, keys: sk } = server.receiveHello(hello);
  const ck = client.receive(reply);
  return { client, server, hello, reply, sk, ck };
}

const register = (keys: SessionKeys, identity: Ed25519KeyPair = IDENTITY): Register => ({
  type: "register",
  user: "alice",
  identity_key: identity.publicKey,
  sig: signClientAuth(identity.secretKey, keys),
  password: "correct horse",
});
const login = (keys: SessionKeys, extra: { password?: string; ticket?: Uint8Array; ticket_key?: Uint8Array }): Login => ({
  type: "login",
  user: "alice",
  sig: signClientAuth(IDENTITY.secretKey, keys),
  ...extra,
});

/** A server_hello for `hello`, signed by `signer` over the transcript the client will compute. */
function signedServerHello(hello: ClientHello, fields: Partial<Omit<ServerHello, "type" | "sig">> = {}, signer: Ed25519KeyPair = HOST): ServerHello {
  const unsigned: Omit<ServerHello, "sig"> = {
    type: "server_hello",
    version: PROTOCOL_VERSION,
    e: x25519Generate(r.bytes(32)).publicKey,
    challenge: r.bytes(32),
    host_key: signer.publicKey,
    rekey_records: 1024,
    rekey_bytes: 2 ** 32,
    ...fields,
  };
  const h = hashServerHello(hashClientHello(initialHash(), hello), unsigned);
  return { ...unsigned, sig: ed25519Sign(signer.secretKey, serverSignatureInput(h)) };
}

/** Checks every example is a valid wire message, so a rejection below is the handshake's doing. */
function wireValid(m: Message): Message {
  return decodeMessage(encodeMessageBytes(m));
}

describe("a successful handshake", () => {
  test("both sides derive the same keys, hash and session id; the client learns the host key", () => {
    const { client, server, sk, ck } = handshake();
    expect(client.state).toBe("established");
    expect(server.state).toBe("await_auth");
    for (const k of ["c2s", "s2c", "sessionId", "handshakeHash", "challenge", "hostKey"] as const) {
      expect([k, hex(ck[k])]).toEqual([k, hex(sk[k])]);
    }
    expect(ck.rekey).toEqual(sk.rekey);
    expect(ck.rekey).toEqual({ records: DEFAULT_REKEY_RECORDS, bytes: DEFAULT_REKEY_BYTES });
    expect(hex(ck.hostKey)).toBe(hex(HOST.publicKey));
    expect([ck.c2s.length, ck.s2c.length, ck.sessionId.length, ck.handshakeHash.length, ck.challenge.length]).toEqual([32, 32, 16, 32, 32]);
    expect(hex(ck.c2s)).not.toBe(hex(ck.s2c));
    // Two handshakes never share keys.
    const other = handshake();
    expect(hex(other.ck.c2s)).not.toBe(hex(ck.c2s));
    expect(hex(other.ck.sessionId)).not.toBe(hex(ck.sessionId));
  });

  test("the server's announced rekey limits reach the client", () => {
    const { ck, sk, reply } = handshake(new ServerHandshake({ hostKey: HOST, rekey: { records: 7, bytes: 1000 } }));
    expect([reply.rekey_records, reply.rekey_bytes]).toEqual([7, 1000]);
    expect(ck.rekey).toEqual({ records: 7, bytes: 1000 });
    expect(sk.rekey).toEqual({ records: 7, bytes: 1000 });
  });

  test("register, a password login and a ticket login each move the server to checking; complete() ends in done", () => {
    const a = handshake();
    expect(a.server.receiveAuth(register(a.sk))).toEqual(register(a.sk));
    expect(a.server.state).toBe("checking");
    a.server.complete();
    expect(a.server.state).toBe("done");
    const b = handshake();
    expect(b.server.receiveAuth(wireValid(login(b.sk, { password: "pw", ticket_key: r.bytes(32) }))).type).toBe("login");
    expect(b.server.state).toBe("checking");
    b.server.complete();
    expect(b.server.state).toBe("done");
    const c = handshake();
    expect(c.server.receiveAuth(wireValid(login(c.sk, { ticket: r.bytes(32) }))).type).toBe("login");
    expect(c.server.state).toBe("checking");
    // The login signature is the caller's to check (against the account's or the ticket's key).
    expect(verifyClientAuth(IDENTITY.publicKey, c.sk, login(c.ck, { password: "x" }).sig)).toBe(true);
  });

  test("retry(): back to await_auth; a second attempt under the same hash and challenge is accepted, as often as the caller allows", () => {
    const run = handshake();
    const first = wireValid(login(run.ck, { password: "wrong" })) as Login;
    run.server.receiveAuth(first);
    expect(run.server.state).toBe("checking");
    for (let i = 0; i < 5; i++) {
      run.server.retry();
      expect(run.server.state).toBe("await_auth");
      // The client's retry carries the very same signature: H and the challenge have not changed.
      const again = login(run.ck, { password: `attempt ${i}` });
      expect(hex(again.sig)).toBe(hex(first.sig));
      expect(verifyClientAuth(IDENTITY.publicKey, run.sk, again.sig)).toBe(true);
      run.server.receiveAuth(again);
      expect(run.server.state).toBe("checking");
    }
    // A register is also a valid retry (after a refused login or a refused register).
    run.server.retry();
    run.server.receiveAuth(register(run.sk));
    run.server.complete();
    expect(run.server.state).toBe("done");
  });

  test("a register with a bad signature fails the machine even after retries (it is not a retry case)", () => {
    const run = handshake();
    run.server.receiveAuth(login(run.sk, { password: "pw" }));
    run.server.retry();
    const bad: Register = { ...register(run.sk), sig: signClientAuth(ed25519Generate(r.bytes(32)).secretKey, run.sk) };
    expectCode(() => run.server.receiveAuth(bad), "auth_bad_signature");
    expect(run.server.state).toBe("failed");
    expectCode(() => run.server.retry(), "handshake_state");
  });

  test("the transcript, signature and key schedule match the spec, recomputed independently", () => {
    const cEph: X25519KeyPair = x25519Generate(r.bytes(32));
    const sEph: X25519KeyPair = x25519Generate(r.bytes(32));
    const nonce = r.bytes(32);
    const challenge = r.bytes(32);
    const rekey = { records: 1000, bytes: 123456 };
    const run = () =>
      handshake(new ServerHandshake({ hostKey: HOST, rekey, ephemeral: sEph, challenge }), new ClientHandshake({ ephemeral: cEph, nonce }));
    const { ck, reply, hello } = run();

    const sha = (...parts: Uint8Array[]): Buffer => parts.reduce((h, p) => h.update(p), createHash("sha256")).digest();
    const hmac = (key: Uint8Array, ...parts: Uint8Array[]): Buffer => parts.reduce((h, p) => h.update(p), createHmac("sha256", key)).digest();
    const ascii = (s: string): Buffer => Buffer.from(s, "ascii");
    const u32 = (n: number): Buffer => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    const u64 = (n: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt(n));
      return b;
    };

    expect(hex(hello.e)).toBe(hex(cEph.publicKey));
    expect(hex(hello.nonce)).toBe(hex(nonce));
    expect(hex(reply.e)).toBe(hex(sEph.publicKey));
    expect(hex(reply.challenge)).toBe(hex(challenge));
    const h0 = sha(ascii("securechat/1 handshake"));
    const h1 = sha(h0, u32(1), cEph.publicKey, nonce);
    const H = sha(h1, u32(1), sEph.publicKey, challenge, HOST.publicKey, u64(1000), u64(123456));
    expect(hex(ck.handshakeHash)).toBe(hex(H));
    expect(nobleEd25519.verify(reply.sig, Buffer.concat([ascii("securechat/1 server handshake signature"), Buffer.from([0]), H]), HOST.publicKey)).toBe(true);

    const shared = nobleX25519.getSharedSecret(cEph.secretKey, sEph.publicKey);
    const prk = hmac(H, shared);
    expect(hex(ck.c2s)).toBe(hex(hmac(prk, ascii("securechat/1 key c2s"), Buffer.from([1]))));
    expect(hex(ck.s2c)).toBe(hex(hmac(prk, ascii("securechat/1 key s2c"), Buffer.from([1]))));
    expect(hex(ck.sessionId)).toBe(hex(hmac(prk, ascii("securechat/1 session id"), Buffer.from([1])).subarray(0, 16)));

    const authInput = Buffer.concat([ascii("securechat/1 client auth signature"), Buffer.from([0]), H, challenge]);
    expect(hex(signClientAuth(IDENTITY.secretKey, ck))).toBe(hex(nobleEd25519.sign(authInput, IDENTITY.secretKey)));

    // Deterministic given the same inputs.
    expect(hex(run().ck.c2s)).toBe(hex(ck.c2s));
  });

  test("caller-provided ephemerals are copied, not wiped; deriveSessionKeys wipes the shared secret it is given", () => {
    const cEph = x25519Generate(r.bytes(32));
    const sEph = x25519Generate(r.bytes(32));
    const before = [hex(cEph.secretKey), hex(cEph.publicKey), hex(sEph.secretKey), hex(sEph.publicKey)];
    handshake(new ServerHandshake({ hostKey: HOST, ephemeral: sEph }), new ClientHandshake({ ephemeral: cEph }));
    expect([hex(cEph.secretKey), hex(cEph.publicKey), hex(sEph.secretKey), hex(sEph.publicKey)]).toEqual(before);
    // …also when the handshake fails.
    const failing = new ClientHandshake({ ephemeral: cEph });
    failing.hello();
    expectCode(() => failing.receive(EX.error), "handshake_refused");
    expect(hex(cEph.secretKey)).toBe(before[0]!);

    const shared = r.bytes(32);
    deriveSessionKeys(shared, r.bytes(32));
    expect(hex(shared)).toBe("00".repeat(32));
  });
});

describe("state × message matrix", () => {
  /** A fresh machine in the given state, plus the message that state would accept (if any). */
  type ClientSetup = { client: ClientHandshake; correct?: Message; serverHello?: ServerHello };
  const clientIn: Record<ClientState, () => ClientSetup> = {
    initial: () => ({ client: new ClientHandshake() }),
    sent_hello: () => {
      const client = new ClientHandshake();
      const { reply } = new ServerHandshake({ hostKey: HOST }).receiveHello(client.hello());
      return { client, correct: reply, serverHello: reply };
    },
    established: () => {
      const run = handshake();
      return { client: run.client, serverHello: run.reply };
    },
    failed: () => {
      const client = new ClientHandshake();
      const { reply } = new ServerHandshake({ hostKey: HOST }).receiveHello(client.hello());
      expectCode(() => client.receive(EX.error), "handshake_refused");
      return { client, serverHello: reply };
    },
  };

  type ServerSetup = { server: ServerHandshake; keys?: SessionKeys; hello?: Message; auth?: Message };
  const serverIn: Record<ServerState, () => ServerSetup> = {
    await_hello: () => ({ server: new ServerHandshake({ hostKey: HOST }), hello: new ClientHandshake().hello() }),
    await_auth: () => {
      const run = handshake();
      return { server: run.server, keys: run.sk, auth: register(run.sk) };
    },
    checking: () => {
      const run = handshake();
      run.server.receiveAuth(register(run.sk));
      return { server: run.server, keys: run.sk };
    },
    done: () => {
      const run = handshake();
      run.server.receiveAuth(register(run.sk));
      run.server.complete();
      return { server: run.server, keys: run.sk };
    },
    failed: () => {
      const server = new ServerHandshake({ hostKey: HOST });
      expectCode(() => server.receiveHello(EX.error), "handshake_refused");
      return { server };
    },
  };

  /** One valid example of each type; for this session where that matters (signatures). */
  function example(t: MessageType, ctx: { keys?: SessionKeys; serverHello?: ServerHello }): Message {
    switch (t) {
      case "client_hello":
        return new ClientHandshake().hello();
      case "server_hello":
        return ctx.serverHello ?? handshake().reply;
      case "register":
        return register(ctx.keys ?? handshake().sk);
      case "login":
        return login(ctx.keys ?? handshake().sk, { password: "pw" });
      case "enroll": {
        // Proves its own device key, as register does (PROTOCOL.md §7.11).
        const keys = ctx.keys ?? handshake().sk;
        return { type: "enroll", user: "alice", device_key: IDENTITY.publicKey, sig: signClientAuth(IDENTITY.secretKey, keys), password: "pw", name: "laptop" };
      }
      default:
        return EX[t];
    }
  }

  const rejection = (t: MessageType): string => (t === "error" ? "handshake_refused" : "handshake_unexpected");

  const clientCells = (Object.keys(clientIn) as ClientState[]).flatMap((s) => MESSAGE_TYPES.map((t) => [s, t] as const));
  test.each(clientCells)("client in %s receives %s", (state, t) => {
    const setup = clientIn[state]();
    const { client } = setup;
    expect(client.state).toBe(state);
    const m = wireValid(example(t, setup));
    const want = state !== "sent_hello" ? "handshake_state" : t === "server_hello" ? "no error" : rejection(t);
    expect(codeOf(() => client.receive(m))).toBe(want);
    if (want === "no error") {
      expect(client.state).toBe("established");
      return;
    }
    expect(client.state).toBe("failed");
    // A failed client refuses even what would have been right, and cannot start over.
    if (setup.correct) expectCode(() => client.receive(setup.correct!), "handshake_state");
    expectCode(() => client.hello(), "handshake_state");
    expect(client.state).toBe("failed");
  });

  /** After a failure nothing works any more: not the step that would have been right, not complete() or retry(). */
  function expectDead(server: ServerHandshake, setup: ServerSetup): void {
    expect(server.state).toBe("failed");
    if (setup.hello) expectCode(() => server.receiveHello(setup.hello!), "handshake_state");
    if (setup.auth) expectCode(() => server.receiveAuth(setup.auth!), "handshake_state");
    expectCode(() => server.receiveAuth(register(handshake().sk)), "handshake_state");
    expectCode(() => server.complete(), "handshake_state");
    expectCode(() => server.retry(), "handshake_state");
    expect(server.state).toBe("failed");
  }

  const serverCells = (Object.keys(serverIn) as ServerState[]).flatMap((s) =>
    (["receiveHello", "receiveAuth"] as const).flatMap((method) => MESSAGE_TYPES.map((t) => [s, method, t] as const)),
  );
  test.each(serverCells)("server in %s: %s(%s)", (state, method, t) => {
    const setup = serverIn[state]();
    const { server } = setup;
    expect(server.state).toBe(state);
    const m = wireValid(example(t, setup));
    const expects = method === "receiveHello" ? "await_hello" : "await_auth";
    const accepts = method === "receiveHello" ? ["client_hello"] : ["register", "login", "check_name", "enroll"];
    const want = state !== expects ? "handshake_state" : accepts.includes(t) ? "no error" : rejection(t);
    expect(codeOf(() => server[method](m))).toBe(want);
    if (want === "no error") {
      expect(server.state).toBe(method === "receiveHello" ? "await_auth" : "checking");
      return;
    }
    expectDead(server, setup);
  });

  const stepCells = (Object.keys(serverIn) as ServerState[]).flatMap((s) => (["complete", "retry"] as const).map((step) => [s, step] as const));
  test.each(stepCells)("server in %s: %s()", (state, step) => {
    const setup = serverIn[state]();
    const { server } = setup;
    expect(server.state).toBe(state);
    const want = state === "checking" ? "no error" : "handshake_state";
    expect(codeOf(() => server[step]())).toBe(want);
    if (want === "no error") {
      expect(server.state).toBe(step === "complete" ? "done" : "await_auth");
      return;
    }
    expectDead(server, setup);
  });

  test("complete() or retry() twice in a row → handshake_state", () => {
    for (const step of ["complete", "retry"] as const) {
      const run = handshake();
      run.server.receiveAuth(register(run.sk));
      run.server[step]();
      expectCode(() => run.server[step](), "handshake_state");
      expect(run.server.state).toBe("failed");
    }
  });

  test("hello() twice → handshake_state, and the client is failed", () => {
    const client = new ClientHandshake();
    const server = new ServerHandshake({ hostKey: HOST });
    const { reply } = server.receiveHello(client.hello());
    expectCode(() => client.hello(), "handshake_state");
    expect(client.state).toBe("failed");
    expectCode(() => client.receive(reply), "handshake_state");
  });

  test("the server cannot be re-run: a second client_hello after the first → handshake_state", () => {
    const server = new ServerHandshake({ hostKey: HOST });
    server.receiveHello(new ClientHandshake().hello());
    expectCode(() => server.receiveHello(new ClientHandshake().hello()), "handshake_state");
    expect(server.state).toBe("failed");
  });
});

describe("client authentication", () => {
  test("a login signature from one handshake does not verify in another", () => {
    const a = handshake();
    const b = handshake();
    const sig = signClientAuth(IDENTITY.secretKey, a.ck);
    expect(verifyClientAuth(IDENTITY.publicKey, a.sk, sig)).toBe(true);
    expect(verifyClientAuth(IDENTITY.publicKey, b.sk, sig)).toBe(false);
    // Same hash, different challenge; and a flipped bit; and another key.
    expect(verifyClientAuth(IDENTITY.publicKey, { handshakeHash: a.sk.handshakeHash, challenge: b.sk.challenge }, sig)).toBe(false);
    expect(verifyClientAuth(IDENTITY.publicKey, a.sk, flipBit(sig, 100))).toBe(false);
    expect(verifyClientAuth(ed25519Generate(r.bytes(32)).publicKey, a.sk, sig)).toBe(false);
    // A signature over the handshake hash alone (without the challenge) is not a login proof.
    const hOnly = ed25519Sign(IDENTITY.secretKey, Buffer.concat([Buffer.from("securechat/1 client auth signature"), Buffer.from([0]), a.sk.handshakeHash]));
    expect(verifyClientAuth(IDENTITY.publicKey, a.sk, hOnly)).toBe(false);
  });

  test("register with a small-order identity key and a 'universal' signature (R = identity, S = 0) → auth_bad_signature", () => {
    const run = handshake();
    const identityPoint = unhex(`01${"00".repeat(31)}`);
    const universal = unhex(`01${"00".repeat(63)}`);
    const m: Register = { ...register(run.sk), identity_key: identityPoint, sig: universal };
    expectCode(() => run.server.receiveAuth(wireValid(m)), "auth_bad_signature");
  });

  test("register carrying a signature transplanted from another session → auth_bad_signature", () => {
    const a = handshake();
    const b = handshake();
    const transplanted: Register = { ...register(b.sk), sig: register(a.sk).sig };
    expectCode(() => b.server.receiveAuth(wireValid(transplanted)), "auth_bad_signature");
    expect(b.server.state).toBe("failed");
    expectCode(() => b.server.receiveAuth(register(b.sk)), "handshake_state");
  });

  test("register signed by a key other than identity_key → auth_bad_signature", () => {
    const run = handshake();
    const other = ed25519Generate(r.bytes(32));
    const m: Register = { ...register(run.sk), sig: signClientAuth(other.secretKey, run.sk) };
    expectCode(() => run.server.receiveAuth(m), "auth_bad_signature");
  });

  test.each([
    ["both password and ticket", { password: "pw", ticket: new Uint8Array(32).fill(7) }],
    ["neither password nor ticket", {}],
    ["a ticket and a ticket_key", { ticket: new Uint8Array(32).fill(7), ticket_key: new Uint8Array(32).fill(8) }],
  ] as const)("login with %s never reaches the handshake: the message layer refuses it (message_invalid)", (_name, extra) => {
    const run = handshake();
    expectCode(() => wireValid(login(run.sk, extra)), "message_invalid");
    expect(run.server.state).toBe("await_auth");
  });
});

describe("a man in the middle", () => {
  /** A client that has sent its hello, and the honest server's reply to it. */
  function pending(): { client: ClientHandshake; hello: ClientHello; reply: ServerHello; fresh: () => ClientHandshake } {
    const eph = x25519Generate(r.bytes(32));
    const nonce = r.bytes(32);
    const fresh = (): ClientHandshake => {
      const c = new ClientHandshake({ ephemeral: eph, nonce });
      c.hello();
      return c;
    };
    const client = new ClientHandshake({ ephemeral: eph, nonce });
    const hello = client.hello();
    const { reply } = new ServerHandshake({ hostKey: HOST }).receiveHello(hello);
    return { client, hello, reply, fresh };
  }

  test("control: signedServerHello() builds a server_hello the client accepts", () => {
    const { client, hello } = pending();
    expect(codeOf(() => client.receive(signedServerHello(hello)))).toBe("no error");
  });

  test("flipping bits of the host signature → handshake_bad_signature", () => {
    const { reply, fresh } = pending();
    const bits = [0, 1, 7, 255, 256, 500, 511, ...Array.from({ length: 9 }, () => r.int(0, 511))];
    const results = bits.map((bit) => {
      const c = fresh();
      const code = codeOf(() => c.receive({ ...reply, sig: flipBit(reply.sig, bit) }));
      return [bit, code, c.state];
    });
    expect(results).toEqual(bits.map((bit) => [bit, "handshake_bad_signature", "failed"]));
    // The untouched reply is fine for the same hello.
    expect(codeOf(() => fresh().receive(reply))).toBe("no error");
  });

  test("a signature by another key over the right transcript (host_key unchanged) → handshake_bad_signature", () => {
    const { client, hello, reply } = pending();
    const mitm = ed25519Generate(r.bytes(32));
    const h = hashServerHello(hashClientHello(initialHash(), hello), reply);
    expectCode(() => client.receive({ ...reply, sig: ed25519Sign(mitm.secretKey, serverSignatureInput(h)) }), "handshake_bad_signature");
  });

  test("host_key replaced by the MITM's, with the MITM's valid signature over a different transcript → handshake_bad_signature", () => {
    const mitm = ed25519Generate(r.bytes(32));
    // (a) The MITM signs the transcript as the honest server sent it (with the real host_key in it).
    {
      const { client, hello, reply } = pending();
      const h = hashServerHello(hashClientHello(initialHash(), hello), reply);
      const forged = { ...reply, host_key: mitm.publicKey, sig: ed25519Sign(mitm.secretKey, serverSignatureInput(h)) };
      expectCode(() => client.receive(forged), "handshake_bad_signature");
    }
    // (b) The MITM replays a reply it got, properly signed by its own key, in its own session with another client hello.
    {
      const { client } = pending();
      const ownHello = new ClientHandshake().hello();
      const forged = signedServerHello(ownHello, {}, mitm);
      expectCode(() => client.receive(forged), "handshake_bad_signature");
    }
    // (c) Even the real server's reply to another client is refused.
    {
      const { client } = pending();
      const { reply } = new ServerHandshake({ hostKey: HOST }).receiveHello(new ClientHandshake().hello());
      expectCode(() => client.receive(reply), "handshake_bad_signature");
    }
  });

  test("a small-order host_key with a 'universal' signature (R = identity, S = 0) → handshake_bad_signature", () => {
    const { client, reply } = pending();
    expectCode(() => client.receive({ ...reply, host_key: unhex(`01${"00".repeat(31)}`), sig: unhex(`01${"00".repeat(63)}`) }), "handshake_bad_signature");
  });

  test("a MITM that re-signs everything with its own key is accepted by the handshake but shows its own hostKey (the caller must pin)", () => {
    const { client, hello } = pending();
    const mitm = ed25519Generate(r.bytes(32));
    const keys = client.receive(signedServerHello(hello, {}, mitm));
    expect(hex(keys.hostKey)).toBe(hex(mitm.publicKey));
    expect(hex(keys.hostKey)).not.toBe(hex(HOST.publicKey));
  });

  test.each([
    ["e (the MITM's own ephemeral)", "e"],
    ["challenge", "challenge"],
    ["host_key (another real key)", "host_key"],
    ["rekey_records (still in bounds)", "rekey_records"],
    ["rekey_bytes (still in bounds)", "rekey_bytes"],
  ] as const)("server_hello with %s replaced and not re-signed → handshake_bad_signature", (_name, field) => {
    const { client, reply } = pending();
    const replacement = {
      e: x25519Generate(r.bytes(32)).publicKey,
      challenge: r.bytes(32),
      host_key: ed25519Generate(r.bytes(32)).publicKey,
      rekey_records: reply.rekey_records === 1 ? 2 : 1,
      rekey_bytes: reply.rekey_bytes === 1 ? 2 : 1,
    }[field];
    expectCode(() => client.receive({ ...reply, [field]: replacement }), "handshake_bad_signature");
    expect(client.state).toBe("failed");
  });

  test("a client_hello altered on its way to the server (nonce or e) → the client refuses the reply", () => {
    for (const field of ["nonce", "e"] as const) {
      const client = new ClientHandshake();
      const hello = client.hello();
      const altered = { ...hello, [field]: field === "e" ? x25519Generate(r.bytes(32)).publicKey : r.bytes(32) };
      const { reply } = new ServerHandshake({ hostKey: HOST }).receiveHello(altered);
      expectCode(() => client.receive(reply), "handshake_bad_signature");
    }
  });
});

describe("ephemeral keys, versions, parameters", () => {
  const LOW_ORDER: [string, string][] = [
    ["zero", "0000000000000000000000000000000000000000000000000000000000000000"],
    ["one", "0100000000000000000000000000000000000000000000000000000000000000"],
    ["order 8", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"],
    ["order 8 (other)", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"],
    ["p − 1 (order 2)", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
    ["p (= 0)", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
    ["p + 1 (= 1)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"],
    ["zero with the top bit set", "0000000000000000000000000000000000000000000000000000000000000080"],
  ];

  test.each(LOW_ORDER)("low-order e in client_hello (%s) → server throws x25519_low_order", (_name, e) => {
    const server = new ServerHandshake({ hostKey: HOST });
    const hello = wireValid({ ...new ClientHandshake().hello(), e: unhex(e) });
    expectCode(() => server.receiveHello(hello), "x25519_low_order");
    expect(server.state).toBe("failed");
  });

  test("validate before spending: the low-order check comes before the host signature", () => {
    // A host key whose secret cannot sign (wrong length → ed25519_length): if the server signed first,
    // a low-order hello would report ed25519_length; it must report x25519_low_order.
    const unsignable: Ed25519KeyPair = { publicKey: HOST.publicKey, secretKey: new Uint8Array(5) };
    const lowOrder = wireValid({ ...new ClientHandshake().hello(), e: unhex(LOW_ORDER[2]![1]) });
    expectCode(() => new ServerHandshake({ hostKey: unsignable }).receiveHello(lowOrder), "x25519_low_order");
    // Control: with an honest hello the same server does reach the signature.
    expectCode(() => new ServerHandshake({ hostKey: unsignable }).receiveHello(new ClientHandshake().hello()), "ed25519_length");
    // …and a foreign version is refused before either.
    expectCode(() => new ServerHandshake({ hostKey: unsignable }).receiveHello({ ...(lowOrder as ClientHello), version: 2 }), "handshake_version");
  });

  test.each(LOW_ORDER)("low-order e in a properly signed server_hello (%s) → client throws x25519_low_order", (_name, e) => {
    const client = new ClientHandshake();
    const hello = client.hello();
    const reply = wireValid(signedServerHello(hello, { e: unhex(e) }));
    expectCode(() => client.receive(reply), "x25519_low_order");
    expect(client.state).toBe("failed");
  });

  test.each([0, 2, 0xffff])("client_hello version %p → server throws handshake_version", (v) => {
    const server = new ServerHandshake({ hostKey: HOST });
    expectCode(() => server.receiveHello({ ...new ClientHandshake().hello(), version: v }), "handshake_version");
    expect(server.state).toBe("failed");
  });

  test.each([0, 2, 0xffff])("properly signed server_hello version %p → client throws handshake_version", (v) => {
    const client = new ClientHandshake();
    const hello = client.hello();
    expectCode(() => client.receive(signedServerHello(hello, { version: v })), "handshake_version");
    expect(client.state).toBe("failed");
  });

  test.each([
    ["rekey_records 0", { rekey_records: 0 }],
    ["rekey_records MAX_REKEY_RECORDS + 1", { rekey_records: MAX_REKEY_RECORDS + 1 }],
    ["rekey_bytes 0", { rekey_bytes: 0 }],
    ["rekey_bytes MAX_REKEY_BYTES + 1", { rekey_bytes: MAX_REKEY_BYTES + 1 }],
    ["rekey_records 2^53 − 1", { rekey_records: Number.MAX_SAFE_INTEGER }],
  ] as const)("properly signed server_hello with %s → client throws handshake_parameters", (_name, fields) => {
    const client = new ClientHandshake();
    const hello = client.hello();
    expectCode(() => client.receive(signedServerHello(hello, fields)), "handshake_parameters");
    expect(client.state).toBe("failed");
  });

  test.each([
    ["1 / 1", { rekey_records: 1, rekey_bytes: 1 }],
    ["MAX_REKEY_RECORDS / MAX_REKEY_BYTES", { rekey_records: MAX_REKEY_RECORDS, rekey_bytes: MAX_REKEY_BYTES }],
  ] as const)("rekey limits at the bounds (%s) are accepted", (_name, fields) => {
    const client = new ClientHandshake();
    const hello = client.hello();
    const keys = client.receive(signedServerHello(hello, fields));
    expect(keys.rekey).toEqual({ records: fields.rekey_records, bytes: fields.rekey_bytes });
  });

  test.each([
    ["records 0", { records: 0, bytes: 1 }],
    ["records MAX_REKEY_RECORDS + 1", { records: MAX_REKEY_RECORDS + 1, bytes: 1 }],
    ["bytes 0", { records: 1, bytes: 0 }],
    ["bytes MAX_REKEY_BYTES + 1", { records: 1, bytes: MAX_REKEY_BYTES + 1 }],
  ] as const)("a server configured with rekey %s refuses to start: handshake_parameters", (_name, rekey) => {
    expectCode(() => new ServerHandshake({ hostKey: HOST, rekey }), "handshake_parameters");
  });
});
