/**
 * Receipts (docs/TRANSCRIPT.md Appendix A, PROTOCOL.md §7.13): for every
 * message of the user's that the server acknowledged with its transcript
 * seq (`ack.tseq`), the client asks for the entry's line with its inclusion
 * proof, checks them, and keeps the pair with the checkpoint as a
 * c2sp.org/tlog-proof@v1 text — a `receipt` line of the --transcript file
 * that `securechat transcript verify-proof` (or `transcript receipts`)
 * checks offline against the server's verifier key.
 *
 * A receipt is checked before it is kept: the checkpoint is signed by the
 * host key this client pinned, under the key ID of its own origin; the line
 * is at the leaf the ack named in the tree the checkpoint signs; and the
 * line is the message sent — its seq the ack's `tseq`, its hash the ack's
 * `head`, from this user, to the room or user it was sent to, with the text
 * and `/me` it was sent with (the text only when not sealed: a sealed body
 * is for the auditor). A check that fails is a failure the client reports
 * loudly and exits 6 for at the end: the server acknowledged a message its
 * signed log does not hold as sent.
 *
 * Asking is batched and paced: at most LOG_LEAVES_MAX leaves a request, one
 * request at a time, at least RECEIPT_GAP_MS apart, so a flood of messages
 * costs a few requests a second of the request bucket, not one each. What
 * waits is bounded (RECEIPTS_PENDING_MAX); past it, messages go without a
 * receipt and the client says so.
 */
import { SecureChatError } from "../errors.ts";
import { LOG_LEAVES_MAX } from "../protocol/limits.ts";
import type { Message } from "../protocol/messages.ts";
import { noteKeyId } from "../transcript/note.ts";
import { type Proof, formatProof, verifyProof } from "../transcript/proof.ts";
import { receiptProblem } from "../transcript/receipts.ts";
import { stateNote } from "./logcheck.ts";

/** Receipts asked for at most this often (ms): a fifth of the default request rate at most. */
export const RECEIPT_GAP_MS = 400;
/** Acknowledged messages waiting for their receipts, at most. */
export const RECEIPTS_PENDING_MAX = 10_000;

/** A message of the user's the server acknowledged with its transcript seq. */
export interface Acked {
  id: number;
  req: Message<"say" | "dm">;
  tseq: number;
  head?: string;
}

/** Where a receipt goes: the --transcript file's `receipt` line. */
export type ReceiptSink = (line: object) => void;

export class Receipts {
  readonly #pending: Acked[] = [];
  #inFlight: Acked[] = [];
  #lastAsk = Number.NEGATIVE_INFINITY;
  #dropped = 0;
  /** Receipts kept, and checks that failed (each said at once). */
  kept = 0;
  readonly failures: string[] = [];

  constructor(
    readonly me: () => string,
    readonly hostKey: () => Uint8Array | null,
    readonly sink: ReceiptSink,
    readonly report: (text: string) => void,
    readonly now: () => number = Date.now,
  ) {}

  /** Messages still without a receipt (waiting, or asked for). */
  get outstanding(): number {
    return this.#pending.length + this.#inFlight.length;
  }

  /** Messages that went without a receipt because too many were waiting. */
  get dropped(): number {
    return this.#dropped;
  }

  get asking(): boolean {
    return this.#inFlight.length > 0;
  }

  /** A message of the user's was acknowledged: its receipt is to be asked for. */
  acked(a: Acked): void {
    if (this.#pending.length >= RECEIPTS_PENDING_MAX) {
      if (this.#dropped++ === 0) this.report(`receipts: more than ${RECEIPTS_PENDING_MAX} messages wait for their receipts; the ones after them get none`);
      return;
    }
    this.#pending.push(a);
  }

  /** The connection was lost: what was asked for is asked for again on the next. */
  lost(): void {
    this.#pending.unshift(...this.#inFlight);
    this.#inFlight = [];
  }

  /** How long until a request may go (0: now; null: nothing to ask, or one is out). */
  due(): number | null {
    if (this.#inFlight.length > 0 || this.#pending.length === 0) return null;
    return Math.max(0, this.#lastAsk + RECEIPT_GAP_MS - this.now());
  }

  /** The next request: `base` (the log check's, from the remembered size) asking for up to 16 leaves with their lines. */
  request(base: Message<"log_proof">): Message<"log_proof"> {
    this.#inFlight = this.#pending.splice(0, LOG_LEAVES_MAX);
    this.#lastAsk = this.now();
    return { ...base, leaves: this.#inFlight.map((a) => a.tseq - 1), entries: true };
  }

  /** The server had no signed tree to answer from: what was asked for cannot get a receipt from this server now. */
  noLog(): void {
    if (this.#inFlight.length === 0) return;
    this.report(`receipts: the server has no signed log to prove ${this.#inFlight.length} message(s) from`);
    this.#dropped += this.#inFlight.length;
    this.#inFlight = [];
  }

  /**
   * The answer to the request out (the log check has accepted it): checks
   * and keeps each receipt; what the server put off is asked for again.
   */
  answer(m: Message<"log_state">): void {
    if (this.#inFlight.length === 0) return;
    const asked = this.#inFlight;
    this.#inFlight = [];
    const items = new Map((m.inclusion ?? []).map((i) => [i.leaf, i]));
    const note = stateNote(m);
    const again: Acked[] = [];
    for (const a of asked) {
      const item = items.get(a.tseq - 1);
      // Not covered yet by the checkpoint, or put off: asked again.
      if (!item || item.withheld === "later") {
        again.push(a);
        continue;
      }
      if (!item.entry) {
        const why = item.withheld === "private" ? "says it is not yours" : item.withheld === "unreadable" ? "cannot read it from its log" : "sent no line for it";
        this.#fail(a, `the server ${why}`);
        continue;
      }
      const proof: Proof = { index: a.tseq - 1, extra: item.entry, hashes: item.proof, checkpoint: note };
      try {
        this.#check(a, proof);
      } catch (e) {
        this.#fail(a, (e as Error).message);
        continue;
      }
      this.sink({ kind: "receipt", id: a.id, ...(a.req.type === "say" ? { room: a.req.room } : { to: a.req.to }), tseq: a.tseq, proof: formatProof(proof) });
      this.kept++;
    }
    this.#pending.unshift(...again);
  }

  #check(a: Acked, proof: Proof): void {
    const key = this.hostKey();
    if (!key) throw new Error("no pinned host key to check it with");
    const origin = /^[^\n]*/.exec(proof.checkpoint)![0];
    const ok = verifyProof(proof, { name: origin, keyId: noteKeyId(origin, key), publicKey: key });
    const r = a.req;
    const why = receiptProblem(ok.line, {
      tseq: a.tseq,
      ...(a.head !== undefined ? { head: a.head } : {}),
      from: this.me(),
      ...(r.type === "say" ? { room: r.room } : { to: r.to }),
      text: r.text,
      action: r.action === true,
    });
    if (why) throw new Error(why);
  }

  #fail(a: Acked, why: string): void {
    const text = `RECEIPT FAILED for your message ${a.id} (transcript seq ${a.tseq}) to ${a.req.type === "say" ? a.req.room : a.req.to}: ${why}`;
    this.failures.push(text);
    this.report(text);
  }
}

/** The error a run whose receipts failed ends with (exit 6, as a failed log check). */
export function receiptError(failures: readonly string[]): SecureChatError {
  return new SecureChatError("receipt_failed", `${failures.length} receipt(s) failed: the server acknowledged messages its signed log does not hold as sent (${failures[0]})`);
}
