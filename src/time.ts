/**
 * Times as people and tools read them. Every time on the wire or in a file
 * is milliseconds since 1970-01-01T00:00:00Z; a JavaScript Date holds at
 * most TIME_MAX_MS of them (ECMA-262, "Time Values and Time Range"), so a
 * larger value from a peer or a file must not reach `toISOString`, which
 * throws on it.
 */

/** The latest time a Date can hold, in ms since the epoch (+275760-09-13). */
export const TIME_MAX_MS = 8.64e15;

/** `ms` in ISO 8601 UTC; a value no Date can hold is written as its number of milliseconds. */
export function isoTime(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= TIME_MAX_MS ? new Date(ms).toISOString() : `${ms} ms after 1970`;
}
