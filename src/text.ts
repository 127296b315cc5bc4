/**
 * Text that came from elsewhere — a peer, a file, the command line — made
 * safe for where it ends up: a terminal, a log, an export. What is unsafe is
 * defined here once, and every writer uses these functions.
 *
 * **Unsafe** are the characters that draw nothing of their own but act on
 * what is around them:
 *
 * - controls, general category Cc: C0 (U+0000–U+001F: ESC, CR, LF, TAB, BEL…),
 *   DEL (U+007F) and C1 (U+0080–U+009F; U+009B is a one-byte CSI). They
 *   drive a terminal, and a line break forges a second line;
 * - format characters, category Cf: the bidirectional marks, embeddings,
 *   overrides and isolates (U+061C, U+200E, U+200F, U+202A–U+202E,
 *   U+2066–U+2069), which reorder what is shown ("Trojan Source",
 *   CVE-2021-42574); the zero-width characters (U+200B–U+200D, U+2060,
 *   U+FEFF), which hide text or make two different strings look alike; the
 *   soft hyphen U+00AD, the tags U+E0001 and U+E0020–U+E007F (invisible text),
 *   and the rest of Cf;
 * - the line and paragraph separators U+2028 and U+2029 (Zl, Zp), which some
 *   viewers take as line breaks;
 * - lone surrogates (Cs): not text at all.
 *
 * One exception: ZERO WIDTH JOINER (U+200D) between two emoji — after an
 * Extended_Pictographic character (or its VS16 or skin-tone modifier) and
 * before another — is kept, so emoji ZWJ sequences (👩‍💻, 🏳️‍🌈) still
 * draw as one emoji. Between emoji it neither hides letters nor reorders
 * anything.
 *
 * The protocol refuses only the controls (`hasControl`, PROTOCOL.md §5.0): the
 * rest of the unsafe set is legitimate in text (an RLM in Arabic or Hebrew,
 * a ZWNJ in Persian) and is escaped where it is shown or written instead.
 *
 * - `terminalText` — for a terminal or a text log: every unsafe character
 *   becomes a visible ASCII escape (`\x1b`, `\x9b`, `\u202e`, `\u{e0041}`,
 *   `\ud800`), and a run of more than BLANK_RUN_MAX blank characters becomes
 *   BLANK_RUN_MAX spaces, so padding cannot push text to where a terminal
 *   starts a new row.
 * - `jsonText` — for JSON output (`chat --json`, `transcript export`, the
 *   server's JSON log): JSON.stringify escapes C0 and lone surrogates but
 *   writes DEL, C1 and every format character raw; this writes them as
 *   `\uXXXX` escapes. The JSON value is unchanged.
 * - `quotedAscii` — for text from a peer that nothing authenticates: a JSON
 *   string literal in printable ASCII, every other character escaped.
 */

/**
 * The unsafe set as a regular-expression class (with the `u` flag). U+2065
 * is the one unassigned code point of the invisible-operator block
 * U+2060–U+206F, every other one of which is a format character: a
 * terminal that knows a later Unicode may draw it as nothing.
 */
const UNSAFE_CLASS = "[\\p{Cc}\\p{Cf}\\p{Cs}\\p{Zl}\\p{Zp}\\u2065]";
const UNSAFE = new RegExp(UNSAFE_CLASS, "u");
const UNSAFE_ALL = new RegExp(UNSAFE_CLASS, "gu");
/**
 * A quick first look (three times faster than UNSAFE on a transcript line):
 * any UTF-16 unit outside ranges that hold no unsafe character — printable
 * ASCII, U+00A0–U+05FF but the soft hyphen, U+2070–U+FEFE but the
 * surrogates (so every character above U+FFFF gets the real test). Text without one
 * is safe; text with one gets the real test. test/text.test.ts checks the
 * ranges against UNSAFE for every code point in them.
 */
export const SURELY_SAFE_RANGES: readonly (readonly [number, number])[] = [
  [0x20, 0x7e],
  [0xa0, 0xac],
  [0xae, 0x5ff],
  [0x2070, 0xd7ff],
  [0xe000, 0xfefe],
];
const CANDIDATE = new RegExp(`[^${SURELY_SAFE_RANGES.map(([a, b]) => `\\u${a.toString(16).padStart(4, "0")}-\\u${b.toString(16).padStart(4, "0")}`).join("")}]`);

