/**
 * Rollback and fork detection at connect (PROTOCOL.md §7.13, Appendix A.8):
 * the client remembers the last checkpoint of the server's log it was
 * shown, per server, in `$SECURECHAT_HOME/checkpoints/HOST:PORT`; at every
 * connect it asks for the log's current checkpoint with a consistency proof
 * from the remembered one. A checkpoint not signed by the pinned host key,
 * a smaller log (rolled back), or a log the proof does not show to extend
 * the remembered one (rewritten, or another branch: a fork) is a hard
 * error; a good one replaces the remembered one.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { SecureChatError } from "../errors.ts";
import { clientHome, ensurePrivateDir, writePrivateFile } from "../paths.ts";
import type { Message } from "../protocol/messages.ts";
import { verifyConsistency } from "../transcript/merkle.ts";
import { noteCosignatures } from "../transcript/cosignature.ts";
import { type Checkpoint, type NoteVerifier, checkpointText, formatNote, noteKeyId, openCheckpoint, parseCheckpoint, parseNote } from "../transcript/note.ts";
import { toBase64 } from "../bytes.ts";

/** Where the checkpoint last seen of `serverId`'s log is kept. */
export function checkpointPath(serverId: string): string {
  return join(clientHome(), "checkpoints", serverId);
}

interface Remembered extends Checkpoint {
  /** When it was saved (the file's time), for the message a failure shows. */
  at: Date;
}

/** The signed checkpoint note a `log_state` carries (PROTOCOL.md §7.13). */
export function stateNote(m: Message<"log_state">): string {
  return formatNote(checkpointText({ origin: m.origin, size: m.size, root: m.root }), [`\u2014 ${m.origin} ${toBase64(m.sig)}\n`]);
}

