/**
 * `transcript verify --against` (docs/TRANSCRIPT.md §8.4, Appendix A): the
 * acks a client recorded with `chat --transcript` held against the server's
 * verified entries, one entry at a time.
 */
import { existsSync } from "node:fs";
import { basename } from "node:path";
import { SecureChatError } from "../errors.ts";
import { type ProblemCode, TranscriptFailure } from "./chain.ts";
import type { Entry } from "./format.ts";
import { type TranscriptLine, readFileLines } from "./read.ts";

export interface AgainstReport {
  file: string;
  acks: number;
  user: string | null;
  /** Acks whose server entry is sealed and could not be opened, so whose text was not compared. */
  uncompared: number;
}

interface Ack {
  line: number;
  raw: string;
  room?: string;
  to?: string;
  seq: number;
  text: string;
  action: boolean;
  tseq?: number;
  head?: string;
  found: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * `verify --against`: the acks a client recorded (`chat --transcript`,
 * {"kind":"ack","room"|"to",…,"seq","text"}) are the server's promises.
 * Each must be a message/direct entry of the server's transcript, from the
 * same user, with the same text, and, when the ack carries tseq/head, the
 * entry at tseq must have that hash.
 */
export class AckChecker {
  readonly #file: string;
  readonly #acks = new Map<string, Ack>();
  readonly #byTseq = new Map<number, Ack>();
  #user: string | null;
  readonly #userGiven: boolean;
  #userFrom: string | null = null;
  #uncompared = 0;
  #lastSeq = 0;

  private constructor(file: string, user: string | null) {
    this.#file = file;
    this.#user = user;
    this.#userGiven = user !== null;
  }

  static async load(path: string, user: string | null): Promise<AckChecker> {
    if (!existsSync(path)) throw new SecureChatError("transcript_missing", `transcript: ${path} does not exist`);
    const c = new AckChecker(basename(path), user);
    for await (const l of readFileLines(path, basename(path))) c.#add(l);
    return c;
  }

  #fail(code: ProblemCode, line: number, reason: string): never {
    throw new TranscriptFailure({ code, file: this.#file, line, reason });
  }

  #add(l: TranscriptLine): void {
    const bad = (why: string): never => this.#fail("ack_malformed", l.line, `malformed client transcript line (${why})`);
    if (l.defect) bad(l.defect === "torn" ? "no final LF" : l.defect === "too_long" ? "longer than 1 MiB" : "not UTF-8");
    if (l.text === "") return;
    let v: unknown;
    try {
      v = JSON.parse(l.text);
    } catch {
      bad("not JSON");
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) bad("not a JSON object");
    const o = v as Record<string, unknown>;
    if (o.kind !== "ack") return;
    const posInt = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;
    if (!posInt(o.seq)) bad("ack.seq must be a positive integer");
    if (typeof o.text !== "string") bad("ack.text must be a string");
    if ((typeof o.room === "string") === (typeof o.to === "string")) bad("an ack names exactly one of room and to");
    if (o.action !== undefined && typeof o.action !== "boolean") bad("ack.action must be a boolean");
    if ((o.tseq === undefined) !== (o.head === undefined)) bad("ack.tseq and ack.head go together");
    if (o.tseq !== undefined && (!posInt(o.tseq) || typeof o.head !== "string" || !HEX64.test(o.head))) bad("ack.tseq/head must be a seq and 64 hex digits");
    const ack: Ack = {
      line: l.line,
      raw: l.text,
      seq: o.seq as number,
      text: o.text as string,
      action: o.action === true,
      found: false,
      ...(typeof o.room === "string" ? { room: o.room } : { to: o.to as string }),
      ...(o.tseq !== undefined ? { tseq: o.tseq as number, head: o.head as string } : {}),
    };
    const key = ackKey(ack.room, ack.seq);
    const seen = this.#acks.get(key);
    if (seen) {
      if (seen.raw === ack.raw) return;
      this.#fail("ack_conflict", l.line, `the server acknowledged two messages as ${describe(ack)} (lines ${seen.line} and ${l.line})`);
    }
    this.#acks.set(key, ack);
    if (ack.tseq !== undefined) {
      const other = this.#byTseq.get(ack.tseq);
      if (other) this.#fail("ack_conflict", l.line, `the server acknowledged two messages as transcript entry ${ack.tseq} (lines ${other.line} and ${l.line})`);
      this.#byTseq.set(ack.tseq, ack);
    }
  }

  /** Called with each verified server entry, in order, and the text of its sealed body if it was opened. */
  entry(e: Entry, at: TranscriptLine, opened: string | null): void {
    this.#lastSeq = e.seq;
    const byT = this.#byTseq.get(e.seq);
    if (byT && byT.head !== e.hash) {
      this.#fail("ack_head", byT.line, `the server acknowledged ${describe(byT)} as transcript entry ${e.seq} with hash ${byT.head!.slice(0, 16)}…, but ${at.file}:${at.line} has another hash — the server log was rewritten`);
    }
    if (e.type !== "message" && e.type !== "direct") return;
    const ack = this.#acks.get(e.type === "message" ? ackKey(e.room as string, e.room_seq as number) : ackKey(undefined, e.dm_seq as number));
    if (!ack) return;
    ack.found = true;
    const there = `${at.file}:${at.line}`;
    if (this.#user === null) {
      this.#user = e.from as string;
      this.#userFrom = there;
    } else if (e.from !== this.#user) {
      const whose = this.#userGiven ? "--user" : `the first acknowledged entry (${this.#userFrom})`;
      this.#fail("ack_user", ack.line, `acknowledged message is from another user (${describe(ack)} is from ${e.from} at ${there}; ${whose} says ${this.#user})`);
    }
    const changed = (what: string): never => this.#fail("message_changed", ack.line, `message changed (${describe(ack)}: ${what} differs at ${there})`);
    if (ack.to !== undefined && e.to !== ack.to) changed("the recipient");
    if ((e.action === true) !== ack.action) changed("the /me flag");
    const text = typeof e.text === "string" ? e.text : opened;
    if (text === null) this.#uncompared++;
    else if (text !== ack.text) changed("the text");
  }

  /** After the last entry: every ack must have been found. */
  finish(): void {
    let first: Ack | null = null;
    let why = "";
    for (const a of this.#acks.values()) {
      if (!a.found && (!first || a.line < first.line)) {
        first = a;
        why = `acknowledged message not in the server transcript (${describe(a)})`;
      }
      if (a.found && a.tseq !== undefined && a.tseq > this.#lastSeq && (!first || a.line < first.line)) {
        first = a;
        why = `acknowledged transcript entry ${a.tseq} (${describe(a)}) is not in the server transcript`;
      }
    }
    if (first) this.#fail("ack_missing", first.line, `${why} — the server log was truncated or rolled back`);
  }

  report(): AgainstReport {
    return { file: this.#file, acks: this.#acks.size, user: this.#user, uncompared: this.#uncompared };
  }
}

function ackKey(room: string | undefined, seq: number): string {
  return room === undefined ? `dm\u0000${seq}` : `room\u0000${room}\u0000${seq}`;
}

function describe(a: Ack): string {
  return a.room !== undefined ? `room ${a.room} seq ${a.seq}` : `direct message to ${a.to} dm seq ${a.seq}`;
}
