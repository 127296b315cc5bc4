/**
 * Colours and timestamps for printed chat lines. A user name gets the same
 * colour in every session and on every machine (FNV-1a 32-bit of its UTF-8,
 * modulo the palette), so people can be told apart at a glance.
 *
 * The palette is twelve xterm 256-colour indices of middle lightness: readable
 * on both dark and light backgrounds, no black, greys or dark blues that
 * vanish on a dark terminal. Colour is only a hint — the name is always
 * printed too.
 *
 * Colour is off when NO_COLOR is set to anything non-empty (no-color.org) or
 * when output is not a terminal; the caller passes the result of
 * `colorEnabled` to `colorize`. Styled output is a `Styled` segment, not a
 * string with escapes in it, so `Screen.print` can sanitize every other part
 * of a line without knowing which bytes were ours.
 */
import type { Segment } from "./sanitize.ts";

/** xterm 256-colour indices: red3, dark orange3, gold3, olive, chartreuse3, spring green3, sea green, deep sky blue3, royal blue1, medium purple3, medium orchid3, hot pink3. */
export const NAME_PALETTE: readonly number[] = [160, 166, 178, 142, 70, 35, 37, 32, 63, 98, 134, 168];

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a, 32-bit (offset basis 2166136261, prime 16777619). Not cryptographic: it only picks a colour. */
export function fnv1a32(bytes: Uint8Array): number {
  let h = FNV_OFFSET_BASIS;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, FNV_PRIME) >>> 0;
  }
  return h;
}

/** The 256-colour index for `name`; the same for the same name everywhere. */
export function nameColor(name: string): number {
  return NAME_PALETTE[fnv1a32(new TextEncoder().encode(name)) % NAME_PALETTE.length]!;
}

/** Whether to colour output: off for NO_COLOR=<non-empty> and when output is not a terminal. */
export function colorEnabled(outputIsTTY: boolean, env: Record<string, string | undefined> = process.env): boolean {
  return outputIsTTY && !env.NO_COLOR;
}

/** `name` in its colour (foreground, 256-colour SGR 38;5;n), or plain when `enabled` is false. */
export function colorize(name: string, enabled: boolean): Segment {
  return enabled ? { text: name, sgr: `38;5;${nameColor(name)}` } : name;
}

/** `text` with SGR 2 (faint), for timestamps and notices; plain when `enabled` is false. */
export function dim(text: string, enabled: boolean): Segment {
  return enabled ? { text, sgr: "2" } : text;
}

/** "HH:MM" in local time, 24-hour; "--:--" for a time that is not a finite number. */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  if (!Number.isFinite(d.getTime())) return "--:--";
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}
