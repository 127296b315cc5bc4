/**
 * Which sessions this machine holds: `accounts/HOST:PORT/USER.ticket`. A
 * server is named by the literal `HOST:PORT` it was reached at, as ssh's
 * known_hosts does — `localhost:7447` and `127.0.0.1:7447` are two servers
 * here, since nothing proves they are one — so when a command finds nobody
 * logged in at the address it was given, it says where there are sessions.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { SecureChatError } from "../errors.ts";
import { clientHome } from "../paths.ts";
import { USER_NAME_RE } from "../protocol/limits.ts";
import { accountDir } from "./keystore.ts";

/** Users with a ticket file for `serverId`, sorted. */
export function usersWithTickets(serverId: string): string[] {
  try {
    return readdirSync(accountDir(serverId))
      .filter((f) => f.endsWith(".ticket"))
      .map((f) => f.slice(0, -".ticket".length))
      .filter((u) => USER_NAME_RE.test(u))
      .sort();
  } catch {
    return []; // no account directory: nobody has logged in there
  }
}

/** Every server with at least one ticket file, with its users, sorted by server. */
export function sessionsEverywhere(): { server: string; users: string[] }[] {
  let servers: string[];
  try {
    servers = readdirSync(join(clientHome(), "accounts")).sort();
  } catch {
    return [];
  }
  return servers.map((server) => ({ server, users: usersWithTickets(server) })).filter((s) => s.users.length > 0);
}

/**
 * The user a command acts as at `serverId`: `given` (--user), else
 * `configured` (config.toml's user), else the one user logged in there.
 * Otherwise `user_needed`, naming who is logged in there or, if nobody is,
 * the servers this machine does have sessions on.
 */
export function pickUser(serverId: string, given?: string, configured?: string): string {
  if (given !== undefined) return given;
  if (configured !== undefined) return configured;
  const users = usersWithTickets(serverId);
  if (users.length === 1) return users[0]!;
  if (users.length > 1) throw new SecureChatError("user_needed", `several users are logged in to ${serverId}: ${users.join(", ")}`);
  const elsewhere = sessionsEverywhere();
  const where = elsewhere.map((s) => `${s.server} (${s.users.join(", ")})`).join(", ");
  throw new SecureChatError("user_needed", `nobody is logged in to ${serverId}${where ? `; you have sessions on ${where}` : ""}`, {
    detail: { server: serverId, elsewhere: elsewhere[0]?.server ?? "" },
  });
}
