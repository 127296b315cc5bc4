import { type ErrorDetail, type SecureChatError, isSecureChatError } from "../errors.ts";
import { isAuthFailure, isHostKeyFailure } from "../client/failures.ts";
import { sessionsEverywhere } from "../client/sessions.ts";

/** Exit codes of the user-visible contract (docs/DESIGN.md §2, README "Exit codes"). */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  AUTH: 3,
  HOST_KEY: 4,
  TRANSCRIPT: 5,
  /** The server's log no longer extends what it showed this client (PROTOCOL.md §7.13). */
  LOG: 6,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * An error meant for a person: one lowercase line saying what failed, then
 * optional `hint:` lines saying what to do. Commands throw it; src/cli.ts
 * prints it and exits with `exitCode`.
 */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hints: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What to do when a server's log fails the check at connect (PROTOCOL.md §7.13). */
function logHints(d: ErrorDetail): string[] {
  return [
    `keep ${d.path}: it is the server's own signed evidence of what it showed you; give it to whoever audits ${d.server} ("securechat transcript verify DIR --checkpoint FILE")`,
    `only if the operator explains the loss (a restored backup) and you accept it, remove ${d.path} to trust the server's log as it is now`,
  ];
}

/** Exit codes other than 1, and hints, by error code; `d` is the error's detail. */
const RULES: Record<string, { exit?: ExitCode; hints?: (d: ErrorDetail) => string[] }> = {
  bad_server_address: { exit: EXIT.USAGE, hints: () => ["use HOST:PORT, e.g. 127.0.0.1:7447 or [::1]:7447"] },
  bad_user_name: { exit: EXIT.USAGE, hints: () => ["use 2-32 characters: a lowercase letter, then a-z, 0-9, _ or -"] },
  password_policy: { exit: EXIT.USAGE },
  stdin_line_too_long: { exit: EXIT.USAGE },
  stdin_not_utf8: { exit: EXIT.USAGE },
  input_too_long: { exit: EXIT.USAGE },
  password_stdin_empty: { exit: EXIT.USAGE },
  passwords_differ: { exit: EXIT.USAGE },
  no_terminal: { exit: EXIT.USAGE, hints: () => ["pass --password-stdin and write the password as the first line of stdin"] },
  user_needed: {
    exit: EXIT.USAGE,
    hints: (d) =>
      d.elsewhere
        ? [
            `to use your session there, pass --server ${d.elsewhere} (or set it as the default: SECURECHAT_SERVER or server = in config.toml)`,
            `host names are not aliases here: to chat at ${d.server}, log in there with "securechat login NAME --server ${d.server}"`,
          ]
        : d.server
          ? [`nobody has logged in to ${d.server} from this machine: "securechat register NAME --server ${d.server}" makes an account, "securechat login NAME --server ${d.server}" uses one you have`]
          : ["pass --user NAME"],
  },
  config_invalid: { exit: EXIT.USAGE, hints: (d) => [`fix or remove ${d.path}: it may hold only server = "HOST:PORT", user = "NAME" and # comments`] },
  config_unsafe: { exit: EXIT.USAGE, hints: (d) => [`if its contents are yours, run "chmod 600 ${d.path}"`] },
  ignore_file_invalid: { exit: EXIT.USAGE, hints: (d) => [`fix or remove ${d.path}: it holds the users /ignore hides, one user name a line`] },
  connect_failed: { hints: (d) => connectHints(d) },
  log_rollback: { exit: EXIT.LOG, hints: (d) => logHints(d) },
  log_fork: { exit: EXIT.LOG, hints: (d) => logHints(d) },
  log_unproven: { exit: EXIT.LOG, hints: (d) => logHints(d) },
  log_unsigned: { exit: EXIT.LOG },
  log_unwitnessed: {
    exit: EXIT.LOG,
    hints: (d) => [`the server's operator may have lost its witnesses (its log says witness_quorum_missing): ask; keep ${d.path}, it is what this server showed you`],
  },
  receipt_failed: { exit: EXIT.LOG, hints: () => ["keep the --transcript file: its ack and receipt lines are the evidence; \"securechat transcript receipts FILE --vkey VKEY\" checks them again"] },
  connect_timeout: { hints: () => ["check the address and that the server is running; a firewall may be dropping the connection"] },
  identity_exists: { hints: (d) => [`log in with "securechat login ${d.user}", or remove ${d.path} if that account is gone`] },
  identity_missing: { hints: (d) => (d.user === undefined ? [] : [`create the account with "securechat register ${d.user}"`]) },
  no_ticket: {
    hints: (d) => [
      ...sessionsElsewhere(String(d.user), String(d.server)),
      `run "securechat login ${d.user} --server ${d.server}" first, or pass --password-stdin with the password as the first line`,
    ],
  },
  passwd_uncertain: {
    hints: (d) => [
      `the server may or may not have the new password; the key sealed under the new one is in ${d.path}`,
      `run "securechat login ${d.user} --server ${d.server}" with the new password: if the server has it, that login keeps the new key file; else log in with the old one`,
    ],
  },
  host_key_changed: { hints: (d) => [`if the server's key was really replaced, remove line ${d.line} of ${d.path} and connect again`] },
  host_key_unknown: { hints: () => ["check the fingerprint with the server's operator, then pass --accept-new-host"] },
  handshake_refused: {
    hints: () => ["this came before the server proved its host key: it may be the server refusing, or anyone on the network path; try again later"],
  },
  admin_unknown: {
    exit: EXIT.USAGE,
    hints: () => ['an administrator must have an account first: start the server without that --admin, "securechat register NAME", then restart it with --admin NAME'],
  },
  server_refused: { hints: (d) => refusalHints(String(d.refusal)) },
  chat_incomplete: {
    hints: (d) => [
      ...(Number(d.unacknowledged) > 0 ? ["see the events above (nack, disconnected)"] : []),
      // The session's ticket expired or was revoked: only a new login brings it back.
      ...(d.ended === "session_expired" || d.ended === "session_revoked" ? [`run "securechat login ${d.user} --server ${d.server}" to start a new session`] : []),
      ...(d.ended === "account_locked" ? [`a server administrator locked ${d.user}: it cannot log in until one unlocks it ("securechat admin unlock ${d.user}")`] : []),
    ],
  },
};

