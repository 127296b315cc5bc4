/**
 * `securechat transcript verify|export|follow|checkpoint|prove|verify-proof|receipts|tiles|witness|keygen`: the auditor's side of
 * the transcript (docs/TRANSCRIPT.md). Bodies parse flags, call
 * src/transcript/, and report; a verification failure is exit 5.
 * stdout carries only data (the report, entries, the public key).
 */
import type { ArgsDef } from "citty";
import { CliError, EXIT } from "./exit.ts";
import { args, command } from "./define.ts";
import { repeatable, repeated } from "./argv.ts";
import { parseRoomName, parseUserName, witnessPolicy } from "./values.ts";

const hostKeyArg = {
  "host-key": {
    type: "string",
    description: "Pin the server's key: host_key.pub, a known_hosts line, or SHA256:…",
    valueHint: "KEY",
  },
} as const satisfies ArgsDef;

const vkeyArg = {
  vkey: { type: "string", description: "The log's verifier key, as serve prints it (ORIGIN+KEYID+KEY), or a file holding it", valueHint: "VKEY", required: true },
} as const satisfies ArgsDef;

const identityArg = {
  identity: { type: "string", description: "Auditor secret key file (from transcript keygen): open sealed message bodies", valueHint: "FILE" },
} as const satisfies ArgsDef;

const filterArgs = {
  since: { type: "string", description: "Only entries from TIME on: 2026-11-22, 08:00, 2h, yesterday (UTC)", valueHint: "TIME" },
  until: { type: "string", description: "Only entries before TIME (the same forms)", valueHint: "TIME" },
  stored: { type: "boolean", description: "Lines exactly as stored: no ISO 8601 time member" },
  room: { type: "string", description: "Only join, leave, message, room_change, edit and delete entries of this room", valueHint: "ROOM" },
  user: { type: "string", description: "Only entries whose user, from, to or target is this user (what administrators and operators did to it too)", valueHint: "USER" },
} as const satisfies ArgsDef;

async function hostKeyOption(value: string | undefined): Promise<{ hostKey?: Uint8Array; hostKeyFingerprint?: string }> {
  if (value === undefined) return {};
  const { parseHostKeyPin } = await import("../transcript/keys.ts");
  try {
    const pin = parseHostKeyPin(value);
    return "key" in pin ? { hostKey: pin.key } : { hostKeyFingerprint: pin.fingerprint };
  } catch (e) {
    throw new CliError(EXIT.USAGE, `--host-key: ${(e as Error).message.replace(/^host key: /, "")}`, ["pass host_key.pub from the server's data directory, its line, a client's known_hosts line for the server, or the fingerprint clients were shown"]);
  }
}

async function identityOption(value: string | undefined): Promise<{ identity?: Uint8Array }> {
  if (value === undefined) return {};
  const { loadAuditorIdentity } = await import("../transcript/keys.ts");
  try {
    return { identity: loadAuditorIdentity(value) };
  } catch (e) {
    throw new CliError(EXIT.USAGE, `--identity: ${(e as Error).message.replace(/^auditor key: /, "")}`, ['pass the file "securechat transcript keygen" wrote']);
  }
}

async function filterOptions(a: { since?: string; until?: string; room?: string; user?: string; stored?: boolean }) {
  const { parseTime } = await import("../transcript/export.ts");
  // One "now" for both flags: --since 2h --until 1h is exactly an hour.
  const now = Date.now();
  const time = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    try {
      return parseTime(v, now);
    } catch (e) {
      throw new CliError(EXIT.USAGE, `${flag}: ${(e as Error).message.replace(/^time: /, "")}`);
    }
  };
  return {
    since: time("--since", a.since),
    until: time("--until", a.until),
    room: a.room === undefined ? undefined : parseRoomName("--room", a.room),
    user: a.user === undefined ? undefined : parseUserName("--user", a.user),
    stored: a.stored === true,
  };
}

/** A verification failure as people see it: exit 5, the journalctl-style FAIL line. */
async function failed(e: unknown): Promise<never> {
  const { TranscriptFailure, failLine } = await import("../transcript/chain.ts");
  if (e instanceof TranscriptFailure) throw new CliError(EXIT.TRANSCRIPT, failLine(e.problem), [], { cause: e });
  throw e;
}