/** C0, DEL and C1 — exactly category Cc, spelled as ranges for speed: what the protocol refuses in every text member (PROTOCOL.md §5.0). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_ALL = /[\u0000-\u001f\u007f-\u009f]/g;

/** Longest run of blank characters shown as it is; a longer run is shown as this many spaces. */
export const BLANK_RUN_MAX = 4;
/**
 * A blank: a space separator (Zs: SPACE, NO-BREAK SPACE, U+2000–U+200A,
 * IDEOGRAPHIC SPACE…) or a character that draws as empty cells (Hangul
 * fillers, BRAILLE PATTERN BLANK), with any invisible combining marks on it.
 */
const BLANK_RUN = new RegExp(`(?:[\\p{Zs}\\u115f\\u1160\\u2800\\u3164\\uffa0][\\p{Mn}\\p{Me}]*){${BLANK_RUN_MAX + 1},}`, "gu");
const BLANK_RUN_SHOWN = " ".repeat(BLANK_RUN_MAX);

const ZWJ = 0x200d;
const PICTOGRAPHIC = /\p{Extended_Pictographic}/u;

function emojiBeforeZwj(cp: number | undefined): boolean {
  if (cp === undefined) return false;
  // VS16 and the skin-tone modifiers follow the emoji they belong to.
  if (cp === 0xfe0f || (cp >= 0x1f3fb && cp <= 0x1f3ff)) return true;
  return PICTOGRAPHIC.test(String.fromCodePoint(cp));
}

/** Whether the code point `cp`, between `before` and `after` (undefined at the ends), is unsafe. */
export function isUnsafe(cp: number, before?: number, after?: number): boolean {
  if (cp >= 0x20 && cp < 0x7f) return false;
  if (!UNSAFE.test(String.fromCodePoint(cp))) return false;
  return !(cp === ZWJ && emojiBeforeZwj(before) && after !== undefined && PICTOGRAPHIC.test(String.fromCodePoint(after)));
}

/** The code point that ends just before `i` in `s`, a surrogate pair counting as one. */
function codePointBefore(s: string, i: number): number | undefined {
  if (i <= 0) return undefined;
  const low = s.charCodeAt(i - 1);
  if (low >= 0xdc00 && low <= 0xdfff && i >= 2) {
    const high = s.charCodeAt(i - 2);
    if (high >= 0xd800 && high <= 0xdbff) return (high - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000;
  }
  return low;
}

/** `s` with each unsafe character replaced by `escape(ch)`. */
function replaceUnsafe(s: string, escape: (ch: string) => string): string {
  if (!CANDIDATE.test(s) || !UNSAFE.test(s)) return s;
  return s.replace(UNSAFE_ALL, (ch: string, at: number) =>
    isUnsafe(ch.codePointAt(0)!, codePointBefore(s, at), s.codePointAt(at + ch.length)) ? escape(ch) : ch,
  );
}

/** A visible ASCII stand-in: `\x1b` up to U+00FF, `\u202e` in the BMP, `\u{e0041}` above. */
export function escapeCodePoint(cp: number): string {
  if (cp <= 0xff) return `\\x${cp.toString(16).padStart(2, "0")}`;
  if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, "0")}`;
  return `\\u{${cp.toString(16)}}`;
}

const escapeChar = (ch: string): string => escapeCodePoint(ch.codePointAt(0)!);

/** `\uXXXX` for each UTF-16 unit: a JSON string escape. */
const jsonEscape = (ch: string): string => {
  let out = "";
  for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, "0")}`;
  return out;
};

/** For a terminal or a text log: unsafe characters as visible escapes, long blank runs capped. */
export function terminalText(s: string): string {
  return replaceUnsafe(s, escapeChar).replace(BLANK_RUN, BLANK_RUN_SHOWN);
}

/**
 * For JSON output: `json` (compact JSON text, as JSON.stringify writes it
 * without indentation) with every unsafe character that is still raw written
 * as a `\uXXXX` escape. Raw ones can only be inside strings, so the value is
 * the same; a reader that prints a string it parsed still has to escape it.
 */
export function jsonText(json: string): string {
  return replaceUnsafe(json, jsonEscape);
}

/** True if `s` holds a C0 or C1 control character or DEL. */
export function hasControl(s: string): boolean {
  return CONTROL.test(s);
}

/** `s` without its C0 and C1 control characters and DEL. */
export function withoutControls(s: string): string {
  return s.replace(CONTROL_ALL, "");
}

/**
 * Text from a peer that nothing authenticates, as a JSON string literal in
 * printable ASCII: quotes and backslashes escaped, every character outside
 * U+0020–U+007E written as `\uXXXX`, blank runs capped. Its width is its
 * length on every terminal, and it cannot hold a line break.
 */
export function quotedAscii(s: string): string {
  return JSON.stringify(s)
    .replace(/[^\x20-\x7e]/g, jsonEscape)
    .replace(BLANK_RUN, BLANK_RUN_SHOWN);
}
