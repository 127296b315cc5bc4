/**
 * The client's side of a connection: Bun.connect → frames as promises, and
 * the handshake driver (docs/PROTOCOL.md §4) that checks the pinned host key
 * before anything secret is sent.
 */
import type { Socket } from "bun";
import { isIPv6 } from "node:net";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { fingerprint } from "../fingerprint.ts";
import { Framed } from "../net/framed.ts";
import { SecureChannel } from "../protocol/channel.ts";
import { encodeFrame } from "../protocol/framing.ts";
import { ClientHandshake } from "../protocol/handshake.ts";
import type { SessionKeys } from "../protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../protocol/limits.ts";
import { type Message, decodeMessage, encodeMessage, encodeMessageBytes, joinRecordPayload, splitRecordPayload } from "../protocol/messages.ts";
import { wipe } from "../crypto/index.ts";
import { quotedAscii } from "../text.ts";
import { isHostKeyFailure } from "./failures.ts";
import { addKnownHost, checkHost } from "./known_hosts.ts";
import { promptYesNo, stdinIsTerminal } from "./prompt.ts";

export const DEFAULT_PORT = 7447;

export interface ServerAddress {
  host: string;
  port: number;
  /** `HOST:PORT`, the key in known_hosts and the account directory name. */
  id: string;
}

export function parseServerAddress(s: string): ServerAddress {
  // A DNS name or IPv4 address, or a bracketed IPv6 address; then an optional port.
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?))(?::(\d{1,5}))?$/.exec(s.trim());
  const port = m?.[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && !isIPv6(m[1]))) {
    throw new SecureChatError("bad_server_address", `"${s}" is not a server address`);
  }
  const host = (m[1] ?? m[2]!).toLowerCase();
  return { host, port, id: `${m[1] ? `[${host}]` : host}:${port}` };
}

/** Frames from one TCP connection, delivered as promises. */
export class FrameStream {
  readonly #bodies: Uint8Array[] = [];
  #waiter: { resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | null = null;
  #ended: Error | null = null;
  framed!: Framed;

  static async connect(addr: ServerAddress, timeoutMs: number): Promise<FrameStream> {
    const stream = new FrameStream();
    const connecting = Bun.connect<FrameStream>({
      hostname: addr.host,
      port: addr.port,
      data: stream,
      socket: {
        open(socket) {
          stream.framed = new Framed(socket as Socket<unknown>, MAX_FRAME_PRELOGIN, {
            frame: (body) => stream.#deliver(body),
            error: (e) => {
              stream.#end(e instanceof Error ? e : new Error(String(e)));
              stream.framed.close("bad frame");
            },
            closed: (reason) => stream.#end(new SecureChatError("connection_closed", `connection: ${reason}`)),
          });
        },
        data: (_s, chunk) => stream.framed.receive(chunk),
        drain: () => stream.framed.drain(),
        close: () => stream.framed?.socketClosed("server closed the connection"),
        error: (_s, e) => stream.framed?.socketClosed(`socket error: ${e.message}`),
      },
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        connecting,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new SecureChatError("connect_timeout", `connection: no answer from ${addr.id} within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (e) {
      if (isSecureChatError(e)) throw e;
      throw new SecureChatError("connect_failed", `connection: cannot connect to ${addr.id}: ${(e as Error).message}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
    return stream;
  }

  #deliver(body: Uint8Array): void {
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      w.resolve(body);
    } else this.#bodies.push(body);
  }

  #end(e: Error): void {
    if (this.#ended) return;
    this.#ended = e;
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(e);
  }

  /** The next frame body; rejects when the connection ends or after `timeoutMs` (Infinity: never). */
  next(timeoutMs: number): Promise<Uint8Array> {
    const b = this.#bodies.shift();
    if (b) return Promise.resolve(b);
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            this.#waiter = null;
            reject(new SecureChatError("server_timeout", `connection: no answer from the server within ${timeoutMs} ms`));
          }, timeoutMs)
        : undefined;
      this.#waiter = {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  /** Stops reading from the socket: the server's further frames wait in the kernel, then in the server. */
  pauseReading(): void {
    this.framed.socket.pause();
  }

  resumeReading(): void {
    this.framed.socket.resume();
  }

  send(frame: Uint8Array): void {
    if (!this.framed.send(frame)) throw this.#ended ?? new SecureChatError("connection_closed", "connection: closed");
  }

  close(): void {
    this.framed.end();
  }
}

export interface HostTrust {
  /** `--accept-new-host`: pin an unknown server's key without asking. */
  acceptNew: boolean;
}

/**
 * Enforces the pin (docs/DESIGN.md §5): unknown → ask or --accept-new-host; changed →
 * exit 4, never a prompt. Returns true if a person was asked (which may have
 * taken longer than the server's handshake deadline).
 */