/** --checkpoint FILE: a signed checkpoint note, read and checked for form here (a usage error otherwise). */
async function savedCheckpoint(path: string | undefined): Promise<string | undefined> {
  if (path === undefined) return undefined;
  const [{ readFileSync }, { parseNote, parseCheckpoint }] = await Promise.all([import("node:fs"), import("../transcript/note.ts")]);
  let note: string;
  try {
    note = readFileSync(path, "utf8");
  } catch (e) {
    throw new CliError(EXIT.USAGE, `--checkpoint: cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    parseCheckpoint(parseNote(note).text);
  } catch (e) {
    throw new CliError(EXIT.USAGE, `--checkpoint: ${path} is not a signed checkpoint: ${(e as Error).message.replace(/^signed note: /, "")}`, ['save one with "securechat transcript checkpoint"']);
  }
  return note;
}

async function notes(s: import("../transcript/export.ts").ExportSummary): Promise<void> {
  const { chainNotes } = await import("../transcript/report.ts");
  const out = chainNotes(s);
  if (s.leftSealed > 0) out.push(`note: ${s.leftSealed} sealed entries are sealed to another auditor key and were written as stored`);
  if (out.length > 0) process.stderr.write(`${out.join("\n")}\n`);
}

const databaseArg = {
  database: {
    type: "string",
    description: "Read the transcript a cluster keeps in PostgreSQL (postgres://…) instead of a directory; default: $SECURECHAT_DATABASE_URL when no directory is given (prefer it: argv is visible to ps)",
    valueHint: "URL",
  },
} as const satisfies ArgsDef;

/** The database to read: --database, else SECURECHAT_DATABASE_URL when no directory was named; null for a directory. */
function databaseUrl(flag: string | undefined, directoryNamed: boolean): string | null {
  if (flag !== undefined) {
    if (directoryNamed) throw new CliError(EXIT.USAGE, "--database reads the transcript from PostgreSQL: give it or a directory, not both");
    if (flag === "") throw new CliError(EXIT.USAGE, "--database needs a URL: postgres://user@host:port/db");
    if (URL.canParse(flag) && new URL(flag).password !== "") process.stderr.write("warning: the password in --database is visible to other users of this machine (ps); prefer SECURECHAT_DATABASE_URL\n");
    return flag;
  }
  const env = process.env.SECURECHAT_DATABASE_URL;
  return !directoryNamed && env !== undefined && env !== "" ? env : null;
}

/**
 * Runs `fn` with a pool on `url`; what is shown of the URL is redacted.
 * A database that cannot be reached is exit 1, naming it without its password.
 */
async function withDatabase<T>(url: string, fn: (sql: import("bun").SQL, where: string) => Promise<T>): Promise<T> {
  const [{ openPg, redactUrl }, { transient }] = await Promise.all([import("../store/pg/pg.ts"), import("../store/pg/log.ts")]);
  const where = redactUrl(url);
  const sql = openPg(url, { max: 2 });
  try {
    return await fn(sql, where);
  } catch (e) {
    if (transient(e) || (e as { code?: string }).code === "ERR_POSTGRES_SERVER_ERROR") {
      throw new CliError(EXIT.FAILURE, `cannot read the transcript from ${where}: ${(e as Error).message.replaceAll(url, where)}`, ["check the URL, that PostgreSQL is up, and the user's rights"]);
    }
    throw e;
  } finally {
    await sql.close();
  }
}

/**
 * Runs `fn` on a private copy of the transcript a cluster keeps in
 * PostgreSQL: a new temporary directory (0700) laid out as a data directory
 * holds it (pgread.ts writeDataCopy), removed afterwards, so that what reads
 * a directory reads the cluster's log with the same results. What `fn`
 * throws names the database, never the copy.
 */
async function withDatabaseCopy<T>(url: string, fn: (transcriptDir: string, where: string) => T | Promise<T>): Promise<T> {
  const [{ mkdtempSync, rmSync }, { join }, { tmpdir }, { writeDataCopy }] = await Promise.all([import("node:fs"), import("node:path"), import("node:os"), import("../transcript/pgread.ts")]);
  const data = mkdtempSync(join(tmpdir(), "securechat-log-"));
  const dir = join(data, "transcript");
  try {
    const where = await withDatabase(url, async (sql, where) => {
      await writeDataCopy(sql, dir);
      return where;
    });
    try {
      return await fn(dir, where);
    } catch (e) {
      if (e instanceof Error) e.message = e.message.replaceAll(dir, where).replaceAll(data, where);
      throw e;
    }
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
}

async function transcriptDir(flag: string | undefined): Promise<string> {
  const [{ serverData }, { join }] = await Promise.all([import("../paths.ts"), import("node:path")]);
  return join(serverData(flag), "transcript");
}

const verify = command({
  meta: { name: "verify", description: "Check a transcript's hash chain and signed checkpoints (exit 5 on failure)" },
  args: {
    path: { type: "positional", description: "Transcript directory (DATA/transcript) or one transcript file (or --database)", required: false },
    ...databaseArg,
    ...hostKeyArg,
    against: { type: "string", description: "A client's chat --transcript file: every message the server acknowledged must be in the transcript", valueHint: "FILE" },
    checkpoint: { type: "string", description: "A checkpoint saved earlier (transcript checkpoint, or a client's): the log must still extend it (exit 5 if not)", valueHint: "FILE" },
    witness: repeatable({ type: "string", valueHint: "VKEY", description: "With --checkpoint: it must be cosigned by this witness (its vkey); give it again for more" }),
    "witness-quorum": { type: "string", valueHint: "K", description: "How many of the --witness must have cosigned it (default: all)" },
    user: { type: "string", description: "With --against: the client's user (default: taken from the first acknowledged entry)", valueHint: "USER" },
    ...identityArg,
    "tree-only": {
      type: "boolean",
      description: "Check only every line's leaf hash, the tree root at every checkpoint and their signatures (faster; not the chain or the entries' form and meaning)",
    },
    json: { type: "boolean", description: "One JSON object per finding on stdout (failure, warning, note), then a summary object; exit codes as without it" },
    ...args.debug,
  },
  examples: [
    "securechat transcript verify /var/lib/securechat/transcript --host-key /var/lib/securechat/host_key.pub",
    "securechat transcript verify /var/lib/securechat/transcript --tree-only --host-key /var/lib/securechat/host_key.pub",
    "securechat transcript verify ./data/transcript --host-key SHA256:q2B0sNHGI1cBk6dmxGJ+X3jXGOZ1Kgy2TPEX13VkE5o",
    "securechat transcript verify ./data/transcript/2026-11-22.000000000001.jsonl",
    "securechat transcript verify ./data/transcript --against alice.transcript --identity auditor.key",
    "securechat transcript verify ./data/transcript --checkpoint monday.checkpoint   # exit 5 if rolled back or forked",
    "securechat transcript verify ./data/transcript --checkpoint cosigned.checkpoint --witness \"$(cat witness.vkey)\"",
    "securechat transcript verify ./data/transcript --json | jq -c 'select(.kind == \"failure\" or .kind == \"warning\")'",
    "SECURECHAT_DATABASE_URL=postgres://chat@db.internal/chat securechat transcript verify --host-key host_key.pub   # a cluster's",
  ],
  async run({ args: a }) {
    const [{ verifyTranscript, verifySource }, { reportLines, reportObjects }, { jsonText }] = await Promise.all([import("../transcript/verify.ts"), import("../transcript/report.ts"), import("../text.ts")]);
    const url = databaseUrl(a.database, a.path !== undefined);
    if (url === null && a.path === undefined) throw new CliError(EXIT.USAGE, "name the transcript: a directory (DATA/transcript), a file, or --database URL", ["or set SECURECHAT_DATABASE_URL"]);
    if (a.user !== undefined && a.against === undefined) throw new CliError(EXIT.USAGE, "--user needs --against FILE");
    const treeOnly = a["tree-only"] === true;
    if (treeOnly && (a.against !== undefined || a.identity !== undefined)) throw new CliError(EXIT.USAGE, "--tree-only checks neither a client's acks (--against) nor sealed bodies (--identity)", ["run without --tree-only for those"]);
    const user = a.user === undefined ? undefined : parseUserName("--user", a.user);
    const witnesses = await witnessPolicy(repeated(a.witness), a["witness-quorum"]);
    if (witnesses && a.checkpoint === undefined) throw new CliError(EXIT.USAGE, "--witness needs --checkpoint FILE: the cosigned checkpoint to check", ['save one with "securechat transcript checkpoint --cosigned"']);
    const opts = { ...(await hostKeyOption(a["host-key"])), ...(await identityOption(a.identity)), against: a.against, user, checkpoint: await savedCheckpoint(a.checkpoint), witnesses, treeOnly };
    let report: Awaited<ReturnType<typeof verifyTranscript>>;
    // --tree-only reads files: on the database, a private copy of them, named as the database in what is shown.
    let shown = (line: string): string => line;
    try {
      report =
        url === null
          ? await verifyTranscript(a.path!, opts)
          : treeOnly
            ? await withDatabaseCopy(url, (dir, where) => {
                shown = (line) => line.replaceAll(dir, where);
                return verifyTranscript(dir, opts);
              })
            : await withDatabase(url, async (sql, where) => verifySource(await (await import("../transcript/pgread.ts")).databaseSource(sql, where), opts));
    } finally {
      opts.identity?.fill(0); // the reader wiped its own copy
    }
    const [first, ...rest] = reportLines(report).map(shown);
    // --json: the findings are data, on stdout; a failure still exits 5 with its FAIL line on stderr.
    if (a.json) process.stdout.write(reportObjects(report).map((o) => `${jsonText(shown(JSON.stringify(o)))}\n`).join(""));
    if (report.problem) throw new CliError(EXIT.TRANSCRIPT, first!, rest);
    if (!a.json) process.stdout.write(`${[first, ...rest].join("\n")}\n`);
  },
});

const exportCmd = command({
  meta: {
    name: "export",
    description:
      "Print entries as JSON lines, each with its time in ISO 8601 UTC, verified as read: a problem stops it with FAIL and exit 5, after the lines before it. Nothing is rewritten: an edit or a delete is an entry of its own whose ref is the seq of the message entry it changes, so a message's versions are that entry and the edit and delete entries naming it, in order",
  },
  args: {
    ...args.data,
    ...databaseArg,
    directory: { type: "string", description: "With --database: write the stored lines out as the transcript directory DIR (new or empty), byte for byte, then verify it", valueHint: "DIR" },
    ...filterArgs,
    ...identityArg,
    ...hostKeyArg,
    ...args.debug,
  },
  examples: [
    "securechat transcript export --since 2026-11-01 | jq -c 'select(.type==\"message\")'",
    "SECURECHAT_DATABASE_URL=postgres://chat@db.internal/chat securechat transcript export --directory ./backup/transcript",
    "securechat transcript export --since yesterday --until today | jq -r .time",
    "securechat transcript export --host-key \"$(grep ^srv known_hosts)\"",
    "securechat transcript export --data /var/lib/securechat --room general --since 2026-11-22T09:00 --until 2026-11-22T17:00",
    "securechat transcript export --user alice --identity auditor.key > alice.jsonl",
    "securechat transcript export | jq -c 'select(.seq==123 or .ref==123)'",
    "securechat transcript export > all.jsonl || echo \"exit $?: all.jsonl holds only the part before the problem\"",
  ],
  async run({ args: a }) {
    const { exportTranscript, exportSource, StdoutSink } = await import("../transcript/export.ts");
    const url = databaseUrl(a.database, a.data !== undefined);
    if (a.directory !== undefined) {
      if (url === null) throw new CliError(EXIT.USAGE, "--directory writes out the transcript kept in PostgreSQL: it needs --database URL (or SECURECHAT_DATABASE_URL)");
      return exportDirectory(url, a.directory, await hostKeyOption(a["host-key"]));
    }
    const opts = { ...(await filterOptions(a)), ...(await hostKeyOption(a["host-key"])), ...(await identityOption(a.identity)) };
    const out = new StdoutSink();
    try {
      const summary =
        url === null
          ? await exportTranscript(await transcriptDir(a.data), opts, out)
          : await withDatabase(url, async (sql, where) => exportSource(await (await import("../transcript/pgread.ts")).databaseSource(sql, where), opts, out));
      // A reader that went away (| head) saw what it wanted; a summary of a part would mislead.
      if (!out.closed) await notes(summary);
    } catch (e) {
      return failed(e);
    } finally {
      opts.identity?.fill(0);
      out.dispose();
    }
  },
});

/** export --database --directory DIR: the stored lines as files, then verified as `verify DIR` would (exit 5 if they do not). */
async function exportDirectory(url: string, dir: string, pin: { hostKey?: Uint8Array; hostKeyFingerprint?: string }): Promise<void> {
  const [{ existsSync, readdirSync }, { writeDirectory }, { verifyTranscript }, { reportLines }] = await Promise.all([
    import("node:fs"),
    import("../transcript/pgread.ts"),
    import("../transcript/verify.ts"),
    import("../transcript/report.ts"),
  ]);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new CliError(EXIT.USAGE, `--directory: ${dir} is not empty`, ["give a new or empty directory"]);
  const wrote = await withDatabase(url, (sql) => writeDirectory(sql, dir));
  if (wrote.lines === 0) throw new CliError(EXIT.FAILURE, "the database holds no transcript lines");
  process.stderr.write(`wrote ${wrote.lines} lines in ${wrote.files} files to ${dir}\n`);
  const report = await verifyTranscript(dir, pin);
  const [first, ...rest] = reportLines(report);
  if (report.problem) throw new CliError(EXIT.TRANSCRIPT, first!, rest);
  process.stderr.write(`${[first, ...rest].join("\n")}\n`);
}

/**
 * follow --checkpoint FILE: FILE is replaced, atomically (a new file beside
 * it, fsynced, renamed over it), by each newer checkpoint that extends it,
 * with the mode it had, so that the next run checks against the newest.
 */
async function checkpointKeeper(path: string): Promise<(note: string, size: number) => void> {
  const [{ closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync }, { dirname }, { syncDir }] = await Promise.all([
    import("node:fs"),
    import("node:path"),
    import("../paths.ts"),
  ]);
  const mode = statSync(path).mode & 0o777;
  return (note, size) => {
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      const fd = openSync(tmp, "w", mode);
      try {
        writeSync(fd, note);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      syncDir(dirname(path));
      process.stderr.write(`${path}: now the checkpoint of the tree of ${size} lines\n`);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
      throw new CliError(EXIT.FAILURE, `cannot update ${path}: ${(e as Error).message}`);
    }
  };
}

const follow = command({
  meta: {
    name: "follow",
    description: "Like tail -f: print entries as JSON lines as they are written, verified as read (exit 5 on a problem); runs until interrupted",
  },
  args: {
    ...args.data,
    ...databaseArg,
    "from-end": { type: "boolean", description: "Print only entries written from now on (what is there already is still verified)" },
    checkpoint: {
      type: "string",
      description: "A checkpoint saved earlier: the log must extend it (exit 5 if not); FILE is then kept updated with the newest checkpoint that does",
      valueHint: "FILE",
    },
    ...filterArgs,
    ...identityArg,
    ...hostKeyArg,
    ...args.debug,
  },
  examples: [
    "securechat transcript follow --data /var/lib/securechat | jq .",
    "securechat transcript follow --from-end --room general",
    "securechat transcript follow --since 08:00 | jq -r '[.time, .type] | @tsv'",
    "securechat transcript follow --identity auditor.key --user alice",
    "securechat transcript follow --from-end --checkpoint monitor.checkpoint > /dev/null   # a monitor",
    "SECURECHAT_DATABASE_URL=postgres://chat@db.internal/chat securechat transcript follow --from-end",
  ],
  async run({ args: a }) {
    const { followTranscript, followSource, StdoutSink } = await import("../transcript/export.ts");
    const saved = await savedCheckpoint(a.checkpoint);
    const opts = { ...(await filterOptions(a)), ...(await hostKeyOption(a["host-key"])), ...(await identityOption(a.identity)) };
    const url = databaseUrl(a.database, a.data !== undefined);
    const dir = url === null ? await transcriptDir(a.data) : "";
    const { existsSync } = await import("node:fs");
    if (url === null && !existsSync(dir)) process.stderr.write(`waiting for ${dir} to appear\n`);
    const out = new StdoutSink();
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      const fromEnd = a["from-end"] === true;
      // With --from-end nothing is printed until something is written: say that the past checked out.
      const extends_ = a.checkpoint === undefined ? "" : `; the log extends the checkpoint in ${a.checkpoint}`;
      const following = (what: string) => (s: { entries: number }): void => void process.stderr.write(`following ${what}: ${s.entries} existing entries verified${extends_}; waiting for new ones\n`);
      const keep = a.checkpoint === undefined ? {} : { checkpoint: saved, onCheckpoint: await checkpointKeeper(a.checkpoint) };
      const with_ = (what: string) => ({ ...opts, fromEnd, signal: stop.signal, ...(fromEnd || keep.checkpoint ? { onCaughtUp: following(what) } : {}), ...keep });
      const summary =
        url === null
          ? await followTranscript(dir, with_(dir), out)
          : await withDatabase(url, async (sql, where) => followSource((await import("../transcript/pgread.ts")).databaseFollowSource(sql, where), with_(where), out));
      if (!out.closed) await notes(summary);
    } catch (e) {
      return failed(e);
    } finally {
      opts.identity?.fill(0);
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      out.dispose();
    }
  },
});

const checkpoint = command({
  meta: {
    name: "checkpoint",
    description: "Print the transcript's last signed checkpoint as a signed note (c2sp.org/tlog-checkpoint), for signed-note tools",
  },
  args: {
    ...args.data,
    ...databaseArg,
    cosigned: { type: "boolean", description: "Print the newest checkpoint witnesses cosigned, with their cosignatures (DATA/cosigned.checkpoint, or a cluster's in --database, kept by serve --witness)" },
    ...args.debug,
  },
  examples: [
    "securechat transcript checkpoint --data /var/lib/securechat > checkpoint",
    "securechat transcript checkpoint --cosigned > cosigned.checkpoint",
    "securechat transcript checkpoint | head -3   # origin, tree size, root",
    "SECURECHAT_DATABASE_URL=postgres://chat@db.internal/chat securechat transcript checkpoint   # a cluster's",
  ],
  async run({ args: a }) {
    const [{ lastTreeCheckpoint }, { checkpointNote }, { listTranscript }, { existsSync }] = await Promise.all([
      import("../transcript/verify.ts"),
      import("../transcript/format.ts"),
      import("../transcript/read.ts"),
      import("node:fs"),
    ]);
    const url = databaseUrl(a.database, a.data !== undefined);
    const printCosigned = (note: string): void => {
      process.stdout.write(note);
      process.stderr.write(`cosigned checkpoint: the tree of the first ${note.split("\n")[1]} lines, with ${note.split("\n").filter((l) => l.startsWith("\u2014 ")).length - 1} cosignature(s); check it with transcript verify --checkpoint FILE --witness VKEY\n`);
    };
    if (url !== null && a.cosigned) {
      const { readCosigned } = await import("../store/pg/log.ts");
      const found = await withDatabase(url, async (sql, where) => {
        const exists = (await sql`SELECT to_regclass('log_cosigned') IS NOT NULL AS ok`)[0].ok;
        return { where, note: exists ? await readCosigned(sql) : null };
      });
      if (found.note === null) throw new CliError(EXIT.FAILURE, `no cosigned checkpoint in ${found.where}`, ["the cluster's core keeps one (serve --witness URL=VKEY) once a witness has cosigned"]);
      return printCosigned(found.note);
    }
    const print = (dir: string): void => {
      const e = lastTreeCheckpoint(listTranscript(dir).files);
      if (e === null) throw new CliError(EXIT.FAILURE, `no checkpoint in ${dir} signs a tree root yet`, ["a server of this version signs one at least every --checkpoint-interval while there are new entries, and when it stops"]);
      process.stdout.write(checkpointNote(e)!);
      process.stderr.write(`checkpoint at seq ${e.seq}: the tree of the first ${e.head_seq} lines, signed as ${e.origin}; check it with the vkey serve prints\n`);
    };
    if (url !== null) return withDatabaseCopy(url, print);
    const dir = await transcriptDir(a.data);
    if (a.cosigned) {
      const [{ cosignedPath }, { dirname }, { readFileSync }] = await Promise.all([import("../server/witnesses.ts"), import("node:path"), import("node:fs")]);
      const path = cosignedPath(dirname(dir));
      if (!existsSync(path)) throw new CliError(EXIT.FAILURE, `no cosigned checkpoint at ${path}`, ["serve --witness URL=VKEY keeps one once a witness has cosigned"]);
      return printCosigned(readFileSync(path, "utf8"));
    }
    if (!existsSync(dir)) throw new CliError(EXIT.FAILURE, `no transcript at ${dir}`, ["pass --data with the server's data directory"]);
    print(dir);
  },
});

const prove = command({
  meta: {
    name: "prove",
    description: "Print a proof that entry SEQ is in the log (c2sp.org/tlog-proof@v1): its inclusion proof and the last signed checkpoint, checkable offline with verify-proof",
  },
  args: {
    ...args.data,
    ...databaseArg,
    seq: { type: "string", description: "The entry's seq (as in export, or an ack's tseq)", valueHint: "N", required: true },
    ...args.debug,
  },
  examples: [
    "securechat transcript prove --seq 1234 > entry-1234.tlog-proof",
    "SECURECHAT_DATABASE_URL=postgres://chat@db.internal/chat securechat transcript prove --seq 1234   # a cluster's",
    "securechat transcript export --data DATA --user alice | jq -r 'select(.type==\"message\") | .seq' | tail -1",
  ],
  async run({ args: a }) {
    const [{ proveEntry, formatProof }, { treePath }, { existsSync }, { parseInteger }] = await Promise.all([
      import("../transcript/proof.ts"),
      import("../transcript/writer.ts"),
      import("node:fs"),
      import("./values.ts"),
    ]);
    const seq = parseInteger("--seq", a.seq, 1, Number.MAX_SAFE_INTEGER);
    const print = (dir: string): void => {
      let made: ReturnType<typeof proveEntry>;
      try {
        made = proveEntry(dir, treePath(dir), seq);
      } catch (e) {
        const code = (e as { code?: string }).code ?? "";
        if (code === "proof_tree_damaged" || code === "proof_tree_short") throw new CliError(EXIT.TRANSCRIPT, (e as Error).message);
        if (code.startsWith("proof_") || code.startsWith("transcript_")) throw new CliError(EXIT.FAILURE, (e as Error).message);
        throw e;
      }
      process.stdout.write(formatProof(made.proof));
      process.stderr.write(`proof of entry ${seq} (${made.entry.type}): leaf ${made.proof.index} of the ${made.proof.hashes.length === 0 ? "one-line" : "signed"} tree; check it with: securechat transcript verify-proof FILE --vkey VKEY\n`);
    };
    const url = databaseUrl(a.database, a.data !== undefined);
    if (url !== null) return withDatabaseCopy(url, print);
    const dir = await transcriptDir(a.data);
    if (!existsSync(dir)) throw new CliError(EXIT.FAILURE, `no transcript at ${dir}`, ["pass --data with the server's data directory"]);
    print(dir);
  },
});

/** --vkey: a verifier key as serve prints it, or a file whose first line is one. */
async function vkeyOption(value: string): Promise<import("../transcript/note.ts").NoteVerifier> {
  const [{ parseVerifierKey }, { readFileSync, existsSync }] = await Promise.all([import("../transcript/note.ts"), import("node:fs")]);
  try {
    return parseVerifierKey(value.includes("+") || !existsSync(value) ? value : readFileSync(value, "utf8").split("\n")[0]!);
  } catch (e) {
    throw new CliError(EXIT.USAGE, `--vkey: ${(e as Error).message.replace(/^signed note: /, "")}`, ["pass the vkey=… value from serve's listening line"]);
  }
}

const receipts = command({
  meta: {
    name: "receipts",
    description: "Check every receipt a client kept in its chat --transcript FILE, offline, with the log's verifier key (exit 5 if one fails)",
  },
  args: {
    file: { type: "positional", description: "The client's transcript (chat --transcript FILE)", required: true, valueHint: "FILE" },
    ...vkeyArg,
    user: { type: "string", description: "The user the file is of (default: the sender of its first receipt)", valueHint: "USER" },
    ...args.debug,
  },
  examples: [
    "securechat transcript receipts alice.jsonl --vkey 'securechat/0123456789abcdef+1a2b3c4d+AbC…'",
    "jq -j 'select(.kind==\"receipt\" and .tseq==13) | .proof' alice.jsonl > 13.tlog-proof",
  ],
  async run({ args: a }) {
    const [{ checkReceipts }, { existsSync }, { jsonText }] = await Promise.all([import("../transcript/receipts.ts"), import("node:fs"), import("../text.ts")]);
    const verifier = await vkeyOption(a.vkey);
    if (!existsSync(a.file)) throw new CliError(EXIT.FAILURE, `no file ${a.file}`, ["pass the file chat --transcript wrote"]);
    const user = a.user === undefined ? null : parseUserName("--user", a.user);
    const { checked, failed } = await checkReceipts(a.file, verifier, user, (r) =>
      process.stdout.write(`${jsonText(`${r.ok ? "OK" : "FAIL"} ${a.file}:${r.line}: tseq ${r.tseq ?? "?"}: ${r.text}`)}\n`),
    );
    if (checked === 0) throw new CliError(EXIT.FAILURE, `no receipt in ${a.file}`, ["chat --transcript keeps one for each of your messages a server with a transcript acknowledged"]);
    if (failed > 0) throw new CliError(EXIT.TRANSCRIPT, `FAIL: ${failed} of ${checked} receipt(s) in ${a.file} do not verify`);
    process.stderr.write(`OK: ${checked} receipt(s) verified with ${verifier.name}'s key\n`);
  },
});

