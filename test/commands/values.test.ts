/**
 * Flag value parsing (src/commands/values.ts): whole numbers in a range and
 * durations with a unit; anything else is a usage error (exit 2) naming the
 * flag and the bad value.
 */
import { describe, expect, test } from "bun:test";
import { CliError, EXIT } from "../../src/commands/exit.ts";
import { parseDuration, parseInteger } from "../../src/commands/values.ts";

function usageError(fn: () => unknown): CliError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CliError)) throw new Error(`expected CliError, got ${String(e)}`);
    expect(e.exitCode).toBe(EXIT.USAGE);
    expect(e.exitCode).toBe(2);
    return e;
  }
  throw new Error("accepted");
}

describe("parseInteger", () => {
  test.each([
    ["0", 0, 65535, 0],
    ["65535", 0, 65535, 65535],
    ["7447", 0, 65535, 7447],
    ["1", 1, 1000, 1],
    ["1000", 1, 1000, 1000],
    ["007", 0, 10, 7],
    ["9007199254740991", 0, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  ])("%p in [%p, %p] → %p", (value, min, max, want) => {
    expect(parseInteger("--n", value, min, max)).toBe(want);
  });

  test.each([
    ["-1", 0, 65535], // below min (and a sign)
    ["65536", 0, 65535], // above max
    ["0", 1, 1000],
    ["1001", 1, 1000],
    ["9007199254740992", 0, Number.MAX_SAFE_INTEGER], // not a safe integer
    ["99999999999999999999", 0, Number.MAX_SAFE_INTEGER],
    ["", 0, 10],
    [" 5", 0, 10],
    ["5 ", 0, 10],
    ["+5", 0, 10],
    ["5.0", 0, 10],
    ["1e1", 0, 100],
    ["0x10", 0, 100],
    ["0b1", 0, 100],
    ["five", 0, 10],
    ["٥", 0, 10], // ARABIC-INDIC DIGIT FIVE
    ["５", 0, 10], // FULLWIDTH DIGIT FIVE
    ["Infinity", 0, Number.MAX_SAFE_INTEGER],
    ["NaN", 0, 10],
  ])("%p in [%p, %p] is a usage error", (value, min, max) => {
    const e = usageError(() => parseInteger("--port", value, min, max));
    expect(e.message).toBe(`--port must be a whole number from ${min} to ${max}, not "${value}"`);
  });
});

describe("parseDuration", () => {
  test.each([
    ["1ms", 1],
    ["250ms", 250],
    ["1", 1000], // a bare number is seconds
    ["90", 90_000],
    ["90s", 90_000],
    ["15m", 900_000],
    ["8h", 28_800_000],
    ["1d", 86_400_000],
    ["007s", 7000],
    [" 30s ", 30_000], // surrounding white space is trimmed
    ["2147483647ms", 2 ** 31 - 1], // the longest timer a runtime can set
    ["24d", 24 * 86_400_000],
  ])("%p → %p ms", (value, want) => {
    expect(parseDuration("--ticket-ttl", value)).toBe(want);
  });

  test.each([
    "0",
    "0s",
    "0ms",
    "0d",
    "",
    "   ",
    "s",
    "ms",
    "-5s",
    "+5s",
    "1.5h",
    ".5h",
    "1h30m",
    "15M",
    "8H",
    "1w",
    "1y",
    "1 h",
    "1sec",
    "10 minutes",
    "1e3",
    "0x10s",
    "Infinity",
    "９s", // FULLWIDTH DIGIT NINE
    "9007199254740992ms", // not a safe integer
    "2147483648ms", // one past the longest timer: setTimeout would fire at once
    "25d",
    "104249992d", // overflows the safe range once converted to ms
    "99999999999999999999s",
  ])("%p is a usage error", (value) => {
    const e = usageError(() => parseDuration("--ticket-ttl", value));
    expect(e.message).toBe(`--ticket-ttl must be a duration like 30s, 15m, 8h or 1d, at most 24d, not "${value}"`);
  });
});
