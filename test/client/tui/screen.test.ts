/**
 * Screen (src/client/tui/screen.ts), driven through an EventEmitter for
 * stdin and a recorder for stdout, with a small VT100 model of the terminal
 * grid. What a user sees: incoming messages appear above the status and
 * input rows, the half-typed line and its cursor come back intact after
 * every message, remote text never reaches the terminal as a control
 * sequence, PgUp/PgDn page through a bounded scrollback, a long paste asks
 * first, suspend() hands over a cooked terminal and resume() takes it back,
 * and stop() restores the terminal exactly once.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { EventEmitter } from "node:events";
import { colorize, dim } from "../../../src/client/tui/colors.ts";
import { Screen, type ScreenOptions } from "../../../src/client/tui/screen.ts";
import { expectCode } from "../../protocol/helpers.ts";
import { Terminal } from "./terminal.ts";

class FakeInput extends EventEmitter {
  isTTY = true;
  isRaw = false;
  rawCalls: boolean[] = [];
  paused = true;
  setRawMode(raw: boolean): this {
    this.rawCalls.push(raw);
    this.isRaw = raw;
    return this;
  }
  resume(): void {
    this.paused = false;
  }
  pause(): void {
    this.paused = true;
  }
}

class FakeOutput extends EventEmitter {
  writes: string[] = [];
  term: Terminal;
  throwOnWrite = false;
  constructor(
    public columns: number,
    public rows = 8,
  ) {
    super();
    this.term = new Terminal(columns, rows);
  }
  write(s: string): boolean {
    if (this.throwOnWrite) throw new Error("EPIPE");
    this.writes.push(s);
    this.term.feed(s);
    return true;
  }
  get all(): string {
    return this.writes.join("");
  }
}

interface Rig {
  screen: Screen;
  input: FakeInput;
  output: FakeOutput;
  lines: string[];
  events: string[];
}

const started: Screen[] = [];
afterEach(() => {
  for (const s of started.splice(0)) s.stop();
});

function rig(options: Partial<ScreenOptions> & { columns?: number; rows?: number } = {}): Rig {
  const input = new FakeInput();
  const output = new FakeOutput(options.columns ?? 20, options.rows);
  const lines: string[] = [];
  const events: string[] = [];
  const screen = new Screen({
    input,
    output,
    prompt: "> ",
    onLine: (l) => lines.push(l),
    onEof: () => events.push("eof"),
    onInterrupt: () => events.push("interrupt"),
    ...options,
  });
  started.push(screen);
  return { screen, input, output, lines, events };
}

const typeKeys = (r: Rig, s: string) => r.input.emit("data", Buffer.from(s, "utf8"));

/** The message area's rows that are not blank (the area is bottom-aligned). */
const messages = (r: Rig): string[] => {
  const lines = r.output.term.grid.map((row) => row.join("").trimEnd());
  return lines.slice(0, r.output.rows - 2 - pendingCount(r)).filter((l) => l !== "");
};
let pendingShown = new WeakMap<Rig, number>();
const pendingCount = (r: Rig) => pendingShown.get(r) ?? 0;
const row = (r: Rig, i: number): string => r.output.term.grid[i < 0 ? r.output.rows + i : i]!.join("").trimEnd();
const inputRow = (r: Rig) => row(r, -1);
const statusRow = (r: Rig) => row(r, -2);
const cursor = (r: Rig) => [r.output.term.row, r.output.term.col];

