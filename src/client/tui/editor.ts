/**
 * The input line of the interactive client: pure state, no I/O. Holds the
 * line as code points with a cursor, the history of submitted lines, and a
 * horizontal scroll offset; turns key events (keys.ts) into edits and into
 * actions for the screen, and renders the one terminal row the line occupies.
 *
 * Rules a user can observe:
 * - The line is at most `maxLineBytes` (MAX_LINE_BYTES) of UTF-8. Input that
 *   would exceed it is refused whole, `bell` is set and `refused` says why
 *   and what the limit is; nothing is cut.
 * - Tab (`complete`) replaces the word before the cursor with the one
 *   candidate that starts with it, or with the longest start they share.
 * - Up/Down walk the history; the line being typed is kept as a draft and
 *   comes back after the newest entry. Edits made to a recalled entry are
 *   dropped when moving to another entry (the history itself never changes).
 * - A paste is inserted at the cursor; each line break in it submits the line
 *   so far, and the text after the last break stays in the buffer to be
 *   edited — so pasting "a\nb" into an empty line sends "a" and leaves "b".
 *   Tabs in a paste become spaces (the protocol refuses control characters);
 *   other control characters are dropped. Format characters (bidi controls,
 *   zero-width characters) are kept — the protocol allows them — but drawn
 *   as their escapes (`\u202e`). If any resulting line would be
 *   too long, or the paste was cut short by the decoder, none of it is used.
 * - Ctrl-D deletes under the cursor, or is end-of-input on an empty line.
 * - Cursor motion steps over combining marks, so the cursor is never drawn
 *   between a letter and its accent; Backspace removes one code point.
 * - `render` never draws in the terminal's last column: a character there
 *   leaves the terminal in its pending-wrap state, and the next write (or a
 *   resize) would wrap the input line onto two rows.
 */
import { SecureChatError } from "../../errors.ts";
import { type KeyEvent, type KeyName, MAX_PASTE_BYTES } from "./keys.ts";
import { escapeCodePoint, isUnsafe, terminalText, withoutControls } from "../../text.ts";
import { codePointWidth, stringWidth } from "./width.ts";

/** Longest line a user can type, in bytes of UTF-8. */
export const MAX_LINE_BYTES = 4096;
/** Submitted lines remembered for Up/Down; the oldest are forgotten first. */
export const HISTORY_MAX = 500;
/** What a tab in pasted text becomes: code keeps its indentation, and the line stays free of controls. */
const PASTE_TAB = "    ";

export type EditorAction =
  | { readonly kind: "submit"; readonly line: string }
  /** Ctrl-D on an empty line. */
  | { readonly kind: "eof" }
  /** Ctrl-C; the line is left as it is, for the client to decide. */
  | { readonly kind: "interrupt" }
  /** The line changed: draw it again. */
  | { readonly kind: "redraw" }
  /** Ctrl-L: clear the screen, then draw the line. */
  | { readonly kind: "clear" }
  | { readonly kind: "none" };

/** The input row: `text` (prompt + visible part of the line) and the cursor's 0-based column in it. */
export interface Rendered {
  readonly text: string;
  readonly cursor: number;
}

export interface LineEditorOptions {
  prompt?: string;
  maxLineBytes?: number;
  historyMax?: number;
}

const NONE: EditorAction = { kind: "none" };
const REDRAW: EditorAction = { kind: "redraw" };

const WORD = /^[\p{L}\p{N}\p{M}_]$/u;
const SPACE = /^\s$/u;

