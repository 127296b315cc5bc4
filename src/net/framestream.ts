/**
 * A client's TCP connection as a frame stream: Bun.connect, the frames
 * (src/net/framed.ts) delivered as promises, a connection that ends or a
 * peer that is silent too long as a rejection.
 */
import type { Socket } from "bun";
import { SecureChatError, isSecureChatError } from "../errors.ts";
import { Framed } from "./framed.ts";

/** Where to connect; `id` (`HOST:PORT`) names it in errors. */
export interface Endpoint {
  host: string;
  port: number;
  id: string;
}

/** Why a connection failed, said for a person, by the system's error code. */
const CONNECT_FAILURES: Record<string, string> = {
  ECONNREFUSED: "connection refused (nothing is listening on that port)",
  ENOTFOUND: "no such host (the name does not resolve)",
  EAI_AGAIN: "the host name could not be resolved right now (DNS)",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "no answer (timed out)",
  ECONNRESET: "the connection was reset",
  EADDRNOTAVAIL: "that address is not available",
};

/** Frames from one TCP connection, delivered as promises; `limit` is the largest frame accepted at first (`framed.decoder.limit`). */
export class FrameStream {
  readonly #bodies: Uint8Array[] = [];
  #waiter: { resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | null = null;
  #ended: Error | null = null;
  framed!: Framed;

  static async connect(addr: Endpoint, limit: number, timeoutMs: number): Promise<FrameStream> {
    const stream = new FrameStream();
    const connecting = Bun.connect<FrameStream>({
      hostname: addr.host,
      port: addr.port,
      data: stream,
      socket: {
        open(socket) {
          stream.framed = new Framed(socket as Socket<unknown>, limit, {
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
      const code = String((e as { code?: unknown }).code ?? "");
      throw new SecureChatError("connect_failed", `cannot connect to ${addr.id}: ${CONNECT_FAILURES[code] ?? (e as Error).message}`, {
        cause: e,
        detail: { host: addr.host, port: addr.port, reason: code },
      });
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
