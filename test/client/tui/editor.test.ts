/**
 * Line editor (src/client/tui/editor.ts) and display width (width.ts). What a
 * user sees: editing keys do what readline does; history gives back the
 * half-typed line; overlong input is refused with a bell, never cut; the
 * rendered row fits the terminal with the cursor on the right character,
 * wide characters counted as two columns.
 *
 * Randomized render checks use TUI_TEST_SEED (printed below).
 */
import { describe, expect, test } from "bun:test";
import { LineEditor, MAX_LINE_BYTES, type EditorAction } from "../../../src/client/tui/editor.ts";
import type { KeyName } from "../../../src/client/tui/keys.ts";
import { codePointWidth, graphemeWidth, stringWidth } from "../../../src/client/tui/width.ts";
import { expectCode, rng } from "../../protocol/helpers.ts";

const SEED = Number(process.env.TUI_TEST_SEED ?? 0x7e1_0c4a) >>> 0;
console.log(`editor.test.ts: TUI_TEST_SEED=${SEED}`);

function type(ed: LineEditor, text: string): EditorAction[] {
  return ed.handle({ kind: "text", text });
}
function press(ed: LineEditor, ...names: KeyName[]): EditorAction[] {
  return names.flatMap((name) => ed.handle({ kind: "key", name }));
}
function pasteInto(ed: LineEditor, text: string, truncated = false): EditorAction[] {
  return ed.handle({ kind: "paste", text, truncated });
}
/** An editor holding `line` with the cursor at `cursor` (default: end). */
function editorWith(line: string, cursor?: number): LineEditor {
  const ed = new LineEditor({ prompt: "> " });
  type(ed, line);
  if (cursor !== undefined) {
    press(ed, "home");
    for (let i = 0; i < cursor; i++) press(ed, "right");
  }
  return ed;
}
const state = (ed: LineEditor) => [ed.line, ed.cursor];

describe("editing", () => {
  test("typing in the middle inserts at the cursor", () => {
    const ed = editorWith("held", 2);
    expect(type(ed, "l")).toEqual([{ kind: "redraw" }]);
    expect(state(ed)).toEqual(["helld", 3]);
  });

  test("typed text has control characters removed", () => {
    const ed = editorWith("");
    type(ed, "a\x1b[31mb\u009bc");
    expect(ed.line).toBe("a[31mbc");
  });

  test("backspace at column 0 does nothing", () => {
    const ed = editorWith("abc", 0);
    expect(press(ed, "backspace")).toEqual([{ kind: "none" }]);
    expect(state(ed)).toEqual(["abc", 0]);
  });

  test("backspace removes the code point before the cursor", () => {
    const ed = editorWith("a😀b", 2);
    press(ed, "backspace");
    expect(state(ed)).toEqual(["ab", 1]);
  });

  test("delete at the end does nothing; in the middle removes under the cursor", () => {
    const ed = editorWith("abc");
    expect(press(ed, "delete")).toEqual([{ kind: "none" }]);
    press(ed, "home", "delete");
    expect(state(ed)).toEqual(["bc", 0]);
  });

  test("ctrl-d: delete under the cursor, or eof on an empty line", () => {
    const ed = editorWith("ab", 0);
    press(ed, "ctrl-d");
    expect(state(ed)).toEqual(["b", 0]);
    press(ed, "ctrl-d");
    expect(press(ed, "ctrl-d")).toEqual([{ kind: "eof" }]);
  });

  test("ctrl-c interrupts and leaves the line alone; ctrl-l asks to clear the screen", () => {
    const ed = editorWith("draft");
    expect(press(ed, "ctrl-c")).toEqual([{ kind: "interrupt" }]);
    expect(press(ed, "ctrl-l")).toEqual([{ kind: "clear" }]);
    expect(ed.line).toBe("draft");
  });

  test.each([
    ["hello big world", undefined, "hello big ", 10],
    ["foo bar  ", undefined, "foo ", 4],
    ["foo bar baz", 7, "foo  baz", 4],
    ["path/to/file.txt x", 16, " x", 0],
    ["", undefined, "", 0],
  ])("ctrl-w on %p at %p → %p", (line, cursor, want, wantCursor) => {
    const ed = editorWith(line, cursor);
    press(ed, "ctrl-w");
    expect(state(ed)).toEqual([want, wantCursor]);
  });

  test("alt-backspace and alt-d stop at punctuation", () => {
    const ed = editorWith("path/to/file");
    press(ed, "alt-backspace");
    expect(state(ed)).toEqual(["path/to/", 8]);
    press(ed, "home", "alt-d");
    expect(state(ed)).toEqual(["/to/", 0]);
  });

  test("ctrl-u kills to the start, ctrl-k to the end", () => {
    const ed = editorWith("hello world", 5);
    press(ed, "ctrl-k");
    expect(state(ed)).toEqual(["hello", 5]);
    press(ed, "left", "left", "ctrl-u");
    expect(state(ed)).toEqual(["lo", 0]);
  });

  test("home/end and ctrl-a/ctrl-e; motion at the edge is no redraw", () => {
    const ed = editorWith("abc", 1);
    press(ed, "end");
    expect(ed.cursor).toBe(3);
    expect(press(ed, "right")).toEqual([{ kind: "none" }]);
    press(ed, "ctrl-a");
    expect(ed.cursor).toBe(0);
    expect(press(ed, "left")).toEqual([{ kind: "none" }]);
    press(ed, "ctrl-e");
    expect(ed.cursor).toBe(3);
    press(ed, "home");
    expect(ed.cursor).toBe(0);
  });

  test("word motions: alt-b/ctrl-left to word starts, alt-f/ctrl-right to word ends", () => {
    const ed = editorWith("one two  three");
    press(ed, "alt-b");
    expect(ed.cursor).toBe(9);
    press(ed, "ctrl-left");
    expect(ed.cursor).toBe(4);
    press(ed, "alt-b", "alt-b");
    expect(ed.cursor).toBe(0);
    press(ed, "alt-f");
    expect(ed.cursor).toBe(3);
    press(ed, "ctrl-right");
    expect(ed.cursor).toBe(7);
  });

  test("the cursor steps over a combining mark together with its base", () => {
    const ed = editorWith("e\u0301x"); // é as e + COMBINING ACUTE ACCENT
    press(ed, "left");
    expect(ed.cursor).toBe(2);
    press(ed, "left");
    expect(ed.cursor).toBe(0);
    press(ed, "right");
    expect(ed.cursor).toBe(2);
    press(ed, "home", "delete");
    expect(ed.line).toBe("x");
  });

  test("tab and a lone escape do nothing", () => {
    const ed = editorWith("a");
    expect(press(ed, "tab", "escape")).toEqual([{ kind: "none" }, { kind: "none" }]);
    expect(ed.line).toBe("a");
  });
});

