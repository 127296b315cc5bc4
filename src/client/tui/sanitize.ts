/**
 * Text from the network made inert for a terminal. Another user's message,
 * room name or error text must never move the cursor, change colours, set
 * the window title or answer a terminal query on our behalf, so every
 * character that a terminal acts on instead of drawing is replaced by a
 * visible stand-in before anything is written:
 *
 * - C0 controls (U+0000–U+001F, including ESC, CR, LF, TAB, BEL) → the
 *   Control Pictures ␀…␟ (U+2400–U+241F); DEL → ␡ (U+2421). One printed
 *   message is one line: a remote LF cannot forge a second line that looks
 *   like it came from someone else.
 * - C1 controls (U+0080–U+009F; U+009B is a one-byte CSI for terminals that
 *   take 8-bit controls) → `\x9b`.
 * - Bidirectional embedding, override and isolate controls (U+061C,
 *   U+202A–U+202E, U+2066–U+2069) → `\u202e`: they reorder what is shown in
 *   terminals that apply bidi, the "Trojan Source" trick (CVE-2021-42574).
 * - Lone surrogates → U+FFFD.
 *
 * Styling is added only here, from `Styled` segments whose SGR parameters are
 * checked to be digits and semicolons, and each styled run ends with a reset
 * so a style cannot leak into the input line.
 */
import { SecureChatError } from "../../errors.ts";

/** Text drawn with an SGR style (ECMA-48 §8.3.117), e.g. `{ text: "alice", sgr: "38;5;170" }`. */
export interface Styled {
  readonly text: string;
  readonly sgr: string;
}

/** A piece of one printed line: plain text, or styled text. Both are sanitized. */
export type Segment = string | Styled;

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u202a-\u202e\u2066-\u2069]/g;
const SGR_PARAMS = /^[0-9]{1,3}(;[0-9]{1,3}){0,15}$/;
const SGR_RESET = "\x1b[0m";

function visible(ch: string): string {
  const cp = ch.charCodeAt(0);
  if (cp < 0x20) return String.fromCharCode(0x2400 + cp);
  if (cp === 0x7f) return "\u2421";
  if (cp < 0xa0) return `\\x${cp.toString(16)}`;
  return `\\u${cp.toString(16).padStart(4, "0")}`;
}

/** `text` with every character a terminal would act on replaced by a visible stand-in. */
export function sanitize(text: string): string {
  return text.toWellFormed().replace(UNSAFE, visible);
}

/** One line ready to write: segments sanitized, styled ones wrapped in their SGR and a reset. */
export function renderSegments(line: string | readonly Segment[]): string {
  if (typeof line === "string") return sanitize(line);
  let out = "";
  for (const seg of line) {
    if (typeof seg === "string") {
      out += sanitize(seg);
      continue;
    }
    if (!SGR_PARAMS.test(seg.sgr)) {
      throw new SecureChatError("tui_bad_sgr", `tui: sgr parameters ${JSON.stringify(seg.sgr)} are not digits and semicolons`);
    }
    out += `\x1b[${seg.sgr}m${sanitize(seg.text)}${SGR_RESET}`;
  }
  return out;
}
