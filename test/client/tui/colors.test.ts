/**
 * Name colours, timestamps (src/client/tui/colors.ts) and styled segments
 * (sanitize.ts). What a user sees: a name has the same colour everywhere,
 * colour is off under NO_COLOR or without a terminal, times read HH:MM, and
 * only the client's own styles reach the terminal as escape sequences.
 */
import { describe, expect, test } from "bun:test";
import { NAME_PALETTE, colorEnabled, colorize, dim, fnv1a32, formatTime, nameColor } from "../../../src/client/tui/colors.ts";
import { renderSegments } from "../../../src/client/tui/sanitize.ts";
import { expectCode } from "../../protocol/helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("fnv1a32", () => {
  // Test vectors from the FNV reference test suite (Landon Curt Noll, test_fnv.c).
  test.each([
    ["", 0x811c9dc5],
    ["a", 0xe40c292c],
    ["foobar", 0xbf9cf968],
  ])("fnv1a32(%p) = %p", (s, h) => {
    expect(fnv1a32(enc(s))).toBe(h);
  });
});

describe("name colours", () => {
  test("the same name always gets the same palette colour", () => {
    expect(nameColor("alice")).toBe(nameColor("alice"));
    expect(NAME_PALETTE).toContain(nameColor("alice"));
    expect(nameColor("alice")).toBe(NAME_PALETTE[fnv1a32(enc("alice")) % NAME_PALETTE.length]!);
  });

  test("names spread over the palette", () => {
    const used = new Set(Array.from({ length: 200 }, (_, i) => nameColor(`user${i}`)));
    expect(used.size).toBe(NAME_PALETTE.length);
  });

  test("the palette has twelve distinct colours, none black, grey or the dark blues", () => {
    expect(new Set(NAME_PALETTE).size).toBe(12);
    for (const c of NAME_PALETTE) {
      expect(c).toBeGreaterThanOrEqual(22); // 0–15 system colours, 16–21 black and dark blues
      expect(c).toBeLessThan(232); // 232–255 greys
    }
  });

  test("colorize: a styled segment when enabled, the plain name when not", () => {
    expect(colorize("bob", true)).toEqual({ text: "bob", sgr: `38;5;${nameColor("bob")}` });
    expect(colorize("bob", false)).toBe("bob");
    expect(dim("12:00", true)).toEqual({ text: "12:00", sgr: "2" });
    expect(dim("12:00", false)).toBe("12:00");
  });

  test.each([
    [true, undefined, true],
    [true, "", true],
    [true, "1", false],
    [true, "0", false],
    [false, undefined, false],
  ])("colorEnabled(isTTY=%p, NO_COLOR=%p) = %p", (tty, noColor, want) => {
    expect(colorEnabled(tty, noColor === undefined ? {} : { NO_COLOR: noColor })).toBe(want);
  });
});

describe("formatTime", () => {
  test.each([
    [new Date(2024, 0, 2, 3, 4, 59).getTime(), "03:04"],
    [new Date(2024, 11, 31, 23, 59).getTime(), "23:59"],
    [new Date(2024, 5, 1, 0, 0).getTime(), "00:00"],
    [Number.NaN, "--:--"],
    [Number.POSITIVE_INFINITY, "--:--"],
  ])("formatTime(%p) = %p", (ms, want) => {
    expect(formatTime(ms)).toBe(want);
  });
});

describe("renderSegments", () => {
  test("escapes every part and wraps styled text in its SGR and a reset", () => {
    expect(renderSegments(["a\u202e ", { text: "b\x1b", sgr: "1;38;5;160" }, " c"])).toBe("a\\u202e \x1b[1;38;5;160mb\\x1b\x1b[0m c");
  });

  test.each(["", "31m", "1;;2", "38;5;1000", "\x1b", "1 ", "1;".repeat(20) + "1"])("SGR %p is refused", (sgr) => {
    expectCode(() => renderSegments([{ text: "x", sgr }]), "tui_bad_sgr");
  });
});