const tiles = command({
  meta: {
    name: "tiles",
    description: "Write the log as c2sp.org/tlog-tiles static files (checkpoint, hash tiles; with --entries, entry bundles) into OUT, for monitors, witnesses and clients to fetch from any web server; run it again to bring OUT up to date",
  },
  args: {
    ...args.data,
    ...databaseArg,
    out: { type: "string", description: "The directory to write (made if absent): serve it as the log's URL prefix", valueHint: "DIR", required: true },
    entries: { type: "boolean", description: "Also write the entry bundles: the lines themselves, so everything the transcript holds in the clear (unsealed message text included) becomes readable to whoever can fetch OUT" },
    ...args.debug,
  },
  examples: [
    "securechat transcript tiles --data /var/lib/securechat --out /srv/www/log",
    "securechat transcript tiles --out ./log && curl -s http://localhost:8080/log/checkpoint",
    "SECURECHAT_DATABASE_URL=postgres://chat@db.internal/chat securechat transcript tiles --out /srv/www/log   # a cluster's",
  ],
  async run({ args: a }) {
    const [{ exportTiles }, { treePath }, { existsSync }] = await Promise.all([import("../transcript/tiles.ts"), import("../transcript/writer.ts"), import("node:fs")]);
    const write = (dir: string): ReturnType<typeof exportTiles> => {
      try {
        return exportTiles(dir, treePath(dir), a.out, { entries: a.entries === true });
      } catch (e) {
        const code = (e as { code?: string }).code ?? "";
        if (code === "tiles_foreign" || code === "tiles_tree_damaged" || code === "tiles_line_mismatch") throw new CliError(EXIT.TRANSCRIPT, (e as Error).message);
        if (code.startsWith("tiles_") || code.startsWith("transcript_")) throw new CliError(EXIT.FAILURE, (e as Error).message);
        throw e;
      }
    };
    const url = databaseUrl(a.database, a.data !== undefined);
    let r: ReturnType<typeof exportTiles>;
    if (url !== null) r = await withDatabaseCopy(url, write);
    else {
      const dir = await transcriptDir(a.data);
      if (!existsSync(dir)) throw new CliError(EXIT.FAILURE, `no transcript at ${dir}`, ["pass --data with the server's data directory"]);
      r = write(dir);
    }
    const grew = r.previous === r.size ? `already at ${r.size} lines` : r.previous === 0 ? `${r.size} lines` : `${r.previous} → ${r.size} lines`;
    const bundles = a.entries ? `, ${r.bundles} entry bundle${r.bundles === 1 ? "" : "s"}${r.firstBundled !== null && r.firstBundled > 0 && r.previous === 0 ? ` (from leaf ${r.firstBundled}: the first files are archived)` : ""}` : "";
    process.stderr.write(`${a.out}: ${r.origin}, ${grew}; wrote ${r.tiles} tile${r.tiles === 1 ? "" : "s"}${bundles} and the checkpoint\n`);
  },
});

