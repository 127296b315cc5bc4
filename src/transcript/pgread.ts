/**
 * Reading the transcript kept in PostgreSQL (docs/TRANSCRIPT.md §2.7) as
 * the file readers read a directory: its lines in chain order, batch by
 * batch, named by file and line number; and writing it back out as the
 * directory of JSONL files it stands for, byte for byte, with the tree's
 * stored hashes beside it as a data directory keeps them.
 */
import type { SQL } from "bun";
import { closeSync, fsyncSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, syncDir } from "../paths.ts";
import { allLines, listFiles, readTreeHashes } from "../store/pg/log.ts";
import { treePath } from "./filestorage.ts";
import { rowLine } from "./pgstorage.ts";
import type { FollowSource } from "./export.ts";
import type { LineSource } from "./verify.ts";
import { TRANSCRIPT_FILE_RE, type TranscriptLine } from "./read.ts";

/** The stored lines from `from` on, as a file reader's batches. */
export async function* databaseBatches(sql: SQL, from = 1): AsyncGenerator<TranscriptLine[]> {
  for await (const rows of allLines(sql, 2000, from)) yield rows.map(rowLine);
}

/** The transcript's files, in chain order: their names and line counts. */
export async function databaseFiles(sql: SQL): Promise<{ name: string; lines: number }[]> {
  // A database no writer has used yet has no log tables: it holds no transcript.
  if (!(await sql`SELECT to_regclass('log_lines') IS NOT NULL AS ok`)[0].ok) return [];
  return (await listFiles(sql)).map(({ name, lines }) => ({ name, lines }));
}

/**
 * Writes every stored line to `dir` (created 0700 if missing), one file per
 * stored file name, each line followed by its LF, each file fsynced:
 * the directory the file storage would have written. Returns the files and lines written.
 */
export async function writeDirectory(sql: SQL, dir: string): Promise<{ files: number; lines: number }> {
  ensurePrivateDir(dir);
  if ((await databaseFiles(sql)).length === 0) return { files: 0, lines: 0 };
  let fd = -1;
  let file = "";
  let files = 0;
  let lines = 0;
  const end = () => {
    if (fd < 0) return;
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
  };
  try {
    for await (const rows of allLines(sql)) {
      for (const r of rows) {
        if (r.file !== file) {
          end();
          file = r.file;
          if (!TRANSCRIPT_FILE_RE.test(file)) throw new Error(`log_lines: seq ${r.seq} names the file "${file}", not a transcript file name`);
          fd = openSync(join(dir, file), "wx", 0o600);
          files++;
        }
        writeSync(fd, r.bytes);
        writeSync(fd, "\n");
        lines++;
      }
    }
  } finally {
    end();
  }
  syncDir(dir);
  return { files, lines };
}

/**
 * The transcript directory `dir` (a new private one) as a single node's data
 * directory would hold it: every stored line (writeDirectory), then the
 * tree's stored hashes as DATA/tree.hashes. The lines are read first: the
 * hashes, committed with their lines, then cover at least those lines.
 * What reads a directory (checkpoint, prove, tiles, verify --tree-only)
 * then reads the cluster's log unchanged.
 */
export async function writeDataCopy(sql: SQL, dir: string): Promise<{ files: number; lines: number }> {
  const wrote = await writeDirectory(sql, dir);
  if (wrote.lines > 0) writeFileSync(treePath(dir), await readTreeHashes(sql), { mode: 0o600 });
  return wrote;
}

/** The transcript in the database as a verifier's and exporter's source (verify.ts LineSource). */
export async function databaseSource(sql: SQL, where: string): Promise<LineSource> {
  const files = await databaseFiles(sql);
  return {
    where,
    files: files.map((f) => f.name),
    torn: [],
    empty: "the database holds no transcript lines",
    batches: () => databaseBatches(sql),
  };
}

/** The transcript in the database as `follow` reads it: the committed head, and the lines after those read. */
export function databaseFollowSource(sql: SQL, where: string): FollowSource {
  return {
    where,
    count: async () => ((await sql`SELECT to_regclass('log_head') IS NOT NULL AS ok`)[0].ok ? Number((await sql`SELECT seq FROM log_head WHERE id = 1`)[0]?.seq ?? 0) : 0),
    linesAfter: (read) => databaseBatches(sql, read + 1),
  };
}
