/**
 * Lines for a terminal, from text that may come from the network. Another
 * user's message, a room name or an error text must never move the cursor,
 * change colours, set the window title, answer a terminal query, reorder or
 * hide what is shown, or pass for a line of its own:
 *
 * - Every text part goes through `terminalText` (src/text.ts): controls
 *   (C0, DEL, C1), format characters (bidi controls, zero-width characters,
 *   tags), U+2028/U+2029 and lone surrogates become visible ASCII escapes
 *   (`\x1b`, `\u202e`); runs of more than BLANK_RUN_MAX blanks become
 *   BLANK_RUN_MAX spaces.
 * - `terminalRows` wraps a line itself, at grapheme boundaries and
 *   preferably after a blank, and starts every row after the first with
 *   CONTINUATION (`  ↳ `): no text can begin a row at column 0 except at the
 *   start of a line, so a long message cannot show a row that looks like
 *   `HH:MM <name> …` or `hint: …`. This holds with and without colour.
 * - `terminalBlock` writes those rows with the terminal's automatic wrap
 *   (DECAWM, `CSI ? 7 l`) off and turns it back on after them: should the
 *   terminal find a row wider than we measured (width tables differ, e.g.
 *   East Asian ambiguous characters drawn wide), the row is cut at the edge
 *   instead of spilling onto an unmarked row.
 *
 * Styling is added only here, from `Styled` segments whose SGR parameters are
 * checked to be digits and semicolons, and each styled run ends with a reset
 * so a style cannot leak into the next row or the input line.
 */
import { SecureChatError } from "../../errors.ts";
import { terminalText } from "../../text.ts";
import { graphemeWidth, stringWidth } from "./width.ts";

/** Text drawn with an SGR style (ECMA-48 §8.3.117), e.g. `{ text: "alice", sgr: "38;5;170" }`. */
export interface Styled {
  readonly text: string;
  readonly sgr: string;
}

/** A piece of one printed line: plain text, or styled text. Both are escaped. */
export type Segment = string | Styled;

/** What starts every row of a line after its first. */
export const CONTINUATION = "  ↳ ";
const CONTINUATION_WIDTH = stringWidth(CONTINUATION);

const SGR_PARAMS = /^[0-9]{1,3}(;[0-9]{1,3}){0,15}$/;
const SGR_RESET = "\x1b[0m";
/** DEC private mode 7 (DECAWM): automatic wrap at the right margin. */
export const AUTOWRAP_OFF = "\x1b[?7l";
export const AUTOWRAP_ON = "\x1b[?7h";

const GRAPHEMES = new Intl.Segmenter(undefined, { granularity: "grapheme" });
const BLANK = /^\p{Zs}$/u;

function checkSgr(sgr: string): void {
  if (!SGR_PARAMS.test(sgr)) {
    throw new SecureChatError("tui_bad_sgr", `tui: sgr parameters ${JSON.stringify(sgr)} are not digits and semicolons`);
  }
}

function styled(text: string, sgr: string | null): string {
  return sgr === null || text === "" ? text : `\x1b[${sgr}m${text}${SGR_RESET}`;
}

/** One line on one row, unwrapped: segments escaped, styled ones wrapped in their SGR and a reset. */
export function renderSegments(line: string | readonly Segment[]): string {
  if (typeof line === "string") return terminalText(line);
  let out = "";
  for (const seg of line) {
    if (typeof seg === "string") {
      out += terminalText(seg);
      continue;
    }
    checkSgr(seg.sgr);
    out += styled(terminalText(seg.text), seg.sgr);
  }
  return out;
}

interface Cell {
  readonly g: string;
  readonly w: number;
  /** Index of the segment's SGR in the line's styles, or -1. */
  readonly style: number;
  readonly blank: boolean;
}

/**
 * The rows a terminal `columns` wide shows for `line`: the first row up to
 * `columns` cells, each later one CONTINUATION and up to `columns` − 4 more.
 * A row breaks after its last blank when it has one (the blank is dropped),
 * else at the last grapheme that fits. Rows are rendered (escaped, styled).
 */
export function terminalRows(line: string | readonly Segment[], columns: number): string[] {
  const styles: string[] = [];
  const cells: Cell[] = [];
  for (const seg of typeof line === "string" ? [line] : line) {
    let style = -1;
    if (typeof seg !== "string") {
      checkSgr(seg.sgr);
      style = styles.push(seg.sgr) - 1;
    }
    for (const { segment: g } of GRAPHEMES.segment(terminalText(typeof seg === "string" ? seg : seg.text))) {
      cells.push({ g, w: graphemeWidth(g), style, blank: BLANK.test(g) });
    }
  }
  const cols = Math.max(1, Math.floor(columns));
  const later = Math.max(1, cols - CONTINUATION_WIDTH);
  const rows: Cell[][] = [];
  let row: Cell[] = [];
  let used = 0;
  for (const cell of cells) {
    if (row.length > 0 && used + cell.w > (rows.length === 0 ? cols : later)) {
      if (cell.blank) {
        // The row ends at a blank: the blank goes with the break.
        rows.push(row);
        row = [];
        used = 0;
        continue;
      }
      // After the last blank, if what follows it fits on the next row with this cell; else right here.
      const cut = row.findLastIndex((c) => c.blank);
      const carried = cut > 0 ? row.slice(cut + 1) : [];
      const carriedWidth = carried.reduce((n, c) => n + c.w, 0);
      if (cut > 0 && carriedWidth + cell.w <= later) {
        rows.push(row.slice(0, cut));
        row = carried;
        used = carriedWidth;
      } else {
        rows.push(row);
        row = [];
        used = 0;
      }
    }
    row.push(cell);
    used += cell.w;
  }
  rows.push(row);
  return rows.map((r, i) => (i === 0 ? "" : CONTINUATION) + renderCells(r, styles));
}

function renderCells(cells: readonly Cell[], styles: readonly string[]): string {
  let out = "";
  let i = 0;
  while (i < cells.length) {
    const style = cells[i]!.style;
    let text = "";
    for (; i < cells.length && cells[i]!.style === style; i++) text += cells[i]!.g;
    out += styled(text, style < 0 ? null : styles[style]!);
  }
  return out;
}

/**
 * `line` wrapped for a terminal `columns` wide, ready to write where the
 * cursor is at column 0: its rows separated by CR LF with each new row
 * cleared (EL 2), automatic wrap off while they are written. No final line
 * break.
 */
export function terminalBlock(line: string | readonly Segment[], columns: number): string {
  return AUTOWRAP_OFF + terminalRows(line, columns).join("\r\n\x1b[2K") + AUTOWRAP_ON;
}
