/**
 * For the e2e scripts in cluster mode (lib.sh): `bun test/e2e/pgdb.ts NAME`
 * creates the database NAME on the PostgreSQL of $SECURECHAT_DATABASE_URL
 * (the URL only in the environment, never argv), so that each data
 * directory a script starts a server on is a cluster of its own: its own
 * accounts, rooms and transcript, as a fresh single node's would be.
 */
export {};

const name = process.argv[2];
const url = process.env.SECURECHAT_DATABASE_URL;
if (!name || !/^[a-z][a-z0-9_]{0,62}$/.test(name) || !url) throw new Error("usage: SECURECHAT_DATABASE_URL=… bun test/e2e/pgdb.ts NAME");
const sql = new Bun.SQL(url);
try {
  await sql.unsafe(`CREATE DATABASE ${name}`);
} finally {
  await sql.close();
}
