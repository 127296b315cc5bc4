/**
 * Terminal input decoder: the raw bytes a terminal in raw mode sends → key
 * events for the line editor. Pure and synchronous, no I/O; the bytes arrive
 * as a stream, so an escape sequence or a multi-byte UTF-8 character may be
 * split across chunks and the decoder carries the partial state over.
 *
 * What it understands (xterm's ctlseqs, ECMA-48 §5.4 for the CSI grammar):
 * - printable UTF-8 → one `text` event per run (a typed key, or a pasted
 *   chunk when the terminal has no bracketed paste). C1 controls encoded in
 *   UTF-8 (U+0080–U+009F) are dropped; invalid UTF-8 becomes U+FFFD.
 * - CR or LF → `enter`; CR LF counts once, so piped or odd terminals that
 *   send both do not submit an empty line.
 * - DEL and BS → `backspace`; C0 controls for the editor's bindings → `ctrl-*`;
 *   other C0 controls are ignored.
 * - CSI / SS3 sequences for the arrows, Home/End (`ESC[H`, `ESC[F`, `ESC[1~`,
 *   `ESC[7~`, `ESC[4~`, `ESC[8~`, `ESCOH`, `ESCOF`), Delete (`ESC[3~`),
 *   Page Up/Down (`ESC[5~`, `ESC[6~`), Ctrl-modified Left/Right
 *   (`ESC[1;5D`) as word motions, and Alt-modified Left/Right (`ESC[1;3D`,
 *   what xterm and tmux send for Alt-←) as `alt-left`/`alt-right`.
 * - ESC + b / f / d / DEL → Alt-b, Alt-f, Alt-d, Alt-Backspace; ESC + 1…9 →
 *   Alt-1…Alt-9.
 * - bracketed paste, `ESC[200~` … `ESC[201~` → one `paste` event; its line
 *   breaks are normalised to LF and it is otherwise passed on as it came (the
 *   editor decides what a paste of several lines means).
 * - any other escape sequence is consumed whole and ignored: never text.
 *   That includes control strings (OSC `ESC ]`, DCS `ESC P`, APC, PM, SOS),
 *   which run to BEL or ST (`ESC \`).
 *
 * A lone ESC cannot be told from the start of a sequence until more bytes come
 * or none do. While `pending` is true the caller arms a short timer
 * (ESC_TIMEOUT_MS) and calls `flush()` when it fires: a lone ESC then becomes
 * an `escape` key and a cut-off sequence is dropped. A partial UTF-8
 * character is not flushed by the timer — its remaining bytes are already on
 * their way — and an unterminated paste waits for its end marker.
 */
import { withoutControls } from "../../text.ts";

export type KeyName =
  | "enter"
  | "tab"
  | "backspace"
  | "delete"
  | "escape"
  | "up"
  | "down"
  | "left"
  | "right"
  | "home"
  | "end"
  | "ctrl-left"
  | "ctrl-right"
  | "alt-left"
  | "alt-right"
  | "page-up"
  | "page-down"
  | "alt-1"
  | "alt-2"
  | "alt-3"
  | "alt-4"
  | "alt-5"
  | "alt-6"
  | "alt-7"
  | "alt-8"
  | "alt-9"
  | "ctrl-a"
  | "ctrl-b"
  | "ctrl-c"
  | "ctrl-d"
  | "ctrl-e"
  | "ctrl-f"
  | "ctrl-k"
  | "ctrl-l"
  | "ctrl-n"
  | "ctrl-p"
  | "ctrl-u"
  | "ctrl-w"
  | "alt-b"
  | "alt-f"
  | "alt-d"
  | "alt-backspace";

/** Keys that switch rooms: the screen hands them to the client, the line editor ignores them. */
export const ROOM_KEYS: ReadonlySet<KeyName> = new Set<KeyName>(["alt-left", "alt-right", "alt-1", "alt-2", "alt-3", "alt-4", "alt-5", "alt-6", "alt-7", "alt-8", "alt-9"]);

export type KeyEvent =
  | { readonly kind: "text"; readonly text: string }
  /** `truncated`: the paste was longer than MAX_PASTE_BYTES and its tail was dropped. */
  | { readonly kind: "paste"; readonly text: string; readonly truncated: boolean }
  | { readonly kind: "key"; readonly name: KeyName };

/**
 * How long a lone ESC waits for the rest of a sequence. Terminals send a
 * sequence in one write, so on a local terminal the bytes arrive together;
 * the slack is for ssh and slow links. A lone ESC does nothing in the editor,
 * so erring long only costs turning ESC-then-"b" typed within 100 ms into Alt-b.
 */
export const ESC_TIMEOUT_MS = 100;

/** Bytes of one paste kept; the editor refuses longer pastes rather than cut them. */
export const MAX_PASTE_BYTES = 64 * 1024;

/** Parameter and intermediate bytes kept of one CSI sequence; longer ones are unknown to us anyway. */
const MAX_CSI_PARAMS = 32;

const ESC = 0x1b;
const PASTE_END = [ESC, 0x5b, 0x32, 0x30, 0x31, 0x7e]; // ESC [ 2 0 1 ~

