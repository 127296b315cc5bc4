/**
 * `serve --check`: what a start with these flags would find, found without
 * starting: no socket kept, no lock taken, nothing in the data directory
 * written (it is left byte for byte as it was). Each check is a name, a
 * status and one line; engine checks (a database, a cache) are further
 * entries of the same list.
 */
import { Database } from "bun:sqlite";
import { accessSync, constants, copyFileSync, existsSync, mkdtempSync, rmSync, statSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { RedisClient } from "bun";
import { hostKeyPath, hostKeySource, loadHostKey, requireGivenHostKey } from "../server/hostkey.ts";
import { type Component, openPg, pendingSteps, redactUrl, schemaVersion } from "../store/pg/pg.ts";
import { diagnoseRedis, parseRedisUrl } from "../store/redis/link.ts";
import type { WitnessTarget } from "../server/witnesses.ts";
import { lockHeld } from "../store/lock.ts";
import { historyDbPath } from "../transcript/journal.ts";
import { listTranscript } from "../transcript/read.ts";
import { untrusted } from "../transcript/tree.ts";
import { TranscriptFailure } from "../transcript/chain.ts";
import { type TailReport, verifyTail } from "../transcript/verify.ts";
import { treePath } from "../transcript/writer.ts";

export type CheckStatus = "ok" | "warn" | "FAIL";

export interface CheckResult {
  check: string;
  status: CheckStatus;
  message: string;
  /** What to do, for warn and FAIL. */
  hint?: string;
}

export interface CheckInput {
  dataDir: string;
  /** --host-key FILE (default: host_key in the data directory). */
  hostKeyFile?: string;
  host: string;
  port: number;
  /** --rotate-size: the free-space warning is a few transcript files' worth. */
  rotateBytes: number;
  admins: ReadonlySet<string>;
  witnesses: readonly WitnessTarget[];
  /** Why listening on HOST:PORT fails now (null: it works), and that failure as a person reads it. */
  tryListen: (host: string, port: number) => unknown;
  listenFailure: (e: unknown) => unknown;
  /** How long a witness has to answer a TCP connect (default 3 s). */
  witnessTimeoutMs?: number;
  /** A cluster node's engines (serve --database/--redis), and the parts whose tables it keeps there. */
  engines?: { database: string; redis: string; components: readonly Component[] };
  /** How long an engine has to answer (default 5 s). */
  engineTimeoutMs?: number;
}

/** The oldest engines a cluster node runs on. */
export const MIN_POSTGRES = 15;
export const MIN_REDIS = 7;

/** Free space below which the check warns: four transcript files, and never under 256 MiB. */
export const freeSpaceFloor = (rotateBytes: number): number => Math.max(256 * 1024 ** 2, 4 * rotateBytes);

const ok = (check: string, message: string): CheckResult => ({ check, status: "ok", message });
const warn = (check: string, message: string, hint: string): CheckResult => ({ check, status: "warn", message, hint });
const fail = (check: string, message: string, hint: string): CheckResult => ({ check, status: "FAIL", message, hint });
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
const mib = (n: number) => `${Math.floor(n / 1024 ** 2)} MiB`;

/** Runs every check, in order; none throws (a check that cannot be made says so as FAIL). */
export async function runChecks(c: CheckInput): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const dir = checkDataDir(c.dataDir);
  results.push(dir);
  const exists = existsSync(c.dataDir) && dir.status !== "FAIL";
  let lock: { held: boolean; pid: number | null } = { held: false, pid: null };
  if (exists) {
    try {
      lock = lockHeld(c.dataDir);
      results.push(ok("lock", lock.held ? `a server (pid ${lock.pid ?? "unknown"}) is running on this directory` : "no server is running on this directory"));
    } catch (e) {
      results.push(fail("lock", (e as Error).message, "remove serve.lock only if no securechat serve runs on this directory"));
    }
  }
  results.push(checkListen(c, lock));
  let hostKey: Uint8Array | null = null;
  let keyFailed = false;
  // A node's data directory may be new while its --host-key file, shared with the cluster, is not.
  if (exists || c.hostKeyFile !== undefined) {
    const key = checkHostKey(c.dataDir, c.hostKeyFile);
    results.push(key.result);
    hostKey = key.publicKey;
    keyFailed = key.result.status === "FAIL";
  }
  if (exists) {
    const tail = checkTranscript(c.dataDir, hostKey, keyFailed, lock.held);
    results.push(...tail.results);
    results.push(checkHistory(c.dataDir, tail.lines));
  }
  results.push(checkDisk(c.dataDir, c.rotateBytes));
  for (const w of c.witnesses) results.push(await checkWitness(w, c.witnessTimeoutMs ?? 3000));
  if (c.admins.size > 0) results.push(...checkAdmins(c.dataDir, c.admins));
  if (c.engines) results.push(...(await checkEngines(c.engines, c.engineTimeoutMs)));
  return results;
}

