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
}

export const silentLogger: Logger = { info() {}, warn() {} };