async function trustHost(addr: ServerAddress, hostKey: Uint8Array, trust: HostTrust): Promise<boolean> {
  const check = checkHost(addr.id, hostKey);
  if (check.status === "known") return false;
  const fp = fingerprint(hostKey);
  if (check.status === "changed") {
    throw new SecureChatError("host_key_changed", `the host key of ${addr.id} has changed (now ${fp}); someone may be intercepting this connection`, {
      detail: { line: check.line, path: check.path },
    });
  }
  if (!trust.acceptNew) {
    if (!stdinIsTerminal()) {
      throw new SecureChatError("host_key_unknown", `${addr.id} is not a known host (its key is ${fp})`);
    }
    process.stderr.write(`The authenticity of ${addr.id} can't be established.\nIts host key fingerprint is ${fp}.\n`);
    if (!(await promptYesNo("Do you trust this key and want to continue?"))) {
      throw new SecureChatError("host_key_rejected", `host key of ${addr.id} not accepted`);
    }
  }
  addKnownHost(addr.id, hostKey);
  process.stderr.write(`Added ${addr.id} (${fp}) to the known hosts.\n`);
  return !trust.acceptNew;
}

/** An established, not yet authenticated session. */
export class ClientSession {
  constructor(
    readonly addr: ServerAddress,
    readonly stream: FrameStream,
    readonly keys: SessionKeys,
    readonly channel: SecureChannel,
    readonly timeoutMs: number,
  ) {}

  /**
   * Seals messages into one record. The plaintext (a login's password, a
   * ticket) is wiped once sealed; the JSON strings it was made from cannot be.
   */
  send(...messages: Message[]): void {
    const plaintext = joinRecordPayload(messages.map(encodeMessage));
    let frame: Uint8Array;
    try {
      frame = this.channel.sealer.seal(plaintext);
    } finally {
      wipe(plaintext);
    }
    this.stream.send(frame);
  }

  /** Opens one record; its plaintext (a welcome's ticket) is wiped once decoded into messages. */
  async receive(timeoutMs = this.timeoutMs): Promise<Message[]> {
    const plaintext = this.channel.opener.open(await this.stream.next(timeoutMs));
    try {
      return splitRecordPayload(plaintext).map((part) => decodeMessage(part));
    } finally {
      wipe(plaintext);
    }
  }

  /** After `welcome`, the client may send frames up to the post-login limit. */
  loggedIn(): void {
    this.channel.sealer.maxFrame = MAX_FRAME;
  }

  close(): void {
    this.channel.close();
    this.stream.close();
  }
}

/**
 * A cleartext `error` in place of `server_hello`. Nothing authenticates it:
 * the server's refusals (busy, rate limited, shutting down) come this way,
 * and so can anything a man in the middle sends (PROTOCOL.md §4.4, §10). So
 * it is shown as what it is — labelled as unverified, its code and text as
 * one ASCII string literal that cannot hold a line break — and no hint is
 * taken from it.
 */
function unauthenticatedError(m: Message<"error">): SecureChatError {
  const said = quotedAscii(`${m.code}: ${m.message}`);
  return new SecureChatError("handshake_refused", `error from an unauthenticated peer (not verified as the server): ${said}`);
}

/** A server that fails to prove its host key, said for a person; the code is kept. */
function proven<T>(step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (isSecureChatError(e) && isHostKeyFailure(e)) throw new SecureChatError(e.code, "the server failed to prove its host key; someone may be intercepting this connection", { cause: e });
    throw e;
  }
}

export async function handshake(addr: ServerAddress, trust: HostTrust, timeoutMs = 10_000): Promise<ClientSession> {
  const stream = await FrameStream.connect(addr, timeoutMs);
  try {
    const hs = new ClientHandshake();
    stream.send(encodeFrame(encodeMessageBytes(hs.hello()), MAX_FRAME_PRELOGIN));
    const first = decodeMessage(await stream.next(timeoutMs));
    if (first.type === "error") throw unauthenticatedError(first);
    const keys = proven(() => hs.receive(first));
    try {
      // Records from the server may use the post-login limit (PROTOCOL.md §2): a
      // server may send a large record right behind `welcome`, in the same read.
      stream.framed.decoder.limit = MAX_FRAME;
      const asked = await trustHost(addr, keys.hostKey, trust);
      if (asked && stream.framed.isClosed) {
        // The server's deadline ran out while a person read the fingerprint:
        // connect again; the key is pinned now and must match.
        return await handshake(addr, { acceptNew: false }, timeoutMs);
      }
      return new ClientSession(addr, stream, keys, new SecureChannel(keys, "client", MAX_FRAME_PRELOGIN), timeoutMs);
    } finally {
      // The channel holds its own copies and erases each on rekey; the initial record
      // keys left in `keys` would open every record of the session, so they go now.
      wipe(keys.c2s, keys.s2c);
    }
  } catch (e) {
    stream.close();
    throw e;
  }
}
