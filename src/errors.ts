/** The values an error's hints are made of (a user name, a file path), by name. */
export type ErrorDetail = Readonly<Record<string, string | number>>;

/**
 * One error type for every layer. `code` is stable (tests, logs and the wire
 * rely on it); `message` is one lowercase line, naming its layer where it is
 * not already written for a person (`frame: length 70000 exceeds 65536`);
 * `detail` carries what a hint needs. Library code throws these; only the
 * commands decide exit codes and hints (`fromError` in src/commands/exit.ts).
 */
export class SecureChatError extends Error {
  override readonly name = "SecureChatError";
  readonly detail: ErrorDetail;
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown; detail?: ErrorDetail },
  ) {
    super(message, options && "cause" in options ? { cause: options.cause } : undefined);
    this.detail = options?.detail ?? {};
  }
}

export function isSecureChatError(e: unknown, code?: string): e is SecureChatError {
  return e instanceof SecureChatError && (code === undefined || e.code === code);
}