/** The engines' checks alone (what a cluster node runs before it touches anything); none throws. */
export async function checkEngines(engines: NonNullable<CheckInput["engines"]>, timeoutMs = 5000): Promise<CheckResult[]> {
  return [...(await checkPostgres(engines.database, engines.components, timeoutMs)), ...(await checkRedis(engines.redis, timeoutMs))];
}

/** `e`'s message, without `secret` should it ever appear in it. */
function scrubbed(e: unknown, secret: string): string {
  const m = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
  return secret === "" ? m : m.split(secret).join("***");
}

/** Reachable and version; synchronous_commit (an ack waits for the commit on disk); each component's pending schema steps. Reads only. */
async function checkPostgres(url: string, components: readonly Component[], timeoutMs: number): Promise<CheckResult[]> {
  const shown = redactUrl(url);
  let password = "";
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {}
  const sql = openPg(url, { max: 1, connectTimeoutS: Math.max(1, Math.ceil(timeoutMs / 1000)) });
  try {
    let row: { num: number; version: string; sync: string };
    try {
      const rows = await Promise.race([
        sql`SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync`,
        Bun.sleep(timeoutMs + 1000).then(() => {
          throw new Error(`no answer within ${timeoutMs / 1000} s`);
        }),
      ]);
      row = rows[0];
    } catch (e) {
      return [fail("postgres", `${shown} cannot be used: ${scrubbed(e, password)}`, "start PostgreSQL, or fix the URL, user, password or pg_hba.conf; the node cannot record anything without it")];
    }
    const results: CheckResult[] = [];
    const major = Math.floor(row.num / 10000);
    if (major < MIN_POSTGRES) results.push(fail("postgres", `${shown} is PostgreSQL ${row.version}, older than ${MIN_POSTGRES}`, `upgrade to PostgreSQL ${MIN_POSTGRES} or newer`));
    else results.push(ok("postgres", `${shown} answers: PostgreSQL ${row.version}`));
    if (row.sync === "off") {
      results.push(fail("postgres-commit", "synchronous_commit is off: a COMMIT returns before it is on disk, so an acknowledged message could be lost in a crash", "set it on: ALTER DATABASE … SET synchronous_commit = on, or in postgresql.conf"));
    } else {
      results.push(ok("postgres-commit", `synchronous_commit is ${row.sync}: a COMMIT returns once it is durable`));
    }
    for (const c of components) {
      try {
        const pending = await pendingSteps(sql, c);
        const at = await schemaVersion(sql, c);
        if (pending === 0) results.push(ok(`schema ${c.name}`, `up to date (version ${at})`));
        else results.push(warn(`schema ${c.name}`, `${pending} of ${c.steps.length} steps to run (the database is at version ${at})`, "nothing to do: the first node to start runs them, once, for every node"));
      } catch (e) {
        const newer = (e as { code?: string }).code === "schema_newer";
        results.push(fail(`schema ${c.name}`, scrubbed(e, password), newer ? "run the securechat version that migrated it, on every node" : "check the database's schema_versions table"));
      }
    }
    return results;
  } finally {
    await sql.close().catch(() => {});
  }
}

