/**
 * The interactive client's terminal: the only writer to its output while it
 * runs. The window is split, top to bottom, into
 *
 *   - the message area: the newest rows of the scrollback (or older ones
 *     after PgUp), bottom-aligned, inside a scroll region (DECSTBM,
 *     xterm `CSI top ; bottom r`) so a new message scrolls only this area;
 *   - up to PENDING_ROWS rows of lines sent but not yet acknowledged;
 *   - the status row (`setStatus`: the rooms, their unread counts);
 *   - the input row: the prompt and the line being typed.
 *
 * Everything is drawn at absolute positions (CUP) and the cursor is put back
 * on the input row after every write, so a message arriving mid-typing never
 * garbles the half-typed line. A message is wrapped here, not by the
 * terminal: its later rows start with `  ↳ `, and the terminal's own wrap is
 * off while rows are written (sanitize.ts `terminalBlock`), so no part of a
 * message can pass for a message of its own; every string part is escaped
 * (sanitize.ts), so remote text cannot reach the terminal as control or
 * format characters. The status, pending and input rows never use the last
 * column.
 *
 * The scrollback is bounded: the newest SCROLLBACK_LINES lines are kept
 * (each wrapped again for the current width when drawn). PgUp/PgDn page
 * through them; while scrolled up, new lines are counted on the status row
 * instead of moving the view.
 *
 * `start()` puts the input in raw mode and turns on bracketed paste (xterm
 * mode 2004); `stop()` undoes both, resets the scroll region, makes sure
 * automatic wrap is on, and leaves the cursor on a fresh line below the
 * input row. It is idempotent, synchronous and never throws, so exit and
 * signal handlers can call it. `suspend()` hands the terminal to a prompt
 * (raw mode and paste mode as before start, the input row cleared, no key
 * reaches the editor) and `resume()` takes it back and draws everything
 * again, the half-typed line as it was. Input and output are injected:
 * tests drive it with an EventEmitter and a recorder, no TTY.
 *
 * Not handled: Ctrl-Z arrives as a byte in raw mode and is ignored rather
 * than suspending.
 */
import { SecureChatError } from "../../errors.ts";
import { LineEditor } from "./editor.ts";
import { ESC_TIMEOUT_MS, KeyDecoder, type KeyEvent, type KeyName, ROOM_KEYS } from "./keys.ts";
import { AUTOWRAP_OFF, AUTOWRAP_ON, type Segment, terminalRows } from "./sanitize.ts";

export interface ScreenInput {
  on(event: "data", listener: (chunk: Uint8Array | string) => void): unknown;
  on(event: "end", listener: () => void): unknown;
  off(event: "data", listener: (chunk: Uint8Array | string) => void): unknown;
  off(event: "end", listener: () => void): unknown;
  setRawMode?(raw: boolean): unknown;
  readonly isTTY?: boolean;
  readonly isRaw?: boolean;
  resume?(): unknown;
  pause?(): unknown;
}

export interface ScreenOutput {
  write(s: string): unknown;
  /** Terminal width; DEFAULT_COLUMNS when absent or 0 (not a terminal). */
  readonly columns?: number;
  /** Terminal height; DEFAULT_ROWS when absent or 0. */
  readonly rows?: number;
  on?(event: "resize", listener: () => void): unknown;
  off?(event: "resize", listener: () => void): unknown;
}

export type Line = string | readonly Segment[];

export interface ScreenOptions {
  input: ScreenInput;
  output: ScreenOutput;
  prompt?: string;
  /** A line the user submitted (Enter, or each line of a paste). Not echoed: print it if it should show. */
  onLine(line: string): void;
  /** Ctrl-D on an empty line, or the input ended. */
  onEof(): void;
  /** Ctrl-C. The typed line is kept; `screen.editor.clear()` + `redraw()` to drop it. */
  onInterrupt(): void;
  /** Keys neither the editor nor the screen use (Alt-1…9, Alt-←/→). */
  onKey?(name: KeyName): void;
  /** Tab: what may replace `word`, the word before the cursor (`atStart`: it begins the line). */
  complete?(word: string, atStart: boolean): readonly string[];
  /** The question asked before a paste of more than `pasteAskLines` lines is sent; no question without it. */
  pasteQuestion?(lines: number): string;
  pasteAskLines?: number;
  escapeTimeoutMs?: number;
  maxLineBytes?: number;
  scrollbackLines?: number;
}

