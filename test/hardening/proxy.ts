/**
 * A frame-aware TCP proxy for man-in-the-middle tests (docs/PROTOCOL.md §2):
 * it listens on 127.0.0.1:0, opens one upstream connection to the server per
 * accepted client, splits each direction into frames (u32be length ‖ body)
 * and asks a per-direction hook what to do with each frame:
 *
 *   pass                 forward unchanged
 *   flip                 forward with one bit flipped (header, ciphertext or tag)
 *   drop                 forward nothing
 *   replay               forward it twice
 *   swap                 hold it and forward it right after the next frame
 *   replace              forward other bytes instead (e.g. a re-encoded hello)
 *
 * A hook may also answer the sender directly (`ctx.reply`), which is how a
 * proxy plays the server toward the client. Every socket is closed by its
 * own handle (`close()`).
 */
import type { Socket, TCPSocketListener } from "bun";

export type Dir = "c2s" | "s2c";

/** Where to flip a bit: the 4-byte header, the ciphertext, or the 16-byte GCM tag (the last 16 bytes). */
export type FlipWhere = "header" | "ciphertext" | "tag";

export type Action =
  | { kind: "pass" }
  | { kind: "flip"; where: FlipWhere }
  | { kind: "drop" }
  | { kind: "replay" }
  | { kind: "swap" }
  | { kind: "replace"; frames: Uint8Array[] };

export const PASS: Action = { kind: "pass" };

export interface FrameInfo {
  dir: Dir;
  /** 0-based index of this frame among the frames the sender sent in this direction. */
  index: number;
  /** The whole frame: header ‖ body. */
  frame: Uint8Array;
  body: Uint8Array;
}

export interface HookContext {
  /** Writes bytes back to whoever sent the frame (toward the client for c2s). */
  reply(bytes: Uint8Array): void;
}

export type Hook = (f: FrameInfo, ctx: HookContext) => Action;

/** Flips one bit of a copy of `frame`: bit 0 of the last header byte, the first body byte, or the last byte (in the tag). */
export function flipBit(frame: Uint8Array, where: FlipWhere): Uint8Array {
  const out = frame.slice();
  const at = where === "header" ? 3 : where === "ciphertext" ? 4 : out.length - 1;
  out[at]! ^= 0x01;
  return out;
}

/** One direction's frame splitter (no limit: the proxy only forwards what the real peers sent). */
class Splitter {
  #buf = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.#buf.length + chunk.length);
    joined.set(this.#buf, 0);
    joined.set(chunk, this.#buf.length);
    const frames: Uint8Array[] = [];
    let off = 0;
    while (joined.length - off >= 4) {
      const len = new DataView(joined.buffer, joined.byteOffset + off, 4).getUint32(0, false);
      if (joined.length - off < 4 + len) break;
      frames.push(joined.slice(off, off + 4 + len));
      off += 4 + len;
    }
    this.#buf = joined.slice(off);
    return frames;
  }
}

interface Pair {
  client: Socket<Pair>;
  server: Socket<undefined> | null;
  /** Bytes from the client before the upstream connection was open. */
  early: Uint8Array[];
  split: Record<Dir, Splitter>;
  held: Record<Dir, Uint8Array | null>;
  clientClosed: boolean;
  serverClosed: boolean;
}

export interface ProxyRecord {
  /** Every frame the sender sent, per direction, as received by the proxy (before tampering). */
  frames: Record<Dir, Uint8Array[]>;
  /** When the client's / the server's side of the connection closed (null: still open). */
  clientClosedAt: number | null;
  serverClosedAt: number | null;
  /** Which side closed first: the receiver of a bad frame should be the one. */
  firstClosed: "client" | "server" | null;
}

export class FrameProxy {
  readonly hooks: Record<Dir, Hook> = { c2s: () => PASS, s2c: () => PASS };
  /** One record per accepted connection, in order. */
  readonly connections: ProxyRecord[] = [];
  readonly #pairs = new Set<Pair>();
  #listener: TCPSocketListener<Pair> | null = null;

  private constructor(readonly upstreamPort: number) {}