/** Reachable (and the password taken) and version; an eviction policy that does not evict the keys a node relies on. Reads only. */
async function checkRedis(url: string, timeoutMs: number): Promise<CheckResult[]> {
  let p: ReturnType<typeof parseRedisUrl>;
  try {
    p = parseRedisUrl(url);
  } catch (e) {
    return [fail("redis", (e as Error).message, "give redis://:PASSWORD@HOST:6379")];
  }
  const why = await diagnoseRedis(url, timeoutMs);
  if (!why.ok) return [fail("redis", `${p.shown} cannot be used: ${why.why}`, "start Redis, or fix the URL or password; nodes fan messages out and share presence through it")];
  const client = new RedisClient(url, { autoReconnect: false, enableOfflineQueue: false, connectionTimeout: timeoutMs });
  try {
    await client.connect();
    const info = String(await client.send("INFO", ["server"]));
    const version = /^redis_version:(\S+)/m.exec(info)?.[1] ?? "unknown";
    const results: CheckResult[] = [];
    if (!(Number(version.split(".")[0]) >= MIN_REDIS)) results.push(fail("redis", `${p.shown} is Redis ${version}, older than ${MIN_REDIS}`, `upgrade to Redis ${MIN_REDIS} or newer (or Valkey)`));
    else results.push(ok("redis", `${p.shown} answers: Redis ${version}`));
    let policy: string;
    let maxmemory: number;
    try {
      const r = (await client.send("CONFIG", ["GET", "maxmemory*"])) as Record<string, string> | string[];
      const conf: Record<string, string> = Array.isArray(r) ? Object.fromEntries(r.flatMap((v, i) => (i % 2 === 0 ? [[v, r[i + 1]!]] : []))) : r;
      policy = conf["maxmemory-policy"] ?? "unknown";
      maxmemory = Number(conf.maxmemory ?? 0);
    } catch (e) {
      results.push(warn("redis-eviction", `maxmemory-policy cannot be read (${scrubbed(e, p.password)})`, "make sure it is noeviction: a policy that evicts keys could drop a node's liveness key or a flood bucket"));
      return results;
    }
    const limit = maxmemory > 0 ? `, maxmemory ${mib(maxmemory)}` : ", no maxmemory";
    if (policy === "noeviction") results.push(ok("redis-eviction", `maxmemory-policy is noeviction${limit}: no key is ever evicted`));
    else if (policy.startsWith("volatile-")) {
      results.push(warn("redis-eviction", `maxmemory-policy is ${policy}${limit}: at the limit Redis evicts keys with a time to live, such as a node's liveness key (the node would be taken for dead) and flood buckets`, "prefer noeviction, or keep maxmemory well above what Redis holds"));
    } else if (maxmemory === 0) {
      results.push(warn("redis-eviction", `maxmemory-policy is ${policy}, inactive while there is no maxmemory`, "set maxmemory-policy noeviction before setting a maxmemory"));
    } else {
      results.push(fail("redis-eviction", `maxmemory-policy is ${policy}${limit}: at the limit Redis evicts any key`, "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)"));
    }
    return results;
  } catch (e) {
    return [fail("redis", `${p.shown} cannot be used: ${scrubbed(e, p.password)}`, "start Redis, or fix the URL or password")];
  } finally {
    client.close();
  }
}

function checkDataDir(dataDir: string): CheckResult {
  const hint = "pass --data DIR: a directory this user owns, or one that does not exist yet";
  let st;
  try {
    st = statSync(dataDir);
  } catch {
    let parent = dirname(dataDir);
    while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
    try {
      accessSync(parent, constants.W_OK | constants.X_OK);
      return ok("data", `${dataDir} does not exist; the server will make it (0700)`);
    } catch {
      return fail("data", `${dataDir} does not exist and cannot be made: ${parent} is not writable by this user`, hint);
    }
  }
  if (!st.isDirectory()) return fail("data", `${dataDir} is not a directory`, hint);
  if (process.getuid && st.uid !== process.getuid()) return fail("data", `${dataDir} is owned by uid ${st.uid}, not by this user (uid ${process.getuid()})`, hint);
  const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
  if ((st.mode & 0o022) !== 0) {
    return fail("data", `${dataDir} has mode ${mode}: other users may write in it`, `check that no one else changed its files, then chmod 700 ${dataDir}`);
  }
  if ((st.mode & 0o077) !== 0) return warn("data", `${dataDir} has mode ${mode}: other users may list it`, `chmod 700 ${dataDir} (the server tightens it at start)`);
  return ok("data", `${dataDir} is a private directory of this user`);
}