export const DEFAULT_COLUMNS = 80;
export const DEFAULT_ROWS = 24;
/** Lines kept for PgUp. At most about 4 KiB each (the protocol's text limit): a few MiB at worst. */
export const SCROLLBACK_LINES = 2000;
/** Rows for pending lines; more pending lines are summed up on the last of them. */
export const PENDING_ROWS = 3;
/** A paste that would send more lines than this asks first. */
export const PASTE_ASK_LINES = 5;

const CSI = "\x1b[";
const CLEAR_ROW = `${CSI}2K`;
const CLEAR_SCREEN = `${CSI}H${CSI}2J`;
const PASTE_ON = `${CSI}?2004h`;
const PASTE_OFF = `${CSI}?2004l`;
const REGION_RESET = `${CSI}r`;
const BELL = "\x07";
const cup = (row: number, col = 1) => `${CSI}${row};${col}H`;

interface Entry {
  readonly line: Line;
  /** The rows for `width`, computed when first drawn at that width. */
  rows: string[] | null;
  width: number;
}

interface Layout {
  readonly height: number;
  /** Rows of the message area: 1 … area. */
  readonly area: number;
  readonly pending: number;
  /** The status row, or 0 when the window is too small for one. */
  readonly status: number;
}

type State = "idle" | "active" | "suspended" | "stopped";

export class Screen {
  readonly editor: LineEditor;
  readonly scrollbackLines: number;
  readonly #input: ScreenInput;
  readonly #output: ScreenOutput;
  readonly #options: ScreenOptions;
  readonly #escapeTimeoutMs: number;
  #decoder = new KeyDecoder();
  #state: State = "idle";
  /** Raw mode as found at start(), restored by stop() and suspend(); null when we did not touch it. */
  #rawBefore: boolean | null = null;
  #escTimer: ReturnType<typeof setTimeout> | null = null;
  #lines: Entry[] = [];
  /** Rows scrolled up from the newest; 0 shows the newest. */
  #scroll = 0;
  /** Lines that arrived while scrolled up. */
  #below = 0;
  #status: Line = "";
  #pending: Line[] = [];
  #question: { text: string; answer: (yes: boolean) => void } | null = null;
  /** Why the editor refused the last key, if it did. */
  #refused: string | null = null;

  constructor(options: ScreenOptions) {
    this.#input = options.input;
    this.#output = options.output;
    this.#options = options;
    this.#escapeTimeoutMs = options.escapeTimeoutMs ?? ESC_TIMEOUT_MS;
    this.scrollbackLines = options.scrollbackLines ?? SCROLLBACK_LINES;
    this.editor = new LineEditor({ prompt: options.prompt ?? "", maxLineBytes: options.maxLineBytes });
  }

  /** True between start() and stop(), suspended or not. */
  get active(): boolean {
    return this.#state === "active" || this.#state === "suspended";
  }

  get suspended(): boolean {
    return this.#state === "suspended";
  }

  get columns(): number {
    const c = this.#output.columns;
    return c !== undefined && c > 0 ? c : DEFAULT_COLUMNS;
  }

  get rows(): number {
    const r = this.#output.rows;
    return r !== undefined && r > 0 ? r : DEFAULT_ROWS;
  }

  /** Rows scrolled up from the newest (0: the newest are shown). */
  get scrolled(): number {
    return this.#scroll;
  }

  start(): void {
    if (this.active) throw new SecureChatError("tui_already_started", "tui: screen already started");
    this.#state = "active";
    this.#decoder = new KeyDecoder();
    this.#scroll = 0;
    this.#below = 0;
    this.#takeInput();
    this.#output.on?.("resize", this.#onResize);
    this.#output.write(PASTE_ON + this.#paint());
  }

