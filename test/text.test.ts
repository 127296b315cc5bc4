/**
 * The one definition of unsafe text (src/text.ts) and its three outputs: for
 * a terminal or a text log (visible ASCII escapes, blank runs capped), for
 * JSON (\uXXXX escapes, the value unchanged), and for text from an
 * unauthenticated peer (an ASCII string literal). What a reader sees: no
 * control, bidi, zero-width or separator character ever reaches them raw,
 * and ordinary text in any script is left as it is.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { BLANK_RUN_MAX, SURELY_SAFE_RANGES, hasControl, isUnsafe, jsonText, quotedAscii, terminalText, withoutControls } from "../src/text.ts";

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;

/** The characters the security review and the code review named, one by one. */
const NAMED: [string, number[]][] = [
  ["C0", range(0x00, 0x1f)],
  ["DEL", [0x7f]],
  ["C1", range(0x80, 0x9f)],
  ["bidi embeddings, overrides, isolates and marks", [0x061c, 0x200e, 0x200f, ...range(0x202a, 0x202e), ...range(0x2066, 0x2069)]],
  ["zero-width", [0x200b, 0x200c, 0x200d, 0x2060, 0xfeff]],
  ["line and paragraph separators", [0x2028, 0x2029]],
  ["soft hyphen, invisible operators, tags", [0x00ad, ...range(0x2061, 0x2064), 0xe0001, ...range(0xe0020, 0xe007f)]],
];
const ALL_NAMED = NAMED.flatMap(([, cps]) => cps);
const RAW_NAMED = new RegExp(`[${ALL_NAMED.map((cp) => `\\u{${cp.toString(16)}}`).join("")}]`, "u");

/** Every Unicode scalar value, in one string. */
const EVERY_SCALAR = (() => {
  const parts: string[] = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) if (cp < 0xd800 || cp > 0xdfff) parts.push(String.fromCodePoint(cp));
  return parts.join("");
})();

