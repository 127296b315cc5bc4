/**
 * Login-rate benchmark children (bench/load.ts --logins), and the one
 * securechat client connection the idle and login benches share.
 *
 *   bun run bench/load/logins.ts server --data DIR --users N --pw-users K --creds FILE
 *     The real server, configured as bench/load/server.ts configures it, with
 *     N ticket accounts (one ticket each, as server.ts) and K password
 *     accounts whose verifiers are real argon2id hashes (Bun.password.hash
 *     with the server's ARGON2 parameters). Writes the credentials to FILE,
 *     then prints {"port": P}. SIGTERM stops it.
 *
 *   bun run bench/load/logins.ts client --port P --creds FILE --kind ticket|password
 *       [--concurrency 16] [--warmup MS] [--seconds S]
 *     `concurrency` workers each loop: connect, handshake, log in, wait for
 *     the welcome, close. After --warmup ms prints a mark, another after
 *     --seconds s: {"event":"mark","t":ms,"logins":n,"failures":n}; then
 *     {"event":"done"}. The parent reads the server's CPU at each mark.
 *
 *   bun run bench/load/logins.ts client --port P --kind tls [--ca FILE] [...as above]
 *     The baseline for ticket logins: the same loop, each connection a TLS
 *     handshake with the Bun TLS relay (bench/load/tls.ts; ECDHE + ECDSA
 *     P-256, no session resumption), closed once the handshake is done.
 */
import { writeFileSync } from "node:fs";
import type { Socket } from "bun";
import { fromHex, toHex } from "../../src/bytes.ts";
import { ed25519Generate } from "../../src/crypto/index.ts";
import { normalizePassword } from "../../src/password.ts";
import { SecureChannel } from "../../src/protocol/channel.ts";
import { FrameDecoder, encodeFrame } from "../../src/protocol/framing.ts";
import { ClientHandshake, signClientAuth } from "../../src/protocol/handshake.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../../src/protocol/limits.ts";
import { type Message, decodeMessage, encodeMessageBytes, splitRecordPayload } from "../../src/protocol/messages.ts";
import { ARGON2 } from "../../src/server/accounts.ts";
import { startBenchServer } from "./benchserver.ts";
import { type BenchCred, ROOM, emit, intArg, parseArgs, strArg } from "./common.ts";

/** A password account: the identity key signs the handshake, the password is checked with argon2id. */
export interface PasswordCred {
  user: string;
  password: string;
  identityKey: string;
}

export interface LoginCreds {
  ticket: BenchCred[];
  password: PasswordCred[];
}

/**
 * One securechat client connection: handshake, ticket or password login,
 * optionally a join of room "bench"; then it answers pings and otherwise
 * stays idle. `ready` settles once logged in (and joined, if asked), or
 * rejects if the connection fails or closes first.
 */
export class BenchConn {
  socket: Socket<undefined> | null = null;
  channel: SecureChannel | null = null;
  readonly decoder = new FrameDecoder(MAX_FRAME);
  readonly hs = new ClientHandshake();
  closed = false;
  readonly ready: Promise<void>;
  #resolve!: () => void;
  #reject!: (e: Error) => void;
  #settled = false;

  constructor(
    readonly port: number,
    readonly cred: BenchCred | PasswordCred,
    readonly join: boolean,
    /** Sees every message after the welcome that BenchConn does not handle itself (bench/history.ts). */
    readonly onMessage: (m: Message) => void = () => {},
  ) {
    this.ready = new Promise<void>((res, rej) => {
      this.#resolve = res;
      this.#reject = rej;
    });
    this.ready.catch(() => {});
  }

  #settle(err?: string): void {
    if (this.#settled) return;
    this.#settled = true;
    if (err === undefined) this.#resolve();
    else this.#reject(new Error(err));
  }

