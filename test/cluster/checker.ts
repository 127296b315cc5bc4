/**
 * The exactly-once-in-order checker of a chaos run: what every member saw,
 * held against what every sender was acknowledged and what the transcript
 * recorded. It reads only what a user and an auditor have: each `chat
 * --json` client's output, and the output of `transcript verify --json` and
 * `transcript export --stored`. It knows nothing of the server's insides.
 *
 * A member's **view** of a room is what its client printed for that room,
 * in the order printed: every `message` event of the room, live or history
 * (the history a rejoin after a reconnect pages in, and the history shown on
 * the first join), and every `ack` of the member's own `say` to the room
 * (the server does not echo a sender's message back to it: the ack's `seq`
 * is its place in the room), taken with the room and text of the `sent`
 * event of the same id. An ack that comes while the client is resuming
 * (after `disconnected`, before `reconnected`) answers a line sent again
 * right after the reconnect, before the rooms are rejoined (PROTOCOL.md
 * §7.15): the message may have been recorded after others the member has
 * yet to be shown, which the rejoin's history then brings, and the client
 * lets the ack stand for the history's copy of it. In the view it takes
 * that place: before the first message shown after it with a higher seq
 * (or where the resume ends). The member is in the room from its first `room`
 * event for it (whose `seq` is the room's last message then) to the end of
 * the run: the client rejoins after every reconnect, asking from the last
 * seq it saw.
 *
 * The rules (each broken one is a problem, a line of text naming the user,
 * room, seq or text concerned):
 *
 * 1. The transcript verifies (`result: pass`, against the pinned host key).
 * 2. The transcript holds each room message once: no `(room, room_seq)`
 *    twice, no text twice (every text a run sends is unique), and each
 *    room's numbers run 1, 2, … without a hole.
 * 3. Every acknowledged message is in the transcript exactly once: the entry
 *    at the ack's `tseq` has the ack's `head` as its hash and is that
 *    message (room, `room_seq` = the ack's `seq`, sender, text), and it is
 *    not among the entries a crashed run never signed (an ack waits for a
 *    checkpoint covering its entry).
 * 4. In every view, seqs strictly increase in the order shown (a seq twice
 *    is a duplicate shown, a smaller one is out of order), each shown
 *    message is the transcript's message at that seq (sender and text: a
 *    message shown that the transcript does not hold, or holds with other
 *    words, is a phantom), and no text is shown twice.
 * 5. No gap: every message of the transcript after the member's join seq
 *    is in its view, except those a crashed run never signed (TRANSCRIPT.md
 *    §2.5: acknowledged to no one and left out of history, so a member
 *    reconnecting cannot be shown them, while one that was connected may
 *    have been). In particular every acknowledged message is in every
 *    member's view exactly once.
 */

/** A JSON object a `chat --json` printed. */
export type ChatEvent = { type: string } & Record<string, unknown>;

/** One transcript line as `transcript export --stored` prints it (only what the checker reads). */
export interface Entry {
  seq: number;
  hash: string;
  type: string;
  room?: string;
  room_seq?: number;
  from?: string;
  text?: string;
}

/** The lines of `transcript verify --json` (only what the checker reads). */
export type VerifyLine =
  | { kind: "summary"; result: string; text: string | null }
  | { kind: "warning"; warning: string; from?: number; to?: number }
  | { kind: string };

export interface Member {
  user: string;
  events: ChatEvent[];
}

export interface Shown {
  seq: number;
  from: string;
  text: string | undefined;
  how: "live" | "history" | "ack";
}

export interface Acked {
  user: string;
  room: string;
  text: string;
  seq: number;
  tseq: number | undefined;
  head: string | undefined;
}

export interface View {
  /** Per room: the seq of the first `room` event (the join) and what was shown, in order. */
  rooms: Map<string, { joinSeq: number; shown: Shown[] }>;
  acked: Acked[];
  /** Lines sent to a room that got no ack (an `unsent` event instead, or nothing). */
  unacked: { room: string; text: string }[];
}

