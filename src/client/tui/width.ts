/**
 * Display width of text in a terminal cell grid, so the line editor can keep
 * the cursor where the terminal draws it. Follows the rules of wcwidth(3) as
 * terminals apply them, approximately:
 *
 * - 0 columns: nonspacing and enclosing marks (Mn, Me), format characters
 *   (Cf: ZWJ, ZWNJ, soft hyphen, bidi controls) and the Hangul medial/final
 *   jamo that join the preceding syllable.
 * - 2 columns: East Asian Wide and Fullwidth characters (UAX #11) — a table of
 *   the main blocks below rather than the full property, which JavaScript
 *   regular expressions do not expose — and emoji with default emoji
 *   presentation (`\p{Emoji_Presentation}`, which is how terminals since
 *   Unicode 9 draw them).
 * - 1 column: everything else.
 *
 * Known approximations: emoji ZWJ sequences and flags (pairs of regional
 * indicators) count as the sum of their parts, while terminals disagree on
 * how to draw them; control characters count as 0 because the editor never
 * holds them and the screen replaces them before printing.
 */

/** Inclusive [first, last] code point ranges that are East Asian Wide or Fullwidth. */
const WIDE_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x1100, 0x115f], // Hangul Jamo initial consonants
  [0x2e80, 0x303e], // CJK radicals, Kangxi, ideographic description, CJK symbols and punctuation
  [0x3041, 0x33ff], // Hiragana, Katakana, Bopomofo, Hangul compatibility jamo, Kanbun, CJK strokes, enclosed/compat
  [0x3400, 0x4dbf], // CJK Unified Ideographs Extension A
  [0x4e00, 0x9fff], // CJK Unified Ideographs
  [0xa000, 0xa4cf], // Yi syllables and radicals
  [0xa960, 0xa97f], // Hangul Jamo Extended-A
  [0xac00, 0xd7a3], // Hangul syllables
  [0xf900, 0xfaff], // CJK compatibility ideographs
  [0xfe10, 0xfe19], // vertical forms
  [0xfe30, 0xfe6f], // CJK compatibility forms, small form variants
  [0xff00, 0xff60], // fullwidth ASCII variants
  [0xffe0, 0xffe6], // fullwidth signs
  [0x16fe0, 0x16fe4], // ideographic symbols and punctuation
  [0x17000, 0x18cff], // Tangut, Khitan
  [0x1b000, 0x1b2ff], // Kana supplement and extensions, Nushu
  [0x1f200, 0x1f2ff], // enclosed ideographic supplement
  [0x20000, 0x2fffd], // CJK Extensions B–F, compatibility supplement
  [0x30000, 0x3fffd], // CJK Extensions G–H
];

const ZERO_WIDTH = /^[\p{Mn}\p{Me}\p{Cf}\u1160-\u11ff]$/u;
const EMOJI_WIDE = /^\p{Emoji_Presentation}$/u;

function inWideTable(cp: number): boolean {
  // Binary search: the table is sorted and disjoint.
  let lo = 0;
  let hi = WIDE_RANGES.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [first, last] = WIDE_RANGES[mid]!;
    if (cp < first) hi = mid - 1;
    else if (cp > last) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Columns the terminal uses to draw one code point: 0, 1 or 2. */
export function codePointWidth(cp: number): 0 | 1 | 2 {
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return 0;
  // Nothing below U+0300 is wide or a mark; U+00AD (soft hyphen, Cf) is 1 here as in glibc's wcwidth.
  if (cp < 0x300) return 1;
  const ch = String.fromCodePoint(cp);
  if (ZERO_WIDTH.test(ch)) return 0;
  if (inWideTable(cp) || EMOJI_WIDE.test(ch)) return 2;
  return 1;
}

/** Columns the terminal uses to draw `text` on one line. */
export function stringWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += codePointWidth(ch.codePointAt(0)!);
  return w;
}