const verifyProofCmd = command({
  meta: {
    name: "verify-proof",
    description: "Check a proof from prove offline, with only the log's verifier key: prints the entry and exits 0, or exits 5",
  },
  args: {
    file: { type: "positional", description: "The proof (a .tlog-proof file; - for stdin)", required: true, valueHint: "FILE" },
    ...vkeyArg,
    entry: { type: "string", description: "A file holding the entry's line (default: the line the proof carries)", valueHint: "FILE" },
    ...args.debug,
  },
  examples: [
    "securechat transcript verify-proof entry-1234.tlog-proof --vkey 'securechat/0123456789abcdef+1a2b3c4d+AbC…'",
    "securechat transcript verify-proof entry.tlog-proof --vkey vkey.txt --entry line.json | jq .",
  ],
  async run({ args: a }) {
    const [{ parseProof, verifyProof }, { readFileSync }, { jsonText }] = await Promise.all([
      import("../transcript/proof.ts"),
      import("node:fs"),
      import("../text.ts"),
    ]);
    const verifier = await vkeyOption(a.vkey);
    const read = (path: string, what: string): Uint8Array => {
      try {
        return new Uint8Array(readFileSync(path === "-" ? 0 : path));
      } catch (e) {
        throw new CliError(EXIT.FAILURE, `cannot read ${what} ${path}: ${(e as Error).message}`);
      }
    };
    const text = new TextDecoder().decode(read(a.file, "the proof"));
    let line: Uint8Array | undefined;
    if (a.entry !== undefined) {
      const raw = Buffer.from(read(a.entry, "the entry"));
      line = new Uint8Array(raw.subarray(0, raw.at(-1) === 0x0a ? raw.length - 1 : raw.length));
    }
    let ok: ReturnType<typeof verifyProof>;
    try {
      ok = verifyProof(parseProof(text), verifier, line);
    } catch (e) {
      throw new CliError(EXIT.TRANSCRIPT, `FAIL: ${(e as Error).message.replace(/^proof: /, "")}`);
    }
    const entryText = new TextDecoder().decode(ok.line);
    process.stdout.write(`${jsonText(entryText)}\n`);
    process.stderr.write(`OK: leaf ${ok.index} of ${ok.checkpoint.origin}'s tree of ${ok.checkpoint.size} lines, checkpoint signed by ${verifier.name}\n`);
  },
});

