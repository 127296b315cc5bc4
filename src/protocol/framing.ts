/**
 * Framing (docs/PROTOCOL.md §2): each frame is a 4-byte big-endian length L
 * followed by L body bytes, 1 ≤ L ≤ limit. The decoder checks L against the
 * current limit as soon as the 4 header bytes are in, before it buffers any
 * of the body, and handles frames split across or coalesced within reads.
 * Once it has failed it stays failed: the connection is to be closed.
 */
import { SecureChatError } from "../errors.ts";
import { FRAME_HEADER_LENGTH, MAX_FRAME } from "./limits.ts";

export function frameHeader(length: number): Uint8Array {
  // Byte writes, not a DataView: this runs once per record, and a DataView
  // allocation costs more here than the rest of the header (bench/records.ts).
  return new Uint8Array([length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff]);
}

/** Header ‖ body. Throws `frame_empty` or `frame_too_large` like the decoder would. */
export function encodeFrame(body: Uint8Array, limit: number = MAX_FRAME): Uint8Array {
  checkLength(body.length, limit);
  const out = new Uint8Array(FRAME_HEADER_LENGTH + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false);
  out.set(body, FRAME_HEADER_LENGTH);
  return out;
}

function checkLength(length: number, limit: number): void {
  if (length === 0) throw new SecureChatError("frame_empty", "frame: zero length");
  if (length > limit) {
    throw new SecureChatError("frame_too_large", `frame: length ${length} exceeds ${limit}`);
  }
}

export class FrameDecoder {
  #limit: number;
  /** The length header as read so far, big-endian, `#headerFill` bytes of it (a number: no array per connection). */
  #header = 0;
  #headerFill = 0;
  #body: Uint8Array | null = null;
  #bodyFill = 0;
  #failed: SecureChatError | null = null;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The limit applies to every frame whose header has not been read yet. */
  set limit(n: number) {
    this.#limit = n;
  }

  get limit(): number {
    return this.#limit;
  }

  /** Bytes held for an incomplete frame (header or body). */
  get pending(): number {
    return this.#headerFill + this.#bodyFill;
  }

  /** Feeds bytes; returns the bodies of the frames they complete, in order (fresh copies). */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.feed(chunk, (body) => out.push(body));
    return out;
  }

  /**
   * Feeds bytes and hands each completed body to `onFrame` before reading
   * the next header, so a limit changed by `onFrame` (after login) applies
   * to the very next frame even within one read.
   */
  feed(chunk: Uint8Array, onFrame: (body: Uint8Array) => void): void {
    if (this.#failed) throw this.#failed;
    let i = 0;
    try {
      while (i < chunk.length) {
        if (this.#body === null) {
          while (this.#headerFill < FRAME_HEADER_LENGTH && i < chunk.length) {
            this.#header = this.#header * 256 + chunk[i++]!;
            this.#headerFill++;
          }
          if (this.#headerFill < FRAME_HEADER_LENGTH) break;
          const length = this.#header;
          this.#header = 0;
          checkLength(length, this.#limit);
          this.#body = new Uint8Array(length);
          this.#bodyFill = 0;
        }
        const take = Math.min(this.#body.length - this.#bodyFill, chunk.length - i);
        this.#body.set(chunk.subarray(i, i + take), this.#bodyFill);
        this.#bodyFill += take;
        i += take;
        if (this.#bodyFill === this.#body.length) {
          const body = this.#body;
          this.#body = null;
          this.#bodyFill = 0;
          this.#headerFill = 0;
          onFrame(body);
        }
      }
    } catch (e) {
      this.#failed = e instanceof SecureChatError ? e : new SecureChatError("frame_handler", "frame: handler failed", { cause: e });
      this.#body = null;
      throw e;
    }
  }
}
