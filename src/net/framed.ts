/**
 * Bun sockets as frame streams (docs/PROTOCOL.md §2). One class for both
 * ends: it owns the frame decoder and a bounded outgoing queue. Writes go
 * straight to the socket; what the kernel does not take is queued and
 * flushed on `drain`. A peer that stops reading until the queue passes its
 * bound is disconnected: it never grows our memory without bound.
 */
import type { Socket } from "bun";
import { FrameDecoder } from "../protocol/framing.ts";

export const DEFAULT_MAX_QUEUED = 1024 * 1024;

export interface FramedHandler {
  /** One frame body; called in order, before the next header is read. */
  frame(body: Uint8Array): void;
  /** A bad frame, or `frames` threw: the owner reports it to the peer and closes. */
  error(e: unknown): void;
  /** The connection is gone (either side closed, or an error). */
  closed(reason: string): void;
  /** The socket took some or all of what was queued. */
  drained?(): void;
}

/** The queue of every connection that has nothing queued: no array per idle connection. Never pushed to. */
const EMPTY = Object.freeze([]) as unknown as Uint8Array[];

export class Framed {
  readonly decoder: FrameDecoder;
  #queue: Uint8Array[] = EMPTY;
  #queued = 0;
  #closed = false;
  #ending = false;

  constructor(
    readonly socket: Socket<unknown>,
    limit: number,
    readonly handler: FramedHandler,
    readonly maxQueued: number = DEFAULT_MAX_QUEUED,
  ) {
    this.decoder = new FrameDecoder(limit);
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Bytes waiting for the peer to read. */
  get queued(): number {
    return this.#queued;
  }

  /** Called from the socket's `data` handler. */
  receive(chunk: Uint8Array): void {
    if (this.#closed || this.#ending) return;
    try {
      this.decoder.feed(chunk, (body) => {
        if (!this.#closed && !this.#ending) this.handler.frame(body);
      });
    } catch (e) {
      this.handler.error(e);
    }
  }

  /**
   * Sends complete frames. Returns false if the connection is (now) closed.
   * With `borrowed`, the caller will reuse `frame`'s memory once this
   * returns: what the socket does not take now is copied, not referenced.
   */
  send(frame: Uint8Array, borrowed = false): boolean {
    if (this.#closed || this.#ending) return false;
    if (this.#queue.length > 0) return this.#enqueue(borrowed ? frame.slice() : frame);
    const n = this.socket.write(frame);
    if (n < 0) {
      this.close("write failed");
      return false;
    }
    if (n < frame.length) return this.#enqueue(borrowed ? frame.slice(n) : frame.subarray(n));
    return true;
  }

  #enqueue(rest: Uint8Array): boolean {
    if (this.#queue === EMPTY) this.#queue = [];
    this.#queue.push(rest);
    this.#queued += rest.length;
    if (this.#queued > this.maxQueued) {
      this.close("peer is not reading (send queue full)");
      return false;
    }
    return true;
  }

  /** Called from the socket's `drain` handler. */
  drain(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      const head = this.#queue[0]!;
      const n = this.socket.write(head);
      if (n < 0) return this.close("write failed");
      this.#queued -= Math.max(0, n);
      if (n < head.length) {
        this.#queue[0] = head.subarray(n);
        return;
      }
      this.#queue.shift();
    }
    if (this.#queue.length === 0) this.#queue = EMPTY;
    if (this.#ending && this.#queue.length === 0) this.socket.end();
    else if (!this.#closed) this.handler.drained?.();
  }

  /** Sends what is queued, then closes (the graceful way out). */
  end(): void {
    if (this.#closed || this.#ending) return;
    this.#ending = true;
    if (this.#queue.length === 0) this.socket.end();
  }

  /** Closes now, dropping anything queued. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = EMPTY;
    this.#queued = 0;
    this.socket.terminate();
    this.handler.closed(reason);
  }

  /** Called from the socket's `close` handler. */
  socketClosed(reason = "connection closed"): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = EMPTY;
    this.#queued = 0;
    this.handler.closed(reason);
  }
}
