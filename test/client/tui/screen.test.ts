/**
 * Screen (src/client/tui/screen.ts), driven through an EventEmitter for
 * stdin and a recorder for stdout, with a small VT100 model of the terminal
 * grid. What a user sees: incoming messages appear above the input row, the
 * half-typed line and its cursor come back intact after every message, remote
 * text never reaches the terminal as a control sequence, and stop() restores
 * the terminal exactly once.
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
  constructor(public columns: number, rows = 8) {
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

describe("start and stop", () => {
  test("start: raw mode on, bracketed paste on, prompt drawn", () => {
    const r = rig();
    r.screen.start();
    expect(r.input.rawCalls).toEqual([true]);
    expect(r.input.paused).toBe(false);
    expect(r.output.term.bracketedPaste).toBe(true);
    expect(r.output.writes).toEqual(["\x1b[?2004h\r\x1b[2K> \r\x1b[2C"]);
    expect(r.screen.active).toBe(true);
  });

  test("stop restores raw mode, turns bracketed paste off and ends the line — once", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "half");
    r.screen.stop();
    r.screen.stop();
    expect(r.input.rawCalls).toEqual([true, false]);
    expect(r.input.paused).toBe(true);
    expect(r.output.term.bracketedPaste).toBe(false);
    expect(r.output.writes.filter((w) => w.includes("\x1b[?2004l"))).toEqual(["\x1b[?2004l\x1b[?7h\r\n"]);
    expect(r.output.term.autowrap).toBe(true);
    expect(r.input.listenerCount("data")).toBe(0);
    expect(r.input.listenerCount("end")).toBe(0);
    expect(r.output.listenerCount("resize")).toBe(0);
    expect(r.output.term.lines()).toEqual(["> half"]);
    expect(r.output.term.row).toBe(1);
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

describe("print", () => {
  test("a message while a line is half typed: clear row, message, CR LF, row redrawn, cursor back", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "helo");
    typeKeys(r, "\x1b[D"); // cursor between "hel" and "o"
    r.output.writes = [];
    r.screen.print("alice: hi");
    expect(r.output.writes).toEqual(["\r\x1b[2K" + "\x1b[?7l" + "alice: hi" + "\x1b[?7h" + "\r\n" + "\x1b[2K" + "> helo" + "\r" + "\x1b[5C"]);
    expect(r.output.term.lines()).toEqual(["alice: hi", "> helo"]);
    expect([r.output.term.row, r.output.term.col]).toEqual([1, 5]);
    typeKeys(r, "l");
    expect(r.output.term.lines()).toEqual(["alice: hi", "> hello"]);
  });

  test("messages scroll up above the input row, long ones wrap with marked rows, typing is never garbled", () => {
    const r = rig({ columns: 20, rows: 6 });
    r.screen.start();
    typeKeys(r, "typing");
    r.screen.print("bob: first");
    typeKeys(r, " more");
    r.screen.print("carol:" + "x".repeat(31)); // 37 columns: 20, then 16 and 1 after the marker
    r.screen.print("dave: last");
    expect(r.output.term.lines()).toEqual(["bob: first", "carol:xxxxxxxxxxxxxx", "  ↳ xxxxxxxxxxxxxxxx", "  ↳ x", "dave: last", "> typing more"]);
    expect([r.output.term.row, r.output.term.col]).toEqual([5, 13]);
    expect(r.output.term.autowrap).toBe(true);
  });

  test("a long line breaks after its last blank; a word too long for a row is cut", () => {
    const r = rig({ columns: 20, rows: 10 });
    r.screen.start();
    r.screen.print("alice: the quick brown fox jumps over the lazy dog");
    r.screen.print("bob: " + "y".repeat(40));
    expect(r.output.term.lines()).toEqual([
      "alice: the quick",
      "  ↳ brown fox jumps",
      "  ↳ over the lazy",
      "  ↳ dog",
      "bob:",
      "  ↳ yyyyyyyyyyyyyyyy",
      "  ↳ yyyyyyyyyyyyyyyy",
      "  ↳ yyyyyyyy",
      ">",
    ]);
  });

  test("wide characters are never split across rows", () => {
    const r = rig({ columns: 11, rows: 6 });
    r.screen.start();
    r.screen.print("m: 中文中文中文");
    expect(r.output.term.lines()).toEqual(["m: 中文中文", "  ↳ 中文", ">"]);
  });

  test("a message exactly as wide as the terminal does not leave a blank row", () => {
    const r = rig({ columns: 20 });
    r.screen.start();
    r.screen.print("y".repeat(20));
    expect(r.output.term.lines()).toEqual(["y".repeat(20), ">"]);
  });

  test("control, bidi, zero-width and separator characters in printed text are neutralized", () => {
    const r = rig({ columns: 120 });
    r.screen.start();
    r.output.writes = [];
    r.screen.print("evil\x1b[2J\x1b]0;pwned\x07\r\nmallory: hi\u009b1m\u202eabc\x7f\u200b\u2028");
    const [write] = r.output.writes;
    expect(write).toBe(
      "\r\x1b[2K\x1b[?7l" + "evil\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x0amallory: hi\\x9b1m\\u202eabc\\x7f\\u200b\\u2028" + "\x1b[?7h\r\n" + "\x1b[2K> \r\x1b[2C",
    );
    expect(r.output.term.bells).toBe(0);
  });

  test("styled segments add colour; their text is sanitized too", () => {
    const r = rig({ columns: 80 });
    r.screen.start();
    r.output.writes = [];
    r.screen.print([dim("12:00", true), " ", colorize("alice", true), ": ", "\x1b[31mred?"]);
    const write = r.output.writes[0]!;
    expect(write).toContain("\x1b[2m12:00\x1b[0m");
    expect(write).toMatch(/\x1b\[38;5;\d+malice\x1b\[0m: \\x1b\[31mred\?/);
    expect(r.output.term.lines()[0]).toBe("12:00 alice: \\x1b[31mred?");
  });

  test("a styled segment with a bad SGR is refused", () => {
    const r = rig();
    r.screen.start();
    expectCode(() => r.screen.print([{ text: "x", sgr: "31m\x1b[2J" }]), "tui_bad_sgr");
  });

  test("print before start writes just the line", () => {
    const r = rig();
    r.screen.print("hello\x1b");
    expect(r.output.writes).toEqual(["hello\\x1b\n"]);
  });
});

describe("input", () => {
  test("enter submits; the row is empty again before onLine runs", () => {
    const r = rig();
    let rowAtCallback: string[] = [];
    r.screen = new Screen({
      input: r.input,
      output: r.output,
      prompt: "> ",
      onLine: (l) => {
        r.lines.push(l);
        rowAtCallback = r.output.term.lines();
        r.screen.print(`me: ${l}`);
      },
      onEof: () => {},
      onInterrupt: () => {},
    });
    started.push(r.screen);
    r.screen.start();
    typeKeys(r, "hi there\r");
    expect(r.lines).toEqual(["hi there"]);
    expect(rowAtCallback).toEqual([">"]);
    expect(r.output.term.lines()).toEqual(["me: hi there", ">"]);
  });

  test("a paste submits its lines in order; the last stays to be edited", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "\x1b[200~one\r\ntwo\r\nthr");
    typeKeys(r, "ee\x1b[201~");
    expect(r.lines).toEqual(["one", "two"]);
    expect(r.output.term.lines()).toEqual(["> three"]);
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

  test("a line over the limit rings the bell and is not changed", () => {
    const r = rig({ maxLineBytes: 5 });
    r.screen.start();
    typeKeys(r, "abcde");
    typeKeys(r, "f");
    expect(r.output.term.bells).toBe(1);
    expect(r.screen.editor.line).toBe("abcde");
  });

  test("ctrl-l clears the screen and redraws the row at the top", () => {
    const r = rig();
    r.screen.start();
    r.screen.print("old message");
    typeKeys(r, "ab\x0c");
    expect(r.output.term.lines()).toEqual(["> ab"]);
  });

  test("resize redraws the row for the new width", () => {
    const r = rig({ columns: 40 });
    r.screen.start();
    typeKeys(r, "abcdefghijklmnopqrstuvwxyz");
    r.output.columns = 12;
    r.output.term = new Terminal(12, 8);
    r.output.emit("resize");
    expect(r.output.term.lines()).toEqual(["> stuvwxyz"]);
  });

  test("setPrompt redraws with the new prompt", () => {
    const r = rig();
    r.screen.start();
    typeKeys(r, "x");
    r.screen.setPrompt("#dev> ");
    expect(r.output.term.lines()).toEqual(["#dev> x"]);
  });

  test("wide characters: the cursor lands after them", () => {
    const r = rig({ columns: 20 });
    r.screen.start();
    typeKeys(r, "中文");
    r.screen.print("m");
    expect(r.output.term.lines()).toEqual(["m", "> 中文"]);
    expect(r.output.term.col).toBe(6);
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
