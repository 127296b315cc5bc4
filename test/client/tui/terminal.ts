/** A model of a terminal's cell grid for the TUI tests: what a user would see after the client's output. */
import { codePointWidth } from "../../../src/client/tui/width.ts";

/**
 * Just enough of a terminal to check what the user would see: printable
 * characters with xterm's deferred wrap (or, with DECAWM off, overwriting
 * the last column), CR, LF with scrolling inside the scroll region, BEL, and
 * the CSI sequences the screen uses (EL, CUF, CUP, ED, SGR, DECSTBM, modes
 * 2004 and 7). Anything else
 * throws, so a control sequence that leaks is a test failure. `width` is how
 * wide this terminal draws a code point: by default as the client measures,
 * or wider, like a terminal whose tables differ.
 */
export class Terminal {
  grid: string[][];
  row = 0;
  col = 0;
  #pendingWrap = false;
  bells = 0;
  bracketedPaste = false;
  autowrap = true;
  /** The scroll region, 0-based rows, inclusive. */
  top = 0;
  bottom: number;

  constructor(
    readonly cols: number,
    readonly rows: number,
    readonly width: (cp: number) => number = codePointWidth,
  ) {
    this.grid = Array.from({ length: rows }, () => this.#blank());
    this.bottom = rows - 1;
  }

  #blank(): string[] {
    return Array.from({ length: this.cols }, () => " ");
  }

  #lineFeed(): void {
    if (this.row === this.bottom) {
      this.grid.splice(this.top, 1);
      this.grid.splice(this.bottom, 0, this.#blank());
    } else if (this.row < this.rows - 1) {
      this.row++;
    }
  }

  feed(s: string): void {
    let i = 0;
    while (i < s.length) {
      const ch = String.fromCodePoint(s.codePointAt(i)!);
      i += ch.length;
      const cp = ch.codePointAt(0)!;
      if (ch === "\x1b") {
        const m = /^\[(\??)([0-9;]*)([A-Za-z])/.exec(s.slice(i));
        if (!m) throw new Error(`unexpected escape: ${JSON.stringify(s.slice(i - 1, i + 10))}`);
        i += m[0].length;
        this.#csi(m[1]!, m[2]!, m[3]!);
      } else if (ch === "\r") {
        this.col = 0;
        this.#pendingWrap = false;
      } else if (ch === "\n") {
        this.#lineFeed();
        this.#pendingWrap = false;
      } else if (ch === "\x07") {
        this.bells++;
      } else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
        throw new Error(`control character U+${cp.toString(16)} reached the terminal`);
      } else {
        this.#print(ch, this.width(cp));
      }
    }
  }

  #print(ch: string, width: number): void {
    if (width === 0) return;
    if (!this.autowrap && (this.#pendingWrap || this.col + width > this.cols)) {
      // DECAWM off: what does not fit overwrites the last column(s).
      this.col = this.cols - width;
      this.#pendingWrap = false;
    }
    if (this.#pendingWrap || this.col + width > this.cols) {
      this.col = 0;
      this.#lineFeed();
      this.#pendingWrap = false;
    }
    this.grid[this.row]![this.col] = ch;
    if (width === 2) this.grid[this.row]![this.col + 1] = "";
    if (this.col + width >= this.cols) {
      this.col = this.cols - 1;
      this.#pendingWrap = true;
    } else {
      this.col += width;
    }
  }

  #csi(privateMark: string, params: string, final: string): void {
    const n = params === "" || params.includes(";") ? 0 : Number(params);
    if (privateMark === "?") {
      if ((params !== "2004" && params !== "7") || (final !== "h" && final !== "l")) throw new Error(`unexpected private mode ${params}${final}`);
      if (params === "7") this.autowrap = final === "h";
      else this.bracketedPaste = final === "h";
      return;
    }
    this.#pendingWrap = false;
    switch (final) {
      case "K":
        if (params !== "2") throw new Error(`unexpected EL ${params}`);
        this.grid[this.row] = this.#blank();
        return;
      case "C":
        this.col = Math.min(this.cols - 1, this.col + Math.max(1, n));
        return;
      case "H": {
        const [r = 1, c = 1] = params === "" ? [] : params.split(";").map((p) => (p === "" ? 1 : Number(p)));
        this.row = Math.min(this.rows, Math.max(1, r)) - 1;
        this.col = Math.min(this.cols, Math.max(1, c)) - 1;
        return;
      }
      case "r": {
        const [t = 1, b = this.rows] = params === "" ? [] : params.split(";").map(Number);
        if (!(t < b && b <= this.rows)) throw new Error(`bad scroll region ${params}`);
        this.top = t - 1;
        this.bottom = b - 1;
        this.row = 0;
        this.col = 0;
        return;
      }
      case "J":
        this.grid = Array.from({ length: this.rows }, () => this.#blank());
        return;
      case "m":
        return;
      default:
        throw new Error(`unexpected CSI ${params}${final}`);
    }
  }

  /** The rows as text, right-trimmed; trailing empty rows dropped. */
  lines(): string[] {
    const out = this.grid.map((r) => r.join("").trimEnd());
    while (out.length > 0 && out.at(-1) === "") out.pop();
    return out;
  }
}
