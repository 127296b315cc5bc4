/**
 * The server's log (src/server/log.ts), as an operator reads it: the text
 * log in a terminal, the JSON log (`serve --json`) in a file or a pipe. A
 * field can hold what a peer chose; neither form may carry a control, bidi
 * or zero-width character raw, or let a value pass for another field. Every
 * line carries its time; a session's end is a line of its own.
 */
import { describe, expect, test } from "bun:test";
import { jsonLogger, textLine, textLogger } from "../../src/server/log.ts";
import { passwordLogin, rawSession, registerRaw, startServer, waitFor } from "./helpers.ts";

const PW = "correct horse battery staple";

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

  test("ts is the time in ISO 8601 UTC, first in the line", () => {
    const lines: string[] = [];
    const log = jsonLogger((l) => lines.push(l), () => Date.UTC(2026, 10, 22, 9, 15, 2, 250));
    log.info("session_closed", { user: "alice", duration_s: 12.5 });
    expect(lines).toEqual(['{"ts":"2026-11-22T09:15:02.250Z","level":"info","event":"session_closed","user":"alice","duration_s":12.5}\n']);
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

  test("each line starts with the time, ISO 8601 UTC to the millisecond, then the level", () => {
    const lines: string[] = [];
    let now = Date.UTC(2026, 10, 22, 9, 15, 2, 250);
    const log = textLogger((l) => lines.push(l), () => now);
    log.info("login", { user: "alice", source: "127.0.0.1:5000" });
    now += 61_000;
    log.warn("internal_error", { source: "127.0.0.1:1", error: EVIL });
    expect(lines[0]).toBe("2026-11-22T09:15:02.250Z INFO login user=alice source=127.0.0.1:5000\n");
    expect(lines[1]).toStartWith('2026-11-22T09:16:03.250Z WARN internal_error source=127.0.0.1:1 error="x\\u202eevil');
    expect(lines[1]!.endsWith("\n")).toBe(true);
    expect(RAW.test(lines[1]!.slice(0, -1))).toBe(false);
  });
});

describe("what the server logs", () => {
  test("a line per session close: user, address, why, and how long it lasted", async () => {
    const t = await startServer();
    try {
      const closes = () => t.events.filter((e) => e.event === "session_closed").map((e) => e.fields);
      const bob = await registerRaw(t.port, "bob", PW);
      // Registering is a session too; it ends when its connection closes.
      await waitFor("the registering session to close", () => closes().length === 1, 10_000);
      const s = await rawSession(t.port);
      expect((await passwordLogin(s, "bob", PW, bob.identity)).type).toBe("welcome");
      s.send({ type: "bye", reason: "done" });
      await waitFor("bob's session to close", () => closes().length === 2, 10_000);
      const gone = await rawSession(t.port);
      expect((await passwordLogin(gone, "bob", PW, bob.identity)).type).toBe("welcome");
      gone.close();
      await waitFor("the third session to close", () => closes().length === 3, 10_000);
      const closed = closes();
      expect(closed.map((f) => [f.user, f.reason])).toEqual([
        ["bob", "connection closed"],
        ["bob", "goodbye"],
        ["bob", "connection closed"],
      ]);
      for (const f of closed) {
        expect(f.source).toMatch(/^(127\.0\.0\.1|::ffff:127\.0\.0\.1)$/);
        expect(typeof f.duration_s).toBe("number");
        expect(f.duration_s as number).toBeGreaterThanOrEqual(0);
      }
      const last = await rawSession(t.port);
      expect((await passwordLogin(last, "bob", PW, bob.identity)).type).toBe("welcome");
      await t.server.stop(1000);
      last.close();
      expect(t.events.filter((e) => e.event === "session_closed").at(-1)?.fields).toMatchObject({ user: "bob", reason: "server_shutdown" });
    } finally {
      await t.server.stop();
    }
  }, 30_000);
});
