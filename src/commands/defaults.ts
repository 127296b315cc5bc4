/**
 * The server and user a client command means when its flags do not say
 * (src/client/config.ts): flag, then $SECURECHAT_SERVER, then config.toml,
 * then 127.0.0.1:7447. Loaded only by commands that connect, so --help stays
 * fast; a bad config.toml is an error even when a flag would have won, so a
 * typo in it is seen at once.
 */
import type { ServerAddress } from "../client/connection.ts";
import type { ClientConfig, ServerSource } from "../client/config.ts";
import { CliError, EXIT } from "./exit.ts";

export interface Target {
  addr: ServerAddress;
  from: ServerSource;
  config: ClientConfig;
}

export async function target(serverFlag: string | undefined): Promise<Target> {
  const { readConfig, chooseServer } = await import("../client/config.ts");
  const config = readConfig();
  return { ...chooseServer(serverFlag, config), config };
}

/** A positional USER, else config.toml's user; else the usage error a missing USER always was. */
export function userOrConfigured(given: string | undefined, t: Target, path: string): string {
  const user = given ?? t.config.user;
  if (user === undefined) {
    throw new CliError(EXIT.USAGE, "missing required positional argument: USER", [`pass the user name, or set user = "NAME" in ${t.config.path}`, `run "${path} --help" for usage`]);
  }
  return user;
}

/** The engines of a cluster node (`serve --database/--redis`), as given. */
export interface EngineUrls {
  database: string;
  redis: string;
}

const DATABASE_ENV = "SECURECHAT_DATABASE_URL";
const REDIS_ENV = "SECURECHAT_REDIS_URL";

/** The two variables, read by name (the secrets test lists every variable src/ reads). */
export function engineEnv(env: NodeJS.ProcessEnv): { database?: string; redis?: string } {
  return { database: env.SECURECHAT_DATABASE_URL || undefined, redis: env.SECURECHAT_REDIS_URL || undefined };
}

/**
 * `--database` and `--redis`, each from its flag, else its environment
 * variable (the place for a password: argv is readable by every user through
 * ps); null for neither: the single node. One without the other is a usage
 * error. A URL is never shown: only which flag or variable is wrong, and
 * the scheme of one of the wrong kind. `warn` receives the warning for a password given in argv.
 */
export function engineUrls(flags: { database?: string; redis?: string }, fromEnv: { database?: string; redis?: string }, warn: (line: string) => void): EngineUrls | null {
  const pick = (flag: "database" | "redis", name: string, schemes: string[], example: string) => {
    const fromFlag = flags[flag] !== undefined && flags[flag] !== "";
    const url = fromFlag ? flags[flag]! : fromEnv[flag];
    if (url === undefined) return undefined;
    const where = fromFlag ? `--${flag}` : name;
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new CliError(EXIT.USAGE, `${where} is not a URL`, [`give ${example}`]);
    }
    // Only the scheme of a wrong URL is shown: the rest may be a password that does not parse as one.
    if (!schemes.includes(u.protocol)) throw new CliError(EXIT.USAGE, `${where} is a ${u.protocol} URL, not ${schemes.map((s) => `${s}//`).join(" or ")}`, [`give ${example}`]);
    if (fromFlag && u.password !== "") warn(`warning: --${flag} holds a password, which every user of this machine can read with ps; set ${name} instead`);
    return url;
  };
  const database = pick("database", DATABASE_ENV, ["postgres:", "postgresql:"], "postgres://USER:PASSWORD@HOST:5432/DB");
  const redis = pick("redis", REDIS_ENV, ["redis:", "rediss:"], "redis://:PASSWORD@HOST:6379");
  if (database === undefined && redis === undefined) return null;
  if (database === undefined || redis === undefined) {
    const [has, lacks] = database === undefined ? ["Redis", `--database (or ${DATABASE_ENV})`] : ["PostgreSQL", `--redis (or ${REDIS_ENV})`];
    throw new CliError(EXIT.USAGE, `${has} is given without ${lacks}: a cluster node needs both, PostgreSQL for what must last and Redis for fan-out, presence and flood buckets`, [
      `give ${lacks} too, or neither to run the single node`,
    ]);
  }
  return { database, redis };
}
