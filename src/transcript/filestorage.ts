/**
 * The transcript as a directory of JSONL files (docs/TRANSCRIPT.md §2.1),
 * with the tree's stored hashes in tree.hashes beside it (§3.6): the single
 * node's storage for the writer (writer.ts). Lines go to the current file
 * with write(2), are durable once fsync(2) returns, and a file is fsynced
 * before the next one starts.
 *
 * On open, everything from the last checkpoint on is verified as
 * `transcript verify` would; a whole line that does not verify stops the
 * server before anything is written. A torn last line left by a crash is
 * then cut (its bytes kept in FILE.torn) for the writer to record (§7).
 */
import { closeSync, existsSync, fsync, fsyncSync, ftruncateSync, openSync, readSync, statSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fromBase64 } from "../bytes.ts";
import { ensurePrivateDir, syncDir } from "../paths.ts";
import { TRANSCRIPT_FILE_RE, listTranscript, readTranscriptLinesSync } from "./read.ts";
import { type LogStorage, type OpenContext, type OpenedLog, refuseCorrupt } from "./storage.ts";
import { TranscriptTree } from "./tree.ts";
import { type TailReport, treeCheckpointAtMost, verifyTail } from "./verify.ts";

/** The tree's stored hashes live beside the transcript directory: DATA/tree.hashes for DATA/transcript. */
export function treePath(transcriptDir: string): string {
  return join(dirname(transcriptDir), "tree.hashes");
}

/** Write errors that mean "no space for now": the writer waits and retries. */
const RETRYABLE = new Set(["ENOSPC", "EDQUOT"]);

interface Tail {
  last: OpenedLog["last"];
  beforeLast: OpenedLog["beforeLast"];
  torn: OpenedLog["torn"];
  tree: TailReport["tree"];
}

/**
 * Checks the end of the chain (verifyTail: from the last checkpoint on) and
 * refuses a transcript that does not verify, touching nothing; then cuts a
 * torn last line, keeping its bytes beside the file.
 */
function recoverTail(dir: string, hostKey: Uint8Array): Tail {
  let tail: TailReport;
  try {
    tail = verifyTail(existsSync(dir) ? listTranscript(dir).files : [], hostKey);
  } catch (e) {
    refuseCorrupt(e, dir);
  }
  const { last, beforeLast, tree } = tail;
  if (!tail.torn) return { last, beforeLast, torn: null, tree };
  const { path, start, end } = tail.torn;
  const bytes = new Uint8Array(end - start);
  const fd = openSync(path, "r+");
  try {
    readSync(fd, bytes, 0, bytes.length, start);
    let tornPath = `${path}.torn`;
    for (let n = 1; existsSync(tornPath); n++) tornPath = `${path}.${n}.torn`;
    writeFileSync(tornPath, bytes, { mode: 0o600 });
    const tfd = openSync(tornPath, "r");
    fsyncSync(tfd);
    closeSync(tfd);
    syncDir(dir);
    ftruncateSync(fd, start);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { last, beforeLast, torn: { file: tail.torn.file, bytes }, tree };
}

export class FileStorage implements LogStorage {
  #fd = -1;
  #syncing = false;
  /** fds retired by rotation while an fsync on them was in flight. */
  #retired: number[] = [];

  constructor(readonly dir: string) {}

  get ready(): boolean {
    return this.#fd >= 0;
  }

  open({ hostKey, log }: OpenContext): OpenedLog {
    const dir = this.dir;
    ensurePrivateDir(dir);
    const tail = recoverTail(dir, hostKey.publicKey);
    const listed = listTranscript(dir).files;
    const opened = TranscriptTree.open(treePath(dir), {
      size: tail.last?.seq ?? 0,
      complete: listed.length === 0 || Number(TRANSCRIPT_FILE_RE.exec(listed[0]!.name)![2]) === 1,
      checkpoint: tail.tree,
      tail: tail.tree?.tail ?? [],
      lines: () => readTranscriptLinesSync(listed),
      earlier: (maxSize) => {
        const c = treeCheckpointAtMost(listed, maxSize, hostKey.publicKey);
        return c && { size: c.entry.head_seq as number, root: fromBase64(c.entry.root as string, 32), lines: readTranscriptLinesSync(listed.slice(c.file), c.start) };
      },
      rebuilding: (reason) => log.info("transcript_tree_rebuilding", { reason, lines: tail.last?.seq ?? 0, effect: "every line is read and hashed once: this start takes longer" }),
    });
    if (opened.tree === null) log.warn("transcript_no_tree", { reason: opened.missing, effect: "checkpoints sign no tree root until the first files are back" });
    else if (opened.opened.rebuilt !== null) log.warn("transcript_tree_rebuilt", { reason: opened.opened.rebuilt, lines: opened.opened.leaves });
    else if (opened.opened.resumed) {
      const r = opened.opened.resumed;
      log.warn("transcript_tree_resumed", { reason: r.reason, from: r.from, lines: r.leaves });
    }
    const lastName = listed.at(-1)?.name;
    return {
      last: tail.last,
      beforeLast: tail.beforeLast,
      torn: tail.torn,
      // The last checkpoint on disk is durable: a client may be shown it (PROTOCOL.md §7.13).
      signedTree: tail.tree ? { size: tail.tree.size, note: tail.tree.note } : null,
      tree: opened.tree,
      lastFile: lastName === undefined ? null : { name: lastName, bytes: statSync(join(dir, lastName)).size },
    };
  }

  startFile(name: string, fresh: boolean): void {
    this.#fd = openSync(join(this.dir, name), fresh ? "w" : "a", 0o600);
    syncDir(this.dir);
  }

  endFile(): boolean {
    const old = this.#fd;
    try {
      fsyncSync(old);
      this.#fd = -1;
      if (this.#syncing) this.#retired.push(old);
      else closeSync(old);
    } catch (cause) {
      if (this.#fd === old) {
        this.#fd = -1;
        this.#retired.push(old);
      }
      throw cause;
    }
    return true;
  }

  write(buf: Uint8Array, off: number): number {
    return writeSync(this.#fd, buf, off, buf.length - off);
  }

  writeRetryable(e: unknown): boolean {
    return RETRYABLE.has((e as { code?: string }).code ?? "");
  }

  sync(done: (err: Error | null) => void): void {
    this.#syncing = true;
    fsync(this.#fd, (err) => {
      this.#syncing = false;
      for (const fd of this.#retired.splice(0)) closeSync(fd);
      done(err);
    });
  }

  syncNow(): void {
    fsyncSync(this.#fd);
  }

  /** An fsync that failed may have lost what it covered: never retried (TRANSCRIPT.md §6). */
  syncRetryable(): boolean {
    return false;
  }

  close(): void {
    if (this.#fd < 0) return;
    if (!this.#syncing) closeSync(this.#fd);
    else this.#retired.push(this.#fd);
    this.#fd = -1;
  }
}