  static start(upstreamPort: number, hooks: Partial<Record<Dir, Hook>> = {}): FrameProxy {
    const p = new FrameProxy(upstreamPort);
    Object.assign(p.hooks, hooks);
    p.#listener = Bun.listen<Pair>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (client) => p.#accept(client),
        data: (client, chunk) => p.#fromClient(client.data, chunk),
        close: (client) => p.#clientGone(client.data),
        error: (client) => p.#clientGone(client.data),
        end: (client) => p.#clientGone(client.data),
      },
    });
    return p;
  }

  get port(): number {
    return this.#listener!.port;
  }

  /** `127.0.0.1:PORT`, as a client writes it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The latest accepted connection's record. */
  get last(): ProxyRecord {
    const r = this.connections.at(-1);
    if (!r) throw new Error("proxy: no connection yet");
    return r;
  }

  #accept(client: Socket<Pair>): void {
    const pair: Pair = {
      client,
      server: null,
      early: [],
      split: { c2s: new Splitter(), s2c: new Splitter() },
      held: { c2s: null, s2c: null },
      clientClosed: false,
      serverClosed: false,
    };
    const rec: ProxyRecord = { frames: { c2s: [], s2c: [] }, clientClosedAt: null, serverClosedAt: null, firstClosed: null };
    this.connections.push(rec);
    (pair as Pair & { rec: ProxyRecord }).rec = rec;
    client.data = pair;
    this.#pairs.add(pair);
    void Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port: this.upstreamPort,
      socket: {
        open: (server) => {
          pair.server = server;
          if (pair.clientClosed) return void server.end();
          for (const b of pair.early.splice(0)) server.write(b);
        },
        data: (_s, chunk) => this.#frames(pair, "s2c", chunk),
        close: () => this.#serverGone(pair),
        error: () => this.#serverGone(pair),
        end: () => this.#serverGone(pair),
        connectError: () => this.#serverGone(pair),
      },
    }).catch(() => this.#serverGone(pair));
  }

  #rec(pair: Pair): ProxyRecord {
    return (pair as Pair & { rec: ProxyRecord }).rec;
  }

  #fromClient(pair: Pair, chunk: Uint8Array): void {
    this.#frames(pair, "c2s", chunk);
  }

  #write(pair: Pair, dir: Dir, bytes: Uint8Array): void {
    if (dir === "c2s") {
      if (pair.serverClosed) return;
      if (pair.server) pair.server.write(bytes);
      else pair.early.push(bytes);
    } else if (!pair.clientClosed) pair.client.write(bytes);
  }

  #frames(pair: Pair, dir: Dir, chunk: Uint8Array): void {
    const rec = this.#rec(pair);
    const back: Dir = dir === "c2s" ? "s2c" : "c2s";
    for (const frame of pair.split[dir].push(chunk)) {
      const index = rec.frames[dir].length;
      rec.frames[dir].push(frame);
      const action = this.hooks[dir]({ dir, index, frame, body: frame.subarray(4) }, { reply: (b) => this.#write(pair, back, b) });
      const out: Uint8Array[] = [];
      switch (action.kind) {
        case "pass":
          out.push(frame);
          break;
        case "flip":
          out.push(flipBit(frame, action.where));
          break;
        case "drop":
          break;
        case "replay":
          out.push(frame, frame);
          break;
        case "swap":
          // Held until the next frame of this direction, which goes first.
          pair.held[dir] = frame;
          continue;
        case "replace":
          out.push(...action.frames);
          break;
      }
      const held = pair.held[dir];
      if (held) {
        pair.held[dir] = null;
        out.push(held);
      }
      for (const b of out) this.#write(pair, dir, b);
    }
  }

  #clientGone(pair: Pair | undefined): void {
    if (!pair || pair.clientClosed) return;
    pair.clientClosed = true;
    const rec = this.#rec(pair);
    rec.clientClosedAt = Date.now();
    rec.firstClosed ??= "client";
    pair.server?.end();
  }

  #serverGone(pair: Pair): void {
    if (pair.serverClosed) return;
    pair.serverClosed = true;
    const rec = this.#rec(pair);
    rec.serverClosedAt = Date.now();
    rec.firstClosed ??= "server";
    if (!pair.clientClosed) pair.client.end();
  }

  /** Closes every connection and the listener. */
  close(): void {
    for (const pair of this.#pairs) {
      pair.server?.terminate();
      pair.client.terminate();
    }
    this.#pairs.clear();
    this.#listener?.stop(true);
    this.#listener = null;
  }
}
