/**
 * One error type for every layer. `code` is stable (tests, logs and the wire
 * rely on it); `message` is lowercase and names its layer
 * (`frame: length 70000 exceeds 65536`). Library code throws these; only the
 * commands in src/commands/ decide exit codes and wording for people.
 */
export class SecureChatError extends Error {
  override readonly name = "SecureChatError";
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSecureChatError(e: unknown, code?: string): e is SecureChatError {
  return e instanceof SecureChatError && (code === undefined || e.code === code);
}
