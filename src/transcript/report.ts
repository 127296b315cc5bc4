/**
 * What `transcript verify` says (docs/TRANSCRIPT.md §8.3): the report as
 * text lines (PASS or FAIL, then warnings and notes) or as `--json`
 * findings, and the caveats export and follow print after a chain that
 * verified.
 */
import { type ProblemCode, failLine } from "./chain.ts";
import type { UnsignedRange } from "./unsigned.ts";
import type { VerifyReport } from "./verify.ts";

type ChainState = { unsealed: number; lastCheckpoint: number | null; hostKey: string | null; pinned: boolean };

function unsignedTailLine(s: ChainState): string | null {
  if (s.unsealed === 0) return null;
  return s.lastCheckpoint === null
    ? `warning: no checkpoint: none of the ${s.unsealed} entries is sealed by a signature`
    : `warning: ${s.unsealed} entries after the last checkpoint (seq ${s.lastCheckpoint}) are not sealed by a signature`;
}

function unpinnedLine(s: ChainState): string | null {
  return s.hostKey && !s.pinned ? `note: signatures were checked against the key the transcript names (${s.hostKey}); pass --host-key to pin it` : null;
}

/** The caveats of a chain that verified: an unsigned tail, an unpinned key. */
export function chainNotes(s: ChainState): string[] {
  return [unsignedTailLine(s), unpinnedLine(s)].filter((l) => l !== null);
}

/**
 * One finding of `transcript verify`, as `--json` prints it (docs/TRANSCRIPT.md
 * §8.3): `text` is the line the text output prints for it.
 */
export type Finding =
  | { kind: "failure"; class: ProblemCode; file: string; line: number | null; seq?: number; text: string }
  | ({ kind: "warning"; text: string } & (
      | { warning: "unsigned_tail"; entries: number; last_checkpoint: number | null }
      | ({ warning: "never_signed" } & UnsignedRange)
      | { warning: "never_signed_more"; crashes: number; entries: number }
    ))
  | ({ kind: "note"; text: string } & (
      | { note: "host_key_unpinned"; host_key: string }
      | { note: "recoveries"; count: number; seqs: number[] }
      | { note: "sealed_bodies"; opened: number; skipped: number }
      | { note: "torn_files"; files: string[] }
      | { note: "against"; file: string; acks: number; user: string | null }
      | { note: "against_uncompared"; uncompared: number }
      | { note: "merkle_root"; size: number; root: string }
      | { note: "extends_checkpoint"; size: number; origin: string }
      | { note: "tree_only"; checkpoints: number }
    ))
  | {
      kind: "summary";
      result: "pass" | "fail";
      class: ProblemCode | null;
      files: number;
      entries: number;
      first_seq: number | null;
      last_seq: number | null;
      head: string | null;
      last_checkpoint: number | null;
      unsigned: number;
      host_key: string | null;
      pinned: boolean;
      recoveries: number;
      never_signed: { crashes: number; entries: number };
      text: string | null;
    };