describe("terminalText", () => {
  test.each(NAMED)("every %s character becomes a visible ASCII escape", (_name, cps) => {
    const bad: string[] = [];
    for (const cp of cps) {
      const ch = String.fromCodePoint(cp);
      const want = cp <= 0xff ? `\\x${cp.toString(16).padStart(2, "0")}` : cp <= 0xffff ? `\\u${cp.toString(16).padStart(4, "0")}` : `\\u{${cp.toString(16)}}`;
      for (const [input, expected] of [[ch, want], [`a${ch}b`, `a${want}b`]]) {
        const got = terminalText(input!);
        if (got !== expected) bad.push(`${hex(cp)}: ${JSON.stringify(got)}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test.each([
    ["plain text", "plain text"],
    ["\x1b[31m", "\\x1b[31m"],
    ["a\r\nb\tc", "a\\x0d\\x0ab\\x09c"],
    ["\u202eevil\u202c \u2066x\u2069\u061c", "\\u202eevil\\u202c \\u2066x\\u2069\\u061c"],
    ["pay\u200bpal", "pay\\u200bpal"],
    ["\ud800lone \udfff", "\\ud800lone \\udfff"],
    ["中文 é e\u0301 😀 \u00a0 עברית العربية", "中文 é e\u0301 😀 \u00a0 עברית العربية"],
  ])("terminalText(%p) = %p", (input, want) => {
    expect(terminalText(input)).toBe(want);
  });

  test("no named character survives anywhere in a string of every Unicode scalar value", () => {
    const out = terminalText(EVERY_SCALAR);
    expect(RAW_NAMED.test(out)).toBe(false);
    expect(out).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u);
  });

  test("a ZWJ between two emoji is kept (👩‍💻, 🏳️‍🌈, 👍🏽‍…); anywhere else it is escaped", () => {
    for (const seq of ["👩\u200d💻", "🏳\ufe0f\u200d🌈", "👨\u200d👩\u200d👧", "🧑🏽\u200d🚀"]) expect(terminalText(seq)).toBe(seq);
    expect(terminalText("a\u200db")).toBe("a\\u200db");
    expect(terminalText("😀\u200db")).toBe("😀\\u200db");
    expect(terminalText("a\u200d😀")).toBe("a\\u200d😀");
    expect(terminalText("😀\u200d")).toBe("😀\\u200d");
    expect(terminalText("\u200d😀")).toBe("\\u200d😀");
    expect(isUnsafe(0x200d, 0x1f469, 0x1f4bb)).toBe(false);
    expect(isUnsafe(0x200d, 0x61, 0x1f4bb)).toBe(true);
  });

  test(`runs of more than ${BLANK_RUN_MAX} blanks become ${BLANK_RUN_MAX} spaces; shorter runs stay`, () => {
    const cap = " ".repeat(BLANK_RUN_MAX);
    expect(terminalText(`a${" ".repeat(70)}b`)).toBe(`a${cap}b`);
    expect(terminalText(`a${" ".repeat(BLANK_RUN_MAX + 1)}b`)).toBe(`a${cap}b`);
    expect(terminalText(`a${" ".repeat(BLANK_RUN_MAX)}b c  d`)).toBe(`a${cap}b c  d`);
    // Other blanks: NBSP, EN QUAD…HAIR SPACE, IDEOGRAPHIC SPACE, Hangul fillers, BRAILLE PATTERN BLANK,
    // and blanks carrying invisible combining marks (CGJ, variation selectors).
    for (const blank of ["\u00a0", "\u2000", "\u200a", "\u3000", "\u3164", "\uffa0", "\u2800", " \u034f", " \ufe00", "\u205f"]) {
      expect([blank, terminalText(`x${blank.repeat(40)}y`)]).toEqual([blank, `x${cap}y`]);
    }
    // A blank run broken up by zero-width characters is no longer blank: they show.
    expect(terminalText(`x${" \u200b".repeat(3)}y`)).toBe("x \\u200b \\u200b \\u200by");
  });
});

describe("jsonText", () => {
  test.each(NAMED)("every %s character is a \\u escape in JSON output, and parses back", (_name, cps) => {
    for (const cp of cps) {
      const value = { text: `a${String.fromCodePoint(cp)}b` };
      const out = jsonText(JSON.stringify(value));
      expect([hex(cp), RAW_NAMED.test(out)]).toEqual([hex(cp), false]);
      expect(out).toMatch(/^[\x20-\x7e]*$/);
      expect(JSON.parse(out)).toEqual(value);
    }
  });

  test("JSON.stringify alone leaves them raw (what this fixes)", () => {
    expect(JSON.stringify("\u202e\u0085\u007f\u200b\u2028")).toBe('"\u202e\u0085\u007f\u200b\u2028"');
    expect(jsonText(JSON.stringify("\u202e\u0085\u007f\u200b\u2028"))).toBe('"\\u202e\\u0085\\u007f\\u200b\\u2028"');
    expect(jsonText(JSON.stringify("tag\u{e0041}"))).toBe('"tag\\udb40\\udc41"');
  });

  test("ordinary text is written as JSON.stringify writes it", () => {
    const line = JSON.stringify({ type: "message", text: "héllo \"wörld\" \\o/ 😀 中文 👩\u200d💻", n: 1 });
    expect(jsonText(line)).toBe(line);
  });

  test("U+2065, unassigned amid the invisible operators, is escaped like them", () => {
    expect(jsonText(JSON.stringify("a\u2065b"))).toBe('"a\\u2065b"');
  });

  test("property: any string round-trips, and no unsafe character is left raw", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme-composite" }), fc.string({ unit: "binary" }), (a, b) => {
        const value = { a, b, both: a + b };
        const out = jsonText(JSON.stringify(value));
        expect(JSON.parse(out)).toEqual(value);
        expect(out).not.toMatch(/[\p{Cc}\p{Zl}\p{Zp}\u061c\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u206f\ufeff]/u);
      }),
      { numRuns: 500 },
    );
  });
});

describe("quotedAscii", () => {
  test("a JSON string literal in printable ASCII that parses back to the text", () => {
    for (const s of ["busy", "a\nhint: delete line 3 of known_hosts", "\u202eevil", 'q"uote\\', "中文 😀", "\x1b[2J", "x\u2028y"]) {
      const q = quotedAscii(s);
      expect(q).toMatch(/^"[\x20-\x7e]*"$/);
      expect(JSON.parse(q)).toBe(s);
    }
  });

  test("blank runs are capped (the text is shown, not parsed back, by people)", () => {
    expect(quotedAscii(`x${" ".repeat(70)}hint: y`)).toBe(`"x${" ".repeat(BLANK_RUN_MAX)}hint: y"`);
  });
});

describe("the quick first look", () => {
  test("the ranges it passes without the real test hold no unsafe character (checked against this Bun's Unicode tables)", () => {
    const unsafe: string[] = [];
    for (const [from, to] of SURELY_SAFE_RANGES) {
      for (let cp = from; cp <= to; cp++) if (/[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u.test(String.fromCodePoint(cp))) unsafe.push(hex(cp));
    }
    expect(unsafe).toEqual([]);
  });

  test("text outside them still gets the real test", () => {
    expect(jsonText('"a\u00adb"')).toBe('"a\\u00adb"');
    expect(jsonText('"😀\u202e"')).toBe('"😀\\u202e"');
    expect(jsonText('"中文\u0600"')).toBe('"中文\\u0600"');
  });
});

describe("controls: what the protocol refuses", () => {
  test("hasControl is exactly C0, DEL and C1", () => {
    const flagged = range(0, 0x2ffff).filter((cp) => (cp < 0xd800 || cp > 0xdfff) && hasControl(String.fromCodePoint(cp)));
    expect(flagged).toEqual([...range(0x00, 0x1f), ...range(0x7f, 0x9f)]);
  });

  test("withoutControls drops them and keeps everything else", () => {
    expect(withoutControls("a\x1b[31mb\u009bc\r\n\u202ed")).toBe("a[31mbc\u202ed");
  });
});
