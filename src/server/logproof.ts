/**
 * The answer to `log_proof` (PROTOCOL.md §7.13): the log's last durable tree
 * checkpoint, the consistency proof from the tree size the client remembers
 * and the inclusion proofs it asks for, from the tree's stored hashes —
 * O(log n) reads each, never the leaves — and, with `entries`, the lines
 * of the entries those proofs are about, so that a user can hold a receipt
 * (a c2sp.org/tlog-proof@v1 with the line as `extra`, TRANSCRIPT.md §4.2).
 *
 * A line is shown only to a user it is about: its own message, direct
 * message, edit or delete, or a direct message to it (`withheld: private`
 * otherwise). Each line is read by bisecting its file (transcript/lineat.ts:
 * O(log n) reads, no scan) and checked against the signed root with the
 * proof before it is sent (`unreadable` if it does not verify). The lines
 * of one answer are at most LOG_ENTRY_BYTES_MAX bytes together (`later`
 * past that: the client asks again).
 */
import type { Logger } from "../log.ts";
import { LOG_ENTRY_BYTES_MAX } from "../protocol/limits.ts";
import type { LogWithheld, Message } from "../protocol/messages.ts";
import type { Journal } from "../store/journal.ts";
import { leafHash, verifyInclusion } from "../transcript/merkle.ts";
import { parseCheckpoint, parseNote } from "../transcript/note.ts";

type Item = NonNullable<Message<"log_state">["inclusion"]>[number];

/** True if the entry `line` records something `user` did or was sent: the entries whose lines it may see. */
export function entryIsUsers(line: Uint8Array, user: string): boolean {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(Buffer.from(line).toString("utf8")) as Record<string, unknown>;
  } catch {
    return false;
  }
  if (typeof e !== "object" || e === null) return false;
  switch (e.type) {
    case "message":
      return e.from === user;
    case "direct":
      return e.from === user || e.to === user;
    case "edit":
    case "delete":
      return e.user === user;
    default:
      return false;
  }
}

/** The leaves' seqs whose lines a `log_proof` with `entries` may be answered with (a journal's readEntryLines reads them ahead). */
export function logProofSeqs(m: Message<"log_proof">): number[] {
  return m.entries ? (m.leaves ?? []).map((leaf) => leaf + 1) : [];
}

/** `read`: the lines read ahead by seq (Journal.readEntryLines); without it, the journal's entryLines reads them now. */
export function logProofAnswer(journal: Journal, m: Message<"log_proof">, user: string, log: Logger, read?: Map<number, Uint8Array>): Message<"log_state" | "notice"> {
  const state = journal.logState?.(m.from, m.leaves ?? []) ?? null;
  if (!state) return { type: "notice", code: "no_log", text: "this server has no signed tree of its transcript to prove anything from right now" };
  const parsed = parseNote(state.note);
  const body = parseCheckpoint(parsed.text);
  const sig = parsed.signatures[0]!;
  let budget = LOG_ENTRY_BYTES_MAX;
  let lines: (Uint8Array | null)[] = [];
  if (m.entries) {
    try {
      const seqs = state.inclusion.map((i) => i.leaf + 1);
      lines = read ? seqs.map((s) => read.get(s) ?? null) : (journal.entryLines?.(seqs) ?? []);
    } catch (e) {
      log.warn("log_entry_unreadable", { error: (e as Error).message });
    }
  }
  const withEntry = (i: { leaf: number; proof: Uint8Array[] }, k: number): Item => {
    const withheld = (why: LogWithheld): Item => ({ ...i, withheld: why });
    if (budget <= 0) return withheld("later");
    const line = lines[k] ?? null;
    if (!line || !verifyInclusion(i.leaf, body.size, leafHash(line), i.proof, body.root)) {
      if (line) log.warn("log_entry_unreadable", { seq: i.leaf + 1, error: "the line does not match the signed tree" });
      return withheld("unreadable");
    }
    if (!entryIsUsers(line, user)) return withheld("private");
    if (line.length > budget) return withheld("later");
    budget -= line.length;
    return { ...i, entry: line };
  };
  const inclusion = m.entries ? state.inclusion.map(withEntry) : state.inclusion;
  return {
    type: "log_state",
    origin: body.origin,
    size: body.size,
    root: body.root,
    sig: new Uint8Array([...sig.keyId, ...sig.signature]),
    ...(state.consistency ? { consistency: state.consistency } : {}),
    ...(inclusion.length > 0 ? { inclusion } : {}),
  };
}