  /** Restores the terminal. Idempotent and never throws: safe in exit and signal handlers. */
  stop(): void {
    if (!this.active) return;
    const wasDrawn = this.#state === "active";
    this.#state = "stopped";
    this.#answer(false);
    this.#releaseInput();
    attempt(() => this.#output.off?.("resize", this.#onResize));
    // Resetting the region homes the cursor: it goes back to the bottom row, the input row (or, suspended, the fresh row after the prompt).
    attempt(() => this.#output.write(PASTE_OFF + REGION_RESET + AUTOWRAP_ON + cup(this.rows) + (wasDrawn ? "\r\n" : "\r")));
  }

  /**
   * Hands the terminal to someone else (a password prompt): keys no longer
   * reach the editor, raw mode is as it was before start(), bracketed paste
   * is off, the whole window is the scroll region again and the input row
   * is cleared, with the cursor at its start. Lines printed meanwhile are
   * kept and shown by resume().
   */
  suspend(): void {
    if (this.#state !== "active") return;
    this.#state = "suspended";
    this.#releaseInput();
    attempt(() => this.#output.write(PASTE_OFF + REGION_RESET + AUTOWRAP_ON + cup(this.rows) + CLEAR_ROW));
  }

  /** Takes the terminal back after suspend() and draws everything again, the input line as it was. */
  resume(): void {
    if (this.#state !== "suspended") return;
    this.#state = "active";
    this.#decoder = new KeyDecoder();
    this.#takeInput();
    this.#output.write(PASTE_ON + CLEAR_SCREEN + this.#paint());
  }

  #takeInput(): void {
    const input = this.#input;
    if (input.setRawMode && input.isTTY !== false) {
      this.#rawBefore = input.isRaw === true;
      input.setRawMode(true);
    }
    input.on("data", this.#onData);
    input.on("end", this.#onEnd);
    input.resume?.();
  }

  #releaseInput(): void {
    this.#cancelEscTimer();
    const input = this.#input;
    attempt(() => input.off("data", this.#onData));
    attempt(() => input.off("end", this.#onEnd));
    if (this.#rawBefore !== null) {
      const raw = this.#rawBefore;
      this.#rawBefore = null;
      attempt(() => input.setRawMode?.(raw));
    }
    attempt(() => input.pause?.());
  }

  /**
   * Adds one line to the scrollback and shows it at the bottom of the
   * message area (or counts it on the status row while scrolled up). Every
   * string part is escaped (sanitize.ts); only `Styled` segments add colour.
   * Before start() or after stop() the line is written where the cursor is.
   */
  print(line: Line): void {
    const entry: Entry = { line, rows: null, width: 0 };
    this.#lines.push(entry);
    let trimmed = false;
    if (this.#lines.length > this.scrollbackLines) {
      this.#lines.splice(0, this.#lines.length - this.scrollbackLines);
      trimmed = true;
    }
    if (this.#state === "idle" || this.#state === "stopped") {
      this.#output.write(terminalRows(line, this.columns).join("\n") + "\n");
      return;
    }
    if (this.#state === "suspended") return;
    const rows = this.#rowsOf(entry);
    if (this.#scroll > 0) {
      this.#scroll += rows.length;
      this.#below++;
      if (trimmed) this.#scroll = Math.min(this.#scroll, this.#maxScroll());
      this.#output.write(this.#statusRow() + this.#cursorBack());
      return;
    }
    const layout = this.#layout();
    if (layout.area < 2) {
      // No scroll region of one row (DECSTBM needs two): draw it all again.
      this.#output.write(this.#paint());
      return;
    }
    let out = cup(layout.area) + AUTOWRAP_OFF;
    // A line feed on the region's bottom row scrolls the region only.
    for (const row of rows.slice(-layout.area)) out += "\n\r" + CLEAR_ROW + row;
    this.#output.write(out + AUTOWRAP_ON + this.#cursorBack());
  }

  /** The status row's text (cut to fit one row). */
  setStatus(line: Line): void {
    this.#status = line;
    if (this.#state === "active") this.#output.write(this.#statusRow() + this.#cursorBack());
  }

  /** The lines shown between the message area and the status row, oldest first. */
  setPending(lines: readonly Line[]): void {
    const before = this.#layout().pending;
    this.#pending = [...lines];
    if (this.#state !== "active") return;
    const layout = this.#layout();
    // The message area changes size: everything moves.
    if (layout.pending !== before) this.#output.write(this.#paint());
    else this.#output.write(AUTOWRAP_OFF + this.#pendingRows(layout) + AUTOWRAP_ON + this.#cursorBack());
  }

  setPrompt(prompt: string): void {
    this.editor.prompt = prompt;
    this.redraw();
  }

  /** Draws the input row again (after changing `editor` directly). */
  redraw(): void {
    if (this.#state === "active") this.#output.write(this.#inputRow());
  }

  bell(): void {
    if (this.#state === "active") this.#output.write(BELL);
  }

  /**
   * Asks a yes/no question on the input row; the next key answers: `y` is
   * yes, anything else no. The line being typed comes back afterwards.
   * Resolves false at once when the screen is not active.
   */
  ask(question: string): Promise<boolean> {
    if (this.#state !== "active") return Promise.resolve(false);
    this.#answer(false);
    return new Promise<boolean>((resolve) => {
      this.#question = { text: question, answer: resolve };
      this.redraw();
    });
  }

  #answer(yes: boolean): void {
    const q = this.#question;
    if (!q) return;
    this.#question = null;
    q.answer(yes);
    this.redraw();
  }

  #layout(): Layout {
    const height = this.rows;
    const status = height >= 3 ? height - 1 : 0;
    const fixed = status ? 2 : 1;
    const pending = Math.min(this.#pending.length, PENDING_ROWS, Math.max(0, height - fixed - 1));
    return { height, area: Math.max(1, height - fixed - pending), pending, status };
  }

  #rowsOf(entry: Entry): string[] {
    const width = this.columns;
    if (entry.rows === null || entry.width !== width) {
      entry.rows = terminalRows(entry.line, width);
      entry.width = width;
    }
    return entry.rows;
  }

  #totalRows(): number {
    let n = 0;
    for (const e of this.#lines) n += this.#rowsOf(e).length;
    return n;
  }

  #maxScroll(): number {
    return Math.max(0, this.#totalRows() - this.#layout().area);
  }

  /** The rows the message area shows: `area` of them, blank-padded at the top. */
  #view(area: number): string[] {
    const want = area + this.#scroll;
    const rows: string[] = [];
    for (let i = this.#lines.length - 1; i >= 0 && rows.length < want; i--) {
      const r = this.#rowsOf(this.#lines[i]!);
      for (let j = r.length - 1; j >= 0 && rows.length < want; j--) rows.push(r[j]!);
    }
    rows.reverse();
    const shown = rows.slice(0, Math.max(0, rows.length - this.#scroll)).slice(-area);
    return [...Array<string>(area - shown.length).fill(""), ...shown];
  }

  /** Everything, from scratch: the scroll region, the message area, pending, status and input rows. */
  #paint(): string {
    const layout = this.#layout();
    let out = REGION_RESET + (layout.area >= 2 ? `${CSI}1;${layout.area}r` : "") + AUTOWRAP_OFF;
    this.#view(layout.area).forEach((row, i) => (out += cup(i + 1) + CLEAR_ROW + row));
    out += this.#pendingRows(layout) + AUTOWRAP_ON;
    return out + this.#statusRow() + this.#inputRow();
  }

  /** One row of `line`, cut to leave the last column empty. */
  #oneRow(line: Line): string {
    return terminalRows(line, Math.max(1, this.columns - 1))[0] ?? "";
  }

  #pendingRows(layout: Layout): string {
    let out = "";
    const n = layout.pending;
    for (let i = 0; i < n; i++) {
      const more = this.#pending.length - n;
      const line: Line = i === n - 1 && more > 0 ? `  … and ${more + 1} more being sent` : this.#pending[i]!;
      out += cup(layout.area + 1 + i) + CLEAR_ROW + this.#oneRow(line);
    }
    return out;
  }

  #statusRow(): string {
    const layout = this.#layout();
    if (!layout.status) return "";
    const status: Segment[] = typeof this.#status === "string" ? [this.#status] : [...this.#status];
    if (this.#scroll > 0) {
      const note = this.#below > 0 ? `[scrolled up: ${this.#below} new below, PgDn]` : "[scrolled up, PgDn]";
      status.unshift({ text: note, sgr: "7" }, " ");
    }
    return AUTOWRAP_OFF + cup(layout.status) + CLEAR_ROW + this.#oneRow(status) + AUTOWRAP_ON;
  }

  /** The input row (or the question being asked), with the cursor put on it. */
  #inputRow(): string {
    const row = this.rows;
    if (this.#question) {
      const text = this.#oneRow(this.#question.text);
      return cup(row) + CLEAR_ROW + text + cup(row, Math.min(this.columns - 1, [...text].length) + 1);
    }
    const r = this.editor.render(this.columns);
    return cup(row) + CLEAR_ROW + r.text + cup(row, r.cursor + 1);
  }

  #cursorBack(): string {
    if (this.#question) return this.#inputRow();
    return cup(this.rows, this.editor.render(this.columns).cursor + 1);
  }

  #page(direction: 1 | -1): void {
    const page = Math.max(1, this.#layout().area - 1);
    const to = Math.max(0, Math.min(this.#maxScroll(), this.#scroll + direction * page));
    if (to === this.#scroll && direction === 1) {
      this.#output.write(BELL);
      return;
    }
    this.#scroll = to;
    if (to === 0) this.#below = 0;
    this.#output.write(this.#paint());
  }

  #onData = (chunk: Uint8Array | string): void => {
    this.#cancelEscTimer();
    this.#dispatch(this.#decoder.feed(chunk));
    if (this.#state === "active" && this.#decoder.pending) {
      this.#escTimer = setTimeout(() => {
        this.#escTimer = null;
        this.#dispatch(this.#decoder.flush());
      }, this.#escapeTimeoutMs);
      this.#escTimer.unref?.();
    }
  };

  #onEnd = (): void => {
    if (this.#state === "active") this.#options.onEof();
  };

  #onResize = (): void => {
    if (this.#state !== "active") return;
    // Only a view scrolled up can end up past the top; counting every row re-wraps the whole scrollback.
    if (this.#scroll > 0) this.#scroll = Math.min(this.#scroll, this.#maxScroll());
    this.#output.write(this.#paint());
  };

  #cancelEscTimer(): void {
    if (this.#escTimer !== null) clearTimeout(this.#escTimer);
    this.#escTimer = null;
  }

  /** What the screen does itself with a key, before the editor: true if it took the key. */
  #screenKey(event: KeyEvent): boolean {
    if (event.kind === "paste") {
      const lines = event.text.split("\n").length - 1;
      const limit = this.#options.pasteAskLines ?? PASTE_ASK_LINES;
      if (lines <= limit || !this.#options.pasteQuestion || event.truncated) return false;
      void this.ask(this.#options.pasteQuestion(lines)).then((yes) => {
        if (this.#state !== "active") return;
        if (yes) this.#dispatch([event], true);
        else this.print(`-- paste of ${lines} lines not sent`);
      });
      return true;
    }
    if (event.kind !== "key") return false;
    switch (event.name) {
      case "page-up":
        this.#page(1);
        return true;
      case "page-down":
        this.#page(-1);
        return true;
      case "tab": {
        const complete = this.#options.complete;
        if (!complete) return false;
        const choices = this.editor.complete(complete);
        if (choices.length > 1) this.print(`-- ${choices.join("  ")}`);
        if (this.editor.bell) this.bell();
        this.redraw();
        return true;
      }
      default:
        if (!ROOM_KEYS.has(event.name)) return false;
        this.#options.onKey?.(event.name);
        return true;
    }
  }

  /**
   * Applies key events to the editor and draws once at the end. Before a
   * callback runs, the row is brought up to date so whatever the callback
   * prints lands on a consistent screen; if a callback stops or suspends
   * the screen, the rest of the input is dropped. `confirmed`: a paste the
   * user agreed to send.
   */
  #dispatch(events: KeyEvent[], confirmed = false): void {
    const options = this.#options;
    let dirty = false;
    let bell = false;
    const draw = () => {
      if (this.#state !== "active" || !(dirty || bell)) return;
      this.#output.write((bell ? BELL : "") + (dirty ? this.#inputRow() : ""));
      dirty = false;
      bell = false;
    };
    for (const event of events) {
      if (this.#state !== "active") return;
      if (this.#question) {
        // The first key answers; a paste or anything but y is no.
        this.#answer(event.kind === "text" && /^[yY]/.test(event.text));
        continue;
      }
      if (!confirmed && this.#screenKey(event)) continue;
      for (const action of this.editor.handle(event)) {
        if (this.#state !== "active") return;
        switch (action.kind) {
          case "none":
            break;
          case "redraw":
            dirty = true;
            break;
          case "clear":
            this.#output.write(CLEAR_SCREEN + this.#paint());
            break;
          case "submit":
            // The line has left the buffer: the row shows that before onLine prints anything.
            dirty = true;
            draw();
            options.onLine(action.line);
            break;
          case "eof":
            draw();
            options.onEof();
            break;
          case "interrupt":
            draw();
            options.onInterrupt();
            break;
        }
      }
      bell = bell || this.editor.bell;
      // Said once, not once per key held down.
      const refused = this.editor.refused;
      if (refused !== null && refused !== this.#refused && this.#state === "active") this.print(`-- ${refused}`);
      this.#refused = refused;
    }
    draw();
  }
}

function attempt(f: () => unknown): void {
  try {
    f();
  } catch {
    // stop() runs from exit and signal handlers, where the terminal may already be gone.
  }
}
