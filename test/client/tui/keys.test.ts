/**
 * Key decoder (src/client/tui/keys.ts). What a user sees: the same keys
 * however the terminal's bytes are split into reads; escape sequences never
 * show up as typed text; a paste arrives as one event; a lone ESC resolves
 * only when the caller's timer calls flush().
 */
import { describe, expect, test } from "bun:test";
import { KeyDecoder, MAX_PASTE_BYTES, type KeyEvent, type KeyName } from "../../../src/client/tui/keys.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const key = (name: KeyName): KeyEvent => ({ kind: "key", name });
const text = (t: string): KeyEvent => ({ kind: "text", text: t });
const paste = (t: string, truncated = false): KeyEvent => ({ kind: "paste", text: t, truncated });

/** Adjacent text events joined: a run split across reads is the same typing. */
function merged(events: KeyEvent[]): KeyEvent[] {
  const out: KeyEvent[] = [];
  for (const e of events) {
    const prev = out.at(-1);
    if (e.kind === "text" && prev?.kind === "text") out[out.length - 1] = text(prev.text + e.text);
    else out.push(e);
  }
  return out;
}

function decodeChunks(chunks: Uint8Array[]): KeyEvent[] {
  const d = new KeyDecoder();
  const out: KeyEvent[] = [];
  for (const c of chunks) out.push(...d.feed(c));
  return merged(out);
}

const CASES: Array<[string, string, KeyEvent[]]> = [
  ["ascii", "hello", [text("hello")]],
  ["two-byte", "é", [text("é")]],
  ["three-byte", "中文", [text("中文")]],
  ["four-byte", "😀", [text("😀")]],
  ["CR", "\r", [key("enter")]],
  ["LF", "\n", [key("enter")]],
  ["CR LF counts once", "a\r\nb", [text("a"), key("enter"), text("b")]],
  ["CR CR is two", "\r\r", [key("enter"), key("enter")]],
  ["LF LF is two", "\n\n", [key("enter"), key("enter")]],
  ["DEL", "\x7f", [key("backspace")]],
  ["BS", "\x08", [key("backspace")]],
  ["delete", "\x1b[3~", [key("delete")]],
  ["delete with ctrl", "\x1b[3;5~", [key("delete")]],
  ["CSI arrows", "\x1b[A\x1b[B\x1b[C\x1b[D", [key("up"), key("down"), key("right"), key("left")]],
  ["SS3 arrows", "\x1bOA\x1bOB\x1bOC\x1bOD", [key("up"), key("down"), key("right"), key("left")]],
  ["home/end CSI", "\x1b[H\x1b[F", [key("home"), key("end")]],
  ["home/end tilde", "\x1b[1~\x1b[4~\x1b[7~\x1b[8~", [key("home"), key("end"), key("home"), key("end")]],
  ["home/end SS3", "\x1bOH\x1bOF", [key("home"), key("end")]],
  ["ctrl arrows", "\x1b[1;5D\x1b[1;5C", [key("ctrl-left"), key("ctrl-right")]],
  ["alt arrows switch rooms", "\x1b[1;3D\x1b[1;3C", [key("alt-left"), key("alt-right")]],
  ["ctrl-alt arrows move by words", "\x1b[1;7D\x1b[1;7C", [key("ctrl-left"), key("ctrl-right")]],
  ["page up/down", "\x1b[5~\x1b[6~\x1b[5;5~", [key("page-up"), key("page-down"), key("page-up")]],
  ["alt-1 … alt-9", "\x1b1\x1b2\x1b9", [key("alt-1"), key("alt-2"), key("alt-9")]],
  ["alt-0 is not bound", "\x1b0x", [text("x")]],
  ["shift arrow is an arrow", "\x1b[1;2D", [key("left")]],
  ["alt-b alt-f alt-d", "\x1bb\x1bf\x1bd", [key("alt-b"), key("alt-f"), key("alt-d")]],
  ["alt-backspace", "\x1b\x7f", [key("alt-backspace")]],
  [
    "ctrl keys",
    "\x01\x02\x03\x04\x05\x06\x0b\x0c\x0e\x10\x15\x17\t",
    ["ctrl-a", "ctrl-b", "ctrl-c", "ctrl-d", "ctrl-e", "ctrl-f", "ctrl-k", "ctrl-l", "ctrl-n", "ctrl-p", "ctrl-u", "ctrl-w", "tab"].map(
      (n) => key(n as KeyName),
    ),
  ],
  ["unbound C0 ignored", "a\x00\x1a\x1cb", [text("ab")]],
  ["unknown CSI ignored", "a\x1b[99~\x1b[5;5Z\x1b[?1;2cb", [text("ab")]],
  ["SGR mouse report ignored", "\x1b[<0;12;5Mx", [text("x")]],
  ["focus report ignored", "\x1b[I\x1b[Ox", [text("x")]],
  ["unknown alt chord ignored", "\x1bzx", [text("x")]],
  ["unknown SS3 ignored", "\x1bOPx", [text("x")]],
  ["OSC to BEL ignored", "a\x1b]0;title\x07b", [text("ab")]],
  ["OSC to ST ignored", "a\x1b]11;rgb:0/0/0\x1b\\b", [text("ab")]],
  ["DCS ignored", "a\x1bP1$r0m\x1b\\b", [text("ab")]],
  ["ESC ESC: escape then sequence", "\x1b\x1b[A", [key("escape"), key("up")]],
  ["ESC before ctrl-c still interrupts", "\x1b\x03", [key("ctrl-c")]],
  ["ESC before non-ASCII keeps the character", "\x1bé", [text("é")]],
  ["cut-off CSI: the next control byte stands alone", "\x1b[1\r", [key("enter")]],
  ["C1 control in UTF-8 dropped", "a\u009b31mb", [text("a31mb")]],
  ["bracketed paste", "\x1b[200~one\r\ntwo\rthree\nfour\x1b[201~", [paste("one\ntwo\nthree\nfour")]],
  ["paste keeps escape bytes as content", "\x1b[200~a\x1b[Ab\x1b[201~", [paste("a\x1b[Ab")]],
  ["paste with a false end marker", "\x1b[200~a\x1b[20x\x1b[201\x1b[201~", [paste("a\x1b[20x\x1b[201")]],
  ["empty paste", "\x1b[200~\x1b[201~", [paste("")]],
  ["text around a paste", "x\x1b[200~p\x1b[201~y", [text("x"), paste("p"), text("y")]],
  ["invalid UTF-8 becomes U+FFFD", "a\xff", [text("a\ufffd")]],
];

