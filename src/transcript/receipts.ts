/**
 * Receipts in a client's transcript (docs/TRANSCRIPT.md Appendix A): a
 * `receipt` line holds a c2sp.org/tlog-proof@v1 text whose `extra` is the
 * server's line of a message the client sent. `receiptProblem` says whether
 * such a line is the message an `ack` line names — the client checks it
 * before it keeps a receipt, and `transcript receipts` checks it again
 * offline, with the proof, against the log's verifier key.
 */
import { SecureChatError } from "../errors.ts";
import { type NoteVerifier } from "./note.ts";
import { parseProof, verifyProof } from "./proof.ts";
import { readFileLines } from "./read.ts";

/** What the client sent and the server acknowledged: the message a receipt must hold. */
export interface SentMessage {
  tseq: number;
  head?: string;
  from: string;
  room?: string;
  to?: string;
  text: string;
  action?: boolean;
}

/** Why the entry `line` is not the message `m` (null if it is). The text is compared unless the entry is sealed. */
export function receiptProblem(line: Uint8Array, m: SentMessage): string | null {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(line)) as Record<string, unknown>;
  } catch {
    return "its line is not an entry";
  }
  if (typeof e !== "object" || e === null || Array.isArray(e)) return "its line is not an entry";
  if (e.seq !== m.tseq) return `its entry has seq ${String(e.seq)}, not ${m.tseq}`;
  if (m.head !== undefined && e.hash !== m.head) return "its entry is not the one the ack named (another hash)";
  if (e.from !== m.from) return `its entry is from ${String(e.from)}, not ${m.from}`;
  const room = m.room !== undefined;
  if (room ? e.type !== "message" || e.room !== m.room : e.type !== "direct" || e.to !== m.to) {
    return `its entry is not a message to ${room ? m.room : m.to} (${String(e.type)} to ${String(e.room ?? e.to)})`;
  }
  if ((e.action === true) !== (m.action === true)) return "its entry differs in /me";
  if (e.sealed === undefined && e.text !== m.text) return "its entry has another text";
  return null;
}

export interface ReceiptResult {
  line: number;
  tseq: number | null;
  ok: boolean;
  /** What was checked, or why it failed. */
  text: string;
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/**
 * Checks every `receipt` line of the client transcript `path`: a proof that
 * opens with `verifier` and leads to its signed root, whose line is the
 * message of the last `ack` line before it with the same `tseq`, from the
 * user every receipt of the file is from (`user`, or that of the first).
 */
export async function checkReceipts(path: string, verifier: NoteVerifier, user: string | null, each: (r: ReceiptResult) => void): Promise<{ checked: number; failed: number }> {
  const acks = new Map<number, Record<string, unknown>>();
  let from = user;
  let checked = 0;
  let failed = 0;
  const done = (r: ReceiptResult) => {
    checked++;
    if (!r.ok) failed++;
    each(r);
  };
  for await (const l of readFileLines(path, path)) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(l.text) as Record<string, unknown>;
    } catch {
      continue; // not a line of this format: ignored, as Appendix A says of what a reader does not know
    }
    if (typeof o !== "object" || o === null) continue;
    if (o.kind === "ack" && Number.isSafeInteger(o.tseq)) acks.set(o.tseq as number, o);
    if (o.kind !== "receipt") continue;
    const tseq = Number.isSafeInteger(o.tseq) ? (o.tseq as number) : null;
    const fail = (why: string) => done({ line: l.line, tseq, ok: false, text: why });
    if (tseq === null || typeof o.proof !== "string") {
      fail("not a receipt line (tseq, proof)");
      continue;
    }
    let ok: ReturnType<typeof verifyProof>;
    try {
      const p = parseProof(o.proof);
      if (p.index !== tseq - 1) throw new SecureChatError("proof_index", `proof: it proves leaf ${p.index}, not ${tseq - 1}`);
      ok = verifyProof(p, verifier);
    } catch (e) {
      fail((e as Error).message.replace(/^proof: /, ""));
      continue;
    }
    const ack = acks.get(tseq);
    if (!ack) {
      fail(`no ack line with tseq ${tseq} before it`);
      continue;
    }
    // The line verified, but a log may have signed anything: a line that is no entry fails below, in receiptProblem.
    let entryFrom: string | undefined;
    try {
      entryFrom = str((JSON.parse(new TextDecoder().decode(ok.line)) as Record<string, unknown> | null)?.from);
    } catch {
      entryFrom = undefined;
    }
    from ??= entryFrom ?? null;
    const sent: SentMessage = { tseq, from: from ?? "", text: str(ack.text) ?? "", action: ack.action === true };
    if (str(ack.head) !== undefined) sent.head = str(ack.head)!;
    if (str(ack.room) !== undefined) sent.room = str(ack.room)!;
    else sent.to = str(ack.to) ?? "";
    const why = receiptProblem(ok.line, sent);
    if (why) {
      fail(why);
      continue;
    }
    done({ line: l.line, tseq, ok: true, text: `leaf ${ok.index} of ${ok.checkpoint.origin}'s tree of ${ok.checkpoint.size} lines: ${sent.room ?? `@${sent.to}`} ${JSON.stringify(sent.text)}` });
  }
  return { checked, failed };
}
