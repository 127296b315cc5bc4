/**
 * What a library writes its log through: one event name and flat fields.
 * The server chooses the form (text for people, JSON lines for machines,
 * src/server/log.ts); the layers below it only call `info` and `warn`.
 * Callers never pass passwords, tickets, keys or message text.
 */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  /** What an operator must act on (a witness saw this log fork); loggers without it log a warning. */
  error?(event: string, fields?: LogFields): void;
}

/** Logs `event` at error level, or as a warning where the logger has no error level. */
export function logError(log: Logger, event: string, fields?: LogFields): void {
  if (log.error) log.error(event, fields);
  else log.warn(event, fields);
}

export const silentLogger: Logger = { info() {}, warn() {} };
