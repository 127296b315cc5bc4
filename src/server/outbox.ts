/**
 * The output of one connection (PROTOCOL.md §7.4–§7.7): pre-encoded
 * messages queued for the next flush, the places held behind acks that wait
 * for the transcript, the bounds on what may wait (docs/SECURITY.md §2.8),
 * and the flush that seals the queue into as few records as fit. It knows
 * nothing of sockets: its owner seals and writes, pauses reading, and closes.
 */
import { utf8 } from "../bytes.ts";
import { FRAME_HEADER_LENGTH, MAX_FRAME } from "../protocol/limits.ts";

/** Room for the record framing: a record's plaintext fills at most this much of MAX_FRAME. */
const RECORD_PAYLOAD_MAX = MAX_FRAME - 16;

/**
 * The record plaintexts of one flush turn. A record's plaintext is its
 * messages' UTF-8 joined by LF (PROTOCOL.md §3.4), split so that each fits
 * one frame. The last outbox's plaintexts are kept: the next connection
 * whose outbox holds the same message strings, in the same order, gets the
 * same plaintexts without building them again. A message posted to a room
 * is one string object for every member, so the comparison mostly meets
 * identical references, which compare at once.
 */
export class FlushTurn {
  /**
   * Where each record is sealed before it is written: one buffer for every
   * record of the server (the socket copies what it takes, Framed copies
   * what it does not), so sealing allocates nothing per recipient.
   */
  static readonly out = new Uint8Array(64 + MAX_FRAME);
  /**
   * The frame starts 60 bytes in, so its ciphertext starts 64 bytes in.
   * With the frame at 0, the ciphertext is copied to 4 bytes past its
   * source's address modulo 4096 (as measured on Bun 1.4.5), and the CPU's
   * 4K aliasing made that copy cost more than the AES-GCM that produced it:
   * 28 KB sealed in 16.0 µs, against 6.4 µs at 64 (bun run bench/aliasing.ts).
   */
  static readonly AT = 64 - FRAME_HEADER_LENGTH;
  #outbox: readonly string[] = [];
  #payloads: Uint8Array[] = [];
  readonly #encoded = new Map<string, Uint8Array>();

