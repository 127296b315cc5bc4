/**
 * Password policy after NIST SP 800-63B (rev. 4, §3.1.1.2): a minimum and a
 * maximum length counted in Unicode code points after NFKC normalization
 * (longer is rejected, never truncated), no composition rules, and a check
 * against a list of commonly used passwords (zxcvbn-ts's 49k-entry list)
 * and context words (the user name). The client checks it for a helpful
 * message; the server enforces it.
 */
import { SecureChatError } from "./errors.ts";

export const PASSWORD_MIN = 12;
export const PASSWORD_MAX = 256;

/** §3.1.1.2: "the verifier SHOULD apply the Normalization Process for Stabilization of Identifiers using either NFKC or NFKD". */
export function normalizePassword(pw: string): string {
  return pw.normalize("NFKC");
}

let common: Set<string> | undefined;

async function commonPasswords(): Promise<Set<string>> {
  if (!common) {
    const { dictionary } = await import("@zxcvbn-ts/language-common");
    common = new Set(dictionary["passwords-common"]);
  }
  return common;
}

/** Throws `password_policy` with a message a person can act on. */
export async function checkPassword(password: string, user: string): Promise<void> {
  const pw = normalizePassword(password);
  const length = [...pw].length;
  const reject = (why: string): never => {
    throw new SecureChatError("password_policy", `password: ${why}`);
  };
  if (length < PASSWORD_MIN) reject(`too short (${length} characters; at least ${PASSWORD_MIN}, a few words make a good one)`);
  if (length > PASSWORD_MAX) reject(`too long (${length} characters; at most ${PASSWORD_MAX})`);
  if (/^\s|\s$/.test(pw)) reject("starts or ends with white space");
  const lower = pw.toLowerCase();
  if ((await commonPasswords()).has(lower)) reject("is on the list of commonly used passwords");
  if (lower.includes(user.toLowerCase())) reject("contains the user name");
  if (new Set(pw).size <= 2) reject("repeats one or two characters");
}