  /** Starts connecting; await `ready` for the outcome. */
  start(): this {
    Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port: this.port,
      socket: {
        data: (_s, chunk) => this.#receive(chunk),
        close: () => this.#onClose("closed"),
        end: () => this.#onClose("ended"),
        error: (_s, e) => this.#onClose(`socket error: ${String(e)}`),
        connectError: (_s, e) => this.#onClose(`connect error: ${String(e)}`),
      },
    }).then(
      (s) => {
        this.socket = s;
        if (this.closed) {
          s.terminate();
          return;
        }
        s.write(encodeFrame(encodeMessageBytes(this.hs.hello()), MAX_FRAME_PRELOGIN));
      },
      (e) => this.#onClose(`connect failed: ${String(e)}`),
    );
    return this;
  }

  #onClose(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.#settle(`${this.cred.user}: ${why} before login${this.join ? " and join" : ""}`);
  }

  #receive(chunk: Uint8Array): void {
    try {
      this.decoder.feed(chunk, (body) => this.#frame(body));
    } catch (e) {
      this.#settle(`${this.cred.user}: ${String(e)}`);
      this.close();
    }
  }

  #frame(body: Uint8Array): void {
    if (!this.channel) {
      const keys = this.hs.receive(decodeMessage(body));
      this.channel = new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN);
      const c = this.cred;
      const login =
        "ticket" in c
          ? { type: "login" as const, user: c.user, sig: signClientAuth(fromHex(c.ticketKey), keys), ticket: fromHex(c.ticket) }
          : { type: "login" as const, user: c.user, sig: signClientAuth(fromHex(c.identityKey), keys), password: c.password };
      this.socket!.write(this.channel.seal([login]));
      return;
    }
    for (const part of splitRecordPayload(this.channel.opener.open(body))) {
      const m = decodeMessage(part);
      switch (m.type) {
        case "welcome":
          this.channel.sealer.maxFrame = MAX_FRAME;
          if (this.join) this.socket!.write(this.channel.seal([{ type: "join", room: ROOM }]));
          else this.#settle();
          break;
        case "history_end":
          if (m.room === ROOM) this.#settle();
          break;
        case "ping":
          this.socket!.write(this.channel.seal([{ type: "pong" }]));
          break;
        case "error":
          this.#settle(`${this.cred.user}: server error ${m.code}: ${m.message}`);
          break;
        default:
          this.onMessage(m);
          break;
      }
    }
  }

  /** Sends requests in one record (after `ready`). */
  send(requests: Message[]): void {
    this.socket!.write(this.channel!.seal(requests));
  }

  close(): void {
    this.closed = true;
    this.socket?.terminate();
  }
}

// ---------------------------------------------------------------------------
// server role

async function serverMain(args: Map<string, string>): Promise<void> {
  const dataDir = strArg(args, "data");
  const users = intArg(args, "users");
  const pwUsers = intArg(args, "pw-users", 0);
  const credsPath = strArg(args, "creds");

  const server = await startBenchServer(dataDir);

  const now = Date.now();
  const creds: LoginCreds = { ticket: [], password: [] };
  // argon2id hashes first (async, off the transaction), then one transaction.
  const pw: { cred: PasswordCred; publicKey: Uint8Array; verifier: string }[] = [];
  for (let i = 0; i < pwUsers; i++) {
    const user = `benchpw${String(i).padStart(3, "0")}`;
    const password = `correct horse battery ${toHex(crypto.getRandomValues(new Uint8Array(6)))}`;
    const identity = ed25519Generate();
    const verifier = await Bun.password.hash(normalizePassword(password), ARGON2);
    pw.push({ cred: { user, password, identityKey: toHex(identity.secretKey) }, publicKey: identity.publicKey, verifier });
  }
  const issued: Promise<void>[] = [];
  server.store.db.transaction(() => {
    for (let i = 0; i < users; i++) {
      const user = `bench${String(i).padStart(4, "0")}`;
      const identity = ed25519Generate();
      if (!server.store.createAccount({ name: user, identityKey: identity.publicKey, verifier: "bench-no-password-logins", createdAt: now })) {
        throw new Error(`bench/load/logins: account ${user} exists`);
      }
      const ticketKey = ed25519Generate();
      // securechat.db stores the ticket at the call, inside this transaction; the promise only hands it over.
      issued.push(server.accounts.issueTicket(user, ticketKey.publicKey, now, identity.publicKey, "127.0.0.1").then(({ ticket }) => void creds.ticket.push({ user, ticket: toHex(ticket), ticketKey: toHex(ticketKey.secretKey) })));
    }
    for (const p of pw) {
      if (!server.store.createAccount({ name: p.cred.user, identityKey: p.publicKey, verifier: p.verifier, createdAt: now })) {
        throw new Error(`bench/load/logins: account ${p.cred.user} exists`);
      }
      creds.password.push(p.cred);
    }
  })();
  await Promise.all(issued);
  // The dummy verifier is made lazily; make it now so no login pays for it.
  await server.accounts.warm();
  writeFileSync(credsPath, JSON.stringify(creds));
  emit({ port: server.port });
}