describe("start and stop", () => {
  test("start: raw mode on, bracketed paste on, scroll region above the status row, prompt drawn", () => {
    const r = rig();
    r.screen.start();
    expect(r.input.rawCalls).toEqual([true]);
    expect(r.input.paused).toBe(false);
    expect(r.output.term.bracketedPaste).toBe(true);
    expect([r.output.term.top, r.output.term.bottom]).toEqual([0, 5]);
    expect(inputRow(r)).toBe(">");
    expect(cursor(r)).toEqual([7, 2]);
    expect(r.screen.active).toBe(true);
  });

  test("stop restores raw mode, turns bracketed paste off, resets the region and ends the line — once", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "half");
    r.screen.stop();
    r.screen.stop();
    expect(r.input.rawCalls).toEqual([true, false]);
    expect(r.input.paused).toBe(true);
    expect(r.output.term.bracketedPaste).toBe(false);
    expect(r.output.writes.filter((w) => w.includes("\x1b[?2004l"))).toHaveLength(1);
    expect(r.output.term.autowrap).toBe(true);
    expect([r.output.term.top, r.output.term.bottom]).toEqual([0, 7]);
    expect(r.input.listenerCount("data")).toBe(0);
    expect(r.input.listenerCount("end")).toBe(0);
    expect(r.output.listenerCount("resize")).toBe(0);
    // The input row scrolled up by the final line break; the cursor is on a fresh row.
    expect(row(r, -2)).toBe("> half");
    expect(cursor(r)).toEqual([7, 0]);
  });

  test("raw mode is restored to what it was, not forced off", () => {
    const r = rig();
    r.input.isRaw = true;
    r.screen.start();
    r.screen.stop();
    expect(r.input.rawCalls).toEqual([true, true]);
  });

  test("stop before start does nothing", () => {
    const r = rig();
    r.screen.stop();
    expect(r.output.writes).toEqual([]);
    expect(r.input.rawCalls).toEqual([]);
  });

  test("stop does not throw when the terminal is gone", () => {
    const r = rig();
    r.screen.start();
    r.output.throwOnWrite = true;
    r.input.setRawMode = () => {
      throw new Error("EIO");
    };
    expect(() => r.screen.stop()).not.toThrow();
    expect(r.screen.active).toBe(false);
  });

  test("input after stop is ignored", () => {
    const r = rig();
    r.screen.start();
    const onData = r.input.listeners("data")[0] as (c: Buffer) => void;
    r.screen.stop();
    onData(Buffer.from("late\r"));
    expect(r.lines).toEqual([]);
  });

  test("start twice is refused; start after stop works", () => {
    const r = rig();
    r.screen.start();
    expectCode(() => r.screen.start(), "tui_already_started");
    r.screen.stop();
    r.screen.start();
    expect(r.screen.active).toBe(true);
  });

  test("a non-terminal input is not put in raw mode", () => {
    const r = rig();
    r.input.isTTY = false;
    r.screen.start();
    r.screen.stop();
    expect(r.input.rawCalls).toEqual([]);
  });

  test("process.stdin and process.stdout fit the injected interfaces", () => {
    // Compile-time check: the chat command passes these.
    const options: ScreenOptions = {
      input: process.stdin,
      output: process.stdout,
      onLine() {},
      onEof() {},
      onInterrupt() {},
    };
    expect(options.input).toBe(process.stdin);
  });
});