/** The report's findings in the order the text output prints them (the summary is its PASS line, or the line after FAIL). */
function findings(r: VerifyReport): Finding[] {
  const out: Finding[] = [];
  const summary = (text: string | null): Finding => ({
    kind: "summary",
    result: r.problem ? "fail" : "pass",
    class: r.problem?.code ?? null,
    files: r.files,
    entries: r.entries,
    first_seq: r.firstSeq,
    last_seq: r.lastSeq,
    head: r.head,
    last_checkpoint: r.lastCheckpoint,
    unsigned: r.unsealed,
    host_key: r.hostKey,
    pinned: r.pinned,
    recoveries: r.recoveries.count,
    never_signed: { crashes: r.neverSigned.count, entries: r.neverSigned.entries },
    text,
  });
  if (r.problem) {
    const p = r.problem;
    out.push({ kind: "failure", class: p.code, file: p.file, line: p.line > 0 ? p.line : null, ...(p.seq === undefined ? {} : { seq: p.seq }), text: failLine(p) });
    const n = `${r.entries} ${r.entries === 1 ? "entry" : "entries"}`;
    // Found against outside evidence (a client's acks, a saved checkpoint): the transcript itself verified that far.
    const client = p.code.startsWith("ack_") || p.code === "message_changed" || p.code === "checkpoint_foreign" || p.code === "checkpoint_unwitnessed" || p.code === "rolled_back";
    out.push(summary(r.entries === 0 ? null : client ? `the server transcript verified (${n}) up to where this was found` : `the ${n} before it verified`));
    return out;
  }
  const files = `${r.files} file${r.files === 1 ? "" : "s"}`;
  out.push(summary(`PASS: ${r.entries} entries in ${files}; ${r.lastCheckpoint === null ? "no checkpoint" : `last checkpoint at seq ${r.lastCheckpoint}`}`));
  if (r.tree) {
    const text = `root: ${r.tree.root} (RFC 9162 Merkle tree of the ${r.tree.size} line${r.tree.size === 1 ? "" : "s"}, TRANSCRIPT.md §3.6)`;
    out.push({ kind: "note", note: "merkle_root", size: r.tree.size, root: r.tree.root, text });
  }
  if (r.treeOnly) {
    const n = r.treeOnly.checkpoints;
    const text = `note: --tree-only: every line's leaf hash, the root and the signatures of ${n === 1 ? "the 1 checkpoint" : `all ${n} checkpoints`} checked; not each entry's form, the hash chain, or what the entries say (TRANSCRIPT.md §8.6)`;
    out.push({ kind: "note", note: "tree_only", checkpoints: n, text });
  }
  if (r.saved) {
    const text = `the log extends the saved checkpoint: its first ${r.saved.size} lines are the ones ${r.saved.origin} signed then`;
    out.push({ kind: "note", note: "extends_checkpoint", size: r.saved.size, origin: r.saved.origin, text });
  }
  const tail = unsignedTailLine(r);
  if (tail !== null) out.push({ kind: "warning", warning: "unsigned_tail", entries: r.unsealed, last_checkpoint: r.lastCheckpoint, text: tail });
  const unpinned = unpinnedLine(r);
  if (unpinned !== null) out.push({ kind: "note", note: "host_key_unpinned", host_key: r.hostKey!, text: unpinned });
  const rec = r.recoveries;
  if (rec.count > 0) {
    const text = `note: ${rec.count} crash recover${rec.count === 1 ? "y" : "ies"} recorded (seq ${rec.seqs.join(", ")}${rec.count > rec.seqs.length ? ", …" : ""})`;
    out.push({ kind: "note", note: "recoveries", count: rec.count, seqs: rec.seqs, text });
  }
  for (const range of r.neverSigned.ranges) out.push({ kind: "warning", warning: "never_signed", ...range, text: neverSignedLine(range) });
  const more = neverSignedMoreLine(r.neverSigned);
  if (more !== null) out.push({ kind: "warning", warning: "never_signed_more", crashes: r.neverSigned.count - r.neverSigned.ranges.length, entries: r.neverSigned.entries, text: more });
  if (r.sealed) {
    const { opened, skipped } = r.sealed;
    const text = `note: ${opened} sealed bod${opened === 1 ? "y" : "ies"} opened with --identity${skipped > 0 ? `; ${skipped} sealed to another auditor key, not checked` : ""}`;
    out.push({ kind: "note", note: "sealed_bodies", opened, skipped, text });
  }
  if (r.torn.length > 0) {
    const text = `note: ${r.torn.length} .torn file${r.torn.length === 1 ? "" : "s"} (bytes cut off by crash recovery, not part of the chain): ${r.torn.join(", ")}`;
    out.push({ kind: "note", note: "torn_files", files: r.torn, text });
  }
  if (r.against) {
    const a = r.against;
    const text = `against ${a.file}: ${a.acks} acknowledged message${a.acks === 1 ? "" : "s"} found in the server transcript${a.user ? ` (user ${a.user})` : ""}`;
    out.push({ kind: "note", note: "against", file: a.file, acks: a.acks, user: a.user, text });
    if (a.uncompared > 0) out.push({ kind: "note", note: "against_uncompared", uncompared: a.uncompared, text: `note: ${a.uncompared} of them are sealed; their text was not compared (pass --identity)` });
  }
  return out;
}

/** What `transcript verify` prints: PASS and its warnings and notes, or FAIL and how far it got. */
export function reportLines(r: VerifyReport): string[] {
  return findings(r).flatMap((f) => (f.text === null ? [] : [f.text]));
}

/** What `transcript verify --json` prints: one object per finding, in the text output's order, then the summary. */
export function reportObjects(r: VerifyReport): Finding[] {
  const all = findings(r);
  return [...all.filter((f) => f.kind !== "summary"), ...all.filter((f) => f.kind === "summary")];
}

function neverSignedLine(r: UnsignedRange): string {
  const count = r.to - r.from + 1;
  const what = count === 1 ? `1 entry, seq ${r.from}` : `${count} entries, seq ${r.from}–${r.to}`;
  const messages = r.messages === 0 ? "" : ` (${r.messages} message${r.messages === 1 ? "" : "s"})`;
  const rest = count === 1 ? "was never signed: the server did not acknowledge it, and it rests" : "were never signed: the server acknowledged none of them, and they rest";
  return `warning: ${what}${messages}, written before the crash at seq ${r.crash}, ${rest} on the files alone`;
}

function neverSignedMoreLine(n: VerifyReport["neverSigned"]): string | null {
  const more = n.count - n.ranges.length;
  return more > 0 ? `warning: … and ${more} more crash${more === 1 ? "" : "es"} with never-signed entries (${n.entries} such entries in all)` : null;
}
