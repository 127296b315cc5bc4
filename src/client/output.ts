/**
 * The scripted client's stdout, with a bound on what waits in it. Writing to
 * a pipe whose reader is slow (or stopped) keeps every byte in this
 * process's memory until the reader takes it, and the server decides how
 * much there is to write. So the client asks `congested()` after each record
 * it reads from the server and, while more than `max` bytes wait, reads
 * nothing more (TCP backpressure): a server then drops it as a slow consumer
 * (PROTOCOL.md §7.6), and a hostile one only fills its own buffers.
 */

/** Bytes of output that may wait for stdout's reader before the client stops reading from the server. */
export const OUTPUT_MAX = 1024 * 1024;

/** What BoundedOutput needs of a stream: a write whose callback runs once the chunk has been handed on (or failed). */
export interface WritableLike {
  write(chunk: string, callback: (error?: Error | null) => void): boolean;
}

export class BoundedOutput {
  #queued = 0;
  #peak = 0;
  #waiters: (() => void)[] = [];

  constructor(
    readonly stream: WritableLike,
    readonly max: number = OUTPUT_MAX,
  ) {}

  /** Bytes written whose write has not completed yet. */
  get queued(): number {
    return this.#queued;
  }

  /** The most bytes that ever waited at once. */
  get peak(): number {
    return this.#peak;
  }

  write(text: string): void {
    const n = Buffer.byteLength(text);
    this.#queued += n;
    if (this.#queued > this.#peak) this.#peak = this.#queued;
    // A failed write (the reader went away) completes too: nothing waits for it any more.
    this.stream.write(text, () => {
      this.#queued -= n;
      if (this.#queued <= this.max) for (const w of this.#waiters.splice(0)) w();
    });
  }

  /** Null while at most `max` bytes wait; otherwise a promise that resolves once they are down to `max`. */
  congested(): Promise<void> | null {
    if (this.#queued <= this.max) return null;
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
}
