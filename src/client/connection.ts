/**
 * The client's handshake driver (docs/PROTOCOL.md §4): connects
 * (src/net/framestream.ts), checks the server's host key against the pin
 * (src/client/hosttrust.ts) before anything secret is sent, and hands back
 * the session, whose records the channel seals and opens.
 */
import { isIPv6 } from "node:net";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { FrameStream } from "../net/framestream.ts";
import { SecureChannel } from "../protocol/channel.ts";
import { encodeFrame } from "../protocol/framing.ts";
import { ClientHandshake } from "../protocol/handshake.ts";
import type { SessionKeys } from "../protocol/session.ts";
import { MAX_FRAME, MAX_FRAME_PRELOGIN } from "../protocol/limits.ts";
import { type Message, decodeMessage, encodeMessageBytes } from "../protocol/messages.ts";
import { wipe } from "../crypto/index.ts";
import { quotedAscii } from "../text.ts";
import { isHostKeyFailure } from "./failures.ts";
import { type HostTrust, trustHost } from "./hosttrust.ts";

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
    this.stream.send(this.channel.sealSecret(messages));
  }

  /** Opens one record; its plaintext (a welcome's ticket) is wiped once decoded into messages. */
  async receive(timeoutMs = this.timeoutMs): Promise<Message[]> {
    return this.channel.openSecret(await this.stream.next(timeoutMs));
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
  const stream = await FrameStream.connect(addr, MAX_FRAME_PRELOGIN, timeoutMs);
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
