/**
 * The client's defaults: which server and user a command means when no flag
 * says. Precedence: the flag, then `$SECURECHAT_SERVER` (server only), then
 * `$SECURECHAT_HOME/config.toml`, then the built-in 127.0.0.1:7447 (where
 * `securechat serve` listens by default).
 *
 * config.toml is a small, documented subset of TOML (README "Configuration"):
 *
 *     # comments, on their own line or after a value
 *     server = "chat.example:7447"
 *     user = "alice"
 *
 * Only these two keys, each once, with a string value in double or single
 * quotes. Anything else — an unknown key, a table, a number, a missing
 * quote — is a one-line error naming the file and the line, never ignored:
 * a typo in `server` must not silently send a password to another server.
 * For the same reason a config.toml that other users could have written
 * (group- or world-writable, or not the user's own) is refused.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { SecureChatError } from "../errors.ts";
import { clientHome, othersMayWrite, writePrivateFile } from "../paths.ts";
import { USER_NAME_RE } from "../protocol/limits.ts";
import { didYouMean } from "../suggest.ts";
import { type ServerAddress, parseServerAddress, serverAddressText } from "./connection.ts";

export { serverAddressText };

export const BUILT_IN_SERVER = "127.0.0.1:7447";

const KEYS = ["server", "user"] as const;
type Key = (typeof KEYS)[number];

export interface ClientConfig {
  path: string;
  server?: ServerAddress;
  user?: string;
}

export function configPath(): string {
  return join(clientHome(), "config.toml");
}

function configError(path: string, line: number, message: string): SecureChatError {
  return new SecureChatError("config_invalid", `${path}:${line}: ${message}`, { detail: { path } });
}

/** A TOML string value (basic "…" or literal '…'), then optional blanks and a comment; null if it is not one. */
function stringValue(text: string): string | null {
  const basic = /^"((?:[^"\\\u0000-\u001f]|\\["\\tnr]|\\u[0-9A-Fa-f]{4})*)"\s*(?:#.*)?$/.exec(text);
  if (basic) {
    return basic[1]!.replace(/\\(["\\tnr]|u[0-9A-Fa-f]{4})/g, (_, e: string) =>
      e.length === 5 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ '"': '"', "\\": "\\", t: "\t", n: "\n", r: "\r" } as Record<string, string>)[e]!,
    );
  }
  const literal = /^'([^'\u0000-\u001f]*)'\s*(?:#.*)?$/.exec(text);
  return literal ? literal[1]! : null;
}

/** Parses config.toml's text; `path` names it in errors. */
export function parseConfig(text: string, path: string): ClientConfig {
  const config: ClientConfig = { path };
  const seen = new Set<Key>();
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    if (line.startsWith("[")) throw configError(path, n, "tables are not supported: only server = \"HOST:PORT\" and user = \"NAME\"");
    const m = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
    if (!m) throw configError(path, n, 'expected KEY = "VALUE"');
    const key = m[1]!;
    if (!(KEYS as readonly string[]).includes(key)) {
      const near = didYouMean(key, KEYS);
      throw configError(path, n, `unknown key "${key}" (known: ${KEYS.join(", ")})${near ? `; ${near}` : ""}`);
    }
    const k = key as Key;
    if (seen.has(k)) throw configError(path, n, `${k} is set twice`);
    seen.add(k);
    const value = stringValue(m[2]!);
    if (value === null) throw configError(path, n, `${k} must be a string in quotes, e.g. ${k} = "${k === "server" ? "chat.example:7447" : "alice"}"`);
    if (k === "server") {
      try {
        config.server = parseServerAddress(value);
      } catch {
        throw configError(path, n, `"${value}" is not a server address (HOST:PORT, or several separated by commas)`);
      }
    } else {
      if (!USER_NAME_RE.test(value)) throw configError(path, n, `"${value}" is not a user name`);
      config.user = value;
    }
  });
  return config;
}

/** $SECURECHAT_HOME/config.toml, or an empty config if there is none. */
export function readConfig(): ClientConfig {
  const path = configPath();
  if (!existsSync(path)) return { path };
  // As ssh does with its config: a file someone else can change could send
  // this user's password to their server, so it is refused, not read.
  const st = statSync(path);
  if (othersMayWrite(st)) {
    throw new SecureChatError("config_unsafe", `${path}: writable by other users (mode ${(st.mode & 0o777).toString(8)}) or owned by another user; not read`, { detail: { path } });
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new SecureChatError("config_invalid", `${path}: cannot read it: ${(e as Error).message}`, { cause: e, detail: { path } });
  }
  return parseConfig(text, path);
}

export type ServerSource = "flag" | "env" | "config" | "built-in";

/** The server a command means: the flag, else $SECURECHAT_SERVER, else config.toml, else the built-in default. */
export function chooseServer(flag: string | undefined, config: ClientConfig): { addr: ServerAddress; from: ServerSource } {
  if (flag !== undefined) return { addr: parseServerAddress(flag), from: "flag" };
  const env = process.env.SECURECHAT_SERVER;
  if (env !== undefined && env !== "") {
    try {
      return { addr: parseServerAddress(env), from: "env" };
    } catch (e) {
      throw new SecureChatError("bad_server_address", `$SECURECHAT_SERVER: "${env}" is not a server address`, { cause: e });
    }
  }
  if (config.server) return { addr: config.server, from: "config" };
  return { addr: parseServerAddress(BUILT_IN_SERVER), from: "built-in" };
}

/**
 * After a first register or login: writes config.toml with the server and
 * user, so the next command needs no flags. Only when there is no config
 * file; an existing one is never changed. Returns the path written, or null.
 */
export function writeConfigIfAbsent(server: ServerAddress, user: string): string | null {
  const path = configPath();
  if (existsSync(path)) return null;
  writePrivateFile(
    path,
    `# securechat's defaults (written by the first register or login; edit freely).\n` +
      `# A flag (--server, --user) or $SECURECHAT_SERVER wins over these.\n` +
      `server = "${serverAddressText(server)}"\nuser = "${user}"\n`,
  );
  return path;
}
