/**
 * PostgreSQL for a cluster of `serve` nodes (docs/CLUSTER.md): opening a
 * pool from a URL, and the schema migrations every part that keeps tables
 * there runs through.
 *
 * Each part (the account store, the log) owns a *component*: a name and an
 * ordered list of SQL steps. `migrate` brings the component's tables to its
 * last step, each step in its own transaction, under one transaction-scoped
 * advisory lock, so several nodes starting at once run each step exactly
 * once. The version reached is kept per component in `schema_versions`. A
 * database whose version is past what this binary knows (a newer node
 * migrated it) is refused, never written: an older node would misread the
 * newer tables. Steps are append-only; a released step is never edited.
 *
 * The URL carries the password: it is never logged, printed or put in an
 * error (`redactUrl` gives what may be shown).
 */
import { SQL } from "bun";
import { SecureChatError } from "../../errors.ts";

export interface PgOptions {
  /** Connections in the pool. */
  max?: number;
  /** Seconds to wait for a connection before failing. */
  connectTimeoutS?: number;
}

/** A pool for `url` (postgres://user:password@host:port/db). Connects lazily: the first query reports an unreachable server. */
export function openPg(url: string, opts: PgOptions = {}): SQL {
  return new SQL({ url, max: opts.max ?? 8, connectionTimeout: opts.connectTimeoutS ?? 10, idleTimeout: 0 });
}

/** `url` with its password replaced by `***`, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(an unparsable URL)";
  }
}

/** A part's tables: `steps[i]` takes them from version i to i + 1 (several statements, no parameters). */
export interface Component {
  readonly name: string;
  readonly steps: readonly string[];
}

const LOCK = "securechat:migrate";

/** The version of `c` the database holds (0: none of its tables yet). */
export async function schemaVersion(sql: SQL, c: Component): Promise<number> {
  const exists = await sql`SELECT to_regclass('schema_versions') IS NOT NULL AS ok`;
  if (!exists[0].ok) return 0;
  const rows = await sql`SELECT version FROM schema_versions WHERE component = ${c.name}`;
  return rows.length === 0 ? 0 : Number(rows[0].version);
}

/** Steps of `c` not yet applied (0: up to date); throws `schema_newer` for a database past this binary. */
export async function pendingSteps(sql: SQL, c: Component): Promise<number> {
  return refuseNewer(c, await schemaVersion(sql, c));
}

/** Brings `c`'s tables to its last step; returns the versions before and after. */
export async function migrate(sql: SQL, c: Component): Promise<{ from: number; to: number }> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext(${LOCK}))`;
    await tx.unsafe("CREATE TABLE IF NOT EXISTS schema_versions (component text PRIMARY KEY, version integer NOT NULL)");
  });
  const from = await schemaVersion(sql, c);
  refuseNewer(c, from);
  let at = from;
  while (at < c.steps.length) {
    await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext(${LOCK}))`;
      const rows = await tx`SELECT version FROM schema_versions WHERE component = ${c.name}`;
      const now = rows.length === 0 ? 0 : Number(rows[0].version);
      refuseNewer(c, now);
      // Another node may have run it while this one waited for the lock.
      if (now > at) {
        at = now;
        return;
      }
      await tx.unsafe(c.steps[at]!);
      await tx`INSERT INTO schema_versions (component, version) VALUES (${c.name}, ${at + 1})
               ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version`;
      at += 1;
    });
  }
  return { from, to: at };
}

function refuseNewer(c: Component, version: number): number {
  if (version > c.steps.length) {
    throw new SecureChatError(
      "schema_newer",
      `the database's ${c.name} tables are at version ${version}, newer than this securechat knows (${c.steps.length}): a newer node migrated them; run that version`,
    );
  }
  return c.steps.length - version;
}
