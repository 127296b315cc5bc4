/**
 * The log's side of witnessing (docs/TRANSCRIPT.md §4.5; `serve --witness
 * URL=VKEY`, `--witness-quorum K`, `--witness-grace`): after a tree
 * checkpoint becomes durable, a round submits the newest one to every
 * witness (c2sp.org/tlog-witness add-checkpoint), one request per witness
 * at a time, all for the same checkpoint; checkpoints made meanwhile are
 * not each submitted, the next round takes the newest. The cosignatures
 * are kept in `DATA/cosigned.checkpoint` (a single node) or in the
 * cluster's PostgreSQL (`log_cosigned`, so that the next core continues
 * from them): a `CosignedStore`.
 *
 * A witness that cosigned a larger tree than this log holds (409 with a
 * larger size) or that holds one this log does not extend (422) is evidence
 * that the log was rolled back or forked: logged at error level as
 * `witness_conflict`. A witness that is down is a warning, retried with
 * backoff. Nothing here holds up an acknowledgement.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { toBase64 } from "../bytes.ts";
import { type Logger, logError } from "../log.ts";
import { writePrivateFile } from "../paths.ts";
import type { Journal } from "../store/journal.ts";
import { noteCosignatures } from "../transcript/cosignature.ts";
import { type NoteVerifier, parseCheckpoint, parseNote } from "../transcript/note.ts";
import { boundedBody } from "./witnesshttp.ts";

/** The most witnesses one server submits to. */
export const WITNESSES_MAX = 16;

/** A witness's answer longer than this is not one (it is a few signature lines). */
const ANSWER_BYTES_MAX = 64 * 1024;

export interface WitnessTarget {
  /** The submission prefix: add-checkpoint is `${url}/add-checkpoint`. */
  url: string;
  verifier: NoteVerifier;
  /** Its vkey, as given (for the log). */
  vkey: string;
}

/** Where the kept cosigned checkpoint lives. */
export interface CosignedStore {
  /** Its name, for the log. */
  readonly where: string;
  /** The kept note, or null (read when the submitter starts). */
  load(): string | null;
  /** Keeps `note` (the checkpoint of `size` lines with its cosignatures) in place of the one kept. */
  save(note: string, size: number): void | Promise<void>;
}

/** DATA/cosigned.checkpoint, replaced atomically, 0600. */
export function fileCosigned(dataDir: string): CosignedStore {
  const path = cosignedPath(dataDir);
  return {
    where: path,
    load: () => (existsSync(path) ? readFileSync(path, "utf8") : null),
    save: (note) => writePrivateFile(path, note),
  };
}

export interface SubmitterOptions {
  /** The kept cosigned checkpoint's store: `store`, else DATA/cosigned.checkpoint in `dataDir`. */
  dataDir?: string;
  store?: CosignedStore;
  witnesses: readonly WitnessTarget[];
  quorum: number;
  /** How long the newest checkpoint may go without its quorum before `witness_quorum_missing`. */
  graceMs: number;
  log: Logger;
  journal: Pick<Journal, "logState" | "consistency" | "onSignedTree">;
  /** Per request. */
  timeoutMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  now?: () => number;
}

interface Kept {
  note: string;
  size: number;
  /** Count of valid cosignatures, by the configured witnesses. */
  count: number;
}

type Outcome = { lines: string[] } | { failed: true };

export function cosignedPath(dataDir: string): string {
  return join(dataDir, "cosigned.checkpoint");
}

export class WitnessSubmitter {
  readonly #o: Required<Omit<SubmitterOptions, "journal" | "dataDir" | "store">> & Pick<SubmitterOptions, "journal">;
  readonly #store: CosignedStore;
  /** Per witness (by vkey): the size it last cosigned, as far as this server knows. */
  readonly #known = new Map<string, number>();
  readonly #retryAt = new Map<string, number>();
  readonly #backoff = new Map<string, number>();
  #kept: Kept | null = null;
  #running = false;
  #again = false;
  #closed = false;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  readonly #checkTimer: ReturnType<typeof setInterval>;
  readonly #abort = new AbortController();
  /** The largest size a quorum cosigned (0: none yet); since when a newer checkpoint has lacked it. */
  #quorumSize = 0;
  #lagSince: number | null = null;
  #lastMissingLog = -Infinity;
  #missing = false;

  constructor(opts: SubmitterOptions) {
    const { dataDir, store, ...rest } = opts;
    if (!store && dataDir === undefined) throw new Error("WitnessSubmitter: a store or a data directory");
    this.#store = store ?? fileCosigned(dataDir!);
    this.#o = { timeoutMs: 10_000, backoffMinMs: 1000, backoffMaxMs: 300_000, now: Date.now, ...rest };
    this.#load();
    opts.journal.onSignedTree?.(() => this.kick());
    this.#checkTimer = setInterval(() => this.#checkQuorum(), Math.min(1000, this.#o.graceMs));
    this.#checkTimer.unref?.();
    this.kick();
  }