// ---------------------------------------------------------------------------
// client role

/** One TLS connection to P, closed once its handshake is done; rejects on failure. */
function tlsHandshake(port: number, ca: string | undefined): { ready: Promise<void>; close(): void } {
  let sock: Socket<undefined> | null = null;
  let closed = false;
  let settle!: (err?: string) => void;
  const ready = new Promise<void>((resolve, reject) => {
    let settled = false;
    settle = (err) => {
      if (settled) return;
      settled = true;
      if (err === undefined) resolve();
      else reject(new Error(err));
    };
  });
  ready.catch(() => {});
  Bun.connect<undefined>({
    hostname: "127.0.0.1",
    port,
    tls: ca !== undefined ? { ca } : { rejectUnauthorized: false },
    socket: {
      data: () => {},
      handshake: (_s, ok, err) => settle(ok || ca === undefined ? undefined : `TLS handshake: ${String(err?.message ?? err)}`),
      close: () => settle("closed before the TLS handshake"),
      end: () => settle("ended before the TLS handshake"),
      error: (_s, e) => settle(`socket error: ${String(e)}`),
      connectError: (_s, e) => settle(`connect error: ${String(e)}`),
    },
  }).then(
    (s) => {
      sock = s;
      if (closed) s.terminate();
    },
    (e) => settle(`connect failed: ${String(e)}`),
  );
  return {
    ready,
    close: () => {
      closed = true;
      sock?.terminate();
    },
  };
}

async function clientMain(args: Map<string, string>): Promise<void> {
  const port = intArg(args, "port");
  const kind = strArg(args, "kind");
  const concurrency = intArg(args, "concurrency", 16);
  const warmupMs = intArg(args, "warmup", 1000);
  const seconds = intArg(args, "seconds", 5);
  const caFile = args.get("ca");
  const ca = caFile !== undefined ? await Bun.file(caFile).text() : undefined;
  const all: LoginCreds = kind === "tls" ? { ticket: [], password: [] } : (JSON.parse(await Bun.file(strArg(args, "creds")).text()) as LoginCreds);
  const creds: (BenchCred | PasswordCred)[] = kind === "ticket" ? all.ticket : kind === "password" ? all.password : [];
  if (creds.length === 0 && kind !== "tls") throw new Error(`bench/load/logins: no ${kind} accounts`);

  let logins = 0;
  let failures = 0;
  let firstError: string | null = null;
  let running = true;
  const open = new Set<{ ready: Promise<void>; close(): void }>();
  const worker = async (w: number): Promise<void> => {
    let k = w;
    while (running) {
      const conn = kind === "tls" ? tlsHandshake(port, ca) : new BenchConn(port, creds[k % creds.length]!, false).start();
      k += concurrency;
      open.add(conn);
      const timeout = setTimeout(() => conn.close(), 30_000);
      try {
        await conn.ready;
        logins++;
      } catch (e) {
        // Connections cut short by the end of the run are not failures.
        if (running) {
          failures++;
          firstError ??= String(e instanceof Error ? e.message : e);
        }
      } finally {
        clearTimeout(timeout);
        conn.close();
        open.delete(conn);
      }
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  const mark = (): void => emit({ event: "mark", t: performance.now(), logins, failures });
  await Bun.sleep(warmupMs);
  mark();
  await Bun.sleep(seconds * 1000);
  mark();
  running = false;
  for (const c of open) c.close();
  await Promise.race([Promise.all(workers), Bun.sleep(5000)]);
  emit({ event: "done", error: firstError });
}

if (import.meta.main) {
  try {
    const [role, ...rest] = Bun.argv.slice(2);
    const args = parseArgs(rest);
    if (role === "server") await serverMain(args);
    else if (role === "client") {
      await clientMain(args);
      process.exit(0);
    } else throw new Error(`bench/load/logins: first argument must be server or client, got ${String(role)}`);
  } catch (e) {
    emit({ event: "error", error: String(e instanceof Error ? e.message : e) });
    process.exit(1);
  }
}