describe("suspend and resume (a password prompt mid-chat)", () => {
  test("suspend: cooked mode, paste off, whole-window region, input row cleared; keys do not reach the editor", () => {
    const r = rig();
    r.screen.start();
    r.screen.print("bob: hi");
    typeKeys(r, "half typed");
    r.screen.suspend();
    expect(r.screen.suspended).toBe(true);
    expect(r.input.rawCalls).toEqual([true, false]);
    expect(r.input.listenerCount("data")).toBe(0);
    expect(r.output.term.bracketedPaste).toBe(false);
    expect([r.output.term.top, r.output.term.bottom]).toEqual([0, 7]);
    expect(inputRow(r)).toBe("");
    expect(cursor(r)).toEqual([7, 0]);
    // What the prompt reads is not the screen's: a password typed now never reaches the line or its history.
    r.input.emit("data", Buffer.from("hunter2\r"));
    expect(r.lines).toEqual([]);
    expect(r.screen.editor.line).toBe("half typed");
    expect(r.screen.editor.history).toEqual([]);
  });

  test("resume: raw mode and paste back on, everything drawn again with the line as it was; lines printed meanwhile shown", () => {
    const r = rig({ columns: 30 });
    r.screen.start();
    r.screen.print("bob: hi");
    typeKeys(r, "half typed");
    r.screen.suspend();
    r.output.write("Password for alice: \r\n"); // the prompt's own output
    r.screen.print("bob: while you typed it");
    r.screen.resume();
    expect(r.input.rawCalls).toEqual([true, false, true]);
    expect(r.output.term.bracketedPaste).toBe(true);
    expect(messages(r)).toEqual(["bob: hi", "bob: while you typed it"]);
    expect(r.output.term.lines().join("\n")).not.toContain("Password");
    expect(inputRow(r)).toBe("> half typed");
    expect(cursor(r)).toEqual([7, 12]);
    typeKeys(r, "!\r");
    expect(r.lines).toEqual(["half typed!"]);
  });

  test("stop while suspended (Ctrl-C in the prompt) leaves the cursor at the bottom, after the prompt's line", () => {
    const r = rig();
    r.screen.start();
    r.screen.print("bob: hi");
    r.screen.suspend();
    r.output.write("Password: \r\n"); // the prompt and its final line break
    r.screen.stop();
    expect(cursor(r)).toEqual([7, 0]);
    expect(row(r, -2)).toBe("Password:");
    expect([r.output.term.top, r.output.term.bottom]).toEqual([0, 7]);
  });

  test("suspend and resume are no-ops when not active; stop while suspended restores once", () => {
    const r = rig();
    r.screen.suspend();
    r.screen.resume();
    expect(r.output.writes).toEqual([]);
    r.screen.start();
    r.screen.suspend();
    r.screen.suspend();
    r.screen.stop();
    expect(r.input.rawCalls).toEqual([true, false]);
    expect(r.screen.active).toBe(false);
    r.screen.resume();
    expect(r.input.listenerCount("data")).toBe(0);
  });
});