function checkListen(c: CheckInput, lock: { held: boolean; pid: number | null }): CheckResult {
  const where = `${c.host.includes(":") ? `[${c.host}]` : c.host}:${c.port}`;
  const why = c.tryListen(c.host, c.port);
  if (!why) return ok("listen", `${where} can be listened on`);
  if (lock.held && (why as { code?: string }).code === "EADDRINUSE") return ok("listen", `${where} is in use, presumably by the server running on this directory`);
  const failure = c.listenFailure(why) as Error & { hints?: string[] };
  return fail("listen", failure.message, failure.hints?.[0] ?? "pick another --host or --port");
}

function checkHostKey(dataDir: string, file: string | undefined): { result: CheckResult; publicKey: Uint8Array | null } {
  const src = hostKeySource(dataDir, file);
  const path = src.path;
  try {
    requireGivenHostKey(src);
    const key = loadHostKey(dataDir, file);
    if (!key) return { result: ok("host-key", `${path} does not exist; the server will make it (0600)`), publicKey: null };
    return { result: ok("host-key", `${path} is a host key, mode 0600`), publicKey: key.publicKey };
  } catch (e) {
    // loadKeyFile's messages name the file, never its content.
    const m = (e as Error).message.replace(/^host key: /, "");
    const code = (e as { code?: string }).code ?? "";
    const hint = /permissions$/.test(code)
      ? `chmod 600 ${path}, and replace the key if others may have read it`
      : code === "host_key_missing"
        ? `copy the cluster's host key file there (mode 0600), or leave out --host-key to use ${hostKeyPath(dataDir)}`
        : `restore ${path} from a backup`;
    return { result: fail("host-key", m.replace(/ \(chmod 600 it.*\)$/, ""), hint), publicKey: null };
  }
}

/** The transcript's tail as the writer's start checks it, and the tree's stored hashes against its last signed root. */
function checkTranscript(dataDir: string, hostKey: Uint8Array | null, keyFailed: boolean, running: boolean): { results: CheckResult[]; lines: number } {
  const dir = join(dataDir, "transcript");
  const files = existsSync(dir) ? listTranscript(dir).files : [];
  if (files.length === 0) return { results: [ok("transcript", `${dir} holds no transcript yet; the server will start one`)], lines: 0 };
  if (keyFailed) return { results: [fail("transcript", "not checked: the host key cannot be read", "fix the host key first")], lines: 0 };
  if (!hostKey) return { results: [fail("transcript", `${dir} holds a transcript but host_key is missing: a new key could not continue it`, `restore ${hostKeyPath(dataDir)} from a backup`)], lines: 0 };
  let tail: TailReport;
  try {
    tail = verifyTail(files, hostKey);
  } catch (e) {
    if (!(e instanceof TranscriptFailure)) return { results: [fail("transcript", (e as Error).message, `run "securechat transcript verify ${dir}"`)], lines: 0 };
    const p = e.problem;
    return { results: [fail("transcript", `${p.file}:${p.line}: ${p.reason}; the server will not start on it`, `run "securechat transcript verify ${dir}"`)], lines: 0 };
  }
  const lines = tail.last?.seq ?? 0;
  const results: CheckResult[] = [];
  if (tail.torn && !running) {
    results.push(warn("transcript", `${plural(lines, "line")} verify from the last checkpoint; ${tail.torn.file} ends in a torn line (${tail.torn.end - tail.torn.start} bytes)`, `nothing to do: the start cuts it and keeps it in ${tail.torn.file}.torn`));
  } else {
    results.push(ok("transcript", `${plural(lines, "line")}; the tail verifies from the last checkpoint${running ? " (the running server is appending)" : ""}`));
  }
  const path = treePath(dir);
  const complete = files[0]!.firstSeq === 1;
  const rebuild = (why: string) =>
    complete
      ? warn("tree", `${why}: the start rebuilds tree.hashes (or resumes it from an earlier checkpoint), reading and hashing up to ${plural(lines, "line")}`, "nothing to do; expect a slower start")
      : warn("tree", `${why}, and the transcript's first files are not here to rebuild it from: checkpoints will sign no tree root`, `put back the transcript's first files in ${dir}`);
  if (running) results.push(ok("tree", "not checked while the server runs: it holds tree.hashes and appends to it"));
  else if (lines === 0) results.push(ok("tree", "no lines yet"));
  else if (!tail.tree) results.push(rebuild("no checkpoint signs a tree root yet"));
  else {
    const why = untrusted(path, tail.tree, { size: lines, tail: tail.tree.tail });
    results.push(why === null ? ok("tree", `tree.hashes matches the root the last checkpoint signs (${plural(tail.tree.size, "line")})`) : rebuild(why));
  }
  return { results, lines };
}