/** A member's view (see the file's comment), its acknowledged messages and its unacknowledged ones. */
export function viewOf(m: Member): View {
  const rooms = new Map<string, { joinSeq: number; shown: Shown[] }>();
  const sent = new Map<number, { room: string; text: string }>();
  const acked: Acked[] = [];
  const answered = new Set<number>();
  /** Acks that came while resuming, per room, not yet placed (see the file's comment). */
  const early = new Map<string, Shown[]>();
  let resuming = false;
  /** Places the early acks of `room` that come before `seq` (all of them when undefined). */
  const place = (room: string, seq?: number): void => {
    const waiting = early.get(room);
    const shown = rooms.get(room)?.shown;
    if (!waiting || !shown) return;
    waiting.sort((a, b) => a.seq - b.seq);
    while (waiting.length > 0 && (seq === undefined || waiting[0]!.seq < seq)) shown.push(waiting.shift()!);
  };
  for (const e of m.events) {
    if (e.type === "room" && !rooms.has(e.room as string)) rooms.set(e.room as string, { joinSeq: e.seq as number, shown: [] });
    else if (e.type === "sent" && typeof e.room === "string") sent.set(e.id as number, { room: e.room, text: e.text as string });
    else if (e.type === "disconnected") resuming = true;
    else if (e.type === "reconnected") {
      resuming = false;
      for (const room of early.keys()) place(room);
    } else if (e.type === "message") {
      place(e.room as string, e.seq as number);
      rooms.get(e.room as string)?.shown.push({ seq: e.seq as number, from: e.from as string, text: e.text as string | undefined, how: e.history ? "history" : "live" });
    } else if (e.type === "ack") {
      const s = sent.get(e.id as number);
      if (!s) continue;
      answered.add(e.id as number);
      const shown: Shown = { seq: e.seq as number, from: m.user, text: s.text, how: "ack" };
      if (resuming) early.set(s.room, [...(early.get(s.room) ?? []), shown]);
      else rooms.get(s.room)?.shown.push(shown);
      acked.push({ user: m.user, room: s.room, text: s.text, seq: e.seq as number, tseq: e.tseq as number | undefined, head: e.head as string | undefined });
    }
  }
  for (const room of early.keys()) place(room);
  const unacked = [...sent].filter(([id]) => !answered.has(id)).map(([, s]) => s);
  return { rooms, acked, unacked };
}

export interface CheckInput {
  members: Member[];
  verify: VerifyLine[];
  entries: Entry[];
}

export interface CheckResult {
  problems: string[];
  /** Figures for the report: messages acknowledged, unacknowledged, recorded, and shown in all views. */
  stats: { acked: number; unacked: number; recorded: number; shown: number; neverSigned: number };
}

