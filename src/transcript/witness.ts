/**
 * A transparency-log witness (c2sp.org/tlog-witness; docs/TRANSCRIPT.md
 * §4.5): it accepts `add-checkpoint` requests for the logs it is configured
 * with, checks that each new checkpoint is signed by the log and consistent
 * with the last one it cosigned for that log, records the new one durably,
 * and only then returns its cosignature (cosignature.ts).
 *
 * State: `DIR/witness_key` (its Ed25519 key, 0600, made on first start) and
 * `DIR/witness.state` (per origin: the size, root and note of the latest
 * checkpoint it cosigned), replaced whole (temporary file, fsync, rename,
 * fsync of the directory) before an answer 200 leaves. The check of `old`
 * against the stored size and the write of the new state run in one
 * synchronous step, so two requests cannot interleave between them. Its
 * HTTP interface is server/witnesshttp.ts.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fromBase64, toBase64, toHex, utf8 } from "../bytes.ts";
import { type Ed25519KeyPair, ed25519Signer, sha256 } from "../crypto/index.ts";
import { SecureChatError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { ensurePrivateDir, loadOrCreateKeyFile, writePrivateFile } from "../paths.ts";
import { cosignatureLine, formatCosignerKey } from "./cosignature.ts";
import { EMPTY_ROOT, HASH_SIZE, type Hash, verifyConsistency } from "./merkle.ts";
import { type NoteVerifier, isKeyName, openCheckpoint, parseCheckpoint, parseNote, sameId } from "./note.ts";

/** The largest request body a witness reads: a checkpoint with many signatures and 63 proof lines fit many times over. */
export const WITNESS_BODY_MAX = 64 * 1024;

/** The most consistency proof lines a request may carry (the spec's bound: a tree of 2^63 leaves needs no more). */
export const WITNESS_PROOF_MAX = 63;

/** The most logs one witness is configured with (its state is one record per log). */
export const WITNESS_LOGS_MAX = 1000;

const KEY_HEADER = "securechat-witness-key-v1";

export interface WitnessAnswer {
  status: number;
  body: string;
  contentType: string;
}

interface LogRecord {
  size: number;
  root: Hash;
  /** The latest checkpoint cosigned, with the log's signature and this witness's cosignature. */
  note: string;
}

function answer(status: number, body: string, contentType = "text/plain; charset=utf-8"): WitnessAnswer {
  return { status, body, contentType };
}

/** The default name of a witness: `securechat-witness/` and 16 hex digits of SHA-256(public key). */
export function defaultWitnessName(publicKey: Uint8Array): string {
  return `securechat-witness/${toHex(sha256(publicKey)).slice(0, 16)}`;
}

/** The add-checkpoint request body: `old N`, proof lines, a blank line, the checkpoint note. Throws on bad syntax. */
export function parseAddCheckpoint(body: string): { old: number; proof: Hash[]; note: string } {
  const bad = (m: string): never => {
    throw new SecureChatError("witness_request", m);
  };
  const nl = body.indexOf("\n");
  const m = /^old (0|[1-9][0-9]{0,15})$/.exec(nl < 0 ? "" : body.slice(0, nl));
  if (!m || !Number.isSafeInteger(Number(m[1]))) bad("the first line must be old SIZE");
  const proof: Hash[] = [];
  let at = nl + 1;
  for (;;) {
    const end = body.indexOf("\n", at);
    if (end < 0) bad("no blank line before the checkpoint");
    const line = body.slice(at, end);
    at = end + 1;
    if (line === "") break;
    if (proof.length === WITNESS_PROOF_MAX) bad(`more than ${WITNESS_PROOF_MAX} consistency proof lines`);
    try {
      proof.push(fromBase64(line, HASH_SIZE));
    } catch {
      bad("a consistency proof line is not a base64 SHA-256 hash");
    }
  }
  return { old: Number(m![1]), proof, note: body.slice(at) };
}

export interface WitnessOptions {
  dir: string;
  /** The logs it witnesses: each log's verifier key (its name is the log's origin). */
  logs: readonly NoteVerifier[];
  /** Its key name (default: defaultWitnessName). */
  name?: string;
  log?: Logger;
  now?: () => number;
}

