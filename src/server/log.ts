/**
 * Server log lines: one event name and flat fields, as text for people
 * (consola) or JSON lines for machines (`serve --json`). Callers never pass
 * passwords, tickets, keys or message text (STYLE.md habit 4).
 */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
}

export const silentLogger: Logger = { info() {}, warn() {} };

export function jsonLogger(out: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const emit = (level: string, event: string, fields: LogFields = {}) =>
    out(`${JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields })}\n`);
  return { info: (e, f) => emit("info", e, f), warn: (e, f) => emit("warn", e, f) };
}

export async function textLogger(): Promise<Logger> {
  const { consola } = await import("consola");
  const fmt = (event: string, fields: LogFields = {}) =>
    [event, ...Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`)].join(" ");
  return { info: (e, f) => consola.info(fmt(e, f)), warn: (e, f) => consola.warn(fmt(e, f)) };
}
