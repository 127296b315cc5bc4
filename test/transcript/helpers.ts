/**
 * Builds transcripts for tests the way the writer lays them out
 * (docs/TRANSCRIPT.md §2): DIR/YYYY-MM-DD.NNNNNNNNNNNN.jsonl, entries made
 * with format.ts's makeEntry/entryLine/signCheckpoint, checkpoints every K
 * entries, bodies optionally sealed to an auditor key with a seal_key entry
 * at the start of each file. Keys come from fixed seeds, so runs repeat.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBase64 } from "../../src/bytes.ts";
import { type Ed25519KeyPair, type X25519KeyPair, ed25519Generate, x25519Generate } from "../../src/crypto/index.ts";
import { type Entry, type EntryFields, GENESIS, entryLine, makeEntry, sealBody, signCheckpoint, wrapFileKey } from "../../src/transcript/format.ts";

export const T0 = Date.UTC(2026, 10, 22, 9, 0, 0);

export function hostKeyPair(seed = 1): Ed25519KeyPair {
  return ed25519Generate(new Uint8Array(32).fill(seed));
}

export function auditorKeyPair(seed = 2): X25519KeyPair {
  return x25519Generate(new Uint8Array(32).fill(seed));
}

export function tempDir(prefix = "transcript"): string {
  const root = process.env.SECURECHAT_DATA ?? tmpdir();
  mkdirSync(root, { recursive: true });
  return mkdtempSync(join(root, `${prefix}-`));
}

export function fileName(ts: number, firstSeq: number): string {
  return `${new Date(ts).toISOString().slice(0, 10)}.${String(firstSeq).padStart(12, "0")}.jsonl`;
}

/** A hash chain under construction: entries numbered, chained and (optionally) sealed like the writer's. */
export class Chain {
  entries: Entry[] = [];
  /** The text of every sealed body, by seq. */
  plain = new Map<number, string>();
  ts: number;
  #fileKey: Uint8Array | null = null;
  #keySeq = 0;

  constructor(
    readonly host: Ed25519KeyPair,
    readonly auditor: Uint8Array | null = null,
    start = T0,
    readonly step = 1000,
  ) {
    this.ts = start;
  }

  get head(): string {
    return this.entries.at(-1)?.hash ?? GENESIS;
  }

  get seq(): number {
    return this.entries.length;
  }

