/**
 * The client's handshake driver (docs/PROTOCOL.md §4): connects
 * (src/net/framestream.ts), checks the server's host key against the pin
 * (src/client/hosttrust.ts) before anything secret is sent, and hands back
 * the session, whose records the channel seals and opens.
 */
import { lookup } from "node:dns/promises";
import { isIP, isIPv6 } from "node:net";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { type Endpoint, FrameStream } from "../net/framestream.ts";
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
  /**
   * A cluster given as several addresses (`a:7447,b:7447`): every one, in the
   * order given, this address (the first) included. Absent for one address.
   * The cluster is named by the first (`id`): one pin, one account directory.
   */
  all?: Endpoint[];
}

function parseOne(s: string): Endpoint {
  // A DNS name or IPv4 address, or a bracketed IPv6 address; then an optional port.
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?))(?::(\d{1,5}))?$/.exec(s.trim());
  const port = m?.[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && !isIPv6(m[1]))) {
    throw new SecureChatError("bad_server_address", `"${s}" is not a server address`);
  }
  const host = (m[1] ?? m[2]!).toLowerCase();
  return { host, port, id: `${m[1] ? `[${host}]` : host}:${port}` };
}

/** At most this many addresses in one `--server` list. */
export const MAX_SERVER_ADDRESSES = 16;

/** `HOST:PORT`, or a cluster's addresses separated by commas (`a:7447,b:7447`); a repeated one counts once. */
export function parseServerAddress(s: string): ServerAddress {
  const parts = s.split(",");
  if (parts.length > MAX_SERVER_ADDRESSES) throw new SecureChatError("bad_server_address", `"${s}": more than ${MAX_SERVER_ADDRESSES} server addresses`);
  const all: Endpoint[] = [];
  for (const p of parts) {
    const e = parseOne(p);
    if (!all.some((a) => a.id === e.id)) all.push(e);
  }
  const first = all[0]!;
  return all.length === 1 ? first : { ...first, all };
}

/** The address as a person gives it back: `HOST:PORT`, or the list (config.toml, hints). */
export function serverAddressText(addr: ServerAddress): string {
  return (addr.all ?? [addr]).map((e) => e.id).join(",");
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

/**
 * What makes one address worth leaving for the next: it could not be
 * reached, it went silent or closed, or it refused in clear (busy, shutting
 * down). A host key that is not the pin is never among them: that is exit 4
 * at once, not a quiet skip to another address (PROTOCOL.md §4.4).
 */
const TRY_NEXT = new Set(["connect_failed", "connect_timeout", "connection_closed", "server_timeout", "handshake_refused"]);

/** The addresses a host name stands for; [] when it does not resolve (the connection then says why, by name). */
export type Resolve = (host: string) => Promise<string[]>;

export const resolveAll: Resolve = async (host) => {
  try {
    return (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return [];
  }
};

/** Per cluster (its `id`): the address that completed the last handshake, where the next one starts. */
const lastWorked = new Map<string, Endpoint>();

/** A name with several A/AAAA records stands for each of them, in the resolver's order; one record, or none, keeps the name. */
async function expand(e: Endpoint, resolve: Resolve): Promise<Endpoint[]> {
  if (isIP(e.host) !== 0) return [e];
  const ips = [...new Set(await resolve(e.host))];
  if (ips.length < 2) return [e];
  return ips.map((ip) => ({ host: ip, port: e.port, id: `${e.id} (${ip})` }));
}

/** Every address of `addr`, lazily resolved: the one that worked last first, then the others in the order given. */
async function* candidates(addr: ServerAddress, resolve: Resolve): AsyncGenerator<Endpoint> {
  const last = lastWorked.get(addr.id);
  if (last) yield last;
  for (const given of addr.all ?? [addr]) {
    for (const e of await expand(given, resolve)) if (e.id !== last?.id) yield e;
  }
}

/** One address's failure, said with the address in front (once). */
function failedAt(e: Endpoint, err: Error): string {
  return `${e.id}: ${err.message.replace(`cannot connect to ${e.id}: `, "")}`;
}

/**
 * Connects to the server, or the first address of a cluster that answers
 * (docs/PROTOCOL.md §4.4): each address with the connect timeout, in order,
 * starting from the one that worked last. The host key is checked against
 * the pin of the cluster's name (its first address), the same on all.
 */
export async function handshake(addr: ServerAddress, trust: HostTrust, timeoutMs = 10_000, resolve: Resolve = resolveAll): Promise<ClientSession> {
  const failures: { at: Endpoint; error: SecureChatError }[] = [];
  for await (const at of candidates(addr, resolve)) {
    try {
      const session = await handshakeAt(at, addr, trust, timeoutMs);
      lastWorked.set(addr.id, at);
      return session;
    } catch (e) {
      if (!isSecureChatError(e) || !TRY_NEXT.has(e.code)) throw e;
      failures.push({ at, error: e });
    }
  }
  if (failures.length === 1) throw failures[0]!.error;
  const first = failures[0]!;
  const reasons = new Set(failures.map((f) => String(f.error.detail.reason ?? f.error.code)));
  throw new SecureChatError("connect_failed", `cannot connect to any of the ${failures.length} addresses of ${addr.id}: ${failures.map((f) => failedAt(f.at, f.error)).join("; ")}`, {
    cause: first.error,
    detail: { host: first.at.host, port: first.at.port, reason: reasons.size === 1 ? [...reasons][0]! : "several" },
  });
}

/** One handshake with the server at `at`, its key checked against the pin of `addr`. */
async function handshakeAt(at: Endpoint, addr: ServerAddress, trust: HostTrust, timeoutMs: number): Promise<ClientSession> {
  const stream = await FrameStream.connect(at, MAX_FRAME_PRELOGIN, timeoutMs);
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
        return await handshakeAt(at, addr, { acceptNew: false }, timeoutMs);
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