describe("submit and history", () => {
  test("enter submits the whole line wherever the cursor is, and empties it", () => {
    const ed = editorWith("hello", 2);
    expect(press(ed, "enter")).toEqual([{ kind: "submit", line: "hello" }]);
    expect(state(ed)).toEqual(["", 0]);
  });

  test("up/down walk the history and give back the half-typed draft", () => {
    const ed = new LineEditor();
    for (const l of ["one", "two"]) {
      type(ed, l);
      press(ed, "enter");
    }
    type(ed, "dra");
    press(ed, "up");
    expect(ed.line).toBe("two");
    press(ed, "ctrl-p");
    expect(ed.line).toBe("one");
    expect(press(ed, "up")).toEqual([{ kind: "none" }]);
    expect(ed.line).toBe("one");
    press(ed, "down");
    expect(ed.line).toBe("two");
    press(ed, "ctrl-n");
    expect(state(ed)).toEqual(["dra", 3]);
    expect(press(ed, "down")).toEqual([{ kind: "none" }]);
  });

  test("a recalled entry can be edited and sent; the history entry itself is unchanged", () => {
    const ed = new LineEditor();
    type(ed, "hello");
    press(ed, "enter", "up");
    type(ed, "!");
    expect(press(ed, "enter")).toEqual([{ kind: "submit", line: "hello!" }]);
    expect(ed.history).toEqual(["hello", "hello!"]);
  });

  test("empty lines and immediate repeats are not added to the history", () => {
    const ed = new LineEditor();
    for (const l of ["a", "a", "", "b", "a"]) {
      type(ed, l);
      press(ed, "enter");
    }
    expect(ed.history).toEqual(["a", "b", "a"]);
  });

  test("the history keeps the newest historyMax entries", () => {
    const ed = new LineEditor({ historyMax: 3 });
    for (const l of ["1", "2", "3", "4", "5"]) {
      type(ed, l);
      press(ed, "enter");
    }
    expect(ed.history).toEqual(["3", "4", "5"]);
  });

  test("bad options are refused", () => {
    expectCode(() => new LineEditor({ maxLineBytes: 0 }), "tui_bad_option");
    expectCode(() => new LineEditor({ historyMax: -1 }), "tui_bad_option");
  });
});

