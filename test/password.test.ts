/**
 * The password policy (src/password.ts, NIST SP 800-63B §3.1.1.2): length
 * 12..256 counted in code points after NFKC, no surrounding white space, not
 * a common password (case-insensitively), not containing the user name, not
 * one or two characters repeated. Every refusal is `password_policy` with a
 * message that says why.
 */
import { describe, expect, test } from "bun:test";
import { isSecureChatError } from "../src/errors.ts";
import { PASSWORD_MAX, PASSWORD_MIN, checkPassword, normalizePassword } from "../src/password.ts";

/** Resolves to the refusal message, or throws if the password was accepted or failed otherwise. */
async function refusal(password: string, user = "alice"): Promise<string> {
  try {
    await checkPassword(password, user);
  } catch (e) {
    if (!isSecureChatError(e, "password_policy")) throw new Error(`expected password_policy, got ${String(e)}`);
    expect(e.message).toStartWith("password: ");
    return e.message;
  }
  throw new Error(`password ${JSON.stringify(password)} was accepted`);
}

async function accepted(password: string, user = "alice"): Promise<void> {
  await checkPassword(password, user);
}

const GOOD = "correct horse battery staple";

describe("checkPassword", () => {
  test("constants", () => {
    expect(PASSWORD_MIN).toBe(12);
    expect(PASSWORD_MAX).toBe(256);
  });

  test("a good passphrase is accepted", async () => {
    await accepted(GOOD);
    await accepted("Tr0ub4dor&3 with extra words");
    await accepted("je ne regrette rien, 1961");
  });

  describe("length", () => {
    test("11 code points: too short, with the count in the message", async () => {
      const m = await refusal("qwfpbjluyrs");
      expect(m).toContain("too short");
      expect(m).toContain("11 characters");
      expect(m).toContain("at least 12");
    });

    test("12 code points: accepted", async () => {
      await accepted("qwfpbjluyrst");
    });

    test("empty", async () => {
      expect(await refusal("")).toContain("too short (0 characters");
    });

    test("256 code points: accepted; 257: too long, with the count", async () => {
      const base = "the quick brown fox jumps over a lazy dog, ";
      const s256 = base.repeat(6).slice(0, 255) + "!";
      expect([...s256]).toHaveLength(256);
      await accepted(s256);
      const s257 = s256.slice(0, 255) + "!?";
      expect([...s257]).toHaveLength(257);
      const m = await refusal(s257);
      expect(m).toContain("too long");
      expect(m).toContain("257 characters");
      expect(m).toContain("at most 256");
    });

    test("astral characters (emoji) count as one code point each, not two UTF-16 units", async () => {
      const animals = [..."🐱🐶🐭🐹🐰🦊🐻🐼🐨🐯🦁🐮"];
      expect(animals).toHaveLength(12);
      const eleven = animals.slice(0, 11).join("");
      expect(eleven.length).toBe(22); // UTF-16 units
      expect(await refusal(eleven)).toContain("11 characters");
      await accepted(animals.join(""));

      // 256 emoji are 512 UTF-16 units but within the limit; 257 are not.
      const many = (n: number) => Array.from({ length: n }, (_, i) => animals[i % animals.length]).join("");
      await accepted(many(256));
      expect(await refusal(many(257))).toContain("257 characters");
    });

    test("a ZWJ emoji sequence counts as its code points", async () => {
      const family = "👨‍👩‍👧"; // man ZWJ woman ZWJ girl: 5 code points, 1 grapheme
      expect([...family]).toHaveLength(5);
      // 7 + 5 = 12 code points
      await accepted(`family ${family}`);
      // 6 + 5 = 11 code points
      expect(await refusal(`famil ${family}`)).toContain("11 characters");
    });

    test("combining sequences are composed by NFKC before counting", async () => {
      const decomposed = "e\u0301"; // e + COMBINING ACUTE ACCENT → é (one code point after NFKC)
      // 11 letters + é: 13 code points as typed, 12 after NFKC → accepted
      await accepted(`bcdfghjklmn${decomposed}`);
      // 10 letters + é: 12 code points as typed, 11 after NFKC → too short
      const m = await refusal(`bcdfghjklm${decomposed}`);
      expect(m).toContain("too short");
      expect(m).toContain("11 characters");
    });

    test("compatibility characters are expanded by NFKC before counting", async () => {
      // "ﬁ" (U+FB01) becomes "fi": 11 code points as typed, 12 after NFKC.
      await accepted("bcdghjklmn\ufb01");
      // "Ⅻ" (U+216B) becomes "XII": 10 as typed, 12 after NFKC.
      await accepted("bcdghjklm\u216b");
    });

    test("257 after NFKC is too long even if fewer were typed", async () => {
      const typed = "abcdefghij".repeat(25) + "\u216b\u216b"; // 252 as typed, 256 after NFKC
      await accepted(typed);
      const over = "abcdefghij".repeat(25) + "k\u216b\u216b"; // 253 as typed, 257 after NFKC
      expect(await refusal(over)).toContain("257 characters");
    });
  });

  describe("NFKC folding", () => {
    test("normalizePassword folds full-width characters", () => {
      expect(normalizePassword("ｐａｓｓｗｏｒｄ１２３４")).toBe("password1234");
      expect(normalizePassword("e\u0301")).toBe("\u00e9");
    });

    test("a common password typed in full-width characters is still common", async () => {
      expect(await refusal("１ｑａｚ２ｗｓｘ３ｅｄｃ")).toContain("commonly used");
      expect(await refusal("ｐａｓｓｗｏｒｄ１２３４")).toContain("commonly used");
    });

    test("the user name typed in full-width characters is still the user name", async () => {
      expect(await refusal("my name is ａｌｉｃｅ, hello", "alice")).toContain("user name");
    });
  });

  describe("common passwords", () => {
    test.each(["1qaz2wsx3edc", "1QAZ2WSX3EDC", "1Qaz2Wsx3Edc", "qwerty123456", "QWERTY123456", "password1234"])(
      "%p is refused case-insensitively",
      async (pw) => {
        expect(await refusal(pw, "zed")).toBe("password: is on the list of commonly used passwords");
      },
    );
  });

  describe("user name", () => {
    test("containing the user name is refused, case-insensitively", async () => {
      expect(await refusal("alice-in-wonderland", "alice")).toBe("password: contains the user name");
      expect(await refusal("I am ALICE, hear me roar", "alice")).toContain("contains the user name");
      expect(await refusal("wonderland_Alice_1865", "alice")).toContain("contains the user name");
    });

    test("the same password is fine for another user", async () => {
      await accepted("alice-in-wonderland", "bob");
    });
  });

  describe("white space", () => {
    test.each([
      [" leading space passphrase"],
      ["trailing space passphrase "],
      ["\tleading tab passphrase"],
      ["trailing newline passphrase\n"],
      ["\u3000ideographic space passphrase"], // NFKC → U+0020
      ["no-break space passphrase\u00a0"],
    ])("%p is refused", async (pw) => {
      expect(await refusal(pw)).toBe("password: starts or ends with white space");
    });

    test("inner white space is fine", async () => {
      await accepted("inner  spaces\tare fine here");
    });
  });

  describe("repeated characters", () => {
    test.each(["aaaaaaaaaaaaaaaa", "abababababababab", "xyxyxyxyxyxyxyx", "🐱🐶🐱🐶🐱🐶🐱🐶🐱🐶🐱🐶"])("%p is refused", async (pw) => {
      expect(await refusal(pw, "zed")).toBe("password: repeats one or two characters");
    });

    test("three distinct characters are not 'repeated'", async () => {
      await accepted("abcabcabcabcabc", "zed");
    });
  });

  test("too short is reported before anything else", async () => {
    expect(await refusal(" alice ", "alice")).toContain("too short");
  });
});
