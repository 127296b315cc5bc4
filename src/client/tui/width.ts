/**
 * Display width of text in a terminal cell grid: Bun.stringWidth (East Asian
 * Wide and Fullwidth per the Unicode tables Bun ships, emoji presentation,
 * zero for controls and format characters), with wcwidth(3)'s rule for
 * combining marks, which terminals draw one code point at a time:
 *
 * - nonspacing and enclosing marks (Mn, Me) take 0 columns — Bun counts
 *   U+20E3 COMBINING ENCLOSING KEYCAP as 2 on its own;
 * - spacing marks (Mc, the vowel signs of Indic scripts) take 1 — Bun counts
 *   them 0, but xterm, VTE and most terminals draw them in a cell of their
 *   own, and the editor's cursor must land where the terminal puts it.
 *
 * `codePointWidth` and `stringWidth` are what the line editor uses for its
 * cursor; `graphemeWidth` is what the screen uses to wrap messages. Measure
 * text only after escaping it (src/text.ts): Bun.stringWidth skips ANSI
 * escape sequences, which must never reach the terminal anyway.
 */

const NONSPACING_MARK = /^[\p{Mn}\p{Me}]$/u;
const SPACING_MARK = /^\p{Mc}$/u;

/** Columns a terminal uses to draw one code point: 0, 1 or 2. */
export function codePointWidth(cp: number): number {
  if (cp >= 0x20 && cp < 0x7f) return 1;
  const ch = String.fromCodePoint(cp);
  if (NONSPACING_MARK.test(ch)) return 0;
  if (SPACING_MARK.test(ch)) return 1;
  return Bun.stringWidth(ch);
}

/** Columns `text` takes on one row when drawn code point by code point (the line editor's view). */
export function stringWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += codePointWidth(ch.codePointAt(0)!);
  return w;
}

/**
 * Columns one grapheme cluster may take: the larger of Bun's grapheme-aware
 * width and the sum over its code points, so it fits both in a terminal that
 * draws 👍🏽 as one emoji and in one that draws it as two.
 */
export function graphemeWidth(grapheme: string): number {
  const sum = stringWidth(grapheme);
  return grapheme.length === 1 ? sum : Math.max(sum, Bun.stringWidth(grapheme));
}