const C0_KEYS: ReadonlyMap<number, KeyName> = new Map<number, KeyName>([
  [0x01, "ctrl-a"],
  [0x02, "ctrl-b"],
  [0x03, "ctrl-c"],
  [0x04, "ctrl-d"],
  [0x05, "ctrl-e"],
  [0x06, "ctrl-f"],
  [0x08, "backspace"], // Ctrl-H, what some terminals send for Backspace
  [0x09, "tab"],
  [0x0a, "enter"],
  [0x0b, "ctrl-k"],
  [0x0c, "ctrl-l"],
  [0x0d, "enter"],
  [0x0e, "ctrl-n"],
  [0x10, "ctrl-p"],
  [0x15, "ctrl-u"],
  [0x17, "ctrl-w"],
  [0x7f, "backspace"],
]);

const ALT_KEYS: ReadonlyMap<number, KeyName> = new Map<number, KeyName>([
  [0x62, "alt-b"],
  [0x66, "alt-f"],
  [0x64, "alt-d"],
  [0x7f, "alt-backspace"],
  [0x08, "alt-backspace"],
  ...Array.from({ length: 9 }, (_, i): [number, KeyName] => [0x31 + i, `alt-${i + 1}` as KeyName]),
]);

/** Final byte of `ESC [ … X` / `ESC O X` → key, for the cursor keys. */
const CURSOR_FINALS: ReadonlyMap<number, KeyName> = new Map<number, KeyName>([
  [0x41, "up"], // A
  [0x42, "down"], // B
  [0x43, "right"], // C
  [0x44, "left"], // D
  [0x48, "home"], // H
  [0x46, "end"], // F
]);

/** First parameter of `ESC [ n ~` → key (VT220 editing keypad; 7/8 are rxvt's Home/End). */
const TILDE_KEYS: ReadonlyMap<number, KeyName> = new Map<number, KeyName>([
  [1, "home"],
  [7, "home"],
  [4, "end"],
  [8, "end"],
  [3, "delete"],
  [5, "page-up"],
  [6, "page-down"],
]);

const PASTE_START_PARAM = 200;

type State = "ground" | "esc" | "csi" | "ss3" | "string" | "string-esc" | "paste";

/** Second byte of ESC P / X / ] / ^ / _: DCS, SOS, OSC, PM, APC (ECMA-48 §5.6), which open a control string. */
const STRING_OPENERS = new Set([0x50, 0x58, 0x5d, 0x5e, 0x5f]);


export class KeyDecoder {
  #state: State = "ground";
  /** UTF-8 bytes of the printable run being read; decoded when a control byte or the chunk's end comes. */
  #text: number[] = [];
  /** Streaming: holds a UTF-8 character split across chunks until its last byte arrives. */
  readonly #utf8 = new TextDecoder("utf-8");
  #afterCR = false;
  #csi = "";
  #csiOverflow = false;
  #paste: number[] = [];
  #pasteTruncated = false;
  /** How many bytes of PASTE_END have matched so far. */
  #pasteEndMatched = 0;
  #out: KeyEvent[] = [];

  /**
   * True while an escape sequence or control string is open; arm the ESC
   * timer. A control string is cut off by the timer too: a user's Alt-]
   * must not swallow the typing that follows while waiting for a BEL.
   */
  get pending(): boolean {
    return this.#state !== "ground" && this.#state !== "paste";
  }

  feed(chunk: Uint8Array | string): KeyEvent[] {
    const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
    for (const b of bytes) this.#byte(b);
    this.#endText(true);
    return this.#take();
  }

  /** Called when ESC_TIMEOUT_MS passed with `pending` true: resolves a lone ESC, drops a cut-off sequence. */
  flush(): KeyEvent[] {
    if (this.#state === "esc") this.#key("escape");
    if (this.pending) this.#state = "ground";
    return this.#take();
  }

  #take(): KeyEvent[] {
    const out = this.#out;
    this.#out = [];
    return out;
  }