const witness = command({
  meta: {
    name: "witness",
    description: "Run a witness (c2sp.org/tlog-witness): cosign the checkpoints of the logs given with --log, each only if it extends the last one cosigned; runs until interrupted",
  },
  args: {
    data: { type: "string", alias: ["d"], description: "The witness's state directory: its key (witness_key, 0600, made on first start) and what it cosigned", valueHint: "DIR", required: true },
    listen: { type: "string", description: "Address to serve HTTP on (loopback unless you mean otherwise)", valueHint: "HOST:PORT", default: "127.0.0.1:7448" },
    log: repeatable({ type: "string", valueHint: "VKEY", description: "A log to witness: its verifier key, as serve prints it (vkey=…), or a file holding it; the origin is the key's name. Give it again for more" }),
    name: { type: "string", valueHint: "NAME", description: "The witness's key name (default: securechat-witness/ and 16 hex digits of its key's hash)" },
    json: { type: "boolean", description: "Log JSON lines instead of text" },
    ...args.debug,
  },
  examples: [
    "securechat transcript witness --data ~/witness --log 'securechat/0123456789abcdef+1a2b3c4d+AbC…'",
    "securechat transcript witness --data /var/lib/witness --listen 0.0.0.0:7448 --log log1.vkey --log log2.vkey",
  ],
  async run({ args: a }) {
    const [{ Witness }, { serveWitness }, { parseVerifierKey }, log, { existsSync, readFileSync }, { parseListen }] = await Promise.all([
      import("../transcript/witness.ts"),
      import("../server/witnesshttp.ts"),
      import("../transcript/note.ts"),
      import("../server/log.ts"),
      import("node:fs"),
      import("./values.ts"),
    ]);
    const logs = repeated(a.log).map((v) => {
      try {
        return parseVerifierKey(v.includes("+") || !existsSync(v) ? v : readFileSync(v, "utf8").split("\n")[0]!);
      } catch (e) {
        throw new CliError(EXIT.USAGE, `--log: ${(e as Error).message.replace(/^signed note: /, "")}`, ["pass the vkey=… value from the log's serve listening line"]);
      }
    });
    if (logs.length === 0) throw new CliError(EXIT.USAGE, "a witness needs at least one --log VKEY", ["pass the vkey=… value from the serve listening line of each log to witness"]);
    const { host, port } = parseListen("--listen", a.listen);
    const logger = a.json ? log.jsonLogger() : log.textLogger();
    // The address is tried before DIR is touched: a mistake there leaves it as it was.
    try {
      Bun.listen({ hostname: host, port, socket: { data() {} } }).stop(true);
    } catch (e) {
      throw new CliError(EXIT.FAILURE, `cannot listen on ${a.listen}: ${(e as Error).message}`, ["pick another --listen HOST:PORT"]);
    }
    process.umask(0o077);
    // One witness per state directory, held until this process ends (store/lock.ts).
    const { DataLock } = await import("../store/lock.ts");
    let lock: ReturnType<typeof DataLock.acquire>;
    try {
      lock = DataLock.acquire(a.data, process.pid, "witness");
    } catch (e) {
      const pid = (e as { detail?: { pid?: number } }).detail?.pid;
      throw new CliError(EXIT.FAILURE, (e as Error).message, [pid ? `stop that witness first (kill ${pid}), or pass another --data` : "pass another --data"]);
    }
    let w: InstanceType<typeof Witness>;
    try {
      w = new Witness({ dir: a.data, logs, name: a.name, log: logger });
    } catch (e) {
      throw new CliError(EXIT.FAILURE, (e as Error).message);
    }
    let server: ReturnType<typeof serveWitness>;
    try {
      server = serveWitness(w, { hostname: host, port });
    } catch (e) {
      throw new CliError(EXIT.FAILURE, `cannot listen on ${a.listen}: ${(e as Error).message}`);
    }
    logger.info(w.created ? "witness_key_created" : "witness_key_loaded", { vkey: w.vkey });
    logger.info("witness_listening", { address: `${host.includes(":") ? `[${host}]` : host}:${server.port}`, vkey: w.vkey, logs: logs.map((l) => l.name).join(","), data: a.data, pid: process.pid });
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info("shutdown", { signal });
        void server.stop().then(() => {
          lock.release();
          resolve();
        });
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
  },
});