describe("paste", () => {
  test("each line of a paste is submitted; the last stays in the buffer", () => {
    const ed = editorWith("XY", 1);
    expect(pasteInto(ed, "a\nb\nc")).toEqual([
      { kind: "submit", line: "Xa" },
      { kind: "submit", line: "b" },
      { kind: "redraw" },
    ]);
    expect(state(ed)).toEqual(["cY", 1]);
    expect(ed.history).toEqual(["Xa", "b"]);
  });

  test("a paste without line breaks is inserted at the cursor", () => {
    const ed = editorWith("ad", 1);
    expect(pasteInto(ed, "bc")).toEqual([{ kind: "redraw" }]);
    expect(state(ed)).toEqual(["abcd", 3]);
  });

  test("a paste ending in a line break leaves the buffer empty", () => {
    const ed = editorWith("");
    expect(pasteInto(ed, "done\n")).toEqual([{ kind: "submit", line: "done" }, { kind: "redraw" }]);
    expect(ed.line).toBe("");
  });

  test("tabs become four spaces; other control characters are dropped", () => {
    const ed = editorWith("");
    pasteInto(ed, "\tif x:\x1b[2J\x07 y");
    expect(ed.line).toBe("    if x:[2J y");
  });

  test("a truncated paste is refused whole, with a bell", () => {
    const ed = editorWith("keep");
    expect(pasteInto(ed, "partial", true)).toEqual([{ kind: "none" }]);
    expect(ed.bell).toBe(true);
    expect(ed.line).toBe("keep");
  });

  test("a paste with any line over the limit is refused whole, with a bell", () => {
    const ed = new LineEditor({ maxLineBytes: 10 });
    type(ed, "abc");
    expect(pasteInto(ed, "ok\n" + "x".repeat(11) + "\nok")).toEqual([{ kind: "none" }]);
    expect(ed.bell).toBe(true);
    expect(ed.line).toBe("abc");
    expect(ed.history).toEqual([]);
  });
});

describe("line length limit", () => {
  test.each([
    [MAX_LINE_BYTES - 2, "a", true],
    [MAX_LINE_BYTES - 1, "a", true],
    [MAX_LINE_BYTES, "a", false],
    [MAX_LINE_BYTES - 2, "é", true],
    [MAX_LINE_BYTES - 1, "é", false],
    [MAX_LINE_BYTES - 4, "😀", true],
    [MAX_LINE_BYTES - 3, "😀", false],
    [MAX_LINE_BYTES - 2, "ab", true],
    [MAX_LINE_BYTES - 1, "ab", false],
  ])("%p bytes + %p accepted: %p", (have, add, accepted) => {
    const ed = new LineEditor();
    type(ed, "x".repeat(have));
    expect(ed.bell).toBe(false);
    const actions = type(ed, add);
    expect(ed.bell).toBe(!accepted);
    expect(actions).toEqual([{ kind: accepted ? "redraw" : "none" }]);
    expect(ed.line).toBe("x".repeat(have) + (accepted ? add : ""));
  });

  test("refused input says why and what the limit is; the next accepted key clears it", () => {
    const e = new LineEditor({ maxLineBytes: 4 });
    e.handle({ kind: "text", text: "abcd" });
    e.handle({ kind: "text", text: "e" });
    expect(e.refused).toBe("line too long: at most 4 bytes");
    e.handle({ kind: "paste", text: "x", truncated: true });
    expect(e.refused).toStartWith("paste too long");
    e.handle({ kind: "key", name: "backspace" });
    expect(e.refused).toBeNull();
  });

  test("complete: one match replaces the word; several fill in their shared start and are returned; none rings", () => {
    const e = new LineEditor();
    const nicks = (word: string, atStart: boolean) => ["alice", "alfred", "bob"].map((n) => (atStart ? `${n}: ` : `${n} `));
    e.handle({ kind: "text", text: "b" });
    expect(e.complete(nicks)).toEqual([]);
    expect(e.line).toBe("bob: ");
    e.handle({ kind: "text", text: "hi al" });
    expect(e.complete(nicks)).toEqual(["alfred ", "alice "]);
    expect(e.line).toBe("bob: hi al");
    e.handle({ kind: "key", name: "home" });
    e.handle({ kind: "key", name: "right" }); // after "b": the word before the cursor is "b"
    expect(e.complete(nicks)).toEqual([]);
    expect(e.line).toBe("bob: ob: hi al");
    e.handle({ kind: "key", name: "end" });
    e.handle({ kind: "text", text: " zz" });
    expect(e.complete(nicks)).toEqual([]);
    expect(e.bell).toBe(true);
  });

  test("the bell flag clears on the next key", () => {
    const ed = new LineEditor({ maxLineBytes: 1 });
    type(ed, "ab");
    expect(ed.bell).toBe(true);
    press(ed, "left");
    expect(ed.bell).toBe(false);
  });
});