/** Applies rules 1–5 (see the file's comment). */
export function check(input: CheckInput): CheckResult {
  const problems: string[] = [];
  const say = (p: string) => problems.push(p);

  // 1. The transcript verifies.
  const summary = input.verify.find((l): l is Extract<VerifyLine, { kind: "summary" }> => l.kind === "summary");
  if (!summary) say("transcript: verify printed no summary");
  else if (summary.result !== "pass") say(`transcript: verify failed: ${summary.text}`);
  if (input.verify.some((l) => l.kind === "warning" && (l as { warning: string }).warning === "never_signed_more")) {
    say("transcript: more crashes than verify lists never-signed entries for: the checker cannot tell which entries were never signed");
  }
  const neverSigned = (seq: number): boolean =>
    input.verify.some((l) => l.kind === "warning" && (l as { warning: string }).warning === "never_signed" && seq >= (l as { from: number }).from && seq <= (l as { to: number }).to);

  // 2. The transcript holds each room message once.
  const messages = input.entries.filter((e) => e.type === "message");
  const byRoomSeq = new Map<string, Entry>();
  const bySeq = new Map<number, Entry>();
  const texts = new Map<string, Entry>();
  const last = new Map<string, number>();
  for (const e of input.entries) bySeq.set(e.seq, e);
  for (const e of messages) {
    const key = `${e.room} ${e.room_seq}`;
    const twin = byRoomSeq.get(key);
    if (twin) say(`transcript: ${e.room} seq ${e.room_seq} recorded twice (entries ${twin.seq} and ${e.seq}: ${JSON.stringify(twin.text)}, ${JSON.stringify(e.text)})`);
    else byRoomSeq.set(key, e);
    if (e.text !== undefined) {
      const same = texts.get(e.text);
      if (same) say(`transcript: ${JSON.stringify(e.text)} recorded twice (${e.room} seq ${same.room_seq} and ${e.room_seq})`);
      else texts.set(e.text, e);
    }
    last.set(e.room!, Math.max(last.get(e.room!) ?? 0, e.room_seq!));
  }
  for (const [room, n] of last) {
    for (let s = 1; s <= n; s++) if (!byRoomSeq.has(`${room} ${s}`)) say(`transcript: ${room} has no message ${s} (its numbers go to ${n})`);
  }

  // 3. Every acknowledged message is in the transcript, once, where its ack says.
  const views = input.members.map((m) => ({ user: m.user, view: viewOf(m) }));
  const acked = views.flatMap((v) => v.view.acked);
  for (const a of acked) {
    const what = `${a.user}'s ${JSON.stringify(a.text)} (acked as ${a.room} seq ${a.seq}, tseq ${a.tseq})`;
    const e = a.tseq === undefined ? undefined : bySeq.get(a.tseq);
    if (!e) say(`acked but not in the transcript: ${what}`);
    else if (e.hash !== a.head) say(`acked with a head the transcript does not have at tseq ${a.tseq}: ${what}`);
    else if (e.type !== "message" || e.room !== a.room || e.room_seq !== a.seq || e.from !== a.user || e.text !== a.text) {
      say(`acked, but the transcript's entry ${a.tseq} is another message (${e.type} ${e.room} seq ${e.room_seq} from ${e.from}: ${JSON.stringify(e.text)}): ${what}`);
    } else if (neverSigned(e.seq)) say(`acked, but among the entries a crashed run never signed: ${what}`);
  }
  const ackedKeys = new Set(acked.map((a) => `${a.room} ${a.seq}`));

  // 4 and 5, per member and room.
  let shownTotal = 0;
  for (const { user, view } of views) {
    for (const [room, { joinSeq, shown }] of view.rooms) {
      shownTotal += shown.length;
      const seen = new Set<number>();
      const seenText = new Map<string, number>();
      let prev = 0;
      for (const s of shown) {
        const at = `${user} in ${room}: seq ${s.seq} (${s.how}) ${JSON.stringify(s.text)}`;
        if (seen.has(s.seq)) say(`shown twice: ${at}`);
        else if (s.seq < prev) say(`out of order (after seq ${prev}): ${at}`);
        seen.add(s.seq);
        prev = Math.max(prev, s.seq);
        if (s.text !== undefined) {
          const before = seenText.get(s.text);
          if (before !== undefined && before !== s.seq) say(`the same text shown twice (seq ${before} and ${s.seq}): ${at}`);
          seenText.set(s.text, s.seq);
        }
        const e = byRoomSeq.get(`${room} ${s.seq}`);
        if (!e) say(`shown but not in the transcript: ${at}`);
        else if (e.from !== s.from || e.text !== s.text) say(`shown, but the transcript has ${e.from}: ${JSON.stringify(e.text)} at that seq: ${at}`);
      }
      for (let q = joinSeq + 1; q <= (last.get(room) ?? 0); q++) {
        if (seen.has(q)) continue;
        const e = byRoomSeq.get(`${room} ${q}`);
        if (e && neverSigned(e.seq) && !ackedKeys.has(`${room} ${q}`)) continue;
        say(`gap: ${user} in ${room} (joined after seq ${joinSeq}) was never shown seq ${q}${ackedKeys.has(`${room} ${q}`) ? " (acknowledged)" : ""}: ${e ? `${e.from}: ${JSON.stringify(e.text)}` : "not in the transcript"}`);
      }
    }
  }

  return {
    problems,
    stats: {
      acked: acked.length,
      unacked: views.reduce((n, v) => n + v.view.unacked.length, 0),
      recorded: messages.length,
      shown: shownTotal,
      neverSigned: messages.filter((e) => neverSigned(e.seq)).length,
    },
  };
}

/** Parses JSON lines (blank lines skipped). */
export function jsonLines<T>(text: string): T[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}