  payloads(outbox: readonly string[]): Uint8Array[] {
    if (sameStrings(outbox, this.#outbox)) return this.#payloads;
    const payloads: Uint8Array[] = [];
    let parts: Uint8Array[] = [];
    let size = 0;
    const cut = (): void => {
      const payload = new Uint8Array(size);
      let off = 0;
      for (const p of parts) {
        if (off > 0) payload[off++] = 0x0a;
        payload.set(p, off);
        off += p.length;
      }
      payloads.push(payload);
      parts = [];
      size = 0;
    };
    for (const json of outbox) {
      let bytes = this.#encoded.get(json);
      if (!bytes) this.#encoded.set(json, (bytes = utf8(json)));
      if (parts.length > 0 && size + 1 + bytes.length > RECORD_PAYLOAD_MAX) cut();
      size += (parts.length > 0 ? 1 : 0) + bytes.length;
      parts.push(bytes);
    }
    if (parts.length > 0) cut();
    this.#outbox = outbox;
    this.#payloads = payloads;
    return payloads;
  }
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What an outbox needs from the connection it belongs to. */
export interface OutboxOwner {
  /** Output is still wanted: the connection is logged in and not closed. */
  readonly open: boolean;
  /** Sealed bytes the socket has not taken yet. */
  readonly queued: number;
  /** Asks for a flush at the end of this turn (coalescing, PROTOCOL.md §7.6). */
  scheduleFlush(): void;
  /** Seals one record plaintext and writes it; false once the connection is closed. */
  writeRecord(plaintext: Uint8Array): boolean;
  /** The output has drained below a quarter of the send buffer: read again, answer held requests. */
  outputDrained(): void;
  /** Nothing waits behind an ack any more (a goodbye waiting for that can finish). */
  outputReleased(): void;
  /** The output passed its bound: everything queued is dropped; tell the peer and close. */
  tooSlow(verdict: TooSlow): void;
  /** Making a message held behind an ack threw: the connection's own failure. */
  fail(e: unknown): void;
}

/**
 * Why a connection's output passed its bound. `transcript_behind`: the
 * output held behind acks that wait for the transcript is what took it past,
 * so the client was reading and the server's disk is not keeping up.
 */
export interface TooSlow {
  reason: "slow_consumer" | "transcript_behind";
  /** Bytes that were waiting (queued, held, and not taken by the socket). */
  queued: number;
  /** Of those, held behind acks that wait for the transcript. */
  waitingForTranscript: number;
}

/** A place in a connection's output; `json` is null until the message exists (hold, fill). */
export interface Waiting {
  json: string | null;
}

/** The queue of every connection with nothing to send: no array per idle connection. Never pushed to. */
const NOTHING = Object.freeze([]) as unknown as string[];

export class Outbox {
  /** Pre-encoded messages waiting for the next flush (PROTOCOL.md §7.6: one record may carry several). */
  messages: string[] = NOTHING;
  /** UTF-16 units in `messages` (as `waitingBytes`). */
  bytes = 0;
  /**
   * Output behind an ack still waiting for the transcript (postWhen), in the
   * order posted; null when nothing waits. Counted against --max-send-buffer.
   */
  waiting: Waiting[] | null = null;
  waitingBytes = 0;

  constructor(
    readonly owner: OutboxOwner,
    /** --max-send-buffer. */
    readonly maxSendBuffer: number,
  ) {}

  /**
   * What waits to reach the peer: queued messages, output held behind acks,
   * and sealed bytes the socket has not taken.
   */
  get pending(): number {
    return this.bytes + this.waitingBytes + this.owner.queued;
  }

  /**
   * Member.congested: past half the send buffer the connection's own
   * requests wait (in the chat core) and its socket is not read, so what it
   * asks for can never build more than one answer past this point; what
   * others send it is still bounded by the whole buffer (a slow consumer).
   */
  get congested(): boolean {
    return this.pending > this.maxSendBuffer / 2;
  }

  /** Output is held behind an ack that waits for the transcript. */
  get holding(): boolean {
    return this.waiting !== null;
  }

  /**
   * Queues one message. What a connection has waiting is bounded as it is
   * built: past 4 × --max-send-buffer it is dropped at once. (The slow
   * consumer rule proper, at the end of each flush, is the socket not taking
   * --max-send-buffer; one turn's burst of other users' messages may exceed
   * that before the flush without being held against a reader.)
   */
  post(json: string): void {
    if (this.waiting) {
      this.waiting.push({ json });
      this.waitingBytes += json.length;
    } else this.enqueue(json);
    if (this.pending > 4 * this.maxSendBuffer) this.tooSlow(4 * this.maxSendBuffer);
  }

  /** Member.postWhen: an ack waiting for the transcript holds back what follows it (PROTOCOL.md §7.4). */
  postWhen(ready: Promise<void>, ok: () => string, failed: () => string): void {
    const slot = this.hold();
    // As in the flush turn, a failure here is this connection's own: it must
    // not become an unhandled rejection, which would stop the server.
    const settle = (json: () => string): void => {
      try {
        this.fill(slot, json());
      } catch (e) {
        this.owner.fail(e);
      }
    };
    ready.then(
      () => settle(ok),
      () => settle(failed),
    );
  }

  /**
   * Takes the next place in the output for a message that does not exist
   * yet (an ack waiting for the transcript): everything posted after it
   * waits behind it until `fill`.
   */
  hold(): Waiting {
    const slot: Waiting = { json: null };
    (this.waiting ??= []).push(slot);
    return slot;
  }

  /** Fills a slot, then sends everything from the front that is no longer waiting. */
  fill(slot: Waiting, json: string): void {
    slot.json = json;
    const w = this.waiting;
    if (!w || !this.owner.open) return;
    // The slot's message now exists: it counts as what waits until it is moved on.
    this.waitingBytes += json.length;
    let n = 0;
    while (n < w.length && w[n]!.json !== null) n++;
    const ready = w.splice(0, n);
    if (w.length === 0) this.waiting = null;
    for (const s of ready) {
      this.waitingBytes -= s.json!.length;
      this.enqueue(s.json!);
    }
    this.unblock();
    if (!this.waiting) this.owner.outputReleased();
  }

  private enqueue(json: string): void {
    this.bytes += json.length;
    // Only the first message of a turn schedules: the rest ride on that flush.
    if (this.messages === NOTHING) {
      this.messages = [json];
      this.owner.scheduleFlush();
    } else this.messages.push(json);
  }

  /**
   * Once the output has drained below a quarter of the send buffer, reading
   * resumes and held requests are answered. Called after every flush and
   * every socket drain.
   */
  unblock(): void {
    if (!this.owner.open || this.pending > this.maxSendBuffer / 4) return;
    this.owner.outputDrained();
  }

  /**
   * Seals everything queued into as few records as fit, and writes them.
   * `turn` is shared by every connection flushed in this turn: the record
   * plaintexts built for one connection are reused by the next if its queue
   * holds the very same messages (in a busy room, every member but the
   * senders gets the same ones), so each is built once, and sealed per
   * recipient.
   */
  flush(turn: FlushTurn = new FlushTurn()): void {
    if (!this.owner.open || this.messages.length === 0) return;
    for (const payload of turn.payloads(this.messages)) {
      // A failed write or an overflowing queue closes the connection (and its
      // channel) inside the write: nothing more is sealed for it.
      if (!this.owner.writeRecord(payload)) break;
    }
    this.messages = NOTHING;
    this.bytes = 0;
    if (!this.owner.open) return;
    if (this.pending > this.maxSendBuffer) this.tooSlow(this.maxSendBuffer);
    else this.unblock();
  }

  /** Drops everything queued or held (the connection is closing). */
  clear(): void {
    this.messages = NOTHING;
    this.bytes = 0;
    this.waiting = null;
    this.waitingBytes = 0;
  }

  /**
   * Output past `bound` never stalls others: it is dropped, and the owner
   * told why. If the output held behind acks that wait for the transcript
   * is what took it past (PROTOCOL.md §7.4), the client was reading: the
   * server's disk is not keeping up.
   */
  private tooSlow(bound: number): void {
    const verdict: TooSlow = {
      reason: this.pending - this.waitingBytes <= bound ? "transcript_behind" : "slow_consumer",
      queued: this.pending,
      waitingForTranscript: this.waitingBytes,
    };
    this.clear();
    this.owner.tooSlow(verdict);
  }
}