function utf8Length(cp: number): number {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

function codePoints(text: string): number[] {
  return Array.from(text.toWellFormed(), (ch) => ch.codePointAt(0)!);
}

/** String.fromCodePoint over an array, in slices: spreading a long array can exceed the engine's argument limit. */
function fromCodePoints(cps: readonly number[]): string {
  let out = "";
  for (let i = 0; i < cps.length; i += 4096) out += String.fromCodePoint(...cps.slice(i, i + 4096));
  return out;
}

function bytesOf(cps: readonly number[]): number {
  let n = 0;
  for (const cp of cps) n += utf8Length(cp);
  return n;
}

const isWord = (cp: number) => WORD.test(String.fromCodePoint(cp));
const isSpace = (cp: number) => SPACE.test(String.fromCodePoint(cp));

export class LineEditor {
  readonly maxLineBytes: number;
  readonly historyMax: number;
  #prompt = "";
  #buf: number[] = [];
  #cursor = 0;
  #history: string[] = [];
  /** Index into #history of the entry shown; #history.length means the draft. */
  #historyIndex = 0;
  #draft: number[] | null = null;
  /** Index of the first code point drawn; kept between renders so the view does not jump. */
  #scroll = 0;
  #bell = false;
  #refused: string | null = null;

  constructor(options: LineEditorOptions = {}) {
    const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
    const historyMax = options.historyMax ?? HISTORY_MAX;
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
      throw new SecureChatError("tui_bad_option", `tui: maxLineBytes ${maxLineBytes} is not a positive integer`);
    }
    if (!Number.isSafeInteger(historyMax) || historyMax < 0) {
      throw new SecureChatError("tui_bad_option", `tui: historyMax ${historyMax} is not a non-negative integer`);
    }
    this.maxLineBytes = maxLineBytes;
    this.historyMax = historyMax;
    this.prompt = options.prompt ?? "";
  }

  get prompt(): string {
    return this.#prompt;
  }

  /** The prompt is shown sanitized: a room name from the server cannot carry escape sequences. */
  set prompt(prompt: string) {
    this.#prompt = terminalText(prompt);
  }

  get line(): string {
    return fromCodePoints(this.#buf);
  }

  /** Cursor position in code points from the start of the line. */
  get cursor(): number {
    return this.#cursor;
  }

  get history(): readonly string[] {
    return this.#history;
  }

  /** True when the last `handle` refused input (the line would be too long): ring the terminal bell. */
  get bell(): boolean {
    return this.#bell;
  }

  /** Why the last `handle` refused input, for the user; null when it did not. */
  get refused(): string | null {
    return this.#refused;
  }

  #refuse(why: string): void {
    this.#bell = true;
    this.#refused = why;
  }

  /**
   * Tab completion of the word before the cursor (a run of non-blanks).
   * `candidates` gives what may replace it (each a whole word, with any
   * separator to add after it, e.g. "bob: "); those that start with the
   * word count. One: it replaces the word. Several: the word grows to their
   * longest shared start, and they are returned for showing. None: bell.
   */
  complete(candidates: (word: string, atStart: boolean) => readonly string[]): string[] {
    this.#bell = false;
    this.#refused = null;
    const start = this.#wordLeft(this.#cursor, (cp) => !isSpace(cp));
    const word = fromCodePoints(this.#buf.slice(start, this.#cursor));
    const matches = [...new Set(candidates(word, start === 0))].filter((c) => c.startsWith(word)).sort();
    if (matches.length === 0) {
      this.#bell = true;
      return [];
    }
    let common = matches[0]!;
    for (const m of matches) while (!m.startsWith(common)) common = common.slice(0, -1);
    const replacement = codePoints(matches.length === 1 ? matches[0]! : common);
    if (bytesOf(this.#buf) - bytesOf(this.#buf.slice(start, this.#cursor)) + bytesOf(replacement) > this.maxLineBytes) {
      this.#refuse(`line too long: at most ${this.maxLineBytes} bytes`);
      return [];
    }
    this.#buf = [...this.#buf.slice(0, start), ...replacement, ...this.#buf.slice(this.#cursor)];
    this.#cursor = start + replacement.length;
    return matches.length === 1 ? [] : matches;
  }

  /** Empties the line (history and draft stay). */
  clear(): void {
    this.#setLine([]);
  }

  /**
   * Applies one key event. Usually one action results; a paste of several
   * lines gives one `submit` per line break, then a `redraw`.
   */
  handle(key: KeyEvent): EditorAction[] {
    this.#bell = false;
    this.#refused = null;
    switch (key.kind) {
      case "text":
        // Protocol text has no C0/C1 controls or DEL; the decoder already drops them from typed text.
        return [this.#insert(codePoints(withoutControls(key.text)))];
      case "paste":
        return this.#paste(key.text, key.truncated);
      case "key":
        return [this.#key(key.name)];
    }
  }

  #key(name: KeyName): EditorAction {
    switch (name) {
      case "enter":
        return this.#submit();
      case "ctrl-c":
        return { kind: "interrupt" };
      case "ctrl-d":
        return this.#buf.length === 0 ? { kind: "eof" } : this.#deleteForward();
      case "ctrl-l":
        return { kind: "clear" };
      case "backspace":
        return this.#cursor === 0 ? NONE : this.#remove(this.#cursor - 1, this.#cursor);
      case "delete":
        return this.#deleteForward();
      case "left":
      case "ctrl-b":
        return this.#moveTo(this.#charLeft(this.#cursor));
      case "right":
      case "ctrl-f":
        return this.#moveTo(this.#charRight(this.#cursor));
      case "home":
      case "ctrl-a":
        return this.#moveTo(0);
      case "end":
      case "ctrl-e":
        return this.#moveTo(this.#buf.length);
      case "alt-b":
      case "ctrl-left":
        return this.#moveTo(this.#wordLeft(this.#cursor, isWord));
      case "alt-f":
      case "ctrl-right":
        return this.#moveTo(this.#wordRight(this.#cursor));
      case "ctrl-w":
        // unix-word-rubout: a "word" is anything up to whitespace, as in a shell.
        return this.#remove(this.#wordLeft(this.#cursor, (cp) => !isSpace(cp)), this.#cursor);
      case "alt-backspace":
        return this.#remove(this.#wordLeft(this.#cursor, isWord), this.#cursor);
      case "alt-d":
        return this.#remove(this.#cursor, this.#wordRight(this.#cursor));
      case "ctrl-u":
        return this.#remove(0, this.#cursor);
      case "ctrl-k":
        return this.#remove(this.#cursor, this.#buf.length);
      case "up":
      case "ctrl-p":
        return this.#historyMove(-1);
      case "down":
      case "ctrl-n":
        return this.#historyMove(1);
      default:
        // Escape, and the screen's keys (Tab, PgUp/PgDn, the room keys).
        return NONE;
    }
  }

  #insert(cps: number[]): EditorAction {
    if (cps.length === 0) return NONE;
    if (bytesOf(this.#buf) + bytesOf(cps) > this.maxLineBytes) {
      this.#refuse(`line too long: at most ${this.maxLineBytes} bytes`);
      return NONE;
    }
    this.#buf = this.#buf.slice(0, this.#cursor).concat(cps, this.#buf.slice(this.#cursor));
    this.#cursor += cps.length;
    return REDRAW;
  }

  #paste(text: string, truncated: boolean): EditorAction[] {
    if (truncated) {
      this.#refuse(`paste too long: at most ${MAX_PASTE_BYTES} bytes; nothing was inserted`);
      return [NONE];
    }
    const parts = text.replace(/\t/g, PASTE_TAB).split("\n");
    const lines = parts.map((p) => codePoints(withoutControls(p)));
    const before = this.#buf.slice(0, this.#cursor);
    const after = this.#buf.slice(this.#cursor);
    lines[0] = [...before, ...lines[0]!];
    const last = lines.length - 1;
    const cursor = lines[last]!.length;
    lines[last] = [...lines[last]!, ...after];
    if (lines.some((l) => bytesOf(l) > this.maxLineBytes)) {
      this.#refuse(`a pasted line is too long: at most ${this.maxLineBytes} bytes a line; nothing was inserted`);
      return [NONE];
    }
    const actions: EditorAction[] = [];
    for (const l of lines.slice(0, last)) {
      this.#setLine(l);
      actions.push(this.#submit());
    }
    this.#buf = lines[last]!;
    this.#cursor = cursor;
    actions.push(REDRAW);
    return actions;
  }

  #submit(): EditorAction {
    const line = this.line;
    if (line !== "" && line !== this.#history.at(-1) && this.historyMax > 0) {
      this.#history.push(line);
      if (this.#history.length > this.historyMax) this.#history.splice(0, this.#history.length - this.historyMax);
    }
    this.#historyIndex = this.#history.length;
    this.#draft = null;
    this.#setLine([]);
    return { kind: "submit", line };
  }

  #historyMove(step: -1 | 1): EditorAction {
    const to = this.#historyIndex + step;
    if (to < 0 || to > this.#history.length) return NONE;
    if (this.#historyIndex === this.#history.length) this.#draft = this.#buf;
    this.#historyIndex = to;
    if (to === this.#history.length) {
      this.#setLine(this.#draft ?? []);
      this.#draft = null;
    } else {
      this.#setLine(codePoints(this.#history[to]!));
    }
    return REDRAW;
  }

  #setLine(cps: number[]): void {
    this.#buf = cps;
    this.#cursor = cps.length;
    this.#scroll = 0;
  }

  #deleteForward(): EditorAction {
    return this.#remove(this.#cursor, this.#charRight(this.#cursor));
  }

  #remove(from: number, to: number): EditorAction {
    if (from >= to) return NONE;
    this.#buf.splice(from, to - from);
    this.#cursor = from;
    return REDRAW;
  }

  #moveTo(pos: number): EditorAction {
    if (pos === this.#cursor) return NONE;
    this.#cursor = pos;
    return REDRAW;
  }

  #zeroWidth(i: number): boolean {
    return i < this.#buf.length && drawnWidth(this.#buf, i) === 0;
  }

  /** One character left, stepping back over combining marks to their base. */
  #charLeft(pos: number): number {
    let p = pos;
    if (p > 0) p--;
    while (p > 0 && this.#zeroWidth(p)) p--;
    return p;
  }

  /** One character right, including the combining marks that follow it. */
  #charRight(pos: number): number {
    let p = pos;
    if (p < this.#buf.length) p++;
    while (this.#zeroWidth(p)) p++;
    return p;
  }

  /** Start of the word before `pos`: skip non-word code points, then word ones. */
  #wordLeft(pos: number, inWord: (cp: number) => boolean): number {
    let p = pos;
    while (p > 0 && !inWord(this.#buf[p - 1]!)) p--;
    while (p > 0 && inWord(this.#buf[p - 1]!)) p--;
    return p;
  }

  /** End of the word after `pos` (readline's forward-word). */
  #wordRight(pos: number): number {
    let p = pos;
    const n = this.#buf.length;
    while (p < n && !isWord(this.#buf[p]!)) p++;
    while (p < n && isWord(this.#buf[p]!)) p++;
    return p;
  }

  /**
   * The input row for a terminal `width` columns wide: the prompt, then the
   * part of the line around the cursor that fits. Scrolls horizontally to
   * keep the cursor in view, and back when the line gets shorter. A prompt
   * wider than half the row is cut so the line keeps room.
   */
  render(width: number): Rendered {
    // Leave the last column empty (see the header).
    const cols = Math.max(0, Math.floor(width) - 1);
    const promptMax = Math.floor(cols / 2);
    const prompt = stringWidth(this.#prompt) <= promptMax ? this.#prompt : fitWidth(this.#prompt, promptMax);
    const promptWidth = stringWidth(prompt);
    const avail = cols - promptWidth;
    if (avail <= 0) return { text: prompt, cursor: Math.min(promptWidth, Math.max(0, cols)) };

    const buf = this.#buf;
    const w = (i: number) => drawnWidth(buf, i);
    if (this.#cursor < this.#scroll) this.#scroll = this.#cursor;
    let before = 0;
    for (let i = this.#scroll; i < this.#cursor; i++) before += w(i);
    // The cursor occupies a cell too, so at most avail − 1 columns precede it.
    while (before > avail - 1 && this.#scroll < this.#cursor) before -= w(this.#scroll++);
    let rest = 0;
    for (let i = this.#scroll; i < buf.length; i++) rest += w(i);
    while (this.#scroll > 0 && rest + w(this.#scroll - 1) <= avail - 1) {
      this.#scroll--;
      rest += w(this.#scroll);
      before += w(this.#scroll);
    }

    let shown = 0;
    let end = this.#scroll;
    while (end < buf.length && shown + w(end) <= avail) shown += w(end++);
    let text = prompt;
    for (let i = this.#scroll; i < end; i++) text += drawn(buf, i);
    return { text, cursor: promptWidth + before };
  }
}

/**
 * How the code point at `i` is drawn: itself, or its visible escape when it
 * is unsafe (src/text.ts) — a pasted bidi override or zero-width space shows
 * as `\u202e` or `\u200b` in the input row, as it would in a message.
 */
function drawn(buf: readonly number[], i: number): string {
  const cp = buf[i]!;
  return isUnsafe(cp, buf[i - 1], buf[i + 1]) ? escapeCodePoint(cp) : String.fromCodePoint(cp);
}

function drawnWidth(buf: readonly number[], i: number): number {
  const cp = buf[i]!;
  return isUnsafe(cp, buf[i - 1], buf[i + 1]) ? escapeCodePoint(cp).length : codePointWidth(cp);
}

/** The longest prefix of `text` that is at most `cols` columns wide. */
function fitWidth(text: string, cols: number): string {
  let out = "";
  let w = 0;
  for (const ch of text) {
    const cw = codePointWidth(ch.codePointAt(0)!);
    if (w + cw > cols) break;
    out += ch;
    w += cw;
  }
  return out;
}