function when(d: Date): string {
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** The witnesses a user requires (chat --witness, --witness-quorum): K of them must have cosigned (TRANSCRIPT.md §4.5). */
export interface WitnessPolicy {
  witnesses: readonly NoteVerifier[];
  quorum: number;
}

export class LogCheck {
  readonly #path: string;
  #remembered: Remembered | null;
  /** The size of the checkpoint remembered when this connection began: witnesses must have cosigned at least that much. */
  readonly #sizeAtConnect: number;

  constructor(
    readonly serverId: string,
    readonly hostKey: Uint8Array,
    readonly witnessPolicy: WitnessPolicy | null = null,
  ) {
    this.#path = checkpointPath(serverId);
    this.#remembered = this.#load();
    this.#sizeAtConnect = this.#remembered?.size ?? 0;
  }

  /** The remembered checkpoint, if there is one this host key signed; a damaged or foreign file is ignored, as if none. */
  #load(): Remembered | null {
    if (!existsSync(this.#path)) return null;
    try {
      const note = readFileSync(this.#path, "utf8");
      const origin = parseCheckpoint(parseNote(note).text).origin;
      const c = openCheckpoint(note, { name: origin, keyId: noteKeyId(origin, this.hostKey), publicKey: this.hostKey });
      return { ...c, at: statSync(this.#path).mtime };
    } catch {
      return null;
    }
  }

  /** Requests sent and not yet answered. */
  #asked = 0;

  /** The request to send after `welcome` (and before `bye`). */
  request(): Message<"log_proof"> {
    this.#asked++;
    return this.ask();
  }

  /** A request for the log's state from the remembered size, not counted as the one `overtaken` watches (receipts ask with it). */
  ask(): Message<"log_proof"> {
    return { type: "log_proof", ...(this.#remembered ? { from: this.#remembered.size } : {}), ...(this.witnessPolicy ? { cosigned: true } : {}) };
  }

  /**
   * An answer to a request sent after `log_proof` came first: the server
   * skipped the answer (it answers in order, §7.4). For a server whose log
   * this client remembers, that is refused as `no_log` is.
   */
  overtaken(): void {
    if (this.#asked === 0) return;
    this.#asked = 0;
    this.noLog();
  }

  /**
   * Checks the answer; remembers it if it is good. Throws `log_unsigned`,
   * `log_rollback` or `log_fork` (PROTOCOL.md §7.13) otherwise.
   */
  check(m: Message<"log_state">): void {
    this.#asked = Math.max(0, this.#asked - 1);
    const note = stateNote(m);
    try {
      openCheckpoint(note, { name: m.origin, keyId: noteKeyId(m.origin, this.hostKey), publicKey: this.hostKey });
    } catch {
      throw new SecureChatError("log_unsigned", `${this.serverId} showed a checkpoint of its log that its host key did not sign`);
    }
    const r = this.#remembered;
    if (r) {
      if (m.size < r.size) {
        throw new SecureChatError(
          "log_rollback",
          `this server's log no longer contains what it showed you on ${when(r.at)}: it had ${r.size} entries then and shows ${m.size} now (rolled back or truncated)`,
          { detail: { server: this.serverId, path: this.#path } },
        );
      }
      if (!verifyConsistency(r.size, m.size, r.root, m.root, m.consistency ?? [])) {
        throw new SecureChatError(
          "log_fork",
          `this server's log is not the one it showed you on ${when(r.at)}: its first ${r.size} entries differ from what it signed then (rewritten, or a different log shown to different people: a fork)`,
          { detail: { server: this.serverId, path: this.#path } },
        );
      }
    }
    if (this.witnessPolicy) this.#checkWitnessed(m);
    ensurePrivateDir(join(clientHome(), "checkpoints"));
    writePrivateFile(this.#path, note);
    this.#remembered = { origin: m.origin, size: m.size, root: m.root, extensions: [], at: new Date() };
  }

  /**
   * With a witness policy (PROTOCOL.md §7.13 steps 4-7): the answer's
   * `cosigned` checkpoint is the host key's, carries valid cosignatures of
   * at least K of the witnesses, is a prefix of the checkpoint shown, and
   * is at least as large as the one remembered at connect. Throws
   * `log_unwitnessed` otherwise.
   */
  #checkWitnessed(m: Message<"log_state">): void {
    const policy = this.witnessPolicy!;
    const unwitnessed = (why: string): never => {
      throw new SecureChatError("log_unwitnessed", `${this.serverId}'s log is not vouched for by ${policy.quorum} of your ${policy.witnesses.length} witness(es): ${why}`, {
        detail: { server: this.serverId, path: this.#path },
      });
    };
    const c = m.cosigned;
    if (!c) unwitnessed("the server shows no cosigned checkpoint (does it run with --witness?)");
    const text = checkpointText({ origin: m.origin, size: c!.size, root: c!.root });
    const note = formatNote(text, [`\u2014 ${m.origin} ${toBase64(c!.sig)}\n`, ...c!.cosignatures.map((s) => `\u2014 ${s.name} ${toBase64(s.sig)}\n`)]);
    try {
      openCheckpoint(note, { name: m.origin, keyId: noteKeyId(m.origin, this.hostKey), publicKey: this.hostKey });
    } catch {
      unwitnessed("its cosigned checkpoint is not signed by its host key");
    }
    let count = 0;
    try {
      count = noteCosignatures(note, policy.witnesses).length;
    } catch (e) {
      unwitnessed((e as Error).message.replace(/^cosignature: /, ""));
    }
    if (count < policy.quorum) unwitnessed(`only ${count} of them cosigned its checkpoint of ${c!.size} entries`);
    if (c!.size > m.size || !verifyConsistency(c!.size, m.size, c!.root, m.root, c!.consistency)) {
      unwitnessed(`the checkpoint the witnesses cosigned (${c!.size} entries) is not a prefix of the log it shows you (${m.size} entries): a fork`);
    }
    if (c!.size < this.#sizeAtConnect) {
      unwitnessed(`the witnesses cosigned ${c!.size} entries, fewer than the ${this.#sizeAtConnect} it showed you before: what you saw may be a view shown only to you`);
    }
  }

  /**
   * The server had no signed tree to show (`notice` `no_log`): fine for a
   * server never seen before; for one whose log this client saw signed, a
   * log that cannot be checked is refused as one that fails the check.
   */
  noLog(): void {
    this.#asked = Math.max(0, this.#asked - 1);
    if (this.witnessPolicy) {
      throw new SecureChatError("log_unwitnessed", `${this.serverId} shows no signed tree of its log, so none your witnesses cosigned`, { detail: { server: this.serverId, path: this.#path } });
    }
    if (this.#remembered) {
      throw new SecureChatError(
        "log_unproven",
        `this server cannot prove its log still contains what it showed you on ${when(this.#remembered.at)} (it shows no signed tree now)`,
        { detail: { server: this.serverId, path: this.#path } },
      );
    }
  }
}