  #key(name: KeyName): void {
    this.#out.push({ kind: "key", name });
  }

  #byte(b: number): void {
    switch (this.#state) {
      case "ground":
        return this.#ground(b);
      case "esc":
        return this.#escape(b);
      case "csi":
        return this.#csiByte(b);
      case "ss3":
        return this.#ss3(b);
      case "string":
        if (b === 0x07) this.#state = "ground";
        else if (b === ESC) this.#state = "string-esc";
        return;
      case "string-esc":
        // ESC \ is ST; ESC anything else inside a control string is not valid, and ends it too.
        this.#state = "ground";
        if (b !== 0x5c) this.#escape(b);
        return;
      case "paste":
        return this.#pasteByte(b);
    }
  }

  #ground(b: number): void {
    const afterCR = this.#afterCR;
    this.#afterCR = b === 0x0d;
    if (b >= 0x20 && b !== 0x7f) {
      this.#text.push(b);
      return;
    }
    this.#endText(false);
    if (b === ESC) {
      this.#state = "esc";
      return;
    }
    if (b === 0x0a && afterCR) return;
    const name = C0_KEYS.get(b);
    if (name !== undefined) this.#key(name);
  }

  /**
   * Decodes the printable run. `stream` keeps an incomplete trailing UTF-8
   * character for the next chunk; otherwise (a control byte interrupts it)
   * the incomplete character becomes U+FFFD.
   */
  #endText(stream: boolean): void {
    if (this.#text.length === 0 && stream) return;
    // C1 controls can arrive UTF-8 encoded (0xC2 0x80–0x9F); they are controls, not text (C0 and DEL never get here).
    const text = withoutControls(this.#utf8.decode(Uint8Array.from(this.#text), { stream }));
    this.#text = [];
    if (text !== "") this.#out.push({ kind: "text", text });
  }

  #escape(b: number): void {
    if (b === 0x5b) {
      this.#state = "csi";
      this.#csi = "";
      this.#csiOverflow = false;
      return;
    }
    if (b === 0x4f) {
      this.#state = "ss3";
      return;
    }
    if (STRING_OPENERS.has(b)) {
      this.#state = "string";
      return;
    }
    if (b === ESC) {
      // ESC ESC: the first was a lone Escape key press; the second may start a sequence.
      this.#key("escape");
      return;
    }
    const alt = ALT_KEYS.get(b);
    if (alt !== undefined) {
      this.#state = "ground";
      this.#key(alt);
      return;
    }
    this.#state = "ground";
    // ESC before a control byte or a UTF-8 lead byte: keep the byte (Ctrl-C must
    // still interrupt, a non-ASCII character still be typed) and drop the ESC.
    // ESC before any other ASCII byte is an Alt chord we do not bind: consumed.
    if (b < 0x20 || b >= 0x80) this.#ground(b);
  }

  #csiByte(b: number): void {
    if (b >= 0x20 && b <= 0x3f) {
      if (this.#csi.length < MAX_CSI_PARAMS) this.#csi += String.fromCharCode(b);
      else this.#csiOverflow = true;
      return;
    }
    this.#state = "ground";
    if (b >= 0x40 && b <= 0x7e) {
      if (!this.#csiOverflow) this.#dispatchCsi(this.#csi, b);
      return;
    }
    // Not valid inside CSI (ECMA-48 §5.4): the sequence was cut off; the byte is input of its own.
    this.#ground(b);
  }

  #dispatchCsi(params: string, final: number): void {
    // Private (`<`, `=`, `>`, `?`) and intermediate-byte sequences are replies and
    // reports we never ask for; only plain numeric parameters name keys.
    if (!/^[0-9;]*$/.test(params)) return;
    const fields = params.split(";");
    const first = fields[0] === "" ? 1 : Number(fields[0]);
    // xterm modifier parameter: 1 + (shift 1 | alt 2 | ctrl 4 | meta 8).
    const modifier = fields.length > 1 ? Number(fields[1]) - 1 : 0;
    if (final === 0x7e) {
      if (first === PASTE_START_PARAM && fields.length === 1) {
        this.#state = "paste";
        this.#paste = [];
        this.#pasteTruncated = false;
        this.#pasteEndMatched = 0;
        return;
      }
      const name = TILDE_KEYS.get(first);
      if (name !== undefined) this.#key(name);
      return;
    }
    const name = CURSOR_FINALS.get(final);
    if (name === undefined || first !== 1) return;
    // Ctrl (or Meta) with an arrow moves by words; Alt alone switches rooms.
    const word = modifier > 0 && (modifier & (4 | 8)) !== 0;
    const alt = modifier > 0 && !word && (modifier & 2) !== 0;
    if (word && name === "left") this.#key("ctrl-left");
    else if (word && name === "right") this.#key("ctrl-right");
    else if (alt && name === "left") this.#key("alt-left");
    else if (alt && name === "right") this.#key("alt-right");
    else this.#key(name);
  }

  #ss3(b: number): void {
    this.#state = "ground";
    const name = CURSOR_FINALS.get(b);
    if (name !== undefined) this.#key(name);
    else if (b < 0x20) this.#ground(b);
  }

  #pasteByte(b: number): void {
    if (b === PASTE_END[this.#pasteEndMatched]) {
      this.#pasteEndMatched++;
      if (this.#pasteEndMatched === PASTE_END.length) this.#endPaste();
      return;
    }
    // A partial match was paste content after all. ESC occurs only at the
    // marker's start, so the mismatching byte can only begin a new match.
    for (let i = 0; i < this.#pasteEndMatched; i++) this.#pasteAppend(PASTE_END[i]!);
    this.#pasteEndMatched = 0;
    if (b === PASTE_END[0]) this.#pasteEndMatched = 1;
    else this.#pasteAppend(b);
  }

  #pasteAppend(b: number): void {
    if (this.#paste.length < MAX_PASTE_BYTES) this.#paste.push(b);
    else this.#pasteTruncated = true;
  }

  #endPaste(): void {
    this.#state = "ground";
    this.#afterCR = false;
    const text = new TextDecoder("utf-8").decode(Uint8Array.from(this.#paste)).replace(/\r\n?/g, "\n");
    this.#paste = [];
    this.#out.push({ kind: "paste", text, truncated: this.#pasteTruncated });
  }
}