/**
 * Where `user` does have a session, when it has none at `server`: host
 * names are not aliases (src/client/sessions.ts), so a session made at
 * 127.0.0.1:7447 is not found at localhost:7447, and this says where it is.
 */
function sessionsElsewhere(user: string, server: string): string[] {
  const there = sessionsEverywhere()
    .filter((s) => s.server !== server && s.users.includes(user))
    .map((s) => s.server);
  if (there.length === 0) return [];
  return [`${user} has a session on ${there.join(", ")}: pass --server ${there[0]} (host names are not aliases: each HOST:PORT has its own sessions)`];
}

/** What to do when nothing answered at HOST:PORT (refused, unreachable, no such host). */
function connectHints(d: ErrorDetail): string[] {
  if (d.reason === "ENOTFOUND" || d.reason === "EAI_AGAIN") return [`check the host name "${d.host}" (--server HOST:PORT, $SECURECHAT_SERVER or server = in config.toml)`];
  return [`is the server running? start one with "securechat serve --host ${d.host} --port ${d.port}", or check --server`];
}

/** What to do about a server's refusal, by the server's code (docs/PROTOCOL.md §6). */
function refusalHints(code: string): string[] {
  switch (code) {
    case "name_taken":
      return ["choose another user name"];
    case "rate_limited":
    case "server_busy":
    case "not_recorded":
      return ["wait a little and try again"];
    case "too_many_connections":
      return ["close another securechat session, or wait for one to end"];
    case "account_locked":
      return ['a server administrator locked this account: ask one to unlock it ("securechat admin unlock USER")'];
    default:
      return [];
  }
}

function exitCodeOf(e: SecureChatError): ExitCode {
  if (isHostKeyFailure(e)) return EXIT.HOST_KEY;
  if (isAuthFailure(e)) return EXIT.AUTH;
  if (e.code === "server_refused" && e.detail.refusal === "password_policy") return EXIT.USAGE;
  // The session ended because the account was locked: as a login refused for it would.
  if (e.code === "chat_incomplete" && e.detail.ended === "account_locked") return EXIT.AUTH;
  return RULES[e.code]?.exit ?? EXIT.FAILURE;
}

/** What a failed file-system call was doing, by its syscall. */
const SYSCALLS: Record<string, string> = {
  mkdir: "create the directory",
  open: "open",
  read: "read",
  write: "write",
  rename: "rename a file to",
  unlink: "remove",
  stat: "look at",
  lstat: "look at",
  scandir: "list the directory",
  opendir: "list the directory",
  chmod: "change the permissions of",
  access: "access",
};

/** Why, by errno code, said for a person. */
const ERRNOS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EEXIST: "something else is already there",
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a directory",
  EISDIR: "it is a directory",
  EROFS: "the file system is read-only",
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is exceeded",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "the name is too long",
};

/**
 * A file-system call that failed on a path the user chose or whose
 * permissions they control (a --data or $SECURECHAT_HOME inside a file, a
 * read-only disk): one line naming the path, not an internal error.
 */
function systemError(e: unknown): string | null {
  if (!(e instanceof Error)) return null;
  const { code, syscall, path } = e as Error & { code?: unknown; syscall?: unknown; path?: unknown };
  if (typeof code !== "string" || !Object.hasOwn(ERRNOS, code) || typeof path !== "string") return null;
  const doing = typeof syscall === "string" && Object.hasOwn(SYSCALLS, syscall) ? SYSCALLS[syscall] : "use";
  return `cannot ${doing} ${path}: ${ERRNOS[code]} (${code})`;
}

/**
 * The one place an error becomes what a person reads and the exit code
 * (docs/DESIGN.md §2, §3): a CliError as thrown, a SecureChatError by its
 * code and detail (its message is the line), anything else as an internal
 * error. src/cli.ts prints the result, escaped.
 */
export function fromError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  if (isSecureChatError(e, "register_uncertain")) {
    const under = fromError(e.cause);
    return new CliError(under.exitCode, e.message, [
      ...under.hints,
      `the server may have created the account before the connection failed; the identity key is kept at ${e.detail.path} — try "securechat login ${e.detail.user}"`,
    ], { cause: e });
  }
  if (isSecureChatError(e)) return new CliError(exitCodeOf(e), e.message, RULES[e.code]?.hints?.(e.detail) ?? [], { cause: e });
  const sys = systemError(e);
  if (sys) return new CliError(EXIT.FAILURE, sys, ["check the path and its permissions"], { cause: e });
  const message = e instanceof Error ? e.message : String(e);
  return new CliError(EXIT.FAILURE, `internal error: ${message}`, ["run again with --debug for a stack trace, and report it"], { cause: e });
}