function bytesOf(input: string): Uint8Array {
  // "\xff" in a case stands for the raw byte 0xFF (invalid UTF-8), not U+00FF.
  const parts = input.split("\xff").map(enc);
  const out: number[] = [];
  parts.forEach((p, i) => {
    if (i > 0) out.push(0xff);
    out.push(...p);
  });
  return Uint8Array.from(out);
}

describe("KeyDecoder", () => {
  test.each(CASES)("%s, in one read", (_name, input, want) => {
    expect(decodeChunks([bytesOf(input)])).toEqual(want);
  });

  test.each(CASES)("%s, split at every byte boundary", (_name, input, want) => {
    const bytes = bytesOf(input);
    for (let i = 1; i < bytes.length; i++) {
      const got = decodeChunks([bytes.subarray(0, i), bytes.subarray(i)]);
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`split at ${i}: ${JSON.stringify(got)}`);
    }
  });

  test.each(CASES)("%s, one byte per read", (_name, input, want) => {
    const bytes = bytesOf(input);
    expect(decodeChunks(Array.from(bytes, (b) => Uint8Array.of(b)))).toEqual(want);
  });

  test("all cases back to back, split at every point, give all events in order", () => {
    const bytes = Uint8Array.from(CASES.flatMap(([, input]) => [...bytesOf(input)]));
    const whole = decodeChunks([bytes]);
    for (let i = 1; i < bytes.length; i++) {
      const got = decodeChunks([bytes.subarray(0, i), bytes.subarray(i)]);
      if (JSON.stringify(got) !== JSON.stringify(whole)) throw new Error(`split at ${i}`);
    }
  });

  test("a multi-byte character split across reads is held, not replaced", () => {
    const d = new KeyDecoder();
    const bytes = enc("😀");
    expect(d.feed(bytes.subarray(0, 1))).toEqual([]);
    expect(d.feed(bytes.subarray(1, 3))).toEqual([]);
    expect(d.flush()).toEqual([]); // the ESC timer does not cut a character short
    expect(d.feed(bytes.subarray(3))).toEqual([text("😀")]);
  });

  test("an incomplete character followed by a control byte becomes U+FFFD", () => {
    const d = new KeyDecoder();
    expect(d.feed(Uint8Array.of(0xe4, 0xb8))).toEqual([]);
    expect(d.feed("\r")).toEqual([text("\ufffd"), key("enter")]);
  });

  test("string chunks are read as UTF-8", () => {
    expect(new KeyDecoder().feed("ü\x1b[D")).toEqual([text("ü"), key("left")]);
  });

  test("a lone ESC is pending until flush, then an escape key", () => {
    const d = new KeyDecoder();
    expect(d.feed("\x1b")).toEqual([]);
    expect(d.pending).toBe(true);
    expect(d.flush()).toEqual([key("escape")]);
    expect(d.pending).toBe(false);
    expect(d.feed("b")).toEqual([text("b")]); // not Alt-b: the ESC was resolved
  });

  test("a cut-off sequence is dropped by flush, never inserted", () => {
    const d = new KeyDecoder();
    expect(d.feed("\x1b[1;")).toEqual([]);
    expect(d.pending).toBe(true);
    expect(d.flush()).toEqual([]);
    expect(d.feed("x")).toEqual([text("x")]);
  });

  test("an open control string (Alt-]) is cut off by flush and does not eat later typing", () => {
    const d = new KeyDecoder();
    expect(d.feed("\x1b]")).toEqual([]);
    expect(d.pending).toBe(true);
    expect(d.flush()).toEqual([]);
    expect(d.feed("hi")).toEqual([text("hi")]);
  });

  test("flush does not end a paste; the end marker does", () => {
    const d = new KeyDecoder();
    expect(d.feed("\x1b[200~abc")).toEqual([]);
    expect(d.pending).toBe(false);
    expect(d.flush()).toEqual([]);
    expect(d.feed("def\x1b[201~")).toEqual([paste("abcdef")]);
  });

  test("an overlong CSI sequence is consumed and ignored", () => {
    expect(decodeChunks([enc(`\x1b[${"1;".repeat(100)}Dz`)])).toEqual([text("z")]);
  });

  test.each([
    [MAX_PASTE_BYTES - 1, false],
    [MAX_PASTE_BYTES, false],
    [MAX_PASTE_BYTES + 1, true],
  ])("paste of %p bytes: truncated=%p", (n, truncated) => {
    const events = new KeyDecoder().feed(`\x1b[200~${"x".repeat(n)}\x1b[201~`);
    expect(events).toHaveLength(1);
    const e = events[0]!;
    if (e.kind !== "paste") throw new Error("not a paste");
    expect(e.truncated).toBe(truncated);
    expect(e.text.length).toBe(Math.min(n, MAX_PASTE_BYTES));
  });
});