describe("display width (Bun.stringWidth, wcwidth's rule for marks)", () => {
  test.each([
    ["a", 1, 1],
    ["é", 1, 1],
    ["e\u0301", 1, 1], // combining acute (Mn)
    ["क\u093e", 2, 2], // DEVANAGARI VOWEL SIGN AA (Mc): a cell of its own, as xterm and VTE draw it
    ["中", 2, 2],
    ["한", 2, 2],
    ["ｱ", 1, 1], // halfwidth katakana
    ["Ａ", 2, 2], // fullwidth A
    ["\u3000", 2, 2], // ideographic space
    ["😀", 2, 2],
    ["❤\ufe0f", 1, 2], // text-default emoji + VS16: one cell per code point, two as a grapheme
    ["👍🏽", 4, 4], // emoji + skin tone modifier: one emoji in some terminals, two in others
    ["🇫🇷", 2, 2],
    ["1\ufe0f\u20e3", 1, 2], // keycap: U+20E3 is an enclosing mark (0), the grapheme is an emoji (2)
    ["\u200d", 0, 0],
    ["\u00ad", 0, 0], // a format character: never drawn raw (src/text.ts escapes it)
    ["\x1b", 0, 0],
    ["→", 1, 1],
  ])("%p: %p columns code point by code point, %p as a grapheme", (s, perCodePoint, grapheme) => {
    expect(stringWidth(s)).toBe(perCodePoint);
    expect(graphemeWidth(s)).toBe(grapheme);
  });

  test("a string is the sum of its code points", () => {
    expect(stringWidth("中文abc")).toBe(7);
    expect(stringWidth("")).toBe(0);
  });

  test("Bun.stringWidth and codePointWidth agree on the wide blocks and emoji, one code point at a time", () => {
    // CJK, Hangul syllables, fullwidth forms, emoji with default emoji presentation.
    const ranges: [number, number][] = [[0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xff01, 0xff60], [0x1f600, 0x1f64f], [0x20000, 0x2a6df]];
    for (const [from, to] of ranges) {
      for (let cp = from; cp <= to; cp++) {
        if (codePointWidth(cp) !== 2) throw new Error(`U+${cp.toString(16)}: ${codePointWidth(cp)} columns, want 2`);
      }
    }
  });
});

/** Checks the invariants of one render; returns a description of the first violation. */
function checkRender(ed: LineEditor, width: number): string | null {
  const r = ed.render(width);
  const textWidth = stringWidth(r.text);
  if (textWidth > width - 1) return `text ${textWidth} columns in a ${width}-column row`;
  if (r.cursor > width - 2) return `cursor at ${r.cursor} in a ${width}-column row`;
  // A prompt wider than half the usable row is cut to its first half-row of columns.
  const half = Math.floor((width - 1) / 2);
  let prompt = ed.prompt;
  while (stringWidth(prompt) > half) prompt = [...prompt].slice(0, -1).join("");
  if (!r.text.startsWith(prompt)) return `prompt ${JSON.stringify(prompt)} missing`;
  // The shown text is a slice of the line that contains the cursor position,
  // and the cursor column is the width of prompt + the slice up to the cursor.
  // (The line may repeat itself, so any slice that fits will do.)
  const shown = r.text.slice(prompt.length);
  const line = [...ed.line];
  for (let start = 0; start <= ed.cursor; start++) {
    const slice = line.slice(start, start + [...shown].length);
    if (slice.join("") !== shown || start + slice.length < ed.cursor) continue;
    if (stringWidth(prompt) + stringWidth(line.slice(start, ed.cursor).join("")) === r.cursor) return null;
  }
  return `shown text ${JSON.stringify(shown)} with the cursor at ${r.cursor} is not a window of ${JSON.stringify(ed.line)} around position ${ed.cursor}`;
}

