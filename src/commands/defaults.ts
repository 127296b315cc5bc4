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
