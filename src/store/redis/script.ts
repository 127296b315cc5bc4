/**
 * A Lua script run by its SHA-1 (EVALSHA), sent whole (EVAL) only when Redis
 * does not know it yet: after its first use, and after a restart that
 * emptied its script cache.
 */
import type { RedisLink } from "./link.ts";

const shas = new Map<string, string>();

function sha1(script: string): string {
  let s = shas.get(script);
  if (!s) shas.set(script, (s = new Bun.CryptoHasher("sha1").update(script).digest("hex")));
  return s;
}

export async function runScript(link: RedisLink, script: string, keys: string[], args: string[]): Promise<unknown> {
  const rest = [String(keys.length), ...keys, ...args];
  try {
    return await link.send("EVALSHA", [sha1(script), ...rest]);
  } catch (e) {
    if (!/NOSCRIPT/.test((e as Error).message)) throw e;
    return await link.send("EVAL", [script, ...rest]);
  }
}

/** What `runScriptOrDown` answers when Redis could not be asked. */
export const DOWN = Symbol("redis down");

/**
 * Runs the script, or answers DOWN when Redis cannot be asked (the link is
 * down, or the connection closed under the call): the caller then fails
 * open or closed. Any other error (a bug in the script) is thrown.
 */
export async function runScriptOrDown(link: RedisLink, script: string, keys: string[], args: string[]): Promise<unknown> {
  try {
    return await runScript(link, script, keys, args);
  } catch (e) {
    if (link.up && !/closed|not connected|failed/i.test((e as Error).message)) throw e;
    return DOWN;
  }
}