describe("render", () => {
  test("a short line is drawn whole after the prompt", () => {
    const ed = editorWith("hi");
    expect(ed.render(80)).toEqual({ text: "> hi", cursor: 4 });
  });

  test("a line wider than the terminal scrolls to keep the cursor in view", () => {
    const ed = editorWith("abcdefghijklmnopqrstuvwxyz");
    // 12 columns: 11 usable, 9 after the prompt, one of them for the cursor.
    expect(ed.render(12)).toEqual({ text: "> stuvwxyz", cursor: 10 });
    press(ed, "home");
    expect(ed.render(12)).toEqual({ text: "> abcdefghi", cursor: 2 });
    press(ed, "end");
    ed.render(12);
    for (let i = 0; i < 5; i++) press(ed, "backspace");
    expect(ed.render(12)).toEqual({ text: "> nopqrstu", cursor: 10 });
  });

  test("the view does not jump while the cursor moves inside it", () => {
    const ed = editorWith("abcdefghijklmnopqrstuvwxyz");
    ed.render(12);
    press(ed, "left", "left", "left");
    expect(ed.render(12)).toEqual({ text: "> stuvwxyz", cursor: 7 });
  });

  test("the view scrolls back when the line gets shorter", () => {
    const ed = editorWith("abcdefghijklmnopqrstuvwxyz");
    ed.render(12);
    press(ed, "ctrl-u");
    type(ed, "abc");
    expect(ed.render(12)).toEqual({ text: "> abc", cursor: 5 });
  });

  test("wide characters count two columns", () => {
    const ed = editorWith("中文字符测试");
    expect(ed.render(80)).toEqual({ text: "> 中文字符测试", cursor: 14 });
    // 11 columns: 10 usable, 8 after the prompt, the cursor needs one → 3 characters.
    expect(ed.render(11)).toEqual({ text: "> 符测试", cursor: 8 });
    press(ed, "home");
    expect(ed.render(11)).toEqual({ text: "> 中文字符", cursor: 2 });
  });

  test("a prompt wider than half the row is cut", () => {
    const ed = new LineEditor({ prompt: "[a-very-long-room-name] > " });
    type(ed, "hello");
    const r = ed.render(20);
    expect(r.text).toBe("[a-very-lhello");
    expect(r.cursor).toBe(14);
  });

  test("the prompt is sanitized", () => {
    const ed = new LineEditor({ prompt: "\x1b[31m#room\u202e\x1b[0m> " });
    expect(ed.render(80).text).toBe("\\x1b[31m#room\\u202e\\x1b[0m> ");
  });

  test("pasted bidi and zero-width characters stay in the line but show as escapes, the cursor after them", () => {
    const ed = new LineEditor({ prompt: "> " });
    pasteInto(ed, "ab\u202ecd\u200be");
    expect(ed.line).toBe("ab\u202ecd\u200be");
    expect(ed.render(80)).toEqual({ text: "> ab\\u202ecd\\u200be", cursor: 2 + 2 + 6 + 2 + 6 + 1 });
    // Each escape is one step for the cursor, like any character.
    press(ed, "left", "left");
    expect(ed.cursor).toBe(5);
    expect(ed.render(80).cursor).toBe(2 + 2 + 6 + 2);
    press(ed, "left", "left", "left");
    expect(ed.cursor).toBe(2);
    expect(ed.render(80).cursor).toBe(2 + 2);
    // An emoji ZWJ sequence is drawn as it is.
    const emoji = new LineEditor({ prompt: "> " });
    type(emoji, "👩\u200d💻");
    expect(emoji.render(80).text).toBe("> 👩\u200d💻");
  });

  test.each([0, 1, 2, 3])("a %p-column terminal does not crash or overflow", (width) => {
    const ed = editorWith("中文abc");
    const r = ed.render(width);
    expect(stringWidth(r.text)).toBeLessThanOrEqual(Math.max(0, width - 1));
  });

  test("random lines, cursor moves and widths keep the cursor on its character", () => {
    const r = rng(SEED);
    const alphabet = ["a", "b", " ", "é", "e\u0301", "中", "한", "😀", "Ａ", "-"];
    const moves: KeyName[] = ["left", "right", "home", "end", "backspace", "alt-b", "alt-f", "ctrl-w"];
    for (let round = 0; round < 300; round++) {
      const ed = new LineEditor({ prompt: r.int(0, 1) === 0 ? "> " : "#général > " });
      const width = r.int(4, 40);
      for (let step = 0; step < 60; step++) {
        if (r.int(0, 2) === 0) press(ed, moves[r.int(0, moves.length - 1)]!);
        else type(ed, alphabet[r.int(0, alphabet.length - 1)]!);
        const problem = checkRender(ed, width);
        if (problem) throw new Error(`seed ${SEED} round ${round} step ${step} width ${width}: ${problem}`);
      }
    }
  });

  test("codePointWidth of controls is 0 (they never reach the row)", () => {
    expect(codePointWidth(0x1b)).toBe(0);
    expect(codePointWidth(0x9b)).toBe(0);
  });
});
