/**
 * The interactive client's terminal: the only writer to its output while it
 * runs. Messages scroll up above a one-row input line that stays at the
 * bottom and is never garbled by a message arriving mid-typing, because each
 * message is written as one sequence that clears the input row, prints the
 * message and a line break, and draws the input row again:
 *
 *   CR, EL 2 (`\x1b[2K`), message, CR LF, EL 2, prompt + visible line, CR, CUF n
 *
 * (ECMA-48 §8.3.41 EL, §8.3.20 CUF; CUF is left out when n is 0, since
 * `\x1b[0C` moves one column in most terminals). A message longer than the
 * row is wrapped here, not by the terminal: its later rows start with
 * `  ↳ `, and the terminal's own wrap is off while they are written
 * (sanitize.ts `terminalBlock`), so no part of a message can pass for a
 * message of its own.
 *
 * `start()` puts the input in raw mode and turns on bracketed paste (xterm
 * mode 2004); `stop()` undoes both, makes sure automatic wrap is on, and
 * leaves the cursor on a fresh line. It
 * is idempotent, synchronous and never throws, so exit and signal handlers
 * can call it. Input and output are injected: tests drive it with an
 * EventEmitter and a recorder, no TTY.
 *
 * Not handled: a terminal that reflows the input row when it is resized
 * narrower may leave a fragment of the old row above the redrawn one; Ctrl-Z
 * arrives as a byte in raw mode and is ignored rather than suspending.
 */
import { SecureChatError } from "../../errors.ts";
import { LineEditor } from "./editor.ts";
import { ESC_TIMEOUT_MS, KeyDecoder, type KeyEvent } from "./keys.ts";
import { AUTOWRAP_ON, type Segment, terminalBlock, terminalRows } from "./sanitize.ts";

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
  on?(event: "resize", listener: () => void): unknown;
  off?(event: "resize", listener: () => void): unknown;
}

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
  escapeTimeoutMs?: number;
  maxLineBytes?: number;
}

export const DEFAULT_COLUMNS = 80;

const CSI = "\x1b[";
const CLEAR_ROW = `${CSI}2K`;
const CLEAR_SCREEN = `${CSI}H${CSI}2J`;
const PASTE_ON = `${CSI}?2004h`;
const PASTE_OFF = `${CSI}?2004l`;
const BELL = "\x07";

export class Screen {
  readonly editor: LineEditor;
  readonly #input: ScreenInput;
  readonly #output: ScreenOutput;
  readonly #options: ScreenOptions;
  readonly #escapeTimeoutMs: number;
  #decoder = new KeyDecoder();
  #active = false;
  /** Raw mode as found at start(), restored by stop(); null when we did not touch it. */
  #rawBefore: boolean | null = null;
  #escTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: ScreenOptions) {
    this.#input = options.input;
    this.#output = options.output;
    this.#options = options;
    this.#escapeTimeoutMs = options.escapeTimeoutMs ?? ESC_TIMEOUT_MS;
    this.editor = new LineEditor({ prompt: options.prompt ?? "", maxLineBytes: options.maxLineBytes });
  }

  /** True between start() and stop(). */
  get active(): boolean {
    return this.#active;
  }

  get columns(): number {
    const c = this.#output.columns;
    return c !== undefined && c > 0 ? c : DEFAULT_COLUMNS;
  }

  start(): void {
    if (this.#active) throw new SecureChatError("tui_already_started", "tui: screen already started");
    this.#active = true;
    this.#decoder = new KeyDecoder();
    const input = this.#input;
    if (input.setRawMode && input.isTTY !== false) {
      this.#rawBefore = input.isRaw === true;
      input.setRawMode(true);
    }
    input.on("data", this.#onData);
    input.on("end", this.#onEnd);
    input.resume?.();
    this.#output.on?.("resize", this.#onResize);
    this.#output.write(PASTE_ON + "\r" + this.#inputRow());
  }

  /** Restores the terminal. Idempotent and never throws: safe in exit and signal handlers. */
  stop(): void {
    if (!this.#active) return;
    this.#active = false;
    this.#cancelEscTimer();
    const input = this.#input;
    attempt(() => input.off("data", this.#onData));
    attempt(() => input.off("end", this.#onEnd));
    attempt(() => this.#output.off?.("resize", this.#onResize));
    if (this.#rawBefore !== null) {
      const raw = this.#rawBefore;
      this.#rawBefore = null;
      attempt(() => input.setRawMode?.(raw));
    }
    attempt(() => input.pause?.());
    attempt(() => this.#output.write(PASTE_OFF + AUTOWRAP_ON + "\r\n"));
  }

  /**
   * Writes one line above the input row, wrapped to the terminal's width
   * with marked continuation rows. Every string part is escaped
   * (sanitize.ts), so text from the network cannot reach the terminal as
   * control or format characters; only `Styled` segments add colour.
   */
  print(line: string | readonly Segment[]): void {
    if (!this.#active) {
      this.#output.write(terminalRows(line, this.columns).join("\n") + "\n");
      return;
    }
    this.#output.write("\r" + CLEAR_ROW + terminalBlock(line, this.columns) + "\r\n" + this.#inputRow());
  }

  setPrompt(prompt: string): void {
    this.editor.prompt = prompt;
    this.redraw();
  }

  /** Draws the input row again (after changing `editor` directly). */
  redraw(): void {
    if (this.#active) this.#output.write("\r" + this.#inputRow());
  }

  /** EL 2, prompt + visible line, then the cursor put back; expects the cursor in column 0 of the row. */
  #inputRow(): string {
    const r = this.editor.render(this.columns);
    return CLEAR_ROW + r.text + "\r" + (r.cursor > 0 ? `${CSI}${r.cursor}C` : "");
  }

  #onData = (chunk: Uint8Array | string): void => {
    this.#cancelEscTimer();
    this.#dispatch(this.#decoder.feed(chunk));
    if (this.#active && this.#decoder.pending) {
      this.#escTimer = setTimeout(() => {
        this.#escTimer = null;
        this.#dispatch(this.#decoder.flush());
      }, this.#escapeTimeoutMs);
      this.#escTimer.unref?.();
    }
  };

  #onEnd = (): void => {
    if (this.#active) this.#options.onEof();
  };

  #onResize = (): void => {
    this.redraw();
  };

  #cancelEscTimer(): void {
    if (this.#escTimer !== null) clearTimeout(this.#escTimer);
    this.#escTimer = null;
  }

  /**
   * Applies key events to the editor and draws once at the end. Before a
   * callback runs, the row is brought up to date so whatever the callback
   * prints lands on a consistent screen; if a callback stops the screen, the
   * rest of the input is dropped.
   */
  #dispatch(events: KeyEvent[]): void {
    const options = this.#options;
    let dirty = false;
    let bell = false;
    const draw = () => {
      if (!this.#active || !(dirty || bell)) return;
      this.#output.write((bell ? BELL : "") + (dirty ? "\r" + this.#inputRow() : ""));
      dirty = false;
      bell = false;
    };
    for (const event of events) {
      if (!this.#active) return;
      for (const action of this.editor.handle(event)) {
        if (!this.#active) return;
        switch (action.kind) {
          case "none":
            break;
          case "redraw":
            dirty = true;
            break;
          case "clear":
            this.#output.write(CLEAR_SCREEN);
            dirty = true;
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
