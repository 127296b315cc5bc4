/**
 * The server's log (src/server/log.ts), as an operator reads it: the text
 * log in a terminal, the JSON log (`serve --json`) in a file or a pipe. A
 * field can hold what a peer chose; neither form may carry a control, bidi
 * or zero-width character raw, or let a value pass for another field.
 */
import { describe, expect, test } from "bun:test";
import { jsonLogger, textLine, textLogger } from "../../src/server/log.ts";

const EVIL = "x\u202eevil\u202c\u200b\u2028\u0085\x1b[2J";
const RAW = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

describe("JSON log", () => {
  test("unsafe characters are \\u escapes; the line parses back to the same fields", () => {
    const lines: string[] = [];
    const log = jsonLogger((l) => lines.push(l));
    log.warn("internal_error", { source: "127.0.0.1:1", error: EVIL });
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line.endsWith("\n")).toBe(true);
    expect(RAW.test(line.slice(0, -1))).toBe(false);
    expect(line).toContain("\\u202eevil\\u202c\\u200b\\u2028\\u0085\\u001b[2J");
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(parsed).toMatchObject({ level: "warn", event: "internal_error", source: "127.0.0.1:1", error: EVIL });
  });
});

describe("text log", () => {
  test("unsafe characters show as escapes, on one line", () => {
    const line = textLine("internal_error", { source: "127.0.0.1:1", error: EVIL });
    expect(RAW.test(line)).toBe(false);
    expect(line).toBe('internal_error source=127.0.0.1:1 error="x\\u202eevil\\u202c\\u200b\\u2028\\x85\\u001b[2J"');
  });

  test("a value with a blank, = or a quote is quoted, so it cannot pass for another field", () => {
    expect(textLine("login", { user: "alice", source: "1.2.3.4:5 user=root", n: 3, ok: true, gone: undefined })).toBe(
      'login user=alice source="1.2.3.4:5 user=root" n=3 ok=true',
    );
    expect(textLine("e", { a: "", b: 'say "hi"', c: "a=b" })).toBe('e a="" b="say \\"hi\\"" c="a=b"');
  });

  test("through consola, as `serve` prints it", async () => {
    const log = await textLogger();
    const out: string[] = [];
    const realOut = process.stdout.write;
    const realErr = process.stderr.write;
    const capture = ((chunk: string | Uint8Array) => {
      out.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
      return true;
    }) as typeof process.stdout.write;
    process.stdout.write = capture;
    process.stderr.write = capture;
    try {
      // (consola leaves out info lines under a test runner; warnings always show.)
      log.warn("internal_error", { source: "127.0.0.1:1", error: EVIL });
    } finally {
      process.stdout.write = realOut;
      process.stderr.write = realErr;
    }
    const text = out.join("");
    expect(text).toContain("internal_error source=127.0.0.1:1 error=");
    expect(text).toContain("\\u202eevil");
    expect(text.replace(/\n/g, "")).not.toMatch(RAW);
  });
});
