/**
 * Server log lines (the Logger of src/log.ts), as text for people or JSON
 * lines for machines (`serve --json`). Both start with the time, ISO 8601 in
 * UTC to the millisecond (`2026-11-22T09:15:02.250Z`), and both go to
 * stdout, warnings too, so a redirected log keeps its order. Callers never
 * pass passwords, tickets, keys or message text. A field can still hold what
 * a peer chose (an address, an error's text), so both forms escape the unsafe
 * characters of src/text.ts: the text log shows them as `\x1b`, `\u202e`
 * and caps blank runs, the JSON log writes them as `\uXXXX` escapes.
 */
import type { LogFields, Logger } from "../log.ts";
import { jsonText, terminalText } from "../text.ts";

type Out = (line: string) => void;
type Clock = () => number;

const stdout: Out = (l) => void process.stdout.write(l);

/** `{"ts":"…Z","level":"info","event":"…",…fields}` per line. */
export function jsonLogger(out: Out = stdout, now: Clock = Date.now): Logger {
  const emit = (level: string, event: string, fields: LogFields = {}) =>
    out(`${jsonText(JSON.stringify({ ts: new Date(now()).toISOString(), level, event, ...fields }))}\n`);
  return { info: (e, f) => emit("info", e, f), warn: (e, f) => emit("warn", e, f), error: (e, f) => emit("error", e, f) };
}

/**
 * One line of the text log: the event, then `key=value` for each field. A
 * value that is empty or holds a blank, `=`, `"` or `\\` is written as a
 * JSON string, so no value can pass for another field.
 */
export function textLine(event: string, fields: LogFields = {}): string {
  const value = (v: string | number | boolean) => (typeof v === "string" && (v === "" || /[\s="\\]/u.test(v)) ? JSON.stringify(v) : String(v));
  return terminalText([event, ...Object.entries(fields).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${value(v)}`]))].join(" "));
}

/** `2026-11-22T09:15:02.250Z INFO listening address=…` per line. */
export function textLogger(out: Out = stdout, now: Clock = Date.now): Logger {
  const emit = (level: string, event: string, fields?: LogFields) => out(`${new Date(now()).toISOString()} ${level} ${textLine(event, fields)}\n`);
  return { info: (e, f) => emit("INFO", e, f), warn: (e, f) => emit("WARN", e, f), error: (e, f) => emit("ERROR", e, f) };
}