  /** The kept cosigned checkpoint (note with every cosignature got for it), if any. */
  get kept(): { note: string; size: number } | null {
    return this.#kept;
  }

  #load(): void {
    const path = this.#store.where;
    try {
      const note = this.#store.load();
      if (note === null) return;
      const size = parseCheckpoint(parseNote(note).text).size;
      let count = 0;
      for (const w of this.#o.witnesses) {
        if (noteCosignatures(note, [w.verifier]).length > 0) {
          this.#known.set(w.vkey, size);
          count++;
        }
      }
      this.#kept = { note, size, count };
      if (count >= this.#o.quorum) this.#quorumSize = size;
    } catch (e) {
      this.#o.log.warn("witness_cosigned_unreadable", { path, error: (e as Error).message });
    }
  }

  /** A newer checkpoint is durable, or a witness is due again: run a round (or one more after the current). */
  kick(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    void this.#rounds()
      .catch((e: unknown) => this.#o.log.warn("witness_round_failed", { error: (e as Error).message }))
      .finally(() => {
        this.#running = false;
      });
  }

  close(): void {
    this.#closed = true;
    this.#abort.abort();
    clearInterval(this.#checkTimer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
  }

  async #rounds(): Promise<void> {
    do {
      this.#again = false;
      const state = this.#o.journal.logState?.(undefined, []) ?? null;
      if (!state) return;
      const now = this.#o.now();
      const due = this.#o.witnesses.filter((w) => (this.#retryAt.get(w.vkey) ?? 0) <= now);
      const had = this.#kept?.size === state.size ? this.#kept.note : null;
      const outcomes = await Promise.all(due.map((w) => this.#submit(w, state.note, state.size)));
      if (this.#closed) return;
      const lines = outcomes.flatMap((o) => ("lines" in o ? o.lines : []));
      if (lines.length > 0) this.#keep(state.note, state.size, had, lines);
      this.#scheduleRetry();
    } while (this.#again && !this.#closed);
  }

  #scheduleRetry(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const next = Math.min(...this.#o.witnesses.map((w) => this.#retryAt.get(w.vkey) ?? Infinity));
    if (!Number.isFinite(next)) return;
    this.#retryTimer = setTimeout(() => this.kick(), Math.max(0, next - this.#o.now()));
    this.#retryTimer.unref?.();
  }

  #failed(w: WitnessTarget): Outcome {
    const wait = Math.min(this.#o.backoffMaxMs, (this.#backoff.get(w.vkey) ?? this.#o.backoffMinMs / 2) * 2);
    this.#backoff.set(w.vkey, wait);
    this.#retryAt.set(w.vkey, this.#o.now() + wait);
    return { failed: true };
  }

  /** One witness, one checkpoint: at most two requests (the second from the size a 409 names). */
  async #submit(w: WitnessTarget, note: string, size: number): Promise<Outcome> {
    let old = this.#known.get(w.vkey) ?? 0;
    if (old > size) old = 0; // what we kept is ahead of the log: let the witness say its size
    for (let attempt = 0; attempt < 2; attempt++) {
      const proof = this.#o.journal.consistency?.(old, size) ?? (old === 0 ? [] : null);
      if (proof === null) return this.#failed(w);
      const body = `old ${old}\n${(old === 0 ? [] : proof).map((h) => `${toBase64(h)}\n`).join("")}\n${note}`;
      let status: number;
      let answer: string;
      let type: string;
      try {
        const res = await fetch(`${w.url}/add-checkpoint`, {
          method: "POST",
          body,
          headers: { "content-type": "text/plain; charset=utf-8" },
          redirect: "error",
          signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#o.timeoutMs)]),
        });
        status = res.status;
        type = res.headers.get("content-type") ?? "";
        const raw = await boundedBody(res, ANSWER_BYTES_MAX);
        answer = raw === null ? "" : new TextDecoder().decode(raw);
      } catch (e) {
        if (this.#closed) return { failed: true };
        this.#o.log.warn("witness_unreachable", { witness: w.url, size, error: (e as Error).message });
        return this.#failed(w);
      }
      if (status === 200) {
        let found: ReturnType<typeof noteCosignatures> = [];
        try {
          found = noteCosignatures(`${note}${answer}`, [w.verifier]);
        } catch {
          // a line of this witness's key that does not verify: reported below
        }
        if (found.length === 0) {
          logError(this.#o.log, "witness_bad_cosignature", { witness: w.url, size, meaning: "the witness answered 200 without a valid cosignature of its key: check its vkey" });
          return this.#failed(w);
        }
        this.#known.set(w.vkey, size);
        this.#backoff.delete(w.vkey);
        this.#retryAt.delete(w.vkey);
        this.#o.log.info("witness_cosigned", { witness: w.url, size });
        return { lines: found.map((c) => c.line) };
      }
      if (status === 409 && type.split(";")[0]!.trim() === "text/x.tlog.size" && /^(0|[1-9][0-9]{0,15})\n$/.test(answer)) {
        const theirs = Number(answer.trim());
        if (theirs > size) {
          logError(this.#o.log, "witness_conflict", {
            witness: w.url,
            status,
            size,
            witness_size: theirs,
            meaning: `the witness cosigned a tree of ${theirs} entries of this log, which now has ${size}: this log was rolled back or replaced since`,
          });
          return this.#failed(w);
        }
        if (attempt === 0 && theirs !== old) {
          old = theirs;
          continue;
        }
      }
      if (status === 422) {
        logError(this.#o.log, "witness_conflict", {
          witness: w.url,
          status,
          size,
          old,
          meaning: `the witness holds a checkpoint of this log (size ${old}) that this log does not extend: this log was forked or rewritten`,
        });
        return this.#failed(w);
      }
      if (status === 403 || status === 404) {
        logError(this.#o.log, "witness_refused", { witness: w.url, status, meaning: status === 404 ? "the witness does not witness this log's origin" : "the witness does not accept this log's signature: does it have this log's vkey?" });
        return this.#failed(w);
      }
      this.#o.log.warn("witness_unreachable", { witness: w.url, size, status, answer: answer.slice(0, 200).trim() });
      return this.#failed(w);
    }
    return this.#failed(w);
  }

  /** Keeps the round's cosignatures (with those kept for the same checkpoint) when they are the better evidence. */
  #keep(note: string, size: number, had: string | null, lines: string[]): void {
    const prior = had === null ? [] : parseNote(had).signatures.map((s) => s.line);
    const { text, signatures } = parseNote(note);
    // One cosignature per witness, this round's before those kept: a checkpoint resubmitted round after
    // round (while another witness is retried) would otherwise gather a line per witness per round.
    const cosigned = noteCosignatures(`${text}\n${[...lines, ...prior].join("")}`, this.#o.witnesses.map((w) => w.verifier)).map((c) => c.line);
    const full = `${text}\n${[...new Set(signatures.map((s) => s.line))].join("")}${cosigned.join("")}`;
    const count = cosigned.length;
    const kept = this.#kept;
    const quorum = this.#o.quorum;
    if (!(count >= quorum || kept === null || (kept.count < quorum && count >= kept.count))) return;
    const unwritable = (e: unknown) => this.#o.log.warn("witness_cosigned_unwritable", { path: this.#store.where, error: (e as Error).message });
    try {
      // PostgreSQL answers later: what it could not keep is said, and kept here meanwhile.
      const saved = this.#store.save(full, size);
      if (saved instanceof Promise) saved.catch(unwritable);
    } catch (e) {
      unwritable(e);
      return;
    }
    this.#kept = { note: full, size, count };
    if (count >= quorum && size > this.#quorumSize) {
      // Progress: whatever is newer than this appeared at most a round ago.
      this.#quorumSize = size;
      this.#lagSince = null;
      if (this.#missing) {
        this.#missing = false;
        this.#o.log.info("witness_quorum_restored", { size, quorum });
      }
    }
  }

  /** `witness_quorum_missing` while the newest durable checkpoint has lacked the quorum for longer than the grace. */
  #checkQuorum(): void {
    const newest = this.#o.journal.logState?.(undefined, [])?.size ?? null;
    const now = this.#o.now();
    if (newest === null || newest <= this.#quorumSize) {
      this.#lagSince = null;
      return;
    }
    this.#lagSince ??= now;
    if (now - this.#lagSince >= this.#o.graceMs && now - this.#lastMissingLog >= this.#o.graceMs) {
      this.#missing = true;
      this.#lastMissingLog = now;
      logError(this.#o.log, "witness_quorum_missing", {
        size: newest,
        cosigned_size: this.#quorumSize,
        quorum: this.#o.quorum,
        witnesses: this.#o.witnesses.length,
        for_s: Math.round((now - this.#lagSince) / 1000),
        meaning: `the log's newest checkpoint has not been cosigned by ${this.#o.quorum} witness(es) for ${Math.round((now - this.#lagSince) / 1000)} s: clients that require the quorum will refuse this server`,
      });
    }
  }
}