const keygen = command({
  meta: {
    name: "keygen",
    description: "Make an auditor key pair: secret to a new 0600 file, public line to stdout (for serve --auditor-key)",
  },
  args: {
    out: { type: "string", description: "Where to write the secret key (never overwritten)", valueHint: "FILE", default: "./auditor.key" },
    ...args.debug,
  },
  examples: [
    "securechat transcript keygen --out ~/auditor.key > auditor.pub",
    "securechat serve --auditor-key \"$(cat auditor.pub)\"",
  ],
  async run({ args: a }) {
    const [{ createAuditorKey, auditorPublicLine }, { fingerprint }, { isSecureChatError }] = await Promise.all([
      import("../transcript/keys.ts"),
      import("../fingerprint.ts"),
      import("../errors.ts"),
    ]);
    let publicKey: Uint8Array;
    try {
      ({ publicKey } = createAuditorKey(a.out));
    } catch (e) {
      if (isSecureChatError(e, "auditor_key_exists")) throw new CliError(EXIT.FAILURE, e.message, ["choose another --out, or remove the old key once nothing sealed to it is needed"]);
      throw new CliError(EXIT.FAILURE, `cannot write ${a.out}: ${(e as Error).message}`, [], { cause: e });
    }
    process.stdout.write(`${auditorPublicLine(publicKey)}\n`);
    process.stderr.write(`wrote the auditor secret key to ${a.out} (mode 0600): keep it offline, it opens every body sealed to it\nfingerprint: ${fingerprint(publicKey)}\n`);
  },
});

export default command({
  meta: { name: "transcript", description: "Verify, export and follow the server's tamper-evident transcript" },
  subCommands: { verify, export: exportCmd, follow, checkpoint, prove, "verify-proof": verifyProofCmd, receipts, tiles, witness, keygen },
  examples: [
    "securechat transcript verify ./data/transcript --host-key ./data/host_key.pub",
    "securechat transcript export --data ./data | jq .",
    "securechat transcript follow --data ./data --from-end",
    "securechat transcript keygen --out auditor.key",
  ],
});
