/**
 * The client message ids (PROTOCOL.md §7.15) among the transcript's last
 * entries, read backwards from the end at start: what a restarted server
 * needs to answer a resend with its first `ack` instead of recording the
 * message a second time.
 *
 * Only an entry its own run signed counts (a checkpoint after it, before the
 * next `server_start`, with `head_seq` at or past it): an `ack` is sent only
 * once such a checkpoint is durable (TRANSCRIPT.md §6), so an entry of a
 * crashed run's unsigned tail was acknowledged to nobody, and history does
 * not show it (TRANSCRIPT.md §2.5); a resend of it is a new message.
 */
import type { AckedCid } from "../store/journal.ts";
import { parseEntry } from "./format.ts";
import { type TranscriptFile, readLinesBackward } from "./read.ts";

/** How many entries back from the end the start looks for client message ids. */
export const CID_SCAN_ENTRIES = 16_384;

const CID_MEMBER = Buffer.from('"cid":"');
const CHECKPOINT = Buffer.from('"type":"checkpoint"');
const SERVER_START = Buffer.from('"type":"server_start"');

/** The signed entries with a `cid` and `ts` >= `since` among the last `maxEntries` lines of `files`, oldest first. */
export function ackedCidsInTail(files: readonly TranscriptFile[], since: number, maxEntries = CID_SCAN_ENTRIES): AckedCid[] {
  function* newestFirst(): Generator<Buffer> {
    for (let i = files.length - 1; i >= 0; i--) for (const l of readLinesBackward(files[i]!.path)) yield l.bytes;
  }
  return ackedCidsIn(newestFirst(), since, maxEntries);
}

/**
 * The same, over the log's lines given newest first (a directory's files,
 * or the rows of PostgreSQL's `log_lines`: a new core of a cluster answers
 * a resend of what the previous core acknowledged with its first ack).
 */
export function ackedCidsIn(newestFirst: Iterable<Buffer>, since: number, maxEntries = CID_SCAN_ENTRIES): AckedCid[] {
  const found: AckedCid[] = [];
  /** The highest head_seq a checkpoint of the run being read (backwards) signed, so far. */
  let signed = 0;
  let lines = 0;
  for (const line of newestFirst) {
    if (++lines > maxEntries) return found.reverse();
    const isCheckpoint = line.includes(CHECKPOINT);
    if (!isCheckpoint && !line.includes(CID_MEMBER) && !line.includes(SERVER_START)) continue;
    let e: ReturnType<typeof parseEntry>;
    try {
      e = parseEntry(line.toString("utf8"));
    } catch {
      continue; // not an entry: verify reports it
    }
    if (e.type === "checkpoint") signed = Math.max(signed, e.head_seq as number);
    else if (e.type === "server_start") signed = 0;
    if (e.ts < since && e.type !== "checkpoint") return found.reverse();
    const acked = e.cid !== undefined && e.seq <= signed ? ackOf(e) : null;
    if (acked) found.push(acked);
  }
  return found.reverse();
}

function ackOf(e: ReturnType<typeof parseEntry>): AckedCid | null {
  const common = { cid: e.cid as string, ts: e.ts, tseq: e.seq, head: e.hash };
  switch (e.type) {
    case "message":
      return { user: e.from as string, seq: e.room_seq as number, ...common };
    case "direct":
      return { user: e.from as string, seq: e.dm_seq as number, ...common, ...(e.stored ? { stored: true } : {}) };
    case "edit":
    case "delete":
      return { user: e.user as string, seq: (e.room_seq ?? e.dm_seq) as number, ...common };
    default:
      return null;
  }
}
