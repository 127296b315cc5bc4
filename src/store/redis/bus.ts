/**
 * The cross-node bus over Redis pub/sub: `publish(channel, payload)` and
 * `subscribe(channel, fn)`.
 *
 * Batching: what is published during one event-loop turn goes out after it,
 * as one PUBLISH per channel whose message is a JSON array of the payloads,
 * in the order they were published. One publisher's payloads on one channel
 * therefore reach each subscriber in that order (one connection, one
 * channel: Redis keeps the order), and a burst costs one round of commands
 * instead of one per payload.
 *
 * Pub/sub is at most once. While the publishing link is down, payloads
 * queue up to `maxQueued`; past it they are dropped and counted, and
 * `onLoss` says so once per channel and turn. A PUBLISH in flight when the
 * connection drops is counted lost too (it may or may not have gone out).
 * When the subscribing link comes back, every channel is subscribed again
 * and `onLoss` says what was subscribed, since what was published in
 * between is gone. The layer above recovers from any loss by resync (ask
 * PostgreSQL from the last seq seen), never by trusting the bus.
 */
import type { RedisLink } from "./link.ts";

export type BusLoss =
  | { side: "publish"; channel: string; dropped: number; why: "queue_full" | "connection_lost" }
  | { side: "subscribe"; channels: string[] };

export interface BusOptions {
  /** Payloads held while the publishing link is down, all channels together. */
  maxQueued?: number;
  /** The longest one PUBLISH's message grows to before a batch is split (bytes of JSON, about). */
  maxBatchBytes?: number;
  onLoss?: (loss: BusLoss) => void;
}

export const BUS_MAX_QUEUED = 10_000;
export const BUS_MAX_BATCH_BYTES = 512 * 1024;

export class Bus {
  private readonly pending = new Map<string, string[]>();
  private queued = 0;
  private readonly drops = new Map<string, number>();
  private scheduled = false;
  private readonly handlers = new Map<string, Set<(payload: string) => void>>();
  private readonly maxQueued: number;
  private readonly maxBatchBytes: number;
  private readonly losses = new Set<(loss: BusLoss) => void>();
  private readonly removers: (() => void)[] = [];
  /** Counters since the start. */
  readonly stats = { published: 0, batches: 0, delivered: 0, dropped: 0, malformed: 0 };

  constructor(
    private readonly pub: RedisLink,
    private readonly sub: RedisLink,
    opts: BusOptions = {},
  ) {
    this.maxQueued = opts.maxQueued ?? BUS_MAX_QUEUED;
    this.maxBatchBytes = opts.maxBatchBytes ?? BUS_MAX_BATCH_BYTES;
    if (opts.onLoss) this.losses.add(opts.onLoss);
    this.removers.push(pub.onUp(() => this.schedule()));
    this.removers.push(sub.onUp((again) => this.resubscribe(again)));
    if (sub.up) this.resubscribe(false);
  }

  /** Queues `payload` for `channel`; it goes out after this event-loop turn (or when the link is back). */
  publish(channel: string, payload: string): void {
    if (this.queued >= this.maxQueued) {
      this.stats.dropped++;
      this.drops.set(channel, (this.drops.get(channel) ?? 0) + 1);
      this.schedule();
      return;
    }
    let list = this.pending.get(channel);
    if (!list) this.pending.set(channel, (list = []));
    list.push(payload);
    this.queued++;
    this.schedule();
  }

  /** Calls `fn` with each payload published on `channel` from now on; returns the unsubscriber. */
  subscribe(channel: string, fn: (payload: string) => void): () => void {
    let set = this.handlers.get(channel);
    if (!set) {
      this.handlers.set(channel, (set = new Set()));
      if (this.sub.up) this.listen([channel]);
    }
    set.add(fn);
    return () => {
      const s = this.handlers.get(channel);
      if (!s?.delete(fn) || s.size > 0) return;
      this.handlers.delete(channel);
      if (this.sub.up) this.sub.client.unsubscribe(channel).catch(() => {});
    };
  }

  /** Calls `fn` with each loss from now on, as `onLoss` (several users of one bus each hear of every loss); returns the remover. */
  watchLoss(fn: (loss: BusLoss) => void): () => void {
    this.losses.add(fn);
    return () => this.losses.delete(fn);
  }

  /** Tells every listener of `loss`. */
  protected onLoss(loss: BusLoss): void {
    for (const fn of [...this.losses]) fn(loss);
  }

  /** Payloads waiting for the publishing link. */
  get backlog(): number {
    return this.queued;
  }

  close(): void {
    for (const r of this.removers.splice(0)) r();
    this.handlers.clear();
    this.pending.clear();
    this.queued = 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    for (const [channel, dropped] of this.drops) this.onLoss({ side: "publish", channel, dropped, why: "queue_full" });
    this.drops.clear();
    if (!this.pub.up || this.queued === 0) return;
    const client = this.pub.client;
    for (const [channel, list] of this.pending) {
      for (const batch of this.split(list)) {
        this.stats.batches++;
        this.stats.published += batch.length;
        client.publish(channel, JSON.stringify(batch)).catch(() => {
          this.stats.dropped += batch.length;
          this.onLoss({ side: "publish", channel, dropped: batch.length, why: "connection_lost" });
        });
      }
    }
    this.pending.clear();
    this.queued = 0;
  }

  /** `list` cut into consecutive batches of at most maxBatchBytes (a larger payload goes alone). */
  private split(list: string[]): string[][] {
    const out: string[][] = [];
    let cur: string[] = [];
    let bytes = 2;
    for (const p of list) {
      const size = p.length + 3;
      if (cur.length > 0 && bytes + size > this.maxBatchBytes) {
        out.push(cur);
        cur = [];
        bytes = 2;
      }
      cur.push(p);
      bytes += size;
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  private resubscribe(again: boolean): void {
    const channels = [...this.handlers.keys()];
    if (channels.length > 0) this.listen(channels);
    if (again && channels.length > 0) this.onLoss({ side: "subscribe", channels });
  }

  private listen(channels: string[]): void {
    this.sub.client
      .subscribe(channels, (message, channel) => this.deliver(channel, message))
      .catch(() => {
        // The connection went down meanwhile: the next connect subscribes again.
      });
  }

  private deliver(channel: string, message: string): void {
    let batch: unknown;
    try {
      batch = JSON.parse(message);
    } catch {
      batch = null;
    }
    if (!Array.isArray(batch) || !batch.every((p) => typeof p === "string")) {
      this.stats.malformed++;
      return;
    }
    const set = this.handlers.get(channel);
    if (!set) return;
    for (const p of batch as string[]) {
      this.stats.delivered++;
      for (const fn of [...set]) fn(p);
    }
  }
}