  add(type: string, fields: EntryFields, ts?: number): Entry {
    this.ts = ts ?? this.ts + this.step;
    const seq = this.seq + 1;
    let f = fields;
    if (this.#fileKey && (type === "message" || type === "direct" || type === "edit") && typeof fields.text === "string") {
      const { text, ...rest } = fields;
      f = { ...rest, sealed: sealBody(this.#fileKey, seq, text), key_seq: this.#keySeq };
      this.plain.set(seq, text);
    }
    const e = makeEntry(this.head, seq, this.ts, type, f);
    this.entries.push(e);
    return e;
  }

  checkpoint(signer: Ed25519KeyPair = this.host): Entry {
    return this.add("checkpoint", { head_seq: this.seq, head: this.head, sig: signCheckpoint(signer.secretKey, this.seq, this.head) });
  }

  /** A seal_key entry and a fresh file key for the bodies after it. */
  sealKey(): Entry {
    const { fileKey, fields } = wrapFileKey(this.auditor!);
    this.#fileKey = fileKey;
    const e = this.add("seal_key", fields);
    this.#keySeq = e.seq;
    return e;
  }
}

export interface BuildOptions {
  /** Exact number of entries. */
  entries: number;
  files?: number;
  /** A checkpoint after every K other entries. */
  checkpointEvery?: number;
  /** End with a checkpoint (the last entry is one). */
  finalCheckpoint?: boolean;
  host?: Ed25519KeyPair;
  /** Seal message/direct bodies to this X25519 public key. */
  seal?: Uint8Array;
}

export interface Built {
  dir: string;
  names: string[];
  /** Lines of each file, without LF. */
  files: string[][];
  entries: Entry[];
  host: Ed25519KeyPair;
  /** Sealed bodies' text by seq. */
  plain: Map<number, string>;
}

/** The chat that fills a test transcript: sessions, joins, messages in two rooms, DMs. */
function activity(c: Chain, i: number, roomSeq: Map<string, number>, dm: { seq: number }): void {
  const session = toBase64(new Uint8Array(16).fill(i % 251));
  const next = (room: string) => {
    const n = (roomSeq.get(room) ?? 0) + 1;
    roomSeq.set(room, n);
    return n;
  };
  switch (i % 12) {
    case 0:
      return void c.add("session_open", { user: "alice", session, source: "127.0.0.1:40000" });
    case 1:
      return void c.add("join", { room: "general", user: "alice" });
    case 2:
      return void c.add("session_open", { user: "bob", session, source: "127.0.0.1:40001" });
    case 3:
      return void c.add("join", { room: "general", user: "bob" });
    case 4:
      return void c.add("message", { room: "general", room_seq: next("general"), from: "alice", text: `hello ${i}` });
    case 5:
      return void c.add("message", { room: "general", room_seq: next("general"), from: "bob", text: `waves ${i}`, action: true });
    case 6:
      return void c.add("direct", { dm_seq: ++dm.seq, from: "alice", to: "bob", text: `psst ${i} ✓` });
    case 7:
      return void c.add("join", { room: "ops", user: "carol" });
    case 8:
      return void c.add("message", { room: "ops", room_seq: next("ops"), from: "carol", text: `deploy ${i}` });
    case 9:
      return void c.add("leave", { room: "general", user: "bob" });
    case 10:
      return void c.add("session_close", { user: "bob", session });
    default:
      return void c.add("login_failed", { source: "127.0.0.1:40002", reason: "bad password" });
  }
}

/** Entries for a transcript: server_start, then chat, checkpoints every K; file boundaries as indexes. */
export function buildEntries(opts: BuildOptions): { entries: Entry[]; starts: number[]; host: Ed25519KeyPair; plain: Map<number, string> } {
  const host = opts.host ?? hostKeyPair();
  const files = opts.files ?? 3;
  const every = opts.checkpointEvery ?? 10;
  const final = opts.finalCheckpoint ?? true;
  const c = new Chain(host, opts.seal ?? null);
  const per = Math.ceil(opts.entries / files);
  const starts: number[] = [];
  const roomSeq = new Map<string, number>();
  const dm = { seq: 0 };
  let since = 0;
  let i = 0;
  while (c.seq < opts.entries) {
    if (c.seq % per === 0 && starts.length < files && starts.at(-1) !== c.seq) {
      starts.push(c.seq);
      if (c.seq === 0) c.add("server_start", { host_key: toBase64(host.publicKey), version: "test" });
      if (opts.seal && c.seq < opts.entries) c.sealKey();
      continue;
    }
    const last = c.seq === opts.entries - 1;
    if ((final && last) || (since >= every && !last)) {
      c.checkpoint();
      since = 0;
      continue;
    }
    activity(c, i++, roomSeq, dm);
    since++;
  }
  return { entries: c.entries, starts, host, plain: c.plain };
}

export function linesOf(entries: Entry[]): string[] {
  return entries.map((e) => entryLine(e).slice(0, -1));
}

/** Writes files of lines (each gets its LF) into a fresh directory, replacing what was there. */
export function writeFiles(dir: string, names: string[], files: string[][]): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  names.forEach((n, k) => writeFileSync(join(dir, n), files[k]!.map((l) => `${l}\n`).join("")));
}

export function splitFiles(entries: Entry[], starts: number[]): { names: string[]; files: string[][] } {
  const names = starts.map((s) => fileName(entries[s]!.ts, entries[s]!.seq));
  const files = starts.map((s, k) => linesOf(entries.slice(s, starts[k + 1] ?? entries.length)));
  return { names, files };
}

/** A transcript on disk in `dir` (created if not given). */
export function buildTranscript(opts: BuildOptions, dir = tempDir()): Built {
  const { entries, starts, host, plain } = buildEntries(opts);
  const { names, files } = splitFiles(entries, starts);
  writeFiles(dir, names, files);
  return { dir, names, files, entries, host, plain };
}

/** Writes a chain's entries as one transcript file in a fresh directory. */
export function writeChain(c: Chain, dir = tempDir()): string {
  writeFiles(dir, [fileName(c.entries[0]!.ts, 1)], [linesOf(c.entries)]);
  return dir;
}

export function readLines(path: string): string[] {
  return readFileSync(path, "utf8").split("\n").slice(0, -1);
}

export function listDir(dir: string): string[] {
  return readdirSync(dir).sort();
}

/**
 * A client's `chat --transcript` file for `user`: a sent line and an ack for
 * each of their room messages and DMs, as src/client/chat.ts writes them.
 */
export function clientAcks(entries: Entry[], user: string, withHead = true, plain = new Map<number, string>()): string[] {
  const out: string[] = [];
  let id = 0;
  for (const e of entries) {
    if ((e.type !== "message" && e.type !== "direct") || e.from !== user) continue;
    id++;
    const where = e.type === "message" ? { room: e.room } : { to: e.to };
    const text = typeof e.text === "string" ? e.text : plain.get(e.seq)!;
    out.push(JSON.stringify({ kind: "sent", at: e.ts, id, ...where, text }));
    out.push(
      JSON.stringify({
        kind: "ack",
        id,
        ...where,
        seq: e.type === "message" ? e.room_seq : e.dm_seq,
        ts: e.ts,
        text,
        ...(e.action ? { action: true } : {}),
        ...(withHead ? { tseq: e.seq, head: e.hash } : {}),
      }),
    );
  }
  return out;
}

export { type CliRun as Run, runCli } from "../cli.ts";