export class Witness {
  readonly name: string;
  readonly publicKey: Uint8Array;
  /** Made on this start. */
  readonly created: boolean;
  readonly #sign: (m: Uint8Array) => Uint8Array;
  readonly #logs = new Map<string, NoteVerifier>();
  readonly #state = new Map<string, LogRecord>();
  readonly #statePath: string;
  readonly #log: Logger;
  readonly #now: () => number;
  /** hex SHA-256 of each origin → the origin (the monitoring path). */
  readonly #byHash = new Map<string, string>();
  /** When each kind of refusal was last logged per origin: at most one line a minute each, whatever is replayed at it. */
  readonly #loggedAt = new Map<string, number>();

  constructor(opts: WitnessOptions) {
    if (opts.logs.length > WITNESS_LOGS_MAX) throw new SecureChatError("witness_config", `a witness takes at most ${WITNESS_LOGS_MAX} logs`);
    for (const l of opts.logs) {
      if (this.#logs.has(l.name)) throw new SecureChatError("witness_config", `two logs with the origin ${l.name}: a witness trusts one key per log`);
      this.#logs.set(l.name, l);
      this.#byHash.set(toHex(sha256(utf8(l.name))), l.name);
    }
    ensurePrivateDir(opts.dir);
    this.#statePath = join(opts.dir, "witness.state");
    // The state belongs to the key: made (empty) before a new key, so that a key without it is a state lost.
    const keyPath = join(opts.dir, "witness_key");
    if (!existsSync(keyPath) && !existsSync(this.#statePath)) this.#save();
    let key: Ed25519KeyPair;
    ({ key, created: this.created } = loadOrCreateKeyFile(keyPath, KEY_HEADER, "witness_key", "witness key"));
    this.publicKey = key.publicKey;
    this.#sign = ed25519Signer(key.secretKey);
    key.secretKey.fill(0);
    this.name = opts.name ?? defaultWitnessName(this.publicKey);
    if (!isKeyName(this.name)) throw new SecureChatError("witness_config", `"${this.name}" is not a key name (no spaces, no "+")`);
    this.#log = opts.log ?? silentLogger;
    this.#now = opts.now ?? Date.now;
    this.#load();
  }

  /** Its verifier key, for the logs and clients that count its cosignatures. */
  get vkey(): string {
    return formatCosignerKey(this.name, this.publicKey);
  }

  #load(): void {
    if (!existsSync(this.#statePath)) {
      // Starting afresh under the same key would cosign, from old 0, a fork of a log it cosigned before.
      throw new SecureChatError(
        "witness_state",
        `witness: ${this.#statePath} is missing but its key is there; restore it from a backup (or, to start as a new witness, remove witness_key too: logs and clients must then be given the new vkey)`,
      );
    }
    let raw: { logs?: Record<string, { size: number; root: string; note: string }> };
    try {
      raw = JSON.parse(readFileSync(this.#statePath, "utf8"));
      for (const [origin, r] of Object.entries(raw.logs ?? {})) {
        if (!Number.isSafeInteger(r.size) || r.size < 0 || typeof r.note !== "string") throw new Error(`bad record for ${origin}`);
        this.#state.set(origin, { size: r.size, root: fromBase64(r.root, HASH_SIZE), note: r.note });
      }
    } catch (e) {
      // Forgetting what it cosigned would let a log roll back under its eyes: refuse to start.
      throw new SecureChatError("witness_state", `witness: ${this.#statePath} is damaged (${(e as Error).message}); restore it from a backup`);
    }
  }

  #save(): void {
    const logs: Record<string, { size: number; root: string; note: string }> = {};
    for (const [origin, r] of this.#state) logs[origin] = { size: r.size, root: toBase64(r.root), note: r.note };
    writePrivateFile(this.#statePath, `${JSON.stringify({ version: 1, logs })}\n`);
  }

  /** The latest checkpoint it cosigned for `origin`, with its cosignature (null if none). */
  latest(origin: string): string | null {
    return this.#state.get(origin)?.note ?? null;
  }

  /** The monitoring view: GET /<hex SHA-256 of the origin>/checkpoint. */
  checkpointByHash(hash: string): string | null {
    const origin = this.#byHash.get(hash);
    return origin === undefined ? null : this.latest(origin);
  }

  /** A refusal worth a line (evidence of a log's misbehaviour, or of a replay), at most one a minute per kind and origin. */
  #refusal(event: string, origin: string, fields: Record<string, string | number>): void {
    const now = this.#now();
    const key = `${event} ${origin}`;
    if (now - (this.#loggedAt.get(key) ?? -Infinity) < 60_000) return;
    this.#loggedAt.set(key, now);
    this.#log.warn(event, { origin, ...fields });
  }

  /**
   * One add-checkpoint request, answered as c2sp.org/tlog-witness says:
   * 400 bad syntax or old > size; 404 unknown origin; 403 no valid
   * signature of the log; 409 (text/x.tlog.size) old is not the size it
   * last cosigned; 422 a proof that does not verify, or a root that differs
   * at the same size; 200 with its cosignature line once the state is
   * durable. Synchronous from the check of `old` to the write.
   */
  addCheckpoint(body: string): WitnessAnswer {
    let req: ReturnType<typeof parseAddCheckpoint>;
    try {
      req = parseAddCheckpoint(body);
    } catch (e) {
      return answer(400, `${(e as Error).message}\n`);
    }
    let origin: string;
    try {
      origin = parseCheckpoint(parseNote(req.note).text).origin;
    } catch (e) {
      return answer(403, `the checkpoint is malformed: ${(e as Error).message.replace(/^signed note: /, "")}\n`);
    }
    const key = this.#logs.get(origin);
    if (!key) return answer(404, "unknown log origin\n");
    let cp: ReturnType<typeof openCheckpoint>;
    try {
      cp = openCheckpoint(req.note, key);
    } catch {
      this.#refusal("witness_refused", origin, { status: 403, reason: "not signed by the log's key" });
      return answer(403, "the checkpoint carries no valid signature of this log's key\n");
    }
    if (req.old > cp.size) return answer(400, "old is larger than the checkpoint's size\n");
    const have = this.#state.get(origin) ?? { size: 0, root: EMPTY_ROOT, note: "" };
    if (req.old !== have.size) {
      if (cp.size < have.size) this.#refusal("witness_refused", origin, { status: 409, size: cp.size, cosigned: have.size, reason: "smaller than the checkpoint it cosigned: a rollback, if the log sent it" });
      return answer(409, `${have.size}\n`, "text/x.tlog.size");
    }
    const inconsistent = (reason: string): WitnessAnswer => {
      // Signed by the log and inconsistent with what it signed before: evidence, worth a line.
      this.#refusal("witness_inconsistent", origin, { size: cp.size, cosigned: have.size, reason });
      return answer(422, `${reason}\n`);
    };
    if (cp.size === 0 && Buffer.compare(cp.root, EMPTY_ROOT) !== 0) return inconsistent("a checkpoint of size 0 must have the empty tree's root");
    if (req.old === 0 && req.proof.length > 0) return inconsistent("a consistency proof from size 0 must be empty");
    if (req.old === cp.size) {
      if (Buffer.compare(cp.root, have.root) !== 0) return inconsistent("the same size as the checkpoint cosigned, with another root: a fork");
    } else if (req.old > 0 && !verifyConsistency(req.old, cp.size, have.root, cp.root, req.proof)) {
      return inconsistent("the consistency proof from the checkpoint cosigned does not verify: a fork or a rewrite");
    }
    const timestamp = BigInt(Math.max(1, Math.floor(this.#now() / 1000)));
    const line = cosignatureLine(parseNote(req.note).text, this.name, this.publicKey, this.#sign, timestamp);
    // The checkpoint it holds, sent again: cosigned afresh, but the record is unchanged and not rewritten
    // (a replay of the public latest checkpoint costs a signature, never an fsync).
    if (req.old === cp.size && this.#state.has(origin)) return answer(200, line);
    const previous = this.#state.get(origin);
    this.#state.set(origin, { size: cp.size, root: cp.root, note: `${cp.note.text}\n${cp.note.signatures.filter((s) => s.name === key.name && sameId(s.keyId, key.keyId)).map((s) => s.line).join("")}${line}` });
    try {
      this.#save();
    } catch (e) {
      if (previous) this.#state.set(origin, previous);
      else this.#state.delete(origin);
      this.#log.warn("witness_state_failed", { path: this.#statePath, error: (e as Error).message });
      return answer(503, "the witness cannot record its state right now\n");
    }
    this.#log.info("witness_cosigned", { origin, size: cp.size, old: req.old });
    return answer(200, line, "text/plain; charset=utf-8");
  }
}