function checkHistory(dataDir: string, lines: number): CheckResult {
  const path = historyDbPath(join(dataDir, "transcript"));
  if (existsSync(path)) return ok("history", `${path} is there`);
  if (lines === 0) return ok("history", `${path} will be made`);
  return warn("history", `${path} is missing: the start rebuilds it from the transcript's ${plural(lines, "line")}`, "nothing to do; expect a slower start");
}

function checkDisk(dataDir: string, rotateBytes: number): CheckResult {
  let at = dataDir;
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  try {
    const s = statfsSync(at);
    const free = s.bavail * s.bsize;
    const floor = freeSpaceFloor(rotateBytes);
    if (free < floor) return warn("disk", `${mib(free)} free on the data directory's file system, under ${mib(floor)}`, "free some space: when the disk fills the server refuses messages it cannot record");
    return ok("disk", `${mib(free)} free on the data directory's file system`);
  } catch (e) {
    return warn("disk", `free space unknown: ${(e as Error).message}`, "check the data directory's file system by hand (df)");
  }
}

/** A TCP connect to the witness's host and port: reachable or not, nothing sent. */
async function checkWitness(w: WitnessTarget, timeoutMs: number): Promise<CheckResult> {
  const name = `witness ${w.verifier.name}`;
  const u = new URL(w.url);
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  const hostname = u.hostname.replace(/^\[|\]$/g, "");
  const reached = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(() => resolve(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    Bun.connect({
      hostname,
      port,
      socket: {
        open(s) {
          s.end();
          clearTimeout(timer);
          resolve(null);
        },
        data() {},
        connectError(_s, e) {
          clearTimeout(timer);
          resolve((e as { code?: string }).code ?? e.message);
        },
      },
    }).catch((e: Error) => {
      clearTimeout(timer);
      resolve((e as { code?: string }).code ?? e.message);
    });
  });
  if (reached === null) return ok(name, `${w.url} accepts connections`);
  return fail(name, `${w.url} cannot be reached: ${reached}`, "start the witness, or fix its URL in --witness; checkpoints would lack its cosignature");
}

/** Each --admin is an account in securechat.db, read from a copy so the database is left as it was. */
function checkAdmins(dataDir: string, admins: ReadonlySet<string>): CheckResult[] {
  const path = join(dataDir, "securechat.db");
  const missing = (n: string, why: string) => fail(`admin ${n}`, why, `register ${n} first ("securechat register"), or drop --admin ${n}`);
  if (!existsSync(path)) return [...admins].map((n) => missing(n, "no account database yet, so no such account"));
  // Opening the database itself, even read-only, may make -wal and -shm files beside it.
  const tmp = mkdtempSync(join(tmpdir(), "securechat-check-"));
  try {
    copyFileSync(path, join(tmp, "db"));
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, join(tmp, "db-wal"));
    const db = new Database(join(tmp, "db"));
    try {
      const q = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM accounts WHERE name = ?");
      return [...admins].sort().map((n) => (q.get(n)!.n === 1 ? ok(`admin ${n}`, "the account exists") : missing(n, "no such account")));
    } finally {
      db.close();
    }
  } catch (e) {
    return [...admins].map((n) => fail(`admin ${n}`, `cannot read ${path}: ${(e as Error).message}`, "check the data directory"));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** One line per check for a person: status, name, message, and what to do. */
export function formatCheck(r: CheckResult): string {
  return `${r.status.padEnd(4)} ${r.check}: ${r.message}${r.hint ? ` (${r.hint})` : ""}`;
}