describe("print", () => {
  test("a message while a line is half typed: the message above, the row intact, the cursor back", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "helo");
    typeKeys(r, "\x1b[D"); // cursor between "hel" and "o"
    r.output.writes = [];
    r.screen.print("alice: hi");
    expect(r.output.writes).toHaveLength(1);
    expect(r.output.writes[0]).not.toContain("helo"); // the input row is not touched
    expect(messages(r)).toEqual(["alice: hi"]);
    expect(inputRow(r)).toBe("> helo");
    expect(cursor(r)).toEqual([7, 5]);
    typeKeys(r, "l");
    expect(inputRow(r)).toBe("> hello");
  });

  test("messages scroll up inside the message area, long ones wrap with marked rows, typing is never garbled", () => {
    const r = rig({ columns: 20, rows: 7 });
    r.screen.start();
    r.screen.setStatus("[1:#general*]");
    typeKeys(r, "typing");
    r.screen.print("bob: first");
    typeKeys(r, " more");
    r.screen.print("carol:" + "x".repeat(31)); // 37 columns: 20, then 16 and 1 after the marker
    r.screen.print("dave: last");
    expect(r.output.term.lines()).toEqual(["bob: first", "carol:xxxxxxxxxxxxxx", "  ↳ xxxxxxxxxxxxxxxx", "  ↳ x", "dave: last", "[1:#general*]", "> typing more"]);
    expect(cursor(r)).toEqual([6, 13]);
    expect(r.output.term.autowrap).toBe(true);
  });

  test("a long line breaks after its last blank; a word too long for a row is cut", () => {
    const r = rig({ columns: 20, rows: 10 });
    r.screen.start();
    r.screen.print("alice: the quick brown fox jumps over the lazy dog");
    r.screen.print("bob: " + "y".repeat(40));
    expect(messages(r)).toEqual([
      "alice: the quick",
      "  ↳ brown fox jumps",
      "  ↳ over the lazy",
      "  ↳ dog",
      "bob:",
      "  ↳ yyyyyyyyyyyyyyyy",
      "  ↳ yyyyyyyyyyyyyyyy",
      "  ↳ yyyyyyyy",
    ]);
  });

  test("wide characters are never split across rows", () => {
    const r = rig({ columns: 11, rows: 6 });
    r.screen.start();
    r.screen.print("m: 中文中文中文");
    expect(messages(r)).toEqual(["m: 中文中文", "  ↳ 中文"]);
  });

  test("a message exactly as wide as the terminal does not leave a blank row", () => {
    const r = rig({ columns: 20 });
    r.screen.start();
    r.screen.print("y".repeat(20));
    r.screen.print("z");
    expect(r.output.term.lines().slice(-4)).toEqual(["y".repeat(20), "z", "", ">"]);
  });

  test("control, bidi, zero-width and separator characters in printed text are neutralized", () => {
    const r = rig({ columns: 120 });
    r.screen.start();
    r.output.writes = [];
    r.screen.print("evil\x1b[2J\x1b]0;pwned\x07\r\nmallory: hi\u009b1m\u202eabc\x7f\u200b\u2028");
    expect(r.output.writes.join("")).toContain("evil\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x0amallory: hi\\x9b1m\\u202eabc\\x7f\\u200b\\u2028");
    expect(messages(r)).toEqual(["evil\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x0amallory: hi\\x9b1m\\u202eabc\\x7f\\u200b\\u2028"]);
    expect(r.output.term.bells).toBe(0);
  });

  test("the status and pending rows are escaped and cut before the last column", () => {
    const r = rig({ columns: 12 });
    r.screen.start();
    r.screen.setStatus("[1:#a\x1b[2J] [2:#bbbbbbbbbb]");
    r.screen.setPending(["pend\u202eing one two three"]);
    expect(statusRow(r)).toBe("[1:#a\\x1b[2");
    expect(row(r, -3)).toBe("pend\\u202ei");
    expect(r.output.term.grid.every((cells) => cells.at(-1) === " ")).toBe(true);
  });

  test("styled segments add colour; their text is sanitized too", () => {
    const r = rig({ columns: 80 });
    r.screen.start();
    r.output.writes = [];
    r.screen.print([dim("12:00", true), " ", colorize("alice", true), ": ", "\x1b[31mred?"]);
    const write = r.output.writes[0]!;
    expect(write).toContain("\x1b[2m12:00\x1b[0m");
    expect(write).toMatch(/\x1b\[38;5;\d+malice\x1b\[0m: \\x1b\[31mred\?/);
    expect(messages(r)).toEqual(["12:00 alice: \\x1b[31mred?"]);
  });

  test("a styled segment with a bad SGR is refused", () => {
    const r = rig();
    r.screen.start();
    expectCode(() => r.screen.print([{ text: "x", sgr: "31m\x1b[2J" }]), "tui_bad_sgr");
  });

  test("print before start writes just the line; start draws it in the message area", () => {
    const r = rig();
    r.screen.print("hello\x1b");
    expect(r.output.writes).toEqual(["hello\\x1b\n"]);
    r.screen.start();
    expect(messages(r)).toEqual(["hello\\x1b"]);
  });

  test("a window too small for a scroll region still shows the newest line and the input row", () => {
    const r = rig({ columns: 20, rows: 3 });
    r.screen.start();
    r.screen.print("one");
    r.screen.print("two");
    expect(r.output.term.lines()).toEqual(["two", "", ">"]);
  });
});

describe("pending lines", () => {
  test("pending lines sit between the messages and the status row; the area gives them room and takes it back", () => {
    const r = rig({ columns: 30 });
    r.screen.start();
    for (let i = 1; i <= 6; i++) r.screen.print(`m${i}`);
    r.screen.setStatus("status");
    r.screen.setPending(["<me> one (sending)", "<me> two (sending)"]);
    expect(r.output.term.lines()).toEqual(["m3", "m4", "m5", "m6", "<me> one (sending)", "<me> two (sending)", "status", ">"]);
    r.screen.setPending(["<me> two (sending)"]);
    r.screen.print("<me> one");
    expect(r.output.term.lines()).toEqual(["m3", "m4", "m5", "m6", "<me> one", "<me> two (sending)", "status", ">"]);
    r.screen.setPending([]);
    expect(r.output.term.lines()).toEqual(["m2", "m3", "m4", "m5", "m6", "<me> one", "status", ">"]);
  });

  test("more pending lines than rows: the last row says how many more", () => {
    const r = rig({ columns: 30, rows: 10 });
    r.screen.start();
    r.screen.setPending(["a", "b", "c", "d", "e"]);
    expect(r.output.term.lines().slice(-5)).toEqual(["a", "b", "  … and 3 more being sent", "", ">"]);
  });
});

describe("scrollback", () => {
  const fill = (r: Rig, n: number) => {
    for (let i = 1; i <= n; i++) r.screen.print(`line ${i}`);
  };

  test("PgUp shows older rows a page at a time, PgDn comes back; the input row stays", () => {
    const r = rig({ columns: 20, rows: 8 }); // 6 rows of messages: a page is 5
    r.screen.start();
    fill(r, 20);
    typeKeys(r, "draft");
    typeKeys(r, "\x1b[5~");
    expect(messages(r)).toEqual(["line 10", "line 11", "line 12", "line 13", "line 14", "line 15"]);
    expect(statusRow(r)).toBe("[scrolled up, PgDn]");
    expect(inputRow(r)).toBe("> draft");
    expect(cursor(r)).toEqual([7, 7]);
    typeKeys(r, "\x1b[5~\x1b[5~\x1b[5~");
    expect(messages(r)).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"]);
    const bells = r.output.term.bells;
    typeKeys(r, "\x1b[5~"); // at the top: a bell
    expect(r.output.term.bells).toBe(bells + 1);
    typeKeys(r, "\x1b[6~\x1b[6~\x1b[6~\x1b[6~");
    expect(messages(r)).toEqual(["line 15", "line 16", "line 17", "line 18", "line 19", "line 20"]);
    expect(statusRow(r)).toBe("");
  });

  test("lines that arrive while scrolled up are counted on the status row, not lost, and the view stays", () => {
    const r = rig({ columns: 40, rows: 8 });
    r.screen.start();
    r.screen.setStatus("[1:#general*]");
    fill(r, 20);
    typeKeys(r, "\x1b[5~");
    const before = messages(r);
    r.screen.print("new one");
    r.screen.print("new two");
    expect(messages(r)).toEqual(before);
    expect(statusRow(r)).toBe("[scrolled up: 2 new below, PgDn]");
    typeKeys(r, "\x1b[6~\x1b[6~");
    expect(messages(r).slice(-2)).toEqual(["new one", "new two"]);
    expect(statusRow(r)).toBe("[1:#general*]");
  });

  test("the scrollback keeps the newest scrollbackLines lines", () => {
    const r = rig({ columns: 20, rows: 8, scrollbackLines: 10 });
    r.screen.start();
    fill(r, 30);
    typeKeys(r, "\x1b[5~\x1b[5~\x1b[5~");
    expect(messages(r)[0]).toBe("line 21");
  });

  test("a resize wraps the scrollback again for the new width", () => {
    const r = rig({ columns: 30, rows: 8 });
    r.screen.start();
    r.screen.print("alice: the quick brown fox jumps");
    r.output.columns = 15;
    r.output.term = new Terminal(15, 8);
    r.output.emit("resize");
    expect(messages(r)).toEqual(["alice: the", "  ↳ quick brown", "  ↳ fox jumps"]);
  });
});

describe("input", () => {
  test("enter submits; the row is empty again before onLine runs", () => {
    const r = rig();
    let rowAtCallback = "";
    r.screen = new Screen({
      input: r.input,
      output: r.output,
      prompt: "> ",
      onLine: (l) => {
        r.lines.push(l);
        rowAtCallback = inputRow(r);
        r.screen.print(`me: ${l}`);
      },
      onEof: () => {},
      onInterrupt: () => {},
    });
    started.push(r.screen);
    r.screen.start();
    typeKeys(r, "hi there\r");
    expect(r.lines).toEqual(["hi there"]);
    expect(rowAtCallback).toBe(">");
    expect(messages(r)).toEqual(["me: hi there"]);
    expect(inputRow(r)).toBe(">");
  });

  test("a paste of up to pasteAskLines lines submits its lines in order; the last stays to be edited", () => {
    const r = rig({ pasteQuestion: (n) => `send ${n} lines? [y/N]` });
    r.screen.start();
    typeKeys(r, "\x1b[200~one\r\ntwo\r\nthree\r\nfour\r\nfive\r\nsi");
    typeKeys(r, "x\x1b[201~");
    expect(r.lines).toEqual(["one", "two", "three", "four", "five"]);
    expect(inputRow(r)).toBe("> six");
  });

  test("a longer paste asks first on the input row: y sends it, anything else drops it and says so", async () => {
    const r = rig({ columns: 40, pasteQuestion: (n) => `send ${n} lines to #general? [y/N]` });
    r.screen.start();
    typeKeys(r, "draft ");
    const paste = "\x1b[200~" + Array.from({ length: 40 }, (_, i) => `p${i + 1}`).join("\n") + "\n\x1b[201~";
    typeKeys(r, paste);
    expect(r.lines).toEqual([]);
    expect(inputRow(r)).toBe("send 40 lines to #general? [y/N]");
    r.screen.print("bob: meanwhile");
    expect(inputRow(r)).toBe("send 40 lines to #general? [y/N]");
    typeKeys(r, "n");
    await Bun.sleep(0);
    expect(r.lines).toEqual([]);
    expect(messages(r).at(-1)).toBe("-- paste of 40 lines not sent");
    expect(inputRow(r)).toBe("> draft");
    typeKeys(r, paste);
    typeKeys(r, "y");
    await Bun.sleep(0);
    expect(r.lines).toHaveLength(40);
    expect(r.lines[0]).toBe("draft p1");
    expect(r.lines[39]).toBe("p40");
    expect(inputRow(r)).toBe(">");
  });

  test("Enter answers no; the question is never sent as a line", async () => {
    const r = rig({ pasteQuestion: (n) => `send ${n}? [y/N]` });
    r.screen.start();
    typeKeys(r, "\x1b[200~1\n2\n3\n4\n5\n6\n\x1b[201~");
    typeKeys(r, "\r");
    await Bun.sleep(0);
    expect(r.lines).toEqual([]);
  });

  test("ctrl-d on an empty line is eof; ctrl-c interrupts", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "x\x04");
    expect(r.events).toEqual([]);
    typeKeys(r, "\x7f\x04\x03");
    expect(r.events).toEqual(["eof", "interrupt"]);
  });

  test("the end of input is eof", () => {
    const r = rig();
    r.screen.start();
    r.input.emit("end");
    expect(r.events).toEqual(["eof"]);
  });

  test("a callback that stops the screen drops the rest of the input", () => {
    const r = rig();
    r.screen = new Screen({
      input: r.input,
      output: r.output,
      onLine: (l) => {
        r.lines.push(l);
        r.screen.stop();
      },
      onEof: () => {},
      onInterrupt: () => {},
    });
    r.screen.start();
    typeKeys(r, "quit\rmore\r");
    expect(r.lines).toEqual(["quit"]);
  });

  test("a line over the limit rings the bell, is not changed, and says what the limit is — once", () => {
    const r = rig({ columns: 60, maxLineBytes: 5 });
    r.screen.start();
    typeKeys(r, "abcde");
    typeKeys(r, "f");
    typeKeys(r, "g");
    expect(r.output.term.bells).toBe(2);
    expect(r.screen.editor.line).toBe("abcde");
    expect(messages(r)).toEqual(["-- line too long: at most 5 bytes"]);
    typeKeys(r, "\x7fx");
    typeKeys(r, "y");
    expect(messages(r)).toEqual(["-- line too long: at most 5 bytes", "-- line too long: at most 5 bytes"]);
  });

  test("ctrl-l clears the screen and draws everything again", () => {
    const r = rig();
    r.screen.start();
    r.screen.print("old message");
    typeKeys(r, "ab\x0c");
    expect(messages(r)).toEqual(["old message"]);
    expect(inputRow(r)).toBe("> ab");
  });

  test("resize redraws the row for the new width", () => {
    const r = rig({ columns: 40 });
    r.screen.start();
    typeKeys(r, "abcdefghijklmnopqrstuvwxyz");
    r.output.columns = 12;
    r.output.term = new Terminal(12, 8);
    r.output.emit("resize");
    expect(inputRow(r)).toBe("> stuvwxyz");
  });

  test("setPrompt redraws with the new prompt", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "x");
    r.screen.setPrompt("#dev> ");
    expect(inputRow(r)).toBe("#dev> x");
  });

  test("wide characters: the cursor lands after them", () => {
    const r = rig({ columns: 20 });
    r.screen.start();
    typeKeys(r, "中文");
    r.screen.print("m");
    expect(messages(r)).toEqual(["m"]);
    expect(inputRow(r)).toBe("> 中文");
    expect(r.output.term.col).toBe(6);
  });

  test("Alt-1…9 and Alt-←/→ go to onKey, not into the line", () => {
    const keys: string[] = [];
    const r = rig({ onKey: (k) => keys.push(k) });
    r.screen.start();
    typeKeys(r, "a\x1b2\x1b[1;3C\x1b[1;3Db");
    expect(keys).toEqual(["alt-2", "alt-right", "alt-left"]);
    expect(r.screen.editor.line).toBe("ab");
  });

  test("Tab completes the word before the cursor; several matches are listed and the shared start filled in", () => {
    const r = rig({
      columns: 40,
      complete: (word, atStart) => (word.startsWith("/") ? ["/switch ", "/join "] : ["bob", "bobby", "carol"].map((n) => (atStart ? `${n}: ` : `${n} `))),
    });
    r.screen.start();
    typeKeys(r, "ca\t");
    expect(r.screen.editor.line).toBe("carol: ");
    expect(inputRow(r)).toBe("> carol:");
    expect(cursor(r)).toEqual([7, 9]);
    r.screen.editor.clear();
    typeKeys(r, "hi b\t");
    expect(inputRow(r)).toBe("> hi bob");
    expect(messages(r)).toEqual(["-- bob   bobby"]);
    typeKeys(r, "b\t");
    expect(r.screen.editor.line).toBe("hi bobby ");
    r.screen.editor.clear();
    typeKeys(r, "/sw\t");
    expect(r.screen.editor.line).toBe("/switch ");
    const bells = r.output.term.bells;
    typeKeys(r, "zz\t");
    expect(r.output.term.bells).toBe(bells + 1);
  });
});

describe("escape timeout", () => {
  test("a lone ESC resolves after the timeout and is not inserted", async () => {
    const r = rig({ escapeTimeoutMs: 10 });
    r.screen.start();
    typeKeys(r, "a\x1b");
    await Bun.sleep(40);
    typeKeys(r, "b");
    expect(r.screen.editor.line).toBe("ab");
  });

  test("a sequence split across reads within the timeout is one key", async () => {
    const r = rig({ escapeTimeoutMs: 50 });
    r.screen.start();
    typeKeys(r, "abc\x1b");
    await Bun.sleep(5);
    typeKeys(r, "[D");
    typeKeys(r, "X");
    expect(r.screen.editor.line).toBe("abXc");
  });

  test("stop cancels a pending escape timer", async () => {
    const r = rig({ escapeTimeoutMs: 10 });
    r.screen.start();
    typeKeys(r, "\x1b");
    r.screen.stop();
    const before = r.output.writes.length;
    await Bun.sleep(30);
    expect(r.output.writes.length).toBe(before);
  });
});
